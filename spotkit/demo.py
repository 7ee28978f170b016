"""The demo beamline session: simulate, ingest, run the per-dataset notebooks, export.

:func:`run_demo` is what ``spotkit demo`` runs. It uses only public spotkit functions, so it
doubles as a worked example of the path every dataset takes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class DemoReport:
    """What the demo did: datasets ingested, runs executed, products written."""

    workdir: Path
    catalog_path: Path
    intake_catalog: Path
    raw: list = field(default_factory=list)       # catalog Datasets
    runs: list = field(default_factory=list)      # RunResult
    seconds: float = 0.0


def run_demo(
    workdir: str | os.PathLike = "spotkit-demo",
    *,
    progress: Callable[[str], None] | None = None,
) -> DemoReport:
    """Simulate a short beamline session and process it end to end.

    Two micro-tomography scans (ALS 8.3.2-like) and one SAXS time series (7.3.3-like) are
    written by the digital twin into ``<workdir>/beamline``, ingested into the catalog at
    ``<workdir>/catalog.db``, each processed by its quick-look pipeline notebook through
    papermill (products under ``<workdir>/runs/<run id>``), and the catalog is exported as an intake
    catalog ``<workdir>/catalogs/demo.yaml``. Running it again reuses the raw files that are
    already there (raw data is never overwritten) and adds new runs.

    Parameters
    ----------
    workdir : path-like
        Folder for everything the demo writes.
    progress : callable, optional
        Called with a short description before each step.

    Returns
    -------
    DemoReport
    """
    from spotkit.catalog import open_catalog
    from spotkit.runs import pipeline_notebook, run_notebook
    from spotkit.sim import simulate_saxs_series, simulate_tomo_scan

    t0 = time.perf_counter()
    step = progress or (lambda msg: logger.info("%s", msg))
    workdir = Path(workdir).expanduser().resolve()
    inbox = workdir / "beamline"
    inbox.mkdir(parents=True, exist_ok=True)
    cat = open_catalog(workdir / "catalog.db")
    report = DemoReport(workdir=workdir, catalog_path=Path(cat.path),
                        intake_catalog=workdir / "catalogs" / "demo.yaml")

    plan = [(name, kw, simulate_tomo_scan, "tomo_quicklook") for name, kw in TOMO_SCANS]
    plan += [(name, kw, simulate_saxs_series, "saxs_quicklook") for name, kw in SAXS_SERIES]
    for name, kwargs, simulate, _ in plan:
        path = inbox / name
        if path.exists():
            step(f"reusing raw file {path.name}")
            continue
        step(f"beamline writes {path.name}")
        simulate(path, **kwargs)

    for name, _, _, notebook in plan:
        step(f"ingest {name}")
        ds = cat.ingest(inbox / name)
        report.raw.append(ds)
        step(f"run {notebook} for {ds.id} ({ds.sample})")
        report.runs.append(run_notebook(pipeline_notebook(notebook), ds, catalog=cat))

    step(f"export intake catalog {report.intake_catalog}")
    cat.export_intake(report.intake_catalog)
    report.seconds = time.perf_counter() - t0
    cat.close()
    return report
