"""Tests of the raw-file readers on files written by the digital twin."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pytest

from spotkit.io import DatasetInfo, detect_kind, open_saxs, open_tomo, read_metadata


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _open_fds(path):
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():
        pytest.skip("needs /proc to list open files")
    hits = []
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) == str(path):
                hits.append(fd)
        except OSError:
            continue
    return hits


def test_detect_kind(twin_dir):
    assert detect_kind(twin_dir / "scan.h5") == "tomo/raw"
    assert detect_kind(twin_dir / "series.h5") == "saxs/raw"
    assert detect_kind(str(twin_dir / "gi.h5")) == "saxs/raw"


def test_read_metadata_tomo(twin_dir):
    info = read_metadata(twin_dir / "scan.h5")
    assert isinstance(info, DatasetInfo)
    assert info.kind == "tomo/raw"
    assert (info.beamline, info.sample, info.proposal) == ("8.3.2", "rock core", "ALS-4242")
    assert info.title == "8.3.2 tomo scan of rock core"
    assert info.start_time.utcoffset().total_seconds() == 0
    assert info.end_time > info.start_time
    md = info.metadata
    assert md["energy_kev"] == 25.0
    assert md["pixel_size_um"] == 0.65
    assert md["exposure_s"] == 0.1
    assert md["shape"] == [24, 4, 32]
    assert md["dtype"] == "uint16"
    assert (md["n_angles"], md["n_flats"], md["n_darks"]) == (24, 3, 2)
    assert md["instrument"] == "ALS 8.3.2"
    assert md["experimenter"] == "spotkit digital twin"
    assert info.files == (((twin_dir / "scan.h5").absolute(), "data"),)
    json.dumps(info.metadata)
    json.dumps(info.to_dict())


def test_read_metadata_saxs(twin_dir):
    info = read_metadata(twin_dir / "series.h5")
    assert info.kind == "saxs/raw"
    assert (info.beamline, info.sample, info.proposal) == ("7.3.3", "polymer", "ALS-77")
    assert dict((role, p) for p, role in info.files) == {
        "data": twin_dir / "series.h5",
        "geometry": twin_dir / "series.poni",
    }
    md = info.metadata
    assert md["mode"] == "saxs"
    assert md["n_frames"] == 5
    assert md["pixel_size_um"] == 172.0
    assert md["energy_kev"] == 10.0
    assert md["frame_time_s"] == 1.0
    json.dumps(info.to_dict())
    gi = read_metadata(twin_dir / "gi.h5")
    assert gi.metadata["mode"] == "gisaxs"
    assert gi.metadata["incidence_angle_deg"] == 0.2


def test_open_tomo_is_lazy_and_correct(tomo_file):
    before = _sha(tomo_file)
    ds = open_tomo(tomo_file, chunks=5)
    assert isinstance(ds.data.data, da.Array)
    assert ds.data.dims == ("angle", "row", "col")
    assert ds.flats.dims == ("flat", "row", "col")
    assert ds.darks.dims == ("dark", "row", "col")
    assert ds.data.data.chunks[0] == (5, 5, 5, 5, 4)
    assert ds.theta.attrs["units"] == "degrees"
    assert ds.attrs["kind"] == "tomo/raw"
    assert ds.attrs["energy_kev"] == 25.0
    with h5py.File(tomo_file, "r") as f:
        np.testing.assert_array_equal(ds.data.values, f["exchange/data"][()])
        np.testing.assert_array_equal(ds.flats.values, f["exchange/data_white"][()])
        np.testing.assert_array_equal(ds.darks.values, f["exchange/data_dark"][()])
        np.testing.assert_array_equal(ds.theta.values, f["exchange/theta"][()])
    sino = pickle.loads(pickle.dumps(ds.data.data))[:, 2, :].compute()
    assert sino.shape == (24, 32)
    assert not _open_fds(Path(tomo_file).absolute())
    assert _sha(tomo_file) == before  # raw data never modified


def test_open_tomo_default_chunks_are_a_few_projections(tomo_file):
    chunks = open_tomo(tomo_file).data.data.chunks
    assert chunks[0][0] == 16
    assert chunks[1:] == ((4,), (32,))


def test_open_saxs(saxs_file):
    frames = open_saxs(saxs_file)
    assert frames.dims == ("frame", "y", "x")
    assert frames.data.chunks[0] == (1, 1, 1, 1, 1)
    np.testing.assert_allclose(frames.time.values, np.arange(5.0))
    assert frames.attrs["poni_path"] == str(Path(saxs_file).with_suffix(".poni"))
    assert frames.attrs["mask_value"] == -1
    with h5py.File(saxs_file, "r") as f:
        np.testing.assert_array_equal(frames.values, f["entry/data/data"][()])
    restored = pickle.loads(pickle.dumps(frames.data))
    assert restored[3].compute().dtype == np.int32
    assert not _open_fds(Path(saxs_file).absolute())


def test_missing_optional_metadata_gives_defaults_and_warns(tomo_file, caplog):
    with h5py.File(tomo_file, "a") as f:
        del f["measurement/sample/name"]
        del f["measurement/instrument/monochromator/energy"]
        del f["process/acquisition/start_date"]
    with caplog.at_level("WARNING", logger="spotkit.io"):
        info = read_metadata(tomo_file)
    assert info.sample == "unknown"
    assert info.metadata["energy_kev"] is None
    assert info.start_time.tzinfo is not None  # falls back to the file time
    assert "measurement/sample/name" in caplog.text
    assert "monochromator/energy" in caplog.text


def test_theta_in_radians_is_converted(tomo_file):
    with h5py.File(tomo_file, "a") as f:
        th = f["exchange/theta"]
        th[...] = np.deg2rad(th[()])
        th.attrs["units"] = "radians"
    ds = open_tomo(tomo_file)
    assert ds.theta.values[-1] == pytest.approx(180 * 23 / 24)
