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


def _short_baseline(own, n, carried, n_carried):
    """The noise of a feature on a short re-armed baseline of ``n`` frames whose own noise
    estimate is ``own``, with ``carried`` measured on ``n_carried`` frames before the change.

    Returns the pooled noise (variances weighted by their degrees of freedom), its number
    of frames, and the noise to standardise a new frame with: the pooled one times
    ``sqrt(1 + pi / (2 n))`` (a new value minus the median of ``n``: the median's variance
    is ``pi / (2 n)`` of a value's) and ``1 + 2 / (n + n_carried)`` (the allowance for an
    estimated noise the detector applies to any baseline).
    """
    dof_own, dof_c = max(n - 1, 0), max(n_carried - 1, 1)
    pooled = np.sqrt((dof_c * np.square(carried) + dof_own * np.square(own))
                     / (dof_c + dof_own))
    n_all = n + n_carried
    return pooled, n_all, pooled * math.sqrt(1.0 + math.pi / (2.0 * n)) * (1.0 + 2.0 / n_all)


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
    frame after the warm-up.

    After a change the detector re-arms at once (the default, ``holdoff=None``): the first
    ``rearm`` frames after the change's end (already seen while it was being confirmed, or
    the next ones) make a new reference, the frames after them are scored against it
    straight away, and a second change is watched for from the frame after that reference
    (a second step 5 frames after a first can be found). The short baseline is accounted
    for: until the new baseline holds ``window`` frames, each feature's noise is pooled
    (by degrees of freedom) from the one measured before the change (the detection
    features are noise-normalised, so a change leaves their noise alone) and the one of
    the new frames, and a new frame is standardised with that noise times
    ``sqrt(1 + pi/(2n))`` (its difference from the median of ``n`` baseline frames) and
    ``1 + 2/N`` (``N`` frames behind the noise); a variance learned from the frames
    themselves (profiles without sigma) is kept from the previous reference. With
    ``holdoff`` an integer the detector behaves as before this option: it skips
    ``holdoff`` frames after an event, then learns a new reference over another
    ``warmup`` frames (blind for confirm + hold-off + warm-up frames: 28 with
    ``holdoff=16``, the old default). Memory is bounded: the warm-up, the buffer, the
    window and (re-arming) the last ``2 search + confirm + rearm`` reduced frames.

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
    holdoff : int or None
        None (default): re-arm from the frames after a change (above). An integer: frames
        skipped after an event before a full new warm-up (the previous behaviour; it was
        16).
    rearm : int
        Frames after a change's end that make the re-armed reference (>= 3; used when
        ``holdoff`` is None).

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
                 search: int = 8, window: int = 64, holdoff: int | None = None,
                 smooth: float = 2.0, bin: Binning = "auto", bands: Bands = "auto",
                 band_threshold: float = 7.0, band_drift: float = 1.5,
                 rearm: int = 4) -> None:
        _check_positive(threshold=threshold, drift=drift, search=search, window=window,
                        band_threshold=band_threshold, band_drift=band_drift)
        if int(warmup) != warmup or warmup < 3:
            raise ValueError(f"warmup must be an integer >= 3, got {warmup}")
        if int(confirm) != confirm or confirm < 0:
            raise ValueError(f"confirm must be an integer >= 0, got {confirm}")
        if holdoff is not None and (int(holdoff) != holdoff or holdoff < 0):
            raise ValueError(f"holdoff must be an integer >= 0 or None (re-arm after a "
                             f"change), got {holdoff}")
        if int(rearm) != rearm or rearm < 3:
            raise ValueError(f"rearm must be an integer >= 3 (frames of the re-armed "
                             f"reference), got {rearm}")
        check_bands(bands, "frames")
        self.warmup = int(warmup)
        self._opts: dict[str, Any] = dict(detect=detect, features=features, mask=mask,
                                          warmup=int(warmup), smooth=smooth, bin=bin,
                                          bands=bands)
        self.threshold, self.drift, self.confirm = float(threshold), float(drift), int(confirm)
        self.search, self.window = int(search), int(window)
        self.holdoff = None if holdoff is None else int(holdoff)
        self.rearm = int(rearm)
        self.band_threshold, self.band_drift = float(band_threshold), float(band_drift)
        self._engine: _Engine | None = None
        self._kind = "frames"  # or "profiles": set by the first update
        self.events: list[ChangeEvent] = []
        self._rows: dict[int, dict[str, Any]] = {}
        self._scores: dict[int, float] = {}
        self._warm_end = 0
        self._n = 0
        self._base_need = self.warmup  # warm-up rows that start the feature baseline
        #: noise before a change and its number of frames (re-arming)
        self._carry: dict[str, tuple[float, int]] | None = None
        self._bcarry: tuple[np.ndarray, int] | None = None
        #: each feature's noise at the last frame scored, and its number of frames
        self._sd: dict[str, tuple[float, int]] = {}
        self._bsd: tuple[np.ndarray, int] | None = None
        self._replaying = False
        self._rearm_after: int | None = None
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

        ``warmup`` before the first frame; after an event, the frames still missing from
        the re-armed reference (``holdoff`` None) or the rest of the hold-off plus a new
        warm-up.
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
            if self.holdoff is None:
                self._engine.keep(2 * self.search + self.confirm + self.rearm)
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
        if self._rearm_after is not None:
            return self._rearm_now(results[-1])
        return results[-1]

    def _rearm_now(self, res: FrameResult) -> FrameResult:
        """Re-arm after the event of ``res``: the new reference from the frames after the
        change's end, the frames after it scored again (no event is confirmed among them:
        the next frame does that)."""
        after = int(self._rearm_after) if self._rearm_after is not None else res.index
        self._rearm_after = None
        rows, n_ref = self._started().rearm(after, self.rearm)
        self._base_need = self.rearm
        if n_ref:
            self._warm_end = rows[n_ref - 1][0] + 1
        self._replaying = True
        try:
            again = [self._score(ridx, vals, vec, smap) for ridx, vals, vec, smap in rows]
        finally:
            self._replaying = False
        last = again[-1] if again and again[-1].index == res.index else None
        return FrameResult(index=res.index, state="warmup" if last is None else last.state,
                           score=res.score, flagged=True, event=res.event,
                           features=res.features)

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
        if self._n_base < self._base_need:
            self._add_base(vals, bvec)
            self._scores[idx] = 0.0
            return FrameResult(index=idx, state="warmup", score=0.0, flagged=False,
                               features=vals)
        z = 0.0
        zf = self._detect[0] if self._detect else None
        for f in self._detect:
            base = np.asarray(self._base[f])
            sd = _robust_sigma(base, conservative=True)
            if self._carry is not None and base.size < self.window:
                sd, n_sd, sd_use = _short_baseline(sd, base.size, *self._carry[f])
            else:
                n_sd, sd_use = base.size, sd * (1.0 + 2.0 / base.size)
            self._sd[f] = (sd, n_sd)
            sd = sd_use
            d = (vals[f] - np.median(base)) / sd
            d = abs(d) if FEATURES[f] == 0 else FEATURES[f] * d
            if d > z:
                z, zf = d, f
        shown = z
        if self._detect:
            self._cusum = max(0.0, self._cusum + z - self.drift)
        if bvec is not None:
            noise = np.asarray(self._bnoise)
            sd = _band_sigma(noise, self._blevel, conservative=True)
            carry = self._bcarry
            short = (carry is not None and len(noise) < self.window
                     and carry[0].shape == sd.shape)
            if carry is not None and short:
                sd, n_sd, sd_use = _short_baseline(sd, len(noise), carry[0], carry[1])
            else:
                n_sd, sd_use = len(noise), sd * (1.0 + 2.0 / len(noise))
            self._bsd = (sd, n_sd)
            sd = sd_use
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
                # (a short re-armed baseline only while the band's CUSUM is at 0: each
                # frame of a second change it took would move its median a lot)
                limit = 0.0 if short else self._bthreshold / 2
                self._bbase.append(np.where(busy > limit, np.nan, bvec))
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
            if idx >= self._alarm_at + self.confirm and not self._replaying:
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
            if self._carry is None:  # the series' (or a hold-off's) warm-up
                _warn_warmup(onset, self._warm_end)
            else:  # a re-armed reference: the change may have begun inside it
                logger.info("the change confirmed at frame %d seems to start inside the "
                            "frames of the re-armed reference (before frame %d); its onset "
                            "is reported at frame %d", idx, self._warm_end, onset)
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
        if self.holdoff is None:
            # re-arm (in update, once this frame is scored) with the noise measured so far
            carry = dict(self._sd) if len(self._sd) == len(self._detect) else None
            bcarry = self._bsd
            self._reset_watch()
            self._carry, self._bcarry = carry, bcarry
            self._rearm_after = int(end)
            return ev
        self._reset_watch()
        self._carry, self._bcarry = None, None
        self._base_need = self.warmup
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
