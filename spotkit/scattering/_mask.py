"""Detector masks: gaps, beamstop, hot pixels, thresholds; combined, saved and loaded.

A mask is a boolean array of the frame shape, True where a pixel is invalid (pyFAI's
convention). Mask files (pyFAI-calib2's EDF or TIFF images, 1 on masked pixels) are read and
written by :func:`spotkit.io.load_mask` and :func:`spotkit.io.save_mask`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from spotkit.scattering._geometry import check_geometry

if TYPE_CHECKING:  # pyFAI has no type information: Any for the type checker
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

logger = logging.getLogger(__name__)

__all__ = [
    "beamstop_mask",
    "combine_masks",
    "gap_mask",
    "hot_pixel_mask",
    "mask_summary",
    "shadow_mask",
    "threshold_mask",
]



def _image2d(image, name="image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, cols), got shape {image.shape}")
    return image


def gap_mask(image: npt.ArrayLike, *, below: float = 0) -> np.ndarray:
    """Mask detector gaps and dead pixels, which photon-counting detectors mark as negative.

    Parameters
    ----------
    image : array_like, shape (rows, cols)
        A raw frame (Pilatus/Eiger gaps hold -1 or -2).
    below : float
        Pixels with values strictly below this are masked.

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> gap_mask(np.array([[-1, 5], [0, 3]]))
    array([[ True, False],
           [False, False]])
    """
    return _image2d(image) < below


def beamstop_mask(shape: tuple[int, ...], center: tuple[float, float], radius: float, *,
                  arm_width: float = 0.0,
                  arm_direction: str = "down") -> np.ndarray:
    """Mask a round beamstop and, optionally, the arm that holds it.

    Parameters
    ----------
    shape : (int, int)
        Frame shape ``(rows, cols)``.
    center : (float, float)
        Beamstop centre ``(row, col)`` in pixels (usually the direct beam).
    radius : float
        Disc radius in pixels.
    arm_width : float
        Full width of the arm in pixels (0: no arm).
    arm_direction : {"down", "up", "left", "right"}
        Where the arm goes from the disc to the detector edge ("down": increasing rows).

    Returns
    -------
    ndarray of bool

    Raises
    ------
    ValueError
        A bad parameter, or one that does not fit the detector: the mask would be empty
        (centre off the detector and nothing reaching it, radius too small to cover a
        pixel centre) or cover every pixel (a radius larger than the detector, often one
        given in micrometres). The message names the parameter and the detector shape.

    Examples
    --------
    >>> beamstop_mask((5, 5), (2, 2), 1).sum()
    np.int64(5)
    """
    directions = {"down", "up", "left", "right"}
    if arm_direction not in directions:
        raise ValueError(f"unknown arm_direction {arm_direction!r}; "
                         f"choose one of {sorted(directions)}")
    shape = _frame_shape(shape)
    try:
        r0, c0 = (float(v) for v in center)
    except (TypeError, ValueError):
        raise ValueError(f"center must be (row, col) in pixels, got {center!r}") from None
    if not (np.isfinite(r0) and np.isfinite(c0)):
        raise ValueError(f"center must be finite (row, col) in pixels, got {center!r}")
    for name, value in (("radius", radius), ("arm_width", arm_width)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number of pixels >= 0, got {value}")
    i = np.arange(shape[0])[:, None]
    j = np.arange(shape[1])[None, :]
    mask = (i - r0) ** 2 + (j - c0) ** 2 <= radius**2
    if arm_width > 0:
        half = arm_width / 2.0
        if arm_direction in ("down", "up"):
            side = (i >= r0) if arm_direction == "down" else (i <= r0)
            mask = mask | ((np.abs(j - c0) <= half) & side)
        else:
            side = (j >= c0) if arm_direction == "right" else (j <= c0)
            mask = mask | ((np.abs(i - r0) <= half) & side)
    where = f"the detector of shape {shape} (rows 0..{shape[0] - 1}, cols 0..{shape[1] - 1})"
    if mask.all():
        raise ValueError(
            f"beamstop_mask: radius {radius} px (arm_width {arm_width} px) around centre "
            f"({r0:g}, {c0:g}) masks every pixel of {where}; give the radius and arm width in "
            "pixels (not micrometres) of this detector")
    if not mask.any():
        inside = 0 <= r0 <= shape[0] - 1 and 0 <= c0 <= shape[1] - 1
        what = (f"radius {radius} px is too small to cover any pixel centre"
                if inside else f"center ({r0:g}, {c0:g}) is outside {where} and neither "
                f"the disc of radius {radius} px nor the arm reaches it")
        raise ValueError(
            f"beamstop_mask masks no pixel: {what}" + ("" if not inside else f" of {where}")
            + "; check center (row, col) against the frame shape and the radius in pixels")
    return mask


def _frame_shape(shape) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (rows, cols), got {shape!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"shape must be (rows, cols) with both >= 1, got {shape!r}")
    return rows, cols


def hot_pixel_mask(image: npt.ArrayLike, *, n_sigma: float = 8.0, size: int = 5,
                   min_counts: float = 10.0) -> np.ndarray:
    """Mask hot pixels: counts far above the median of their neighbourhood.

    A pixel is hot when ``image - median > n_sigma * sqrt(max(median, 1))`` (a Poisson
    outlier) and ``image - median > min_counts``. Pass the mean (or the sum) of a few dark or
    sample frames: a pixel hot in one frame only is a cosmic ray, not a hot pixel.

    Parameters
    ----------
    image : array_like, shape (rows, cols)
        Counts.
    n_sigma : float
        Threshold in Poisson standard deviations.
    size : int
        Side of the median window in pixels (odd).
    min_counts : float
        Minimum excess over the median.

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> img = np.full((9, 9), 100.0); img[4, 4] = 5000
    >>> np.argwhere(hot_pixel_mask(img)).tolist()
    [[4, 4]]
    """
    from scipy.ndimage import median_filter

    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd number >= 3, got {size}")
    if n_sigma <= 0:
        raise ValueError(f"n_sigma must be > 0, got {n_sigma}")
    image = _image2d(image).astype(np.float64)
    med = median_filter(image, size=size, mode="nearest")
    excess = image - med
    return (excess > n_sigma * np.sqrt(np.maximum(med, 1.0))) & (excess > min_counts)


def threshold_mask(image: npt.ArrayLike, *, low: float | None = None,
                   high: float | None = None) -> np.ndarray:
    """Mask pixels below ``low`` or above ``high`` (e.g. saturated or overflow values).

    Parameters
    ----------
    image : array_like, shape (rows, cols)
    low, high : float, optional
        Valid pixels satisfy ``low <= value <= high``; non-finite values are always masked.

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> threshold_mask(np.array([[0, 5, 2**20]]), high=1e6).tolist()
    [[False, False, True]]
    """
    image = _image2d(image)
    mask = ~np.isfinite(image) if image.dtype.kind == "f" else np.zeros(image.shape, bool)
    if low is not None:
        mask |= image < low
    if high is not None:
        mask |= image > high
    return mask


def combine_masks(*masks: npt.ArrayLike | None,
                  shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Combine masks: a pixel is invalid when any mask says so.

    Parameters
    ----------
    *masks : array_like of bool, or None
        Masks of one shape; ``None`` entries are skipped.
    shape : (int, int), optional
        Required shape (the frames'); also the shape of the result when no mask is given.

    Returns
    -------
    ndarray of bool

    Raises
    ------
    ValueError
        When the masks' shapes differ from each other or from ``shape``.

    Examples
    --------
    >>> combine_masks(np.eye(2, dtype=bool), np.zeros((2, 2), bool)).tolist()
    [[True, False], [False, True]]
    """
    given = [np.asarray(m, dtype=bool) for m in masks if m is not None]
    if shape is not None:
        shape = tuple(int(s) for s in tuple(shape)[-2:])
    elif given:
        shape = given[0].shape
    else:
        raise ValueError("combine_masks needs at least one mask or a shape")
    out = np.zeros(shape, bool)
    for k, m in enumerate(given):
        if m.shape != shape:
            raise ValueError(f"mask {k} has shape {m.shape}, but the frames are {shape}; "
                             "build every mask for the frame shape")
        out |= m
    return out


def mask_summary(mask: npt.ArrayLike | None) -> dict[str, Any]:
    """Number and fraction of masked pixels, for provenance.

    Examples
    --------
    >>> mask_summary(np.array([[True, False]]))
    {'shape': [1, 2], 'n_masked': 1, 'fraction': 0.5}
    """
    if mask is None:
        return {"shape": None, "n_masked": 0, "fraction": 0.0}
    mask = np.asarray(mask, bool)
    return {"shape": [int(s) for s in mask.shape], "n_masked": int(mask.sum()),
            "fraction": float(mask.mean()) if mask.size else 0.0}


def shadow_mask(image: npt.ArrayLike, integrator: AzimuthalIntegrator, *, fraction: float = 0.2,
                n_rings: int = 200) -> np.ndarray:
    """Mask pixels far darker than their ring: beamstop and its arm, dead pixels, gaps.

    Each pixel is compared with the median of the valid pixels at the same scattering angle
    (a ring of the detector); it is masked when below ``fraction`` of that median. Negative
    pixels (Pilatus module gaps) are always masked. The innermost rings that lie wholly
    behind the beamstop (their own median is dark) are masked too: from the beam outwards,
    the rings before the first ring ``1 / fraction`` times brighter than the innermost one,
    when that step lies in the inner third of the angular range.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        A frame, or better the mean of a few frames.
    integrator : AzimuthalIntegrator
        The detector geometry.
    fraction : float
        Threshold relative to the ring median, in (0, 1).
    n_rings : int
        Number of rings (radial bins) used for the medians.

    Returns
    -------
    ndarray of bool
        True where the pixel is invalid.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.io import load_geometry, open_saxs
    >>> from spotkit.sim import simulate_saxs_series
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "film.h5"
    >>> truth = simulate_saxs_series(path, n_frames=3, onset_frame=2)
    >>> frames = open_saxs(path)
    >>> mask = shadow_mask(frames[:2].mean(axis=0).values, load_geometry(truth.poni_path))
    >>> row, col = (round(v) for v in truth.beam_center)
    >>> bool(mask[row, col])  # the beamstop's shadow (and the module gaps) are masked
    True
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    image = np.asarray(image, dtype=np.float64)
    check_geometry(integrator, image.shape)
    tth = integrator.center_array(image.shape, unit="2th_rad", scale=False)
    if tth.shape != image.shape:
        raise ValueError(f"image shape {image.shape} does not match the geometry {tth.shape}")
    bad = image < 0
    edges = np.linspace(tth.min(), tth.max() + 1e-12, n_rings + 1)
    ring = np.clip(np.digitize(tth, edges) - 1, 0, n_rings - 1)
    medians = np.zeros(n_rings)
    valid_ring = ring[~bad]
    valid_vals = image[~bad]
    order = np.argsort(valid_ring, kind="stable")
    sorted_ring, sorted_vals = valid_ring[order], valid_vals[order]
    bounds = np.searchsorted(sorted_ring, np.arange(n_rings + 1))
    filled = np.zeros(n_rings, bool)
    for k in range(n_rings):
        seg = sorted_vals[bounds[k]:bounds[k + 1]]
        if seg.size:
            medians[k] = np.median(seg)
            filled[k] = True
    shadow = bad | (image < fraction * medians[ring])
    core = _shadowed_core(medians, filled, fraction)
    if core:
        logger.info("shadow_mask: the %d innermost ring(s) (2-theta < %.3g deg) are all in "
                    "shadow (beamstop)", core, np.degrees(edges[core]))
        shadow |= ring < core
    return shadow


def _shadowed_core(medians, filled, fraction) -> int:
    """Number of innermost rings that lie wholly in the beamstop's shadow.

    A ring entirely behind the beamstop has a dark median, so no pixel is darker than
    ``fraction`` of it. Such rings are found from the beam outwards: the innermost rings
    up to the first ring at least ``1 / fraction`` times brighter than the innermost one,
    when all of them are darker than ``fraction`` of that first bright ring and they make
    the inner part of the range only (a beamstop, not a dark inner region of a pattern).
    """
    rings = np.flatnonzero(filled)
    if rings.size < 4:
        return 0
    inner = medians[rings[0]]
    bright = rings[medians[rings] * fraction > inner]
    if not bright.size:
        return 0
    edge = int(bright[0])
    if edge > len(medians) // 3:
        return 0
    before = rings[rings < edge]
    if np.all(medians[before] < fraction * medians[edge]):
        return edge
    return 0
