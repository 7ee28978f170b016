"""Robust noise levels, thresholds, confidences and the change-point search of change detection.

Shared by :func:`spotkit.change.detect_changes` (whole series) and
:class:`spotkit.change.OnlineDetector` (frame by frame).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.special import ndtr, ndtri

from ._bands import check_bands
from ._feature_names import _ALL, BAND_FEATURES, FRAME_DEFAULT, PROFILE_DEFAULT

logger = logging.getLogger(__name__)




#: features that drive detection by default (the band features only when ``bands`` > 0)
DETECT_FRAMES = ("difference", "unique_count", "band_shift", "band_difference")
DETECT_PROFILES = ("difference", "band_shift", "band_difference")

def _check_detect(detect, kind, features, bands="auto"):
    if detect is None:
        detect = DETECT_FRAMES if kind == "frames" else DETECT_PROFILES
        if check_bands(bands, kind) == 0:
            detect = tuple(d for d in detect if d not in BAND_FEATURES)
    detect = tuple(detect)
    if not detect:
        raise ValueError("detect must name at least one feature")
    bad = [d for d in detect if d not in _ALL]
    if bad:
        raise ValueError(f"unknown detection feature(s) {bad}; choose from {sorted(_ALL)}")
    if features is None:
        features = FRAME_DEFAULT if kind == "frames" else PROFILE_DEFAULT
    features = tuple(dict.fromkeys((*features, *detect)))
    return detect, features


def _check_positive(**kw):
    for name, value in kw.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


def _robust_sigma(x, *, conservative=False) -> float:
    """Noise of a series from its first differences (robust to steps and sparse outliers).

    ``conservative``: the larger of the robust and the plain estimate (for short windows of
    values that are known to be unchanged, and for discrete features such as counts).
    """
    d = np.diff(np.asarray(x, dtype=np.float64))
    if d.size == 0:
        return 1.0
    s = 1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2)
    s = max(s, (1.0 if conservative else 0.5) * d.std() / math.sqrt(2))
    return s if s > 0 else 1e-9


def _robust_sigma_cols(x, *, conservative=False) -> np.ndarray:
    """:func:`_robust_sigma` of each column of a 2-D array."""
    d = np.diff(np.asarray(x, dtype=np.float64), axis=0)
    if d.shape[0] == 0:
        return np.ones(x.shape[1])
    s = 1.4826 * np.median(np.abs(d - np.median(d, axis=0)), axis=0) / math.sqrt(2)
    s = np.maximum(s, (1.0 if conservative else 0.5) * d.std(axis=0) / math.sqrt(2))
    return np.where(s > 0, s, 1e-9)


def _band_values(x, feature):
    """Band feature values on a scale where their noise is close to Gaussian.

    ``band_difference`` is a mean of squares over a few correlated bins (a chi^2 with few
    degrees of freedom, skewed): its cube root is nearly normal (Wilson and Hilferty).
    """
    x = np.asarray(x, dtype=np.float64)
    return np.cbrt(x) if feature == "band_difference" else x


def _band_sigma(x, level, *, conservative=False):
    """Noise of each band's series, floored at the median over the bands of its level.

    Bands of one level see the same kind of noise; the floor keeps one band whose noise
    happened to be underestimated (few frames) from raising false alarms.
    """
    sd = _robust_sigma_cols(x, conservative=conservative)
    for m in np.unique(level):
        sel = level == m
        sd[sel] = np.maximum(sd[sel], np.median(sd[sel]))
    return sd


def _nanmedian_cols(x):
    """Median of each column over its finite entries (0 where a column has none)."""
    if not np.isnan(x).any():
        return np.median(x, axis=0)
    ok = np.isfinite(x).any(axis=0)
    out = np.zeros(x.shape[1])
    out[ok] = np.nanmedian(x[:, ok], axis=0)
    return out


def _band_threshold(threshold, k) -> float:
    """Bonferroni: the per-band threshold whose Gaussian tail is ``1/k`` of ``threshold``'s."""
    if k <= 1:
        return float(threshold)
    return float(-ndtri(ndtr(-threshold) / k))


def _adjusted_z(z, k):
    """Bonferroni-adjusted z of the largest of ``k`` standard normal statistics (>= 0)."""
    p = np.minimum(1.0, k * ndtr(-np.asarray(z, dtype=np.float64)))
    return np.maximum(-ndtri(p), 0.0)


def _confidence(stat, threshold) -> float:
    return float(ndtr(stat - threshold + 1.645))


def _best_split(y, lo, hi, min_size, direction, k_min=0):
    """Largest standardised mean shift of y[lo:hi] over splits k (change starts at k).

    ``y`` may be 2-D (frames x columns): then the best column is returned too. Splits
    start at ``k_min`` or later (absolute index).
    """
    seg = np.asarray(y[lo:hi], dtype=np.float64)
    flat = seg.ndim == 1
    if flat:
        seg = seg[:, None]
    n = seg.shape[0]
    k = np.arange(max(min_size, k_min - lo), n - min_size + 1)
    if k.size == 0 or seg.shape[1] == 0:
        return (None, 0.0) if flat else (None, 0.0, None)
    c = np.concatenate([np.zeros((1, seg.shape[1])), np.cumsum(seg, axis=0)])
    kk = k[:, None].astype(np.float64)
    before = c[k] / kk
    after = (c[n] - c[k]) / (n - kk)
    t = (after - before) / np.sqrt(1.0 / kk + 1.0 / (n - kk))
    t = np.abs(t) if direction == 0 else direction * t
    i, j = np.unravel_index(int(np.argmax(t)), t.shape)
    if flat:
        return lo + int(k[i]), float(t[i, 0])
    return lo + int(k[i]), float(t[i, j]), int(j)


def _refine(vectors, k, lo, hi, search, floor=0, last=None, early=None):
    """Onset and end of a change near split ``k`` from the frames' residual vectors.

    The frames are projected on the direction of the change (mean residual from ``k`` on,
    minus the mean of frames before the fit window; each frame after ``k`` is left out of the
    mean it is projected on, so noise does not bias it), and a ramp ``a + b * clip((t - t0 +
    1) / (t1 - t0 + 1), 0, 1)`` is fitted to the projection by least squares over
    ``(t0, t1)`` with ``k - search <= t0 <= last + 1`` (``last`` defaults to ``k``) and
    ``t0 >= floor`` (the first frame after the warm-up: the onset is never inside it).
    ``vectors[i]`` belongs to frame ``lo + i``. ``early``, a list, gets True appended when
    the best fit without the floor starts before it (the change may predate the floor).
    """
    last = k if last is None else max(k, last)
    w0 = max(lo, k - 3 * search)
    if floor > w0 and floor < k - 1:
        w0 = floor
    w1 = min(hi, last + 3 * search)
    after = vectors[k - lo: min(hi, k + 2 * search) - lo].astype(np.float64)
    pre = vectors[: w0 - lo]
    base = pre.mean(axis=0) if len(pre) >= 3 else 0.0
    na = len(after)
    total = (after - base).sum(axis=0)
    nd = float(np.linalg.norm(total / na))
    if nd == 0 or na < 2:
        return max(k, floor), max(k, floor)
    win = vectors[w0 - lo: w1 - lo].astype(np.float64) - base
    p = win @ (total / na)
    t_idx = np.arange(w0, w1)
    inside = (t_idx >= k) & (t_idx < k + na)
    own = np.einsum("ij,ij->i", win[inside], win[inside])
    p[inside] = (p[inside] * na - own) / (na - 1)
    p /= nd
    t = t_idx.astype(np.float64)
    best = (np.inf, k, k)
    unfloored = np.inf
    pc = p - p.mean()
    for t0 in range(max(w0 + 1, k - search), min(last + 2, w1)):
        t1s = np.arange(t0, min(t0 + 2 * search, w1 + search) + 1)
        g = np.clip((t[None, :] - t0 + 1) / (t1s[:, None] - t0 + 1), 0.0, 1.0)
        gc = g - g.mean(axis=1, keepdims=True)
        sgg = (gc * gc).sum(axis=1)
        gp = gc @ pc
        b = np.where(sgg > 0, gp / np.where(sgg > 0, sgg, 1.0), 0.0)
        rss = np.where(b > 0, (pc * pc).sum() - b * gp, np.inf)
        j = int(np.argmin(rss))
        if t0 < floor:
            unfloored = min(unfloored, float(rss[j]))
        elif rss[j] < best[0]:
            best = (float(rss[j]), t0, int(t1s[j]))
    if early is not None:  # better by more than ~2 sigma (delta chi^2 > 4) before the floor
        early.append(bool(unfloored < best[0] - 4.0 * unfloored / max(len(p), 1)))
    onset = max(best[1], floor)
    return onset, max(min(best[2], hi - 1), onset)


def _make_map(engine, smap, s, n_avg=1):
    import xarray as xr

    z = np.where(engine._bvalid, smap * math.sqrt(n_avg), np.nan)
    if s.kind == "profiles":
        coords = dict(s.axis_coords)
        dims = s.axis_dims
    else:
        b = engine.bin
        dims = s.axis_dims
        coords = {dims[0]: np.arange(z.shape[0]) * b + (b - 1) / 2,
                  dims[1]: np.arange(z.shape[1]) * b + (b - 1) / 2}
    return xr.DataArray(z, dims=dims, coords=coords, name="change",
                        attrs={"units": "noise standard deviations", "bin": engine.bin})
