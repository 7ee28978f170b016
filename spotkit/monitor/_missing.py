"""Missing data: a beamline gone quiet, a scan number skipped, products not made, a step stuck.

Each check reads the telemetry table (one row per event: ``time, step, beamline, dataset_id,
item, target, run_id, job_id, duration, bytes, value, outcome, detail``; see
:func:`spotkit.monitor.events`) and returns :class:`~spotkit.monitor.Finding` objects. What
is "too long" is learned from the same table's history: the 99th percentile (p99) of the
relevant interval, and a finding is raised once ``factor`` (default 2) times that p99 has
passed. For a tail like the exponential one of arrivals, a normal interval exceeds
``2 * p99`` with probability about ``0.01 ** 2 = 1e-4``, so false alarms are rare while a
real silence is seen within about twice the p99 interval.

=================  ====================================================  ====================
kind               what                                                  learned interval
=================  ====================================================  ====================
``quiet``          a beamline sends nothing during its beamtime          p99 inter-arrival
``gap``            scan numbers skip (``scan_0041``, then ``scan_0043``)  p99 inter-arrival
``missing``        a dataset lacks products its rules promise            p99 complete->product
``stuck``          a transfer, queued or running job is not finishing    p99 of that step, per
                                                                         target and size class
=================  ====================================================  ====================

How the events are read
-----------------------
* An *arrival* is a ``complete`` event (a dataset finished writing) of a beamline.
* A *product* is a ``product`` event; it belongs to the dataset of its run (the dataset
  other events of the same ``run_id`` name); its name is ``detail["action"]``, else
  ``item``, else ``run_id`` (one per run).
* A *span* that can get stuck opens with an event and closes with another that shares its
  ``job_id`` or ``run_id`` (a batch job's events name both; else ``dataset_id`` +
  ``target``): ``queued`` -> ``started`` (queue wait), ``started`` -> ``finished`` or
  ``run`` (running), and a ``transfer`` event whose ``outcome`` is ``"started"`` -> the next
  ``transfer`` event of the same dataset and target. Transfers the flow journal has running
  are given as ``open_spans``. Durations are learned per target and size class (decades of
  the dataset's bytes, from its ``complete``/``ingested`` events or the job's queueing).

The functions are stateless (``check_*(events_df, now, ...)``: what they need is learned
from ``events_df`` unless given); :class:`MissingData` keeps learned intervals so a
long history is read once and recent events checked often.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from spotkit.monitor._findings import Finding
from spotkit.monitor._missing_arrivals import (
    Schedule,
    check_gaps,
    check_quiet,
    learn_interarrival,
)
from spotkit.monitor._missing_base import SPANS, p99, scan_number, size_class
from spotkit.monitor._missing_steps import (
    Promised,
    check_missing_products,
    check_stuck,
    learn_durations,
    learn_product_delay,
)

__all__ = [
    "SPANS",
    "MissingData",
    "Schedule",
    "check_gaps",
    "check_missing_products",
    "check_quiet",
    "check_stuck",
    "learn_durations",
    "learn_interarrival",
    "learn_product_delay",
    "p99",
    "scan_number",
    "size_class",
]

log = logging.getLogger(__name__)


# -- learned intervals kept between checks ------------------------------------------------------


@dataclass
class MissingData:
    """The four missing-data checks with intervals learned once from history.

    Parameters
    ----------
    schedule : Schedule, optional
        Beamtime (default: always).
    promised : callable or int
        What products each dataset's rules promise (see :func:`check_missing_products`).
    factor : float
        Multiples of the p99 interval before a finding.
    min_samples : int
        Intervals needed before a p99 is trusted.

    Examples
    --------
    >>> import pandas as pd
    >>> history = pd.DataFrame({"time": [60.0 * i for i in range(40)], "step": "complete",
    ...                         "beamline": "8.3.2"})
    >>> md = MissingData().learn(history)
    >>> round(md.interarrival["8.3.2"])
    60
    >>> [f.kind for f in md.check(history, now=39 * 60 + 200)]
    ['quiet']
    """

    schedule: Schedule | None = None
    promised: Promised | int = 1
    factor: float = 2.0
    min_samples: int = 20
    interarrival: dict[str, float] = field(default_factory=dict)
    product_delay: dict[str, float] = field(default_factory=dict)
    durations: dict[tuple[str, str, str], float] = field(default_factory=dict)
    learned_at: float | None = None

    def learn(self, history: pd.DataFrame, *, now: float | None = None) -> MissingData:
        """Learn the p99 intervals from ``history`` (replacing what was learned)."""
        self.interarrival = learn_interarrival(history, schedule=self.schedule,
                                               min_samples=self.min_samples)
        self.product_delay = learn_product_delay(history, min_samples=self.min_samples)
        self.durations = learn_durations(history, min_samples=self.min_samples)
        times = history["time"] if "time" in history.columns else []
        self.learned_at = now if now is not None else (
            float(max(times)) if len(times) else None)
        log.debug("learned p99 intervals: %d beamline cadence(s), %d product delay(s), "
                  "%d duration(s)", len(self.interarrival), len(self.product_delay),
                  len(self.durations))
        return self

    def check(self, events: pd.DataFrame, now: float, *,
              open_spans: Iterable[Mapping[str, Any]] = ()) -> list[Finding]:
        """Run all four checks on ``events`` with the learned values (see :func:`check_stuck`
        for ``open_spans``)."""
        out = check_quiet(events, now, schedule=self.schedule, expected=self.interarrival,
                          factor=self.factor)
        out += check_gaps(events, now, expected=self.interarrival, factor=self.factor)
        out += check_missing_products(events, now, promised=self.promised,
                                      expected=self.product_delay, factor=self.factor)
        out += check_stuck(events, now, expected=self.durations, factor=self.factor,
                           open_spans=open_spans)
        return out
