"""Change detection in scattering series (DEDUCE-style): when and where frames change.

Science functions only: arrays or xarray in, frozen dataclasses and xarray out; no I/O.
A series is ``(frame, y, x)`` detector frames (integer counts, negative = masked, as
Pilatus gaps) or ``(frame or time, q)`` reduced profiles with optional ``sigma``.

* features per frame: :func:`unique_count`, :func:`structural_similarity`,
  :func:`frame_features` (unique values, smoothed difference from a reference, SSIM to the
  previous frame, I(q) chi^2, and per q band or detector region the same difference and
  the mean residual, :data:`BAND_FEATURES`);
* detection: :func:`detect_changes` (whole series) and :class:`OnlineDetector` (one frame
  at a time), both giving onsets with a confidence; a change confined to a band of q or a
  region of the detector is found by that band's features (with a Bonferroni correction
  for the number of bands), and no onset is ever reported inside the warm-up;
* where: :func:`change_map` (and each event's ``change_map``);
* what to keep: :func:`reduction_policy` labels frames "of interest" or "redundant".
"""

from spotkit.change._detect import detect_changes
from spotkit.change._feature_names import BAND_FEATURES, FEATURES
from spotkit.change._features import frame_features
from spotkit.change._measures import change_map, structural_similarity, unique_count
from spotkit.change._online import OnlineDetector
from spotkit.change._policy import LABELS, ReductionPlan, reduction_policy
from spotkit.change._results import ChangeEvent, ChangeResult, FrameResult, WarmupWarning

__all__ = [
    "BAND_FEATURES",
    "FEATURES",
    "LABELS",
    "ChangeEvent",
    "ChangeResult",
    "FrameResult",
    "OnlineDetector",
    "ReductionPlan",
    "WarmupWarning",
    "change_map",
    "detect_changes",
    "frame_features",
    "reduction_policy",
    "structural_similarity",
    "unique_count",
]
