"""Routing by queue wait (spotkit.monitor._routing): the view of a batch queue from the
telemetry, the router's hysteresis and probes, and the findings the monitor reports."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spotkit.monitor import (
    Finding,
    Router,
    frame,
    queue_change_findings,
    queue_view,
    reroute_findings,
)


def jobs(waits, *, start=0.0, every=600.0, target="hpc", prefix="j", queued_only=()):
    """queued/started events of jobs queued every ``every`` s with the given waits."""
    rows = []
    for i, w in enumerate(waits):
        t = start + every * i
        rows.append({"time": t, "step": "queued", "target": target, "job_id": f"{prefix}{i}"})
        if i not in queued_only:
            rows.append({"time": t + w, "step": "started", "target": target,
                         "job_id": f"{prefix}{i}"})
    return rows


def test_view_median_of_last_k_and_age_of_the_oldest_queued_job():
    ev = frame(jobs([30, 40, 35, 900, 1000, 1100, 0], queued_only=(6,))
               + jobs([5000], target="other", prefix="o"))
    v = queue_view(ev, "hpc", now=4200.0, k=3, window=7200)
    assert (v.median, v.samples, v.oldest_queued) == (1000.0, 3, 600.0)
    assert v.wait == 1000.0
    assert v.last_sample == 4100.0
    # the other target's job is not this queue's; old jobs fall out of the window
    assert queue_view(ev, "hpc", now=4200.0, k=10, window=1000).samples == 2
    stalled = queue_view(ev, "hpc", now=3600.0 + 2000, k=3, window=7200)
    assert stalled.oldest_queued == 2000.0
    assert stalled.wait == 2000.0
    # labels: the rules name and the compute target's name both count
    mixed = frame(jobs([30, 40], target="hpc") + jobs([50], target="slurm", prefix="s",
                                                      start=1300))
    assert queue_view(mixed, ["hpc", "slurm"], now=2000.0).samples == 3
    assert queue_view(frame([]), "hpc", now=1.0).wait is None


def test_view_counts_a_run_by_its_run_id_and_checks_options():
    ev = frame([{"time": 0.0, "step": "queued", "target": "hpc", "run_id": "r1"},
                {"time": 50.0, "step": "started", "target": "hpc", "run_id": "r1"}])
    assert queue_view(ev, "hpc", now=60.0).median == 50.0
    with pytest.raises(ValueError, match="k must be"):
        queue_view(ev, "hpc", now=60.0, k=0)
    with pytest.raises(ValueError, match="window"):
        queue_view(ev, "hpc", now=60.0, window=0)


def test_router_moves_on_a_slow_median_and_back_only_on_fresh_fast_waits():
    r = Router("hpc", "local", budget=600, probe=0)
    fast = jobs([60, 70, 50])
    assert r.decide(frame(fast), now=1900).target == "hpc"
    slow = fast + jobs([1200, 1300, 1250], start=1800, prefix="s")
    d = r.decide(frame(slow), now=4300)
    assert (d.target, d.switched, d.rerouted) == ("local", True, True)
    assert d.reason.startswith("median queue wait 20.8 min of the last 3 job(s)")
    assert "exceeds the budget 10.0 min" in d.reason
    assert d.view.median == 1200.0
    # fast waits measured before the move do not bring it back; nor do fewer than 3 new
    later = slow + jobs([60, 50], start=4300, prefix="f")
    d = r.decide(frame(later), now=5000)
    assert (d.target, d.switched) == ("local", False)
    back = later + jobs([70], start=5500, prefix="g")
    d = r.decide(frame(back), now=5600)
    assert (d.target, d.switched, d.rerouted) == ("hpc", True, False)
    assert "back to hpc" in d.reason


def test_router_hysteresis_does_not_flap_between_recover_and_budget():
    r = Router("hpc", "local", budget=600, recover=0.5, probe=0, hold=0)
    rows = jobs([900, 900, 900])
    assert r.decide(frame(rows), now=2200).switched
    switches = 0
    t = 2400.0
    for i in range(30):  # waits between 0.5 x budget and the budget: stay where it is
        rows += jobs([450], start=t, prefix=f"m{i}-")
        t += 300.0
        switches += r.decide(frame(rows), now=t + 100).switched
    assert switches == 0
    assert r.rerouted
    # one slow job among fast ones does not move it; the second in a row does
    r3 = Router("hpc", "local", budget=600, probe=0)
    assert not r3.decide(frame(jobs([60, 60, 60, 1500, 60])), now=5000).switched
    assert r3.decide(frame(jobs([60, 60, 60, 1500, 1400])), now=5000).switched
    r2 = Router("hpc", "local", budget=600, probe=0, hold=0)
    rows = jobs([450] * 10)
    assert not any(r2.decide(frame(rows[:2 * i + 2]), now=600.0 * i + 500).switched
                   for i in range(10))


def test_router_moves_at_once_on_a_stalled_job_and_holds():
    r = Router("hpc", "local", budget=600, probe=0)
    rows = jobs([60, 60, 60, 0], queued_only=(3,))  # job 3 queued at 1800, never started
    assert r.decide(frame(rows), now=2300).target == "hpc"
    d = r.decide(frame(rows), now=2500)
    assert d.switched
    assert "still queued" in d.reason
    # the stalled job starts fast after all, and 3 fast ones follow: still within hold
    rows = jobs([60, 60, 60, 700]) + jobs([10, 10, 10], start=2550, every=10, prefix="x")
    assert not r.decide(frame(rows), now=2700).switched
    assert r.decide(frame(rows), now=3200).switched  # hold (= budget) over


def test_router_probes_the_primary_while_rerouted_and_nothing_measures_it():
    r = Router("hpc", "local", budget=100, rerouted=True, since=0.0)
    assert r.probe == 200.0
    d = r.decide(frame([]), now=150)
    assert (d.target, d.probe) == ("local", False)
    d = r.decide(frame([]), now=250)
    assert (d.target, d.probe, d.rerouted, d.switched) == ("hpc", True, True, False)
    assert "probe" in d.reason
    # the probe is queued: no second probe until it has started
    waiting = frame(jobs([0], start=250, queued_only=(0,)))
    assert r.decide(waiting, now=500).target == "local"
    measured = frame(jobs([400], start=250))
    assert r.decide(measured, now=700).target == "local"  # last sample at 650
    assert r.decide(measured, now=900).probe
    # a fast probe: the next actions go there too until the move back is confirmed
    fast = frame(jobs([400], start=250) + jobs([10], start=900, prefix="p"))
    d = r.decide(fast, now=950)
    assert (d.target, d.probe) == ("hpc", True)
    assert "confirming" in d.reason
    fast = frame(jobs([400], start=250) + jobs([10, 12, 11], start=900, every=60, prefix="p"))
    d = r.decide(fast, now=1100)
    assert (d.target, d.switched, d.rerouted) == ("hpc", True, False)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"budget": 0}, "budget"), ({"budget": 10, "recover": 1.5}, "recover"),
    ({"budget": 10, "min_samples": 0}, "min_samples")])
def test_router_checks_its_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Router("hpc", "local", **kwargs)
    with pytest.raises(ValueError, match="fallback must differ"):
        Router("hpc", "hpc", budget=10)


def test_reroute_findings_one_per_switch_away_warning_back_info():
    ev = frame([
        {"time": 100.0, "step": "reroute", "target": "hpc", "value": 1500.0,
         "dataset_id": "d7", "beamline": "8.3.2",
         "detail": {"budget": 600, "fallback": "local", "direction": "away",
                    "action": "tomo/preview", "reason": "median queue wait 25.0 min"}},
        {"time": 900.0, "step": "reroute", "target": "hpc", "value": 100.0,
         "dataset_id": "d9", "detail": {"budget": 600, "fallback": "local",
                                        "direction": "back", "action": "tomo/preview",
                                        "reason": "median 1.7 min"}},
        {"time": 950.0, "step": "queued", "target": "hpc"}])
    away, back = reroute_findings(ev)
    assert (away.kind, away.severity, back.severity) == ("reroute", "warning", "info")
    assert away.key != back.key
    assert away.magnitude == 1500.0
    assert "moved from hpc to local" in away.message
    assert "back on hpc" in back.message
    assert reroute_findings(frame([])) == []


def test_queue_change_finds_the_slowdown_with_its_onset():
    rng = np.random.default_rng(3)
    waits = np.r_[120 * rng.lognormal(0, 0.25, 30), 2400 * rng.lognormal(0, 0.25, 6),
                  120 * rng.lognormal(0, 0.25, 20)]
    rows = jobs(waits.tolist(), every=600.0, target="hpc-queue")
    found = queue_change_findings(frame(rows), ["hpc", "hpc-queue"], budget=900)
    rise = [f for f in found if f.severity == "warning"]
    assert len(rise) == 1
    assert rise[0].target == "hpc"
    assert rise[0].onset == 30 * 600.0
    assert rise[0].detail["after"] > 900
    assert "rose" in rise[0].message
    assert all(f.severity == "info" for f in found if f is not rise[0])
    # a rise that stays within the budget is no alarm
    mild = np.r_[60 * rng.lognormal(0, 0.1, 30), 240 * rng.lognormal(0, 0.1, 10)]
    found = queue_change_findings(frame(jobs(mild.tolist())), "hpc", budget=900)
    assert found
    assert all(f.severity == "info" for f in found)
    assert queue_change_findings(frame(jobs([60] * 5)), "hpc") == []


def test_one_slowdown_seen_by_the_watcher_and_the_routing_is_one_finding():
    from spotkit.monitor import metrics, one_per_change, watch_metrics

    rng = np.random.default_rng(8)
    waits = np.r_[120 * rng.lognormal(0, 0.3, 130), 1800 * rng.lognormal(0, 0.3, 30)]
    rows = [dict(r, beamline="8.3.2") for r in jobs(waits.tolist(), target="hpc-queue")]
    ev = frame(rows)
    streams = [f for f in watch_metrics(metrics(ev)) if f.kind == "change"]
    wide = queue_change_findings(ev, ["hpc", "hpc-queue"], budget=900)
    assert len(streams) == 1  # one slowdown, two findings, two keys
    assert len(wide) == 1
    assert streams[0].key != wide[0].key
    anomaly = Finding("anomaly", "queue_wait", time=1.0, message="one slow job",
                      beamline="8.3.2", target="hpc-queue")
    other = dataclasses.replace(streams[0], target="elsewhere")
    merged = one_per_change([anomaly, *streams, other, *wide])
    assert [f.kind for f in merged] == ["anomaly", "change", "change"]
    assert merged[1] is other  # another target's change is another change
    (one,) = [f for f in merged if f.target == "hpc"]
    assert one.severity == "warning"
    assert one.detail["also"][0]["beamline"] == "8.3.2"
    assert one.detail["also"][0]["onset"] == streams[0].onset
    # a change the other way, or long before, is another change
    earlier = dataclasses.replace(streams[0], onset=0.0, time=600.0)
    fall = dataclasses.replace(streams[0], magnitude=-2.0)
    assert len(one_per_change([earlier, fall, *wide])) == 3
