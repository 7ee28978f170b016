"""Intake v2 export and the end-to-end path with spotkit.sim and spotkit.io."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from spotkit.catalog import open_catalog

intake = pytest.importorskip("intake")


@pytest.fixture
def scan(tmp_path):
    sim = pytest.importorskip("spotkit.sim")
    pytest.importorskip("spotkit.io")
    path = tmp_path / "beamline" / "scan_0001.h5"
    path.parent.mkdir()
    sim.simulate_tomo_scan(path, shape=(31, 4, 32))
    return path


def test_ingest_simulated_scan_with_spotkit_io(catalog_url, scan):
    with open_catalog(catalog_url) as cat:
        raw = cat.ingest(scan)
        assert raw.kind == "tomo/raw"
        assert raw.beamline
        assert raw.sample
        assert raw.start_time.tzinfo is not None
        assert raw.path == scan
        assert raw.files[0].size == scan.stat().st_size
        assert cat.ingest(scan).id == raw.id
        assert raw.to_dask().shape == (31, 4, 32)
        xds = raw.to_xarray()
        assert xds["data"].shape == (31, 4, 32)
        assert "theta" in xds.coords
        assert cat.search(sample=raw.sample).ids == [raw.id]


def test_export_intake_round_trip(catalog_url, tmp_path, scan):
    with open_catalog(catalog_url) as cat:
        raw = cat.ingest(scan)
        recon = tmp_path / "recon.npy"
        np.save(recon, np.arange(24, dtype="f4").reshape(2, 3, 4))
        png = tmp_path / "slice.png"
        png.write_bytes(b"\x89PNG\r\n\x1a\n fake")
        run = cat.start_run(
            dataset_id=raw.id, notebook=tmp_path / "nb.ipynb", notebook_sha256=None, parameters={}
        )
        derived, figure = cat.finish_run(
            run,
            state="completed",
            outputs=[
                {"path": recon, "kind": "tomo/recon"},
                {"path": png, "kind": "figure", "role": "figure"},
            ],
        )
        assert derived.to_dask().shape == (2, 3, 4)
        assert derived.to_xarray().attrs["dataset_id"] == derived.id
        out = cat.export_intake(tmp_path / "catalogs" / "all.yaml")
        only_raw = cat.export_intake(tmp_path / "catalogs" / "raw.yaml", status="raw")

    assert yaml.safe_load(out.read_text())["version"] == 2
    icat = intake.from_yaml_file(str(out))
    assert set(icat.entries) == {raw.id, derived.id, figure.id}
    entry = icat[raw.id]
    assert entry.metadata["dataset_id"] == raw.id
    assert entry.metadata["sample"] == raw.sample
    assert entry.metadata["beamline"] == raw.beamline
    arr = entry.read()
    assert arr.shape == (31, 4, 32)
    np.testing.assert_array_equal(np.asarray(arr), np.asarray(raw.to_dask()))
    assert icat[derived.id].metadata["parents"] == [raw.id]
    np.testing.assert_array_equal(icat[derived.id].read(), np.load(recon))
    assert icat[figure.id].read() == png.read_bytes()
    assert set(intake.from_yaml_file(str(only_raw)).entries) == {raw.id}


def test_export_intake_hdf5_key_and_zarr(tmp_path, scans, cat):
    h5py = pytest.importorskip("h5py")
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("spotkit.io")
    raw = cat.ingest(scans())
    h5 = tmp_path / "vol.h5"
    with h5py.File(h5, "w") as f:
        f["/volume/data"] = np.ones((3, 5, 5), "f4")
    store = tmp_path / "vol.zarr"
    zarr.open_array(store, mode="w", shape=(4, 6), dtype="i2")[:] = 7
    a = cat.register_derived(files=[{"path": h5, "role": "data", "key": "/volume/data"}],
                             kind="tomo/recon", parents=[raw])  # fmt: skip
    b = cat.register_derived(files=[(store, "data")], kind="tomo/recon", parents=[raw])
    icat = intake.from_yaml_file(str(cat.export_intake(tmp_path / "x.yaml", kind="tomo/recon")))
    assert icat[a.id].read().shape == (3, 5, 5)
    assert icat[b.id].read().compute().sum() == 7 * 24
    assert b.to_dask().shape == (4, 6)
