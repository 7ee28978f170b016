"""Detector geometry: pyFAI integrators built from a beamline's numbers, checked, summarised.

pyFAI describes a flat detector by its distance, its point of normal incidence (``poni1``,
``poni2``, metres from the detector corner along rows and columns) and three rotations.
spotkit builds the same object from the geometry that a beamline writes into its NeXus file
(energy, distance, beam centre, pixel size), with the beam centre in pixel-index coordinates
(pixel ``(i, j)`` centred at ``(i, j)``), so ``poni1 = (row + 0.5) * pixel1`` as in
:mod:`spotkit.sim`. PONI files (pyFAI-calib2's) are read and written by
:func:`spotkit.io.load_geometry` and :func:`spotkit.io.save_geometry`.

Every geometry spotkit returns refers to the image as the file holds it (pyFAI's native
orientation); :func:`flip_geometry` converts a geometry made on a flipped view of the image
(the formulas are in :mod:`spotkit._pyfai`, shared with the PONI reader), and
:func:`spotkit.scattering.check_orientation` tells when one is needed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from spotkit._pyfai import (
    FLIPS,
    GeometryWarning,
    check_geometry,
    flip_geometry,
    pyfai,
    without_auto_gc,
)
from spotkit.errors import GeometryError

if TYPE_CHECKING:  # pyFAI has no type information: Any for the type checker
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

logger = logging.getLogger(__name__)

__all__ = [
    "FLIPS",
    "GeometryError",
    "GeometryWarning",
    "check_geometry",
    "flip_geometry",
    "geometry_from_metadata",
    "geometry_summary",
    "make_geometry",
    "pyfai",
]

HC_KEV_NM = 1.239841984  # h c in keV nm


def _positive(value: Any, field: str) -> float:
    if value is None:
        raise GeometryError(
            f"the geometry field {field!r} is missing; it is needed to build the "
            "integrator. Give it explicitly or use the PONI file of the calibration "
            "(spotkit.io.load_geometry).", field=field)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"the geometry field {field!r} must be a number, got {value!r}",
                            field=field) from None
    if not math.isfinite(value) or value <= 0:
        raise GeometryError(f"the geometry field {field!r} must be a positive number, "
                            f"got {value!r}", field=field)
    return value


def make_geometry(*, energy_kev: float | None = None, wavelength_nm: float | None = None,
                  distance_m: float | None, beam_center: Sequence[float] | None,
                  pixel_size_um: float | Sequence[float] | npt.ArrayLike | None,
                  shape: Sequence[int] | None = None, rot1: float = 0.0, rot2: float = 0.0,
                  rot3: float = 0.0) -> AzimuthalIntegrator:
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
    from pyFAI.integrator import azimuthal

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
    assert wavelength_nm is not None  # one of the two was given (checked above)
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
    return without_auto_gc(azimuthal.AzimuthalIntegrator(
        dist=distance_m, poni1=(row + 0.5) * p1, poni2=(col + 0.5) * p2, rot1=rot1, rot2=rot2,
        rot3=rot3, detector=detector, wavelength=wavelength_nm * 1e-9))


def geometry_from_metadata(metadata: Mapping[str, Any] | Any) -> AzimuthalIntegrator:
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


def geometry_summary(integrator: AzimuthalIntegrator) -> dict[str, Any]:
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
