"""Offline and online onset detection on seeded twin series with known truth."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from spotkit.change import OnlineDetector, detect_changes


def _online(frames, **kw):
    det = OnlineDetector(**kw)
    results = [det.update(f) for f in frames]
    return det, results


def test_offline_finds_the_onset_within_one_frame(changing):
    for truth, frames in changing:
        result = detect_changes(frames)
        assert len(result.onsets) == 1, (truth.seed, result.onsets)
        event = result.events[0]
        assert abs(event.onset - truth.onset_frame) <= 1, (truth.seed, event)
        # the ring grows over 5 frames: the transition ends about 4 frames later
        assert truth.onset_frame + 2 <= event.end <= truth.onset_frame + 6
        assert 0.95 <= event.confidence <= 1.0
        assert result.flagged[event.onset: event.end + 1].all()
        assert result.score.dims == ("frame",)


def test_no_onset_on_stationary_series(stationary):
    for truth, frames in stationary:
        assert detect_changes(frames).onsets == (), truth.seed
        det, results = _online(frames)
        assert det.result().onsets == (), truth.seed
        assert not any(r.flagged for r in results)


def test_online_agrees_with_offline(changing):
    for truth, frames in changing:
        offline = detect_changes(frames, maps=False)
        det, results = _online(frames)
        events = [r.event for r in results if r.event is not None]
        assert len(events) == 1
        assert abs(events[0].onset - offline.events[0].onset) <= 1
        assert abs(events[0].onset - truth.onset_frame) <= 1
        # decided a few frames after the onset, never before it
        assert truth.onset_frame <= events[0].detected_at <= truth.onset_frame + 10
        states = [r.state for r in results]
        assert states[:7] == ["warmup"] * 7
        assert "watching" in states
        assert det.result().onsets == (events[0].onset,)


def test_change_map_points_at_the_ring(changing):
    truth, frames = changing[1]
    event = detect_changes(frames).events[0]
    m = event.change_map
    assert m.dims == ("y", "x")
    q = truth.q_map()
    iy, ix = np.unravel_index(int(np.nanargmax(m.values)), m.shape)
    yy, xx = int(m["y"][iy]), int(m["x"][ix])
    assert abs(q[yy, xx] - truth.ring_q_nm) < 0.15 * truth.ring_q_nm
    _det, results = _online(frames)
    online_map = next(r.event for r in results if r.event).change_map
    assert online_map.shape == m.shape
    assert np.nanmax(online_map.values) > 5


def _profiles(n=50, onset=27, amp=0.3, seed=0, steps=4):
    rng = np.random.default_rng(seed)
    q = np.linspace(0.1, 2.0, 200)
    base = 500 / (1 + (5 * q) ** 2) + 5
    peak = base * np.exp(-0.5 * ((q - 1.0) / 0.04) ** 2)
    frac = np.clip((np.arange(n) - onset + 1) / steps, 0, 1)
    mean = base + amp * frac[:, None] * peak
    sigma = np.sqrt(mean / 10)
    inten = mean + rng.normal(0, 1, mean.shape) * sigma
    t = 60.0 * np.arange(n)
    return xr.Dataset({"intensity": (("time", "q"), inten), "sigma": (("time", "q"), sigma)},
                      coords={"time": t, "q": q})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_profiles_with_time_coordinate(seed):
    ds = _profiles(seed=seed)
    result = detect_changes(ds)
    assert len(result.events) == 1
    event = result.events[0]
    assert abs(event.onset - 27) <= 1
    assert event.onset_coord == ds["time"].values[event.onset]
    assert result.features["difference"].dims == ("time",)
    cmap = event.change_map
    assert cmap.dims == ("q",)
    assert float(cmap.idxmax()) == pytest.approx(1.0, abs=0.1)  # where in q
    det = OnlineDetector()
    for k in range(ds.sizes["time"]):
        det.update(ds["intensity"][k].values, sigma=ds["sigma"][k].values)
    assert abs(det.result().onsets[0] - event.onset) <= 1


def test_profiles_without_change_or_sigma():
    ds = _profiles(amp=0.0, seed=5)
    assert detect_changes(ds).onsets == ()
    # without errors the noise is estimated from the warm-up profiles
    changed = _profiles(amp=0.5, seed=6)
    result = detect_changes(changed["intensity"])
    assert abs(result.onsets[0] - 27) <= 1


def test_integrated_twin_profiles(changing):
    import warnings

    from spotkit.io import load_geometry
    from spotkit.scattering import integrate_frames

    truth, frames = changing[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = integrate_frames(frames, load_geometry(truth.poni_path), npt=80,
                                mask=truth.gap_mask() | truth.beamstop_mask())
    result = detect_changes(prof)
    assert abs(result.onsets[0] - truth.onset_frame) <= 1


def test_bad_input():
    rng = np.random.default_rng(0)
    frames = rng.poisson(20, (12, 16, 16)).astype(np.int32)
    with pytest.raises(ValueError, match="empty"):
        detect_changes(np.zeros((0, 16, 16)))
    with pytest.raises(ValueError, match="empty"):
        detect_changes([])
    with pytest.raises(ValueError, match="mixed shape"):
        detect_changes([frames[0], frames[1][:8]])
    with pytest.raises(ValueError, match="first dimension"):
        detect_changes(xr.DataArray(frames[:, 0], dims=("q", "frame")))
    with pytest.raises(ValueError, match="3-D"):
        detect_changes(np.zeros((2, 3, 4, 5)))
    bad = frames.astype(float)
    bad[5, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detect_changes(bad)
    with pytest.raises(ValueError, match="unknown detection feature"):
        detect_changes(frames, detect=("variance",))
    with pytest.raises(ValueError, match="need detector frames"):
        detect_changes(frames[:, 0], features=("ssim",))
    with pytest.raises(ValueError, match="fewer than warmup"):
        detect_changes(frames[:4])
    with pytest.raises(ValueError, match="mask shape"):
        detect_changes(frames, mask=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="threshold"):
        detect_changes(frames, threshold=0)
    det = OnlineDetector()
    det.update(frames[0])
    with pytest.raises(ValueError, match="differs"):
        det.update(frames[1][:8])
    with pytest.raises(ValueError, match="NaN"):
        det.update(bad[5])
    with pytest.raises(ValueError, match="warmup"):
        OnlineDetector(warmup=1)
    with pytest.raises(ValueError, match="no frame"):
        OnlineDetector().result()


def test_two_changes_offline_and_online():
    rng = np.random.default_rng(7)
    rate = np.full((90, 48, 64), 40.0)
    rate[20:, 5:15, 5:25] += 12  # a step at frame 20 in one corner
    rate[60:, 30:42, 40:60] += 12  # a second step at frame 60 elsewhere
    frames = rng.poisson(rate).astype(np.int32)
    result = detect_changes(frames)
    assert result.onsets == (20, 60)
    assert [e.end for e in result.events] == [20, 60]  # steps: no transition
    first = result.events[0].change_map
    assert float(first.sel(y=10, x=15)) > 5
    assert abs(float(first.sel(y=36, x=50))) < 3  # the second change is not in the first map
    det = OnlineDetector(holdoff=5)
    onsets = [r.event.onset for r in map(det.update, frames) if r.event is not None]
    assert onsets == [20, 60]
