"""Benchmark: the live timeline (``spotkit.widgets.LiveTimeline``), end to end.

Two parts (``--parts``, both by default):

* ``latency``: the twin writes a series in real time in its own process
  (``spotkit.sim.LiveSeriesWriter``, HDF5 with SWMR), ``spotkit live`` follows it in a
  subprocess, and this process shows it in a ``LiveTimeline`` (headless ipywidgets, the
  default ``refresh=0.5`` s, its own daemon thread as in JupyterLab). Latency of frame k =
  the time the timeline's picture first includes frame k (the moment the new PNG is set on
  the widget) minus the time the writer finished writing frame k (one machine, one clock).
  The reference, measured in the same run on the same series: a bare watcher
  (``spotkit.live.subscribe(..., kinds="features")``, polling every 0.2 s) noting when it
  first reads each frame's point. Target (issue 17): median < 1 s from written to the live
  timeline.
* ``render``: what one redraw costs as the series grows (1,000, 10,000 and 36,000 frames:
  the 3-day series of DEDUCE at about one frame per 7 s), with a change every 500 frames,
  a fit every 10 frames and the flagged frames, in ``LiveTimelineModel`` + the view's
  ``render`` (both figures, PNG bytes).

    python benchmarks/bench_live_timeline.py [--parts latency render] [--record]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _results import machine_line, write_section

HEADING = "## Live timeline: written -> drawn, and redraw cost (bench_live_timeline.py)"
# detector shape, module shape, gap, frame interval (s), frames: bench_live's 10 Hz series
SETUP = ((195, 487), (95, 239), (5, 9), 0.1, 150)


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def _write_series(path, queue) -> None:
    """The detector (its own process): frame 0 first, then the rest in real time."""
    from spotkit.sim import LiveSeriesWriter

    shape, module, gap, interval, n = SETUP
    writer = LiveSeriesWriter(path, n_frames=n, frame_interval_s=interval, shape=shape,
                              module_shape=module, module_gap=gap, seed=7)
    writer.write(1)
    queue.put("ready")
    queue.get()  # the session is up (frame 0's point is readable)
    writer.start()
    writer.wait()
    queue.put(list(writer.frame_times))
    writer.close()


def _series_id(cat, path: Path, deadline: float) -> str | None:
    while time.monotonic() < deadline:
        for entry in cat.live_series(active=None):
            if entry.get("path") == str(path):
                return entry["dataset_id"]
        time.sleep(0.05)
    return None


def latency(args) -> str:
    import multiprocessing as mp
    import subprocess
    import tempfile

    from spotkit.catalog import open_catalog
    from spotkit.live import subscribe
    from spotkit.widgets import LiveTimeline

    shape, _, _, interval, n = SETUP
    load0 = _load()
    work = Path(tempfile.mkdtemp(prefix="bench_live_timeline_"))
    path, catalog_path = work / "series.h5", work / "catalog.db"
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    writer = ctx.Process(target=_write_series, args=(path, queue))
    writer.start()
    assert queue.get(timeout=120) == "ready"
    log = open(work / "live.log", "w")
    session = subprocess.Popen([str(Path(sys.executable).with_name("spotkit")), "live",
                                str(path), "--catalog", str(catalog_path), "--idle-timeout",
                                "20", "--every", "60"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + n * interval + 180
    while not catalog_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    cat = open_catalog(catalog_path, create=False)
    dataset_id = _series_id(cat, path, deadline)
    assert dataset_id is not None, f"no live series for {path}: see {work / 'live.log'}"

    read: dict[int, float] = {}  # the reference: a bare subscribe watcher
    drawn: dict[int, float] = {}  # the timeline's picture
    sub = subscribe(cat, dataset_id, kinds="features")

    def watch() -> None:
        while len(read) < n and time.monotonic() < deadline:
            for p in sub.wait(timeout=1.0):
                read.setdefault(p.frame, time.time())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    view = LiveTimeline(cat, dataset_id)  # refresh=0.5: the default

    def on_picture(_change) -> None:  # a new picture: every frame in the model is on it
        now = time.time()
        for k in view.model.frames:
            drawn.setdefault(int(k), now)

    view.timeline.observe(on_picture, names="value")
    while 0 not in drawn and time.monotonic() < deadline:
        time.sleep(0.02)
    queue.put("go")  # frames 1.. in real time
    frame_times = queue.get(timeout=n * interval + 120)
    while len(drawn) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.join(timeout=30)
    renders, render_s = view.renders, view.render_seconds
    view.close()
    sub.close()
    writer.join(timeout=60)
    try:
        session.wait(timeout=60)
    except subprocess.TimeoutExpired:
        session.terminate()
        session.wait(timeout=30)
    log.close()
    cat.close()

    def stats(seen: dict[int, float]) -> tuple[str, np.ndarray]:
        lat = np.array([seen[k] - frame_times[k] for k in range(1, len(frame_times))
                        if k in seen])
        missing = len(frame_times) - 1 - lat.size
        return (f"{np.median(lat):.3f} | {np.percentile(lat, 95):.3f} | {lat.max():.3f} | "
                f"{missing}", lat)

    ref, ref_lat = stats(read)
    tl, tl_lat = stats(drawn)
    verdict = "meets" if np.median(tl_lat) < 1.0 else "MISSES"
    text = "\n".join([
        "### Latency: frame written -> drawn on the LiveTimeline\n",
        f"The twin writes {n} frames of {shape[0]} x {shape[1]} at {1 / interval:g} Hz "
        "(its own process, HDF5 SWMR); `spotkit live` follows it (a subprocess); this process "
        "shows it in a `LiveTimeline` (default refresh 0.5 s; a redraw starts at least twice "
        "its duration after the last one started, at most 1 s after; the I(q) figure at most "
        "every 2 s unless a fit came) and, as "
        "the reference in the same run, a bare `subscribe` watcher (0.2 s polls). Frame 0 "
        "(the session's set-up) is left out. Load average "
        f"{load0} at the start, {_load()} at the end (2 cores; the benchmark ran under "
        f"`nice`); {renders} redraws, the last took {render_s:.3f} s.",
        "",
        "| watcher | median s | p95 s | max s | frames never seen |",
        "|---|---:|---:|---:|---:|",
        f"| `subscribe` (reference: the point readable) | {ref} |",
        f"| `LiveTimeline` (the point drawn) | {tl} |",
        "",
        f"Target median < 1 s from written to the live timeline: {verdict} it "
        f"({np.median(tl_lat):.2f} s; the timeline adds "
        f"{np.median(tl_lat) - np.median(ref_lat):+.2f} s to the reference's median: its "
        "0.5 s poll and the redraw).",
        "",
    ])
    print(text, flush=True)
    return text


def render(args) -> str:
    import pathlib
    import tempfile

    from spotkit.catalog import LivePoint, open_catalog
    from spotkit.widgets import LiveTimeline

    rng = np.random.default_rng(0)
    cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    rows = []
    for n in (1000, 10000, 36000):
        view = LiveTimeline(cat, "bench", autostart=False)
        t0 = time.perf_counter()
        view.model.ingest([LivePoint(k, "features", {
            "difference": float(rng.normal(1.0, 0.1) + (50.0 if k % 500 < 4 else 0.0)),
            "band_difference_max": float(rng.normal(1.0, 0.1)), "intensity_mean": 100.0,
            "score": float(rng.normal()), "state": "watching", "flagged": int(k % 500 < 4)})
            for k in range(n)])
        view.model.ingest([LivePoint(k, "fit:sphere", {"radius": 5.0 + k / n, "radius_err":
                                                       0.01, "scale": 1.0, "scale_err": 0.01,
                                                       "chi2": 1.0}) for k in range(0, n, 10)])
        view.model.ingest([LivePoint(k + 4, "event", {"onset": k, "end": k + 3,
                                                      "confidence": 0.99,
                                                      "feature": "difference"})
                           for k in range(0, n, 500)])
        ingest = time.perf_counter() - t0
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            view.render()
            times.append(time.perf_counter() - t0)
        view.close()
        rows.append(f"| {n:,} | {len(view.model.events)} | {n // 10:,} | {ingest:.3f} | "
                    f"{times[0]:.3f} | {np.median(times[1:]):.3f} |")
    cat.close()
    text = "\n".join([
        "### Redraw cost as the series grows\n",
        "One `LiveTimeline` over points given to its model (no catalog read): the time to add "
        "them (`LiveTimelineModel.ingest`) and to redraw (`render`: the timeline and the I(q) "
        f"figures to PNG; first and median of the next four). Load average {_load()}.",
        "",
        "| frames | onsets | fits | ingest s | first redraw s | redraw s (median) |",
        "|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ])
    print(text, flush=True)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["latency", "render"],
                        choices=["latency", "render"])
    parser.add_argument("--record", action="store_true",
                        help=f"write the results to benchmarks/RESULTS.md ({HEADING!r})")
    args = parser.parse_args()
    parts = [{"latency": latency, "render": render}[p](args) for p in args.parts]
    if args.record:
        write_section(HEADING, "\n".join([HEADING, "", machine_line(), "", *parts]))


if __name__ == "__main__":
    main()
