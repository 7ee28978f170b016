"""Per-frame change features of a whole series: unique integer values, smoothed difference,
SSIM, I(q) chi^2, band features (:func:`frame_features`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ._bands import band_coords
from ._engine import _Engine
from ._feature_names import BAND_FEATURES
from ._input import Bands, Binning, Names, SeriesLike, as_series

if TYPE_CHECKING:
    import xarray as xr

logger = logging.getLogger(__name__)

__all__ = ["frame_features"]

def frame_features(series: SeriesLike, *, features: Names = None,
                   mask: npt.ArrayLike | None = None, warmup: int = 8, smooth: float = 2.0,
                   bin: Binning = "auto", sigma: npt.ArrayLike | None = None,
                   bands: Bands = "auto") -> xr.Dataset:
    """Change features of every frame (or I(q) profile) of a series.

    * ``unique_count``: number of distinct integer values (:func:`unique_count`);
    * ``difference``: mean square of the Gaussian-smoothed difference from the reference
      (mean of the first ``warmup`` frames; each warm-up frame is compared with the mean of
      the others), in units of the noise: about 1 while nothing changes. For profiles with
      ``smooth=0`` it is chi^2 per degree of freedom of ``I - I_ref`` with the errors;
    * ``ssim``: structural similarity to the previous frame (frames only);
    * ``mean``, ``median``: of the valid pixels (baselines; they miss many changes);
    * ``band_shift``, ``band_difference`` (:data:`BAND_FEATURES`): per q band of a profile or
      per region of the detector, at nested scales (see ``bands``), the sum of the
      noise-normalised residuals divided by the square root of their number (about N(0, 1)
      while nothing changes; a change confined to the band adds up coherently instead of
      being diluted by the rest of the profile) and the band's own ``difference``.

    Parameters
    ----------
    series : array_like or xarray
        ``(frame, y, x)`` frames (numpy, dask, xarray) or ``(frame or time, q)`` profiles
        (DataArray, or Dataset with ``intensity`` and ``sigma``).
    features : sequence of str, optional
        Names from :data:`FEATURES` and :data:`BAND_FEATURES`; default ``("unique_count",
        "difference", "ssim")`` for frames, ``("difference",)`` for profiles. ``difference``
        is always included.
    mask : array_like of bool, optional
        True on invalid pixels; negative pixels of the first frame are also invalid.
    warmup : int
        Frames that make the reference (>= 3).
    smooth : float
        Gaussian sigma of the difference, in detector pixels (or q bins for profiles).
    bin : "auto" or int
        Frames are averaged in ``bin x bin`` blocks before the difference and SSIM ("auto":
        at most 160,000 blocks, e.g. 4 for a Pilatus 2M).
    sigma : array_like, optional
        Errors of ndarray profiles (an xarray Dataset brings its own ``sigma``). Without
        errors the noise is estimated from the warm-up frames.
    bands : "auto" or int
        Finest number of contiguous q bands (each of equal numbers of valid bins; "auto":
        16) or of detector regions per axis ("auto": 8, i.e. 8 x 8 tiles); coarser levels
        join neighbours two by two (2 x 2) down to the whole profile or frame. Used by the
        band features only.

    Returns
    -------
    xarray.Dataset
        One variable per feature, dims ``(frame,)`` (or ``time``) with the series'
        coordinate; band features have dims ``(frame, band)`` with the band's ``level``
        (number of bands per axis at its scale) and its extent: ``q_min``/``q_max`` (or bin
        indices ``lo``/``hi``) for profiles, pixel ``y0, y1, x0, x1`` (end exclusive) for
        frames.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.io import open_saxs
    >>> from spotkit.sim import simulate_saxs_series
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.h5"
    >>> truth = simulate_saxs_series(path, n_frames=12, onset_frame=8)
    >>> feats = frame_features(open_saxs(path), warmup=5)
    >>> feats["difference"].sizes["frame"]
    12
    >>> sorted(feats.data_vars)  # feats["difference"].plot() draws one in JupyterLab
    ['difference', 'ssim', 'unique_count']
    """
    s = as_series(series, sigma=sigma)
    table, _, engine = _compute(s, features=features, mask=mask, warmup=warmup, smooth=smooth,
                                bin=bin, bands=bands)
    return _to_dataset(table, s, engine.features, engine)


def _compute(s, *, features, mask, warmup, smooth, bin, keep_coarse=False, bands="auto"):
    if s.n < warmup:
        raise ValueError(f"the series has {s.n} frames, fewer than warmup={warmup}")
    engine = _Engine(kind=s.kind, shape=s.shape, mask=mask, warmup=warmup, smooth=smooth,
                     bin=bin, features=features, bands=bands)
    table = {f: None if f in BAND_FEATURES else np.empty(s.n) for f in engine.features}
    coarse = [] if keep_coarse else None
    for k in range(s.n):
        for idx, vals, vec, _ in engine.push(s.item(k), s.sigma_item(k)):
            for f in engine.features:
                if table[f] is None:
                    table[f] = np.empty((s.n, len(vals[f])))
                table[f][idx] = vals[f]
            if coarse is not None:
                coarse.append(vec)
    logger.debug("computed %s for %d %s", engine.features, s.n, s.kind)
    return table, (np.stack(coarse) if coarse is not None else None), engine


def _to_dataset(table, s, names, engine=None):
    import xarray as xr

    data, coords = {}, {s.time_dim: s.time}
    for f in names:
        if f in BAND_FEATURES:
            data[f] = ((s.time_dim, "band"), table[f])
            coords.update(band_coords(engine, s))
        else:
            data[f] = ((s.time_dim,), table[f])
    ds = xr.Dataset(data, coords=coords)
    ds.attrs["kind"] = s.kind
    return ds
