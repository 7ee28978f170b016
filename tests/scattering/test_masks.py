"""Masks: built from gaps, beamstop, hot pixels and thresholds; saved and loaded as files."""

from __future__ import annotations

import numpy as np
import pytest

from spotkit.errors import InputFileError
from spotkit.io import load_mask, save_mask
from spotkit.scattering import (
    beamstop_mask,
    combine_masks,
    gap_mask,
    hot_pixel_mask,
    mask_summary,
    shadow_mask,
    threshold_mask,
)


def test_gap_mask_finds_the_module_gaps(saxs, saxs_frames):
    np.testing.assert_array_equal(gap_mask(saxs_frames[0].values), saxs.gap_mask())


def test_beamstop_mask_matches_the_twins_beamstop(saxs):
    mask = beamstop_mask(saxs.shape, saxs.beam_center, saxs.beamstop_radius_px,
                         arm_width=0.8 * saxs.beamstop_radius_px, arm_direction="down")
    np.testing.assert_array_equal(mask, saxs.beamstop_mask())
    up = beamstop_mask(saxs.shape, saxs.beam_center, 3, arm_width=2, arm_direction="up")
    assert up[0, int(saxs.beam_center[1])]
    assert not up[-1, int(saxs.beam_center[1])]
    with pytest.raises(ValueError, match="unknown arm_direction 'sideways'"):
        beamstop_mask(saxs.shape, saxs.beam_center, 3, arm_direction="sideways")


def test_shadow_mask_covers_the_beamstop(saxs, saxs_frames, saxs_ai):
    mask = shadow_mask(saxs_frames[:3].mean("frame").values, saxs_ai)
    truth = saxs.beamstop_mask() | saxs.gap_mask()
    assert mask[saxs.beamstop_mask()].mean() > 0.9  # a heuristic: the arm tip is missed
    assert (mask & ~truth).mean() < 0.01


def test_hot_pixels_are_found_and_nothing_else():
    rng = np.random.default_rng(1)
    image = rng.poisson(200.0, (64, 80)).astype(float)
    hot = [(3, 4), (40, 41), (63, 79)]
    for i, j in hot:
        image[i, j] = 5000
    found = hot_pixel_mask(image)
    assert sorted(map(tuple, np.argwhere(found).tolist())) == hot
    with pytest.raises(ValueError, match="odd"):
        hot_pixel_mask(image, size=4)


def test_threshold_and_combine():
    image = np.array([[0.0, 5.0, np.nan], [2.0**20, 7.0, -3.0]])
    assert threshold_mask(image, low=0, high=1e6).tolist() == [[False, False, True],
                                                              [True, False, True]]
    a = np.zeros((2, 3), bool)
    a[0, 0] = True
    both = combine_masks(a, threshold_mask(image, high=6), None)
    assert both.tolist() == [[True, False, True], [True, True, False]]
    with pytest.raises(ValueError, match=r"mask 1 has shape \(3, 3\), but the frames are"):
        combine_masks(a, np.zeros((3, 3)), shape=(2, 3))
    assert mask_summary(both) == {"shape": [2, 3], "n_masked": 4, "fraction": pytest.approx(4 / 6)}


@pytest.mark.parametrize("suffix", [".edf", ".tif"])
def test_save_and_load_mask_roundtrip_readable_by_fabio(tmp_path, saxs, suffix):
    import fabio

    mask = saxs.beamstop_mask() | saxs.gap_mask()
    path = save_mask(mask, tmp_path / f"mask{suffix}")
    np.testing.assert_array_equal(load_mask(path, shape=saxs.shape), mask)
    raw = fabio.open(str(path)).data  # what pyFAI-calib2 reads: 1 on masked pixels
    assert raw.shape == saxs.shape
    assert set(np.unique(raw)) == {0, 1}


def test_mask_file_errors(tmp_path, saxs):
    path = save_mask(np.zeros((10, 12), bool), tmp_path / "small.edf")
    with pytest.raises(InputFileError, match="10 x 12 pixels but the frames are 195 x 487"):
        load_mask(path, shape=saxs.shape)
    with pytest.raises(InputFileError, match="does not exist"):
        load_mask(tmp_path / "missing.edf")
    with pytest.raises(ValueError, match=r"unknown mask file type '\.png'"):
        save_mask(np.zeros((2, 2), bool), tmp_path / "m.png")


def test_the_old_scattering_names_of_the_mask_files_still_work_and_warn(tmp_path):
    import spotkit.scattering as sc

    with pytest.warns(DeprecationWarning, match="moved to spotkit.io.save_mask"):
        old_save = sc.save_mask
    assert old_save is save_mask
    with pytest.warns(DeprecationWarning, match="spotkit.io.load_mask"):
        assert sc.load_mask is load_mask
    with pytest.raises(AttributeError):
        sc.no_such_function  # noqa: B018
