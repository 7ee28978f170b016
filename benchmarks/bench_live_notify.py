"""Benchmark: live watchers on PostgreSQL, woken by record_live's NOTIFY vs polling.

A real PostgreSQL (the test suite's throw-away server, tests/_postgres.py, with
``pg_stat_statements`` loaded) and one catalog. Two ways for a watcher
(:func:`spotkit.live.subscribe`) to learn of new points:

* ``listen``: LISTEN on the catalog's live channel (the default on PostgreSQL), with the
  default safety-net read every 5 s;
* ``poll``: ``listen=False``, a read every 0.2 s (the default poll interval, and what
  every watcher did before).

Measured, for each way:

* latency: a subscriber in another process (as a widget in another kernel) with a
  background thread (``Subscription.start``); this process records one point at a time
  with ``record_live`` at random gaps (50-350 ms, so the polls' phase is random); latency
  is the subscriber's clock when the callback got the point minus this process's clock
  when ``record_live`` returned (its commit acknowledged); same host, same clock;
* what the NOTIFY costs ``record_live`` (one point, no watcher): interleaved calls with
  and without its ``pg_notify`` statement (skipped by wrapping the catalog connection's
  ``execute``, here only);
* the load of idle watchers: ``--watchers`` subscriptions (default 20, each with its own
  catalog connection, in one other process) on series that get nothing; the statements
  they make the server run per second (``pg_stat_statements``, over ``--idle-seconds``)
  and the CPU their process uses.

Usage::

    nice python benchmarks/bench_live_notify.py             # ~1 min
    python benchmarks/bench_live_notify.py --points 10 --idle-seconds 3   # smoke
    ... --record        # write the RESULTS.md section
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section
from bench_catalog_search import test_postgres_module

from spotkit.catalog import LivePoint, open_catalog
from spotkit.live import subscribe

MODES = ("listen", "poll")
HEADING = "## Live watchers on PostgreSQL: NOTIFY vs polling"


def p95(values):
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 \
        else values[0]


# -- the other process ------------------------------------------------------------------

def run_subscriber(url: str, series: str, mode: str) -> None:
    """One watcher: print ``frame seen_at`` for each point, flushed, until stdin closes."""
    sub = subscribe(url, series, listen=mode == "listen")

    def seen(points):
        now = time.time()
        sys.stdout.write("".join(f"{p.frame} {now!r}\n" for p in points))
        sys.stdout.flush()

    sub.start(seen)
    time.sleep(1.0)  # the first wait has connected and LISTENs
    print("ready", flush=True)
    sys.stdin.read()
    sub.close()


def run_idle(url: str, series: list[str], mode: str) -> None:
    """Idle watchers, one per series, until stdin closes."""
    subs = [subscribe(url, s, listen=mode == "listen") for s in series]
    for sub in subs:
        sub.start(lambda points: None)
    print("ready", flush=True)
    sys.stdin.read()
    for sub in subs:
        sub.close()


def _child(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise RuntimeError(f"the benchmark's subscriber process did not start: {line!r}")
    return proc


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- measurements -----------------------------------------------------------------------

def latency(cat, url: str, series: str, mode: str, points: int, rng) -> dict:
    proc = _child("--subscriber", url, series, mode)
    seen: dict[int, float] = {}

    def read():
        for line in proc.stdout:
            frame, at = line.split()
            seen.setdefault(int(frame), float(at))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    returned, took = {}, []
    for frame in range(points):
        time.sleep(rng.uniform(0.05, 0.35))
        t0 = time.time()
        cat.record_live(series, [LivePoint(frame, "features", {"score": float(frame)})])
        returned[frame] = time.time()
        took.append(returned[frame] - t0)
    end = time.monotonic() + 10
    while len(seen) < points and time.monotonic() < end:
        time.sleep(0.01)
    proc.stdin.close()
    proc.wait(timeout=30)
    missing = sorted(set(returned) - set(seen))
    if missing:
        raise RuntimeError(f"{mode}: the subscriber never saw frames {missing[:10]}")
    ms = [(seen[f] - returned[f]) * 1000 for f in returned]
    return {"median": statistics.median(ms), "p95": p95(ms), "max": max(ms), "n": len(ms),
            "record_ms": statistics.median(took) * 1000}


def notify_cost(cat, series: str, calls: int) -> dict:
    """record_live of one point with and without its pg_notify statement, interleaved."""
    conn = cat._conn  # benchmark only: the same connection, its notify statement skipped
    real = conn.execute
    skip = [False]

    def execute(sql, params=()):
        if skip[0] and sql.startswith("SELECT pg_notify"):
            return None
        return real(sql, params)

    conn.execute = execute
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for i in range(2 * calls):
            skip[0] = bool(i % 2)
            t = time.perf_counter()
            cat.record_live(series, [LivePoint(i, "features", {"score": 1.0})])
            times[not skip[0]].append((time.perf_counter() - t) * 1000)
    finally:
        del conn.execute
    return {"with": statistics.median(times[True]), "without": statistics.median(times[False])}


def idle_load(admin, url: str, series: list[str], mode: str, seconds: float) -> dict:
    proc = _child("--idle", url, mode, *series)
    time.sleep(2.0)  # connected, listening, past the first reads
    admin.execute("SELECT pg_stat_statements_reset()")
    cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    rows = admin.execute(
        "SELECT query, calls FROM pg_stat_statements WHERE dbid = (SELECT oid FROM "
        "pg_database WHERE datname = current_database()) AND query NOT ILIKE "
        "'%pg_stat_statements%' ORDER BY calls DESC").fetchall()
    wall = time.monotonic() - t0
    cpu = _cpu_seconds(proc.pid) - cpu0
    proc.stdin.close()
    proc.wait(timeout=30)
    calls = sum(r[1] for r in rows)
    return {"qps": calls / wall, "per_watcher": calls / wall / len(series),
            "cpu_pct": 100 * cpu / wall, "top": rows[0][0] if rows else "",
            "seconds": wall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=60, help="points per way (latency)")
    parser.add_argument("--watchers", type=int, default=20, help="idle watchers")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="write the RESULTS.md section")
    parser.add_argument("--subscriber", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--idle", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.subscriber:
        run_subscriber(*args.subscriber)
        return 0
    if args.idle:
        run_idle(args.idle[0], args.idle[2:], args.idle[1])
        return 0

    import psycopg

    load0 = os.getloadavg()[0]
    pg = test_postgres_module()
    server = pg.start_server(settings={"shared_preload_libraries": "pg_stat_statements",
                                       "max_connections": str(2 * args.watchers + 20)})
    try:
        url = server.create_database("bench")
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION pg_stat_statements")
            cat = open_catalog(url)
            cat.bulk_load([{"kind": "saxs/raw", "sample": f"s{i}"}
                           for i in range(args.watchers + len(MODES) + 1)])
            ids = list(cat)
            rng = random.Random(args.seed)
            lat = {m: latency(cat, url, ids[i], m, args.points, rng)
                   for i, m in enumerate(MODES)}  # a series of its own each
            idle = {m: idle_load(admin, url, ids[len(MODES):-1], m, args.idle_seconds)
                    for m in MODES}
            cost = notify_cost(cat, ids[-1], 500)
            cat.close()
    finally:
        server.stop()
    load1 = os.getloadavg()[0]

    lines = [
        f"{HEADING} (`benchmarks/bench_live_notify.py`)", "",
        machine_line(),
        f"- **Load:** load average {load0:.2f} at the start, {load1:.2f} at the end (2 cores "
        "shared with other engineers' work: numbers under load are upper bounds).",
        "- **What:** PostgreSQL 15 (tests/_postgres.py, fsync off), one catalog. `listen`: "
        "`subscribe` LISTENs on the catalog's channel (`record_live` NOTIFYs in its "
        "transaction), safety-net read every 5 s (the default); `poll`: `listen=False`, "
        "a read every 0.2 s (the default poll interval, and what every watcher did before).",
        "", "| | listen (NOTIFY) | poll (0.2 s) |", "|---|---:|---:|",
        f"| record_live commit -> subscriber in another process sees the point: median ms "
        f"({lat['listen']['n']} points each) | {lat['listen']['median']:.1f} | "
        f"{lat['poll']['median']:.1f} |",
        f"| same, p95 ms | {lat['listen']['p95']:.1f} | {lat['poll']['p95']:.1f} |",
        f"| same, max ms | {lat['listen']['max']:.1f} | {lat['poll']['max']:.1f} |",
        f"| record_live (1 point) while that subscriber runs, median ms | "
        f"{lat['listen']['record_ms']:.1f} | {lat['poll']['record_ms']:.1f} |",
        f"| {args.watchers} idle watchers: statements/s the server runs "
        f"(pg_stat_statements, {idle['listen']['seconds']:.0f} s) | "
        f"{idle['listen']['qps']:.1f} | {idle['poll']['qps']:.1f} |",
        f"| per watcher, statements/s | {idle['listen']['per_watcher']:.2f} | "
        f"{idle['poll']['per_watcher']:.2f} |",
        f"| the watchers' process, CPU % of one core | {idle['listen']['cpu_pct']:.1f} | "
        f"{idle['poll']['cpu_pct']:.1f} |",
        "",
        "- Latency is the subscriber's clock when its callback got the point minus the "
        "writer's clock when `record_live` returned (same host): with NOTIFY the read starts "
        "at the commit; polling waits for the next poll (half the interval on average). "
        "An idle listening watcher reads only for its 5 s safety net (the one statement: "
        f"`{idle['poll']['top'][:60]}...`), "
        "and holds one more connection (idle, outside any transaction).",
        f"- The NOTIFY itself (sent on PostgreSQL whether anyone listens or not): "
        f"record_live of one point, no watcher, 500 interleaved calls each: "
        f"{cost['with']:.2f} ms median with its pg_notify statement, {cost['without']:.2f} "
        "ms without (one more round trip in the same transaction; the payload is ~50 "
        "bytes of PostgreSQL's 8000).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        write_section(HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
