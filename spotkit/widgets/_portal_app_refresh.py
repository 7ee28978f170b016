"""The portal's background refresh: one daemon thread runs every panel's ``fetch``.

Why one thread, and how it is scheduled:

- ``fetch`` does all of a panel's I/O (at most one catalog query per refresh); it runs in
  the refresh thread, never on the kernel's thread, so cells run meanwhile and the view
  keeps moving while a cell is busy (the reasons :mod:`spotkit.widgets._jobmonitor_refresh`
  gives for a thread rather than an asyncio task hold here too).
- One refresh at a time: the thread fetches one panel, then applies its snapshot, then the
  next; a manual :meth:`PortalRefresher.refresh` waits for the panel in progress. Nothing
  overlaps, so a slow catalog never has two of the portal's queries queued on it.
- Each panel has its own next-due time. A panel is applied as soon as its own fetch
  returns (it never waits for the others). A slow panel is rescheduled after at least as
  long as its fetch took, so it uses at most half of the thread's time and the panels that
  are due meanwhile go first; a failing panel backs off (2, 4, 8 ... times the interval, at
  most :data:`MAX_BACKOFF` seconds) and keeps its last data; the others go on.
- ``apply`` only sets widget values (no I/O), through ipykernel's thread-safe IOPub channel,
  as the JobMonitor does; the portal serialises it with its own lock.

Nothing here imports ipywidgets: the refresher is tested in plain Python.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["MAX_BACKOFF", "THREAD_NAME", "PanelState", "PortalRefresher"]

#: The name of the refresh thread (to find it in ``threading.enumerate()``).
THREAD_NAME = "spotkit-portal-refresh"

#: A failing panel is fetched again after at most this many seconds.
MAX_BACKOFF = 300.0


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text}"


@dataclass
class PanelState:
    """What the refresher knows of one panel (read by the portal's header).

    Attributes
    ----------
    title : str
        The panel's tab title.
    fetches : int
        Fetches finished (successful or not).
    applied : int
        Snapshots applied.
    failures : int
        Failures in a row (0 after a success).
    error : str or None
        The last failure's ``"ErrorType: message"`` while it lasts.
    error_since : datetime or None
        When the current run of failures began (UTC).
    refreshed_at : datetime or None
        When a snapshot was last applied (UTC).
    seconds : float or None
        How long the last fetch took.
    first_applied : float or None
        Seconds from the refresher's creation to the first applied snapshot.
    busy_since : float or None
        ``time.monotonic()`` when the fetch in progress began, else None.
    """

    title: str
    fetches: int = 0
    applied: int = 0
    failures: int = 0
    error: str | None = None
    error_since: datetime | None = None
    refreshed_at: datetime | None = None
    seconds: float | None = None
    first_applied: float | None = None
    busy_since: float | None = None
    next_due: float = field(default=0.0, repr=False)


class PortalRefresher:
    """Fetch and apply each panel every ``interval`` seconds in one daemon thread.

    Parameters
    ----------
    panels : sequence
        Objects with ``title``, ``fetch()`` and ``apply(snapshot)`` (the portal's panel
        protocol).
    interval : float
        Seconds between two refreshes of a panel.
    apply : callable, optional
        ``apply(panel, snapshot)``; default ``panel.apply(snapshot)``. The portal passes
        one that takes its lock and clears the panel's error banner.
    on_error : callable, optional
        ``on_error(panel, text)`` after a failed fetch or apply (the panel keeps its data).
    on_change : callable, optional
        Called without arguments whenever the state changes (a fetch begins or ends): the
        portal redraws its header there.
    priority : callable, optional
        ``priority(panel) -> int``; among the panels due, lower goes first (the portal
        ranks the tab on screen first).

    Examples
    --------
    >>> class Counter:
    ...     title = "Counter"
    ...     def __init__(self): self.shown = None; self.n = 0
    ...     def fetch(self): self.n += 1; return self.n
    ...     def apply(self, snapshot): self.shown = snapshot
    >>> panel = Counter()
    >>> refresher = PortalRefresher([panel], interval=0.05)
    >>> refresher.refresh()            # once, in the calling thread
    >>> panel.shown
    1
    >>> refresher.start()
    True
    >>> refresher.wait(lambda: panel.shown >= 3, timeout=10)
    True
    >>> refresher.close()
    >>> refresher.running
    False
    """

    def __init__(self, panels: Sequence[Any], interval: float, *,
                 apply: Callable[[Any, Any], None] | None = None,
                 on_error: Callable[[Any, str], None] | None = None,
                 on_change: Callable[[], None] | None = None,
                 priority: Callable[[Any], int] | None = None):
        self.interval = interval  # validated by the setter
        self.panels = list(panels)
        self.states = {id(p): PanelState(str(getattr(p, "title", type(p).__name__)))
                       for p in self.panels}
        self._apply = apply or (lambda panel, snapshot: panel.apply(snapshot))
        self._on_error = on_error
        self._on_change = on_change
        self._priority = priority
        self._created = time.monotonic()
        self._lock = threading.RLock()     # this object's fields
        self._one = threading.Lock()       # one fetch + apply at a time
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._closed = False
        self.thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"<PortalRefresher {len(self.panels)} panels every {self.interval:g} s, {state}>"

    # -- settings and state ---------------------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between two refreshes of a panel (settable)."""
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise ValueError(f"refresh must be a number of seconds, not {seconds!r}") from None
        if not seconds > 0:
            raise ValueError(f"refresh must be a positive number of seconds, not {seconds!r}")
        self._interval = seconds

    def state(self, panel: Any) -> PanelState:
        """The :class:`PanelState` of ``panel``."""
        return self.states[id(panel)]

    @property
    def running(self) -> bool:
        """The refresh thread is alive."""
        thread = self.thread
        return thread is not None and thread.is_alive()

    @property
    def closed(self) -> bool:
        """:meth:`close` was called: the refresher never starts again."""
        return self._closed

    @property
    def busy(self) -> tuple[Any, float] | None:
        """``(panel, seconds so far)`` while a fetch is in progress, else None."""
        now = time.monotonic()
        for panel in self.panels:
            since = self.states[id(panel)].busy_since
            if since is not None:
                return panel, now - since
        return None

    # -- thread ---------------------------------------------------------------------------

    def start(self) -> bool:
        """Start the refresh thread (or wake it up now).

        Returns
        -------
        bool
            True when the thread runs; False once closed.
        """
        with self._lock:
            if self._closed:
                return False
            if self.running and not self._stop.is_set():
                self._wake.set()
                return True
            self._stop = threading.Event()
            self._wake.clear()
            context = contextvars.copy_context()  # its messages go out under this cell
            thread = threading.Thread(target=context.run, args=(self._loop, self._stop),
                                      name=THREAD_NAME, daemon=True)
            self.thread = thread
            thread.start()
            return True

    def wake(self, panel: Any | None = None) -> None:
        """Refresh ``panel`` (default: every panel) now rather than when it is due."""
        with self._lock:
            for p in self.panels if panel is None else [panel]:
                self.states[id(p)].next_due = 0.0
        self._wake.set()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop refreshing; wait up to ``timeout`` seconds for the thread to end (a fetch
        in progress is not interrupted: its result is dropped once the portal is closed)."""
        with self._lock:
            thread = self.thread
            self._stop.set()
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop for good: :meth:`start` does nothing afterwards."""
        with self._lock:
            self._closed = True
        self.stop(timeout)

    def wait(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``condition()`` is true, checked after each fetch; return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(0.5 if left is None else min(left, 0.5))
            return True

    # -- refreshing -------------------------------------------------------------------------

    def refresh(self, panel: Any | None = None) -> None:
        """Fetch and apply ``panel`` (default: every panel) now, in the calling thread
        (after the fetch in progress in the thread, if any)."""
        for p in self.panels if panel is None else [panel]:
            self._refresh_one(p)

    def _due(self) -> list[Any]:
        now = time.monotonic()
        with self._lock:
            due = [p for p in self.panels if self.states[id(p)].next_due <= now]
        rank = self._priority or (lambda _panel: 0)
        return sorted(due, key=lambda p: (rank(p), self.states[id(p)].next_due))

    def _loop(self, stop: threading.Event) -> None:
        logger.debug("portal refreshing every %g s", self.interval)
        while not stop.is_set():
            due = self._due()
            if due:  # the most urgent one, then look again (a panel may have become due)
                self._refresh_one(due[0], stop)
                continue
            with self._lock:
                nearest = min((s.next_due for s in self.states.values()), default=None)
            delay = self.interval if nearest is None else nearest - time.monotonic()
            if delay > 0:
                self._wake.wait(delay)
            self._wake.clear()
        logger.debug("portal stopped refreshing")

    def _refresh_one(self, panel: Any, stop: threading.Event | None = None) -> None:
        state = self.states[id(panel)]
        with self._one:
            if stop is not None and stop.is_set():
                return
            t0 = time.monotonic()
            with self._lock:
                state.busy_since = t0
            self._notify()
            failure = None
            try:
                snapshot = panel.fetch()
            except Exception as exc:  # shown in the panel's banner; the others go on
                failure = _describe(exc)
                # the panel's error line and the header say it; the log once per run of
                # failures, at info (a notebook would show a warning under the portal's cell)
                log = logger.info if state.failures == 0 else logger.debug
                log("portal: %s could not refresh: %s", state.title, failure)
            seconds = time.monotonic() - t0
            if failure is None:
                try:
                    self._apply(panel, snapshot)
                except Exception as exc:  # a bug in a panel's apply: shown, not fatal
                    logger.exception("portal: %s could not show its data", state.title)
                    failure = f"showing the data failed: {_describe(exc)}"
                del snapshot  # keep no snapshot beyond its apply
            self._settle(state, seconds, failure)
            if failure is not None and self._on_error is not None:
                try:
                    self._on_error(panel, failure)
                except Exception:  # never let the error display stop the refresh
                    logger.exception("portal: showing the error of %s failed", state.title)
        self._notify()

    def _settle(self, state: PanelState, seconds: float, failure: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            state.busy_since = None
            state.fetches += 1
            state.seconds = seconds
            if failure is None:
                state.applied += 1
                state.failures = 0
                state.error = state.error_since = None
                state.refreshed_at = datetime.now(UTC)
                if state.first_applied is None:
                    state.first_applied = now - self._created
                # a slow panel waits at least as long as it took: half the thread at most
                state.next_due = now + max(self.interval - seconds, seconds)
            else:
                state.failures += 1
                if state.error_since is None:
                    state.error_since = datetime.now(UTC)
                state.error = failure
                backoff = min(self.interval * 2 ** min(state.failures, 16), MAX_BACKOFF)
                state.next_due = now + max(backoff, self.interval, seconds)

    def _notify(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:  # the header must never stop the refresh
                logger.exception("portal: redrawing the header failed")
        with self._changed:
            self._changed.notify_all()
