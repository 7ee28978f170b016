"""The live twin: deterministic frames, a truth a model fit can be checked against, real time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from spotkit.io import find_reader, load_geometry, load_mask, open_saxs
from spotkit.io._follow_check import file_complete
from spotkit.sim import LiveSeriesTruth, LiveSeriesWriter, Transition
from spotkit.sim._live_model import sphere_form_factor

SHAPE = (60, 80)


def test_frames_are_deterministic_and_follow_the_truth(tmp_path):
    trans = [Transition(4, "radius_nm", 8.0, over=3), Transition(6, "peak_amplitude", 50.0)]
    a = LiveSeriesWriter(tmp_path / "a.h5", n_frames=10, shape=SHAPE, seed=4, transitions=trans)
    b = LiveSeriesWriter(tmp_path / "b", n_frames=10, fmt="cbf", shape=SHAPE, seed=4,
                         transitions=trans)
    np.testing.assert_array_equal(a.frame(7), b.frame(7))
    np.testing.assert_array_equal(a.frame(2), a.frame(2))  # any order, same frame
    assert not np.array_equal(a.frame(2), a.frame(3))  # fresh noise each frame
    truth = a.truth
    assert truth.onset_frames == (4, 6)
    np.testing.assert_allclose(truth.radius_nm, [5, 5, 5, 5, 6, 7, 8, 8, 8, 8])
    np.testing.assert_allclose(truth.peak_amplitude, [0] * 6 + [50] * 4)
    assert (a.frame(0)[truth.mask() & ~(a.frame(0) == -1)] < 50).all()  # beamstop shadow
    assert (a.frame(0)[a._gaps] == -1).all()
    # the truth survives a round trip
    again = LiveSeriesTruth.load(truth.save(tmp_path / "truth.json"))
    assert again.transitions == truth.transitions
    assert again.onset_frames == (4, 6)
    np.testing.assert_array_equal(again.radius_nm, truth.radius_nm)
    a.close()
    b.close()


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown transition parameter 'size'"):
        Transition(3, "size", 2.0)
    with pytest.raises(ValueError, match="beyond the series"):
        LiveSeriesWriter(tmp_path / "x.h5", n_frames=5, transitions=[Transition(5, "scale", 1)])
    with pytest.raises(ValueError, match="overlap"):
        LiveSeriesWriter(tmp_path / "y.h5", n_frames=9, shape=SHAPE,
                         transitions=[Transition(2, "scale", 1, 4), Transition(4, "scale", 2)])
    with pytest.raises(ValueError, match="unknown fmt 'png'"):
        LiveSeriesWriter(tmp_path / "z", fmt="png")
    with pytest.raises(ValueError, match="unknown start parameter"):
        LiveSeriesWriter(tmp_path / "w.h5", start={"radius": 3})
    LiveSeriesWriter(tmp_path / "v.h5", n_frames=2, shape=SHAPE).close()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        LiveSeriesWriter(tmp_path / "v.h5", n_frames=2, shape=SHAPE)


def test_twin_intensity_is_the_sasmodels_sphere(tmp_path):
    """What pyFAI reduces from the frames is sasmodels' sphere (+ background) at the truth."""
    from sasmodels.core import load_model
    from sasmodels.direct_model import call_kernel

    writer = LiveSeriesWriter(tmp_path / "s.h5", n_frames=12, shape=(195, 487), seed=1,
                              transitions=(), start={"radius_nm": 6.0})
    truth = writer.truth
    assert truth.poni_path.is_file()
    assert truth.mask_path.is_file()
    q_nm = np.linspace(0.2, 2.5, 60)
    kernel = load_model("sphere").make_kernel([q_nm / 10.0])  # sasmodels: 1/Angstrom
    iq = call_kernel(kernel, {"radius": 60.0, "scale": 1.0, "background": 0.0,
                              "radius_pd": 0.0})
    p = sphere_form_factor(q_nm, 6.0)
    np.testing.assert_allclose(iq / iq[0], p / p[0], rtol=1e-6)

    ai = load_geometry(truth.poni_path, shape=truth.shape)
    mask = load_mask(truth.mask_path, shape=truth.shape)
    frames = np.stack([writer.frame(k) for k in range(12)]).astype(np.float64)
    res = ai.integrate1d(frames.sum(axis=0), 120, unit="q_nm^-1", mask=mask,
                         correctSolidAngle=True, polarization_factor=None,
                         error_model="poisson", method=("bbox", "csr", "cython"))
    expected = 12 * truth.intensity(res.radial, 0)
    ok = (res.sigma > 0) & (res.radial > 0.3)
    # pyFAI bins average over a q-width, so compare where the curve is smooth
    pull = (res.intensity[ok] - expected[ok]) / res.sigma[ok]
    assert np.median(np.abs(pull)) < 1.5
    rel = np.abs(res.intensity[ok] / expected[ok] - 1)
    assert np.median(rel) < 0.02
    writer.close()


@pytest.mark.parametrize("fmt", ["h5", "tiff"])
def test_real_time_pause_resume_stop(tmp_path, fmt):
    path = tmp_path / ("rt.h5" if fmt == "h5" else "rt")
    writer = LiveSeriesWriter(path, n_frames=30, fmt=fmt, shape=(20, 30), time_scale=0.005,
                              transitions=())
    writer.start()
    deadline = time.monotonic() + 10
    while writer.written < 5 and time.monotonic() < deadline:
        time.sleep(0.002)
    writer.pause()
    time.sleep(0.03)
    held = writer.written
    time.sleep(0.05)
    assert writer.paused
    assert writer.written == held < 30
    writer.resume()
    time.sleep(0.03)
    writer.stop()
    stopped = writer.written
    assert held < stopped < 30
    assert not writer.finished
    with pytest.raises(RuntimeError, match="already running"):
        writer.start().start()
    assert writer.wait(10)
    assert writer.finished
    assert writer.written == 30
    assert len(writer.frame_times) == 30
    assert np.all(np.diff(writer.frame_times) >= 0)
    assert open_saxs(path).shape == (30, 20, 30)  # the finished series, as the catalog reads it
    assert find_reader(path).check_complete(path)[0]


@pytest.mark.parametrize("fmt", ["h5", "cbf"])
def test_truncated_last_frame(tmp_path, fmt):
    path = tmp_path / ("t.h5" if fmt == "h5" else "t")
    writer = LiveSeriesWriter(path, n_frames=3, fmt=fmt, shape=(20, 30), truncate_last=True)
    assert writer.write(5) == 2
    assert writer.finished
    assert writer.truth.truncated_last
    assert not path.with_name(path.name + ".done").exists()
    if fmt == "cbf":
        assert not file_complete(path / "frame_00003.cbf")
        assert file_complete(path / "frame_00002.cbf")
    else:
        import h5py

        with h5py.File(path, "r") as f:
            assert f["entry/data/data"].shape[0] == 3
            assert f["entry/data/frame_timestamp"].shape[0] == 2
            assert "end_time" not in f["entry"]
    writer.close()  # a dead writer ends nothing
    assert not path.with_name(path.name + ".done").exists()
