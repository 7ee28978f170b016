"""The Slurm target against a real Slurm (munged, slurmctld, slurmd started by the session
fixture ``slurm``): real notebook runs, failures, cancel, time limit, batched polling.

The time-limit job is submitted by the first test and checked by the last one, so its
minute (Slurm's smallest limit, enforced on a 30 s cycle) overlaps the other tests.
"""

from __future__ import annotations

import json
import os
import signal
import time

import h5py
import pytest

import spotkit
from spotkit.compute import Job, JobState, Poller, Slurm, poll_jobs
from spotkit.errors import JobFailedError, JobLostError, SchedulerError, SubmitError
from spotkit.runs import pipeline_notebook

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def target(slurm):
    return Slurm(partition=slurm.partition, min_poll=0.3, env={"SLURM_CONF": str(slurm.conf)})


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_tomo):
    """A catalog with the tiny scan, shared by the module (the overtime job outlives tests)."""
    cat = spotkit.open_catalog(tmp_path_factory.mktemp("slurm-catalog") / "catalog.db")
    raw = cat.ingest(tiny_tomo[0])
    yield cat, raw
    cat.close()


@pytest.fixture(scope="module")
def overtime(shared, target, label_notebook):
    """A notebook run that sleeps far beyond its one-minute limit."""
    cat, raw = shared
    return spotkit.submit(label_notebook, raw, parameters={"seconds": 600}, catalog=cat,
                          target=target, time="1")


def _count_commands(monkeypatch, target):
    calls: list[str] = []
    run = target._run

    def counting(argv, **kwargs):
        calls.append(" ".join(argv[:2]) if argv[0] == "sacct" and argv[1] == "-c" else argv[0])
        return run(argv, **kwargs)

    monkeypatch.setattr(target, "_run", counting)
    return calls


def _shell_job(target, tmp_path, name, body):
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH --output={tmp_path}/{name}-%j.out\n{body}\n")
    return Job(target.submit_script(script, job_name=name, workdir=tmp_path), target)


def test_overtime_job_runs_with_its_limit(overtime):
    assert "#SBATCH --time=00:01:00" in (overtime.workdir / "job.sh").read_text()
    deadline = time.monotonic() + 60
    while overtime.state is not JobState.RUNNING:
        assert time.monotonic() < deadline, overtime.logs()
        time.sleep(0.3)


def test_pipeline_notebook_completes(shared, target):
    cat, raw = shared
    job = spotkit.submit(pipeline_notebook("tomo_quicklook"), raw, parameters={"n_slices": 2},
                         catalog=cat, target=target, time="10")
    status = job.wait(timeout=180, check=True)
    assert status.state is JobState.COMPLETED
    assert status.exit_code == 0
    assert status.started is not None
    assert status.ended >= status.started
    assert job.elapsed > 0
    assert job.queue_wait >= 0
    run = job.run
    assert run.state == "completed"
    assert run.job_id == job.id
    assert run.target == "slurm"
    outputs = [cat[o] for o in run.outputs]
    assert sorted(o.kind for o in outputs) == ["image/png", "tomo/slices"]
    with h5py.File(next(o for o in outputs if o.kind == "tomo/slices").path) as f:
        assert f["slices"].shape[0] == 2
    logs = job.logs()
    assert logs.paths["stdout"] == str(job.workdir / f"job-{job.id}.out")
    assert f"run {job.run_id} completed" in logs.stderr
    # another process (a monitor) follows the same job from the catalog
    again = Job.from_run(job.run_id, Slurm(min_poll=0.3), catalog=cat.path)
    assert again.wait(timeout=30).succeeded
    assert again.logs().paths == logs.paths
    assert again.run.state == "completed"


def test_parameters_never_reach_a_shell(shared, target, label_notebook, tmp_path):
    cat, raw = shared
    canary = tmp_path / "pwned"
    label = (f"sample \"A\" 'B' $(touch {canary}) `touch {canary}` $SLURM_JOB_ID\n"
             "second line; touch {canary} #")
    job = spotkit.submit(label_notebook, raw, parameters={"label": label}, catalog=cat,
                         target=target)
    job.wait(timeout=120, check=True)
    (out,) = [cat[o] for o in job.run.outputs]
    assert json.loads(out.files[0].path.read_text())["label"] == label
    assert not canary.exists()


def test_failing_notebook_is_failed_with_its_cell(shared, target, label_notebook):
    cat, raw = shared
    job = spotkit.submit(label_notebook, raw, parameters={"fail": True}, catalog=cat,
                         target=target)
    status = job.wait(timeout=120)
    assert status.state is JobState.FAILED
    assert status.exit_code == 1
    assert not status.succeeded
    run = job.run
    assert (run.state, run.error_cell, run.error_name) == ("failed", 1, "RuntimeError")
    with pytest.raises(JobFailedError) as info:
        job.wait(check=True)
    msg = str(info.value)
    assert f"slurm job {job.id} (run {job.run_id}) did not succeed: state FAILED" in msg
    assert "RuntimeError in cell 1: asked to fail" in msg
    assert f"job-{job.id}.err" in msg


def test_cancelled_while_running(shared, target, label_notebook):
    cat, raw = shared
    job = spotkit.submit(label_notebook, raw, parameters={"seconds": 300}, catalog=cat,
                         target=target)
    deadline = time.monotonic() + 60
    while cat.get_run(job.run_id).state != "running":
        assert time.monotonic() < deadline, job.logs()
        time.sleep(0.3)
    job.cancel()
    status = job.wait(timeout=60)
    assert status.state is JobState.CANCELLED
    assert not status.succeeded
    run = job.run
    assert run.state == "cancelled"
    assert run.error_name == "CANCELLED"
    with pytest.raises(JobFailedError, match="state CANCELLED"):
        job.check()
    job.cancel()  # already over: no error


def test_many_jobs_one_query_per_poll(target, tmp_path, monkeypatch):
    jobs = [_shell_job(target, tmp_path, f"j{i}", f"exit {0 if i % 2 else 2}")
            for i in range(10)]
    calls = _count_commands(monkeypatch, target)
    rounds = 0
    statuses = {}
    deadline = time.monotonic() + 120
    while not all(s.state.finished for s in statuses.values()) or not statuses:
        assert time.monotonic() < deadline, statuses
        statuses = poll_jobs(jobs, fresh=True)
        rounds += 1
    assert calls.count("squeue") == rounds  # one squeue per round for all ten jobs
    assert calls.count("sacct") + calls.count("sacct -c") <= rounds + 1
    assert target._final_source == "jobcomp"  # accounting is off here: sacct -c
    for i, job in enumerate(jobs):
        st = statuses[job.id]
        assert st.state is (JobState.COMPLETED if i % 2 else JobState.FAILED)
        assert st.exit_code == (0 if i % 2 else 2)


def test_unknown_right_after_submission_is_tolerated(slurm, tmp_path):
    class Forgetful(Slurm):
        """A scheduler whose first answers do not know the job yet (caching, lag)."""

        forget = 4

        def status(self, job_ids):
            if self.forget:
                self.forget -= 1
                return {}
            return super().status(job_ids)

    target = Forgetful(partition=slurm.partition, min_poll=0.2)
    job = _shell_job(target, tmp_path, "late", "sleep 1")
    job.unknown_grace = 30
    seen = []
    while not seen or not seen[-1].finished:
        seen.append(job.state)
        time.sleep(0.2)
    assert seen[:4] == [JobState.UNKNOWN] * 4
    assert seen[-1] is JobState.COMPLETED
    assert not job.lost


def test_a_job_the_scheduler_never_knew_is_lost(target):
    job = Job("987654", target, unknown_grace=1.0)
    with pytest.raises(JobLostError, match="987654 is lost"):
        job.wait(timeout=30)


def test_unknown_partition_is_refused_and_recorded(shared, slurm, label_notebook):
    cat, raw = shared
    before = slurm.command("squeue", "-h", "-t", "all", "-o", "%i").stdout.split()
    bad = Slurm(partition="nosuchpartition", min_poll=0.3)
    with pytest.raises(SubmitError) as info:
        spotkit.submit(label_notebook, raw, catalog=cat, target=bad)
    err = info.value
    assert err.option == "partition"
    assert "partition='nosuchpartition'" in str(err)
    assert "Invalid partition name" in str(err)
    run = cat.get_run(err.run_id)
    assert run.state == "failed"
    assert run.job_id is None
    assert "nosuchpartition" in run.error_message
    assert slurm.command("squeue", "-h", "-t", "all", "-o", "%i").stdout.split() == before


def test_controller_unresponsive_retries_then_recovers(slurm, tmp_path):
    target = Slurm(partition=slurm.partition, min_poll=0.1, command_timeout=1.0)
    job = _shell_job(target, tmp_path, "patient", "true")
    ctld = slurm._procs["slurmctld"].pid
    os.kill(ctld, signal.SIGSTOP)
    try:
        impatient = Poller(target, attempts=2, first_delay=0.2)
        with pytest.raises(SchedulerError, match=r"failed 2 times .* did not answer"):
            impatient.status([job.id])
        resume_at = time.monotonic() + 1.5
        retrying = Poller(target, attempts=6, first_delay=0.5)
        import threading

        timer = threading.Timer(max(0.0, resume_at - time.monotonic()),
                                os.kill, (ctld, signal.SIGCONT))
        timer.start()
        answer = retrying.status([job.id])[job.id]
        timer.join()
    finally:
        os.kill(ctld, signal.SIGCONT)
    assert answer.state is not JobState.UNKNOWN
    assert job.wait(timeout=60).succeeded


def test_job_over_its_time_limit_times_out(overtime):
    status = overtime.wait(timeout=150)
    assert status.state is JobState.TIMEOUT
    assert not status.succeeded
    run = overtime.run
    assert run.state == "failed"
    assert run.error_name == "TIMEOUT"
    assert f"job {overtime.id} ended TIMEOUT" in run.error_message
    with pytest.raises(JobFailedError, match="state TIMEOUT"):
        overtime.check()
