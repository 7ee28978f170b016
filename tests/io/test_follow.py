"""follow_frames: frames of a series handed out as they land, never a half-written one."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import fabio.cbfimage
import fabio.edfimage
import fabio.tifimage
import h5py
import numpy as np
import pytest

from spotkit.errors import InputFileError
from spotkit.io import Frame, follow_frames, load_geometry, load_mask, open_saxs
from spotkit.io._follow_check import file_complete
from spotkit.io._follow_h5 import superblock_status
from spotkit.sim import LiveSeriesWriter, Transition

SHAPE = (40, 50)
FORMATS = ["h5-swmr", "h5-flush", "cbf", "edf", "tiff"]


def _writer(tmp_path, kind, **kw):
    fmt = "h5" if kind.startswith("h5") else kind
    path = tmp_path / ("series.h5" if fmt == "h5" else "run_0001")
    kw.setdefault("n_frames", 6)
    return LiveSeriesWriter(path, fmt=fmt, swmr=kind == "h5-swmr", shape=SHAPE,
                            frame_interval_s=0.5, **kw)


@pytest.mark.parametrize("kind", FORMATS)
def test_frames_land_in_order_and_whole(tmp_path, kind):
    writer = _writer(tmp_path, kind, transitions=[Transition(3, "radius_nm", 7.0)])
    with follow_frames(writer.path) as source:
        assert source.poll() == []
        assert source.available == 0
        assert not source.finished
        writer.write(2)
        writer.write_partial(0.5)  # frame 2 caught mid-write: never handed out
        first = source.poll()
        assert [f.index for f in first] == [0, 1]
        assert source.available == 2
        assert source.next_index == 2
        assert not source.finished
        writer.write(1)
        assert [f.index for f in source.poll()] == [2]
        writer.write(10)  # to the end: the series ends
        rest = source.poll()
        assert [f.index for f in rest] == [3, 4, 5]
        assert source.finished
        assert source.exhausted
        assert source.poll() == []
        frames = first + [f for f in rest]
        for f in frames:
            assert isinstance(f, Frame)
            np.testing.assert_array_equal(f.data, writer.frame(f.index))
            assert f.time_s == pytest.approx(0.5 * f.index)
            assert f.written_at == pytest.approx(time.time(), abs=60)
        info = source.info
        assert info.shape == SHAPE
        assert info.dtype == np.int32
        assert info.format == ("h5" if kind.startswith("h5") else kind)
        assert info.poni_path == writer.truth.poni_path
        assert info.mask_path == writer.truth.mask_path
        assert info.metadata["beamline"] == "7.3.3"
        assert info.metadata["proposal"] == "ALS-00000"
        assert info.metadata["n_frames_expected"] == 6
        assert info.metadata["start_time"].startswith("2024-")
        assert info.metadata["end_time"] > info.metadata["start_time"]
        assert info.swmr == (kind == "h5-swmr")
        ai = load_geometry(info.poni_path, shape=info.shape)
        assert ai.detector.shape == SHAPE
        np.testing.assert_array_equal(load_mask(info.mask_path, shape=SHAPE),
                                      writer.truth.mask())
    with pytest.raises(ValueError, match="closed"):
        source.poll()
    # what the live reader followed is the dataset the catalog ingests afterwards
    assert open_saxs(writer.path).shape == (6, *SHAPE)


@pytest.mark.parametrize("kind", ["h5-swmr", "cbf"])
def test_resume_and_bounded_polls(tmp_path, kind):
    writer = _writer(tmp_path, kind, n_frames=10)
    writer.write(9)
    with follow_frames(writer.path, start=4) as source:
        got = source.poll(max_frames=2)  # a reader slower than the detector
        assert [f.index for f in got] == [4, 5]
        assert source.available == 9
        assert source.behind == 3
        assert [f.index for f in source.poll()] == [6, 7, 8]
        assert source.poll(max_frames=0) == []
        writer.close()  # the acquisition stops early: end marker
        assert source.poll() == []
        assert source.finished


@pytest.mark.parametrize("kind", ["h5-flush", "edf"])
def test_truncated_last_frame_is_never_handed_out(tmp_path, kind):
    writer = _writer(tmp_path, kind, n_frames=4, truncate_last=True)
    writer.write(4)
    assert writer.finished
    assert writer.written == 3
    with follow_frames(writer.path) as source:
        assert [f.index for f in source.poll()] == [0, 1, 2]
        assert not source.finished  # a killed writer leaves no end marker
        assert source.available == 3
        assert list(source.follow(interval=0.01, idle_timeout=0.05)) == []


def test_follow_blocks_until_the_end(tmp_path):
    writer = _writer(tmp_path, "h5-swmr", n_frames=12, time_scale=0.01,
                     pauses=[(5, 5.0)])  # 50 ms pause after frame 5
    source = follow_frames(writer.path)
    writer.start()
    got = [f.index for f in source.follow(interval=0.005, idle_timeout=5)]
    assert got == list(range(12))
    assert source.finished
    assert writer.wait(5)
    gaps = np.diff(writer.frame_times)
    assert gaps[5] >= 0.04 > np.median(gaps)
    source.close()


def _cut(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep])


@pytest.mark.parametrize("fmt", ["cbf", "edf", "tiff"])
def test_file_complete_only_with_every_byte(tmp_path, fmt):
    cls = {"cbf": fabio.cbfimage.CbfImage, "edf": fabio.edfimage.EdfImage,
           "tiff": fabio.tifimage.TifImage}[fmt]
    path = tmp_path / f"frame_00001.{'tif' if fmt == 'tiff' else fmt}"
    cls(data=np.arange(30 * 20, dtype=np.int32).reshape(30, 20)).write(str(path))
    assert file_complete(path)
    size = path.stat().st_size
    for keep in (0, 5, 60, size // 2, size - 1):
        clone = tmp_path / f"cut_{keep:06d}{path.suffix}"
        clone.write_bytes(path.read_bytes()[:keep])
        assert not file_complete(clone), (fmt, keep, size)
    assert not file_complete(tmp_path / "nothing.cbf")


def test_file_complete_on_a_measured_tiff(tmp_path):
    """A TIFF written by another program (ISIS's, shipped with sasdata): every cut is seen."""
    import sasdata

    src = Path(sasdata.__file__).parent / "example_data/image_data/ISIS_98940_greyscale_tif.tif"
    if not src.is_file():
        pytest.skip("sasdata's example data is not installed")
    data = src.read_bytes()
    assert file_complete(src)
    step = max(1, len(data) // 40)
    for keep in [*range(0, len(data), step), len(data) - 1]:
        cut = tmp_path / "cut.tif"
        cut.write_bytes(data[:keep])
        assert not file_complete(cut), keep


def test_gap_waits_then_is_skipped(tmp_path, caplog):
    writer = _writer(tmp_path, "cbf", n_frames=5)
    writer.write(5)
    (writer.path / "frame_00003.cbf").unlink()  # the detector lost frame 2
    with follow_frames(writer.path) as source:
        assert [f.index for f in source.poll()] == [0, 1]
        assert not source.finished
    with caplog.at_level(logging.WARNING, logger="spotkit.io"), \
            follow_frames(writer.path, gap_timeout_s=0) as source:
        assert [f.index for f in source.poll()] == [0, 1, 3, 4]
        assert source.info.metadata["missing_frames"] == [2]
        assert source.finished
    assert "frame 2 (file number 3) is missing" in caplog.text


def test_bad_paths_are_named(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        follow_frames(tmp_path / "nowhere" / "run")
    with pytest.raises(InputFileError, match="neither the file nor its folder"):
        follow_frames(tmp_path / "nowhere" / "x.h5")
    single = tmp_path / "one.cbf"
    fabio.cbfimage.CbfImage(data=np.zeros((20, 20), np.int32)).write(str(single))
    with pytest.raises(InputFileError, match="pass their folder"):
        follow_frames(single)
    with pytest.raises(ValueError, match="start must be >= 0"):
        follow_frames(tmp_path, start=-1)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("a_0001.cbf", "b_0001.cbf"):
        fabio.cbfimage.CbfImage(data=np.zeros((20, 20), np.int32)).write(str(mixed / name))
    with pytest.raises(InputFileError, match="more than one frame series"):
        follow_frames(mixed).poll()
    writer = _writer(tmp_path, "h5-flush", n_frames=2)
    writer.write(2)
    with pytest.raises(InputFileError, match="has no dataset /entry/data/frames"):
        follow_frames(writer.path, dataset="/entry/data/frames").poll()


def test_a_corrupt_file_nobody_writes_is_named(tmp_path):
    writer = _writer(tmp_path, "h5-flush", n_frames=3)
    writer.write(3)
    data = bytearray(writer.path.read_bytes())
    data[200:4000] = b"\xff" * 3800  # the metadata after the superblock destroyed
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match=r"corrupt\.h5: cannot be read .* no writer"):
        follow_frames(bad).poll()


_REOPENING_WRITER = """
import sys, h5py
# a writer that has re-opened its file in plain append mode (locking on) and waits
with h5py.File(sys.argv[1], "a") as f:
    print("open", flush=True)
    sys.stdin.readline()
    ds = f["entry/data/data"]
    ds.resize(3, axis=0); ds[2] = 3
    f["entry/end_time"] = "2026-12-05T01:00:00+00:00"
"""


def test_a_writer_opening_the_file_between_two_looks_is_not_corruption(tmp_path, monkeypatch):
    """The superblock said "closed", then the writer re-opened the file before the reads:
    they fail ("already open for write") - the file is not corrupt, the source waits."""
    from spotkit.io import _follow_h5

    path = tmp_path / "reopened.h5"
    with h5py.File(path, "w", libver="latest") as f:
        ds = f.create_dataset("entry/data/data", data=np.ones((2, 20, 30), "u2"),
                              maxshape=(None, 20, 30), chunks=(1, 20, 30))
        ds[1] = 2
    proc = subprocess.Popen([sys.executable, "-c", _REOPENING_WRITER, str(path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        assert superblock_status(path)[1]  # the writer has it open
        source = follow_frames(path)
        real, stale = _follow_h5.superblock_status, [True]

        def read_before_the_writer_opened(p):  # what the poll read a moment earlier
            if stale:
                stale.clear()
                return (3, False, False)
            return real(p)

        monkeypatch.setattr(_follow_h5, "superblock_status", read_before_the_writer_opened)
        assert source.poll() == []  # no InputFileError: a writer has the file open
        monkeypatch.setattr(_follow_h5, "superblock_status", real)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0, proc.stderr.read()
        got = []
        deadline = time.monotonic() + 10
        while not source.exhausted and time.monotonic() < deadline:
            got += source.poll()
        assert [int(f.data[0, 0]) for f in got] == [1, 2, 3]
        source.close()
    finally:
        proc.kill()
        proc.wait()


def test_waits_for_a_file_not_yet_created(tmp_path):
    path = tmp_path / "later.h5"
    with follow_frames(path) as source:
        assert source.poll() == []
        assert source.info.shape is None
        writer = LiveSeriesWriter(path, n_frames=2, shape=SHAPE)
        writer.write(2)
        assert [f.index for f in source.poll()] == [0, 1]
        assert source.finished


_PLAIN_WRITER = """
import sys, time, h5py, numpy as np
path = sys.argv[1]
# a writer with HDF5 file locking on (the default), no per-frame counter, SWMR first
f = h5py.File(path, "w", libver="latest")
ds = f.create_dataset("entry/data/data", shape=(0, 20, 30), maxshape=(None, 20, 30),
                      chunks=(1, 20, 30), dtype="u2")
f.swmr_mode = True
for k in range(3):
    ds.resize(k + 1, axis=0); ds[k] = k + 1; ds.flush(); time.sleep(0.05)
f.close()
time.sleep(0.1)
# then the same file re-opened in plain append mode, locking on, while the reader follows
with h5py.File(path, "a") as f:
    ds = f["entry/data/data"]
    for k in range(3, 6):
        ds.resize(k + 1, axis=0); ds[k] = k + 1; f.flush(); time.sleep(0.05)
    f["entry/end_time"] = "2026-12-05T01:00:00+00:00"
print("writer done")
"""


def test_never_locks_the_writer(tmp_path):
    path = tmp_path / "plain.h5"
    proc = subprocess.Popen([sys.executable, "-c", _PLAIN_WRITER, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    source = follow_frames(path)
    got: list[Frame] = []
    deadline = time.monotonic() + 30
    while not source.exhausted and time.monotonic() < deadline:
        got += source.poll()
        time.sleep(0.005)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err  # the reader never blocked or locked the writer
    assert "writer done" in out
    assert [f.index for f in got] == list(range(6))
    assert [int(f.data[0, 0]) for f in got] == [1, 2, 3, 4, 5, 6]  # no frame read too early
    source.close()


_KILLED_WRITER = """
import sys
from spotkit.sim import LiveSeriesWriter
# one detector process writing two series (SWMR, and plain flushes) until it is killed
writers = [LiveSeriesWriter(p, n_frames=100000, swmr=swmr, shape=(40, 50), seed=3,
                            transitions=()) for p, swmr in ((sys.argv[1], True),
                                                            (sys.argv[2], False))]
print("ready", flush=True)
while True:
    for w in writers:
        w.write(1)
"""


def test_writer_killed_mid_series(tmp_path):
    paths = [tmp_path / "killed_swmr.h5", tmp_path / "killed_flush.h5"]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, *map(str, paths)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        sources = [follow_frames(p) for p in paths]
        got: list[list[Frame]] = [[], []]
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # the writer is faster than these polls
            for source, frames in zip(sources, got, strict=True):
                frames += source.poll(max_frames=5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    reference = LiveSeriesWriter(tmp_path / "ref.h5", n_frames=100, shape=(40, 50), seed=3,
                                 transitions=())
    for path, source, frames in zip(paths, sources, got, strict=True):
        frames += source.poll()
        assert superblock_status(path)[1]  # left "open for writing": killed, not closed
        assert not source.finished
        assert source.info.swmr == ("swmr" in path.name)
        assert len(frames) > 5
        assert [f.index for f in frames] == list(range(len(frames)))
        for f in frames[:100]:
            np.testing.assert_array_equal(f.data, reference.frame(f.index))
        source.close()
    reference.close()


def test_reads_a_file_written_without_timestamps(tmp_path):
    """No counter dataset: the newest frame waits until the next one or the end."""
    path = tmp_path / "eiger_like.h5"
    with h5py.File(path, "w", libver="latest", locking=False) as f:
        ds = f.create_dataset("entry/data/data", shape=(0, 20, 30),
                              maxshape=(None, 20, 30), chunks=(1, 20, 30), dtype="u4")
        f.swmr_mode = True
        source = follow_frames(path)
        for k in range(3):
            ds.resize(k + 1, axis=0)
            ds[k] = k + 7
            ds.flush()
        assert [f.index for f in source.poll()] == [0, 1]  # frame 2 may still be written
        ds.resize(5, axis=0)  # space for two more frames, nothing in them yet
        ds.flush()
        assert source.poll() == []
        assert source.available == 2
        ds[3] = 9
        ds.flush()
        assert [f.index for f in source.poll()] == [2]  # 3 may still be written
        assert source.available == 3
        assert source.info.swmr
        assert source.info.dataset == "/entry/data/data"
    source.close()  # (in one process, HDF5 closes the file only when both let it go)
    with follow_frames(path, start=2) as source:
        # no writer has the file open: the frames written are whole; no end marker yet
        assert [f.index for f in source.poll()] == [2, 3]
        assert not source.finished
        with h5py.File(path, "a", locking=False) as f:
            f["entry/end_time"] = "2026-12-05T01:00:00+00:00"
        assert source.poll() == []
        assert source.finished


def test_superblock_status(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w", libver="latest", locking=False) as f:
        f["x"] = 1
        f.flush()
        assert superblock_status(path)[1:] == (True, False)
        f.swmr_mode = True
        assert superblock_status(path)[1:] == (True, True)
    assert superblock_status(path) == (3, False, False)
    (tmp_path / "t.txt").write_text("not hdf5")
    assert superblock_status(tmp_path / "t.txt") is None
