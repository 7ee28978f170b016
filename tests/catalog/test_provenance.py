"""Runs, derived datasets and the provenance chain back to raw data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spotkit.catalog import Provenance, Run
from spotkit.errors import CatalogError, DatasetNotFoundError


@pytest.fixture
def notebook(tmp_path):
    path = tmp_path / "recon.ipynb"
    path.write_text("{}")
    return path


def _run(cat, dataset, notebook, **params):
    return cat.start_run(
        dataset_id=dataset.id,
        notebook=notebook,
        notebook_sha256="a" * 64,
        parameters=params,
        versions={"python": "3.11", "spotkit": "0.1.0", "numpy": np.__version__},
    )


def test_chain_raw_derived_derived_of_derived(cat, scans, tmp_path, notebook):
    raw = cat.ingest(scans(sample="bone"))
    run1 = _run(cat, raw, notebook, center=16.5, algorithm="fbp")
    assert cat.get_run(run1).state == "running"
    vol = tmp_path / "recon.h5"
    vol.write_bytes(b"volume")
    png = tmp_path / "slice.png"
    png.write_bytes(b"\x89PNG")
    recon, figure = cat.finish_run(
        run1,
        state="completed",
        output_notebook=tmp_path / "out.ipynb",
        outputs=[
            {"path": vol, "kind": "tomo/recon", "key": "/recon", "metadata": {"voxel_um": 0.65}},
            {"path": png, "kind": "figure", "role": "figure", "title": "middle slice"},
        ],
    )
    assert (recon.kind, recon.status, recon.run_id) == ("tomo/recon", "derived", run1)
    assert (recon.beamline, recon.sample, recon.proposal) == (raw.beamline, "bone", raw.proposal)
    assert recon.files[0].key == "/recon"
    assert recon.files[0].format == "hdf5"
    assert figure.title == "middle slice"
    assert figure.files[0].format == "png"
    assert figure.path == png  # no 'data' role: the first file is primary
    assert recon.parents == [raw]
    assert set(raw.children) == {recon, figure}

    run2 = _run(cat, recon, notebook, threshold=0.3)
    seg_path = tmp_path / "seg.npy"
    np.save(seg_path, np.zeros((2, 2), np.uint8))
    (seg,) = cat.finish_run(
        run2, state="completed", outputs=[{"path": seg_path, "kind": "tomo/seg"}]
    )

    prov = seg.provenance
    assert isinstance(prov, Provenance)
    assert prov.dataset == seg
    assert prov.run.id == run2
    assert prov.run.parameters == {"threshold": 0.3}
    assert prov.parents[0].dataset == recon
    assert prov.parents[0].run.id == run1
    assert prov.parents[0].run.parameters == {"center": 16.5, "algorithm": "fbp"}
    assert prov.parents[0].run.notebook == notebook
    assert prov.parents[0].parents[0].dataset == raw
    assert prov.parents[0].parents[0].run is None
    assert prov.raw_sources == (raw.id,)
    assert prov.depth == 2

    as_dict = prov.to_dict()
    json.dumps(as_dict)  # serialisable
    assert as_dict["run"]["versions"]["numpy"] == np.__version__
    assert as_dict["parents"][0]["run"]["notebook_sha256"] == "a" * 64
    assert as_dict["parents"][0]["parents"][0]["dataset_id"] == raw.id
    text = repr(prov)
    assert all(x in text for x in (seg.id, recon.id, raw.id, run1, run2, "center=16.5"))
    html = prov._repr_html_()
    assert html.count("<li>") == 3
    assert "threshold=0.3" in html

    r1 = cat.get_run(run1)
    assert isinstance(r1, Run)
    assert r1.state == "completed"
    assert r1.outputs == (recon.id, figure.id)
    assert r1.output_notebook == tmp_path / "out.ipynb"
    assert r1.ended_at >= r1.started_at
    assert r1.duration is not None
    assert raw.runs == [r1]
    assert recon.producing_run == r1
    assert [r.id for r in cat.runs()] == [run2, run1]
    assert [r.id for r in cat.runs(dataset_id=recon.id)] == [run2]
    assert cat.search(status="derived").total == 3
    assert cat.search(kind="tomo/*", sample="bone").total == 3


def test_finish_run_with_missing_output_registers_nothing(cat, scans, tmp_path, notebook, dump):
    raw = cat.ingest(scans())
    run = _run(cat, raw, notebook)
    good = tmp_path / "good.npy"
    np.save(good, np.ones(3))
    before = dump(cat.url)
    missing = tmp_path / "never_written.h5"
    with pytest.raises(CatalogError, match=r"never_written\.h5"):
        cat.finish_run(
            run,
            state="completed",
            outputs=[{"path": good, "kind": "x/y"}, {"path": missing, "kind": "x/z"}],
        )
    assert dump(cat.url) == before
    assert cat.get_run(run).state == "running"
    # the caller then records the failure
    cat.finish_run(run, state="failed", error_name="CatalogError", error_message="no output")
    assert cat.get_run(run).state == "failed"
    assert len(cat) == 1


def test_failed_run_keeps_error_cell_name_and_message(cat, scans, tmp_path, notebook):
    raw = cat.ingest(scans())
    run = _run(cat, raw, notebook, center=3)
    out = cat.finish_run(
        run,
        state="failed",
        output_notebook=tmp_path / "partial.ipynb",
        error_cell=4,
        error_name="ZeroDivisionError",
        error_message="division by zero",
    )
    assert out == []
    rec = cat.get_run(run)
    assert (rec.state, rec.error_cell, rec.error_name, rec.error_message) == (
        "failed",
        4,
        "ZeroDivisionError",
        "division by zero",
    )
    assert rec.output_notebook == tmp_path / "partial.ipynb"
    assert "cell 4" in rec.summary()
    assert "division by zero" in rec._repr_html_()
    assert cat.runs(state="failed") == [rec]
    assert cat.runs(state="completed") == []
    with pytest.raises(CatalogError, match="already failed"):
        cat.finish_run(run, state="completed")
    with pytest.raises(ValueError, match="not final"):
        cat.finish_run(run, state="running")


def test_run_bookkeeping_errors(cat, scans, notebook):
    raw = cat.ingest(scans())
    with pytest.raises(DatasetNotFoundError):
        cat.start_run(dataset_id="ds-none", notebook=notebook, notebook_sha256=None, parameters={})
    with pytest.raises(TypeError, match="parameters"):
        cat.start_run(dataset_id=raw.id, notebook=notebook, notebook_sha256=None,
                      parameters={"f": object()})  # fmt: skip
    with pytest.raises(CatalogError, match="no run"):
        cat.get_run("run-missing")
    with pytest.raises(CatalogError, match="no run"):
        cat.finish_run("run-missing", state="completed")
    run = cat.start_run(
        dataset_id=raw,
        notebook=notebook,
        notebook_sha256=None,
        parameters={"path": notebook},
        target="slurm",
    )
    cat.set_job_id(run, "123456")
    rec = cat.get_run(run)
    assert rec.job_id == "123456"
    assert rec.target == "slurm"
    assert rec.parameters == {"path": str(notebook)}
    assert set(rec.versions) >= {"python", "spotkit"}  # recorded when not given


def test_register_derived_directly(cat, scans, tmp_path):
    a = cat.ingest(scans(sample="s1"))
    b = cat.ingest(scans(sample="s2"))
    out = tmp_path / "stack.zarr"
    (out / "sub").mkdir(parents=True)
    (out / "zarr.json").write_text("{}")
    (out / "sub" / "c0").write_bytes(b"12345")
    ds = cat.register_derived(
        files=[{"path": out, "role": "data", "key": "volume"}],
        kind="tomo/stack",
        parents=[a, b.id],
        metadata={"n": 2},
    )
    assert ds.sample == "s1"
    assert {p.id for p in ds.parents} == {a.id, b.id}
    assert ds.files[0].format == "zarr"
    assert ds.files[0].size == 7
    assert len(ds.files[0].sha256) == 64
    assert ds.provenance.raw_sources in ((a.id, b.id), (b.id, a.id))
    assert ds.producing_run is None
    with pytest.raises(DatasetNotFoundError):
        cat.register_derived(files=[(out, "data")], kind="x/y", parents=["ds-missing"])
    with pytest.raises(ValueError, match="parent"):
        cat.register_derived(files=[(out, "data")], kind="x/y", parents=[])
    with pytest.raises(CatalogError, match=r"gone\.h5"):
        cat.register_derived(files=[(tmp_path / "gone.h5", "data")], kind="x/y", parents=[a])
    with pytest.raises(CatalogError, match="no run"):
        cat.register_derived(files=[(out, "data")], kind="x/y", parents=[a], run_id="run-x")
    assert len(cat) == 3


def test_run_context_is_recorded_and_a_schema_3_catalog_gains_it(tmp_path, scans, reader,
                                                                 notebook):
    import sqlite3

    from spotkit.catalog import SCHEMA_VERSION, open_catalog

    db = tmp_path / "v3.db"
    cat = open_catalog(db, reader=reader)
    ds = cat.ingest(scans())
    old = _run(cat, ds, notebook, n=1)
    cat.close()
    # turn the file back into schema 3: no runs.context, no frame_marks
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE runs DROP COLUMN context")
    conn.execute("DROP TABLE frame_marks")
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version VALUES (3, 0)")
    conn.commit()
    conn.close()
    with open_catalog(db, reader=reader) as cat:
        assert cat.get_run(old).context == {}
        new = cat.start_run(dataset_id=ds.id, notebook=notebook, notebook_sha256=None,
                            parameters={}, context={"flow": {"rule": "tomo", "action": "p"}})
        assert cat.get_run(new).context == {"flow": {"rule": "tomo", "action": "p"}}
        assert cat.get_run(new).to_dict()["context"]["flow"]["rule"] == "tomo"
        with pytest.raises(TypeError, match="context must be JSON-serialisable"):
            cat.start_run(dataset_id=ds.id, notebook=notebook, notebook_sha256=None,
                          parameters={}, context={"bad": object()})
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == (
        SCHEMA_VERSION)
    assert conn.execute("SELECT count(*) FROM frame_marks").fetchone()[0] == 0
    conn.close()


def test_frame_marks_replace_validate_and_roll_back(cat, scans, notebook):
    ds = cat.ingest(scans(kind="saxs/raw"))
    run = _run(cat, ds, notebook)
    assert cat.mark_frames(ds, range(5), "redundant", reasons="sparse sample") == 5
    assert cat.mark_frames(ds, [2, 3], ["of interest", "of interest"],
                           reasons=["onset", "after onset"], run_id=run) == 2
    marks = cat.frame_marks(ds)
    assert [(m["frame"], m["label"]) for m in marks] == [
        (0, "redundant"), (1, "redundant"), (2, "of interest"), (3, "of interest"),
        (4, "redundant")]
    assert marks[2]["reason"] == "onset"
    assert marks[2]["run_id"] == run
    assert [m["frame"] for m in cat.frame_marks(ds, label="of interest")] == [2, 3]
    # bad input: nothing written
    with pytest.raises(ValueError, match=r"unknown frame label\(s\) \['keep'\]"):
        cat.mark_frames(ds, [0, 1], ["redundant", "keep"])
    with pytest.raises(ValueError, match="labels has 1 entries for 2 frames"):
        cat.mark_frames(ds, [0, 1], ["redundant"])
    with pytest.raises(ValueError, match="frame indices must be >= 0"):
        cat.mark_frames(ds, [-1], "redundant")
    with pytest.raises(CatalogError, match="no run with id 'run-nope'"):
        cat.mark_frames(ds, [0], "of interest", run_id="run-nope")
    with pytest.raises(DatasetNotFoundError):
        cat.mark_frames("ds-missing", [0], "redundant")
    assert [(m["frame"], m["label"]) for m in cat.frame_marks(ds)][:2] == [
        (0, "redundant"), (1, "redundant")]
