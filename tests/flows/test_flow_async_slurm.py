"""A watcher SIGKILLed while its Slurm job is in flight: the next one follows that job.

``spotkit watch`` runs as its own process against the real test Slurm (started as in
tests/compute: ``slurm_cluster.start_cluster``). Its pass submits the job, records the
job's id in the journal and returns; the job holds until the test lets it go. The watcher
is killed with SIGKILL while the job runs; the next watcher reads the job id from the
journal and follows the same job (never submits another) to the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spotkit.catalog import open_catalog
from spotkit.flows import FAULT_ENV, Journal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compute"))
import slurm_cluster  # tests/compute: the test Slurm's start code

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.notebook]

PARAMS = 'dataset_id = ""\ncatalog_path = ""\noutput_dir = "."\nhold = ""\n'
# waits while the file `hold` exists, then declares one output
BODY = """
import pathlib, time
from spotkit.runs import declare_output
while hold and pathlib.Path(hold).exists():
    time.sleep(0.2)
pathlib.Path("done.txt").write_text(dataset_id)
declare_output("done.txt", kind="test/slurm-async")
"""


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_cluster.skip_reason()
    if reason:
        pytest.skip(reason)
    c = slurm_cluster.start_cluster()
    try:
        yield c
    finally:
        c.stop()


def _watch(root: Path, conf: Path, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "spotkit.cli", "-v", "--catalog", str(root / "catalog.db"),
           "watch", str(root / "inbox"), "--rules", str(root / "rules.yaml"), "--warehouse",
           str(root / "warehouse"), "--poll", "0.2", "--settle", "0.3"]
    env = {**os.environ, "SLURM_CONF": str(conf)}
    env.pop(FAULT_ENV, None)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait(cond, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; log:\n{log.read_text()[-4000:]}")


def _step(root: Path):
    if not (root / "catalog.db").exists():
        return None
    with Journal(root / "catalog.db") as journal:
        items = journal.items()
        return journal.step(items[0].key, "processed/tomo/recon") if items else None


def _runs(root: Path):
    with open_catalog(root / "catalog.db") as cat:
        return cat.runs(limit=None)


def test_watcher_killed_with_its_job_in_flight_follows_that_job_after_restart(
        tmp_path, cluster):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from spotkit.sim import simulate_tomo_scan

    root = tmp_path
    (root / "inbox").mkdir()
    (root / "warehouse").mkdir()
    simulate_tomo_scan(root / "inbox" / "scan.h5", shape=(32, 2, 32), n_flats=2, n_darks=2,
                       seed=4)
    params = new_code_cell(PARAMS, metadata={"tags": ["parameters"]})
    notebook = root / "hold.ipynb"
    nbformat.write(new_notebook(cells=[params, new_code_cell(BODY)], metadata={
        "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}),
        notebook)
    hold = root / "HOLD"
    hold.write_text("hold")
    (root / "rules.yaml").write_text(
        "version: 1\nfacility: TEST\nstages: [preview, full]\n"
        "retry: {attempts: 2, backoff: 0.2, factor: 1, max_backoff: 1}\n"
        f"targets:\n  cluster: {{kind: slurm, partition: {cluster.partition}, min_poll: 0.3,"
        " time: '00:10:00'}\n"
        "rules:\n  - name: tomo\n    match: {beamline: '8.3.2', kind: tomo/raw}\n"
        f"    actions:\n      - {{name: recon, stage: full, notebook: {notebook},"
        f" target: cluster, parameters: {{hold: '{hold}'}}}}\n")
    log = root / "watch.log"
    with open(log, "ab") as out:
        first = _watch(root, cluster.conf, out)
        try:
            rec = _wait(lambda: (r := _step(root)) is not None and r.state == "running"
                        and (r.result or {}).get("job") and r, 120, "the job's record", log)
            job = rec.result["job"]
            _wait(lambda: any(r.state == "running" for r in _runs(root)), 120,
                  "the job to start", log)
            time.sleep(1.0)  # more passes: they follow the job, they submit nothing
            (run,) = _runs(root)
            assert (run.id, run.job_id) == (job["run_id"], job["id"])
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        second = _watch(root, cluster.conf, out)
        try:
            _wait(lambda: log.read_text().count("spotkit.flows._flow: watching") >= 2, 60,
                  "the second watcher to start", log)
            time.sleep(1.0)  # its passes follow the job the journal names
            assert [r.id for r in _runs(root)] == [run.id]  # followed, not submitted again
            assert _step(root).result["job"]["id"] == job["id"]
            hold.unlink()
            _wait(lambda: (r := _step(root)) is not None and r.state == "done", 180,
                  "the step to be done", log)
            with Journal(root / "catalog.db") as journal:
                _wait(lambda: journal.items()[0].state == "done", 30, "done", log)
        finally:
            second.terminate()
            second.wait(30)
    (final,) = _runs(root)
    assert (final.id, final.job_id, final.state) == (run.id, job["id"], "completed")
    rec = _step(root)
    assert rec.result["job_id"] == job["id"]
    assert rec.result["adopted"] is True  # submitted by the watcher that was killed
    assert rec.attempts == 1
    with open_catalog(root / "catalog.db") as cat:
        assert len(cat.search(kind="test/slurm-async")) == 1
