"""What is refused before a notebook run is recorded: names, files, parameters, dataset kinds.

One resolver serves ``spotkit.run_notebook``, ``spotkit.submit`` and the CLI; every refusal
here happens before the catalog records a run.
"""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import spotkit
from spotkit.compute import Local
from spotkit.errors import InputFileError, NotebookParameterError
from spotkit.runs import (
    NotebookKindError,
    NotebookParameterValueError,
    check_parameters,
    notebook_kinds,
    notebook_parameters,
    pipeline_notebook,
    resolve_notebook,
    shipped_notebooks,
)

pytestmark = pytest.mark.notebook

SHIPPED = ("saxs_quicklook", "saxs_reduce", "tomo_quicklook", "tomo_recon")


@pytest.fixture
def tomo_raw(catalog, tiny_tomo):
    return catalog.ingest(tiny_tomo[0])


@pytest.fixture
def saxs_raw(catalog, tiny_saxs):
    return catalog.ingest(tiny_saxs[0])


def _notebook(path, source, spotkit_meta=None):
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                               "display_name": "Python 3"}})
    if spotkit_meta is not None:
        nb.metadata["spotkit"] = spotkit_meta
    params = new_code_cell(source)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell("# test"), params, new_code_cell("result = 1")]
    nbformat.write(nb, path)
    return path


# -- one resolver --------------------------------------------------------------------------

def test_a_name_a_name_with_suffix_and_a_path_resolve_to_the_same_file():
    path = pipeline_notebook("tomo_quicklook")
    assert resolve_notebook("tomo_quicklook") == path
    assert resolve_notebook("tomo_quicklook.ipynb") == path
    assert resolve_notebook(str(path)) == path
    assert resolve_notebook(path) == path
    assert set(SHIPPED) <= set(shipped_notebooks())


def test_unknown_name_lists_the_shipped_notebooks():
    with pytest.raises(FileNotFoundError, match="tomo_quiklook") as info:
        resolve_notebook("tomo_quiklook")
    for name in SHIPPED:
        assert name in str(info.value)


@pytest.mark.parametrize("how", ["name", "name.ipynb", "path"])
def test_run_notebook_and_submit_take_a_name(catalog, tomo_raw, how):
    notebook = {"name": "tomo_quicklook", "name.ipynb": "tomo_quicklook.ipynb",
                "path": str(pipeline_notebook("tomo_quicklook"))}[how]
    # a bad value proves the notebook was found and read (was FileNotFoundError by name)
    with pytest.raises(NotebookParameterValueError, match="n_slices"):
        spotkit.run_notebook(notebook, tomo_raw.id, catalog=catalog,
                             parameters={"n_slices": "abc"})
    with pytest.raises(NotebookParameterValueError, match="n_slices"):
        spotkit.submit(notebook, tomo_raw.id, catalog=catalog, target=Local(),
                       parameters={"n_slices": "abc"})
    assert catalog.runs() == []


def test_missing_file_and_unknown_name_are_refused_everywhere(tmp_path, catalog, tomo_raw):
    for run in (spotkit.run_notebook, spotkit.submit):
        with pytest.raises(FileNotFoundError, match="tomo_recon"):
            run("no_such_notebook", tomo_raw.id, catalog=catalog)
        with pytest.raises(FileNotFoundError, match="does not exist"):
            run(tmp_path / "missing.ipynb", tomo_raw.id, catalog=catalog)
    assert catalog.runs() == []


# -- a file that is not a notebook ---------------------------------------------------------

def test_a_shell_script_named_ipynb_is_an_input_file_error(tmp_path, catalog, tomo_raw):
    script = tmp_path / "not_a_notebook.ipynb"
    script.write_text("#!/bin/sh\necho hello\n")
    for run in (spotkit.run_notebook, spotkit.submit):
        with pytest.raises(InputFileError, match="is not a Jupyter notebook") as info:
            run(script, tomo_raw.id, catalog=catalog)
        assert info.value.path == script
        assert "not_a_notebook.ipynb" in str(info.value)
        assert "not JSON" in str(info.value)
    with pytest.raises(InputFileError, match="not_a_notebook"):
        notebook_parameters(script)
    assert catalog.runs() == []


def test_json_that_is_not_a_notebook(tmp_path, catalog, tomo_raw):
    path = tmp_path / "data.ipynb"
    path.write_text('{"hello": [1, 2, 3]}')
    with pytest.raises(InputFileError, match=r"data\.ipynb"):
        spotkit.run_notebook(path, tomo_raw.id, catalog=catalog)
    assert catalog.runs() == []


# -- parameters checked against the notebook's declarations ---------------------------------

PARAMS = """dataset_id = ""
catalog_path = ""
n_slices = 3
ratio = 0.5
label = "a"
flag = True
center = None
method = "vo"
"""
META = {"kinds": ["tomo/raw"], "parameters": {
    "n_slices": {"min": 1, "max": 10},
    "ratio": {"min": 0.0, "max": 1.0},
    "center": {"type": ["float", "none"], "min": 0},
    "method": {"choices": ["vo", "pc"]},
}}


@pytest.mark.parametrize(("params", "words"), [
    ({"n_slices": "abc"}, ["'n_slices'", "'abc' is a str", "expects int", "default 3"]),
    ({"n_slices": 2.5}, ["'n_slices'", "expects int"]),
    ({"n_slices": True}, ["'n_slices'", "expects int"]),
    ({"n_slices": 0}, ["'n_slices'", "below the minimum 1"]),
    ({"n_slices": 11}, ["'n_slices'", "above the maximum 10"]),
    ({"ratio": "half"}, ["'ratio'", "expects float"]),
    ({"ratio": 1.5}, ["'ratio'", "above the maximum 1.0"]),
    ({"label": 3}, ["'label'", "expects str"]),
    ({"flag": "yes"}, ["'flag'", "expects bool"]),
    ({"center": "middle"}, ["'center'", "float or None"]),
    ({"center": -1}, ["'center'", "below the minimum 0"]),
    ({"method": "sinogram"}, ["'method'", "not one of the choices", "'vo'", "'pc'"]),
    ({"n_slice": 2}, ["'n_slice'", "not declared", "did you mean 'n_slices'"]),
    ({"outputdir": "x"}, ["'outputdir'", "not declared"]),
    ({"dataset_id": "x"}, ["'dataset_id'", "set by spotkit itself"]),
])
def test_bad_parameters_are_refused_before_anything_is_recorded(tmp_path, catalog, tomo_raw,
                                                                params, words):
    nb = _notebook(tmp_path / "check.ipynb", PARAMS, META)
    for run in (spotkit.run_notebook, spotkit.submit):
        with pytest.raises(NotebookParameterValueError) as info:
            run(nb, tomo_raw.id, catalog=catalog, parameters=params)
        err = info.value
        assert isinstance(err, NotebookParameterError)
        assert isinstance(err, ValueError)
        text = str(err)
        for word in words:
            assert word in text, (word, text)
        assert "check.ipynb" in text
        assert [p.name for p in err.problems] == list(params)
    assert catalog.runs() == []


def test_every_problem_is_reported_at_once(tmp_path):
    nb = _notebook(tmp_path / "check.ipynb", PARAMS, META)
    with pytest.raises(NotebookParameterValueError) as info:
        check_parameters(nb, {"n_slices": "abc", "ratio": 2, "metod": "vo"})
    assert sorted(p.name for p in info.value.problems) == ["metod", "n_slices", "ratio"]
    assert info.value.unknown == ["metod"]
    assert "did you mean 'method'" in str(info.value)


def test_good_parameters_pass(tmp_path):
    nb = _notebook(tmp_path / "check.ipynb", PARAMS, META)
    declared = check_parameters(nb, {"n_slices": 10, "ratio": 1, "center": 48, "flag": False,
                                     "method": "pc", "label": "b"})
    assert declared["n_slices"]["type"] == ["int"]
    assert declared["ratio"]["type"] == ["float"]
    assert declared["center"]["type"] == ["float", "none"]
    assert declared["method"]["choices"] == ["vo", "pc"]
    check_parameters(nb, {"center": None, "ratio": 0.25})


def test_type_annotation_is_the_declared_type(tmp_path):
    nb = _notebook(tmp_path / "typed.ipynb",
                   'dataset_id: str = ""\nthreshold: Optional[float] = None\nsteps: int = 4\n')
    check_parameters(nb, {"threshold": 2, "steps": 5})
    check_parameters(nb, {"threshold": None})
    with pytest.raises(NotebookParameterValueError, match="threshold"):
        check_parameters(nb, {"threshold": "high"})


def test_shipped_notebooks_check_their_values(catalog, tomo_raw, saxs_raw):
    bad = [("tomo_quicklook", tomo_raw, {"center_method": "fourier"}, "'vo'"),
           ("tomo_quicklook", tomo_raw, {"n_slices": 0}, "minimum 1"),
           ("tomo_quicklook", tomo_raw, {"center": "auto"}, "float or None"),
           ("saxs_quicklook", saxs_raw, {"unit": "q_nm"}, "'q_A^-1'"),
           ("saxs_quicklook", saxs_raw, {"npt": "300"}, "expects int"),
           ("saxs_quicklook", saxs_raw, {"dark_fraction": 0}, "must be above 0.0"),
           ("saxs_quicklook", saxs_raw, {"dark_fraction": 1.0}, "must be below 1.0"),
           ("saxs_reduce", saxs_raw, {"keep_every": -1}, "minimum 0"),
           ("tomo_recon", tomo_raw, {"slice_start": 1.5}, "int or None"),
           ("tomo_recon", tomo_raw, {"binning": 0}, "minimum 1")]
    for name, ds, params, words in bad:
        with pytest.raises(NotebookParameterValueError, match=next(iter(params))) as info:
            spotkit.run_notebook(name, ds.id, catalog=catalog, parameters=params)
        assert words in str(info.value), (name, str(info.value))
    assert catalog.runs() == []


# -- dataset kinds -------------------------------------------------------------------------

def test_saxs_notebook_refuses_a_tomography_dataset_up_front(catalog, tomo_raw):
    with pytest.raises(NotebookKindError) as info:
        spotkit.run_notebook("saxs_quicklook", tomo_raw.id, catalog=catalog)
    err = info.value
    text = str(err)
    assert err.kind == "tomo/raw"
    assert err.dataset_id == tomo_raw.id
    assert err.accepted == ["saxs/raw"]
    assert err.alternatives == ["tomo_quicklook", "tomo_recon"]
    for word in ("saxs_quicklook.ipynb", tomo_raw.id, "tomo/raw", "saxs/raw",
                 "tomo_quicklook", "tomo_recon"):
        assert word in text, (word, text)
    with pytest.raises(NotebookKindError, match="saxs/raw"):
        spotkit.submit("saxs_quicklook", tomo_raw.id, catalog=catalog, target=Local())
    assert catalog.runs() == []


def test_tomo_notebooks_refuse_a_saxs_dataset(catalog, saxs_raw):
    for name in ("tomo_quicklook", "tomo_recon"):
        with pytest.raises(NotebookKindError, match="saxs_quicklook, saxs_reduce"):
            spotkit.run_notebook(name, saxs_raw.id, catalog=catalog)
    assert catalog.runs() == []


def test_kind_patterns_and_no_declaration(tmp_path, catalog, tomo_raw):
    any_kind = _notebook(tmp_path / "any.ipynb", 'dataset_id = ""\n')
    assert notebook_kinds(any_kind) is None
    pattern = _notebook(tmp_path / "pattern.ipynb", 'dataset_id = ""\n', {"kinds": ["tomo/*"]})
    assert notebook_kinds(pattern) == ["tomo/*"]
    res = spotkit.run_notebook(pattern, tomo_raw.id, catalog=catalog,
                               output_dir=tmp_path / "out")
    assert catalog.get_run(res.run_id).state == "completed"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_notebooks_declare_and_document_kinds_and_checks(name):
    path = pipeline_notebook(name)
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata["spotkit"]
    assert meta["kinds"] in (["saxs/raw"], ["tomo/raw"])
    declared = notebook_parameters(path)
    assert set(meta["parameters"]) <= set(declared)  # checks only for declared parameters
    intro = nb.cells[0]
    assert intro.cell_type == "markdown"
    assert "What this notebook accepts" in intro.source
    for kind in meta["kinds"]:
        assert f"`{kind}`" in intro.source
    for parameter in meta["parameters"]:
        assert f"`{parameter}`" in intro.source


# -- the kernel's connection ----------------------------------------------------------------

def test_runs_do_not_warn_about_an_unencrypted_kernel(tmp_path, catalog, tomo_raw, capfd):
    nb = _notebook(tmp_path / "quiet.ipynb", 'dataset_id = ""\n')
    res = spotkit.run_notebook(nb, tomo_raw.id, catalog=catalog, output_dir=tmp_path / "out",
                               log_output=True)
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err + captured.out
    assert "without encryption" not in res.output_notebook.read_text()


def test_kernel_connection_is_encrypted_or_local():
    from spotkit.runs import ensure_kernel
    from spotkit.runs._kernel import kernel_engine_options

    config = kernel_engine_options(ensure_kernel())["config"]
    km = config.KernelManager
    assert km.get("transport_encryption") == "required" or km.get("transport") == "ipc"


def test_numpy_scalars_are_their_python_values(tmp_path):
    import numpy as np

    nb = _notebook(tmp_path / "check.ipynb", PARAMS, META)
    check_parameters(nb, {"n_slices": np.int64(4), "ratio": np.float32(0.5),
                          "flag": np.bool_(True)})
    with pytest.raises(NotebookParameterValueError, match="above the maximum 10"):
        check_parameters(nb, {"n_slices": np.int64(40)})
