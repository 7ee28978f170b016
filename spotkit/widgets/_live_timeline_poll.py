"""What :class:`~spotkit.widgets.LiveTimelineModel` reads and says: the update of one
fetch, the status line of a live series, and the background poller.

Plain Python (no ipywidgets, no matplotlib).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["ENDED", "LiveUpdate", "Poller", "number", "status_text", "steady"]

#: states of a series that is not followed any more
ENDED = ("finished", "stopped", "failed")


def number(value: Any) -> float:
    """A value as a float (nan for None, text, flags or anything else)."""
    if value is None or isinstance(value, bool | str):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def steady(status: dict | None) -> dict | None:
    """A status without the fields that change on every read (its age)."""
    return None if status is None else {k: v for k, v in status.items() if k != "age_s"}


@dataclass(frozen=True)
class LiveUpdate:
    """What one :meth:`LiveTimelineModel.fetch` brought.

    Attributes
    ----------
    new : int
        Points not seen before.
    changed : bool
        Something to redraw came (points, a new status or the latest I(q)).
    kinds : frozenset of str
        Their kinds (``"features"``, ``"event"``, ``"fit:sphere"``, ``"decision"``...).
    status : dict or None
        The series' live status (:meth:`Catalog.live_status <spotkit.catalog.Catalog>`).
    at : float
        When it was read (unix time).
    seconds : float
        How long the reads took.
    """

    new: int
    changed: bool = False
    kinds: frozenset = field(default_factory=frozenset)
    status: dict | None = None
    at: float = 0.0
    seconds: float = 0.0


def status_text(status: dict | None, *, last_frame: int | None = None,
                now: float | None = None) -> str:
    """One line on how a live series fares: frames done, how far behind, rate, latency.

    Parameters
    ----------
    status : dict or None
        A live status (``written``, ``done``, ``behind``, ``rate_hz``, ``latency_s``,
        ``state``, and when the catalog has them ``reduction_factor`` and ``updated_at``).
    last_frame : int, optional
        The newest frame with features on the timeline (said when the status is missing).
    now : float, optional
        Unix time (for the age of the status).

    Examples
    --------
    >>> status_text({"written": 120, "done": 100, "behind": 20, "rate_hz": 9.5,
    ...              "latency_s": 0.31, "state": "following"})
    'following · 100 of 120 frames done · behind by 20 frames · 9.5 frames/s · latency 0.31 s'
    >>> status_text(None, last_frame=None)
    'no live status yet'
    """
    if not status:
        if last_frame is None:
            return "no live status yet"
        return f"no live status yet · frames 0..{last_frame} on the timeline"
    parts = []
    state = status.get("state")
    if state:
        parts.append(str(state))
    done, written = status.get("done"), status.get("written")
    if done is not None and written is not None:
        parts.append(f"{int(done)} of {int(written)} frames done")
    elif done is not None:
        parts.append(f"{int(done)} frames done")
    behind = status.get("behind")
    if behind is not None:
        behind = int(behind)
        parts.append("up to date" if behind <= 0 else
                     f"behind by {behind} frame{'s' if behind != 1 else ''}")
    rate = number(status.get("rate_hz"))
    if math.isfinite(rate):
        parts.append(f"{rate:.3g} frames/s")
    latency = number(status.get("latency_s"))
    if math.isfinite(latency):
        parts.append(f"latency {latency:.2g} s")
    factor = number(status.get("reduction_factor"))
    if math.isfinite(factor):  # frames kept by the reduction policy's marks: 1 in N
        parts.append(f"reduction {factor:.3g}x")
    updated = number(status.get("updated_at"))
    age = ((time.time() if now is None else now) - updated if math.isfinite(updated)
           else number(status.get("age_s")))
    if age > 10 and state not in ENDED:
        parts.append(f"no news for {age:.0f} s")
    return " · ".join(parts) if parts else "no live status yet"


class Poller:
    """The model's background fetches: one daemon thread, errors kept, never raised."""

    def __init__(self, model: Any, on_update: Callable | None, interval: float,
                 on_error: Callable[[str], Any] | None = None):
        self.model = model
        self.on_update = on_update
        self.on_error = on_error
        self.interval = interval
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"spotkit-live-timeline-{model.dataset_id}")

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None) -> None:
        self._stop.set()
        self.model.wake()  # a sleep on the subscription's notifications ends now
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                update = self.model.fetch()
                self.error, failures = None, 0
                hint = self.on_update(update) if self.on_update is not None else None
            except Exception as exc:  # shown by the view; tried again after a pause
                failures += 1
                self.error = f"{type(exc).__name__}: {exc}"
                logger.warning("live timeline %s: %s", self.model.dataset_id, self.error)
                if self.on_error is not None:
                    try:
                        self.on_error(self.error)
                    except Exception:  # the view is gone: polling goes on regardless
                        logger.exception("live timeline: showing an error failed")
                hint = None
            pause = self.interval * min(2 ** failures, 60)
            sooner = False
            if isinstance(hint, int | float) and 0 <= hint < pause:
                pause, sooner = float(hint), True  # the view wants to be asked again sooner
            # on PostgreSQL an idle wait ends when the series gets points (the model's sleep)
            self.model.sleep(pause, self._stop, idle=not (failures or sooner))
