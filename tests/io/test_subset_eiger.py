"""write_frame_subset on a Dectris Eiger master: one self-contained file of the kept frames."""

from __future__ import annotations

import h5py
import numpy as np

from spotkit.io import load_geometry, open_saxs, write_frame_subset
from spotkit.sim import LiveSeriesWriter


def test_kept_frames_of_an_eiger_series(tmp_path):
    writer = LiveSeriesWriter(tmp_path / "run_master.h5", fmt="eiger", frames_per_file=4,
                              n_frames=10, shape=(16, 20), module_shape=None, transitions=(),
                              frame_interval_s=0.5, swmr=False, seed=3)
    writer.write(10)
    writer.stop()
    truth = np.stack([writer.frame(k) for k in range(10)])
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    keep = [0, 3, 4, 9]  # across all three data files
    out = write_frame_subset(writer.path, tmp_path / "kept" / "run_kept.h5", keep)
    frames = open_saxs(out)
    np.testing.assert_array_equal(np.asarray(frames), truth[keep])
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["/entry/data/frame_index"][()], keep)
        links = [n for n in f["/entry/data"] if isinstance(
            f["/entry/data"].get(n, getlink=True), h5py.ExternalLink)]
        assert links == []  # self-contained: no link to the data files
    poni = frames.attrs["poni_path"]  # the series' geometry came along
    assert poni.startswith(str(out.parent))
    assert load_geometry(poni).dist == load_geometry(writer.truth.poni_path).dist
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()
            if p.name in before} == before  # the raw files are only read


def test_a_master_that_names_no_poni_file(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    writer = LiveSeriesWriter(raw / "run_master.h5", fmt="eiger", frames_per_file=2,
                              n_frames=4, shape=(16, 16), module_shape=None, transitions=(),
                              swmr=False, seed=1)
    writer.write(4)
    writer.stop()
    with h5py.File(writer.path, "r+") as f:  # as a detector writes it: no geometry file named
        del f["/entry/instrument/detector/geometry_file"]
    poni = raw / "run.poni"  # beside the master, as the Eiger readers look for it
    writer.truth.poni_path.rename(poni)
    out = write_frame_subset(writer.path, tmp_path / "run_kept.h5", [1, 2])
    assert out.with_suffix(".poni").read_bytes() == poni.read_bytes()
    assert open_saxs(out).attrs["poni_path"] == str(out.with_suffix(".poni"))


def test_open_array_and_the_intake_export_read_an_eiger_series(tmp_path):
    from spotkit.catalog import open_catalog
    from spotkit.io import open_array

    writer = LiveSeriesWriter(tmp_path / "raw" / "run_master.h5", fmt="eiger",
                              frames_per_file=2, n_frames=5, shape=(16, 16), module_shape=None,
                              transitions=(), swmr=False, seed=2)
    writer.write(5)
    writer.stop()
    truth = np.stack([writer.frame(k) for k in range(5)])
    np.testing.assert_array_equal(open_array(writer.path, key="/entry/data/data").compute(),
                                  truth)
    import intake

    with open_catalog(tmp_path / "catalog.db") as catalog:
        ds = catalog.ingest(writer.path)
        yml = catalog.export_intake(tmp_path / "catalog.yaml")
    entry = intake.from_yaml_file(str(yml))[ds.id]
    np.testing.assert_array_equal(np.asarray(entry.read()), truth)
