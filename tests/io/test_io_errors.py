"""Every bad input file gives an InputFileError naming the file, the field and a remedy."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest

from spotkit.errors import InputFileError, SpotkitError
from spotkit.io import detect_kind, open_saxs, open_tomo, read_metadata

TOMO_READERS = [detect_kind, read_metadata, open_tomo]


@pytest.mark.parametrize("reader", TOMO_READERS)
def test_text_file_renamed_h5(tmp_path, reader):
    path = tmp_path / "notes.h5"
    path.write_text("angle,counts\n0,12\n")
    with pytest.raises(InputFileError, match="not an HDF5 file") as info:
        reader(path)
    assert info.value.path == path
    assert "tomo/raw" in str(info.value)  # the message lists the supported layouts


def test_random_bytes_renamed_h5(tmp_path):
    path = tmp_path / "noise.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputFileError, match="not an HDF5 file"):
        read_metadata(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        open_tomo(tmp_path / "nope.h5")


@pytest.mark.parametrize("reader", [detect_kind, read_metadata, open_tomo])
def test_truncated_file(twin_dir, tmp_path, reader):
    path = tmp_path / "cut.h5"
    shutil.copy(twin_dir / "scan.h5", path)
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(InputFileError, match="truncated") as info:
        reader(path)
    assert isinstance(info.value, SpotkitError)
    assert isinstance(info.value.__cause__, OSError)


def _break(path, action):
    with h5py.File(path, "a") as f:
        action(f)
    return path


@pytest.mark.parametrize(
    ("action", "field", "match"),
    [
        (lambda f: f.__delitem__("exchange/data"), "/exchange/data", "no projections"),
        (lambda f: f.__delitem__("exchange/theta"), "/exchange/theta", "no rotation angles"),
        (
            lambda f: (
                f.__delitem__("exchange/theta"),
                f.create_dataset("exchange/theta", data=np.arange(5.0)),
            ),
            "/exchange/theta",
            "5 rotation angles but 24 projections",
        ),
        (
            lambda f: (
                f.__delitem__("exchange/data_white"),
                f.create_dataset("exchange/data_white", data=np.ones((2, 4, 16), "u2")),
            ),
            "/exchange/data_white",
            r"frames of \(4, 16\) pixels",
        ),
        (
            lambda f: (
                f.__delitem__("exchange/data_dark"),
                f.create_dataset("exchange/data_dark", data=np.ones((2, 3, 32), "u2")),
            ),
            "/exchange/data_dark",
            "same detector region",
        ),
        (lambda f: f.__delitem__("exchange/data_white"), "/exchange/data_white", "no flat"),
    ],
    ids=["no-data", "no-theta", "theta-length", "flat-shape", "dark-shape", "no-flats"],
)
@pytest.mark.parametrize("reader", [read_metadata, open_tomo])
def test_broken_data_exchange(tomo_file, reader, action, field, match):
    _break(tomo_file, action)
    with pytest.raises(InputFileError, match=match) as info:
        reader(tomo_file)
    assert info.value.field == field
    assert str(tomo_file) in str(info.value)
    assert info.value.hint


def test_hdf5_of_unknown_layout(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["some/thing"] = np.zeros(3)
    for reader in (detect_kind, read_metadata):
        with pytest.raises(InputFileError, match="does not recognise") as info:
            reader(path)
        assert "Data Exchange" in str(info.value)
        assert "NeXus" in str(info.value)


@pytest.mark.parametrize("reader", [read_metadata, open_saxs])
def test_saxs_missing_poni(saxs_file, reader):
    saxs_file.with_suffix(".poni").unlink()
    with pytest.raises(InputFileError, match=r"geometry file .*series\.poni is missing") as info:
        reader(saxs_file)
    assert info.value.field == "/entry/instrument/detector/geometry_file"
    assert "PONI" in info.value.hint


def test_saxs_without_frames(saxs_file):
    _break(saxs_file, lambda f: f.__delitem__("entry/data/data"))
    with pytest.raises(InputFileError, match="no detector frames") as info:
        open_saxs(saxs_file)
    assert info.value.field == "/entry/data/data"


def test_open_tomo_on_a_saxs_file_names_the_problem(saxs_file):
    with pytest.raises(InputFileError, match=r"is a saxs/raw dataset .*open_saxs") as info:
        open_tomo(saxs_file)
    assert info.value.path == saxs_file
