"""The change features: their names, directions of change, defaults and size limits."""

from __future__ import annotations

__all__ = ["BAND_FEATURES", "FEATURES"]


#: every feature :func:`frame_features` can compute, with its direction of change:
#: +1 grows with change, -1 falls with change, 0 may move either way
FEATURES = {"unique_count": 0, "difference": +1, "ssim": -1, "mean": 0, "median": 0}
#: features with one value per q band (profiles) or detector region (frames) and frame,
#: with their direction of change: ``band_shift`` is the mean noise-normalised residual of
#: the band (it moves either way), ``band_difference`` the band's smoothed difference
BAND_FEATURES = {"band_shift": 0, "band_difference": +1}
FRAME_DEFAULT = ("unique_count", "difference", "ssim")
PROFILE_DEFAULT = ("difference",)
_PROFILE_OK = ("difference", "mean", "median", *BAND_FEATURES)
_ALL = {**FEATURES, **BAND_FEATURES}
_MIN_BAND_BINS = 4  # fewest q bins in a band
_MIN_REGION_BINS = 16  # fewest valid binned pixels in a detector region
_MAX_BINNED = 160_000  # "auto" binning brings a frame to at most this many pixels
_MAX_COARSE = 20_000  # length of the vectors kept for onset refinement
_MAX_SSIM = 40_000  # SSIM is computed on a grid of at most this many blocks
