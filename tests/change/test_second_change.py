"""A second change soon after a first: OnlineDetector re-arms after an event (holdoff=None).

Small seeded I(q) profiles with their Poisson sigma (as the live path gives them) and small
Poisson frames; the old behaviour (``holdoff`` an integer) is checked to be unchanged.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from spotkit.change import OnlineDetector

Q = np.geomspace(0.05, 3.0, 200)
LEVEL = 2.0e4 * (Q / 0.05) ** -2.5 + 200.0
PEAK = np.exp(-0.5 * ((Q - 1.0) / 0.1) ** 2)


def profiles(n, onsets, size=2.0, seed=2):
    """``n`` profiles whose peak at q = 1 grows by ``size`` sigma at each onset."""
    rng = np.random.default_rng(seed)
    amp = sum((np.arange(n) >= t) * size for t in onsets) if onsets else np.zeros(n)
    mean = LEVEL + np.asarray(amp, dtype=float)[:, None] * PEAK * np.sqrt(LEVEL)
    sig = np.sqrt(mean)
    return mean + rng.standard_normal(mean.shape) * sig, sig


def events(det, data, sig):
    for i in range(len(data)):
        det.update(data[i], sigma=sig[i])
    return [(e.onset, e.detected_at) for e in det.events]


def test_a_second_change_ten_frames_after_a_first_is_found_with_its_onset():
    data, sig = profiles(80, (30, 40))
    found = events(OnlineDetector(), data, sig)
    assert [onset for onset, _ in found] == [30, 40]
    assert found[1][1] - 40 <= 10  # confirmed within 10 frames of its onset
    # the old behaviour (hold-off, then a full warm-up) is blind there
    old = events(OnlineDetector(holdoff=16), data, sig)
    assert [onset for onset, _ in old] == [30]
    assert old[0] == found[0]  # the first change: the same onset, the same frame


def test_frames_a_second_step_elsewhere_ten_frames_later():
    rng = np.random.default_rng(7)
    rate = np.full((60, 48, 64), 40.0)
    rate[20:, 5:15, 5:25] += 12
    rate[30:, 30:42, 40:60] += 12
    frames = rng.poisson(rate).astype(np.int32)
    new = [r.event.onset for r in map(OnlineDetector().update, frames) if r.event]
    assert new == [20, 30]
    old = [r.event.onset for r in map(OnlineDetector(holdoff=16).update, frames) if r.event]
    assert old == [20]


def test_no_extra_false_alarm_after_a_change_nor_on_a_stationary_series():
    data, sig = profiles(1000, (30,), seed=3)
    new = events(OnlineDetector(), data, sig)
    assert [onset for onset, _ in new] == [30]  # 960 quiet frames after it: nothing more
    old = events(OnlineDetector(holdoff=16), data, sig)
    assert old == new
    data, sig = profiles(800, (), seed=4)
    assert events(OnlineDetector(), data, sig) == []


def test_states_and_frames_needed_after_an_event():
    data, sig = profiles(60, (30,))
    det = OnlineDetector()
    for k in range(len(data)):
        r = det.update(data[k], sigma=sig[k])
        if r.event is not None:
            break
    else:
        pytest.fail("no event")
    # the frames after the change's end already seen make the new reference
    seen = k - r.event.end
    assert det.frames_needed == max(det.rearm - seen, 0)
    assert r.state == ("warmup" if seen <= det.rearm else "watching")
    assert r.flagged
    nxt = det.update(data[k + 1], sigma=sig[k + 1])
    assert nxt.state == "watching"
    assert not nxt.flagged
    assert det.ready
    # the old behaviour: the hold-off, then a new warm-up
    old = OnlineDetector(holdoff=16)
    states = [old.update(data[i], sigma=sig[i]).state for i in range(len(data))]
    k_old = states.index("holdoff")
    assert k_old == k
    assert states[k_old: k_old + 17] == ["holdoff"] * 17


def test_a_pickled_detector_goes_on_as_the_original():
    data, sig = profiles(70, (30, 40))
    det = OnlineDetector()
    for i in range(35):
        det.update(data[i], sigma=sig[i])
    twin = pickle.loads(pickle.dumps(det))
    for i in range(35, 70):
        a, b = det.update(data[i], sigma=sig[i]), twin.update(data[i], sigma=sig[i])
        assert (a.state, a.flagged, a.score) == (b.state, b.flagged, b.score) or (
            np.isnan(a.score) and np.isnan(b.score))
    assert [e.onset for e in twin.events] == [e.onset for e in det.events] == [30, 40]


def test_options_are_checked():
    with pytest.raises(ValueError, match="rearm must be an integer >= 3"):
        OnlineDetector(rearm=2)
    with pytest.raises(ValueError, match="holdoff must be an integer >= 0 or None"):
        OnlineDetector(holdoff=-1)
    assert OnlineDetector().holdoff is None
    assert OnlineDetector(holdoff=16).holdoff == 16


def test_the_live_judge_goes_on_after_an_event():
    from spotkit.live._judge import _Judge

    data, sig = profiles(80, (30, 40))
    judge = _Judge()
    found = [ev.onset + off for r, ev, off in (judge.judge(i, data[i], sig[i])
                                               for i in range(len(data))) if ev]
    assert found == [30, 40]
    assert judge.hold_until == -1
    assert judge.stretch == 80  # one detector all along
    old = _Judge({"holdoff": 16})
    found = [ev.onset + off for r, ev, off in (old.judge(i, data[i], sig[i])
                                               for i in range(len(data))) if ev]
    assert found == [30]
