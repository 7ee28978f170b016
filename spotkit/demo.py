"""The demo beamline session: the twin writes scans into an inbox, the flow does the rest.

:func:`run_demo` is what ``spotkit demo`` runs. It goes through the same path as
``spotkit watch``: a :class:`spotkit.flows.Watcher` finds the finished files, ingests them,
copies them to a warehouse with verified checksums and runs the pipeline notebooks that the
demo's rules name (the preview stage first). It uses only public spotkit functions, so it
doubles as a worked example of the path every dataset takes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DemoReport", "run_demo"]

#: (file name, simulator keyword arguments) for the demo session.
TOMO_SCANS = (
    ("als832_membrane_0001.h5",
     {"shape": (361, 16, 512), "center_offset": 6.3, "seed": 1, "sample": "fuel-cell-membrane",
      "proposal": "ALS-11842"}),
    ("als832_limestone_0002.h5",
     {"shape": (361, 16, 512), "center_offset": -4.7, "seed": 2, "sample": "limestone-core",
      "proposal": "ALS-11842"}),
)
SAXS_SERIES = (
    ("als733_p3ht-pcbm_0001.h5",
     {"n_frames": 60, "onset_frame": 38, "seed": 3, "sample": "P3HT:PCBM printed film",
      "proposal": "ALS-10417"}),
)

#: Time between the starts of the demo session's scans (the session ends when the demo runs).
SCAN_INTERVAL = timedelta(minutes=20)

#: The demo facility's rules: the quick-look notebook of each kind, on this machine.
DEMO_RULES = """\
version: 1
facility: spotkit demo
targets:
  local: {kind: local, max_workers: 1, concurrency: 1}
rules:
  - name: tomo-832
    match: {beamline: "8.3.2", kind: tomo/raw}
    actions:
      - {name: preview, stage: preview, notebook: tomo_quicklook, target: local}
  - name: saxs-733
    match: {beamline: "7.3.3", kind: saxs/raw}
    actions:
      - {name: quicklook, stage: preview, notebook: saxs_quicklook, target: local}
      - {name: reduce, stage: full, notebook: saxs_reduce, target: local, after: quicklook}
"""


@dataclass
class DemoReport:
    """What the demo did: datasets ingested, runs executed, products written, and the
    keep-up quality verdicts of the scans and products (``spotkit monitor quality``)."""

    workdir: Path
    catalog_path: Path
    intake_catalog: Path
    raw: list = field(default_factory=list)       # catalog Datasets
    runs: list = field(default_factory=list)      # catalog Runs
    verdicts: list = field(default_factory=list)  # spotkit.monitor QualityVerdicts
    seconds: float = 0.0

    @property
    def portal_line(self) -> str:
        """The line that opens the portal on the demo's catalog in a JupyterLab cell."""
        return f"import spotkit; spotkit.portal({str(self.catalog_path)!r})"


def run_demo(
    workdir: str | os.PathLike = "spotkit-demo",
    *,
    progress: Callable[[str], None] | None = None,
    timeout: float = 600.0,
) -> DemoReport:
    """Simulate a short beamline session and process it end to end through the flow.

    Two micro-tomography scans (ALS 8.3.2-like) and one SAXS time series (7.3.3-like) are
    written by the digital twin into ``<workdir>/beamline``; a watcher with the rules in
    ``<workdir>/rules.yaml`` ingests them into the catalog at ``<workdir>/catalog.db``, copies
    them to ``<workdir>/warehouse`` (verified), runs each one's quick-look pipeline notebook
    through papermill (products under ``<workdir>/runs/<run id>``), checks the scans and
    products against their references (:func:`spotkit.monitor.check_new_products`: a new
    session's first products have too few, and say so), and the catalog is
    exported as an intake catalog ``<workdir>/catalogs/demo.yaml``. The scans are dated as a
    session that has just ended (start times :data:`SCAN_INTERVAL` apart, up to the time the
    demo runs), so time searches such as ``since=<today>`` find them. Running it again reuses
    the raw files (raw data is never overwritten) and, like ``spotkit watch``, processes each
    scan exactly once.

    Parameters
    ----------
    workdir : path-like
        Folder for everything the demo writes.
    progress : callable, optional
        Called with a short description before each step.
    timeout : float
        Seconds to wait for the flow to finish every scan.

    Returns
    -------
    DemoReport

    Raises
    ------
    TimeoutError
        If the flow has not finished every scan within ``timeout``.
    """
    from spotkit.catalog import open_catalog
    from spotkit.flows import Watcher
    from spotkit.sim import simulate_saxs_series, simulate_tomo_scan

    t0 = time.perf_counter()
    step = progress or (lambda msg: logger.info("%s", msg))
    workdir = Path(workdir).expanduser().resolve()
    inbox = workdir / "beamline"
    inbox.mkdir(parents=True, exist_ok=True)
    (workdir / "warehouse").mkdir(exist_ok=True)
    rules = workdir / "rules.yaml"
    rules.write_text(DEMO_RULES)
    cat = open_catalog(workdir / "catalog.db")
    report = DemoReport(workdir=workdir, catalog_path=Path(cat.path),
                        intake_catalog=workdir / "catalogs" / "demo.yaml")

    # the twin's writers take the scan's settings as keywords (a table per kind, above)
    plan: list[tuple[str, dict[str, Any], Callable[..., object]]] = [
        (name, kw, simulate_tomo_scan) for name, kw in TOMO_SCANS]
    plan += [(name, kw, simulate_saxs_series) for name, kw in SAXS_SERIES]
    # the session happened just now: scans start SCAN_INTERVAL apart, the last one now, so
    # searches such as `spotkit catalog search --since yesterday` find them
    session_start = datetime.now(UTC).replace(microsecond=0) - SCAN_INTERVAL * len(plan)
    for i, (name, kwargs, simulate) in enumerate(plan):
        path = inbox / name
        if path.exists():
            step(f"reusing raw file {path.name}")
            continue
        step(f"beamline writes {path.name}")
        simulate(path, start_time=session_start + i * SCAN_INTERVAL, **kwargs)

    step("watch the inbox: ingest, copy to the warehouse, run the rules' notebooks")
    watcher = Watcher([inbox], catalog=cat, rules=rules, warehouse=workdir / "warehouse",
                      poll=0.2, settle=0.2, workers=1)
    try:
        deadline = time.monotonic() + timeout
        while True:
            watcher.run_once()
            counts = watcher.journal.summary()["counts"]
            states = {st: sum(c[st] for c in counts.values()) for st in ("done", "parked")}
            if states["done"] + states["parked"] >= len(plan):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the demo's flow did not finish within {timeout:.0f} s; "
                                   f"see `spotkit --catalog {cat.path} status`")
            time.sleep(0.2)
    finally:
        watcher.close()
    paths = {str((inbox / name).resolve()) for name, _, _ in plan}
    report.raw = [d for d in cat.search(status="raw", limit=None)
                  if d.primary_file is not None
                  and str(Path(d.primary_file.registered_path).resolve()) in paths]
    report.runs = [r for d in report.raw for r in cat.runs(dataset_id=d.id, limit=None)]
    report.verdicts = _quality_verdicts(cat, report)
    step(f"export intake catalog {report.intake_catalog}")
    cat.export_intake(report.intake_catalog)
    report.seconds = time.perf_counter() - t0
    cat.close()
    return report


def _quality_verdicts(cat: Any, report: DemoReport) -> list:
    """The keep-up checks of the products not checked yet (as the monitor beside a watcher
    makes them), then the verdicts of the demo's scans and products (a run of the demo
    again checks nothing twice)."""
    from spotkit.monitor import check_new_products, quality_verdict

    check_new_products(cat, limit=100)
    ids = [d.id for d in report.raw] + [o for r in report.runs for o in r.outputs]
    verdicts = [v for v in (quality_verdict(cat, i) for i in ids) if v is not None]
    for v in verdicts:
        logger.info("quality: %s", v.message)
    return verdicts
