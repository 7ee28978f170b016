"""The online change detector on a live series' I(q) profiles, in the series' frame numbers.

:class:`_Judge` wraps :class:`spotkit.change.OnlineDetector` (profiles mode): it fills the
bins of I(q) that hold no pixel, keeps the detector's frame numbers in step with the
series' (a session may start, or resume, at any frame), and after a kill rebuilds the
detector exactly from the profiles recorded since the detector last started afresh (the
series' start; with a ``holdoff`` option, the end of the hold-off that follows a confirmed
change, where the detector forgets everything), so replaying those profiles gives the state
it had. By default the detector re-arms itself after a change and goes on.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from spotkit.change import ChangeEvent, FrameResult, OnlineDetector

logger = logging.getLogger(__name__)


def _fill(values: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """A profile without NaN: the static empty bins set to 0 (the detector masks them),
    any other non-finite bin interpolated from its neighbours in q."""
    out = np.array(values, dtype=np.float64)
    out[bad] = 0.0
    loose = ~np.isfinite(out)
    if loose.any():
        good = np.flatnonzero(~loose)
        if good.size == 0:
            out[:] = 0.0
        else:
            out[loose] = np.interp(np.flatnonzero(loose), good, out[good])
    return out


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def feature_values(result: FrameResult, intensity: np.ndarray) -> dict[str, Any]:
    """A frame's point values: the detector's whole-profile features, the largest of each
    band feature (``<name>_max``, absolute), score, state, flagged, and the mean I(q)."""
    values: dict[str, Any] = {}
    for name, v in result.features.items():
        a = np.asarray(v, dtype=np.float64)
        if a.ndim == 0:
            values[name] = _number(a)
        elif a.size and np.isfinite(a).any():
            values[f"{name}_max"] = _number(np.nanmax(np.abs(a)))
    finite = intensity[np.isfinite(intensity)]
    values["intensity_mean"] = _number(finite.mean()) if finite.size else None
    values["score"] = _number(result.score)
    values["state"] = result.state
    values["flagged"] = bool(result.flagged)
    return values


def event_values(event: ChangeEvent, offset: int,
                 radial: np.ndarray | None = None) -> dict[str, Any]:
    """A confirmed change's point values (frames in the series' numbers); a change seen in
    one band of I(q) also gets the band's radial range, ``q_first`` and ``q_last`` (in the
    radial axis' unit and name: ``two_theta_first``...)."""
    values: dict[str, Any] = {
        "onset": int(event.onset) + offset, "end": int(event.end) + offset,
        "detected_at": int(event.detected_at) + offset,
        "confidence": _number(event.confidence), "statistic": _number(event.statistic),
        "feature": str(event.feature),
        "region": None if event.region is None else str(event.region)}
    for key, (lo, hi) in (event.region or {}).items():
        if key.endswith("_index") and radial is not None and radial.size:
            dim = key[: -len("_index")]
            values[f"{dim}_first"] = _number(radial[min(max(int(lo), 0), radial.size - 1)])
            values[f"{dim}_last"] = _number(radial[min(max(int(hi), 0), radial.size - 1)])
    return values


class _Judge:
    """The online detector on I(q) profiles, numbered as the series' frames.

    Parameters
    ----------
    options : mapping, optional
        :class:`~spotkit.change.OnlineDetector` options (``warmup``, ``threshold``,
        ``holdoff``...).
    bad_bins : sequence of int, optional
        Bins of I(q) that hold no pixel (known from an earlier run); else learned from the
        first profile.
    """

    def __init__(self, options: Mapping[str, Any] | None = None, *,
                 bad_bins: list[int] | None = None) -> None:
        self.options = dict(options or {})
        if "mask" in self.options:
            raise ValueError("detector options: 'mask' is set by the live session (the I(q) "
                             "bins without pixels); mask detector pixels with mask= instead")
        try:
            probe = OnlineDetector(**self.options)  # checks the options now
        except TypeError as exc:
            allowed = sorted(set(inspect.signature(OnlineDetector).parameters) - {"mask"})
            raise ValueError(f"detector options: {exc}; the options are {allowed}") from None
        self.holdoff = probe.holdoff
        self.warmup = probe.warmup
        #: frames a change may reach back before it is confirmed (the detector's buffer)
        self.reach = 6 * probe.search + probe.confirm + 4
        self.bad_bins = None if bad_bins is None else [int(b) for b in bad_bins]
        self._det: OnlineDetector | None = None
        self._offset = 0  # series frame = detector frame + offset
        self.hold_until = -1  # frames up to here follow a change: not judged
        self.last: int | None = None  # the last frame judged

    def _bad(self, n: int, intensity: np.ndarray) -> np.ndarray:
        if self.bad_bins is None:
            self.bad_bins = [int(i) for i in np.flatnonzero(~np.isfinite(intensity))]
        bad = np.zeros(n, dtype=bool)
        bad[[b for b in self.bad_bins if b < n]] = True
        return bad

    @property
    def stretch(self) -> int:
        """Frames judged since the detector last started afresh."""
        return 0 if self._det is None else self._det.n_frames

    def restart_after(self, event_frame: int) -> None:
        """Resume after a change confirmed at ``event_frame``: the hold-off, then a fresh
        detector (as the detector itself does); nothing when the detector re-arms itself
        (``holdoff`` None: it goes on, so its state is rebuilt from the series' start)."""
        if self.holdoff is None:
            return
        self.hold_until = event_frame + self.holdoff
        self._det = None

    def judge(self, frame: int, intensity: np.ndarray,
              sigma: np.ndarray | None) -> tuple[FrameResult, ChangeEvent | None, int]:
        """Judge frame ``frame``: its result (``index`` in the series' numbers), the change
        confirmed at it (numbered as the detector's frames) or None, and the offset to add."""
        bad = self._bad(intensity.size, intensity)
        self.last = frame
        if frame <= self.hold_until:
            return FrameResult(index=frame, state="holdoff", score=math.nan,
                               flagged=False), None, 0
        if self._det is None:
            self._det = OnlineDetector(mask=bad, **self.options)
            self._offset = frame
        expected = self._offset + self._det.n_frames
        if frame != expected:  # frames the source skipped (missing files)
            logger.warning("frame %d follows frame %d: %d frame(s) missing from the series",
                           frame, expected - 1, frame - expected)
            self._offset = frame - self._det.n_frames
        prof = _fill(intensity, bad)
        sig = None if sigma is None else np.abs(_fill(sigma, bad))
        res = self._det.update(prof, sigma=sig)
        offset = self._offset
        if res.event is not None and self.holdoff is not None:
            # the hold-off and the fresh start, done here rather than inside the detector,
            # so that a resumed session (which must start a fresh detector) runs the very
            # same code as one that was never stopped
            self.restart_after(frame)
        out = FrameResult(index=frame, state=res.state, score=res.score, flagged=res.flagged,
                          event=res.event, features=res.features)
        return out, res.event, offset
