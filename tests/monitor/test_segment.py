"""Offline change points (spotkit.monitor.segment): simulated series with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.signal import lfilter

from spotkit.monitor import segment
from spotkit.monitor._segment import _segmentation


def _steps(rng, levels, lengths, sd=1.0):
    return np.concatenate([rng.normal(m, sd, k) for m, k in zip(levels, lengths, strict=True)])


def test_known_changes_are_found_within_a_margin():
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(20):
        x = _steps(rng, [0.0, 2.0, -1.0, 1.5], [150, 80, 120, 150])
        onsets = [f.detail["onset_index"] for f in segment(x)]
        truth = [150, 230, 350]
        if len(onsets) == 3 and all(abs(o - t) <= 5 for o, t in zip(onsets, truth, strict=True)):
            hits += 1
    assert hits >= 18  # 2- to 3-sigma shifts: located within 5 values almost always


def test_finding_fields_times_and_nan():
    rng = np.random.default_rng(2)
    x = _steps(rng, [10.0, 14.0], [100, 100])
    x[[20, 150]] = np.nan  # missing values are left out; indices stay those of values
    t = 1.7e9 + 60.0 * np.arange(x.size)
    (f,) = segment(x, t, metric="run_time")
    assert f.kind == "change"
    assert f.metric == "run_time"
    assert abs(f.detail["onset_index"] - 100) <= 2
    assert f.onset == t[f.detail["onset_index"]]
    assert f.time == t[-1]
    assert f.magnitude == pytest.approx(4.0, abs=0.5)
    assert f.detail["sigmas"] == pytest.approx(4.0, abs=0.8)
    assert f.confidence == pytest.approx(1.0)
    assert "rose" in f.message


@pytest.mark.parametrize("n", [50, 200, 1000, 5000])
def test_stationary_noise_gives_few_false_changes(n):
    # stated rate: on i.i.d. N(0, 1) noise at most 1 series in 20 has a (false) change
    rng = np.random.default_rng(n)
    false = sum(len(segment(rng.normal(size=n))) for _ in range(40))
    assert false <= 2


def test_ar1_noise_is_not_cut_into_levels():
    # AR(1), phi 0.8, 2000 values: about 0.1 false changes per series (measured on 200
    # series); with the i.i.d. scale more than 10 per series
    rng = np.random.default_rng(7)
    false = iid = 0
    for _ in range(20):
        x = lfilter([1.0], [1.0, -0.8], rng.normal(size=2000))
        false += len(segment(x))
        iid += len(segment(x, autocorrelation=False))
    assert false <= 5
    assert iid >= 100  # with the i.i.d. scale the wandering noise is cut into levels


def test_outliers_do_not_make_changes():
    rng = np.random.default_rng(3)
    x = rng.normal(size=500)
    x[[50, 200, 201, 420]] = [30.0, -25.0, -25.0, 40.0]  # single values and a pair
    assert segment(x) == []
    assert len(segment(x, winsorize=None)) >= 1  # without clipping they would
    y = x + np.r_[np.zeros(300), np.full(200, 3.0)]  # a real change is still found
    assert [abs(f.detail["onset_index"] - 300) <= 2 for f in segment(y)] == [True]


def test_optimum_among_candidates_matches_exhaustive_search():
    # the segmentation's penalised cost equals that of exhaustive optimal partitioning
    rng = np.random.default_rng(5)
    for _ in range(15):
        n = int(rng.integers(40, 200))
        k = int(rng.integers(0, 4))
        cuts = np.sort(rng.choice(np.arange(8, n - 8), k, replace=False))
        y = rng.normal(size=n) + np.repeat(rng.normal(0, 3, k + 1), np.diff(np.r_[0, cuts, n]))
        beta = 3 * math.log(n)
        got = _penalised(y, _segmentation(y, beta, True, 5), beta)
        assert got == pytest.approx(_exhaustive(y, beta, 5), abs=1e-6)


def _penalised(y, cps, beta):
    edges = [0, *cps, y.size]
    return beta * len(cps) + sum(float(((y[a:b] - y[a:b].mean()) ** 2).sum()) + math.log(b - a)
                                 for a, b in itertools.pairwise(edges))


def _exhaustive(y, beta, m):
    n = y.size
    f = np.full(n + 1, np.inf)
    f[0] = -beta
    for t in range(m, n + 1):
        for s in range(0, t - m + 1):
            if np.isfinite(f[s]):
                seg = y[s:t]
                c = f[s] + float(((seg - seg.mean()) ** 2).sum()) + math.log(t - s) + beta
                f[t] = min(f[t], c)
    return f[n]


def test_short_constant_and_penalty_options():
    assert segment(np.ones(100)) == []
    assert segment(np.arange(9.0)) == []  # shorter than two segments of min_size
    x = np.r_[np.zeros(30), np.ones(30)]  # exact steps: no noise at all
    assert [f.detail["onset_index"] for f in segment(x)] == [30]
    rng = np.random.default_rng(9)
    y = _steps(rng, [0.0, 1.0], [200, 200])
    assert len(segment(y, penalty="bic")) >= len(segment(y, penalty=1e6))
    assert segment(y, penalty=1e6) == []
    t0 = __import__("time").perf_counter()
    segment(rng.normal(size=100_000) + np.repeat(rng.normal(0, 2, 20), 5000))
    assert __import__("time").perf_counter() - t0 < 10.0  # generous: a shared CI machine


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"values": np.zeros((3, 3))}, "values"),
    ({"values": [0.0, math.inf, 1.0]}, "values"),
    ({"times": np.arange(3.0)}, "times"),
    ({"penalty": "aic"}, "penalty"),
    ({"penalty": -1.0}, "penalty"),
    ({"min_size": 1}, "min_size"),
    ({"min_size": 2.5}, "min_size"),
    ({"winsorize": 0.0}, "winsorize"),
])
def test_bad_input_raises_naming_the_parameter(kwargs, name):
    args = {"values": np.zeros(50), **kwargs}
    with pytest.raises(ValueError, match=name):
        segment(**args)


def test_values_on_a_coarse_grid_get_a_finite_noise_scale():
    # queue waits rounded to whole seconds, most of them 1 s: the MAD of the differences is
    # 0; the scale then comes from the mean absolute difference, not a vanishing one
    rng = np.random.default_rng(3)
    waits = np.round(rng.lognormal(0.0, 0.2, 300))
    waits[200:] += 3.0
    found = segment(np.log(np.maximum(waits, 1.0)))
    assert any(abs(f.detail["onset_index"] - 200) <= 2 for f in found)
    assert all(abs(f.detail["sigmas"]) < 1000.0 for f in found)
