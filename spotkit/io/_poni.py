"""Detector geometry files: pyFAI's PONI format, read and written.

A PONI file (written by pyFAI-calib2, Dioptas, :func:`save_geometry` or
:func:`spotkit.sim.simulate_saxs_series`) holds the geometry of one detector. The geometry
:func:`load_geometry` returns always refers to the image as the data file holds it (pyFAI's
native orientation): a PONI that declares another orientation, or was made on a flipped view
of the image (Dioptas), is converted (the maths is :func:`spotkit.scattering.flip_geometry`'s,
explained in :mod:`spotkit._pyfai`). Geometries themselves are built, checked and flipped by
:mod:`spotkit.scattering` (arrays and objects in, out); this module only reads and writes them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from spotkit._pyfai import (
    GeometryWarning,
    check_geometry,
    flip_geometry,
    pyfai,
    to_native,
    without_auto_gc,
)
from spotkit.errors import InputFileError

if TYPE_CHECKING:  # pyFAI has no type information: Any for the type checker
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

logger = logging.getLogger(__name__)

__all__ = ["ORIENTATIONS", "load_geometry", "save_geometry"]

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


def load_geometry(poni: str | os.PathLike[str], *, shape: tuple[int, ...] | None = None,
                  orientation: str = "as-file") -> AzimuthalIntegrator:
    """Load a pyFAI geometry (PONI file) as an azimuthal integrator for the file's image.

    Parameters
    ----------
    poni : path-like
        PONI file written by pyFAI-calib2, Dioptas, :func:`save_geometry` or
        :func:`spotkit.sim.simulate_saxs_series`.
    shape : (int, int), optional
        Shape of the frames it will integrate; checked against the PONI's detector
        (see :func:`spotkit.scattering.check_geometry`), so a PONI made for another detector
        fails here. Needed to convert an orientation when the PONI does not record the
        detector shape.
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
        (:func:`spotkit.scattering.flip_geometry`), so beam centres read as pixel indices of
        the frames.

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
    >>> from spotkit.scattering import make_geometry
    >>> poni = pathlib.Path(tempfile.mkdtemp()) / "series.poni"
    >>> _ = save_geometry(make_geometry(energy_kev=10, distance_m=1.5, beam_center=(97, 243),
    ...                                 pixel_size_um=172, shape=(195, 487)), poni)
    >>> ai = load_geometry(poni, shape=(195, 487))
    >>> round(ai.dist, 3)
    1.5
    >>> flipped = load_geometry(poni, shape=(195, 487), orientation="dioptas")  # Dioptas' view
    """
    pyfai()
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}; choose one of "
                         f"{sorted(ORIENTATIONS)}")
    if not os.path.isfile(poni):
        raise InputFileError(poni, "PONI geometry file does not exist.",
                             hint="Calibrate with pyFAI-calib2 or pass the right path.")
    try:
        # pyFAI.load(poni) (AzimuthalIntegrator.sload) without its gc.collect() on load
        ai = without_auto_gc(AzimuthalIntegrator())
        ai.load(str(poni))
    except Exception as exc:
        raise InputFileError(poni, f"cannot be read as a PONI geometry ({exc}).",
                             hint="Write it with pyFAI-calib2 or spotkit.io.save_geometry."
                             ) from exc
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
        ai = to_native(ai, shape, source=str(poni))
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


def _declared_orientation(poni: str | os.PathLike[str]) -> int | None:
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


def save_geometry(integrator: AzimuthalIntegrator, path: str | os.PathLike[str]) -> Path:
    """Write a geometry as a PONI file (pyFAI's format, read by pyFAI-calib2 and pyFAI.load).

    Parameters
    ----------
    integrator : AzimuthalIntegrator
        The geometry, e.g. refined by :func:`spotkit.scattering.calibrate`.
    path : path-like
        The ``.poni`` file to write (replaced if it exists).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.scattering import make_geometry
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
