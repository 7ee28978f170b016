"""Benchmark: concurrent ingest into one catalog from 8 processes, SQLite and PostgreSQL.

Writes ``--files`` small simulated tomography scans (``spotkit.sim.simulate_tomo_scan``,
Data Exchange HDF5, ~34 kB each, every one with its own content, sample and start time),
then, for each backend, ingests them with the real :meth:`Catalog.ingest` (metadata read
through ``spotkit.io``, sha256 of the file, one write transaction) into a fresh catalog:

1. **1 process** ingests every file (the reference, same run);
2. **8 processes, disjoint lists**: each ingests its eighth of the files;
3. **8 processes, overlapping lists**: each is given ``--overlap`` eighths (by default all
   eight: every file is offered to every process, each in its own shuffled order), so the
   same file is ingested by several processes at the same moment (idempotency under
   concurrency).

Worker processes (``spawn``) import spotkit, open the catalog and read one file's
metadata (the readers' imports; nothing is written) first, then wait at a barrier; the
clock runs from the barrier until the last worker is done. Throughput is catalogued
datasets per second (and ``ingest`` calls per second), with the ratio to the single
process.

Each run is checked: the number of datasets equals the number of distinct files; no path
has two file rows or two datasets; dataset ids are unique; every file is catalogued with
its own sha256 (hashed again here); every process that ingested a file got the id of
that file's one dataset; no ingest call failed (a failure is counted and shown, not hidden).

PostgreSQL: a throw-away server from ``tests/_postgres.py`` (initdb in a temporary
folder, free port; ``fsync=off``, as in the tests) unless ``--pg-url`` names a server
(each run then creates its own database there and drops it afterwards: CREATEDB needed).
SQLite: a WAL catalog file in a temporary folder on the local disk.

Runtime on a 2-core machine: about 1-2 minutes with the defaults (480 files, overlap 8:
~4,900 ingest calls per backend); ``--files 80`` takes ~20 s. Run it under ``nice`` on a
shared machine; with 2 cores, 8 processes cannot be 8x faster than one: the ratio shows
how much of the machine concurrent writers use, and that they stay correct.

Usage::

    nice python benchmarks/bench_catalog_ingest.py                   # both backends
    nice python benchmarks/bench_catalog_ingest.py --backend sqlite --files 80
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import multiprocessing as mp
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ["lysozyme", "silica", "bone", "battery", "concrete", "basalt", "foam", "wood"]


def test_postgres_module():
    """tests/_postgres.py (the test suite's throw-away PostgreSQL server), imported by path."""
    spec = importlib.util.spec_from_file_location("spotkit_bench_postgres",
                                                  ROOT / "tests" / "_postgres.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def make_files(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` small, distinct Data Exchange scans (~34 kB each)."""
    from spotkit.sim import simulate_tomo_scan

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    paths = []
    for i in range(count):
        path = folder / f"beamtime_{i // 100:02d}" / f"scan_{i:05d}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        simulate_tomo_scan(path, shape=(8, 2, 32), n_flats=2, n_darks=2, seed=seed + i,
                           sample=f"{SAMPLES[i % len(SAMPLES)]}-{i:05d}",
                           proposal=f"ALS-{10_000 + i % 37}",
                           start_time=t0 + dt.timedelta(minutes=7 * i))
        paths.append(path)
    return paths


def worker(url: str, paths: list[str], barrier, results) -> None:
    """Ingest ``paths`` in order into the catalog at ``url``; report (path, id) pairs."""
    from spotkit import io
    from spotkit.catalog import open_catalog

    done, failed = [], []
    try:
        cat = open_catalog(url)
        io.read_metadata(paths[0])  # warm: the readers' imports, not timed (nothing written)
    except Exception:  # reported to the parent, which fails the run
        barrier.abort()
        results.put((os.getpid(), [], [("open", traceback.format_exc())], 0.0))
        return
    barrier.wait()
    t = time.perf_counter()
    for path in paths:
        try:
            done.append((path, cat.ingest(path).id))
        except Exception as exc:  # every failure is counted by the parent
            failed.append((path, f"{type(exc).__name__}: {exc}"))
    busy = time.perf_counter() - t
    cat.close()
    results.put((os.getpid(), done, failed, busy))


def run_scenario(url: str, lists: list[list[str]]) -> dict:
    """Run one process per list at once; return wall time and what each process got."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(lists) + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, paths, barrier, results)) for paths in lists]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=300)  # every worker has imported spotkit and opened the catalog
    t = time.perf_counter()
    reports = [results.get(timeout=3600) for _ in procs]
    wall = time.perf_counter() - t
    for proc in procs:
        proc.join(timeout=60)
    return {"wall": wall, "reports": reports}


def check(url: str, files: list[Path], digests: dict[str, str], reports: list) -> dict:
    """Count lost and duplicated datasets in the catalog after a run."""
    from spotkit.catalog import open_catalog

    wanted = {str(p) for p in files}
    with open_catalog(url) as cat:
        ids = list(cat)
        records = [(path, ds.id, ds.files[0].sha256) for ds_id in ids
                   for ds in [cat[ds_id]] for path in [str(ds.files[0].path)]]
    by_path: dict[str, list[str]] = {}
    for path, ds_id, _ in records:
        by_path.setdefault(path, []).append(ds_id)
    got = {}
    for _, done, _, _ in reports:
        for path, ds_id in done:
            got.setdefault(path, set()).add(ds_id)
    failed = [f for _, _, fails, _ in reports for f in fails]
    return {
        "datasets": len(ids),
        "unique ids": len(set(ids)),
        "unique paths": len(by_path),
        "lost": len(wanted - set(by_path)),
        "duplicated": sum(len(v) - 1 for v in by_path.values()),
        "foreign": len(set(by_path) - wanted),
        "bad sha256": sum(1 for path, _, sha in records if digests.get(path) != sha),
        # a process was handed an id that is not its file's one dataset
        "wrong id": sum(1 for path, seen in got.items() if seen != set(by_path.get(path, ()))),
        "failed calls": len(failed),
        "first failure": failed[0][1] if failed else "",
    }


def bench_backend(name: str, new_catalog, drop_catalog, files: list[Path], digests,
                  args) -> list[dict]:
    """The three scenarios on fresh catalogs made by ``new_catalog()`` (returns a URL),
    removed by ``drop_catalog(url)`` once checked."""
    rng = random.Random(args.seed)
    paths = [str(p) for p in files]
    eighths = [paths[i :: args.processes] for i in range(args.processes)]
    overlapping = []
    for i in range(args.processes):
        mine = [p for k in range(args.overlap) for p in eighths[(i + k) % args.processes]]
        rng.shuffle(mine)
        overlapping.append(mine)
    scenarios = [
        ("1 process", [paths]),
        (f"{args.processes} processes, disjoint lists", eighths),
        (f"{args.processes} processes, overlapping lists (each file offered "
         f"{args.overlap}x)", overlapping),
    ]
    rows = []
    for label, lists in scenarios:
        url = new_catalog()
        out = run_scenario(url, lists)
        result = check(url, files, digests, out["reports"])
        drop_catalog(url)
        calls = sum(len(x) for x in lists)
        row = {"backend": name, "scenario": label, "processes": len(lists), "calls": calls,
               "wall": out["wall"], "datasets/s": result["datasets"] / out["wall"],
               "calls/s": calls / out["wall"], **result}
        rows.append(row)
        print(f"{name:10s} {label:60s} {out['wall']:7.2f} s {row['datasets/s']:8.1f} ds/s "
              f"{row['calls/s']:8.1f} calls/s lost {result['lost']} dup {result['duplicated']} "
              f"wrong id {result['wrong id']} failed {result['failed calls']} "
              f"{result['first failure'][:200]}", flush=True)
    for row in rows:
        row["ratio"] = row["datasets/s"] / rows[0]["datasets/s"]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Runtime (2 cores): ~1-2 min with the defaults; --files 80: ~20 s. "
               "See the module docstring for what is checked.")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--files", type=int, default=480,
                        help="simulated scans to ingest (default 480, ~34 kB each)")
    parser.add_argument("--processes", type=int, default=8, help="concurrent writers (8)")
    parser.add_argument("--overlap", type=int, default=8,
                        help="in the overlapping run, how many eighths of the files each "
                        "process is given (default 8: all of them)")
    parser.add_argument("--pg-url", help="a PostgreSQL server (URL of any database there) "
                        "instead of a throw-away one; each run creates its own database")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 1 <= args.overlap <= args.processes:
        parser.error(f"--overlap must be between 1 and --processes ({args.processes})")

    load = os.getloadavg()
    print(f"python {platform.python_version()}, nproc {os.cpu_count()}, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start", flush=True)
    work = Path(tempfile.mkdtemp(prefix="spotkit-bench-ingest-"))
    server = None
    rows: list[dict] = []
    try:
        t = time.perf_counter()
        files = make_files(work / "inbox", args.files, args.seed)
        digests = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        print(f"wrote {len(files)} scans in {time.perf_counter() - t:.1f} s", flush=True)
        if args.backend in ("sqlite", "both"):
            counter = iter(range(10**6))

            def drop_file(path: str) -> None:
                for suffix in ("", "-wal", "-shm"):
                    Path(path + suffix).unlink(missing_ok=True)

            rows += bench_backend("SQLite", lambda: str(work / f"catalog_{next(counter)}.db"),
                                  drop_file, files, digests, args)
        if args.backend in ("postgresql", "both"):
            pg = test_postgres_module()
            if args.pg_url:
                admin_url = args.pg_url

                def new_database() -> str:
                    import uuid

                    import psycopg

                    name = f"bench_ingest_{uuid.uuid4().hex[:10]}"
                    with psycopg.connect(admin_url, autocommit=True) as conn:
                        conn.execute(f'CREATE DATABASE "{name}"')
                    return admin_url.rsplit("/", 1)[0] + "/" + name

                def drop_database(url: str) -> None:
                    import psycopg

                    with psycopg.connect(admin_url, autocommit=True) as conn:
                        name = url.rsplit("/", 1)[1]
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                reason = pg.skip_reason()
                if reason:
                    raise SystemExit(f"cannot start a PostgreSQL server: {reason}")
                server = pg.start_server()
                new_database, drop_database = server.create_database, server.drop_database
            rows += bench_backend("PostgreSQL", new_database, drop_database, files, digests,
                                  args)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print("| backend | run | ingest calls | wall s | datasets/s | calls/s | × 1 process | "
          "datasets | lost | duplicated | wrong id | failed calls |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['scenario']} | {r['calls']:,} | {r['wall']:.2f} | "
              f"{r['datasets/s']:.1f} | {r['calls/s']:.1f} | {r['ratio']:.2f} | "
              f"{r['datasets']} | {r['lost']} | {r['duplicated']} | {r['wrong id']} | "
              f"{r['failed calls']} |")
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    bad = [r for r in rows if r["lost"] or r["duplicated"] or r["wrong id"] or r["failed calls"]
           or r["bad sha256"] or r["foreign"] or r["unique ids"] != r["datasets"]]
    print("all runs: no dataset lost or duplicated" if not bad else
          f"**{len(bad)} run(s) lost, duplicated or failed something**")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
