"""spotkit.live.subscribe: watchers get every new or replaced point once, cheaply."""

from __future__ import annotations

import threading
import time

import pytest

from spotkit.catalog import LivePoint, open_catalog
from spotkit.errors import DatasetNotFoundError
from spotkit.live import Subscription, subscribe


@pytest.fixture
def live(tmp_path):
    """A catalog with one series (a bare dataset row: nothing else is needed here)."""
    cat = open_catalog(tmp_path / "catalog.db")
    ds = cat.bulk_load([{"kind": "saxs/raw", "sample": "film", "start_time": 1.7e9}])
    assert ds == 1
    series = next(iter(cat))
    yield cat, series
    cat.close()


def _features(frames):
    return [LivePoint(f, "features", {"score": float(f)}) for f in frames]


def test_poll_since_kinds_and_replacements(live):
    cat, series = live
    cat.record_live(series, _features(range(5)))
    sub = subscribe(cat, series, since=2)
    assert isinstance(sub, Subscription)
    assert [p.frame for p in sub.poll()] == [3, 4]  # the first poll: frames > since
    assert sub.poll() == []
    # then every new or replaced point, whatever its frame
    cat.record_live(series, [LivePoint(1, "fit:sphere", {"radius": 4.0}), *_features([5])])
    cat.record_live(series, [LivePoint(1, "fit:sphere", {"radius": 4.5})])
    got = sub.poll()
    assert [(p.frame, p.kind) for p in got] == [(5, "features"), (1, "fit:sphere")]
    assert got[-1].values == {"radius": 4.5}
    assert sub.delivered == 4
    fits = subscribe(cat, series, kinds="fit")
    assert [p.values["radius"] for p in fits.poll()] == [4.5]
    cat.record_live(series, _features([6, 7]))
    assert fits.poll() == []
    cat.record_live(series, [LivePoint(7, "fit:core_shell_sphere", {"radius": 3.0})])
    assert [p.kind for p in fits.poll()] == ["fit:core_shell_sphere"]
    paged = subscribe(cat, series)
    assert [len(paged.poll(limit=3)) for _ in range(4)] == [3, 3, 3, 1]


def test_wait_iterate_and_end(live):
    cat, series = live
    sub = subscribe(cat, series, interval=0.01)
    t0 = time.monotonic()
    assert sub.wait(timeout=0.05) == []
    assert time.monotonic() - t0 >= 0.04
    timer = threading.Timer(0.05, cat.record_live, (series, _features([0])))
    timer.start()
    assert [p.frame for p in sub.wait(timeout=5)] == [0]
    timer.join()
    # iteration runs until the series' live status says it ended, then drains
    cat.set_live_status(series, state="following")
    cat.record_live(series, _features([1, 2]), status={"state": "finished"})
    assert [p.frame for p in sub] == [1, 2]


def test_background_poller_gets_everything_once(tmp_path, live):
    cat, series = live
    got: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    # its own connection, from the path, as a widget in another process would
    sub = subscribe(tmp_path / "catalog.db", series, interval=0.01)
    sub.start(got.extend, on_error=errors.append)
    with pytest.raises(RuntimeError, match="already runs"):
        sub.start(got.extend)
    for start in range(0, 60, 6):
        cat.record_live(series, _features(range(start, start + 6)))
    deadline = time.monotonic() + 10
    while len(got) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    sub.close()
    assert not sub._thread.is_alive()
    assert [p.frame for p in got] == list(range(60))
    assert errors == []


def test_a_failing_callback_is_reported_and_polling_goes_on(live, caplog):
    cat, series = live
    calls, errors = [], []

    def callback(points):
        calls.append(len(points))
        if len(calls) == 1:
            raise ValueError("widget broke")

    sub = subscribe(cat, series, interval=0.01)
    sub.start(callback, on_error=errors.append)
    cat.record_live(series, _features([0]))
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    cat.record_live(series, _features([1]))
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    sub.close()
    assert calls == [1, 1]
    assert [str(e) for e in errors] == ["widget broke"]
    assert "the callback failed" in caplog.text


def test_bad_arguments(live):
    cat, series = live
    with pytest.raises(DatasetNotFoundError):
        subscribe(cat, "ds-nope")
    with pytest.raises(ValueError, match="since"):
        subscribe(cat, series, since=-5)
    with pytest.raises(ValueError, match="interval"):
        subscribe(cat, series, interval=0)
    with pytest.raises(ValueError, match="not a live point kind"):
        subscribe(cat, series, kinds=["fit sphere"])
    with pytest.raises(TypeError, match="spotkit Catalog"):
        subscribe(object(), series)
