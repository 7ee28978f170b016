"""What calibration returns or raises: ring residuals, the result, the error and warning."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from spotkit.errors import SpotkitError

logger = logging.getLogger(__name__)




__all__ = ["CalibrationError", "CalibrationResult", "CalibrationWarning", "RingResidual"]

class CalibrationError(SpotkitError, ValueError):
    """:func:`calibrate` refused its result: the rings do not fit, or not consistently.

    Attributes
    ----------
    calibrant : str
        The standard.
    reason : str
        ``"no-points"`` (no rings found near the geometry), ``"rms"`` (the points do not
        fit), ``"ring"`` (one ring's points are off while others fit), ``"missing-rings"``
        (rings the fit predicts between matched ones are absent: a wrong ring assignment),
        ``"no-rings"`` (the image shows no ring where the fit puts them),
        ``"unexplained-rings"`` (strong rings of the image match no line) or
        ``"capture-range"`` (the fit left the searched window).
    rings : tuple of RingResidual
        Residuals per ring of the refused fit (empty before any fit).
    result : CalibrationResult or None
        The refused fit itself, to inspect; never use it for data.
    """

    def __init__(self, message: str, *, calibrant: str, reason: str,
                 rings: Sequence[RingResidual] = (),
                 result: CalibrationResult | None = None) -> None:
        self.calibrant = calibrant
        self.reason = reason
        self.rings = tuple(rings)
        self.result = result
        super().__init__(message)


class CalibrationWarning(UserWarning):
    """:func:`calibrate` returned a fit that rests on weak evidence (see its warnings)."""


@dataclass(frozen=True)
class RingResidual:
    """How well the control points of one calibrant ring fit the refined geometry.

    Attributes
    ----------
    ring : int
        Index of the calibrant line (0: the largest d-spacing).
    d_spacing_nm, two_theta_deg : float
        The line's d-spacing and its 2-theta at the calibration wavelength.
    n_points : int
        Control points on this ring.
    mean_deg, rms_deg : float
        Mean (signed: observed minus calibrant) and rms 2-theta residual, degrees.
    mean_px, rms_px, max_px : float
        The same radially on the detector, in pixels (``max_px``: the largest absolute).
    azimuth_deg : float
        Azimuthal extent of the points, degrees: 360 less the widest gap between them
        (about 360 for a full ring; a short arc fixes the beam centre poorly).
    """

    ring: int
    d_spacing_nm: float
    two_theta_deg: float
    n_points: int
    mean_deg: float
    rms_deg: float
    mean_px: float
    rms_px: float
    max_px: float
    azimuth_deg: float


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """The outcome of :func:`calibrate`.

    Attributes
    ----------
    integrator : AzimuthalIntegrator
        The refined geometry (save it with :func:`spotkit.io.save_geometry`).
    calibrant : str
        Name of the standard.
    distance_m : float
        Refined sample-detector distance.
    beam_center : (float, float)
        Refined point of normal incidence ``(row, col)`` in pixel-index coordinates.
    rms_error_deg : float
        Root-mean-square 2-theta residual of all control points, degrees.
    n_points, n_rings : int
        Control points and rings used in the last refinement.
    n_outliers : int
        Control points of the last round dropped as strays (farther than 4 robust
        deviations, and 0.5 pixel, from their ring's median residual).
    initial : dict
        The guessed geometry (:func:`geometry_summary` without the PONI text).
    rms_error_px : float
        Root-mean-square radial residual of all control points, pixels.
    rings : tuple of RingResidual
        Residuals per ring.
    warnings : tuple of str
        Why the fit rests on weak evidence (also issued as :class:`CalibrationWarning`);
        empty for a clean fit.
    search : dict
        The coarse search: ``beam_center`` and ``distance_m`` it found, ``score`` (F1 of
        the ring match, 0..1), ``runner_up`` (distance and score of the best other ring
        assignment, or None), ``n_peaks`` (radial profile peaks), ``distance_window_m``
        and ``center_window_px`` (what was searched); empty with ``search=False``.
    """

    integrator: object
    calibrant: str
    distance_m: float
    beam_center: tuple[float, float]
    rms_error_deg: float
    n_points: int
    n_rings: int
    initial: dict = field(default_factory=dict)
    rms_error_px: float = math.nan
    rings: tuple = ()
    warnings: tuple = ()
    search: dict = field(default_factory=dict)
    n_outliers: int = 0
