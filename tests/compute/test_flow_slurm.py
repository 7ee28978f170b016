"""The flow with a real Slurm target: a watcher killed after submitting, a job cancelled.

Exactly once holds across a crash on the batch path too: a watcher SIGKILLed right after
``sbatch`` leaves a queued run with its job id; the next watcher follows that job and
adopts its result instead of submitting again. A job the scheduler ends badly (here:
cancelled from outside with ``scancel``) counts against the dataset, is submitted again,
and the dataset ends done; it is never waited on forever as an "outage".
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_notebook

from spotkit.catalog import open_catalog
from spotkit.flows import FAULT_ENV, Journal

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.notebook]

PARAMS = """dataset_id = ""
catalog_path = ""
output_dir = "."
hold = ""
"""

# waits while the file `hold` exists, then declares one output
BODY = """
import pathlib, time
from spotkit.runs import declare_output
while hold and pathlib.Path(hold).exists():
    time.sleep(0.2)
pathlib.Path("done.txt").write_text(dataset_id)
declare_output("done.txt", kind="test/slurm-flow")
"""


def _rules(path: Path, notebook: Path, slurm, *, hold: str = "") -> Path:
    path.write_text(
        "version: 1\nfacility: TEST\nstages: [preview, full]\n"
        "retry: {attempts: 3, backoff: 0.2, factor: 1, max_backoff: 1}\n"
        "targets:\n"
        f"  cluster: {{kind: slurm, partition: {slurm.partition}, min_poll: 0.3,"
        " time: '00:10:00', concurrency: 2}\n"
        "rules:\n"
        "  - name: tomo\n"
        "    match: {beamline: '8.3.2', kind: tomo/raw}\n"
        "    actions:\n"
        f"      - {{name: recon, stage: full, notebook: {notebook}, target: cluster,"
        f" parameters: {{hold: '{hold}'}}}}\n")
    return path


@pytest.fixture
def env(tmp_path, slurm):
    from spotkit.sim import simulate_tomo_scan

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "warehouse").mkdir()
    simulate_tomo_scan(inbox / "scan.h5", shape=(32, 2, 32), n_flats=2, n_darks=2, seed=3)
    nb = write_notebook(tmp_path / "hold.ipynb", BODY, params=PARAMS)
    return {"root": tmp_path, "inbox": inbox, "warehouse": tmp_path / "warehouse",
            "catalog": tmp_path / "catalog.db", "notebook": nb, "slurm": slurm}


def _watch(env, rules: Path, log, fault: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "spotkit.cli", "-v", "--catalog", str(env["catalog"]),
           "watch", str(env["inbox"]), "--rules", str(rules), "--warehouse",
           str(env["warehouse"]), "--poll", "0.2", "--settle", "0.3"]
    proc_env = {**os.environ}
    proc_env.pop(FAULT_ENV, None)
    if fault:
        proc_env[FAULT_ENV] = fault
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=proc_env)


def _wait(cond, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; watcher log:\n"
                         + log.read_text()[-4000:])


def _item(env):
    if not env["catalog"].exists():
        return None
    with Journal(env["catalog"]) as journal:
        items = journal.items()
    return items[0] if items else None


def _runs(env):
    with open_catalog(env["catalog"]) as cat:
        return cat.runs(limit=None)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_watcher_killed_after_sbatch_adopts_the_job_instead_of_resubmitting(env):
    rules = _rules(env["root"] / "rules.yaml", env["notebook"], env["slurm"])
    log = env["root"] / "watch.log"
    with open(log, "ab") as out:
        first = _watch(env, rules, out, fault="run.started:1")
        try:
            assert first.wait(120) == -9, log.read_text()[-3000:]
        finally:
            _stop(first)
        (run,) = _runs(env)
        assert run.job_id
        assert run.state in ("queued", "running", "completed")
        assert run.context["flow"]["action"] == "recon"
        second = _watch(env, rules, out)
        try:
            _wait(lambda: (it := _item(env)) is not None and it.state == "done", 180,
                  "the dataset to be done", log)
        finally:
            _stop(second)
    runs = _runs(env)
    assert [(r.id, r.state) for r in runs] == [(run.id, "completed")]  # one job, adopted
    with Journal(env["catalog"]) as journal:
        rec = journal.step(_item(env).key, "processed/tomo/recon")
    assert rec.result["run_id"] == run.id
    assert rec.result["adopted"] is True
    with open_catalog(env["catalog"]) as cat:
        assert len(cat.search(kind="test/slurm-flow")) == 1


def test_job_cancelled_by_the_scheduler_counts_then_is_submitted_again(env):
    hold = env["root"] / "HOLD"
    hold.write_text("hold")
    rules = _rules(env["root"] / "rules.yaml", env["notebook"], env["slurm"], hold=str(hold))
    log = env["root"] / "watch.log"
    with open(log, "ab") as out:
        proc = _watch(env, rules, out)
        try:
            _wait(lambda: env["catalog"].exists() and any(
                r.state == "running" for r in _runs(env)), 120, "the job to start", log)
            (run,) = _runs(env)
            res = env["slurm"].command("scancel", run.job_id)
            assert res.returncode == 0, res.stderr
            _wait(lambda: any(r.state == "cancelled" for r in _runs(env)), 120,
                  "the cancelled run to be recorded", log)
            hold.unlink()
            _wait(lambda: (it := _item(env)) is not None and it.state == "done", 180,
                  "the dataset to be done after a second job", log)
        finally:
            _stop(proc)
    runs = sorted(_runs(env), key=lambda r: r.started_at)
    assert [r.state for r in runs] == ["cancelled", "completed"]
    assert runs[0].id == run.id
    assert "CANCELLED" in (runs[0].error_message or ""), runs[0]
    assert runs[1].job_id != run.job_id
    with Journal(env["catalog"]) as journal:
        item = _item(env)
        assert journal.step(item.key, "processed/tomo/recon").attempts == 2
    with open_catalog(env["catalog"]) as cat:
        assert len(cat.search(kind="test/slurm-flow")) == 1
