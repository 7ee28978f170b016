"""TomoPipeline: data round trip, validation with every problem at once, block runs."""

from __future__ import annotations

import contextlib
import json

import h5py
import numpy as np
import pytest

from spotkit.errors import MemoryBudgetError, PipelineValidationError
from spotkit.tomo import TomoPipeline, parse_memory

SIMPLE = {
    "name": "simple",
    "steps": [
        {"id": "norm", "function": "normalize"},
        {"id": "log", "function": "minus_log", "params": {"floor": 1e-4}},
        {"id": "center", "function": "find_center", "params": {"method": "sinusoid"}},
        {"id": "recon", "function": "reconstruct",
         "params": {"center": "$center.center", "algorithm": "fbp", "filter": "shepp"}},
    ],
}


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    from spotkit.sim import simulate_tomo_scan

    path = tmp_path_factory.mktemp("pipe") / "scan.h5"
    truth = simulate_tomo_scan(path, shape=(121, 10, 80), center_offset=-3.25, seed=11)
    return path, truth


def test_dict_and_yaml_round_trip(tmp_path):
    pipe = TomoPipeline.from_dict(SIMPLE)
    assert TomoPipeline.from_dict(pipe.to_dict()) == pipe
    path = tmp_path / "p.yaml"
    pipe.to_yaml(path)
    assert TomoPipeline.from_yaml(path) == pipe
    assert TomoPipeline.from_yaml(pipe.to_yaml()) == pipe


def test_every_problem_is_reported_at_once():
    bad = {
        "steps": [
            {"id": "norm", "function": "normalise"},                       # typo
            {"id": "log", "function": "minus_log", "params": {"flor": 1}},  # bad param
            {"id": "log", "function": "minus_log"},                         # duplicate id
            {"id": "recon", "function": "reconstruct",
             "params": {"center": "$centre.center", "theta": [0, 1]}},      # bad ref, supplied
        ]
    }
    with pytest.raises(PipelineValidationError) as info:
        TomoPipeline.from_dict(bad)
    problems = info.value.problems
    text = str(info.value)
    assert len(problems) >= 5
    assert "normalise" in text
    assert "normalize" in text
    assert "flor" in text
    assert "floor" in text
    assert "duplicate" in text
    assert "centre" in text
    assert "theta" in text
    assert "supplied" in text
    assert {p.step for p in problems} >= {"norm", "log", "recon"}


def test_reconstruct_must_be_last():
    steps = [{"function": "reconstruct"}, {"function": "minus_log"}]
    problems = TomoPipeline(steps).validate()
    assert any("last" in p.message for p in problems)


def test_parse_memory():
    assert parse_memory("4GB") == 4_000_000_000
    assert parse_memory("512MiB") == 512 * 2**20
    with pytest.raises(ValueError, match="4 parsecs"):
        parse_memory("4 parsecs")


def test_plan_respects_budget_and_rejects_too_small():
    pipe = TomoPipeline.from_dict(SIMPLE)
    shape = (1313, 2160, 2560)  # ALS 8.3.2 full size
    rows, planned = pipe.plan(shape, max_memory="4GB")
    assert rows >= 1
    assert planned <= 4e9
    rows2, _ = pipe.plan(shape, max_memory="8GB")
    assert rows2 > rows
    with pytest.raises(MemoryBudgetError, match="too small"):
        pipe.plan(shape, max_memory="100MB")


def test_run_in_blocks_matches_one_block_and_the_phantom(tmp_path, scan):
    path, truth = scan
    pipe = TomoPipeline.from_dict(SIMPLE)
    one = pipe.run(path, tmp_path / "one.h5", max_memory="2GB")
    assert one.n_blocks == 1
    # a budget that forces several blocks gives the same volume
    budget = 256 * 2**20
    while True:  # the smallest budget that gives blocks of 3 rows or more
        with contextlib.suppress(MemoryBudgetError):
            if pipe.plan((121, 10, 80), max_memory=budget, workers=2)[0] >= 3:
                break
        budget += 20_000
    many = pipe.run(path, tmp_path / "many.h5", max_memory=budget, workers=2)
    assert many.n_blocks > 1
    with h5py.File(one.output) as f1, h5py.File(many.output) as f2:
        np.testing.assert_allclose(f1["recon"][...], f2["recon"][...], rtol=1e-5, atol=1e-3)
        vol = f1["recon"][...]
        prov = json.loads(f1["recon"].attrs["provenance"])
        assert f1["x"].attrs["units"] == "um"
        assert f1["z"].shape == (10,)
    assert abs(one.side_outputs["center"]["center"] - truth.center) < 0.5
    assert prov["pipeline"] == pipe.to_dict()
    # the backend that ran, its version and options, as reconstruct_with_info reports them
    from spotkit.tomo.backends import get_backend

    assert prov["backend"]["backend"] == "builtin"
    assert prov["backend"]["version"] == get_backend("builtin").version()
    assert prov["backend"]["algorithm"] == SIMPLE["steps"][-1]["params"].get("algorithm",
                                                                            "gridrec")
    assert prov["backend"]["engine"] in {"finufft", "numba", "numpy"}
    assert one.backend == prov["backend"]
    assert prov["side_outputs"]["center"]["center"] == pytest.approx(truth.center, abs=0.5)
    ref = truth.phantom_slice(5)
    assert np.corrcoef(vol[5].ravel(), ref.ravel())[0, 1] > 0.95
    inside = ref > 0
    assert vol[5][inside].mean() == pytest.approx(ref[inside].mean(), rel=0.05)


def test_run_rows_and_catalog_dataset(tmp_path, scan, catalog):
    path, _ = scan
    ds = catalog.ingest(path)
    res = TomoPipeline.from_dict(SIMPLE).run(ds, tmp_path / "rows.h5", rows=(2, 5))
    assert res.shape == (3, 80, 80)
    with h5py.File(res.output) as f:
        assert json.loads(f["recon"].attrs["provenance"])["source"]["dataset_id"] == ds.id


def test_failed_run_leaves_no_output(tmp_path, scan):
    path, _ = scan
    steps = [dict(s) for s in SIMPLE["steps"]]
    steps[-1] = {"id": "recon", "function": "reconstruct", "params": {"center": 1e6}}
    out = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match="outside the detector"):
        TomoPipeline(steps).run(path, out)
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial"))


def test_existing_output_is_not_overwritten(tmp_path, scan):
    out = tmp_path / "exists.h5"
    out.write_text("keep me")
    with pytest.raises(FileExistsError):
        TomoPipeline.from_dict(SIMPLE).run(scan[0], out)
    assert out.read_text() == "keep me"


def test_default_pipeline_runs(tmp_path, scan):
    path, truth = scan
    pipe = TomoPipeline.default(stripe_method="sorting")
    assert TomoPipeline.from_yaml(pipe.to_yaml()) == pipe
    res = pipe.run(path, tmp_path / "default.h5", rows=(4, 6))
    assert res.shape == (2, 80, 80)
    assert abs(res.side_outputs["center"]["center"] - truth.center) < 0.5


def test_read_rows_reads_only_the_rows_it_is_asked_for(scan, monkeypatch):
    from spotkit.io import open_tomo
    from spotkit.pipelines import read_rows

    path, _ = scan
    ds = open_tomo(path)
    full = ds["data"].values
    rows = [7, 2, 3, 4, 9]
    np.testing.assert_array_equal(read_rows(ds["data"], rows), full[:, rows])
    np.testing.assert_array_equal(read_rows(ds["data"], slice(2, 5)), full[:, 2:5])
    np.testing.assert_array_equal(read_rows(ds["data"], [5], angles=slice(None, None, 4)),
                                  full[::4, [5]])
    # every HDF5 read asks for row slices, never for whole frames
    from spotkit.io._h5 import H5ArrayProxy

    seen = []
    original = H5ArrayProxy.__getitem__

    def spy(self, index):
        seen.append(index)
        return original(self, index)

    monkeypatch.setattr(H5ArrayProxy, "__getitem__", spy)
    read_rows(open_tomo(path)["data"], rows)
    read_rows(open_tomo(path)["data"], rows, angles=slice(None, None, 3))  # preview's read
    assert seen
    assert all(idx[1].stop - idx[1].start <= 3 for idx in seen)


def test_binning_bins_rows_and_columns_in_physical_units(tmp_path, scan):
    path, truth = scan
    full = TomoPipeline.default(center=truth.center).run(path, tmp_path / "full.h5")
    pipe = TomoPipeline.default(binning=2, center=truth.center)
    assert pipe.to_dict()["steps"][1]["function"] == "downsample"
    assert TomoPipeline.from_dict(pipe.to_dict()) == pipe
    # blocks of one binned slice each still give the same volume as one block
    binned = pipe.run(path, tmp_path / "bin.h5", rows=(1, 10))
    one_block = pipe.run(path, tmp_path / "bin1.h5", rows=(1, 10), max_memory="2GB")
    assert binned.shape == (4, 40, 40)  # rows 1..8 in pairs (row 9 left out), 80 -> 40 cols
    with h5py.File(full.output) as f0, h5py.File(binned.output) as f1, \
            h5py.File(one_block.output) as f2:
        np.testing.assert_allclose(f1["recon"][...], f2["recon"][...], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(f1["z"][...], f0["z"][1:9].reshape(4, 2).mean(axis=1))
        assert f1["x"][1] - f1["x"][0] == pytest.approx(2 * (f0["x"][1] - f0["x"][0]))
        # same attenuation in 1/cm as the unbinned volume (bin, not sum)
        ref = (truth.phantom_slice(3) + truth.phantom_slice(4)) / 2  # rows 3 and 4
        ref = ref.reshape(40, 2, 40, 2).mean(axis=(1, 3))
        inside = ref > 0
        assert f1["recon"][1][inside].mean() == pytest.approx(ref[inside].mean(), rel=0.03)
        assert np.corrcoef(f1["recon"][1].ravel(), ref.ravel())[0, 1] > 0.9
    found = TomoPipeline.default(binning=2).run(path, tmp_path / "found.h5")
    side = found.side_outputs["center"]
    assert side["center_full_resolution"] == pytest.approx(2 * side["center"])  # tomopy convention
    assert side["center_full_resolution"] == pytest.approx(truth.center, abs=1.0)
    with pytest.raises(ValueError, match="binning"):
        TomoPipeline.default(binning=0)
    with pytest.raises(ValueError, match="fewer than the row binning"):
        TomoPipeline.default(binning=4).run(path, tmp_path / "x.h5", rows=(0, 3))


def test_parameter_values_are_checked_before_anything_runs():
    bad = {
        "steps": [
            {"function": "normalize"},
            {"function": "downsample", "params": {"factor": 0, "axis": 2}},
            {"function": "remove_stripes", "params": {"method": "nope"}},
            {"function": "minus_log"},
            {"id": "c", "function": "find_center", "params": {"method": "guess"}},
            {"function": "reconstruct", "params": {"center": "$c.center", "algorithm": "art",
                                                   "filter": "box", "backend": "gpu9000",
                                                   "num_iter": -1}},
        ]
    }
    with pytest.raises(PipelineValidationError) as info:
        TomoPipeline.from_dict(bad)
    problems = TomoPipeline(bad["steps"]).validate()
    assert len(problems) == 7
    fields = sorted((p.step, p.field) for p in problems)
    assert fields == [("c", "method"), ("downsample", "factor"), ("reconstruct", "algorithm"),
                      ("reconstruct", "backend"), ("reconstruct", "filter"),
                      ("reconstruct", "num_iter"), ("remove_stripes", "method")]
    text = str(info.value)
    for allowed in ("'fw'", "'gridrec'", "'builtin'", "'vo'"):
        assert allowed in text


def test_run_is_the_registered_runner_and_run_tomo_gives_the_same_volume(tmp_path, scan):
    from spotkit._runners import get_runner
    from spotkit.pipelines import run_tomo

    path, _ = scan
    pipe = TomoPipeline.from_dict(SIMPLE)
    assert get_runner("tomo.pipeline").__name__ == "run_tomo"
    a = pipe.run(path, tmp_path / "a.h5", rows=(3, 5))
    b = run_tomo(pipe, path, tmp_path / "b.h5", rows=(3, 5))
    assert (a.shape, a.side_outputs, a.n_blocks) == (b.shape, b.side_outputs, b.n_blocks)
    with h5py.File(a.output) as fa, h5py.File(b.output) as fb:
        np.testing.assert_allclose(fa["recon"][...], fb["recon"][...], rtol=1e-5, atol=1e-5)


def test_without_a_registered_runner_run_says_what_to_import(tmp_path, scan, monkeypatch):
    from spotkit import _runners

    monkeypatch.setattr(_runners, "_RUNNERS", {})
    with pytest.raises(_runners.RunnerNotRegisteredError, match=r"import spotkit\.pipelines") \
            as info:
        TomoPipeline.from_dict(SIMPLE).run(scan[0], tmp_path / "never.h5")
    assert info.value.name == "tomo.pipeline"
    assert "TomoPipeline.run" in str(info.value)
    assert not (tmp_path / "never.h5").exists()


def test_the_steps_on_arrays_match_a_run(tmp_path, scan):
    """The science half (apply_projections, center_output, reconstruct_block) on arrays
    gives the runner's volume: nothing but reading and writing happens in the runner."""
    from spotkit.io import open_tomo

    path, truth = scan
    pipe = TomoPipeline.from_dict(SIMPLE)
    ds = open_tomo(path)
    proj, flats, darks = (ds[k].values for k in ("data", "flats", "darks"))
    theta = np.deg2rad(ds["theta"].values)
    rows = pipe.center_rows(pipe.steps[2], 0, proj.shape[1])
    block = pipe.apply_projections(proj[:, rows], flats[:, rows], darks[:, rows],
                                   steps=pipe.steps[:2])
    side = {"center": pipe.center_output(pipe.steps[2], block, theta, {})}
    assert side["center"]["center"] == pytest.approx(truth.center, abs=0.5)
    done = pipe.apply_projections(proj, flats, darks, side)
    vol, info = pipe.reconstruct_block(done, theta, side, pixel_um=truth.pixel_size_um)
    res = pipe.run(path, tmp_path / "run.h5")
    assert res.side_outputs["center"]["center"] == side["center"]["center"]
    with h5py.File(res.output) as f:
        np.testing.assert_allclose(f["recon"][...], vol, rtol=1e-4, atol=1e-4)
    assert info.backend == res.backend["backend"]


def test_run_tomo_writes_a_pyramid_for_viewing(tmp_path):
    """pyramid=True adds coarse levels beside the volume; small volumes get none by default."""
    from spotkit.io import open_volume, pyramid_path
    from spotkit.pipelines._tomo import run_tomo
    from spotkit.sim import simulate_tomo_scan

    truth = simulate_tomo_scan(tmp_path / "scan.h5", shape=(61, 4, 128), seed=3)
    pipe = TomoPipeline.default(algorithm="fbp")
    run_tomo(pipe, truth.path, tmp_path / "vol.h5", pyramid=True)
    run_tomo(pipe, truth.path, tmp_path / "small.h5")
    assert pyramid_path(tmp_path / "vol.h5").exists()
    assert not pyramid_path(tmp_path / "small.h5").exists()
    with open_volume(tmp_path / "vol.h5") as vol:
        shapes = [level.shape for level in vol.levels]
        full = vol.read_plane(0, 1)
    assert shapes[0] == (4, 128, 128)
    assert shapes[1] == (2, 64, 64)
    with h5py.File(tmp_path / "vol.h5") as f:
        np.testing.assert_array_equal(full, f["recon"][1])
