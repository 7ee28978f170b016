"""Calibrate distance and beam centre on an image of a standard (AgBh, LaB6...) with pyFAI.

Three stages, each checked:

1. **Coarse search** (spotkit, no calibrant needed for the first part). The beam centre is
   searched on a grid around the guess (``search_center_px``, coarse to fine) for the
   position around which the image's sharp features are most ring-like (the fraction of
   the high-passed log-intensity's variance that one-pixel radial bins explain, as in
   :func:`~spotkit.scattering.check_orientation`). Around it the radial profile's peaks are
   matched to the calibrant's lines: every (peak, line) pair proposes a distance within
   ``search_distance`` of the guess, and the distance whose predicted rings best match the
   observed ones (F1 score: the share of observed peak strength a ring explains, and the
   share of rings predicted on the detector, inside the outermost peak, that a peak
   confirms) wins. Its runner-up with another ring assignment measures the ambiguity.
   This assumes a detector tilted by a few degrees at most (rings close to circles).
2. **Refinement** (pyFAI): its ring extraction (``SingleGeometry.extract_cp``, massif peak
   picking near the rings predicted by the current geometry, which needs them within a
   quarter of their spacing: the coarse search provides that) and its least-squares
   refinement (``GeometryRefinement.refine3``), repeated ``n_iter`` times; the wavelength
   (known from the monochromator) and, by default, the tilts stay fixed.
3. **Checks**: residuals per ring (degrees 2-theta and pixels), the rms over all points,
   rings the geometry predicts between matched ones that the image does not show (a ring
   assignment off by a factor, as AgBh's harmonic lines allow), the result inside the
   searched window. A fit that fails them raises :class:`CalibrationError`; a fit that
   passes them but rests on weak evidence (one ring, an ambiguous assignment, strong peaks
   no line explains) warns with :class:`CalibrationWarning`, and lists why in
   ``result.warnings``.

pyFAI's ``refine3`` returns the *mean* squared 2-theta residual; spotkit (before this
change) divided it by the number of points once more, which understated the rms by the
square root of the number of points and let wrong fits pass.

The result records and exceptions are in :mod:`spotkit.scattering._calibration_results`, the
coarse search (stage 1) in :mod:`spotkit.scattering._calibration_search`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from spotkit._pyfai import integrator_from_config, without_auto_gc
from spotkit.scattering._calibration_results import (
    CalibrationError,
    CalibrationResult,
    CalibrationWarning,
    RingResidual,
)
from spotkit.scattering._calibration_search import (
    _apply_search,
    _calibrant,
    _coarse_search,
    _lines,
    _ring_visible,
)
from spotkit.scattering._geometry import (
    GeometryError,
    check_geometry,
    geometry_summary,
    pyfai,
)
from spotkit.scattering._orientation import _beam_pixel

if TYPE_CHECKING:  # pyFAI has no type information: Any for the type checker
    from pyFAI.calibrant import Calibrant
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

logger = logging.getLogger(__name__)

__all__ = ["REFINABLE", "calibrate"]

#: What :func:`calibrate` can refine, and the pyFAI parameters of each.
REFINABLE = {
    "distance": ("dist",),
    "beam_center": ("poni1", "poni2"),
    "tilt": ("rot1", "rot2"),
    "wavelength": ("wavelength",),
}
_PYFAI_PARAMS = ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength")
#: An alternative ring assignment whose F1 score is within this of the best is ambiguous.
_AMBIGUOUS_MARGIN = 0.2

# -- stage 3: residuals and checks -----------------------------------------------------------


def _ring_residuals(refinement, lines, d_spacings):
    """Per-point residuals (rad, px) and per-ring summaries of the refined geometry."""
    data = np.asarray(refinement.data, dtype=np.float64)
    d1, d2, ring = data[:, 0], data[:, 1], data[:, 2].astype(np.int64)
    res = np.asarray(refinement.tth(d1, d2)) - lines[ring]
    grad = np.hypot(np.asarray(refinement.tth(d1 + 0.5, d2)) - np.asarray(
        refinement.tth(d1 - 0.5, d2)), np.asarray(refinement.tth(d1, d2 + 0.5)) - np.asarray(
        refinement.tth(d1, d2 - 0.5)))
    res_px = res / np.maximum(grad, 1e-15)
    chi = np.degrees(np.asarray(refinement.chi(d1, d2)))
    rings = []
    for k in np.unique(ring):
        sel = ring == k
        rings.append(RingResidual(
            ring=int(k), d_spacing_nm=float(d_spacings[k]) / 10.0,
            two_theta_deg=float(np.degrees(lines[k])), n_points=int(sel.sum()),
            mean_deg=float(np.degrees(res[sel].mean())),
            rms_deg=float(np.degrees(np.sqrt(np.mean(res[sel] ** 2)))),
            mean_px=float(res_px[sel].mean()), rms_px=float(np.sqrt(np.mean(res_px[sel] ** 2))),
            max_px=float(np.abs(res_px[sel]).max()),
            azimuth_deg=_coverage(chi[sel])))
    return res, res_px, tuple(rings)


def _coverage(chi_deg) -> float:
    """Azimuthal extent of points (degrees): 360 less the widest gap between them."""
    a = np.sort(np.mod(chi_deg, 360.0))
    if a.size < 2:
        return 0.0
    gaps = np.diff(np.concatenate([a, a[:1] + 360.0]))
    return float(360.0 - gaps.max())


def _inliers(res_px, ring, floor_px: float = 0.5, n_mad: float = 4.0) -> np.ndarray:
    """Points within ``n_mad`` robust deviations (at least ``floor_px``) of their ring's median."""
    keep = np.ones(res_px.size, bool)
    for k in np.unique(ring):
        sel = ring == k
        centre = np.median(res_px[sel])
        spread = 1.4826 * np.median(np.abs(res_px[sel] - centre))
        keep[sel] = np.abs(res_px[sel] - centre) <= max(n_mad * spread, floor_px)
    return keep


def calibrate(image: npt.ArrayLike, calibrant: str | Calibrant, *,
              geometry: AzimuthalIntegrator,
              refine: Sequence[str] = ("distance", "beam_center"),
              mask: npt.ArrayLike | None = None,
              max_rings: int | None = None, n_iter: int = 3,
              points_per_degree: float = 1.0, max_error_px: float = 1.0,
              search: bool = True, search_distance: float = 0.3,
              search_center_px: float = 20.0) -> CalibrationResult:
    """Refine distance and beam centre on an image of a calibration standard.

    A coarse search (beam centre, then distance and ring assignment) brings the guess close
    enough for pyFAI's ring extraction and least-squares refinement; the result is checked
    ring by ring and refused when inconsistent (see the module's documentation).

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
        image). With ``search=True`` the direct beam may be ``search_center_px`` pixels and
        the distance ``search_distance`` (relative) off; tilts must be small (a few degrees).
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
        Largest acceptable rms radial distance of the control points from their rings, in
        pixels, over all points (each ring may reach twice this, and its mean offset this).
    search : bool
        Run the coarse search first (False: pyFAI's refinement from the guess as given,
        which needs the rings predicted within about a quarter of their spacing).
    search_distance : float
        Half-width of the distance window searched, relative to the guess (0.3: +-30 %).
    search_center_px : float
        Half-width of the beam-centre window searched, pixels along each detector axis. A
        fit whose direct beam ends more than 5 pixels beyond it, or whose distance ends
        outside the distance window, is refused (``reason="capture-range"``).

    Returns
    -------
    CalibrationResult
        With residuals per ring (:class:`RingResidual`) and the coarse search's findings.

    Raises
    ------
    CalibrationError
        The fit is refused: no rings near the geometry, points that do not fit (overall or
        on one ring), rings predicted between matched ones but absent (wrong ring
        assignment), or a fit outside the searched window. A :class:`ValueError`.
    ValueError
        Unknown calibrant or refine option, bad arguments.
    GeometryError
        When the guess is for another detector shape or has no wavelength.

    Warns
    -----
    CalibrationWarning
        The fit passed its checks but rests on weak evidence: a single ring, an ambiguous
        ring assignment (another distance in the window matches the peaks almost as well),
        or strong peaks that no line of the calibrant explains.

    Examples
    --------
    An image of silver behenate faked by pyFAI (true distance 0.30 m, beam at row 128,
    column 120), calibrated from a guess 1 cm and 4 pixels off:

    >>> import numpy as np
    >>> from pyFAI.calibrant import get_calibrant
    >>> from spotkit.scattering import make_geometry
    >>> true = make_geometry(energy_kev=12.4, distance_m=0.30, beam_center=(128, 120),
    ...                      pixel_size_um=172, shape=(256, 256))
    >>> agbh = get_calibrant("AgBh"); agbh.wavelength = true.wavelength
    >>> ideal = agbh.fake_calibration_image(true, Imax=1000, Imin=10, resolution=0.02)
    >>> image = np.random.default_rng(0).poisson(ideal).astype(np.int32)
    >>> guess = make_geometry(energy_kev=12.4, distance_m=0.31, beam_center=(124, 124),
    ...                       pixel_size_um=172, shape=(256, 256))
    >>> result = calibrate(image, "AgBh", geometry=guess)
    >>> round(result.distance_m, 3), [round(v, 1) for v in result.beam_center]
    (0.3, [128.0, 120.0])
    >>> result.rings[0].rms_px < 0.5
    True
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
    if not 0 < search_distance < 1:
        raise ValueError(f"search_distance must be in (0, 1) (relative), got {search_distance}")
    if not search_center_px >= 0:
        raise ValueError(f"search_center_px must be >= 0, got {search_center_px}")
    cal, name = _calibrant(calibrant, geometry.wavelength)
    lines = _lines(cal)
    d_spacings = geometry.wavelength * 1e10 / (2 * np.sin(lines / 2))  # angstrom
    free = {p for r in refine for p in REFINABLE[r]}
    fix = [p for p in _PYFAI_PARAMS if p not in free]

    config = geometry.get_config()
    detector = detector_factory(config["detector"], config.get("detector_config"))
    bad = ~np.isfinite(image) | (image < 0)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != image.shape:
            raise ValueError(f"the mask is {mask.shape} but the image is {image.shape}")
        bad = bad | mask
    clean = np.where(bad, 0.0, image)
    detector.mask = bad.astype(np.int8)
    if detector.shape is None:
        detector.shape = image.shape
    guess = {k: config[k] for k in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3")}
    guess["wavelength"] = geometry.wavelength
    initial = {k: v for k, v in geometry_summary(geometry).items() if k != "poni"}
    start_centre = _beam_pixel(geometry)
    D0 = geometry.getFit2D()["directDist"] * 1e-3
    window = (D0 * (1 - search_distance), D0 * (1 + search_distance))
    notes = []

    found = {}
    if search:
        found = _coarse_search(clean, ~bad, geometry, lines, window=search_distance,
                               half_px=float(search_center_px))
        logger.info("calibration search: beam centre %s, distance %.5g m, score %.3g, "
                    "runner-up %s", found["beam_center"], found["distance_m"],
                    found["score"], found["runner_up"])
        if found["n_peaks"] == 0:
            notes.append("the coarse search found no ring peak in the radial profile around "
                         "the guessed beam centre; the refinement started from the guess")
        runner = found["runner_up"]
        if runner is not None and math.isfinite(found["score"]) and \
                runner["score"] >= found["score"] - _AMBIGUOUS_MARGIN:
            notes.append(
                f"ambiguous ring assignment: a distance of {runner['distance_m'] * 1e3:.2f} mm "
                f"matches the image's ring peaks almost as well (score {runner['score']:.2f}) "
                f"as {found['distance_m'] * 1e3:.2f} mm ({found['score']:.2f}); check the "
                "distance against a measured value or narrow search_distance")
        guess = _apply_search(guess, geometry, found)

    single = SingleGeometry("spotkit-calibration", image=clean, calibrant=cal,
                            detector=detector, geometry=guess)
    without_auto_gc(single.geometry_refinement)  # a dozen refinement steps: no gc.collect()
    n_points = n_rings = n_outliers = 0
    for round_ in range(int(n_iter)):
        points = single.extract_cp(max_rings=max_rings, pts_per_deg=points_per_degree)
        data = np.asarray(points.getList())
        n_points = len(data)
        n_rings = len(np.unique(data[:, 2])) if n_points else 0
        if n_points < 3 * len(free):
            raise CalibrationError(
                f"calibration found {n_points} control point(s) of {name} near the "
                f"{'searched' if search else 'guessed'} geometry (round {round_ + 1}): the "
                "guess is too far off, or the image holds no rings of this standard. Improve "
                "the distance or beam centre guess, or check the calibrant and the energy.",
                calibrant=name, reason="no-points")
        refinement = single.geometry_refinement
        refinement.refine3(fix=fix)
        # massif picks a few stray points on partial arcs: drop the points far from their
        # own ring's median residual (a ring's common offset stays, and is checked below)
        _, res_px, _ = _ring_residuals(refinement, lines, d_spacings)
        keep = _inliers(res_px, np.asarray(refinement.data)[:, 2])
        n_outliers = int((~keep).sum())
        if n_outliers and keep.sum() >= 3 * len(free):
            refinement.data = np.asarray(refinement.data)[keep]
            refinement.refine3(fix=fix)
        n_points = len(refinement.data)
        n_rings = len(np.unique(np.asarray(refinement.data)[:, 2]))
        logger.info("calibration round %d: %d points on %d rings (%d outliers dropped)",
                    round_ + 1, n_points, n_rings, n_outliers)

    refinement = single.geometry_refinement
    ai = integrator_from_config(refinement.get_config())  # single.get_ai(), without gc
    res, res_px, rings = _ring_residuals(refinement, lines, d_spacings)
    rms_deg = float(np.degrees(np.sqrt(np.mean(res**2))))
    rms_px = float(np.sqrt(np.mean(res_px**2)))
    geo = geometry_summary(ai)
    result = CalibrationResult(
        integrator=ai, calibrant=name, distance_m=geo["distance_m"],
        beam_center=(geo["beam_center"][0], geo["beam_center"][1]), rms_error_deg=rms_deg,
        n_points=n_points, n_rings=n_rings, initial=initial, rms_error_px=rms_px,
        rings=rings, warnings=(), search=found, n_outliers=n_outliers)
    table = "; ".join(f"ring {r.ring} (d = {r.d_spacing_nm:.4g} nm): {r.n_points} points, "
                      f"rms {r.rms_px:.2f} px, mean {r.mean_px:+.2f} px" for r in rings)

    def refuse(message, reason):
        raise CalibrationError(message + f" Residuals per ring: {table}.", calibrant=name,
                               reason=reason, rings=rings, result=result)

    # -- checks ---------------------------------------------------------------------------
    if not rms_px <= max_error_px:
        refuse(f"the rings of {name} do not fit the image: after refinement the control "
               f"points are {rms_px:.2g} pixels (rms) off their rings (at most "
               f"{max_error_px:g} allowed). The image may hold no rings of this standard, or "
               "the guess was too far off; check the calibrant, the energy and the "
               "distance/beam centre guess.", "rms")
    worst = max(rings, key=lambda r: max(r.rms_px / 2, abs(r.mean_px)))
    if worst.rms_px > 2 * max_error_px or abs(worst.mean_px) > max_error_px:
        refuse(f"the rings of {name} are inconsistent: ring {worst.ring} (d = "
               f"{worst.d_spacing_nm:.4g} nm) is {worst.mean_px:+.2f} px off on average "
               f"(rms {worst.rms_px:.2f} px) while the fit as a whole is {rms_px:.2f} px rms: "
               "its points belong to another ring, or the calibrant or energy is wrong.",
               "ring")
    pixel_rad = max(detector.pixel1, detector.pixel2) / ai.dist
    tth_map = ai.center_array(image.shape, unit="2th_rad", scale=False)
    used = sorted(r.ring for r in rings)
    seen = {k: _ring_visible(clean, ~bad, tth_map, lines[k], pixel_rad)
            for k in range(used[0], used[-1] + 1)}
    if not any(seen.get(k) for k in used):
        refuse(f"the image shows no ring of {name} where the refined geometry puts them: "
               "the image may hold no rings of this standard (check the calibrant and the "
               "energy), or the guess was too far off.", "no-rings")
    between = [k for k in range(used[0], used[-1] + 1) if k not in used]
    missing = [k for k in between if seen.get(k) is False]
    if missing and len(missing) >= max(len(between) / 2, len(used) / 2):
        refuse(f"the ring assignment of {name} is inconsistent: the fit puts ring(s) "
               f"{missing} between the matched rings {used}, and the image shows none of "
               "them there; the distance is likely off by a factor (harmonic lines such as "
               "AgBh's allow it). Give a better distance guess.", "missing-rings")
    elif missing:
        notes.append(f"ring(s) {missing} of {name}, between the matched rings {used}, are "
                     "not visible in the image (weak lines, or a wrong ring assignment)")
    beam = _beam_pixel(ai)
    moved = max(abs(beam[0] - start_centre[0]), abs(beam[1] - start_centre[1]))
    direct = ai.getFit2D()["directDist"] * 1e-3
    if not window[0] <= direct <= window[1] or moved > float(search_center_px) + 5:
        refuse(f"the fit left its capture range: distance {direct * 1e3:.2f} mm (searched "
               f"{window[0] * 1e3:.2f}-{window[1] * 1e3:.2f} mm), direct beam moved "
               f"{moved:.1f} px along a detector axis (searched +-{search_center_px:g} px). "
               "Give a guess closer to the truth, or widen search_distance / "
               "search_center_px.", "capture-range")
    unexplained = _unexplained_peaks(clean, ~bad, tth_map, lines, pixel_rad)
    strong = [t for t, rel in unexplained if rel >= 0.5]
    if strong:
        refuse(f"the refined geometry leaves strong ring(s) of the image at 2-theta {strong} "
               f"deg unexplained by any line of {name} (at least half as strong as the "
               "rings it matched): a wrong ring assignment, or a wrong calibrant or energy.",
               "unexplained-rings")
    if unexplained:
        notes.append(f"the image has ring(s) at 2-theta {[t for t, _ in unexplained]} deg "
                     f"that no line of {name} explains (another phase, e.g. a window, or a "
                     "wrong calibrant or energy)")
    if n_rings == 1 and not (search and math.isfinite(found.get("score", math.nan))):
        notes.append(f"a single ring of {name} was used (ring {used[0]}) and no search "
                     "compared other ring assignments: the distance rests on the guess "
                     "being within half a ring spacing")
    for note in notes:
        warnings.warn(f"calibrate: {note}.", CalibrationWarning, stacklevel=2)
    return CalibrationResult(
        integrator=ai, calibrant=name, distance_m=geo["distance_m"],
        beam_center=(geo["beam_center"][0], geo["beam_center"][1]), rms_error_deg=rms_deg,
        n_points=n_points, n_rings=n_rings, initial=initial, rms_error_px=rms_px,
        rings=rings, warnings=tuple(notes), search=found, n_outliers=n_outliers)


def _unexplained_peaks(image, good, tth_map, lines, pixel_rad, n_sigma: float = 8.0):
    """2-theta (deg) of strong profile peaks farther than 3 pixels from every line."""
    from scipy import ndimage, signal

    width = pixel_rad / 2
    b = (tth_map[good] / width).astype(np.int64)
    v = image[good]
    n = np.bincount(b)
    s = np.bincount(b, v)
    s2 = np.bincount(b, v * v)
    ok = n >= 5
    if ok.sum() < 20:
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, s / n, np.nan)
        err = np.sqrt(np.maximum(s2 / n - mean**2, 0) / n)
    centres = (np.arange(n.size) + 0.5) * width
    filled = np.interp(centres, centres[ok], mean[ok])
    base = ndimage.median_filter(filled, size=31, mode="nearest")
    noise = np.maximum(np.where(ok, err, np.inf), np.nanmedian(err[ok]) * 0.2 + 1e-12)
    z = np.where(ok, (filled - base) / noise, 0)
    peaks, props = signal.find_peaks(z, height=n_sigma, distance=4)
    near = np.array([np.min(np.abs(lines - centres[p])) <= 3 * pixel_rad for p in peaks], bool)
    heights = props["peak_heights"]
    strongest = float(heights[near].max()) if near.any() else 0.0
    return [(round(math.degrees(centres[p]), 3), float(h) / strongest if strongest else math.inf)
            for p, h, n in zip(peaks, heights, near, strict=True) if not n]
