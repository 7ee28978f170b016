"""Centre of rotation on stripy, noisy tomopy-convention data: error distributions per method.

Data (issue 11): a Shepp-Logan (``tomopy.shepp2d``, max 1) of 0.6 x the detector width,
centred in an ``n x n`` image, projected by ``tomopy.project`` at tomopy's centre ``n/2``
(cached under ``benchmarks/_work/``); each sinogram row is then shifted by a known
sub-pixel amount ``s`` (``scipy.ndimage.shift``, order 3; 20 shifts spread over -150..+150
px), so the true centre is ``n/2 + s`` in tomopy's convention. Then, per column, a gain
error that flat-fielding did not remove (stripes) and Poisson noise: counts =
Poisson(I0 * gain * exp(-a p)), I0 = 5000, ``a`` scales the thickest path to 2
(transmission 14 %), and the sinogram is ``-log(counts / I0)``. Gains: every column
uniform within +-1 %, and 5 % of the columns uniform within +-5 % ("stripes") or +-20 %
("strong stripes").

Cases: 1024 columns x 720 angles over 180 degrees (stripes; strong stripes), over 360
degrees (720 angles projected over [0, 2 pi)), with the sample partly outside the field of
view (the columns left of ``R/5`` inside the object's left edge cut off: the object leaves
the detector on one side, ``R`` its largest projected radius; the true centre moves with
the cut), and 2048 columns x 1500 angles (stripes), also with the phantom as wide as the
detector (``tomopy.shepp2d(2048)``, bench_recon's projection; shifted, it runs off the
detector edge on one side: the case of issue 11).

For each method (``find_center(..., method=m, check=False)``, m = "vo", "pc", "sinusoid")
Vo's metric over its whole default range (``search=(n/4, 3n/4)`` given explicitly: no coarse
pc/sinusoid estimate to start from) and the default ``find_center(sino, theta)`` (vo with its
cross-check): median |error|,
95th percentile, max, share within 0.25 px and within 1 px, the number of CenterWarnings
and the median time. tomopy's own ``find_center_vo`` runs on a few of the 1024-column
sinograms in the same run (its answer is in column-centre coordinates, column ``j`` centred
at ``j``: 0.5 is added to compare it with tomopy's centre convention), with its time.

Where tomopy is not importable the sinograms come from
``tests/reference/tomopy-1.15.2/conventions.npz`` (made by tomopy; 256 columns, 180
angles, the object fills the detector, so the shifts are only +-8 px; the 360-degree
sinogram is the 180-degree one and its mirror image, exact at centre n/2) and the tomopy
rows are not run.

Usage::

    python benchmarks/bench_center.py                 # all cases (~3 min; first run +4 min)
    python benchmarks/bench_center.py --record        # ... and write benchmarks/RESULTS.md
    python benchmarks/bench_center.py --cases 1024-180 --tomopy-cases 2
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _results import RESULTS, machine_line, write_section  # benchmarks/ is on sys.path
from bench_recon import load_tomopy, project, shepp_phantom
from scipy import ndimage

from spotkit.tomo import CenterWarning, find_center

HEADING = "## Centre of rotation"
REFERENCE = Path(__file__).resolve().parents[1] / "tests/reference/tomopy-1.15.2/conventions.npz"
METHODS = ("vo", "pc", "sinusoid")
#: what is run on every sinogram: each method alone, Vo's metric searched over its whole
#: default range without the coarse estimate it normally starts from, and the default
RUNS = (*METHODS, "vo-full", "default")
LABELS = {"vo-full": "vo, whole range, check=False", "default": "default (vo + check)",
          **{m: f"{m}, check=False" for m in METHODS}}
I0 = 5000.0

# name -> (columns, angles, turns, stripe amplitude, truncated, phantom size / columns)
CASES = {
    "1024-180": (1024, 720, 1, 0.05, False, 0.6),
    "1024-180-strong": (1024, 720, 1, 0.20, False, 0.6),
    "1024-360": (1024, 720, 2, 0.05, False, 0.6),
    "1024-180-truncated": (1024, 720, 1, 0.05, True, 0.6),
    "2048-180": (2048, 1500, 1, 0.05, False, 0.6),
    "2048-180-full": (2048, 1500, 1, 0.05, False, 1.0),
}
DESCRIBE = {  # after "<columns> cols x <angles> angles, "
    "1024-180": "180°, stripes ±5 %",
    "1024-180-strong": "180°, strong stripes ±20 %",
    "1024-360": "360°, stripes ±5 %",
    "1024-180-truncated": "180°, stripes ±5 %, sample leaves the detector (left)",
    "2048-180": "180°, stripes ±5 %",
    "2048-180-full": "180°, stripes ±5 %, phantom as wide as the detector (shifted off its "
                     "edge)",
}


def shifts(count: int, span: float, seed: int = 11) -> np.ndarray:
    """``count`` known sub-pixel shifts spread over ``-span..span``."""
    rng = np.random.default_rng(seed)
    return (np.linspace(-span + 0.5, span - 0.5, count)
            + rng.uniform(-0.5, 0.5, count)).round(3)


def base_sinogram(n: int, n_angles: int, turns: int, tomopy, fraction: float = 0.6):
    """(sinogram at tomopy's centre n/2, theta over ``turns`` x 180°, projector)."""
    theta = np.linspace(0, turns * np.pi, n_angles, endpoint=False)
    size = round(fraction * n / 2) * 2
    phantom = shepp_phantom(n, size, tomopy=tomopy)
    sino, projector = project(phantom, theta, n / 2.0, tomopy=tomopy,
                              key=f"shepp{size}_{n_angles}x{n}_turn{turns}_c{n / 2:g}"
                              if (size, turns) != (n, 1) else  # bench_recon's stack
                              f"shepp_{n_angles}x{n}_c{n / 2:g}")
    return sino.astype(np.float64), theta, projector


def reference_sinogram(turns: int):
    """The 256-column sinogram tomopy made (conventions.npz), 180° or mirrored to 360°."""
    d = np.load(REFERENCE)
    sino, theta = d["sino_mid"].astype(np.float64), d["theta"].astype(np.float64)
    if float(d["center_mid"]) != sino.shape[1] / 2:  # the mirror below needs it
        raise ValueError(f"{REFERENCE}: center_mid is not n/2; cannot mirror to 360 degrees")
    if turns == 2:  # p(θ + π, u) = p(θ, 2a - u): the columns reversed when the axis is n/2
        sino = np.concatenate([sino, sino[:, ::-1]])
        theta = np.concatenate([theta, theta + np.pi])
    return sino, theta, "tomopy.project 1.15.2 (tests/reference/tomopy-1.15.2/conventions.npz)"


def object_radius(sino: np.ndarray) -> float:
    """Largest distance (px) from the axis (column n/2) at which the object projects."""
    n = sino.shape[1]
    cols = np.flatnonzero(np.abs(sino).max(axis=0) > 1e-6 * np.abs(sino).max())
    edges = np.array([cols[0], cols[-1] + 1], dtype=float)
    return float(np.abs(edges - n / 2).max())


def measured(base, shift, amp, truncated, radius, scale, seed):
    """Shifted, (cropped), striped and noisy sinogram and its true centre (tomopy's)."""
    rng = np.random.default_rng(seed)
    n = base.shape[1]
    sino = ndimage.shift(base, (0, shift), order=3, mode="constant")
    truth = n / 2 + shift
    if truncated:  # the object's left R/5 leaves the detector
        k = round(n / 2 + shift - radius + radius / 5)
        sino = sino[:, k:]
        truth -= k
    n_cols = sino.shape[1]
    gain = 1 + rng.uniform(-0.01, 0.01, n_cols)
    bad = rng.choice(n_cols, max(1, n_cols // 20), replace=False)
    gain[bad] = 1 + rng.uniform(-amp, amp, bad.size)
    counts = rng.poisson(I0 * gain[None] * np.exp(-scale * np.clip(sino, 0, None)))
    return -np.log(np.maximum(counts, 1) / I0).astype(np.float32), truth


def run_case(name, args, tomopy):
    n, n_angles, turns, amp, truncated, fraction = CASES[name]
    if tomopy is not None:
        base, theta, projector = base_sinogram(n, n_angles, turns, tomopy, fraction)
        span = args.span
    else:
        base, theta, projector = reference_sinogram(turns)
        n, span = base.shape[1], 8.0
    radius = object_radius(base)
    scale = 2.0 / base.max()
    rows = []
    for i, s in enumerate(shifts(args.shifts, span)):
        sino, truth = measured(base, s, amp, truncated, radius, scale,
                               seed=1000 * list(CASES).index(name) + i)
        if i == 0:  # warm-up: FFT plans, caches
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CenterWarning)
                for method in METHODS:
                    find_center(sino, theta, method=method)
        n_cols = sino.shape[1]
        for method in RUNS:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CenterWarning)
                t0 = time.perf_counter()
                if method == "default":
                    c = find_center(sino, theta)
                elif method == "vo-full":  # an explicit search skips the coarse estimate
                    c = find_center(sino, theta, method="vo", check=False,
                                    search=(n_cols / 4, 3 * n_cols / 4))
                else:
                    c = find_center(sino, theta, method=method, check=False)
                sec = time.perf_counter() - t0
            n_warn = sum(issubclass(w.category, CenterWarning) for w in caught)
            rows.append({"case": name, "shift": float(s), "method": method, "truth": truth,
                         "found": float(c), "error": float(c) - truth, "seconds": sec,
                         "warnings": n_warn, "n_cols": sino.shape[1]})
    print(f"  {name}: {projector}, object radius {radius:.0f} px, "
          f"{len(rows) // len(RUNS)} shifts", flush=True)
    label = f"{base.shape[1]} cols x {base.shape[0]} angles, {DESCRIBE[name]}"
    return rows, projector, label


def tomopy_vo(name, args, tomopy, picks):
    """tomopy.find_center_vo on the shifts at ``picks`` (indices) of case ``name``."""
    n, n_angles, turns, amp, truncated, fraction = CASES[name]
    base, _theta, _ = base_sinogram(n, n_angles, turns, tomopy, fraction)
    radius, scale = object_radius(base), 2.0 / base.max()
    rows = []
    all_shifts = shifts(args.shifts, args.span)
    for i in picks:
        s = all_shifts[i]
        sino, truth = measured(base, s, amp, truncated, radius, scale,
                               seed=1000 * list(CASES).index(name) + i)
        reach = int(np.ceil(abs(sino.shape[1] / 2 - truth))) + 20
        t0 = time.perf_counter()
        found = tomopy.find_center_vo(sino[:, None, :], smin=-reach, smax=reach) + 0.5
        sec = time.perf_counter() - t0
        rows.append({"case": name, "shift": float(s), "truth": truth, "found": float(found),
                     "error": float(found) - truth, "seconds": sec, "reach": reach})
        print(f"  tomopy.find_center_vo {name} shift {s:+.2f}: error "
              f"{found - truth:+.3f} px in {sec:.1f} s (smin/smax ±{reach})", flush=True)
    return rows


def stats(rows):
    e = np.abs([r["error"] for r in rows])
    return {"n": e.size, "median": np.median(e), "p95": np.percentile(e, 95), "max": e.max(),
            "le025": np.mean(e <= 0.25), "le1": np.mean(e <= 1.0),
            "warnings": sum(r.get("warnings", 0) for r in rows),
            "warned": sum(r.get("warnings", 0) > 0 for r in rows),
            "seconds": float(np.median([r["seconds"] for r in rows]))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    p.add_argument("--shifts", type=int, default=20, help="shifts per case")
    p.add_argument("--span", type=float, default=150.0, help="shifts within ±span px")
    p.add_argument("--tomopy-cases", type=int, default=4,
                   help="shifts of 1024-180 given to tomopy.find_center_vo (0: none)")
    p.add_argument("--record", action="store_true", help="write benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    tomopy, tomopy_line = load_tomopy()
    print(tomopy_line)
    if tomopy is None:
        print("tomopy not importable: falling back to the 256-column sinograms tomopy made "
              f"({REFERENCE.name}); shifts ±8 px; no 2048 case; no tomopy.find_center_vo")
        args.cases = [c for c in args.cases if not c.startswith("2048")]
    rows, projectors, labels = [], {}, {}
    for name in args.cases:
        case_rows, projectors[name], labels[name] = run_case(name, args, tomopy)
        rows += case_rows
    tomopy_rows = []
    if tomopy is not None and args.tomopy_cases > 0:
        picks = np.unique(np.linspace(0, args.shifts - 1, args.tomopy_cases).round().astype(int))
        tomopy_rows = tomopy_vo("1024-180", args, tomopy, picks)

    table = ["| case | method | n | median abs err px | p95 | max | within 0.25 px | within 1 px "
             "| CenterWarnings (runs warned) | median s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in args.cases:
        for method in RUNS:
            st = stats([r for r in rows if r["case"] == name and r["method"] == method])
            label = LABELS[method]
            table.append(
                f"| {labels[name]} | {label} | {st['n']} | {st['median']:.3f} | "
                f"{st['p95']:.3f} | {st['max']:.3f} | {st['le025']:.0%} | {st['le1']:.0%} | "
                f"{st['warnings']} ({st['warned']}) | {st['seconds']:.3f} |")
    if tomopy_rows:
        st = stats(tomopy_rows)
        table.append(f"| {labels.get('1024-180', '1024-180')} | tomopy.find_center_vo (+0.5) "
                     f"| {st['n']} | "
                     f"{st['median']:.3f} | {st['p95']:.3f} | {st['max']:.3f} | "
                     f"{st['le025']:.0%} | {st['le1']:.0%} | – | {st['seconds']:.3f} |")
    print()
    print("\n".join(table))

    detail = []
    if tomopy_rows:
        detail.append("tomopy.find_center_vo vs spotkit on the same sinograms (case 1024-180; "
                      "tomopy's answer + 0.5; its smin/smax = ±(|offset of the truth from the "
                      "middle| + 20) px, so its search includes the truth):")
        detail.append("")
        detail.append("| shift px | tomopy vo err | tomopy s | spotkit vo err | spotkit default "
                      "err | spotkit default s | tomopy s ÷ spotkit s |")
        detail.append("|---:|---:|---:|---:|---:|---:|---:|")
        for t in tomopy_rows:
            sel = {r["method"]: r for r in rows if r["case"] == "1024-180"
                   and r["shift"] == t["shift"]}
            if not sel:
                continue
            d = sel["default"]
            detail.append(f"| {t['shift']:+.2f} | {t['error']:+.3f} | {t['seconds']:.1f} | "
                          f"{sel['vo']['error']:+.3f} | {d['error']:+.3f} | "
                          f"{d['seconds']:.3f} | {t['seconds'] / d['seconds']:.0f} |")
    worst = []
    for name in args.cases:
        for method in RUNS:
            sel = [r for r in rows if r["case"] == name and r["method"] == method]
            w = max(sel, key=lambda r: abs(r["error"]))
            worst.append(f"{name} {method}: worst error {w['error']:+.3f} px at shift "
                         f"{w['shift']:+.2f} (truth {w['truth']:.2f} of {w['n_cols']} columns)")
    print()
    print("\n".join(detail))
    print()
    print("\n".join(worst))
    wall = time.perf_counter() - t_start
    print(f"\ntotal {wall / 60:.1f} min")

    if args.record:
        cmd = "python benchmarks/bench_center.py " + " ".join(argv or sys.argv[1:])
        data = ("Shepp-Logan 0.6 x the width (the *full* case: 1.0 x), projected by "
                f"{projectors[args.cases[0]]} at n/2; {args.shifts} known shifts in "
                f"±{args.span:g} px (ndimage.shift order 3), truth = n/2 + shift; "
                "Poisson noise (I0 5000, thickest path transmission 14 %); gains ±1 % on "
                "every column and ±5 % (strong: ±20 %) on 5 % of the columns; truncated: "
                "the object's left R/5 cut off")
        if tomopy is None:
            data = (f"tomopy not importable ({tomopy_line}): the 256-column sinograms tomopy "
                    f"made ({REFERENCE.name}), shifts ±8 px, same noise and stripes; tomopy's "
                    "own find_center_vo not run")
        write_section(HEADING, "\n".join([
            f"{HEADING} (`benchmarks/bench_center.py`)", "", machine_line(),
            f"- **Command:** `{cmd.strip()}` ({wall / 60:.1f} min wall).",
            f"- **Data:** {data}.",
            "- *error* = found - truth (px, tomopy's centre convention); CenterWarnings = "
            "warnings raised (runs with at least one); time per call. *vo, whole range*: "
            "`search=(n/4, 3n/4)` given explicitly, which skips the coarse pc/sinusoid "
            "estimate that find_center's vo otherwise searches around (±8 px).", "",
            *table, "", *detail, "", "Worst cases:", "", *(f"- {w}" for w in worst)]))
        print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
