"""Calibrate distance and beam centre on an image of a standard (AgBh, LaB6...) with pyFAI.

pyFAI does the work: its ring extraction (``SingleGeometry.extract_cp``, peak picking with
the massif algorithm near the rings predicted by the current geometry) and its least-squares
refinement (``GeometryRefinement.refine3``). spotkit iterates the two from a guess, keeps
the wavelength (known from the monochromator) and, by default, the tilts fixed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from spotkit.scattering._geometry import GeometryError, check_geometry, geometry_summary, pyfai

logger = logging.getLogger(__name__)

__all__ = ["REFINABLE", "CalibrationResult", "calibrate"]

#: What :func:`calibrate` can refine, and the pyFAI parameters of each.
REFINABLE = {
    "distance": ("dist",),
    "beam_center": ("poni1", "poni2"),
    "tilt": ("rot1", "rot2"),
    "wavelength": ("wavelength",),
}
_PYFAI_PARAMS = ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength")


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """The outcome of :func:`calibrate`.

    Attributes
    ----------
    integrator : AzimuthalIntegrator
        The refined geometry (save it with :func:`save_geometry`).
    calibrant : str
        Name of the standard.
    distance_m : float
        Refined sample-detector distance.
    beam_center : (float, float)
        Refined point of normal incidence ``(row, col)`` in pixel-index coordinates.
    rms_error_deg : float
        Root-mean-square 2-theta residual of the control points, degrees.
    n_points, n_rings : int
        Control points and rings used in the last refinement.
    initial : dict
        The guessed geometry (:func:`geometry_summary` without the PONI text).
    """

    integrator: object
    calibrant: str
    distance_m: float
    beam_center: tuple[float, float]
    rms_error_deg: float
    n_points: int
    n_rings: int
    initial: dict = field(default_factory=dict)


def _calibrant(calibrant, wavelength_m):
    pyfai()
    from pyFAI.calibrant import CALIBRANT_FACTORY, Calibrant, get_calibrant

    if isinstance(calibrant, Calibrant):
        cal = calibrant
        name = getattr(cal, "name", None) or "custom"
    else:
        names = sorted(CALIBRANT_FACTORY.keys())
        if calibrant not in names:
            raise ValueError(f"unknown calibrant {calibrant!r}; choose one of {names}")
        cal = get_calibrant(calibrant)
        name = str(calibrant)
    cal.wavelength = wavelength_m
    return cal, name


def _rings_seen(image, bad, ai, cal, *, n_sigma: float = 5.0) -> int:
    """Rings whose pixels are significantly brighter than the pixels just beside them."""
    tth = ai.twoThetaArray(image.shape)
    pix = max(ai.detector.pixel1, ai.detector.pixel2) / ai.dist  # one pixel, radians
    good = ~bad
    seen = 0
    for t in cal.get_2th():
        if t is None or not tth.min() < t < tth.max():
            continue
        d = np.abs(tth - t)
        on = image[(d < 0.7 * pix) & good]
        off = image[(d > 3 * pix) & (d < 6 * pix) & good]
        if on.size < 10 or off.size < 10:
            continue
        noise = off.std() / math.sqrt(on.size) + 1e-12
        if on.mean() - off.mean() > n_sigma * noise:
            seen += 1
    return seen


def calibrate(image, calibrant, *, geometry, refine=("distance", "beam_center"), mask=None,
              max_rings: int | None = None, n_iter: int = 3,
              points_per_degree: float = 1.0, max_error_px: float = 1.0) -> CalibrationResult:
    """Refine distance and beam centre on an image of a calibration standard.

    Parameters
    ----------
    image : array_like, shape (rows, cols)
        Image of the standard (rings). Negative pixels (gaps) are ignored.
    calibrant : str or pyFAI Calibrant
        ``"AgBh"`` (silver behenate, SAXS), ``"LaB6"`` (WAXS) or any name of pyFAI's
        shipped calibrants.
    geometry : AzimuthalIntegrator
        The starting guess, with the right wavelength and pixel size (e.g.
        :func:`make_geometry` with the nominal distance and the beam centre read off the
        image). Rings must be predicted within about a quarter of their spacing.
    refine : sequence of {"distance", "beam_center", "tilt", "wavelength"}
        What to refine; everything else stays as in ``geometry``.
    mask : array_like of bool, optional
        True on invalid pixels (beamstop, gaps).
    max_rings : int, optional
        Use at most this many rings (innermost first).
    n_iter : int
        Rounds of (ring extraction, refinement); later rounds find more rings.
    points_per_degree : float
        Control points per degree of azimuth on each ring.
    max_error_px : float
        Largest acceptable rms distance of the control points from the fitted rings, in
        pixels; a worse fit raises instead of returning a wrong geometry.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    ValueError
        Unknown calibrant or refine option, no ring found near the guess, or rings that
        do not fit (rms error above ``max_error_px``).
    GeometryError
        When the guess is for another detector shape.

    Examples
    --------
    >>> guess = make_geometry(energy_kev=12, distance_m=0.5, beam_center=(120, 130),
    ...                       pixel_size_um=172, shape=(256, 256))  # doctest: +SKIP
    >>> result = calibrate(image, "AgBh", geometry=guess)  # doctest: +SKIP
    >>> result.distance_m, result.beam_center  # doctest: +SKIP
    """
    pyfai()
    from pyFAI.detectors import detector_factory
    from pyFAI.goniometer import SingleGeometry

    unknown = [r for r in refine if r not in REFINABLE]
    if unknown or not refine:
        raise ValueError(f"unknown refine option(s) {unknown!r}; choose from {sorted(REFINABLE)}")
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (rows, cols), got shape {image.shape}")
    check_geometry(geometry, image.shape)
    if not geometry.wavelength:
        raise GeometryError("the geometry guess has no wavelength; give energy_kev to "
                            "make_geometry", field="wavelength_nm")
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    cal, name = _calibrant(calibrant, geometry.wavelength)
    free = {p for r in refine for p in REFINABLE[r]}
    fix = [p for p in _PYFAI_PARAMS if p not in free]

    config = geometry.get_config()
    detector = detector_factory(config["detector"], config.get("detector_config"))
    bad = image < 0
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != image.shape:
            raise ValueError(f"the mask is {mask.shape} but the image is {image.shape}")
        bad = bad | mask
    detector.mask = bad.astype(np.int8)
    if detector.shape is None:
        detector.shape = image.shape
    guess = {k: config[k] for k in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3")}
    guess["wavelength"] = geometry.wavelength
    single = SingleGeometry("spotkit-calibration", image=np.where(bad, 0.0, image),
                            calibrant=cal, detector=detector, geometry=guess)
    initial = {k: v for k, v in geometry_summary(geometry).items() if k != "poni"}
    residual = math.nan
    n_points = n_rings = 0
    for round_ in range(int(n_iter)):
        points = single.extract_cp(max_rings=max_rings, pts_per_deg=points_per_degree)
        data = np.asarray(points.getList())
        n_points = len(data)
        n_rings = len(np.unique(data[:, 2])) if n_points else 0
        if n_points < 3 * len(free):
            raise ValueError(
                f"calibration found {n_points} control point(s) of {name} near the guessed "
                f"geometry (round {round_ + 1}): the guess is too far off, or the image holds "
                "no rings of this standard. Improve the distance or beam centre guess, or "
                "check the calibrant and the energy.")
        residual = single.geometry_refinement.refine3(fix=fix)
        logger.info("calibration round %d: %d points on %d rings, residual %.3g",
                    round_ + 1, n_points, n_rings, residual)
    ai = single.get_ai()
    if _rings_seen(image, bad, ai, cal) == 0:
        raise ValueError(
            f"the image shows no ring of {name} where the refined geometry puts them: the "
            "image may hold no rings of this standard (check the calibrant and the energy), "
            "or the guess was too far off.")
    rms_deg = math.degrees(math.sqrt(residual / max(n_points, 1)))
    pixel_deg = math.degrees(max(detector.pixel1, detector.pixel2) / ai.dist)
    if not rms_deg <= max_error_px * pixel_deg:
        raise ValueError(
            f"the rings of {name} do not fit the image: after refinement the control points "
            f"are {rms_deg / pixel_deg:.2g} pixels (rms) off the rings (at most {max_error_px:g}"
            " allowed). The image may hold no rings of this standard, or the guess was too "
            "far off; check the calibrant, the energy and the distance/beam centre guess.")
    geo = geometry_summary(ai)
    return CalibrationResult(
        integrator=ai, calibrant=name, distance_m=geo["distance_m"],
        beam_center=(geo["beam_center"][0], geo["beam_center"][1]), rms_error_deg=rms_deg,
        n_points=n_points, n_rings=n_rings, initial=initial)
