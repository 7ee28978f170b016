"""notebooks/tomo_recon.ipynb reconstructs a whole (tiny) twin scan through spotkit.run_notebook.

Bounds were measured on the ``tiny_tomo`` twin (91 angles x 4 rows x 96 columns, centre 51.5):
with the default parameters every slice correlates 0.943-0.960 with the phantom (NRMSE 0.025
to 0.026 of the phantom's range) and the found centre is 51.47. The same pipeline with the
centre off by only 0.5 px gives correlations 0.914-0.933 and NRMSE 0.032-0.033, so the bounds
below (> 0.92, < 0.03) fail on a wrong centre, a lost normalisation or a broken backend.
"""

from __future__ import annotations

import json

import h5py
import nbformat
import numpy as np
import pytest

import spotkit
from spotkit.errors import NotebookExecutionError
from spotkit.runs import pipeline_notebook
from spotkit.tomo import circular_mask, downsample
from spotkit.tomo.backends import list_backends

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

NOTEBOOK = pipeline_notebook("tomo_recon")
MIN_CORRELATION = 0.92
MAX_NRMSE = 0.03


@pytest.fixture(scope="module")
def scan_in_catalog(tmp_path_factory, tiny_tomo):
    """The tiny twin scan ingested into a catalog shared by this module's runs."""
    folder = tmp_path_factory.mktemp("tomo-recon")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPOTKIT_HOME", str(folder / "home"))
        cat = spotkit.open_catalog(folder / "catalog.db")
        raw = cat.ingest(tiny_tomo[0])
        yield cat, raw, folder
        cat.close()


def _run(scan_in_catalog, name, **parameters):
    cat, raw, folder = scan_in_catalog
    return spotkit.run_notebook(
        NOTEBOOK, raw.id, catalog=cat, parameters=parameters, output_dir=folder / name
    )


@pytest.fixture(scope="module")
def default_run(scan_in_catalog):
    return _run(scan_in_catalog, "default")


@pytest.fixture(scope="module")
def binned_run(scan_in_catalog):
    return _run(scan_in_catalog, "binned", binning=2)


def _volume(result):
    (volume_ds,) = [o for o in result.outputs if o.kind == "tomo/recon"]
    with h5py.File(volume_ds.path) as f:
        recon = f["recon"]
        return volume_ds, {
            "recon": recon[...],
            "x": f["x"][...],
            "z": f["z"][...],
            "units": recon.attrs["units"],
            "pixel_size_um": float(recon.attrs["pixel_size_um"]),
            "provenance": json.loads(recon.attrs["provenance"]),
        }


def _scores(img, ref):
    """Correlation and NRMSE (relative to the phantom's range) inside the field of view."""
    seen = circular_mask(np.ones(img.shape, dtype=bool), ratio=0.95, value=False)
    corr = np.corrcoef(img[seen], ref[seen])[0, 1]
    nrmse = np.sqrt(np.mean((img[seen] - ref[seen]) ** 2)) / np.ptp(ref)
    return corr, nrmse


def test_run_registers_the_volume_with_provenance(default_run, scan_in_catalog):
    _, raw, _ = scan_in_catalog
    assert default_run.state == "completed"
    assert sorted(o.kind for o in default_run.outputs) == ["image/png", "tomo/recon"]
    volume_ds, vol = _volume(default_run)
    assert [p.id for p in volume_ds.parents] == [raw.id]
    prov = volume_ds.provenance
    assert prov.raw_sources == (raw.id,)
    assert prov.run.id == default_run.run_id
    assert prov.run.state == "completed"
    assert prov.run.notebook.name == "tomo_recon.ipynb"
    assert volume_ds.to_dask().shape == vol["recon"].shape
    # the file records the pipeline that made it, and which backend did the work
    steps = [s["function"] for s in vol["provenance"]["pipeline"]["steps"]]
    assert steps == ["normalize", "remove_stripes", "minus_log", "find_center", "reconstruct"]
    assert vol["provenance"]["rows"] == [0, 4]
    assert vol["provenance"]["backend"] == volume_ds.metadata["backend"]
    assert set(volume_ds.metadata["backend"].values()) & set(list_backends())


def test_volume_matches_the_phantom(default_run, tiny_tomo):
    _, truth = tiny_tomo
    volume_ds, vol = _volume(default_run)
    recon = vol["recon"]
    assert recon.shape == (4, 96, 96)
    assert vol["units"] == "1/cm"
    assert volume_ds.metadata["center"] == pytest.approx(truth.center, abs=0.25)
    assert vol["x"][1] - vol["x"][0] == pytest.approx(truth.pixel_size_um)
    for row, img in enumerate(recon):
        ref = truth.phantom_slice(row, n=96)  # 1/cm
        corr, nrmse = _scores(img, ref)
        assert corr > MIN_CORRELATION, f"row {row}"
        assert nrmse < MAX_NRMSE, f"row {row}"
        inside = ref > 0
        assert img[inside].mean() == pytest.approx(ref[inside].mean(), rel=0.1)


def test_binning_halves_the_volume(binned_run, default_run, tiny_tomo):
    _, truth = tiny_tomo
    volume_ds, binned = _volume(binned_run)
    _, full = _volume(default_run)
    n_slices, ny, nx = full["recon"].shape
    assert binned["recon"].shape == (n_slices // 2, ny // 2, nx // 2)
    assert binned["pixel_size_um"] == pytest.approx(2 * full["pixel_size_um"])
    assert binned["x"][1] - binned["x"][0] == pytest.approx(2 * truth.pixel_size_um)
    # each binned slice is the middle of two detector rows
    np.testing.assert_allclose(binned["z"], np.array([0.5, 2.5]) * truth.pixel_size_um)
    # the centre is reported in full-resolution columns
    assert volume_ds.metadata["center"] == pytest.approx(truth.center, abs=0.5)
    assert "downsample" in [s["function"] for s in binned["provenance"]["pipeline"]["steps"]]
    # still the phantom (binned the same way), and still in 1/cm
    for k, img in enumerate(binned["recon"]):
        rows = (truth.phantom_slice(r, n=96) for r in (2 * k, 2 * k + 1))
        ref = downsample(np.mean(list(rows), axis=0), factor=2, axis=(0, 1))
        corr, _ = _scores(img, ref)
        assert corr > 0.8, f"slice {k}"  # measured 0.886
        inside = ref > 0
        assert img[inside].mean() == pytest.approx(ref[inside].mean(), rel=0.1)  # 0.96


def test_slice_range_restricts_the_rows(scan_in_catalog, tiny_tomo):
    _, truth = tiny_tomo
    result = _run(scan_in_catalog, "rows", slice_start=1, slice_stop=3, center=truth.center)
    volume_ds, vol = _volume(result)
    assert vol["recon"].shape == (2, 96, 96)
    assert vol["provenance"]["rows"] == [1, 3]
    np.testing.assert_allclose(vol["z"], np.array([1, 2]) * truth.pixel_size_um)
    # a given centre: no find_center step, and the volume still matches its rows
    assert "find_center" not in [s["function"] for s in vol["provenance"]["pipeline"]["steps"]]
    assert volume_ds.metadata["center"] == truth.center
    for img, row in zip(vol["recon"], (1, 2), strict=True):
        corr, _ = _scores(img, truth.phantom_slice(row, n=96))
        assert corr > MIN_CORRELATION, f"row {row}"


def test_bad_parameter_fails_before_any_reconstruction(catalog, tiny_tomo, tmp_path):
    raw = catalog.ingest(tiny_tomo[0])
    out = tmp_path / "out"
    with pytest.raises(NotebookExecutionError) as info:
        spotkit.run_notebook(
            NOTEBOOK, raw.id, catalog=catalog, parameters={"stripe_method": "nope"}, output_dir=out
        )
    err = info.value
    assert err.ename == "PipelineValidationError"
    assert "stripe_method" in err.evalue
    assert "'nope'" in err.evalue
    assert "fw" in err.evalue  # says what is allowed
    # it failed in the parameter check, before the cell that builds and runs the pipeline
    sources = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells]
    check_cell = next(i for i, s in enumerate(sources) if "raise PipelineValidationError" in s)
    run_cell = next(i for i, s in enumerate(sources) if "pipe.run(" in s)
    assert err.cell_index == check_cell < run_cell
    assert not list(out.glob("*.h5"))
    (run,) = catalog.runs(dataset_id=raw.id)
    assert run.state == "failed"
    assert run.error_name == "PipelineValidationError"
    assert not raw.children
