"""The portal's Monitor panel: its model in plain Python (one read per kind, incremental
events, nothing written), its view built headless; the alert log read by the library."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from spotkit.catalog import open_catalog
from spotkit.monitor import AlertRule, Alerts, Finding, LogChannel, Telemetry, alert_log
from spotkit.widgets._portal_monitor_model import MonitorPanelModel, stream_key


def _flow_events(cat, n=60, jump_at=40, t0=None):
    """n datasets through a Slurm target; the queue wait jumps from ~60 s to ~900 s at
    dataset ``jump_at``."""
    rng = np.random.default_rng(1)
    t0 = time.time() - n * 600.0 if t0 is None else t0
    with Telemetry(cat) as tel:
        for i in range(n):
            t = t0 + 600.0 * i
            wait = (900.0 if i >= jump_at else 60.0) * float(rng.lognormal(0, 0.1))
            d, r = f"d{i}", f"r{i}"
            tel.record("complete", time=t, item=f"k{i}")
            tel.record("ingested", time=t + 5, item=f"k{i}", dataset_id=d, beamline="8.3.2",
                       duration=5.0)
            tel.record("queued", time=t + 10, dataset_id=d, run_id=r, target="slurm",
                       beamline="8.3.2")
            tel.record("started", time=t + 10 + wait, dataset_id=d, run_id=r, target="slurm",
                       duration=wait)
            tel.record("finished", time=t + 40 + wait, dataset_id=d, run_id=r,
                       target="slurm", duration=30.0)


@pytest.fixture
def cat(tmp_path):
    c = open_catalog(tmp_path / "catalog.db")
    yield c
    c.close()


def test_alert_log_reads_only(cat, tmp_path):
    assert alert_log(cat).empty
    with Alerts([AlertRule("ops", LogChannel())], state=cat,
                clock=lambda: 2e9) as alerts:
        alerts.dispatch([Finding("change", "queue_wait", time=2e9, beamline="8.3.2",
                                 target="slurm", message="queue wait x15", onset=2e9 - 60)])
    (row,) = alert_log(cat, since=2e9 - 1).itertuples()
    assert (row.rule, row.kind, row.metric, row.target, row.sends) == (
        "ops", "change", "queue_wait", "slurm", 1)
    assert row.onset == 2e9 - 60
    assert alert_log(cat, since=2e9 + 1).empty
    with pytest.raises(ValueError, match="limit"):
        alert_log(cat, limit=0)


def test_model_turnaround_streams_changes_alerts_verdicts(cat, tmp_path):
    from spotkit.monitor import check_product
    from spotkit.sim import simulate_tomo_scan

    _flow_events(cat)
    raw = cat.ingest(simulate_tomo_scan(tmp_path / "s.h5", shape=(32, 2, 32), n_flats=2,
                                        n_darks=2, seed=0).path)
    check_product(cat, raw.id)  # too few references: "no reference", stored
    now = time.time()
    with Alerts([AlertRule("ops", LogChannel())], state=cat, clock=lambda: now) as alerts:
        alerts.dispatch([Finding("change", "queue_wait", time=now, beamline="8.3.2",
                                 target="slurm", message="queue wait rose", onset=now - 1e4)])
    model = MonitorPanelModel(cat)
    snap = model.fetch()
    assert snap.events == 60 * 5
    parts = {r["component"]: r for r in snap.turnaround}
    assert parts["turnaround"]["datasets"] == 60
    assert parts["queue_wait"]["share"] > 0.5
    assert snap.turnaround_png.startswith(b"\x89PNG")
    key = stream_key("queue_wait", "8.3.2", "slurm")
    streams = {s["stream"]: s for s in snap.streams}
    assert streams[key]["values"] == 60
    assert streams[key]["alerts"] == 1
    # the queue-wait jump is found, with its onset at dataset 40
    mine = [c for c in snap.changes if c["stream"] == key]
    assert mine, snap.changes
    before, after = map(float, re.search(r"median (\S+) -> (\S+) ",
                                         mine[-1]["message"]).groups())
    assert 40 < before < 90
    assert 600 < after < 1300
    assert streams[key]["changes"] == len(mine)
    assert snap.streams[0]["changes"] >= 1  # streams with changes first
    assert [a["rule"] for a in snap.alerts] == ["ops"]
    ((v,),) = [[v for v in snap.verdicts if v["dataset_id"] == raw.id]]
    assert v["verdict"] == "no reference"
    assert snap.counts["fail"] == 0
    model.select_stream(key)
    again = model.fetch()
    assert again.stream == key
    assert again.timeline_png.startswith(b"\x89PNG")


def test_model_reads_new_events_incrementally(cat, monkeypatch):
    import spotkit.monitor as monitor

    _flow_events(cat, n=5)
    calls = []
    real = monitor.events

    def counting(*args, **kwargs):
        calls.append(kwargs.get("since"))
        return real(*args, **kwargs)

    monkeypatch.setattr(monitor, "events", counting)
    model = MonitorPanelModel(cat, reread=3600.0)
    first = model.fetch()
    assert first.events == 25
    _flow_events(cat, n=1, t0=time.time() - 30)  # one more dataset, just now
    second = model.fetch()
    assert second.events == 30
    assert len(calls) == 2
    assert calls[1] > calls[0] + 3000  # only the newest events read the second time
    # nothing new: the derived tables are reused (same figure bytes object)
    third = model.fetch()
    assert third.turnaround_png is second.turnaround_png


def test_model_never_writes(tmp_path):
    import sqlite3

    db = tmp_path / "catalog.db"
    open_catalog(db).close()
    with sqlite3.connect(db) as conn:
        for table in ("events", "monitor_alerts", "quality_checks"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    before = db.stat().st_mtime_ns
    with open_catalog(db) as cat:
        snap = MonitorPanelModel(cat).fetch()
    assert (snap.events, snap.alerts, snap.verdicts, snap.streams) == (0, [], [], [])
    assert db.stat().st_mtime_ns == before


def test_view_headless(cat, tmp_path):
    pytest.importorskip("ipywidgets")
    from spotkit.widgets._portal_monitor import MonitorPanel

    _flow_events(cat, n=20)
    panel = MonitorPanel(cat, readonly=True)
    assert panel.title == "Monitor"
    panel.apply(panel.fetch())
    assert "100 events" in panel.summary.value
    assert bytes(panel.turnaround_image.value).startswith(b"\x89PNG")
    assert "queue_wait" in panel.streams.value
    assert len(panel.stream.options) >= 3
    other = panel.stream.options[-1]
    panel.stream.value = other  # chosen: read again in the worker, then drawn
    panel.worker.join()
    assert panel._last.stream == other
    panel.show_dataset("d3")
    assert "d3: no quality verdict" in panel.selected.value
    panel.close()
