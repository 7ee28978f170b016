"""Issue 11: no onset inside the warm-up; changes confined to a q band or a detector region.

Small series with a known onset: simulated profiles, profiles built from sasdata's measured
SANS2D curves with their measured sigmas, and Poisson frames. The old detectors (whole-frame
features only, ``detect=("difference",)``) are run beside the new defaults on the same data.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from spotkit.change import (
    BAND_FEATURES,
    OnlineDetector,
    WarmupWarning,
    detect_changes,
    frame_features,
)

OLD = ("difference",)


def _guinier_profiles(n=40, onset=20, zmax=1.0, ramp=1, seed=0, nq=200):
    """I(q) with Poisson-like sigmas; a Guinier-region change (lowest ~8 % of q) from onset."""
    rng = np.random.default_rng(seed)
    q = np.linspace(0.01, 0.5, nq)
    base = 1e4 / (1 + (q / 0.05) ** 2) + 200
    sig = np.sqrt(base)
    frac = np.clip((np.arange(n) - onset + 1) / ramp, 0, 1)
    change = zmax * np.exp(-((q * 60) ** 2) / 3) * sig  # Rg = 60 A: q < ~0.03
    inten = base + frac[:, None] * change + rng.normal(size=(n, nq)) * sig
    return q, inten, np.broadcast_to(sig, inten.shape)


def _online(items, sigmas=None, **kw):
    det = OnlineDetector(**kw)
    results = [det.update(x, sigma=None if sigmas is None else sigmas[k])
               for k, x in enumerate(items)]
    flagged = [r.index for r in results if r.flagged]
    return det, results, (flagged[0] if flagged else None)


def test_online_never_reports_inside_its_warmup():
    # a change that starts at frame 3, inside the warm-up of 8 (it used to give onset 5-6)
    for seed in range(4):
        _q, inten, sig = _guinier_profiles(onset=3, ramp=6, zmax=2.0, seed=seed)
        det = OnlineDetector(warmup=8)
        assert (det.frames_needed, det.ready) == (8, False)
        for k in range(inten.shape[0]):
            r = det.update(inten[k], sigma=sig[k])
            if k < 7:
                assert det.frames_needed == 7 - k
            if k < 8:
                assert r.state == "warmup"
                assert not r.flagged
                assert r.event is None
        assert all(e.onset >= 8 for e in det.events)
        assert all(e.detected_at >= 8 for e in det.events)


def test_frames_needed_after_an_event():
    _q, inten, sig = _guinier_profiles(onset=15, zmax=4.0)
    det = OnlineDetector(warmup=5, holdoff=3)
    for k in range(inten.shape[0]):
        r = det.update(inten[k], sigma=sig[k])
        if r.event is not None:
            assert det.frames_needed == 3 + 5  # the hold-off, then a new warm-up
            break
    else:
        pytest.fail("no event")
    for _ in range(8):
        assert not det.ready
        det.update(inten[k], sigma=sig[k])
    assert det.ready


def test_offline_onset_is_never_inside_the_warmup():
    _q, inten, sig = _guinier_profiles(onset=3, ramp=6, zmax=2.0, seed=0)
    with pytest.warns(WarmupWarning, match="inside the warm-up"):
        result = detect_changes(inten, sigma=sig, warmup=8, maps=False)
    assert result.onsets
    assert min(result.onsets) >= 8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_low_q_band_change_found_at_once(seed):
    # 2.5 sigma per bin at most, in the lowest ~6 % of q: plain to a person looking at low q
    # (band average ~6 sigma in one frame), diluted in chi^2 over all q
    _q, inten, sig = _guinier_profiles(onset=20, zmax=2.5, seed=seed)
    new = detect_changes(inten, sigma=sig, maps=False)
    assert len(new.events) == 1
    event = new.events[0]
    assert abs(event.onset - 20) <= 1
    assert event.feature in BAND_FEATURES
    lo, _hi = event.region["q_index"]
    assert lo < 20  # a low-q band (bin indices without a q coordinate)
    _det, _r, alarm = _online(inten, sig)
    assert alarm is not None
    assert 20 <= alarm <= 25
    # the whole-profile chi^2 alone, as before: later, or not at all
    _det, _r, old_alarm = _online(inten, sig, detect=OLD)
    assert old_alarm is None or old_alarm > alarm


def test_band_region_carries_q_values():
    q, inten, sig = _guinier_profiles(onset=20, zmax=1.5)
    import xarray as xr

    ds = xr.Dataset({"intensity": (("time", "q"), inten), "sigma": (("time", "q"), sig)},
                    coords={"time": np.arange(40) * 7.5, "q": q})
    result = detect_changes(ds)
    event = result.events[0]
    qlo, qhi = event.region["q"]
    assert qlo == pytest.approx(q[0])
    assert qhi < 0.1
    assert result.bands["band_shift"].dims == ("time", "band")
    assert float(result.bands["q_min"][0]) == pytest.approx(q[0])
    assert set(result.features.data_vars) == {"difference"}  # 1-D features stay 1-D


def _sasdata_1d() -> Path | None:
    spec = importlib.util.find_spec("sasdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "example_data" / "1d_data"
    return path if (path / "apoferritin.txt").exists() else None


def _measured(name):
    a = np.loadtxt(_sasdata_1d() / name, skiprows=5, max_rows=395)
    return a[:, 0], a[:, 1], a[:, 2]


def _sec_like(seed, *, zmax, onset=22, n=44):
    """Measured conalbumin (SANS2D) with its measured sigmas; measured apoferritin elutes."""
    rng = np.random.default_rng(seed)
    _q, base, sig = _measured("conalbumin.txt")
    _, apo, _ = _measured("apoferritin.txt")
    amp = zmax / (apo / sig).max()
    frac = (np.arange(n) >= onset).astype(float)
    inten = base + frac[:, None] * amp * apo + rng.normal(size=(n, base.size)) * sig
    return inten, np.broadcast_to(sig, inten.shape)


@pytest.mark.skipif(_sasdata_1d() is None, reason="sasdata (test extra) is not installed")
@pytest.mark.parametrize("seed", [0, 1])
def test_measured_profiles_band_limited_change(seed):
    # 86 % of the change's chi^2 sits in the lowest 8 % of q (apoferritin's Guinier region)
    inten, sig = _sec_like(seed, zmax=1.0)
    new = detect_changes(inten, sigma=sig, maps=False)
    assert len(new.events) == 1
    assert abs(new.events[0].onset - 22) <= 2
    assert new.events[0].region["q_index"][0] < 30
    _det, _r, alarm = _online(inten, sig)
    assert alarm is not None
    assert 22 <= alarm <= 28


@pytest.mark.skipif(_sasdata_1d() is None, reason="sasdata (test extra) is not installed")
def test_no_more_false_onsets_on_stationary_measured_profiles():
    _q, base, sig = _measured("conalbumin.txt")
    counts = {"old": 0, "new": 0}
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        inten = base + rng.normal(size=(60, base.size)) * sig
        sigmas = np.broadcast_to(sig, inten.shape)
        for name, detect in (("old", OLD), ("new", None)):
            found = detect_changes(inten, sigma=sigmas, detect=detect, maps=False).onsets
            det, _r, _a = _online(inten, sigmas, detect=detect)
            counts[name] += bool(found) + bool(det.events)
    assert counts["new"] <= max(counts["old"], 1)


def test_no_false_onsets_on_stationary_simulated_profiles():
    onsets = 0
    for seed in range(15):
        _q, inten, sig = _guinier_profiles(n=60, onset=10_000, seed=50 + seed, nq=120)
        onsets += len(detect_changes(inten, sigma=sig, maps=False).onsets)
        det, _results, _a = _online(inten, sig)
        onsets += len(det.events)
    assert onsets <= 1


def _blob_frames(seed, *, amp, onset=20, n=40):
    """Poisson frames (rate 40) with a Gaussian blob (sigma 4 px) in one region from onset."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :96]
    g = np.exp(-0.5 * ((yy - 44) ** 2 + (xx - 20) ** 2) / 16.0)
    rate = np.full((n, 64, 96), 40.0)
    rate[onset:] += amp * np.sqrt(40.0) * g
    return rng.poisson(rate).astype(np.int32), (44, 20)


@pytest.mark.parametrize("seed", [0, 1])
def test_change_confined_to_a_detector_region(seed):
    frames, (cy, cx) = _blob_frames(seed, amp=1.0)
    new = detect_changes(frames, maps=False)
    assert len(new.events) == 1
    event = new.events[0]
    assert abs(event.onset - 20) <= 1
    assert event.feature in BAND_FEATURES
    (y0, y1), (x0, x1) = event.region["y"], event.region["x"]
    assert y0 <= cy <= y1
    assert x0 <= cx <= x1
    _det, _r, alarm = _online(frames)
    assert alarm is not None
    assert 20 <= alarm <= 25


def test_stationary_frames_no_onset():
    rng = np.random.default_rng(5)
    frames = rng.poisson(40.0, (40, 64, 96)).astype(np.int32)
    assert detect_changes(frames, maps=False).onsets == ()
    det, results, _a = _online(frames)
    assert det.events == []
    assert not any(r.flagged for r in results)


def test_band_features_and_options():
    _q, inten, sig = _guinier_profiles(n=20, onset=10_000)
    feats = frame_features(inten, sigma=sig, features=("difference", *BAND_FEATURES), bands=4)
    assert feats["band_shift"].dims == ("frame", "band")
    assert feats["level"].values.tolist() == [4, 4, 4, 4, 2, 2, 1]
    assert feats["lo"].values[0] == 0
    assert feats["hi"].values[-1] == 199
    z = feats["band_shift"].values[8:]
    assert 0.5 < z.std() < 1.5  # unit noise while nothing changes
    frames = np.random.default_rng(0).poisson(30, (10, 40, 60)).astype(np.int32)
    ff = frame_features(frames, features=BAND_FEATURES, bands=2, warmup=4)
    assert ff.sizes["band"] == 5
    assert int(ff["y1"].max()) == 40
    # bands=0 is the detector as it was: whole-frame features only
    old = detect_changes(inten, sigma=sig, bands=0)
    assert old.bands is None
    assert old.onsets == ()
    with pytest.raises(ValueError, match="bands"):
        detect_changes(inten, sigma=sig, bands=-1)
    with pytest.raises(ValueError, match="bands"):
        OnlineDetector(bands="many")
    with pytest.raises(ValueError, match="need bands"):
        frame_features(inten, sigma=sig, features=("band_shift",), bands=0)
