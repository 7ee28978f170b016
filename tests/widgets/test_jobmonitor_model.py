"""The JobMonitor's plain-Python parts: the model and its refresh thread, without widgets.

A scripted target (its scheduler says what the test tells it) makes every state change
exact; the real Local and Slurm targets are followed in tests/compute/test_jobmonitor.py.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from spotkit.compute import Job, JobLogs, JobState, JobStatus, Target
from spotkit.errors import SchedulerError
from spotkit.widgets import JobMonitorModel
from spotkit.widgets._jobmonitor_refresh import THREAD_NAME, Refresher

pytestmark = pytest.mark.timeout(60)


class Scripted(Target):
    """A target whose scheduler answers from ``states`` (and counts the queries)."""

    min_poll = 0.0

    def __init__(self, name: str = "scripted", *, min_poll: float = 0.0):
        self.name = name
        self.min_poll = min_poll
        self.states: dict[str, JobState] = {}
        self.exit_codes: dict[str, int] = {}
        self.queries: list[list[str]] = []
        self.cancelled: list[str] = []
        self.broken: str | None = None
        self.stdout = ""

    def status(self, job_ids):
        self.queries.append(list(job_ids))
        if self.broken:
            raise SchedulerError(self.broken, target=self.name)
        return {i: JobStatus(i, self.states.get(i, JobState.PENDING),
                             exit_code=self.exit_codes.get(i)) for i in job_ids}

    def cancel(self, job_id):
        self.cancelled.append(job_id)
        self.states[job_id] = JobState.CANCELLED

    def logs(self, job_id):
        return JobLogs(stdout=self.stdout, stderr="", paths={"stdout": f"/jobs/{job_id}.out"})


def _wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.01)


# -- the model -------------------------------------------------------------------------------


def test_rows_follow_the_scheduler_and_only_completed_with_zero_is_success():
    target = Scripted(min_poll=0.2)  # one query per refresh (min_poll 0: one per job)
    jobs = [Job(str(i), target) for i in range(5)]
    model = JobMonitorModel(jobs)
    assert [r["outcome"] for r in model.rows()] == ["waiting"] * 5
    assert target.queries == []  # rows() never asks the scheduler
    target.states.update({"0": JobState.RUNNING, "1": JobState.COMPLETED,
                          "2": JobState.COMPLETED, "3": JobState.TIMEOUT,
                          "4": JobState.OUT_OF_MEMORY})
    target.exit_codes.update({"1": 0, "2": 1})
    rows = model.refresh()
    assert target.queries == [["0", "1", "2", "3", "4"]]  # one query for every job
    assert [r["outcome"] for r in rows] == ["running", "succeeded", "failed", "failed",
                                            "failed"]
    assert [r["succeeded"] for r in rows] == [False, True, False, False, False]
    assert rows[2]["reason"] == "exit code 1"
    assert model.summary() == "5 jobs: 1 running, 1 succeeded, 3 failed"
    assert not model.done
    target.states["0"] = JobState.COMPLETED
    target.exit_codes["0"] = 0
    time.sleep(0.25)
    model.refresh()
    assert target.queries[-1] == ["0"]  # finished jobs are not asked about again
    assert model.done
    assert model.refreshed_at is not None


def test_a_scheduler_error_keeps_the_last_status_and_is_reported():
    target = Scripted("site")
    job = Job("7", target)
    model = JobMonitorModel([job])
    target.states["7"] = JobState.RUNNING
    model.refresh()
    target.broken = "sacct: connection refused"
    (row,) = model.refresh()
    assert row["state"] == "RUNNING"
    assert model.errors == {"site": "sacct: connection refused"}
    target.broken = None
    model.refresh()
    assert model.errors == {}


def test_cancel_and_logs_go_through_the_job():
    target = Scripted()
    job = Job("3", target)
    model = JobMonitorModel([job])
    model.cancel("3")
    assert target.cancelled == ["3"]
    model.refresh()
    model.cancel(job)  # finished now: not asked again
    assert target.cancelled == ["3"]
    target.stdout = "".join(f"line {i}\n" for i in range(10))
    text = model.logs("3", lines=2)
    assert text.startswith("--- stdout (/jobs/3.out) ---\n[... 8 earlier lines ...]\n")
    assert text.endswith("line 9\n--- stderr ---\n(empty)\n")
    assert "line 0" in model.logs(job, lines=None)


def test_the_model_is_safe_to_refresh_from_two_threads():
    target = Scripted()
    model = JobMonitorModel([Job(str(i), target) for i in range(20)])
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(20):
                model.refresh()
                model.summary()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(20, 40):
        model.add(Job(str(i), target))
    for t in threads:
        t.join()
    assert not errors
    assert len(model.rows()) == 40


# -- the refresh thread ----------------------------------------------------------------------


def test_the_refresher_ends_by_itself_when_every_job_has_finished():
    target = Scripted()
    job = Job("1", target)
    model = JobMonitorModel([job])
    calls = []
    refresher = Refresher(model, 0.01, on_refresh=lambda: calls.append(model.summary()))
    assert refresher.start()
    _wait_until(lambda: len(calls) >= 3, 10, "a few refreshes")
    assert refresher.running
    target.states["1"] = JobState.COMPLETED
    target.exit_codes["1"] = 0
    refresher.join(10)
    assert not refresher.running
    assert calls[-1] == "1 job: 1 succeeded"
    assert not refresher.start()  # nothing to follow any more
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]


def test_wake_refreshes_now_and_stop_ends_the_thread():
    model = JobMonitorModel([Job("1", Scripted())])
    refreshes: list[float] = []
    refresher = Refresher(model, 60.0,  # would wait a minute between refreshes
                          on_refresh=lambda: refreshes.append(time.monotonic()))
    refresher.start()
    _wait_until(lambda: len(refreshes) == 1, 10, "the first refresh")
    refresher.wake()
    _wait_until(lambda: len(refreshes) == 2, 10, "the refresh on wake")
    assert refresher.start()  # running: start wakes it again
    _wait_until(lambda: len(refreshes) == 3, 10, "the refresh on start")
    refresher.stop()
    assert not refresher.running
    assert refresher.start()  # a stopped refresher can start again
    refresher.close()
    assert not refresher.running
    assert refresher.closed
    assert not refresher.start()  # a closed one cannot


def test_an_unexpected_error_stops_the_thread_and_is_handed_to_on_error(monkeypatch):
    model = JobMonitorModel([Job("1", Scripted())])
    seen: list[BaseException] = []
    monkeypatch.setattr(model, "refresh", lambda: 1 / 0)
    refresher = Refresher(model, 0.01, on_error=seen.append)
    refresher.start()
    _wait_until(lambda: seen, 10, "the error")
    refresher.join(10)
    assert isinstance(seen[0], ZeroDivisionError)
    assert not refresher.running


def test_the_refresh_interval_is_checked():
    with pytest.raises(ValueError, match="positive number of seconds"):
        Refresher(JobMonitorModel(), 0)


# -- no widgets needed -----------------------------------------------------------------------


def test_the_models_work_without_ipywidgets_or_matplotlib():
    code = (
        "import sys\n"
        "sys.modules['ipywidgets'] = None\n"
        "sys.modules['matplotlib'] = None\n"
        "from spotkit.widgets import JobMonitorModel, ChangeTimelineModel\n"
        "from spotkit.widgets._jobmonitor_refresh import Refresher\n"
        "from spotkit.sim import simulate_saxs_series\n"
        "import tempfile, pathlib\n"
        "path = pathlib.Path(tempfile.mkdtemp()) / 's.h5'\n"
        "simulate_saxs_series(path, n_frames=20, onset_frame=12, seed=1, shape=(32, 32))\n"
        "from spotkit.io import open_saxs\n"
        "m = ChangeTimelineModel(open_saxs(path), warmup=5)\n"
        "(onset,) = m.onsets\n"
        "assert abs(onset - 12) <= 1, m.onsets\n"
        "print(m.change_map(m.next_onset()).dims, JobMonitorModel().summary())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('y', 'x') 0 jobs"
