"""Benchmark: suitcase + transfer throughput (MB/s) against plain ``cp`` on the same disk.

For each file set (default 4 x 500 MB and 200 x 5 MB of random bytes) it times, in the
same run and on the same disk:

* ``cp -r`` of the dataset folder (what the issue compares against; its writes may still
  sit in the page cache when it returns);
* ``cp -r`` then fsync of every copied file (a durable copy, what a mover must do);
* ``cp -r``, fsync, then every copy read back once from the device (its pages dropped): the
  physical floor of a *verified* copy, the I/O that checking the destination cannot avoid;
* ``sha256sum`` of the source files, ``cp -r``, ``sha256sum`` of the copies: a copy checked
  by hand with coreutils ("cp including checksums"; the second pass reads the page cache);
* spotkit, as the flow does it: ``make_manifest`` (sha256 of record plus one crc32 per
  8 MiB block, in one read of each source file) + ``LocalCopy.transfer`` (copy_file_range
  to a hidden partial name, fsync, re-read at the destination checking every block's
  crc32, rename) + the flow's ``verify`` step right after it (presence and size), with the
  destination pages dropped before the re-read (default) and kept (``drop_cache=False``);
* spotkit ``LocalCopy.pack``: the same manifest and verified copy, reading each source
  file once (sha256 and crc32s computed from the bytes written), then fsync and the same
  re-read at the destination.

Cold runs drop the source files from the page cache first (posix_fadvise DONTNEED after an
fsync); warm runs read them once first. Each timing is the median of ``--repeat`` runs, the
destination removed (and ``sync``ed) between runs. MB = 10**6 bytes.

    python benchmarks/bench_transfer.py [--dir /work/tmp] [--repeat 3] [--json out.json]
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
    assert mover.verify(man, level="size") == []
    t2 = time.perf_counter()
    return t2 - t0, t1 - t0


def _run_pack(src: Path, dest: Path) -> tuple[float, float | None]:
    t0 = time.perf_counter()
    dest.mkdir()
    LocalCopy(dest).pack([src], root=src, dataset=src.name)
    return time.perf_counter() - t0, None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    results = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-transfer-") as tmp:
        tmp = Path(tmp)
        print(f"# {platform.python_version()} {platform.platform()} nproc={os.cpu_count()}"
              f" scratch={tmp}")
        src = tmp / "src"
        runners = {
            "cp": lambda d: (_run_cp(src, d, durable=False), None),
            "cp + fsync": lambda d: (_run_cp(src, d, durable=True), None),
            "cp + fsync + read-back": lambda d: (_run_floor(src, d), None),
            "sha256sum + cp + sha256sum": lambda d: (_run_cp_sums(src, d), None),
            "spotkit": lambda d: _run_spotkit(src, d, drop_cache=True),
            "spotkit (drop_cache=False)": lambda d: _run_spotkit(src, d, drop_cache=False),
            "spotkit LocalCopy.pack": lambda d: _run_pack(src, d),
        }
        for label in args.sets:
            n, size = SETS[label]
            _make_files(src, n, size)
            total = n * size
            for cache in ("cold", "warm"):
                times: dict[str, list[float]] = {k: [] for k in runners}
                manifest_s: dict[str, list[float]] = {k: [] for k in runners}
                for _ in range(args.repeat):
                    for name, run in runners.items():  # interleaved, so drift hits all alike
                        dest = tmp / "dest"
                        _clean(dest)
                        _drop(src) if cache == "cold" else _warm(src)
                        secs, man_s = run(dest)
                        times[name].append(secs)
                        if man_s is not None:
                            manifest_s[name].append(man_s)
                _clean(tmp / "dest")
                cp_med = statistics.median(times["cp"])
                cps_med = statistics.median(times["cp + fsync"])
                sums_med = statistics.median(times["sha256sum + cp + sha256sum"])
                floor_med = statistics.median(times["cp + fsync + read-back"])
                for name, ts in times.items():
                    med = statistics.median(ts)
                    row = {"set": label, "cache": cache, "method": name, "bytes": total,
                           "median_s": round(med, 3), "runs_s": [round(t, 3) for t in ts],
                           "mb_per_s": round(total / 1e6 / med, 1),
                           "ratio_vs_cp": round(cp_med / med, 2),
                           "ratio_vs_cp_fsync": round(cps_med / med, 2),
                           "ratio_vs_cp_sums": round(sums_med / med, 2),
                           "ratio_vs_floor": round(floor_med / med, 2)}
                    if manifest_s[name]:
                        row["manifest_s"] = round(statistics.median(manifest_s[name]), 3)
                    results.append(row)
                    print(f"{label:11s} {cache:4s} {name:28s} {row['median_s']:7.2f} s "
                          f"{row['mb_per_s']:7.0f} MB/s  x{row['ratio_vs_cp']:.2f} vs cp  "
                          f"x{row['ratio_vs_cp_fsync']:.2f} vs cp+fsync  "
                          f"x{row['ratio_vs_cp_sums']:.2f} vs cp+sums  "
                          f"x{row['ratio_vs_floor']:.2f} vs cp+fsync+read-back"
                          + (f"  (manifest {row['manifest_s']:.2f} s)" if "manifest_s" in row
                             else ""), flush=True)
            _drop(src)
            shutil.rmtree(src)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
