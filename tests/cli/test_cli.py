"""The spotkit command line, run as a user runs it (a subprocess) and in-process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spotkit.cli import main


def _spotkit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spotkit.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_version_and_help():
    import spotkit

    res = _spotkit("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"spotkit {spotkit.__version__}"
    res = _spotkit("--help")
    assert res.returncode == 0
    for cmd in ("demo", "ingest", "catalog", "run", "watch", "status", "flow", "kernel"):
        assert cmd in res.stdout


def test_global_options_after_the_sub_command(tmp_path, tiny_tomo, capsys):
    """catalogs/README.md writes `spotkit catalog export FILE --catalog ...`: both orders work."""
    db = str(tmp_path / "cat.db")
    assert main(["ingest", str(tiny_tomo[0]), "--catalog", db, "-q"]) == 0
    capsys.readouterr()
    out = tmp_path / "intake.yaml"
    assert main(["catalog", "export", str(out), "--catalog", db]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.is_file()
    assert main(["catalog", "search", "--catalog", db, "-v"]) == 0
    assert "1 shown of 1 matching" in capsys.readouterr().out
    assert main(["--catalog", db, "catalog", "search"]) == 0
    assert "1 shown of 1 matching" in capsys.readouterr().out
    # the option after the sub-command wins over the one before it
    assert main(["--catalog", str(tmp_path / "other.db"), "catalog", "search",
                 "--catalog", db]) == 0
    assert not (tmp_path / "other.db").exists()


def test_ingest_search_show(tmp_path, tiny_tomo, capsys):
    db = str(tmp_path / "cat.db")
    assert main(["--catalog", db, "ingest", str(tiny_tomo[0])]) == 0
    ds_id = capsys.readouterr().out.split()[0]
    assert main(["--catalog", db, "catalog", "search", "--sample", "tiny-sample"]) == 0
    out = capsys.readouterr().out
    assert ds_id in out
    assert "1 shown of 1 matching" in out
    assert main(["--catalog", db, "catalog", "search", "--beamline", "no-such"]) == 0
    assert "0 shown of 0" in capsys.readouterr().out
    assert main(["--catalog", db, "catalog", "show", ds_id]) == 0
    out = capsys.readouterr().out
    assert "tiny-sample" in out
    assert str(tiny_tomo[0]) in out


def test_show_lists_flow_provenance_and_frame_marks(tmp_path, tiny_saxs, capsys):
    from spotkit.catalog import open_catalog

    db = tmp_path / "cat.db"
    with open_catalog(db) as cat:
        ds = cat.ingest(tiny_saxs[0])
        run = cat.start_run(dataset_id=ds.id, notebook=tmp_path / "nb.ipynb",
                            notebook_sha256=None, parameters={},
                            context={"flow": {"rule": "saxs-733", "action": "reduce",
                                              "stage": "full", "rules_version": "abc123"}})
        cat.mark_frames(ds, range(12), ["redundant"] * 7 + ["of interest"] * 4 + ["redundant"],
                        run_id=run)
    assert main(["--catalog", str(db), "catalog", "show", ds.id]) == 0
    out = capsys.readouterr().out
    assert (f"{run}: started by the flow, rule 'saxs-733' action 'reduce' (stage full, "
            "rules version abc123)") in out
    assert f"of interest: 7-10 (4 frames; run {run})" in out
    assert f"redundant: 0-6, 11 (8 frames; run {run})" in out


def test_unknown_dataset_id_is_a_clear_error(tmp_path):
    from spotkit.catalog import open_catalog

    open_catalog(tmp_path / "c.db").close()
    res = _spotkit("--catalog", str(tmp_path / "c.db"), "catalog", "show", "ds-doesnotexist")
    assert res.returncode == 1
    assert "ds-doesnotexist" in res.stderr
    assert "spotkit catalog search" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"this is not an hdf5 file\n" * 10, "HDF5"), (b"", "")],
)
def test_ingest_bad_file_exits_nonzero_and_leaves_catalog_unchanged(tmp_path, content, needle):
    bad = tmp_path / "scan.h5"
    bad.write_bytes(content)
    db = tmp_path / "c.db"
    res = _spotkit("--catalog", str(db), "ingest", str(bad))
    assert res.returncode == 1
    assert str(bad) in res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    # printed once (not also as a log line), as one paragraph
    assert res.stderr.count("spotkit: error:") == 1
    assert "\n\n" not in res.stderr.strip()
    # a catalog that only a failed ingest would have started is not left behind
    assert not db.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.h5"]


@pytest.mark.notebook
def test_run_rejects_unknown_parameter(tmp_path, tiny_tomo):
    db = str(tmp_path / "cat.db")
    assert main(["--catalog", db, "ingest", str(tiny_tomo[0])]) == 0
    from spotkit.catalog import open_catalog

    ds_id = open_catalog(db).search()[0].id
    res = _spotkit("--catalog", db, "run", "tomo_quicklook", ds_id, "-p", "n_slice", "2")
    assert res.returncode == 1
    assert "n_slice" in res.stderr
    assert "n_slices" in res.stderr


def test_parse_parameter_values():
    from spotkit.cli._main import _parse_value

    assert _parse_value("3") == 3
    assert _parse_value("2.5") == 2.5
    assert _parse_value("true") is True
    assert _parse_value("None") is None
    assert _parse_value("[1, 2]") == [1, 2]
    assert _parse_value("shepp") == "shepp"
    assert _parse_value("2026-01-01") == "2026-01-01"
    assert _parse_value("it's $(rm -rf) \"x\"") == "it's $(rm -rf) \"x\""


def _truncated_copy(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _without_exchange_data(src, dst):
    import shutil

    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        del f["exchange/data"]
    return dst


@pytest.mark.parametrize(
    ("make_bad", "needle"),
    [(_truncated_copy, "truncated"), (_without_exchange_data, "/exchange/data")],
    ids=["truncated", "no-exchange-data"],
)
def test_ingest_broken_scan_names_file_and_field(tmp_path, tiny_tomo, make_bad, needle):
    db = tmp_path / "c.db"
    good = tiny_tomo[0]
    assert main(["--catalog", str(db), "-q", "ingest", str(good)]) == 0
    before = _dump(db)
    bad = make_bad(good, tmp_path / "broken.h5")
    res = _spotkit("--catalog", str(db), "ingest", str(bad))
    assert res.returncode == 1
    assert str(bad) in res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.count("spotkit: error:") == 1
    assert _dump(db) == before  # the catalog is exactly as before the failed ingest


def _dump(db):
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


@pytest.mark.notebook
def test_run_of_failing_notebook_exits_nonzero_naming_the_cell(tmp_path, tiny_tomo):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    db = str(tmp_path / "cat.db")
    assert main(["--catalog", db, "-q", "ingest", str(tiny_tomo[0])]) == 0
    from spotkit.catalog import open_catalog

    ds_id = open_catalog(db).search()[0].id
    params = new_code_cell('dataset_id = ""')
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params, new_code_cell("1 / 0")])
    nbformat.write(nb, tmp_path / "broken.ipynb")
    res = _spotkit("--catalog", db, "run", str(tmp_path / "broken.ipynb"), ds_id)
    assert res.returncode == 1
    assert "cell 1" in res.stderr
    assert "ZeroDivisionError" in res.stderr
    assert "Traceback" not in res.stderr
    show = _spotkit("--catalog", db, "catalog", "show", ds_id)
    assert "failed" in show.stdout
    assert "ZeroDivisionError" in show.stdout
