"""Telemetry: a real flow on simulated scans records its events in the catalog (SQLite and
PostgreSQL), runs and jobs record theirs with the scheduler's times, and a telemetry failure
never stops the flow."""

from __future__ import annotations

import logging
import sqlite3
import textwrap
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import spotkit.monitor as mon
from spotkit.catalog import open_catalog
from spotkit.errors import CatalogError
from spotkit.flows import Watcher, load_rules
from spotkit.sim import simulate_tomo_scan

DATA_RULES = """
targets: {local: {kind: local, max_workers: 1}}
rules:
  - name: saxs
    match: {kind: saxs/raw}
    actions: [{name: quick, notebook: saxs_quicklook, target: local}]
"""


def _scans(inbox, n):
    paths = []
    for i in range(n):
        path = inbox / f"scan_{i:04d}.h5"
        simulate_tomo_scan(path, shape=(32, 2, 32), n_flats=2, n_darks=2, seed=i)
        paths.append(path)
    return paths


def _flow(tmp_path, catalog, rules=DATA_RULES, n=2):
    (tmp_path / "warehouse").mkdir(exist_ok=True)
    paths = _scans(tmp_path / "inbox", n) if n else []
    w = Watcher(tmp_path / "inbox", catalog=catalog, rules=load_rules(rules),
                warehouse=tmp_path / "warehouse", settle=0, workers=1)
    try:
        report = w.run_once()
    finally:
        w.close()
    return paths, report


def _check_data_path(ev, paths, report):
    assert len(report.done) == len(paths)
    steps = ["complete", "discovered", "ingested", "manifest", "transfer", "verified", "done"]
    for step in steps:  # one event per dataset and step, none doubled
        assert (ev["step"] == step).sum() == len(paths), (step, ev[["step", "item"]])
    assert set(ev["step"]) == set(steps)
    assert set(ev.columns) == set(mon.EVENT_COLUMNS)
    ingested = ev[ev["step"] == "ingested"].set_index("dataset_id")
    assert set(ingested.index) == set(report.done)
    assert (ingested["beamline"] == "8.3.2").all()
    for path in paths:  # the file's size, exactly
        size = path.stat().st_size
        complete = ev[(ev["step"] == "complete") & ev["item"].str.startswith(f"{path}|")]
        assert complete["bytes"].tolist() == [size]
        assert complete["time"].iloc[0] == pytest.approx(path.stat().st_mtime, abs=1e-3)
        assert complete["detail"].iloc[0]["path"] == str(path)
    transfer = ev[ev["step"] == "transfer"]
    assert (transfer["target"] == "warehouse").all()
    assert (transfer["bytes"] > 0).all()
    assert transfer["value"].to_numpy() == pytest.approx(
        (transfer["bytes"] / transfer["duration"]).to_numpy())
    # every step after ingest names its dataset and beamline; times are in order per item
    later = ev[ev["step"].isin(["ingested", "manifest", "transfer", "verified", "done"])]
    assert later["dataset_id"].notna().all()
    assert (later["beamline"] == "8.3.2").all()
    assert (ev["outcome"].fillna("ok").isin(["ok", "complete"])).all()
    for _, group in ev.groupby("item"):
        order = group.set_index("step")["time"]
        assert order["complete"] <= order["discovered"] <= order["ingested"] <= order["done"]
    # the metric streams and the turnaround come out of it
    m = mon.metrics(ev)
    assert set(m["metric"]) == {"ingest_time", "file_size", "transfer_time", "transfer_rate",
                                "interarrival", "turnaround"}
    assert (m[m["metric"] == "file_size"]["value"] > 0).all()
    summary = mon.turnaround(ev)
    assert summary["target"].isna().all()
    assert summary["datasets"].eq(len(paths)).all()


def test_flow_records_every_step_on_sqlite(tmp_path):
    db = tmp_path / "catalog.db"
    paths, report = _flow(tmp_path, db)
    _check_data_path(mon.events(db), paths, report)
    # a second pass finds nothing new: no event is recorded again
    before = len(mon.events(db))
    _flow(tmp_path, db, n=0)
    assert len(mon.events(db)) == before


@pytest.mark.slow
def test_flow_records_every_step_on_postgresql(tmp_path, postgres_server):
    url = postgres_server.create_database("telemetry")
    try:
        paths, report = _flow(tmp_path, url)
        ev = mon.events(url)
        _check_data_path(ev, paths, report)
        assert mon.events(url, step="transfer", beamline="8.3.2").shape[0] == len(paths)
    finally:
        postgres_server.drop_database(url)


PARAMS = 'dataset_id = None\ncatalog_path = None\noutput_dir = "."\n'
BODY = textwrap.dedent("""\
    import pathlib
    from spotkit.runs import declare_output
    out = pathlib.Path(output_dir) / "marker.txt"
    out.write_text(dataset_id)
    declare_output(out, kind="test/marker")
    """)


@pytest.mark.notebook
def test_flow_with_a_local_notebook_records_queue_run_and_product(tmp_path):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = new_code_cell(PARAMS)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, new_code_cell(BODY)]
    nbformat.write(nb, tmp_path / "marker.ipynb")
    rules = textwrap.dedent(f"""\
        targets: {{local: {{kind: local, max_workers: 1, concurrency: 1}}}}
        rules:
          - name: tomo
            match: {{beamline: '8.3.2', kind: tomo/raw}}
            actions: [{{name: mark, notebook: {tmp_path / 'marker.ipynb'}, target: local}}]
        """)
    db = tmp_path / "catalog.db"
    _paths, report = _flow(tmp_path, db, rules=rules, n=1)
    assert len(report.done) == 1
    ev = mon.events(db)
    runs = ev[ev["step"].isin(["queued", "started", "finished", "run", "product"])]
    assert sorted(runs["step"]) == ["finished", "product", "queued", "run", "started"]
    (run_id,) = set(runs["run_id"])
    assert (runs["target"] == "local").all()
    by = runs.set_index("step")
    assert by.loc["queued", "time"] <= by.loc["started", "time"] <= by.loc["finished", "time"]
    assert by.loc["finished", "outcome"] == "ok"
    assert by.loc["run", "outcome"] == "ok"
    cat = open_catalog(db)
    run = cat.get_run(run_id)
    assert by.loc["started", "dataset_id"] == run.dataset_id == report.done[0]
    assert by.loc["product", "dataset_id"] == run.outputs[0]
    assert by.loc["queued", "detail"] == {"rule": "tomo", "action": "mark", "stage": "full"} \
        or by.loc["queued", "detail"]["action"] == "mark"
    cat.close()
    m = mon.metrics(ev)
    assert {"queue_wait", "run_time", "turnaround"} <= set(m["metric"])
    (wait,) = m[m["metric"] == "queue_wait"]["value"]
    assert wait == pytest.approx(by.loc["started", "time"] - by.loc["queued", "time"])
    breakdown = mon.turnaround(ev, per_dataset=True)
    assert breakdown["target"].tolist() == ["local"]
    row = breakdown.iloc[0]
    assert row["turnaround"] == pytest.approx(by.loc["finished", "time"] - ev.loc[
        ev["step"] == "complete", "time"].iloc[0])
    assert row["run"] == pytest.approx(by.loc["finished", "duration"])


def test_job_on_local_target_records_scheduler_times(tmp_path, catalog):
    """A second job waits for the one worker: its queue wait is the Local scheduler's
    start minus submission, recorded once even if two Job objects follow it."""
    from spotkit.compute import Job, Local

    target = Local(max_workers=1, min_poll=0.02)
    script = tmp_path / "nap.sh"
    script.write_text("sleep 0.4\n")
    jobs = [Job(target.submit_script(script, job_name=f"nap{i}", workdir=tmp_path), target,
                catalog=catalog) for i in range(2)]
    for job in jobs:
        job.labels = {"dataset_id": "ds-x", "beamline": "7.3.3"}
    statuses = [job.wait(timeout=30, check=True) for job in jobs]
    Job(jobs[1].id, target, catalog=catalog).refresh()  # a second follower: no new events
    ev = mon.events(catalog)
    assert sorted(ev["step"]) == ["finished", "finished", "started", "started"]
    second = ev[ev["job_id"] == jobs[1].id].set_index("step")
    st = statuses[1]
    assert second.loc["started", "time"] == pytest.approx(st.started.timestamp())
    assert second.loc["started", "duration"] == pytest.approx(
        (st.started - st.submitted).total_seconds())
    assert second.loc["started", "duration"] > 0.2  # waited for the first job's worker
    assert second.loc["started", "detail"]["source"] == "scheduler"
    assert second.loc["finished", "duration"] == pytest.approx(
        (st.ended - st.started).total_seconds())
    assert second.loc["finished", "outcome"] == "ok"
    assert second.loc["finished", "detail"]["exit_code"] == 0
    assert (ev["beamline"] == "7.3.3").all()
    assert (ev["target"] == target.name).all()


def test_record_is_idempotent_by_key_and_filters_work(tmp_path):
    db = tmp_path / "catalog.db"
    with mon.Telemetry(db) as tel:
        for _ in range(2):
            tel.record("started", time=10.0, job_id="1", key="job|slurm|1|started")
        tel.record("transfer", time=20.0, beamline="8.3.2", nbytes=5, detail={"a": [1]})
        tel.record("transfer", time=30.0, beamline="7.3.3")
        assert tel.pending == 4
        assert tel.flush() == 4
    ev = mon.events(db)
    assert ev["step"].tolist() == ["started", "transfer", "transfer"]
    assert ev["detail"].tolist() == [{}, {"a": [1]}, {}]
    assert mon.events(db, since=15, until=30)["time"].tolist() == [20.0]
    assert mon.events(db, beamline="7.3.3")["time"].tolist() == [30.0]
    assert mon.events(db, step=["started"])["job_id"].tolist() == ["1"]
    assert mon.events(db, since="1970-01-01T00:00:25Z")["time"].tolist() == [30.0]
    with pytest.raises(ValueError, match="since='yesterday' is not a time"):
        mon.events(db, since="yesterday")


def test_events_of_a_catalog_without_telemetry_is_an_empty_table(tmp_path):
    db = tmp_path / "old.db"
    with open_catalog(db) as cat:
        conn = sqlite3.connect(db)
        conn.execute("DROP TABLE IF EXISTS events")  # as made before telemetry existed
        conn.close()
        ev = mon.events(cat)
    assert ev.empty
    assert list(ev.columns) == list(mon.EVENT_COLUMNS)
    mon.record(db, "queued", flush=True)  # the recorder creates the table it needs
    assert mon.events(db)["step"].tolist() == ["queued"]


def test_disabled_telemetry_records_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOTKIT_TELEMETRY", "off")
    tel = mon.Telemetry(tmp_path / "catalog.db")
    tel.record("queued", flush=True)
    assert tel.pending == 0
    assert tel.written == 0


def test_a_telemetry_failure_never_stops_the_flow(tmp_path, monkeypatch, caplog):
    db = tmp_path / "catalog.db"
    (tmp_path / "warehouse").mkdir()
    _scans(tmp_path / "inbox", 1)
    w = Watcher(tmp_path / "inbox", catalog=db, rules=load_rules(DATA_RULES),
                warehouse=tmp_path / "warehouse", settle=0)
    tel = w.telemetry

    def broken():
        raise CatalogError("catalog locked for too long (simulated)")

    monkeypatch.setattr(tel, "_connection", broken)
    with caplog.at_level(logging.WARNING, logger="spotkit.monitor._telemetry"):
        report = w.run_once()
        w.run_once()  # a second pass: still failing, said once
    assert len(report.done) == 1
    assert not report.failed
    assert not report.outages
    assert "telemetry: cannot write" in caplog.text
    assert caplog.text.count("telemetry: cannot write") == 1  # said once, not per flush
    assert tel.pending == 7  # kept for the next try
    monkeypatch.undo()
    w.close()  # writes them
    assert tel.pending == 0
    assert len(mon.events(db, step="done")) == 1


def test_bad_event_fields_are_logged_not_raised(tmp_path, caplog):
    tel = mon.Telemetry(tmp_path / "catalog.db")
    with caplog.at_level(logging.WARNING, logger="spotkit.monitor._telemetry"):
        tel.record("queued", time="not a time")
        tel.record("", time=1.0)
    assert tel.pending == 0
    assert "not recorded" in caplog.text


def test_batches_are_written_when_full_or_old(tmp_path):
    tel = mon.Telemetry(tmp_path / "catalog.db", batch_size=3, max_delay=3600)
    tel.record("a")
    tel.record("b")
    assert tel.pending == 2
    assert tel.written == 0
    tel.record("c")
    assert tel.pending == 0
    assert tel.written == 3
    tel.max_delay = 0.05
    tel.record("d")
    time.sleep(0.06)
    tel.record("e")
    assert tel.written == 5
    tel.close()


@pytest.mark.slow
def test_no_event_lost_or_doubled_across_watcher_kills(tmp_path):
    """``spotkit watch --once`` SIGKILLed twice mid-pass (its events are still buffered),
    then run to the end: every step of every dataset is recorded exactly once."""
    import os
    import subprocess
    import sys

    from spotkit.flows import FAULT_ENV

    paths = _scans(tmp_path / "inbox", 2)
    (tmp_path / "warehouse").mkdir()
    (tmp_path / "rules.yaml").write_text(DATA_RULES)
    db = tmp_path / "catalog.db"
    cmd = [sys.executable, "-m", "spotkit.cli", "--catalog", str(db), "watch",
           str(tmp_path / "inbox"), "--rules", str(tmp_path / "rules.yaml"), "--warehouse",
           str(tmp_path / "warehouse"), "--settle", "0.1", "--workers", "1", "--once"]
    for fault in ("transfer.after:2", "done.before:1", None):
        env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
        if fault:
            env[FAULT_ENV] = fault
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == (-9 if fault else 0), proc.stderr[-2000:]
    ev = mon.events(db)
    steps = ["complete", "discovered", "ingested", "manifest", "transfer", "verified", "done"]
    counts = ev.groupby(["item", "step"]).size().unstack(fill_value=0)
    assert sorted(counts.columns) == sorted(steps)
    assert (counts == 1).all().all(), counts
    assert len(counts) == len(paths)
    assert ev["detail"].map(lambda d: d.get("rebuilt", False)).any()  # some came back
