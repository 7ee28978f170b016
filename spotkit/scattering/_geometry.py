"""Detector geometry: pyFAI integrators from PONI files or from a dataset's metadata.

pyFAI describes a flat detector by its distance, its point of normal incidence (``poni1``,
``poni2``, metres from the detector corner along rows and columns) and three rotations.
spotkit builds the same object either from a PONI file written by pyFAI-calib2 or from the
geometry that a beamline writes into its NeXus file (energy, distance, beam centre, pixel
size), with the beam centre in pixel-index coordinates (pixel ``(i, j)`` centred at
``(i, j)``), so ``poni1 = (row + 0.5) * pixel1`` as in :mod:`spotkit.sim`.

Image orientation. Every geometry spotkit returns refers to the image as the file holds it
(row 0 first, pyFAI's native orientation, ``Orientation.BottomRight`` = 3). A PONI file can
refer to another orientation in two ways:

* it says so: PONI 2.1 files carry ``"orientation"`` in ``Detector_config`` (pyFAI >= 2024);
  Dioptas >= 0.6.1 writes ``2`` (TopRight: the image flipped up-down). pyFAI honours it only
  when the detector shape is known (with ``max_shape: null``, as Dioptas writes, pyFAI
  2026.9 silently ignores it), so :func:`load_geometry` converts it into the file's
  orientation, given ``shape``;
* it does not say so: a PONI written by Dioptas before 0.6.1 refers to the image as Dioptas
  shows it, flipped up-down, with nothing in the file to tell. ``orientation="dioptas"``
  (or ``"flipud"``) converts it.

The conversion (:func:`flip_geometry`) is exact. Flipping the rows maps the detector
coordinate ``d1`` to ``n1 * pixel1 - d1``; a rotation matrix conjugated by that reflection
(and the reflection of the laboratory axis 1, which leaves 2-theta unchanged) keeps the
rotation about axis 1 and negates those about axes 2 and 3. So up-down:
``poni1 -> n1 * pixel1 - poni1, rot2 -> -rot2, rot3 -> -rot3``; left-right:
``poni2 -> n2 * pixel2 - poni2, rot1 -> -rot1, rot3 -> -rot3``; both (180 degrees): ``poni1``,
``poni2``, ``rot1`` and ``rot2`` change. 2-theta and q maps are those of the flipped image
(identical to pyFAI's own orientation flags 2, 4 and 1 to 1e-16 rad); the azimuth chi is
mirrored (``-chi`` up-down, ``180 - chi`` left-right). Quarter turns and transposes
(pyFAI's orientations 5-8, which pyFAI itself does not support) swap the detector axes and
are not converted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spotkit.errors import GeometryError, InputFileError

logger = logging.getLogger(__name__)

__all__ = [
    "FLIPS",
    "ORIENTATIONS",
    "GeometryError",
    "GeometryWarning",
    "OrientationCheck",
    "check_geometry",
    "check_orientation",
    "flip_geometry",
    "geometry_from_metadata",
    "geometry_summary",
    "load_geometry",
    "make_geometry",
    "save_geometry",
]

#: Image flips :func:`flip_geometry` converts a geometry through (each is its own inverse).
FLIPS = ("flipud", "fliplr", "rot180")
#: What ``load_geometry(..., orientation=...)`` accepts: the image orientation the PONI file
#: was made for.
ORIENTATIONS = {
    "as-file": "the PONI refers to the image as the file holds it (pyFAI's reading, including "
               "the PONI's own orientation field)",
    "flipud": "the PONI was made on the image flipped up-down",
    "fliplr": "the PONI was made on the image flipped left-right",
    "rot180": "the PONI was made on the image turned by 180 degrees",
    "dioptas": "the PONI was written by Dioptas: flipped up-down unless the file declares its "
               "orientation (Dioptas >= 0.6.1 does, and then it is already the file's)",
}
#: pyFAI's detector orientation codes -> the flip that maps them onto its native one (3).
_ORIENTATION_FLIP = {0: None, 3: None, 2: "flipud", 4: "fliplr", 1: "rot180"}


class GeometryWarning(UserWarning):
    """A geometry looks inconsistent with the image or the mask it is used with.

    Raised as a warning (``warnings.warn``) by :func:`check_orientation` and by the
    integration functions, which run it: the frames' rings are sharper with the geometry
    flipped, or the beamstop of the mask is not where the geometry puts the beam.
    """

HC_KEV_NM = 1.239841984  # h c in keV nm


def pyfai():
    """Import pyFAI, or say which extra installs it."""
    try:
        import pyFAI
    except ImportError as exc:  # pragma: no cover - pyFAI is installed in the test env
        raise ImportError(
            'azimuthal integration needs pyFAI: pip install "spotkit[scattering]"'
        ) from exc
    return pyFAI


def load_geometry(poni: str | os.PathLike, *, shape: tuple[int, int] | None = None,
                  orientation: str = "as-file"):
    """Load a pyFAI geometry (PONI file) as an azimuthal integrator for the file's image.

    Parameters
    ----------
    poni : path-like
        PONI file written by pyFAI-calib2, Dioptas, :func:`save_geometry` or
        :func:`spotkit.sim.simulate_saxs_series`.
    shape : (int, int), optional
        Shape of the frames it will integrate; checked against the PONI's detector
        (see :func:`check_geometry`), so a PONI made for another detector fails here. Needed
        to convert an orientation when the PONI does not record the detector shape.
    orientation : str
        The image orientation the PONI was made for, one of :data:`ORIENTATIONS`:
        ``"as-file"`` (default), ``"flipud"``, ``"fliplr"``, ``"rot180"``, or ``"dioptas"``
        (a PONI saved by Dioptas, which shows and calibrates the image flipped up-down:
        ``"flipud"`` unless the file declares its orientation, as Dioptas >= 0.6.1 does).
        The geometry returned always refers to the image as the file holds it.

    Returns
    -------
    pyFAI.integrator.azimuthal.AzimuthalIntegrator
        In pyFAI's native orientation (3): a PONI declaring another orientation is converted
        (:func:`flip_geometry`), so beam centres read as pixel indices of the frames.

    Raises
    ------
    InputFileError
        When the file is missing or is not a PONI file.
    GeometryError
        When ``shape`` differs from the detector's, or an orientation must be converted and
        neither the file nor ``shape`` gives the detector shape.
    ValueError
        Unknown ``orientation``.

    Warns
    -----
    GeometryWarning
        When ``orientation`` flips a PONI that declares a non-native orientation (it is then
        flipped twice: Dioptas >= 0.6.1 files are already right ``"as-file"``).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> poni = pathlib.Path(tempfile.mkdtemp()) / "series.poni"
    >>> _ = save_geometry(make_geometry(energy_kev=10, distance_m=1.5, beam_center=(97, 243),
    ...                                 pixel_size_um=172, shape=(195, 487)), poni)
    >>> ai = load_geometry(poni, shape=(195, 487))
    >>> round(ai.dist, 3)
    1.5
    >>> flipped = load_geometry(poni, shape=(195, 487), orientation="dioptas")  # Dioptas' view
    """
    pyFAI = pyfai()
    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}; choose one of "
                         f"{sorted(ORIENTATIONS)}")
    if not os.path.isfile(poni):
        raise InputFileError(poni, "PONI geometry file does not exist.",
                             hint="Calibrate with pyFAI-calib2 or pass the right path.")
    try:
        ai = pyFAI.load(str(poni))
    except Exception as exc:
        raise InputFileError(poni, f"cannot be read as a PONI geometry ({exc}).",
                             hint="Write it with pyFAI-calib2 or spotkit.scattering."
                             "save_geometry.") from exc
    if not ai.dist or ai.wavelength is None or not ai.wavelength:
        field_ = "Distance" if not ai.dist else "Wavelength"
        raise InputFileError(poni, f"the PONI geometry has no {field_}.", field=field_,
                             hint="Recalibrate with pyFAI-calib2 and save the PONI file again.")
    if shape is not None:
        rows, cols = (int(s) for s in tuple(shape)[-2:])
        shape = (rows, cols)
        check_geometry(ai, shape, source=str(poni))
    declared = _declared_orientation(poni)
    code = int(getattr(ai.detector, "orientation", 3) or 3)
    if code != 3:
        # the PONI says which orientation it refers to: convert it into the native one
        # (pyFAI would ignore it when the detector has no shape, as Dioptas writes it)
        logger.info("%s declares detector orientation %d%s; converted to the file's "
                    "orientation", poni, code,
                    " (as Dioptas >= 0.6.1 writes)" if code == 2 else "")
        ai = _to_native(ai, shape, source=str(poni))
    flip = {"as-file": None, "dioptas": None if declared is not None else "flipud"}.get(
        orientation, orientation)
    if flip is not None and declared not in (None, 0, 3):
        warnings.warn(
            f"{poni} declares detector orientation {declared} (pyFAI's orientation field; "
            f"Dioptas >= 0.6.1 writes 2), which spotkit already applied; orientation="
            f"{orientation!r} flips it once more. Use orientation='as-file' if the file was "
            "written by Dioptas >= 0.6.1 or by pyFAI with an orientation.",
            GeometryWarning, stacklevel=2)
    if flip is not None:
        ai = flip_geometry(ai, flip, shape=shape)
        logger.info("%s: geometry made for the image %s, converted to the file's orientation",
                    poni, flip)
    return ai


def _declared_orientation(poni) -> int | None:
    """The ``orientation`` a PONI file's ``Detector_config`` declares, None when absent."""
    try:
        text = Path(poni).read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"^\s*Detector_config\s*:\s*(\{.*\})\s*$", text, re.MULTILINE)
    if not match:
        return None
    try:
        config = json.loads(match.group(1))
    except ValueError:
        return None
    value = config.get("orientation") if isinstance(config, dict) else None
    return None if value is None else int(value)


def _detector_shape(integrator, shape, what):
    det = integrator.detector
    det_shape = det.shape if det.shape is not None else det.max_shape
    if det_shape is not None:
        det_shape = tuple(int(s) for s in det_shape)
        if shape is not None and tuple(shape) != det_shape:
            raise GeometryError(
                f"shape {tuple(shape)} differs from the detector's {det_shape}; give the "
                "frame shape of this detector.", field="shape")
        return det_shape
    if shape is None:
        raise GeometryError(
            f"{what} needs the detector shape, and the geometry records none (a PONI with "
            "'max_shape': null, as Dioptas writes): give shape=(rows, cols) of the frames.",
            field="shape")
    return tuple(int(s) for s in shape)


def _flippable(integrator, what):
    det = integrator.detector
    spline = "splinefile" if hasattr(type(det), "splinefile") else "splineFile"  # pyFAI 2025.09
    if getattr(det, spline, None) or not getattr(det, "IS_FLAT", True) or not getattr(
            det, "uniform_pixel", True):
        raise GeometryError(
            f"{what}: the detector {det.name} has a distortion spline or non-uniform pixels; "
            "spotkit converts only flat detectors with regular pixels. Recalibrate on the "
            "image in the file's orientation.", field="detector")


def _with_params(integrator, params, orientation=None, shape=None):
    """A new integrator with ``params`` (poni1, poni2, rot1..3) replaced."""
    pyfai()
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    config = integrator.get_config()
    config.update(params)
    det_config = dict(config.get("detector_config") or {})
    if orientation is not None:
        det_config["orientation"] = orientation
    if shape is not None and config.get("detector") in (None, "Detector") and \
            det_config.get("max_shape") is None:
        det_config["max_shape"] = list(shape)
    config["detector_config"] = det_config
    ai = AzimuthalIntegrator()
    ai.set_config(config)
    return ai


def _flipped_params(integrator, flip, shape):
    n1, n2 = shape
    det = integrator.detector
    poni1, poni2 = integrator.poni1, integrator.poni2
    rot1, rot2, rot3 = integrator.rot1, integrator.rot2, integrator.rot3
    if flip in ("flipud", "rot180"):
        poni1 = n1 * det.pixel1 - poni1
        rot2, rot3 = -rot2, -rot3
    if flip in ("fliplr", "rot180"):
        poni2 = n2 * det.pixel2 - poni2
        rot1, rot3 = -rot1, -rot3
    return {"poni1": float(poni1), "poni2": float(poni2), "rot1": float(rot1),
            "rot2": float(rot2), "rot3": float(rot3)}


def _to_native(integrator, shape=None, *, source=None):
    """The same geometry with the detector in pyFAI's native orientation (3)."""
    code = int(getattr(integrator.detector, "orientation", 3) or 3)
    flip = _ORIENTATION_FLIP.get(code, "unsupported")
    if flip is None:
        return integrator
    where = f" ({source})" if source else ""
    if flip == "unsupported":
        raise GeometryError(f"the geometry{where} declares detector orientation {code}, which "
                            "pyFAI does not support (only 1-4).", field="orientation")
    what = f"converting the orientation {code} of the geometry{where}"
    _flippable(integrator, what)
    shape = _detector_shape(integrator, shape, what)
    # with orientation code c, pyFAI's detector coordinates are those of the image flipped
    # by _ORIENTATION_FLIP[c]; the native geometry of the same pixels is flip_geometry's
    return _with_params(integrator, _flipped_params(integrator, flip, shape), orientation=3,
                        shape=shape)


def flip_geometry(integrator, flip: str, *, shape: tuple[int, int] | None = None):
    """The geometry of the same detector for the image flipped (or turned by 180 degrees).

    ``flip_geometry(ai, "flipud")`` integrates ``image`` exactly as ``ai`` integrates
    ``np.flipud(image)``: use it to bring a geometry made on a flipped view of the frames
    (Dioptas shows and calibrates them up-down flipped) back to the frames as stored. Each
    flip is its own inverse. The formulas are in this module's docstring.

    Parameters
    ----------
    integrator : AzimuthalIntegrator
        The geometry (a flat detector without distortion spline).
    flip : {"flipud", "fliplr", "rot180"}
        The transformation between the two images (see :data:`FLIPS`).
    shape : (int, int), optional
        Frame shape; needed when the geometry records no detector shape.

    Returns
    -------
    pyFAI.integrator.azimuthal.AzimuthalIntegrator
        A new integrator (the input is not changed), in pyFAI's native orientation. The
        2-theta and q maps are those of the flipped image; the azimuth chi is mirrored.

    Raises
    ------
    ValueError
        Unknown ``flip``.
    GeometryError
        No detector shape known, or a detector with a distortion spline.

    Examples
    --------
    >>> ai_dioptas = make_geometry(energy_kev=10, distance_m=1.5, beam_center=(97, 243),
    ...                            pixel_size_um=172, shape=(195, 487))
    >>> ai_file = flip_geometry(ai_dioptas, "flipud", shape=(195, 487))
    >>> [round(v, 1) for v in geometry_summary(ai_file)["beam_center"]]
    [97.0, 243.0]
    """
    if flip not in FLIPS:
        raise ValueError(f"unknown flip {flip!r}; choose one of {list(FLIPS)}")
    what = f"flipping the geometry ({flip})"
    _flippable(integrator, what)
    shape = _detector_shape(integrator, None if shape is None else tuple(shape)[-2:], what)
    integrator = _to_native(integrator, shape)
    return _with_params(integrator, _flipped_params(integrator, flip, shape), orientation=3,
                        shape=shape)


def check_geometry(integrator, shape, *, source: str | None = None) -> None:
    """Check that a geometry fits frames of ``shape`` before any processing.

    Parameters
    ----------
    integrator : AzimuthalIntegrator
        The geometry.
    shape : (int, int)
        Frame shape ``(rows, cols)`` (a 3-D series shape is accepted, its frame shape used).
    source : str, optional
        Where the geometry came from, for the message.

    Raises
    ------
    GeometryError
        When the detector of the geometry has another shape (a PONI made for another
        detector, or frames binned or cropped since the calibration).

    Examples
    --------
    >>> ai = make_geometry(energy_kev=10, distance_m=1.5, beam_center=(97, 243),
    ...                    pixel_size_um=172, shape=(195, 487))
    >>> check_geometry(ai, (195, 487))
    """
    shape = tuple(int(s) for s in tuple(shape)[-2:])
    det = integrator.detector
    det_shape = det.shape if det.shape is not None else det.max_shape
    where = f" ({source})" if source else ""
    if det_shape is None:
        logger.info("geometry%s has no detector shape; frames of %s are assumed to fit",
                    where, shape)
        return
    det_shape = tuple(int(s) for s in det_shape)
    if det_shape != shape:
        raise GeometryError(
            f"the geometry{where} is for a detector of {det_shape[0]} x {det_shape[1]} pixels "
            f"({det.name}), but the frames are {shape[0]} x {shape[1]}: the PONI file was made "
            "for another detector (or the frames were binned or cropped). Use the PONI file "
            "calibrated for this detector, or recalibrate (spotkit.scattering.calibrate).",
            field="shape",
        )


def _positive(value, field):
    if value is None:
        raise GeometryError(
            f"the geometry field {field!r} is missing; it is needed to build the "
            "integrator. Give it explicitly or use the PONI file of the calibration "
            "(load_geometry).", field=field)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"the geometry field {field!r} must be a number, got {value!r}",
                            field=field) from None
    if not math.isfinite(value) or value <= 0:
        raise GeometryError(f"the geometry field {field!r} must be a positive number, "
                            f"got {value!r}", field=field)
    return value


def make_geometry(*, energy_kev=None, wavelength_nm=None, distance_m, beam_center,
                  pixel_size_um, shape=None, rot1: float = 0.0, rot2: float = 0.0,
                  rot3: float = 0.0):
    """Build an azimuthal integrator from beamline geometry (no PONI file needed).

    Parameters
    ----------
    energy_kev, wavelength_nm : float
        Photon energy or wavelength; give one (both: they must agree within 0.1 %).
    distance_m : float
        Sample-detector distance, metres.
    beam_center : (float, float)
        Direct beam ``(row, col)`` in pixel-index coordinates (pixel ``(i, j)`` centred at
        ``(i, j)``), the point of normal incidence of an untilted detector.
    pixel_size_um : float or (float, float)
        Pixel size in micrometres (square, or ``(rows, cols)``).
    shape : (int, int), optional
        Detector ``(rows, cols)``; recorded so that :func:`check_geometry` can test frames.
    rot1, rot2, rot3 : float
        pyFAI detector rotations in radians (0 for a detector perpendicular to the beam).

    Returns
    -------
    pyFAI.integrator.azimuthal.AzimuthalIntegrator

    Raises
    ------
    GeometryError
        When a field is missing, not a positive number, or energy and wavelength disagree.

    Examples
    --------
    >>> ai = make_geometry(energy_kev=10, distance_m=1.5, beam_center=(97, 243),
    ...                    pixel_size_um=172, shape=(195, 487))
    >>> round(geometry_summary(ai)["wavelength_nm"], 4)
    0.124
    """
    pyfai()
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    if energy_kev is None and wavelength_nm is None:
        raise GeometryError("the geometry field 'energy_kev' (or 'wavelength_nm') is missing; "
                            "the photon energy is needed to compute q.", field="energy_kev")
    if wavelength_nm is not None:
        wavelength_nm = _positive(wavelength_nm, "wavelength_nm")
    if energy_kev is not None:
        energy_kev = _positive(energy_kev, "energy_kev")
        from_energy = HC_KEV_NM / energy_kev
        if wavelength_nm is not None and abs(from_energy / wavelength_nm - 1) > 1e-3:
            raise GeometryError(
                f"inconsistent geometry: energy_kev={energy_kev:g} means a wavelength of "
                f"{from_energy:.6g} nm, but wavelength_nm={wavelength_nm:.6g}; fix one of them.",
                field="wavelength_nm")
        wavelength_nm = from_energy
    distance_m = _positive(distance_m, "distance_m")
    pix = np.broadcast_to(np.asarray(pixel_size_um if pixel_size_um is not None else np.nan,
                                     dtype=float), (2,))
    p1 = _positive(None if np.isnan(pix[0]) else pix[0], "pixel_size_um") * 1e-6
    p2 = _positive(None if np.isnan(pix[1]) else pix[1], "pixel_size_um") * 1e-6
    if beam_center is None or len(beam_center) != 2:
        raise GeometryError(f"the geometry field 'beam_center' must be (row, col) in pixels, "
                            f"got {beam_center!r}", field="beam_center")
    try:
        row, col = (float(v) for v in beam_center)
    except (TypeError, ValueError):
        row = col = math.nan
    if not (math.isfinite(row) and math.isfinite(col)):
        raise GeometryError(f"the geometry field 'beam_center' is missing or not finite: "
                            f"{beam_center!r}; give the direct beam (row, col) in pixels.",
                            field="beam_center")
    if shape is not None:
        shape = tuple(int(s) for s in tuple(shape)[-2:])
        if len(shape) != 2 or min(shape) < 1:
            raise GeometryError(f"the geometry field 'shape' must be (rows, cols), got {shape}",
                                field="shape")
    detector = Detector(pixel1=p1, pixel2=p2, max_shape=shape)
    return AzimuthalIntegrator(dist=distance_m, poni1=(row + 0.5) * p1, poni2=(col + 0.5) * p2,
                               rot1=rot1, rot2=rot2, rot3=rot3, detector=detector,
                               wavelength=wavelength_nm * 1e-9)


def geometry_from_metadata(metadata):
    """Build an azimuthal integrator from the geometry recorded with a dataset.

    Parameters
    ----------
    metadata : mapping, xarray object or DatasetInfo
        ``energy_kev`` (or ``wavelength_nm``), ``distance_m``, ``beam_center`` (row, col in
        pixels), ``pixel_size_um`` and optionally ``shape`` (the frame shape is its last two
        values), as in ``spotkit.io.open_saxs(path).attrs`` or
        ``spotkit.io.read_metadata(path).metadata``.

    Returns
    -------
    pyFAI.integrator.azimuthal.AzimuthalIntegrator

    Raises
    ------
    GeometryError
        Naming the field that is missing or inconsistent.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import spotkit.io, spotkit.sim
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.h5"
    >>> truth = spotkit.sim.simulate_saxs_series(path, n_frames=2, onset_frame=1)
    >>> frames = spotkit.io.open_saxs(path)
    >>> ai = geometry_from_metadata(frames)
    >>> check_geometry(ai, frames.shape[-2:])
    """
    if hasattr(metadata, "attrs") and not isinstance(metadata, Mapping):
        metadata = metadata.attrs
    elif hasattr(metadata, "metadata") and not isinstance(metadata, Mapping):
        metadata = metadata.metadata
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping or an xarray object, got {type(metadata)}")
    shape = metadata.get("shape")
    return make_geometry(
        energy_kev=metadata.get("energy_kev"),
        wavelength_nm=metadata.get("wavelength_nm"),
        distance_m=metadata.get("distance_m"),
        beam_center=metadata.get("beam_center"),
        pixel_size_um=metadata.get("pixel_size_um"),
        shape=None if shape is None else tuple(shape)[-2:],
    )


def save_geometry(integrator, path) -> Path:
    """Write a geometry as a PONI file (pyFAI's format, read by pyFAI-calib2 and pyFAI.load).

    Parameters
    ----------
    integrator : AzimuthalIntegrator
        The geometry, e.g. refined by :func:`calibrate`.
    path : path-like
        The ``.poni`` file to write (replaced if it exists).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import pathlib, tempfile
    >>> ai = make_geometry(energy_kev=10, distance_m=1.5, beam_center=(97, 243),
    ...                    pixel_size_um=172, shape=(195, 487))
    >>> save_geometry(ai, pathlib.Path(tempfile.mkdtemp()) / "refined.poni").name
    'refined.poni'
    """
    path = Path(path)
    if path.exists():
        path.unlink()  # pyFAI appends to an existing PONI file
    integrator.save(str(path))
    return path


def geometry_summary(integrator) -> dict:
    """Geometry as plain numbers: distance, beam centre in pixels, energy, PONI parameters.

    Parameters
    ----------
    integrator : AzimuthalIntegrator

    Returns
    -------
    dict
        ``distance_m``, ``beam_center`` (row, col in pixel-index coordinates, for an
        untilted detector the direct beam), ``pixel_size_um``, ``energy_kev``,
        ``wavelength_nm``, ``rot1``..``rot3`` (rad), ``shape`` and ``poni`` (pyFAI's
        configuration as a JSON string).

    Examples
    --------
    >>> ai = make_geometry(energy_kev=10, distance_m=1.48, beam_center=(97, 243),
    ...                    pixel_size_um=172, shape=(195, 487))
    >>> round(geometry_summary(ai)["distance_m"], 3)
    1.48
    """
    p1, p2 = integrator.detector.pixel1, integrator.detector.pixel2
    wl_nm = integrator.wavelength * 1e9
    shape = integrator.detector.shape or integrator.detector.max_shape
    return {
        "distance_m": float(integrator.dist),
        "beam_center": [float(integrator.poni1 / p1 - 0.5), float(integrator.poni2 / p2 - 0.5)],
        "pixel_size_um": [float(p1 * 1e6), float(p2 * 1e6)],
        "energy_kev": float(HC_KEV_NM / wl_nm),
        "wavelength_nm": float(wl_nm),
        "rot1": float(integrator.rot1),
        "rot2": float(integrator.rot2),
        "rot3": float(integrator.rot3),
        "shape": None if shape is None else [int(s) for s in shape],
        "poni": json.dumps(integrator.get_config(), default=str),
    }


# -- does the geometry fit the image? ------------------------------------------------------

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


def _local_contrast(image, valid, *, with_weight: bool = False):
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


def _ring_sharpness(image, integrator, valid) -> dict:
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


def _beam_pixel(integrator):
    """The direct beam (row, col) in pixel-index coordinates, tilts included."""
    fit2d = integrator.getFit2D()
    return fit2d["centerY"] - 0.5, fit2d["centerX"] - 0.5


def _mask_orientation(mask, integrator):
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


def check_orientation(image, integrator, *, mask=None, warn: bool = True,
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
    if image is not None:
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
                   "load it with load_geometry(..., orientation='dioptas'), or convert it "
                   "with flip_geometry; a mask drawn on a flipped image needs np.flipud.")
        rows, cols = integrator.detector.shape or shape or (0, 0)
        r, c = _beam_pixel(integrator)
        if abs(r - (rows - 1) / 2) < 5 or abs(c - (cols - 1) / 2) < 5:
            message += (" The beam is within 5 pixels of the detector's middle, where a flip "
                        "moves it little: the geometry may instead be off by a few pixels.")
    if warn and not consistent:
        warnings.warn(message, GeometryWarning, stacklevel=2)
    return OrientationCheck(sharpness=sharp, best=best, mask_best=mask_best,
                            consistent=consistent, message=message)
