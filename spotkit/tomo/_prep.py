"""Pre-processing: flat/dark normalisation, minus-log, zingers, binning, masks, phase.

All functions take and return numpy arrays (float32 unless stated); :func:`downsample` and
:func:`circular_mask` also accept dask arrays and stay lazy.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft
from scipy import ndimage

logger = logging.getLogger(__name__)

__all__ = [
    "circular_mask",
    "downsample",
    "minus_log",
    "normalize",
    "remove_zingers",
    "retrieve_phase",
]

FLAT_AVERAGES = ("mean", "median")
ZINGER_AXES = ("angle", "frame")
_HC_KEV_CM = 12.398419843320026e-8  # h c in keV * cm: wavelength_cm = _HC_KEV_CM / energy_kev


def normalize(
    proj, flats, darks, *, floor: float = 1e-6, flat_average: str = "median", out=None
) -> np.ndarray:
    """Flat- and dark-field correct projections.

    The flats and darks are averaged over their first axis (by default with a median, robust
    against zingers in single frames), then ``(proj - dark) / (flat - dark)``.

    Parameters
    ----------
    proj : array_like, shape (n_angles, n_rows, n_cols)
        Raw projections (any numeric dtype).
    flats, darks : array_like, shape (n, n_rows, n_cols) or (n_rows, n_cols)
        Open-beam and dark-current frames.
    floor : float
        Smallest allowed value of ``flat - dark``; pixels at or below it (dead pixels) give
        a transmission of 1 instead of a division by zero.
    flat_average : {"median", "mean"}
        How the flat and dark frames are averaged: the median rejects zingers and outliers
        in single frames (needs 3 or more frames to help); the mean has less noise.
    out : ndarray, optional
        Float32 array to write into.

    Returns
    -------
    ndarray of float32
        Transmission, nominally in (0, 1].

    Raises
    ------
    ValueError
        If the frame shapes of ``flats`` or ``darks`` differ from those of ``proj``, or
        ``flat_average`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> proj = np.full((2, 3, 4), 600.0); flats = np.full((5, 3, 4), 1100.0)
    >>> darks = np.full((5, 3, 4), 100.0)
    >>> float(normalize(proj, flats, darks)[0, 0, 0])
    0.5
    """
    if flat_average not in FLAT_AVERAGES:
        raise ValueError(
            f"unknown flat_average {flat_average!r}; choose one of {list(FLAT_AVERAGES)}"
        )
    proj = np.asarray(proj)
    if proj.ndim != 3:
        raise ValueError(f"proj must be 3-D [angles, rows, columns], got shape {proj.shape}")
    flat = _average(flats, "flats", proj.shape[1:], flat_average)
    dark = _average(darks, "darks", proj.shape[1:], flat_average)
    denom = flat - dark
    dead = denom <= floor
    denom[dead] = 1.0
    if out is None:
        out = np.empty(proj.shape, dtype=np.float32)
    np.subtract(proj, dark, out=out, dtype=np.float32, casting="unsafe")
    np.divide(out, denom, out=out)
    out[:, dead] = 1.0
    return out


def _average(frames, name: str, frame_shape: tuple[int, ...], how: str) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[1:] != frame_shape:
        raise ValueError(
            f"{name} have frame shape {frames.shape[1:]} but projections have {frame_shape}; "
            f"use {name} recorded with the same detector region of interest"
        )
    if frames.shape[0] == 0:
        raise ValueError(f"{name} is empty; at least one frame is needed")
    if how == "mean":
        return frames.mean(axis=0, dtype=np.float64).astype(np.float32)
    return np.median(frames, axis=0).astype(np.float32)


def minus_log(trans, *, floor: float = 1e-4, out=None) -> np.ndarray:
    """Turn transmission into line integrals, ``-log(max(trans, floor))``.

    Parameters
    ----------
    trans : array_like
        Transmission from :func:`normalize`.
    floor : float
        Values below it (noise, dead pixels) are clamped before the logarithm, so the
        result is finite.
    out : ndarray, optional
        Array to write into (may be ``trans`` itself).

    Returns
    -------
    ndarray of float32

    Examples
    --------
    >>> import numpy as np
    >>> [round(float(v), 2) for v in minus_log(np.array([1.0, np.exp(-2.0), 0.0]))]
    [-0.0, 2.0, 9.21]
    """
    if floor <= 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    trans = np.asarray(trans, dtype=np.float32)
    out = np.maximum(trans, np.float32(floor), out=out)
    np.log(out, out=out)
    np.negative(out, out=out)
    return out


def remove_zingers(
    proj, *, threshold: float = 0.2, size: int = 3, along: str = "frame"
) -> np.ndarray:
    """Replace zingers (bright single-pixel outliers) by the local median.

    A pixel is a zinger when it exceeds the median of its neighbourhood by more than
    ``threshold`` times that median's magnitude (a relative threshold, so it suits raw counts
    and transmissions; apply it before :func:`minus_log`).

    Parameters
    ----------
    proj : array_like, shape (n_frames, n_rows, n_cols) or (n_rows, n_cols)
        Raw frames (projections, flats or darks) or transmissions.
    threshold : float
        Relative excess over the local median that marks a zinger (> 0).
    size : int
        Width of the median filter (odd, >= 3).
    along : {"frame", "angle"}
        ``"frame"``: median over a ``size x size`` neighbourhood in each frame;
        ``"angle"``: median over ``size`` consecutive frames at the same pixel (keeps sharp
        in-frame edges; needs 3-D input).

    Returns
    -------
    ndarray of float32
        Same shape; zingers replaced, everything else unchanged.

    Raises
    ------
    ValueError
        For a bad shape, ``size``, ``threshold`` or ``along``.

    Examples
    --------
    >>> import numpy as np
    >>> frames = np.full((3, 5, 5), 1000.0); frames[1, 2, 2] = 9000.0
    >>> float(remove_zingers(frames)[1, 2, 2])
    1000.0
    """
    if along not in ZINGER_AXES:
        raise ValueError(f"unknown along {along!r}; choose one of {list(ZINGER_AXES)}")
    if not (isinstance(size, int | np.integer) and size >= 3 and size % 2 == 1):
        raise ValueError(f"size must be an odd integer >= 3, got {size!r}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    arr = np.asarray(proj, dtype=np.float32)
    if arr.ndim not in (2, 3) or (along == "angle" and arr.ndim != 3):
        raise ValueError(
            f"proj must be 3-D [frames, rows, cols] (or 2-D with along='frame'), "
            f"got shape {arr.shape}"
        )
    footprint: tuple[int, ...]
    if along == "angle":
        footprint = (size, 1, 1)
    else:
        footprint = (1, size, size) if arr.ndim == 3 else (size, size)
    med = ndimage.median_filter(arr, size=footprint, mode="reflect")
    bad = (arr - med) > threshold * np.abs(med)
    logger.debug("remove_zingers: %d pixels replaced", int(bad.sum()))
    return np.where(bad, med, arr)


def downsample(arr, *, factor=2, axis=-1):
    """Bin an array by block means along one or more axes; the remainder is trimmed.

    Parameters
    ----------
    arr : array_like or dask.array.Array
        Any shape. A dask array stays lazy (:func:`dask.array.coarsen`).
    factor : int or sequence of int
        Block size along each axis in ``axis`` (>= 1).
    axis : int or sequence of int
        Axes to bin, e.g. ``(1, 2)`` for 2x2 binning of projections ``[angles, rows, cols]``.

    Returns
    -------
    ndarray
        ``shape[a] // factor`` along each binned axis; float64 for float64 input, float32
        otherwise.

    Raises
    ------
    ValueError
        If an axis is out of range or repeated, a factor is < 1 or larger than the axis, or
        ``factor`` and ``axis`` differ in length.

    Examples
    --------
    >>> import numpy as np
    >>> downsample(np.arange(10.0), factor=3).tolist()
    [1.0, 4.0, 7.0]
    >>> downsample(np.ones((4, 6, 8)), factor=2, axis=(1, 2)).shape
    (4, 3, 4)
    """
    is_dask = hasattr(arr, "dask") and hasattr(arr, "chunks")
    if not is_dask:
        arr = np.asarray(arr)
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    factors = (factor,) * len(axes) if np.isscalar(factor) else tuple(factor)
    if len(factors) != len(axes):
        raise ValueError(f"factor {factor!r} and axis {axis!r} differ in length")
    if not all(isinstance(a, int | np.integer) and -arr.ndim <= a < arr.ndim for a in axes):
        raise ValueError(f"axis {axis!r} out of range for an array with {arr.ndim} dimensions")
    axes = tuple(int(a) % arr.ndim for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis {axis!r} repeats an axis")
    for a, f in zip(axes, factors, strict=True):
        if not (int(f) == f and 1 <= f <= arr.shape[a]):
            raise ValueError(
                f"factor {f!r} for axis {a} must be an integer in [1, {arr.shape[a]}]"
            )
    dtype = np.float64 if arr.dtype == np.float64 else np.float32
    if is_dask:
        import dask.array as da

        return da.coarsen(
            np.mean, arr.astype(dtype), {a: int(f) for a, f in zip(axes, factors, strict=True)},
            trim_excess=True,
        )
    index = [slice(None)] * arr.ndim
    for a, f in zip(axes, factors, strict=True):
        index[a] = slice(0, (arr.shape[a] // int(f)) * int(f))
    out = arr[tuple(index)].astype(dtype, copy=False)
    for a, f in sorted(zip(axes, factors, strict=True), reverse=True):
        shape = (*out.shape[:a], out.shape[a] // int(f), int(f), *out.shape[a + 1 :])
        out = out.reshape(shape).mean(axis=a + 1, dtype=np.float64).astype(dtype)
    return out


def circular_mask(images, *, ratio: float = 1.0, value: float = 0.0):
    """Set pixels outside a centred circle to ``value``.

    The circle is centred at ``((ny - 1) / 2, (nx - 1) / 2)`` (the rotation axis of a
    reconstruction) with radius ``ratio * min(ny, nx) / 2``; a pixel is kept when its centre
    lies inside it.

    Parameters
    ----------
    images : array_like or dask.array.Array, shape (..., ny, nx)
        One image or a stack; a dask array stays lazy.
    ratio : float
        Radius as a fraction of half the smaller image side (0 < ratio <= 1.5).
    value : float
        Value given to the pixels outside.

    Returns
    -------
    ndarray
        A new array of the same shape (dtype of ``images``, or float for integer input with a
        fractional ``value``).

    Examples
    --------
    >>> import numpy as np
    >>> circular_mask(np.ones((5, 5)))[0].tolist()
    [0.0, 1.0, 1.0, 1.0, 0.0]
    """
    is_dask = hasattr(images, "dask") and hasattr(images, "chunks")
    if not is_dask:
        images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"images must have at least 2 dimensions, got shape {images.shape}")
    if not 0 < ratio <= 1.5:
        raise ValueError(f"ratio must be in (0, 1.5], got {ratio}")
    ny, nx = images.shape[-2:]
    y = np.arange(ny) - (ny - 1) / 2.0
    x = np.arange(nx) - (nx - 1) / 2.0
    radius = ratio * min(ny, nx) / 2.0
    inside = (y[:, None] ** 2 + x[None, :] ** 2) <= radius**2
    if is_dask:
        import dask.array as da

        return da.where(inside, images, value)
    return np.where(inside, images, np.asarray(value).astype(np.result_type(images, value)))


def retrieve_phase(
    proj,
    *,
    pixel_size_cm: float,
    distance_cm: float,
    energy_kev: float,
    delta_beta: float = 100.0,
    pad: bool = True,
) -> np.ndarray:
    """Single-material phase retrieval (Paganin et al., J. Microsc. 206, 33, 2002).

    Each normalised projection ``T = I / I0`` is low-pass filtered,
    ``F^-1[ F[T] / (1 + π λ z (δ/β) |f|²) ]``, with the wavelength ``λ``, the
    sample-detector distance ``z`` and the spatial frequency ``f`` in cycles per cm. The result
    is a transmission again: ``minus_log`` of it is ``μ t`` (attenuation coefficient times
    projected thickness), ready for reconstruction, now with the edge-enhancement fringes
    removed and much less noise.

    Parameters
    ----------
    proj : array_like, shape (n_angles, n_rows, n_cols) or (n_rows, n_cols)
        Flat-field corrected transmission (after :func:`normalize`, before
        :func:`minus_log`).
    pixel_size_cm : float
        Effective detector pixel size in cm (e.g. 0.65 µm = 6.5e-5 cm).
    distance_cm : float
        Sample-to-detector propagation distance in cm.
    energy_kev : float
        Photon energy in keV (``λ = 12.398 / E`` Å).
    delta_beta : float
        Ratio ``δ / β`` of the refractive index decrement to the absorption index of the
        material (about 100 to 1000 for soft matter at hard X-ray energies).
    pad : bool
        Pad each frame to twice its size with edge values to avoid wrap-around.

    Returns
    -------
    ndarray of float32
        Filtered transmission, same shape.

    Raises
    ------
    ValueError
        For a physical parameter <= 0, a bad shape, or NaN in the data.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.full((2, 16, 16), 0.5)
    >>> out = retrieve_phase(t, pixel_size_cm=1e-4, distance_cm=5, energy_kev=25)
    >>> round(float(out[0, 8, 8]), 4)
    0.5
    """
    for name, v in (("pixel_size_cm", pixel_size_cm), ("distance_cm", distance_cm),
                    ("energy_kev", energy_kev), ("delta_beta", delta_beta)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    arr = np.asarray(proj, dtype=np.float32)
    single = arr.ndim == 2
    if single:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"proj must be 3-D [angles, rows, cols] or 2-D [rows, cols], got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("proj contains NaN or infinite values; normalise with a floor first")
    ny, nx = arr.shape[1:]
    if pad:
        py = scipy.fft.next_fast_len(2 * ny, real=True)
        px = scipy.fft.next_fast_len(2 * nx, real=True)
        y0, x0 = (py - ny) // 2, (px - nx) // 2
        work = np.pad(arr, ((0, 0), (y0, py - ny - y0), (x0, px - nx - x0)), mode="edge")
    else:
        py, px, y0, x0 = ny, nx, 0, 0
        work = arr
    fy = scipy.fft.fftfreq(py, d=pixel_size_cm)
    fx = scipy.fft.rfftfreq(px, d=pixel_size_cm)
    wavelength_cm = _HC_KEV_CM / energy_kev
    filt = 1.0 / (
        1.0 + np.pi * wavelength_cm * distance_cm * delta_beta
        * (fy[:, None] ** 2 + fx[None, :] ** 2)
    )
    out = scipy.fft.irfft2(scipy.fft.rfft2(work) * filt, s=(py, px))
    out = out[:, y0 : y0 + ny, x0 : x0 + nx].astype(np.float32)
    return out[0] if single else out
