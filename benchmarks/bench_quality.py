"""Tomography quality report on the digital twin (issue 3): accuracy, centre, rings, orientation.

Everything is measured against what the twin (:func:`spotkit.sim.simulate_tomo_scan`) knows
to be true, through the public API of :mod:`spotkit.tomo`. This measures quality, not speed
(run it ``nice``-d; the few timings shown are only indicative).

1. **Reconstruction accuracy.** Each available backend x algorithm (gridrec, fbp, sirt) x
   filter reconstructs (a) the exact sinogram (``truth.sinogram``) and (b) the simulated noisy
   scan (Poisson + read noise, 20,000 flat counts, no ring columns, after ``normalize`` and
   ``minus_log``), at the true centre. Compared with ``truth.phantom_slice(row,
   units="1/pixel")``, in the same absolute units (attenuation per pixel), inside the circle
   inscribed in the grid (radius ``n/2 - 1``):

   * ``NRMSE = sqrt(mean((rec - phantom)^2) / mean(phantom^2))``;
   * ``SSIM``: Wang et al. (2004) with a Gaussian window (sigma 1.5 px, K1 0.01, K2 0.03;
     ``skimage.metrics.structural_similarity(gaussian_weights=True,
     use_sample_covariance=False)`` when scikit-image is importable, the same formula with
     ``scipy.ndimage.gaussian_filter`` otherwise). Both images are set to 0 outside the
     circle and the SSIM map is averaged over the circle's pixels. ``data_range`` is the
     phantom's ``max - min`` over the slice (printed with the table);
   * ``gain``: least-squares scale of rec against the phantom (1 = quantitative);
   * ``vs gridrec``: NRMSE of the result against the same backend's gridrec with the same
     filter (a cross-check between algorithms; large values mean they disagree).

2. **Centre of rotation.** For axis offsets ``OFFSETS`` x dose (noise off, 20,000 flat
   counts, 2,000 and 500: lower dose) x ring columns (none; 3 columns at 3 %; 10 at 10 %),
   ``find_center(method=...)`` for "vo", "pc" and "sinusoid" on the normalised, minus-logged
   sinogram. Error = found - ``truth.center``; the issue's target is ``|error| <= 0.5 px``:
   every case over it is listed (``FAIL``).

3. **Ring removal.** Noisy scans with ring columns, before and after
   ``remove_stripes(method="fw" | "sorting")`` (default options), each compared with the
   *same* scan simulated without ring columns (same seed: the same phantom, flats and photon
   noise; only the column gains differ), all reconstructed with builtin gridrec (shepp):

   * ``stripe``: mean over columns of ``|m - median_filter(m, 9)|`` with ``m`` the sinogram's
     mean over angles (needs no truth; the ring-free scan gives the floor);
   * ``ring``: the largest ring in ``rec - rec_ring_free``: the azimuthal mean of the
     difference in 1-px radial bins about the axis, high-passed (minus its 9-bin median),
     maximum of its absolute value, in % of the sample's matrix attenuation; ``reduction``
     is the before / after ratio;
   * ``edge``: 10-90 % width (px) of the edge spread function across the sample's outer
     boundary (the matrix ellipse), averaged over 720 normals (bilinear sampling, 0.1 px
     steps); the voxelised phantom and the ring-free reconstruction give the references;
   * NRMSE / SSIM against the phantom as in section 1.

4. **Orientation and sign.** With the axis right of the detector middle (``center > n/2``)
   and theta from 0, two off-centre inclusions are isolated exactly (sinogram and phantom
   with minus without the inclusion) and their centroids compared: projection at theta = 0
   and 90 degrees against ``center + x0`` and ``center + y0``; reconstruction against the
   phantom image (row, col). The 8 flips/transposes of the reconstruction are scored
   against the phantom: the identity must win.

What tomopy documents, and what its source implies (tomopy is conda-forge only and is not
installed here, so none of this is run; it is the reference the numbers are checked
against). ``tomopy.recon(tomo, theta, center=None, ...)``: ``tomo`` is ``[angles, slices,
pixels]`` unless ``sinogram_order=True``; ``theta`` "Projection angles in radian"; ``center``
"Location of rotation axis", one per slice, default ``tomo.shape[2] / 2``
(``tomopy.sim.project.get_center``). The documentation says nothing about the orientation of
the returned image. The gridrec C code (``libtomo/gridrec/gridrec.c``) multiplies the FFT of
column ``j`` data by ``exp(-2 pi i k center / pdim)`` (column ``j`` centred at ``j``, as in
spotkit) and puts frequency ``k`` at ``(k cos theta, k sin theta)``, so a point ``(x, y)``
projects onto column ``center + x cos theta + y sin theta``, spotkit's convention; it writes
``recon[(ngridx - 1 - k) * ngridy + j]`` with ``j`` along ``x`` and ``k`` along ``y``: image
columns increase with ``x``, image rows *decrease* with ``y``, and pixel centres sit at
``x = j - n/2``, ``y = n/2 - 1 - row``. So for theta from 0 and ``center > n/2``: a feature
at ``x > 0`` (right of the axis on the theta = 0 projection) lands in columns ``> n/2`` in
both; a feature at ``y > 0`` (right of the axis at theta = 90) lands in the lower half of
spotkit's image (rows ``> (n-1)/2``) and the upper half of tomopy's; the grid is centred on
the axis, not on the detector, in both. tomopy's gridrec image is spotkit's flipped up-down
(what ``spotkit.tomo.backends._tomopy`` expects, "flip rows") *and* shifted by half a pixel
for even ``n`` (its axis is the centre of pixel ``n/2``; spotkit's lies between pixels).
tomopy's iterative code (``libtomo/recon/utils.c``, ``preprocessing``: ``mov = (dx - 1)/2 -
center + 0.5``) puts detector pixel ``d`` at ``d - center + 0.5`` from the axis, i.e. half a
pixel from gridrec's convention for the same ``center``.

Usage::

    nice -n 19 python benchmarks/bench_quality.py            # 360 x 512, ~4 min on 2 cores
    nice -n 19 python benchmarks/bench_quality.py --full     # adds 720 x 1024 (SIRT is slow)
    nice -n 19 python benchmarks/bench_quality.py --write    # also update RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import scipy
from _results import RESULTS, write_section  # benchmarks/ is on sys.path when run
from scipy import ndimage

import spotkit
from spotkit.sim import simulate_tomo_scan
from spotkit.tomo import (
    ALGORITHMS,
    FILTERS,
    backends,
    find_center,
    minus_log,
    normalize,
    reconstruct_with_info,
    remove_stripes,
)

SIZES = {"360x512": (360, 512), "720x1024": (720, 1024)}
ROW = 0  # detector row used (scans have one row)
OFFSETS = (-40.0, -12.3, -0.5, 0.0, 3.7, 25.0)
DOSES = {  # name -> simulate_tomo_scan options
    "noise off": {"noise": False},
    "20k counts": {"noise": True, "flat_counts": 20000.0},
    "2k counts": {"noise": True, "flat_counts": 2000.0},
    "500 counts": {"noise": True, "flat_counts": 500.0},
}
RINGS = {  # name -> (ring_columns, ring_strength)
    "none": (0, 0.0),
    "3 cols 3 %": (3, 0.03),
    "10 cols 10 %": (10, 0.10),
}
CENTER_METHODS = ("vo", "pc", "sinusoid")
STRIPE_METHODS = ("fw", "sorting")
TARGET_PX = 0.5
RING_FLATS = 500  # flats averaged in section 3, so the reference scan has no flat-noise rings
ORIENT_ITER = 30  # SIRT iterations in section 4 (positions, not convergence, are checked)
MIN_RING_RADIUS = 10  # px: azimuthal means of fewer pixels are left out of "elsewhere"


# ------------------------------------------------------------------------------ helpers


def _scan(tmp: Path, name: str, n_angles: int, n_cols: int, **options):
    """Simulate a one-row scan; return (truth, minus-logged sinogram [angles, cols])."""
    truth = simulate_tomo_scan(tmp / f"{name}.h5", shape=(n_angles, 1, n_cols),
                               overwrite=True, **options)
    with h5py.File(truth.path) as f:
        proj = normalize(f["exchange/data"][()], f["exchange/data_white"][()],
                         f["exchange/data_dark"][()])
    truth.path.unlink()
    return truth, minus_log(proj)[:, ROW, :]


def _circle(n: int) -> np.ndarray:
    c = np.arange(n) - (n - 1) / 2.0
    return (c[:, None] ** 2 + c[None, :] ** 2) <= (n / 2.0 - 1) ** 2


def _ssim_map(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    """Gaussian-window SSIM map (sigma 1.5, K1 0.01, K2 0.03), skimage's when installed."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        structural_similarity = None
    if structural_similarity is not None:
        return structural_similarity(a, b, data_range=data_range, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False, full=True)[1]

    def blur(x):
        return ndimage.gaussian_filter(x, 1.5, truncate=3.5)

    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))


def _quality(rec: np.ndarray, phantom: np.ndarray, data_range: float) -> dict:
    """NRMSE, SSIM and gain of ``rec`` against ``phantom`` inside the inscribed circle."""
    mask = _circle(phantom.shape[0])
    rec = np.where(mask, rec.astype(np.float64), 0.0)
    ph = np.where(mask, phantom, 0.0)
    diff = (rec - ph)[mask]
    return {
        "nrmse": float(np.sqrt(np.mean(diff**2) / np.mean(ph[mask] ** 2))),
        "ssim": float(_ssim_map(rec, ph, data_range)[mask].mean()),
        "gain": float(np.sum(rec[mask] * ph[mask]) / np.sum(ph[mask] ** 2)),
    }


def _nrmse_between(a: np.ndarray, b: np.ndarray) -> float:
    mask = _circle(a.shape[0])
    return float(np.sqrt(np.mean((a - b)[mask] ** 2) / np.mean(b[mask] ** 2)))


def _jobs(filters) -> list[tuple[str, str, str | None]]:
    """(backend, algorithm, filter) for every available backend; filter None for sirt."""
    jobs = []
    for name in backends.available_backends():
        be = backends.get_backend(name)
        for alg in ALGORITHMS:
            if alg not in be.algorithms:
                continue
            if alg == "sirt":
                jobs.append((name, alg, None))
            else:
                jobs += [(name, alg, f) for f in filters if f in be.filters]
    return jobs


def _recon(sino, theta, center, *, backend="builtin", algorithm="gridrec", filter="shepp",
           threads=1, num_iter=None):
    rec, info = reconstruct_with_info(sino, theta, center, backend=backend,
                                      algorithm=algorithm, filter=filter or "shepp",
                                      threads=threads, num_iter=num_iter)
    return rec.astype(np.float64), info


# ------------------------------------------------------------------ 1. reconstruction accuracy


def accuracy(tmp: Path, sizes, *, seed: int, threads: int, sirt_iter: int) -> dict:
    """NRMSE/SSIM/gain of every backend x algorithm x filter, exact and noisy sinograms."""
    rows, notes = [], []
    for size in sizes:
        n_angles, n_cols = SIZES[size]
        truth, noisy = _scan(tmp, f"acc{size}", n_angles, n_cols, center_offset=3.7, seed=seed,
                             ring_columns=0)
        theta = np.deg2rad(truth.theta)
        phantom = truth.phantom_slice(ROW, units="1/pixel")
        data_range = float(phantom.max() - phantom.min())
        notes.append(f"{size}: centre {truth.center:.2f}, SSIM data_range "
                     f"{data_range:.3e} /px (phantom max - min); noisy scan: 20k flat "
                     "counts, 10 flats (the twin's defaults, so flat-field noise adds faint "
                     "stripes), no ring columns")
        data = {"exact": truth.sinogram(ROW), "noisy": noisy}
        for data_name, sino in data.items():
            gridrec = {}
            for backend, alg, filt in _jobs(FILTERS):
                rec, info = _recon(sino, theta, truth.center, backend=backend, algorithm=alg,
                                   filter=filt, threads=threads, num_iter=sirt_iter)
                if alg == "gridrec":
                    gridrec[(backend, filt)] = rec
                ref = gridrec.get((backend, filt or "shepp"))
                rows.append({
                    "size": size, "data": data_name, "backend": backend, "algorithm": alg,
                    "filter": filt or "-", "engine": info.engine, "seconds": info.seconds,
                    "num_iter": info.num_iter, **_quality(rec, phantom, data_range),
                    "vs_gridrec": (np.nan if alg == "gridrec" or ref is None
                                   else _nrmse_between(rec, ref)),
                })
                print(f"  [1] {size} {data_name:5s} {backend} {alg:7s} {filt or '-':7s} "
                      f"NRMSE {rows[-1]['nrmse']:.4f} SSIM {rows[-1]['ssim']:.4f}", flush=True)
    return {"rows": rows, "notes": notes}


def format_accuracy(res: dict) -> str:
    out = ["| size | data | backend | algorithm | filter | NRMSE | SSIM | gain | vs gridrec "
           "| engine |", "|---|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        alg = r["algorithm"] + (f" ({r['num_iter']} it)" if r["num_iter"] else "")
        vs = "" if np.isnan(r["vs_gridrec"]) else f"{r['vs_gridrec']:.4f}"
        out.append(f"| {r['size']} | {r['data']} | {r['backend']} | {alg} | {r['filter']} | "
                   f"{r['nrmse']:.4f} | {r['ssim']:.4f} | {r['gain']:.3f} | {vs} | "
                   f"{r['engine']} |")
    return "\n".join(out + [""] + [f"- {n}" for n in res["notes"]])


# ------------------------------------------------------------------------ 2. centre accuracy


def center_accuracy(tmp: Path, size: str, *, seed: int) -> dict:
    """|found - truth| of every centre method over offsets x doses x ring settings."""
    n_angles, n_cols = SIZES[size]
    rows = []
    for i, offset in enumerate(OFFSETS):
        for dose, dose_opts in DOSES.items():
            for rings, (n_ring, strength) in RINGS.items():
                truth, sino = _scan(tmp, "centre", n_angles, n_cols, center_offset=offset,
                                    seed=seed + 10 * i, ring_columns=n_ring,
                                    ring_strength=strength, **dose_opts)
                theta = np.deg2rad(truth.theta)
                for method in CENTER_METHODS:
                    t0 = time.perf_counter()
                    try:
                        found, err = find_center(sino, theta, method=method), None
                    except Exception as exc:  # a method that raises is a failure, reported
                        found, err = np.nan, f"{type(exc).__name__}: {exc}"
                    sec = time.perf_counter() - t0
                    rows.append({"size": size, "offset": offset, "dose": dose, "rings": rings,
                                 "method": method, "truth": truth.center, "found": found,
                                 "error": found - truth.center, "seconds": sec,
                                 "exception": err})
        print(f"  [2] offset {offset:+.1f} done", flush=True)
    return {"rows": rows, "size": size}


def _fail(err: float) -> bool:
    return not abs(err) <= TARGET_PX  # NaN (exception) counts as a failure


def format_center(res: dict, *, per_case: bool) -> str:
    rows = res["rows"]
    out = [f"Per method, {res['size']}, {len(OFFSETS)} offsets x {len(DOSES)} doses x "
           f"{len(RINGS)} ring settings = {len(OFFSETS) * len(DOSES) * len(RINGS)} cases:", "",
           "| method | max abs error px | mean abs error px | cases > 0.5 px | median s | "
           "max s |", "|---|---:|---:|---:|---:|---:|"]
    for m in CENTER_METHODS:
        sel = [r for r in rows if r["method"] == m]
        err = np.abs([r["error"] for r in sel])
        t = [r["seconds"] for r in sel]
        n_fail = sum(_fail(r["error"]) for r in sel)
        flag = " **FAIL**" if n_fail else ""
        out.append(f"| {m} | {np.nanmax(err):.3f} | {np.nanmean(err):.3f} | "
                   f"{n_fail}/{len(sel)}{flag} | {np.median(t):.4f} | {max(t):.4f} |")
    out += ["", "Largest |error| (px) over the offsets, per dose and ring setting "
            "(**bold** = over 0.5 px):", "",
            "| dose | rings | " + " | ".join(CENTER_METHODS) + " |",
            "|---|---|" + "---:|" * len(CENTER_METHODS)]
    for dose in DOSES:
        for rings in RINGS:
            cells = []
            for m in CENTER_METHODS:
                e = [r["error"] for r in rows
                     if (r["dose"], r["rings"], r["method"]) == (dose, rings, m)]
                worst = np.nan if np.isnan(e).any() else float(np.max(np.abs(e)))
                cells.append(f"**{worst:.3f}**" if _fail(worst) else f"{worst:.3f}")
            out.append(f"| {dose} | {rings} | " + " | ".join(cells) + " |")
    out += ["", "One-row scans (sinogram input, as `find_center` takes it): 'pc' then "
            "correlates a single row of the theta = 0 projection with the mirrored one near "
            "180 degrees, so it sees far fewer counts than with full projections (it sums "
            "the correlation over rows); 'vo' and 'sinusoid' use every angle. The seed "
            "differs per offset (different phantoms) and is shared by doses and ring settings."]
    fails = [r for r in rows if _fail(r["error"])]
    out += ["", f"Cases over {TARGET_PX} px ({len(fails)}):" if fails
            else f"No case over {TARGET_PX} px."]
    if fails:
        out += ["", "| method | offset | dose | rings | truth | found | error px |",
                "|---|---:|---|---|---:|---:|---:|"]
        for r in sorted(fails, key=lambda r: (r["method"], r["dose"], r["rings"], r["offset"])):
            found = f"{r['found']:.2f}" if r["exception"] is None else r["exception"]
            out.append(f"| {r['method']} | {r['offset']:+.1f} | {r['dose']} | {r['rings']} | "
                       f"{r['truth']:.2f} | {found} | {r['error']:+.3f} |")
    if per_case:
        out += ["", "Every case (error = found - truth, px):", "",
                "| offset | dose | rings | " + " | ".join(CENTER_METHODS) + " |",
                "|---:|---|---|" + "---:|" * len(CENTER_METHODS)]
        for offset in OFFSETS:
            for dose in DOSES:
                for rings in RINGS:
                    sel = {r["method"]: r for r in rows
                           if (r["offset"], r["dose"], r["rings"]) == (offset, dose, rings)}
                    cells = [f"{sel[m]['error']:+.3f}" + (" FAIL" if _fail(sel[m]["error"])
                                                          else "") for m in CENTER_METHODS]
                    out.append(f"| {offset:+.1f} | {dose} | {rings} | " + " | ".join(cells)
                               + " |")
    return "\n".join(out)


# --------------------------------------------------------------------------- 3. ring removal


def _stripe_metric(sino: np.ndarray) -> float:
    m = sino.astype(np.float64).mean(axis=0)
    return float(np.mean(np.abs(m - ndimage.median_filter(m, size=9, mode="nearest"))))


def _ring_profile(diff: np.ndarray) -> np.ndarray:
    """High-passed azimuthal mean of ``diff`` in 1-px radial bins about the axis."""
    n = diff.shape[0]
    c = np.arange(n) - (n - 1) / 2.0
    r = np.hypot(c[:, None], c[None, :])
    inside = r <= n / 2.0 - 1
    bins = np.rint(r[inside]).astype(int)
    count = np.bincount(bins)
    profile = np.bincount(bins, diff[inside]) / np.maximum(count, 1)
    return profile - ndimage.median_filter(profile, size=9, mode="nearest")


def _ring_amplitudes(diff: np.ndarray, radii, mu: float) -> tuple[float, float, float]:
    """Largest ring (% of ``mu``) at ``radii`` (+-1 px), elsewhere (r >= 10 px), and both."""
    hp = 100 * np.abs(_ring_profile(diff)) / mu
    at = np.zeros(hp.size, dtype=bool)
    for r in np.rint(np.abs(radii)).astype(int):
        at[max(r - 1, 0) : r + 2] = True
    away = ~at
    away[:MIN_RING_RADIUS] = False  # azimuthal means of few pixels: noise, not rings
    ring_at = float(hp[at].max()) if at.any() else np.nan
    ring_away = float(hp[away].max())
    return ring_at, ring_away, float(np.nanmax([ring_at, ring_away]))


def _outer_edge(truth, row: float):
    """(centre, semi-axes a, b, rotation phi) of the sample's outer boundary at ``row``."""
    e = truth.ellipsoids[0]  # the matrix (make_phantom's first ellipsoid)
    k = np.sqrt(max(1.0 - ((row - e.z0) / e.c) ** 2, 0.0))
    return (e.x0, e.y0), e.a * k, e.b * k, np.deg2rad(e.phi)


def _edge_width(img: np.ndarray, edge) -> float:
    """10-90 % width (px) of the edge spread function across an ellipse, 720 normals."""
    (x0, y0), a, b, phi = edge
    n = img.shape[0]
    psi = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    t = np.arange(-6.0, 6.0 + 1e-9, 0.1)
    rot = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    pts = rot @ np.stack([a * np.cos(psi), b * np.sin(psi)])
    nrm = rot @ np.stack([np.cos(psi) / a, np.sin(psi) / b])
    nrm /= np.hypot(*nrm)
    x = x0 + pts[0][:, None] + t[None, :] * nrm[0][:, None]
    y = y0 + pts[1][:, None] + t[None, :] * nrm[1][:, None]
    prof = ndimage.map_coordinates(img, [y + (n - 1) / 2.0, x + (n - 1) / 2.0], order=1)
    esf = prof.mean(axis=0)  # inside (t < 0) high, outside (t > 0) low
    high = esf[(t >= -5) & (t <= -3)].mean()
    low = esf[(t >= 3) & (t <= 5)].mean()
    e = (esf - low) / (high - low)

    def crossing(level):
        i = np.flatnonzero((e[:-1] - level) * (e[1:] - level) <= 0)
        i = i[e[i] != e[i + 1]]
        if i.size == 0:
            return np.nan
        tc = t[i] + (level - e[i]) / (e[i + 1] - e[i]) * (t[1] - t[0])
        return float(tc[np.argmin(np.abs(tc))])

    return crossing(0.1) - crossing(0.9)


def ring_removal(tmp: Path, size: str, *, seed: int, threads: int) -> dict:
    """Ring metrics and edge/quality before and after remove_stripes, vs a ring-free scan."""
    n_angles, n_cols = SIZES[size]
    rows = []
    # Same seed: same phantom and photon noise in the projections whatever the flats / rings.
    common = {"center_offset": 3.7, "seed": seed + 7, "noise": True}
    ref_truth, ref = _scan(tmp, "ref", n_angles, n_cols, ring_columns=0,
                           n_flats=RING_FLATS, **common)
    theta = np.deg2rad(ref_truth.theta)
    center = ref_truth.center
    phantom = ref_truth.phantom_slice(ROW, units="1/pixel")
    data_range = float(phantom.max() - phantom.min())
    mu = ref_truth.ellipsoids[0].mu * ref_truth.pixel_size_cm
    edge = _outer_edge(ref_truth, ROW)
    rec_ref, _ = _recon(ref, theta, center, threads=threads)
    # the reference processed like each scan: residual rings are measured against it, so
    # what a filter does to the object itself is not counted as a ring left over
    rec_ref_f = {m: _recon(remove_stripes(ref, method=m), theta, center, threads=threads)[0]
                 for m in STRIPE_METHODS}
    rec_ref_f["none"] = rec_ref
    cases = {f"none ({RING_FLATS} flats)": (ref_truth, ref)}
    cases["none, 10 flats (flat noise)"] = _scan(tmp, "flat10", n_angles, n_cols,
                                                 ring_columns=0, n_flats=10, **common)
    for rings, (n_ring, strength) in RINGS.items():
        if n_ring:
            cases[rings] = _scan(tmp, "rings", n_angles, n_cols, ring_columns=n_ring,
                                 ring_strength=strength, n_flats=RING_FLATS, **common)
    for case, (truth, sino) in cases.items():
        radii = np.asarray(truth.ring_columns, dtype=float) - center
        for method in ("none", *STRIPE_METHODS):
            t0 = time.perf_counter()
            cleaned = sino if method == "none" else remove_stripes(sino, method=method)
            sec = time.perf_counter() - t0
            rec, _ = _recon(cleaned, theta, center, threads=threads)
            at, away, _ = _ring_amplitudes(rec - rec_ref_f[method], radii, mu)
            change = _ring_amplitudes(rec - rec_ref, radii, mu)[2]
            rows.append({
                "case": case, "columns": truth.ring_columns, "method": method,
                "stripe": _stripe_metric(cleaned), "ring_at": at, "ring_away": away,
                "change": change,
                "edge": _edge_width(rec, edge), "seconds": sec,
                **_quality(rec, phantom, data_range),
            })
        sel = [r for r in rows if r["case"] == case]
        key = "ring_at" if radii.size else "ring_away"
        for r in sel:
            r["reduction"] = sel[0][key] / r[key] if r[key] > 0 else np.nan
        print(f"  [3] {case} done", flush=True)
    return {"rows": rows, "size": size, "phantom_edge": _edge_width(phantom, edge),
            "ref_edge": _edge_width(rec_ref, edge), "mu": mu}


def format_rings(res: dict) -> str:
    out = ["| scan | remove_stripes | stripe (1e-4) | residual ring % at bad columns | "
           "residual ring % elsewhere | reduction | largest ring % vs unfiltered reference | "
           "edge 10-90 % px | NRMSE | SSIM | s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        ref = r["case"].startswith("none (")
        red = "-" if ref else ("1 (before)" if r["method"] == "none"
                               else f"{r['reduction']:.1f}x")
        at = "-" if np.isnan(r["ring_at"]) else f"{r['ring_at']:.2f}"
        out.append(f"| {r['case']} | {r['method']} | {1e4 * r['stripe']:.2f} | {at} | "
                   f"{r['ring_away']:.2f} | {red} | {r['change']:.2f} | {r['edge']:.2f} | "
                   f"{r['nrmse']:.4f} | "
                   f"{r['ssim']:.4f} | {r['seconds']:.3f} |")
    cols = {r["case"]: r["columns"] for r in res["rows"] if r["columns"]}
    out += [
        "",
        f"- {res['size']}, noisy (20k flat counts), flats averaged over {RING_FLATS} frames "
        "so that the reference has no flat-noise stripes; builtin gridrec (shepp) at the "
        "true centre; every scan has the same phantom and photon noise as the reference.",
        "- ring %: largest value of the high-passed azimuthal mean (1-px radial bins; "
        f"'elsewhere' starts at radius {MIN_RING_RADIUS} px) of a difference image, in % of "
        "the matrix attenuation "
        f"({res['mu']:.3e} /px). *Residual*: `rec(filter(scan)) - rec(filter(reference))`, "
        "at the radii of the bad columns (+-1 px) and elsewhere: the rings left over. "
        "Reduction: residual before / after, at the bad columns (flat-noise scan: "
        "elsewhere). *vs unfiltered reference*: `rec(filter(scan)) - rec(reference)` "
        "anywhere, which also counts what the filter does to the object (the reference's "
        "own fw/sorting rows show that alone).",
        f"- Edge width of the voxelised phantom itself: {res['phantom_edge']:.2f} px; of the "
        f"reference reconstruction: {res['ref_edge']:.2f} px.",
        "- bad columns: " + "; ".join(f"{k}: {list(v)}" for k, v in cols.items())]
    return "\n".join(out)


# ---------------------------------------------------------------------------- 4. orientation


_DIHEDRAL = {
    "identity": lambda a: a,
    "flip rows": lambda a: a[::-1],
    "flip columns": lambda a: a[:, ::-1],
    "rotate 180": lambda a: a[::-1, ::-1],
    "transpose": lambda a: a.T,
    "transpose, flip rows": lambda a: a.T[::-1],
    "transpose, flip columns": lambda a: a.T[:, ::-1],
    "transpose, rotate 180": lambda a: a.T[::-1, ::-1],
}


def _centroid(img: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    w = np.clip(img, 0, None) * window
    r, c = np.indices(img.shape)
    return float((w * r).sum() / w.sum()), float((w * c).sum() / w.sum())


def orientation(tmp: Path, size: str, *, seed: int, threads: int) -> dict:
    """Where off-centre features land: projections, reconstruction vs phantom image."""
    n_angles, n_cols = SIZES[size]
    rows, flips = [], []
    for offset in (25.0, -12.3):
        truth = simulate_tomo_scan(tmp / "orient.h5", shape=(n_angles, 1, n_cols),
                                   center_offset=offset, seed=seed + 3, noise=False,
                                   ring_columns=0, overwrite=True)
        truth.path.unlink()
        theta = np.deg2rad(truth.theta)
        n = n_cols
        sino = truth.sinogram(ROW)
        phantom = truth.phantom_slice(ROW, units="1/pixel")
        # the two inclusions (positive mu, present in this row) furthest from the axis
        incl = [e for e in truth.ellipsoids[3:]
                if e.mu > 0 and abs(ROW - e.z0) < e.c]
        incl = sorted(incl, key=lambda e: -np.hypot(e.x0, e.y0))[:2]
        recs = {}
        for backend, alg, _ in _jobs(("shepp",)):
            recs[(backend, alg)] = _recon(sino, theta, truth.center, backend=backend,
                                          algorithm=alg, threads=threads, num_iter=ORIENT_ITER)[0]
        for backend, alg in recs:
            scores = {k: float(np.sum(fn(recs[(backend, alg)]) * phantom))
                      for k, fn in _DIHEDRAL.items()}
            flips.append({"offset": offset, "backend": backend, "algorithm": alg,
                          "best": max(scores, key=scores.get),
                          "margin": scores["identity"] / max(
                              v for k, v in scores.items() if k != "identity")})
        for j, e in enumerate(incl):
            without = dataclasses.replace(
                truth, ellipsoids=tuple(x for x in truth.ellipsoids if x is not e))
            f_sino = sino - without.sinogram(ROW)
            f_img = phantom - without.phantom_slice(ROW, units="1/pixel")
            u = np.arange(n_cols)
            k90 = int(np.argmin(np.abs(truth.theta - 90.0)))
            u0 = float(f_sino[0] @ u / f_sino[0].sum())
            u90 = float(f_sino[k90] @ u / f_sino[k90].sum())
            t90 = np.deg2rad(truth.theta[k90])
            expect = (e.y0 + (n - 1) / 2.0, e.x0 + (n - 1) / 2.0)
            r, c = np.indices((n, n))
            window = np.hypot(r - expect[0], c - expect[1]) <= max(e.a, e.b) + 4
            row = {"offset": offset, "center": truth.center, "feature": j, "x0": e.x0,
                   "y0": e.y0, "u0_err": u0 - (truth.center + e.x0),
                   "u90_err": u90 - (truth.center + e.x0 * np.cos(t90) + e.y0 * np.sin(t90)),
                   "expect": expect, "phantom": _centroid(f_img, window),
                   "tomopy_predicted": (n / 2.0 - 1 - e.y0, e.x0 + n / 2.0), "recon": {}}
            for (backend, alg), rec in recs.items():
                f_rec = rec - _recon(without.sinogram(ROW), theta, truth.center,
                                     backend=backend, algorithm=alg, threads=threads,
                                     num_iter=ORIENT_ITER)[0]
                smooth = ndimage.gaussian_filter(f_rec, 2)
                blob = _centroid(np.ones_like(smooth), smooth > 0.5 * smooth.max())
                row["recon"][f"{backend} {alg}"] = {"centroid": _centroid(f_rec, window),
                                                    "blob": blob}
            rows.append(row)
        print(f"  [4] offset {offset:+.1f} done", flush=True)
    return {"rows": rows, "flips": flips, "size": size}


def format_orientation(res: dict) -> str:
    out = [f"{res['size']}, exact sinogram, theta from 0, shepp filter, sirt {ORIENT_ITER} "
           "iterations; features isolated by subtracting the "
           "sinogram / phantom without them. Positions are (row, col) image indices; spotkit "
           "pixel (i, j) is at x = j - (n-1)/2, y = i - (n-1)/2.", "",
           "Reconstruction centroid: within the feature's disc (+4 px) around where the phantom "
           "has it; [in brackets]: centroid of the whole image's half-maximum blob of the "
           "smoothed feature, which would show a flip. Max error: reconstruction vs phantom "
           "centroid (flagged over 0.25 px).", "",
           "| centre | feature (x0, y0) px | proj. error at 0 / 90 deg px | expected (row, col) "
           "| phantom centroid | reconstruction centroid [blob] | max error px | "
           "tomopy gridrec would put it (source) |",
           "|---:|---|---|---|---|---|---:|---|"]
    for r in res["rows"]:
        recs, worst = [], 0.0
        for name, v in r["recon"].items():
            (cr, cc), (br, bc) = v["centroid"], v["blob"]
            worst = max(worst, abs(cr - r["phantom"][0]), abs(cc - r["phantom"][1]))
            recs.append(f"{name}: ({cr:.2f}, {cc:.2f}) [{br:.0f}, {bc:.0f}]")
        flag = " **FAIL**" if worst > 0.25 else ""
        out.append(
            f"| {r['center']:.2f} | ({r['x0']:+.2f}, {r['y0']:+.2f}) | "
            f"{r['u0_err']:+.3f} / {r['u90_err']:+.3f} | ({r['expect'][0]:.2f}, "
            f"{r['expect'][1]:.2f}) | ({r['phantom'][0]:.2f}, {r['phantom'][1]:.2f}) | "
            + "<br>".join(recs) + f" | {worst:.3f}{flag} | "
            f"({r['tomopy_predicted'][0]:.2f}, {r['tomopy_predicted'][1]:.2f}) |")
    out += ["", "Best of the 8 flips/transposes against the phantom (identity expected):", ""]
    for f in res["flips"]:
        ok = "ok" if f["best"] == "identity" else "**FAIL**"
        out.append(f"- centre offset {f['offset']:+.1f}, {f['backend']} {f['algorithm']}: "
                   f"{f['best']} ({ok}; identity score / next best {f['margin']:.2f})")
    return "\n".join(out)


# ----------------------------------------------------------------------------------- report


def _environment(argv, wall: float) -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().split()[1]
        mem = f"{int(mem) / 2**20:.0f} GiB"
    except OSError:
        mem = "?"
    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}",
                f"scipy {scipy.__version__}", f"spotkit {spotkit.__version__}"]
    for mod in ("skimage", "pywt", "finufft", "numba"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} not installed")
    missing = [b for b in backends.list_backends() if b not in backends.available_backends()]
    when = datetime.datetime.now(datetime.UTC)
    return [
        f"- **Date:** {when:%Y-%m-%d %H:%M} UTC. **Machine:** {cpu}, {os.cpu_count()} cores, "
        f"{mem}, {platform.system()} {platform.machine()}.",
        "- **Software:** " + ", ".join(versions) + ".",
        "- **Backends:** " + ", ".join(f"{b} ({backends.get_backend(b).version()})"
                                        for b in backends.available_backends())
        + (f"; not installed: {', '.join(missing)}" if missing else "") + ".",
        f"- **Command:** `{' '.join(shlex.quote(a) for a in argv)}` "
        f"({wall / 60:.1f} min wall, niced, reconstructions with 1 thread).",
    ]


def build_report(results: dict, argv, wall: float) -> str:
    parts = ["## Quality (`benchmarks/bench_quality.py`)", "",
             *_environment(argv, wall), "",
             "Measured against the twin's own truth; see the benchmark's docstring for the "
             "exact definitions. Timings are indicative only (niced, shared machine).", "",
             "### 1. Reconstruction accuracy vs the phantom (attenuation per pixel)", "",
             format_accuracy(results["accuracy"]), "",
             f"### 2. Centre of rotation (target: within {TARGET_PX} px)", "",
             format_center(results["center"], per_case=False), "",
             "### 3. Ring removal", "", format_rings(results["rings"]), "",
             "### 4. Orientation and sign (vs the phantom; tomopy's convention from its source)",
             "", format_orientation(results["orientation"]), ""]
    return "\n".join(parts)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true",
                   help="also reconstruct 720x1024 in section 1 (SIRT there takes minutes)")
    p.add_argument("--write", action="store_true",
                   help=f"replace/append the '## Quality' section of {RESULTS.name}")
    p.add_argument("--seed", type=int, default=0, help="base seed of every simulated scan")
    p.add_argument("--sirt-iter", type=int, default=100, help="SIRT iterations (default 100)")
    p.add_argument("--threads", type=int, default=1, help="reconstruction threads")
    args = p.parse_args(argv)
    cmd = ["python", "benchmarks/bench_quality.py", *(sys.argv[1:] if argv is None else argv)]

    t0 = time.perf_counter()
    sizes = ["360x512", "720x1024"] if args.full else ["360x512"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        results["accuracy"] = accuracy(tmp, sizes, seed=args.seed, threads=args.threads,
                                       sirt_iter=args.sirt_iter)
        results["center"] = center_accuracy(tmp, "360x512", seed=args.seed)
        results["rings"] = ring_removal(tmp, "360x512", seed=args.seed, threads=args.threads)
        results["orientation"] = orientation(tmp, "360x512", seed=args.seed,
                                             threads=args.threads)
    wall = time.perf_counter() - t0

    print()
    print(build_report(results, cmd, wall))
    print("\n### 2b. Centre of rotation, every case\n")
    print(format_center(results["center"], per_case=True))
    if args.write:
        write_section("## Quality", build_report(results, cmd, wall))
        print(f"\nwrote the '## Quality' section of {RESULTS}")


if __name__ == "__main__":
    main()
