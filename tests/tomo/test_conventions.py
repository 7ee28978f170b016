"""tomopy's conventions, tested against data tomopy 1.15.2 made itself: angle units, and centre
finding on tomopy-projected sinograms with stripes, noise, shifts, 360° and truncation."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from spotkit.tomo import (
    CONVENTION,
    CenterEstimate,
    CenterWarning,
    center_sweep,
    find_center,
    find_center_pc,
    find_center_vo,
    reconstruct,
)

REFERENCE = Path(__file__).parents[1] / "reference" / "tomopy-1.15.2" / "conventions.npz"


@pytest.fixture(scope="module")
def ref():
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


def _stripy(sino, shift, *, seed, stripes=0.05, share=0.05, counts=5000.0):
    """``sino`` moved right by ``shift`` columns (centre + shift), Poisson noise, gain stripes."""
    rng = np.random.default_rng(seed)
    moved = ndimage.shift(sino.astype(np.float64), (0, shift), order=3, mode="constant")
    scale = 2.0 / moved.max()  # optical depth up to 2
    counts_ = rng.poisson(counts * np.exp(-moved * scale)) / counts
    out = -np.log(np.maximum(counts_, 1e-3)) / scale
    n = sino.shape[1]
    gain = np.ones(n)
    cols = rng.choice(n, max(1, int(share * n)), replace=False)
    gain[cols] += rng.normal(0, stripes, cols.size)
    return (out - np.log(gain)[None] / scale).astype(np.float32)


# ----------------------------------------------------------------------------- angles


def test_degrees_are_refused_with_a_clear_error(ref):
    theta_deg = np.rad2deg(ref["theta"])
    with pytest.raises(ValueError, match="degrees"):
        reconstruct(ref["sino_mid"], theta_deg, 128.0)
    with pytest.raises(ValueError, match="degrees"):
        find_center(ref["sino_mid"], theta_deg)
    with pytest.raises(ValueError, match="degrees"):
        center_sweep(ref["sino_mid"], theta_deg, [127.0, 128.0])


def test_xarray_theta_in_degrees_is_converted(ref):
    theta = xr.DataArray(np.rad2deg(ref["theta"]), dims="angle", attrs={"units": "degrees"})
    expected = reconstruct(ref["sino_mid"], ref["theta"], 128.0, backend="builtin")
    got = reconstruct(ref["sino_mid"], theta, 128.0, backend="builtin")
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
    assert float(find_center(ref["sino_mid"], theta)) == pytest.approx(128.0, abs=0.25)
    with pytest.raises(ValueError, match="units 'gradians'"):
        reconstruct(ref["sino_mid"], theta.assign_attrs(units="gradians"), 128.0)


def test_full_turn_in_radians_is_accepted(ref):
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    sino = np.concatenate([ref["sino_mid"], ref["sino_mid"][:, ::-1]])  # p(θ+π, u) mirrored
    # a centre of 128 on 256 columns mirrors column j onto 255 - j exactly
    c = find_center(sino, theta)
    assert float(c) == pytest.approx(128.0, abs=0.25)


def test_convention_is_stated():
    assert CONVENTION["name"] == "tomopy"
    assert "- y sin" in CONVENTION["orientation"]


# ----------------------------------------------------------------------------- centres


@pytest.mark.parametrize("case", ["mid", "off"])
@pytest.mark.parametrize("method", ["vo", "pc", "sinusoid"])
def test_finders_return_tomopys_centre(ref, case, method):
    """Within 0.25 px of the centre tomopy's projector used (tomopy's own find_center_vo
    answers half a pixel lower: 127.5 and 120.75). 'pc' pairs 0° with 179° here (no 180°
    projection) and corrects to first order only: 0.34 px off on 'off', so 0.4 for it."""
    c = find_center(ref[f"sino_{case}"], ref["theta"], method=method)
    tolerance = 0.4 if method == "pc" else 0.25
    assert float(c) == pytest.approx(float(ref[f"center_{case}"]), abs=tolerance)
    assert float(ref[f"vo_{case}"]) == pytest.approx(float(ref[f"center_{case}"]) - 0.5, abs=0.1)


@pytest.mark.parametrize("shift", [-37.3, -8.0, 0.0, 4.6, 21.25])
def test_default_finder_on_stripy_noisy_shifted_tomopy_data(ref, shift):
    truth = float(ref["center_mid"]) + shift
    sino = _stripy(ref["sino_mid"], shift, seed=int(abs(shift) * 10))
    c = find_center(sino, ref["theta"])
    assert c.method == "vo"
    assert abs(float(c) - truth) < 0.25, (float(c), truth)
    assert c.check_method == "pc" or c.check_method is None


@pytest.mark.parametrize("method", ["vo", "pc"])
def test_strong_stripes_do_not_pull_the_centre(ref, method):
    sino = _stripy(ref["sino_off"], 3.0, seed=5, stripes=0.2, share=0.08)
    truth = float(ref["center_off"]) + 3.0
    assert abs(find_center(sino, ref["theta"], method=method, check=False) - truth) < 0.5


def test_sample_partly_outside_the_field_of_view(ref):
    """Columns 0..25 cut away: the phantom leaves the detector on the left. 'vo' still finds
    the axis; 'sinusoid' is told it is biased."""
    sino = ref["sino_mid"][:, 26:]
    truth = float(ref["center_mid"]) - 26
    c = find_center(sino, ref["theta"])
    assert abs(float(c) - truth) < 0.5
    with pytest.warns(CenterWarning, match="outside the field of view"):
        find_center(sino, ref["theta"], method="sinusoid", check=False)


def test_disagreement_edge_and_flat_metric_warn(ref):
    theta = ref["theta"]
    with pytest.warns(CenterWarning, match="edge of the search range"):
        c = find_center(ref["sino_off"], theta, search=(124.0, 140.0))
    assert not c.ok
    assert any("edge" in w for w in c.warnings)
    noise = np.random.default_rng(0).normal(0, 1, ref["sino_mid"].shape)
    with pytest.warns(CenterWarning):
        c = find_center(noise, theta)
    assert c.warnings
    # something that does not turn with the sample (25 columns at every angle) pulls the
    # centre of mass: 'sinusoid' and its 'vo' cross-check end up 2.4 px apart
    static = ref["sino_mid"].copy()
    static[:, 215:240] += 0.5 * static.max()
    with pytest.warns(CenterWarning, match="apart"):
        c = find_center(static, theta, method="sinusoid")
    assert c.disagreement > 1.0


def test_center_estimate_is_a_float_with_a_record(ref):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CenterWarning)  # a clean case raises none
        c = find_center(ref["sino_mid"], ref["theta"])
    assert isinstance(c, float)
    assert isinstance(c, CenterEstimate)
    assert c.ok
    assert c + 1 == pytest.approx(float(c) + 1)
    record = c.to_dict()
    assert record["method"] == "vo"
    assert record["check_method"] == "pc"
    assert record["convention"] == "tomopy"
    assert record["sharpness"] > 0.02
    import pickle

    again = pickle.loads(pickle.dumps(c))
    assert float(again) == float(c)
    assert again.check_center == c.check_center


def test_public_finders_agree_on_tomopys_value(ref):
    assert find_center_vo(ref["sino_off"], ref["theta"]) == pytest.approx(121.3, abs=0.25)
    assert find_center_pc(ref["sino_off"], ref["theta"]) == pytest.approx(121.3, abs=0.4)
