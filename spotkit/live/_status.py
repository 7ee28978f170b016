"""Where a live series stands: frames written, done, behind, rate, latency (:class:`LiveStatus`)."""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from dataclasses import asdict, dataclass

__all__ = ["STATES", "LiveStatus"]

#: what a live session is doing
STATES = ("starting", "following", "behind", "waiting", "outage", "finished", "stopped",
          "failed")
#: states of a series that is no longer followed (``Catalog.live_series(active=True)`` skips them)
FINAL_STATES = ("finished", "stopped", "failed")


@dataclass(frozen=True)
class LiveStatus:
    """How far a live session has got with a series being written.

    Attributes
    ----------
    written : int
        Frames the writer is known to have written so far.
    done : int
        Frames reduced, judged and recorded (each exactly once).
    behind : int
        ``written - done``: frames written but not processed yet.
    rate_hz : float
        Frames processed per second over the last few seconds (0 before the first).
    latency_s : float or None
        Median seconds from a frame being written to its point being recorded (readable by
        watchers), over the last frames; None before the first.
    state : str
        One of :data:`STATES`: ``"following"`` (keeping up), ``"behind"`` (frames were
        written that the last batch, about half a second of work, could not take),
        ``"waiting"`` (the writer has paused), ``"outage"`` (the catalog cannot be written:
        frames are reduced and their points wait), ``"finished"`` (the writer closed the
        series and every frame is done),
        ``"stopped"``, ``"failed"`` or ``"starting"``.
    events : int
        Changes confirmed so far.
    reduction_factor : float or None
        Frames so far / frames kept by the reduction policy (frames of interest plus the
        sparse sample); None before the first frame.
    dataset_id : str or None
        The series in the catalog.

    Examples
    --------
    >>> s = LiveStatus(written=130, done=120, behind=10, rate_hz=18.24, latency_s=0.31,
    ...                state="behind")
    >>> s.summary()
    '120 of 130 frames done (10 behind), 18.2 frames/s, latency 0.31 s, behind'
    """

    written: int
    done: int
    behind: int
    rate_hz: float
    latency_s: float | None
    state: str
    events: int = 0
    reduction_factor: float | None = None
    dataset_id: str | None = None

    def summary(self) -> str:
        """One line for a log or a terminal."""
        latency = "-" if self.latency_s is None else f"{self.latency_s:.2f} s"
        behind = f" ({self.behind} behind)" if self.behind else ""
        return (f"{self.done} of {self.written} frames done{behind}, {self.rate_hz:.1f} "
                f"frames/s, latency {latency}, {self.state}")

    def to_dict(self) -> dict:
        """The fields as a JSON-friendly dict (what goes into the catalog's live status)."""
        return asdict(self)


class _Meter:
    """Processing rate over a sliding time window and median latency of the last frames."""

    def __init__(self, *, window_s: float = 5.0, n_latency: int = 64) -> None:
        self.window_s = float(window_s)
        self._done: deque[tuple[float, int]] = deque()
        self._latency: deque[float] = deque(maxlen=n_latency)
        self.last_frame_at: float | None = None  # monotonic time the last frame was processed
        self._started = time.monotonic()

    def restart(self, now: float | None = None) -> None:
        """Count the rate from now (e.g. when frames start arriving after a pause)."""
        self._started = time.monotonic() if now is None else now

    def add(self, n: int, latencies: list[float], *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if n:
            self._done.append((now, n))
            self.last_frame_at = now
        self._latency.extend(v for v in latencies if math.isfinite(v))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._done and self._done[0][0] < now - self.window_s:
            self._done.popleft()

    def rate(self, *, now: float | None = None) -> float:
        """Frames per second over the window (or since the meter started, if later)."""
        now = time.monotonic() if now is None else now
        self._trim(now)
        if not self._done:
            return 0.0
        n = sum(k for _, k in self._done)
        return n / max(min(self.window_s, now - self._started), 1e-3)

    def latency(self) -> float | None:
        return statistics.median(self._latency) if self._latency else None
