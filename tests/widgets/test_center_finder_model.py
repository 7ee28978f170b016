"""CenterFinderModel: the centre finder's state and rendering in plain Python (no ipywidgets)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from spotkit.widgets import CenterFinderModel

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scan(tiny_tomo):
    """The tiny twin scan's middle row as a sinogram, with its truth."""
    from spotkit.pipelines import read_sinogram

    path, truth = tiny_tomo
    sino, theta, origin = read_sinogram(path, row=2)
    return {"path": path, "truth": truth, "sino": sino, "theta": theta, "origin": origin}


@pytest.fixture(scope="module")
def model(scan):
    return CenterFinderModel(scan["sino"], scan["theta"], around=3.0, step=0.5)


def test_candidates_sweep_and_score_against_the_truth(model, scan):
    truth = scan["truth"]
    np.testing.assert_allclose(np.diff(model.centers), 0.5)
    assert model.centers.size == 13
    assert abs(model.auto_center - truth.center) <= 1.0
    assert abs(model.best_center - truth.center) <= 1.0
    assert model.sweep.dims == ("center", "y", "x")
    assert model.sweep.shape == (13, 96, 96)
    np.testing.assert_allclose(model.sweep["center"].values, model.centers)
    assert model.score.attrs["metric"] == "entropy"
    # starts on the candidate nearest the automatic estimate; nothing chosen yet
    assert abs(model.center - model.auto_center) <= 0.25
    assert model.value is None
    assert model.origin == "sinogram"


def test_select_stores_the_value_and_calls_back_every_time(scan):
    model = CenterFinderModel(scan["sino"], scan["theta"], centers=[50.0, 51.5, 53.0])
    calls: list[float] = []
    model.on_select(calls.append)
    model.on_select(calls.append)  # registered once
    assert model.go_to(52.9) == 2
    assert model.select() == 53.0
    assert model.select() == 53.0  # the same centre again: called again
    assert model.select(50.4) == 50.0
    assert model.value == 50.0
    assert model.center == 50.0
    assert calls == [53.0, 53.0, 50.0]

    def broken(center):
        raise RuntimeError("user callback failed")

    model.on_select(broken)
    model.on_select(calls.append, remove=True)
    model.on_select(calls.append)  # after the broken one: still called
    assert model.select(51.5) == 51.5
    assert calls[-1] == 51.5
    model.on_select(calls.append, remove=True)
    model.select()
    assert len(calls) == 4


def test_rendering_one_grey_range_for_every_centre(model):
    from PIL import Image

    lo, hi = model.vmin, model.vmax
    assert lo < hi
    assert (lo, hi) == model.grey_range()
    first, last = model.slice_png(0), model.slice_png(model.centers.size - 1)
    assert first.startswith(PNG_SIGNATURE)
    assert last.startswith(PNG_SIGNATURE)
    assert first != last
    assert model.slice_png(0) is first  # cached
    assert Image.open(io.BytesIO(first)).size == (384, 384)  # 96 px enlarged 4x
    assert model.plot_png(0) != model.plot_png(5)  # the current marker moves
    assert model.label(0).startswith(f"centre = {model.centers[0]:.1f} px · entropy = ")


def test_roi_zoom_and_binning(scan):
    model = CenterFinderModel(scan["sino"], scan["theta"], centers=[51.5],
                              roi=(24, 72, 12, 84))
    assert model.view(0, 1).shape == (48 * 5, 72 * 5)  # enlarged to >= 384 px
    assert model.view(0, 2).shape == (24 * 10, 36 * 10)  # the middle half, enlarged 10x
    np.testing.assert_array_equal(model.view(0, 2)[::10, ::10], model.images[0, 36:60, 30:66])
    binned = CenterFinderModel(scan["sino"], scan["theta"], around=2, step=1, binning=2)
    assert binned.sweep.shape[1:] == (48, 48)
    assert abs(binned.best_center - scan["truth"].center) <= 1.5  # full-resolution columns


def test_a_scan_source_reads_one_row(scan, catalog):
    path, truth = scan["path"], scan["truth"]
    centres = [truth.center - 1, truth.center, truth.center + 1]
    by_path = CenterFinderModel(path, centers=centres, row=2)
    np.testing.assert_allclose(by_path.sweep.values,
                               CenterFinderModel(scan["sino"], scan["theta"],
                                                 centers=centres).sweep.values, atol=1e-6)
    assert by_path.origin == "tiny_tomo.h5, row 2"
    dataset = catalog.ingest(path)
    assert CenterFinderModel(dataset, centers=centres).origin == f"{dataset.id}, row 2"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"centers": []}, ValueError, "centers must be a non-empty"),
        ({"centers": [500.0]}, ValueError, "centers must lie on the detector"),
        ({"center_range": (60, 50, 1)}, ValueError, "center_range needs step > 0"),
        ({"metric": "blur"}, ValueError, "unknown metric 'blur'"),
        ({"binning": 0}, ValueError, "binning must be an integer"),
        ({"roi": (0, 500, 0, 10), "centers": [51.0]}, ValueError, "roi"),
        ({"row": 1}, ValueError, "row applies to a scan"),
    ],
)
def test_bad_input_names_the_parameter(scan, kwargs, error, match):
    with pytest.raises(error, match=match):
        CenterFinderModel(scan["sino"], scan["theta"], **kwargs)


def test_bad_sources(scan):
    with pytest.raises(ValueError, match="theta comes from the scan"):
        CenterFinderModel(scan["path"], scan["theta"])
    with pytest.raises(ValueError, match=r"row must be in 0 \.\. 3"):
        CenterFinderModel(scan["path"], row=4)
    with pytest.raises(TypeError, match="cannot use a object as a sinogram"):
        CenterFinderModel(object(), scan["theta"])
    with pytest.raises(ValueError, match="theta spans"):  # degrees passed as radians
        CenterFinderModel(scan["sino"], np.rad2deg(scan["theta"]))


def test_the_model_works_without_ipywidgets(tiny_tomo):
    code = (
        "import sys; sys.modules['ipywidgets'] = None\n"
        "from spotkit.widgets import CenterFinderModel\n"
        f"m = CenterFinderModel({str(tiny_tomo[0])!r}, around=1, step=1)\n"
        "assert m.select() == m.center and m.slice_png(0)[:4] == b'\\x89PNG'\n"
        "assert 'ipywidgets' not in sys.modules or sys.modules['ipywidgets'] is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
