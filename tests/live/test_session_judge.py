"""The online detector inside a live session: series frame numbers, empty bins, band ranges."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from spotkit.change import ChangeEvent
from spotkit.live._judge import _fill, _Judge, event_values


def _profiles(n, *, step_at=None, seed=0):
    rng = np.random.default_rng(seed)
    q = np.linspace(0.1, 2.0, 60)
    base = 2000 * np.exp(-q)
    out = []
    for k in range(n):
        mean = base * (1.5 if step_at is not None and k >= step_at else 1.0)
        i = rng.poisson(mean).astype(float)
        i[:3] = np.nan  # behind the beamstop: no pixel in these bins
        out.append((i, np.sqrt(i)))
    return q, out


def test_frames_keep_the_series_numbers_from_any_start_and_after_gaps(caplog):
    _, profiles = _profiles(40, step_at=25)
    judge = _Judge({"holdoff": 3})
    results = []
    for k, (i, s) in enumerate(profiles):
        frame = 100 + k + (2 if k >= 15 else 0)  # frames 115, 116 never came
        with caplog.at_level(logging.WARNING, logger="spotkit.live"):
            results.append(judge.judge(frame, i, s))
    assert judge.bad_bins == [0, 1, 2]
    events = [(ev, off) for _, ev, off in results if ev is not None]
    assert [ev.onset + off for ev, off in events] == [127]
    assert "2 frame(s) missing" in caplog.text
    assert all(not np.isnan(r.score) or r.state in ("warmup", "holdoff") for r, _, _ in results)
    assert results[-1][0].index == 141
    assert [r.state for r, _, _ in results[:9]] == ["warmup"] * 8 + ["watching"]


def test_fill_and_band_ranges():
    a = np.array([np.nan, 1.0, np.nan, 3.0, np.inf])
    bad = np.array([True, False, False, False, False])
    assert _fill(a, bad).tolist() == [0.0, 1.0, 2.0, 3.0, 3.0]
    q = np.linspace(0.5, 2.0, 16)
    ev = ChangeEvent(onset=3, end=5, confidence=0.99, statistic=30.0, feature="band_difference",
                     detected_at=8, onset_coord=3, end_coord=5, region={"q_index": (4, 7)})
    values = event_values(ev, 100, q)
    assert (values["onset"], values["end"], values["detected_at"]) == (103, 105, 108)
    assert values["q_first"] == pytest.approx(q[4])
    assert values["q_last"] == pytest.approx(q[7])
    whole = ChangeEvent(onset=3, end=5, confidence=1.0, statistic=9.0, feature="difference",
                        detected_at=8, onset_coord=3, end_coord=5)
    assert "q_first" not in event_values(whole, 0, q)
