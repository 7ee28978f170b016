"""Tomography: pre-processing, centre of rotation and reconstruction.

Science functions only: arrays in, arrays out, no I/O. Layout and geometry follow tomopy
(:data:`CONVENTION`): projections are ``[angles, rows, columns]``, sinograms
``[angles, columns]`` (or ``[rows, angles, columns]`` for a stack), angles in radians (an
xarray ``theta`` with ``units="degrees"`` is converted), the centre of rotation as tomopy
gives it (``n_cols / 2`` is the middle of the detector), images oriented as ``tomopy.recon``
returns them.
"""

from spotkit.tomo._center import (
    CENTER_METHODS,
    AxisTilt,
    CenterEstimate,
    CenterWarning,
    detect_tilt,
    find_center,
    find_center_pc,
    find_center_per_row,
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
from spotkit.tomo._preview import preview, save_preview_png
from spotkit.tomo._recon import ALGORITHMS, FILTERS, ReconInfo, reconstruct, reconstruct_with_info
from spotkit.tomo._stripe import STRIPE_METHODS, remove_stripes
from spotkit.tomo._sweep import SWEEP_METRICS, center_sweep, plot_sweep, sweep_metric
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
    "CenterFinder",
    "CenterWarning",
    "PipelineResult",
    "Problem",
    "ReconInfo",
    "TomoPipeline",
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
    "reconstruct",
    "reconstruct_with_info",
    "remove_stripes",
    "remove_zingers",
    "retrieve_phase",
    "save_preview_png",
    "sweep_metric",
]


def __getattr__(name):
    # CenterFinder needs ipywidgets (the optional ``lab`` extra): imported on first use only.
    if name == "CenterFinder":
        from spotkit.tomo._widgets import CenterFinder

        return CenterFinder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
