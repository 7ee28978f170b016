"""Reduction policy: which frames are of interest, which are redundant (nothing is deleted)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._results import ChangeEvent, ChangeResult

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["LABELS", "ReductionPlan", "reduction_policy"]

#: the two labels a frame can get
LABELS = ("of interest", "redundant")


@dataclass(frozen=True, eq=False)
class ReductionPlan:
    """Per-frame labels from :func:`reduction_policy`; the data themselves are untouched.

    Attributes
    ----------
    labels : ndarray of str
        ``"of interest"`` (inside a change window) or ``"redundant"`` per frame.
    keep : ndarray of bool
        Frames to keep: every frame of interest plus the sparse sample of the rest.
    reasons : tuple of str
        Why each frame is kept (``""`` for frames that are not).
    reduction_factor : float
        ``n_frames / number kept``.
    n_frames, n_keep, n_interest : int
    windows : tuple of (int, int)
        Inclusive ``(first, last)`` frame of each change window.
    """

    labels: np.ndarray
    keep: np.ndarray
    reasons: tuple
    reduction_factor: float
    n_frames: int
    n_keep: int
    n_interest: int
    windows: tuple

    def summary(self) -> dict:
        """Counts and windows as a JSON-friendly dict (for a catalog or a report)."""
        return {"n_frames": self.n_frames, "n_keep": self.n_keep,
                "n_interest": self.n_interest,
                "reduction_factor": round(self.reduction_factor, 3),
                "windows": [list(w) for w in self.windows]}

    def to_dataframe(self) -> pd.DataFrame:
        """One row per frame: ``label``, ``keep``, ``reason`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame({"label": self.labels, "keep": self.keep,
                             "reason": list(self.reasons)})


def reduction_policy(changes: ChangeResult | Sequence[ChangeEvent | int | Sequence[int]], *,
                     n_frames: int | None = None, before: int = 3,
                     after: int = 3, every: int = 20) -> ReductionPlan:
    """Label frames of interest around changes and keep a sparse sample of the rest.

    A change window runs from ``before`` frames before an event's onset to ``after`` frames
    after its end (the end of the transition, :attr:`ChangeEvent.end`); its frames are
    ``"of interest"``. Every ``every``-th frame outside the windows (and the first and last
    frame) is kept as a sample; the rest are ``"redundant"``. Nothing is deleted: a catalog
    layer stores the labels and transfer or storage rules act on them.

    Parameters
    ----------
    changes : ChangeResult, sequence of ChangeEvent, or sequence of int / (int, int)
        Detected changes, or onsets (or ``(onset, end)`` pairs).
    n_frames : int, optional
        Length of the series; taken from a :class:`ChangeResult` when omitted.
    before, after : int
        Frames kept before each onset and after each end.
    every : int
        Sampling interval of the remaining frames (``0``: keep no sample).

    Returns
    -------
    ReductionPlan

    Examples
    --------
    >>> plan = reduction_policy([40], n_frames=200, before=2, after=5, every=25)
    >>> plan.n_keep, round(plan.reduction_factor, 1)
    (17, 11.8)
    """
    for name, v in (("before", before), ("after", after), ("every", every)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    if isinstance(changes, ChangeResult):
        n_frames = changes.n_frames if n_frames is None else n_frames
        changes = changes.events
    if n_frames is None:
        raise ValueError("n_frames is required unless a ChangeResult is given")
    if int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    n_frames = int(n_frames)
    spans = []
    for c in changes:
        if isinstance(c, ChangeEvent):
            onset, end = int(c.onset), int(c.end)
        elif isinstance(c, int | float | np.number):
            onset = end = int(c)
        else:
            onset, end = (int(v) for v in c)
        if not 0 <= onset <= end < n_frames:
            raise ValueError(f"change ({onset}, {end}) is outside the series of {n_frames} "
                             "frames (or ends before it starts)")
        spans.append((max(0, onset - before), min(n_frames - 1, end + after)))
    spans.sort()
    windows: list[tuple[int, int]] = []
    for a, b in spans:  # merge overlapping windows
        if windows and a <= windows[-1][1] + 1:
            windows[-1] = (windows[-1][0], max(windows[-1][1], b))
        else:
            windows.append((a, b))
    interest = np.zeros(n_frames, dtype=bool)
    reasons = [""] * n_frames
    for a, b in windows:
        interest[a: b + 1] = True
        for k in range(a, b + 1):
            reasons[k] = f"change window {a}..{b}"
    keep = interest.copy()
    if every > 0:
        for k in range(0, n_frames, every):
            if not keep[k]:
                keep[k] = True
                reasons[k] = f"sample: every {every}th frame"
    for k, why in ((0, "first frame"), (n_frames - 1, "last frame")):
        if not keep[k]:
            keep[k] = True
            reasons[k] = why
    labels = np.where(interest, LABELS[0], LABELS[1])
    n_keep = int(keep.sum())
    plan = ReductionPlan(labels=labels, keep=keep, reasons=tuple(reasons),
                         reduction_factor=n_frames / n_keep, n_frames=n_frames, n_keep=n_keep,
                         n_interest=int(interest.sum()), windows=tuple(windows))
    logger.info("reduction: keep %d of %d frames (%.1fx)", n_keep, n_frames,
                plan.reduction_factor)
    return plan
