"""Reading frame series through fabio: TIFF, EDF, CBF, HDF5/NeXus; bad series fail early."""

from __future__ import annotations

import numpy as np
import pytest

from spotkit.errors import InputFileError
from spotkit.io._frames import open_frames


def _frames(n=3, shape=(20, 30), dtype=np.int32):
    rng = np.random.default_rng(0)
    return [rng.poisson(50, shape).astype(dtype) for _ in range(n)]


def _write(path, data):
    import fabio.cbfimage
    import fabio.edfimage
    import fabio.tifimage

    cls = {".tif": fabio.tifimage.TifImage, ".edf": fabio.edfimage.EdfImage,
           ".cbf": fabio.cbfimage.CbfImage}[path.suffix]
    cls(data=data).write(str(path))
    return path


@pytest.mark.parametrize("suffix", [".tif", ".edf", ".cbf"])
def test_single_frame_files_by_pattern_and_list(tmp_path, suffix):
    data = _frames()
    paths = [_write(tmp_path / f"img_{k:03d}{suffix}", d) for k, d in enumerate(data)]
    frames = open_frames(str(tmp_path / f"img_*{suffix}"))
    assert frames.dims == ("frame", "y", "x")
    assert frames.shape == (3, 20, 30)
    assert frames.dtype == np.int32
    np.testing.assert_array_equal(frames[1].values, data[1])
    assert frames.file.values.tolist() == [str(p) for p in paths]
    by_list = open_frames(paths[::-1])
    np.testing.assert_array_equal(by_list.values, np.stack(data[::-1]))


def test_multi_frame_edf(tmp_path):
    import fabio.edfimage

    data = _frames(4)
    img = fabio.edfimage.EdfImage(data=data[0])
    for d in data[1:]:
        img.append_frame(fabio.edfimage.EdfImage(data=d))
    img.write(str(tmp_path / "multi.edf"))
    frames = open_frames(tmp_path / "multi.edf")
    np.testing.assert_array_equal(frames.values, np.stack(data))


def test_twin_hdf5_through_fabio_equals_the_nexus_reader(saxs, saxs_frames):
    frames = open_frames(saxs.path, dataset="/entry/data/data", chunks=2)
    assert frames.shape == saxs_frames.shape
    assert frames.data.chunks[0] == (2, 2, 2, 2)
    np.testing.assert_array_equal(frames[[0, 5]].values, saxs_frames[[0, 5]].values)
    auto = open_frames(saxs.path)  # fabio finds the NXdata signal
    np.testing.assert_array_equal(auto[3].values, saxs_frames[3].values)


def test_reading_is_lazy(tmp_path, monkeypatch):
    import spotkit.io._frames as mod

    paths = [_write(tmp_path / f"f{k}.edf", d) for k, d in enumerate(_frames(4))]
    frames = open_frames(paths)
    reads = []
    original = mod._read_frame
    monkeypatch.setattr(mod, "_read_frame", lambda *a: reads.append(a) or original(*a))
    frames[2].values  # noqa: B018
    assert len(reads) <= 1  # the graph was built before the patch; at most this frame


def test_mixed_shape_is_named(tmp_path):
    a = _write(tmp_path / "a.tif", _frames(1)[0])
    b = _write(tmp_path / "b.tif", _frames(1, shape=(21, 30))[0])
    with pytest.raises(InputFileError, match=r"b\.tif.*21 x 30 pixels but those of .*a\.tif"):
        open_frames([a, b])


def test_mixed_dtype_is_named(tmp_path):
    a = _write(tmp_path / "a.edf", _frames(1)[0])
    b = _write(tmp_path / "b.edf", _frames(1, dtype=np.float32)[0])
    with pytest.raises(InputFileError, match=r"b\.edf.*float32 but those of .*a\.edf are int32"):
        open_frames([a, b])


def test_empty_and_missing_series(tmp_path):
    with pytest.raises(InputFileError, match="no file matches this pattern"):
        open_frames(str(tmp_path / "none_*.cbf"))
    with pytest.raises(ValueError, match="empty"):
        open_frames([])
    with pytest.raises(InputFileError, match="does not exist"):
        open_frames(tmp_path / "missing.edf")
    junk = tmp_path / "junk.edf"
    junk.write_bytes(b"not an image")
    with pytest.raises(InputFileError, match=r"junk\.edf"):
        open_frames(junk)
