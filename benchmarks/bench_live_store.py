"""Benchmark: the live store (catalog points of a series being written, ProfileLog, subscribe).

One live series with ``--points`` points (default 100,000: features of every frame, a
``fit:sphere`` every 10 frames, events and decisions now and then), beside ``--series``
other live series of 1,000 points each, in one catalog (SQLite; ``--backend postgresql``
runs the test suite's throw-away PostgreSQL server, tests/_postgres.py). Filled through
``Catalog.record_live`` in batches of 50 points (one transaction each: the fill times them).

Measured (median and p95 in ms over ``--repeat`` runs):

* a watcher's poll: ``Subscription.poll`` with nothing new, and with one new batch;
* the ``since`` query: ``Catalog.live_points(since=last - 100)`` (the newest 100 frames),
  with and without a kind filter; ``live_changes`` after the newest change; ``live_cursor``;
  ``live_series``;
* references in the same run on the same database: the bare SQL of the since query
  (no JSON decoding: the floor), and what a watcher without change numbers would do
  (read the whole series and keep what is new);
* ``record_live`` of 50 points (one transaction);
* from a ``record_live`` commit to the point in a background ``Subscription`` callback
  (``interval`` 0.05 s and 0.2 s);
* ProfileLog: append + flush per frame (300-point I(q), float64) against plain h5py
  appends to the same layout without SWMR and without flushing (the floor), and a reader
  in another process reading the newest row while the writer appends.

Target (issue 17, team-1205): a watcher's ``since`` query < 10 ms at 100,000 points.

Usage::

    nice python benchmarks/bench_live_store.py                 # SQLite, ~1 min
    nice python benchmarks/bench_live_store.py --backend postgresql
    python benchmarks/bench_live_store.py --points 5000 --repeat 5   # smoke
    ... --record        # write the RESULTS.md section for this backend
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section
from bench_catalog_search import test_postgres_module

from spotkit.catalog import LivePoint, open_catalog
from spotkit.live import ProfileLog, subscribe

TARGET_MS = 10.0
BATCH = 50
NPT = 300


def p95(values):
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 \
        else values[0]


def timed(fn, repeat):
    out = []
    for i in range(repeat):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def series_points(start, stop, rng):
    """The points of frames [start, stop): what spotkit live and the rules record."""
    points = []
    for f in range(start, stop):
        values = {k: float(v) for k, v in zip(
            ("difference", "correlation", "q_peak", "peak_height", "peak_width", "total"),
            rng.random(6), strict=True)}
        values.update(score=float(rng.random()), state="stable")
        points.append(LivePoint(f, "features", values, time_s=f * 0.1,
                                written_at=time.time()))
        if f % 10 == 0:
            points.append(LivePoint(f, "fit:sphere", {"radius": 40 + rng.random(),
                                                      "radius_err": 0.3, "scale": 1e-3,
                                                      "background": 0.01, "chi2": 1.1}))
        if f % 1000 == 500:
            points.append(LivePoint(f, "event", {"onset": f - 3, "end": f, "confidence": 0.97,
                                                 "feature": "q_peak"}))
            points.append(LivePoint(f, "decision:notebook", {"reason": f"onset at {f - 3}",
                                                             "action": "notebook"}))
    return points


def fill(cat, ds, n_points, rng) -> tuple[int, list[float]]:
    """Record points until ``n_points``; returns the frames and the batch times (ms)."""
    frame, total, times = 0, 0, []
    pending: list[LivePoint] = []
    while total < n_points:
        pending += series_points(frame, frame + 10, rng)
        frame += 10
        while len(pending) >= BATCH or (pending and total + len(pending) >= n_points):
            batch, pending = pending[:BATCH], pending[BATCH:]
            t = time.perf_counter()
            cat.record_live(ds, batch, status={"done": batch[-1].frame, "state": "following"})
            times.append((time.perf_counter() - t) * 1000)
            total += len(batch)
    return frame, times


def open_backend(args):
    if args.backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="spotkit-bench-live-"))
        return folder / "catalog.db", None, folder
    pg = test_postgres_module()
    server = pg.start_server(settings={"shared_buffers": "256MB"})
    return server.create_database("live"), server, Path(tempfile.mkdtemp(prefix="spotkit-bl-"))


def bare_since(url, ds, since):
    """The since query in bare SQL on its own connection (no JSON decoding)."""
    sql = ("SELECT frame, kind, payload, time_s, written_at, recorded_at FROM live_points "
           "WHERE dataset_id = {p} AND frame > {p} ORDER BY frame, seq")
    if str(url).startswith("postgresql://"):
        import psycopg

        conn = psycopg.connect(url, autocommit=True)
        return lambda s: conn.execute(sql.format(p="%s"), (ds, s)).fetchall(), conn.close
    import sqlite3

    conn = sqlite3.connect(url)
    return lambda s: conn.execute(sql.format(p="?"), (ds, s)).fetchall(), conn.close


def measure_catalog(args, url):
    rng = np.random.default_rng(args.seed)
    rows = []
    with open_catalog(url) as cat:
        n_series = args.series + 1
        cat.bulk_load([{"kind": "saxs/raw", "sample": f"film {i}", "beamline": "7.3.3",
                        "start_time": 1.76e9 + i} for i in range(n_series)])
        ids = list(cat)
        ds, others = ids[0], ids[1:]
        t = time.perf_counter()
        frames, batch_ms = fill(cat, ds, args.points, rng)
        fill_s = time.perf_counter() - t
        for other in others:
            fill(cat, other, 1000, rng)
        if cat.backend == "postgresql":
            from spotkit.catalog._backend import connect_postgres

            conn = connect_postgres(url)
            conn.execute("ANALYZE live_points")
            conn.close()
        n = len(cat.live_points(ds))
        print(f"{cat.backend}: {n:,} points in the series ({frames:,} frames), filled in "
              f"{fill_s:.1f} s; {args.series} other series")
        k = args.repeat
        last = cat.live_cursor(ds)

        def since(i, kinds=None):
            got = cat.live_points(ds, since=last - 100 - (i % 7), kinds=kinds)
            assert len(got) >= 100

        rows.append(("live_points(since=last-100): the newest 100 frames (~112 points)",
                     timed(since, k), "yes"))
        rows.append(("live_points(since=last-100, kinds='features')",
                     timed(lambda i: since(i, "features"), k), "yes"))
        bare, close = bare_since(url, ds, last - 100)
        rows.append(("reference: the same since query, bare SQL, no JSON decoding",
                     timed(lambda i: bare(last - 100 - (i % 7)), k), ""))
        close()
        _, newest = cat.live_changes(ds)
        rows.append(("live_changes(after=newest): nothing new",
                     timed(lambda i: cat.live_changes(ds, after=newest), k), "yes"))
        sub = subscribe(cat, ds, since=last)
        sub.poll()
        rows.append(("Subscription.poll(): nothing new", timed(lambda i: sub.poll(), k),
                     "yes"))
        new_frames = iter(range(frames, frames + 10 * k * BATCH))
        poll_new, record = [], []
        for _ in range(k):
            batch = [LivePoint(next(new_frames), "features", {"score": 0.5, "state": "stable"})
                     for _ in range(BATCH)]
            t = time.perf_counter()
            cat.record_live(ds, batch)
            record.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            got = sub.poll()
            poll_new.append((time.perf_counter() - t) * 1000)
            assert len(got) == BATCH
        rows.append(("Subscription.poll(): one new batch (50 points)", poll_new, "yes"))
        rows.append((f"reference: a watcher without change numbers (read all {n:,}, keep "
                     "the new)", timed(lambda i: cat.live_points(ds), max(3, k // 10)), ""))
        rows.append(("live_cursor(ds)", timed(lambda i: cat.live_cursor(ds), k), "yes"))
        rows.append((f"live_series() ({n_series} live series)",
                     timed(lambda i: cat.live_series(), k), "yes"))
        rows.append(("record_live: 50 points, one transaction (during the fill)",
                     batch_ms, ""))
        rows.append(("record_live: 50 points, one transaction (at 100k)", record, ""))
        for interval in (0.05, 0.2):
            rows.append((f"record_live commit -> background subscriber callback "
                         f"(interval {interval} s)", latency(cat, ds, interval, k), ""))
        sub.close()
    return rows, n, fill_s


def latency(cat, ds, interval, k):
    """From a record_live commit to the points in a background subscriber's callback, on
    a second catalog connection (as a widget's)."""
    got = threading.Event()
    sub = subscribe(cat.url, ds, since=cat.live_cursor(ds), interval=interval)
    sub.poll()
    sub.start(lambda points: got.set())
    out = []
    start = cat.live_cursor(ds) + 1
    for i in range(k):
        got.clear()
        time.sleep(interval * ((i * 0.37) % 1))  # not in step with the poller
        cat.record_live(ds, [LivePoint(start + i, "features", {"score": 0.1})])
        t = time.perf_counter()
        got.wait(10)
        out.append((time.perf_counter() - t) * 1000)
    sub.close()
    return out


_READER = textwrap.dedent("""
    import sys, time
    from spotkit.live import ProfileLog
    log = ProfileLog.open(sys.argv[1])
    log.read(last=1)  # imports xarray: not timed
    times, rows = [], 0
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        t = time.perf_counter()
        ds = log.read(last=1)
        times.append((time.perf_counter() - t) * 1000)
        rows = max(rows, int(ds.frame.values[-1]) + 1 if ds.sizes["frame"] else 0)
        time.sleep(0.01)
    times.sort()
    print(len(times), times[len(times) // 2], times[int(len(times) * 0.95)], rows)
""")


def measure_profile_log(folder, n_rows):
    import h5py

    rng = np.random.default_rng(1)
    rows = rng.random((n_rows, NPT))
    q = np.linspace(0.05, 3.0, NPT)
    path = folder / "series.profiles.h5"
    log = ProfileLog(path, q)
    log.append(0, rows[0], rows[0])
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(path), "4"],
                              stdout=subprocess.PIPE, text=True)
    t0, spent = time.perf_counter(), 0.0
    for i in range(1, n_rows):
        t = time.perf_counter()
        log.append(i, rows[i], rows[i])
        spent += time.perf_counter() - t
        if time.perf_counter() - t0 < 4:
            time.sleep(0.002)  # the reader reads for 4 s while the writer appends
    ours = spent / (n_rows - 1) * 1000
    log.close()
    out = reader.communicate(timeout=60)[0].split()
    size = path.stat().st_size
    ref = folder / "plain.h5"
    t = time.perf_counter()
    with h5py.File(ref, "w") as f:
        ii = f.create_dataset("i", (0, NPT), maxshape=(None, NPT), chunks=(27, NPT), dtype="f8")
        ss = f.create_dataset("s", (0, NPT), maxshape=(None, NPT), chunks=(27, NPT), dtype="f8")
        fr = f.create_dataset("f", (0,), maxshape=(None,), chunks=(4096,), dtype="i8")
        for i in range(n_rows):
            for d, v in ((ii, rows[i]), (ss, rows[i])):
                d.resize(i + 1, axis=0)
                d[i] = v
            fr.resize((i + 1,))
            fr[i] = i
    plain = (time.perf_counter() - t) / n_rows * 1000
    t = time.perf_counter()
    with ProfileLog(path, q) as again:
        reopen = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        again.truncate(after_frame=n_rows - 101)
        cut = (time.perf_counter() - t) * 1000
    return {"append_ms": ours, "plain_ms": plain, "size_mb": size / 1e6, "rows": n_rows,
            "reads": int(out[0]), "read_med": float(out[1]), "read_p95": float(out[2]),
            "reader_rows": int(out[3]), "reopen_ms": reopen, "truncate_ms": cut}


def report(args, rows, n, fill_s, prof, load):
    lines = [f"| query ({n:,} points in the series) | runs | median ms | p95 ms | "
             f"target < {TARGET_MS:g} ms |", "|---|---:|---:|---:|---|"]
    for name, values, check in rows:
        med = statistics.median(values)
        ok = "" if not check else ("yes" if med < TARGET_MS else "**no**")
        lines.append(f"| {name} | {len(values)} | {med:.2f} | {p95(values):.2f} | {ok} |")
    analyze = "; ANALYZE after the fill" if args.backend == "postgresql" else ""
    since_med = statistics.median(rows[0][1])
    bare_med = statistics.median(rows[2][1])
    text = [f"## Live store on {args.backend} (`benchmarks/bench_live_store.py"
            f"{' --backend postgresql' if args.backend == 'postgresql' else ''}`)", "",
            machine_line(),
            f"- **Load:** {load}",
            f"- **What:** one live series of {n:,} points (features of every frame, a "
            f"`fit:sphere` every 10 frames, events and decisions) beside {args.series} other "
            f"live series of 1,000 points, filled with `record_live` in batches of {BATCH} "
            f"({fill_s:.0f} s){analyze}. "
            "References in the same run, on the same database: the bare SQL of the since "
            "query, and a watcher without change numbers.", "", *lines, "",
            f"- The since query costs {since_med / bare_med:.1f}x its bare SQL (building "
            "LivePoints from JSON).",
            f"- ProfileLog ({prof['rows']:,} rows of {NPT} points, float64 I and sigma, "
            f"{prof['size_mb']:.0f} MB): append + flush {prof['append_ms']:.3f} ms per frame "
            f"(SWMR) vs {prof['plain_ms']:.3f} ms for plain h5py appends without SWMR nor "
            f"flush (ratio {prof['append_ms'] / prof['plain_ms']:.1f}x); a reader in another "
            f"process read the newest row {prof['reads']} times while it was written: median "
            f"{prof['read_med']:.2f} ms, p95 {prof['read_p95']:.2f} ms (it saw "
            f"{prof['reader_rows']:,} rows); reopening after the writer closed "
            f"{prof['reopen_ms']:.1f} ms, truncate of 100 rows {prof['truncate_ms']:.1f} ms."]
    return "\n".join(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--series", type=int, default=9)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--profile-rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="write the RESULTS.md section")
    args = parser.parse_args(argv)
    load0 = os.getloadavg()[0]
    url, server, folder = open_backend(args)
    try:
        rows, n, fill_s = measure_catalog(args, url)
    finally:
        if server is not None:
            server.stop()
    prof = measure_profile_log(folder, args.profile_rows)
    load = (f"2 cores shared with other engineers' work; load average {load0:.2f} at the "
            f"start, {os.getloadavg()[0]:.2f} at the end. Numbers under such load are upper "
            "bounds.")
    text = report(args, rows, n, fill_s, prof, load)
    print(text)
    if args.record:
        write_section(f"## Live store on {args.backend}", text)


if __name__ == "__main__":
    main()
