"""Batched, rate-limited status queries for the jobs of one target, with retries.

A :class:`~spotkit.compute.Job` asks its target's :class:`Poller` for its status. The poller
batches the ids of every job of that target that someone asked about recently into one
scheduler query, and makes at most one query per ``min_poll`` seconds; transient scheduler
errors are retried with exponential backoff (:func:`retry_transient`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from spotkit.backoff import Backoff
from spotkit.compute._states import JobState, JobStatus
from spotkit.errors import SchedulerError, TransientSchedulerError

if TYPE_CHECKING:
    from spotkit.compute._base import Target

logger = logging.getLogger(__name__)

__all__ = ["Poller", "retry_transient"]

T = TypeVar("T")


def retry_transient(
    call: Callable[[], T],
    *,
    what: str,
    target: str,
    attempts: int = 5,
    first_delay: float = 0.5,
    max_delay: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``call()``; on :class:`TransientSchedulerError` retry with exponential backoff.

    Parameters
    ----------
    call : callable
        No arguments; returns the result.
    what : str
        What is being done, for the log and the final error (``"squeue for 3 jobs"``).
    target : str
        The target's name.
    attempts : int
        Calls in all (at least 1).
    first_delay, max_delay : float
        Seconds before the second call, doubling up to ``max_delay``.
    sleep : callable
        ``time.sleep``, replaceable in tests.

    Returns
    -------
    The result of the first call that did not raise a transient error.

    Raises
    ------
    SchedulerError
        After ``attempts`` transient failures: says how often and for how long it tried,
        and the scheduler's last words. Permanent errors are raised at once, unchanged.
    """
    waits = Backoff(first_delay, 2.0, max(first_delay, max_delay))
    t0 = time.monotonic()
    for attempt in range(1, max(1, attempts) + 1):
        try:
            return call()
        except TransientSchedulerError as exc:
            if attempt >= attempts:
                raise SchedulerError(
                    f"{what} on {target} failed {attempt} times over "
                    f"{time.monotonic() - t0:.0f} s with transient errors; last: {exc}. The "
                    "scheduler may be down or overloaded: try again later.",
                    target=target, command=exc.command, returncode=exc.returncode,
                    detail=exc.detail,
                ) from exc
            delay = waits.delay(attempt)
            logger.warning("%s on %s failed (%s); retrying in %.1f s (attempt %d of %d)",
                           what, target, exc, delay, attempt + 1, attempts)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class Poller:
    """Batched, rate-limited status queries for the jobs of one target.

    Every job asked about in the last ``watch_seconds`` and not finished is polled in the
    same scheduler query; a query is made at most once per ``min_poll`` seconds, otherwise
    the cached answers are returned. Finished statuses are kept and never asked again.
    Thread-safe: a widget refreshing in a thread and a ``wait`` share one poller.

    Parameters
    ----------
    target : Target
        Answers ``status(job_ids)``.
    min_poll : float, optional
        Seconds between two queries; defaults to ``target.min_poll``.
    attempts, first_delay, max_delay : optional
        Retries of transient errors (see :func:`retry_transient`).
    watch_seconds : float
        How long after the last question an unfinished job is still included in queries.
    clock, sleep : callable
        ``time.monotonic`` and ``time.sleep``, replaceable in tests.

    Attributes
    ----------
    queries : int
        Scheduler queries made so far (one per ``target.status`` call).
    """

    def __init__(self, target: Target, *, min_poll: float | None = None, attempts: int = 5,
                 first_delay: float = 0.5, max_delay: float = 8.0, watch_seconds: float = 600.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.target = target
        self.min_poll = float(target.min_poll if min_poll is None else min_poll)
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.watch_seconds = watch_seconds
        self.queries = 0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.RLock()
        self._known: dict[str, JobStatus] = {}
        self._asked: dict[str, float] = {}
        self._last_query: float | None = None
        self._max_ids = int(getattr(target, "max_ids_per_query", 500))

    def __repr__(self) -> str:
        return (f"<Poller for {self.target.name}: {len(self._asked)} job(s) watched, "
                f"{self.queries} queries, min_poll={self.min_poll:g} s>")

    def watch(self, job_id: str, status: JobStatus | None = None) -> None:
        """Start watching a job, with what is known about it now (e.g. just submitted)."""
        with self._lock:
            self._asked[job_id] = self._clock()
            if status is not None and job_id not in self._known:
                self._known[job_id] = status

    def forget(self, job_id: str) -> None:
        """Stop watching a job and drop what is known about it."""
        with self._lock:
            self._asked.pop(job_id, None)
            self._known.pop(job_id, None)

    def seconds_since_query(self) -> float | None:
        """Seconds since the last scheduler query (None: never queried)."""
        with self._lock:
            return None if self._last_query is None else self._clock() - self._last_query

    def status(self, job_ids: Iterable[str], *, fresh: bool = False) -> dict[str, JobStatus]:
        """Latest statuses of ``job_ids``; queries the scheduler when the cache is stale.

        Parameters
        ----------
        job_ids : iterable of str
        fresh : bool
            Wait out the rest of ``min_poll`` if needed so that the answer comes from a
            query made now (``Job.wait`` does); otherwise return the cache when a query was
            made less than ``min_poll`` seconds ago.

        Returns
        -------
        dict
            ``{job_id: JobStatus}``; ``UNKNOWN`` for an id the scheduler never answered.

        Raises
        ------
        SchedulerError
            The scheduler failed permanently, or transiently more often than allowed.
        """
        ids = list(dict.fromkeys(job_ids))
        with self._lock:
            now = self._clock()
            for job_id in ids:
                self._asked[job_id] = now
            pending = [i for i in ids if not self._final(i)]
            if pending:
                since = None if self._last_query is None else now - self._last_query
                if since is not None and since < self.min_poll and fresh:
                    self._sleep(self.min_poll - since)
                    since = self.min_poll
                if since is None or since >= self.min_poll:
                    self._query()
            return {i: self._known.get(i) or JobStatus(i, JobState.UNKNOWN) for i in ids}

    def _final(self, job_id: str) -> bool:
        known = self._known.get(job_id)
        return known is not None and known.state.finished

    def _query(self) -> None:
        now = self._clock()
        watched = [i for i, t in self._asked.items()
                   if now - t <= self.watch_seconds and not self._final(i)]
        try:
            self._query_ids(watched)
        finally:  # a failed query counts too: callers must not hammer a failing scheduler
            self._last_query = self._clock()

    def _query_ids(self, watched: list[str]) -> None:
        for start in range(0, len(watched), self._max_ids):
            chunk = watched[start:start + self._max_ids]
            answer = retry_transient(
                functools.partial(self.target.status, chunk),
                what=f"status of {len(chunk)} job(s)", target=self.target.name,
                attempts=self.attempts, first_delay=self.first_delay,
                max_delay=self.max_delay, sleep=self._sleep,
            )
            self.queries += 1
            for job_id in chunk:
                st = answer.get(job_id)
                if st is not None and st.state is not JobState.UNKNOWN:
                    self._known[job_id] = st
                elif job_id in self._known and not self._known[job_id].state.finished:
                    # keep the last real answer; the Job decides how long "unknown" may last
                    self._known[job_id] = replace(self._known[job_id], state=JobState.UNKNOWN)
                else:
                    self._known[job_id] = JobStatus(job_id, JobState.UNKNOWN)
