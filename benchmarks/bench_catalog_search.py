"""Benchmark: catalog search latency on a large catalog (default 1,000,000 datasets).

Fills a fresh catalog with synthetic datasets through :meth:`Catalog.bulk_load`
(``executemany`` in one transaction), then times typical queries, each repeated with
different values, and reports median and p95 latency in milliseconds next to a plain
SQLite primary-key lookup (``SELECT ... FROM datasets WHERE id = ?``) on the same file.

The synthetic catalog: 20 beamlines (unequal shares), 5,000 samples (a few popular ones,
a long tail), 2,000 proposals, start times over 10 years, 60 % tomography / 30 % SAXS raw
scans and 10 % derived products, and a few metadata keys (energy, detector, exposure,
operator).

Usage::

    python benchmarks/bench_catalog_search.py              # 1,000,000 datasets
    python benchmarks/bench_catalog_search.py --n 100000 --repeat 100
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import sqlite3
import statistics
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


def time_query(fn: Callable[[object], object], values: list) -> list[float]:
    """Run ``fn(value)`` for each value; return the latencies in milliseconds."""
    fn(values[0])  # warm the page cache for this access path
    out = []
    for value in values:
        t = time.perf_counter()
        fn(value)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="datasets (default 1e6)")
    parser.add_argument("--repeat", type=int, default=50, help="values per query (>= 50)")
    parser.add_argument("--db", type=Path, help="catalog file (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--explain", action="store_true", help="print SQLite query plans")
    args = parser.parse_args(argv)

    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="spotkit-bench-")
        args.db = Path(tmp.name) / "catalog.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{args.db}{suffix}").unlink(missing_ok=True)

    print(f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    cat = open_catalog(args.db)
    t = time.perf_counter()
    cat.bulk_load(synthetic_records(args.n, args.seed))
    fill_s = time.perf_counter() - t
    size_mb = sum(p.stat().st_size for p in args.db.parent.glob(args.db.name + "*")) / 1e6
    print(
        f"filled {args.n:,} datasets in {fill_s:.1f} s ({args.n / fill_s:,.0f}/s, "
        f"incl. ANALYZE and WAL checkpoint); files {size_mb:,.0f} MB"
    )

    rng = random.Random(args.seed + 1)
    k = max(args.repeat, 50)
    raw = sqlite3.connect(args.db)

    def column(name: str) -> list:
        sql = f"SELECT {name} FROM datasets ORDER BY random() LIMIT ?"
        return [r[0] for r in raw.execute(sql, (k,))]

    def when(frac: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(T0 + frac * SPAN, dt.UTC)

    def glob(sample: str) -> str:  # "bone-0421" -> "bone-04*"
        word, number = sample.split("-")
        return f"{word}-{number[:2]}*"

    def pk(dataset_id):
        return raw.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()

    def combined(value):
        beamline, frac = value
        return cat.search(beamline=beamline, kind="tomo/raw", since=when(frac),
                          until=when(frac + 0.1))  # fmt: skip

    ids, samples, proposals = column("id"), column("sample"), column("proposal")
    beamlines = [rng.choice(BEAMLINES) for _ in range(k)]
    fractions = [rng.random() * 0.9 for _ in range(k)]
    queries: list[tuple[str, Callable, list]] = [
        ("SQL `SELECT * WHERE id = ?` (reference)", pk, ids),
        ("cat[id]", lambda i: cat[i], ids),
        ("search(beamline=)", lambda b: cat.search(beamline=b), beamlines),
        ("search(sample=)", lambda s: cat.search(sample=s), samples),
        ("search(sample='bone-04*')", lambda s: cat.search(sample=glob(s)), samples),
        ("search(proposal=, since=)",
         lambda p: cat.search(proposal=p, since=when(rng.random() * 0.9)), proposals),
        ("search(since=, until=) one week",
         lambda f: cat.search(since=when(f), until=when(f + 7 * DAY / SPAN)), fractions),
        ("search(text='bone 0421')", lambda s: cat.search(text=s.replace("-", " ")), samples),
        ("search(text='<operator name>') ~1 % of rows",
         lambda o: cat.search(text=o), [rng.choice(OPERATORS) for _ in range(k)]),
        ("search(text='<sample word>') ~5 % of rows",
         lambda w: cat.search(text=w), [rng.choice(SAMPLE_WORDS) for _ in range(k)]),
        ("search(beamline=, kind=, since=, until=) one year", combined,
         list(zip(beamlines, fractions, strict=True))),
        ("search() newest 100 of all", lambda _: cat.search(), list(range(k))),
    ]  # fmt: skip

    if args.explain:
        sql = ("EXPLAIN QUERY PLAN SELECT * FROM datasets d WHERE beamline = ? "
               "ORDER BY start_time DESC, seq DESC LIMIT 100")  # fmt: skip
        print(raw.execute(sql, (BEAMLINES[0],)).fetchall())

    rows = []
    reference = None
    for name, fn, values in queries:
        lat = time_query(fn, values)
        med = statistics.median(lat)
        reference = reference or med
        rows.append((name, len(values), med, p95(lat), med / reference))
    hits = cat.search(beamline=BEAMLINES[0], limit=100)
    print(f"(e.g. beamline={BEAMLINES[0]!r}: {hits.total:,} matches, page of {len(hits)})")
    print()
    print("| query (limit 100, with total count) | runs | median ms | p95 ms | × PK lookup |")
    print("|---|---:|---:|---:|---:|")
    for name, runs, med, q95, ratio in rows:
        print(f"| {name} | {runs} | {med:.3f} | {q95:.3f} | {ratio:,.0f} |")
    raw.close()
    cat.close()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
