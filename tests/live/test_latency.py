"""Latency of the live path: a frame written by the twin -> its point read by a watcher.

The twin writes a Pilatus 100K series in real time (10 frames/s, HDF5 with SWMR), a
LiveSession follows it in its own thread with its own catalog connection, and this test
watches the catalog with ``spotkit.live.subscribe`` as a LiveTimeline does. Issue 17's
target: median latency from a frame written to its point on the timeline under 1 s.
(benchmarks/bench_live.py measures the same with the detector, ``spotkit live`` and the
watcher in three processes, and on Pilatus 2M frames.)
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from spotkit.catalog import open_catalog
from spotkit.live import LiveSession, subscribe
from spotkit.sim import LiveSeriesWriter

pytestmark = pytest.mark.slow

N = 40
INTERVAL_S = 0.1


def test_each_frame_reaches_a_watcher_within_a_second(tmp_path):
    writer = LiveSeriesWriter(tmp_path / "series.h5", n_frames=N, frame_interval_s=INTERVAL_S,
                              shape=(195, 487), seed=5)
    writer.write(1)  # frame 0: the session sets itself up on it (pyFAI's table, catalog)
    db = tmp_path / "catalog.db"
    open_catalog(db).close()
    statuses = []

    def follow():
        with LiveSession(writer.path, catalog=db) as live:
            statuses.append(live.run(idle_timeout=10))

    session = threading.Thread(target=follow, daemon=True)
    session.start()
    cat = open_catalog(db)
    deadline = time.monotonic() + 60
    dataset_id = None
    while dataset_id is None and time.monotonic() < deadline:
        series = [s for s in cat.live_series(active=None) if s.get("path") == str(writer.path)]
        dataset_id = series[0]["dataset_id"] if series else None
        time.sleep(0.05)
    assert dataset_id is not None, "the session never registered the series"

    seen: dict[int, float] = {}
    delivered: list[int] = []
    with subscribe(cat, dataset_id, kinds="features", interval=0.2) as sub:
        while len(seen) < N and time.monotonic() < deadline:
            for point in sub.wait(timeout=1.0):
                delivered.append(point.frame)
                seen.setdefault(point.frame, time.time())
                if point.frame == 0 and not writer.running and writer.written == 1:
                    writer.start()  # frames 1.. in real time, once the session is up
    assert writer.wait(timeout=30)
    session.join(timeout=30)
    cat.close()

    assert sorted(seen) == list(range(N)), "a frame never reached the watcher"
    assert sorted(delivered) == list(range(N)), "a frame was delivered twice"
    assert len(statuses) == 1
    assert statuses[0].done == N
    assert statuses[0].behind == 0
    latency = np.array([seen[k] - writer.frame_times[k] for k in range(1, N)])
    assert np.all(latency > 0)
    median, p95 = float(np.median(latency)), float(np.percentile(latency, 95))
    assert median < 1.0, f"median latency {median:.2f} s (p95 {p95:.2f} s)"
    assert p95 < 3.0, f"p95 latency {p95:.2f} s (median {median:.2f} s)"
