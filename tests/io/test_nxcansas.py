"""NXcanSAS: reading the measured example files sasdata ships, round trips, bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from spotkit.errors import InputFileError
from spotkit.io import _nxcansas_write
from spotkit.io._nxcansas import read_nxcansas, read_nxcansas_entries, write_nxcansas

HAVE_SASDATA = importlib.util.find_spec("sasdata") is not None
needs_sasdata = pytest.mark.skipif(
    not HAVE_SASDATA, reason='sasdata is not installed: pip install "spotkit[test]"'
)


def _example_dir() -> Path:
    import sasdata

    return Path(sasdata.__file__).parent / "example_data"


EXAMPLES = [
    "1d_data/33837rear_1D_1.75_16.5_NXcanSAS.h5",
    "1d_data/33837rear_1D_1.75_16.5_NXcanSAS_v3.h5",
    "1d_data/Lew_Sa3_DSM_QinA.h5",
    "1d_data/VTMA.h5",
    "1d_data/FK403_0006_Nika.hdf",
    "2d_data/14250_2D_NoDetInfo_NXcanSAS_v3.h5",
    "2d_data/33837rear_2D_1.75_16.5_NXcanSAS.h5",
    "2d_data/33837rear_2D_1.75_16.5_NXcanSAS_v3.h5",
    "2d_data/BAM_2D.h5",
]


def _sasdata_load(path):
    from sasdata.dataloader.loader import Loader

    return Loader().load(str(path))


#: Nika writes float32; sasdata rounds some of those values differently by one float32 ulp
RTOL = 1e-6


def _assert_same_as_sasdata(ours: xr.Dataset, theirs) -> None:
    """Our Dataset (q in 1/angstrom) holds the numbers sasdata's loader reads."""
    if ours["intensity"].ndim == 1:
        assert type(theirs).__name__ == "Data1D"
        np.testing.assert_allclose(ours["q"].values, theirs.x, rtol=RTOL)
        np.testing.assert_allclose(ours["intensity"].values, theirs.y, rtol=RTOL)
        if "sigma" in ours:
            np.testing.assert_allclose(ours["sigma"].values, theirs.dy, rtol=RTOL)
        if "dq" in ours:
            np.testing.assert_allclose(ours["dq"].values, theirs.dx, rtol=RTOL)
        return
    assert type(theirs).__name__ == "Data2D"
    inten = ours["intensity"]
    np.testing.assert_allclose(inten.values.ravel(), theirs.data, rtol=RTOL)
    if "sigma" in ours:
        np.testing.assert_allclose(ours["sigma"].values.ravel(), theirs.err_data, rtol=RTOL)
    qx, qy = xr.broadcast(ours["qx"], ours["qy"])
    np.testing.assert_allclose(qx.transpose(*inten.dims).values.ravel(), theirs.qx_data,
                               rtol=RTOL, atol=1e-15)
    np.testing.assert_allclose(qy.transpose(*inten.dims).values.ravel(), theirs.qy_data,
                               rtol=RTOL, atol=1e-15)


# -- the measured example files -------------------------------------------------------


@needs_sasdata
@pytest.mark.parametrize("name", EXAMPLES)
def test_reads_measured_example_like_sasdata(name):
    path = _example_dir() / name
    ours = read_nxcansas_entries(path, q_unit="1/angstrom")
    theirs = _sasdata_load(path)
    assert len(ours) == len(theirs) >= 1
    for ds, data in zip(ours, theirs, strict=True):
        assert ds.attrs["title"] == data.title
        assert ds.attrs["path"] == str(path)
        assert ds["q" if "q" in ds.coords else "qx"].attrs["units"] == "1/angstrom"
        _assert_same_as_sasdata(ds, data)


@needs_sasdata
def test_example_metadata_and_shapes():
    d = _example_dir()
    ds = read_nxcansas(d / "1d_data/33837rear_1D_1.75_16.5_NXcanSAS_v3.h5")
    assert ds.sizes == {"q": 66}
    assert ds.attrs["run"] == "33837"
    assert ds.attrs["instrument"] == "SANS2D"
    assert ds.attrs["unit"] == "q_A^-1"
    assert ds["intensity"].attrs["units"] == "Counts"
    lew = read_nxcansas(d / "1d_data/Lew_Sa3_DSM_QinA.h5")
    assert lew["intensity"].attrs["units"] == "1/cm"
    assert lew.attrs["wavelength_A"] == pytest.approx(0.5904, rel=1e-4)
    assert "dq" in lew
    bam = read_nxcansas(d / "2d_data/BAM_2D.h5")
    assert bam["intensity"].shape == (1065, 1030)
    assert set(bam["intensity"].dims) == {"qx", "qy"}
    assert bam["mask"].dtype == bool
    mantid2d = read_nxcansas(d / "2d_data/33837rear_2D_1.75_16.5_NXcanSAS_v3.h5")
    assert mantid2d["intensity"].dims == ("qy", "qx")


@needs_sasdata
def test_entries_on_different_grids_are_not_stacked():
    path = _example_dir() / "1d_data/VTMA.h5"
    with pytest.raises(InputFileError, match="cannot be stacked") as info:
        read_nxcansas(path)
    assert info.value.path == path
    assert "read_nxcansas_entries" in str(info.value)
    one = read_nxcansas(path, entry="VTMA13b_2_30C_0min_0003_mrg")
    assert one.sizes["q"] == 364
    assert read_nxcansas(path, entry=0).attrs["entry"] == "VTMA13b_2_30C_0min_0003"
    with pytest.raises(InputFileError, match="no SASentry 'nope'"):
        read_nxcansas(path, entry="nope")


@needs_sasdata
def test_non_nxcansas_files_are_refused():
    xml = _example_dir() / "1d_data/33837rear_1D_1.75_16.5_CanSAS1D.xml"
    with pytest.raises(InputFileError, match="not an HDF5 file") as info:
        read_nxcansas(xml)
    assert info.value.path == xml


# -- writing and reading back ---------------------------------------------------------


def _series(n=4, nq=30):
    """What spotkit.scattering.integrate_frames returns (frame x q), with times."""
    q = np.linspace(0.05, 2.5, nq)
    intensity = np.stack([50.0 / (1 + (q * (3 + k)) ** 2) + 1 for k in range(n)])
    ds = xr.Dataset(
        {"intensity": (("frame", "q"), intensity),
         "sigma": (("frame", "q"), np.sqrt(intensity))},
        coords={"frame": np.arange(n), "q": q,
                "time": ("frame", np.arange(n) * 2.5, {"units": "s"})},
        attrs={"unit": "q_nm^-1", "npt": nq, "method": "csr",
               "start_time": "2024-03-04T08:00:00+00:00", "sample": "P3HT:PCBM"},
    )
    ds["q"].attrs["units"] = "q (nm^-1)"
    return ds


def test_round_trip_single_profile_numpy(tmp_path):
    q = np.linspace(0.01, 0.3, 25)
    inten = 3.0 / (1 + (40 * q) ** 2)
    sigma, dq = 0.01 * inten, np.full_like(q, 0.002)
    path = write_nxcansas(tmp_path / "one.h5", (q, inten, sigma, dq), q_unit="1/angstrom",
                          title="glassy carbon", run="17", sample="GC", instrument="7.3.3",
                          wavelength_A=1.24, intensity_units="1/cm",
                          parameters={"poni": "agbh.poni", "npt": 25})
    with h5py.File(path) as f:
        assert list(f) == ["sasentry01"]
        e = f["sasentry01"]
        assert e.attrs["canSAS_class"] == "SASentry"
        assert e.attrs["NX_class"] == "NXentry"
        assert e["definition"][()] == b"NXcanSAS"
        assert e["sasdata"].attrs["signal"] == "I"
        assert e["sasdata/I"].attrs["uncertainties"] == "Idev"
        assert e["sasdata/Q"].attrs["resolutions"] == "dQ"
    ds = read_nxcansas(path)
    np.testing.assert_array_equal(ds["q"].values, q)
    np.testing.assert_array_equal(ds["intensity"].values, inten)
    np.testing.assert_array_equal(ds["sigma"].values, sigma)
    np.testing.assert_array_equal(ds["dq"].values, dq)
    assert ds["q"].attrs["units"] == "1/angstrom"
    assert ds["intensity"].attrs["units"] == "1/cm"
    assert ds.attrs["unit"] == "q_A^-1"
    assert (ds.attrs["title"], ds.attrs["run"], ds.attrs["sample"]) == ("glassy carbon", "17",
                                                                         "GC")
    assert ds.attrs["instrument"] == "7.3.3"
    assert ds.attrs["wavelength_A"] == pytest.approx(1.24)
    assert ds.attrs["process_name"] == "spotkit"
    assert json.loads(ds.attrs["parameters"]) == {"poni": "agbh.poni", "npt": 25}


def test_round_trip_time_series_one_entry_per_step(tmp_path):
    src = _series(n=4)
    path = write_nxcansas(tmp_path / "series.h5", src, title="anneal", run="ALS-1",
                          parameters={"mask": "mask.npy"})
    with h5py.File(path) as f:
        assert sorted(f) == ["sasentry01", "sasentry02", "sasentry03", "sasentry04"]
        assert f["sasentry03"].attrs["frame_index"] == 2
        assert f["sasentry03"].attrs["timestamp"] == "2024-03-04T08:00:05+00:00"
    ds = read_nxcansas(path)
    assert ds["intensity"].dims == ("frame", "q")
    np.testing.assert_array_equal(ds["intensity"].values, src["intensity"].values)
    np.testing.assert_array_equal(ds["sigma"].values, src["sigma"].values)
    np.testing.assert_array_equal(ds["q"].values, src["q"].values)
    np.testing.assert_array_equal(ds["frame"].values, src["frame"].values)
    np.testing.assert_array_equal(ds["time"].values, src["time"].values)
    assert ds["time"].attrs["units"] == "s"
    assert ds["timestamp"].values[1] == np.datetime64("2024-03-04T08:00:02.500")
    assert list(ds["entry"].values) == ["sasentry01", "sasentry02", "sasentry03", "sasentry04"]
    assert ds.attrs["unit"] == src.attrs["unit"]
    assert ds["q"].attrs["units"] == "1/nm"
    assert ds.attrs["title"] == "anneal"
    assert ds.attrs["sample"] == "P3HT:PCBM"
    params = json.loads(ds.attrs["parameters"])
    assert params == {"mask": "mask.npy", "unit": "q_nm^-1", "npt": 30, "method": "csr"}
    entries = read_nxcansas_entries(path)
    assert len(entries) == 4
    np.testing.assert_array_equal(entries[3]["intensity"].values, src["intensity"].values[3])
    assert entries[3].attrs["frame_index"] == 3


def test_round_trip_2d_map_and_cake(tmp_path):
    rng = np.random.default_rng(0)
    qx, qy = np.linspace(-1, 1, 20), np.linspace(-0.2, 1.5, 15)
    img = xr.Dataset(
        {"intensity": (("q_oop", "q_ip"), rng.random((15, 20))),
         "sigma": (("q_oop", "q_ip"), rng.random((15, 20)) * 0.1),
         "mask": (("q_oop", "q_ip"), rng.random((15, 20)) > 0.9)},
        coords={"q_oop": ("q_oop", qy, {"units": "1/nm"}), "q_ip": ("q_ip", qx, {"units": "1/nm"})},
    )
    back = read_nxcansas(write_nxcansas(tmp_path / "gi.h5", img))
    assert back["intensity"].dims == ("q_oop", "q_ip")
    for name in ("intensity", "sigma", "mask"):
        np.testing.assert_array_equal(back[name].values, img[name].values)
    np.testing.assert_array_equal(back["q_ip"].values, qx)
    assert back["q_ip"].attrs["units"] == "1/nm"
    with h5py.File(tmp_path / "gi.h5") as f:
        g = f["sasentry01/sasdata"]
        assert g.attrs["I_axes"] == "Q,Q"
        np.testing.assert_array_equal(g["Qx"][0], qx)
        np.testing.assert_array_equal(g["Qy"][:, 0], qy)
    chi = np.arange(-180, 180, 10.0)
    cake = xr.DataArray(rng.random((36, 12)), dims=("chi", "q"), name="intensity",
                        coords={"chi": ("chi", chi, {"units": "deg"}), "q": np.linspace(.1, 1, 12)},
                        attrs={"unit": "q_A^-1"})
    back = read_nxcansas(write_nxcansas(tmp_path / "cake.h5", cake))
    assert back["intensity"].dims == ("chi", "q")
    np.testing.assert_array_equal(back["intensity"].values, cake.values)
    np.testing.assert_array_equal(back["chi"].values, chi)
    with h5py.File(tmp_path / "cake.h5") as f:  # per-pixel Qx = q cos(chi)
        np.testing.assert_allclose(f["sasentry01/sasdata/Qx"][0], cake["q"].values * -1.0)


def test_series_of_2d_maps(tmp_path):
    maps = xr.DataArray(np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4),
                        dims=("time", "qy", "qx"),
                        coords={"time": [0.0, 1.0], "qy": [0.0, 0.1, 0.2],
                                "qx": [0.0, 0.1, 0.2, 0.3]}, attrs={"unit": "q_A^-1"})
    back = read_nxcansas(write_nxcansas(tmp_path / "maps.h5", maps))
    assert back["intensity"].dims == ("time", "qy", "qx")
    np.testing.assert_array_equal(back["intensity"].values, maps.values)
    np.testing.assert_array_equal(back["time"].values, [0.0, 1.0])


@needs_sasdata
def test_sasdata_reads_what_spotkit_writes(tmp_path):
    src = _series(n=3)
    path = write_nxcansas(tmp_path / "series.h5", src, title="anneal", run="9",
                          wavelength_A=1.0)
    theirs = _sasdata_load(path)
    assert len(theirs) == 3
    ours = read_nxcansas_entries(path, q_unit="1/angstrom")
    for ds, data in zip(ours, theirs, strict=True):
        assert data.errors == []
        assert data.run == ["9"]
        assert data.sample.name == "P3HT:PCBM"
        assert float(data.source.wavelength) == 1.0
        _assert_same_as_sasdata(ds, data)
    qx, qy = np.linspace(-0.1, 0.1, 8), np.linspace(-0.05, 0.15, 6)
    img = xr.DataArray(np.random.default_rng(1).random((6, 8)), dims=("qy", "qx"),
                       coords={"qy": qy, "qx": qx}, attrs={"unit": "q_A^-1"})
    path2 = write_nxcansas(tmp_path / "img.h5", img)
    (data2d,) = _sasdata_load(path2)
    _assert_same_as_sasdata(read_nxcansas(path2), data2d)


def test_unit_conversion(tmp_path):
    q = np.linspace(0.1, 2.0, 10)
    path = write_nxcansas(tmp_path / "nm.h5", (q, q**-2, None, q * 0.01), q_unit="nm^-1")
    ang = read_nxcansas(path, q_unit="1/angstrom")
    np.testing.assert_allclose(ang["q"].values, q / 10, rtol=1e-15)
    np.testing.assert_allclose(ang["dq"].values, q * 0.001, rtol=1e-15)
    assert ang["q"].attrs["units"] == "1/angstrom"
    assert ang.attrs["unit"] == "q_A^-1"
    nm = read_nxcansas(path, q_unit="1/nm")
    np.testing.assert_array_equal(nm["q"].values, q)
    assert "sigma" not in nm
    with pytest.raises(ValueError, match="unknown q_unit 'furlong'"):
        read_nxcansas(path, q_unit="furlong")
    both = read_nxcansas(write_nxcansas(tmp_path / "2d.h5", xr.DataArray(
        np.ones((2, 3)), dims=("qy", "qx"), coords={"qy": [0.0, 1.0], "qx": [0.0, 1.0, 2.0]},
        attrs={"unit": "q_A^-1"})), q_unit="1/nm")
    np.testing.assert_array_equal(both["qx"].values, [0.0, 10.0, 20.0])


# -- safety -----------------------------------------------------------------------------


def test_overwrite_is_refused(tmp_path):
    path = write_nxcansas(tmp_path / "a.h5", _series(n=1))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_nxcansas(path, _series(n=2))
    assert len(read_nxcansas_entries(path)) == 1
    write_nxcansas(path, _series(n=2), overwrite=True)
    assert len(read_nxcansas_entries(path)) == 2


@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, existing):
    path = tmp_path / "out.h5"
    if existing:
        write_nxcansas(path, _series(n=1), title="old")
    before = path.read_bytes() if existing else None
    real = _nxcansas_write._write_sasdata
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(_nxcansas_write, "_write_sasdata", crash_on_third)
    with pytest.raises(OSError, match="disk full"):
        write_nxcansas(path, _series(n=5), overwrite=True)
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out.h5"] if existing else [])
    if existing:
        assert path.read_bytes() == before
        assert read_nxcansas(path).attrs["title"] == "old"


# -- tolerance for real-world files and strictness on wrong content --------------------


@pytest.fixture
def good_file(tmp_path):
    q = np.linspace(0.1, 1.0, 12)
    return write_nxcansas(tmp_path / "good.h5", (q, 1 / q, 0.1 / q, q * 0.05), q_unit="1/nm")


def test_tolerates_bytes_attributes_and_old_layouts(good_file):
    with h5py.File(good_file, "r+") as f:
        g = f["sasentry01/sasdata"]
        g.attrs["I_axes"] = np.array([b"Q"])
        g.attrs["Q_indices"] = "0"
        g.attrs["signal"] = np.bytes_(b"I")
        g["Q"].attrs["units"] = np.bytes_(b"1/nm")
        del g["Q"].attrs["units"]
        g["Q"].attrs["unit"] = "nm^-1"  # the pre-v3 Mantid spelling
        del g.attrs["canSAS_class"]
        g.attrs["NX_class"] = "SASdata"
        e = f["sasentry01"]
        del e.attrs["canSAS_class"]
        e.attrs["NX_class"] = np.bytes_(b"SASentry")
        del g["Idev"]
        f.create_group("sasentry01/extra_group")
    ds = read_nxcansas(good_file, q_unit="1/angstrom")
    assert "sigma" not in ds  # named uncertainties are missing: read without them
    np.testing.assert_allclose(ds["q"].values, np.linspace(0.01, 0.1, 12))


def _break(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda f: f["sasentry01/sasdata"].__delitem__("I"), "/sasentry01/sasdata/I",
         "no intensity field 'I'"),
        (lambda f: f["sasentry01/sasdata"].__delitem__("Q"), "/sasentry01/sasdata/Q",
         "no Q field 'Q'"),
        (lambda f: (f["sasentry01/sasdata"].__delitem__("Q"),
                    f["sasentry01/sasdata"].create_dataset("Q", data=np.arange(5.0))),
         "/sasentry01/sasdata/Q", "Q has shape (5,) but I has (12,)"),
        (lambda f: (f["sasentry01/sasdata"].__delitem__("Idev"),
                    f["sasentry01/sasdata"].create_dataset("Idev", data=np.ones(3))),
         "/sasentry01/sasdata/Idev", "uncertainties have shape (3,)"),
        (lambda f: f["sasentry01/sasdata"].attrs.__setitem__("I_axes", "Q,Q"),
         "/sasentry01/sasdata/I", "names 2 axes"),
        (lambda f: f["sasentry01"].__delitem__("sasdata"), "/sasentry01",
         "has no SASdata group"),
        (lambda f: f.move("sasentry01", "entry/inner_but_plain_group"), "/",
         "is not an NXcanSAS file"),
    ],
    ids=["no-I", "no-Q", "Q-shape", "Idev-shape", "I_axes", "no-SASdata", "not-nxcansas"],
)
def test_wrong_content_names_file_and_field(good_file, edit, field, words):
    if words == "is not an NXcanSAS file":
        _break(good_file, lambda f: f["sasentry01"].attrs.__delitem__("canSAS_class"))
        _break(good_file, lambda f: f["sasentry01"].attrs.__setitem__("NX_class", "NXcollection"))
    _break(good_file, edit)
    with pytest.raises(InputFileError) as info:
        read_nxcansas(good_file)
    err = info.value
    assert err.path == good_file
    assert err.field == field
    assert words in str(err)
    assert str(good_file) in str(err)
    assert err.hint


def test_raw_saxs_file_is_not_nxcansas(twin_dir):
    with pytest.raises(InputFileError, match="not an NXcanSAS file") as info:
        read_nxcansas(twin_dir / "series.h5")
    assert "open_saxs" in info.value.hint


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_nxcansas(tmp_path / "nope.h5")


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "words"),
    [
        ((np.arange(3.0), np.ones(3)), {}, ValueError, "pass q_unit"),
        ((np.arange(3.0), np.ones(4)), {"q_unit": "1/nm"}, ValueError, "n_q=3"),
        ((np.arange(3.0), np.ones(3), np.ones(2)), {"q_unit": "1/nm"}, ValueError, "dI has shape"),
        ("not data", {}, TypeError, "xarray Dataset or DataArray"),
        (xr.Dataset({"counts": ("q", np.ones(3))}), {}, ValueError, "no 'intensity'"),
        (xr.DataArray(np.ones(3), dims="q", coords={"q": [1.0, 2, 3]},
                      attrs={"unit": "2th_deg"}), {"q_unit": "1/nm"}, ValueError, "2theta"),
        (xr.DataArray(np.ones(3), dims="q", coords={"q": [1.0, 2, 3]}), {}, ValueError,
         "unit of axis 'q' is unknown"),
        (xr.DataArray(np.ones((2, 2, 3)), dims=("a", "b", "q")), {"q_unit": "1/nm"},
         ValueError, "series_dim"),
    ],
    ids=["no-unit", "I-shape", "dI-shape", "type", "no-intensity", "2theta", "unknown-unit",
         "ambiguous-dims"],
)
def test_writer_rejects_bad_input(tmp_path, data, kwargs, error, words):
    with pytest.raises(error, match=words):
        write_nxcansas(tmp_path / "x.h5", data, **kwargs)
    assert not list(tmp_path.iterdir())
