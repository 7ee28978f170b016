"""The Local target: a real process pool running the same batch script as Slurm would."""

from __future__ import annotations

import json
import os
import time

import pytest

import spotkit
from spotkit.compute import Job, JobState, Local
from spotkit.errors import JobFailedError, NotebookParameterError


def _script(tmp_path, name, body):
    path = tmp_path / f"{name}.sh"
    path.write_text("#!/bin/bash\n" + body + "\n")
    return path


def _shell_job(target, tmp_path, name, body):
    return Job(target.submit_script(_script(tmp_path, name, body), job_name=name,
                                    workdir=tmp_path), target)


def test_states_exit_codes_and_logs(tmp_path):
    target = Local(max_workers=2, min_poll=0.05)
    ok = _shell_job(target, tmp_path, "ok", "echo hello; echo oops >&2")
    bad = _shell_job(target, tmp_path, "bad", "exit 3")
    assert ok.id.startswith("local-")
    assert ok.wait(timeout=20).succeeded
    assert ok.exit_code == 0
    logs = ok.logs()
    assert logs.stdout == "hello\n"
    assert logs.stderr == "oops\n"
    assert logs.paths["stdout"].endswith(f"job-{ok.id}.out")
    status = bad.wait(timeout=20)
    assert status.state is JobState.FAILED
    assert status.exit_code == 3
    with pytest.raises(JobFailedError, match="state FAILED, exit code 3"):
        bad.wait(check=True)
    assert ok.elapsed is not None
    assert ok.queue_wait is not None


def test_queue_respects_max_workers_and_cancel_pending(tmp_path):
    target = Local(max_workers=1, min_poll=0.05)
    first = _shell_job(target, tmp_path, "first", "sleep 1")
    second = _shell_job(target, tmp_path, "second", "true")
    third = _shell_job(target, tmp_path, "third", "true")
    time.sleep(0.3)
    assert first.state is JobState.RUNNING
    assert second.state is JobState.PENDING
    third.cancel()
    assert third.wait(timeout=5).state is JobState.CANCELLED
    assert third.queue_wait is None  # never started
    assert second.wait(timeout=20).succeeded
    assert first.succeeded
    assert second.status().started >= first.status().ended


def test_cancel_kills_the_process_group(tmp_path):
    target = Local(max_workers=1, min_poll=0.05, kill_wait=1)
    marker = tmp_path / "child.pid"
    job = _shell_job(target, tmp_path, "sleepy",
                     f"sleep 300 & echo $! > {marker}; trap '' TERM; wait")
    while not marker.exists():
        time.sleep(0.05)
    job.cancel()
    status = job.wait(timeout=20)
    assert status.state is JobState.CANCELLED
    assert not status.succeeded
    child = int(marker.read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_time_limit_gives_timeout(tmp_path):
    target = Local(max_workers=1, min_poll=0.05, kill_wait=0.5)
    script = _script(tmp_path, "long", "#SPOTKIT --time=0:01\nsleep 60")
    job = Job(target.submit_script(script, job_name="long", workdir=tmp_path), target)
    status = job.wait(timeout=20)
    assert status.state is JobState.TIMEOUT
    assert status.reason == "TimeLimit"
    assert 0.9 < job.elapsed < 5


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_max_workers(bad):
    with pytest.raises(ValueError, match="max_workers"):
        Local(max_workers=bad)


# -- notebooks through spotkit.submit -------------------------------------------------------


@pytest.mark.notebook
@pytest.mark.slow
def test_submit_runs_the_notebook_on_the_same_run(tmp_path, catalog, raw, label_notebook):
    canary = tmp_path / "pwned"
    label = (f"it's a \"quoted\" $(touch {canary}) `touch {canary}` ${{HOME}} name\n"
             "with a newline; rm -rf / #")
    job = spotkit.submit(label_notebook, raw, parameters={"label": label}, catalog=catalog,
                         target=Local(max_workers=1, min_poll=0.1))
    assert catalog.get_run(job.run_id).state in ("queued", "running")
    status = job.wait(timeout=120, check=True)
    assert status.state is JobState.COMPLETED
    run = job.run
    assert run.state == "completed"
    assert run.job_id == job.id
    assert run.target == "local"
    assert run.parameters == {"label": label}
    assert [r.id for r in catalog.runs()] == [job.run_id]  # one run, the same one
    (out,) = [catalog[o] for o in run.outputs]
    assert json.loads(out.files[0].path.read_text())["label"] == label
    assert not canary.exists()
    script = (job.workdir / "job.sh").read_text()
    assert "pwned" not in script  # parameters live in job.json only


@pytest.mark.notebook
@pytest.mark.slow
def test_failing_notebook_fails_the_job_and_records_the_cell(catalog, raw, label_notebook):
    job = spotkit.submit(label_notebook, raw, parameters={"fail": True}, catalog=catalog,
                         target=Local(min_poll=0.1))
    status = job.wait(timeout=120)
    assert status.state is JobState.FAILED
    assert status.exit_code == 1
    run = job.run
    assert run.state == "failed"
    assert run.error_cell == 1
    assert run.error_name == "RuntimeError"
    with pytest.raises(JobFailedError, match=r"RuntimeError in cell 1: asked to fail"):
        job.wait(check=True)


@pytest.mark.notebook
@pytest.mark.slow
def test_cancelled_and_timed_out_runs_are_recorded(catalog, raw, label_notebook):
    target = Local(max_workers=2, min_poll=0.1, kill_wait=1)
    slow = spotkit.submit(label_notebook, raw, parameters={"seconds": 120}, catalog=catalog,
                          target=target)
    limited = spotkit.submit(label_notebook, raw, parameters={"seconds": 120}, catalog=catalog,
                             target=target, time="0:05")
    deadline = time.monotonic() + 60
    while catalog.get_run(slow.run_id).state != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    slow.cancel()
    assert slow.wait(timeout=30).state is JobState.CANCELLED
    assert slow.run.state == "cancelled"
    assert slow.run.error_name == "CANCELLED"
    status = limited.wait(timeout=60)
    assert status.state is JobState.TIMEOUT
    assert limited.run.state == "failed"
    assert limited.run.error_name == "TIMEOUT"
    assert "TIMEOUT" in limited.run.error_message
    assert not status.succeeded


def test_bad_parameters_are_refused_before_anything(catalog, raw, label_notebook):
    with pytest.raises(NotebookParameterError, match="'lable'"):
        spotkit.submit(label_notebook, raw, parameters={"lable": "x"}, catalog=catalog)
    with pytest.raises(ValueError, match="set by spotkit"):
        spotkit.submit(label_notebook, raw, parameters={"dataset_id": "x"}, catalog=catalog)
    with pytest.raises(TypeError, match="JSON"):
        spotkit.submit(label_notebook, raw, parameters={"label": object()}, catalog=catalog)
    assert catalog.runs() == []
    assert not (catalog.path.parent / "runs").exists()


def test_job_that_cannot_start_its_python_is_failed_and_recorded(catalog, raw,
                                                                 label_notebook):
    from spotkit.compute import Environment

    job = spotkit.submit(label_notebook, raw, catalog=catalog, target=Local(min_poll=0.05),
                         environment=Environment(python="/nonexistent/python3"))
    status = job.wait(timeout=30)
    assert status.state is JobState.FAILED
    assert status.exit_code == 127
    run = job.run
    assert run.state == "failed"  # never left "queued"
    assert "ended FAILED (exit code 127) before the notebook finished" in run.error_message
    assert f"job-{job.id}.err" in run.error_message
    assert "/nonexistent/python3" in job.logs().stderr
