"""Watch a live series: the points ``spotkit live`` records, as they come.

A :class:`Subscription` polls the catalog's change numbers
(:meth:`Catalog.live_changes <spotkit.catalog.Catalog.live_changes>`): an empty poll is
one index lookup, so a widget or a fitting loop can poll a few times a second on any
catalog size. Points come in the order they were recorded, once each; a point that is
replaced (a fit of the same frame done again) comes again with its new values. Nothing is
missed between polls, even with several writers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from spotkit.backoff import Backoff
from spotkit.catalog import LivePoint

__all__ = ["Subscription", "subscribe"]

logger = logging.getLogger(__name__)


class Subscription:
    """New points of a live series (made by :func:`subscribe`).

    Use :meth:`poll` (never waits), :meth:`wait` (waits for the next points), iterate
    (``for point in sub``: waits for each; ends when the series' live status says it ended
    and everything was delivered, or on :meth:`close`), or :meth:`start` a background
    thread that hands each batch to a callback.

    Attributes
    ----------
    dataset_id : str
    delivered : int
        Points handed out so far.
    after : int
        The last change number seen (the catalog's ``live_changes`` cursor).
    """

    def __init__(
        self,
        catalog: Any,
        dataset_id: Any,
        *,
        since: int = -1,
        kinds: str | Iterable[str] | None = None,
        interval: float = 0.2,
    ):
        if isinstance(catalog, str | os.PathLike):
            from spotkit.catalog import open_catalog

            catalog = open_catalog(catalog, create=False)
            self._owned = True
        else:
            self._owned = False
        if not callable(getattr(catalog, "live_changes", None)):
            raise TypeError(f"catalog must be a spotkit Catalog (open_catalog) or its path, "
                            f"not {type(catalog).__name__}")
        if isinstance(since, bool) or not isinstance(since, int) or since < -1:
            raise ValueError(f"since must be a frame index or -1 (everything), got {since!r}")
        if not isinstance(interval, int | float) or not 0 < interval <= 3600:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        self.catalog = catalog
        self.dataset_id: str = getattr(dataset_id, "id", dataset_id)
        if self.dataset_id not in catalog:
            from spotkit.errors import DatasetNotFoundError

            raise DatasetNotFoundError(self.dataset_id, getattr(catalog, "url", None))
        self.kinds = [kinds] if isinstance(kinds, str) else (
            None if kinds is None else list(kinds))
        if self.kinds is not None:
            catalog.live_points(self.dataset_id, kinds=self.kinds, limit=1)  # checks them
        self.interval = float(interval)
        self.after = 0
        self.delivered = 0
        self._since = since  # frames > since, until the first catch-up is done
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"<Subscription {self.dataset_id} kinds={self.kinds} after change "
                f"{self.after}: {self.delivered} points delivered>")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def poll(self, limit: int | None = None) -> list[LivePoint]:
        """The points recorded since the last poll (never waits).

        Parameters
        ----------
        limit : int, optional
            At most this many (the rest come next time).

        Returns
        -------
        list of LivePoint
        """
        with self._lock:
            points, after = self.catalog.live_changes(
                self.dataset_id, after=self.after, since=self._since, kinds=self.kinds,
                limit=limit)
            if limit is None or len(points) < limit:
                self._since = -1  # caught up: from now on every new point, of any frame
            self.after = after
            self.delivered += len(points)
        return points

    def wait(self, timeout: float | None = None) -> list[LivePoint]:
        """Poll every ``interval`` seconds until points come (or ``timeout`` passes, or the
        subscription is closed: then an empty list)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.closed:
            points = self.poll()
            if points:
                return points
            pause = self.interval
            if deadline is not None:
                pause = min(pause, deadline - time.monotonic())
                if pause <= 0:
                    break
            self._closed.wait(pause)
        return []

    def ended(self) -> bool:
        """Whether the series' live status says it ended (finished, stopped or failed)."""
        status = self.catalog.live_status(self.dataset_id)
        return status is not None and not status.get("active", True)

    def __iter__(self) -> Iterator[LivePoint]:
        while not self.closed:
            ended = self.ended()  # before polling: what ended before is then all there
            points = self.poll()
            yield from points
            if not points:
                if ended:
                    return
                self._closed.wait(self.interval)

    def start(
        self,
        callback: Callable[[list[LivePoint]], Any],
        *,
        on_error: Callable[[BaseException], Any] | None = None,
    ) -> threading.Thread:
        """Poll in a background thread and call ``callback(points)`` with each new batch.

        The thread stops at :meth:`close`. An error while polling (a catalog briefly
        unreachable) is logged and retried with growing pauses; an error raised by the
        callback is logged (and given to ``on_error``) and polling goes on.

        Returns
        -------
        threading.Thread
            The (daemon) thread.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self!r} already runs a background poller")
        waits = Backoff(first=self.interval, factor=2.0, maximum=max(5.0, self.interval))

        def run() -> None:
            failures = 0
            while not self.closed:
                try:
                    points = self.poll()
                    failures = 0
                except Exception as exc:  # the catalog: retry
                    failures += 1
                    logger.warning("live subscription of %s: polling failed (%s); again in "
                                   "%.1f s", self.dataset_id, exc, waits.delay(failures))
                    if on_error is not None:
                        on_error(exc)
                    self._closed.wait(waits.delay(failures))
                    continue
                if points:
                    try:
                        callback(points)
                    except Exception as exc:
                        logger.exception("live subscription of %s: the callback failed",
                                         self.dataset_id)
                        if on_error is not None:
                            on_error(exc)
                else:
                    self._closed.wait(self.interval)

        self._thread = threading.Thread(target=run, name=f"spotkit-live-{self.dataset_id}",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def close(self, timeout: float = 5.0) -> None:
        """Stop (the background thread too, waiting up to ``timeout`` s for it)."""
        self._closed.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self._owned:
            self.catalog.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def subscribe(
    catalog: Any,
    dataset_id: Any,
    *,
    since: int = -1,
    kinds: str | Iterable[str] | None = None,
    interval: float = 0.2,
) -> Subscription:
    """Follow the points a live series gets in the catalog (features, changes, fits,
    decisions), as they are recorded.

    Parameters
    ----------
    catalog : Catalog or path-like
        The catalog ``spotkit live`` records into (a path or URL is opened, and closed
        with the subscription).
    dataset_id : str or Dataset
        The series.
    since : int, optional
        The first poll brings the points of frames > ``since`` (default -1: all); later
        polls bring every new or replaced point, whatever its frame (a fit of an earlier
        frame too).
    kinds : str or iterable of str, optional
        Only these kinds; ``"fit"`` means every ``"fit:<model>"``.
    interval : float, optional
        Seconds between polls while waiting (:meth:`Subscription.wait`, iteration,
        :meth:`Subscription.start`).

    Returns
    -------
    Subscription

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import LivePoint, open_catalog
    >>> from spotkit.live import subscribe
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> cat.bulk_load([{"kind": "saxs/raw", "sample": "film"}])  # a series
    1
    >>> series = cat[next(iter(cat))]
    >>> sub = subscribe(cat, series.id, interval=0.05)
    >>> sub.poll()
    []
    >>> _ = cat.record_live(series.id, [LivePoint(f, "features", {"score": f}) for f in (0, 1)])
    >>> [p.frame for p in sub.poll()]
    [0, 1]
    >>> _ = cat.record_live(series.id, [LivePoint(0, "fit:sphere", {"radius": 4.2})])
    >>> [(p.frame, p.kind) for p in sub.wait(timeout=1)]
    [(0, 'fit:sphere')]
    >>> _ = cat.set_live_status(series.id, state="finished")
    >>> list(sub)  # iteration ends once the series ended and all was delivered
    []
    >>> sub.close()
    """
    return Subscription(catalog, dataset_id, since=since, kinds=kinds, interval=interval)
