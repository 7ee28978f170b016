"""follow_frames on a Dectris Eiger series: a master file linking data files that appear one
after another; frames handed out in order across them, never a half-written one."""

from __future__ import annotations

import logging
import shutil

import h5py
import numpy as np
import pytest

from spotkit.errors import InputFileError
from spotkit.io import follow_frames
from spotkit.sim import LiveSeriesWriter

SHAPE = (16, 16)
N, PER_FILE = 12, 4  # three data files of four frames


def _writer(tmp_path, **kw):
    kw.setdefault("n_frames", N)
    kw.setdefault("swmr", False)
    return LiveSeriesWriter(tmp_path / "run_master.h5", fmt="eiger", frames_per_file=PER_FILE,
                            shape=SHAPE, module_shape=None, frame_interval_s=0.5,
                            transitions=(), **kw)


def _indices(frames):
    return [f.index for f in frames]


@pytest.mark.parametrize("swmr", [False, True], ids=["flush", "swmr"])
def test_frames_in_order_across_data_files(tmp_path, swmr):
    writer = _writer(tmp_path, swmr=swmr)
    assert [p.name for p in writer.data_files] == [
        "run_data_000001.h5", "run_data_000002.h5", "run_data_000003.h5"]
    assert not any(p.exists() for p in writer.data_files)  # the master comes first
    with h5py.File(writer.path, "r", locking=False) as f:
        link = f["/entry/data"].get("data_000001", getlink=True)
        assert isinstance(link, h5py.ExternalLink)
        assert (link.filename, link.path) == ("run_data_000001.h5", "/entry/data/data")
    with follow_frames(writer.path) as source:
        assert source.kind == "eiger"
        assert source.poll() == []  # every link dangling: waits
        assert not source.finished
        writer.write(2)  # data file 1 open, two frames: the newest is held back
        assert _indices(source.poll()) == [0]
        writer.write(3)  # data file 1 full and closed; file 2 holds frame 4
        assert _indices(source.poll()) == [1, 2, 3]
        assert source.available == 4
        writer.write(N)
        rest = source.poll()
        assert _indices(rest) == list(range(4, N))
        assert source.finished
        assert source.exhausted
        for frame in rest:
            np.testing.assert_array_equal(frame.data, writer.frame(frame.index))
            assert frame.time_s == pytest.approx(0.5 * frame.index)
        info = source.info
        assert (info.kind, info.format, info.shape, info.dtype) == ("eiger", "h5", SHAPE,
                                                                    np.int32)
        assert info.poni_path == writer.truth.poni_path
        assert info.mask_path == writer.truth.mask_path
        meta = info.metadata
        assert meta["data_files"] == [str(p) for p in writer.data_files]
        assert (meta["n_data_files"], meta["frames_per_file"]) == (3, PER_FILE)
        assert meta["n_frames_expected"] == N
        assert meta["missing_frames"] == []
        assert meta["missing_files"] == []
        assert meta["end_time"] > meta["start_time"]


def test_a_data_file_appearing_late_is_waited_for(tmp_path):
    writer = _writer(tmp_path)
    writer.write(N)
    second = writer.data_files[1]
    aside = tmp_path / "aside.h5"
    second.rename(aside)  # the detector has not delivered data file 2 yet
    with follow_frames(writer.path) as source:
        assert _indices(source.poll()) == [0, 1, 2, 3]
        assert source.poll() == []
        assert not source.finished
        aside.rename(second)
        assert _indices(source.poll()) == list(range(4, N))
        assert source.finished
        assert source.info.metadata["missing_frames"] == []


def test_a_growing_or_truncated_data_file(tmp_path):
    writer = _writer(tmp_path)
    writer.write(5)
    writer.write_partial()  # frame 5 announced in data file 2, its chunk not written yet
    with follow_frames(writer.path) as source:
        assert _indices(source.poll()) == [0, 1, 2, 3]  # frame 4 held back, 5 not there
        writer.write(3)  # data file 2 complete and closed
        assert _indices(source.poll()) == [4, 5, 6, 7]
    writer.write(N)
    # a data file still being copied (cut short): unreadable, waited for, then read
    second = writer.data_files[1]
    whole = second.read_bytes()
    second.write_bytes(whole[: len(whole) // 2])
    with follow_frames(writer.path) as source:
        assert _indices(source.poll()) == [0, 1, 2, 3]
        assert source.poll() == []
        assert not source.finished
        second.write_bytes(whole)
        assert _indices(source.poll()) == list(range(4, N))
        assert source.finished


def test_a_writer_killed_mid_frame(tmp_path):
    writer = _writer(tmp_path, n_frames=6, truncate_last=True)
    writer.write(6)
    assert writer.finished
    assert writer.written == 5
    with follow_frames(writer.path) as source:
        assert _indices(source.poll()) == [0, 1, 2, 3, 4]  # never the half-written frame
        assert not source.finished  # no end marker: consumers stop on an idle timeout


def test_resume_from_a_frame_index(tmp_path):
    writer = _writer(tmp_path)
    writer.write(N)
    for start in (4, 6, N - 1):
        with follow_frames(writer.path, start=start) as source:
            frames = source.poll(max_frames=3)
            assert _indices(frames) == list(range(start, min(start + 3, N)))
            np.testing.assert_array_equal(frames[0].data, writer.frame(start))
            assert _indices(source.poll()) == list(range(start + 3, N))
            assert source.finished
    # data file 1 gone (moved away after it was followed): a resume after it does not wait
    writer.data_files[0].unlink()
    with follow_frames(writer.path, start=5) as source:
        assert _indices(source.poll()) == list(range(5, N))
        assert source.info.metadata["missing_frames"] == []


def test_a_gap_is_waited_for_then_skipped(tmp_path, caplog):
    writer = _writer(tmp_path)
    writer.write(N)
    writer.data_files[1].unlink()  # the detector lost data file 2
    with follow_frames(writer.path) as source:
        assert _indices(source.poll()) == [0, 1, 2, 3]
        assert not source.finished
    with caplog.at_level(logging.WARNING, logger="spotkit.io"), \
            follow_frames(writer.path, gap_timeout_s=0) as source:
        assert _indices(source.poll()) == [0, 1, 2, 3, 8, 9, 10, 11]
        assert source.finished
        meta = source.info.metadata
        assert meta["missing_frames"] == [4, 5, 6, 7]
        assert meta["missing_files"] == ["run_data_000002.h5"]
    assert "run_data_000002.h5 is missing" in caplog.text
    assert "frames 4-7 skipped" in caplog.text


def test_a_first_data_file_lost_without_numbering_attributes(tmp_path):
    writer = _writer(tmp_path)
    writer.write(N)
    writer.data_files[0].unlink()
    for path in writer.data_files[1:]:  # a file writer that does not number its frames
        with h5py.File(path, "r+") as f:
            del f["/entry/data/data"].attrs["image_nr_low"]
            del f["/entry/data/data"].attrs["image_nr_high"]
    with follow_frames(writer.path, gap_timeout_s=0) as source:
        frames = source.poll()
        assert _indices(frames) == list(range(4, N))  # the files' common size: four frames
        np.testing.assert_array_equal(frames[0].data, writer.frame(4))
        assert source.info.metadata["missing_frames"] == [0, 1, 2, 3]


def test_bad_series_are_named(tmp_path):
    plain = tmp_path / "plain_master.h5"  # a master without links, closed
    with h5py.File(plain, "w") as f:
        f.create_dataset("/entry/data/other", data=np.zeros(3))
    with pytest.raises(InputFileError, match=r"plain_master\.h5 .*no data_NNNNNN external "
                       r"links.*/entry/data") as err:
        follow_frames(plain).poll()
    assert err.value.field == "/entry/data"
    assert "dataset='/entry/data/data'" in str(err.value)
    writer = _writer(tmp_path)
    writer.write(N)
    second = writer.data_files[1]  # a data file of another acquisition under its name
    second.unlink()
    with h5py.File(second, "w") as f:
        f.create_dataset("/entry/data/data", data=np.zeros((4, 8, 8), np.int32))
    with pytest.raises(InputFileError, match=r"run_data_000002\.h5 .*: its frames "
                       r"\(/entry/data/data\) are 8 x 8 int32, but those of .*"
                       r"run_data_000001\.h5 are 16 x 16 int32"):
        follow_frames(writer.path).poll()
    second.unlink()
    with h5py.File(second, "w") as f:
        f.create_dataset("/entry/data/frames", data=np.zeros((4, 16, 16), np.int32))
    with pytest.raises(InputFileError, match=r"run_data_000002\.h5 .*: has no dataset "
                       r"/entry/data/data \(the target of run_master\.h5's link"):
        follow_frames(writer.path).poll()
    second.unlink()
    with h5py.File(second, "w") as f:  # compressed with a filter this HDF5 does not have
        ds = f.create_dataset("/entry/data/data", shape=(4, *SHAPE), dtype=np.int32,
                              chunks=(1, *SHAPE), compression=32999, allow_unknown_filter=True)
        ds.id.write_direct_chunk((0, 0, 0), b"???")
    with pytest.raises(InputFileError, match=r"run_data_000002\.h5 .*compressed with HDF5 "
                       r"filter 32999.*pip install hdf5plugin"):
        follow_frames(writer.path).poll()


def test_which_files_are_followed_as_eiger(tmp_path):
    later = tmp_path / "later_master.h5"
    with follow_frames(later) as source:  # not there yet: a master by its name
        assert source.kind == "eiger"
        assert source.poll() == []
    writer = _writer(tmp_path)
    writer.write(N)
    renamed = tmp_path / "run.h5"  # any name: the links say it is a master
    shutil.copy(writer.path, renamed)
    with follow_frames(renamed) as source:
        assert source.kind == "eiger"
        assert len(source.poll()) == N
    single = LiveSeriesWriter(tmp_path / "one.h5", n_frames=2, shape=SHAPE)
    single.write(2)
    with follow_frames(single.path) as source:
        assert source.kind == "hdf5"
