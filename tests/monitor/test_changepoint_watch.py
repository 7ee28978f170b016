"""Metric streams against their model of normal (MetricWatcher, watch_metrics)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spotkit.monitor import MetricWatcher, NormalModel, watch_metrics

DAY = 86400.0
T0 = 1793577600.0  # Monday 2026-11-02 00:00 UTC


def _queue(n, seed, step_at=None, factor=1.0):
    """Queue waits, 4x longer on weekday working hours (8-18 h), sigma 0.4 in log."""
    rng = np.random.default_rng(seed)
    t = T0 + 600.0 * np.arange(n)
    hour = (t % DAY) / 3600
    busy = (hour >= 8) & (hour < 18) & (((t - T0) // DAY) % 7 < 5)
    wait = 90.0 * np.where(busy, 4.0, 1.0) * rng.lognormal(0, 0.4, n)
    if step_at is not None:
        wait[step_at:] *= factor
    return pd.DataFrame({"time": t, "metric": "queue_wait", "value": wait,
                         "beamline": "8.3.2", "target": "perlmutter", "size": np.nan})


def test_three_sigma_queue_step_is_found_fast_and_once():
    df = _queue(3500, seed=1, step_at=3000, factor=np.exp(1.2))  # 3 sigma longer
    history, watched = df.iloc[:2016], df.iloc[2016:]
    found = watch_metrics(watched, history=history)
    changes = [f for f in found if f.kind == "change"]
    assert len(changes) == 1
    ch = changes[0]
    assert ch.time >= df.time[3000]
    delay = int((ch.time - df.time[3000]) // 600) + 1
    assert delay <= 10
    assert ch.onset == pytest.approx(df.time[3000], abs=3 * 600)
    assert (ch.beamline, ch.target) == ("8.3.2", "perlmutter")
    assert ch.detail["units"] == "model sigmas"
    assert ch.detail["factor"] == pytest.approx(np.exp(1.2), rel=0.5)
    assert "8.3.2/perlmutter rose" in ch.message


def test_conditioning_on_time_of_day_avoids_false_findings():
    df = _queue(4000, seed=2)
    history, watched = df.iloc[:2016], df.iloc[2016:]
    cond = watch_metrics(watched, history=history)
    flat = watch_metrics(watched, history=history,
                         model=NormalModel(size_bins=0, hour_bin=24, weekend=False))
    n_cond = sum(f.kind == "change" for f in cond)
    n_flat = sum(f.kind == "change" for f in flat)
    assert n_cond <= 1  # ~2,000 stationary values at arl 20,000
    assert n_flat >= 5  # the daily pattern, seen as changes by an unconditioned model


def test_online_learning_follows_a_new_normal():
    df = _queue(2800, seed=3, step_at=2300, factor=3.0)
    w = MetricWatcher()
    w.model.fit(df.iloc[:2016])
    found = w.run(df.iloc[2016:])
    assert [f.kind for f in found if f.kind == "change"] == ["change"]
    # after the change the stream was re-centred: normal is now ~3x the old
    e = w.model.expected("queue_wait", df.time.iloc[-1] + 600, beamline="8.3.2",
                         target="perlmutter")
    old = NormalModel().fit(df.iloc[:2016]).expected(
        "queue_wait", df.time.iloc[-1] + 600, beamline="8.3.2", target="perlmutter")
    assert e.median / old.median == pytest.approx(3.0, rel=0.35)


def test_watcher_validates_its_options():
    with pytest.raises(ValueError, match="model"):
        MetricWatcher("a model")
    with pytest.raises(ValueError, match="arl"):
        MetricWatcher(arl=0)
    with pytest.raises(ValueError, match="min_history"):
        MetricWatcher(min_history=-1)
    with pytest.raises(ValueError, match="missing column"):
        MetricWatcher().run(pd.DataFrame({"time": [1.0]}))
