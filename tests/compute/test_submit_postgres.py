"""A batch job never touches a database file: with a PostgreSQL catalog, ``spotkit.submit``
hands the job the catalog's URL, puts the job's folder under the spotkit home (there is no
catalog folder) and the job registers its outcome and products over the network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import spotkit
from spotkit.catalog import open_catalog
from spotkit.compute import Local


@pytest.fixture
def pg_catalog(postgres_server, tmp_path, monkeypatch):
    monkeypatch.setenv("SPOTKIT_HOME", str(tmp_path / "home"))
    url = postgres_server.create_database("submit")
    cat = open_catalog(url)
    yield cat
    cat.close()
    postgres_server.drop_database(url)


@pytest.mark.notebook
@pytest.mark.slow
def test_job_on_a_postgresql_catalog_reports_over_the_network(pg_catalog, tiny_tomo,
                                                              label_notebook, tmp_path):
    raw = pg_catalog.ingest(tiny_tomo[0])
    job = spotkit.submit(label_notebook, raw, catalog=pg_catalog, parameters={"label": "pg"},
                         target=Local(min_poll=0.05))
    job.wait(timeout=180, check=True)

    assert job.workdir == (tmp_path / "home" / "runs" / job.run_id).resolve()
    spec = json.loads((job.workdir / "job.json").read_text())
    assert spec["catalog"] == pg_catalog.url
    assert spec["catalog"].startswith("postgresql://")

    run = pg_catalog.get_run(job.run_id)
    assert run.state == "completed", (run.error_name, run.error_message)
    (out,) = [pg_catalog[o] for o in run.outputs]
    assert out.kind == "test/label"
    assert json.loads(Path(out.files[0].path).read_text()) == {"label": "pg", "dataset": raw.id}
