"""Benchmark: centre of rotation ("vo", "pc", "sinusoid") on 1500-angle x 2048-column scans.

For several axis offsets the digital twin simulates a one-row scan (noise, 3 ring columns,
2 % beam drift), which is flat/dark normalised and minus-logged; each method is timed
(median of ``--repeat`` runs) and compared with the true centre. Runs once per thread count
in a fresh subprocess with ``OMP_NUM_THREADS`` etc. set and ``scipy.fft.set_workers``.

    python benchmarks/bench_center.py [--threads 1 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OFFSETS = (-20.0, -7.3, 0.0, 4.5, 12.75, 20.0)
SHAPE = (1500, 1, 2048)
METHODS = ("vo", "pc", "sinusoid")


def _worker(threads: int, repeat: int) -> None:
    import h5py
    import numpy as np
    import scipy.fft

    from spotkit.sim import simulate_tomo_scan
    from spotkit.tomo._center import find_center
    from spotkit.tomo._prep import minus_log, normalize

    rows = []
    with tempfile.TemporaryDirectory() as tmp, scipy.fft.set_workers(threads):
        for i, offset in enumerate(OFFSETS):
            path = Path(tmp) / f"scan{i}.h5"
            truth = simulate_tomo_scan(path, shape=SHAPE, center_offset=offset, seed=100 + i,
                                       beam_drift=0.02)
            with h5py.File(path) as f:
                sino = minus_log(normalize(f["exchange/data"][()], f["exchange/data_white"][()],
                                           f["exchange/data_dark"][()]))[:, 0, :]
            theta = np.deg2rad(truth.theta)
            for method in METHODS:
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    c = find_center(sino, theta, method=method)
                    times.append(time.perf_counter() - t0)
                rows.append({"threads": threads, "offset": offset, "method": method,
                             "truth": truth.center, "found": c, "error": c - truth.center,
                             "seconds": float(np.median(times))})
    print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        _worker(args.worker, args.repeat)
        return
    import numpy as np
    import scipy

    results = []
    for n in args.threads:
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS"):
            env[var] = str(n)
        out = subprocess.run([sys.executable, __file__, "--worker", str(n), "--repeat",
                              str(args.repeat)], env=env, capture_output=True, text=True,
                             check=True)
        results += json.loads(out.stdout.strip().splitlines()[-1])

    print(f"machine: {platform.machine()} {platform.processor() or ''}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"sinogram {SHAPE[0]} angles x {SHAPE[2]} columns, twin with noise, 3 ring columns, "
          f"2 % beam drift; median of {args.repeat} runs\n")
    print(f"{'method':9} {'threads':>7} {'median s':>9} {'max s':>7} "
          f"{'max |err| px':>12} {'mean err px':>11}")
    for method in METHODS:
        for n in args.threads:
            sel = [r for r in results if r["method"] == method and r["threads"] == n]
            t = [r["seconds"] for r in sel]
            e = np.array([r["error"] for r in sel])
            print(f"{method:9} {n:>7} {np.median(t):9.3f} {max(t):7.3f} "
                  f"{np.abs(e).max():12.3f} {e.mean():+11.3f}")
    print(f"\nper offset (threads = {args.threads[0]}):")
    print(f"{'offset':>7} {'truth':>8} " + " ".join(f"{m + ' err':>12}" for m in METHODS))
    for offset in OFFSETS:
        sel = {r["method"]: r for r in results
               if r["offset"] == offset and r["threads"] == args.threads[0]}
        print(f"{offset:7.2f} {sel['vo']['truth']:8.2f} "
              + " ".join(f"{sel[m]['error']:+12.3f}" for m in METHODS))


if __name__ == "__main__":
    main()
