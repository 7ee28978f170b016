"""Tests of the simulated SAXS/GISAXS series (spotkit.sim.simulate_saxs_series)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from spotkit.sim import SaxsSeriesTruth, q_map, simulate_saxs_series

N_FRAMES, ONSET, GROWTH = 16, 8, 3


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    path = tmp_path_factory.mktemp("saxs") / "series.h5"
    truth = simulate_saxs_series(
        path, n_frames=N_FRAMES, onset_frame=ONSET, ring_growth_frames=GROWTH, seed=1
    )
    with h5py.File(path, "r") as f:
        frames = f["entry/data/data"][()]
    return truth, frames


def _ring_contrast(truth, frames):
    """Mean counts on the ring minus the mean on both sides of it, per frame."""
    q = truth.q_map()
    valid = ~truth.gap_mask() & ~truth.beamstop_mask()
    width = truth.extra["ring_width_nm"]
    on = valid & (np.abs(q - truth.ring_q_nm) < width)
    off = (
        valid
        & (np.abs(q - truth.ring_q_nm) > 4 * width)
        & (np.abs(q - truth.ring_q_nm) < 6 * width)
    )
    return frames[:, on].mean(axis=1) - frames[:, off].mean(axis=1), on.sum()


def test_file_has_every_field(series):
    truth, frames = series
    with h5py.File(truth.path, "r") as f:
        assert f["entry"].attrs["NX_class"] == "NXentry"
        data = f["entry/data/data"]
        assert data.shape == (N_FRAMES, 195, 487)
        assert data.dtype == np.int32
        assert data.maxshape == (None, 195, 487)
        assert data.chunks == (1, 195, 487)
        np.testing.assert_allclose(f["entry/data/frame_timestamp"][()], np.arange(N_FRAMES))
        strings = {
            "entry/instrument/name": "ALS 7.3.3",
            "entry/instrument/source/beamline": "7.3.3",
            "entry/instrument/detector/geometry_file": "series.poni",
            "entry/mode": "saxs",
        }
        for key, value in strings.items():
            assert f[key][()].decode() == value
        for key in (
            "entry/sample/name",
            "entry/experiment/proposal",
            "entry/start_time",
            "entry/end_time",
        ):
            assert h5py.check_string_dtype(f[key].dtype).encoding == "utf-8"
        assert f["entry/instrument/monochromator/energy"].attrs["units"] == "keV"
        assert f["entry/instrument/detector/distance"][()] == pytest.approx(truth.distance_m)
        assert f["entry/instrument/detector/x_pixel_size"][()] == pytest.approx(172e-6)
        assert f["entry/instrument/detector/frame_time"][()] == 1.0
        assert "incidence_angle" not in f["entry/sample"]
    assert truth.poni_path.is_file()
    assert (frames[:, truth.gap_mask()] == -1).all()
    assert truth.gap_mask().any()
    assert (frames[:, ~truth.gap_mask()] >= 0).all()


def test_ring_appears_after_onset_and_not_before(series):
    truth, frames = series
    contrast, n_pix = _ring_contrast(truth, frames)
    before = contrast[:ONSET]
    # Before the onset the contrast is constant within Poisson noise (stationary series).
    sigma = np.sqrt(frames[:ONSET, ~truth.gap_mask()].mean() / n_pix) * 3
    assert np.ptp(before) < 6 * sigma + 1e-9
    slope = np.polyfit(np.arange(ONSET), before, 1)[0]
    assert abs(slope) < sigma
    after = contrast[ONSET + GROWTH - 1 :]
    assert after.min() > before.max() + 5.0
    assert np.all(np.diff(contrast[ONSET - 1 : ONSET + GROWTH]) > 0)  # it grows
    np.testing.assert_array_equal(truth.ring_amplitude[:ONSET], 0)
    assert truth.ring_amplitude[-1] == pytest.approx(1.0)


def test_poni_agrees_with_pyfai(series):
    import pyFAI as pyfai

    truth, _ = series
    ai = pyfai.load(str(truth.poni_path))
    assert ai.detector.shape == truth.shape
    np.testing.assert_allclose(ai.qArray(), truth.q_map(), rtol=1e-6, atol=1e-6)
    assert ai.wavelength == pytest.approx(truth.wavelength_nm * 1e-9)


def test_q_map_beam_center_and_ring_on_detector():
    q = q_map((64, 80), pixel_size_um=100, distance_m=1.0, beam_center=(20, 30), energy_kev=12.0)
    assert np.unravel_index(np.argmin(q), q.shape) == (20, 30)
    assert q[20, 30] == pytest.approx(0.0, abs=1e-12)


def test_gisaxs_mode(tmp_path):
    truth = simulate_saxs_series(
        tmp_path / "gi.h5",
        mode="gisaxs",
        n_frames=6,
        onset_frame=3,
        ring_growth_frames=1,
        incidence_angle_deg=0.25,
        shape=(96, 160),
        noise=False,
    )
    with h5py.File(truth.path, "r") as f:
        assert f["entry/mode"][()].decode() == "gisaxs"
        ds = f["entry/sample/incidence_angle"]
        assert ds[()] == 0.25
        assert ds.attrs["units"] == "deg"
        frames = f["entry/data/data"][()].astype(float)
    diff = frames[-1] - frames[0]
    assert np.all(frames[1] == frames[0])  # noiseless and stationary before the onset
    assert diff.max() > 0
    rows, cols = np.nonzero(diff > 0.5 * diff.max())
    assert rows.max() < truth.beam_center[0]  # rods only above the horizon
    assert (cols < truth.beam_center[1]).any()
    assert (cols > truth.beam_center[1]).any()


def test_determinism_and_truth_roundtrip(tmp_path):
    kw = {"n_frames": 3, "shape": (32, 48), "onset_frame": 1}
    a = simulate_saxs_series(tmp_path / "a.h5", seed=5, truth_path=tmp_path / "a.json", **kw)
    simulate_saxs_series(tmp_path / "b.h5", seed=5, **kw)
    simulate_saxs_series(tmp_path / "c.h5", seed=6, **kw)

    def read(name):
        with h5py.File(tmp_path / name, "r") as f:
            return f["entry/data/data"][()]

    np.testing.assert_array_equal(read("a.h5"), read("b.h5"))
    assert not np.array_equal(read("a.h5"), read("c.h5"))
    loaded = SaxsSeriesTruth.load(tmp_path / "a.json")
    np.testing.assert_array_equal(loaded.ring_amplitude, a.ring_amplitude)
    np.testing.assert_array_equal(loaded.q_map(), a.q_map())
    assert loaded.poni_path == a.poni_path


def test_incomplete_while_writing_and_sentinel(tmp_path):
    import shutil

    path = tmp_path / "grow.h5"
    seen = []

    def progress(stage, done, total):
        if done == 2:
            shutil.copy(path, tmp_path / "snap.h5")
            seen.append((tmp_path / "grow.h5.done").exists())

    simulate_saxs_series(path, n_frames=4, shape=(32, 48), sentinel=True, progress=progress)
    with h5py.File(tmp_path / "snap.h5", "r") as f:
        assert f["entry/data/data"].shape[0] == 2
        assert "end_time" not in f["entry"]
    assert seen == [False]
    assert (tmp_path / "grow.h5.done").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        simulate_saxs_series(tmp_path / "x.h5", mode="waxs")
    simulate_saxs_series(tmp_path / "y.h5", n_frames=1, shape=(32, 32))
    with pytest.raises(FileExistsError):
        simulate_saxs_series(tmp_path / "y.h5", n_frames=1, shape=(32, 32))
