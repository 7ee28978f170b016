"""A real Slurm job's telemetry: its queue wait and run time are the scheduler's own
(``sacct``'s Submit, Start and End), not when spotkit happened to look."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

import spotkit.monitor as mon

sys.path.insert(0, str(Path(__file__).parents[1] / "compute"))
import slurm_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_cluster.skip_reason()
    if reason:
        pytest.skip(reason)
    started = slurm_cluster.start_cluster()
    try:
        yield started
    finally:
        started.stop()


def test_slurm_job_queue_wait_comes_from_the_scheduler(cluster, tmp_path, catalog):
    from spotkit.compute import Job, Slurm

    target = Slurm(partition=cluster.partition, min_poll=0.3,
                   env={"SLURM_CONF": str(cluster.conf)})
    blocker, script = tmp_path / "blocker.sh", tmp_path / "held.sh"
    # the blocker holds the whole node for 2 s: the held job waits in Slurm's queue
    blocker.write_text(f"#!/bin/bash\n#SBATCH --exclusive\n#SBATCH --output={tmp_path}/"
                       "blocker-%j.out\nsleep 2\n")
    script.write_text(f"#!/bin/bash\n#SBATCH --exclusive\n#SBATCH --output={tmp_path}/"
                      "held-%j.out\nsleep 1\n")
    first = Job(target.submit_script(blocker, job_name="blocker", workdir=tmp_path), target)
    job = Job(target.submit_script(script, job_name="held", workdir=tmp_path), target,
              catalog=catalog)
    job.labels = {"dataset_id": "ds-slurm", "beamline": "8.3.2"}
    job.record_event("queued", time=job.submitted, flush=True)
    # Slurm's own submit time, read while the job waits (this test cluster has no
    # slurmdbd: for finished jobs it answers from its jobcomp file, whose Submit is Start)
    queue = subprocess.run(["squeue", "-h", "-j", job.id, "-o", "%V"], check=True,
                           capture_output=True, text=True,
                           env={**os.environ, "SLURM_CONF": str(cluster.conf)}).stdout
    submit = datetime.fromisoformat(queue.strip()).astimezone().timestamp()
    first.wait(timeout=120, check=True)
    time.sleep(1.5)  # the held job starts and ends unseen: its times come from the end
    status = job.wait(timeout=120, check=True)
    start, end = status.started.timestamp(), status.ended.timestamp()
    ev = mon.events(catalog).set_index("step")
    assert sorted(ev.index) == ["finished", "queued", "started"]
    assert ev.loc["started", "detail"]["source"] == "scheduler"
    assert ev.loc["started", "time"] == pytest.approx(start, abs=1.0)
    assert ev.loc["started", "duration"] == pytest.approx(start - submit, abs=1.0)
    assert ev.loc["started", "duration"] >= 1.5  # the --begin hold, measured by Slurm
    assert ev.loc["finished", "time"] == pytest.approx(end, abs=1.0)
    assert ev.loc["finished", "duration"] == pytest.approx(end - start, abs=1.0)
    assert ev.loc["finished", "outcome"] == "ok"
    assert ev.loc["finished", "detail"]["state"] == status.state.value == "COMPLETED"
    m = mon.metrics(mon.events(catalog))
    (wait,) = m[m["metric"] == "queue_wait"]["value"]
    assert wait == pytest.approx(start - submit, abs=1.0)
    assert set(m["beamline"]) == {"8.3.2"}
