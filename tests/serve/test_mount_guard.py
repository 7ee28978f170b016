"""MountGuard: calls to a mount in its own threads, with a deadline and a memory of the
last failure (the server-level behaviour is tested in test_federation.py with a real
hanging server)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest
from fastapi import HTTPException

pytest.importorskip("tiled.server")

from spotkit.serve._federation_server import _offset
from spotkit.serve._mount_guard import MountGuard


def boom() -> None:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except OSError as exc:
        raise RuntimeError("mount 'far': cannot reach http://far/api?api_key=SECRET") from exc


def missing() -> None:
    raise KeyError("ds-x")


def broken() -> None:
    raise ValueError("the source answered 500 for this entry")


def test_answers_failures_and_recovery(caplog):
    guard = MountGuard("far", timeout=2.0, retry_after=0.3)
    assert asyncio.run(guard.call("count", sum, [1, 2])) == 3
    with pytest.raises(KeyError):  # no such entry: not a failure of the mount
        asyncio.run(guard.call("look up", missing))
    assert not guard.failing
    with pytest.raises(HTTPException) as info:  # an answer of the source: not remembered
        asyncio.run(guard.call("look up", broken))
    assert (info.value.status_code, guard.failing) == (502, False)
    with pytest.raises(HTTPException) as info:  # not reachable: remembered
        asyncio.run(guard.call("search", boom))
    assert info.value.status_code == 502
    assert info.value.detail == ("the mounted source 'far' did not answer "
                                 "(ConnectionRefusedError); try again later")
    assert guard.failing
    assert "mount far: search failed" in caplog.text
    assert "SECRET" not in caplog.text  # keys in a reason are redacted
    started = time.monotonic()
    with pytest.raises(HTTPException) as again:  # remembered: the source is not asked
        asyncio.run(guard.call("count", sum, [1, 2]))
    assert again.value.status_code == 502
    assert "did not answer (ConnectionRefusedError)" in again.value.detail
    assert "asked again in" in again.value.detail
    assert time.monotonic() - started < 0.2
    time.sleep(0.35)
    assert asyncio.run(guard.call("count", sum, [1, 2])) == 3  # asked again, answers
    assert not guard.failing


def test_a_hanging_call_times_out_without_holding_the_loop():
    guard = MountGuard("slow", timeout=0.3)
    release = threading.Event()

    async def main() -> tuple[float, float, str]:
        ticks = []

        async def tick() -> None:
            for _ in range(20):  # 0.4 s: past the call's deadline
                ticks.append(time.monotonic())
                await asyncio.sleep(0.02)

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        detail = "no error"
        try:
            await guard.call("search", release.wait, 30)
        except HTTPException as exc:
            detail = f"{exc.status_code} {exc.detail}"
        took = time.monotonic() - started
        await ticker
        return took, max(b - a for a, b in itertools.pairwise(ticks)), detail

    try:
        took, longest_gap, detail = asyncio.run(main())
    finally:
        release.set()
    assert detail == "504 the mounted source 'slow' did not answer within 0.3 s; try again later"
    assert 0.25 < took < 1.0
    assert longest_gap < 0.2  # the loop kept running while the call hung


def test_run_from_a_worker_thread():
    guard = MountGuard("arr", timeout=0.2)
    assert guard.run("read", sum, [4, 5]) == 9
    release = threading.Event()
    try:
        with pytest.raises(HTTPException) as info:
            guard.run("read", release.wait, 30)
    finally:
        release.set()
    assert info.value.status_code == 504


@pytest.mark.parametrize(("cursor", "offset"), [(None, 0), ("", 0), ("40", 40), (7, 7)])
def test_page_cursors_are_offsets(cursor, offset):
    assert _offset(cursor) == offset


@pytest.mark.parametrize("cursor", ["abc", "-3"])
def test_bad_page_cursors_are_refused(cursor):
    with pytest.raises(HTTPException) as info:
        _offset(cursor)
    assert info.value.status_code == 400
