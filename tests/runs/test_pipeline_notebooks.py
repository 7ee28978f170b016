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
    res = spotkit.run_notebook(pipeline_notebook("tomo_quicklook"), raw.id, catalog=catalog,
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
    res = spotkit.run_notebook(pipeline_notebook("saxs_quicklook"), raw.id, catalog=catalog,
                               parameters={"npt": 120}, output_dir=tmp_path / "out")
    iq = next(o for o in res.outputs if o.kind == "saxs/iq")
    with h5py.File(iq.path) as f:
        intensity = f["intensity"][...]
        q = f["q"][...]
    assert intensity.shape == (12, 120)
    # the ordering ring at ring_q_nm grows after the onset frame
    k = int(np.argmin(abs(q - truth.ring_q_nm)))
    before = intensity[: truth.onset_frame, k].mean()
    after = intensity[-1, k]
    assert after > 1.2 * before
