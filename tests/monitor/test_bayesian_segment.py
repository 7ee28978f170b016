"""bayesian_segment: the exact MAP segmentation under BayesianDetector's model."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.special import gammaln

from spotkit.monitor import bayesian_changes, bayesian_segment

#: fixed scales, so the closed form below sees the prior the detector uses
SCALES = {"noise": 1.0, "center": 0.0, "spread": 3.0}


def _nig_log_marginal(x: np.ndarray, alpha: float = 1.0) -> float:
    """Closed-form log marginal of a constant-mean segment (normal-inverse-gamma prior)."""
    m0, v0 = SCALES["center"], (SCALES["spread"] / SCALES["noise"]) ** 2
    a0, b0 = alpha, alpha * SCALES["noise"] ** 2
    n = x.size
    vn = 1.0 / (1.0 / v0 + n)
    mn = vn * (m0 / v0 + x.sum())
    an = a0 + n / 2.0
    bn = b0 + 0.5 * (float(x @ x) + m0 * m0 / v0 - mn * mn / vn)
    return (-n / 2.0 * math.log(2 * math.pi) + 0.5 * math.log(vn / v0)
            + a0 * math.log(b0) - an * math.log(bn) + gammaln(an) - gammaln(a0))


def _brute_force(x: np.ndarray, min_size: int, h: float) -> list[int]:
    """The most probable change points by enumerating every segmentation."""
    n = x.size
    best, best_cps = -np.inf, []
    for c in range(n):
        for cps in itertools.combinations(range(1, n), c):
            edges = [0, *cps, n]
            if any(b - a < min_size for a, b in itertools.pairwise(edges)):
                continue
            lp = sum(_nig_log_marginal(x[a:b]) for a, b in itertools.pairwise(edges))
            lp += c * math.log(h) + (n - 1 - c) * math.log1p(-h)
            if lp > best:
                best, best_cps = lp, list(cps)
    return best_cps


@pytest.mark.parametrize("seed", range(6))
def test_matches_exhaustive_map_with_the_closed_form_marginal(seed):
    rng = np.random.default_rng(seed)
    x = np.r_[rng.normal(0, 1, 5), rng.normal(rng.choice([-3, 3]), 1, 6)]
    x = x + rng.normal(0, 0.5, x.size)
    found = bayesian_segment(x, model="mean", expected_run=5, min_size=2, winsorize=None,
                             **SCALES)
    assert [f.detail["onset_index"] for f in found] == _brute_force(x, 2, 1 / 5)


def test_confidence_is_the_posterior_of_the_change_against_one_segment():
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(0, 1, 30), rng.normal(1.2, 1, 30)]
    (f,) = bayesian_segment(x, model="mean", winsorize=None, **SCALES)
    c, h = f.detail["onset_index"], 1 / 100
    two = _nig_log_marginal(x[:c]) + _nig_log_marginal(x[c:]) + math.log(h)
    one = _nig_log_marginal(x) + math.log1p(-h)
    assert f.confidence == pytest.approx(1 / (1 + math.exp(one - two)), rel=1e-6)
    assert f.magnitude == pytest.approx(x[c:].mean() - x[:c].mean())


def test_a_kink_is_placed_where_it_began_and_an_outlier_is_no_change():
    rng = np.random.default_rng(0)
    t = np.arange(300.0)
    y = 200 - np.where(t < 180, 0.0, 0.6 * (t - 180)) + rng.normal(0, 3, 300)
    y[60] += 40.0  # one outlier of 13 noise sds
    found = bayesian_segment(y, metric="transfer_rate")
    assert [f.detail["onset_index"] for f in found] == [183]
    assert found[0].detail["segment_model"] == "trend"
    assert found[0].metric == "transfer_rate"
    assert found[0].detail["method"] == "bayes-map"
    # without the clip, a single value may pay for segments of its own
    cut = bayesian_segment(y, winsorize=None, min_size=1)
    assert any(abs(f.detail["onset_index"] - 60) <= 1 for f in cut)


def test_a_walk_that_jumps_is_one_change():
    rng = np.random.default_rng(4)
    w = np.cumsum(rng.normal(0, 1, 300)) + np.where(np.arange(300) >= 150, 20.0, 0.0)
    assert [f.detail["onset_index"] for f in bayesian_segment(w)] == [150]
    assert len(bayesian_changes(w, model="mean")) > 1  # levels alone: cut up


def test_missing_values_are_skipped_and_indices_and_times_kept():
    rng = np.random.default_rng(2)
    x = np.r_[rng.normal(0, 1, 60), rng.normal(6, 1, 60)]
    x[[10, 59, 61]] = np.nan
    times = 1000.0 + 10.0 * np.arange(x.size)
    (f,) = bayesian_segment(x, times)
    assert f.detail["onset_index"] == 60
    assert f.onset == f.time == 1600.0
    assert bayesian_segment(np.full(8, np.nan)) == []
    assert bayesian_segment([1.0, 2.0, 3.0]) == []  # shorter than two segments


@pytest.mark.parametrize(("call", "words"), [
    (lambda: bayesian_segment(np.zeros((3, 3))), "values must be 1-D"),
    (lambda: bayesian_segment(np.zeros(20), np.zeros(19)), "times must have the shape"),
    (lambda: bayesian_segment(np.zeros(20), min_size=0), "min_size"),
    (lambda: bayesian_segment(np.zeros(20), winsorize=-1), "winsorize"),
    (lambda: bayesian_segment(np.zeros(20), threshold=0.9), "threshold"),
    (lambda: bayesian_segment(np.zeros(20), model="spline"), "unknown model"),
])
def test_bad_input_is_named(call, words):
    with pytest.raises(ValueError, match=words):
        call()
