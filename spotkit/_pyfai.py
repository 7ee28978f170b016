"""pyFAI geometry shared by the data layer and the science layer (no file access here).

:mod:`spotkit.io` reads and writes PONI files (:func:`spotkit.io.load_geometry` converts the
orientation a file declares or was made for); :mod:`spotkit.scattering` flips and checks
geometries (:func:`spotkit.scattering.flip_geometry`, :func:`spotkit.scattering.check_geometry`).
Both use the maths here, so there is one copy of it, and neither layer imports the other.
The public face is :mod:`spotkit.scattering` (and :mod:`spotkit.io` for files).

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

import logging
from typing import TYPE_CHECKING, Any

from spotkit.errors import GeometryError

if TYPE_CHECKING:  # pyFAI has no type information: these are Any for the type checker
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

logger = logging.getLogger(__name__)

__all__ = [
    "FLIPS",
    "ORIENTATION_FLIP",
    "GeometryWarning",
    "check_geometry",
    "flip_geometry",
    "pyfai",
    "to_native",
]

#: Image flips :func:`flip_geometry` converts a geometry through (each is its own inverse).
FLIPS = ("flipud", "fliplr", "rot180")
#: pyFAI's detector orientation codes -> the flip that maps them onto its native one (3).
ORIENTATION_FLIP: dict[int, str | None] = {0: None, 3: None, 2: "flipud", 4: "fliplr",
                                           1: "rot180"}

class GeometryWarning(UserWarning):
    """A geometry looks inconsistent with the image or the mask it is used with.

    Raised as a warning (``warnings.warn``) by :func:`check_orientation` and by the
    integration functions, which run it: the frames' rings are sharper with the geometry
    flipped, or the beamstop of the mask is not where the geometry puts the beam.
    """


def pyfai() -> Any:
    """Import pyFAI, or say which extra installs it."""
    try:
        import pyFAI
    except ImportError as exc:  # pragma: no cover - pyFAI is installed in the test env
        raise ImportError(
            'azimuthal integration needs pyFAI: pip install "spotkit[scattering]"'
        ) from exc
    return pyFAI


def without_auto_gc(geometry: Any) -> Any:
    """Stop a pyFAI geometry from running Python's garbage collector on every change.

    pyFAI calls ``gc.collect()`` each time a geometry's parameters or wavelength are set
    (to free OpenCL buffers at once). A full collection costs time in proportion to every
    object the process holds: in a long-running watcher or notebook kernel a calibration's
    dozen refinement steps then take seconds each. spotkit integrates on the CPU, whose
    buffers are freed by reference counting, so its geometries turn it off.

    Parameters
    ----------
    geometry : pyFAI geometry or integrator
        Changed in place (objects without ``auto_gc`` are left as they are).

    Returns
    -------
    The same object.

    Examples
    --------
    >>> from pyFAI.integrator.azimuthal import AzimuthalIntegrator
    >>> without_auto_gc(AzimuthalIntegrator()).auto_gc
    False
    """
    if hasattr(geometry, "auto_gc"):
        geometry.auto_gc = False
    return geometry


def integrator_from_config(config: dict[str, Any]) -> AzimuthalIntegrator:
    """A new pyFAI integrator set up from ``config`` (``get_config()``'s form), without
    ``auto_gc`` (:func:`without_auto_gc`), so setting it up collects no garbage either."""
    from pyFAI.integrator import azimuthal

    ai = without_auto_gc(azimuthal.AzimuthalIntegrator())
    ai.set_config(config)
    return ai


def _detector_shape(integrator: AzimuthalIntegrator, shape: tuple[int, ...] | None,
                    what: str) -> tuple[int, int]:
    det = integrator.detector
    det_shape = det.shape if det.shape is not None else det.max_shape
    if det_shape is not None:
        rows, cols = (int(s) for s in det_shape)
        if shape is not None and tuple(shape) != (rows, cols):
            raise GeometryError(
                f"shape {tuple(shape)} differs from the detector's {(rows, cols)}; give the "
                "frame shape of this detector.", field="shape")
        return rows, cols
    if shape is None:
        raise GeometryError(
            f"{what} needs the detector shape, and the geometry records none (a PONI with "
            "'max_shape': null, as Dioptas writes): give shape=(rows, cols) of the frames.",
            field="shape")
    rows, cols = (int(s) for s in shape)
    return rows, cols


def _flippable(integrator: AzimuthalIntegrator, what: str) -> None:
    det = integrator.detector
    spline = "splinefile" if hasattr(type(det), "splinefile") else "splineFile"  # pyFAI 2025.09
    if getattr(det, spline, None) or not getattr(det, "IS_FLAT", True) or not getattr(
            det, "uniform_pixel", True):
        raise GeometryError(
            f"{what}: the detector {det.name} has a distortion spline or non-uniform pixels; "
            "spotkit converts only flat detectors with regular pixels. Recalibrate on the "
            "image in the file's orientation.", field="detector")


def _with_params(integrator: AzimuthalIntegrator, params: dict[str, float],
                 orientation: int | None = None,
                 shape: tuple[int, int] | None = None) -> AzimuthalIntegrator:
    """A new integrator with ``params`` (poni1, poni2, rot1..3) replaced."""
    pyfai()
    config = integrator.get_config()
    config.update(params)
    det_config = dict(config.get("detector_config") or {})
    if orientation is not None:
        det_config["orientation"] = orientation
    if shape is not None and config.get("detector") in (None, "Detector") and \
            det_config.get("max_shape") is None:
        det_config["max_shape"] = list(shape)
    config["detector_config"] = det_config
    return integrator_from_config(config)


def _flipped_params(integrator: AzimuthalIntegrator, flip: str,
                    shape: tuple[int, int]) -> dict[str, float]:
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


def to_native(integrator: AzimuthalIntegrator, shape: tuple[int, ...] | None = None, *,
              source: str | None = None) -> AzimuthalIntegrator:
    """The same geometry with the detector in pyFAI's native orientation (3)."""
    code = int(getattr(integrator.detector, "orientation", 3) or 3)
    flip = ORIENTATION_FLIP.get(code, "unsupported")
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
    # by ORIENTATION_FLIP[c]; the native geometry of the same pixels is flip_geometry's
    return _with_params(integrator, _flipped_params(integrator, flip, shape), orientation=3,
                        shape=shape)


def flip_geometry(integrator: AzimuthalIntegrator, flip: str, *,
                  shape: tuple[int, ...] | None = None) -> AzimuthalIntegrator:
    """The geometry of the same detector for the image flipped (or turned by 180 degrees).

    ``flip_geometry(ai, "flipud")`` integrates ``image`` exactly as ``ai`` integrates
    ``np.flipud(image)``: use it to bring a geometry made on a flipped view of the frames
    (Dioptas shows and calibrates them up-down flipped) back to the frames as stored. Each
    flip is its own inverse. The formulas are in :mod:`spotkit._pyfai`'s docstring.

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
    >>> from spotkit.scattering import geometry_summary, make_geometry
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
    integrator = to_native(integrator, shape)
    return _with_params(integrator, _flipped_params(integrator, flip, shape), orientation=3,
                        shape=shape)


def check_geometry(integrator: AzimuthalIntegrator, shape: tuple[int, ...], *,
                   source: str | None = None) -> None:
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
    >>> from spotkit.scattering import make_geometry
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

