"""Missing data: quiet beamlines, scan number gaps, missing products, stuck steps.

Each detector is checked for its detection delay against the issue's bound (about twice the
relevant p99 interval after the onset, plus one check period) and for false alarms on
normal telemetry built like the events table (:func:`spotkit.monitor.events`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spotkit.monitor import (
    MissingData,
    Schedule,
    check_gaps,
    check_missing_products,
    check_quiet,
    check_stuck,
)
from spotkit.monitor._missing import (
    learn_durations,
    learn_interarrival,
    learn_product_delay,
    p99,
    scan_number,
)

DAY = 86400.0
T0 = 1_796_000_000.0  # a Monday morning in 2026 (UTC), the start of the simulated beamtime
CHECK = 10.0  # seconds between the monitor's checks in these tests


def arrivals(n, *, mean=120.0, seed=0, start=T0, beamline="8.3.2", first_scan=1,
             prefix="scan_"):
    """A beamline sending scans with exponential gaps (mean ``mean`` s), as 'complete'
    events of the flow (item = the file, dataset_id from ingest) named scan_0001..."""
    rng = np.random.default_rng(seed)
    times = start + np.cumsum(rng.exponential(mean, n))
    return pd.DataFrame({
        "time": times, "step": "complete", "beamline": beamline,
        "item": [f"/inbox/{prefix}{first_scan + i:04d}.h5" for i in range(n)],
        "dataset_id": [f"{beamline}-{first_scan + i}" for i in range(n)]})


def first_detection(check, onset, *, until, step=CHECK):
    """The first check time ``onset + k * step`` at which ``check(now)`` finds something,
    and what it found (None, [] if none up to ``until``).

    The missing-data findings, once due, stay due as time goes on (the silence, the age
    grows), so the first one is found by bisection over the checks of a monitor that
    checks every ``step`` s; the check before it is asserted to find nothing.
    """
    n = int(np.ceil((until - onset) / step))
    if check(onset):
        return onset, check(onset)
    if not check(onset + n * step):
        return None, []
    lo, hi = 0, n  # check(lo) finds nothing, check(hi) finds something
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if check(onset + mid * step):
            hi = mid
        else:
            lo = mid
    assert not check(onset + (hi - 1) * step)
    return onset + hi * step, check(onset + hi * step)


# -- helpers -----------------------------------------------------------------------------------


def test_p99_and_scan_numbers():
    assert p99(range(101)) == 99.0
    assert p99([1.0] * 5) is None
    assert p99([1.0] * 5, min_samples=5) == 1.0
    assert scan_number("/data/bone_scan_0041.h5") == ("bone_scan_", 41)
    assert scan_number("/data/tomo_00042.nxs") == ("tomo_", 42)
    assert scan_number("/frames/run-7/") == ("run-", 7)
    assert scan_number("flats.h5") is None
    assert scan_number(None) is None
    assert scan_number("scan_0041.tar.gz") == ("scan_", 41)


def test_events_need_time_and_step():
    with pytest.raises(ValueError, match="'time' and 'step'"):
        check_quiet(pd.DataFrame({"when": [1.0]}), now=2.0)


# -- (a) quiet beamline ----------------------------------------------------------------------------


def test_quiet_beamline_found_within_twice_p99_and_no_false_alarm_before():
    history = arrivals(400, mean=120.0, seed=1)
    limit = learn_interarrival(history)["8.3.2"]
    assert 3 * 120 < limit < 7 * 120  # p99 of an exponential is 4.6 means
    # no false alarm inside the normal stream: not even at its worst moment, just before
    # the arrival that ends its longest silence (nor at other moments of it)
    times = history["time"].to_numpy()
    worst = int(np.argmax(np.diff(times)))
    for now in (times[worst + 1] - 1e-3, times[worst] + 1.5 * limit, times[200] + 60):
        seen = history[history["time"] <= now]
        assert check_quiet(seen, float(now), expected={"8.3.2": limit}) == []
    # then the beamline goes quiet after its last scan
    onset = float(times[-1])
    when, found = first_detection(
        lambda now: check_quiet(history, now, expected={"8.3.2": limit}), onset,
        until=onset + 5 * limit)
    assert when is not None
    delay = when - onset
    assert 2 * limit <= delay <= 2 * limit + CHECK
    (f,) = found
    assert (f.kind, f.metric, f.beamline, f.onset) == ("quiet", "arrivals", "8.3.2", onset)
    assert "8.3.2" in f.message
    assert "beamtime" in f.message
    assert f.magnitude == pytest.approx(delay)
    assert f.detail["schedule"] == "always"


def test_quiet_only_during_scheduled_beamtime():
    history = arrivals(200, mean=60.0, seed=2)
    end = float(history["time"].iloc[-1])
    window_end = end + 3600
    schedule = Schedule(windows={"8.3.2": [(T0 - 60, window_end)],
                                 "7.3.3": [(end, end + 7200)]})
    # inside beamtime: found; the learned cadence skips nothing
    found = check_quiet(history, end + 1800, schedule=schedule)
    assert [f.beamline for f in found] == ["8.3.2"]
    assert found[0].detail["schedule"] == "windows"
    # after the beamtime: silence is expected
    assert check_quiet(history, window_end + 60, schedule=schedule) == []
    # 7.3.3 has beamtime but no history: its cadence is unknown, nothing is claimed
    assert all(f.beamline != "7.3.3" for f in check_quiet(history, end + 1800,
                                                          schedule=schedule))
    # with a configured cadence and nothing sent since its beamtime began: onset = start
    found = check_quiet(history, end + 1000, schedule=schedule,
                        expected={"7.3.3": 300.0})
    f733 = [f for f in found if f.beamline == "7.3.3"]
    assert f733
    assert f733[0].onset == end
    assert "nothing arrived yet" in f733[0].message


def test_quiet_learns_cadence_inside_beamtime_only():
    # two beamtimes with a night between: the night is not part of the cadence
    days = [arrivals(30, mean=60.0, seed=3 + d, start=T0 + d * DAY, first_scan=1 + 30 * d)
            for d in range(5)]
    ev = pd.concat(days)
    windows = {"8.3.2": [(T0 + d * DAY, float(day["time"].max()) + 1)
                         for d, day in enumerate(days)]}
    with_schedule = learn_interarrival(ev, schedule=Schedule(windows=windows))["8.3.2"]
    without = learn_interarrival(ev)["8.3.2"]
    assert with_schedule < 600 < without  # the night inflates an unscheduled p99


def test_inferred_activity_hours():
    # four weeks of a beamline active 08:00-20:00 UTC on weekdays
    frames = []
    for week in range(4):
        for day in range(5):
            start = T0 + week * 7 * DAY + day * DAY + 8 * 3600 - (T0 % DAY)
            ev = arrivals(60, mean=600.0, seed=week * 7 + day, start=start)
            frames.append(ev[ev["time"] < start + 12 * 3600])
    history = pd.concat(frames)
    schedule = Schedule.infer(history)
    assert schedule.source == "hours"
    monday_noon = T0 - (T0 % DAY) + 4 * 7 * DAY + 12 * 3600
    assert schedule.active("8.3.2", monday_noon)
    assert not schedule.active("8.3.2", monday_noon + 12 * 3600)  # midnight
    assert not schedule.active("8.3.2", monday_noon + 5 * DAY)  # Saturday
    assert schedule.since("8.3.2", monday_noon) == monday_noon - 4 * 3600


def test_schedule_errors_name_the_window():
    with pytest.raises(ValueError, match="ends before it starts"):
        Schedule(windows={"8.3.2": [("2026-12-04T10:00Z", "2026-12-04T09:00Z")]})
    with pytest.raises(ValueError, match="ISO 8601"):
        Schedule(windows={"8.3.2": [("yesterday", "today")]})


def test_beamtime_windows_from_text_and_files(tmp_path):
    at = Schedule.epoch
    s = Schedule.parse(["2026-12-04T08:00Z/2026-12-04T20:00Z",
                        "7.3.3=2026-12-05T08:00/2026-12-05T12:00"])
    assert s.active("8.3.2", at("2026-12-04T19:59Z"))  # a window for every beamline
    assert not s.active("8.3.2", at("2026-12-04T20:00Z"))
    assert not s.active("7.3.3", at("2026-12-04T09:00Z"))  # its own windows only
    assert s.active("7.3.3", at("2026-12-05T11:00Z"))  # no zone: UTC
    # for --beamline: a window without a beamline is its
    one = Schedule.parse(["2026-12-04T08:00Z/2026-12-04T20:00Z"], beamline="8.3.2")
    assert one.active("8.3.2", at("2026-12-04T09:00Z"))
    assert not one.active("7.3.3", at("2026-12-04T09:00Z"))

    mapping = tmp_path / "beamtime.yaml"
    mapping.write_text('8.3.2:\n  - 2026-12-04T08:00Z/2026-12-04T20:00Z\n'
                       '  - ["2026-12-06T08:00:00Z", 2026-12-06T09:00:00Z]\n'
                       '"*": [2026-12-07T00:00Z/2026-12-08T00:00Z]\n')
    s = Schedule.parse(path=mapping)
    assert s.active("8.3.2", at("2026-12-06T08:30Z"))  # a pair (YAML reads a datetime)
    assert s.active("7.3.3", at("2026-12-07T12:00Z"))  # "*": the beamlines not listed
    assert not s.active("8.3.2", at("2026-12-07T12:00Z"))
    lines = tmp_path / "beamtime.txt"
    lines.write_text("# run 2026-3\n2026-12-04T08:00Z/2026-12-04T20:00Z\n\n"
                     "7.3.3=2026-12-05T08:00Z/2026-12-05T12:00Z  # SAXS\n")
    s = Schedule.parse(["2026-12-09T08:00Z/2026-12-09T09:00Z"], path=lines)
    assert len(s.windows["*"]) == 2
    assert len(s.windows["7.3.3"]) == 1
    listed = tmp_path / "list.yaml"
    listed.write_text("- 2026-12-04T08:00Z/2026-12-04T20:00Z\n")
    assert Schedule.parse(path=listed, beamline="8.3.2").windows.keys() == {"8.3.2"}

    with pytest.raises(ValueError, match=r"'2026-12-04T08:00Z' .*START/END"):
        Schedule.parse(["2026-12-04T08:00Z"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("8.3.2: [2026-12-04T08:00Z 2026-12-04T20:00Z]\n")
    with pytest.raises(ValueError, match=r"in .*bad\.yaml, beamline 8\.3\.2"):
        Schedule.parse(path=bad)
    with pytest.raises(ValueError, match="cannot be read"):
        Schedule.parse(path=tmp_path / "none.yaml")


# -- (b) scan number gaps ----------------------------------------------------------------------


def test_scan_gap_found_after_grace_and_late_scans_forgiven():
    history = arrivals(200, mean=60.0, seed=5)
    limit = learn_interarrival(history)["8.3.2"]
    assert check_gaps(history, float(history["time"].max()) + 10) == []  # no gap
    # scan 0150 never comes
    lost = history[history["item"] != "/inbox/scan_0150.h5"]
    after = float(history.loc[history["item"] == "/inbox/scan_0151.h5", "time"].iloc[0])
    when, found = first_detection(
        lambda now: check_gaps(lost[lost["time"] <= now], now, expected={"8.3.2": limit}),
        after, until=after + 5 * limit)
    assert when is not None
    assert 2 * limit <= when - after <= 2 * limit + CHECK
    (f,) = found
    assert (f.kind, f.metric, f.beamline) == ("gap", "scan_number", "8.3.2")
    assert f.detail["missing"] == [150]
    assert f.dataset_id == "8.3.2-151"
    assert "scan 150 of series scan_ is missing" in f.message
    assert f.onset < after
    # the same scan arriving late (within the grace) is no gap
    late = history.copy()
    late.loc[late["item"] == "/inbox/scan_0150.h5", "time"] = after + limit
    assert check_gaps(late, after + 1.5 * limit) == []


def test_scan_gap_series_are_separate_and_jumps_are_info():
    a = arrivals(40, mean=30.0, seed=6, prefix="bone_")
    b = arrivals(40, mean=30.0, seed=7, prefix="wood_", first_scan=500)
    jump = pd.DataFrame({"time": [float(a["time"].max()) + 5], "step": "complete",
                         "beamline": "8.3.2", "item": ["/inbox/bone_9000.h5"]})
    ev = pd.concat([a, b, jump])
    found = check_gaps(ev, float(ev["time"].max()) + 3600)
    assert len(found) == 1
    assert found[0].severity == "info"
    assert "jumped from 40 to 9000" in found[0].message


def test_scan_numbers_from_detail():
    ev = pd.DataFrame({"time": [0.0, 10.0, 20.0], "step": "complete", "beamline": "bl",
                       "detail": [{"scan_number": 1}, {"scan_number": 2}, {"scan_number": 5}]})
    (f,) = check_gaps(ev, now=100.0, grace=30.0)
    assert f.detail["missing"] == [3, 4]
    assert f.magnitude == 2.0


# -- (c) missing products ------------------------------------------------------------------------


def product_history(n, *, seed=8, delay=300.0, spread=30.0, start=T0):
    """Datasets completed every 120 s, each followed by a run whose product (a derived
    dataset, as spotkit.runs records it) arrives ``delay`` +- ``spread`` s later."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        t = start + 120.0 * i
        ds, run = f"raw-{i}", f"run-{i}"
        rows += [
            {"time": t, "step": "complete", "item": f"/inbox/scan_{i:04d}.h5"},
            {"time": t + 2, "step": "ingested", "item": f"/inbox/scan_{i:04d}.h5",
             "dataset_id": ds, "beamline": "8.3.2"},
            {"time": t + 5, "step": "run", "dataset_id": ds, "run_id": run,
             "beamline": "8.3.2", "outcome": "ok", "target": "local"},
            {"time": t + max(10.0, rng.normal(delay, spread)), "step": "product",
             "dataset_id": f"derived-{i}", "run_id": run, "beamline": "8.3.2"},
        ]
    return pd.DataFrame(rows)


def test_missing_products_after_twice_p99():
    history = product_history(100)
    limit = learn_product_delay(history)["8.3.2"]
    assert 300 < limit < 450
    last = float(history["time"].max())
    assert check_missing_products(history, last + 1) == []  # all products came
    # a new dataset whose run never delivers
    t = last + 60
    new = pd.DataFrame([
        {"time": t, "step": "complete", "item": "/inbox/scan_0100.h5"},
        {"time": t + 2, "step": "ingested", "item": "/inbox/scan_0100.h5",
         "dataset_id": "raw-100", "beamline": "8.3.2"}])
    ev = pd.concat([history, new])
    when, found = first_detection(
        lambda now: check_missing_products(ev, now, expected={"8.3.2": limit}), t,
        until=t + 5 * limit)
    assert when is not None
    assert 2 * limit <= when - t <= 2 * limit + CHECK
    (f,) = found
    assert (f.kind, f.metric, f.dataset_id, f.beamline, f.onset) == (
        "missing", "products", "raw-100", "8.3.2", t)
    assert f.severity == "warning"
    assert "raw-100" in f.message


def test_missing_products_by_name_and_failed_runs():
    ev = pd.DataFrame([
        {"time": 0.0, "step": "complete", "dataset_id": "d1", "beamline": "bl"},
        {"time": 5.0, "step": "finished", "dataset_id": "d1", "run_id": "r1",
         "outcome": "failed"},
        {"time": 9.0, "step": "product", "dataset_id": "p1", "run_id": "r2",
         "detail": {"action": "preview"}},
        {"time": 9.0, "step": "run", "dataset_id": "d1", "run_id": "r2", "outcome": "ok"},
    ])
    (f,) = check_missing_products(ev, now=100.0, expected={"*": 20.0},
                                  promised=lambda row: ["preview", "recon"])
    assert f.detail["missing"] == ["recon"]
    assert f.detail["made"] == ["preview"]
    assert f.severity == "critical"
    assert "1 run(s) failed" in f.message
    assert check_missing_products(ev, now=100.0, expected={"*": 20.0},
                                  promised=lambda row: ["preview"]) == []
    # long after (past the lookback) the dataset is left to `spotkit status`
    assert check_missing_products(ev, now=1000.0, expected={"*": 20.0}, promised=2) == []


# -- (d) stuck transfers and jobs ----------------------------------------------------------------


def job_history(n, *, seed=9, target="perlmutter", wait=600.0, run=300.0, nbytes=5e9):
    rng = np.random.default_rng(seed)
    rows = []
    t = T0
    for i in range(n):
        q = rng.lognormal(np.log(wait), 0.3)
        r = rng.lognormal(np.log(run), 0.2)
        job = f"{target}-{i}"
        common = {"job_id": job, "target": target, "dataset_id": f"raw-{i}",
                  "beamline": "8.3.2"}
        rows += [{"time": t, "step": "queued", "bytes": nbytes, **common},
                 {"time": t + q, "step": "started", **common},
                 {"time": t + q + r, "step": "finished", "outcome": "ok", **common}]
        t += 200.0
    return pd.DataFrame(rows)


def test_stuck_job_found_within_twice_p99_of_its_target_and_size():
    history = job_history(100)
    learned = learn_durations(history)
    run_p99 = learned[("started", "perlmutter", "1e9")]
    queue_p99 = learned[("queued", "perlmutter", "1e9")]
    assert 300 < run_p99 < 700
    assert 600 < queue_p99 < 1500
    end = float(history["time"].max())
    assert check_stuck(history, end + 1) == []  # all finished
    # a job that started and never finishes, another that never leaves the queue
    t = end + 100
    stuck = pd.DataFrame([
        {"time": t - 50, "step": "queued", "job_id": "J1", "target": "perlmutter",
         "bytes": 4e9, "dataset_id": "raw-x"},
        {"time": t, "step": "started", "job_id": "J1", "target": "perlmutter"},
        {"time": t, "step": "queued", "job_id": "J2", "target": "perlmutter",
         "bytes": 6e9, "dataset_id": "raw-y"},
    ])
    ev = pd.concat([history, stuck])
    when, found = first_detection(lambda now: check_stuck(ev, now, expected=learned), t,
                                  until=t + 5 * queue_p99)
    assert when is not None
    assert 2 * run_p99 <= when - t <= 2 * run_p99 + CHECK
    (f,) = found
    assert (f.kind, f.metric, f.target, f.dataset_id) == ("stuck", "run_time", "perlmutter",
                                                          "raw-x")
    assert "job J1" in f.message
    assert f.onset == t
    later = check_stuck(ev, t + 2 * queue_p99 + CHECK, expected=learned)
    assert {(g.metric, g.detail["job_id"]) for g in later} == {("run_time", "J1"),
                                                               ("queue_wait", "J2")}


def test_stuck_transfer_from_open_spans_and_events():
    rows = []
    for i in range(30):  # transfers of 1-10 MB take 1-3 s
        rows.append({"time": T0 + 10 * i, "step": "transfer", "duration": 1 + (i % 3),
                     "bytes": 5e6, "target": "/warehouse", "dataset_id": f"d{i}",
                     "outcome": "ok"})
    history = pd.DataFrame(rows)
    now = T0 + 400
    # the flow journal knows a transfer running since 60 s
    found = check_stuck(history, now, open_spans=[
        {"step": "transfer", "start": now - 60, "target": "/warehouse", "dataset_id": "d99",
         "bytes": 5e6}])
    assert [(f.metric, f.dataset_id) for f in found] == [("transfer_time", "d99")]
    # a transfer recorded as started in the events, and not ended
    started = pd.concat([history, pd.DataFrame([
        {"time": now - 60, "step": "transfer", "outcome": "started", "target": "/warehouse",
         "dataset_id": "d98", "bytes": 5e6}])])
    assert [f.dataset_id for f in check_stuck(started, now)] == ["d98"]
    with pytest.raises(ValueError, match="open span step"):
        check_stuck(history, now, open_spans=[{"step": "dance", "start": 0.0}])


# -- the learned intervals, kept -----------------------------------------------------------------


def test_missing_data_object_learns_once_and_checks_everything():
    history = pd.concat([arrivals(100, mean=60.0, seed=10), job_history(40)])
    md = MissingData(min_samples=20).learn(history)
    assert set(md.interarrival) == {"8.3.2"}
    assert md.durations
    end = float(history["time"].max())
    # quiet (no arrival for long) and a stuck job, both past twice their p99
    ev = pd.concat([history, pd.DataFrame([
        {"time": end, "step": "started", "job_id": "J9", "target": "perlmutter"}])])
    kinds = {f.kind for f in md.check(ev, end + 3 * max(md.durations.values()))}
    assert kinds == {"quiet", "stuck"}


def test_spans_as_runs_and_batch_jobs_record_them():
    """A batch job's events name the job and its run; the notebook's own 'started' names
    only the run; a local run ends with 'run'. None of them is left open."""
    rows = []
    for i in range(25):
        t = T0 + 1000 * i
        job, run = {"job_id": f"J{i}", "run_id": f"R{i}", "target": "perlmutter"}, f"R{i}"
        local = {"run_id": f"L{i}", "target": "local", "dataset_id": f"d{i}"}
        rows += [
            {"time": t, "step": "complete", "dataset_id": f"d{i}", "bytes": 2e9},
            {"time": t + 1, "step": "queued", "dataset_id": f"d{i}", **job},
            {"time": t + 100, "step": "started", **job},
            {"time": t + 101, "step": "started", "run_id": run, "target": "perlmutter"},
            {"time": t + 400, "step": "run", "run_id": run, "outcome": "ok"},
            {"time": t + 401, "step": "finished", "outcome": "ok", **job},
            {"time": t + 2, "step": "queued", **local},
            {"time": t + 3, "step": "started", **local},
            {"time": t + 30, "step": "run", "outcome": "ok", **local},
        ]
    ev = pd.DataFrame(rows)
    assert check_stuck(ev, T0 + 30 * 1000) == []
    learned = learn_durations(ev)
    assert learned[("queued", "perlmutter", "1e9")] == pytest.approx(99.0)
    assert learned[("started", "local", "1e9")] == pytest.approx(27.0)
    # the same batch job without its end: one finding for the job, not two
    open_job = ev[~((ev["step"].isin(["run", "finished"])) & (ev["run_id"] == "R24"))]
    (f,) = check_stuck(open_job, T0 + 24 * 1000 + 2000)
    assert (f.metric, f.detail["job_id"]) == ("run_time", "J24")
