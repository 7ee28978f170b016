"""Product summaries for the keep-up quality checks: small numbers that describe a product.

A summary is what the checks compare with references (:mod:`spotkit.monitor._quality_tests`)
and what is stored with the product (:mod:`spotkit.monitor._quality`): a few kB of JSON.

* A reconstructed volume (``tomo/recon``, ``tomo/slices``): the histogram of its values over a
  robust range (0.5-99.5 percentiles) and its quantile function (for the Wasserstein
  distance), the ring metric, the level near the edge of the field of view, and, when the
  volume records the centre of rotation it used and its raw scan is at hand, the
  centre-quality metric: that centre minus the one :func:`spotkit.tomo.find_center` finds
  independently on the raw scan.
* I(q) (``saxs/iq``, ``saxs/reduced``): the mean curve over frames on the product's q grid
  (resampled to at most :data:`IQ_POINTS` log-spaced points), its relative error and its
  integrated intensity.
* A raw tomography scan (``tomo/raw``): dark and flat levels and the fraction of dead
  pixels (cheap: flats and darks only); raw SAXS frames (``saxs/raw``): mean counts and
  the fraction of dead pixels (a sample of at most 8 frames).

Everything here is arrays in, numbers out; reading the product's files happens in
:func:`summarize_dataset`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "FAMILIES",
    "IQ_POINTS",
    "QUANTILE_LEVELS",
    "ProductSummary",
    "ring_metric",
    "summarize_iq",
    "summarize_raw_saxs",
    "summarize_raw_tomo",
    "summarize_volume",
]

#: the families of products a summary describes, by the dataset kinds that belong to them
FAMILIES: dict[str, tuple[str, ...]] = {
    "volume": ("tomo/recon", "tomo/slices"),
    "iq": ("saxs/iq", "saxs/reduced"),
    "tomo_raw": ("tomo/raw",),
    "saxs_raw": ("saxs/raw",),
}
#: quantile levels stored for a volume's value distribution (the robust range, 0.5 - 99.5 %)
QUANTILE_LEVELS = tuple(round(0.005 + 0.01 * i, 3) for i in range(100))
#: most points of a summarised I(q) curve
IQ_POINTS = 200
_HIST_BINS = 64
_SUMMARY_VERSION = 1


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


@dataclasses.dataclass(frozen=True)
class ProductSummary:
    """A product's summary: a few numbers and short curves (kB, JSON).

    Attributes
    ----------
    family : str
        ``"volume"``, ``"iq"`` or ``"tomo_raw"`` (see :data:`FAMILIES`).
    scalars : mapping of str to float or None
        Single numbers compared one by one (``ring``, ``edge_level``, ``center_offset``,
        ``integral``, ``dead_fraction``...); ``None`` where not measurable.
    curves : mapping of str to tuple of float
        Short curves: ``quantiles`` (volume), ``q``, ``intensity``, ``rel_sigma`` (I(q)).
    detail : mapping
        What else is worth showing (histogram counts and edges, shapes, how the centre
        was found, notes on what could not be measured).

    Examples
    --------
    >>> s = ProductSummary("iq", {"integral": 2.0}, {"q": (1.0, 2.0), "intensity": (2.0, 1.0)})
    >>> ProductSummary.from_dict(s.to_dict()) == s
    True
    >>> s.nbytes < 1000
    True
    """

    family: str
    scalars: Mapping[str, float | None]
    curves: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    detail: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown summary family {self.family!r}; "
                             f"choose one of {sorted(FAMILIES)}")
        object.__setattr__(self, "scalars", {k: _finite(v) for k, v in self.scalars.items()})
        object.__setattr__(self, "curves", {k: tuple(float(x) for x in v)
                                            for k, v in self.curves.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values (NaN and infinities become ``None``)."""
        return {"version": _SUMMARY_VERSION, "family": self.family,
                "scalars": dict(self.scalars),
                "curves": {k: [_finite(x) for x in v] for k, v in self.curves.items()},
                "detail": json.loads(json.dumps(dict(self.detail), default=_jsonable))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProductSummary:
        """The summary back from :meth:`to_dict` (or its JSON)."""
        try:
            return cls(data["family"], dict(data["scalars"]),
                       {k: tuple(np.nan if x is None else x for x in v)
                        for k, v in data.get("curves", {}).items()},
                       dict(data.get("detail", {})))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a product summary: {exc!r} in {str(data)[:200]}") from exc

    @property
    def nbytes(self) -> int:
        """Size of the summary as JSON, in bytes."""
        return len(json.dumps(self.to_dict()).encode())


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# -- volumes ----------------------------------------------------------------------------------


def _polar_bins(ny: int, nx: int, n_sectors: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per pixel: 1-px radius bin about the image centre and the azimuthal sector; R."""
    y, x = np.indices((ny, nx), dtype=np.float64)
    y -= (ny - 1) / 2.0
    x -= (nx - 1) / 2.0
    r = np.hypot(x, y)
    radius = int(0.95 * min(ny, nx) / 2.0)
    rbin = np.floor(r + 0.5).astype(np.int64)
    sector = np.floor((np.arctan2(y, x) + np.pi) / (2 * np.pi) * n_sectors).astype(np.int64)
    sector %= n_sectors
    return rbin, sector, radius


def ring_metric(image, *, n_sectors: int = 16, window: int = 5, min_radius: int = 3) -> float:
    """How strong the strongest ring artefact of one reconstructed slice is.

    The slice is split in 1-pixel radial bins about its centre (taken as the rotation axis)
    and ``n_sectors`` azimuthal sectors. In each sector the radial profile of the mean is
    high-passed (minus its running median over ``window`` bins); the median over the
    sectors of those profiles is taken: a ring is at every azimuth, so it survives the
    median, while the edge of a feature (an inclusion) lies in a few sectors only, so it
    does not. The metric is the largest absolute value of that median profile over radii
    ``min_radius`` to 95 % of the inscribed circle, divided by the slice's contrast (its
    99th minus 1st percentile inside that circle). Non-finite pixels count as the median.

    The value is relative, for comparing slices of one configuration (as the quality
    checks do against their references), not an absolute scale: noise alone gives a floor
    that grows with the noise and with the number of radii (~0.04 for a 64 x 64 slice of
    5 % noise, ~0.09 at 256 x 256), and a ring must stand clearly above it (0.3 of the
    mean, 1 px wide: ~0.6).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        One reconstructed slice, the rotation axis in its middle.
    n_sectors : int
        Azimuthal sectors.
    window : int
        Running-median window (radial bins): rings up to about half of it wide count in
        full (1-2 px for the default 5); wider ones are mostly taken as background.
    min_radius : int
        Smallest radius looked at (the sectors hold too few pixels nearer the axis).

    Returns
    -------
    float
        Ring amplitude over contrast (0 for a flat slice).

    Raises
    ------
    ValueError
        If ``image`` is not 2-D or is smaller than 8 x 8 pixels.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(1.0, 0.05, (64, 64))
    >>> yy, xx = np.indices(img.shape) - 31.5
    >>> ringed = img + 0.3 * (np.abs(np.hypot(yy, xx) - 12) < 0.5)
    >>> ring_metric(ringed) > 5 * ring_metric(img)
    True
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 8:
        raise ValueError(f"image must be a 2-D slice of at least 8 x 8 pixels, got {img.shape}")
    rbin, sector, radius = _polar_bins(img.shape[0], img.shape[1], n_sectors)
    return float(_ring_amplitudes(img[None], rbin, sector, radius, n_sectors, window,
                                  min_radius)[0])


def _ring_amplitudes(stack: np.ndarray, rbin, sector, radius, n_sectors, window,
                     min_radius) -> np.ndarray:
    inside = rbin <= radius
    index = (rbin * n_sectors + sector)[inside]
    size = (radius + 1) * n_sectors
    counts = np.bincount(index, minlength=size).reshape(radius + 1, n_sectors)
    out = np.empty(stack.shape[0])
    for k, img in enumerate(stack):
        values = img[inside]
        finite = np.isfinite(values)
        if not finite.all():
            values = np.where(finite, values, np.nanmedian(values))
        sums = np.bincount(index, weights=values, minlength=size).reshape(radius + 1, n_sectors)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / counts
        # empty sectors near the axis: the radius' mean over the other sectors
        fill = (sums.sum(axis=1, keepdims=True)
                / np.maximum(counts.sum(axis=1, keepdims=True), 1))
        mean = np.where(counts > 0, mean, fill)
        high = mean - ndimage.median_filter(mean, size=(window, 1), mode="nearest")
        profile = np.median(high, axis=1)[min_radius:]
        lo, hi = np.percentile(values, [1, 99])
        contrast = hi - lo if hi > lo else 1.0
        out[k] = float(np.max(np.abs(profile))) / contrast if profile.size else 0.0
    return out


def summarize_volume(volume, *, center_used: float | None = None,
                     center_found: Any = None, max_slices: int = 16,
                     n_sectors: int = 16) -> ProductSummary:
    """Summarise a reconstructed volume (or a stack of slices).

    Up to ``max_slices`` evenly spaced slices are read; only the pixels inside the circle
    inscribed in each slice count (the region every projection sees).

    Scalars:

    * ``ring``: median over the slices of :func:`ring_metric`; ``ring_max``: its maximum
      (a defect in a few detector rows rings in a few slices only);
    * ``edge_level``: median of the values in the annulus at 85-95 % of the circle's
      radius, in units of the contrast (99th - 1st percentile): air around most samples,
      so a gain or offset error moves it;
    * ``median``, ``iqr``: of the values;
    * ``center_offset``: ``center_used - center_found`` (pixels) when both are given:
      the centre the reconstruction used against an independent estimate on the raw scan.

    Parameters
    ----------
    volume : array_like, shape (n_slices, ny, nx) or (ny, nx)
        The reconstruction (a dask or h5py array is read slice by slice).
    center_used : float, optional
        Centre of rotation the reconstruction used (tomopy's convention).
    center_found : float or CenterEstimate, optional
        An independent estimate on the raw scan (:func:`spotkit.tomo.find_center`); its
        ``method``, ``disagreement`` and ``warnings`` go into ``detail`` when present.
    max_slices : int
        Slices looked at.
    n_sectors : int
        Azimuthal sectors of the ring metric.

    Returns
    -------
    ProductSummary
        Family ``"volume"``; ``curves["quantiles"]`` at :data:`QUANTILE_LEVELS`;
        ``detail["histogram"]`` (64 bins over the robust range).

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.random.default_rng(0).normal(1.0, 0.1, (4, 32, 32))
    >>> s = summarize_volume(vol, center_used=16.5, center_found=16.0)
    >>> s.family, s.scalars["center_offset"], len(s.curves["quantiles"])
    ('volume', 0.5, 100)
    """
    shape = tuple(int(n) for n in np.shape(volume))
    if len(shape) == 2:
        volume, shape = np.asarray(volume)[None], (1, *shape)
    if len(shape) != 3 or min(shape[1:]) < 8:
        raise ValueError(f"volume must be (slices, ny, nx) with slices of at least 8 x 8 "
                         f"pixels, got shape {shape}")
    if max_slices < 1:
        raise ValueError(f"max_slices must be >= 1, got {max_slices}")
    picks = np.unique(np.linspace(0, shape[0] - 1, min(max_slices, shape[0])).round()
                      .astype(int))
    selected = volume[picks.tolist()] if picks.size < shape[0] else volume
    if hasattr(selected, "compute"):  # dask: one synchronous read (no thread pool to start)
        selected = selected.compute(scheduler="synchronous")
    stack = np.asarray(selected, dtype=np.float64)
    rbin, sector, radius = _polar_bins(shape[1], shape[2], n_sectors)
    inside = rbin <= radius
    values = stack[:, inside].ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("the volume has no finite values inside the reconstruction circle")
    rings = _ring_amplitudes(stack, rbin, sector, radius, n_sectors, 5, 3)
    quantiles = np.quantile(values, QUANTILE_LEVELS)
    lo, hi = float(quantiles[0]), float(quantiles[-1])
    p1, p99 = np.percentile(values, [1, 99])
    contrast = float(p99 - p1) if p99 > p1 else 1.0
    annulus = (rbin >= 0.85 * radius) & (rbin <= radius)
    edge = stack[:, annulus]
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=_HIST_BINS,
                                 range=(lo, hi if hi > lo else lo + 1.0))
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    scalars: dict[str, float | None] = {
        "ring": float(np.median(rings)), "ring_max": float(np.max(rings)),
        "edge_level": float(np.nanmedian(edge)) / contrast, "median": float(q50),
        "iqr": float(q75 - q25), "center_offset": None,
    }
    detail: dict[str, Any] = {"shape": list(shape), "slices": picks.tolist(),
                              "contrast": contrast,
                              "histogram": {"counts": counts.tolist(),
                                            "edges": [float(e) for e in edges]}}
    if center_used is not None and center_found is not None:
        scalars["center_offset"] = float(center_used) - float(center_found)
        detail["center"] = {"used": float(center_used), "found": float(center_found),
                            "method": getattr(center_found, "method", None),
                            "disagreement": _finite(getattr(center_found, "disagreement",
                                                            None)),
                            "warnings": list(getattr(center_found, "warnings", ()))}
    elif center_used is None:
        detail["center"] = {"note": "the product records no centre of rotation"}
    else:
        detail["center"] = {"used": float(center_used),
                            "note": "no raw scan to find the centre on"}
    return ProductSummary("volume", scalars, {"quantiles": tuple(quantiles)}, detail)


# -- I(q) -------------------------------------------------------------------------------------


def summarize_iq(q, intensity, sigma=None, *, points: int = IQ_POINTS) -> ProductSummary:
    """Summarise I(q): the mean curve over frames on a q grid, and its integrated intensity.

    Parameters
    ----------
    q : array_like, shape (n_q,)
        The radial coordinate (any unit; references of the same configuration share it).
    intensity : array_like, shape (n_q,) or (n_frames, n_q)
        I(q), one curve or one per frame (averaged, NaN-aware).
    sigma : array_like, optional
        Its standard errors, same shape (Poisson); without them the frame-to-frame
        scatter is used when there are several frames.
    points : int
        Most points kept: a longer curve is averaged onto ``points`` log-spaced bins.

    Returns
    -------
    ProductSummary
        Family ``"iq"``: ``curves["q"]``, ``["intensity"]``, ``["rel_sigma"]`` (sigma over
        intensity, NaN when unknown); ``scalars["integral"]`` (trapezoid of I over q on
        the finite points), ``["n_finite"]``.

    Examples
    --------
    >>> import numpy as np
    >>> q = np.linspace(0.1, 2.0, 50)
    >>> s = summarize_iq(q, np.stack([1 / q, 1 / q]))
    >>> round(s.scalars["integral"], 2), len(s.curves["q"])
    (3.01, 50)
    """
    q = np.asarray(q, dtype=np.float64).ravel()
    inten = np.asarray(intensity, dtype=np.float64)
    if inten.ndim == 1:
        inten = inten[None]
    if inten.ndim != 2 or inten.shape[1] != q.size:
        raise ValueError(f"intensity must be (n_q,) or (n_frames, n_q) with n_q = {q.size} "
                         f"(the length of q), got shape {np.shape(intensity)}")
    if points < 4:
        raise ValueError(f"points must be >= 4, got {points}")
    n = np.sum(np.isfinite(inten), axis=0)
    # q bins with no finite value in any frame (masked) are expected: left out below
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "Degrees of freedom <= 0", RuntimeWarning)
        mean = np.nanmean(np.where(np.isfinite(inten), inten, np.nan), axis=0) \
            if inten.shape[0] > 1 else inten[0].copy()
        if sigma is not None:
            sig = np.asarray(sigma, dtype=np.float64).reshape(inten.shape)
            err = np.sqrt(np.nansum(sig**2, axis=0)) / np.maximum(n, 1)
        elif inten.shape[0] > 2:
            err = np.nanstd(inten, axis=0, ddof=1) / np.sqrt(np.maximum(n, 1))
        else:
            err = np.full(q.size, np.nan)
    good = np.isfinite(q) & np.isfinite(mean) & (n > 0)
    if good.sum() < 4:
        raise ValueError("I(q) has fewer than 4 finite points")
    qg, ig, eg = q[good], mean[good], err[good]
    order = np.argsort(qg)
    qg, ig, eg = qg[order], ig[order], eg[order]
    integral = float(np.trapezoid(ig, qg))
    if qg.size > points:
        if qg[0] > 0:
            edges = np.geomspace(qg[0], qg[-1] * (1 + 1e-12), points + 1)
        else:
            edges = np.linspace(qg[0], qg[-1] * (1 + 1e-12), points + 1)
        which = np.clip(np.searchsorted(edges, qg, side="right") - 1, 0, points - 1)
        cnt = np.bincount(which, minlength=points)
        keep = cnt > 0
        qg = (np.bincount(which, weights=qg, minlength=points) / np.maximum(cnt, 1))[keep]
        ig_b = (np.bincount(which, weights=ig, minlength=points) / np.maximum(cnt, 1))[keep]
        eg = (np.sqrt(np.bincount(which, weights=eg**2, minlength=points))
              / np.maximum(cnt, 1))[keep]
        ig = ig_b
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(eg / ig)
    return ProductSummary(
        "iq", {"integral": integral, "n_finite": float(good.sum())},
        {"q": tuple(qg), "intensity": tuple(ig), "rel_sigma": tuple(rel)},
        {"frames": int(inten.shape[0]), "n_q": int(q.size)})


# -- raw tomography scans ---------------------------------------------------------------------


def summarize_raw_tomo(flats, darks, *, dead_ratio: float = 0.2) -> ProductSummary:
    """Summarise a raw scan's flats and darks: levels and dead pixels.

    Parameters
    ----------
    flats, darks : array_like, shape (n, rows, cols) or (rows, cols)
        Open-beam and dark frames.
    dead_ratio : float
        A pixel whose flat minus dark is below this fraction of the local median (a 7 x 7
        neighbourhood: the beam profile is smooth) is dead.

    Returns
    -------
    ProductSummary
        Family ``"tomo_raw"``: scalars ``dark_level`` (median dark), ``flat_level`` (median
        flat minus dark), ``dead_fraction``, ``dark_noise`` (median over pixels of the
        darks' standard deviation, NaN with one dark).

    Examples
    --------
    >>> import numpy as np
    >>> flats = np.full((3, 16, 16), 1100.0); darks = np.full((3, 16, 16), 100.0)
    >>> flats[:, 0, :4] = 100.0
    >>> s = summarize_raw_tomo(flats, darks)
    >>> s.scalars["dead_fraction"], s.scalars["flat_level"]
    (0.015625, 1000.0)
    """
    f = np.asarray(flats, dtype=np.float64)
    d = np.asarray(darks, dtype=np.float64)
    f = f[None] if f.ndim == 2 else f
    d = d[None] if d.ndim == 2 else d
    if f.ndim != 3 or d.ndim != 3 or f.shape[1:] != d.shape[1:]:
        raise ValueError(f"flats {np.shape(flats)} and darks {np.shape(darks)} must be frames "
                         "of the same detector shape")
    if not 0 < dead_ratio < 1:
        raise ValueError(f"dead_ratio must be in (0, 1), got {dead_ratio}")
    flat = np.median(f, axis=0)
    dark = np.median(d, axis=0)
    signal = flat - dark
    local = ndimage.median_filter(signal, size=7, mode="nearest")
    dead = signal < dead_ratio * np.maximum(local, 1e-12)
    noise = float(np.median(np.std(d, axis=0, ddof=1))) if d.shape[0] > 1 else float("nan")
    return ProductSummary(
        "tomo_raw",
        {"dark_level": float(np.median(dark)), "flat_level": float(np.median(signal)),
         "dead_fraction": float(dead.mean()), "dark_noise": noise},
        {}, {"frame_shape": list(f.shape[1:]), "n_flats": int(f.shape[0]),
             "n_darks": int(d.shape[0])})


def summarize_raw_saxs(frames, *, min_counts: float = 20.0) -> ProductSummary:
    """Summarise raw area-detector frames: counts and dead pixels.

    A pixel is dead when it counted nothing in all the frames given while the median of
    its 5 x 5 neighbourhood counted at least ``min_counts`` (a live pixel then reads 0
    with probability below ``exp(-min_counts)``). Negative pixels (module gaps, masked
    by the detector) do not count.

    Parameters
    ----------
    frames : array_like, shape (n_frames, rows, cols) or (rows, cols)
        Counts (a few frames are enough: pass a sample of a long series).
    min_counts : float
        Counts a neighbourhood must have for a zero pixel in it to be called dead.

    Returns
    -------
    ProductSummary
        Family ``"saxs_raw"``: scalars ``dead_fraction`` (of the pixels where it can be
        told), ``mean_counts`` (per valid pixel and frame), ``testable_fraction`` (pixels
        where a dead one would be seen).

    Examples
    --------
    >>> import numpy as np
    >>> frames = np.random.default_rng(0).poisson(50.0, (3, 32, 32)).astype(float)
    >>> frames[:, [3, 10, 20, 25], [4, 12, 7, 30]] = 0  # 4 dead pixels
    >>> s = summarize_raw_saxs(frames)
    >>> s.scalars["dead_fraction"] * 1024, s.scalars["testable_fraction"]
    (4.0, 1.0)
    """
    arr = np.asarray(frames, dtype=np.float64)
    arr = arr[None] if arr.ndim == 2 else arr
    if arr.ndim != 3:
        raise ValueError(f"frames must be (n_frames, rows, cols), got shape {np.shape(frames)}")
    valid = np.all(arr >= 0, axis=0) & np.all(np.isfinite(arr), axis=0)
    total = np.where(valid, arr.sum(axis=0), 0.0)
    neighbours = ndimage.median_filter(np.where(valid, total, np.nan), size=5, mode="nearest")
    testable = valid & (np.nan_to_num(neighbours) >= min_counts)
    dead = testable & (total == 0)
    n_test = int(testable.sum())
    return ProductSummary(
        "saxs_raw",
        {"dead_fraction": float(dead.sum() / n_test) if n_test else None,
         "mean_counts": float(total[valid].mean() / arr.shape[0]) if valid.any() else None,
         "testable_fraction": float(n_test / max(int(valid.sum()), 1))},
        {}, {"frame_shape": list(arr.shape[1:]), "n_frames": int(arr.shape[0])})


def family_of(kind: str) -> str | None:
    """The summary family of a dataset kind, or None when spotkit has no summary for it."""
    for family, kinds in FAMILIES.items():
        if kind in kinds:
            return family
    return None


