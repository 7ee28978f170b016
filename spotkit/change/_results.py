"""What change detection returns: events, results, per-frame results, the warm-up warning."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)




__all__ = ["ChangeEvent", "ChangeResult", "FrameResult", "WarmupWarning"]

class WarmupWarning(UserWarning):
    """A change seems to start inside the warm-up, whose frames make the reference.

    The onset is reported at the first frame after the warm-up; the reference (and so the
    change map) mixes frames from before and after the change. Use a shorter ``warmup`` or
    start the series earlier.
    """


@dataclass(frozen=True, eq=False)
class ChangeEvent:
    """One detected change.

    Attributes
    ----------
    onset : int
        Index of the first changed frame.
    end : int
        Index of the last frame of the transition (equal to ``onset`` for a step).
    confidence : float
        In [0, 1]: 0.95 at the detection threshold, towards 1 as the change is more
        significant (``Phi(T - threshold + 1.645)`` of the test statistic ``T``).
    statistic : float
        The test statistic (standardised mean shift of the feature, or CUSUM height).
    feature : str
        The feature that flagged it.
    detected_at : int
        Frame at which it was decided (online: alarm plus confirmation; offline: last frame).
    onset_coord, end_coord : object
        The series' frame or time coordinate at ``onset`` and ``end``.
    change_map : xarray.DataArray or None
        Where it changed: mean smoothed difference of frames ``onset..end`` from the
        reference in noise units, dims ``(y, x)`` on the binned grid or ``(q,)``.
    region : dict or None
        For a change found by a band feature: the q band (``{"q": (q_first, q_last)}``, or
        bin indices without a q coordinate) or the detector region (``{"y": (first, last),
        "x": (first, last)}`` in pixels) that flagged it; None for whole-frame features.
    """

    onset: int
    end: int
    confidence: float
    statistic: float
    feature: str
    detected_at: int
    onset_coord: object = None
    end_coord: object = None
    change_map: object = field(default=None, repr=False)
    region: dict | None = None


@dataclass(frozen=True, eq=False)
class ChangeResult:
    """Detected changes of a series.

    Attributes
    ----------
    events : tuple of ChangeEvent
        In order of onset.
    features : xarray.Dataset
        Per-frame features (dims ``frame`` or ``time``).
    score : xarray.DataArray
        Per-frame detection score: the largest standardised departure of the detection
        features from the pre-change level (band features' after the multiple-testing
        correction, so that all are on one scale).
    flagged : ndarray of bool
        Frames inside a change (``onset..end`` of an event).
    n_frames : int
    kind : str
        ``"frames"`` or ``"profiles"``.
    bands : xarray.Dataset or None
        The band features (dims ``(frame or time, band)``, see :func:`frame_features`) when
        they were computed.
    """

    events: tuple
    features: object
    score: object
    flagged: np.ndarray
    n_frames: int
    kind: str
    bands: object = None

    @property
    def onsets(self) -> tuple[int, ...]:
        """Onset frame indices of the events."""
        return tuple(e.onset for e in self.events)


@dataclass(frozen=True, eq=False)
class FrameResult:
    """What :meth:`OnlineDetector.update` says about one frame.

    Attributes
    ----------
    index : int
        The frame's index in the stream.
    state : str
        ``"warmup"`` (learning the reference), ``"watching"``, ``"alarm"`` (a change is
        being confirmed) or ``"holdoff"`` (after an event, before learning again).
    score : float
        Standardised departure of this frame (nan until scored).
    flagged : bool
        True when the frame is inside a suspected or confirmed change.
    event : ChangeEvent or None
        Set on the frame where a change is confirmed.
    features : dict
        Feature values of the newest scored frame (empty during the warm-up).
    """

    index: int
    state: str
    score: float
    flagged: bool
    event: ChangeEvent | None = None
    features: dict = field(default_factory=dict)
