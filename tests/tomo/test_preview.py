"""The fast-preview branch on the twin."""

from __future__ import annotations

import numpy as np
import pytest

from spotkit import tomo
from spotkit.tomo import preview


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    from spotkit.sim import simulate_tomo_scan

    path = tmp_path_factory.mktemp("preview") / "scan.h5"
    truth = simulate_tomo_scan(path, shape=(180, 24, 192), center_offset=7.5, seed=3)
    return path, truth


def test_preview_views_centre_and_png(tmp_path, scan):
    path, truth = scan
    png = tmp_path / "preview.png"
    pv = preview(path, n_slices=3, binning=2, center_method="sinusoid", algorithm="fbp", png=png)
    assert pv["slices"].shape == (3, 96, 96)
    assert pv["radiographs"].shape == (2, 12, 96)
    assert list(pv["view"].values) == pytest.approx([0.0, 90.0], abs=1.0)
    assert abs(pv.attrs["center"] - truth.center) < 1.0   # binned by 2: within one binned pixel
    assert png.exists()
    assert png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the binned slices still show the phantom (in 1/cm)
    row = int(pv["slice"][1])
    ref = truth.phantom_slice(row, n=96 * 2)[::2, ::2]
    corr = np.corrcoef(pv["slices"][1].values.ravel(), ref.ravel())[0, 1]
    assert corr > 0.85


def test_preview_with_given_centre(scan):
    path, truth = scan
    pv = preview(path, n_slices=1, binning=4, center=truth.center, algorithm="fbp")
    assert pv.attrs["center"] == pytest.approx(truth.center)
    assert pv.sizes["slice"] == 1


def test_preview_reports_a_tilted_axis(tmp_path, scan):
    import h5py
    from scipy import ndimage

    path, _ = scan
    pv = preview(path, n_slices=4, binning=1, center_method="vo")
    assert pv.attrs["axis_tilted"] == 0
    assert abs(pv.attrs["tilt_px_per_row"]) < 0.02
    # a copy whose axis moves 0.15 px per row (the raw file is left alone)
    tilted = tmp_path / "tilted.h5"
    slope = 0.15
    with h5py.File(path) as src, h5py.File(tilted, "w") as dst:
        for key in ("data", "data_white", "data_dark"):
            arr = src["exchange"][key][...].astype(np.float64)
            for r in range(arr.shape[1]):
                arr[:, r] = ndimage.shift(arr[:, r], (0, slope * (r - 12)), order=3,
                                          mode="nearest")
            dst.create_dataset(f"exchange/{key}", data=np.round(arr).astype(np.uint16))
        dst["exchange/theta"] = src["exchange/theta"][...]
    pv = preview(tilted, n_slices=4, binning=1, center_method="vo")
    assert pv.attrs["axis_tilted"] == 1
    assert pv.attrs["tilt_px_per_row"] == pytest.approx(slope, abs=0.03)
    assert len(pv.attrs["row_centers"]) == 4


def test_preview_from_arrays_is_the_science_of_preview(scan):
    from spotkit.io import open_tomo

    path, _ = scan
    pv = preview(path, n_slices=2, binning=2, center_method="sinusoid", algorithm="fbp")
    ds = open_tomo(path)
    rows = pv["slice"].values
    theta = np.deg2rad(ds["theta"].values)
    views = [0, int(np.argmin(abs(ds["theta"].values - 90)))]
    same = tomo.preview_from_arrays(
        ds["data"].values[::1, rows], ds["flats"].values[:, rows], ds["darks"].values[:, rows],
        theta, rows=rows, radiographs=ds["data"].values[views],
        radiograph_flat=np.median(ds["flats"].values[:5], axis=0),
        radiograph_dark=np.median(ds["darks"].values[:5], axis=0),
        view_angles=ds["theta"].values[views], binning=2, center_method="sinusoid",
        algorithm="fbp", pixel_size_um=float(ds.attrs["pixel_size_um"]))
    assert same.attrs["center"] == pytest.approx(pv.attrs["center"])
    np.testing.assert_allclose(same["slices"].values, pv["slices"].values, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(same["radiographs"].values, pv["radiographs"].values)
    with pytest.raises(ValueError, match=r"proj must be \(angles, 2 rows, columns\)"):
        tomo.preview_from_arrays(ds["data"].values[:, :3], ds["flats"].values[:, :3],
                                 ds["darks"].values[:, :3], theta, rows=rows,
                                 radiographs=None, radiograph_flat=None, radiograph_dark=None,
                                 view_angles=[0, 90])


def test_the_png_is_written_by_spotkit_io_and_the_old_name_warns(tmp_path, scan):
    from spotkit.io import write_preview_png

    pv = preview(scan[0], n_slices=1, binning=4, center=scan[1].center, algorithm="fbp")
    png = write_preview_png(pv, tmp_path / "new.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*partial"))
    with pytest.warns(DeprecationWarning, match=r"spotkit\.io\.write_preview_png"):
        old = tomo.save_preview_png
    assert old is write_preview_png
    assert old(pv, tmp_path / "old.png").stat().st_size > 1000
    assert "save_preview_png" not in tomo.__all__
