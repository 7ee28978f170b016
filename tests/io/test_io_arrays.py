"""Tests of spotkit.io.open_array for derived products."""

from __future__ import annotations

import pickle

import dask.array as da
import h5py
import numpy as np
import pytest

from spotkit.errors import InputFileError
from spotkit.io import open_array


@pytest.fixture
def volume():
    return np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)


def test_hdf5_with_and_without_key(tmp_path, volume):
    path = tmp_path / "recon.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("volume", data=volume, chunks=(1, 5, 4))
    arr = open_array(path, key="/volume")
    assert isinstance(arr, da.Array)
    np.testing.assert_array_equal(arr.compute(), volume)
    np.testing.assert_array_equal(open_array(path).compute(), volume)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(arr))[2].compute(), volume[2])
    with pytest.raises(InputFileError, match="no dataset") as info:
        open_array(path, key="/nope")
    assert info.value.field == "/nope"


def test_hdf5_ambiguous_key(tmp_path, volume):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a"] = volume
        f["b"] = volume
    with pytest.raises(InputFileError, match="Pass key="):
        open_array(path)


def test_npy(tmp_path, volume):
    path = tmp_path / "v.npy"
    np.save(path, volume)
    arr = open_array(path)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(arr)).compute(), volume)


def test_zarr(tmp_path, volume):
    zarr = pytest.importorskip("zarr")
    path = tmp_path / "v.zarr"
    z = zarr.open_array(
        str(path), mode="w", shape=volume.shape, dtype=volume.dtype, chunks=(2, 5, 4)
    )
    z[...] = volume
    np.testing.assert_array_equal(open_array(path).compute(), volume)


def test_unsupported_and_bad_npy(tmp_path):
    txt = tmp_path / "v.csv"
    txt.write_text("1,2,3\n")
    with pytest.raises(InputFileError, match="not a supported array format"):
        open_array(txt)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(InputFileError, match=r"not a readable \.npy"):
        open_array(bad)
