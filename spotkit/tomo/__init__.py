"""Tomography: pre-processing, centre of rotation and reconstruction.

Science functions only: arrays in, arrays out, no I/O. Whole-scan calls
(:meth:`TomoPipeline.run`, :func:`preview`) delegate the reading and writing to the runners
that :mod:`spotkit.pipelines` registers; the centre-of-rotation widget is
:class:`spotkit.widgets.CenterFinder`. Layout and geometry follow tomopy
(:data:`CONVENTION`): projections are ``[angles, rows, columns]``, sinograms
``[angles, columns]`` (or ``[rows, angles, columns]`` for a stack), angles in radians (an
xarray ``theta`` with ``units="degrees"`` is converted), the centre of rotation as tomopy
gives it (``n_cols / 2`` is the middle of the detector), images oriented as ``tomopy.recon``
returns them.
"""

from spotkit.tomo._angles import as_radians
from spotkit.tomo._center import (
    CENTER_METHODS,
    CenterEstimate,
    CenterWarning,
    find_center,
    find_center_pc,
    find_center_vo,
)
from spotkit.tomo._pipeline import PipelineResult, Problem, TomoPipeline, parse_memory
from spotkit.tomo._prep import (
    circular_mask,
    downsample,
    minus_log,
    normalize,
    remove_zingers,
    retrieve_phase,
)
from spotkit.tomo._preview import preview, preview_from_arrays
from spotkit.tomo._recon import ALGORITHMS, FILTERS, ReconInfo, reconstruct, reconstruct_with_info
from spotkit.tomo._stripe import STRIPE_METHODS, remove_stripes
from spotkit.tomo._sweep import SWEEP_METRICS, center_sweep, plot_sweep, sweep_metric
from spotkit.tomo._tilt import AxisTilt, detect_tilt, find_center_per_row
from spotkit.tomo.backends._base import CONVENTION

__all__ = [
    "ALGORITHMS",
    "CENTER_METHODS",
    "CONVENTION",
    "FILTERS",
    "STRIPE_METHODS",
    "SWEEP_METRICS",
    "AxisTilt",
    "CenterEstimate",
    "CenterWarning",
    "PipelineResult",
    "Problem",
    "ReconInfo",
    "TomoPipeline",
    "as_radians",
    "center_sweep",
    "circular_mask",
    "detect_tilt",
    "downsample",
    "find_center",
    "find_center_pc",
    "find_center_per_row",
    "find_center_vo",
    "minus_log",
    "normalize",
    "parse_memory",
    "plot_sweep",
    "preview",
    "preview_from_arrays",
    "reconstruct",
    "reconstruct_with_info",
    "remove_stripes",
    "remove_zingers",
    "retrieve_phase",
    "sweep_metric",
]


#: Moved out of the science package (issue 13): old name -> (new module, new name). The
#: old names work for one release with a DeprecationWarning; importlib keeps the science
#: package free of static imports of widgets and I/O.
_MOVED = {
    "CenterFinder": ("spotkit.widgets", "CenterFinder"),
    "save_preview_png": ("spotkit.io", "write_preview_png"),
}


def __getattr__(name):
    if name in _MOVED:
        import importlib
        import warnings

        module, new = _MOVED[name]
        warnings.warn(f"spotkit.tomo.{name} moved to {module}.{new}; the old name goes in the "
                      "next release", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), new)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
