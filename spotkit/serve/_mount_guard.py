"""Calls to a mounted source off the server's event loop, each with a deadline.

Tiled looks nodes up and pages through containers in its event loop (it awaits an
adapter's ``lookup_adapter``, ``exact_len``, ``keys_range``/``items_range``, and calls plain
methods directly). A mounted source that hangs would then hold every request of the
server until its timeout. A :class:`MountGuard` runs each call to one mount in that mount's
own threads and stops waiting after the mount's ``timeout``:

* the request gets 504 "the mounted source 'x' did not answer within N s" (502 with the
  kind of error when the source failed at once), and the server's log names the mount and
  the reason; the local datasets and the other mounts answer meanwhile;
* after it timed out or could not be reached, the mount is not asked again for
  :data:`RETRY_AFTER` seconds: requests get the same answer at once, so a dead mount costs
  other requests nothing (an error the source answered, say a broken entry, is reported
  but not remembered);
* the threads are the mount's own (:data:`WORKERS`), so a hanging mount never takes the
  threads Tiled reads local arrays with.

A thread still waiting on a hung source ends when the source's client gives up (its
``timeout`` per request); nothing is written anywhere, so abandoning a call is safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as _futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException

from spotkit.serve._federation_query import reason_of

__all__ = ["RETRY_AFTER", "WORKERS", "MountGuard"]

logger = logging.getLogger("spotkit.serve")

#: threads per mount (calls beyond that queue, within the same deadline)
WORKERS = 8
#: seconds a mount that failed is not asked again (its requests get the failure at once)
RETRY_AFTER = 15.0

T = TypeVar("T")


def _root(exc: BaseException) -> BaseException:
    """The innermost cause of an exception (the transport error under a client's)."""
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def _is_unreachable(exc: BaseException) -> bool:
    """Whether the source could not be reached at all (refused, reset, name unknown)."""
    import httpx

    return isinstance(_root(exc), httpx.TransportError | OSError)


def _is_timeout(exc: BaseException) -> bool:
    """Whether the source ran out of time (a read timeout of its client, or ours)."""
    import httpx

    cur: BaseException | None = exc
    seen: set[int] = set()
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, TimeoutError | httpx.TimeoutException):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


class MountGuard:
    """Runs the calls to one mount in its own threads, with a deadline and a memory of
    the last failure (see the module docstring).

    Parameters
    ----------
    name : str
        The mount's name (named in every answer and log line).
    timeout : float
        Seconds one call may take (queueing included).
    workers : int
        Threads of this mount.
    retry_after : float
        Seconds a failed mount is not asked again.

    Examples
    --------
    >>> import asyncio, time
    >>> guard = MountGuard("far", timeout=0.2)
    >>> asyncio.run(guard.call("count", len, [1, 2, 3]))
    3
    >>> try:
    ...     asyncio.run(guard.call("search", time.sleep, 1))
    ... except Exception as exc:
    ...     print(exc.status_code, exc.detail)
    504 the mounted source 'far' did not answer within 0.2 s; try again later
    >>> guard.failing
    True
    """

    def __init__(self, name: str, timeout: float, *, workers: int = WORKERS,
                 retry_after: float = RETRY_AFTER):
        self.name = name
        self.timeout = float(timeout)
        self.retry_after = float(retry_after)
        self._pool = _futures.ThreadPoolExecutor(max_workers=workers,
                                                 thread_name_prefix=f"spotkit-mount-{name}")
        self._lock = threading.Lock()
        self._failure: tuple[float, int, str] | None = None

    @property
    def failing(self) -> bool:
        """Whether the mount failed less than ``retry_after`` seconds ago."""
        with self._lock:
            return (self._failure is not None
                    and time.monotonic() - self._failure[0] < self.retry_after)

    def _check(self) -> None:
        with self._lock:
            failure = self._failure
        if failure is None:
            return
        left = self.retry_after - (time.monotonic() - failure[0])
        if left > 0:
            raise HTTPException(status_code=failure[1], detail=(
                f"{failure[2]} (it is asked again in {max(left, 1):.0f} s)"))

    def _succeeded(self) -> None:
        if self._failure is not None:
            with self._lock:
                self._failure = None
            logger.info("mount %s answers again", self.name)

    def _failed(self, what: str, exc: BaseException | None) -> HTTPException:
        remember = exc is None or _is_timeout(exc) or _is_unreachable(exc)
        if exc is None or _is_timeout(exc):
            status = 504
            detail = (f"the mounted source {self.name!r} did not answer within "
                      f"{self.timeout:g} s; try again later")
            why = f"no answer within {self.timeout:g} s"
        else:
            status = 502
            detail = (f"the mounted source {self.name!r} did not answer "
                      f"({type(_root(exc)).__name__}); try again later")
            why = reason_of(exc)
        if not remember:
            logger.warning("mount %s: %s failed: %s", self.name, what, why)
            return HTTPException(status_code=status, detail=detail)
        with self._lock:
            self._failure = (time.monotonic(), status, detail)
        logger.warning("mount %s: %s failed: %s; not asked again for %g s", self.name, what,
                       why, self.retry_after)
        return HTTPException(status_code=status, detail=detail)

    async def call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the mount's threads, awaited at most ``timeout`` seconds.

        Raises
        ------
        KeyError
            As ``fn`` raises it (no such entry: not a failure of the mount).
        fastapi.HTTPException
            504 (no answer in time) or 502 (failed), naming the mount; at once while the
            mount is remembered as failing.
        """
        self._check()
        future = self._pool.submit(fn, *args)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except (KeyError, HTTPException):
            raise
        except TimeoutError:
            future.cancel()
            raise self._failed(what, None) from None
        except Exception as exc:
            raise self._failed(what, exc) from exc
        self._succeeded()
        return result

    def run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the mount's threads, waited for at most ``timeout`` seconds,
        from a thread that is not the event loop (an array read Tiled runs in its threads).

        Raises
        ------
        KeyError, fastapi.HTTPException
            As :meth:`call`.
        """
        self._check()
        future = self._pool.submit(fn, *args)
        try:
            result = future.result(timeout=self.timeout)
        except (KeyError, HTTPException):
            raise
        except TimeoutError:
            if not future.done():
                future.cancel()
                raise self._failed(what, None) from None
            raise self._failed(what, future.exception()) from None
        except Exception as exc:
            raise self._failed(what, exc) from exc
        self._succeeded()
        return result

    def __repr__(self) -> str:
        return f"<MountGuard {self.name} timeout={self.timeout:g}s>"
