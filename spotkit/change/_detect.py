"""Offline (whole series) and online (frame by frame) detection of change onsets."""

from __future__ import annotations

import logging
import math
import warnings
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from ._features import (
    _ALL,
    BAND_FEATURES,
    FEATURES,
    FRAME_DEFAULT,
    PROFILE_DEFAULT,
    _compute,
    _Engine,
    _to_dataset,
    band_extent,
    check_bands,
)
from ._input import Series, as_series, check_frame

logger = logging.getLogger(__name__)

__all__ = ["ChangeEvent", "ChangeResult", "FrameResult", "OnlineDetector", "WarmupWarning",
           "detect_changes"]

#: features that drive detection by default (the band features only when ``bands`` > 0)
DETECT_FRAMES = ("difference", "unique_count", "band_shift", "band_difference")
DETECT_PROFILES = ("difference", "band_shift", "band_difference")


class WarmupWarning(UserWarning):
    """A change seems to start inside the warm-up, whose frames make the reference.

    The onset is reported at the first frame after the warm-up; the reference (and so the
    change map) mixes frames from before and after the change. Use a shorter ``warmup`` or
    start the series earlier.
    """


@dataclass(frozen=True, eq=False)
class ChangeEvent:
    """One detected change.

    Attributes
    ----------
    onset : int
        Index of the first changed frame.
    end : int
        Index of the last frame of the transition (equal to ``onset`` for a step).
    confidence : float
        In [0, 1]: 0.95 at the detection threshold, towards 1 as the change is more
        significant (``Phi(T - threshold + 1.645)`` of the test statistic ``T``).
    statistic : float
        The test statistic (standardised mean shift of the feature, or CUSUM height).
    feature : str
        The feature that flagged it.
    detected_at : int
        Frame at which it was decided (online: alarm plus confirmation; offline: last frame).
    onset_coord, end_coord : object
        The series' frame or time coordinate at ``onset`` and ``end``.
    change_map : xarray.DataArray or None
        Where it changed: mean smoothed difference of frames ``onset..end`` from the
        reference in noise units, dims ``(y, x)`` on the binned grid or ``(q,)``.
    region : dict or None
        For a change found by a band feature: the q band (``{"q": (q_first, q_last)}``, or
        bin indices without a q coordinate) or the detector region (``{"y": (first, last),
        "x": (first, last)}`` in pixels) that flagged it; None for whole-frame features.
    """

    onset: int
    end: int
    confidence: float
    statistic: float
    feature: str
    detected_at: int
    onset_coord: object = None
    end_coord: object = None
    change_map: object = field(default=None, repr=False)
    region: dict | None = None


@dataclass(frozen=True, eq=False)
class ChangeResult:
    """Detected changes of a series.

    Attributes
    ----------
    events : tuple of ChangeEvent
        In order of onset.
    features : xarray.Dataset
        Per-frame features (dims ``frame`` or ``time``).
    score : xarray.DataArray
        Per-frame detection score: the largest standardised departure of the detection
        features from the pre-change level (band features' after the multiple-testing
        correction, so that all are on one scale).
    flagged : ndarray of bool
        Frames inside a change (``onset..end`` of an event).
    n_frames : int
    kind : str
        ``"frames"`` or ``"profiles"``.
    bands : xarray.Dataset or None
        The band features (dims ``(frame or time, band)``, see :func:`frame_features`) when
        they were computed.
    """

    events: tuple
    features: object
    score: object
    flagged: np.ndarray
    n_frames: int
    kind: str
    bands: object = None

    @property
    def onsets(self) -> tuple[int, ...]:
        """Onset frame indices of the events."""
        return tuple(e.onset for e in self.events)


@dataclass(frozen=True, eq=False)
class FrameResult:
    """What :meth:`OnlineDetector.update` says about one frame.

    Attributes
    ----------
    index : int
        The frame's index in the stream.
    state : str
        ``"warmup"`` (learning the reference), ``"watching"``, ``"alarm"`` (a change is
        being confirmed) or ``"holdoff"`` (after an event, before learning again).
    score : float
        Standardised departure of this frame (nan until scored).
    flagged : bool
        True when the frame is inside a suspected or confirmed change.
    event : ChangeEvent or None
        Set on the frame where a change is confirmed.
    features : dict
        Feature values of the newest scored frame (empty during the warm-up).
    """

    index: int
    state: str
    score: float
    flagged: bool
    event: ChangeEvent | None = None
    features: dict = field(default_factory=dict)


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


def detect_changes(series, *, detect=None, features=None, mask=None, warmup: int = 8,
                   threshold: float = 6.0, min_size: int = 3, search: int = 8,
                   max_changes: int = 5, smooth: float = 2.0, bin="auto", sigma=None,
                   maps: bool = True, bands="auto") -> ChangeResult:
    """Find when a series of frames (or of I(q) profiles) changes, from the whole series.

    Each frame gets the features of :func:`frame_features`; each detection feature is
    standardised by its noise (from first differences, robust to the change itself), and
    binary segmentation looks for the split with the largest standardised mean shift
    ``T = (mean after - mean before) / sqrt(1/n1 + 1/n2)``. A split with ``T > threshold``
    is a change; its onset and end are refined by projecting the frames' smoothed residuals
    on the direction of the change and fitting a ramp, and the segments before and after
    are searched again.

    A change confined to a band of q (or a region of the detector) is diluted in the
    whole-frame ``difference``; the band features (:data:`BAND_FEATURES`, one series per
    band at nested scales) see it at full strength. Searching ``K`` band series is ``K``
    tests: a band split must pass the Bonferroni threshold ``T_K`` whose Gaussian tail is
    ``1/K`` of ``threshold``'s (6.0 -> about 6.6 for the 62 series of 16 q bands), so the
    false-alarm rate on stationary series does not rise.

    Parameters
    ----------
    series : array_like or xarray
        ``(frame, y, x)`` frames or ``(frame or time, q)`` profiles (a Dataset with
        ``intensity`` and ``sigma``, as from :func:`spotkit.scattering.integrate_frames`).
    detect : sequence of str, optional
        Features that decide; default ``("difference", "unique_count", "band_shift",
        "band_difference")`` for frames and ``("difference", "band_shift",
        "band_difference")`` (chi^2 per degree of freedom and per-band features) for
        profiles; without the band features when ``bands=0``.
    features : sequence of str, optional
        Features to compute and return (``detect`` is added).
    mask : array_like of bool, optional
        True on invalid pixels or q bins.
    warmup : int
        Frames averaged into the reference. A change is searched for from the frame after
        them on: no onset is ever reported inside the warm-up (a :class:`WarmupWarning` says
        when the change seems to have started there).
    threshold : float
        Minimum standardised mean shift ``T`` of a whole-frame feature (band features: the
        Bonferroni-corrected ``T_K`` above).
    min_size : int
        Fewest frames on each side of a split.
    search : int
        Frames before the split searched for the onset (and half the ramp length searched).
    max_changes : int
        Most events reported.
    smooth, bin, sigma, bands
        As for :func:`frame_features`.
    maps : bool
        Attach a change map to each event.

    Returns
    -------
    ChangeResult

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.io import open_saxs
    >>> from spotkit.sim import simulate_saxs_series
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.h5"
    >>> truth = simulate_saxs_series(path, n_frames=30, onset_frame=18, seed=3)
    >>> result = detect_changes(open_saxs(path))
    >>> result.onsets, [round(e.confidence, 2) for e in result.events]
    ((18,), [1.0])
    >>> result.events[0].region
    {'y': (...), 'x': (...)}
    """
    s = as_series(series, sigma=sigma)
    detect, features = _check_detect(detect, s.kind, features, bands)
    _check_positive(threshold=threshold, search=search, max_changes=max_changes)
    if int(min_size) != min_size or min_size < 1:
        raise ValueError(f"min_size must be a positive integer, got {min_size}")
    table, vectors, engine = _compute(s, features=features, mask=mask, warmup=warmup,
                                      smooth=smooth, bin=bin, keep_coarse=True, bands=bands)
    n = s.n
    glob = [f for f in detect if f in FEATURES]
    band = [f for f in detect if f in BAND_FEATURES]
    ys = {f: table[f] / _robust_sigma(table[f]) for f in glob}
    level = engine._bandset.level if band else None
    for f in band:
        x = _band_values(table[f], f)
        ys[f] = x / _band_sigma(x, level)
    n_band = sum(ys[f].shape[1] for f in band)
    thresholds = {f: threshold for f in glob}
    thresholds.update({f: _band_threshold(threshold, n_band) for f in band})
    # score for display: departure from the warm-up level, in noise units (band features
    # after the Bonferroni correction)
    score = np.zeros(n)
    for f in detect:
        dirn = _ALL[f]
        z = ys[f] - np.median(ys[f][:warmup], axis=0)
        z = np.abs(z) if dirn == 0 else dirn * z
        if f in BAND_FEATURES:
            z = _adjusted_z(z.max(axis=1), n_band)
        score = np.maximum(score, z)

    events = []
    todo = [(0, n)]
    while todo and len(events) < max_changes:
        lo, hi = todo.pop(0)
        best = (None, -np.inf, None, None)
        for f in detect:
            if f in BAND_FEATURES:
                k, t, j = _best_split(ys[f], lo, hi, min_size, _ALL[f], k_min=warmup)
            else:
                (k, t), j = _best_split(ys[f], lo, hi, min_size, _ALL[f], k_min=warmup), None
            if k is not None and t - thresholds[f] > best[1]:
                best = (k, t - thresholds[f], f, j)
        k, excess, f, j = best
        if k is None or excess < 0:
            continue
        t = excess + thresholds[f]
        early = []
        onset, end = _refine(vectors[lo:hi], k, lo, hi, search, floor=max(warmup, lo),
                             early=early)
        if early[-1] and onset == warmup:
            _warn_warmup(onset, warmup)
        region = band_extent(engine, s, j) if j is not None else None
        events.append((onset, end, t, f, region))
        logger.info("change at frame %d..%d (T=%.1f on %s%s)", onset, end, t, f,
                    f" {region}" if region else "")
        todo += [(lo, onset), (end + 1, hi)]
    events.sort(key=lambda e: e[0])
    out = []
    flagged = np.zeros(n, dtype=bool)
    for onset, end, t, f, region in events:
        flagged[onset: end + 1] = True
        cmap = None
        if maps:
            cmap = _series_map(s, engine, onset, end, mask=mask, warmup=warmup, smooth=smooth)
        out.append(ChangeEvent(onset=int(onset), end=int(end),
                               confidence=_confidence(t, thresholds[f]), statistic=float(t),
                               feature=f, detected_at=n - 1, onset_coord=s.time[onset],
                               end_coord=s.time[end], change_map=cmap, region=region))
    import xarray as xr

    glob_names = [f for f in engine.features if f in FEATURES]
    band_names = [f for f in engine.features if f in BAND_FEATURES]
    feats = _to_dataset(table, s, glob_names)
    bands_ds = _to_dataset(table, s, band_names, engine) if band_names else None
    return ChangeResult(events=tuple(out), features=feats,
                        score=xr.DataArray(score, dims=(s.time_dim,),
                                           coords={s.time_dim: s.time}, name="score"),
                        flagged=flagged, n_frames=n, kind=s.kind, bands=bands_ds)


def _warn_warmup(onset, warmup):
    warnings.warn(
        f"the change seems to start inside the warm-up (frames 0..{warmup - 1}), which makes "
        f"the reference: its onset is reported at frame {onset}, the first after the "
        "warm-up. Use a smaller warmup or start the series earlier.",
        WarmupWarning, stacklevel=3)


def _series_map(s, engine, onset, end, *, mask, warmup, smooth):
    """Change map of frames onset..end against the engine's reference (one more pass)."""
    acc = None
    count = 0
    for k in range(onset, end + 1):
        _, vals, binned, var = (k, *engine._reduce(s.item(k), s.sigma_item(k)))
        _, _, _, smap = engine._row(k, vals, binned, var, loo=None)
        acc = smap if acc is None else acc + smap
        count += 1
    return _make_map(engine, acc / count, s, n_avg=count)


class OnlineDetector:
    """Detect changes while frames (or I(q) profiles) stream in, one at a time.

    The first ``warmup`` frames make the reference and the feature baseline; no frame is
    scored, flagged or reported as an onset before they are complete
    (:attr:`frames_needed` says how many frames are still to come, :attr:`ready` whether
    frames are being watched). Each later frame's detection features are standardised
    against a running median and a robust noise (first differences) over the last
    ``window`` unflagged frames. The largest standardised departure of the whole-frame
    features feeds a CUSUM ``S = max(0, S + z - drift)``; each band feature (one per q band
    or detector region, :data:`BAND_FEATURES`) feeds its own CUSUM, whose alarm height is
    raised by ``ln(K) / (2 drift)`` for ``K`` band series (Bonferroni: the false-alarm rate
    of a CUSUM falls as ``exp(-2 drift h)``), so watching many bands does not raise more
    false alarms. When a CUSUM passes its height a change is suspected (frames are
    flagged); ``confirm`` frames later it is confirmed and its onset and end refined as in
    :func:`detect_changes`, from a bounded buffer of recent frames, never before the first
    frame after the warm-up. After ``holdoff`` frames the detector learns a new reference
    (another ``warmup`` frames) and watches again. Memory is bounded: the warm-up, the
    buffer and the window.

    Parameters
    ----------
    detect, features, mask, warmup, smooth, bin, bands
        As for :func:`detect_changes`.
    threshold : float
        CUSUM alarm height (whole-frame features; band features add the correction above).
    drift : float
        CUSUM allowance per frame (in noise units).
    confirm : int
        Frames between the alarm and the event (more frames: a better onset estimate).
    search : int
        As for :func:`detect_changes`.
    window : int
        Unflagged frames kept for the running baseline.
    holdoff : int
        Frames after an event before the reference is learned again.

    Examples
    --------
    >>> det = OnlineDetector(warmup=8)
    >>> det.frames_needed, det.ready
    (8, False)
    >>> import pathlib, tempfile
    >>> from spotkit.io import open_saxs
    >>> from spotkit.sim import simulate_saxs_series
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.h5"
    >>> truth = simulate_saxs_series(path, n_frames=40, onset_frame=20, seed=3)
    >>> for frame in open_saxs(path).values:
    ...     r = det.update(frame)
    ...     if r.event:
    ...         print(r.event.onset, r.event.confidence)
    20 ...
    """

    def __init__(self, *, detect=None, features=None, mask=None, warmup: int = 8,
                 threshold: float = 12.0, drift: float = 2.0, confirm: int = 4,
                 search: int = 8, window: int = 64, holdoff: int = 16, smooth: float = 2.0,
                 bin="auto", bands="auto", band_threshold: float = 7.0,
                 band_drift: float = 1.5):
        _check_positive(threshold=threshold, drift=drift, search=search, window=window,
                        band_threshold=band_threshold, band_drift=band_drift)
        if int(warmup) != warmup or warmup < 3:
            raise ValueError(f"warmup must be an integer >= 3, got {warmup}")
        for name, v in (("confirm", confirm), ("holdoff", holdoff)):
            if int(v) != v or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v}")
        check_bands(bands, "frames")
        self.warmup = int(warmup)
        self._opts = dict(detect=detect, features=features, mask=mask, warmup=int(warmup),
                          smooth=smooth, bin=bin, bands=bands)
        self.threshold, self.drift, self.confirm = float(threshold), float(drift), int(confirm)
        self.search, self.window, self.holdoff = int(search), int(window), int(holdoff)
        self.band_threshold, self.band_drift = float(band_threshold), float(band_drift)
        self._engine = None
        self._kind = None
        self.events: list[ChangeEvent] = []
        self._rows = {}
        self._scores = {}
        self._warm_end = 0
        self._n = 0
        self._reset_watch()

    def _reset_watch(self):
        self._base = None
        self._bbase = None
        self._n_base = 0
        self._cusum = 0.0
        self._bcusum = None
        self._brun = None
        self._run_start = None
        self._peak = 0.0
        self._alarm_at = None
        self._alarm = None
        self._hold_until = -1
        self._buffer = deque(maxlen=6 * self.search + self.confirm + 4)
        self._maps = deque(maxlen=6 * self.search + self.confirm + 4)

    @property
    def frames_needed(self) -> int:
        """Frames still to come before a frame is scored (0 while watching).

        ``warmup`` before the first frame; after an event, the rest of the hold-off plus a
        new warm-up.
        """
        if self._n <= self._hold_until:
            return self._hold_until - self._n + 1 + self.warmup
        if self._engine is None:
            return self.warmup
        if self._engine._ref is None:
            return self.warmup - len(self._engine._buffer)
        return 0

    @property
    def ready(self) -> bool:
        """True once the reference is complete and frames are scored."""
        return self.frames_needed == 0

    def update(self, frame, *, sigma=None) -> FrameResult:
        """Add the next frame (2-D) or profile (1-D, with optional ``sigma``).

        Frames of the warm-up come back with state ``"warmup"``: never flagged, never an
        event.

        Returns
        -------
        FrameResult
        """
        a = np.asarray(frame)
        if self._engine is None:
            if a.ndim not in (1, 2):
                raise ValueError(f"a frame must be 2-D (y, x) or a profile 1-D (q); got shape "
                                 f"{a.shape}")
            self._kind = "frames" if a.ndim == 2 else "profiles"
            if self._kind == "frames" and sigma is not None:
                raise ValueError("sigma is only used with 1-D profiles")
            detect, features = _check_detect(self._opts["detect"], self._kind,
                                             self._opts["features"], self._opts["bands"])
            self._detect = tuple(f for f in detect if f in FEATURES)
            self._band_detect = tuple(f for f in detect if f in BAND_FEATURES)
            self._engine = _Engine(kind=self._kind, shape=a.shape, mask=self._opts["mask"],
                                   warmup=self._opts["warmup"], smooth=self._opts["smooth"],
                                   bin=self._opts["bin"], features=features,
                                   bands=self._opts["bands"])
        idx = self._n
        if idx <= self._hold_until:
            # after an event: the frame is checked, then skipped until the new warm-up
            check_frame(a, shape=self._engine.shape, index=idx)
            self._n += 1
            self._engine.index += 1
            if idx == self._hold_until:
                self._engine._ref = None
                self._engine._buffer = []
            return FrameResult(index=idx, state="holdoff", score=math.nan, flagged=False)
        rows = self._engine.push(a, sigma)
        self._n += 1
        if not rows:
            return FrameResult(index=idx, state="warmup", score=math.nan, flagged=False)
        if len(rows) > 1:  # the warm-up just ended: the reference is new
            self._warm_end = rows[-1][0] + 1
        result = None
        for ridx, vals, vec, smap in rows:
            result = self._score(ridx, vals, vec, smap)
        return result

    def _band_vector(self, vals):
        return np.concatenate([_band_values(vals[f], f) for f in self._band_detect])

    def _score(self, idx, vals, vec, smap) -> FrameResult:
        self._buffer.append((idx, vec))
        self._maps.append((idx, smap))
        self._rows[idx] = vals
        bands = bool(self._band_detect)
        bvec = self._band_vector(vals) if bands else None
        if self._base is None:
            self._base = {f: deque(maxlen=self.window) for f in self._detect}
            if bands:
                self._bbase = deque(maxlen=self.window)  # NaN where a band was excluded
                self._bnoise = deque(maxlen=self.window)  # whole rows, for the noise
                nb = self._engine._bandset.size
                self._blevel = np.tile(self._engine._bandset.level, len(self._band_detect))
                self._bdir = np.repeat([BAND_FEATURES[f] for f in self._band_detect], nb)
                self._bfeat = np.repeat(np.arange(len(self._band_detect)), nb)
                # one CUSUM per band and direction: a feature that may move either way
                # gets an upward and a downward one (|z| would drift up: E|z| = 0.8)
                cols = np.arange(bvec.size)
                self._bcol = np.concatenate([cols, cols[self._bdir == 0]])
                self._bsign = np.concatenate([np.where(self._bdir == 0, 1.0, self._bdir),
                                              -np.ones(int((self._bdir == 0).sum()))])
                self._bcusum = np.zeros(self._bcol.size)
                self._brun = np.full(self._bcol.size, -1)
                self._bthreshold = self.band_threshold + math.log(max(self._bcol.size, 1)) / (
                    2.0 * self.band_drift)
        if self._n_base < self._opts["warmup"]:
            self._add_base(vals, bvec)
            self._scores[idx] = 0.0
            return FrameResult(index=idx, state="warmup", score=0.0, flagged=False,
                               features=vals)
        z = 0.0
        zf = self._detect[0] if self._detect else None
        for f in self._detect:
            base = np.asarray(self._base[f])
            sd = _robust_sigma(base, conservative=True) * (1.0 + 2.0 / base.size)
            d = (vals[f] - np.median(base)) / sd
            d = abs(d) if FEATURES[f] == 0 else FEATURES[f] * d
            if d > z:
                z, zf = d, f
        shown = z
        if self._detect:
            self._cusum = max(0.0, self._cusum + z - self.drift)
        if bands:
            noise = np.asarray(self._bnoise)
            sd = _band_sigma(noise, self._blevel, conservative=True) * (1.0 + 2.0 / len(noise))
            zb = (bvec - _nanmedian_cols(np.asarray(self._bbase))) / sd
            zb = self._bsign * zb[self._bcol]
            self._bcusum = np.maximum(0.0, self._bcusum + zb - self.band_drift)
            self._brun[self._bcusum == 0] = -1
            self._brun[(self._bcusum > 0) & (self._brun < 0)] = idx
            shown = max(shown, float(_adjusted_z(zb.max(), zb.size)))
            if self._alarm_at is None:
                # each band's baseline takes the frame unless that band suspects a change
                busy = np.zeros(bvec.size)
                np.maximum.at(busy, self._bcol, self._bcusum)
                self._bbase.append(np.where(busy > self._bthreshold / 2, np.nan, bvec))
                self._bnoise.append(bvec)
        self._scores[idx] = shown
        if self._cusum == 0.0:
            self._run_start = None
            for f in self._detect:
                self._base[f].append(vals[f])
        elif self._run_start is None:
            self._run_start = idx
            self._peak = 0.0
        if self._alarm_at is None:
            if self._detect and self._cusum > self.threshold:
                self._alarm_at, self._alarm = idx, ("whole", zf)
                self._peak = self._cusum
            elif bands and float(self._bcusum.max()) > self._bthreshold:
                j = int(np.argmax(self._bcusum))
                self._alarm_at, self._alarm = idx, ("band", j)
                self._peak = float(self._bcusum[j])
            if self._alarm_at is not None:
                logger.info("change suspected at frame %d (%s)", idx, self._alarm)
        else:
            s_now = (self._cusum if self._alarm[0] == "whole"
                     else float(self._bcusum[self._alarm[1]]))
            self._peak = max(self._peak, s_now)
        event = None
        state = "watching"
        if self._alarm_at is not None:
            state = "alarm"
            if idx >= self._alarm_at + self.confirm:
                event = self._confirm(idx)
                state = "holdoff"
        return FrameResult(index=idx, state=state, score=shown,
                           flagged=(self._alarm_at is not None) or (event is not None),
                           event=event, features=vals)

    def _add_base(self, vals, bvec):
        for f in self._detect:
            self._base[f].append(vals[f])
        if bvec is not None:
            self._bbase.append(bvec)
            self._bnoise.append(bvec)
        self._n_base += 1

    def _dummy_series(self):
        return Series(data=np.zeros((1, 1)), kind=self._kind, time_dim="frame",
                      time=np.arange(1), axis_dims=("y", "x") if self._kind == "frames"
                      else ("q",), axis_coords={})

    def _confirm(self, idx) -> ChangeEvent:
        idxs = [i for i, _ in self._buffer]
        lo, hi = idxs[0], idxs[-1] + 1
        vectors = np.stack([v for _, v in self._buffer])
        kind, which = self._alarm
        if kind == "whole":
            k = self._run_start if self._run_start is not None else self._alarm_at
            feature, region, thr = which, None, self.threshold
        else:
            run = int(self._brun[which])
            k = run if 0 <= run <= self._alarm_at else self._alarm_at
            nb = self._engine._bandset.size
            col = int(self._bcol[which])
            feature = self._band_detect[int(self._bfeat[col])]
            region = band_extent(self._engine, self._dummy_series(), col % nb)
            thr = self._bthreshold
        k = max(k, self._warm_end)
        early = []
        onset, end = _refine(vectors, k, lo, hi, self.search, floor=self._warm_end,
                             last=self._alarm_at, early=early)
        if early and early[-1] and onset == self._warm_end:
            _warn_warmup(onset, self._warm_end)
        maps = [m for i, m in self._maps if onset <= i <= end]
        cmap = None
        if maps:
            cmap = _make_map(self._engine, np.mean(maps, axis=0), self._dummy_series(),
                             n_avg=len(maps))
        stat = self._peak
        ev = ChangeEvent(onset=int(onset), end=int(end),
                         confidence=_confidence(stat, thr), statistic=float(stat),
                         feature=feature, detected_at=idx, onset_coord=onset,
                         end_coord=end, change_map=cmap, region=region)
        self.events.append(ev)
        logger.info("change confirmed at frame %d: onset %d, end %d", idx, onset, end)
        self._reset_watch()
        self._hold_until = idx + self.holdoff
        if self.holdoff == 0:
            self._engine._ref = None
            self._engine._buffer = []
        return ev

    @property
    def n_frames(self) -> int:
        """Frames seen so far."""
        return self._n

    def result(self) -> ChangeResult:
        """The events so far as a :class:`ChangeResult` (features of scored frames)."""
        import xarray as xr

        if self._engine is None:
            raise ValueError("no frame has been given to update() yet")
        n = self._n
        names = [f for f in self._engine.features if f in FEATURES]
        band_names = [f for f in self._engine.features if f in BAND_FEATURES]
        table = {f: np.full(n, np.nan) for f in names}
        nb = self._engine._bandset.size if self._engine._bandset is not None else 0
        table.update({f: np.full((n, nb), np.nan) for f in band_names})
        score = np.full(n, np.nan)
        for i, vals in self._rows.items():
            for f in (*names, *band_names):
                table[f][i] = vals[f]
            score[i] = self._scores.get(i, np.nan)
        flagged = np.zeros(n, dtype=bool)
        for e in self.events:
            flagged[e.onset: e.end + 1] = True
        coords = {"frame": np.arange(n)}
        s = Series(data=np.zeros((n, 1)), kind=self._kind, time_dim="frame",
                   time=np.arange(n), axis_dims=self._dummy_series().axis_dims,
                   axis_coords={})
        feats = _to_dataset(table, s, names)
        bands = (_to_dataset(table, s, band_names, self._engine)
                 if band_names and nb else None)
        return ChangeResult(events=tuple(self.events), features=feats,
                            score=xr.DataArray(score, dims=("frame",), coords=coords,
                                               name="score"),
                            flagged=flagged, n_frames=n, kind=self._kind, bands=bands)
