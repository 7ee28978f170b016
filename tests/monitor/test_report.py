"""The metric streams and the turnaround report on an event table whose numbers are worked
out by hand (in the comments), and ``spotkit monitor report``'s output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import spotkit.monitor as mon
from spotkit.cli import main

BL, SLURM = "8.3.2", "perlmutter"


def _dataset(d, t0, *, queue_from_scheduler=True, queue=60.0, run=30.0, target=SLURM,
             beamline=BL, labelled=False):
    """One dataset: complete at t0; ingest 5 s, manifest 1 s, transfer 10 s (1 GB),
    verify 2 s (18 s in all, ending at t0 + 20); queued at t0 + 30, then ``queue`` s in the
    queue and ``run`` s running. ``labelled``: every event names the dataset and beamline
    (as spotkit records them); else only some do, and the rest is inferred."""
    item = f"/inbox/{d}.h5|1|1"
    rows = [
        {"time": t0, "step": "complete", "item": item, "bytes": 1e9},
        {"time": t0 + 1, "step": "discovered", "item": item, "bytes": 1e9, "duration": 1.0},
        {"time": t0 + 6, "step": "ingested", "item": item, "dataset_id": d,
         "beamline": beamline, "duration": 5.0, "bytes": 1e9},
        {"time": t0 + 7, "step": "manifest", "item": item, "dataset_id": d,
         "beamline": beamline, "duration": 1.0},
        {"time": t0 + 17, "step": "transfer", "item": item, "dataset_id": d,
         "beamline": beamline, "duration": 10.0, "bytes": 1e9, "value": 1e8,
         "target": "warehouse"},
        {"time": t0 + 20, "step": "verified", "item": item, "dataset_id": d,
         "beamline": beamline, "duration": 2.0, "target": "warehouse"},
    ]
    if target is None:
        rows.append({"time": t0 + 30, "step": "done", "item": item, "dataset_id": d,
                     "beamline": beamline})
        return _label(rows, d, beamline) if labelled else rows
    run_id, job = f"run-{d}", f"job-{d}"
    start = t0 + 30 + queue
    rows += [
        # a batch job: submit names the dataset; started/finished only the job and run
        {"time": t0 + 30, "step": "queued", "dataset_id": d, "beamline": beamline,
         "run_id": run_id, "job_id": job, "target": target},
        {"time": start, "step": "started", "run_id": run_id, "job_id": job, "target": target,
         "duration": queue if queue_from_scheduler else None},
        {"time": start + run, "step": "finished", "run_id": run_id, "job_id": job,
         "target": target, "duration": run if queue_from_scheduler else None,
         "outcome": "ok"},
    ]
    return _label(rows, d, beamline) if labelled else rows


def _label(rows, d, beamline):
    return [{**r, "dataset_id": d, "beamline": beamline} for r in rows]


def _table(labelled=False):
    return mon.frame(
        _dataset("A", 0.0, labelled=labelled)                              # turnaround 120
        + _dataset("B", 1000.0, queue=120.0, run=50.0, labelled=labelled)  # turnaround 200
        # no scheduler times: queue 30 and run 20 from the events' own times
        + _dataset("C", 2000.0, queue=30.0, run=20.0, queue_from_scheduler=False,
                   labelled=labelled)                                       # turnaround 80
        + _dataset("D", 500.0, target=None, beamline="7.3.3", labelled=labelled))  # 30


@pytest.fixture(params=[False, True], ids=["inferred", "labelled"])
def table(request):
    return _table(request.param)


def test_metric_streams_by_hand(table):
    m = mon.metrics(table)
    assert list(m.columns) == ["time", "metric", "value", "beamline", "target",
                               "dataset_id", "size"]
    assert (np.diff(m["time"]) >= 0).all()

    def values(metric, **where):
        sub = m[m["metric"] == metric]
        for k, v in where.items():
            sub = sub[sub[k] == v]
        return sub.sort_values("time")["value"].tolist()

    assert values("queue_wait") == [60.0, 120.0, 30.0]
    assert values("run_time") == [30.0, 50.0, 20.0]
    assert values("ingest_time") == [5.0] * 4
    assert values("transfer_time") == [10.0] * 4
    assert values("transfer_rate") == [1e8] * 4
    assert values("file_size") == [1e9] * 4
    # 8.3.2's datasets complete at 0, 1000, 2000 s; 7.3.3 sent one: no interval
    assert values("interarrival", beamline=BL) == [1000.0, 1000.0]
    assert values("interarrival", beamline="7.3.3") == []
    assert values("turnaround", beamline=BL) == [120.0, 200.0, 80.0]
    assert values("turnaround", beamline="7.3.3") == [30.0]
    # the job's events name neither dataset nor beamline: both come from its run
    qw = m[m["metric"] == "queue_wait"]
    assert qw["dataset_id"].tolist() == ["A", "B", "C"]
    assert set(qw["beamline"]) == {BL}
    assert set(qw["target"]) == {SLURM}
    assert set(m["size"]) == {1e9}


def test_turnaround_breakdown_by_hand(table):
    per = mon.turnaround(table, per_dataset=True).set_index("dataset_id")
    assert per.loc["A", ["turnaround", "queue_wait", "transfer", "run", "idle"]].tolist() == [
        120.0, 60.0, 18.0, 30.0, 12.0]
    assert per.loc["B", ["turnaround", "queue_wait", "run", "idle"]].tolist() == [
        200.0, 120.0, 50.0, 12.0]
    assert per.loc["C", ["turnaround", "queue_wait", "run", "idle"]].tolist() == [
        80.0, 30.0, 20.0, 12.0]
    assert per.loc["D", ["target", "turnaround", "transfer", "idle"]].tolist() == [
        None, 30.0, 18.0, 12.0]

    s = mon.turnaround(table)
    slurm = s[(s["beamline"] == BL) & (s["target"] == SLURM)].set_index("component")
    assert list(slurm.index) == ["turnaround", "queue_wait", "transfer", "run", "idle"]
    assert (slurm["datasets"] == 3).all()
    # turnarounds 80, 120, 200: median 120, p90 = 120 + 0.8 * 80 = 184; total 400 s
    assert slurm.loc["turnaround", ["median_s", "p90_s", "share"]].tolist() == [
        120.0, pytest.approx(184.0), 1.0]
    # queue waits 30, 60, 120: median 60, p90 = 60 + 0.8 * 60 = 108, share 210 / 400
    assert slurm.loc["queue_wait", ["median_s", "p90_s"]].tolist() == [
        60.0, pytest.approx(108.0)]
    assert slurm.loc["queue_wait", "share"] == pytest.approx(0.525)
    assert slurm.loc["transfer", "share"] == pytest.approx(54 / 400)
    assert slurm.loc["run", "share"] == pytest.approx(100 / 400)
    assert slurm.loc["idle", "share"] == pytest.approx(36 / 400)
    quiet = s[s["beamline"] == "7.3.3"].set_index("component")
    assert quiet["target"].isna().all()
    assert quiet.loc["idle", "share"] == pytest.approx(12 / 30)

    text = mon.format_turnaround(s)
    assert ("8.3.2 / perlmutter: 3 datasets; queue wait is 52 % of turnaround (the largest "
            "part)") in text
    assert "7.3.3 / (no run): 1 dataset; queue wait is 0 % of turnaround (transfer is the " \
           "largest part: 60 %)" in text


def test_overlapping_runs_never_make_idle_negative():
    rows = _dataset("A", 0.0)
    rows.append({"time": 95.0, "step": "finished", "dataset_id": "A", "run_id": "run-x",
                 "target": SLURM, "duration": 80.0})  # a second run, overlapping
    per = mon.turnaround(mon.frame(rows), per_dataset=True)
    assert per["run"].tolist() == [110.0]
    assert per["idle"].tolist() == [0.0]


def test_empty_tables():
    empty = mon.frame([])
    assert mon.metrics(empty).empty
    assert mon.turnaround(empty).empty
    assert "no turnaround" in mon.format_turnaround(mon.turnaround(empty))
    fig = mon.plot_turnaround(mon.turnaround(empty))
    assert fig.axes[0].texts[0].get_text() == "no turnaround recorded yet"


def test_plot_turnaround_draws_one_bar_per_beamline_and_target(table):
    fig = mon.plot_turnaround(mon.turnaround(table))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["7.3.3 / (no run)",
                                                            "8.3.2 / perlmutter"][::-1] \
        or sorted(t.get_text() for t in ax.get_yticklabels()) == ["7.3.3 / (no run)",
                                                                  "8.3.2 / perlmutter"]
    widths = {p.get_label(): [] for p in ax.patches}
    assert len(ax.patches) == 2 * 4  # 2 groups x 4 parts
    total = pd.Series([p.get_width() for p in ax.patches]).sum()
    assert total == pytest.approx(200.0)  # each bar: 100 % of its turnaround
    del widths


def _catalog_with(table, path):
    with mon.Telemetry(path) as tel:
        for row in table.to_dict("records"):
            row.pop("id")
            nbytes = row.pop("bytes")
            tel.record(row.pop("step"), nbytes=None if pd.isna(nbytes) else nbytes,
                       **{k: (None if isinstance(v, float) and np.isnan(v) else v)
                          for k, v in row.items()})
    return str(path)


def test_cli_report_table_figure_and_json(tmp_path, capsys):
    db = _catalog_with(_table(labelled=True), tmp_path / "catalog.db")
    figure = tmp_path / "figs" / "turnaround.png"
    assert main(["--catalog", db, "monitor", "report", "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "8.3.2 / perlmutter: 3 datasets; queue wait is 52 % of turnaround" in out
    assert "  queue wait      60 s    108 s    52 %" in out
    assert f"figure: {figure}" in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["monitor", "report", "--catalog", db, "--json", "--beamline", BL]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["events"] == 3 * 9
    shares = {r["component"]: r["share"] for r in doc["turnaround"]}
    assert shares["queue_wait"] == pytest.approx(0.525)

    # events before 1500 s: datasets A and B only (and 7.3.3's D)
    assert main(["monitor", "report", "--catalog", db, "--until",
                 "1970-01-01T00:25:00+00:00", "--per-dataset"]) == 0
    out = capsys.readouterr().out
    assert out.split("\n")[0].split() == ["beamline", "target", "dataset_id", "complete",
                                          "end", "turnaround", "queue_wait", "transfer",
                                          "run", "idle"]
    assert len(out.strip().splitlines()) == 4


def test_cli_report_on_a_missing_catalog_says_so(tmp_path, capsys):
    assert main(["monitor", "report", "--catalog", str(tmp_path / "nope.db")]) == 1
    assert "nope.db" in capsys.readouterr().err
