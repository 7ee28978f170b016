"""Scattering: SAXS/WAXS/GISAXS reduction of detector frames with pyFAI.

pyFAI is the field's standard for azimuthal integration; spotkit wraps it, it does not
rewrite it. Install it with ``pip install "spotkit[scattering]"``.

* Geometry: :func:`make_geometry`, :func:`geometry_from_metadata` (the NeXus metadata of a
  series), :func:`check_geometry`, :func:`geometry_summary`, :func:`flip_geometry`; PONI
  files are read (with the image orientation they were made for: ``orientation="dioptas"``)
  and written by :func:`spotkit.io.load_geometry` and :func:`spotkit.io.save_geometry`;
  :func:`check_orientation` warns
  (:class:`GeometryWarning`) when an image's rings or a mask's beamstop say the geometry
  is for a flipped image. :func:`calibrate` refines distance and beam centre on an image of
  a standard (AgBh, LaB6) from a coarse search over beam centre and ring assignment,
  reports residuals per ring (:class:`RingResidual`) and refuses an inconsistent fit
  (:class:`CalibrationError`) or warns (:class:`CalibrationWarning`).
* Masks (True = invalid): :func:`gap_mask`, :func:`beamstop_mask`, :func:`hot_pixel_mask`,
  :func:`threshold_mask`, :func:`shadow_mask`, :func:`combine_masks` (saved and loaded as
  EDF/TIFF images, pyFAI-calib2's format, by :func:`spotkit.io.save_mask` and
  :func:`spotkit.io.load_mask`).
* Integration: :func:`integrate_1d` (I(q) or I(2theta) with Poisson errors),
  :func:`integrate_2d` (cake, chi x q), :func:`integrate_grazing` (GISAXS/GIWAXS maps,
  q_oop x q_ip, incidence angle in degrees) and :func:`integrate_frames` (a frame series,
  lazily with dask, to an xarray Dataset with provenance); :class:`FrameReducer` (frame
  after frame, as ``spotkit live`` reduces them: the same numbers as :func:`integrate_1d`
  at the speed of pyFAI's compiled engine).
* Model fits: :func:`fit_sas` fits a sasmodels model (:data:`SAS_MODELS`: spheres,
  core-shell spheres, Guinier-Porod, Gaussian coils, peaks) to one I(q) with bumps, starting
  values found automatically, uncertainties from the covariance (:class:`SasFit`; q in nm^-1
  converted to sasmodels' Å^-1); :func:`sas_model_curve` computes a model's I(q).
"""

from spotkit.scattering._calibrate import calibrate
from spotkit.scattering._calibration_results import (
    CalibrationError,
    CalibrationResult,
    CalibrationWarning,
    RingResidual,
)
from spotkit.scattering._geometry import (
    FLIPS,
    GeometryError,
    GeometryWarning,
    check_geometry,
    flip_geometry,
    geometry_from_metadata,
    geometry_summary,
    make_geometry,
)
from spotkit.scattering._grazing import integrate_grazing
from spotkit.scattering._integrate import (
    METHODS,
    UNITS,
    integrate_1d,
    integrate_2d,
    integrate_frames,
)
from spotkit.scattering._mask import (
    beamstop_mask,
    combine_masks,
    gap_mask,
    hot_pixel_mask,
    mask_summary,
    shadow_mask,
    threshold_mask,
)
from spotkit.scattering._orientation import OrientationCheck, check_orientation
from spotkit.scattering._reducer import FrameReducer
from spotkit.scattering._sasfit import FIT_METHODS, SasFit, SasFitError, fit_sas, sas_model_curve
from spotkit.scattering._sasfit_models import SAS_MODELS

__all__ = [
    "FIT_METHODS",
    "FLIPS",
    "METHODS",
    "SAS_MODELS",
    "UNITS",
    "CalibrationError",
    "CalibrationResult",
    "CalibrationWarning",
    "FrameReducer",
    "GeometryError",
    "GeometryWarning",
    "OrientationCheck",
    "RingResidual",
    "SasFit",
    "SasFitError",
    "beamstop_mask",
    "calibrate",
    "check_geometry",
    "check_orientation",
    "combine_masks",
    "fit_sas",
    "flip_geometry",
    "gap_mask",
    "geometry_from_metadata",
    "geometry_summary",
    "hot_pixel_mask",
    "integrate_1d",
    "integrate_2d",
    "integrate_frames",
    "integrate_grazing",
    "make_geometry",
    "mask_summary",
    "sas_model_curve",
    "shadow_mask",
    "threshold_mask",
]


#: public names that left the science package (file I/O) -> their new module
_MOVED = {"save_mask": "spotkit.io", "load_mask": "spotkit.io",
          "load_geometry": "spotkit.io", "save_geometry": "spotkit.io",
          "ORIENTATIONS": "spotkit.io"}


def __getattr__(name: str) -> object:
    # file I/O left the science package: deprecated aliases for one release
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(f"spotkit.scattering.{name} moved to {_MOVED[name]}.{name}; the old "
                      "name goes in the next release", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
