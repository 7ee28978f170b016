"""spotkit.live.subscribe on PostgreSQL: woken by record_live's NOTIFY, never losing a point.

Every subscription here reads the catalog only every 30 s (``interval``) unless notified,
so a point seen within a couple of seconds can only have come through the notification.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from spotkit.catalog import LivePoint, open_catalog
from spotkit.live import subscribe

SAFETY_NET = 30.0  # seconds: far longer than any wait below


@pytest.fixture
def pg(postgres_server):
    """A fresh PostgreSQL catalog with one series: (url, writer catalog, series id)."""
    url = postgres_server.create_database()
    cat = open_catalog(url)
    cat.bulk_load([{"kind": "saxs/raw", "sample": "film", "start_time": 1.7e9}])
    series = next(iter(cat))
    yield url, cat, series
    cat.close()
    postgres_server.drop_database(url)


def _features(frames, value=1.0):
    return [LivePoint(f, "features", {"score": value * f}) for f in frames]


def _until(condition, timeout=5.0):
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.002)
    return condition()


def test_record_live_notifies_in_its_transaction(pg):
    import psycopg

    url, cat, series = pg
    assert cat.live_channel == "spotkit_live"
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute("LISTEN spotkit_live")
        cat.record_live(series, _features([0, 3, 1]))
        cat.record_live(series, _features([0, 3, 1]))  # nothing changed: no notification
        cat.record_live(series, [LivePoint(2, "fit:sphere", {"radius": 4.0})])
        notes = list(listener.notifies(timeout=3, stop_after=2))
    assert [json.loads(n.payload) for n in notes] == [
        {"series": series, "frame": 3, "change": 3},
        {"series": series, "frame": 2, "change": 4}]
    assert all(len(n.payload.encode()) < 100 for n in notes)


def test_a_point_is_seen_at_the_commit_not_at_the_next_poll(pg):
    url, cat, series = pg
    got, seen = [], []
    sub = subscribe(url, series, interval=SAFETY_NET)  # its own catalog connection
    assert sub.listening
    sub.start(lambda points: (got.extend(points), seen.append(time.monotonic())))
    assert _until(lambda: sub._listener.connected)  # listening (the first wait connects)
    for frame in range(3):
        t0 = time.monotonic()
        cat.record_live(series, _features([frame]))
        assert _until(lambda f=frame: len(got) > f, timeout=3.0)
        assert seen[-1] - t0 < 3.0 < SAFETY_NET
    # a replaced point comes again, with its new values; an unchanged one does not
    cat.record_live(series, _features([1], value=2.0) + _features([2]))
    assert _until(lambda: len(got) == 4, timeout=3.0)
    assert [(p.frame, p.values["score"]) for p in got] == [(0, 0.0), (1, 1.0), (2, 2.0),
                                                             (1, 2.0)]
    # wait() and iteration wake the same way
    other = subscribe(cat, series, since=3, interval=SAFETY_NET)
    timer = threading.Timer(0.3, cat.record_live, (series, _features([4])))
    t0 = time.monotonic()
    timer.start()
    assert [p.frame for p in other.wait(timeout=5)] == [4]
    assert time.monotonic() - t0 < 3.0
    timer.join()
    t0 = time.monotonic()
    other.close()
    sub.close()
    assert time.monotonic() - t0 < 1.0  # close does not wait out the safety net
    assert not sub._thread.is_alive()


def test_a_dropped_connection_loses_nothing_and_the_subscriber_resumes(pg):
    import psycopg

    url, cat, series = pg
    got, errors = [], []
    sub = subscribe(url, series, interval=SAFETY_NET)
    sub.start(got.extend, on_error=errors.append)
    cat.record_live(series, _features(range(3)))
    assert _until(lambda: len(got) == 3 and sub._listener.connected, timeout=3.0)
    # every connection but this one: the subscriber's listening and reading ones, and the
    # writer's (as a server restart would)
    with psycopg.connect(url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert ended >= 3
    cat.close()
    with open_catalog(url) as writer:  # points and a replacement while it is away
        writer.record_live(series, [*_features(range(3, 6)),
                                    LivePoint(0, "features", {"score": -1.0})])
        assert _until(lambda: len(got) == 7, timeout=6.0)
        # listening again: the next point comes at its commit
        assert _until(lambda: sub._listener.connected, timeout=3.0)
        t0 = time.monotonic()
        writer.record_live(series, _features([6]))
        assert _until(lambda: len(got) == 8, timeout=3.0)
        assert time.monotonic() - t0 < 3.0
    sub.close()
    assert [p.frame for p in got] == [0, 1, 2, 3, 4, 5, 0, 6]  # each once, in order
    assert got[6].values == {"score": -1.0}  # replaced: its new values
    assert len(errors) <= 1  # at most the read that found the connection gone


def test_the_live_timeline_model_wakes_on_a_notification(pg):
    from spotkit.widgets import LiveTimelineModel

    _url, cat, series = pg
    model = LiveTimelineModel(cat, series)
    model.fetch()
    model.start(interval=SAFETY_NET)  # idle waits last the whole interval...
    try:
        assert _until(lambda: model._subscription._listener.connected, timeout=3.0)
        t0 = time.monotonic()
        cat.record_live(series, _features([0, 1]))
        assert model.wait(lambda m: m.last_frame == 1, timeout=3.0)  # ...unless notified
        assert time.monotonic() - t0 < 3.0
    finally:
        model.close()


def test_sqlite_and_listen_false_poll(tmp_path, pg):
    _url, pg_cat, pg_series = pg
    polling = subscribe(pg_cat, pg_series, listen=False)
    assert not polling.listening
    assert polling.interval == 0.2
    polling.close()
    listening = subscribe(pg_cat, pg_series)
    assert listening.interval == 5.0  # listening: the safety net
    listening.close()
    cat = open_catalog(tmp_path / "catalog.db")
    cat.bulk_load([{"kind": "saxs/raw", "sample": "film"}])
    series = next(iter(cat))
    assert cat.live_channel is None
    sub = subscribe(cat, series)
    assert not sub.listening
    assert sub.interval == 0.2
    t0 = time.monotonic()
    assert sub.sleep(0.05) is False  # no notifications: a plain sleep
    assert time.monotonic() - t0 >= 0.04
    got = []
    sub.start(got.extend)
    cat.record_live(series, _features(range(3)))
    assert _until(lambda: len(got) == 3, timeout=3.0)
    sub.close()
    assert [p.frame for p in got] == [0, 1, 2]
    cat.close()


def test_a_new_live_state_is_heard_at_its_commit_not_the_rest_of_the_status(pg):
    import psycopg

    from spotkit.widgets import LiveTimelineModel

    url, cat, series = pg
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute("LISTEN spotkit_live")
        cat.set_live_status(series, state="following", written=3, done=3)
        cat.set_live_status(series, written=4, done=4)  # same state: no notification
        cat.set_live_status(series, state="finished")
        notes = [json.loads(n.payload) for n in listener.notifies(timeout=3, stop_after=2)]
    assert notes == [{"series": series, "state": "following", "active": True},
                     {"series": series, "state": "finished", "active": False}]
    # a watcher sees a series end at once, though no point came with it
    cat.set_live_status(series, state="following")
    model = LiveTimelineModel(cat, series)
    model.fetch()
    model.start(interval=SAFETY_NET)
    try:
        assert _until(lambda: model._subscription._listener.connected, timeout=3.0)
        cat.set_live_status(series, state="finished")
        assert model.wait(lambda m: (m.status or {}).get("state") == "finished", timeout=3.0)
    finally:
        model.close()


def test_follow_fits_fits_a_frame_at_its_commit_not_at_the_next_poll(pg, tmp_path):
    import numpy as np

    from spotkit.live import ProfileLog, follow_fits
    from spotkit.scattering import sas_model_curve

    url, cat, series = pg
    q = np.linspace(0.05, 3.0, 150)
    path = tmp_path / "profiles.h5"
    log = ProfileLog(path, q, unit="nm^-1")

    def write(frame):
        i = sas_model_curve(q, model="sphere", params={"radius": 4.0 + 0.2 * frame})
        log.append(frame, i, 0.01 * i)
        cat.record_live(series, _features([frame]))
        return time.monotonic()

    for stop in (None, threading.Event()):  # the plain wait, and one that a stop can end
        got = []

        def follow(stop=stop, got=got):
            for fit in follow_fits(url, series, every=1, profile_log=path, max_fits=2,
                                   interval=SAFETY_NET, stop=stop):
                got.append((time.monotonic(), fit))

        first = len(cat.live_points(series, kinds="features"))
        thread = threading.Thread(target=follow)
        thread.start()
        try:
            if first:  # the frames written before: fitted at once
                assert _until(lambda got=got: len(got) == 1, timeout=10.0)
            else:
                time.sleep(0.5)  # the follower waits for a first frame
                t0 = write(first)
                assert _until(lambda got=got: len(got) == 1, timeout=10.0)
                assert got[0][0] - t0 < 3.0 < SAFETY_NET
            time.sleep(0.3)
            t0 = write(first + 1)
            assert _until(lambda got=got: len(got) == 2, timeout=10.0)
            assert got[1][0] - t0 < 3.0 < SAFETY_NET  # woken by the NOTIFY
            assert abs(got[1][1].params["radius"] - (4.0 + 0.2 * (first + 1))) < 0.05
        finally:
            if stop is not None:
                stop.set()
            thread.join(timeout=2 * SAFETY_NET)
    log.close()
