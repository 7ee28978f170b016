"""The portal's Jobs panel: JobMonitorModel's jobs from the catalog, one job inspected
(logs, executed notebook, resource use), cancel; the model in plain Python, the view
headless. Jobs are real: shell scripts on the Local target, and spotkit.submit to a batch
target that holds its jobs (the real Slurm's accounting is tested in
tests/compute/test_job_usage.py)."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import spotkit
from spotkit.catalog import open_catalog
from spotkit.compute import Job, JobState, JobStatus, Local, Target
from spotkit.widgets._portal_flow_model import ReadOnlyError
from spotkit.widgets._portal_jobs_model import JobsPanelModel


class Held(Target):
    """A batch target that takes jobs and never runs them."""

    name = "held"
    min_poll = 0.0

    def __init__(self):
        self.cancelled = []

    def submit_script(self, script, *, job_name, workdir):
        return f"h{len(self.cancelled)}-{script.parent.name}"

    def status(self, job_ids):
        return {i: JobStatus(i, JobState.CANCELLED if i in self.cancelled
                             else JobState.PENDING, reason="Priority") for i in job_ids}

    def cancel(self, job_id):
        self.cancelled.append(job_id)


@pytest.fixture
def cat(tmp_path):
    from spotkit.sim import simulate_tomo_scan

    c = open_catalog(tmp_path / "catalog.db")
    scan = simulate_tomo_scan(tmp_path / "scan.h5", shape=(32, 2, 32), n_flats=2, n_darks=2,
                              seed=0)
    c.raw_id = c.ingest(scan.path).id  # type: ignore[attr-defined]
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = new_code_cell("dataset_id = None\ncatalog_path = None\noutput_dir = '.'")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, new_code_cell("pass")]
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    c.notebook = tmp_path / "tiny.ipynb"  # type: ignore[attr-defined]
    yield c
    c.close()


def _local_job(tmp_path, target, name, body):
    script = tmp_path / f"{name}.sh"
    script.write_text(body)
    return Job(target.submit_script(script, job_name=name, workdir=tmp_path), target)


def test_local_jobs_inspected_and_cancelled(cat, tmp_path):
    target = Local(max_workers=2, min_poll=0.05)
    bad = _local_job(tmp_path, target, "bad", "echo going wrong >&2; exit 3")
    slow = _local_job(tmp_path, target, "slow", "sleep 60")
    model = JobsPanelModel(cat, jobs=[bad, slow], lab_root=(None, "/"))
    bad.wait(timeout=60)
    model.select(bad.id)
    snap = model.fetch()
    assert [r["id"] for r in snap.rows] == [slow.id, bad.id]  # newest first
    d = snap.detail
    assert (d.row["outcome"], d.row["exit_code"]) == ("failed", 3)
    assert "going wrong" in d.logs
    assert (d.usage.state, d.usage.exit_code, d.usage.source) == (JobState.FAILED, 3, "status")
    rows = {r["what"]: r["value"] for r in model.usage_rows(d.usage)}
    assert rows["MaxRSS"] == "not recorded (status)"
    assert rows["exit code"] == 3
    model.cancel(slow.id)
    slow.wait(timeout=30)
    assert {r["id"]: r["outcome"] for r in model.fetch().rows}[slow.id] == "cancelled"
    readonly = JobsPanelModel(cat, readonly=True, jobs=[slow])
    with pytest.raises(ReadOnlyError, match="read-only"):
        readonly.cancel(slow.id)


def test_catalog_runs_followed_on_their_target_or_listed(cat, tmp_path):
    held = Held()
    job = spotkit.submit(cat.notebook, cat.raw_id, target=held, catalog=cat)
    # a portal that cannot reach the target lists the job from the catalog
    blind = JobsPanelModel(cat, targets={}, lab_root=(None, "/"))
    blind.select(job.id)
    snap = blind.fetch()
    (row,) = snap.rows
    assert (row["followed"], row["state"], row["outcome"]) == (False, "run queued", "waiting")
    assert "cannot be asked about from here" in snap.skipped[0][1]
    assert snap.detail.usage is None
    # one that has the target follows it: the scheduler's state, cancel, the notebook link
    model = JobsPanelModel(cat, targets={"held": held}, lab_root=(str(tmp_path), "/"))
    model.select(job.id)
    snap = model.fetch()
    (row,) = snap.rows
    assert (row["followed"], row["state"], row["dataset"]) == (True, "PENDING", cat.raw_id)
    assert row["reason"] == "Priority"
    assert (snap.detail.notebook, snap.detail.notebook_url) == (None, None)  # queued
    assert snap.detail.usage.source == "status"
    assert "keeps no logs" in snap.detail.logs
    model.cancel(job.id)
    out = tmp_path / "runs" / "out.ipynb"
    cat.finish_run(job.run_id, state="cancelled", output_notebook=out,
                   error_name="JobCancelled", error_message="cancelled from the portal")
    snap = model.fetch()
    assert snap.rows[0]["state"] == "CANCELLED"
    assert held.cancelled == [job.id]
    assert snap.detail.notebook == str(out)
    assert snap.detail.notebook_url == "/lab/tree/runs/out.ipynb"
    assert snap.detail.run_error == "JobCancelled: cancelled from the portal"
    assert len(model.fetch().rows) == 1  # a run is followed once, not per refresh
    (row,) = blind.fetch().rows  # the catalog's record: ended, with its error
    assert (row["state"], row["outcome"]) == ("run cancelled", "cancelled")
    assert row["elapsed"] >= 0.0
    assert row["reason"] == "JobCancelled: cancelled from the portal"
    # a job of this kernel whose run is in the catalog is listed once
    both = JobsPanelModel(cat, targets={}, jobs=[job], lab_root=(None, "/"))
    assert [r["followed"] for r in both.fetch().rows] == [True]


def test_view_headless(cat, tmp_path):
    pytest.importorskip("ipywidgets")
    from spotkit.widgets._portal_jobs import JobsPanel

    held = Held()
    job = spotkit.submit(cat.notebook, cat.raw_id, target=held, catalog=cat)
    selected = []
    panel = JobsPanel(cat, targets={"held": held}, on_select=selected.append,
                      lab_root=(str(tmp_path), "/"))
    assert panel.title == "Jobs"
    panel.apply(panel.fetch())
    assert "1 job: 1 waiting" in panel.status.value
    assert "PENDING" in panel.table.value
    assert panel.inspection.layout.display == "none"
    cat.finish_run(job.run_id, state="failed", output_notebook=tmp_path / "out.ipynb",
                   error_name="RuntimeError", error_message="cell 2")
    panel.job.value = job.id  # chosen: read in the worker thread, then shown
    panel.worker.join()
    assert panel.inspection.layout.display == "flex"
    assert 'href="/lab/tree/out.ipynb"' in panel.detail.value
    assert "RuntimeError: cell 2" in panel.detail.value
    assert not panel.cancel_button.disabled
    panel.show_button.click()
    assert selected == [cat.raw_id]
    panel.cancel_button.click()
    panel.worker.join()
    assert "cancel sent" in panel.message.value
    assert "CANCELLED" in panel.table.value
    panel.close()
    ro = JobsPanel(cat, readonly=True, targets={"held": held}, lab_root=(str(tmp_path), "/"))
    ro.apply(ro.fetch())
    ro.inspect(job.id)
    ro.worker.join()
    assert not hasattr(ro, "cancel_button")
    assert "out.ipynb" in ro.detail.value
    assert "/lab/tree/" not in ro.detail.value  # no way into JupyterLab from the phone view
    ro.close()
