"""The metrics endpoint: scraped over real HTTP and parsed with prometheus_client's own text
parser; fed by the monitor beside a real watcher and by `spotkit watch --metrics-port`."""

from __future__ import annotations

import socket
import urllib.request

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from spotkit.cli import main
from spotkit.monitor import (
    AlertRule,
    Alerts,
    Finding,
    FlowSnapshot,
    MetricsServer,
    MonitorLoop,
    snapshot_from_events,
)

T = 1_796_000_000.0


def scrape(url: str) -> dict[str, dict]:
    """``{family name: {"type": ..., "samples": {(sample name, labels...): value}}}``."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = {
            "type": family.type,
            "samples": {(s.name, *sorted(s.labels.items())): s.value for s in family.samples}}
    return out


def test_snapshot_is_served_in_prometheus_text_format():
    snapshot = FlowSnapshot(
        time=T, datasets={("8.3.2", "done"): 41, ("8.3.2", "failed"): 1, ("7.3.3", "done"): 3},
        queue_length=4, arrivals={"8.3.2": 42, "7.3.3": 3}, transferred_bytes=1.5e12,
        failures={"transfer": 2, "run": 1}, last_arrival={"8.3.2": T - 90.0},
        findings={"quiet": 1}, alerts={("ops", "ok"): 5, ("ops", "failed"): 1})
    with MetricsServer(0, clock=lambda: T) as server:
        server.update(snapshot)
        got = scrape(server.url)
    assert got["spotkit_datasets"]["type"] == "gauge"
    assert got["spotkit_datasets"]["samples"][
        ("spotkit_datasets", ("beamline", "8.3.2"), ("state", "done"))] == 41
    assert got["spotkit_queue_length"]["samples"][("spotkit_queue_length",)] == 4
    assert got["spotkit_arrivals"]["type"] == "counter"
    assert got["spotkit_arrivals"]["samples"][
        ("spotkit_arrivals_total", ("beamline", "7.3.3"))] == 3
    assert got["spotkit_transferred_bytes"]["samples"][
        ("spotkit_transferred_bytes_total",)] == 1.5e12
    assert got["spotkit_failures"]["samples"][("spotkit_failures_total", ("step", "run"))] == 1
    assert got["spotkit_last_arrival_age_seconds"]["samples"][
        ("spotkit_last_arrival_age_seconds", ("beamline", "8.3.2"))] == 90.0
    assert got["spotkit_last_arrival_timestamp_seconds"]["samples"][
        ("spotkit_last_arrival_timestamp_seconds", ("beamline", "8.3.2"))] == T - 90.0
    assert got["spotkit_findings"]["samples"][("spotkit_findings", ("kind", "quiet"))] == 1
    assert got["spotkit_alerts"]["samples"][
        ("spotkit_alerts_total", ("outcome", "failed"), ("rule", "ops"))] == 1
    assert got["spotkit_monitor_last_check_timestamp_seconds"]["samples"][
        ("spotkit_monitor_last_check_timestamp_seconds",)] == T


def test_port_in_use_and_bad_port_are_clear_errors():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}.*--metrics-port"):
            MetricsServer(port).start()
    with pytest.raises(ValueError, match="TCP port"):
        MetricsServer(70000)


def test_monitor_loop_feeds_findings_and_alert_counts_to_the_endpoint():
    events = pd.DataFrame({"time": [T - 300.0, T - 200.0, T - 100.0],
                           "step": ["complete", "transfer", "finished"],
                           "beamline": "8.3.2", "bytes": [None, 2e9, None],
                           "outcome": [None, "ok", "failed"]})
    sent = []

    class Channel:
        kind = "record"

        def send(self, findings, *, rule):
            sent.append(findings)

    def detector(ev, now):
        return [Finding("change", "queue_wait", time=now, target="perlmutter",
                        message="queue wait rose from 2 to 25 min"),
                # found in the history at an earlier check: not reported again
                Finding("change", "run_time", time=now - 3600, target="perlmutter",
                        message="run time rose an hour ago")]

    with MetricsServer(0, clock=lambda: T) as server:
        loop = MonitorLoop(lambda since: events[events["time"] > since], detectors=[detector],
                           alerts=Alerts([AlertRule("ops", Channel())]), metrics=server,
                           flow_state=lambda: {"datasets": {("8.3.2", "done"): 1},
                                               "queue_length": 0},
                           clock=lambda: T)
        loop.check()
        got = scrape(server.url)
        loop.stop()
    assert len(sent) == 1
    assert [f.metric for f in sent[0]] == ["queue_wait"]
    assert got["spotkit_findings"]["samples"][("spotkit_findings", ("kind", "change"))] == 1
    assert got["spotkit_alerts"]["samples"][
        ("spotkit_alerts_total", ("outcome", "ok"), ("rule", "ops"))] == 1
    assert got["spotkit_transferred_bytes"]["samples"][("spotkit_transferred_bytes_total",)] \
        == 2e9
    assert got["spotkit_failures"]["samples"][("spotkit_failures_total",
                                               ("step", "finished"))] == 1
    assert got["spotkit_datasets"]["samples"][
        ("spotkit_datasets", ("beamline", "8.3.2"), ("state", "done"))] == 1


def test_snapshot_from_an_empty_table():
    snap = snapshot_from_events(pd.DataFrame(columns=["time", "step"]), now=T)
    assert snap.time == T
    assert snap.arrivals == {}
    assert snap.transferred_bytes == 0


def test_a_failing_check_never_stops_the_loop(caplog):
    def broken(since):
        raise RuntimeError("database gone")

    loop = MonitorLoop(broken, period=0.05)
    loop.start()
    try:
        import time

        deadline = time.monotonic() + 5
        while caplog.text.count("database gone") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        loop.stop()
    assert caplog.text.count("monitor check failed: database gone") >= 2


RULES = """\
targets: {local: {kind: local, max_workers: 1}}
rules:
  - name: saxs
    match: {kind: saxs/raw}
    actions: [{name: quick, notebook: saxs_quicklook, target: local}]
alerts:
  - {name: ops, match: {kind: [quiet, stuck, missing]}, log: {level: warning}}
"""


def test_watcher_metrics_after_a_real_scan(tmp_path):
    """A simulated scan through a real watcher; the monitor beside it shows it."""
    from spotkit.flows import Watcher, load_rules, start_monitor
    from spotkit.sim import simulate_tomo_scan

    inbox, warehouse = tmp_path / "inbox", tmp_path / "warehouse"
    warehouse.mkdir()
    simulate_tomo_scan(inbox / "scan_0001.h5", shape=(32, 2, 32), seed=0)
    watcher = Watcher(inbox, catalog=tmp_path / "catalog.db", rules=load_rules(RULES),
                      warehouse=warehouse, settle=0)
    loop = start_monitor(watcher, metrics_port=0, period=3600)
    try:
        report = watcher.run_once()
        assert len(report.done) == 1
        ds = watcher.catalog.search()[0]
        loop.check()
        got = scrape(loop.metrics.url)
    finally:
        loop.stop()
        watcher.close()
    samples = got["spotkit_datasets"]["samples"]
    assert samples[("spotkit_datasets", ("beamline", ds.beamline or "?"), ("state", "done"))] \
        == 1
    assert got["spotkit_queue_length"]["samples"][("spotkit_queue_length",)] == 0
    assert got["spotkit_transferred_bytes"]["samples"][
        ("spotkit_transferred_bytes_total",)] > 0
    arrivals = got["spotkit_arrivals"]["samples"]
    assert sum(arrivals.values()) == 1
    assert loop.alerts is not None
    assert loop.alerts.rules[0].name == "ops"


def test_cli_watch_metrics_port(tmp_path, capsys):
    from spotkit.sim import simulate_tomo_scan

    inbox, warehouse = tmp_path / "inbox", tmp_path / "warehouse"
    warehouse.mkdir()
    simulate_tomo_scan(inbox / "scan_0001.h5", shape=(32, 2, 32), seed=0)
    (tmp_path / "rules.yaml").write_text(RULES)
    argv = ["--catalog", str(tmp_path / "cat.db"), "watch", str(inbox), "--rules",
            str(tmp_path / "rules.yaml"), "--warehouse", str(warehouse), "--once",
            "--settle", "0"]
    assert main([*argv, "--metrics-port", "0"]) == 0
    out = capsys.readouterr().out
    assert "metrics at http://127.0.0.1:" in out
    assert "done 1," in out
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([*argv, "--metrics-port", str(port)]) != 0
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "choose another --metrics-port" in err
