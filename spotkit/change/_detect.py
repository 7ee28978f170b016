"""Offline change detection: the onsets of change in a whole series (:func:`detect_changes`)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import numpy.typing as npt

from ._bands import band_extent
from ._feature_names import _ALL, BAND_FEATURES, FEATURES
from ._features import _compute, _to_dataset
from ._input import Bands, Binning, Names, SeriesLike, as_series
from ._results import ChangeEvent, ChangeResult, WarmupWarning
from ._statistics import (
    _adjusted_z,
    _band_sigma,
    _band_threshold,
    _band_values,
    _best_split,
    _check_detect,
    _check_positive,
    _confidence,
    _make_map,
    _refine,
    _robust_sigma,
)

logger = logging.getLogger(__name__)

__all__ = ["detect_changes"]

def detect_changes(series: SeriesLike, *, detect: Names = None, features: Names = None,
                   mask: npt.ArrayLike | None = None, warmup: int = 8,
                   threshold: float = 6.0, min_size: int = 3, search: int = 8,
                   max_changes: int = 5, smooth: float = 2.0, bin: Binning = "auto",
                   sigma: npt.ArrayLike | None = None, maps: bool = True,
                   bands: Bands = "auto") -> ChangeResult:
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

    events: list[tuple[int, int, float, str, dict | None]] = []
    todo = [(0, n)]
    while todo and len(events) < max_changes:
        lo, hi = todo.pop(0)
        best: tuple[int | None, float, str | None, int | None] = (None, -np.inf, None, None)
        for f in detect:
            if f in BAND_FEATURES:
                k, t, j = _best_split(ys[f], lo, hi, min_size, _ALL[f], k_min=warmup)
            else:
                (k, t), j = _best_split(ys[f], lo, hi, min_size, _ALL[f], k_min=warmup), None
            if k is not None and t - thresholds[f] > best[1]:
                best = (k, t - thresholds[f], f, j)
        k, excess, f, j = best
        if k is None or f is None or excess < 0:
            continue
        t = excess + thresholds[f]
        early: list[bool] = []
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
        vals, binned, var = engine._reduce(s.item(k), s.sigma_item(k))
        _, _, _, smap = engine._row(k, vals, binned, var, loo=None)
        acc = smap if acc is None else acc + smap
        count += 1
    return _make_map(engine, acc / count, s, n_avg=count)
