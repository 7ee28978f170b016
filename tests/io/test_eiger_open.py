"""open_saxs on a written Dectris Eiger series (the live twin's master + data files): the frames
of every data file in order as one lazy stack, the master's metadata, clear errors for a
missing data file or a data file opened on its own; the files are never changed."""

from __future__ import annotations

import hashlib
import shutil

import h5py
import numpy as np
import pytest

from spotkit.errors import InputFileError
from spotkit.io import check_complete, find_reader, open_saxs, read_metadata
from spotkit.io._h5 import H5ArrayProxy
from spotkit.sim import LiveSeriesWriter

SHAPE = (16, 20)
N, PER_FILE = 10, 4  # three data files: 4 + 4 + 2 frames


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A finished twin Eiger series and the frames it wrote (shared: copy before breaking)."""
    folder = tmp_path_factory.mktemp("eiger")
    writer = LiveSeriesWriter(folder / "run_master.h5", fmt="eiger", frames_per_file=PER_FILE,
                              n_frames=N, shape=SHAPE, module_shape=None, transitions=(),
                              frame_interval_s=0.5, swmr=False, seed=3)
    writer.write(N)
    return writer, np.stack([writer.frame(k) for k in range(N)])


def _digests(folder):
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir()) if p.is_file()}


def _copy(writer, tmp_path):
    for p in writer.path.parent.iterdir():
        shutil.copy(p, tmp_path / p.name)
    return tmp_path / writer.path.name


def test_the_frames_of_every_data_file_in_order(written):
    writer, truth = written
    before = _digests(writer.path.parent)
    assert find_reader(writer.path).name == "nexus-saxs"
    frames = open_saxs(writer.path)
    assert frames.dims == ("frame", "y", "x")
    assert frames.shape == (N, *SHAPE)
    assert frames.dtype == np.int32
    # one frame per chunk by default; a chunk never spans two data files
    assert frames.data.chunks[0] == (1,) * N
    assert open_saxs(writer.path, chunks=3).data.chunks[0] == (3, 1, 3, 1, 2)
    assert open_saxs(writer.path, chunks=100).data.chunks[0] == (4, 4, 2)
    assert open_saxs(writer.path, chunks=(5, 16, 20)).data.chunks[0] == (5, 5)
    np.testing.assert_array_equal(frames.values, truth)
    np.testing.assert_array_equal(frames[[9, 3, 4]].values, truth[[9, 3, 4]])
    np.testing.assert_allclose(frames["time"].values, 0.5 * np.arange(N))
    attrs, t = frames.attrs, writer.truth
    assert attrs["format"] == "eiger"
    assert attrs["energy_kev"] == pytest.approx(t.energy_kev)
    assert attrs["distance_m"] == pytest.approx(t.distance_m)
    assert attrs["pixel_size_um"] == pytest.approx(t.pixel_size_um)
    assert attrs["beam_center"] == pytest.approx(list(t.beam_center))
    assert attrs["poni_path"] == str(t.poni_path)
    assert (attrs["n_frames"], attrs["n_data_files"], attrs["frames_per_file"]) == (N, 3, 4)
    assert attrs["data_files"] == [str(p) for p in writer.data_files]
    assert check_complete(writer.path) == ("saxs/raw", None)
    info = read_metadata(writer.path)
    assert [(p, role) for p, role in info.files] == [
        (writer.path, "data"), *((p, "frames") for p in writer.data_files),
        (t.poni_path, "geometry"), (t.mask_path, "mask")]
    assert _digests(writer.path.parent) == before  # read-only


def test_nothing_is_read_until_computed(written, monkeypatch):
    writer, truth = written
    reads = []
    original = H5ArrayProxy.__getitem__

    def counting(self, index):
        reads.append(self.path)
        return original(self, index)

    monkeypatch.setattr(H5ArrayProxy, "__getitem__", counting)
    frames = open_saxs(writer.path)
    _ = frames[4:6] * 2
    assert reads == []
    np.testing.assert_array_equal(frames[5].values, truth[5])
    assert reads == [str(writer.data_files[1])]  # only the data file holding frame 5


def test_a_missing_data_file_is_named(written, tmp_path):
    writer, _ = written
    master = _copy(writer, tmp_path)
    (tmp_path / "run_data_000002.h5").unlink()
    before = _digests(tmp_path)
    with pytest.raises(InputFileError, match=r"run_master\.h5 .*its data file "
                       r"run_data_000002\.h5 is missing .*link /entry/data/data_000002 "
                       r".*frames from 4 on.*Put the data file back") as err:
        open_saxs(master)
    assert err.value.path == master
    assert err.value.field == "/entry/data/data_000002"
    kind, problem = check_complete(master)
    assert kind is None
    assert "run_data_000002.h5 is missing" in problem
    assert _digests(tmp_path) == before


def test_a_data_file_on_its_own_points_at_its_master(written):
    writer, _ = written
    with pytest.raises(InputFileError, match=r"run_data_000001\.h5 .*data file of the Eiger "
                       r"series run_master\.h5.*Open or ingest the master file"):
        read_metadata(writer.data_files[0])


def test_a_detector_master_with_nxmx_metadata(written, tmp_path, monkeypatch):
    """As a DECTRIS detector writes it: no geometry_file or energy, the wavelength, the
    detector_distance, data_collection_date; links relative to the master's folder."""
    writer, truth = written
    data = tmp_path / "data"
    data.mkdir()
    for p in writer.data_files:
        shutil.copy(p, data / p.name)
    shutil.copy(writer.truth.poni_path, data / "scan.poni")
    master = data / "scan_master.h5"
    det = "/entry/instrument/detector"
    with h5py.File(master, "w") as f:
        f[f"{det}/detector_distance"] = 0.25
        f[f"{det}/x_pixel_size"] = 75e-6
        f[f"{det}/x_pixel_size"].attrs["units"] = "m"
        f[f"{det}/beam_center_x"] = 8.5
        f[f"{det}/beam_center_y"] = 7.5
        f[f"{det}/frame_time"] = 0.1
        f[f"{det}/detectorSpecific/nimages"] = N
        f[f"{det}/detectorSpecific/data_collection_date"] = "2026-12-05T06:00:00.5+01:00"
        f["/entry/instrument/beam/incident_wavelength"] = 1.0
        f["/entry/instrument/beam/incident_wavelength"].attrs["units"] = "angstrom"
        for j, p in enumerate(writer.data_files):
            f[f"/entry/data/data_{j + 1:06d}"] = h5py.ExternalLink(p.name, "/entry/data/data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative links: beside the master, not here
    frames = open_saxs(master)
    np.testing.assert_array_equal(frames.values, truth)
    attrs = frames.attrs
    assert attrs["energy_kev"] == pytest.approx(12.398419843320026)
    assert attrs["wavelength_a"] == pytest.approx(1.0)
    assert (attrs["distance_m"], attrs["pixel_size_um"]) == pytest.approx((0.25, 75.0))
    assert attrs["beam_center"] == pytest.approx([7.5, 8.5])
    assert attrs["start_time"] == "2026-12-05T05:00:00.500000+00:00"
    assert attrs["poni_path"] == str(data / "scan.poni")
    np.testing.assert_allclose(frames["time"].values, 0.1 * np.arange(N))
    # fewer frames than the master announces: not complete (the watcher waits)
    with h5py.File(master, "r+") as f:
        f[f"{det}/detectorSpecific/nimages"][()] = N + 5
    kind, problem = check_complete(master)
    assert kind is None
    assert f"hold {N} of the {N + 5} frames the master announces" in problem
