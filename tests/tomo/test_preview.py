"""The fast-preview branch on the twin."""

from __future__ import annotations

import numpy as np
import pytest

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
