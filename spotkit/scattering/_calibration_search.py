"""Calibration, stage 1: the coarse search for beam centre and distance (no pyFAI refinement).

The beam centre is searched on a grid around the guess for the position around which the
image's sharp features are most ring-like; around it the radial profile's peaks are matched
to the calibrant's lines (see :mod:`spotkit.scattering._calibrate` for the whole method).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from spotkit.scattering._geometry import (
    pyfai,
)
from spotkit.scattering._orientation import _beam_pixel, _eta2, _local_contrast

logger = logging.getLogger(__name__)




#: Pixels sampled by the beam-centre search.
_SEARCH_PIXELS = 120_000
def _calibrant(calibrant, wavelength_m):
    pyfai()
    from pyFAI.calibrant import CALIBRANT_FACTORY, Calibrant, get_calibrant

    if isinstance(calibrant, Calibrant):
        cal = calibrant
        name = getattr(cal, "name", None) or "custom"
    else:
        names = sorted(CALIBRANT_FACTORY.keys())
        if calibrant not in names:
            raise ValueError(f"unknown calibrant {calibrant!r}; choose one of {names}")
        cal = get_calibrant(calibrant)
        name = str(calibrant)
    cal.wavelength = wavelength_m
    return cal, name


def _lines(cal) -> np.ndarray:
    """The calibrant's distinct 2-theta values (radians), as pyFAI's ring indices count them."""
    return np.unique(np.array([t for t in cal.get_2th() if t is not None], dtype=np.float64))


def _ring_visible(image, good, tth, t, pixel_rad, n_sigma: float = 5.0) -> bool | None:
    """Is a ring at 2-theta ``t`` brighter than the pixels just beside it? None: not on the
    detector (too few valid pixels on it or beside it)."""
    d = np.abs(tth - t)
    on = image[(d < 0.7 * pixel_rad) & good]
    off = image[(d > 3 * pixel_rad) & (d < 6 * pixel_rad) & good]
    if on.size < 10 or off.size < 10:
        return None
    noise = off.std() / math.sqrt(on.size) + 1e-12
    return bool(on.mean() - off.mean() > n_sigma * noise)


# -- stage 1: coarse search ----------------------------------------------------------------


def _centre_search(local, good, start, pix, half_px, min_spacing_px):
    """Beam centre (row, col) around which the image's rings are sharpest.

    Coarse to fine: on each level a grid of centres (step ``g``) is scored by the fraction
    of the variance of the ring energy (the positive part of the high-passed image, blurred
    by ``g / 2`` so that a centre ``g`` off still sees its rings) that radial bins ``g``
    wide explain; the next level halves ``g`` around the best centre.
    """
    from scipy import ndimage

    step = max(1, math.ceil(math.sqrt(local.size / _SEARCH_PIXELS)))
    sub = (slice(None, None, step), slice(None, None, step))
    keep = good[sub]
    yy, xx = np.nonzero(keep)
    yy = (yy * step).astype(np.float64) * pix[0]
    xx = (xx * step).astype(np.float64) * pix[1]
    scale = min(pix)
    energy = np.where(good, np.maximum(local, 0), 0).astype(np.float32)
    weight = good.astype(np.float32)
    best = (float(start[0]), float(start[1]))
    grid = max(0.5, min(half_px / 4.0, max(min_spacing_px, 3.0) / 3.0))
    n = max(2, math.ceil(half_px / grid))
    best_score = math.nan
    while True:
        sigma = grid / 2.0 if grid > 1 else 0.0
        if sigma:
            blurred = ndimage.gaussian_filter(energy, sigma) / np.maximum(
                ndimage.gaussian_filter(weight, sigma), 1e-6)
        else:
            blurred = energy
        values = blurred[sub][keep].astype(np.float64)
        width = max(1.0, grid)
        cands = []
        for i in range(-n, n + 1):
            for j in range(-n, n + 1):
                cy, cx = best[0] + i * grid, best[1] + j * grid
                r = np.hypot(yy - cy * pix[0], xx - cx * pix[1]) / scale
                score = _eta2(values, (r / width).astype(np.int64))
                cands.append((-1.0 if math.isnan(score) else score, cy, cx))
        best_score, cy, cx = max(cands)
        best = (cy, cx)
        if grid <= 0.5:
            break
        grid, n = grid / 2.0, 2
    return best, best_score


def _profile_peaks(image, good, centre, pix, bin_px=0.5):
    """Radial profile around ``centre`` and its significant peaks (radius px, strength)."""
    from scipy import ndimage, signal

    _rows, _cols = image.shape
    yy, xx = np.nonzero(good)
    scale = min(pix)
    r = np.hypot((yy - centre[0]) * pix[0], (xx - centre[1]) * pix[1]) / scale
    b = (r / bin_px).astype(np.int64)
    v = image[yy, xx].astype(np.float64)
    n = np.bincount(b)
    s = np.bincount(b, v)
    s2 = np.bincount(b, v * v)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        err = np.sqrt(np.maximum(s2 / n - mean**2, 0) / n)
    ok = n >= 5
    radius = (np.arange(n.size) + 0.5) * bin_px
    if ok.sum() < 20:
        return radius, ok, np.empty(0), np.empty(0)
    prof = np.where(ok, mean, np.nan)
    filled = np.interp(radius, radius[ok], prof[ok])
    base = ndimage.median_filter(filled, size=round(15 / bin_px) | 1, mode="nearest")
    noise = np.where(ok, err, np.inf)
    noise = np.maximum(noise, np.nanmedian(err[ok]) * 0.2 + 1e-12)
    z = (filled - base) / noise
    z[~ok] = 0
    peaks, props = signal.find_peaks(z, height=5.0, distance=max(1, round(2 / bin_px)))
    return radius, ok, radius[peaks], props["peak_heights"]


def _match_score(D, tan_lines, obs_r, obs_w, observable, r_last, pix_m):
    """F1 of the rings predicted at distance D against the observed peaks (radii px)."""
    pred = D * tan_lines / pix_m
    tol = 1.5 + 0.01 * pred
    # observed peaks explained by any line
    idx = np.clip(np.searchsorted(pred, obs_r), 1, pred.size - 1) if pred.size > 1 else None
    if idx is None:
        near = np.abs(obs_r - pred[0])
        tol_obs = 1.5 + 0.01 * obs_r
        explained = near <= tol_obs
    else:
        near = np.minimum(np.abs(obs_r - pred[idx - 1]), np.abs(obs_r - pred[idx]))
        explained = near <= 1.5 + 0.01 * obs_r
    precision = float(obs_w[explained].sum() / obs_w.sum())
    # predicted rings on the detector (inside the outermost peak) confirmed by a peak
    inside = (pred <= r_last + tol) & observable(pred)
    if not inside.any():
        return 0.0, explained
    j = np.clip(np.searchsorted(obs_r, pred[inside]), 1, max(obs_r.size - 1, 1))
    if obs_r.size > 1:
        gap = np.minimum(np.abs(pred[inside] - obs_r[j - 1]), np.abs(pred[inside] - obs_r[j]))
    else:
        gap = np.abs(pred[inside] - obs_r[0])
    recall = float(np.mean(gap <= tol[inside]))
    if precision + recall == 0:
        return 0.0, explained
    return 2 * precision * recall / (precision + recall), explained


def _distance_search(radius, ok, obs_r, obs_w, lines, D0, window, pix_m):
    """Best distance (and runner-up with another ring assignment) matching the peaks."""
    tan_lines = np.tan(lines)
    order = np.argsort(obs_r)
    obs_r, obs_w = obs_r[order], obs_w[order]
    r_last = obs_r[-1]
    bin_px = radius[1] - radius[0]

    def observable(r):
        k = (r / bin_px).astype(np.int64)
        inside = (k >= 0) & (k < ok.size)
        out = np.zeros(r.shape, bool)
        out[inside] = ok[k[inside]]
        return out

    lo, hi = D0 * (1 - window), D0 * (1 + window)
    cands = (obs_r[:, None] * pix_m / tan_lines[None, :]).ravel()
    cands = np.unique(cands[(cands >= lo) & (cands <= hi)])
    if cands.size == 0:
        return None
    scored = []
    for D in cands:
        score, explained = _match_score(D, tan_lines, obs_r, obs_w, observable, r_last, pix_m)
        scored.append((score, D, explained))
    top = max(s for s, _, _ in scored)
    # among the best, the one nearest the guess; refine it on its matched pairs
    score, D, explained = min((c for c in scored if c[0] >= top - 1e-9),
                              key=lambda c: abs(c[1] - D0))
    pred = D * tan_lines / pix_m
    k = np.abs(obs_r[explained, None] - pred[None, :]).argmin(axis=1)
    t = tan_lines[k]
    if t.size:
        D = float(np.sum(obs_r[explained] * pix_m * t) / np.sum(t * t))
    # runner-up: another assignment moves the outermost matched peak by more than 2 tol
    r_ref = obs_r[explained].max() if explained.any() else r_last
    tol = 1.5 + 0.01 * r_ref
    others = [(s, d) for s, d, _ in scored if abs(d - D) / D * r_ref > 2 * tol]
    runner = max(others) if others else None
    return {"distance_m": D, "score": float(score),
            "runner_up": None if runner is None else {"distance_m": float(runner[1]),
                                                      "score": float(runner[0])},
            "n_peaks": int(obs_r.size), "distance_window_m": (float(lo), float(hi))}


def _coarse_search(image, good, geometry, lines, *, window, half_px):
    det = geometry.detector
    pix = (det.pixel1, det.pixel2)
    pix_m = min(pix)
    fit2d = geometry.getFit2D()
    D0 = fit2d["directDist"] * 1e-3
    start = _beam_pixel(geometry)
    local = _local_contrast(image, good)
    on = lines[(lines > 0) & (lines < math.pi / 2)]
    radii = D0 * np.tan(on) / pix_m
    spacing = float(np.min(np.diff(radii))) if radii.size > 1 else 20.0
    centre, ring_score = _centre_search(local, good, start, pix, half_px, spacing)
    radius, ok, obs_r, obs_w = _profile_peaks(image, good, centre, pix)
    found = {"beam_center": (float(centre[0]), float(centre[1])), "distance_m": D0,
             "center_score": float(ring_score), "score": math.nan, "runner_up": None,
             "n_peaks": int(obs_r.size), "distance_window_m": (D0 * (1 - window),
                                                               D0 * (1 + window)),
             "center_window_px": float(half_px)}
    if obs_r.size:
        dist = _distance_search(radius, ok, obs_r, obs_w, on, D0, window, pix_m)
        if dist is not None:
            found.update(dist)
    return found


def _apply_search(guess, geometry, found):
    """The pyFAI starting geometry moved to the coarse search's beam centre and distance."""
    start = _beam_pixel(geometry)
    det = geometry.detector
    D0 = geometry.getFit2D()["directDist"] * 1e-3
    out = dict(guess)
    out["dist"] = guess["dist"] * found["distance_m"] / D0
    out["poni1"] = guess["poni1"] + (found["beam_center"][0] - start[0]) * det.pixel1
    out["poni2"] = guess["poni2"] + (found["beam_center"][1] - start[1]) * det.pixel2
    return out
