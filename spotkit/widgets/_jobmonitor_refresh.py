"""The background refresh of a job monitor: a daemon thread over a :class:`JobMonitorModel`.

Why a thread and not an asyncio task on the kernel's event loop: a task on that loop only
runs while the kernel is idle, so the table would freeze exactly when a person most wants
it to move (a cell blocked in ``job.wait()`` or in a reconstruction); and the status
queries themselves block (``squeue``/``sacct`` subprocesses, HTTP calls to the
Superfacility API, with retries and backoff), so on the loop they would stall the kernel's
message handling unless pushed to a thread anyway. A daemon thread refreshes in both
cases, works the same in plain Python (tests, scripts) where no loop runs, and only calls
back the view, which sets widget values through ipykernel's thread-safe IOPub channel.

The thread makes one status query per target per refresh (:meth:`JobMonitorModel.refresh`
on :func:`spotkit.compute.poll_jobs`, on top of each target's rate-limited
:class:`~spotkit.compute.Poller`), and ends by itself once every job has finished, or on
:meth:`Refresher.stop` / :meth:`Refresher.close`. Nothing here imports ipywidgets.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable

from spotkit.widgets._jobmonitor_model import JobMonitorModel

logger = logging.getLogger(__name__)

__all__ = ["THREAD_NAME", "Refresher"]

#: The name of the refresh threads (to find them in ``threading.enumerate()``).
THREAD_NAME = "spotkit-job-monitor"


def _nothing() -> None:
    return None


class Refresher:
    """Refresh a model every ``interval`` seconds in a daemon thread until its jobs end.

    Parameters
    ----------
    model : JobMonitorModel
    interval : float
        Seconds between refreshes (each target also rate-limits its own queries).
    on_refresh : callable, optional
        Called without arguments after each refresh and when the thread ends (the view
        redraws itself there).
    on_error : callable, optional
        Called with the exception when a refresh raises something unexpected; the thread
        then ends (a bug must not die silently in a thread).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.compute import Job, Local
    >>> from spotkit.widgets import JobMonitorModel
    >>> from spotkit.widgets._jobmonitor_refresh import Refresher
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> script = folder / "nap.sh"
    >>> _ = script.write_text("sleep 0.2")
    >>> target = Local(min_poll=0.05)
    >>> job = Job(target.submit_script(script, job_name="nap", workdir=folder), target)
    >>> model = JobMonitorModel([job])
    >>> refresher = Refresher(model, interval=0.1)
    >>> refresher.start()
    True
    >>> refresher.join(timeout=30)      # ends by itself once the job has finished
    >>> refresher.running, model.summary()
    (False, '1 job: 1 succeeded')
    >>> refresher.start()               # nothing left to follow
    False
    """

    def __init__(self, model: JobMonitorModel, interval: float, *,
                 on_refresh: Callable[[], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None):
        interval = float(interval)
        if not interval > 0:
            raise ValueError(f"refresh must be a positive number of seconds, not {interval!r}")
        self.model = model
        self.interval = interval
        self.on_refresh: Callable[[], None] = on_refresh or _nothing
        self.on_error = on_error
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        #: the last refresh thread started (it may still be ending)
        self.thread: threading.Thread | None = None
        self._active: threading.Thread | None = None  # the thread inside its refresh loop

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"<Refresher every {self.interval:g} s, {state}>"

    @property
    def running(self) -> bool:
        """The refresh thread is alive (refreshing, or drawing its last refresh)."""
        thread = self.thread
        return thread is not None and thread.is_alive()

    @property
    def refreshing(self) -> bool:
        """The refresh thread is in its loop: more refreshes will come."""
        active = self._active
        return active is not None and active.is_alive()

    @property
    def closed(self) -> bool:
        """:meth:`close` was called: the refresher never starts again."""
        return self._closed

    def start(self) -> bool:
        """Start the refresh thread, or wake it up now if it runs.

        Returns
        -------
        bool
            True when a thread runs now; False when every job has finished (nothing to
            refresh) or the refresher is closed.
        """
        with self._lock:
            if self._closed:
                return False
            if self.refreshing:
                self._wake.set()
                return True
            if self.model.done:
                return False
            self._stop = threading.Event()
            self._wake.clear()
            # the thread's messages go out under the cell that started it
            context = contextvars.copy_context()
            thread = threading.Thread(target=context.run, args=(self._loop, self._stop),
                                      name=THREAD_NAME, daemon=True)
            self.thread = self._active = thread
            thread.start()
            return True

    def wake(self) -> None:
        """Refresh now instead of at the end of the current wait (if the thread runs)."""
        self._wake.set()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop refreshing and wait up to ``timeout`` seconds for the thread to end."""
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

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end by itself (every job finished)."""
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self, stop: threading.Event) -> None:
        logger.debug("job monitor refreshing every %g s", self.interval)
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                self.model.refresh()
                self.on_refresh()
            except Exception as exc:  # a bug must not die silently in a thread
                logger.exception("job monitor refresh failed; refreshing stopped")
                self._leave()
                if self.on_error is not None:
                    self.on_error(exc)
                return
            with self._lock:  # one step with start(): a job added now starts a new thread
                if self.model.done or stop.is_set():
                    self._leave()
                    break
            self._wake.wait(max(0.0, self.interval - (time.monotonic() - t0)))
            self._wake.clear()
        self._leave()
        self.on_refresh()  # the last drawing: not refreshing any more
        logger.debug("job monitor stopped refreshing")

    def _leave(self) -> None:
        with self._lock:
            if self._active is threading.current_thread():
                self._active = None
