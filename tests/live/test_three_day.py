"""Three days of beamtime in seconds: the twin writes 2000 frames (one every 130 s of
acquisition time: 72 h) in scaled real time, with four changes of the sample and two
detector pauses, faster than ``spotkit live`` follows it; ``spotkit live`` is SIGKILLed in
the middle and started again. Every change is found at its onset and confirmed within the
detector's stated delay, no other change is reported, the reduction factor is reported, and
every frame is recorded exactly once (catalog points, frame marks and I(q) rows)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from spotkit.catalog import open_catalog
from spotkit.change import OnlineDetector, reduction_policy
from spotkit.live import ProfileLog
from spotkit.sim import LiveSeriesWriter, Transition

N = 2000
HOURS = 72
#: the sample: spheres grow (a ramp), a peak appears (a step), it shifts, the spheres grow
CHANGES = (Transition(380, "radius_nm", 6.5, over=4), Transition(820, "peak_amplitude", 40.0),
           Transition(1300, "peak_q_nm", 1.9, over=3), Transition(1700, "radius_nm", 8.0))
#: the detector pauses twice (after these frames, for these acquisition seconds)
PAUSES = ((600, 4 * 3600.0), (1500, 2 * 3600.0))
#: wall seconds per acquisition second: 72 h of frames in ~5 s plus the pauses
TIME_SCALE = 5.0 / (HOURS * 3600)


def _series(db, path):
    with open_catalog(db) as cat:
        return [s for s in cat.live_series(active=None) if s.get("path") == str(path)]


def _live(path, db):
    cmd = [sys.executable, "-m", "spotkit.cli", "live", str(path), "--catalog", str(db),
           "--idle-timeout", "20", "--every", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


@pytest.mark.slow
def test_three_days_with_a_kill(tmp_path):
    writer = LiveSeriesWriter(tmp_path / "three_days.h5", n_frames=N,
                              frame_interval_s=HOURS * 3600 / N, shape=(48, 64),
                              module_shape=None, transitions=CHANGES, pauses=PAUSES,
                              time_scale=TIME_SCALE, seed=11)
    truth = writer.truth
    db = tmp_path / "catalog.db"
    first = _live(writer.path, db)
    writer.start()
    killed_at = -1
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None:
            series = _series(db, writer.path) if db.exists() else []
            killed_at = int(series[0].get("last_frame", -1)) if series else -1
            if killed_at >= 900:  # after two changes, with the writer still going
                break
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert 900 <= killed_at < N - 1, first.stdout.read()
    second = _live(writer.path, db)  # started again on the same series
    try:
        out, _ = second.communicate(timeout=120)
    finally:
        second.kill()
    assert writer.wait(30)
    assert second.returncode == 0, out
    assert "resuming" in out

    (series,) = _series(db, writer.path)
    ds = series["dataset_id"]
    with open_catalog(db) as cat:
        features = cat.live_points(ds, kinds="features")
        events = cat.live_points(ds, kinds="event")
        marks = cat.frame_marks(ds)
    # no frame lost, none counted twice: points, marks and I(q) rows
    assert [p.frame for p in features] == list(range(N))
    assert [m["frame"] for m in marks] == list(range(N))
    with ProfileLog.open(series["profile_log"]) as log:
        assert np.array_equal(log.frames, np.arange(N))
    # every change found at its onset, confirmed within the detector's stated delay (the
    # alarm by the end of the change, confirmed `confirm` frames later), nothing else
    confirm = OnlineDetector().confirm
    assert len(events) == len(CHANGES), [(e.frame, e.values["onset"]) for e in events]
    for change, event in zip(CHANGES, events, strict=True):
        assert abs(event.values["onset"] - change.frame) <= 1, (change, event.values)
        assert event.frame - change.end <= confirm, (change, event.frame)
    assert [p.frame for p in features if p.values.get("state") == "warmup"][:1] == [0]
    # the reduction factor: reported, and what the reduction policy gives for the changes
    plan = reduction_policy([(e.values["onset"], e.values["end"]) for e in events],
                            n_frames=N)
    assert series["reduction_factor"] == pytest.approx(plan.reduction_factor)
    assert series["reduction_factor"] > 5
    assert series["state"] == "finished"
    assert series.get("ingested_as")
    assert truth.onset_frames == tuple(c.frame for c in CHANGES)
