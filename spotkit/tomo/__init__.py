"""Tomography: pre-processing, centre of rotation and reconstruction.

Science functions only: arrays in, arrays out, no I/O. Layout follows tomopy:
projections are ``[angles, rows, columns]``, sinograms ``[angles, columns]`` (or
``[rows, angles, columns]`` for a stack), angles in radians, the centre of rotation in detector
column coordinates (column ``j`` has its centre at ``j``).
"""

from spotkit.tomo._center import find_center
from spotkit.tomo._pipeline import PipelineResult, Problem, TomoPipeline, parse_memory
from spotkit.tomo._prep import minus_log, normalize
from spotkit.tomo._preview import preview, save_preview_png
from spotkit.tomo._recon import FILTERS, reconstruct

__all__ = [
    "FILTERS",
    "PipelineResult",
    "Problem",
    "TomoPipeline",
    "find_center",
    "minus_log",
    "normalize",
    "parse_memory",
    "preview",
    "reconstruct",
    "save_preview_png",
]
