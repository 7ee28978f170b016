"""Watch a live series: the points ``spotkit live`` records, as they come.

A :class:`Subscription` reads the catalog's change numbers
(:meth:`Catalog.live_changes <spotkit.catalog.Catalog.live_changes>`): an empty read is
one index lookup. Points come in the order they were recorded, once each; a point that is
replaced (a fit of the same frame done again) comes again with its new values. Nothing is
missed between reads, even with several writers.

When to read:

* PostgreSQL catalog: the subscription ``LISTEN`` s, on a connection of its own, to the
  channel :meth:`Catalog.record_live <spotkit.catalog.Catalog.record_live>` notifies in
  the transaction that writes points (:attr:`Catalog.live_channel
  <spotkit.catalog.Catalog.live_channel>`), and reads as soon as a notification for its
  series arrives (milliseconds after the commit). It still reads every ``interval``
  (default :data:`LISTEN_INTERVAL_S`) as a safety net: a notification is only a wake-up
  call, the change numbers stay the truth, so one that was missed (the connection dropped,
  the server restarted, a writer that does not notify) delays a point, never loses it.
  While the listening connection is down it polls every :data:`POLL_INTERVAL_S` and
  connects again with growing pauses; once back it reads from its cursor at once.
* SQLite catalog (no notifications), or ``listen=False`` (a connection pooler such as
  PgBouncer in transaction mode, which cannot carry LISTEN): it polls every ``interval``
  (default :data:`POLL_INTERVAL_S`), as a widget or a fitting loop can on any catalog
  size.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from spotkit.backoff import Backoff
from spotkit.catalog import LivePoint, mask_url

__all__ = ["LISTEN_INTERVAL_S", "POLL_INTERVAL_S", "Subscription", "subscribe"]

logger = logging.getLogger(__name__)

#: seconds between reads where nothing announces new points: SQLite, ``listen=False``, and
#: a PostgreSQL subscription whose listening connection is down
POLL_INTERVAL_S = 0.2
#: seconds between the safety-net reads of a subscription that listens (PostgreSQL)
LISTEN_INTERVAL_S = 5.0
#: pauses between attempts to make the listening connection again
_RECONNECT = Backoff(first=1.0, factor=2.0, maximum=30.0)


def _readable(files: list[Any], timeout: float) -> list[Any]:
    """Those of ``files`` (sockets or descriptors) readable within ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        for f in files:
            selector.register(f, selectors.EVENT_READ)
        return [key.fileobj for key, _ in selector.select(timeout)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Listener:
    """``LISTEN`` on a PostgreSQL catalog's live channel, on a connection of its own
    (psycopg 3, autocommit: it never holds a transaction, and costs the server nothing
    while it waits).

    A wait sleeps in ``select`` (epoll) on that connection's socket and on a socket pair that
    :meth:`wake` writes to, so it costs no CPU while nothing happens and ends at once on
    a notification, a lost connection or a wake-up.
    """

    def __init__(self, url: str, channel: str, dataset_id: str, where: str,
                 seen: Callable[[], int]):
        self.url = url
        self.channel = channel
        self.dataset_id = dataset_id
        self.where = where  # the catalog, for messages (no password)
        self.seen = seen  # the subscription's cursor: notices up to it are old news
        self.notices = 0  # notifications for this series that woke a wait
        self._conn: Any = None
        self._failures = 0
        self._retry_at = 0.0
        self._closed = False
        self._lock = threading.Lock()  # one wait at a time
        self._bell_lock = threading.Lock()
        self._pair: tuple[socket.socket, socket.socket] | None = None  # made when needed

    def _bells(self) -> tuple[socket.socket, socket.socket]:
        """The socket a wait watches, and the one :meth:`wake` writes to."""
        with self._bell_lock:
            if self._pair is None:
                self._pair = socket.socketpair()
                for end in self._pair:
                    end.setblocking(False)
            return self._pair

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def wake(self) -> None:
        """End the current wait now, or the next one if none runs."""
        if self._closed and self._pair is None:
            return
        try:
            self._bells()[1].send(b"!")
        except OSError:  # full (woken already) or closed
            pass

    def _woken(self) -> bool:
        try:
            return bool(self._bells()[0].recv(512))
        except OSError:  # nothing to read: not woken
            return False

    def _connect(self) -> bool:
        import psycopg
        from psycopg import sql

        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10,
                                   application_name="spotkit-live-listen", keepalives=1,
                                   keepalives_idle=30, keepalives_interval=10,
                                   keepalives_count=3)
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            except BaseException:
                conn.close()
                raise
        except (psycopg.Error, OSError) as exc:
            self._failures += 1
            pause = _RECONNECT.delay(self._failures)
            self._retry_at = time.monotonic() + pause
            log = logger.warning if self._failures == 1 else logger.debug
            log("live subscription of %s: cannot listen for new points on %s (%s); polling "
                "every %.1f s meanwhile, trying again in %.0f s", self.dataset_id, self.where,
                _first_line(exc), POLL_INTERVAL_S, pause)
            return False
        if self._closed:  # closed meanwhile (a connect that took longer than close waits)
            conn.close()
            return False
        if self._failures:
            logger.info("live subscription of %s: listening on %s again", self.dataset_id,
                        self.where)
        self._conn, self._failures = conn, 0
        return True

    def _news(self, payload: str) -> bool:
        try:
            notice = json.loads(payload)
            if notice["series"] != self.dataset_id:
                return False
            if "state" in notice:  # the series' live state changed (e.g. it finished)
                return True
            return int(notice["change"]) > self.seen()
        except (ValueError, TypeError, KeyError):
            return True  # not ours to judge: read, and the change numbers will tell

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for news of the series: True when a read is due now
        (news; listening just began; the connection was lost; polling while it is down),
        False when the time passed or :meth:`wake` was called."""
        import psycopg

        if not self._lock.acquire(timeout=seconds):  # another thread waits: it reads too
            return False
        try:
            if self._closed or self._woken():
                return False
            if self._conn is None:
                if time.monotonic() >= self._retry_at and self._connect():
                    return True  # listening now: a read covers what came before
                # polling meanwhile
                bell = self._bells()[0]
                if _readable([bell], min(seconds, POLL_INTERVAL_S)):
                    self._woken()
                    return False
                return True
            bell = self._bells()[0]
            end = time.monotonic() + seconds
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                try:
                    ready = _readable([self._conn.fileno(), bell], left)
                    if bell in ready:
                        self._woken()
                        return False
                    if not ready:
                        return False
                    notices = list(self._conn.notifies(timeout=0))
                except (psycopg.Error, OSError, ValueError) as exc:
                    # dropped (server restart, network, terminated): notifications may
                    # have been missed, so read now; connect again at the next wait
                    logger.warning("live subscription of %s: the listening connection to "
                                   "%s was lost (%s); reading and listening again",
                                   self.dataset_id, self.where, _first_line(exc))
                    self._drop()
                    return True
                if any([self._news(n.payload) for n in notices]):
                    self.notices += 1
                    return True
        finally:
            self._lock.release()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already gone: nothing to release
                logger.debug("closing a lost listening connection failed", exc_info=True)

    def close(self) -> None:
        """Close the connection (a wait in another thread ends first)."""
        self._closed = True
        self.wake()
        if self._lock.acquire(timeout=5.0):
            try:
                self._drop()
                with self._bell_lock:
                    pair, self._pair = self._pair, None
                for end in pair or ():
                    end.close()
            finally:
                self._lock.release()
        else:  # pragma: no cover - a wait that did not end: leave it its sockets
            logger.warning("live subscription of %s: a wait did not end; its listening "
                           "connection is left to close with it", self.dataset_id)


class Subscription:
    """New points of a live series (made by :func:`subscribe`).

    Use :meth:`poll` (never waits), :meth:`wait` (waits for the next points), iterate
    (``for point in sub``: waits for each; ends when the series' live status says it ended
    and everything was delivered, or on :meth:`close`), or :meth:`start` a background
    thread that hands each batch to a callback. On a PostgreSQL catalog the waits end as
    soon as a notification says the series got points (see the module notes); on SQLite
    they poll every ``interval``.

    Attributes
    ----------
    dataset_id : str
    delivered : int
        Points handed out so far.
    after : int
        The last change number seen (the catalog's ``live_changes`` cursor).
    interval : float
        Seconds between reads while waiting: the poll interval, or where it listens the
        safety net.
    """

    def __init__(
        self,
        catalog: Any,
        dataset_id: Any,
        *,
        since: int = -1,
        kinds: str | Iterable[str] | None = None,
        interval: float | None = None,
        listen: bool = True,
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
        if interval is not None and (isinstance(interval, bool) or not isinstance(
                interval, int | float) or not 0 < interval <= 3600):
            raise ValueError(f"interval must be a positive number of seconds (at most 3600) "
                             f"or None, got {interval!r}")
        self.catalog = catalog
        self.dataset_id: str = getattr(dataset_id, "id", dataset_id)
        if self.dataset_id not in catalog:
            from spotkit.errors import DatasetNotFoundError

            raise DatasetNotFoundError(self.dataset_id, getattr(catalog, "url", None))
        self.kinds = [kinds] if isinstance(kinds, str) else (
            None if kinds is None else list(kinds))
        if self.kinds is not None:
            catalog.live_points(self.dataset_id, kinds=self.kinds, limit=1)  # checks them
        self.after = 0
        self.delivered = 0
        self._since = since  # frames > since, until the first catch-up is done
        self._closed = threading.Event()
        self._nudge = threading.Event()  # wake() of a sleep that does not listen
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        channel = getattr(catalog, "live_channel", None) if listen else None
        self._listener = None if not isinstance(channel, str) else _Listener(
            str(catalog.url), channel, self.dataset_id, mask_url(str(catalog.url)),
            seen=lambda: self.after)
        if interval is None:
            interval = POLL_INTERVAL_S if self._listener is None else LISTEN_INTERVAL_S
        self.interval = float(interval)

    def __repr__(self) -> str:
        return (f"<Subscription {self.dataset_id} kinds={self.kinds} after change "
                f"{self.after}: {self.delivered} points delivered>")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def listening(self) -> bool:
        """Whether notifications wake this subscription (a PostgreSQL catalog, ``listen``
        on); while its listening connection is down it polls meanwhile."""
        return self._listener is not None

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds`` before the next read, without reading the catalog.

        Where the subscription listens, the wait ends early when a notification says the
        series got points not delivered yet, when the listening connection was made or
        lost (points may have come unannounced), and every :data:`POLL_INTERVAL_S` while
        it is down; it sleeps in ``select`` (no CPU). Elsewhere it just sleeps.
        :meth:`wake` (from another thread) and :meth:`close` end it at once.

        Parameters
        ----------
        seconds : float

        Returns
        -------
        bool
            True when a read is due now (news, or the listening connection changed),
            False when the time passed or the wait was ended by :meth:`wake`.
        """
        if self.closed:
            return False
        if self._listener is None:
            self._nudge.wait(seconds)
            self._nudge.clear()
            return False
        return self._listener.wait(seconds)

    def wake(self) -> None:
        """End the current :meth:`sleep` now (or the next one, if none runs): for a
        poller that is being stopped."""
        self._nudge.set()
        if self._listener is not None:
            self._listener.wake()

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
        """Read until points come (or ``timeout`` passes, or the subscription is closed:
        then an empty list): every ``interval`` seconds, and where it listens as soon as a
        notification says points came."""
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
            self.sleep(pause)
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
                self.sleep(self.interval)

    def start(
        self,
        callback: Callable[[list[LivePoint]], Any],
        *,
        on_error: Callable[[BaseException], Any] | None = None,
    ) -> threading.Thread:
        """Read in a background thread and call ``callback(points)`` with each new batch
        (as soon as a notification says points came where the subscription listens, else
        every ``interval``).

        The thread stops at :meth:`close`. An error while reading (a catalog briefly
        unreachable) is logged and retried with growing pauses (the first after at most a
        second: a dropped catalog connection is made again by the next read); an error
        raised by the callback is logged (and given to ``on_error``) and reading goes on.

        Returns
        -------
        threading.Thread
            The (daemon) thread.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self!r} already runs a background poller")
        waits = Backoff(first=min(self.interval, 1.0), factor=2.0,
                        maximum=max(5.0, self.interval))

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
                    self.sleep(self.interval)

        self._thread = threading.Thread(target=run, name=f"spotkit-live-{self.dataset_id}",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def close(self, timeout: float = 5.0) -> None:
        """Stop (the background thread too, waiting up to ``timeout`` s for it) and close
        the listening connection."""
        self._closed.set()
        self.wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
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
    interval: float | None = None,
    listen: bool = True,
) -> Subscription:
    """Follow the points a live series gets in the catalog (features, changes, fits,
    decisions), as they are recorded.

    On PostgreSQL the subscription LISTENs for the notifications ``record_live`` sends,
    and reads at once when its series got points; on SQLite it polls (module notes).

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
        Seconds between reads while waiting (:meth:`Subscription.wait`, iteration,
        :meth:`Subscription.start`). Default: on SQLite, or with ``listen=False``, a poll
        every :data:`POLL_INTERVAL_S` (0.2 s); on PostgreSQL, which wakes the subscription
        when points are recorded, a safety-net read every :data:`LISTEN_INTERVAL_S` (5 s).
    listen : bool, optional
        On PostgreSQL, LISTEN for the notifications of
        :meth:`~spotkit.catalog.Catalog.record_live` (default); False: poll, as on SQLite
        (for a pooler that cannot carry LISTEN). Ignored on SQLite.

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
    return Subscription(catalog, dataset_id, since=since, kinds=kinds, interval=interval,
                        listen=listen)
