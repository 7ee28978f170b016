"""The slice viewer: lazy plane reads (HDF5, zarr, pyramid), orientation, units, contrast."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from spotkit.errors import InputFileError
from spotkit.io import open_volume, read_pyramid, write_pyramid
from spotkit.widgets._slice_viewer_model import SliceViewerModel, to_uint8

SHAPE = (12, 20, 28)


def _volume() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)


class CountingFile(io.RawIOBase):
    """A file object that counts the bytes h5py reads through it."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.bytes_read = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        return self.f.seek(offset, whence)

    def tell(self):
        return self.f.tell()

    def readinto(self, b):
        n = self.f.readinto(b)
        self.bytes_read += n
        return n

    def close(self):
        self.f.close()
        super().close()


@pytest.fixture
def h5_volume(tmp_path):
    path = tmp_path / "recon.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("recon", data=_volume(), chunks=(4, 4, 4))
        d.attrs["units"] = "1/cm"
        coord = np.arange(SHAPE[1]) * 0.65
        f.create_dataset("x", data=np.arange(SHAPE[2]) * 0.65).attrs["units"] = "um"
        f.create_dataset("y", data=coord).attrs["units"] = "um"
        f.create_dataset("z", data=np.arange(SHAPE[0]) * 1.3).attrs["units"] = "um"
        d.dims[0].label, d.dims[1].label, d.dims[2].label = "z", "y", "x"
    return path


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_planes_agree_with_numpy_indexing(h5_volume, axis):
    vol = _volume()
    with open_volume(h5_volume) as v:
        for i in (0, 3, SHAPE[axis] - 1):
            expect = vol[(slice(None),) * axis + (i,)]
            np.testing.assert_array_equal(v.read_plane(axis, i), expect)
        region = v.read_plane(axis, 2, region=(1, 5, 2, 9))
        np.testing.assert_array_equal(region, vol[(slice(None),) * axis + (2,)][1:5, 2:9])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_plane_reads_only_its_chunks(h5_volume, tmp_path, axis):
    """Counted twice: the reader's chunk count, and independently the bytes h5py pulls from
    the file (a plane across 8^3 chunks reads one 8-deep slab: 1/8 of the volume)."""
    with open_volume(h5_volume) as v:
        v.read_plane(axis, 5)
        others = [-(-SHAPE[d] // 4) for d in range(3) if d != axis]
        assert v.chunks_read == others[0] * others[1]
    vol = np.random.default_rng(0).random((64, 64, 64)).astype(np.float32)
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=vol, chunks=(8, 8, 8))
    counter = CountingFile(path)
    with h5py.File(counter, "r", rdcc_nbytes=0) as f:
        from spotkit.io._volume_levels import H5Level

        before = counter.bytes_read
        plane = H5Level(f["v"]).read_plane(axis, 37, slice(0, 64), slice(0, 64))
        plane_read = counter.bytes_read - before
    counter.close()
    np.testing.assert_array_equal(plane, vol[(slice(None),) * axis + (37,)])
    assert plane.nbytes <= plane_read < vol.nbytes / 4  # at most the slab, plus the index


def test_concurrent_chunk_reads_match_hdf5_with_gaps_and_regions(tmp_path):
    """The fast path (chunk offsets, pread from threads) against h5py's own reading, with
    chunks never written (fill value) and regions off the chunk grid."""
    vol = np.random.default_rng(3).integers(0, 999, (40, 70, 90)).astype(np.uint16)
    path = tmp_path / "gaps.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", shape=vol.shape, dtype="u2", chunks=(8, 16, 16),
                             fillvalue=5)
        d[:, :40] = vol[:, :40]  # rows 48.. of every plane across z never written
    expect = vol.copy()
    expect[:, 48:] = 5
    expect[:, 40:48] = 0
    with h5py.File(path, "a") as f:
        f["v"][:, 40:48] = 0
    with open_volume(path) as v:
        level = v.levels[0]
        assert level._chunk_index() is not None
        for axis in range(3):
            for i in (0, 13, vol.shape[axis] - 1):
                np.testing.assert_array_equal(v.read_plane(axis, i),
                                              expect[(slice(None),) * axis + (i,)])
            got = v.read_plane(axis, 7, region=(3, 37, 5, 39))
            np.testing.assert_array_equal(got, expect[(slice(None),) * axis + (7,)][3:37, 5:39])
    assert level._index.fd == -1  # closed with the volume


def test_units_from_the_files_coordinates(h5_volume):
    with open_volume(h5_volume) as v:
        assert [a.name for a in v.axes] == ["z", "y", "x"]
        assert v.voxel_size == pytest.approx((1.3, 0.65, 0.65))
        assert v.axes[0].units == "µm"
        assert v.value_units == "1/cm"
    model = SliceViewerModel(h5_volume, axis=1, display=64)
    assert model.describe(1) == "y = 6.50 µm (10 / 20)"
    assert model.extent(1) == pytest.approx((12 * 1.3, 28 * 0.65))
    out = model.render(1)
    # the image keeps the physical aspect (z voxels are twice as tall)
    assert out.size[0] / out.size[1] == pytest.approx(12 * 1.3 / (28 * 0.65), rel=0.05)
    assert out.units == "µm"
    model.close()


def test_units_from_a_pixel_size_attribute_and_the_scan(tmp_path):
    from spotkit.sim import simulate_tomo_scan

    truth = simulate_tomo_scan(tmp_path / "scan.h5", shape=(31, 4, 32), seed=0)
    with open_volume(truth.path) as scan:
        assert [a.name for a in scan.axes] == ["angle", "row", "column"]
        assert scan.axes[0].units == "deg"
        assert scan.axes[2].units == "µm"
        assert scan.axes[2].spacing == pytest.approx(0.65)
        with h5py.File(truth.path) as f:
            np.testing.assert_array_equal(scan.read_plane(1, 2), f["exchange/data"][:, 2, :])
        assert scan.axes[0].describe(1).startswith("angle = 5.81 deg")


def test_pyramid_levels_and_level_choice(h5_volume, tmp_path):
    side = write_pyramid(h5_volume, min_size=8, chunk=4)
    levels, meta = read_pyramid(h5_volume)
    assert [lv.shape for lv in levels] == [(6, 10, 14), (3, 5, 7)]
    assert meta["multiscales"][0]["axes"][0]["unit"] == "micrometer"
    vol = _volume()
    expect = vol.reshape(6, 2, 10, 2, 14, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(levels[0][()], expect)
    with open_volume(h5_volume) as v:
        assert len(v.levels) == 3
        np.testing.assert_allclose(v.read_plane(0, 5, level=1), expect[2])
        assert v.choose_level(0, display=10) == 1       # 10 x 14 still fills 10 pixels
        assert v.choose_level(0, display=20) == 0
        assert v.choose_level(0, display=10, region=(0, 10, 0, 14)) == 0  # zoomed in
    with pytest.raises(FileExistsError):
        write_pyramid(h5_volume, min_size=4)
    # a changed volume makes its pyramid stale: ignored, not shown wrong
    with h5py.File(h5_volume, "a") as f:
        f["recon"][0, 0, 0] = -1
        f.attrs["touched"] = 1
    assert side.exists()
    assert read_pyramid(h5_volume) is None


def test_zarr_volume_and_pyramid(tmp_path):
    zarr = pytest.importorskip("zarr")
    path = tmp_path / "vol.zarr"
    z = zarr.create_array(str(path), shape=SHAPE, chunks=(4, 4, 4), dtype="f4")
    z[:] = _volume()
    z.attrs["voxel_size_um"] = 2.0
    write_pyramid(path, min_size=8, chunk=4)
    with open_volume(path) as v:
        assert v.voxel_size == (2.0, 2.0, 2.0)
        assert len(v.levels) == 3
        np.testing.assert_array_equal(v.read_plane(2, 7), _volume()[:, :, 7])
        assert v.chunks_read == 3 * 5
    # an OME-NGFF multiscale group opens with its levels and scales
    ngff = tmp_path / "ngff.zarr"
    g = zarr.open_group(str(ngff), mode="w")
    g.create_array("0", shape=SHAPE, chunks=(4, 4, 4), dtype="f4")[:] = _volume()
    g.create_array("1", shape=(6, 10, 14), chunks=(4, 4, 4), dtype="f4")[:] = 1
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [0.5, 0.5, 0.5]}]},
            {"path": "1", "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]
    with open_volume(ngff) as v:
        assert len(v.levels) == 2
        assert v.axes[1].spacing == 0.5
        assert v.axes[1].units == "µm"


def test_contrast_auto_and_manual():
    vol = np.zeros((4, 50, 50), np.float32)
    vol[:, :, 25:] = 10.0
    vol[2, 0, 0] = 1e6  # one hot pixel must not set the range
    model = SliceViewerModel(vol, cursor=(2, 25, 25), display=64, percentiles=(1, 99))
    assert (model.vmin, model.vmax) == pytest.approx((0.0, 10.0))
    model.set_contrast(0, 20)
    assert to_uint8(model.plane(), model.vmin, model.vmax)[0, 30] == 128
    with pytest.raises(ValueError, match="vmin < vmax"):
        model.set_contrast(5, 5)
    assert model.auto_contrast(apply=True) == pytest.approx((0.0, 10.0))
    with pytest.raises(ValueError, match="colour map"):
        model.set_cmap("no-such-map")
    model.set_cmap("viridis")
    from PIL import Image

    img = Image.open(io.BytesIO(model.render().data)).convert("RGB")
    assert img.getpixel((40, 10)) == (253, 231, 37)  # viridis' top colour at vmax


def test_image_is_sized_to_the_display_and_zoom_reads_full_resolution(tmp_path):
    vol = np.random.default_rng(1).random((64, 256, 256)).astype(np.float32)
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=vol, chunks=(16, 16, 16))
    write_pyramid(path, min_size=32, chunk=16)
    model = SliceViewerModel(path, display=100)
    coarse, fine = model.levels(0)
    assert (coarse, fine) == (3, 1)  # level 1 is 128 px (>= 100), level 2 only 64
    out = model.render(0)
    assert max(out.size) == 100
    assert out.read_shape == (128, 128)
    assert model.render(0, coarse=True).read_shape == (32, 32)
    region = model.zoom(4, axis=0)
    assert region == (96, 160, 96, 160)
    assert model.levels(0)[1] == 0
    before = model.volume.chunks_read
    out = model.render(0)
    assert out.read_shape == (64, 64)
    assert model.volume.chunks_read - before == 16
    model.close()


def test_bad_input_names_the_problem(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        open_volume(tmp_path / "none.h5")
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros((2, 2, 2))
        f["b"] = np.zeros((2, 2, 2))
    with pytest.raises(InputFileError, match="key="):
        open_volume(path)
    with pytest.raises(ValueError, match="3-D"):
        open_volume(np.zeros((3, 3)))
    model = SliceViewerModel(np.zeros((3, 4, 5)))
    with pytest.raises(IndexError, match="outside"):
        model.set_index(9, axis=0)
    with pytest.raises(ValueError, match="axis"):
        model.set_axis(3)


def test_view_moves_the_cursor_and_shows_images():
    pytest.importorskip("ipywidgets")
    from spotkit.widgets._slice_viewer import SliceViewer

    vol = np.random.default_rng(0).random((10, 12, 14)).astype(np.float32)
    viewer = SliceViewer(vol, background=False, display=32)
    viewer.sliders[2].value = 5
    assert viewer.model.cursor == [5, 6, 5]
    assert viewer.model.axis == 2
    assert bytes(viewer.images[2].value[:4]) == b"\x89PNG"
    assert "x = 5 px" in viewer.titles[2].value
    viewer.cmap.value = "magma"
    viewer.zoom.value = 2
    assert viewer.model.regions[0] == (3, 9, 1, 9)  # around the cursor (y 6, x 5)
    lo, hi = viewer.auto_contrast()
    assert viewer.contrast.value == pytest.approx((lo, hi))
    viewer.close()


def test_costly_planes_wait_for_a_click_and_a_pyramid_makes_them_cheap(tmp_path):
    """Per-slice chunks (as run_tomo writes): a y or x plane would read the whole volume."""
    pytest.importorskip("ipywidgets")
    from spotkit.widgets._slice_viewer import SliceViewer

    vol = np.random.default_rng(2).random((32, 96, 96)).astype(np.float32)
    path = tmp_path / "slices.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("recon", data=vol, chunks=(1, 96, 96))
    viewer = SliceViewer(path, background=False, display=48, max_read_bytes=200_000)
    m = viewer.model
    assert m.read_bytes(0) == 96 * 96 * 4
    assert m.read_bytes(1, coarse=True) == vol.nbytes  # every chunk
    assert viewer.notes[1].layout.display == ""  # not read: the pane says why
    assert "would read 1.2 MB" in viewer.notes[1].value
    assert "build the pyramid" in viewer.notes[1].value
    assert 1 not in m.last
    assert viewer.images[0].layout.width == "48px"
    viewer.read_anyway(1)
    np.testing.assert_array_equal(m.plane(1), vol[:, 48, :])
    assert 1 in m.last
    viewer.build_pyramid()  # spotkit.io.write_pyramid, then the planes from it
    assert len(m.volume.levels) == 2
    assert m.read_bytes(2, coarse=True) < 200_000
    assert viewer.notes[2].layout.display == "none"
    assert viewer.pyramid_button.layout.display == "none"
    viewer.close()
    ro = SliceViewer(np.zeros((4, 4, 4)), background=False, readonly=True)
    assert ro.pyramid_button.layout.display == "none"
    with pytest.raises(ValueError, match="cannot write a pyramid"):
        ro.build_pyramid()


def test_background_view_shows_the_coarse_level_then_the_fine_one(tmp_path):
    pytest.importorskip("ipywidgets")
    from spotkit.widgets._slice_viewer import SliceViewer

    vol = np.random.default_rng(4).random((32, 256, 256)).astype(np.float32)
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=vol, chunks=(16, 16, 16))
    write_pyramid(path, min_size=16, chunk=16)
    viewer = SliceViewer(path, display=100)  # background=True: the fine level in a thread
    assert viewer.model.levels(0) == (3, 1)
    viewer.sliders[0].value = 9
    viewer._executor.shutdown(wait=True)  # the fine image is in place once the thread ends
    assert viewer.model.last[0].level == 1
    assert viewer.model.last[0].index == 9
    assert "level 1" in viewer.status.value
    viewer.close()
