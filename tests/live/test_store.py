"""spotkit.live.ProfileLog: I(q) rows appended to HDF5, read while written (another
process), and a killed writer's log reopened and cut back to the catalog's cursor."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import h5py
import numpy as np
import pytest

from spotkit.errors import InputFileError
from spotkit.live import ProfileLog, _store_recovery, profile_log_path

Q = np.linspace(0.05, 3.0, 40)


def _row(frame: int) -> np.ndarray:
    return np.full(Q.size, 100.0 + frame)


def test_append_read_and_layout(tmp_path):
    path = tmp_path / "live" / "s.profiles.h5"
    with ProfileLog(path, Q, dim="q", unit="nm^-1") as log:
        assert (len(log), log.last_frame) == (0, -1)
        log.append(0, _row(0), np.sqrt(_row(0)))
        log.append([2, 3, 5], np.stack([_row(f) for f in (2, 3, 5)]))  # a batch, no sigma
        assert log.frames.tolist() == [0, 2, 3, 5]
        ds = log.read()
        assert ds["intensity"].dims == ("frame", "q")
        assert ds.frame.values.tolist() == [0, 2, 3, 5]
        assert ds["q"].attrs["units"] == "nm^-1"
        np.testing.assert_allclose(ds["q"].values, Q)
        np.testing.assert_allclose(ds["sigma"].values[0], np.sqrt(_row(0)))
        assert np.isnan(ds["sigma"].values[1]).all()
        picked = log.read(frames=[5, 0])  # in the order asked
        assert picked.frame.values.tolist() == [5, 0]
        np.testing.assert_allclose(picked["intensity"].values[:, 0], [105.0, 100.0])
        assert log.read(frames=3)["intensity"].shape == (1, Q.size)
        assert log.read(last=2).frame.values.tolist() == [3, 5]
        with pytest.raises(KeyError, match=r"frame\(s\) \[4\] not in profile log"):
            log.read(frames=[3, 4])
        for frames, rows, match in [(5, _row(5), "after the last one"),
                                    ([7, 6], np.stack([_row(7)] * 2), "increasing"),
                                    (6, np.ones(3), "expected \\(40,\\)")]:
            with pytest.raises(ValueError, match=match):
                log.append(frames, rows)
        with pytest.raises(ValueError, match="sigma of shape"):
            log.append(6, _row(6), np.ones(2))
        assert log.frames.tolist() == [0, 2, 3, 5]  # nothing written by the failures
    with h5py.File(path, "r") as f:  # NeXus NXdata, readable by any HDF5 tool
        g = f["entry/profiles"]
        assert g.attrs["NX_class"] == "NXdata"
        assert g.attrs["signal"] == "intensity"
        assert list(g.attrs["axes"]) == ["frame", "q"]
        assert g["intensity"].shape == (4, Q.size)
    # open again to append: the radial axis must match
    with pytest.raises(ValueError, match="another radial axis"):
        ProfileLog(path, Q[:-1])
    with ProfileLog(path, Q, dtype="float32") as log:
        log.append(6, _row(6))
        assert log.last_frame == 6
    reader = ProfileLog.open(path)
    with pytest.raises(ValueError, match="opened to read"):
        reader.append(7, _row(7))
    reader.close()


def test_bad_files_and_arguments(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        ProfileLog.open(tmp_path / "none.h5")
    with pytest.raises(ValueError, match="give the radial axis"):
        ProfileLog(tmp_path / "new.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(InputFileError, match="is not a spotkit profile log"):
        ProfileLog.open(tmp_path / "other.h5")
    for kwargs, match in [({"mode": "w"}, "mode"), ({"dtype": "int16"}, "dtype"),
                          ({"dim": "frame"}, "dim")]:
        with pytest.raises(ValueError, match=match):
            ProfileLog(tmp_path / "x.h5", Q, **kwargs)
    with pytest.raises(ValueError, match="radial must be a 1-D"):
        ProfileLog(tmp_path / "y.h5", [[1.0, 2.0]])


def _writer(path, ready):
    """Append a row every millisecond until killed (in a forked process: nothing to import)."""
    log = ProfileLog(path, Q)
    frame = 0
    while True:
        log.append(frame, _row(frame), np.full(Q.size, float(frame)))
        if frame == 40:
            ready.set()
        frame += 1
        time.sleep(0.001)


def _die_while_writing(path):
    """Open a log for SWMR writing and die without closing it (as a killed writer)."""
    f = h5py.File(path, "r+", libver="latest")
    f.swmr_mode = True
    f.flush()
    os._exit(0)


def test_read_while_written_by_another_process_then_kill_and_resume(tmp_path):
    path = tmp_path / "s.profiles.h5"
    fork = multiprocessing.get_context("fork")
    ready = fork.Event()
    writer = fork.Process(target=_writer, args=(path, ready), daemon=True)
    writer.start()
    try:
        assert ready.wait(30)
        reader = ProfileLog.open(path)
        sizes = []
        for _ in range(3):
            ds = reader.read()
            n = ds.sizes["frame"]
            sizes.append(n)
            # every row read is whole and belongs to its frame
            assert ds.frame.values.tolist() == list(range(n))
            np.testing.assert_array_equal(ds["intensity"].values[:, 0], 100.0 + ds.frame.values)
            np.testing.assert_array_equal(ds["sigma"].values[:, -1], ds.frame.values)
            time.sleep(0.1)
        assert sizes[0] >= 41
        assert sizes[-1] > sizes[0]  # it sees the rows appended meanwhile
        with pytest.raises(InputFileError, match="being written by another process"):
            ProfileLog(path, Q)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
    # the killed writer's log opens again for writing; the catalog's cursor says where to
    # go on from
    with ProfileLog(path, Q) as log:
        written = len(log)
        assert written >= sizes[-1]
        assert log.frames.tolist() == list(range(written))
        cursor = written - 5
        assert log.truncate(after_frame=cursor) == 4
        log.append(cursor + 1, _row(cursor + 1))
    ds = reader.read()  # the same reader follows the cut and the new row
    assert ds.frame.values.tolist() == list(range(cursor + 2))
    assert ds["intensity"].values[-1, 0] == 100.0 + cursor + 1
    reader.close()


def test_a_log_whose_mark_cannot_be_cleared_is_rebuilt(tmp_path, monkeypatch):
    path = tmp_path / "s.profiles.h5"
    with ProfileLog(path, Q) as log:
        log.append(range(3), np.stack([_row(f) for f in range(3)]))
    # a writer that dies without closing leaves the file marked "open for SWMR write"
    dying = multiprocessing.get_context("fork").Process(target=_die_while_writing,
                                                          args=(path,))
    dying.start()
    dying.join()
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r+", libver="latest")
    monkeypatch.setattr(_store_recovery, "clear_swmr_mark", lambda path: False)
    with ProfileLog(path, Q) as log:
        assert log.frames.tolist() == [0, 1, 2]
        log.append(3, _row(3))
    assert ProfileLog.open(path).read().frame.values.tolist() == [0, 1, 2, 3]
    assert not path.with_name(path.name + ".damaged").exists()


def test_default_path(tmp_path):
    from spotkit.catalog import open_catalog

    with open_catalog(tmp_path / "catalog.db") as cat:
        assert profile_log_path(cat, "ds-abc") == tmp_path / "live" / "ds-abc.profiles.h5"
    with pytest.raises(ValueError, match="dataset id"):
        profile_log_path(cat, "../x")


def _follow(db, ds, path):
    """What spotkit live does per batch (the crash protocol): resume at the catalog's
    cursor, append + flush the I(q) rows, then record the points; until killed."""
    from spotkit.catalog import LivePoint, open_catalog

    cat = open_catalog(db)
    log = ProfileLog(path, Q)
    cursor = cat.live_cursor(ds)
    log.truncate(after_frame=cursor)
    frame = cursor + 1
    while True:
        frames = list(range(frame, frame + 3))
        log.append(frames, np.stack([_row(f) for f in frames]))
        cat.record_live(ds, [LivePoint(f, "features", {"v": 100.0 + f}) for f in frames])
        frame += 3


def test_killed_again_and_again_nothing_lost_nothing_twice(tmp_path):
    from spotkit.catalog import open_catalog

    db, path = tmp_path / "catalog.db", tmp_path / "s.profiles.h5"
    with open_catalog(db) as cat:
        cat.bulk_load([{"kind": "saxs/raw", "sample": "film"}])
        ds = next(iter(cat))
    fork = multiprocessing.get_context("fork")
    rng = np.random.default_rng(0)
    cursors = []
    for _ in range(3):
        child = fork.Process(target=_follow, args=(db, ds, path), daemon=True)
        child.start()
        time.sleep(0.1 + 0.1 * rng.random())
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        with open_catalog(db) as cat:
            cursors.append(cat.live_cursor(ds))
    assert cursors == sorted(cursors)
    assert cursors[-1] > cursors[0] >= 0  # every session went on from the last
    with open_catalog(db) as cat, ProfileLog(path, Q) as log:
        cursor = cat.live_cursor(ds)
        log.truncate(after_frame=cursor)
        points = cat.live_points(ds)
        assert [p.frame for p in points] == list(range(cursor + 1))
        assert all(p.values["v"] == 100.0 + p.frame for p in points)
        ds_rows = log.read()
        assert ds_rows.frame.values.tolist() == list(range(cursor + 1))
        np.testing.assert_array_equal(ds_rows["intensity"].values[:, 0],
                                      100.0 + ds_rows.frame.values)
