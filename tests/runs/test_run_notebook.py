"""spotkit.run_notebook: papermill runs recorded in the catalog."""

from __future__ import annotations

import json
import os
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import spotkit
from spotkit.errors import CatalogError, NotebookExecutionError, NotebookParameterError
from spotkit.runs import ensure_kernel, notebook_parameters, read_declared_outputs

pytestmark = pytest.mark.notebook

PARAMS = """dataset_id = ""
catalog_path = ""
output_dir = "."
factor = 2
"""


def _write_nb(path, *cells):
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                               "display_name": "Python 3"}})
    p = new_code_cell(PARAMS)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, *(new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)
    return path


PRODUCE = """
import numpy as np, spotkit
from spotkit.runs import declare_output
ds = spotkit.open_catalog(catalog_path)[dataset_id]
arr = np.asarray(ds.to_dask()[:, 0, :].sum(axis=0).compute()) * factor
np.save("profile.npy", arr)
declare_output("profile.npy", kind="test/profile", metadata={"factor": factor})
"""


@pytest.fixture
def raw(catalog, tiny_tomo):
    return catalog.ingest(tiny_tomo[0])


def test_kernel_is_registered_for_this_interpreter():
    from jupyter_client.kernelspec import KernelSpecManager

    name = ensure_kernel()
    spec = KernelSpecManager().get_kernel_spec(name)
    # the same interpreter, however it was spelt when registered (`spotkit demo` through the
    # console script registers .venv/bin/python3.11; `python -m pytest` runs .venv/bin/python)
    assert os.path.realpath(spec.argv[0]) == os.path.realpath(sys.executable)
    assert ensure_kernel() == name  # idempotent


def test_success_registers_derived_dataset_with_provenance(tmp_path, catalog, raw):
    nb = _write_nb(tmp_path / "produce.ipynb", PRODUCE)
    res = spotkit.run_notebook(nb, raw.id, parameters={"factor": 3}, catalog=catalog,
                               output_dir=tmp_path / "out")
    assert res.output_notebook.exists()
    assert len(res.outputs) == 1
    derived = catalog[res.outputs[0].id]
    assert derived.kind == "test/profile"
    assert [p.id for p in derived.parents] == [raw.id]
    assert derived.sample == raw.sample
    assert derived.files[0].path == tmp_path / "out" / "profile.npy"
    run = catalog.get_run(res.run_id)
    assert run.state == "completed"
    assert run.parameters == {"factor": 3}
    assert run.notebook_sha256
    assert len(run.notebook_sha256) == 64
    assert run.versions["spotkit"] == spotkit.__version__
    assert run.outputs == (derived.id,)
    prov = derived.provenance.to_dict()
    text = json.dumps(prov, default=str)
    assert res.run_id in text
    assert raw.id in text
    assert "produce.ipynb" in text
    # the injected parameters are in the executed notebook
    executed = nbformat.read(res.output_notebook, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    assert read_declared_outputs(executed)[0]["metadata"] == {"factor": 3}


def test_unknown_parameter_is_rejected_before_execution(tmp_path, catalog, raw):
    nb = _write_nb(tmp_path / "produce.ipynb", PRODUCE)
    with pytest.raises(NotebookParameterError, match="'fctor'") as info:
        spotkit.run_notebook(nb, raw.id, parameters={"fctor": 3}, catalog=catalog)
    assert "factor" in str(info.value)  # names what the notebook does declare
    assert catalog.runs() == []


def test_unknown_dataset(tmp_path, catalog):
    from spotkit.errors import DatasetNotFoundError

    nb = _write_nb(tmp_path / "produce.ipynb", PRODUCE)
    with pytest.raises(DatasetNotFoundError, match="ds-nope"):
        spotkit.run_notebook(nb, "ds-nope", catalog=catalog)


def test_failing_cell_is_recorded_and_partial_notebook_kept(tmp_path, catalog, raw):
    nb = _write_nb(tmp_path / "fail.ipynb", "x = 1", "raise ValueError('bad centre: 9999')",
                   "y = 2")
    with pytest.raises(NotebookExecutionError) as info:
        spotkit.run_notebook(nb, raw.id, catalog=catalog, output_dir=tmp_path / "out")
    err = info.value
    assert err.ename == "ValueError"
    assert "bad centre: 9999" in err.evalue
    assert err.output_notebook.exists()
    assert "fail.ipynb" in str(err)
    assert "bad centre" in str(err)
    run = catalog.get_run(err.run_id)
    assert run.state == "failed"
    assert run.error_name == "ValueError"
    assert "bad centre: 9999" in run.error_message
    assert run.error_cell == err.cell_index
    assert err.cell_index == 2  # index in the input notebook: parameters, x = 1, raise
    assert "raise ValueError" in nbformat.read(nb, as_version=4).cells[err.cell_index].source
    partial = nbformat.read(err.output_notebook, as_version=4)
    assert not any(c.get("execution_count") for c in partial.cells if c.source == "y = 2")
    assert run.outputs == ()


def test_declared_output_missing_marks_run_failed(tmp_path, catalog, raw):
    code = ("from spotkit.runs import declare_output\n"
            "declare_output('never_written.h5', kind='tomo/slices')")
    nb = _write_nb(tmp_path / "liar.ipynb", code)
    n_before = len(catalog)
    with pytest.raises(CatalogError, match=r"never_written\.h5"):
        spotkit.run_notebook(nb, raw.id, catalog=catalog, output_dir=tmp_path / "out")
    assert len(catalog) == n_before
    (run,) = catalog.runs()
    assert run.state == "failed"


def test_notebook_parameters_lists_declared():
    from spotkit.runs import pipeline_notebook

    params = notebook_parameters(pipeline_notebook("tomo_quicklook"))
    assert {"dataset_id", "catalog_path", "output_dir", "center", "n_slices"} <= set(params)


def test_a_dataset_object_runs_against_the_catalog_it_came_from(tmp_path, catalog, raw,
                                                                monkeypatch):
    # the default catalog is elsewhere (and empty): the Dataset's own catalog is used
    monkeypatch.setenv("SPOTKIT_CATALOG", str(tmp_path / "other" / "catalog.db"))
    nb = _write_nb(tmp_path / "produce.ipynb", PRODUCE)
    result = spotkit.run_notebook(nb, raw, output_dir=tmp_path / "out")
    assert catalog.get_run(result.run_id).state == "completed"
    assert not (tmp_path / "other" / "catalog.db").exists()


def test_concurrent_runs_start_in_their_own_folders_and_leave_the_process_cwd(
        tmp_path, catalog, raw, monkeypatch):
    """The kernel starts in its run's folder; the calling process never changes directory
    (papermill's cwd= did, and two threads' runs restored each other's folder)."""
    import os
    import threading

    monkeypatch.chdir(tmp_path)
    nb = _write_nb(tmp_path / "where.ipynb",
                   "import os, pathlib\npathlib.Path('where.txt').write_text(os.getcwd())")
    seen: list[str] = []
    stop = threading.Event()

    def watch_cwd():
        while not stop.is_set():
            seen.append(os.getcwd())
            stop.wait(0.005)

    watcher = threading.Thread(target=watch_cwd)
    watcher.start()
    outs = [tmp_path / f"out{i}" for i in range(2)]
    runs = [threading.Thread(target=spotkit.run_notebook, args=(nb, raw.id),
                             kwargs={"catalog": catalog, "output_dir": out}) for out in outs]
    try:
        for t in runs:
            t.start()
        for t in runs:
            t.join(timeout=300)
    finally:
        stop.set()
        watcher.join()
    for out in outs:
        assert os.path.samefile((out / "where.txt").read_text(), out)
    assert set(seen) == {str(tmp_path)}


def test_papermill_file_io_keeps_each_threads_folder_and_never_changes_directory(
        tmp_path, monkeypatch):
    """Two runs overlapping as a watcher's threads do (A starts, B starts, A ends, B ends):
    papermill's shared handler read B's folder in A, and kept A's folder after both ended,
    moving the process there at every later read (a test minutes later saw that folder)."""
    import os
    import threading

    import nbformat
    from papermill.iorw import load_notebook_node, local_file_io_cwd, papermill_io

    from spotkit.runs._papermill_io import install_local_handler

    install_local_handler()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_code_cell(f"folder = {name!r}"))
        nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                     "display_name": "Python 3"}
        nbformat.write(nb, tmp_path / name / "x.ipynb")
    monkeypatch.chdir(tmp_path)
    moves: list[str] = []
    real_chdir = os.chdir
    monkeypatch.setattr(os, "chdir", lambda p: (moves.append(str(p)), real_chdir(p))[1])
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    read: dict[str, str] = {}

    def run_a():
        with local_file_io_cwd(str(tmp_path / "a")):
            a_in.set()
            b_in.wait(10)
            read["a"] = load_notebook_node("x.ipynb").cells[0].source
        a_out.set()

    def run_b():
        a_in.wait(10)
        with local_file_io_cwd(str(tmp_path / "b")):
            b_in.set()
            a_out.wait(10)
            read["b"] = load_notebook_node("x.ipynb").cells[0].source

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert read == {"a": "folder = 'a'", "b": "folder = 'b'"}
    assert moves == []
    assert os.getcwd() == str(tmp_path)
    assert papermill_io.get_handler("local")._cwd is None  # nothing left behind
    # a relative path outside any run is the process's own, as before
    assert load_notebook_node(os.path.join("a", "x.ipynb")).cells[0].source == "folder = 'a'"
