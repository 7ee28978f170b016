"""Models of normal (spotkit.monitor.NormalModel): conditioning, shrinkage, online = batch."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from spotkit.monitor import LOG_METRICS, NormalModel

DAY = 86400.0
T0 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp()  # a Monday, 00:00 UTC


def _history(n=6000, seed=0, days=42):
    """Transfer times: size / rate, with a fast network at night (0-6 h) and on weekends."""
    rng = np.random.default_rng(seed)
    t = T0 + np.sort(rng.uniform(0, days * DAY, n))
    size = 10 ** rng.uniform(9, 11, n)  # 1-100 GB: >= 1 s (below, durations count as 1 s)
    hour = (t % DAY) / 3600
    weekend = ((t - T0) // DAY) % 7 >= 5
    rate = np.where(hour < 6, 1e9, 2.5e8) * np.where(weekend, 1.5, 1.0)
    value = size / rate * rng.lognormal(0, 0.15, n)
    return pd.DataFrame({"time": t, "metric": "transfer_time", "value": value,
                         "beamline": "8.3.2", "target": "nersc", "size": size})


def test_night_time_large_scan_gets_the_night_expectation():
    model = NormalModel().fit(_history())
    monday_3am = T0 + 49 * DAY + 3 * 3600  # a Monday, after the history
    night = model.expected("transfer_time", monday_3am, size=1e10, beamline="8.3.2",
                           target="nersc")
    noon = model.expected("transfer_time", monday_3am + 9 * 3600, size=1e10,
                          beamline="8.3.2", target="nersc")
    # truth: 10 GB at 1 GB/s at night (10 s), 0.25 GB/s by day (40 s)
    assert night.level == "hour+week+size"
    assert night.median == pytest.approx(10, rel=0.15)
    assert noon.median == pytest.approx(40, rel=0.15)
    assert night.low < night.median < night.high
    # what is slow at 3 am is normal at noon
    assert night.residual(40.0) > 4
    assert abs(noon.residual(40.0)) < 1.5
    # a size never seen (history: 1-100 GB): the stream's size slope extrapolates
    huge = model.expected("transfer_time", monday_3am, size=1e12, beamline="8.3.2",
                          target="nersc")
    assert huge.median == pytest.approx(1000, rel=0.35)  # 1 TB at 1 GB/s
    # an unconditioned model cannot tell
    flat = NormalModel(size_bins=0, hour_bin=24, weekend=False).fit(_history())
    e = flat.expected("transfer_time", monday_3am, size=1e10, beamline="8.3.2",
                      target="nersc")
    assert e.level == "hour+week+size"  # one bin per level: all the same
    assert abs(e.residual(50.0)) < 2


def test_weekend_bin_and_time_zone():
    model = NormalModel().fit(_history())
    saturday_noon = T0 + 47 * DAY + 12 * 3600
    monday_noon = T0 + 49 * DAY + 12 * 3600
    kw = {"size": 1e10, "beamline": "8.3.2", "target": "nersc"}
    sat = model.expected("transfer_time", saturday_noon, **kw)
    mon = model.expected("transfer_time", monday_noon, **kw)
    assert sat.median < 0.85 * mon.median  # 1.5x faster on weekends
    # the hour is local: Monday 11:00 UTC is 03:00 in Los Angeles
    la = NormalModel(tz="America/Los_Angeles")
    for i in range(200):
        la.learn("queue_wait", 100.0, T0 + 11 * 3600 + i)  # 03:00 in LA
    assert la._time_bins(T0 + 11 * 3600) == (3, 0)  # 11:00 UTC is 03:00 (PST) in LA



def test_few_values_shrink_to_the_coarser_bin():
    model = NormalModel(log=False)
    for i in range(300):  # by day: ~100 s, the same in every hour
        model.learn("run_time", 100.0 + (i % 11) - 5, T0 + 12 * 3600 + 60 * i)
    model.learn("run_time", 400.0, T0 + 3 * 3600)  # one value at night
    e = model.expected("run_time", T0 + 3 * 3600 + 60)
    # hour bins do not differ (between-bin variance 0): one value says nothing
    assert e.median == pytest.approx(100, abs=2)
    assert e.level == "stream"  # the finest bin with >= prior values
    for i in range(300):
        model.learn("run_time", 400.0 + (i % 11) - 5, T0 + 3 * 3600 + 10 * i)
    # now the night bin is known to differ: its own values decide
    assert model.expected("run_time", T0 + 3 * 3600 + 60).median == pytest.approx(400, abs=5)
    # without siblings to compare with, a fixed prior shrinks: n / (n + prior)
    m2 = NormalModel(log=False, prior=30)
    for i in range(300):
        m2.learn("run_time", 100.0 + (i % 11) - 5, T0 + 12 * 3600 + 10 * i)  # one hour bin
    m2.learn("run_time", 400.0, T0 + 3 * 3600)
    assert m2.expected("run_time", T0 + 3 * 3600 + 60).median == pytest.approx(
        100 + 300 / 31, abs=2)


def test_online_updates_equal_the_batch_fit():
    hist = _history(n=3000, seed=4)
    batch = NormalModel(window=128).fit(hist)
    online = NormalModel(window=128)
    for r in hist.itertuples():
        online.learn(r.metric, r.value, r.time, size=r.size, beamline=r.beamline,
                     target=r.target)
    halves = NormalModel(window=128).fit(hist.iloc[:1500]).fit(hist.iloc[1500:])
    probe = _history(n=200, seed=9)
    rb = batch.residuals(probe)
    np.testing.assert_allclose(online.residuals(probe), rb, rtol=1e-12)
    np.testing.assert_allclose(halves.residuals(probe), rb, rtol=1e-12)
    assert np.isfinite(rb).all()


def test_memory_is_bounded_and_old_values_forgotten():
    model = NormalModel(window=50, max_age=10 * DAY)
    for i in range(5000):
        model.learn("queue_wait", 60.0, T0 + 600 * i, size=1e9, beamline="b", target="t")
    assert max(len(c.values) for c in model._cells.values()) <= 50
    assert model.count("queue_wait", beamline="b", target="t") == 50
    # values older than max_age before the newest are dropped
    model2 = NormalModel(window=1000, max_age=DAY)
    for i in range(100):
        model2.learn("queue_wait", 60.0, T0 + 3600 * i)
    assert model2.count("queue_wait") == 25


def test_residual_and_log_space():
    assert "queue_wait" in LOG_METRICS
    model = NormalModel()
    rng = np.random.default_rng(1)
    for i, v in enumerate(120 * rng.lognormal(0, 0.3, 500)):
        model.learn("queue_wait", v, T0 + 600 * i, beamline="b", target="t")
    e = model.expected("queue_wait", T0 + 600 * 500, beamline="b", target="t")
    assert e.log
    assert e.median == pytest.approx(120, rel=0.1)
    assert e.scale == pytest.approx(0.3, rel=0.25)
    assert e.residual(120 * math.exp(0.9)) == pytest.approx(3.0, abs=0.8)  # 3 sigma slower
    assert model.residual("queue_wait", 0.0, T0, beamline="b", target="t") < -5  # 0 s ok
    assert math.isnan(model.residual("run_time", 1.0, T0))  # nothing learned: NaN
    assert model.metrics == ["queue_wait"]


def test_shift_and_forget_a_stream():
    model = NormalModel()
    for i in range(100):
        model.learn("queue_wait", 100.0, T0 + i, beamline="a")
        model.learn("queue_wait", 100.0, T0 + i, beamline="b")
    assert model.shift("queue_wait", math.log(2.0), beamline="a") == 4
    # the stream's bins move; the metric-wide bin (shared with "b") pulls it by 10/110
    assert model.expected("queue_wait", T0 + 200, beamline="a").median == pytest.approx(
        2 ** (100 / 110) * 100, rel=0.02)
    assert model.expected("queue_wait", T0 + 200, beamline="b").median == pytest.approx(
        100, rel=0.02)
    assert model.forget("queue_wait", beamline="a") == 4
    assert model.count("queue_wait", beamline="a") == 0


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"size_bins": -1}, "size_bins"), ({"hour_bin": 5}, "hour_bin"),
    ({"hour_bin": 0}, "hour_bin"), ({"window": 1}, "window"), ({"max_age": 0}, "max_age"),
    ({"prior": 0}, "prior"), ({"min_scale": -1.0}, "min_scale"), ({"tz": "Mars/Olympus"}, "tz"),
])
def test_bad_options_raise_a_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NormalModel(**kwargs)


def test_bad_history_and_times_raise():
    model = NormalModel()
    with pytest.raises(ValueError, match="missing column"):
        model.fit(pd.DataFrame({"time": [1.0], "metric": ["x"], "value": [1.0]}))
    with pytest.raises(ValueError, match="DataFrame"):
        model.fit([1, 2, 3])
    bad = _history(n=5)
    bad.loc[2, "time"] = np.nan
    with pytest.raises(ValueError, match="'time'"):
        model.fit(bad)
    with pytest.raises(ValueError, match="time must be"):
        model.expected("x", "yesterday")
    with pytest.raises(ValueError, match="delta"):
        model.shift("x", math.inf)
