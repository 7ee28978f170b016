"""Offline (whole series) and online (frame by frame) detection of change onsets."""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from ._features import FEATURES, FRAME_DEFAULT, PROFILE_DEFAULT, _compute, _Engine, _to_dataset
from ._input import Series, as_series, check_frame

logger = logging.getLogger(__name__)

__all__ = ["ChangeEvent", "ChangeResult", "FrameResult", "OnlineDetector", "detect_changes"]

#: features that drive detection by default
DETECT_FRAMES = ("difference", "unique_count")
DETECT_PROFILES = ("difference",)


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
        features from the pre-change level.
    flagged : ndarray of bool
        Frames inside a change (``onset..end`` of an event).
    n_frames : int
    kind : str
        ``"frames"`` or ``"profiles"``.
    """

    events: tuple
    features: object
    score: object
    flagged: np.ndarray
    n_frames: int
    kind: str

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


def _check_detect(detect, kind, features):
    if detect is None:
        detect = DETECT_FRAMES if kind == "frames" else DETECT_PROFILES
    detect = tuple(detect)
    if not detect:
        raise ValueError("detect must name at least one feature")
    bad = [d for d in detect if d not in FEATURES]
    if bad:
        raise ValueError(f"unknown detection feature(s) {bad}; choose from {sorted(FEATURES)}")
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


def _confidence(stat, threshold) -> float:
    return float(ndtr(stat - threshold + 1.645))


def _best_split(y, lo, hi, min_size, direction):
    """Largest standardised mean shift of y[lo:hi] over splits k (change starts at k)."""
    seg = y[lo:hi]
    n = seg.size
    if n < 2 * min_size:
        return None, 0.0
    c = np.concatenate([[0.0], np.cumsum(seg)])
    k = np.arange(min_size, n - min_size + 1)
    before = c[k] / k
    after = (c[n] - c[k]) / (n - k)
    t = (after - before) / np.sqrt(1.0 / k + 1.0 / (n - k))
    t = np.abs(t) if direction == 0 else direction * t
    i = int(np.argmax(t))
    return lo + int(k[i]), float(t[i])


def _refine(vectors, k, lo, hi, search, floor=0, last=None):
    """Onset and end of a change near split ``k`` from the frames' residual vectors.

    The frames are projected on the direction of the change (mean residual from ``k`` on,
    minus the mean of frames before the fit window; each frame after ``k`` is left out of the
    mean it is projected on, so noise does not bias it), and a ramp ``a + b * clip((t - t0 +
    1) / (t1 - t0 + 1), 0, 1)`` is fitted to the projection by least squares over
    ``(t0, t1)`` with ``k - search <= t0 <= last + 1`` (``last`` defaults to ``k``).
    ``vectors[i]`` belongs to frame ``lo + i``.
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
        return k, k
    win = vectors[w0 - lo: w1 - lo].astype(np.float64) - base
    p = win @ (total / na)
    t_idx = np.arange(w0, w1)
    inside = (t_idx >= k) & (t_idx < k + na)
    own = np.einsum("ij,ij->i", win[inside], win[inside])
    p[inside] = (p[inside] * na - own) / (na - 1)
    p /= nd
    t = t_idx.astype(np.float64)
    best = (np.inf, k, k)
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
        if rss[j] < best[0]:
            best = (float(rss[j]), t0, int(t1s[j]))
    return best[1], min(best[2], hi - 1)


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
                   maps: bool = True) -> ChangeResult:
    """Find when a series of frames (or of I(q) profiles) changes, from the whole series.

    Each frame gets the features of :func:`frame_features`; each detection feature is
    standardised by its noise (from first differences, robust to the change itself), and
    binary segmentation looks for the split with the largest standardised mean shift
    ``T = (mean after - mean before) / sqrt(1/n1 + 1/n2)``. A split with ``T > threshold``
    is a change; its onset and end are refined by projecting the frames' smoothed residuals
    on the direction of the change and fitting a ramp, and the segments before and after
    are searched again.

    Parameters
    ----------
    series : array_like or xarray
        ``(frame, y, x)`` frames or ``(frame or time, q)`` profiles (a Dataset with
        ``intensity`` and ``sigma``, as from :func:`spotkit.scattering.integrate_frames`).
    detect : sequence of str, optional
        Features that decide; default ``("difference", "unique_count")`` for frames and
        ``("difference",)`` (chi^2 per degree of freedom) for profiles.
    features : sequence of str, optional
        Features to compute and return (``detect`` is added).
    mask : array_like of bool, optional
        True on invalid pixels or q bins.
    warmup : int
        Frames averaged into the reference (the change must start after them).
    threshold : float
        Minimum standardised mean shift ``T``.
    min_size : int
        Fewest frames on each side of a split.
    search : int
        Frames before the split searched for the onset (and half the ramp length searched).
    max_changes : int
        Most events reported.
    smooth, bin, sigma
        As for :func:`frame_features`.
    maps : bool
        Attach a change map to each event.

    Returns
    -------
    ChangeResult

    Examples
    --------
    >>> result = detect_changes(frames)  # doctest: +SKIP
    >>> result.onsets, [round(e.confidence, 2) for e in result.events]  # doctest: +SKIP
    ((25,), [1.0])
    """
    s = as_series(series, sigma=sigma)
    detect, features = _check_detect(detect, s.kind, features)
    _check_positive(threshold=threshold, search=search, max_changes=max_changes)
    if int(min_size) != min_size or min_size < 1:
        raise ValueError(f"min_size must be a positive integer, got {min_size}")
    table, vectors, engine = _compute(s, features=features, mask=mask, warmup=warmup,
                                      smooth=smooth, bin=bin, keep_coarse=True)
    n = s.n
    ys = {}
    for f in detect:
        x = table[f]
        ys[f] = x / _robust_sigma(x)
    # score for display: departure from the warm-up level, in noise units
    score = np.zeros(n)
    for f in detect:
        dirn = FEATURES[f]
        z = (ys[f] - np.median(ys[f][:warmup]))
        z = np.abs(z) if dirn == 0 else dirn * z
        score = np.maximum(score, z)

    events = []
    todo = [(0, n)]
    while todo and len(events) < max_changes:
        lo, hi = todo.pop(0)
        best = (None, 0.0, None)
        for f in detect:
            k, t = _best_split(ys[f], lo, hi, min_size, FEATURES[f])
            if k is not None and t > best[1]:
                best = (k, t, f)
        k, t, f = best
        if k is None or t < threshold:
            continue
        onset, end = _refine(vectors[lo:hi], k, lo, hi, search, floor=warmup)
        onset = max(onset, lo)
        events.append((onset, end, t, f))
        logger.info("change at frame %d..%d (T=%.1f on %s)", onset, end, t, f)
        todo += [(lo, onset), (end + 1, hi)]
    events.sort()
    out = []
    flagged = np.zeros(n, dtype=bool)
    for onset, end, t, f in events:
        flagged[onset: end + 1] = True
        cmap = None
        if maps:
            cmap = _series_map(s, engine, onset, end, mask=mask, warmup=warmup, smooth=smooth)
        out.append(ChangeEvent(onset=int(onset), end=int(end),
                               confidence=_confidence(t, threshold), statistic=float(t),
                               feature=f, detected_at=n - 1, onset_coord=s.time[onset],
                               end_coord=s.time[end], change_map=cmap))
    import xarray as xr

    feats = _to_dataset(table, s, engine.features)
    return ChangeResult(events=tuple(out), features=feats,
                        score=xr.DataArray(score, dims=(s.time_dim,),
                                           coords={s.time_dim: s.time}, name="score"),
                        flagged=flagged, n_frames=n, kind=s.kind)


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

    The first ``warmup`` frames make the reference and the feature baseline. Each later
    frame's detection features are standardised against a running median and a robust noise
    (first differences) over the last ``window`` unflagged frames; the largest standardised
    departure feeds a CUSUM ``S = max(0, S + z - drift)``. When ``S > threshold`` a change is
    suspected (frames are flagged); ``confirm`` frames later it is confirmed and its onset
    and end refined as in :func:`detect_changes`, from a bounded buffer of recent frames.
    After ``holdoff`` frames the detector learns a new reference and watches again. Memory is
    bounded: the warm-up, the buffer and the window.

    Parameters
    ----------
    detect, features, mask, warmup, smooth, bin
        As for :func:`detect_changes`.
    threshold : float
        CUSUM alarm height.
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
    >>> for frame in frames:  # doctest: +SKIP
    ...     r = det.update(frame)
    ...     if r.event:
    ...         print(r.event.onset, r.event.confidence)
    """

    def __init__(self, *, detect=None, features=None, mask=None, warmup: int = 8,
                 threshold: float = 12.0, drift: float = 2.0, confirm: int = 4,
                 search: int = 8, window: int = 64, holdoff: int = 16, smooth: float = 2.0,
                 bin="auto"):
        _check_positive(threshold=threshold, drift=drift, search=search, window=window)
        if int(warmup) != warmup or warmup < 3:
            raise ValueError(f"warmup must be an integer >= 3, got {warmup}")
        for name, v in (("confirm", confirm), ("holdoff", holdoff)):
            if int(v) != v or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v}")
        self._opts = dict(detect=detect, features=features, mask=mask, warmup=int(warmup),
                          smooth=smooth, bin=bin)
        self.threshold, self.drift, self.confirm = float(threshold), float(drift), int(confirm)
        self.search, self.window, self.holdoff = int(search), int(window), int(holdoff)
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
        self._cusum = 0.0
        self._run_start = None
        self._peak = 0.0
        self._alarm_at = None
        self._hold_until = -1
        self._buffer = deque(maxlen=6 * self.search + self.confirm + 4)
        self._maps = deque(maxlen=6 * self.search + self.confirm + 4)

    def update(self, frame, *, sigma=None) -> FrameResult:
        """Add the next frame (2-D) or profile (1-D, with optional ``sigma``).

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
                                             self._opts["features"])
            self._detect = detect
            self._engine = _Engine(kind=self._kind, shape=a.shape, mask=self._opts["mask"],
                                   warmup=self._opts["warmup"], smooth=self._opts["smooth"],
                                   bin=self._opts["bin"], features=features)
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

    def _score(self, idx, vals, vec, smap) -> FrameResult:
        self._buffer.append((idx, vec))
        self._maps.append((idx, smap))
        self._rows[idx] = vals
        warm = self._base is None or len(self._base[self._detect[0]]) < self._opts["warmup"]
        if self._base is None:
            self._base = {f: deque(maxlen=self.window) for f in self._detect}
        if warm:
            for f in self._detect:
                self._base[f].append(vals[f])
            self._scores[idx] = 0.0
            return FrameResult(index=idx, state="warmup", score=0.0, flagged=False,
                               features=vals)
        z = 0.0
        zf = self._detect[0]
        for f in self._detect:
            base = np.asarray(self._base[f])
            sd = _robust_sigma(base, conservative=True) * (1.0 + 2.0 / base.size)
            d = (vals[f] - np.median(base)) / sd
            d = abs(d) if FEATURES[f] == 0 else FEATURES[f] * d
            if d > z:
                z, zf = d, f
        self._scores[idx] = z
        self._cusum = max(0.0, self._cusum + z - self.drift)
        if self._cusum == 0.0:
            self._run_start = None
            for f in self._detect:
                self._base[f].append(vals[f])
        elif self._run_start is None:
            self._run_start = idx
            self._peak = 0.0
        self._peak = max(self._peak, self._cusum)
        if self._alarm_at is None and self._cusum > self.threshold:
            self._alarm_at = idx
            self._alarm_feature = zf
            logger.info("change suspected at frame %d (run from %d)", idx, self._run_start)
        event = None
        state = "watching"
        if self._alarm_at is not None:
            state = "alarm"
            if idx >= self._alarm_at + self.confirm:
                event = self._confirm(idx)
                state = "holdoff"
        return FrameResult(index=idx, state=state, score=z,
                           flagged=(self._alarm_at is not None) or (event is not None),
                           event=event, features=vals)

    def _confirm(self, idx) -> ChangeEvent:
        idxs = [i for i, _ in self._buffer]
        lo, hi = idxs[0], idxs[-1] + 1
        vectors = np.stack([v for _, v in self._buffer])
        k = self._run_start if self._run_start is not None else self._alarm_at
        onset, end = _refine(vectors, k, lo, hi, self.search, floor=self._warm_end,
                             last=self._alarm_at)
        maps = [m for i, m in self._maps if onset <= i <= end]
        cmap = None
        if maps:
            s = Series(data=np.zeros((1, 1)), kind=self._kind, time_dim="frame",
                       time=np.arange(1), axis_dims=("y", "x") if self._kind == "frames"
                       else ("q",), axis_coords={})
            cmap = _make_map(self._engine, np.mean(maps, axis=0), s, n_avg=len(maps))
        stat = self._peak
        ev = ChangeEvent(onset=int(onset), end=int(end),
                         confidence=_confidence(stat, self.threshold), statistic=float(stat),
                         feature=self._alarm_feature, detected_at=idx, onset_coord=onset,
                         end_coord=end, change_map=cmap)
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
        names = self._engine.features
        table = {f: np.full(n, np.nan) for f in names}
        score = np.full(n, np.nan)
        for i, vals in self._rows.items():
            for f in names:
                table[f][i] = vals[f]
            score[i] = self._scores.get(i, np.nan)
        flagged = np.zeros(n, dtype=bool)
        for e in self.events:
            flagged[e.onset: e.end + 1] = True
        coords = {"frame": np.arange(n)}
        feats = xr.Dataset({f: (("frame",), table[f]) for f in names}, coords=coords)
        return ChangeResult(events=tuple(self.events), features=feats,
                            score=xr.DataArray(score, dims=("frame",), coords=coords,
                                               name="score"),
                            flagged=flagged, n_frames=n, kind=self._kind)
