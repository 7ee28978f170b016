"""The flow routes a preview to its fallback target while the telemetry shows its batch
queue over budget, records why (run context, ``reroute`` event), the monitor reports the
switch as a ``reroute`` finding, and the preview goes back once the queue is fast again."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from spotkit.flows import Watcher, load_rules, start_monitor
from spotkit.monitor import Telemetry, events


def write_notebook(path: Path) -> Path:
    """A tiny pipeline notebook that declares one output."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = new_code_cell('dataset_id = None\ncatalog_path = None\noutput_dir = "."\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell(
        "import pathlib\nfrom spotkit.runs import declare_output\n"
        "out = pathlib.Path(output_dir) / 'preview.txt'\nout.write_text(dataset_id)\n"
        "declare_output(out, kind='test/marker')\n")]
    nbformat.write(nb, path)
    return path


def tiny_scan(path: Path, seed: int) -> None:
    from spotkit.sim import simulate_tomo_scan

    simulate_tomo_scan(path, shape=(8, 2, 32), n_flats=1, n_darks=1, seed=seed)

RULES = """\
targets:
  fast: {{kind: local, max_workers: 1}}
  hpc: {{kind: local, max_workers: 1}}
rules:
  - name: tomo
    match: {{kind: tomo/raw}}
    actions:
      - {{name: preview, notebook: "{notebook}", stage: preview, target: hpc,
         queue_budget: 1s, fallback: fast}}
alerts:
  - {{name: moves, match: {{kind: reroute, severity: info}}, log: {{level: warning}}}}
"""


def seed_jobs(db: Path, waits: list[float], start: float, prefix: str) -> None:
    """Queue waits of earlier jobs on ``hpc``, as their telemetry records them."""
    with Telemetry(db) as tel:
        for i, wait in enumerate(waits):
            t = start + 0.01 * i
            tel.record("queued", time=t, target="hpc", job_id=f"{prefix}{i}")
            tel.record("started", time=t + wait, target="hpc", job_id=f"{prefix}{i}",
                       duration=wait)
        tel.flush()


def test_preview_moves_to_the_fallback_and_back(tmp_path, caplog):
    inbox, warehouse, db = tmp_path / "inbox", tmp_path / "warehouse", tmp_path / "cat.db"
    warehouse.mkdir()
    notebook = write_notebook(tmp_path / "tiny.ipynb")
    rules = load_rules(RULES.format(notebook=notebook))
    now = time.time()
    seed_jobs(db, [30.0, 40.0, 35.0], now - 200.0, "slow")  # 30-40 s waits: over budget
    watcher = Watcher(inbox, catalog=db, rules=rules, warehouse=warehouse, settle=0)
    loop = start_monitor(watcher, period=3600)
    try:
        tiny_scan(inbox / "scan_0001.h5", seed=1)
        assert len(watcher.run_once().done) == 1
        (run,) = watcher.catalog.runs(limit=None)
        route = run.context["flow"]["route"]
        assert run.context["flow"]["target"] == "fast"
        assert run.target == "fast"
        assert route["rerouted"]
        assert route["switched"]
        assert route["budget"] == 1.0
        assert "exceeds the budget 1 s: fast instead" in route["reason"]
        assert route["median"] == 35.0
        moved = events(db, step="reroute")
        assert len(moved) == 1
        assert moved["detail"][0]["direction"] == "away"
        assert moved["target"][0] == "hpc"
        assert moved["value"][0] == 35.0
        with caplog.at_level(logging.WARNING, logger="spotkit"):
            found = [f for f in loop.check() if f.kind == "reroute"]
        assert [f.severity for f in found] == ["warning"]
        assert found[0].target == "hpc"
        assert "moved from hpc to fast" in caplog.text

        # the queue is fast again: three waits measured since the move, hold (1 s) over
        time.sleep(1.0)
        seed_jobs(db, [0.1, 0.2, 0.1], time.time() - 0.5, "fast")
        tiny_scan(inbox / "scan_0002.h5", seed=2)
        assert len(watcher.run_once().done) == 1
        second = [r for r in watcher.catalog.runs(limit=None) if r.id != run.id]
        assert second[0].context["flow"]["target"] == "hpc"
        back = second[0].context["flow"]["route"]  # the first run back says why
        assert back["switched"]
        assert not back["rerouted"]
        assert "back to hpc" in back["reason"]
        moved = events(db, step="reroute")
        assert [d["direction"] for d in moved["detail"]] == ["away", "back"]
        found = [f for f in loop.check() if f.kind == "reroute"]
        assert sorted(f.severity for f in found) == ["info", "warning"]
        assert len({f.key for f in found}) == 2  # each switch is sent once
    finally:
        loop.stop()
        watcher.close()


def test_a_restarted_watcher_keeps_the_route_it_had(tmp_path):
    inbox, warehouse, db = tmp_path / "inbox", tmp_path / "warehouse", tmp_path / "cat.db"
    warehouse.mkdir()
    notebook = write_notebook(tmp_path / "tiny.ipynb")
    rules = load_rules(RULES.format(notebook=notebook))
    now = time.time()
    with Telemetry(db) as tel:  # an earlier watcher moved the previews away
        tel.record("reroute", time=now - 0.5, target="hpc", value=40.0,
                   detail={"action": "tomo/preview", "direction": "away", "fallback": "fast",
                           "budget": 1.0})
        tel.flush()
    watcher = Watcher(inbox, catalog=db, rules=rules, warehouse=warehouse, settle=0)
    try:
        (action,) = rules.actions_for({"kind": "tomo/raw"})
        router = watcher._router(action)
        assert router.rerouted
        assert abs(router.since - (now - 0.5)) < 1e-3
        assert router.labels == ("hpc",)  # both targets are 'local': jobs say 'local'
    finally:
        watcher.close()
