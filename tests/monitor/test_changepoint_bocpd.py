"""Bayesian online change-point detection (spotkit.monitor.BayesianDetector)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spotkit.monitor import BayesianDetector, bayesian_changes


def test_mean_and_variance_changes_are_found_with_onset_and_probability():
    rng = np.random.default_rng(4)
    x = np.r_[rng.normal(0, 1, 200), rng.normal(3, 1, 200), rng.normal(3, 4, 200)]
    found = bayesian_changes(x, metric="run_time")
    onsets = [f.detail["onset_index"] for f in found]
    assert 2 <= len(found) <= 3  # a 4-sigma noisy segment may be split once more
    assert abs(onsets[0] - 200) <= 2
    assert abs(onsets[1] - 400) <= 10  # a variance change needs a few large values
    f = found[0]
    assert f.kind == "change"
    assert f.metric == "run_time"
    assert 0.5 <= f.confidence <= 1.0
    assert f.magnitude == pytest.approx(3.0, abs=1.0)
    assert f.detail["delay"] <= 8


def test_few_false_changes_on_noise_and_bounded_memory():
    rng = np.random.default_rng(5)
    det = BayesianDetector(max_run=100)
    found = []
    for v in rng.normal(0, 1, 4000):
        found += det.update(float(v))
    assert len(found) <= 3
    assert det.run_length().size <= 101
    assert det.run_length().sum() == pytest.approx(1.0)
    assert det.update(math.nan) == []


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"expected_run": 1}, "expected_run"), ({"threshold": 1.0}, "threshold"),
    ({"confirm": -1}, "confirm"), ({"max_run": 2}, "max_run"), ({"alpha": 0}, "alpha"),
])
def test_bad_options_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BayesianDetector(**kwargs)
    with pytest.raises(ValueError, match="1-D"):
        bayesian_changes(np.zeros((2, 2)))
