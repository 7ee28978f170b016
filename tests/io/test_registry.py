"""The reader registry: each reader's sniff / metadata / open / completeness; plugins; bad input."""

from __future__ import annotations

import json
import shutil
import tomllib
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import fabio
import fabio.cbfimage
import h5py
import numpy as np
import pytest

from spotkit import io
from spotkit.errors import InputFileError
from spotkit.io import _registry
from spotkit.sim import NXTOMO_VARIANTS, write_frame_folder, write_nxtomo

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def formats(twin_dir, tmp_path_factory):
    """NXtomo files (each variant) and frame folders (each format) made from the twin."""
    root = tmp_path_factory.mktemp("formats")
    out = {v: write_nxtomo(root / f"{v}.nx", twin_dir / "scan.h5", variant=v)
           for v in NXTOMO_VARIANTS}
    for fmt in ("cbf", "edf", "tiff"):
        out[fmt] = write_frame_folder(root / f"run_{fmt}", twin_dir / "series.h5", fmt=fmt)
    return out


@pytest.fixture
def cbf_folder(twin_dir, tmp_path):
    """A private CBF folder a test may break."""
    return write_frame_folder(tmp_path / "run", twin_dir / "series.h5")


# -- the registry -------------------------------------------------------------------------


def test_builtin_readers_are_listed_and_named():
    names = io.list_readers()
    assert names[:1] == ["nxtomo"]  # the most specific layout is asked first
    assert set(names) >= {"nxtomo", "dxchange", "nexus-saxs", "frame-folder"}
    for name in names:
        reader = io.get_reader(name)
        assert reader.name == name
        assert reader.kind in ("tomo/raw", "saxs/raw")
        assert reader.layout
        assert name in io.supported_layouts()
    assert io.get_reader("frame-folder").folder
    with pytest.raises(ValueError, match=r"unknown reader 'nope'.*nxtomo"):
        io.get_reader("nope")


def test_pyproject_lists_the_builtins_in_the_entry_point_group():
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert doc["project"]["entry-points"]["spotkit.readers"] == _registry.BUILTIN_READERS


class _TextReader(io.Reader):
    """A third-party layout: a text file whose first line is 'SPOTTEXT'."""

    name = "spottext"
    kind = "saxs/raw"
    layout = "SPOTTEXT files"
    suffixes = (".spt",)

    def sniff(self, path):
        return path.is_file() and path.read_bytes()[:8] == b"SPOTTEXT"

    def read_metadata(self, path):
        raise InputFileError(path, "the test reader reads no metadata")

    def open(self, path, *, chunks=None):
        return "opened " + path.name


class _Broken:
    def __init__(self):
        raise RuntimeError("boom")


@pytest.fixture
def plugins(monkeypatch):
    """Make entry_points() return the given plugin entry points (and the built-ins)."""

    def install(*eps):
        own = [EntryPoint(name, value, _registry.ENTRY_POINT_GROUP)
               for name, value in _registry.BUILTIN_READERS.items()]
        monkeypatch.setattr(_registry, "entry_points",
                            lambda group: [*own, *eps] if group == _registry.ENTRY_POINT_GROUP
                            else [])
        _registry._plugins.cache_clear()

    yield install
    _registry._plugins.cache_clear()


def test_a_plugin_comes_through_the_entry_point_group(plugins, tmp_path):
    plugins(EntryPoint("spottext", f"{__name__}:_TextReader", _registry.ENTRY_POINT_GROUP))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # spotkit's own entries are not "reserved name" clashes
        assert "spottext" in io.list_readers()
    f = tmp_path / "a.spt"
    f.write_bytes(b"SPOTTEXT\n1 2 3\n")
    assert io.find_reader(f).name == "spottext"
    assert io.detect_kind(f) == "saxs/raw"
    assert io.open_saxs(f) == "opened a.spt"
    kind, problem = io.check_complete(f)
    assert kind is None
    assert "reads no metadata" in problem
    assert ".spt" in _registry.watched_suffixes()


def test_a_broken_or_clashing_plugin_warns_and_is_skipped(plugins):
    plugins(EntryPoint("broken", f"{__name__}:_Broken", _registry.ENTRY_POINT_GROUP),
            EntryPoint("nxtomo", f"{__name__}:_TextReader", _registry.ENTRY_POINT_GROUP))
    with pytest.warns(RuntimeWarning) as record:
        names = io.list_readers()
    text = " ".join(str(w.message) for w in record)
    assert "cannot load reader 'broken'" in text
    assert "boom" in text
    assert "reserved name 'nxtomo'" in text
    assert "broken" not in names
    assert io.get_reader("nxtomo").name == "nxtomo"


def test_register_reader_at_run_time(tmp_path):
    reader = _TextReader()
    io.register_reader(reader)
    try:
        assert io.get_reader("spottext") is reader
        with pytest.raises(ValueError, match="already registered"):
            io.register_reader(_TextReader())
        io.register_reader(_TextReader(), replace=True)
        with pytest.raises(TypeError):
            io.register_reader(_TextReader)
        bad = _TextReader()
        bad.name = "dxchange"
        with pytest.raises(ValueError, match="built-in"):
            io.register_reader(bad)
    finally:
        _registry._unregister("spottext")
    assert "spottext" not in io.list_readers()


# -- each reader ----------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "reader", "kind", "roles"), [
    ("scan.h5", "dxchange", "tomo/raw", ["data"]),
    ("esrf", "nxtomo", "tomo/raw", ["data"]),
    ("diamond", "nxtomo", "tomo/raw", ["data"]),
    ("psi", "nxtomo", "tomo/raw", ["data"]),
    ("series.h5", "nexus-saxs", "saxs/raw", ["data", "geometry"]),
    ("cbf", "frame-folder", "saxs/raw", ["data", "geometry", "metadata"]),
    ("edf", "frame-folder", "saxs/raw", ["data", "geometry", "metadata"]),
    ("tiff", "frame-folder", "saxs/raw", ["data", "geometry", "metadata"]),
])
def test_each_reader_sniffs_reads_and_opens(twin_dir, formats, source, reader, kind, roles):
    path = formats.get(source) or twin_dir / source
    assert io.find_reader(path).name == reader
    assert [r.name for r in map(io.get_reader, io.list_readers()) if r.sniff(path)][:1] == [reader]
    assert io.detect_kind(path) == kind
    info = io.read_metadata(path)
    assert info.kind == kind
    assert [role for _, role in info.files] == roles
    assert info.files[0][0] == Path(path).absolute()
    assert all(Path(p).exists() for p, _ in info.files)
    assert io.check_complete(path) == (kind, None)
    if kind == "tomo/raw":
        ds, ref = io.open_tomo(path), io.open_tomo(twin_dir / "scan.h5")
        for var in ("data", "flats", "darks"):
            assert ds[var].chunks is not None  # lazy
            np.testing.assert_array_equal(ds[var].values, ref[var].values)
        np.testing.assert_allclose(ds.theta.values, ref.theta.values)
        assert ds.attrs["sample"] == ref.attrs["sample"] == info.sample
        assert ds.attrs["n_angles"] == ref.attrs["n_angles"]
        assert info.metadata["energy_kev"] == ref.attrs["energy_kev"]
        assert info.metadata["pixel_size_um"] == pytest.approx(ref.attrs["pixel_size_um"])
    else:
        frames, ref = io.open_saxs(path), io.open_saxs(twin_dir / "series.h5")
        assert frames.dims == ("frame", "y", "x")
        assert frames.chunks is not None
        np.testing.assert_array_equal(frames.values, ref.values)
        np.testing.assert_allclose(frames.time.values, ref.time.values)
        assert frames.attrs["poni_path"] == str(dict((r, p) for p, r in info.files)["geometry"])
        assert (frames.attrs["beamline"], frames.attrs["sample"]) == (
            ref.attrs["beamline"], ref.attrs["sample"])
        assert info.proposal == ref.attrs["proposal"]
        assert info.start_time.isoformat() == ref.attrs["start_time"]


def test_nxtomo_leaves_alignment_projections_out_and_reads_radians(formats, twin_dir, tmp_path):
    with h5py.File(formats["esrf"]) as f:
        control = f["entry0000/instrument/detector/image_key_control"][()]
        keys = f["entry0000/instrument/detector/image_key"][()]
    assert control[-1] == -1
    assert keys[-1] == 0
    ref = io.open_tomo(twin_dir / "scan.h5")
    assert io.open_tomo(formats["esrf"]).sizes["angle"] == ref.sizes["angle"]
    path = shutil.copy(formats["psi"], tmp_path / "rad.nx")
    with h5py.File(path, "r+") as f:
        rot = f["entry/sample/rotation_angle"]
        rot[...] = np.deg2rad(rot[()])
        rot.attrs["units"] = "rad"
    np.testing.assert_allclose(io.open_tomo(path).theta.values, ref.theta.values)


def test_open_saxs_on_a_tomo_folder_or_file_says_which_opener(formats):
    with pytest.raises(InputFileError, match=r"tomo/raw dataset .*open_tomo"):
        io.open_saxs(formats["diamond"])
    with pytest.raises(InputFileError, match=r"saxs/raw dataset .*open_saxs"):
        io.open_tomo(formats["cbf"])


def test_cbf_written_by_fabio_round_trips(tmp_path):
    data = np.arange(-2, 30 * 20 - 2, dtype=np.int32).reshape(30, 20)
    data[3, 4] = 1_000_000  # beyond the byte-offset's one- and two-byte steps
    path = tmp_path / "f_00001.cbf"
    fabio.cbfimage.CbfImage(data=data).write(str(path))
    back = fabio.open(str(path))
    assert type(back).__name__ == "CbfImage"
    np.testing.assert_array_equal(back.data, data)
    assert back.data.dtype == np.int32


def test_a_measured_detector_image_through_a_cbf_folder(tmp_path):
    """sasdata ships a measured 2-D SAXS image (BAM MOUSE, Eiger 1M shape 1065 x 1030)."""
    import sasdata

    measured = Path(sasdata.__file__).parent / "example_data" / "2d_data" / "BAM_2D.h5"
    with h5py.File(measured) as f:
        intensity = f["sasentry01/data/I"][()]
        masked = f["sasentry01/data/Imask"][()]
    assert intensity.shape == (1065, 1030)
    # measured intensities (background-subtracted, so some < 0) as counts; -1 marks the mask
    counts = np.where(masked, -1, np.clip(np.rint(np.nan_to_num(intensity) * 1e3), 0, None))
    counts = counts.astype(np.int32)
    folder = tmp_path / "bam"
    folder.mkdir()
    for k, scale in enumerate((1, 2)):
        frame = np.where(counts < 0, -1, counts * scale).astype(np.int32)
        fabio.cbfimage.CbfImage(data=frame).write(str(folder / f"bam_{k:04d}.cbf"))
    import pyFAI.detectors
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    ai = AzimuthalIntegrator(dist=2.0, poni1=0.04, poni2=0.04, wavelength=1.54e-10,
                             detector=pyFAI.detectors.detector_factory("Eiger1M"))
    ai.save(str(folder / "mouse.poni"))
    (folder / "metadata.json").write_text(json.dumps(
        {"beamline": "MOUSE", "sample": "BAM reference", "proposal": "sasdata", "n_frames": 2,
         "start_time": "2019-01-01T00:00:00+00:00", "frame_time_s": 600}))
    assert io.check_complete(folder) == ("saxs/raw", None)
    frames = io.open_saxs(folder)
    assert frames.shape == (2, 1065, 1030)
    np.testing.assert_array_equal(frames[0].values, counts)
    np.testing.assert_array_equal(frames.time.values, [0, 600])
    assert (frames[1].values[~masked] == 2 * counts[~masked]).all()
    assert io.read_metadata(folder).metadata["n_frames_expected"] == 2


def test_a_yaml_sidecar_and_a_poni_named_outside_the_folder(twin_dir, tmp_path):
    folder = write_frame_folder(tmp_path / "run", twin_dir / "series.h5", sidecar="yaml")
    calib = tmp_path / "calib"
    calib.mkdir()
    shutil.move(folder / "series.poni", calib / "pilatus.poni")
    text = (folder / "metadata.yaml").read_text()
    (folder / "metadata.yaml").write_text(text + "poni: ../calib/pilatus.poni\n")
    info = io.read_metadata(folder)
    assert dict((r, p) for p, r in info.files)["geometry"] == calib / "pilatus.poni"
    assert info.metadata["n_frames_expected"] == 5


def test_a_folder_with_hdf5_files_is_not_a_frame_folder(twin_dir, cbf_folder):
    assert io.find_reader(cbf_folder).name == "frame-folder"
    shutil.copy(twin_dir / "scan.h5", cbf_folder / "scan.h5")
    assert not io.get_reader("frame-folder").sniff(cbf_folder)
    assert io.find_reader(cbf_folder / "scan.h5").name == "dxchange"


def test_an_unfinished_folder_is_not_complete(twin_dir, tmp_path):
    folder = write_frame_folder(tmp_path / "run", twin_dir / "series.h5", n_written=3)
    kind, problem = io.check_complete(folder)
    assert kind is None
    assert "3 of 5 frames" in problem
    assert io.read_metadata(folder).metadata["n_frames"] == 3  # readable meanwhile


# -- bad input ------------------------------------------------------------------------------


def test_truncated_nxtomo_names_file_and_field(formats, tmp_path):
    path = shutil.copy(formats["esrf"], tmp_path / "cut.nx")
    with h5py.File(path, "r+") as f:
        rot = f["entry0000/sample/rotation_angle"][()]
        del f["entry0000/sample/rotation_angle"]
        f["entry0000/sample/rotation_angle"] = rot[:-5]
    with pytest.raises(InputFileError, match=r"rotation angles but .* detector frames") as info:
        io.read_metadata(path)
    assert info.value.path == path
    assert info.value.field == "/entry0000/sample/rotation_angle"
    assert io.check_complete(path)[0] is None


def test_byte_truncated_nxtomo_says_truncated(formats, tmp_path):
    blob = Path(formats["esrf"]).read_bytes()
    path = tmp_path / "half.nx"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputFileError, match="truncated") as info:
        io.open_tomo(path)
    assert info.value.path == path
    kind, problem = io.check_complete(path)
    assert kind is None
    assert "half.nx" in problem


def test_nxtomo_without_image_keys_or_darks(formats, tmp_path):
    path = shutil.copy(formats["psi"], tmp_path / "nokey.nx")
    with h5py.File(path, "r+") as f:
        del f["entry/instrument/detector/image_key"]
        del f["entry/data/image_key"]
    with pytest.raises(InputFileError, match="no image keys") as info:
        io.read_metadata(path)
    assert info.value.field == "/entry/instrument/detector/image_key"
    path = shutil.copy(formats["psi"], tmp_path / "nodark.nx")
    with h5py.File(path, "r+") as f:
        keys = f["entry/instrument/detector/image_key"]
        keys[...] = np.where(keys[()] == 2, 3, keys[()])  # darks marked invalid
    with pytest.raises(InputFileError, match="no dark fields") as info:
        io.open_tomo(path)
    assert info.value.field == "/entry/instrument/detector/image_key"


def test_folder_with_mixed_frame_sizes(cbf_folder):
    frames = sorted(cbf_folder.glob("*.cbf"))
    stray = np.zeros((16, 16), dtype=np.int32)
    fabio.cbfimage.CbfImage(data=stray).write(str(frames[-1]))  # the last frame
    with pytest.raises(InputFileError, match="one frame shape") as info:
        io.read_metadata(cbf_folder)
    assert info.value.path == frames[-1]
    assert info.value.field == "frame shape"
    fabio.cbfimage.CbfImage(data=stray).write(str(frames[2]))  # and one in the middle
    shutil.copy(frames[0], frames[-1])
    with pytest.raises(InputFileError, match="16 x 16") as info:
        io.open_saxs(cbf_folder)
    assert info.value.path == frames[2]


def test_folder_without_poni(cbf_folder):
    (cbf_folder / "series.poni").unlink()
    with pytest.raises(InputFileError, match="no detector geometry") as info:
        io.read_metadata(cbf_folder)
    assert info.value.path == cbf_folder
    assert info.value.field == "poni"
    kind, problem = io.check_complete(cbf_folder)
    assert kind is None
    assert "poni" in problem


def test_folder_with_two_series_or_a_bad_sidecar(cbf_folder):
    shutil.copy(next(cbf_folder.glob("*.cbf")), cbf_folder / "other_00001.cbf")
    with pytest.raises(InputFileError, match="more than one frame series") as info:
        io.read_metadata(cbf_folder)
    assert info.value.field == "frames"
    assert "other_*.cbf (1)" in str(info.value)
    (cbf_folder / "other_00001.cbf").unlink()
    doc = json.loads((cbf_folder / "metadata.json").read_text())
    (cbf_folder / "metadata.json").write_text(json.dumps({**doc, "n_frames": "many"}))
    with pytest.raises(InputFileError, match="n_frames must be a positive integer") as info:
        io.read_metadata(cbf_folder)
    assert info.value.path == cbf_folder / "metadata.json"
    assert info.value.field == "n_frames"
    (cbf_folder / "metadata.json").write_text("[1, 2")
    with pytest.raises(InputFileError, match="sidecar cannot be read"):
        io.read_metadata(cbf_folder)


def test_unknown_input_names_it_and_lists_the_layouts(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not a scan")
    with pytest.raises(InputFileError, match="not an HDF5 file") as info:
        io.read_metadata(text)
    assert info.value.path == text
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["something/else"] = np.arange(3)
    with pytest.raises(InputFileError, match="layout spotkit does not recognise") as info:
        io.detect_kind(other)
    for name in ("nxtomo", "dxchange", "nexus-saxs", "frame-folder"):
        assert name in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFileError, match="folder in a layout") as info:
        io.open_saxs(empty)
    assert info.value.path == empty
    assert "frame-folder" in str(info.value)
    with pytest.raises(InputFileError, match="does not exist"):
        io.read_metadata(tmp_path / "missing.nx")
    assert io.check_complete(other)[0] is None
