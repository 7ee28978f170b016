"""CenterFinder: the centre-of-rotation widget, driven from Python (no browser)."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys

import numpy as np
import pytest

from spotkit.widgets import CenterFinder

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def finder(recon_scan):
    """A finder on the noisy twin sinogram, +-4 px around the automatic estimate."""
    return CenterFinder(recon_scan["noisy"], recon_scan["theta"], around=4.0, step=0.5)


def test_default_range_around_auto_estimate(finder, recon_scan):
    assert abs(finder.auto_center - recon_scan["center"]) <= 1.0
    steps = np.diff(finder.centers)
    np.testing.assert_allclose(steps, 0.5)
    assert finder.centers.size == 17
    assert finder.centers[0] <= finder.auto_center <= finder.centers[-1]
    assert finder.sweep.dims == ("center", "y", "x")
    np.testing.assert_allclose(finder.sweep["center"].values, finder.centers)
    # the slider starts on the candidate nearest the automatic estimate
    assert abs(finder.center - finder.auto_center) <= 0.25
    assert finder.value is None


def test_metric_best_centre_within_one_pixel_of_truth(finder, recon_scan):
    assert abs(finder.best_center - recon_scan["center"]) <= 1.0
    assert finder.score.attrs["metric"] == "entropy"
    assert finder.best_center in finder.centers


def test_slider_changes_image_and_label(finder):
    finder.slider.index = 0
    first_png, first_plot = bytes(finder.image.value), bytes(finder.plot.value)
    assert first_png.startswith(PNG_SIGNATURE)
    assert first_plot.startswith(PNG_SIGNATURE)
    assert finder.label.value.startswith(f"centre = {finder.centers[0]:.1f} px")
    assert "entropy = " in finder.label.value

    finder.slider.index = 5
    assert finder.center == finder.centers[5]
    assert bytes(finder.image.value) != first_png
    assert bytes(finder.plot.value) != first_plot  # the marker moved
    assert finder.label.value.startswith(f"centre = {finder.centers[5]:.1f} px")
    assert finder.slider.label == f"{finder.centers[5]:.1f}"

    finder.center = finder.best_center + 0.1  # snaps to the nearest candidate
    assert finder.center == finder.best_center


def test_consistent_grey_range_across_centres(finder):
    """The same grey range for every centre: only the centre changes what is shown."""
    from PIL import Image as PILImage

    finder.slider.index = 0
    a = PILImage.open(io.BytesIO(finder.image.value))
    finder.slider.index = finder.centers.size - 1
    b = PILImage.open(io.BytesIO(finder.image.value))
    assert a.size == b.size
    assert min(a.size) >= 384  # small slices are enlarged
    assert (finder._vmin, finder._vmax) == finder._grey_range()


def test_use_button_sets_value_and_calls_back(recon_scan):
    finder = CenterFinder(recon_scan["noisy"], recon_scan["theta"], centers=[66.0, 67.5, 69.0])
    called, changes = [], []
    finder.on_select(called.append)
    finder.observe(lambda change: changes.append(change["new"]), names="value")

    finder.slider.index = 2
    finder.use_button.click()
    assert finder.value == 69.0
    assert called == [69.0]
    assert changes == [69.0]
    assert finder.chosen_label.value == "chosen: 69.0 px"

    finder.use_button.click()  # the same centre again: callback yes, trait change no
    assert called == [69.0, 69.0]
    assert changes == [69.0]

    finder.best_button.click()
    assert finder.center == finder.best_center
    assert finder.select(66.2) == 66.0
    assert finder.value == 66.0
    assert called[-1] == 66.0

    finder.on_select(called.append, remove=True)
    finder.use_button.click()
    assert len(called) == 3


def test_center_range_and_explicit_centres(recon_scan):
    sino, theta = recon_scan["noisy"], recon_scan["theta"]
    finder = CenterFinder(sino, theta, center_range=(66, 69, 1), metric="negativity")
    np.testing.assert_allclose(finder.centers, [66, 67, 68, 69])
    assert finder.score.attrs["metric"] == "negativity"
    finder = CenterFinder(sino, theta, centers=[68.0, 67.0, 67.0])
    np.testing.assert_allclose(finder.centers, [67.0, 68.0])  # sorted, unique


def test_binning_keeps_full_resolution_centres(recon_scan):
    finder = CenterFinder(recon_scan["noisy"], recon_scan["theta"], around=2, step=1, binning=2)
    assert finder.sweep.shape[1:] == (64, 64)
    assert abs(finder.best_center - recon_scan["center"]) <= 1.0
    assert finder.binning == 2


def test_zoom_and_roi(recon_scan):
    finder = CenterFinder(recon_scan["noisy"], recon_scan["theta"], centers=[67.5],
                          roi=(32, 96, 16, 112))
    assert finder._view(0, 1).shape == (64 * 4, 96 * 4)  # enlarged 4x to >= 384 px
    before = bytes(finder.image.value)
    finder.zoom.value = 2
    assert bytes(finder.image.value) != before
    assert finder._view(0, 2).shape == (32 * 8, 48 * 8)


def test_from_scan_file_xarray_and_catalog_dataset(tiny_tomo, catalog):
    from spotkit.io import open_tomo

    path, truth = tiny_tomo
    centres = [truth.center - 1, truth.center, truth.center + 1]
    by_path = CenterFinder(path, centers=centres, row=2)
    by_xarray = CenterFinder(open_tomo(path), centers=centres, row=2)
    dataset = catalog.ingest(path)
    by_dataset = CenterFinder(dataset, centers=centres, row=2)
    # the same sinogram each way (the FFT reconstruction itself varies in the last bits)
    np.testing.assert_allclose(by_path.sweep.values, by_xarray.sweep.values, atol=1e-6)
    np.testing.assert_allclose(by_path.sweep.values, by_dataset.sweep.values, atol=1e-6)
    assert "row 2" in by_dataset.info.value
    assert dataset.id in by_dataset.info.value
    assert abs(by_path.auto_center - truth.center) <= 1.0
    default_row = CenterFinder(path, centers=centres)
    assert "row 2" in default_row.info.value  # the middle of 4 rows


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"centers": []}, "centers must be a non-empty"),
        ({"centers": [500.0]}, "centers must lie on the detector"),
        ({"center_range": (70, 60, 1)}, "center_range needs step > 0"),
        ({"center_range": (60, 70)}, r"center_range must be \(start, stop, step\)"),
        ({"centers": [67.0], "center_range": (60, 70, 1)}, "either centers or center_range"),
        ({"step": 0}, "step must be > 0"),
        ({"metric": "blur"}, "unknown metric 'blur'"),
        ({"center_method": "guess"}, "unknown center_method 'guess'"),
        ({"binning": 0}, "binning must be an integer"),
        ({"roi": (0, 500, 0, 10), "centers": [67.0]}, "roi"),
        ({"row": 1}, "row applies to a scan"),
    ],
)
def test_bad_input_names_the_parameter(recon_scan, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CenterFinder(recon_scan["noisy"], recon_scan["theta"], **kwargs)


def test_bad_sinogram_or_theta(recon_scan, tiny_tomo):
    sino, theta = recon_scan["noisy"], recon_scan["theta"]
    with pytest.raises(ValueError, match=r"theta has shape \(180,\) but the sinogram has 181"):
        CenterFinder(sino, theta[:-1])
    with pytest.raises(ValueError, match=r"theta \(angles in radians\) is required"):
        CenterFinder(sino)
    with pytest.raises(ValueError, match="sinogram must be 2-D"):
        CenterFinder(sino[None], theta)
    bad = sino.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        CenterFinder(bad, theta)
    with pytest.raises(ValueError, match="theta comes from the scan"):
        CenterFinder(tiny_tomo[0], theta)
    with pytest.raises(ValueError, match=r"row must be in 0 \.\. 3"):
        CenterFinder(tiny_tomo[0], row=4)
    with pytest.raises(TypeError, match="cannot use a object as a sinogram"):
        CenterFinder(object(), theta)


def test_importing_spotkit_tomo_or_widgets_does_not_import_ipywidgets():
    code = ("import sys, spotkit.tomo, spotkit.widgets as w; "
            "assert 'ipywidgets' not in sys.modules; "
            "assert 'CenterFinder' in w.__all__; w.CenterFinderModel; "
            "assert 'ipywidgets' not in sys.modules; w.CenterFinder; "
            "assert 'ipywidgets' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_ipywidgets_names_the_extra(monkeypatch):
    importlib.import_module("spotkit.widgets._center_finder")
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    monkeypatch.delitem(sys.modules, "spotkit.widgets._center_finder")
    with pytest.raises(ImportError, match=r'pip install "spotkit\[lab\]"'):
        importlib.import_module("spotkit.widgets._center_finder")


def test_old_name_in_spotkit_tomo_warns_and_still_works(recon_scan):
    import spotkit.tomo

    assert "CenterFinder" not in spotkit.tomo.__all__
    with pytest.warns(DeprecationWarning, match=r"spotkit\.widgets\.CenterFinder"):
        old = spotkit.tomo.CenterFinder
    assert old is CenterFinder
    finder = old(recon_scan["noisy"], recon_scan["theta"], centers=[66.0, 67.5])
    assert finder.select(67.4) == 67.5


def test_an_xarray_theta_in_degrees_is_converted(recon_scan):
    import xarray as xr

    theta = recon_scan["theta"]
    in_degrees = xr.DataArray(np.rad2deg(theta), dims="angle", attrs={"units": "degrees"})
    sino = recon_scan["noisy"]
    a = CenterFinder(sino, theta, centers=[67.5])
    b = CenterFinder(sino, in_degrees, centers=[67.5])
    np.testing.assert_allclose(b.sweep.values, a.sweep.values, rtol=1e-5, atol=1e-6)
