"""Per-frame change measures: unique integer values, SSIM, the noise-normalised change map."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ._input import check_frame, check_mask

if TYPE_CHECKING:
    import xarray as xr

logger = logging.getLogger(__name__)




__all__ = ["change_map", "structural_similarity", "unique_count"]

_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def unique_count(frame: npt.ArrayLike, *, mask: npt.ArrayLike | None = None) -> int:
    """Number of distinct integer values among the valid pixels of a frame.

    DEDUCE (Ushizima et al.) found that this simple count follows the temporal onset of
    change in scattering series, where the frame mean and median do not. Negative values
    (Pilatus module gaps hold -1) and ``mask`` pixels are ignored; floats are rounded to
    integers. Counts are tallied with ``np.bincount`` over the value range (linear time),
    falling back to ``np.unique`` when the range is much larger than the frame.

    Parameters
    ----------
    frame : array_like
        A detector frame (any shape), integer counts or floats.
    mask : array_like of bool, optional
        True where pixels are invalid; same shape as ``frame``.

    Returns
    -------
    int
        The number of distinct values ``>= 0`` among the valid pixels.

    Examples
    --------
    >>> unique_count(np.array([[0, 1, 1], [5, -1, 5]]))
    3
    """
    a = np.asarray(frame)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError("the frame contains NaN or infinite values; mask them instead")
        a = np.rint(a).astype(np.int64)
    elif a.dtype.kind not in "iub":
        raise TypeError(f"frame must hold integers or floats, got dtype {a.dtype}")
    m = None
    if mask is not None:
        m = check_mask(mask, a.shape).ravel()
        m = np.flatnonzero(m) if m.any() else None
    return _count_unique(a.ravel(), masked=m)


def _count_unique(v, *, buf=None, masked=None) -> int:
    """Distinct values >= 0 of the 1-D integer array ``v`` (``masked``: indices to ignore)."""
    if v.size == 0:
        return 0
    hi = int(v.max())
    if hi < 0:
        return 0
    if hi > 4 * v.size + 65_536:  # sparse range (hot pixels): sort instead
        if masked is not None:
            v = np.delete(v, masked)
        return int(np.unique(v[v >= 0]).size)
    if buf is None:
        buf = np.empty(v.size, dtype=np.intp)
    np.add(v, 1, out=buf, casting="unsafe")
    if int(v.min()) < -1:
        np.maximum(buf, 0, out=buf)  # every negative value goes to bin 0
    if masked is not None:
        buf[masked] = 0
    return int(np.count_nonzero(np.bincount(buf)[1:]))


def structural_similarity(a: npt.ArrayLike, b: npt.ArrayLike, *, sigma: float = 1.5,
                          mask: npt.ArrayLike | None = None,
                          data_range: float | None = None) -> float:
    """Mean structural similarity (SSIM) of two images with a Gaussian window.

    Wang et al. (2004): ``SSIM = (2 mu_a mu_b + C1)(2 cov_ab + C2) /
    ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))`` with local statistics from
    ``scipy.ndimage.gaussian_filter`` (``K1 = 0.01``, ``K2 = 0.03``), averaged over the valid
    pixels. 1 means identical.

    Parameters
    ----------
    a, b : array_like, shape (ny, nx)
        The two images.
    sigma : float
        Gaussian window width in pixels.
    mask : array_like of bool, optional
        True where pixels are invalid (excluded from the mean, set to 0 before filtering).
    data_range : float, optional
        Dynamic range of the images; default ``max - min`` of ``a`` over valid pixels.

    Returns
    -------
    float

    Examples
    --------
    >>> img = np.arange(64.0).reshape(8, 8)
    >>> round(structural_similarity(img, img), 6)
    1.0
    """
    a = check_frame(a)
    b = check_frame(b, shape=a.shape)
    if a.ndim != 2:
        raise ValueError(f"structural_similarity needs 2-D images, got shape {a.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    valid = ~check_mask(mask, a.shape)
    if not valid.any():
        raise ValueError("every pixel is masked")
    a = np.where(valid, a, 0).astype(np.float64)
    b = np.where(valid, b, 0).astype(np.float64)
    if data_range is None:
        data_range = float(a[valid].max() - a[valid].min()) or 1.0
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    return float(_ssim_map(a, b, sigma, data_range)[valid].mean())


def _ssim_map(a, b, sigma, data_range):
    f = ndimage.gaussian_filter
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    mu_a, mu_b = f(a, sigma), f(b, sigma)
    va = f(a * a, sigma) - mu_a * mu_a
    vb = f(b * b, sigma) - mu_b * mu_b
    cov = f(a * b, sigma) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a * mu_a + mu_b * mu_b + c1) * (va + vb + c2)
    )


def _noise_factor(smooth: float, ndim: int) -> float:
    """Standard deviation of unit white noise after a Gaussian filter of width ``smooth``."""
    if smooth <= 0:
        return 1.0
    return (2.0 * math.sqrt(math.pi) * smooth) ** (-ndim / 2.0)


def change_map(frame: npt.ArrayLike, reference: npt.ArrayLike, *, smooth: float = 2.0,
               mask: npt.ArrayLike | None = None, sigma: npt.ArrayLike | None = None,
               reference_sigma: npt.ArrayLike | None = None,
               coords: Mapping[str, Any] | None = None) -> xr.DataArray:
    """Where a frame (or an I(q) profile) differs from a reference, in units of the noise.

    For detector frames the difference is normalised by the Poisson noise
    ``sqrt(max(reference, 1))``, smoothed with a Gaussian of width ``smooth`` pixels (masked
    pixels excluded) and divided by the noise left after smoothing, so that an unchanged
    region reads about N(0, 1) and a change of ``k`` standard deviations stands out as
    ``|map| >> 3``. For 1-D profiles the difference is divided by
    ``sqrt(sigma^2 + reference_sigma^2)`` (the standard deviation across nothing else is
    assumed), and smoothed along q only if ``smooth > 0``.

    Parameters
    ----------
    frame : array_like, shape (ny, nx) or (nq,)
        Frame (counts) or profile.
    reference : array_like
        Same shape: e.g. the mean of frames before the change.
    smooth : float
        Gaussian sigma in pixels (frames) or q bins (profiles); 0 for none.
    mask : array_like of bool, optional
        True where invalid; negative reference pixels (gaps) are always invalid.
    sigma, reference_sigma : array_like, optional
        Errors of a profile and of its reference (required for profiles).
    coords : dict, optional
        Coordinates for the output dims (``{"q": q}`` or ``{"y": ..., "x": ...}``).

    Returns
    -------
    xarray.DataArray
        Dims ``(y, x)`` or ``(q,)``; NaN on invalid pixels.

    Examples
    --------
    >>> ref = np.full((32, 32), 100.0)
    >>> frame = ref.copy(); frame[10:14, 10:14] += 40
    >>> m = change_map(frame, ref)
    >>> bool(m[12, 12] > 5 and abs(float(m[28, 28])) < 1)
    True
    """
    import xarray as xr

    f = check_frame(frame).astype(np.float64)
    ref = check_frame(reference, shape=f.shape).astype(np.float64)
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    valid = ~check_mask(mask, f.shape) & (ref >= 0) & (f >= 0 if f.ndim == 2 else True)
    if f.ndim == 2:
        # Poisson variance from the smoothed reference: a noisy reference in the denominator
        # would bias the map upwards where counts are low
        var = np.maximum(_smooth(np.where(valid, ref, 0.0), valid.astype(np.float64),
                                 max(smooth, 1.0)), 1.0)
        dims: tuple[str, ...] = ("y", "x")
    else:
        if sigma is None:
            raise ValueError("profiles need sigma (their errors) to be normalised")
        s = check_frame(sigma, shape=f.shape).astype(np.float64)
        rs = (np.zeros_like(s) if reference_sigma is None
              else check_frame(reference_sigma, shape=f.shape).astype(np.float64))
        var = s**2 + rs**2
        valid &= var > 0
        var = np.where(var > 0, var, 1.0)
        dims = ("q",)
    r = np.where(valid, (f - ref) / np.sqrt(var), 0.0)
    z = _smooth(r, valid.astype(np.float64), smooth) / _noise_factor(smooth, f.ndim)
    z = np.where(valid, z, np.nan)
    return xr.DataArray(z, dims=dims, coords=coords or {}, name="change",
                        attrs={"units": "noise standard deviations", "smooth": smooth})


def _smooth(r, validf, smooth, norm=None):
    if smooth <= 0:
        return r
    if norm is None:
        norm = ndimage.gaussian_filter(validf, smooth)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ndimage.gaussian_filter(r * validf, smooth) / norm
    return np.where(validf > 0, out, 0.0)
