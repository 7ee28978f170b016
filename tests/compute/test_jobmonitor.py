"""JobMonitor and its model in plain Python, following real jobs.

Jobs are real: shell scripts and pipeline-notebook runs on ``Local()`` (processes on this
machine), and on the real single-node Slurm of the session fixture ``slurm``. The widget is
driven as a person would (``button.click()``); its refresh thread is watched directly.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

import spotkit
from spotkit.compute import Job, JobState, JobStatus, Local, Slurm, Target
from spotkit.errors import SchedulerError
from spotkit.widgets import JobMonitor, JobMonitorModel, format_seconds

pytestmark = pytest.mark.timeout(240)


def _shell_job(target, tmp_path, name, body):
    script = tmp_path / f"{name}.sh"
    script.write_text("#!/bin/bash\n" + body + "\n")
    return Job(target.submit_script(script, job_name=name, workdir=tmp_path), target)


def _wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def _count_status_calls(monkeypatch, target):
    """Wrap ``target.status``: every call (one scheduler query) is recorded with its ids."""
    calls: list[list[str]] = []
    status = target.status

    def counting(job_ids):
        calls.append(list(job_ids))
        return status(job_ids)

    monkeypatch.setattr(target, "status", counting)
    return calls


# -- the model ----------------------------------------------------------------------------


def test_model_follows_real_local_jobs_to_their_final_states(tmp_path):
    target = Local(max_workers=3, min_poll=0.05)
    ok = _shell_job(target, tmp_path, "ok", "for i in $(seq 1 100); do echo line-$i; done")
    bad = _shell_job(target, tmp_path, "bad", "echo going wrong >&2; exit 3")
    slow = _shell_job(target, tmp_path, "slow", "sleep 60")
    model = JobMonitorModel([ok, bad, slow])
    assert not model.add(ok)  # already followed
    assert [r["state"] for r in model.rows()] == ["PENDING"] * 3  # nothing asked yet
    assert not model.done

    def settled():
        rows = {r["id"]: r for r in model.refresh()}
        return rows[ok.id]["finished"] and rows[bad.id]["finished"] and \
            rows[slow.id]["state"] == "RUNNING"

    _wait_until(settled, 20, "ok and bad to finish while slow runs")
    assert not model.done
    model.cancel(slow.id)
    _wait_until(lambda: model.refresh() and model.done, 20, "the cancelled job to end")

    rows = {r["id"]: r for r in model.rows()}
    assert rows[ok.id]["state"] == "COMPLETED"
    assert rows[ok.id]["exit_code"] == 0
    assert (rows[ok.id]["succeeded"], rows[ok.id]["outcome"]) == (True, "succeeded")
    assert rows[bad.id]["state"] == "FAILED"
    assert rows[bad.id]["exit_code"] == 3
    assert rows[slow.id]["state"] == "CANCELLED"
    for row in (rows[bad.id], rows[slow.id]):  # a failure is never shown as success
        assert row["finished"]
        assert not row["succeeded"]
        assert row["outcome"] != "succeeded"
    assert rows[bad.id]["outcome"] == "failed"
    assert rows[slow.id]["outcome"] == "cancelled"
    assert rows[slow.id]["elapsed"] >= 0
    assert rows[ok.id]["queue_wait"] >= 0
    assert rows[ok.id]["target"] == "local"
    assert model.summary() == "3 jobs: 1 succeeded, 1 failed, 1 cancelled"

    logs = model.logs(bad.id)
    assert f"--- stderr ({tmp_path / f'job-{bad.id}.err'}) ---\ngoing wrong\n" in logs
    assert "--- stdout" in logs
    assert "(empty)" in logs
    tail = model.logs(ok, lines=5)
    assert "line-100" in tail
    assert "line-50\n" not in tail
    assert "earlier lines" in tail
    assert "line-50\n" in model.logs(ok, lines=None)
    model.cancel(ok)  # finished: nothing happens


class _Completed(Target):
    """A target whose one job says COMPLETED with exit code 2 (a wrapper that swallowed an
    error code, as some site scripts do)."""

    name = "odd"
    min_poll = 0.0

    def status(self, job_ids):
        return {i: JobStatus(i, JobState.COMPLETED, exit_code=2) for i in job_ids}


def test_completed_with_a_nonzero_exit_code_is_a_failure():
    job = Job("7", _Completed())
    model = JobMonitorModel([job])
    (row,) = model.refresh()
    assert row["state"] == "COMPLETED"
    assert not row["succeeded"]
    assert row["outcome"] == "failed"
    assert "exit code 2" in row["reason"]
    assert model.done


def test_one_status_query_per_target_per_refresh(tmp_path, monkeypatch):
    first = Local(max_workers=3, min_poll=0.3)
    second = Local(max_workers=2, min_poll=0.3)
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    calls_first = _count_status_calls(monkeypatch, first)
    calls_second = _count_status_calls(monkeypatch, second)
    quick = _shell_job(first, tmp_path / "first", "quick", "true")
    jobs_first = [quick] + [_shell_job(first, tmp_path / "first", f"a{i}", "sleep 30")
                            for i in range(2)]
    jobs_second = [_shell_job(second, tmp_path / "second", f"b{i}", "sleep 30")
                   for i in range(2)]
    model = JobMonitorModel(jobs_first + jobs_second)
    _wait_until(lambda: quick.status().state.finished, 10, "the quick job")
    calls_first.clear()
    calls_second.clear()
    try:
        for n in range(1, 4):
            time.sleep(0.35)  # more than min_poll: each refresh may query
            model.refresh()
            assert len(calls_first) == n
            assert len(calls_second) == n
        # each query asked for every unfinished job of its target at once; never the
        # finished one
        assert all(sorted(c) == sorted(j.id for j in jobs_first[1:]) for c in calls_first)
        assert all(sorted(c) == sorted(j.id for j in jobs_second) for c in calls_second)
    finally:
        for job in jobs_first + jobs_second:
            job.cancel()
    _wait_until(lambda: model.refresh() and model.done, 20, "every job to end")
    before = len(calls_first) + len(calls_second)
    time.sleep(0.35)
    model.refresh()
    assert len(calls_first) + len(calls_second) == before  # finished jobs are not polled


class _Failing(Local):
    """A Local target whose scheduler breaks down on demand (permanent error)."""

    broken = False

    def status(self, job_ids):
        if self.broken:
            raise SchedulerError("squeue: slurm_load_jobs error: Invalid user", target="local")
        return super().status(job_ids)


def test_a_failing_scheduler_is_reported_and_the_rest_still_refresh(tmp_path):
    broken = _Failing(min_poll=0.0)
    fine = Local(min_poll=0.0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _shell_job(broken, tmp_path / "a", "a", "sleep 30")
    b = _shell_job(fine, tmp_path / "b", "b", "sleep 0.3")  # another Local target
    model = JobMonitorModel([a, b])
    _wait_until(lambda: model.refresh()[0]["state"] == "RUNNING", 10, "job a to run")
    broken.broken = True
    try:
        _wait_until(lambda: model.refresh()[1]["finished"], 10, "job b to finish")
        assert "Invalid user" in model.errors["local"]
        assert a.id != b.id  # job numbers are per process, whichever Local submits
        assert model.row(a)["state"] == "RUNNING"  # its last known status is kept
    finally:
        broken.broken = False
        a.cancel()


def test_model_checks_its_arguments(tmp_path):
    model = JobMonitorModel()
    assert model.done
    assert model.rows() == []
    assert model.summary() == "0 jobs"
    with pytest.raises(TypeError, match=r"spotkit\.compute\.Job"):
        model.add("local-1")
    with pytest.raises(KeyError, match="not monitored"):
        model.job("local-1")
    with pytest.raises(ValueError, match="give catalog="):
        JobMonitorModel(targets=[Local()])
    with pytest.raises(ValueError, match="recent"):
        model.add_runs(tmp_path / "c.db", recent=0)
    assert format_seconds(None) == "–"
    assert format_seconds(4.25) == "4.2 s"
    assert format_seconds(3720) == "1 h 02 min"


def test_same_id_on_two_targets_must_be_named_by_job():
    class Named(_Completed):
        def __init__(self, name):
            self.name = name

    one, two = Job("5", Named("x")), Job("5", Named("y"))
    model = JobMonitorModel([one, two])
    with pytest.raises(ValueError, match="several targets"):
        model.row("5")
    assert model.job(two) is two


def test_model_loads_the_jobs_of_catalog_runs(catalog, raw, label_notebook):
    target = Local(min_poll=0.05)
    job = spotkit.submit(label_notebook, raw, parameters={"label": "x"}, catalog=catalog,
                         target=target)
    job.wait(timeout=120, check=True)
    # a run done in-process (no batch job) and one made on a target we do not have
    inproc = catalog.start_run(dataset_id=raw.id, notebook=str(label_notebook),
                               notebook_sha256=None, parameters={}, target="local")
    catalog.finish_run(inproc, state="failed", error_name="X", error_message="y")
    remote = catalog.start_run(dataset_id=raw.id, notebook=str(label_notebook),
                               notebook_sha256=None, parameters={}, target="nersc:perlmutter",
                               job_id="4242", state="queued")

    model = JobMonitorModel(catalog=catalog, targets=[target])
    (followed,) = model.jobs
    assert (followed.id, followed.run_id) == (job.id, job.run_id)
    assert [run_id for run_id, _ in model.skipped] == [remote]
    assert "nersc:perlmutter" in model.skipped[0][1]
    (row,) = model.refresh()
    assert (row["state"], row["succeeded"], row["dataset"], row["run_id"]) == (
        "COMPLETED", True, raw.id, job.run_id)
    assert "completed" in model.logs(job.id)

    # the widget takes the catalog by path and the targets by name
    monitor = JobMonitor(catalog=catalog.path, targets={"local": target}, refresh=0.1)
    try:
        _wait_until(lambda: not monitor.running, 20, "the monitor to stop")
        assert monitor.rows()[0]["state"] == "COMPLETED"
    finally:
        monitor.close()


# -- the widget ---------------------------------------------------------------------------


def _submit_three(notebook, raw, catalog, target):
    """A run that succeeds, one that fails in a cell, one that sleeps (to be cancelled)."""
    return [spotkit.submit(notebook, raw, parameters=params, catalog=catalog, target=target)
            for params in ({"label": "fine"}, {"fail": True}, {"seconds": 300})]


def test_widget_follows_notebook_runs_and_cancels_with_its_button(catalog, raw,
                                                                   label_notebook):
    target = Local(max_workers=2, min_poll=0.1)
    ok, bad, slow = _submit_three(label_notebook, raw, catalog, target)
    monitor = JobMonitor([ok, bad], refresh=0.3)
    try:
        assert monitor.running
        monitor.add(slow)
        assert [j.id for j in monitor.jobs] == [ok.id, bad.id, slow.id]
        # the notebook itself is running (its kernel sleeps), not only the batch script
        _wait_until(lambda: monitor.model.row(slow)["state"] == "RUNNING"
                    and catalog.get_run(slow.run_id).state == "running", 120,
                    "the slow notebook to run")
        cells = monitor.row_widgets(slow.id)
        assert "RUNNING" in cells["state"].value
        cells["cancel"].click()
        assert cells["cancel"].disabled
        _wait_until(lambda: not monitor.running, 120, "the refresh thread to stop by itself")

        rows = {r["id"]: r for r in monitor.rows()}
        assert rows[ok.id]["state"] == "COMPLETED"
        assert rows[ok.id]["succeeded"]
        assert rows[ok.id]["dataset"] == raw.id
        assert rows[ok.id]["run_id"] == ok.run_id
        assert rows[bad.id]["state"] == "FAILED"
        assert not rows[bad.id]["succeeded"]
        assert rows[bad.id]["exit_code"] == 1
        assert rows[bad.id]["reason"] == "RuntimeError in cell 1: asked to fail"
        assert rows[slow.id]["state"] == "CANCELLED"
        assert not rows[slow.id]["succeeded"]
        assert catalog.get_run(slow.run_id).state == "cancelled"

        green, red = "#1a7f37", "#cf222e"
        ok_cells, bad_cells = monitor.row_widgets(ok.id), monitor.row_widgets(bad.id)
        assert "COMPLETED" in ok_cells["state"].value
        assert green in ok_cells["state"].value
        assert "FAILED" in bad_cells["state"].value
        assert red in bad_cells["state"].value
        assert green not in bad_cells["state"].value
        assert "asked to fail" in bad_cells["reason"].value
        assert ok.run_id in ok_cells["run_id"].value
        assert raw.id in ok_cells["dataset"].value
        assert all(monitor.row_widgets(j.id)["cancel"].disabled for j in (ok, bad, slow))
        assert "all finished" in monitor.status.value
        assert "1 succeeded, 1 failed, 1 cancelled" in monitor.status.value

        assert monitor.logs_box.layout.display == "none"
        ok_cells["logs"].click()
        assert monitor.logs_box.layout.display == "flex"
        assert f"run {ok.run_id} completed" in monitor.logs_text.value
        assert ok.id in monitor.logs_title.value
        bad_cells["logs"].click()
        assert "asked to fail" in monitor.logs_text.value
        monitor.hide_logs()
        assert monitor.logs_box.layout.display == "none"
    finally:
        monitor.close()
        for job in (ok, bad, slow):
            job.cancel()


def test_refresh_thread_stops_when_all_finished_and_restarts_on_add(tmp_path):
    target = Local(max_workers=2, min_poll=0.05)
    first = _shell_job(target, tmp_path, "first", "sleep 0.5")
    monitor = JobMonitor([first], refresh=0.1)
    try:
        assert monitor.running
        thread = monitor._thread
        _wait_until(lambda: not monitor.running, 20, "the thread to stop")
        assert not thread.is_alive()
        assert monitor.rows()[0]["state"] == "COMPLETED"
        second = _shell_job(target, tmp_path, "second", "sleep 0.5")
        monitor.add(second)
        assert monitor.running
        _wait_until(lambda: not monitor.running, 20, "the thread to stop again")
        assert [r["state"] for r in monitor.rows()] == ["COMPLETED", "COMPLETED"]
        assert not [t for t in threading.enumerate() if t.name == "spotkit-job-monitor"]
    finally:
        monitor.close()


def test_close_stops_the_thread_but_not_the_jobs(tmp_path):
    target = Local(min_poll=0.05)
    job = _shell_job(target, tmp_path, "long", "sleep 60")
    monitor = JobMonitor([job], refresh=0.1)
    try:
        _wait_until(lambda: monitor.rows()[0]["state"] == "RUNNING", 20, "the job to run")
        thread = monitor._thread
        assert thread.is_alive()
        monitor.close()
        assert not thread.is_alive()
        assert not monitor.running
        assert monitor.widget.comm is None  # the widgets are closed
        assert job.state is JobState.RUNNING  # closing the view does not cancel the job
        monitor.start()  # a closed monitor does not start again
        assert not monitor.running
    finally:
        job.cancel()
    assert job.wait(timeout=20).state is JobState.CANCELLED


def test_stop_keeps_the_table_and_refresh_updates_it(tmp_path):
    target = Local(min_poll=0.05)
    job = _shell_job(target, tmp_path, "short", "sleep 1")
    monitor = JobMonitor([job], refresh=0.1)
    try:
        monitor.stop()
        assert not monitor.running
        job.wait(timeout=20)
        time.sleep(0.1)
        monitor.refresh()  # in this thread, on request
        assert "COMPLETED" in monitor.row_widgets(job.id)["state"].value
        assert "all finished" in monitor.status.value
    finally:
        monitor.close()


def test_widget_without_autostart_and_bad_arguments(tmp_path):
    target = Local(min_poll=0.05)
    job = _shell_job(target, tmp_path, "x", "true")
    monitor = JobMonitor([job], autostart=False)
    try:
        assert not monitor.running
        assert "PENDING" in monitor.row_widgets(job.id)["state"].value
        assert "1 job: 1 waiting" in monitor.status.value
        bundle = monitor._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert repr(monitor).startswith("<JobMonitor: 1 job")
    finally:
        monitor.close()
    with pytest.raises(ValueError, match="refresh"):
        JobMonitor(refresh=0)
    with pytest.raises(ValueError, match="log_lines"):
        JobMonitor(log_lines=0)


def test_without_ipywidgets_the_widget_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match=r'pip install "spotkit\[lab\]"'):
        JobMonitor()
    assert JobMonitorModel().done  # the model needs no widgets


# -- on the real Slurm --------------------------------------------------------------------


@pytest.mark.slurm
@pytest.mark.slow
def test_monitor_on_real_slurm(slurm, catalog, raw, label_notebook, monkeypatch):
    target = Slurm(partition=slurm.partition, min_poll=0.3,
                   env={"SLURM_CONF": str(slurm.conf)})
    calls = _count_status_calls(monkeypatch, target)
    ok, bad, slow = _submit_three(label_notebook, raw, catalog, target)
    monitor = JobMonitor([ok, bad, slow], refresh=0.5, autostart=False)
    refreshes = []
    refresh = monitor.model.refresh
    monkeypatch.setattr(monitor.model, "refresh", lambda: refreshes.append(1) or refresh())
    monitor.start()
    try:
        _wait_until(lambda: monitor.model.row(slow)["state"] == "RUNNING"
                    and catalog.get_run(slow.run_id).state == "running", 150,
                    "the slow notebook to run on Slurm")
        monitor.row_widgets(slow.id)["cancel"].click()
        _wait_until(lambda: not monitor.running, 150, "the refresh thread to stop")
        rows = {r["id"]: r for r in monitor.rows()}
        assert (rows[ok.id]["state"], rows[ok.id]["exit_code"], rows[ok.id]["succeeded"]) == (
            "COMPLETED", 0, True)
        assert (rows[bad.id]["state"], rows[bad.id]["exit_code"]) == ("FAILED", 1)
        assert rows[bad.id]["outcome"] == "failed"
        assert rows[bad.id]["reason"] == "RuntimeError in cell 1: asked to fail"
        assert rows[slow.id]["state"] == "CANCELLED"
        assert not rows[slow.id]["succeeded"]
        assert rows[ok.id]["elapsed"] > 0
        assert rows[ok.id]["queue_wait"] >= 0
        # batching: never more than one status query per refresh (one target here), and
        # the first asked for all three jobs at once
        assert 0 < len(calls) <= len(refreshes)
        assert sorted(calls[0]) == sorted([ok.id, bad.id, slow.id])
        monitor.show_logs(ok.id)
        assert f"run {ok.run_id} completed" in monitor.logs_text.value
    finally:
        monitor.close()
        for job in (ok, bad, slow):
            job.cancel()

    # another session follows the same runs from the catalog (a default Slurm() target,
    # SLURM_CONF exported by the fixture)
    model = JobMonitorModel(catalog=catalog.path)
    assert sorted(j.id for j in model.jobs) == sorted([ok.id, bad.id, slow.id])
    assert isinstance(model.jobs[0].target, Slurm)
    _wait_until(lambda: model.refresh() and model.done, 60, "final states from Slurm")
    assert {r["id"]: r["state"] for r in model.rows()} == {
        ok.id: "COMPLETED", bad.id: "FAILED", slow.id: "CANCELLED"}
