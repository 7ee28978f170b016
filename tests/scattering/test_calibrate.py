"""Calibration on a faked image of a standard recovers the true distance and beam centre."""

from __future__ import annotations

import numpy as np
import pytest

from spotkit.scattering import GeometryError, calibrate, make_geometry

SHAPE = (256, 256)


def _fake(name, *, distance_m, beam_center, shape=SHAPE, resolution=0.02, seed=0):
    from pyFAI.calibrant import get_calibrant

    truth = make_geometry(energy_kev=12.4, distance_m=distance_m, beam_center=beam_center,
                          pixel_size_um=172, shape=shape)
    cal = get_calibrant(name)
    cal.wavelength = truth.wavelength
    image = cal.fake_calibration_image(truth, Imax=1000, Imin=10, resolution=resolution)
    image = np.random.default_rng(seed).poisson(image).astype(np.int32)
    image[100:104, :] = -1  # a module gap
    return image


def test_agbh_recovers_distance_and_beam_centre():
    image = _fake("AgBh", distance_m=0.40, beam_center=(120.3, 135.7))
    guess = make_geometry(energy_kev=12.4, distance_m=0.40 * 1.03, beam_center=(124.3, 132.7),
                          pixel_size_um=172, shape=SHAPE)
    result = calibrate(image, "AgBh", geometry=guess)
    assert result.distance_m == pytest.approx(0.40, rel=2e-4)
    assert result.beam_center == pytest.approx((120.3, 135.7), abs=0.05)
    assert result.n_rings >= 3
    assert result.rms_error_deg < 1e-3
    assert result.initial["distance_m"] == pytest.approx(0.412)
    assert result.integrator.dist == pytest.approx(result.distance_m)


@pytest.mark.slow
def test_lab6_waxs_recovers_distance_and_beam_centre():
    shape = (400, 400)
    image = _fake("LaB6", distance_m=0.10, beam_center=(190.6, 210.2), shape=shape,
                  resolution=0.05)
    guess = make_geometry(energy_kev=12.4, distance_m=0.103, beam_center=(193.6, 207.2),
                          pixel_size_um=172, shape=shape)
    result = calibrate(image, "LaB6", geometry=guess)
    assert result.distance_m == pytest.approx(0.10, rel=5e-4)
    assert result.beam_center == pytest.approx((190.6, 210.2), abs=0.1)


def test_calibration_errors():
    image = _fake("AgBh", distance_m=0.40, beam_center=(120.3, 135.7))
    guess = make_geometry(energy_kev=12.4, distance_m=0.4, beam_center=(120, 135),
                          pixel_size_um=172, shape=SHAPE)
    with pytest.raises(ValueError, match="unknown calibrant 'AgBeh'; choose one of"):
        calibrate(image, "AgBeh", geometry=guess)
    with pytest.raises(ValueError, match="unknown refine option"):
        calibrate(image, "AgBh", geometry=guess, refine=("centre",))
    with pytest.raises(GeometryError, match="another detector"):
        calibrate(image[:200], "AgBh", geometry=guess)
    blank = np.random.default_rng(3).poisson(10.0, SHAPE)
    with pytest.raises(ValueError, match=r"control point|do not fit|shows no ring of AgBh"):
        calibrate(blank, "AgBh", geometry=guess)
