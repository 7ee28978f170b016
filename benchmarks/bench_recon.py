"""Seconds per slice and quality of every available reconstruction backend, side by side.

Cases: 1500 angles x 2048 columns and 720 x 1024 (the twin's phantom, exact sinogram), with
1 and 2 threads. Each (backend, algorithm) is timed on the same slice in the same run,
plus scikit-image ``iradon`` (sinogram shifted so the axis sits at ``n // 2``, the only
centre it knows) as the installed reference; ratios are against the builtin ``fbp``
measured in this run. Quality: NRMSE and SSIM against ``phantom_slice(units="1/pixel")``
inside the inscribed circle.

Usage::

    python benchmarks/bench_recon.py            # everything (skimage at 1500x2048 ~75 s)
    python benchmarks/bench_recon.py --quick    # skip the slow references at 1500 x 2048
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from spotkit.sim import simulate_tomo_scan
from spotkit.tomo import backends
from spotkit.tomo._recon import reconstruct_with_info

CASES = {"1500x2048": (1500, 2048), "720x1024": (720, 1024)}


def _ssim(a, b, mask):
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        structural_similarity = None
    a, b = a * mask, b * mask
    rng = float(b.max() - b.min())
    if structural_similarity is not None:
        return float(structural_similarity(a, b, data_range=rng))
    w = 7
    ma, mb = ndimage.uniform_filter(a, w), ndimage.uniform_filter(b, w)
    va = ndimage.uniform_filter(a * a, w) - ma**2
    vb = ndimage.uniform_filter(b * b, w) - mb**2
    cov = ndimage.uniform_filter(a * b, w) - ma * mb
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    return float((((2 * ma * mb + c1) * (2 * cov + c2))
                  / ((ma**2 + mb**2 + c1) * (va + vb + c2))).mean())


def _quality(rec, phantom):
    n = phantom.shape[0]
    c = np.arange(n) - (n - 1) / 2.0
    mask = (c[:, None] ** 2 + c[None, :] ** 2) <= (n / 2.0 - 1) ** 2
    rec = rec.astype(np.float64)
    nrmse = np.sqrt(np.mean((rec - phantom)[mask] ** 2) / np.mean(phantom[mask] ** 2))
    return float(nrmse), _ssim(rec, phantom, mask)


def _skimage(sino, theta, center):
    from skimage.transform import iradon

    n_cols = sino.shape[1]
    shift = n_cols // 2 - center  # put the axis at n // 2, iradon's only choice
    shifted = ndimage.shift(sino.astype(np.float64), (0, shift), order=1, mode="constant")
    rec = iradon(shifted.T, theta=np.rad2deg(theta), output_size=n_cols,
                 filter_name="shepp-logan", circle=True)
    # iradon puts x = j - n//2: for even n that is half a pixel off spotkit's grid.
    return rec


def _skimage_oriented(sino, theta, center):
    """iradon, flipped/transposed onto spotkit's grid (found by the shared probe)."""
    from spotkit.tomo.backends._base import probe_orientation

    fix = probe_orientation(_skimage, expected="flip rows", backend="skimage")
    return fix(_skimage(sino, theta, center))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="at 1500x2048 time only builtin gridrec and fbp (skip skimage, sirt)")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    p.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    p.add_argument("--repeat", type=int, default=3,
                   help="timed calls after the first (median reported)")
    p.add_argument("--sirt-iter", type=int, default=10,
                   help="SIRT iterations timed (cost is linear in them)")
    args = p.parse_args(argv)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    print("backends available:", backends.available_backends())
    for name in backends.available_backends():
        print(f"  {name}: {backends.get_backend(name).version()}")
    tmp = Path(tempfile.mkdtemp())
    rows = []
    for case in args.cases:
        n_angles, n_cols = CASES[case]
        truth = simulate_tomo_scan(tmp / f"{case}.h5", shape=(n_angles, 2, n_cols),
                                   center_offset=3.5, seed=3, noise=False, ring_columns=0)
        sino = truth.sinogram(0.5).astype(np.float32)
        theta = np.deg2rad(truth.theta)
        phantom = truth.phantom_slice(0.5, units="1/pixel")
        big = case == "1500x2048"
        jobs = []
        for name in backends.available_backends() + (["astra"] if backends.get_backend(
                "astra").available() and "astra" not in backends.available_backends() else []):
            for alg in backends.get_backend(name).algorithms:
                if big and args.quick and (name != "builtin" or alg == "sirt"):
                    continue
                jobs.append((name, alg))
        # warm-up (numba compilation, finufft planning) on a tiny problem
        for name, alg in jobs:
            reconstruct_with_info(sino[:8, :64], theta[:8], 32.0, backend=name,
                                  algorithm=alg, num_iter=1)
        ref_time = {}
        for threads in args.threads:
            for name, alg in jobs:
                times = []
                for _ in range(1 if alg == "sirt" else 1 + args.repeat):
                    t0 = time.perf_counter()
                    rec, info = reconstruct_with_info(
                        sino, theta, truth.center, backend=name, algorithm=alg,
                        filter="shepp", num_iter=args.sirt_iter, threads=threads)
                    times.append(time.perf_counter() - t0)
                # the first call plans (NUFFT sorting, FFTW plans, phase factors); the others
                # are what every further slice of the scan costs
                sec = float(np.median(times[1:])) if len(times) > 1 else times[0]
                if len(times) > 1:
                    print(f"  {case} {threads}T {name} {alg}: first call {times[0]:.3f} s",
                          flush=True)
                nrmse, ssim = _quality(rec, phantom)
                label = f"{name} {alg}" + (f" ({args.sirt_iter} it)" if alg == "sirt" else "")
                rows.append((case, threads, label, info.engine, sec, nrmse, ssim))
                if (name, alg) == ("builtin", "fbp"):
                    ref_time[threads] = sec
                print(f"  {case} {threads}T {label:24s} {sec:8.3f} s  NRMSE {nrmse:.4f}  "
                      f"SSIM {ssim:.4f}", flush=True)
            # gridrec throughput: 8 slices in one call (one NUFFT plan, batched transforms)
            if ("builtin", "gridrec") in jobs:
                stack = np.stack([sino] * 8)
                times = []
                for _ in range(max(1, args.repeat)):
                    t0 = time.perf_counter()
                    reconstruct_with_info(stack, theta, truth.center, backend="builtin",
                                          threads=threads)
                    times.append((time.perf_counter() - t0) / 8)
                sec = float(np.median(times))
                rows.append((case, threads, "builtin gridrec x8 batch", "finufft", sec,
                             np.nan, np.nan))
                print(f"  {case} {threads}T builtin gridrec x8 batch  {sec:8.3f} s/slice",
                      flush=True)
        if not (big and args.quick):
            try:
                t0 = time.perf_counter()
                rec = _skimage_oriented(sino, theta, truth.center)
                sec = time.perf_counter() - t0
                nrmse, ssim = _quality(rec, phantom)
                rows.append((case, 1, "skimage iradon", "numpy", sec, nrmse, ssim))
                print(f"  {case} 1T skimage iradon {sec:8.3f} s  NRMSE {nrmse:.4f}  "
                      f"SSIM {ssim:.4f}", flush=True)
            except ImportError:
                print("  scikit-image not installed: no iradon reference")
        rows = [(*r, ref_time.get(r[1], ref_time.get(1, np.nan))) for r in rows
                if len(r) == 7] + [r for r in rows if len(r) == 8]

    print()
    print(f"{'case':10s} {'thr':>3s} {'backend / algorithm':28s} {'engine':8s} "
          f"{'s/slice':>9s} {'vs builtin fbp':>15s} {'NRMSE':>7s} {'SSIM':>7s}")
    for case, threads, label, engine, sec, nrmse, ssim, ref in rows:
        ratio = f"{ref / sec:7.1f}x faster" if np.isfinite(ref) else ""
        print(f"{case:10s} {threads:3d} {label:28s} {engine:8s} {sec:9.3f} {ratio:>15s} "
              f"{nrmse:7.4f} {ssim:7.4f}")


if __name__ == "__main__":
    main()
