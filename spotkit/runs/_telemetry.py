"""A notebook run's telemetry events (:mod:`spotkit.monitor`): started, finished, run, product.

A run made by :func:`spotkit.run_notebook` itself is its own job: it records ``started``
and ``finished``. A queued run (a batch job's, executed by the job's worker) records only
``run`` (the notebook's execution) and its products; its job records ``started`` and
``finished`` with the scheduler's times. Recording never raises.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["RunEvents"]

logger = logging.getLogger(__name__)


class RunEvents:
    """The events of one run of a notebook for a dataset.

    Parameters
    ----------
    catalog : Catalog
    dataset : Dataset
        The dataset the notebook runs for.
    run_id : str
    target : str
        The compute target recorded with the run.
    notebook : str
        The notebook's name (in each event's detail).
    own : bool
        The run is its own job (not a batch job's queued run).
    """

    def __init__(self, catalog: Any, dataset: Any, run_id: str, target: str, notebook: str,
                 *, own: bool):
        self.catalog = catalog
        self.dataset = dataset
        self.run_id = run_id
        self.target = target
        self.notebook = notebook
        self.own = own
        self._t0 = time.perf_counter()
        self._start = time.time()

    def started(self) -> None:
        """The run began (recorded for a run that is its own job)."""
        self._t0, self._start = time.perf_counter(), time.time()
        if self.own:
            self._record("started", detail={"notebook": self.notebook})

    def ended(self, outcome: str, derived: Any = (), error: str | None = None) -> None:
        """The run ended (``outcome`` ``"ok"`` or ``"failed"``), with its products; the
        events are written now (a batch job's process may end soon after)."""
        seconds = time.perf_counter() - self._t0
        detail = {"notebook": self.notebook, **({"error": error[:500]} if error else {})}
        self._record("run", duration=seconds, outcome=outcome, detail=detail)
        if self.own:
            self._record("finished", duration=time.time() - self._start, outcome=outcome,
                         detail=detail)
        for out in derived:
            sizes = [f.size for f in out.files if f.size is not None]
            self._record("product", product=out, nbytes=sum(sizes) if sizes else None,
                         detail={"kind": out.kind})
        try:
            from spotkit.monitor import telemetry_for

            telemetry_for(self.catalog).flush()
        except Exception as exc:  # telemetry never stops a run
            logger.warning("telemetry: events of run %s not written: %s", self.run_id, exc)

    def _record(self, step: str, *, product: Any = None, **fields: Any) -> None:
        try:
            from spotkit.monitor import record

            key = f"run|{self.run_id}|{step}" + (f"|{product.id}" if product is not None
                                                  else "")
            record(self.catalog, step,
                   dataset_id=product.id if product is not None else self.dataset.id,
                   beamline=self.dataset.beamline, target=self.target, run_id=self.run_id,
                   key=key, **fields)
        except Exception as exc:  # telemetry never stops a run
            logger.warning("telemetry: %s event of run %s not recorded: %s", step,
                           self.run_id, exc)
