"""The shipped pipeline notebooks run for real on tiny simulated data."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import spotkit
from spotkit.runs import pipeline_notebook

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


def test_tomo_quicklook_reconstructs_the_phantom(tmp_path, catalog, tiny_tomo):
    path, truth = tiny_tomo
    raw = catalog.ingest(path)
    # by name, as the CLI and submit take it
    res = spotkit.run_notebook("tomo_quicklook", raw.id, catalog=catalog,
                               parameters={"n_slices": 2}, output_dir=tmp_path / "out")
    kinds = sorted(o.kind for o in res.outputs)
    assert kinds == ["image/png", "tomo/slices"]
    slices_ds = next(o for o in res.outputs if o.kind == "tomo/slices")
    with h5py.File(slices_ds.path) as f:
        slices = f["slices"][...]
        rows = f["slices"].attrs["rows"]
        center = f["slices"].attrs["center"]
    assert abs(center - truth.center) < 0.5
    for img, row in zip(slices, rows, strict=True):
        ref = truth.phantom_slice(int(row), n=img.shape[0])
        inside = ref > 0
        corr = np.corrcoef(img.ravel(), ref.ravel())[0, 1]
        assert corr > 0.8
        # quantitative: mean attenuation inside the sample within 15 % (1/cm)
        assert img[inside].mean() == pytest.approx(ref[inside].mean(), rel=0.15)
    assert slices_ds.to_dask().shape == slices.shape


def test_saxs_quicklook_reduces_every_frame(tmp_path, catalog, tiny_saxs):
    path, truth = tiny_saxs
    raw = catalog.ingest(path)
    res = spotkit.run_notebook("saxs_quicklook.ipynb", raw.id, catalog=catalog,
                               parameters={"npt": 120}, output_dir=tmp_path / "out")
    iq = next(o for o in res.outputs if o.kind == "saxs/iq")
    with h5py.File(iq.path) as f:
        intensity = f["intensity"][...]
        q = f["q"][...]
    assert intensity.shape == (12, 120)
    assert iq.metadata["min_pixels"] == 10
    # no bin behind the beamstop: SAXS falls from the beamstop's edge outwards
    measured = np.isfinite(intensity).all(axis=0)
    assert measured.sum() > 100
    profile = intensity[0, measured]
    assert np.argmax(profile) <= 2
    assert profile[:5].min() > 0.5 * profile.max()
    assert "without encryption" not in res.output_notebook.read_text()
    # the ordering ring at ring_q_nm grows after the onset frame
    k = int(np.argmin(abs(q - truth.ring_q_nm)))
    before = intensity[: truth.onset_frame, k].mean()
    after = intensity[-1, k]
    assert after > 1.2 * before


def test_saxs_reduce_detects_the_onset_writes_nxcansas_and_marks_frames(tmp_path, catalog):
    import json

    from spotkit.io import read_nxcansas
    from spotkit.sim import simulate_saxs_series

    path = tmp_path / "raw" / "film.h5"
    path.parent.mkdir()
    truth = simulate_saxs_series(path, n_frames=60, onset_frame=41, ring_growth_frames=2,
                                 seed=11, sample="film-7")
    raw = catalog.ingest(path)
    res = spotkit.run_notebook(pipeline_notebook("saxs_reduce"), raw.id, catalog=catalog,
                               parameters={"npt": 150, "keep_every": 10},
                               output_dir=tmp_path / "out")
    by_kind = {o.kind: o for o in res.outputs}
    assert sorted(by_kind) == ["image/png", "saxs/change-report", "saxs/frames-of-interest",
                               "saxs/reduced"]
    report = json.loads(by_kind["saxs/change-report"].path.read_text())
    (change,) = report["changes"]
    assert abs(change["onset"] - truth.onset_frame) <= 1
    assert change["confidence"] > 0.9
    assert report["onsets_on_reduced_profiles"]
    assert abs(report["onsets_on_reduced_profiles"][0] - truth.onset_frame) <= 1
    # the reduced product: NXcanSAS, one entry per frame, the ring where the truth has it
    iq = read_nxcansas(by_kind["saxs/reduced"].path)
    assert iq["intensity"].shape == (60, 150)
    k = int(np.argmin(abs(iq.q.values - truth.ring_q_nm)))
    assert float(iq["intensity"][-1, k]) > 1.2 * float(iq["intensity"][:30, k].mean())
    # the catalog marks every frame, attributed to the run; change frames are of interest
    marks = catalog.frame_marks(raw)
    assert [m["frame"] for m in marks] == list(range(60))
    assert {m["run_id"] for m in marks} == {res.run_id}
    labels = [m["label"] for m in marks]
    first, last = report["reduction"]["windows"][0]
    assert first <= truth.onset_frame - 3
    assert last >= truth.onset_frame + 1 + 3  # the 2-frame ramp, then keep_after
    assert all(labels[f] == "of interest" for f in range(first, last + 1))
    assert labels.count("redundant") >= 25
    assert report["reduction"]["reduction_factor"] > 1.5
    # the kept frames as a file of the raw layout: exactly the frames marked of interest
    kept = spotkit.io.open_saxs(by_kind["saxs/frames-of-interest"].path)
    assert kept.shape[0] == labels.count("of interest")
    full = spotkit.io.open_saxs(path)
    first_kept = next(m["frame"] for m in marks if m["label"] == "of interest")
    np.testing.assert_array_equal(kept[0].values, full[first_kept].values)
