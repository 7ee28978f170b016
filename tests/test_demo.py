"""`spotkit demo` end to end, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.notebook]


def test_demo_end_to_end(demo_run):
    # the demo ran once for the session (tests/conftest.py: demo_run), as a user runs it:
    # in a new folder, with the default ./spotkit-demo workdir
    work = demo_run["workdir"]
    out = demo_run["stdout"]
    assert "Datasets" in out
    assert "Runs" in out
    assert out.count("completed") == 4
    # the SAXS series' change is found where the twin put it (frame 38), and reported
    assert "Change detection on als733_p3ht-pcbm_0001.h5: change at frame 38" in out

    from spotkit.catalog import open_catalog

    # what the demo made: a copy of its catalog taken as it ended (the README's blocks,
    # tests/test_docs.py, add to the live one later in the session)
    cat = open_catalog(demo_run["snapshot"])
    raw = cat.search(status="raw")
    assert raw.total == 3
    assert sorted(d.kind for d in raw) == ["saxs/raw", "tomo/raw", "tomo/raw"]
    # the session is dated as one that has just ended, so time searches find it (README)
    recent = cat.search(status="raw", since=datetime.now(UTC) - timedelta(hours=2))
    assert recent.total == 3
    derived = cat.search(status="derived")
    assert derived.total == 10  # a product and a PNG per run; + change report, kept frames
    (saxs,) = cat.search(kind="saxs/raw")
    marks = cat.frame_marks(saxs)  # the SAXS series' frames, marked by change detection
    assert len(marks) == 60
    assert {m["label"] for m in marks} == {"of interest", "redundant"}
    for ds in derived:
        assert ds.path.exists()
        assert ds.parents[0].status == "raw"
    assert all(r.state == "completed" for r in cat.runs())
    # the scans and products were checked against their references: a first session has
    # too few of them (each verdict says how many there are and how many are needed)
    from spotkit.monitor import quality_verdict
    from spotkit.monitor._quality_data import QUALITY_KINDS

    checked = [ds for ds in [*raw, *derived] if ds.kind in QUALITY_KINDS]
    verdicts = [quality_verdict(cat, ds) for ds in checked]
    assert len(checked) >= 4
    assert {v.verdict for v in verdicts} == {"no reference"}
    assert all("with this configuration, 8 needed" in v.message for v in verdicts)
    cat.close()

    import intake

    icat = intake.from_yaml_file(str(work / "catalogs" / "demo.yaml"))
    assert len(icat.entries) >= 3

    # running it again reuses the raw files (never rewritten) and does not duplicate datasets
    mtimes = {p: p.stat().st_mtime_ns for p in (work / "beamline").glob("*.h5")}
    live = open_catalog(work / "catalog.db")
    before = live.search(status="raw").total
    live.close()
    res = subprocess.run([sys.executable, "-m", "spotkit.cli", "demo", "--workdir", str(work)],
                         capture_output=True, text=True, timeout=900, env=demo_run["env"],
                         cwd=demo_run["work"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (work / "beamline").glob("*.h5")} == mtimes
    assert open_catalog(work / "catalog.db").search(status="raw").total == before
