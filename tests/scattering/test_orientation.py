"""Image orientation of PONI files (Dioptas flips up-down) and the geometry sanity check.

The conversion is checked against pyFAI's own detector orientation flags (2: up-down,
4: left-right, 1: both), and the Dioptas cases against PONI files written the way Dioptas
writes them (before 0.6.1: plain pyFAI PONI of the flipped image; from 0.6.1: the same
numbers with ``"orientation": 2`` and ``"max_shape": null`` in ``Detector_config``).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from spotkit.io import ORIENTATIONS, load_geometry, save_geometry
from spotkit.scattering import (
    FLIPS,
    GeometryError,
    GeometryWarning,
    OrientationCheck,
    beamstop_mask,
    check_orientation,
    flip_geometry,
    geometry_summary,
    integrate_1d,
    integrate_frames,
    make_geometry,
)

SHAPE = (256, 256)
TILTED = {"dist": 0.1, "poni1": 0.005, "poni2": 0.01, "rot1": 0.02, "rot2": -0.03, "rot3": 0.1}


def _pyfai_geometry(orientation, shape=(200, 300), max_shape=True):
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    det = Detector(pixel1=1e-4, pixel2=1.2e-4, max_shape=shape if max_shape else None,
                   orientation=orientation)
    return AzimuthalIntegrator(detector=det, wavelength=1e-10, **TILTED)


def _tth(ai, shape):
    return ai.center_array(shape, unit="2th_rad", scale=False)


@pytest.mark.parametrize(("flip", "code", "view"), [
    ("flipud", 2, np.flipud), ("fliplr", 4, np.fliplr), ("rot180", 1, lambda a: a[::-1, ::-1])])
def test_flip_geometry_is_pyfais_orientation(flip, code, view):
    shape = (200, 300)
    native = _pyfai_geometry(3)
    flipped = flip_geometry(native, flip)
    # integrating image with the flipped geometry = integrating the flipped image as given
    np.testing.assert_allclose(_tth(flipped, shape), view(_tth(native, shape)), atol=1e-12)
    # and the same as pyFAI's own orientation flag for that flip
    np.testing.assert_allclose(_tth(flipped, shape), _tth(_pyfai_geometry(code), shape),
                               atol=1e-12)
    assert int(flipped.detector.orientation) == 3
    back = flip_geometry(flipped, flip)  # each flip is its own inverse
    for key, value in TILTED.items():
        assert getattr(back, key) == pytest.approx(value, abs=1e-15)


def test_flip_geometry_needs_a_shape():
    ai = _pyfai_geometry(3, max_shape=False)
    with pytest.raises(GeometryError, match="shape") as err:
        flip_geometry(ai, "flipud")
    assert err.value.field == "shape"
    assert flip_geometry(ai, "flipud", shape=(200, 300)).detector.shape == (200, 300)
    with pytest.raises(ValueError, match="unknown flip 'transpose'"):
        flip_geometry(ai, "transpose", shape=(200, 300))
    assert set(FLIPS) < set(ORIENTATIONS)


def _old_dioptas_poni(path, ai):
    """A PONI as Dioptas < 0.6.1 saved it: pyFAI's plain format, no orientation field."""
    path.write_text(
        "# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis\n"
        f"PixelSize1: {ai.detector.pixel1}\nPixelSize2: {ai.detector.pixel2}\n"
        f"Distance: {ai.dist}\nPoni1: {ai.poni1}\nPoni2: {ai.poni2}\nRot1: {ai.rot1}\n"
        f"Rot2: {ai.rot2}\nRot3: {ai.rot3}\nSplineFile: None\nWavelength: {ai.wavelength}\n")
    return path


def _new_dioptas_poni(path, ai):
    """As Dioptas >= 0.6.1 saves it: its (flipped-image) numbers with orientation 2."""
    config = {"pixel1": ai.detector.pixel1, "pixel2": ai.detector.pixel2, "max_shape": None,
              "orientation": 2}
    path.write_text(
        "# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis\nponi_version: 2.1\n"
        f"Detector: Detector\nDetector_config: {json.dumps(config)}\n"
        f"Distance: {ai.dist}\nPoni1: {ai.poni1}\nPoni2: {ai.poni2}\nRot1: {ai.rot1}\n"
        f"Rot2: {ai.rot2}\nRot3: {ai.rot3}\nWavelength: {ai.wavelength}\n")
    return path


def _profile(image, ai):
    return integrate_1d(image, ai, npt=200, unit="2th_deg", check_orientation=False,
                        radial_range=(0.2, 4.0)).intensity.values


def test_dioptas_poni_is_converted_and_a_flipped_one_warns(fake_calibrant, tmp_path):
    truth, image = fake_calibrant("AgBh", distance_m=0.40, beam_center=(60.3, 135.7))
    dioptas = flip_geometry(truth, "flipud")  # what Dioptas calibrates on its flipped view
    old = _old_dioptas_poni(tmp_path / "old.poni", dioptas)
    ref = _profile(image, truth)

    as_file = load_geometry(old, shape=SHAPE)
    wrong = _profile(image, as_file)
    ok = np.isfinite(ref) & np.isfinite(wrong)
    assert np.corrcoef(ref[ok], wrong[ok])[0, 1] < 0.5  # issue 11: 0.13, with no warning
    with pytest.warns(GeometryWarning, match="flipped image.*orientation='dioptas'"):
        integrate_1d(image, as_file, npt=200)
    check = check_orientation(image, as_file, warn=False)
    assert isinstance(check, OrientationCheck)
    assert not check.consistent
    assert check.best == "flipud"

    fixed = load_geometry(old, shape=SHAPE, orientation="dioptas")
    np.testing.assert_allclose(_tth(fixed, SHAPE), _tth(truth, SHAPE), atol=1e-12)
    assert geometry_summary(fixed)["beam_center"] == pytest.approx([60.3, 135.7])
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeometryWarning)
        right = integrate_1d(image, fixed, npt=200, unit="2th_deg", radial_range=(0.2, 4.0))
    np.testing.assert_allclose(right.intensity.values, ref, rtol=1e-6)
    assert load_geometry(old, shape=SHAPE, orientation="flipud").poni1 == pytest.approx(
        fixed.poni1)
    # saved by spotkit, the geometry says its orientation and reads back as it is
    back = load_geometry(save_geometry(fixed, tmp_path / "fixed.poni"), shape=SHAPE)
    np.testing.assert_allclose(_tth(back, SHAPE), _tth(truth, SHAPE), atol=1e-12)


def test_dioptas_poni_with_orientation_field(fake_calibrant, tmp_path):
    truth, _ = fake_calibrant("AgBh", distance_m=0.40, beam_center=(60.3, 135.7))
    new = _new_dioptas_poni(tmp_path / "new.poni", flip_geometry(truth, "flipud"))
    # pyFAI ignores an orientation without a detector shape; spotkit asks for it
    with pytest.raises(GeometryError, match=r"shape=\(rows, cols\)"):
        load_geometry(new)
    for orientation in ("as-file", "dioptas"):
        ai = load_geometry(new, shape=SHAPE, orientation=orientation)
        np.testing.assert_allclose(_tth(ai, SHAPE), _tth(truth, SHAPE), atol=1e-12)
        assert int(ai.detector.orientation) == 3
    with pytest.warns(GeometryWarning, match="declares detector orientation 2"):
        twice = load_geometry(new, shape=SHAPE, orientation="flipud")
    np.testing.assert_allclose(_tth(twice, SHAPE), np.flipud(_tth(truth, SHAPE)), atol=1e-12)
    with pytest.raises(ValueError, match="unknown orientation 'upside-down'"):
        load_geometry(new, shape=SHAPE, orientation="upside-down")


@pytest.mark.parametrize("beam_center", [(60.3, 135.7), (128.0, 128.0), (200.2, 30.5)])
def test_check_orientation_on_right_and_flipped_geometries(fake_calibrant, beam_center):
    truth, image = fake_calibrant("AgBh", distance_m=0.40, beam_center=beam_center)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeometryWarning)
        right = check_orientation(image, truth)
    assert right.consistent
    assert right.best == "as-given"
    assert right.sharpness["as-given"] > 0.3
    for flip in FLIPS:
        wrong = check_orientation(image, flip_geometry(truth, flip), warn=False)
        assert not wrong.consistent
        assert wrong.best == flip


def test_check_orientation_no_false_alarm(saxs, saxs_frames, saxs_ai, gisaxs):
    """Correct geometries of the twin's SAXS and GISAXS frames, noise, a gradient: no alarm."""
    from spotkit.io import open_saxs

    cases = [(saxs_frames[i].values, saxs_ai) for i in (0, 7)]
    cases.append((open_saxs(gisaxs.path)[1].values, load_geometry(gisaxs.poni_path)))
    rng = np.random.default_rng(5)
    ai = make_geometry(energy_kev=12, distance_m=1.0, beam_center=(30, 40), pixel_size_um=172,
                       shape=(300, 200))
    rows, cols = np.mgrid[:300, :200]
    cases += [(rng.poisson(50, (300, 200)), ai), (rng.poisson(10 + 0.5 * cols + rows), ai),
              (np.zeros((300, 200)), ai)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeometryWarning)
        for image, geometry in cases:
            assert check_orientation(image, geometry).consistent
        integrate_frames(saxs_frames.values[:2], saxs_ai, npt=50)


def test_check_orientation_mask(saxs):
    # the twin's beam is near the detector's middle: move it to test a flipped mask
    ai = make_geometry(energy_kev=10, distance_m=2.0, beam_center=(40.0, 120.0),
                       pixel_size_um=172, shape=saxs.shape)
    mask = beamstop_mask(saxs.shape, (40.0, 120.0), 6)
    mask[95:100, :] = True  # a module gap line
    assert check_orientation(None, ai, mask=mask).mask_best == "as-given"
    flipped = np.flipud(mask)
    with pytest.warns(GeometryWarning, match="mask flipud has its beamstop there"):
        check = check_orientation(None, ai, mask=flipped)
    assert check.mask_best == "flipud"
    assert not check.consistent
    with pytest.warns(GeometryWarning, match="beamstop"):
        integrate_frames(np.zeros((1, *saxs.shape), np.int32), ai, npt=20, mask=flipped)
    gaps_only = np.zeros(saxs.shape, bool)
    gaps_only[95:100, :] = True
    gaps_only[:, 239:248] = True
    assert check_orientation(None, ai, mask=gaps_only).consistent  # a gap is no beamstop
