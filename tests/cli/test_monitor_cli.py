"""`spotkit monitor changes|missing|alerts|quality` on a small catalog of constructed events.

The events are recorded with :class:`spotkit.monitor.Telemetry` as the flow would: a
beamline that sends a scan every ~2 minutes (scan 150 never arrives, then it goes quiet) and
one batch job per scan whose queue wait rises four-fold from scan 200. Alerts go through a
real :class:`~spotkit.monitor.Alerts` state in the catalog; verdicts through real keep-up
checks of tiny twin scans. A few seconds in all.
"""

from __future__ import annotations

import datetime as dt
import json

import h5py
import numpy as np
import pytest

from spotkit.catalog import open_catalog
from spotkit.cli import main
from spotkit.monitor import AlertRule, Alerts, LogChannel, QuietPeriod, Telemetry, check_product
from spotkit.sim import simulate_tomo_scan

T0 = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC).timestamp()
BL, TARGET = "8.3.2", "perlmutter"
N_SCANS, LOST, STEP_AT = 300, 150, 200


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def _record_flow(db) -> np.ndarray:
    """The constructed telemetry; returns the times the scans completed (or would have)."""
    rng = np.random.default_rng(5)
    t = T0 + np.cumsum(rng.exponential(120.0, N_SCANS))
    with Telemetry(db, batch_size=500) as tel:
        for i, ti in enumerate(t):
            if i == LOST:
                continue
            ds, item = f"ds-{i:04d}", f"/inbox/scan_{i:04d}.h5"
            common = {"beamline": BL, "dataset_id": ds}
            tel.record("complete", time=ti, item=item, nbytes=2_000_000_000, **common)
            job = {**common, "target": TARGET, "job_id": f"job-{i}", "run_id": f"run-{i}"}
            wait = 60.0 * rng.lognormal(0, 0.2) * (4 if i >= STEP_AT else 1)
            tel.record("queued", time=ti + 5, **job)
            tel.record("started", time=ti + 5 + wait, **job)
            tel.record("finished", time=ti + 65 + wait, outcome="ok", **job)
    return t


@pytest.fixture(scope="module")
def flow_catalog(tmp_path_factory):
    work = tmp_path_factory.mktemp("monitor-cli")
    db = work / "catalog.db"
    return str(db), _record_flow(db)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


# -- changes ------------------------------------------------------------------------------------


def test_changes_finds_the_queue_wait_step(flow_catalog, capsys):
    db, t = flow_catalog
    assert main(["monitor", "changes", "--catalog", db, "--since", _iso(T0),
                 "--metric", "queue_wait", "--kind", "change", "--json"]) == 0
    doc = _json(capsys)
    assert doc["history_values"] == 0
    assert doc["values"] == N_SCANS - 1
    (stream,) = doc["streams"]
    assert stream["values"] == N_SCANS - 1
    assert stream["watched"] == N_SCANS - 1 - 100  # normal needs 100 values first
    assert stream["changes"] >= 1
    step = doc["findings"][0]
    assert (step["kind"], step["metric"], step["beamline"], step["target"]) == (
        "change", "queue_wait", BL, TARGET)
    # the onset is scan 200's queue wait (queued 5 s after it completed, started after it)
    assert t[STEP_AT] <= step["onset"] <= t[STEP_AT] + 5 + 4 * 60 * 2
    assert step["time"] < t[STEP_AT + 10]  # found within 10 jobs
    assert step["magnitude"] > 3
    assert 2.5 < step["detail"]["factor"] < 6
    assert step["confidence"] > 0.9
    assert main(["monitor", "changes", "--catalog", db, "--since", _iso(T0), "--json",
                 "--metric", "queue_wait", "--kind", "change"]) == 0
    assert _json(capsys) == doc  # the same answer twice (offline, deterministic)


def test_changes_table_and_learned_history(flow_catalog, capsys):
    db, t = flow_catalog
    middle = t[N_SCANS // 2]
    assert main(["monitor", "changes", "--catalog", db, "--since", _iso(middle),
                 "--history", "1d", "--metric", "queue_wait", "--wide"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "values of 1 streams since" in first
    assert "normal learned from" in first
    assert "queue_wait on 8.3.2/perlmutter rose by" in out
    assert out.count("queue_wait") >= 2  # the finding and the stream table
    assert "BEAMLINE  TARGET      METRIC      VALUES  WATCHED  CHANGES  ANOMALIES" in out
    assert main(["monitor", "changes", "--catalog", db, "--since", _iso(middle),
                 "--history", "1d", "--metric", "queue_wait", "--json"]) == 0
    doc = _json(capsys)
    (stream,) = doc["streams"]
    assert doc["history_values"] + stream["values"] == N_SCANS - 1  # scan 150 never came
    assert doc["history_values"] > 100
    assert stream["watched"] == stream["values"]  # normal known: watched from the start


def test_changes_offline_and_short_streams(flow_catalog, capsys):
    db, t = flow_catalog
    assert main(["monitor", "changes", "--catalog", db, "--since", _iso(T0), "--json",
                 "--metric", "queue_wait", "--method", "offline"]) == 0
    doc = _json(capsys)
    assert doc["method"] == "offline"
    (step,) = doc["findings"]  # offline: the one step, and no anomalies
    assert step["detail"]["method"] == "segment"
    assert t[STEP_AT] <= step["onset"] <= t[STEP_AT] + 5 + 4 * 60 * 2
    assert 3 < step["detail"]["factor"] < 5.5
    assert "queue_wait on 8.3.2/perlmutter rose from" in step["message"]
    # the Bayesian segmentation finds the same step
    assert main(["monitor", "changes", "--catalog", db, "--since", _iso(T0), "--json",
                 "--metric", "queue_wait", "--method", "bayes"]) == 0
    doc = _json(capsys)
    (bstep,) = doc["findings"]
    assert bstep["detail"]["method"] == "bayes-map"
    assert t[STEP_AT] <= bstep["onset"] <= t[STEP_AT] + 5 + 4 * 60 * 2
    assert 3 < bstep["detail"]["factor"] < 5.5
    assert "(Bayesian segmentation)" in bstep["message"]
    # online on a stream too short for the default: watched with --min-history
    late = _iso(t[STEP_AT - 40])
    assert main(["monitor", "changes", "--catalog", db, "--since", late, "--history", "1s",
                 "--metric", "queue_wait", "--kind", "change", "--json"]) == 0
    doc = _json(capsys)
    assert doc["streams"][0]["watched"] == doc["streams"][0]["values"] - 100
    assert doc["findings"] == []  # the step came while normal was still being learned
    assert main(["monitor", "changes", "--catalog", db, "--since", late, "--history", "1s",
                 "--metric", "queue_wait", "--kind", "change", "--min-history", "20",
                 "--json"]) == 0
    doc = _json(capsys)
    assert doc["streams"][0]["watched"] == doc["streams"][0]["values"] - 20
    assert t[STEP_AT] <= doc["findings"][0]["onset"] <= t[STEP_AT] + 5 + 4 * 60 * 2


def test_changes_says_when_there_is_nothing_to_watch(flow_catalog, capsys):
    db, _ = flow_catalog
    assert main(["monitor", "changes", "--catalog", db, "--beamline", "7.3.3"]) == 0
    out = capsys.readouterr().out
    assert "no metric values of beamline 7.3.3 since" in out
    assert "--since" in out


def test_changes_refuses_bad_options(flow_catalog, capsys):
    db, _ = flow_catalog
    assert main(["monitor", "changes", "--catalog", db, "--metric", "queue_wiat"]) == 1
    err = capsys.readouterr().err
    assert "queue_wiat" in err
    assert "queue_wait" in err
    assert main(["monitor", "changes", "--catalog", db, "--history", "forever"]) == 2
    assert "'forever' is not a duration" in capsys.readouterr().err
    assert main(["monitor", "changes", "--catalog", db, "--arl", "0"]) == 2
    assert "--arl" in capsys.readouterr().err


# -- missing ------------------------------------------------------------------------------------


def test_missing_finds_the_silence_and_the_lost_scan(flow_catalog, capsys):
    db, t = flow_catalog
    at = _iso(t[-1] + 3600)
    assert main(["monitor", "missing", "--catalog", db, "--at", at, "--history", "2d",
                 "--json"]) == 0
    doc = _json(capsys)
    kinds = sorted(f["kind"] for f in doc["findings"])
    assert kinds == ["gap", "quiet"], doc["findings"]
    gap = next(f for f in doc["findings"] if f["kind"] == "gap")
    assert gap["detail"]["missing"] == [LOST]
    assert BL in doc["learned"]["interarrival_p99"]
    assert doc["products_checked"] is False

    assert main(["monitor", "missing", "--catalog", db, "--at", at, "--history", "2d"]) == 0
    out = capsys.readouterr().out
    assert f"usual cadence (p99 between datasets): {BL}" in out
    assert "products: not checked (give --rules" in out
    assert "quiet" in out
    assert "gap" in out


def test_missing_takes_beamtime_windows(flow_catalog, tmp_path, capsys):
    """Outside its beamtime a silent beamline is expected: no ``quiet`` finding."""
    db, t = flow_catalog
    at = t[-1] + 3600
    common = ["monitor", "missing", "--catalog", db, "--at", _iso(at), "--history", "2d"]
    over = f"{_iso(T0 - 60)}/{_iso(t[-1] + 600)}"  # the beamtime ended 50 min ago
    assert main([*common, "--beamtime", over, "--json"]) == 0
    doc = _json(capsys)
    assert [f["kind"] for f in doc["findings"]] == ["gap"]
    clock = "%Y-%m-%d %H:%M:%S"
    assert doc["beamtime"] == {"*": [[dt.datetime.fromtimestamp(e, dt.UTC).strftime(clock)
                                      for e in (T0 - 60, t[-1] + 600)]]}
    # a second window, for this beamline, from a file: in beamtime again, quiet found
    beamtime = tmp_path / "beamtime.yaml"
    beamtime.write_text(f"'{BL}': ['{_iso(t[-1] + 1200)}/{_iso(at + 3600)}']\n")
    assert main([*common, "--beamtime", f"{BL}={over}", "--beamtime-file", str(beamtime),
                 "--json"]) == 0
    assert sorted(f["kind"] for f in _json(capsys)["findings"]) == ["gap", "quiet"]
    assert main([*common, "--beamtime", over]) == 0
    out = capsys.readouterr().out
    assert "beamtime: 1 window(s); now: none (a silent beamline is expected)" in out
    assert main([*common, "--beamtime", "2026-11-30T08:00Z"]) == 1
    assert "'2026-11-30T08:00Z' (--beamtime): write START/END" in capsys.readouterr().err


def test_missing_right_after_the_last_scan_is_quiet(flow_catalog, capsys):
    db, t = flow_catalog
    assert main(["monitor", "missing", "--catalog", db, "--at", _iso(t[-1] + 10),
                 "--history", "2d", "--beamline", BL, "--json"]) == 0
    assert [f["kind"] for f in _json(capsys)["findings"]] == ["gap"]


def test_missing_products_with_the_rules(tmp_path, capsys):
    db = tmp_path / "catalog.db"
    cat = open_catalog(db, create=True)
    raw = tmp_path / "scan_0001.h5"
    simulate_tomo_scan(raw, shape=(8, 4, 32), seed=0)
    ds = cat.ingest(raw)
    cat.close()
    rows = []
    for i in range(30):  # 30 datasets made whole within 60 s, then ours, made never
        rows.append(("complete", T0 + 100 * i, f"d{i}"))
        rows.append(("product", T0 + 100 * i + 60, f"d{i}"))
    rows.append(("complete", T0 + 3100, ds.id))
    with Telemetry(db) as tel:
        for step, t, ds_id in rows:
            tel.record(step, time=t, beamline=BL, dataset_id=ds_id, run_id=f"r-{ds_id}"
                       if step == "product" else None)
    rules = tmp_path / "rules.yaml"
    rules.write_text("targets: {local: {kind: local, max_workers: 1}}\nrules:\n"
                     "  - {name: recon, match: {kind: tomo/raw}, actions: [{name: q, "
                     "notebook: tomo_quicklook, target: local}]}\n")
    at = _iso(T0 + 3100 + 600)
    assert main(["monitor", "missing", "--catalog", str(db), "--at", at, "--json",
                 "--rules", str(rules)]) == 0
    doc = _json(capsys)
    found = [(f["kind"], f["dataset_id"]) for f in doc["findings"]]
    assert sorted(found) == [("missing", ds.id), ("quiet", None)]  # and 10 min of silence
    assert main(["monitor", "missing", "--catalog", str(db), "--at", at, "--json"]) == 0
    # without the rules nothing is promised
    assert [f["kind"] for f in _json(capsys)["findings"]] == ["quiet"]
    assert main(["monitor", "missing", "--catalog", str(db), "--rules",
                 str(tmp_path / "nope.yaml")]) == 1
    assert "nope.yaml" in capsys.readouterr().err


# -- alerts -------------------------------------------------------------------------------------


def test_alerts_history_and_pending(flow_catalog, tmp_path, capsys):
    db, _ = flow_catalog
    from spotkit.monitor import Finding

    night = QuietPeriod(start="22:00", end="07:00", timezone="UTC")
    day, late = T0 + 3600, T0 + 15 * 3600  # 09:00 and 23:00 UTC
    with Alerts([AlertRule("ops", LogChannel(), dedup=3600.0),
                 AlertRule("night-shift", LogChannel(), kind="quiet", quiet=[night])],
                state=db) as alerts:
        silent = Finding("quiet", "arrivals", time=day, beamline=BL, message="8.3.2 silent")
        assert [d.ok for d in alerts.dispatch([silent], now=day)] == [True, True]
        other = Finding("quiet", "arrivals", time=late, beamline="7.3.3",
                        message="7.3.3 silent")
        assert [d.rule for d in alerts.dispatch([other], now=late)] == ["ops"]

    assert main(["monitor", "alerts", "--catalog", db, "--json"]) == 0
    doc = _json(capsys)
    assert [(h["rule"], h["findings"], h["outcome"]) for h in doc["history"]] == [
        ("ops", 1, "ok"), ("night-shift", 1, "ok"), ("ops", 1, "ok")]
    assert [f["beamline"] for f in doc["pending"]] == ["7.3.3"]  # night-shift waits
    assert doc["counts"] == {"night-shift/ok": 1, "ops/ok": 2}

    assert main(["monitor", "alerts", "--catalog", db, "--rule", "night-shift"]) == 0
    out = capsys.readouterr().out
    assert "messages since the alert state began: night-shift: 1 ok" in out
    assert "7.3.3 silent" in out
    assert "Waiting to be sent" in out
    assert main(["monitor", "alerts", "--catalog", db, "--since", _iso(late),
                 "--beamline", BL, "--json"]) == 0
    doc = _json(capsys)
    assert [h["time"] for h in doc["history"]] == [late]
    assert doc["pending"] == []


def test_alerts_on_a_catalog_without_alert_state(tmp_path, capsys):
    db = tmp_path / "catalog.db"
    open_catalog(db, create=True).close()
    assert main(["monitor", "alerts", "--catalog", str(db)]) == 0
    assert "no alert rule has found anything to send" in capsys.readouterr().out
    assert main(["monitor", "alerts", "--catalog", str(db), "--json"]) == 0
    assert _json(capsys) == {"history": [], "pending": [], "counts": {}}


# -- quality ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quality_catalog(tmp_path_factory):
    """Five clean tiny twin scans checked in order, then one with dead pixels."""
    work = tmp_path_factory.mktemp("monitor-cli-quality")
    cat = open_catalog(work / "catalog.db", create=True)
    day = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    ids = []
    for k in range(6):
        path = work / f"scan_{k:04d}.h5"
        simulate_tomo_scan(path, shape=(8, 4, 32), seed=k, start_time=day + dt.timedelta(hours=k))
        if k == 5:
            with h5py.File(path, "r+") as f:
                dark = np.median(f["exchange/data_dark"][...], axis=0)
                for name in ("exchange/data", "exchange/data_white"):
                    data = f[name][...]
                    data[:, 1, 3:6] = dark[1, 3:6]
                    f[name][...] = data
        ids.append(check_product(cat, cat.ingest(path), min_references=3).dataset_id)
    cat.close()
    return str(work / "catalog.db"), ids


def test_quality_failures_first(quality_catalog, capsys):
    db, ids = quality_catalog
    assert main(["monitor", "quality", "--catalog", db, "--json"]) == 0
    doc = _json(capsys)
    assert doc["counts"] == {"fail": 1, "no reference": 3, "pass": 2}
    verdicts = [(v["dataset_id"], v["verdict"]) for v in doc["verdicts"]]
    assert verdicts[0] == (ids[5], "fail")
    assert [v for _, v in verdicts] == ["fail"] + ["no reference"] * 3 + ["pass"] * 2
    assert doc["verdicts"][0]["failed"] == ["dead_fraction"]

    assert main(["monitor", "quality", "--catalog", db, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "6 verdicts: 1 fail, 3 no reference, 2 pass (first 2 listed; --limit)" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("CHECKED"))
    assert ids[5] in lines[header + 2]
    assert "dead_fraction" in lines[header + 2]


def test_quality_filters_and_empty(quality_catalog, tmp_path, capsys):
    db, _ = quality_catalog
    assert main(["monitor", "quality", "--catalog", db, "--verdict", "pass", "--json"]) == 0
    assert _json(capsys)["counts"] == {"fail": 0, "no reference": 0, "pass": 2}
    assert main(["monitor", "quality", "--catalog", db, "--beamline", "7.3.3"]) == 0
    assert "no quality verdicts" in capsys.readouterr().out
    assert main(["monitor", "quality", "--catalog", db, "--since", "2999-01-01"]) == 0
    assert "no quality verdicts since 2999-01-01" in capsys.readouterr().out
    assert main(["monitor", "quality", "--catalog", db, "--verdict", "bad"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["changes", "missing", "alerts", "quality"])
def test_a_missing_catalog_is_named(tmp_path, capsys, action):
    assert main(["monitor", action, "--catalog", str(tmp_path / "nope.db")]) == 1
    assert "nope.db" in capsys.readouterr().err


# -- PostgreSQL -----------------------------------------------------------------------------------


def test_the_commands_on_a_postgresql_catalog(postgres_server, capsys):
    url = postgres_server.create_database()
    try:
        open_catalog(url, create=True).close()
        t = T0 + 120.0 * np.arange(60)
        with Telemetry(url) as tel:
            for i, ti in enumerate(t):
                if i != 30:
                    tel.record("complete", time=ti, beamline=BL, dataset_id=f"ds-{i}",
                               item=f"/inbox/scan_{i:04d}.h5")
        with Alerts([AlertRule("ops", LogChannel())], state=url) as alerts:
            from spotkit.monitor import Finding

            alerts.dispatch([Finding("gap", "scan_number", time=t[-1], beamline=BL,
                                     message="scan 30 missing")], now=t[-1])
        assert main(["monitor", "missing", "--catalog", url, "--at", _iso(t[-1] + 60),
                     "--json"]) == 0
        assert [f["kind"] for f in _json(capsys)["findings"]] == ["gap"]
        assert main(["monitor", "alerts", "--catalog", url, "--json"]) == 0
        assert [h["rule"] for h in _json(capsys)["history"]] == ["ops"]
        assert main(["monitor", "changes", "--catalog", url, "--since", _iso(T0),
                     "--json"]) == 0
        assert _json(capsys)["streams"][0]["metric"] == "interarrival"
        assert main(["monitor", "quality", "--catalog", url]) == 0
        assert "no quality verdicts" in capsys.readouterr().out
    finally:
        postgres_server.drop_database(url)
