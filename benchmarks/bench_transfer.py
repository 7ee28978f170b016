"""Benchmark: a verified transfer against the physical floor of one, cp and cp + fsync.

For each file set (4 x 500 MB and 200 x 5 MB of random bytes), cold and warm, it times in
the same run and on the same disk:

* ``cp``: ``cp -r`` of the dataset folder (returns with its writes still in the page cache);
* ``cp + fsync``: ``cp -r`` then fsync of every copy (a durable copy);
* ``floor``: ``cp -r``, fsync, then every copy read back once from the device (its pages
  dropped; 8 MiB blocks read by as many threads as spotkit's movers use): the physical
  floor of a *verified* copy, the I/O that checking the destination cannot avoid;
* ``sha256sum + cp + sha256sum``: a copy checked by hand with coreutils (full runs only);
* ``spotkit manifest + transfer``: what the flow does today, in two steps:
  ``make_manifest`` (sha256 of record + one CRC-32C per 8 MiB block, one read of each
  source file) then ``LocalCopy.transfer`` (copy_file_range to a hidden partial name,
  writeback started per chunk, fsync, the copy's pages dropped, every block re-read from
  the device and checked, rename) and the flow's verify step (presence and size);
* ``spotkit manifest + transfer (drop_cache=False)``: the same, the copy checked from the
  page cache (full runs only);
* ``spotkit pack (one read)``: ``LocalCopy.pack``, ingest + manifest + transfer sharing one
  read of each source file: each block is read once, written and block-checked while a
  second thread hashes it (sha256 of record), then fsync and the same device re-read.
* ``spotkit flow (ingest + manifest + transfer)``: the watcher's own steps on the file set
  as one dataset (a frame set: the first file primary, the others its frames), exactly as
  ``Watcher`` runs them (``_prepare``: journal, leases and catalog included), on a fresh
  SQLite catalog on the same disk: ingest stages each file's copy in the warehouse in the
  read that computes the catalog's sha256 and the block checks (``LocalCopy.stage``: the
  dataset's files concurrently, copy slots as in pack; each copy fsynced and re-read from
  the device once copied), the manifest reuses them, transfer renames the checked copies
  into place, and verify stores the manifest and records the replicas. Setting up the
  catalog and the journal entry is not timed.

With ``--frame-folder`` it measures a folder of detector frames (500 x 4 MB) registered as
one dataset (the folder itself is the catalog's file: its tree hash is the checksum of
record) through the same ``Watcher._prepare``, in the same run, two ways:

* ``flow, frame folder: before (3 reads)``: the ingest hasher as it was before
  (``checksums.checksum`` of the folder): the manifest then reads every frame again for its
  sha256 and block checks, and the transfer copies every frame from the source;
* ``flow, frame folder: one read``: ``LocalCopy.stage_tree``: each frame is read once,
  written to its staging copy in the warehouse and fed to its sha256, its block checks and
  the folder's tree hash; the manifest reuses them; the transfer re-reads every copy from
  the device against the manifest and renames it into place.

``one read vs before`` is the ratio of the two (median times; paired: the median of the
ratios within one repeat).

Cold runs drop the source files from the page cache first (posix_fadvise DONTNEED after an
fsync); warm runs read them once first. Methods are interleaved within each repeat (the
order rotates), the destination removed and ``sync``ed between runs. Each cell is the
median of ``--repeat`` runs; ``paired`` is the median over repeats of floor time / method
time measured in the same repeat (robust to load that drifts between repeats). The load
average is printed with each block: on a shared machine re-run when it is above ~1.
MB = 10**6 bytes. Peak scratch space: twice the largest set (~4 GB).

Configurations (wall times measured 2026-12-04 on 2 CPUs):

    python benchmarks/bench_transfer.py --quick --dir /work
        floor, cp + fsync and both spotkit paths, both sets, cold and warm, repeat 3:
        ~2.7 min on a quiet machine (160 s); 3-4 min on the shared 2-core reference machine
        at load 4-6 (180-214 s), 7 min at load 7-10
    python benchmarks/bench_transfer.py --quick --repeat 5 --dir /work
        the same with 5 repeats: ~5 min quiet (298 s)
    python benchmarks/bench_transfer.py --dir /work
        the full run, every method (incl. sha256sum at ~0.35 GB/s), repeat 5: ~10 min on the
        reference machine at load 3-6 (589 s)
    python benchmarks/bench_transfer.py --frame-folder --repeat 3 --dir /work
        the frame folder before and after one read (~2 GB, cold and warm): ~5 min at load
        3-10 (298-335 s)
    python benchmarks/bench_transfer.py --sets "4 x 500 MB" --caches warm --json out.json
        one cell, e.g. while profiling

Target (issue 13): spotkit's verified transfer >= 0.9 of the floor, cold and warm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import drop_page_cache  # benchmarks/ is on sys.path when run

from spotkit.flows._movers import LocalCopy
from spotkit.flows._suitcase import make_manifest

SETS = {"4 x 500 MB": (4, 500_000_000), "200 x 5 MB": (200, 5_000_000)}


def _make_files(root: Path, n: int, size: int) -> None:
    root.mkdir(parents=True)
    block = 16 * 2**20
    for i in range(n):
        with open(root / f"frame_{i:04d}.raw", "wb") as f:
            left = size
            while left:
                k = min(block, left)
                f.write(os.urandom(k))
                left -= k


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _drop(root: Path) -> None:
    for p in _files(root):
        drop_page_cache(p)


def _warm(root: Path) -> None:
    for p in _files(root):
        with open(p, "rb", buffering=0) as f:
            while f.read(16 * 2**20):
                pass


def _fsync_all(root: Path) -> None:
    for p in _files(root):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _clean(dest: Path) -> None:
    if dest.exists():
        _drop(dest)
        shutil.rmtree(dest)
    subprocess.run(["sync"], check=True)


def _run_cp(src: Path, dest: Path, *, durable: bool) -> float:
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
    if durable:
        _fsync_all(dest)
    return time.perf_counter() - t0


def _read_back(root: Path) -> None:
    """Read every copy once from the device (its pages dropped first), as fast as the device
    allows: 8 MiB blocks read by as many threads as spotkit's movers use (pread)."""
    from concurrent.futures import ThreadPoolExecutor

    from spotkit.flows._suitcase import default_workers

    _drop(root)
    block = 8 * 2**20
    jobs = [(p, off) for p in _files(root) for off in range(0, p.stat().st_size, block)]

    def read(job):
        path, off = job
        fd = os.open(path, os.O_RDONLY)
        try:
            return len(os.pread(fd, block, off))
        finally:
            os.close(fd)

    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        sum(pool.map(read, jobs))


def _run_floor(src: Path, dest: Path) -> float:
    """The physical floor of a verified copy: cp, fsync, and one read of the copy back from
    the device (the I/O that verifying the destination cannot avoid), no checksums."""
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
    _fsync_all(dest)
    _read_back(dest)
    return time.perf_counter() - t0


def _run_cp_sums(src: Path, dest: Path) -> float:
    t0 = time.perf_counter()
    before = subprocess.run(["sha256sum", *map(str, _files(src))], check=True,
                            capture_output=True, text=True).stdout.split()[::2]
    subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
    after = subprocess.run(["sha256sum", *map(str, _files(dest))], check=True,
                           capture_output=True, text=True).stdout.split()[::2]
    elapsed = time.perf_counter() - t0
    if before != after:
        raise RuntimeError("cp produced a copy whose sha256 differs")
    return elapsed


def _run_spotkit(src: Path, dest: Path, *, drop_cache: bool) -> tuple[float, float]:
    t0 = time.perf_counter()
    man = make_manifest([src], root=src, dataset=src.name)
    t1 = time.perf_counter()
    dest.mkdir()
    mover = LocalCopy(dest, drop_cache=drop_cache)
    mover.transfer(man, src)
    if mover.verify(man, level="size") != []:
        raise RuntimeError("spotkit's transfer left a copy that does not verify")
    t2 = time.perf_counter()
    return t2 - t0, t1 - t0


def _run_pack(src: Path, dest: Path) -> tuple[float, float | None]:
    t0 = time.perf_counter()
    dest.mkdir()
    mover = LocalCopy(dest)
    man, _ = mover.pack([src], root=src, dataset=src.name)
    elapsed = time.perf_counter() - t0
    if mover.verify(man, level="size") != []:
        raise RuntimeError("spotkit's pack left a copy that does not verify")
    return elapsed, None


def _frames_reader(src: Path):
    """The catalog's reader for the benchmark's file set: one dataset, every file in it."""
    from datetime import UTC, datetime

    from spotkit.io import DatasetInfo

    files = tuple((p, "frame") for p in _files(src)[1:])

    def reader(path):
        return DatasetInfo(kind="bench/frames", beamline="bench", sample=src.name,
                           proposal="bench", start_time=datetime.now(UTC), end_time=None,
                           title=f"{len(files) + 1} frames", metadata={}, files=files)

    return reader


RULES = """
targets: {local: {kind: local, max_workers: 1}}
rules:
  - name: none
    match: {kind: saxs/raw}
    actions: [{name: quick, notebook: saxs_quicklook, target: local}]
"""


def _run_flow(src: Path, dest: Path, work: Path) -> tuple[float, float | None]:
    """The watcher's ingest, manifest, transfer and verify steps on one dataset."""
    from spotkit.catalog import Catalog
    from spotkit.flows import PassReport, Watcher, load_rules

    dest.mkdir()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    catalog = Catalog(work / "catalog.db", reader=_frames_reader(src))
    watcher = Watcher(src, catalog=catalog, rules=load_rules(RULES), warehouse=LocalCopy(dest),
                      settle=0, inotify=False)
    try:
        primary = _files(src)[0]
        size = sum(p.stat().st_size for p in _files(src))
        watcher.journal.discover(str(primary), primary, size=size,
                                 mtime_ns=primary.stat().st_mtime_ns, inbox=src,
                                 kind="bench/frames")
        item = watcher.journal.item(str(primary))
        report = PassReport()
        t0 = time.perf_counter()
        ds = watcher._prepare(item, report)
        elapsed = time.perf_counter() - t0
        if ds is None or report.failed or report.parked or report.outages:
            raise RuntimeError(f"the flow did not move the dataset: {report}")
        ingested = watcher.journal.step(item.key, "ingested").result
        if ingested.get("staged") != len(_files(src)):
            raise RuntimeError(f"the flow staged {ingested.get('staged')} of "
                               f"{len(_files(src))} files")
    finally:
        watcher.close()
        catalog.close()
        shutil.rmtree(work)
    if [p.name for p in dest.iterdir() if p.name.startswith(".")]:
        raise RuntimeError("the flow left staging files in the warehouse")
    return elapsed, None


def _folder_reader(src: Path):
    """The catalog's reader for a frame folder: one dataset, the folder itself its file."""
    from datetime import UTC, datetime

    from spotkit.io import DatasetInfo

    def reader(path):
        return DatasetInfo(kind="bench/frames", beamline="bench", sample=src.name,
                           proposal="bench", start_time=datetime.now(UTC), end_time=None,
                           title=f"{src.name} (frame folder)", metadata={}, files=())

    return reader


def _run_flow_folder(src: Path, dest: Path, work: Path, *, one_read: bool
                     ) -> tuple[float, float | None]:
    """The watcher's ingest, manifest, transfer and verify steps on the frame folder ``src``
    as one dataset. ``one_read=False`` runs the ingest hasher as it was before (the folder's
    tree hash only: the manifest reads every file again and the transfer copies them)."""
    from spotkit.catalog import Catalog
    from spotkit.checksums import checksum
    from spotkit.flows import PassReport, Watcher, _flow_data, load_rules

    dest.mkdir()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    catalog = Catalog(work / "catalog.db", reader=_folder_reader(src))
    watcher = Watcher(src.parent, catalog=catalog, rules=load_rules(RULES),
                      warehouse=LocalCopy(dest), settle=0, inotify=False)
    hasher = _flow_data._IngestHasher
    one_read_tree = hasher._tree
    if not one_read:
        hasher._tree = lambda self, path: checksum(path)  # type: ignore[method-assign]
    try:
        size = sum(p.stat().st_size for p in _files(src))
        watcher.journal.discover(str(src), src, size=size, mtime_ns=src.stat().st_mtime_ns,
                                 inbox=src.parent, kind="bench/frames")
        item = watcher.journal.item(str(src))
        report = PassReport()
        t0 = time.perf_counter()
        ds = watcher._prepare(item, report)
        elapsed = time.perf_counter() - t0
        if ds is None or report.failed or report.parked or report.outages:
            raise RuntimeError(f"the flow did not move the dataset: {report}")
        staged = watcher.journal.step(item.key, "ingested").result.get("staged")
        if staged != (len(_files(src)) if one_read else 0):
            raise RuntimeError(f"the flow staged {staged} of {len(_files(src))} files")
        if (ds.files[0].size, ds.files[0].sha256) != checksum(src):
            raise RuntimeError("the catalog's tree hash differs from checksum()")
    finally:
        hasher._tree = one_read_tree  # type: ignore[method-assign]
        watcher.close()
        catalog.close()
        shutil.rmtree(work)
    if [p.name for p in dest.iterdir() if p.name.startswith(".")]:
        raise RuntimeError("the flow left staging files in the warehouse")
    return elapsed, None


FLOOR = "floor (cp + fsync + read-back)"
FLOW = "spotkit flow (ingest + manifest + transfer)"
QUICK = ("cp + fsync", FLOOR, "spotkit manifest + transfer", "spotkit pack (one read)", FLOW)
FOLDER_BEFORE = "flow, frame folder: before (3 reads)"
FOLDER_AFTER = "flow, frame folder: one read"
FOLDER_SET = "frame folder 500 x 4 MB"
SETS[FOLDER_SET] = (500, 4_000_000)


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Configurations"):],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="scratch folder on the disk to measure "
                    "(default: a temp dir); needs ~4 GB free")
    ap.add_argument("--quick", action="store_true",
                    help=f"only {', '.join(QUICK)}; repeat 3 unless --repeat is given")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs per method and cache state (default 5, --quick 3)")
    ap.add_argument("--frame-folder", action="store_true",
                    help=f"only the {FOLDER_SET} set as one folder dataset through the flow: "
                    "cp + fsync, floor, the flow's ingest as it was (tree hash, then the "
                    "manifest and the copy read each frame again) and with one read")
    ap.add_argument("--sets", nargs="*", default=[k for k in SETS if k != FOLDER_SET],
                    choices=list(SETS))
    ap.add_argument("--caches", nargs="*", default=["cold", "warm"], choices=["cold", "warm"])
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)

    results = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-transfer-") as tmp:
        tmp = Path(tmp)
        print(f"# {platform.python_version()} {platform.platform()} nproc={os.cpu_count()} "
              f"usable={len(os.sched_getaffinity(0))}"
              f" scratch={tmp} repeat={repeat} load={_load()}")
        src = tmp / "src"
        runners = {
            "cp": lambda d: (_run_cp(src, d, durable=False), None),
            "cp + fsync": lambda d: (_run_cp(src, d, durable=True), None),
            FLOOR: lambda d: (_run_floor(src, d), None),
            "sha256sum + cp + sha256sum": lambda d: (_run_cp_sums(src, d), None),
            "spotkit manifest + transfer": lambda d: _run_spotkit(src, d, drop_cache=True),
            "spotkit manifest + transfer (drop_cache=False)":
                lambda d: _run_spotkit(src, d, drop_cache=False),
            "spotkit pack (one read)": lambda d: _run_pack(src, d),
            FLOW: lambda d: _run_flow(src, d, tmp / "flow-catalog"),
            FOLDER_BEFORE: lambda d: _run_flow_folder(src, d, tmp / "flow-catalog",
                                                      one_read=False),
            FOLDER_AFTER: lambda d: _run_flow_folder(src, d, tmp / "flow-catalog",
                                                     one_read=True),
        }
        if args.frame_folder:
            args.sets = [FOLDER_SET]
            runners = {k: v for k, v in runners.items()
                       if k in ("cp + fsync", FLOOR, FOLDER_BEFORE, FOLDER_AFTER)}
        else:
            runners.pop(FOLDER_BEFORE)
            runners.pop(FOLDER_AFTER)
        if args.quick:
            runners = {k: v for k, v in runners.items() if k in (*QUICK, FOLDER_BEFORE,
                                                                   FOLDER_AFTER)}
        names = list(runners)
        for label in args.sets:
            n, size = SETS[label]
            _make_files(src, n, size)
            total = n * size
            for cache in args.caches:
                load_before = _load()
                times: dict[str, list[float]] = {k: [] for k in runners}
                manifest_s: dict[str, list[float]] = {k: [] for k in runners}
                for r in range(repeat):
                    # interleaved, so drift hits all alike; the order rotates each repeat
                    for name in names[r % len(names):] + names[:r % len(names)]:
                        dest = tmp / "dest"
                        _clean(dest)
                        _drop(src) if cache == "cold" else _warm(src)
                        secs, man_s = runners[name](dest)
                        times[name].append(secs)
                        if man_s is not None:
                            manifest_s[name].append(man_s)
                _clean(tmp / "dest")
                load = f"{load_before} -> {_load()}"
                meds = {k: statistics.median(v) for k, v in times.items()}
                floor = times[FLOOR]
                for name, ts in times.items():
                    med = meds[name]
                    paired = statistics.median(f / t for f, t in zip(floor, ts, strict=True))
                    row = {"set": label, "cache": cache, "method": name, "bytes": total,
                           "median_s": round(med, 3), "runs_s": [round(t, 3) for t in ts],
                           "mb_per_s": round(total / 1e6 / med, 1),
                           "ratio_vs_floor": round(meds[FLOOR] / med, 2),
                           "paired_vs_floor": round(paired, 2),
                           "ratio_vs_cp_fsync": round(meds["cp + fsync"] / med, 2),
                           "load": load}
                    if "cp" in meds:
                        row["ratio_vs_cp"] = round(meds["cp"] / med, 2)
                    if manifest_s[name]:
                        row["manifest_s"] = round(statistics.median(manifest_s[name]), 3)
                    results.append(row)
                    print(f"{label:11s} {cache:4s} {name:47s} {row['median_s']:6.2f} s "
                          f"{row['mb_per_s']:6.0f} MB/s  x{row['ratio_vs_cp_fsync']:.2f} vs "
                          f"cp+fsync  x{row['ratio_vs_floor']:.2f} vs floor (paired "
                          f"{row['paired_vs_floor']:.2f})"
                          + (f"  (manifest {row['manifest_s']:.2f} s)" if "manifest_s" in row
                             else ""), flush=True)
                if FOLDER_AFTER in times:
                    paired = statistics.median(
                        b / a for b, a in zip(times[FOLDER_BEFORE], times[FOLDER_AFTER],
                                              strict=True))
                    speedup = round(meds[FOLDER_BEFORE] / meds[FOLDER_AFTER], 2)
                    results.append({"set": label, "cache": cache, "method": "one read vs before",
                                    "speedup": speedup, "paired_speedup": round(paired, 2),
                                    "load": load})
                    print(f"{label:11s} {cache:4s} one read vs before: x{speedup:.2f} "
                          f"(paired {paired:.2f})", flush=True)
                print(f"{label:11s} {cache:4s} load average {load}", flush=True)
            _drop(src)
            shutil.rmtree(src)
    print(f"# done in {time.perf_counter() - t_start:.0f} s, load={_load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
