"""A watcher pass submits batch jobs and returns; later passes follow them.

The batch target here is a :class:`spotkit.compute.Local` process pool (the watcher with
``local_in_process=False``: its jobs go through ``spotkit.submit`` like a Slurm job); the
notebook waits until the test releases its dataset, so a job stays in flight for as many
passes as the test wants. Checked: a pass does not wait for its jobs; the journal records
each job's id; later passes submit nothing again, ask the target once per pass about all
the jobs, and take a dataset on (next stage, products, done) when its job ends; a dataset
whose job is slow holds up no other; preview before full per dataset.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from spotkit.catalog import open_catalog
from spotkit.flows import Journal, Watcher

pytestmark = [pytest.mark.notebook]

# waits until `$SPOTKIT_TEST_RELEASE/<dataset_id>` or `.../ALL` exists, then declares its
# output (a Local job inherits the test's environment)
HOLD_BODY = """\
import os, pathlib, time
from spotkit.runs import declare_output
gate = pathlib.Path(os.environ["SPOTKIT_TEST_RELEASE"])
while not ((gate / dataset_id).exists() or (gate / "ALL").exists()):
    time.sleep(0.1)
out = pathlib.Path(output_dir) / f"{tag}.txt"
out.write_text(f"{dataset_id} {tag}\\n")
declare_output(out, kind="test/marker", metadata={"tag": tag})
"""


def _rules(path: Path, notebook: Path) -> Path:
    path.write_text(
        "version: 1\nfacility: TEST\nstages: [preview, full]\n"
        "retry: {attempts: 2, backoff: 0.1, factor: 2, max_backoff: 1}\n"
        "targets:\n  pool: {kind: local, max_workers: 4, concurrency: 4, min_poll: 0.05}\n"
        "rules:\n  - name: tomo\n    match: {beamline: '8.3.2', kind: tomo/raw}\n"
        "    actions:\n"
        f"      - {{name: preview, stage: preview, notebook: {notebook}, target: pool,"
        " parameters: {tag: preview}}\n"
        f"      - {{name: full, stage: full, notebook: {notebook}, target: pool,"
        " parameters: {tag: full}}\n")
    return path


def _steps(watcher: Watcher) -> dict[tuple[str, str], object]:
    return {(s.key, s.step): s for s in watcher.journal.steps()}


def test_a_pass_submits_and_returns_later_passes_follow_the_jobs(flow_env, monkeypatch):
    env = flow_env
    (env["root"] / "release").mkdir()
    monkeypatch.setenv("SPOTKIT_TEST_RELEASE", str(env["root"] / "release"))
    notebook = env["write_notebook"](env["root"] / "hold.ipynb", HOLD_BODY)
    rules = _rules(env["root"] / "rules.yaml", notebook)
    env["scan"](env["inbox"] / "slow.h5", seed=1)
    env["scan"](env["inbox"] / "fast.h5", seed=2)
    w = Watcher(env["inbox"], catalog=env["catalog"], rules=rules,
                warehouse=env["warehouse"], settle=0, local_in_process=False, workers=2)
    try:
        t0 = time.monotonic()
        report = w.run_once(wait=False)
        assert time.monotonic() - t0 < 30  # it did not wait for the jobs (they never end)
        assert len(report.discovered) == 2
        assert (report.done, report.failed, report.parked) == ([], {}, {})
        followed = w.following()
        assert len(followed) == 2
        runs = w.catalog.runs(limit=None)
        assert sorted(r.parameters["tag"] for r in runs) == ["preview", "preview"]
        items = {Path(i.path).name: i for i in w.journal.items()}
        steps = _steps(w)
        for item in items.values():
            rec = steps[(item.key, "processed/tomo/preview")]
            assert rec.state == "running"
            (run,) = [r for r in runs if r.dataset_id == item.dataset_id]
            assert rec.result["job"]["id"] == run.job_id  # the journal names the job
            assert rec.result["job"]["run_id"] == run.id
            assert (item.key, "processed/tomo/full") not in steps  # full after preview

        # one status query per pass for all the jobs the watcher follows
        target = w._target("pool")
        calls: list[list[str]] = []
        status = target.status
        target.status = lambda ids: calls.append(list(ids)) or status(ids)
        w.run_once(wait=False)
        assert [len(c) for c in calls] == [2]
        assert len(w.catalog.runs(limit=None)) == 2  # nothing submitted again

        # the "fast" dataset's job ends: it goes on to its full stage and to done while
        # the "slow" one's preview is still in the queue
        (env["root"] / "release" / items["fast.h5"].dataset_id).touch()
        deadline = time.monotonic() + 120
        done: list[str] = []
        while time.monotonic() < deadline and not done:
            calls.clear()
            done += w.run_once(wait=False).done
            assert len(calls) <= 1
            time.sleep(0.2)
        assert done == [items["fast.h5"].dataset_id]
        slow = w.journal.item(items["slow.h5"].key)
        assert slow.state == "running"
        assert _steps(w)[(slow.key, "processed/tomo/preview")].state == "running"
        assert (slow.key, "processed/tomo/full") not in _steps(w)

        # run_once() (wait=True, a script's and `spotkit watch --once`'s) follows the
        # jobs of the datasets it works on until they end
        (env["root"] / "release" / "ALL").touch()
        report = w.run_once()
        assert report.done == [slow.dataset_id]
        assert w.following() == []
    finally:
        w.close()
    with Journal(env["catalog"]) as journal:
        assert {i.state for i in journal.items()} == {"done"}
    with open_catalog(env["catalog"]) as cat:
        runs = cat.runs(limit=None)
        assert sorted((r.state, r.parameters["tag"]) for r in runs) == [
            ("completed", "full"), ("completed", "full"),
            ("completed", "preview"), ("completed", "preview")]
        for ds_id in {r.dataset_id for r in runs}:
            mine = {r.parameters["tag"]: r for r in runs if r.dataset_id == ds_id}
            # stage order per dataset: its full run was made after its preview ended
            assert mine["full"].started_at >= mine["preview"].ended_at
        assert len(cat.search(kind="test/marker", limit=None)) == 4
