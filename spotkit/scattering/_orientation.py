"""Does a geometry fit the image? Ring sharpness and the mask's beamstop, under each flip.

A PONI made for the image flipped up-down (Dioptas before 0.6.1) integrates the frames to
a wrong pattern without any error; :func:`check_orientation` catches it from the image
itself (and its mask), without a calibrant.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from spotkit._pyfai import FLIPS, GeometryWarning, check_geometry

if TYPE_CHECKING:  # pyFAI has no type information: Any for the type checker
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

logger = logging.getLogger(__name__)

__all__ = ["OrientationCheck", "check_orientation"]

#: Pixels used by :func:`check_orientation` (a regular subsample of larger frames).
_CHECK_PIXELS = 250_000
#: Width (pixels) of the local mean that :func:`check_orientation` subtracts.
_HIGH_PASS_PX = 9


@dataclass(frozen=True)
class OrientationCheck:
    """The outcome of :func:`check_orientation`.

    Attributes
    ----------
    sharpness : dict
        For the geometry as given (``"as-given"``) and for each flip of :data:`FLIPS`: the
        fraction of the image's (log) intensity variance that the azimuthal average
        explains, 0..1 (1: every pixel equals the mean of its ring). Empty without image.
    best : str
        The orientation under which the image's rings are sharpest (``"as-given"`` unless
        a flip is clearly better).
    mask_best : str or None
        The orientation that puts the beam on the mask's beamstop (``"as-given"`` when it
        is already there), None when the mask says nothing (no mask, beam off the detector,
        no beamstop-like masked region at the beam in any orientation).
    consistent : bool
        False when a flip fits the image or the mask clearly better.
    message : str
        What was found, in words.
    """

    sharpness: dict = field(default_factory=dict)
    best: str = "as-given"
    mask_best: str | None = None
    consistent: bool = True
    message: str = ""


def _flip_view(array, flip):
    if flip == "flipud":
        return array[::-1, :]
    if flip == "fliplr":
        return array[:, ::-1]
    if flip == "rot180":
        return array[::-1, ::-1]
    return array


def _eta2(values, bins) -> float:
    """Fraction of the variance of ``values`` explained by the means of their ``bins``,
    less what as many bins explain in pure noise (``(k - 1) / (n - 1)``)."""
    n = np.bincount(bins).astype(np.float64)
    sums = np.bincount(bins, weights=values)
    total = values.size
    mean = values.mean()
    ss_total = float(np.sum((values - mean) ** 2))
    if total < 100 or ss_total <= 1e-12 * total:
        return math.nan
    filled = n > 0
    ss_between = float(np.sum(sums[filled] ** 2 / n[filled]) - total * mean**2)
    null = float(filled.sum() - 1) / (total - 1)
    return float(min(max(ss_between / ss_total - null, 0.0), 1.0))


def _local_contrast(image: np.ndarray, valid: np.ndarray, *,
                    with_weight: bool = False) -> Any:
    """``log(1 + I)`` less its local mean (``_HIGH_PASS_PX`` wide, invalid pixels left out).

    Rings (a few pixels wide) stay; smooth or one-sided intensity (SAXS decay, a GISAXS
    horizon, a flat-field gradient) goes, so only sharp features count.
    """
    from scipy import ndimage

    weight = valid.astype(np.float32)
    clipped = np.where(valid, image, 0).astype(np.float32)
    logi = np.where(valid, np.log1p(np.maximum(clipped, 0)), np.float32(0))
    smooth = ndimage.uniform_filter(logi, _HIGH_PASS_PX)
    norm = ndimage.uniform_filter(weight, _HIGH_PASS_PX)
    local = np.where(valid, logi - smooth / np.maximum(norm, 1e-6), np.float32(0))
    return (local, norm) if with_weight else local


def _ring_sharpness(image: np.ndarray, integrator: AzimuthalIntegrator,
                    valid: np.ndarray) -> dict[str, float]:
    """Ring contrast explained by the geometry as given and by each flip (see check_orientation)."""
    shape = image.shape
    tth = integrator.center_array(shape, unit="2th_rad", scale=False)
    local, norm = _local_contrast(image, valid, with_weight=True)
    step = max(1, math.ceil(math.sqrt(image.size / _CHECK_PIXELS)))
    pixel = min(integrator.detector.pixel1, integrator.detector.pixel2) / integrator.dist
    width = pixel * max(1.0, step / 2)  # radial bins about one (sampled) pixel wide
    sub = (slice(None, None, step), slice(None, None, step))
    good = valid[sub] & (norm[sub] > 0.5)
    values = local[sub][good].astype(np.float64)
    out = {}
    # flipping the geometry is flipping the 2-theta map over the image (see flip_geometry)
    for name in ("as-given", *FLIPS):
        bins = (_flip_view(tth, name)[sub][good] / width).astype(np.int64)
        out[name] = _eta2(values, bins) if values.size else math.nan
    return out


def _beam_pixel(integrator: AzimuthalIntegrator) -> tuple[float, float]:
    """The direct beam (row, col) in pixel-index coordinates, tilts included."""
    fit2d = integrator.getFit2D()
    return fit2d["centerY"] - 0.5, fit2d["centerX"] - 0.5


def _mask_orientation(mask: np.ndarray, integrator: AzimuthalIntegrator) -> str | None:
    """Which orientation puts the direct beam on a beamstop-like masked region."""
    from scipy import ndimage

    rows, cols = mask.shape
    try:
        r, c = _beam_pixel(integrator)
    except Exception:  # pragma: no cover - pyFAI refuses some extreme tilts
        return None
    if not (1 <= r <= rows - 2 and 1 <= c <= cols - 2):
        return None
    ri, ci = round(r), round(c)
    if mask[max(ri - 2, 0):ri + 3, max(ci - 2, 0):ci + 3].any():
        return "as-given"
    labels, _ = ndimage.label(mask)
    boxes = ndimage.find_objects(labels)
    for flip in FLIPS:
        fr = rows - 1 - ri if flip in ("flipud", "rot180") else ri
        fc = cols - 1 - ci if flip in ("fliplr", "rot180") else ci
        patch = labels[fr - 1:fr + 2, fc - 1:fc + 2]
        if patch.size < 9 or not (patch > 0).all():
            continue
        box = boxes[int(labels[fr, fc]) - 1]
        height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
        if height < 0.9 * rows and width < 0.9 * cols:  # a blob, not a module gap line
            return flip
    return None


def check_orientation(image: npt.ArrayLike | None, integrator: AzimuthalIntegrator, *,
                      mask: npt.ArrayLike | None = None, warn: bool = True,
                      ratio: float = 0.75, min_contrast: float = 0.02) -> OrientationCheck:
    """Check that a geometry fits an image (and its mask), or would fit it better flipped.

    A PONI made for the image flipped up-down (Dioptas) integrates the frames to a wrong
    pattern without any error. Two cheap, calibrant-free tests catch it:

    * rings: with the right geometry, the sharp features of a powder or SAXS image (rings)
      lie at constant scattering angle. The image's ``log(1 + I)`` less its local mean
      (9 x 9 pixels: smooth decay, a GISAXS horizon, a flat-field gradient do not vote) is
      binned by 2-theta (one-pixel bins, at most 250 000 pixels); the fraction of its
      variance the bin means explain, less the fraction they explain in noise, is the
      *ring contrast*. It is computed for the geometry as given and for each flip of the
      2-theta map (:data:`FLIPS`, equivalent to :func:`flip_geometry`). A flip whose ring
      contrast exceeds ``min_contrast`` while the geometry as given reaches less than
      ``ratio`` of it means the geometry is for a flipped image. Images without sharp
      rings, and beams near the detector's middle (a flip then changes little), give
      close values and no warning.
    * mask: the direct beam should sit on the beamstop. When it hits no masked pixel, but a
      flip of it lands inside a compact masked region (not a module gap line), the mask or
      the geometry is flipped.

    Parameters
    ----------
    image : array_like, shape (rows, cols), or None
        A frame (better: the mean of a few); None checks the mask only.
    integrator : AzimuthalIntegrator
        The geometry.
    mask : array_like of bool, optional
        True on invalid pixels; they are left out of the ring test.
    warn : bool
        Issue a :class:`GeometryWarning` when the geometry looks flipped.
    ratio : float
        The share of a flip's ring contrast the geometry as given must reach.
    min_contrast : float
        Smallest ring contrast (0..1) of a flip that counts as evidence.

    Returns
    -------
    OrientationCheck

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import spotkit.io, spotkit.sim
    >>> from spotkit.scattering import geometry_from_metadata
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.h5"
    >>> truth = spotkit.sim.simulate_saxs_series(path, n_frames=12, onset_frame=2)
    >>> frames = spotkit.io.open_saxs(path)
    >>> check = check_orientation(frames[-1].values, geometry_from_metadata(frames))
    >>> check.consistent
    True
    """
    sharp = {}
    valid = None
    shape = None
    if image is not None:
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"image must be 2-D (rows, cols), got shape {image.shape}")
        if image.dtype.kind not in "biuf":
            raise ValueError(f"image must hold numbers, got dtype {image.dtype}")
        shape = image.shape
        check_geometry(integrator, shape)
        valid = np.isfinite(image) & (image >= 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if shape is not None and mask.shape != shape:
            raise ValueError(f"the mask is {mask.shape} but the image is {shape}")
        check_geometry(integrator, mask.shape)
        if valid is not None:
            valid &= ~mask
    if image is not None and valid is not None:
        sharp = _ring_sharpness(image, integrator, valid)
    best = "as-given"
    problems = []
    given = sharp.get("as-given", math.nan)
    if sharp and math.isfinite(given):
        alt = max(FLIPS, key=lambda k: -1.0 if math.isnan(sharp[k]) else sharp[k])
        if sharp[alt] > min_contrast and given < ratio * sharp[alt]:
            best = alt
            problems.append(
                f"the image's rings are sharper with the geometry {alt}: ring contrast "
                f"{sharp[alt]:.3f} {alt}, {given:.3f} as given")
    mask_best = None if mask is None else _mask_orientation(mask, integrator)
    if mask_best not in (None, "as-given"):
        r, c = _beam_pixel(integrator)
        problems.append(f"the direct beam (row {r:.0f}, col {c:.0f}) hits no masked pixel, but "
                        f"the mask {mask_best} has its beamstop there")
    consistent = not problems
    if consistent:
        message = ("the geometry fits the image" + (" and the mask" if mask is not None else "")
                   if sharp or mask_best else "nothing to compare (no rings, no beamstop)")
    else:
        message = ("the geometry looks made for a flipped image: " + "; ".join(problems) + ". "
                   "A PONI from Dioptas (before 0.6.1) refers to the image flipped up-down: "
                   "load it with spotkit.io.load_geometry(..., orientation='dioptas'), or "
                   "convert it with flip_geometry; a mask drawn on a flipped image needs "
                   "np.flipud.")
        rows, cols = integrator.detector.shape or shape or (0, 0)
        r, c = _beam_pixel(integrator)
        if abs(r - (rows - 1) / 2) < 5 or abs(c - (cols - 1) / 2) < 5:
            message += (" The beam is within 5 pixels of the detector's middle, where a flip "
                        "moves it little: the geometry may instead be off by a few pixels.")
    if warn and not consistent:
        warnings.warn(message, GeometryWarning, stacklevel=2)
    return OrientationCheck(sharpness=sharp, best=best, mask_best=mask_best,
                            consistent=consistent, message=message)
