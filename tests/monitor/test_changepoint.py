"""The calibrated CUSUM change detector (spotkit.monitor.ChangeDetector, find_changes)."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from spotkit.monitor import ChangeDetector, Finding, cusum_arl, cusum_threshold, find_changes


def _changes(found):
    return [f for f in found if f.kind == "change"]


def test_threshold_inverts_siegmund_arl():
    # Siegmund's approximation: k = 0.5, h = 5 gives ~938 samples (the textbook value 930)
    assert cusum_arl(5.0, 0.5) == pytest.approx(938, rel=0.01)
    for arl, k in ((1_000, 0.5), (10_000, 1.0), (50_000, 1.5)):
        h = cusum_threshold(arl, k)
        assert cusum_arl(h, k) == pytest.approx(2 * arl, rel=1e-6)  # two sides share it
        assert cusum_arl(cusum_threshold(arl, k, sides=1), k) == pytest.approx(arl, rel=1e-6)
    assert cusum_threshold(100_000, 1.0) > cusum_threshold(10_000, 1.0)


def test_false_alarms_on_long_stationary_streams():
    """200,000 N(0, 1) values at the default arl (10,000): ~20 false changes expected.

    An uncalibrated CUSUM (k = 0.5, h = 5) raises one every ~900 values (~200 here).
    """
    n_changes = n_anomalies = 0
    for seed in range(10):
        rng = random.Random(12345 + seed)
        det = ChangeDetector()
        found = []
        for _ in range(20_000):
            found += det.update(rng.gauss(0.0, 1.0))
        n_changes += len(_changes(found))
        n_anomalies += len(found) - len(_changes(found))
    assert n_changes <= 30  # Poisson(20): P(> 30) ~ 1.3 %; the seeds fix the count
    assert n_anomalies <= 30  # |z| above the two-sided 1/arl quantile: ~20 expected


def test_delay_of_a_three_sigma_shift():
    delays, onsets = [], []
    for seed in range(40):
        rng = random.Random(seed)
        det = ChangeDetector()
        found = []
        for i in range(300):
            found += det.update(rng.gauss(0.0, 1.0) + (3.0 if i >= 200 else 0.0))
        ch = [f for f in _changes(found) if f.detail["index"] >= 200]
        assert ch, f"seed {seed}: the shift was missed"
        delays.append(ch[0].detail["index"] - 200 + 1)  # samples after the shift, inclusive
        onsets.append(ch[0].detail["onset_index"])
    assert statistics.median(delays) <= 4  # theory: (h + 1.17) / (3 - k) ~ 2.7
    assert max(delays) <= 10
    assert statistics.median(abs(o - 200) for o in onsets) <= 1


def test_change_carries_onset_magnitude_confidence_and_direction():
    rng = np.random.default_rng(3)
    x = np.r_[rng.normal(10.0, 2.0, 300), rng.normal(4.0, 2.0, 200)]
    t = 1.7e9 + 60.0 * np.arange(x.size)
    found = find_changes(x, t, metric="ingest_time")
    assert len(found) == 1
    f = found[0]
    assert isinstance(f, Finding)
    assert f.kind == "change"
    assert f.metric == "ingest_time"
    assert abs(f.detail["onset_index"] - 300) <= 2
    assert f.onset == pytest.approx(t[f.detail["onset_index"]])
    assert f.time >= f.onset
    assert f.magnitude == pytest.approx(-6.0, abs=2.0)
    assert f.detail["sigmas"] == pytest.approx(-3.0, abs=1.0)
    assert 0.0 <= f.confidence <= 1.0
    assert f.confidence > 0.9
    assert "fell" in f.message


def test_one_outlier_is_an_anomaly_not_a_change():
    rng = random.Random(7)
    det = ChangeDetector(metric="run_time")
    found = []
    for i in range(400):
        v = rng.gauss(0.0, 1.0)
        found += det.update(25.0 if i == 250 else v, dataset_id=f"ds{i}")
    assert [f.kind for f in found] == ["anomaly"]
    a = found[0]
    assert a.dataset_id == "ds250"
    assert a.severity == "info"
    assert a.detail["sigmas"] > 10


def test_offline_form_equals_the_online_detector():
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(0, 1, 150), rng.normal(2.5, 1, 150), rng.normal(0, 1, 150)])
    det = ChangeDetector(warmup=20)
    online = []
    for i, v in enumerate(x):
        online += det.update(float(v), float(i))
    offline = find_changes(x, warmup=20, anomalies=True)
    assert [f.as_dict() for f in offline] == [f.as_dict() for f in online]
    assert len(_changes(offline)) == 2


def test_nan_is_skipped_and_fixed_baseline_works():
    det = ChangeDetector(mean=0.0, scale=1.0)
    assert det.ready
    assert det.baseline == (0.0, 1.0)
    assert det.update(math.nan) == []
    rng = random.Random(5)
    found = []
    for _ in range(500):
        found += det.update(rng.gauss(0.0, 1.0))
    assert det.baseline == (0.0, 1.0)  # a known baseline is not learned while in control
    for _ in range(100):
        found += det.update(rng.gauss(4.0, 1.0))
    assert len(_changes(found)) == 1  # then the new level is learned: one change, not 50
    assert det.baseline[0] == pytest.approx(4.0, abs=0.5)


def test_memory_is_bounded():
    det = ChangeDetector(memory=50)
    for i in range(5_000):
        det.update(float(i % 7))
    assert len(det._pending) <= 50
    assert len(det.findings) <= 1000


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"arl": 0}, "arl"), ({"arl": 1}, "arl"), ({"drift": -1.0}, "drift"),
    ({"drift": math.nan}, "drift"), ({"warmup": 2}, "warmup"), ({"warmup": 3.5}, "warmup"),
    ({"memory": 5}, "memory"), ({"mean": 0.0}, "mean and scale"),
    ({"mean": 0.0, "scale": 0.0}, "scale"), ({"anomaly": -1.0}, "anomaly"),
])
def test_bad_options_raise_a_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ChangeDetector(**kwargs)


def test_bad_series_raise():
    with pytest.raises(ValueError, match="values must be 1-D"):
        find_changes(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="times must have the shape"):
        find_changes(np.zeros(10), np.zeros(9))
    with pytest.raises(ValueError, match="sides"):
        cusum_threshold(100, 1.0, sides=3)
