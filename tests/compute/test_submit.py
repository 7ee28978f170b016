"""spotkit.submit's pieces: the batch script, environments, job.json, the catalog's queued
runs (and the schema migration that allows them), the worker's exit statuses."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import spotkit
from spotkit.catalog import SCHEMA_VERSION, open_catalog
from spotkit.compute import Environment, Job, Local, Slurm, Target, render_script
from spotkit.compute._worker import main as worker_main
from spotkit.errors import CatalogError, SchedulerError, SubmitError


def _render(tmp_path, env=None, target=None, time=None):
    return render_script(target=target or Local(), job_name="spotkit-test", workdir=tmp_path,
                         spec=tmp_path / "job.json", environment=env or Environment(),
                         time=time, mounts=(tmp_path, Path("/data/raw")))


def _bash_syntax_ok(text, tmp_path):
    path = tmp_path / "check.sh"
    path.write_text(text)
    return subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True,
                          check=False)


def test_default_script_runs_this_interpreter(tmp_path):
    text = _render(tmp_path)
    assert text.startswith("#!/bin/bash\n")
    assert f"PYTHON={sys.executable}" in text
    assert text.rstrip().endswith(f'"$PYTHON" -m spotkit.compute._worker {tmp_path}/job.json')
    assert _bash_syntax_ok(text, tmp_path).returncode == 0


def test_slurm_script_has_sbatch_lines(tmp_path):
    text = _render(tmp_path, target=Slurm(partition="debug", time="30"), time="1:30:00")
    lines = text.splitlines()
    assert lines[1] == "#SBATCH --job-name=spotkit-test"
    assert f'#SBATCH --output="{tmp_path}/job-%j.out"' in lines
    assert f'#SBATCH --error="{tmp_path}/job-%j.err"' in lines
    assert "#SBATCH --time=01:30:00" in lines  # submit's time beats the target's
    assert "partition" not in text  # target options go on sbatch's command line
    assert Slurm(partition="debug", qos="regular", extra_sbatch=["--mem=1G"]).sbatch_options() \
        == ["--partition=debug", "--qos=regular", "--nodes=1", "--mem=1G"]


@pytest.mark.parametrize(("env", "expected"), [
    (Environment(conda="spotkit env"), ['eval "$(conda shell.bash hook)"',
                                        "conda activate 'spotkit env'", "PYTHON=python"]),
    (Environment(modules=["python/3.11", "cray-hdf5"], python="python3"),
     ["module load python/3.11", "module load cray-hdf5", "PYTHON=python3"]),
    (Environment(venv="/opt/venvs/spotkit"), [". /opt/venvs/spotkit/bin/activate",
                                              "PYTHON=python"]),
    (Environment(container="spotkit:1.0", container_runtime="shifter"),
     ["CONTAINER=(shifter --image=spotkit:1.0)", "PYTHON=python"]),
    (Environment(variables={"OMP_NUM_THREADS": "4", "NOTE": "a b$c"}),
     ["export OMP_NUM_THREADS=4", "export NOTE='a b$c'", f"PYTHON={sys.executable}"]),
])
def test_environment_lines(env, expected):
    assert env.lines() == expected


def test_podman_hpc_mounts_and_launch(tmp_path):
    text = _render(tmp_path, env=Environment(container="registry.nersc.gov/als/spotkit:1"))
    assert (f"CONTAINER=(podman-hpc run --rm --volume {tmp_path}:{tmp_path} --volume "
            '/data/raw:/data/raw --workdir "$PWD" registry.nersc.gov/als/spotkit:1)') in text
    assert '"${CONTAINER[@]}" "$PYTHON" -m spotkit.compute._worker' in text
    assert _bash_syntax_ok(text, tmp_path).returncode == 0


def test_environment_rejects_bad_settings():
    with pytest.raises(ValueError, match="at most one"):
        Environment(conda="a", venv="/b")
    with pytest.raises(TypeError, match="lists"):
        Environment(modules="python")
    with pytest.raises(ValueError, match="line break"):
        Environment(conda="x\nrm -rf /")
    with pytest.raises(ValueError, match="container_runtime"):
        Environment(container="x", container_runtime="docker")
    with pytest.raises(ValueError, match="not valid"):
        Environment(variables={"A B": "1"})


# -- the catalog's queued runs --------------------------------------------------------------


def test_queued_run_lifecycle(catalog, raw, tmp_path):
    run_id = catalog.start_run(dataset_id=raw.id, notebook=tmp_path / "nb.ipynb",
                               notebook_sha256=None, parameters={}, target="slurm",
                               state="queued")
    assert catalog.get_run(run_id).state == "queued"
    assert [r.id for r in catalog.runs(state="queued")] == [run_id]
    run = catalog.begin_run(run_id, notebook_sha256="ab" * 32, versions={"python": "3.11"})
    assert run.state == "running"
    assert run.versions == {"python": "3.11"}
    with pytest.raises(CatalogError, match="not queued"):
        catalog.begin_run(run_id)
    catalog.finish_run(run_id, state="cancelled", error_name="CANCELLED", error_message="x")
    assert catalog.get_run(run_id).state == "cancelled"
    with pytest.raises(ValueError, match="'running' or 'queued'"):
        catalog.start_run(dataset_id=raw.id, notebook="x", notebook_sha256=None,
                          parameters={}, state="completed")
    queued = catalog.start_run(dataset_id=raw.id, notebook="x", notebook_sha256=None,
                               parameters={}, state="queued")
    catalog.finish_run(queued, state="failed", error_name="submit", error_message="refused")
    assert catalog.get_run(queued).state == "failed"


def test_version_1_catalog_migrates(tmp_path, tiny_tomo):
    db = tmp_path / "v1.db"
    with open_catalog(db) as cat:
        raw = cat.ingest(tiny_tomo[0])
        old = cat.start_run(dataset_id=raw.id, notebook="x", notebook_sha256=None,
                            parameters={})
        cat.finish_run(old, state="completed")
    # turn it into what spotkit with schema version 1 wrote
    with sqlite3.connect(db) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()
        cookie = conn.execute("PRAGMA schema_version").fetchone()[0]
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'runs'", (sql.replace(
            "CHECK (state IN ('queued', 'running', 'completed', 'failed', 'cancelled'))",
            "CHECK (state IN ('running', 'completed', 'failed'))"),))
        conn.execute(f"PRAGMA schema_version = {cookie + 1}")
        conn.execute("PRAGMA writable_schema = OFF")
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version VALUES (1, 0)")
    with sqlite3.connect(db) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO runs (id, dataset_id, notebook, state, started_at) "
                     "VALUES ('r', ?, 'x', 'queued', 0)", (raw.id,))
    with open_catalog(db) as cat:
        # migrated through every later version (2: run states, 3: the flow journal)
        assert cat._conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] \
            == SCHEMA_VERSION >= 2
        assert cat.get_run(old).state == "completed"
        assert cat[raw.id].id == raw.id
        queued = cat.start_run(dataset_id=raw.id, notebook="x", notebook_sha256=None,
                               parameters={}, state="queued")
        assert cat.get_run(queued).state == "queued"
        assert cat._conn.execute("PRAGMA foreign_key_check").fetchall() == []


# -- failed submissions ---------------------------------------------------------------------


class Refusing(Local):
    def __init__(self, error):
        super().__init__()
        self.error = error

    def submit_script(self, script, *, job_name, workdir):
        raise self.error


@pytest.mark.parametrize("error", [
    SubmitError(target="local", option="partition", value="nope", detail="Invalid partition"),
    SchedulerError("sbatch is not installed", target="local"),
])
def test_refused_submission_is_recorded_not_submitted(catalog, raw, label_notebook, error):
    with pytest.raises(type(error)) as info:
        spotkit.submit(label_notebook, raw, catalog=catalog, target=Refusing(error))
    (run,) = catalog.runs()
    assert run.state == "failed"
    assert run.job_id is None
    assert run.error_name == f"submit: {type(error).__name__}"
    assert str(error) in run.error_message
    if isinstance(error, SubmitError):
        assert info.value.run_id == run.id
    with pytest.raises(ValueError, match="no batch job"):
        Job.from_run(run, Local())


def test_submit_checks_its_arguments(catalog, raw, label_notebook):
    with pytest.raises(TypeError, match="compute target"):
        spotkit.submit(label_notebook, raw, catalog=catalog, target="slurm")
    with pytest.raises(FileNotFoundError, match="no pipeline notebook"):
        spotkit.submit("no_such_pipeline", raw, catalog=catalog)
    with pytest.raises(spotkit.errors.DatasetNotFoundError):
        spotkit.submit(label_notebook, "ds-nope", catalog=catalog)
    assert catalog.runs() == []


def test_job_spec_and_script_are_written(catalog, raw, label_notebook):
    class Keep(Target):
        name = "keep"

        def submit_script(self, script, *, job_name, workdir):
            self.seen = (script, job_name, workdir)
            return "k-1"

    target = Keep()
    job = spotkit.submit(label_notebook, raw, catalog=catalog, target=target,
                         parameters={"label": "a'b", "seconds": 0.5}, job_name="my job/1")
    _, job_name, workdir = target.seen
    assert job_name == "my-job-1"
    assert workdir == job.workdir == catalog.path.parent / "runs" / job.run_id
    spec = json.loads((workdir / "job.json").read_text())
    assert spec["parameters"] == {"label": "a'b", "seconds": 0.5}
    assert spec["run_id"] == job.run_id
    assert spec["dataset_id"] == raw.id
    assert spec["catalog"] == str(catalog.path)
    assert spec["notebook"] == str(label_notebook)
    run = catalog.get_run(job.run_id)
    assert (run.state, run.job_id, run.target) == ("queued", "k-1", "keep")


def test_job_telemetry_names_the_rules_target(catalog, raw, label_notebook):
    """A job the flow submitted records the rules target it was sent to (as the flow's own
    events of it do), also when another process follows it; other jobs the compute
    target's name. The catalog's run keeps the compute target's name."""
    from spotkit.monitor import events

    class Keep(Target):
        name = "keep"

        def submit_script(self, script, *, job_name, workdir):
            return f"k-{job_name}"

    flow = {"flow": {"rule": "tomo", "action": "recon", "target": "hpc-debug"}}
    job = spotkit.submit(label_notebook, raw, catalog=catalog, target=Keep(), context=flow,
                         job_name="a")
    follower = Job.from_run(job.run_id, Keep(), catalog=catalog)  # e.g. after a restart
    follower.record_event("started", flush=True)
    plain = spotkit.submit(label_notebook, raw, catalog=catalog, target=Keep(), job_name="b")
    ev = events(catalog)
    assert sorted(zip(ev["job_id"], ev["step"], ev["target"], strict=True)) == [
        (job.id, "queued", "hpc-debug"), (job.id, "started", "hpc-debug"),
        (plain.id, "queued", "keep")]
    assert (job.target_label, follower.target_label, plain.target_label) == (
        "hpc-debug", "hpc-debug", "keep")
    assert catalog.get_run(job.run_id).target == "keep"


# -- the worker -----------------------------------------------------------------------------


def test_worker_exit_status_for_a_bad_spec(tmp_path, caplog):
    (tmp_path / "job.json").write_text("{not json")
    assert worker_main([str(tmp_path / "job.json")]) == 2
    assert worker_main([]) == 2
    (tmp_path / "job.json").write_text("{}")
    assert worker_main([str(tmp_path / "job.json")]) == 2
    assert "lacks" in caplog.text


def test_worker_refuses_a_run_that_is_not_queued(catalog, raw, label_notebook, tmp_path):
    run_id = catalog.start_run(dataset_id=raw.id, notebook=label_notebook,
                               notebook_sha256=None, parameters={}, state="queued")
    catalog.finish_run(run_id, state="cancelled")
    spec = {"run_id": run_id, "notebook": str(label_notebook), "dataset_id": raw.id,
            "catalog": str(catalog.path), "parameters": {}, "output_dir": str(tmp_path)}
    (tmp_path / "job.json").write_text(json.dumps(spec))
    assert worker_main([str(tmp_path / "job.json")]) == 2
    assert catalog.get_run(run_id).state == "cancelled"  # untouched
