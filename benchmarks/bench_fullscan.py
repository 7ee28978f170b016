"""A full ALS 8.3.2-size scan: peak memory under ``max_memory`` and time to the first image.

The scan is the digital twin at 1313 projections x 2160 rows x 2560 columns, uint16
(14.5 GB, one HDF5 chunk per frame, as the detector writes it). Measured in this run:

1. ``preview()`` on the scan with a cold page cache (the file's pages are dropped with
   ``posix_fadvise(DONTNEED)``, so it is read from disk) and warm; target < 10 s.
2. ``TomoPipeline`` runs under ``max_memory`` (default 4 GB), each in a child process whose
   peak resident memory (``VmHWM``, which counts libraries and the interpreter too) is
   compared with the budget:

   a. the whole detector, every row, 2 x 2 binning: reads the whole 14.5 GB file;
   b. full resolution on a slab of rows (default 128): the largest blocks, the same memory
      behaviour as the whole volume, whose time is extrapolated from the slab's rate;
   c. ``--full-res-all``: full resolution, every row (needs ~57 GB of free disk for the
      output volume; not run by default).

   Reference in the same run: reading the same rows with plain h5py (the I/O floor).

Usage::

    python benchmarks/bench_fullscan.py --dir /tmp/spotkit-fullscan   # ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _results import drop_page_cache  # benchmarks/ is on sys.path when run

SHAPE = (1313, 2160, 2560)


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def make_scan(directory: Path, shape=SHAPE) -> tuple[Path, float]:
    """The full-size twin scan (made once, then reused)."""
    from spotkit.sim import TomoScanTruth, simulate_tomo_scan

    tag = "x".join(map(str, shape))
    path = directory / f"scan_{tag}.h5"
    truth_path = directory / f"scan_{tag}.truth.json"
    if path.exists() and truth_path.exists():
        truth = TomoScanTruth.load(truth_path)
        print(f"reusing {path} ({path.stat().st_size / 1e9:.1f} GB)", flush=True)
        return path, truth.center
    directory.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    last = [0.0]

    def progress(stage, done, total):
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"  simulating {stage}: {done}/{total}", flush=True)

    truth = simulate_tomo_scan(path, shape=shape, center_offset=-17.25, seed=832,
                               ring_columns=12, progress=progress, overwrite=True)
    truth.save(truth_path)
    print(f"simulated {path} ({path.stat().st_size / 1e9:.1f} GB) in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return path, truth.center


def child(spec: dict) -> dict:
    """Run in a child process: one pipeline run or one preview, report time and peak memory."""
    import logging

    logging.basicConfig(level=logging.INFO, format="    %(name)s: %(message)s")
    from spotkit.tomo import TomoPipeline, preview

    t0 = time.perf_counter()
    out: dict = {}
    if spec["what"] == "preview":
        pv = preview(spec["path"], png=spec.get("png"))
        out.update(seconds=time.perf_counter() - t0, center=float(pv.attrs["center"]),
                   shape=list(pv["slices"].shape))
    elif spec["what"] == "read":
        import h5py

        with h5py.File(spec["path"], "r") as f:
            dset = f["/exchange/data"]
            for a in range(spec["rows"][0], spec["rows"][1], 16):
                dset[:, a:min(a + 16, spec["rows"][1])]
        out.update(seconds=time.perf_counter() - t0)
    else:
        pipe = TomoPipeline.default(stripe_method="fw", binning=spec["binning"])
        res = pipe.run(spec["path"], spec["output"], max_memory=spec["max_memory"],
                       rows=spec.get("rows"), overwrite=True)
        out.update(seconds=time.perf_counter() - t0, n_blocks=res.n_blocks,
                   rows_per_block=res.rows_per_block, planned_bytes=res.planned_bytes,
                   shape=list(res.shape), center=res.side_outputs["center"]["center"],
                   backend=res.backend)
    out["peak_rss_bytes"] = _rss_kib(os.getpid(), "VmHWM") * 1024
    return out


def run_child(spec: dict) -> dict:
    """Run :func:`child` in a fresh interpreter, sampling its resident memory."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)],
                            stdout=subprocess.PIPE, text=True)
    samples: list[tuple[float, int]] = []
    t0 = time.perf_counter()

    def sample():
        while proc.poll() is None:
            samples.append((time.perf_counter() - t0, _rss_kib(proc.pid) * 1024))
            time.sleep(0.25)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, _ = proc.communicate()
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['what']} failed with exit code {proc.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["rss_samples"] = len(samples)
    result["sampled_peak_bytes"] = max((s for _, s in samples), default=0)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path("/tmp/spotkit-fullscan"))
    p.add_argument("--max-memory", default="4GB")
    p.add_argument("--slab", type=int, default=128, help="rows of the full-resolution run")
    p.add_argument("--full-res-all", action="store_true",
                   help="also reconstruct every row at full resolution (~57 GB output)")
    p.add_argument("--parts", nargs="*", default=["preview", "binned", "slab"],
                   choices=["preview", "binned", "slab"], help="what to measure")
    p.add_argument("--shape", type=int, nargs=3, default=SHAPE,
                   help="angles rows columns (default: the 8.3.2 detector)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child)), default=str))
        return

    from spotkit.tomo import parse_memory

    budget = parse_memory(args.max_memory)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}, numpy {np.__version__}", flush=True)
    shape = tuple(args.shape)
    path, center = make_scan(args.dir, shape)
    rows: list[tuple] = []

    # 1. preview, cold then warm
    for label in ("cold cache", "warm cache") if "preview" in args.parts else ():
        if label == "cold cache":
            drop_page_cache(path)
        r = run_child({"what": "preview", "path": str(path), "png": str(args.dir / "pv.png")})
        print(f"preview ({label}): {r['seconds']:.2f} s, centre {r['center']:.2f} "
              f"(true {center:.2f}), peak {r['peak_rss_bytes'] / 1e9:.2f} GB", flush=True)
        rows.append((f"preview, {label}", r["seconds"], r["peak_rss_bytes"], "",
                     f"centre error {abs(r['center'] - center):.2f} px"))

    runs = []
    if "binned" in args.parts:
        runs.append((f"all {shape[1]} rows, 2x2 binned", 2, None, "binned.h5"))
    slab0 = shape[1] // 2 - args.slab // 2
    if "slab" in args.parts:
        runs.append((f"{args.slab}-row slab, full resolution", 1, [slab0, slab0 + args.slab],
                     "slab.h5"))
    if args.full_res_all:
        runs.append((f"all {shape[1]} rows, full resolution", 1, None, "full.h5"))
    for label, binning, sel, name in runs:
        read_rows = sel or [0, shape[1]]
        drop_page_cache(path)
        ref = run_child({"what": "read", "path": str(path), "rows": read_rows})
        drop_page_cache(path)
        r = run_child({"what": "pipeline", "path": str(path), "output": str(args.dir / name),
                       "binning": binning, "rows": sel, "max_memory": args.max_memory})
        n_rows = read_rows[1] - read_rows[0]
        extra = (f"{r['n_blocks']} blocks of {r['rows_per_block']} rows, planned "
                 f"{r['planned_bytes'] / 1e9:.2f} GB, output {r['shape']}; "
                 f"h5py read of the same rows {ref['seconds']:.0f} s "
                 f"({r['seconds'] / ref['seconds']:.1f}x)")
        if sel:
            extra += (f"; all {shape[1]} rows at this rate: "
                      f"{r['seconds'] * shape[1] / n_rows / 60:.0f} min")
        print(f"{label}: {r['seconds']:.1f} s, peak {r['peak_rss_bytes'] / 1e9:.2f} GB of "
              f"{budget / 1e9:.1f} GB budget ({r['peak_rss_bytes'] / budget:.0%}); {extra}; "
              f"backend {r['backend']}", flush=True)
        rows.append((label, r["seconds"], r["peak_rss_bytes"],
                     f"{r['peak_rss_bytes'] / budget:.0%}", extra))
        (args.dir / name).unlink(missing_ok=True)

    print()
    print(f"| run | seconds | peak RSS (GB) | of {args.max_memory} | notes |")
    print("|---|---|---|---|---|")
    for label, sec, peak, frac, note in rows:
        print(f"| {label} | {sec:.1f} | {peak / 1e9:.2f} | {frac} | {note} |")


if __name__ == "__main__":
    main()
