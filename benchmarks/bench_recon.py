"""Reconstruction speed and quality: spotkit against tomopy in the same run, and every backend.

Part ``tomopy`` (the default; issue 11): a Shepp-Logan slice (``tomopy.shepp2d``, max 1, per
pixel) projected by ``tomopy.project`` over 1500 angles in [0, pi) onto 2048 columns at
tomopy's centre 1024 (= n/2, the detector middle), tiled to a stack of 8 slices (the
projection of one 2048 x 2048 slice takes ~90 s here; it is cached under
``benchmarks/_work/``). On that same stack, in one run and interleaved call by call:

* spotkit's builtin gridrec (``spotkit.tomo.reconstruct``, ``--filter``, default hann);
* tomopy's gridrec through ``tomopy.recon`` directly (same filter, sinogram order),
  (a) with the quantitative 2x zero padding that spotkit's tomopy backend applies
  (``(n+1)//2`` columns each side, centre moved by the same) and (b) plain, as a user calls
  it (tomopy pads only to the next power of two: not quantitative);
* spotkit's tomopy backend (``reconstruct(backend="tomopy")``: padding, half-pixel axis
  correction, mask);
* spotkit's builtin fbp (on fewer slices per call: it is ~40x slower; the time is per slice).

Time per slice = best of ``--repeat`` calls after one warm-up call, divided by the slices per
call, for each thread count (spotkit ``threads=``, tomopy ``ncore=``); the calls go round
robin (spotkit, tomopy, ..., spotkit, tomopy, ...), so besides the ratio of the best times the
table gives the median over rounds of the ratio within a round (*paired*), which drifts least
when other processes load the machine. Quality of the first
slice: Pearson correlation and NRMSE against the phantom inside the inscribed circle. The
load from other processes is measured while each block runs (from ``/proc/stat``, minus
this process's own CPU time) and printed; ``--quiet`` waits for an idle machine first, and
a block during which others used >= 0.25 core is re-timed (``--retries``; the quietest
attempt is reported). Quality also gives the gain (least-squares scale on the phantom).
Where tomopy is not importable the phantom comes from scikit-image, spotkit's own projector
stands in for ``tomopy.project``, and the tomopy rows say "not importable" instead of a number.

Part ``backends`` (the earlier table): every available backend on the twin's phantom
(exact sinogram), 1500x2048 and 720x1024, with scikit-image ``iradon`` (sinogram shifted
so the axis sits at ``n // 2``) as the installed reference; ratios against builtin fbp;
NRMSE and SSIM against ``phantom_slice(units="1/pixel")`` inside the inscribed circle.

Usage::

    python benchmarks/bench_recon.py                    # spotkit vs tomopy (~6 min)
    python benchmarks/bench_recon.py --quick --repeat 7 # builtin vs tomopy plain, 2 threads
    python benchmarks/bench_recon.py --quiet --record   # wait for an idle machine; RESULTS.md
    python benchmarks/bench_recon.py --parts backends [--quick]   # every backend, twin
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, machine_line, write_section  # benchmarks/ is on sys.path
from scipy import ndimage

from spotkit.sim import simulate_tomo_scan
from spotkit.tomo import backends, reconstruct
from spotkit.tomo._recon import reconstruct_with_info

WORK = Path(__file__).with_name("_work")
HEADING = "## Reconstruction: spotkit vs tomopy"
QUIET_CORES = 0.25  # other processes' CPU below which a timing block counts as quiet
TOMOPY_LABELS = ("tomopy gridrec, 2x padded (tomopy.recon)",
                 "tomopy gridrec, plain (tomopy.recon)",
                 "spotkit backend='tomopy' (adapter)")
NOTES = [
    "Definitions: s/slice = the best of the timed calls (each after one warm-up call) divided "
    "by the slices per call, the median beside it; all methods of a block are timed "
    "interleaved, call by call (round robin); *paired* = the median over rounds of spotkit's "
    "time over this method's time in the same round. *corr*, *NRMSE*: the first slice "
    "against the phantom inside "
    "the inscribed circle (NRMSE = rms error / rms phantom; *gain* = least-squares scale of "
    "the image on the phantom, 1 = quantitative). *other load*: CPU used by other processes "
    "while the block ran (/proc/stat minus this process's CPU time); a block timed while "
    "others used >= 0.25 core is re-timed (--retries) and the quietest attempt kept. tomopy "
    "*plain* pads only to the next power of two, so its values are not quantitative (its "
    "NRMSE) and, given tomopy's centre, its gridrec turns half a column right of its "
    "projector's axis; spotkit's tomopy adapter corrects both (it pads, shifts the rows by "
    "half a pixel with an FFT phase, and masks the circle)."]


# ------------------------------------------------------------------ shared with bench_center


def load_tomopy():
    """``(tomopy module or None, one line saying which or why not)``."""
    try:
        import tomopy
    except ImportError as exc:  # conda-forge only, or built from source
        return None, f"tomopy not importable ({exc})"
    return tomopy, f"tomopy {tomopy.__version__}"


def shepp_phantom(n: int, size: int | None = None, tomopy=None) -> np.ndarray:
    """Shepp-Logan of ``size`` pixels (default ``n``), max 1, centred in an ``n x n`` image.

    ``tomopy.shepp2d`` when tomopy is given, else scikit-image's phantom resized (a stand-in).
    """
    size = n if size is None else size
    if tomopy is not None:
        ph = tomopy.shepp2d(size)[0].astype(np.float64)
    else:
        from skimage.data import shepp_logan_phantom
        from skimage.transform import resize

        ph = resize(shepp_logan_phantom(), (size, size), order=1, anti_aliasing=True)
    ph = (ph / ph.max()).astype(np.float32)
    out = np.zeros((n, n), np.float32)
    lo = (n - size) // 2
    out[lo:lo + size, lo:lo + size] = ph
    return out


def project(phantom: np.ndarray, theta: np.ndarray, center: float, *, key: str,
            tomopy=None) -> tuple[np.ndarray, str]:
    """Sinogram ``(angles, n)`` of ``phantom`` at tomopy's ``center``, cached in ``_work/``.

    ``tomopy.project(..., pad=False)`` when tomopy is given; else spotkit's builtin
    projector (same convention, but spotkit's own twin). Returns the sinogram and which
    projector made it.
    """
    theta = np.asarray(theta, np.float32)
    path = WORK / f"{key}.npz"
    if path.exists():
        d = np.load(path)
        if (d["theta"].shape == theta.shape and np.array_equal(d["theta"], theta)
                and float(d["center"]) == center
                and np.array_equal(d["phantom_sum"], phantom.sum(dtype=np.float64))
                and (tomopy is None or str(d["projector"]).startswith("tomopy."))):
            return d["sino"], str(d["projector"]) + " (cached)"
    t0 = time.perf_counter()
    if tomopy is not None:
        sino = tomopy.project(phantom[None], theta, center=center, pad=False)[:, 0]
        projector = f"tomopy.project {tomopy.__version__}"
    else:
        from spotkit.tomo.backends._builtin import _forward_project

        n = phantom.shape[-1]
        sino = _forward_project(phantom[None], theta.astype(np.float64), center, n, None)[0, :, :n]
        projector = "spotkit builtin projector (tomopy not importable)"
    print(f"  projected {key} with {projector} in {time.perf_counter() - t0:.0f} s", flush=True)
    WORK.mkdir(exist_ok=True)
    np.savez(path, sino=sino.astype(np.float32), theta=theta, center=center,
             projector=projector, phantom_sum=phantom.sum(dtype=np.float64))
    return sino.astype(np.float32), projector


class LoadMeter:
    """CPU used by other processes (in cores) while a block runs: the machine's busy time
    from ``/proc/stat`` minus this process's own (threads included)."""

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_seconds(), _own_seconds()
        self.load0 = os.getloadavg()[0]
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        others = (_busy_seconds() - self.busy0) - (_own_seconds() - self.own0)
        self.others = max(0.0, others / wall) if wall > 0 else float("nan")
        self.load1 = os.getloadavg()[0]
        return False

    def __str__(self):
        return (f"other processes {self.others:.2f} cores; loadavg {self.load0:.2f}->"
                f"{self.load1:.2f}")


def _busy_seconds() -> float:
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def wait_for_quiet(max_cores: float = QUIET_CORES, max_wait: float = 600.0) -> float:
    """Wait (up to ``max_wait`` s) until other processes use under ``max_cores`` over 5 s;
    return the last measurement."""
    t_end = time.monotonic() + max_wait
    while True:
        b0, o0, t0 = _busy_seconds(), _own_seconds(), time.perf_counter()
        time.sleep(5)
        used = ((_busy_seconds() - b0) - (_own_seconds() - o0)) / (time.perf_counter() - t0)
        if used < max_cores or time.monotonic() > t_end:
            print(f"  other processes: {used:.2f} cores "
                  f"({'quiet' if used < max_cores else 'still busy: timing anyway'})",
                  flush=True)
            return used
        time.sleep(10)


def circle_mask(n: int) -> np.ndarray:
    """Pixels inside the inscribed circle (radius n/2 - 1)."""
    c = np.arange(n) - (n - 1) / 2.0
    return (c[:, None] ** 2 + c[None, :] ** 2) <= (n / 2.0 - 1) ** 2


def quality(rec: np.ndarray, phantom: np.ndarray) -> tuple[float, float, float]:
    """Inside the inscribed circle: Pearson correlation, NRMSE (rms error / rms phantom)
    and gain (least-squares scale of the image on the phantom; 1 = quantitative)."""
    m = circle_mask(phantom.shape[0])
    a, b = rec[m].astype(np.float64), phantom[m].astype(np.float64)
    corr = float(np.corrcoef(a, b)[0, 1])
    return (corr, float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2))),
            float(np.dot(a, b) / np.dot(b, b)))


# ------------------------------------------------------------------ part "tomopy"


def _builtin_state() -> str:
    """Which version of the builtin backend is timed (commit, and whether edited)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h",
                               "--", "spotkit/tomo"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "spotkit/tomo"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"spotkit/tomo at {head}" + (" with uncommitted edits:\n" + dirty if dirty else
                                        ", unmodified")


def _tomopy_filter(name: str) -> str:
    """tomopy's name of spotkit's filter ``name``."""
    return {"ramp": "ramlak"}.get(name, name)


def _tomopy_jobs(tomopy, stack, theta, center, threads, *, filter_name="hann", quick=False):
    """The tomopy calls timed, as ``label -> callable`` (``quick``: plain gridrec only)."""
    n = stack.shape[-1]
    tomopy_filter = _tomopy_filter(filter_name)
    pad = (n + 1) // 2
    theta32 = theta.astype(np.float32)

    def padded():
        big = np.pad(stack, ((0, 0), (0, 0), (pad, pad)))
        return tomopy.recon(big, theta32, center=center + pad, sinogram_order=True,
                            algorithm="gridrec", filter_name=tomopy_filter, num_gridx=n,
                            num_gridy=n, ncore=threads)

    def plain():
        return tomopy.recon(stack, theta32, center=center, sinogram_order=True,
                            algorithm="gridrec", filter_name=tomopy_filter, ncore=threads)

    def adapter():
        return reconstruct(stack, theta, center, backend="tomopy", algorithm="gridrec",
                           filter=filter_name, threads=threads)

    if quick:
        return {TOMOPY_LABELS[1]: plain}
    return dict(zip(TOMOPY_LABELS, (padded, plain, adapter), strict=True))


def _best_of(jobs: dict, repeat: int) -> tuple[dict, dict, dict, dict]:
    """Warm up each job, then time ``repeat`` rounds interleaved job by job.

    Returns best seconds, median seconds, the last output and all times (in round order)
    per label.
    """
    out, times = {}, {label: [] for label in jobs}
    for label, job in jobs.items():
        out[label] = job()
    for _ in range(repeat):
        for label, job in jobs.items():
            t0 = time.perf_counter()
            out[label] = job()
            times[label].append(time.perf_counter() - t0)
    return ({k: min(v) for k, v in times.items()},
            {k: float(np.median(v)) for k, v in times.items()}, out, times)


def tomopy_part(args) -> tuple[list, list, list]:
    """spotkit vs tomopy on one tomopy-projected Shepp-Logan stack.

    Returns the report: set-up lines, a markdown table, summary lines.
    """
    tomopy, tomopy_line = load_tomopy()
    n_angles, n = args.angles, args.cols
    center = n / 2.0  # tomopy's centre: the detector middle
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    phantom = shepp_phantom(n, tomopy=tomopy)
    sino, projector = project(phantom, theta, center, key=f"shepp_{n_angles}x{n}_c{center:g}",
                              tomopy=tomopy)
    stack = np.ascontiguousarray(np.broadcast_to(sino, (args.slices, *sino.shape)))
    fbp_stack = np.ascontiguousarray(stack[: args.fbp_slices])
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}, numpy {np.__version__}; {tomopy_line}",
             f"builtin backend: {backends.get_backend('builtin').version()}; "
             f"{_builtin_state()}",
             f"data: Shepp-Logan {n} x {n} (max 1) projected by {projector}, "
             f"{n_angles} angles in [0, pi), {n} columns, centre {center:g}; filter "
             f"{args.filter}; {args.slices} slices per call ({args.fbp_slices} for fbp); best of "
             f"{args.repeat} calls after a warm-up ({args.fbp_repeat} for fbp)"]
    for line in lines:
        print(line, flush=True)
    # compile numba / load finufft on a tiny problem
    for alg in ("gridrec", "fbp"):
        reconstruct(sino[::100, :64], theta[::100], 32.0, algorithm=alg, backend="builtin")

    def timed(jobs, repeat, slices, threads, what):
        """Time a block; re-time it (up to --retries) while others loaded the machine."""
        attempts = []
        for attempt in range(1 + args.retries):
            if args.quiet:
                wait_for_quiet()
            with LoadMeter() as meter:
                best, med, out, times = _best_of(jobs, repeat)
            print(f"  {what}, attempt {attempt + 1}: {meter}", flush=True)
            attempts.append((meter.others, best, med, out, times))
            if meter.others < QUIET_CORES:
                break
        others, best, med, out, times = min(attempts, key=lambda a: a[0])
        ours = times.get("spotkit builtin gridrec")
        result = []
        for label in jobs:
            corr, nrmse, gain = quality(out[label][0], phantom)
            paired = (float(np.median(np.divide(ours, times[label]))) if ours is not None
                      else None)
            result.append({"threads": threads, "label": label, "best": best[label] / slices,
                           "median": med[label] / slices, "corr": corr, "nrmse": nrmse,
                           "gain": gain, "others": others, "attempts": len(attempts),
                           "paired": paired})
            print(f"  {threads}T {label:42s} {best[label] / slices:8.4f} s/slice  corr "
                  f"{corr:.4f}  NRMSE {nrmse:.4f}  gain {gain:.3f}", flush=True)
        return result

    rows = []
    for threads in args.threads:
        jobs = {"spotkit builtin gridrec": lambda t=threads: reconstruct(
            stack, theta, center, backend="builtin", algorithm="gridrec", filter=args.filter,
            threads=t)}
        if tomopy is not None:
            jobs.update(_tomopy_jobs(tomopy, stack, theta, center, threads,
                                     filter_name=args.filter, quick=args.quick))
        rows += timed(jobs, args.repeat, args.slices, threads,
                      f"{threads} thread(s), gridrec block")
        if tomopy is None:
            rows += [{"threads": threads, "label": label, "best": None}
                     for label in (TOMOPY_LABELS[1:2] if args.quick else TOMOPY_LABELS)]
        if args.fbp_repeat > 0:
            rows += timed({"spotkit builtin fbp": lambda t=threads: reconstruct(
                fbp_stack, theta, center, backend="builtin", algorithm="fbp",
                filter=args.filter, threads=t)}, args.fbp_repeat, args.fbp_slices, threads,
                f"{threads} thread(s), fbp block")

    table = ["| threads | method | s/slice (best) | median | spotkit gridrec ÷ this (best) | "
             "paired | corr | NRMSE | gain | other load (cores) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ratios = []
    for r in rows:
        ours = next(o["best"] for o in rows
                    if o["threads"] == r["threads"] and o["label"] == "spotkit builtin gridrec")
        if r["best"] is None:
            table.append(f"| {r['threads']} | {r['label']} | not run: {tomopy_line} "
                         "| | | | | | | |")
            continue
        ratio = ours / r["best"]
        if r["label"].startswith("tomopy gridrec"):
            ratios.append((r["threads"], r["label"], ratio, r))
        paired = "" if r.get("paired") is None else f"{r['paired']:.2f}"
        table.append(f"| {r['threads']} | {r['label']} | {r['best']:.4f} | {r['median']:.4f} "
                     f"| {ratio:.2f} | {paired} | {r['corr']:.4f} | {r['nrmse']:.4f} "
                     f"| {r['gain']:.3f} | {r['others']:.2f} |")
    print()
    print("\n".join(table))
    print()
    summary = []
    if tomopy is None:
        summary.append(f"spotkit / tomopy: not measured, {tomopy_line}.")
    for threads, label, ratio, r in ratios:
        ours = next(o for o in rows
                    if o["threads"] == threads and o["label"] == "spotkit builtin gridrec")
        summary.append(f"{threads} thread(s): spotkit builtin gridrec / {label} = "
                       f"**{ratio:.2f}** in time per slice ({ours['best']:.4f} / "
                       f"{r['best']:.4f} s; medians {ours['median']:.4f} / "
                       f"{r['median']:.4f} s, paired {r['paired']:.2f}); correlation "
                       f"{ours['corr']:.4f} vs {r['corr']:.4f}")
    for line in summary:
        print(line)
    return lines, table, summary


# ------------------------------------------------------------------ part "backends"

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
    # put the axis on column n // 2 (column j centred at j), iradon's only choice; tomopy's
    # centre value of that column is n // 2 + 1/2
    shift = n_cols // 2 + 0.5 - center
    shifted = ndimage.shift(sino.astype(np.float64), (0, shift), order=1, mode="constant")
    rec = iradon(shifted.T, theta=np.rad2deg(theta), output_size=n_cols,
                 filter_name="shepp-logan", circle=True)
    # iradon puts pixel j at j - n // 2 from the axis, the convention at j - (n - 1) / 2:
    # for even n its image sits half a pixel further along both axes; move it back
    d = n_cols // 2 - (n_cols - 1) / 2.0
    return ndimage.shift(rec, (-d, -d), order=3, mode="nearest") if d else rec


def _skimage_oriented(sino, theta, center):
    """iradon, flipped/transposed onto spotkit's grid (found by the shared probe)."""
    from spotkit.tomo.backends._base import probe_orientation

    fix = probe_orientation(_skimage, expected="identity", backend="skimage")
    return fix(_skimage(sino, theta, center))


def backends_part(args):
    """Every available backend on the twin (the earlier table)."""

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="*", default=["tomopy"], choices=["tomopy", "backends"])
    p.add_argument("--threads", nargs="*", type=int, default=None,
                   help="thread counts (default 1 2; --quick: 2)")
    p.add_argument("--filter", default="hann", choices=["ramp", "shepp", "cosine", "hann",
                                                        "hamming"],
                   help="tomopy part: window of the ramp filter, the same for every method")
    p.add_argument("--repeat", type=int, default=5,
                   help="timed calls after a warm-up (tomopy: best reported; backends: "
                        "median)")
    p.add_argument("--angles", type=int, default=1500, help="tomopy part: angles in [0, pi)")
    p.add_argument("--cols", type=int, default=2048, help="tomopy part: detector columns")
    p.add_argument("--slices", type=int, default=8,
                   help="tomopy part: slices per call (even: gridrec pairs slices)")
    p.add_argument("--fbp-slices", type=int, default=2,
                   help="tomopy part: slices per builtin fbp call (~5-10 s per slice)")
    p.add_argument("--fbp-repeat", type=int, default=2,
                   help="tomopy part: timed fbp calls (0: skip fbp)")
    p.add_argument("--quiet", action="store_true",
                   help="wait (up to 10 min) until other processes use < 0.25 core before "
                        "each block")
    p.add_argument("--retries", type=int, default=2,
                   help="re-time a block up to this often while other processes used >= "
                        "0.25 core during it (the quietest attempt is reported)")
    p.add_argument("--record", action="store_true",
                   help="write the tomopy part's results to benchmarks/RESULTS.md")
    p.add_argument("--quick", action="store_true",
                   help="tomopy part: only builtin gridrec vs tomopy's plain gridrec, 2 "
                        "threads, no fbp (~2 min); backends part: at 1500x2048 time only "
                        "builtin gridrec and fbp")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES),
                   help="backends part: cases")
    p.add_argument("--sirt-iter", type=int, default=10,
                   help="backends part: SIRT iterations timed (cost is linear in them)")
    args = p.parse_args(argv)
    if args.slices % 2:
        p.error("--slices must be even (gridrec reconstructs slices in pairs)")
    if args.threads is None:
        args.threads = [2] if args.quick else [1, 2]
    if args.quick and "tomopy" in args.parts:
        args.fbp_repeat = 0
    if "tomopy" in args.parts:
        t0 = time.perf_counter()
        setup, table, summary = tomopy_part(args)
        wall = time.perf_counter() - t0
        if args.record:
            cmd = "python benchmarks/bench_recon.py " + " ".join(argv or sys.argv[1:])
            write_section(HEADING, "\n".join([
                f"{HEADING} (`benchmarks/bench_recon.py`)", "", machine_line(),
                f"- **Command:** `{cmd.strip()}` ({wall / 60:.1f} min wall).", "",
                "```", *setup, "```", "", *table, "", *(f"- {s}" for s in summary),
                "", *NOTES]))
            print(f"recorded in {RESULTS}")
    if "backends" in args.parts:
        backends_part(args)


if __name__ == "__main__":
    main()
