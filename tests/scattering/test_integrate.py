"""1-D and 2-D integration and lazy series reduction, checked against the twin's truth."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest

from spotkit.io import load_geometry
from spotkit.scattering import (
    FrameReducer,
    beamstop_mask,
    integrate_1d,
    integrate_2d,
    integrate_frames,
)


def _ring_mask(truth):
    return beamstop_mask(truth.shape, truth.beam_center, truth.beamstop_radius_px,
                         arm_width=0.8 * truth.beamstop_radius_px)


def _peak(ds, before, after, dim):
    diff = (ds.intensity[after] - ds.intensity[before]).values
    return float(ds[dim][np.nanargmax(diff)]), float(ds[dim][1] - ds[dim][0])


@pytest.mark.parametrize(("unit", "scale"), [("q_nm^-1", 1.0), ("q_A^-1", 0.1)])
def test_ring_lands_at_the_true_q(saxs, saxs_frames, saxs_ai, unit, scale):
    iq = integrate_frames(saxs_frames, saxs_ai, npt=250, unit=unit, mask=_ring_mask(saxs))
    assert iq.q.attrs["units"] == unit.split("_", 1)[1]
    q, step = _peak(iq.compute(), 0, -1, "q")
    assert q == pytest.approx(saxs.ring_q_nm * scale, abs=1.5 * step)


def test_two_theta_is_consistent_with_the_wavelength(saxs, saxs_frames, saxs_ai):
    expected = 2 * math.degrees(math.asin(saxs.ring_q_nm * saxs.wavelength_nm / (4 * math.pi)))
    iq = integrate_frames(saxs_frames, saxs_ai, npt=250, unit="2th_deg").compute()
    assert iq.two_theta.attrs["units"] == "deg"
    tth, step = _peak(iq, 0, -1, "two_theta")
    assert tth == pytest.approx(expected, abs=1.5 * step)


def test_no_ring_before_the_onset(saxs, saxs_frames, saxs_ai):
    iq = integrate_frames(saxs_frames, saxs_ai, npt=200, mask=_ring_mask(saxs)).compute()
    near = np.abs(iq.q - saxs.ring_q_nm) < 0.05
    before = iq.intensity[: saxs.onset_frame].where(near).mean().item()
    after = iq.intensity[saxs.onset_frame:].where(near).mean().item()
    pre = iq.intensity[: saxs.onset_frame // 2].where(near).mean().item()
    pre2 = iq.intensity[saxs.onset_frame // 2: saxs.onset_frame].where(near).mean().item()
    assert after > 2 * before
    assert pre == pytest.approx(pre2, rel=0.05)


def test_poisson_sigma_matches_the_frame_to_frame_scatter(stationary):
    from spotkit.io import open_saxs

    frames = open_saxs(stationary.path)
    ai = load_geometry(stationary.poni_path)
    iq = integrate_frames(frames, ai, npt=100, mask=_ring_mask(stationary)).compute()
    scatter = iq.intensity.std("frame", ddof=1)
    ratio = (scatter / iq.sigma.mean("frame")).median().item()
    assert ratio == pytest.approx(1.0, abs=0.15)


def test_poisson_sigma_is_sqrt_counts_over_normalisation(saxs_ai, saxs):
    counts = 400.0
    image = np.full(saxs.shape, counts)
    iq = integrate_1d(image, saxs_ai, npt=50, method="histogram", correct_solid_angle=False)
    # pixels per bin, counted independently from pyFAI's per-pixel q (no pixel splitting)
    q = saxs_ai.center_array(saxs.shape, unit="q_nm^-1")
    step = float(iq.q[1] - iq.q[0])
    edges = np.concatenate([iq.q.values - step / 2, [iq.q.values[-1] + step / 2]])
    n, _ = np.histogram(q, bins=edges)
    ok = n > 20
    np.testing.assert_allclose(iq.intensity.values[ok], counts, rtol=1e-5)
    np.testing.assert_allclose(iq.sigma.values[ok], np.sqrt(counts / n[ok]), rtol=0.05)
    scaled = integrate_1d(image, saxs_ai, npt=50, method="histogram",
                          correct_solid_angle=False, normalization=4.0)
    np.testing.assert_allclose(scaled.intensity.values[ok], counts / 4, rtol=1e-5)
    np.testing.assert_allclose(scaled.sigma.values, iq.sigma.values / 4, rtol=1e-6)


def test_frames_match_pyfai_called_directly(saxs, saxs_frames, saxs_ai):
    mask = _ring_mask(saxs)
    iq = integrate_frames(saxs_frames, saxs_ai, npt=120, mask=mask).compute()
    frame = saxs_frames[5].values
    ref = saxs_ai.integrate1d(frame.astype(np.float32), 120, unit="q_nm^-1", method="csr",
                              mask=mask | (frame < 0), error_model="poisson")
    np.testing.assert_allclose(iq.q, ref.radial, rtol=1e-6)
    np.testing.assert_allclose(iq.intensity[5], ref.intensity, rtol=1e-4)
    np.testing.assert_allclose(iq.sigma[5], ref.sigma, rtol=1e-4)


def test_series_is_lazy_reuses_the_integrator_and_integrates_only_the_subset(
        saxs_frames, saxs_ai, saxs, monkeypatch):
    ai = load_geometry(saxs.poni_path)
    calls = []
    original = ai.integrate1d

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(ai, "integrate1d", counting)
    reduced = []
    reduce = FrameReducer.reduce

    def counting_reduce(self, frame, **kwargs):
        reduced.append(1)
        return reduce(self, frame, **kwargs)

    monkeypatch.setattr(FrameReducer, "reduce", counting_reduce)
    iq = integrate_frames(saxs_frames, ai, npt=100)
    assert isinstance(iq.intensity.data, da.Array)
    assert len(calls) == 1  # the test frame that builds pyFAI's lookup table
    assert not reduced  # no frame read yet
    engines = {k: e.engine for k, e in ai.engines.items()}
    iq.isel(frame=[2, 6]).compute()
    assert len(reduced) == 2  # two frames, through pyFAI's engine
    assert len(calls) == 1
    assert {k: e.engine for k, e in ai.engines.items()} == engines  # nothing was rebuilt


def test_numpy_frames_give_computed_results_with_provenance(saxs, saxs_frames, saxs_ai,
                                                            tmp_path):
    mask = _ring_mask(saxs)
    iq = integrate_frames(saxs_frames.values[:3], saxs_ai, npt=64, mask=mask,
                          frame_coords=[10.0, 11.0, 12.0], normalization=[1, 2, 4],
                          source="raw.h5")
    assert isinstance(iq.intensity.data, np.ndarray)
    assert iq.frame.values.tolist() == [10.0, 11.0, 12.0]
    attrs = iq.attrs
    assert attrs["method"] == "csr"
    assert attrs["unit"] == "q_nm^-1"
    assert attrs["npt"] == 64
    assert attrs["source"] == "raw.h5"
    assert attrs["mask_n_masked"] == int(mask.sum())
    assert attrs["pyfai_version"]
    poni = tmp_path / "from_attrs.poni"
    poni.write_text(attrs["geometry_poni"])
    assert load_geometry(poni).dist == pytest.approx(saxs_ai.dist)
    # provenance from open_saxs
    full = integrate_frames(saxs_frames, saxs_ai, npt=64)
    assert full.attrs["source"] == str(saxs.path)
    assert full.time.attrs["units"] == "s"


def test_cake_has_the_isotropic_ring(saxs, saxs_frames, saxs_ai):
    frame = saxs_frames[-1].values
    cake = integrate_2d(frame, saxs_ai, npt_rad=150, npt_azim=72, mask=_ring_mask(saxs))
    assert cake.intensity.dims == ("chi", "q")
    assert cake.chi.attrs["units"] == "deg"
    assert cake.q.attrs["units"] == "nm^-1"
    profile = cake.intensity.mean("chi", skipna=True)
    ring = np.abs(cake.q - saxs.ring_q_nm) < 0.03
    at_ring = cake.intensity.where(ring).mean("q")
    valid = at_ring.dropna("chi")
    assert valid.size > 20
    assert float(valid.std() / valid.mean()) < 0.15  # the same ring at every azimuth
    off = np.abs(cake.q - 1.3 * saxs.ring_q_nm) < 0.03
    assert profile.where(ring).mean() > 1.5 * profile.where(off).mean()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"unit": "q_pm^-1"}, r"unknown unit 'q_pm\^-1'; choose one of"),
     ({"method": "magic"}, r"unknown method 'magic'; choose one of"),
     ({"mask": np.zeros((10, 10), bool)}, "mask is 10 x 10 pixels but the frames are 195 x 487"),
     ({"npt": 0}, "npt must be >= 1")],
)
def test_bad_options_fail_before_any_frame_is_read(saxs_frames, saxs_ai, kwargs, match):
    with pytest.raises(ValueError, match=match):
        integrate_frames(saxs_frames, saxs_ai, **kwargs)
    with pytest.raises(ValueError, match=match):
        integrate_1d(saxs_frames[0].values, saxs_ai, **kwargs)


def test_empty_and_malformed_series(saxs_ai):
    with pytest.raises(ValueError, match="empty"):
        integrate_frames(np.zeros((0, 195, 487)), saxs_ai)
    with pytest.raises(ValueError, match="3-D"):
        integrate_frames(np.zeros((195, 487)), saxs_ai)
    with pytest.raises(ValueError, match="normalization has 2 values for 3 frames"):
        integrate_frames(np.zeros((3, 195, 487)), saxs_ai, normalization=[1, 2])


def test_threaded_reduction_equals_one_frame_at_a_time(saxs, saxs_frames):
    # pyFAI integrators are not safe for concurrent calls: chunks must take turns
    import dask

    ai = load_geometry(saxs.poni_path)
    threaded = integrate_frames(saxs_frames, ai, npt=90).compute(scheduler="threads",
                                                                 num_workers=4)
    with dask.config.set(scheduler="synchronous"):
        serial = integrate_frames(saxs_frames, load_geometry(saxs.poni_path), npt=90).compute()
    np.testing.assert_array_equal(threaded.intensity.values, serial.intensity.values)
    np.testing.assert_array_equal(threaded.sigma.values, serial.sigma.values)
