"""GISAXS / GIWAXS reciprocal-space maps (q_ip, q_oop) with pyFAI's fibre integrator.

pyFAI's ``FiberIntegrator`` takes the incidence angle in **radians** unless told otherwise
(``angle_unit="deg"``), a classic pitfall: 0.2 read as radians is 11.5 degrees. spotkit's
API takes degrees only, in parameters named ``*_deg``, and passes the unit to pyFAI.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from spotkit._pyfai import without_auto_gc
from spotkit.scattering._geometry import pyfai
from spotkit.scattering._integrate import (
    _DELTA_DUMMY,
    _DUMMY,
    _check_image,
    check_mask,
    prepare_frame,
    provenance,
)

if TYPE_CHECKING:  # pyFAI has no type information: Any for the type checker
    import xarray as xr
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

logger = logging.getLogger(__name__)

__all__ = ["GI_METHODS", "GI_UNITS", "SAMPLE_ORIENTATION_IMAGE", "integrate_grazing"]

#: q units of the maps: spotkit name -> (pyFAI in-plane unit, out-of-plane unit).
GI_UNITS = {"nm^-1": ("qip_nm^-1", "qoop_nm^-1"), "A^-1": ("qip_A^-1", "qoop_A^-1")}
#: Methods without pixel splitting (pyFAI warns that splitting is wrong in grazing incidence).
GI_METHODS = {"csr": ("no", "csr", "cython"), "histogram": ("no", "histogram", "cython")}
#: pyFAI ``sample_orientation`` (EXIF code) for frames stored with row 0 at the top of the
#: detector (as detectors write them and as :mod:`spotkit.sim` does): q_oop points up
#: (towards row 0) and q_ip increases with the column index.
SAMPLE_ORIENTATION_IMAGE = 4


def as_fiber_integrator(integrator):
    """The same geometry as a pyFAI ``FiberIntegrator`` (returned unchanged if it is one)."""
    pyfai()
    from pyFAI.integrator.fiber import FiberIntegrator

    if isinstance(integrator, FiberIntegrator):
        return integrator
    logger.debug("promoting %s to a FiberIntegrator (its lookup table is built anew)",
                 type(integrator).__name__)
    return without_auto_gc(integrator.promote("pyFAI.integrator.fiber.FiberIntegrator"))


def integrate_grazing(image: npt.ArrayLike, integrator: AzimuthalIntegrator, *,
                      incidence_angle_deg: float, tilt_angle_deg: float = 0.0,
                      npt_ip: int = 300, npt_oop: int = 300, unit: str = "nm^-1",
                      ip_range: tuple[float, float] | None = None,
                      oop_range: tuple[float, float] | None = None,
                      sample_orientation: int = SAMPLE_ORIENTATION_IMAGE, method: str = "csr",
                      mask: npt.ArrayLike | None = None,
                      correct_solid_angle: bool = True) -> xr.DataArray:
    """Map a grazing-incidence frame to reciprocal space: intensity against (q_oop, q_ip).

    Parameters
    ----------
    image : array_like, shape (rows, cols)
        Counts; negative and non-finite pixels are ignored.
    integrator : AzimuthalIntegrator
        Geometry; the direct beam is its point of normal incidence. Pass a pyFAI
        ``FiberIntegrator`` (``ai.promote("FiberIntegrator")``) to reuse its lookup table
        over many frames; another integrator is promoted on each call.
    incidence_angle_deg : float
        Incidence angle of the beam on the sample, in **degrees** (e.g. 0.2).
    tilt_angle_deg : float
        Roll of the sample horizon about the beam, degrees.
    npt_ip, npt_oop : int
        Number of in-plane and out-of-plane bins.
    unit : {"nm^-1", "A^-1"}
        Unit of q_ip and q_oop.
    ip_range, oop_range : (float, float), optional
        Ranges in ``unit``.
    sample_orientation : int
        pyFAI's EXIF orientation code of the image; the default
        :data:`SAMPLE_ORIENTATION_IMAGE` (4) is for row 0 at the top of the detector.
    method : {"csr", "histogram"}
        Integration without pixel splitting.
    mask : array_like of bool, optional
        True on invalid pixels.
    correct_solid_angle : bool
        Correct for the solid angle of each pixel.

    Returns
    -------
    xarray.DataArray
        ``intensity`` with dims ``(q_oop, q_ip)`` (coordinates in ``unit``), empty bins
        (the missing wedge, the detector's edge) as NaN; provenance in ``attrs`` with
        ``incidence_angle_deg``.

    Examples
    --------
    >>> import numpy as np
    >>> from spotkit.scattering import make_geometry
    >>> ai = make_geometry(energy_kev=10, distance_m=1.5, beam_center=(20, 243),
    ...                    pixel_size_um=172, shape=(195, 487))
    >>> frame = np.random.default_rng(0).poisson(100, size=(195, 487)).astype(float)
    >>> gi = integrate_grazing(frame, ai, incidence_angle_deg=0.2, npt_ip=100, npt_oop=80)
    >>> gi.shape
    (80, 100)
    >>> gi.dims  # gi.plot(robust=True) shows the map in JupyterLab
    ('q_oop', 'q_ip')
    """
    import xarray as xr

    if unit not in GI_UNITS:
        raise ValueError(f"unknown unit {unit!r}; choose one of {sorted(GI_UNITS)}")
    if method not in GI_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(GI_METHODS)} "
                         "(grazing-incidence maps are made without pixel splitting)")
    if sample_orientation not in range(1, 9):
        raise ValueError(f"sample_orientation must be an EXIF code 1..8, got {sample_orientation}")
    for name, value in (("incidence_angle_deg", incidence_angle_deg),
                        ("tilt_angle_deg", tilt_angle_deg)):
        if value is None or not math.isfinite(float(value)) or abs(float(value)) >= 90:
            raise ValueError(f"{name} must be a finite angle in degrees (|angle| < 90), "
                             f"got {value!r}")
    if 0 < abs(incidence_angle_deg) < 0.01:
        logger.warning("incidence_angle_deg=%g is very small: spotkit takes DEGREES (was it "
                       "given in radians? %g rad = %.3g deg)", incidence_angle_deg,
                       incidence_angle_deg, math.degrees(incidence_angle_deg))
    image = _check_image(image, integrator)
    mask = check_mask(mask, image.shape)
    fiber = as_fiber_integrator(integrator)
    unit_ip, unit_oop = GI_UNITS[unit]
    res = fiber.integrate2d_grazing_incidence(
        prepare_frame(image), npt_ip=int(npt_ip), npt_oop=int(npt_oop), unit_ip=unit_ip,
        unit_oop=unit_oop, ip_range=ip_range, oop_range=oop_range,
        incident_angle=float(incidence_angle_deg), tilt_angle=float(tilt_angle_deg),
        angle_unit="deg", sample_orientation=int(sample_orientation), mask=mask,
        dummy=_DUMMY, delta_dummy=_DELTA_DUMMY, method=GI_METHODS[method],
        correctSolidAngle=correct_solid_angle)
    intensity = np.asarray(res.intensity, dtype=np.float64)
    count = getattr(res, "count", None)
    if count is not None:
        intensity[np.asarray(count) <= 0] = np.nan
    attrs = provenance(integrator, method=method, unit=f"q_{unit}", mask=mask,
                       extra={"incidence_angle_deg": float(incidence_angle_deg),
                              "tilt_angle_deg": float(tilt_angle_deg),
                              "sample_orientation": int(sample_orientation),
                              "npt_ip": int(npt_ip), "npt_oop": int(npt_oop)})
    attrs.pop("error_model")
    return xr.DataArray(
        intensity,
        dims=("q_oop", "q_ip"),
        coords={
            "q_ip": ("q_ip", np.asarray(res.inplane, np.float64),
                     {"units": unit, "long_name": "in-plane q"}),
            "q_oop": ("q_oop", np.asarray(res.outofplane, np.float64),
                      {"units": unit, "long_name": "out-of-plane q"}),
        },
        name="intensity",
        attrs=attrs,
    )
