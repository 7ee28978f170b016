"""A frame series cut down to the frames of interest: same layout, raw file untouched."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

from spotkit.errors import InputFileError
from spotkit.io import open_saxs, read_metadata, write_frame_subset
from spotkit.sim import simulate_saxs_series


@pytest.fixture
def series(tmp_path):
    raw = tmp_path / "raw" / "film.h5"
    raw.parent.mkdir()
    simulate_saxs_series(raw, n_frames=20, onset_frame=12, seed=4, shape=(40, 60),
                         module_shape=None)
    return raw


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_subset_keeps_the_chosen_frames_and_reads_like_the_raw_file(series, tmp_path):
    before = _sha(series)
    keep = np.zeros(20, bool)
    keep[[0, 5, 11, 12, 13, 19]] = True
    out = write_frame_subset(series, tmp_path / "moved" / "film_kept.h5", keep)
    assert _sha(series) == before  # the raw file is only read
    full = open_saxs(series)
    sub = open_saxs(out)  # the same reader takes it, geometry (PONI) copied beside it
    assert sub.shape == (6, 40, 60)
    np.testing.assert_array_equal(sub.values, full.values[keep])
    np.testing.assert_array_equal(sub["time"].values, full["time"].values[keep])
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["entry/data/frame_index"][()], [0, 5, 11, 12, 13, 19])
        assert f.attrs["spotkit_subset_frames"] == "6 of 20"
        assert f.attrs["spotkit_subset_of"] == str(series.resolve())
        assert f["entry/sample/name"][()] == h5py.File(series)["entry/sample/name"][()]
    info = read_metadata(out)
    assert info.kind == "saxs/raw"
    assert info.metadata["n_frames"] == 6
    assert not list(out.parent.glob(".*.tmp"))


def test_bad_selections_and_sources_are_refused_before_writing(series, tmp_path):
    dst = tmp_path / "kept.h5"
    for frames, match in (([], "no frame selected"), ([3, 20], r"in 0 \.\. 19"),
                          ([5, 3], "increasing and unique"), ([2, 2], "increasing"),
                          (np.ones(7, bool), "one value per frame"),
                          ([[1, 2]], "1-D list")):
        with pytest.raises(ValueError, match=match):
            write_frame_subset(series, dst, frames)
        assert not dst.exists()
    with pytest.raises(ValueError, match="cannot replace its source"):
        write_frame_subset(series, series, [0])
    not_series = tmp_path / "other.h5"
    with h5py.File(not_series, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(InputFileError, match="no 3-D frames dataset") as info:
        write_frame_subset(not_series, dst, [0])
    assert info.value.field == "/entry/data/data"
    write_frame_subset(series, dst, [1])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_frame_subset(series, dst, [2])
    write_frame_subset(series, dst, [2, 3], overwrite=True)
    assert open_saxs(dst).shape[0] == 2
    assert not list(tmp_path.glob(".*.tmp"))
