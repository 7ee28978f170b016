"""Online change detection: frame by frame, as the detector writes (:class:`OnlineDetector`)."""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from ._bands import band_extent, check_bands
from ._detect import _warn_warmup
from ._engine import _Engine
from ._feature_names import BAND_FEATURES, FEATURES
from ._features import _to_dataset
from ._input import Bands, Binning, Names, Series, check_frame
from ._results import ChangeEvent, ChangeResult, FrameResult
from ._statistics import (
    _adjusted_z,
    _band_sigma,
    _band_values,
    _check_detect,
    _check_positive,
    _confidence,
    _make_map,
    _nanmedian_cols,
    _refine,
    _robust_sigma,
)

logger = logging.getLogger(__name__)

__all__ = ["OnlineDetector"]

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

    def __init__(self, *, detect: Names = None, features: Names = None,
                 mask: npt.ArrayLike | None = None, warmup: int = 8,
                 threshold: float = 12.0, drift: float = 2.0, confirm: int = 4,
                 search: int = 8, window: int = 64, holdoff: int = 16, smooth: float = 2.0,
                 bin: Binning = "auto", bands: Bands = "auto", band_threshold: float = 7.0,
                 band_drift: float = 1.5) -> None:
        _check_positive(threshold=threshold, drift=drift, search=search, window=window,
                        band_threshold=band_threshold, band_drift=band_drift)
        if int(warmup) != warmup or warmup < 3:
            raise ValueError(f"warmup must be an integer >= 3, got {warmup}")
        for name, v in (("confirm", confirm), ("holdoff", holdoff)):
            if int(v) != v or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v}")
        check_bands(bands, "frames")
        self.warmup = int(warmup)
        self._opts: dict[str, Any] = dict(detect=detect, features=features, mask=mask,
                                          warmup=int(warmup), smooth=smooth, bin=bin,
                                          bands=bands)
        self.threshold, self.drift, self.confirm = float(threshold), float(drift), int(confirm)
        self.search, self.window, self.holdoff = int(search), int(window), int(holdoff)
        self.band_threshold, self.band_drift = float(band_threshold), float(band_drift)
        self._engine: _Engine | None = None
        self._kind = "frames"  # or "profiles": set by the first update
        self.events: list[ChangeEvent] = []
        self._rows: dict[int, dict[str, Any]] = {}
        self._scores: dict[int, float] = {}
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
        return self._engine.warmup_left

    @property
    def ready(self) -> bool:
        """True once the reference is complete and frames are scored."""
        return self.frames_needed == 0

    def update(self, frame: npt.ArrayLike, *, sigma: npt.ArrayLike | None = None) -> FrameResult:
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
                self._engine.restart()
            return FrameResult(index=idx, state="holdoff", score=math.nan, flagged=False)
        rows = self._engine.push(a, sigma)
        self._n += 1
        if not rows:
            return FrameResult(index=idx, state="warmup", score=math.nan, flagged=False)
        if len(rows) > 1:  # the warm-up just ended: the reference is new
            self._warm_end = rows[-1][0] + 1
        results = [self._score(ridx, vals, vec, smap) for ridx, vals, vec, smap in rows]
        return results[-1]

    def _band_vector(self, vals):
        return np.concatenate([_band_values(vals[f], f) for f in self._band_detect])

    def _started(self) -> _Engine:
        """The feature engine, made by the first update."""
        if self._engine is None:
            raise RuntimeError("no frame has been given to update() yet")
        return self._engine

    def _score(self, idx, vals, vec, smap) -> FrameResult:
        self._buffer.append((idx, vec))
        self._maps.append((idx, smap))
        self._rows[idx] = vals
        bands = bool(self._band_detect)
        bvec = self._band_vector(vals) if bands else None
        if self._base is None:
            self._base = {f: deque(maxlen=self.window) for f in self._detect}
            if bvec is not None:
                self._bbase = deque(maxlen=self.window)  # NaN where a band was excluded
                # whole rows, for the noise
                self._bnoise: deque[np.ndarray] = deque(maxlen=self.window)
                bandset = self._started().bandset
                nb = bandset.size
                self._blevel = np.tile(bandset.level, len(self._band_detect))
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
        if bvec is not None:
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
            nb = self._started().bandset.size
            col = int(self._bcol[which])
            feature = self._band_detect[int(self._bfeat[col])]
            region = band_extent(self._started(), self._dummy_series(), col % nb)
            thr = self._bthreshold
        k = max(k, self._warm_end)
        early: list[bool] = []
        onset, end = _refine(vectors, k, lo, hi, self.search, floor=self._warm_end,
                             last=self._alarm_at, early=early)
        if early and early[-1] and onset == self._warm_end:
            _warn_warmup(onset, self._warm_end)
        maps = [m for i, m in self._maps if onset <= i <= end]
        cmap = None
        if maps:
            cmap = _make_map(self._started(), np.mean(maps, axis=0), self._dummy_series(),
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
            self._started().restart()
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
