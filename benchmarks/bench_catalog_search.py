"""Benchmark: catalog search latency on a large catalog, SQLite and/or PostgreSQL.

Fills a fresh catalog with N synthetic datasets, then times typical queries (fields,
wildcards, free text, time ranges, paging, counts), each repeated with different values,
and reports median and p95 latency in milliseconds next to a plain primary-key lookup
(``SELECT * FROM datasets WHERE id = ?``) on a separate connection to the same database,
in the same run. The target (issue 14): median under 50 ms and p95 under 100 ms for every
search on PostgreSQL at 10 million datasets.

* ``--backend sqlite`` (default, as before): a SQLite file filled through
  :meth:`Catalog.bulk_load` (``executemany`` in one transaction, then ``ANALYZE``).
* ``--backend postgresql``: a PostgreSQL server started with ``tests/_postgres.py``
  (initdb, free port) with :data:`PG_SETTINGS` (tuned as a facility would run it;
  ``--pg-settings test`` for the test helper's 32 MB), in a throw-away folder or, with
  ``--pg-dir DIR``, in a folder that is kept: a second run with the same ``--pg-dir``
  starts that cluster again and queries its catalog without filling (``--keep`` leaves
  it running; ``--pg-url`` uses a database of your own). The catalog creates its schema
  (``open_catalog``); the fill then uses ``COPY`` (``--pg-load copy``, default): the
  catalog's secondary indexes (field and start-time btrees, the GIN index of the
  ``datasets.doc`` tsvector) are dropped, the rows are copied into a staging table with
  their search text (the catalog's own document of title, sample, proposal, beamline and
  metadata) and moved into ``datasets`` with the server's ``to_tsvector('simple', ...)``,
  the very same index definitions are rebuilt, then ``VACUUM ANALYZE`` (what autovacuum
  does to a table that was just filled). ``--pg-load bulk_load`` fills through
  :meth:`Catalog.bulk_load` instead (slower; every index is maintained row by row).
* Totals: a PostgreSQL catalog counts exactly up to 10,000 matches and estimates above
  (``SearchResult.total_exact``); the "exact totals" column says how many of a query's
  runs had an exact total, and two ``exact_total=True`` queries show what an exact count
  costs.
* The same seed gives the same rows and the same query values on both backends, so the
  "matches" column (the sum of ``total`` over a query's runs) must agree between them.

The synthetic catalog: 20 beamlines (unequal shares), 5,000 samples (a few popular ones,
a long tail), 2,000 proposals, start times over 10 years, 60 % tomography / 30 % SAXS raw
scans and 10 % derived products, and a few metadata keys (energy, detector, exposure,
operator), one file each.

Runtime and size measured on a shared 2-core machine: SQLite 1e6: 90-115 s fill, 1.1 GB
file, plus ~1 min of queries. PostgreSQL 1e7 (COPY): 25 min fill at load 5-12, 14 GB in
/tmp (check ``df -h /tmp``; ~24 GB of RAM keeps it in the page cache), plus ~6 min of
queries (free text takes 2-4 s a call there). ``--n 10000`` takes seconds on either
backend. Run it under ``nice`` on a shared machine.

Usage::

    python benchmarks/bench_catalog_search.py              # SQLite, 1,000,000 datasets
    python benchmarks/bench_catalog_search.py --n 100000 --repeat 100
    nice python benchmarks/bench_catalog_search.py --backend postgresql --n 10000000 \
        --pg-dir /work/tmp/pg10m          # fill once, kept
    python benchmarks/bench_catalog_search.py --backend postgresql --pg-dir /work/tmp/pg10m
    python benchmarks/bench_catalog_search.py --backend postgresql --pg-url URL  # reuse
    python benchmarks/bench_catalog_search.py --backend both --n 10000            # smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from spotkit.catalog import open_catalog

DAY = 86_400.0
T0 = dt.datetime(2015, 1, 1, tzinfo=dt.UTC).timestamp()
SPAN = 10 * 365.25 * DAY
BEAMLINES = [f"{major}.{minor}.{k}" for major in (4, 5, 7, 8, 10, 12) for minor in (1, 3)
             for k in (1, 2)][:20]  # fmt: skip
SAMPLE_WORDS = ["lysozyme", "silica", "bone", "battery", "concrete", "basalt", "polymer",
                "foam", "wood", "catalyst", "tooth", "alloy", "sandstone", "coral", "fibre",
                "cement", "ice", "seed", "leaf", "membrane"]  # fmt: skip
DETECTORS = ["PCO.edge", "Pilatus 2M", "Eiger 4M", "Andor Zyla", "Oryx"]
OPERATORS = [f"{first} {last}" for first in ("ada", "bo", "chen", "dana", "eli", "fay", "gus",
             "hana", "ivan", "jo") for last in ("smith", "garcia", "nguyen", "okafor", "rossi",
             "tanaka", "weber", "kowalski", "haddad", "silva")]  # fmt: skip


def synthetic_records(n: int, seed: int):
    """Yield ``n`` dataset records with a realistic spread of fields."""
    rng = random.Random(seed)
    beamline_weights = [1.0 / (i + 1) ** 0.7 for i in range(len(BEAMLINES))]
    samples = [f"{SAMPLE_WORDS[i % len(SAMPLE_WORDS)]}-{i:04d}" for i in range(5_000)]
    sample_weights = [1.0 / (i + 1) ** 0.8 for i in range(len(samples))]
    proposals = [f"ALS-{10_000 + i}" for i in range(2_000)]
    usual_proposal = {s: rng.choice(proposals) for s in samples}  # a sample mostly stays in one
    beamline_of = rng.choices(BEAMLINES, beamline_weights, k=n)
    sample_of = rng.choices(samples, sample_weights, k=n)
    for i in range(n):
        kind = rng.choices(("tomo/raw", "saxs/raw", "tomo/recon"), (6, 3, 1))[0]
        start = T0 + rng.random() * SPAN
        beamline, sample = beamline_of[i], sample_of[i]
        yield {
            "kind": kind,
            "beamline": beamline,
            "sample": sample,
            "proposal": usual_proposal[sample] if rng.random() < 0.7 else rng.choice(proposals),
            "title": f"{beamline} {kind.split('/')[0]} scan of {sample}",
            "start_time": start,
            "end_time": start + rng.uniform(60, 1_800),
            "status": "derived" if kind == "tomo/recon" else "raw",
            "metadata": {
                "energy_kev": round(rng.uniform(8, 40), 2),
                "detector": rng.choice(DETECTORS),
                "exposure_s": round(rng.uniform(0.001, 2.0), 4),
                "operator": rng.choice(OPERATORS),
            },
            "files": [
                {
                    "path": f"/data/{beamline}/{i // 1000:04d}/scan_{i:07d}.h5",
                    "role": "data",
                    "size": rng.randrange(10**8, 10**10),
                    "sha256": f"{rng.getrandbits(256):064x}",
                }
            ],
        }  # fmt: skip


def time_query(fn: Callable[[object], object],
               values: list) -> tuple[list[float], int | None, int | None]:
    """Run ``fn(value)`` for each value; return the latencies in milliseconds, the sum of
    the results' ``total`` and how many of those totals were exact (None if they have
    none)."""
    fn(values[0])  # warm the page cache for this access path
    out = []
    matches: int | None = 0
    exact: int | None = 0
    for value in values:
        t = time.perf_counter()
        result = fn(value)
        out.append((time.perf_counter() - t) * 1e3)
        total = getattr(result, "total", None)
        matches = None if total is None or matches is None else matches + total
        exact = None if total is None or exact is None else exact + bool(
            getattr(result, "total_exact", True))
    return out, matches, exact


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


ROOT = Path(__file__).resolve().parents[1]
#: The benchmark server's settings: a catalog server tuned as a facility would run it on
#: this kind of machine (24 GB RAM, SSD, 2 cores, shared), the README's recommendation.
#: Durability stays off as in the test helper (fsync, synchronous_commit and
#: full_page_writes: they cost only writes, nothing the searches do).
PG_SETTINGS = {
    "shared_buffers": "4GB",  # ~1/4 of RAM (hot indexes and rows)
    "effective_cache_size": "12GB",  # shared_buffers + the OS page cache it can count on
    "work_mem": "64MB",  # per sort / bitmap: exact (not lossy) GIN bitmaps of big matches
    "maintenance_work_mem": "1GB",  # index builds, VACUUM
    "random_page_cost": "1.1",  # SSD: an index probe costs about a sequential read
    "effective_io_concurrency": "200",  # SSD: prefetch for bitmap heap scans
    "default_statistics_target": "500",  # finer histograms and more tsvector words for
    # the planner's estimates (the totals above 10,000 are those estimates)
    "max_parallel_workers_per_gather": "1",  # few cores: no fan-out for short queries
    "jit": "off",  # compiling plans costs ~0.4 s and never pays for catalog queries
    "max_wal_size": "8GB",  # fewer checkpoints during bulk loads
}
#: (median, p95) targets in ms for every search on PostgreSQL (issue 14)
TARGET_MEDIAN_MS, TARGET_P95_MS = 50.0, 100.0


def test_postgres_module():
    """tests/_postgres.py (the test suite's throw-away PostgreSQL server), imported by path."""
    spec = importlib.util.spec_from_file_location("spotkit_bench_postgres",
                                                  ROOT / "tests" / "_postgres.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# -- filling a PostgreSQL catalog with COPY --------------------------------------------

_COPY_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _field(value) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    return str(value).translate(_COPY_ESCAPE)


def _encode(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        out.append(_CROCKFORD[digit])
    return "".join(reversed(out))


def pg_fill_copy(url: str, n: int, seed: int, chunk: int = 50_000) -> dict[str, float]:
    """Fill an empty PostgreSQL catalog with ``synthetic_records(n, seed)`` using COPY.

    The schema and its indexes are the catalog's own (``open_catalog`` creates them); the
    secondary indexes are dropped for the copy and rebuilt from their saved definitions
    (``pg_get_indexdef``), so the database ends up exactly as if the catalog had written
    every row: same tables, same ``to_tsvector('simple', ...)`` documents, same indexes.
    Foreign-key triggers are off during the copy (``session_replication_role = replica``):
    the rows are consistent by construction. Returns the seconds of each phase.
    """
    import psycopg

    # the catalog's own text of a dataset's search document (Catalog._write_fts uses it), so
    # the COPY fill indexes exactly the words the catalog would
    from spotkit.catalog._common import _fts_document as fts_document

    times: dict[str, float] = {}
    t = time.perf_counter()
    open_catalog(url).close()  # the catalog creates its schema
    with psycopg.connect(url, autocommit=True) as admin:
        if admin.execute("SELECT count(*) FROM datasets").fetchone()[0]:
            raise SystemExit(f"{url}: the catalog is not empty; COPY fills an empty one")
        indexes = admin.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE t.relname IN ('datasets', 'files') "
            "AND NOT i.indisprimary AND NOT i.indisunique").fetchall()
        for name, _ in indexes:
            admin.execute(f'DROP INDEX "{name}"')
        # the rows go through an unlogged staging table with the search text, then into
        # datasets with the server's to_tsvector('simple', ...) of it (schema 7: the
        # tsvector is a column of datasets)
        admin.execute("CREATE UNLOGGED TABLE bench_stage (LIKE datasets INCLUDING DEFAULTS)")
        admin.execute("ALTER TABLE bench_stage DROP COLUMN doc")
        admin.execute("ALTER TABLE bench_stage ADD COLUMN doc_text TEXT")
    conns = [psycopg.connect(url) for _ in range(2)]  # one transaction each
    for conn in conns:
        conn.execute("SET session_replication_role = replica")
    now = time.time()
    base_ms = int(now * 1000)
    ds_cols = ("seq, id, kind, beamline, sample, proposal, title, start_time, end_time, "
               "ingested_at, status, metadata")
    try:
        with conns[0].cursor().copy(f"COPY bench_stage ({ds_cols}, doc_text) "
                                    "FROM STDIN") as c_ds, \
                conns[1].cursor().copy("COPY files (id, dataset_id, path, role, size, sha256, "
                                       "format, key) FROM STDIN") as c_files:
            ds_lines: list[str] = []
            file_lines: list[str] = []

            def flush() -> None:
                c_ds.write("".join(ds_lines))
                c_files.write("".join(file_lines))
                ds_lines.clear()
                file_lines.clear()

            for seq, rec in enumerate(synthetic_records(n, seed), start=1):
                # ULID-like ids (time-ordered, 15 characters), as the catalog makes them
                ds_id = "ds-" + _encode(base_ms + seq // 1024, 9) + _encode(seq % 1024, 3)
                meta = rec["metadata"]
                doc = fts_document((rec["title"], rec["sample"], rec["proposal"],
                                    rec["beamline"]), meta)
                ds_lines.append("\t".join(map(_field, (
                    seq, ds_id, rec["kind"], rec["beamline"], rec["sample"], rec["proposal"],
                    rec["title"], repr(rec["start_time"]), repr(rec["end_time"]), repr(now),
                    rec["status"], json.dumps(meta, sort_keys=True), doc))) + "\n")
                for f in rec["files"]:
                    file_lines.append("\t".join(map(_field, (
                        seq, ds_id, os.path.abspath(f["path"]), f["role"], f["size"],
                        f["sha256"], "hdf5", None))) + "\n")
                if len(ds_lines) >= chunk:
                    flush()
            flush()
        for conn in conns:
            conn.commit()
    finally:
        for conn in conns:
            conn.close()
    times["copy"] = time.perf_counter() - t
    with psycopg.connect(url, autocommit=True) as admin:
        t = time.perf_counter()
        admin.execute("SET session_replication_role = replica")
        admin.execute(f"INSERT INTO datasets ({ds_cols}, doc) SELECT {ds_cols}, "
                      "to_tsvector('simple', doc_text) FROM bench_stage")
        admin.execute("DROP TABLE bench_stage")
        for table, column in (("datasets", "seq"), ("files", "id")):
            admin.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                          f"(SELECT max({column}) FROM {table}))")
        times["tsvector"] = time.perf_counter() - t
        t = time.perf_counter()
        admin.execute("SET maintenance_work_mem = '1GB'")
        for _, definition in indexes:
            admin.execute(definition)
        times["indexes"] = time.perf_counter() - t
        t = time.perf_counter()
        admin.execute("VACUUM (ANALYZE) datasets, files")
        times["vacuum"] = time.perf_counter() - t
    return times


# -- the query mix ----------------------------------------------------------------------


def run_queries(cat, pk, sample_rows, n: int, args) -> list[tuple]:
    """Time the query mix on an open catalog; ``pk(id)`` is the reference lookup and
    ``sample_rows(seqs)`` returns ``(id, sample, proposal)`` of the given rows."""
    rng = random.Random(args.seed + 1)
    k = max(args.repeat, 50)
    # the same rows (by seq, which both backends number 1..n in fill order) on both backends
    picked = sample_rows(rng.sample(range(1, n + 1), k))
    ids = [r[0] for r in picked]
    samples = [r[1] for r in picked]
    proposals = [r[2] for r in picked]

    def when(frac: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(T0 + frac * SPAN, dt.UTC)

    def glob(sample: str) -> str:  # "bone-0421" -> "bone-04*"
        word, number = sample.split("-")
        return f"{word}-{number[:2]}*"

    def combined(value):
        beamline, frac = value
        return cat.search(beamline=beamline, kind="tomo/raw", since=when(frac),
                          until=when(frac + 0.1))  # fmt: skip

    beamlines = [rng.choice(BEAMLINES) for _ in range(k)]
    fractions = [rng.random() * 0.9 for _ in range(k)]
    since_fracs = [rng.random() * 0.9 for _ in range(k)]
    operators = [rng.choice(OPERATORS) for _ in range(k)]
    words = [rng.choice(SAMPLE_WORDS) for _ in range(k)]
    queries: list[tuple[str, Callable, list]] = [
        ("SQL `SELECT * WHERE id = ?` (reference)", pk, ids),
        ("cat[id]", lambda i: cat[i], ids),
        ("search(beamline=)", lambda b: cat.search(beamline=b), beamlines),
        ("search(sample=)", lambda s: cat.search(sample=s), samples),
        ("search(sample='bone-04*')", lambda s: cat.search(sample=glob(s)), samples),
        ("search(proposal=, since=)",
         lambda v: cat.search(proposal=v[0], since=when(v[1])),
         list(zip(proposals, since_fracs, strict=True))),
        ("search(since=, until=) one week",
         lambda f: cat.search(since=when(f), until=when(f + 7 * DAY / SPAN)), fractions),
        ("search(text='bone 0421')", lambda s: cat.search(text=s.replace("-", " ")), samples),
        ("search(text='<operator name>') ~1 % of rows", lambda o: cat.search(text=o), operators),
        ("search(text='<sample word>') ~5 % of rows", lambda w: cat.search(text=w), words),
        ("search(beamline=, kind=, since=, until=) one year", combined,
         list(zip(beamlines, fractions, strict=True))),
        ("search(beamline=, offset=1000): page 11", lambda b: cat.search(beamline=b, offset=1000),
         beamlines),
        ("search(beamline=, kind='saxs/raw', limit=0): count only",
         lambda b: cat.search(beamline=b, kind="saxs/raw", limit=0), beamlines),
        ("search() newest 100 of all", lambda _: cat.search(), list(range(k))),
        # the exact counts the default search no longer makes above 10,000 matches
        ("exact_total=True: search(beamline=)",
         lambda b: cat.search(beamline=b, exact_total=True), beamlines),
        ("exact_total=True: search(text='<sample word>')",
         lambda w: cat.search(text=w, exact_total=True), words),
    ]  # fmt: skip
    if args.only:  # the reference and the queries whose name contains one of the words
        words = [w.strip() for w in args.only.split(",") if w.strip()]
        queries = queries[:1] + [q for q in queries[1:] if any(w in q[0] for w in words)]
    rows = []
    reference = None
    for name, fn, values in queries:
        if name.startswith("exact_total") and args.repeat_exact < len(values):
            values = values[:args.repeat_exact]  # seconds each at 10 million
        lat, matches, exact = time_query(fn, values)
        med = statistics.median(lat)
        reference = reference or med
        rows.append((name, len(values), matches, exact, med, p95(lat), med / reference))
    return rows


def print_table(title: str, rows: list[tuple], *, target: bool) -> None:
    print()
    print(f"### {title}")
    print()
    head = ("| query (limit 100, with total) | runs | matches | exact totals | median ms | "
            "p95 ms | × PK |")
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    if target:
        head += " target met |"
        rule += "---|"
    print(head)
    print(rule)
    for name, runs, matches, exact, med, q95, ratio in rows:
        line = (f"| {name} | {runs} | {'' if matches is None else f'{matches:,}'} | "
                f"{'' if exact is None else exact} | {med:.3f} | {q95:.3f} | {ratio:,.0f} |")
        if target:
            search = name.startswith("search")
            ok = med < TARGET_MEDIAN_MS and q95 < TARGET_P95_MS
            line += (" yes |" if ok else " **no** |") if search else " |"
        print(line)


# -- the two backends ---------------------------------------------------------------------


def bench_sqlite(args) -> list[tuple]:
    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="spotkit-bench-")
        db = Path(tmp.name) / "catalog.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    print(f"SQLite {sqlite3.sqlite_version}")
    cat = open_catalog(db)
    t = time.perf_counter()
    cat.bulk_load(synthetic_records(args.n, args.seed))
    fill_s = time.perf_counter() - t
    size_mb = sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 1e6
    print(
        f"SQLite: filled {args.n:,} datasets in {fill_s:.1f} s ({args.n / fill_s:,.0f}/s, "
        f"incl. ANALYZE and WAL checkpoint); files {size_mb:,.0f} MB"
    )
    raw = sqlite3.connect(db)

    def pk(dataset_id):
        return raw.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()

    def sample_rows(seqs):
        marks = ",".join("?" * len(seqs))
        found = {r[0]: r[1:] for r in raw.execute(
            f"SELECT seq, id, sample, proposal FROM datasets WHERE seq IN ({marks})", seqs)}
        return [found[s] for s in seqs]

    if args.explain:
        sql = ("EXPLAIN QUERY PLAN SELECT * FROM datasets d WHERE beamline = ? "
               "ORDER BY start_time DESC, seq DESC LIMIT 100")  # fmt: skip
        print(raw.execute(sql, (BEAMLINES[0],)).fetchall())
    rows = run_queries(cat, pk, sample_rows, args.n, args)
    raw.close()
    cat.close()
    if tmp is not None:
        tmp.cleanup()
    return rows


def bench_postgres(args) -> list[tuple]:
    import psycopg

    server = None
    url = args.pg_url
    if url is None:
        pg = test_postgres_module()
        reason = pg.skip_reason()
        if reason:
            raise SystemExit(f"cannot start a PostgreSQL server: {reason}")
        settings = None if args.pg_settings == "test" else PG_SETTINGS
        server = pg.start_server(root=args.pg_dir, settings=settings)
        url = server.url("bench")
        with psycopg.connect(server.url(), autocommit=True) as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = 'bench'").fetchone():
                admin.execute("CREATE DATABASE bench")
        print(f"PostgreSQL server in {server.root} (port {server.port}), database {url}; "
              + ("the test helper's settings (shared_buffers 32MB)" if settings is None else
                 "settings: " + ", ".join(f"{k}={v}" for k, v in settings.items())))
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            version = admin.execute("SHOW server_version").fetchone()[0]
            filled = admin.execute(
                "SELECT to_regclass('datasets') IS NOT NULL").fetchone()[0] and admin.execute(
                "SELECT count(*) FROM datasets").fetchone()[0]
            if args.explain:  # plans of every statement over 20 ms into the server log
                name = url.rsplit("/", 1)[1]
                for setting, value in (("session_preload_libraries", "auto_explain"),
                                       ("auto_explain.log_min_duration", "20ms"),
                                       ("auto_explain.log_analyze", "on"),
                                       ("auto_explain.log_buffers", "on")):
                    admin.execute(f'ALTER DATABASE "{name}" SET {setting} = \'{value}\'')
        print(f"PostgreSQL {version}, psycopg {psycopg.__version__}")
        n = args.n
        if filled:
            n = args.n = filled  # the table's title says how many there are
            print(f"PostgreSQL: reusing the {n:,} datasets already in {url}")
        else:
            t = time.perf_counter()
            if args.pg_load == "copy":
                phases = pg_fill_copy(url, n, args.seed)
                detail = ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
            else:
                with open_catalog(url) as cat:
                    cat.bulk_load(synthetic_records(n, args.seed))
                detail = "Catalog.bulk_load incl. ANALYZE"
            fill_s = time.perf_counter() - t
            with psycopg.connect(url, autocommit=True) as admin:
                size = admin.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            print(f"PostgreSQL: filled {n:,} datasets in {fill_s:.1f} s ({n / fill_s:,.0f}/s; "
                  f"{detail}); database {size / 1e6:,.0f} MB")
        raw = psycopg.connect(url, autocommit=True)

        def pk(dataset_id):
            return raw.execute("SELECT * FROM datasets WHERE id = %s", (dataset_id,)).fetchone()

        def sample_rows(seqs):
            found = {r[0]: r[1:] for r in raw.execute(
                "SELECT seq, id, sample, proposal FROM datasets WHERE seq = ANY(%s)", (seqs,))}
            return [found[s] for s in seqs]

        with open_catalog(url) as cat:
            rows = run_queries(cat, pk, sample_rows, n, args)
        raw.close()
        if args.explain and server is not None:
            print(f"\nplans of statements over 20 ms: {server.root / 'server.log'}")
    finally:
        if server is not None:
            if args.keep:
                runuser = f"runuser -u {server.run_as} -- " if server.run_as else ""
                remove = "" if args.pg_dir else f"; rm -rf {server.root}"
                print(f"\nkept the server: --pg-url {url}\nstop it with: {runuser}"
                      f"{server.bin}/pg_ctl -D {server.root}/data stop{remove}")
            else:
                server.stop(remove=args.pg_dir is None)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Runtime (2 shared cores): SQLite 1e6 ~3 min; PostgreSQL 1e7 ~25 min to fill "
               "(14 GB under /tmp) plus ~6 min of queries; --n 10000 runs in seconds on "
               "either. See the module docstring.")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite",
                        help="which catalog database to fill and query (default sqlite)")
    parser.add_argument("--n", type=int, default=1_000_000, help="datasets (default 1e6)")
    parser.add_argument("--repeat", type=int, default=50, help="values per query (>= 50)")
    parser.add_argument("--db", type=Path, help="SQLite catalog file (default: a temporary one)")
    parser.add_argument("--pg-url", help="PostgreSQL database to use instead of starting a "
                        "throw-away server; if its catalog already has datasets they are "
                        "queried as they are (no fill)")
    parser.add_argument("--pg-dir", type=Path,
                        help="keep the benchmark's PostgreSQL cluster in this folder (created "
                        "if needed; an existing cluster there is started again and its "
                        "catalog reused, no fill); default: a throw-away one under /tmp")
    parser.add_argument("--pg-settings", choices=("facility", "test"), default="facility",
                        help="server settings: 'facility' (PG_SETTINGS, tuned as a facility "
                        "would run it; default) or 'test' (the test helper's 32 MB)")
    parser.add_argument("--pg-load", choices=("copy", "bulk_load"), default="copy",
                        help="how to fill PostgreSQL (default copy; see the docstring)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the throw-away PostgreSQL server running (prints its URL "
                        "for --pg-url and how to stop it)")
    parser.add_argument("--only", help="run only the queries whose name contains one of these "
                        "comma-separated words (and the reference), e.g. --only text=")
    parser.add_argument("--repeat-exact", type=int, default=20,
                        help="values per exact_total=True reference query (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--explain", action="store_true",
                        help="SQLite: print a query plan; PostgreSQL: auto_explain (ANALYZE, "
                        "BUFFERS) of every statement over 20 ms into the server log")
    args = parser.parse_args(argv)

    load = os.getloadavg()
    print(f"python {platform.python_version()}, nproc {os.cpu_count()}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start")
    results = {}
    if args.backend in ("sqlite", "both"):
        results["SQLite"] = bench_sqlite(args)
    if args.backend in ("postgresql", "both"):
        results["PostgreSQL"] = bench_postgres(args)
    for title, rows in results.items():
        print_table(f"{title}, {args.n:,} datasets", rows, target=title == "PostgreSQL")
    if len(results) == 2:
        a, b = results["SQLite"], results["PostgreSQL"]
        both = [(x, y) for x, y in zip(a, b, strict=True) if y[3] is None or y[3] == y[1]]
        differ = [x[0] for x, y in both if x[2] != y[2]]
        estimated = len(a) - len(both)
        print("\nmatches identical on both backends: " + (
            "yes" if not differ else "**no**, they differ for: " + "; ".join(differ))
            + (f" ({estimated} queries with estimated totals on PostgreSQL not compared)"
               if estimated else ""))
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")


if __name__ == "__main__":
    main()
