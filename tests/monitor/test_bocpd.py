"""BayesianDetector's segment models and priors (trend and random-walk segments, model
averaging, robust scales, AR(1) weight)."""

from __future__ import annotations

import numpy as np
import pytest

from spotkit.monitor import BayesianDetector, bayesian_changes
from spotkit.monitor._bocpd_prior import prior_scales


def onsets(x, **options):
    return [f.detail["onset_index"] for f in bayesian_changes(x, **options)]


def ar1(rng, n, phi):
    e = rng.normal(0, np.sqrt(1 - phi * phi), n)
    out = np.empty(n)
    out[0] = rng.normal()
    for i in range(1, n):
        out[i] = phi * out[i - 1] + e[i]
    return out


@pytest.mark.parametrize("model", ["trend", ("trend", "llt")])
def test_a_steady_trend_is_one_segment_and_a_jump_on_it_is_found(model):
    rng = np.random.default_rng(1)
    t = np.arange(400.0)
    trend = 0.2 * t + rng.normal(0, 1, t.size)  # rises by 80 noise sds
    assert onsets(trend, model=model) == []
    assert len(onsets(trend, model="mean")) >= 3  # the level model cuts it into steps
    jump = trend + np.where(t >= 250, 6.0, 0.0)
    assert [abs(o - 250) <= 2 for o in onsets(jump, model=model)] == [True]


def test_a_random_walk_is_one_segment_and_a_jump_out_of_it_is_found():
    rng = np.random.default_rng(6)
    walk = np.cumsum(rng.normal(0, 1, 400)) + rng.normal(0, 1, 400)
    walk[250:] += 15.0
    assert len(onsets(walk, model="trend")) >= 3  # i.i.d. noise: the wander is cut up
    for model in ("level", "llt", ("trend", "llt")):  # the default averages trend and llt
        assert [abs(o - 250) <= 2 for o in onsets(walk, model=model)] == [True]
    found = bayesian_changes(walk)
    assert found[0].detail["segment_model"] in ("trend", "llt")  # of the new segment
    sc = prior_scales(walk)
    assert 0.3 < sc.walk < 3.0  # q = 1 (innovation sd = noise sd)
    assert 0.6 < sc.walk_noise < 1.6


def test_walk_gate_takes_a_walk_only_when_the_differences_show_it():
    rng = np.random.default_rng(8)
    iid = rng.normal(0, 1, 400)
    walk = np.cumsum(rng.normal(0, 2, 400)) + rng.normal(0, 1, 400)  # q = 4
    assert prior_scales(iid, gate=2.0).walk == 0.0  # R - 1 within its null spread
    assert prior_scales(walk, gate=2.0).walk == prior_scales(walk).walk > 1.0
    x = np.r_[iid[:300], iid[300:360] + 3.0]  # a 3-sigma step, found online either way here
    for gate in (0.0, 2.0):
        det = BayesianDetector(walk_gate=gate)
        assert [abs(f.detail["onset_index"] - 300) <= 3 for v in x
                for f in det.update(v)] == [True]


def test_model_averaging_keeps_one_run_length_posterior():
    rng = np.random.default_rng(7)
    det = BayesianDetector(model=("mean", "trend", "level", "llt"), max_run=50, noise=1.0,
                           center=0.0, spread=1.0, walk=0.5)
    assert det.scales is not None  # all scales given: nothing held back
    for v in rng.normal(0, 1, 120):
        det.update(float(v))
    p = det.run_length()
    assert p.size == 51
    assert p.sum() == pytest.approx(1.0)
    same = BayesianDetector(model="trend", noise=1.0, center=0.0, spread=1.0)
    assert same.model == "trend"
    assert det.model == "mean+trend+level+llt"


def test_prior_scales_are_robust_to_steps_and_see_autocorrelation():
    rng = np.random.default_rng(2)
    step = np.r_[rng.normal(0, 1, 300), rng.normal(20, 1, 300)]
    sc = prior_scales(step)
    assert sc.noise == pytest.approx(1.0, rel=0.15)  # the step moves one difference only
    assert sc.spread == pytest.approx(step.std())
    assert sc.rho < 0.15
    assert 0.4 < prior_scales(ar1(rng, 4000, 0.6)).rho < 0.8  # the MADs' ratio is noisy
    assert prior_scales(np.r_[np.zeros(10), np.ones(10)]).noise > 0  # all differences 0
    assert prior_scales([1.0, np.nan, 2.0]) is None


def test_autocorrelated_noise_weighs_less_as_evidence():
    rng = np.random.default_rng(3)
    weighted = plain = 0
    for _ in range(4):
        x = ar1(rng, 600, 0.7)
        weighted += len(onsets(x, rho=None))  # rho estimated: each value weighs less
        plain += len(onsets(x))
    assert weighted <= 2
    assert plain > weighted


def test_units_do_not_matter_and_the_former_defaults_are_kept_as_options():
    rng = np.random.default_rng(4)
    x = np.r_[rng.normal(0, 1, 120), rng.normal(4, 1, 120)]
    assert onsets(x) == onsets(3e9 + 1e7 * x) == [120]
    old = BayesianDetector(model="mean", mean=0.0, kappa=1.0, alpha=1.0, beta=1.0, rho=0.0)
    assert tuple(old.scales)[:4] == (1.0, 0.0, 1.0, 0.0)  # fixed: no value is held back
    assert [f.detail["onset_index"] for v in (x - x.mean()) / x.std()
            for f in old.update(v)] == [120]


def test_online_detector_holds_back_its_warmup_then_finds_the_change():
    rng = np.random.default_rng(5)
    x = 500.0 + 20.0 * np.r_[rng.normal(0, 1, 150), rng.normal(5, 1, 100)]
    det = BayesianDetector(metric="queue_wait", max_run=200)
    out = [det.update(v) for v in x[:7]]
    assert out == [[]] * 7
    assert det.scales is None
    found = [f for v in x[7:] for f in det.update(v)]
    assert det.scales is not None
    assert [f.detail["onset_index"] for f in found] == [150]
    assert found[0].detail["model"] == "trend+llt"
    assert found[0].detail["segment_model"] in ("trend", "llt")
    assert found[0].magnitude == pytest.approx(100.0, rel=0.2)
    assert det.run_length().size <= 201


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"model": "ar"}, "model"), ({"model": ()}, "model"), ({"model": ("llt", "llt")}, "model"),
    ({"walk": -1.0}, "walk"), ({"walk_noise": 0.0}, "walk_noise"),
    ({"walk_gate": -1.0}, "walk_gate"),
    ({"rho": 1.0}, "rho"), ({"warmup": 2}, "warmup"),
    ({"noise": 0.0}, "noise"), ({"center": float("nan")}, "center"),
])
def test_bad_options_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BayesianDetector(**kwargs)
