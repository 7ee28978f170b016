"""A beamstop mask that does not fit the detector is an error; I(q) has no bins that are not
measurements (behind the beamstop, slivers of pixels at the far corner)."""

from __future__ import annotations

import numpy as np
import pytest

from spotkit.scattering import beamstop_mask, integrate_1d, integrate_frames, shadow_mask

SHAPE = (195, 487)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    from spotkit.io import load_geometry, open_saxs
    from spotkit.sim import simulate_saxs_series

    path = tmp_path_factory.mktemp("saxs") / "film.h5"
    truth = simulate_saxs_series(path, n_frames=4, onset_frame=2, seed=5)
    frames = open_saxs(path)
    return truth, frames, load_geometry(truth.poni_path)


# -- beamstop_mask on a detector it does not fit --------------------------------------------

@pytest.mark.parametrize(("center", "radius", "kwargs", "words"), [
    ((500.0, 240.0), 10, {}, ["center (500, 240)", "outside", "(195, 487)"]),
    ((-40.0, -40.0), 20, {}, ["center (-40, -40)", "outside", "(195, 487)"]),
    ((96.7, 243.4), 5000, {}, ["radius 5000", "every pixel", "(195, 487)", "micrometres"]),
    ((96.7, 243.4), 0.2, {}, ["radius 0.2", "too small", "(195, 487)"]),
    ((96.7, 243.4), 400, {"arm_width": 10}, ["radius 400", "every pixel"]),
])
def test_a_beamstop_that_does_not_fit_is_refused(center, radius, kwargs, words):
    with pytest.raises(ValueError, match="beamstop_mask") as info:
        beamstop_mask(SHAPE, center, radius, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize(("shape", "center", "radius", "name"), [
    ((195,), (10, 10), 3, "shape"),
    ((0, 10), (0, 0), 3, "shape"),
    (SHAPE, (np.nan, 10), 3, "center"),
    (SHAPE, (10,), 3, "center"),
    (SHAPE, (10, 10), np.inf, "radius"),
    (SHAPE, (10, 10), -1, "radius"),
])
def test_bad_values_name_the_parameter(shape, center, radius, name):
    with pytest.raises(ValueError, match=name):
        beamstop_mask(shape, center, radius)


def test_legitimate_beamstops_still_work():
    # centred
    disc = beamstop_mask(SHAPE, (96.7, 243.4), 11.7)
    assert 0 < disc.sum() < 0.05 * disc.size
    # a beam centre off the detector (GISAXS) whose disc reaches in
    edge = beamstop_mask(SHAPE, (-5.0, 240.0), 12)
    assert edge.any()
    assert not edge[20:].any()
    # centre off the detector, but the arm crosses it
    arm = beamstop_mask(SHAPE, (-30.0, 240.0), 5, arm_width=6, arm_direction="down")
    assert arm[:, 237:244].all()
    # a radius of zero on a pixel centre masks that pixel
    assert beamstop_mask((5, 5), (2, 2), 0).sum() == 1


# -- the beamstop's own rings are masked ---------------------------------------------------

def test_shadow_mask_covers_rings_wholly_behind_the_beamstop(series):
    truth, frames, ai = series
    first = frames[:4].mean("frame").values
    mask = shadow_mask(first, ai, fraction=0.2)
    behind = truth.beamstop_mask()
    # before: the rings fully behind the disc had a dark median and were left unmasked
    assert mask[behind].mean() > 0.97
    assert mask[~behind & ~truth.gap_mask()].mean() < 0.02  # and little else


def test_quicklook_profile_has_no_beamstop_bins(series):
    _, frames, ai = series
    first = frames[:4].mean("frame").values
    mask = shadow_mask(first, ai, fraction=0.2)
    iq = integrate_1d(first, ai, npt=300, mask=mask)
    valid = np.isfinite(iq["intensity"].values)
    intensity = iq["intensity"].values[valid]
    # SAXS falls with q from the beamstop's edge: no dark bins before the maximum
    assert np.argmax(intensity) <= 2
    assert intensity[:5].min() > 0.5 * intensity.max()


def test_bins_with_too_few_pixels_are_nan(series):
    truth, frames, ai = series
    first = frames[:4].mean("frame").values
    mask = truth.beamstop_mask() | truth.gap_mask()
    res = ai.integrate1d(first, 1000, unit="q_nm^-1", method="csr", mask=mask,
                         error_model="poisson")
    count = np.asarray(res.count)
    assert (count[count > 0] < 1).any()  # the far corner: slivers of a pixel
    default = integrate_1d(first, ai, npt=1000, mask=mask)["intensity"].values
    np.testing.assert_array_equal(np.isnan(default), count <= 0)  # every measured bin
    one = integrate_1d(first, ai, npt=1000, mask=mask, min_pixels=1)["intensity"].values
    np.testing.assert_array_equal(np.isnan(one), count < 1)
    strict = integrate_1d(first, ai, npt=1000, mask=mask, min_pixels=20)
    np.testing.assert_array_equal(np.isnan(strict["intensity"].values), count < 20)
    assert strict.attrs["min_pixels"] == 20
    lazy = integrate_frames(frames.data, ai, npt=1000, mask=mask, min_pixels=20).compute()
    np.testing.assert_array_equal(np.isnan(lazy["intensity"].values[0]), count < 20)
    with pytest.raises(ValueError, match="min_pixels"):
        integrate_1d(first, ai, npt=100, mask=mask, min_pixels=-1)


# -- calibrate uses pyFAI's current API ------------------------------------------------------

def test_calibrate_triggers_no_pyfai_deprecation(fake_calibrant, caplog):
    import logging
    import warnings

    from spotkit.scattering import calibrate, make_geometry

    _, image = fake_calibrant("AgBh", distance_m=0.40, beam_center=(120.3, 135.7))
    guess = make_geometry(energy_kev=12.4, distance_m=0.412, beam_center=(124.3, 132.7),
                          pixel_size_um=172, shape=(256, 256))
    with caplog.at_level(logging.DEBUG, logger="pyFAI"), warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", PendingDeprecationWarning)
        result = calibrate(image, "AgBh", geometry=guess, refine=("distance", "beam_center",
                                                                  "tilt"))
    assert result.n_rings >= 3
    deprecations = [r.getMessage() for r in caplog.records
                    if "deprecat" in r.getMessage().lower() or "DEPRECATION" in r.name]
    assert deprecations == []
