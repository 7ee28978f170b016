"""The portal's Flow panel: its model in plain Python, its view built headless.

The journal is written with the public Journal API (items found, parked, failed, steps of
rule actions); every action goes through the library (Journal.retry/forget, pause_rule,
resume_rule, spotkit.submit) and is checked in the catalog database afterwards.
"""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from spotkit.catalog import open_catalog
from spotkit.compute import JobState, JobStatus, Target
from spotkit.errors import FlowError, NotebookParameterError
from spotkit.flows import Journal, paused_rules
from spotkit.widgets._portal_flow_model import FlowPanelModel, ReadOnlyError


@pytest.fixture
def cat(tmp_path):
    from spotkit.sim import simulate_tomo_scan

    c = open_catalog(tmp_path / "catalog.db")
    scan = simulate_tomo_scan(tmp_path / "scan.h5", shape=(32, 2, 32), n_flats=2, n_darks=2,
                              seed=0)
    raw = c.ingest(scan.path)
    with Journal(c.path) as j:
        j.discover("k1", "/inbox/a.h5", size=1, mtime_ns=1)
        j.update_item("k1", beamline="8.3.2", dataset_id=raw.id)
        j.finish_step("k1", "processed/tomo/preview", state="parked", error="boom")
        j.record_failure("k1", "RuntimeError: boom", park=True)
        j.discover("k2", "/inbox/b.h5", size=1, mtime_ns=1)
        j.update_item("k2", beamline="8.3.2", state="done")
        j.finish_step("k2", "processed/tomo/preview", seconds=1.0)
        j.finish_step("k2", "done", seconds=2.0)
    c.raw_id = raw.id  # type: ignore[attr-defined]
    yield c
    c.close()


def test_model_rows_from_one_read(cat):
    model = FlowPanelModel(cat, user="ops")
    status = model.fetch()
    assert model.beamline_rows(status) == [{
        "beamline": "8.3.2", "pending": 0, "running": 0, "done": 1, "failed": 0,
        "parked": 1, "superseded": 0, "forgotten": 0, "per_hour": 1}]
    (row,) = model.action_rows(status)
    assert (row["rule"], row["action"], row["parked"], row["done"], row["per_hour"]) == (
        "tomo", "preview", 1, 1, 1)
    assert row["paused"] == ""
    (err,) = model.error_rows(status)
    assert (err["path"], err["state"], err["dataset_id"]) == ("/inbox/a.h5", "parked",
                                                              cat.raw_id)
    assert err["error"] == "RuntimeError: boom"
    assert err["ago"].endswith("s ago")
    assert model.rule_names() == ["tomo"]
    assert model.error("k1").path == "/inbox/a.h5"


def test_model_actions_are_library_calls(cat):
    model = FlowPanelModel(cat, user="ops")
    model.pause("tomo", reason="detector swap")
    status = model.fetch()
    assert paused_rules(cat)["tomo"].by == "ops"
    assert model.action_rows(status)[0]["paused"] == "rule tomo paused by ops: detector swap"
    assert model.paused_rows(status)[0]["reason"] == "detector swap"
    model.pause("saxs", reason="beam dump")  # paused before it ever ran: a row of its own
    rows = model.action_rows(model.fetch())
    assert [(r["rule"], r["action"]) for r in rows] == [("tomo", "preview"), ("saxs", "–")]
    model.resume("tomo")
    model.resume("saxs", reason="beam back")
    assert paused_rules(cat) == {}
    with pytest.raises(FlowError, match="not paused"):
        model.resume("tomo")
    assert model.retry("/inbox/a.h5", reason="fixed").state == "pending"
    with pytest.raises(FlowError, match="queued already"):
        model.retry("k1", reason="again")
    assert model.forget("k1", reason="test pattern").state == "forgotten"
    with Journal(cat.path) as j:
        assert j.step("k1", "forgotten").result["by"] == "ops"


def test_readonly_model_refuses_every_action(cat):
    model = FlowPanelModel(cat, readonly=True)
    model.fetch()
    for call in (lambda: model.retry("k1", reason="x"), lambda: model.forget("k1", reason="x"),
                 lambda: model.pause("tomo", reason="x"), lambda: model.resume("tomo"),
                 lambda: model.rerun(cat.raw_id, "tomo_quicklook")):
        with pytest.raises(ReadOnlyError, match="read-only"):
            call()
    with Journal(cat.path) as j:
        assert j.item("k1").state == "parked"


def _notebook(path):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = new_code_cell("dataset_id = None\ncatalog_path = None\noutput_dir = '.'\n"
                           "tag = 'a'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell("print(tag)")]
    nbformat.write(nb, path)
    return path


class _Held(Target):
    """A batch target that takes jobs and never runs them (the submitted scripts kept)."""

    name = "held"

    def __init__(self):
        self.scripts = []

    def submit_script(self, script, *, job_name, workdir):
        self.scripts.append(script)
        return f"held-{len(self.scripts)}"

    def status(self, job_ids):
        return {i: JobStatus(i, JobState.PENDING) for i in job_ids}

    def cancel(self, job_id):
        pass


def test_rerun_with_new_parameters_through_submit(cat, tmp_path):
    held = _Held()
    model = FlowPanelModel(cat, user="ops", targets={"held": held})
    nb = _notebook(tmp_path / "tiny.ipynb")
    assert model.target_names() == ["held"]
    with pytest.raises(ValueError, match="JSON object"):
        model.rerun(cat.raw_id, str(nb), target="held", parameters="[1, 2]")
    with pytest.raises(ValueError, match="unknown target 'nersc'"):
        model.rerun(cat.raw_id, str(nb), target="nersc")
    with pytest.raises(NotebookParameterError, match="n_slices"):
        model.rerun(cat.raw_id, str(nb), target="held", parameters='{"n_slices": 3}')
    assert held.scripts == []  # nothing submitted for a wrong parameter
    job = model.rerun(cat.raw_id, str(nb), target="held", parameters='{"tag": "b"}')
    assert (job.id, len(held.scripts)) == ("held-1", 1)
    last = model.last_run(cat.raw_id)
    assert last["parameters"]["tag"] == "b"
    assert (last["state"], last["target"]) == ("queued", "held")
    assert cat.get_run(job.run_id).context["portal"]["by"] == "ops"


def test_view_headless_actions_and_selection(cat):
    pytest.importorskip("ipywidgets")
    from spotkit.widgets._portal_flow import FlowPanel

    selected = []
    panel = FlowPanel(cat, on_select=selected.append, user="ops")
    assert panel.title == "Flow"
    panel.apply(panel.fetch())
    assert "1 parked" in panel.status.value
    assert "RuntimeError: boom" in panel.errors.value
    assert "tomo" in panel.actions.value
    assert panel.item.options == (("parked: /inbox/a.h5", "k1"),)
    panel.show_button.click()
    assert selected == [cat.raw_id]
    panel.show_dataset(cat.raw_id)
    assert panel.rerun_dataset.value == cat.raw_id
    # pause with a reason, through the worker thread
    panel.rule.value = "tomo"
    panel.pause_button.click()
    panel.worker.join()
    assert "needs a reason" in panel.message.value  # refused by the library, shown in red
    panel.rule_reason.value = "detector swap"
    panel.pause_button.click()
    panel.worker.join()
    assert "paused by ops" in panel.message.value
    panel.apply(panel.fetch())
    assert "paused: tomo" in panel.status.value
    panel.item_reason.value = "disk replaced"
    panel.retry_button.click()
    panel.worker.join()
    assert "now pending" in panel.message.value
    panel.load_button.click()
    panel.worker.join()
    assert "has no run yet" in panel.message.value
    panel.close()


def test_view_readonly_has_no_action_button(cat):
    pytest.importorskip("ipywidgets")
    from spotkit.widgets._portal_flow import FlowPanel

    panel = FlowPanel(cat, readonly=True)
    panel.apply(panel.fetch())
    assert not hasattr(panel, "retry_button")
    assert not hasattr(panel, "rerun_button")
    import ipywidgets

    def buttons(w):
        found = [w] if isinstance(w, ipywidgets.Button) else []
        for child in getattr(w, "children", ()):
            found += buttons(child)
        return found

    assert [b.description for b in buttons(panel.widget)] == ["Show dataset"]
    panel.close()


def test_in_the_portal_an_action_refreshes_the_panel(cat):
    pytest.importorskip("ipywidgets")
    import time

    from spotkit.widgets import Portal

    portal = Portal(cat, panels=["flow"], refresh=600.0)  # no timed refresh during the test
    try:
        assert portal.wait(timeout=60)
        flow = portal.panel("Flow")
        assert flow.request_refresh is not None  # given by the portal
        flow.rule.value = "tomo"
        flow.rule_reason.value = "detector swap"
        flow.pause_button.click()
        flow.worker.join()
        deadline = time.monotonic() + 30
        while "paused: tomo" not in flow.status.value:
            assert time.monotonic() < deadline, flow.status.value
            time.sleep(0.05)
    finally:
        portal.close()
