"""The live store of the catalog (record_live, live_points, live_changes, live_cursor, the
live status): on SQLite and PostgreSQL (the ``cat`` fixture), and the 7 -> 8 migration."""

from __future__ import annotations

import math
import sqlite3
import threading

import numpy as np
import pytest

from spotkit.catalog import SCHEMA_VERSION, LivePoint, open_catalog
from spotkit.errors import CatalogError, DatasetNotFoundError


@pytest.fixture
def series(cat, scans):
    return cat.ingest(scans(kind="saxs/raw", sample="film")).id


def _features(frames, **extra):
    return [LivePoint(f, "features", {"score": 0.5 * f, "state": "stable", **extra},
                      time_s=0.1 * f, written_at=1e9 + f) for f in frames]


def test_record_read_and_idempotent(cat, series):
    assert cat.live_cursor(series) == -1
    assert cat.live_points(series) == []
    assert cat.record_live(series, _features(range(5))) == 5
    assert cat.record_live(series, _features(range(5))) == 0  # the same again: nothing
    assert cat.live_cursor(series) == 4
    got = cat.live_points(series)
    assert [p.frame for p in got] == [0, 1, 2, 3, 4]
    assert got[3].values == {"score": 1.5, "state": "stable"}
    assert got[3].time_s == pytest.approx(0.3)
    assert got[3].written_at == 1e9 + 3
    assert got[3].recorded_at is not None
    assert got[3].recorded_at > 1.7e9
    # one changed point among unchanged ones: only it is written
    batch = _features(range(5))
    batch[2] = LivePoint(2, "features", {"score": 9.0})
    assert cat.record_live(series, batch) == 1
    assert cat.live_points(series, since=1, limit=1)[0].values == {"score": 9.0}
    assert cat.live_cursor(series, "event") == -1


def test_kinds_since_limit_and_order(cat, series):
    cat.record_live(series, [
        *_features(range(4)),
        LivePoint(2, "event", {"onset": 2, "confidence": 0.9, "feature": "q_peak"}),
        LivePoint(1, "fit:sphere", {"radius": 40.0, "radius_err": 0.5, "chi2": 1.1}),
        LivePoint(3, "fit:guinier_porod", {"rg": 20.0}),
        LivePoint(3, "decision:notify", {"reason": "onset at frame 2"}),
        {"frame": 3, "kind": "decision", "values": {"reason": "quiet"}},
    ])
    assert [(p.frame, p.kind) for p in cat.live_points(series, since=2)] == [
        (3, "features"), (3, "fit:guinier_porod"), (3, "decision:notify"), (3, "decision")]
    assert [p.kind for p in cat.live_points(series, kinds="fit")] == [
        "fit:sphere", "fit:guinier_porod"]
    assert [p.kind for p in cat.live_points(series, kinds=["fit:sphere", "event"])] == [
        "fit:sphere", "event"]
    assert [p.kind for p in cat.live_points(series, kinds="decision")] == [
        "decision:notify", "decision"]
    assert [p.frame for p in cat.live_points(series, kinds="features", limit=2)] == [0, 1]
    assert cat.live_cursor(series, "fit:sphere") == 1
    with pytest.raises(ValueError, match="kinds entry 'Fit sphere'"):
        cat.live_points(series, kinds=["Fit sphere"])
    with pytest.raises(ValueError, match="limit"):
        cat.live_points(series, limit=0)


def test_values_are_checked_and_a_bad_batch_writes_nothing(cat, series, dump):
    before = dump(cat.url)
    good = _features(range(3))
    for bad, error, match in [
        (LivePoint(-1, "features"), ValueError, "point 3: frame must be an integer >= 0"),
        (LivePoint(5, "fit sphere"), ValueError, "not a live point kind"),
        (LivePoint(5, "features", {"q": np.arange(3)}), TypeError, "value 'q' is a ndarray"),
        (LivePoint(5, "features", {1: 2.0}), TypeError, "names must be str"),
        (LivePoint(5, "features", time_s="now"), TypeError, "time_s must be a number"),
        ("frame 5", TypeError, "point 3 is a str, not a LivePoint"),
    ]:
        with pytest.raises(error, match=match):
            cat.record_live(series, [*good, bad])
    assert dump(cat.url) == before
    with pytest.raises(DatasetNotFoundError):
        cat.record_live("ds-nope", good)
    with pytest.raises(DatasetNotFoundError):
        cat.set_live_status("ds-nope", state="following")
    assert dump(cat.url) == before
    # numpy scalars are stored as plain numbers; NaN/inf survive
    p = LivePoint(np.int64(7), "features", {"score": np.float32(0.25), "n": np.int16(3),
                                            "flag": np.bool_(True), "z": math.nan,
                                            "big": np.float64(np.inf)})
    assert cat.record_live(series, [p]) == 1
    (back,) = cat.live_points(series)
    assert back.frame == 7
    assert back.values["score"] == 0.25
    assert back.values["n"] == 3
    assert back.values["flag"] is True
    assert math.isnan(back.values["z"])
    assert back.values["big"] == math.inf


def test_live_changes_deliver_new_and_replaced_points_in_order(cat, series):
    cat.record_live(series, _features(range(3)))
    points, last = cat.live_changes(series)
    assert [p.frame for p in points] == [0, 1, 2]
    assert cat.live_changes(series, after=last) == ([], last)
    # a fit of an old frame and a replaced point come as changes, in recording order
    cat.record_live(series, [LivePoint(0, "fit:sphere", {"radius": 4.0})])
    cat.record_live(series, [LivePoint(1, "features", {"score": 7.0}), *_features([3])])
    points, last2 = cat.live_changes(series, after=last)
    assert [(p.frame, p.kind) for p in points] == [(0, "fit:sphere"), (1, "features"),
                                                   (3, "features")]
    assert points[1].values == {"score": 7.0}
    # a filter still moves the cursor past what it filtered out
    cat.record_live(series, _features([4, 5]))
    assert cat.live_changes(series, after=last2, kinds="fit")[0] == []
    assert cat.live_changes(series, after=last2, kinds="fit")[1] > last2
    # paging with limit
    pages, after = [], 0
    while True:
        page, after = cat.live_changes(series, after=after, limit=2)
        if not page:
            break
        pages.append([(p.frame, p.kind) for p in page])
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert cat.live_changes(series, since=4)[0][0].frame == 5


def test_status_merges_ends_and_lists_series(cat, series, scans):
    assert cat.live_status(series) is None
    assert cat.live_series() == []
    s = cat.set_live_status(series, state="following", written=10, done=8, behind=2)
    assert (s["state"], s["written"], s["active"], s["dataset_id"]) == (
        "following", 10, True, series)
    assert 0 <= s["age_s"] < 60
    assert s["updated_at"] >= s["started_at"]
    # in the same transaction as points
    cat.record_live(series, _features(range(9)), status={"done": 9, "behind": 1,
                                                         "rate_hz": 20.5})
    s = cat.live_status(series)
    assert (s["written"], s["done"], s["behind"], s["rate_hz"]) == (10, 9, 1, 20.5)
    other = cat.ingest(scans(kind="saxs/raw", sample="gel")).id
    cat.set_live_status(other, state="paused")
    listed = cat.live_series()
    assert [e["dataset_id"] for e in listed] == [other, series]
    assert listed[1]["last_frame"] == 8
    assert listed[0]["last_frame"] == -1
    assert listed[1]["sample"] == "film"
    assert listed[1]["beamline"] == "8.3.2"
    cat.set_live_status(series, state="finished")
    assert [e["dataset_id"] for e in cat.live_series()] == [other]
    assert [e["dataset_id"] for e in cat.live_series(active=False)] == [series]
    assert len(cat.live_series(active=None)) == 2
    assert cat.set_live_status(series, active=True)["state"] == "finished"
    with pytest.raises(ValueError, match="updated_at"):
        cat.set_live_status(series, updated_at=3)
    with pytest.raises(TypeError, match="JSON"):
        cat.set_live_status(series, thing=object())


def test_a_watcher_misses_nothing_while_a_writer_records(catalog_url, reader, scans):
    """Two connections (as two processes): every change comes once, in order."""
    with open_catalog(catalog_url, reader=reader) as writer, \
            open_catalog(catalog_url, reader=reader) as watcher:
        ds = writer.ingest(scans(kind="saxs/raw")).id
        seen: list[tuple[int, str]] = []
        done = threading.Event()

        def watch():
            after = 0
            while True:
                finished = done.is_set()
                points, after = watcher.live_changes(ds, after=after)
                seen.extend((p.frame, p.kind) for p in points)
                if finished and not points:
                    return

        thread = threading.Thread(target=watch)
        thread.start()
        for start in range(0, 200, 10):
            writer.record_live(ds, [*_features(range(start, start + 10)),
                                    LivePoint(start, "fit:sphere", {"radius": float(start)})])
        done.set()
        thread.join(30)
    assert sorted(seen) == sorted({(f, "features") for f in range(200)}
                                  | {(f, "fit:sphere") for f in range(0, 200, 10)})


def test_v8_migration_adds_the_live_tables(tmp_path, scans, reader):
    db = tmp_path / "catalog.db"
    with open_catalog(db, reader=reader) as cat:
        ds = cat.ingest(scans()).id
    with sqlite3.connect(db) as conn:  # as schema 7 left it
        rows = conn.execute("SELECT * FROM datasets").fetchall()
        conn.execute("DROP TABLE live_points")
        conn.execute("DROP TABLE live_status")
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version VALUES (7, 0)")
    with open_catalog(db, reader=reader) as cat:
        assert cat.record_live(ds, _features([0])) == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == (
            SCHEMA_VERSION) == 8
        assert conn.execute("SELECT * FROM datasets").fetchall() == rows


def test_v8_migration_on_postgresql(postgres_server, scans, reader):
    from spotkit.catalog._backend import connect_postgres

    url = postgres_server.create_database()
    try:
        with open_catalog(url, reader=reader) as cat:
            ds = cat.ingest(scans()).id
        conn = connect_postgres(url)
        try:
            conn.execute("DROP TABLE live_points")
            conn.execute("DROP TABLE live_status")
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version VALUES (7, 0)")
        finally:
            conn.close()
        with open_catalog(url, reader=reader) as cat:
            assert cat.record_live(ds, _features([0, 1])) == 2
            assert cat.live_cursor(ds) == 1
            assert cat[ds].id == ds
    finally:
        postgres_server.drop_database(url)


def test_closed_catalog_says_so(tmp_path, scans, reader):
    cat = open_catalog(tmp_path / "c.db", reader=reader)
    ds = cat.ingest(scans()).id
    cat.close()
    with pytest.raises(CatalogError, match="closed"):
        cat.live_points(ds)
