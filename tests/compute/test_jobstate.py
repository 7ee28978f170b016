"""Job states, the poller's batching, rate limit and retries, and the Job's checks.

Fast unit tests with a scripted target and a fake clock; the same logic runs against the
real Slurm in test_slurm.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from spotkit.compute import Job, JobState, JobStatus, Poller, Target, poll_jobs
from spotkit.compute._base import format_walltime, parse_walltime
from spotkit.compute._slurm import Slurm
from spotkit.errors import (
    JobFailedError,
    JobLostError,
    JobTimeoutError,
    SchedulerError,
    SubmitError,
    TransientSchedulerError,
)

BAD_FINAL = [JobState.FAILED, JobState.TIMEOUT, JobState.OUT_OF_MEMORY, JobState.NODE_FAIL,
             JobState.CANCELLED, JobState.PREEMPTED, JobState.BOOT_FAIL, JobState.DEADLINE]


class Clock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Scripted(Target):
    """Answers from a list of {id: JobStatus} dicts (or exceptions), one per query."""

    name = "scripted"

    def __init__(self, answers, *, min_poll=1.0):
        self.answers = list(answers)
        self.calls: list[list[str]] = []
        self.min_poll = min_poll
        self.cancelled: list[str] = []

    def status(self, job_ids):
        self.calls.append(list(job_ids))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return {i: answer.get(i, JobStatus(i, JobState.UNKNOWN)) for i in job_ids}

    def cancel(self, job_id):
        self.cancelled.append(job_id)

    def logs(self, job_id):
        from spotkit.compute import JobLogs

        return JobLogs("out", "err", {"stdout": f"/runs/{job_id}.out",
                                      "stderr": f"/runs/{job_id}.err"})


def _with_clock(target, clock):
    target.__dict__["_poller"] = Poller(target, clock=clock, sleep=clock.sleep)
    return target


def st(job_id, state, code=None, reason=""):
    return JobStatus(job_id, state, exit_code=code, reason=reason)


# -- states ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "state"), [
    ("COMPLETED", JobState.COMPLETED), ("CD", JobState.COMPLETED), ("R", JobState.RUNNING),
    ("PD", JobState.PENDING), ("CANCELLED by 0", JobState.CANCELLED),
    ("OUT_OF_ME+", JobState.OUT_OF_MEMORY), ("TO", JobState.TIMEOUT),
    ("NODE_FAIL", JobState.NODE_FAIL), ("", JobState.UNKNOWN), (None, JobState.UNKNOWN),
    ("nonsense", JobState.UNKNOWN),
])
def test_scheduler_state_text(text, state):
    assert JobState.from_scheduler(text) is state


@pytest.mark.parametrize("state", BAD_FINAL)
def test_bad_final_states_are_never_success(state):
    for code in (0, None, 1):
        status = JobStatus("1", state, exit_code=code)
        assert status.finished
        assert not status.succeeded


def test_completed_needs_exit_code_zero():
    assert JobStatus("1", JobState.COMPLETED, exit_code=0).succeeded
    assert not JobStatus("1", JobState.COMPLETED, exit_code=3).succeeded
    assert not JobStatus("1", JobState.RUNNING).finished
    assert not JobState.UNKNOWN.finished


@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 1800), ("0:10", 10), ("1:30:00", 5400), ("2-1", 2 * 86400 + 3600),
    ("1-00:30", 86400 + 1800), ("1-00:00:05", 86405), (5, 300), (timedelta(seconds=7), 7),
])
def test_walltime(text, seconds):
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("bad", ["abc", "1:2:3:4", "-5", "0"])
def test_walltime_rejects(bad):
    with pytest.raises(ValueError, match="time limit"):
        parse_walltime(bad)


def test_format_walltime():
    assert format_walltime(59.2) == "00:01:00"
    assert format_walltime(90061) == "1-01:01:01"


# -- the poller -----------------------------------------------------------------------------


def test_many_jobs_one_query_and_rate_limit():
    clock = Clock()
    ids = [str(i) for i in range(50)]
    target = _with_clock(Scripted([{i: st(i, JobState.RUNNING) for i in ids}]), clock)
    jobs = [Job(i, target) for i in ids]
    statuses = poll_jobs(jobs)
    assert len(target.calls) == 1
    assert sorted(target.calls[0]) == sorted(ids)
    assert {s.state for s in statuses.values()} == {JobState.RUNNING}
    for job in jobs:  # within min_poll: all from the cache
        assert job.state is JobState.RUNNING
    assert len(target.calls) == 1
    clock.now += 1.0
    assert jobs[7].state is JobState.RUNNING  # one job asks: all watched ids in one query
    assert len(target.calls) == 2
    assert len(target.calls[1]) == 50


def test_finished_jobs_are_not_asked_again():
    clock = Clock()
    target = _with_clock(Scripted([{"1": st("1", JobState.COMPLETED, 0),
                                    "2": st("2", JobState.RUNNING)}]), clock)
    a, b = Job("1", target), Job("2", target)
    poll_jobs([a, b])
    clock.now += 5
    poll_jobs([a, b])
    assert target.calls == [["1", "2"], ["2"]]
    assert a.succeeded


def test_fresh_waits_out_the_rate_limit():
    clock = Clock()
    target = _with_clock(Scripted([{"1": st("1", JobState.RUNNING)}]), clock)
    job = Job("1", target)
    job.refresh()
    clock.now += 0.25
    job.refresh(fresh=True)
    assert clock.sleeps == [pytest.approx(0.75)]
    assert len(target.calls) == 2


def test_transient_errors_retry_with_backoff():
    clock = Clock()
    flaky = TransientSchedulerError("squeue: Socket timed out on send/recv operation")
    target = _with_clock(Scripted([flaky, flaky, {"1": st("1", JobState.RUNNING)}]), clock)
    assert Job("1", target).state is JobState.RUNNING
    assert clock.sleeps == [0.5, 1.0]
    assert target.poller.queries == 1


def test_transient_errors_give_up_with_a_clear_error():
    clock = Clock()
    flaky = TransientSchedulerError("Unable to contact slurm controller (connect failure)")
    target = _with_clock(Scripted([flaky]), clock)
    with pytest.raises(SchedulerError, match=r"failed 5 times .* try again later") as info:
        Job("1", target).refresh()
    assert not info.value.transient
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]


def test_permanent_errors_are_not_retried():
    clock = Clock()
    target = _with_clock(Scripted([SchedulerError("squeue: invalid option")]), clock)
    job = Job("1", target)
    with pytest.raises(SchedulerError, match="invalid option"):
        job.refresh()
    assert clock.sleeps == []
    assert len(target.calls) == 1
    job.refresh()  # within min_poll of the failed query: no new query (no hammering)
    assert len(target.calls) == 1


# -- unknown and lost -----------------------------------------------------------------------


def test_unknown_after_submission_is_tolerated_then_lost():
    clock = Clock()
    target = _with_clock(Scripted([{}]), clock)
    job = Job("7", target, unknown_grace=60)
    assert job.state is JobState.UNKNOWN
    clock.now += 59
    assert job.state is JobState.UNKNOWN
    assert not job.lost
    clock.now += 2
    with pytest.raises(JobLostError, match=r"job 7 is lost.*61 s") as info:
        job.refresh()
    assert info.value.job_id == "7"
    assert job.lost


def test_briefly_unknown_while_running_keeps_going():
    clock = Clock()
    running = {"7": st("7", JobState.RUNNING)}
    target = _with_clock(Scripted([running, {}, {}, running,
                                   {"7": st("7", JobState.COMPLETED, 0)}]), clock)
    job = Job("7", target, unknown_grace=10)
    seen = []
    for _ in range(5):
        seen.append(job.state)
        clock.now += 1
    assert seen == [JobState.RUNNING, JobState.UNKNOWN, JobState.UNKNOWN, JobState.RUNNING,
                    JobState.COMPLETED]
    assert job.succeeded


# -- wait and check -------------------------------------------------------------------------


def test_wait_check_raises_on_failure_with_the_facts():
    target = Scripted([{"3": st("3", JobState.TIMEOUT, 0, "TimeLimit")}], min_poll=0.01)
    job = Job("3", target)
    status = job.wait(timeout=5)
    assert status.state is JobState.TIMEOUT
    assert not status.succeeded
    with pytest.raises(JobFailedError) as info:
        job.wait(timeout=5, check=True)
    msg = str(info.value)
    assert "state TIMEOUT" in msg
    assert "exit code 0" in msg
    assert "reason TimeLimit" in msg
    assert "/runs/3.out" in msg
    assert info.value.state is JobState.TIMEOUT


def test_completed_with_nonzero_exit_is_a_failure():
    target = Scripted([{"4": st("4", JobState.COMPLETED, 2)}], min_poll=0.01)
    job = Job("4", target)
    with pytest.raises(JobFailedError, match="state COMPLETED, exit code 2"):
        job.wait(timeout=5, check=True)
    assert not job.succeeded


def test_wait_timeout():
    target = Scripted([{"5": st("5", JobState.PENDING)}], min_poll=0.01)
    with pytest.raises(JobTimeoutError, match=r"still PENDING after waiting 0\.2 s"):
        Job("5", target).wait(timeout=0.2)


def test_cancel_of_finished_job_does_nothing():
    target = Scripted([{"6": st("6", JobState.FAILED, 1)}], min_poll=0.01)
    job = Job("6", target)
    job.wait()
    job.cancel()
    assert target.cancelled == []
    assert job.elapsed is None


# -- Slurm's messages (the real Slurm is in test_slurm.py) ----------------------------------


@pytest.mark.parametrize(("message", "option"), [
    ("sbatch: error: invalid partition specified: nope\n"
     "sbatch: error: Batch job submission failed: Invalid partition name specified",
     "partition"),
    ("sbatch: error: Batch job submission failed: Invalid qos specification", "qos"),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition "
     "combination specified", "account"),
    ("sbatch: error: Batch job submission failed: Invalid feature specification",
     "constraint"),
    ("sbatch: error: Batch job submission failed: Requested time limit is invalid "
     "(missing or exceeds some limit)", "time"),
    ("sbatch: error: Batch job submission failed: Node count specification invalid", "nodes"),
])
def test_sbatch_refusals_name_the_option(message, option):
    target = Slurm(partition="nope", qos="q", account="acct", constraint="gpu")
    err = target._submit_error(message)
    assert isinstance(err, SubmitError)
    assert err.option == option
    assert option in str(err)
    assert "nothing was submitted" in str(err)


def test_slurm_rejects_unsafe_settings():
    with pytest.raises(ValueError, match="line break"):
        Slurm(partition="debug\n#SBATCH --uid=0")
    with pytest.raises(TypeError, match="list of options"):
        Slurm(extra_sbatch="--mem=8G")
    with pytest.raises(ValueError, match="time limit"):
        Slurm(time="soon")
    with pytest.raises(ValueError, match="job name"):
        Slurm().script_header(job_name="x\ny", workdir="/tmp")
