"""Frame marks while a series is written: :func:`spotkit.change.reduction_policy`'s labels,
given to each frame once no later change can move it into a change window."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from spotkit.change import reduction_policy

logger = logging.getLogger(__name__)

_WINDOW = re.compile(r"change window (\d+)\.\.(\d+)")


def _shift(reason: str, off: int) -> str:
    """A policy reason for frames counted from ``off`` as one for the whole series."""
    if not off:
        return reason
    return _WINDOW.sub(lambda m: f"change window {int(m[1]) + off}..{int(m[2]) + off}", reason)


class _Marker:
    """Which frames can be marked now, and how (``"of interest"`` / ``"redundant"``).

    A frame inside a known change window is of interest at once (windows only grow). A
    frame outside every window is final, and marked with the policy's label and reason,
    once ``lag`` frames have been judged after it: no change confirmed later can have its
    onset (and window) that far back (the online detector refines an onset within its
    buffer of recent frames).

    Parameters
    ----------
    before, after, every : int
        As for :func:`spotkit.change.reduction_policy`.
    lag : int
        Frames after which a frame outside every window is final.
    """

    def __init__(self, *, before: int = 3, after: int = 3, every: int = 20, lag: int = 60,
                 first: int = 0) -> None:
        for name, v in (("before", before), ("after", after), ("every", every), ("lag", lag)):
            if int(v) != v or v < 0:
                raise ValueError(f"marks: {name} must be an integer >= 0, got {v!r}")
        self.before, self.after, self.every = int(before), int(after), int(every)
        self.lag = int(lag)
        self.first = int(first)  # the first frame of the series this session judges
        self.events: list[tuple[int, int]] = []  # (onset, end)
        self.final_upto = self.first - 1  # frames up to here carry their final mark
        self._given: dict[int, tuple[str, str]] = {}  # marks of window frames given so far
        self._kept_final = 0  # frames up to final_upto that the policy keeps
        self._factor: float | None = None

    def add_event(self, onset: int, end: int) -> None:
        self.events.append((int(onset), int(end)))

    def resume(self, marked: Iterable[int]) -> None:
        """Continue after the frames already marked (the longest run from ``first``)."""
        seen = set(marked)
        k = self.first
        while k in seen:
            k += 1
        self.final_upto = k - 1
        self._kept_final = 0
        if self.final_upto >= 0:
            plan = self._plan(0, self.final_upto + 1)
            keep = plan.keep.copy()
            if plan.reasons[-1] == "last frame":  # not the series' last frame
                keep[-1] = False
            self._kept_final = int(keep[self.first:].sum())

    def _plan(self, off: int, done: int):
        events = [(o - off, min(e, done - 1) - off) for o, e in self.events
                  if o < done and min(e, done - 1) + self.after >= off - 1]
        return reduction_policy(events, n_frames=done - off, before=self.before,
                                after=self.after, every=self.every)

    def due(self, done: int, *, finished: bool = False) -> tuple[list[int], list[str], list[str]]:
        """Frames to mark now that frames ``< done`` have been judged: ``(frames, labels,
        reasons)``. ``finished``: the series is complete, every frame is final.

        Only the frames not final yet are planned (the policy runs on them and the change
        windows that reach them), so a call costs the same at frame 100 and at frame 36,000.
        """
        lo = self.final_upto + 1
        if done <= lo:
            return [], [], []
        # start where the policy sees every window that reaches a frame >= lo (and the
        # windows those merge with), on a multiple of `every` so that its sample is the
        # whole series' sample
        off = lo
        while True:
            if self.every:
                off -= off % self.every
            new = max(0, min([off] + [o - self.before for o, e in self.events
                                      if o < done and min(e, done - 1) + self.after >= off - 1]))
            if new == off:
                break
            off = new
        plan = self._plan(off, done)
        keep = plan.keep.copy()
        reasons_all = [_shift(r, off) for r in plan.reasons]
        if off > 0 and reasons_all[0] == "first frame":  # the policy's, not the series'
            keep[0], reasons_all[0] = False, ""
        final = done - 1 if finished else done - 1 - self.lag
        want: dict[int, tuple[str, str]] = {}
        for k in range(lo, final + 1):  # final from now on
            want[k] = (str(plan.labels[k - off]),
                       reasons_all[k - off] or "redundant: outside every change window")
        for a, b in plan.windows:  # a window's frames, as soon as they are judged
            for k in range(max(a + off, self.first), b + off + 1):
                want[k] = ("of interest", reasons_all[k - off])
        frames, labels, reasons = [], [], []
        for k in sorted(want):
            if self._given.get(k) != want[k]:
                frames.append(k)
                labels.append(want[k][0])
                reasons.append(want[k][1])
                if want[k][0] == "of interest":  # a window may still grow or merge
                    self._given[k] = want[k]
        if final >= lo:
            self._kept_final += int(keep[lo - off: final - off + 1].sum())
            self.final_upto = final
        # frames before `off` are in no window that can still change
        self._given = {k: v for k, v in self._given.items() if k >= off}
        tail = int(keep[max(final + 1, lo) - off:].sum())
        self._factor = (done - self.first) / max(self._kept_final + tail, 1)
        return frames, labels, reasons

    @property
    def reduction_factor(self) -> float | None:
        """Frames so far / frames kept (as :func:`reduction_policy` counts them)."""
        return self._factor
