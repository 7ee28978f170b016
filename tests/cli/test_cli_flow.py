"""`spotkit status` fits the terminal, `spotkit flow retry|forget`, and `spotkit watch`
shows the flow's steps as it works."""

from __future__ import annotations

import json

import pytest

from spotkit.cli import main
from spotkit.cli._main import _one_line, _short_path, _table

LONG_DIR = "/beamline/data/" + "/".join(f"proposal_{i:02d}_long_folder_name" for i in range(12))
LONG_ERROR = ("transfer of scan_0001.h5 to /warehouse failed: " + "checksum mismatch " * 30
              + "\nsecond line of the error\nthird line")


@pytest.fixture
def parked(tmp_path):
    """A catalog whose flow journal has one parked and one failed item with long paths."""
    from spotkit.catalog import open_catalog
    from spotkit.flows import Journal

    db = tmp_path / "cat.db"
    open_catalog(db).close()
    paths = [f"{LONG_DIR}/scan_{n:04d}.h5" for n in (1, 2)]
    with Journal(db) as journal:
        for n, path in enumerate(paths):
            journal.discover(f"key{n}", path, size=10, mtime_ns=1, inbox=LONG_DIR)
        journal.record_failure("key0", LONG_ERROR, park=True)
        journal.record_failure("key1", "disk full", retry_in=60)
    return db, paths


def test_table_helpers():
    assert _short_path("/a/b/c/scan.h5", 20) == "/a/b/c/scan.h5"
    assert _short_path("/data/one/two/three/scan_0001.h5", 22) == "…/three/scan_0001.h5"
    assert _one_line("first\nsecond", None) == "first …"
    assert _one_line("x" * 50, 10) == "x" * 9 + "…"
    rows = [{"path": LONG_DIR + "/scan.h5", "n": 1, "error": LONG_ERROR}]
    table = _table(rows, ["path", "n", "error"], width=80, paths=("path",), texts=("error",))
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "…/" in table
    assert "second line" not in table


@pytest.mark.parametrize("columns", [60, 100, 160])
def test_status_fits_the_terminal(parked, monkeypatch, capsys, columns):
    db, _ = parked
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["--catalog", str(db), "status"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= columns, out
    assert "scan_0001.h5" in out  # the end of the path is what stays
    assert "…/" in out
    assert "transfer of" in out  # the start of the error is what stays
    assert "disk full" in out
    assert "second line" not in out
    assert "--wide" in out
    assert "Parked" in out
    assert "Failed" in out


def test_status_wide_and_json_give_everything(parked, monkeypatch, capsys):
    db, paths = parked
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["--catalog", str(db), "status", "--wide"]) == 0
    out = capsys.readouterr().out
    assert paths[0] in out
    assert "checksum mismatch " * 30 in out
    assert "second line of the error" in out
    assert main(["--catalog", str(db), "status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["parked"][0]["path"] == paths[0]
    assert doc["parked"][0]["error"] == LONG_ERROR


def _item(db, key):
    from spotkit.flows import Journal

    with Journal(db) as journal:
        return journal.item(key), journal.steps(key)


def test_flow_retry_puts_a_parked_item_back_with_the_reason(parked, capsys):
    db, paths = parked
    assert main(["--catalog", str(db), "flow", "retry", paths[0],
                 "--reason", "file re-exported", "--by", "alice"]) == 0
    out = capsys.readouterr().out
    assert paths[0] in out
    assert "parked -> pending" in out
    assert "file re-exported" in out
    item, steps = _item(db, "key0")
    assert item.state == "pending"
    assert item.attempts == 0
    retried = [s for s in steps if s.step == "retried"]
    assert retried
    assert retried[0].result["reason"] == "file re-exported"
    assert retried[0].result["by"] == "alice"


def test_flow_forget_sets_an_item_aside_for_good(parked, capsys):
    db, paths = parked
    assert main(["flow", "forget", paths[1], "--reason", "test scan, not data",
                 "--catalog", str(db)]) == 0
    out = capsys.readouterr().out
    assert "failed -> forgotten" in out
    assert "raw file is kept" in out
    item, steps = _item(db, "key1")
    assert item.state == "forgotten"
    assert [s.result["reason"] for s in steps if s.step == "forgotten"] == [
        "test scan, not data"]
    # a forgotten item can still be brought back by retry
    assert main(["--catalog", str(db), "flow", "retry", paths[1], "--reason", "oops"]) == 0
    assert _item(db, "key1")[0].state == "pending"


@pytest.mark.parametrize("action", ["retry", "forget"])
def test_flow_unknown_item_is_one_paragraph(parked, capsys, action):
    db, _ = parked
    before = _item(db, "key0")
    assert main(["--catalog", str(db), "flow", action, "/no/such/scan.h5",
                 "--reason", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spotkit: error: ")
    assert "/no/such/scan.h5" in err
    assert "spotkit status" in err
    assert "Traceback" not in err
    assert _item(db, "key0") == before


def test_flow_retry_of_a_pending_item_is_refused(parked, capsys):
    db, paths = parked
    assert main(["--catalog", str(db), "flow", "retry", paths[0], "--reason", "a"]) == 0
    capsys.readouterr()
    assert main(["--catalog", str(db), "flow", "retry", paths[0], "--reason", "b"]) == 1
    err = capsys.readouterr().err
    assert "pending" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- watch shows its steps
def _rules(path):
    path.write_text(
        "version: 1\nfacility: TEST\nstages: [preview]\n"
        "targets:\n  local: {kind: local, max_workers: 1, concurrency: 1}\n"
        "rules:\n  - name: saxs-only\n    match: {kind: saxs/raw}\n"
        "    actions:\n      - {name: preview, stage: preview, notebook: saxs_quicklook, "
        "target: local}\n")
    return path


@pytest.fixture
def inbox_with_scan(tmp_path):
    from spotkit.sim import simulate_tomo_scan

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    simulate_tomo_scan(inbox / "scan_0001.h5", shape=(16, 2, 32), n_flats=1, n_darks=1)
    (tmp_path / "warehouse").mkdir()
    return inbox


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "quiet"])
def test_watch_logs_each_step_unless_quiet(tmp_path, inbox_with_scan, capsys, quiet):
    argv = ["--catalog", str(tmp_path / "cat.db"), "watch", str(inbox_with_scan), "--once",
            "--settle", "0", "--poll", "0.1", "--no-inotify",
            "--rules", str(_rules(tmp_path / "rules.yaml")),
            "--warehouse", str(tmp_path / "warehouse"), *(["-q"] if quiet else [])]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "done 1, failed 0" in captured.out
    lines = [ln for ln in captured.err.splitlines() if "scan_0001" in ln]
    if quiet:
        assert captured.err == ""
    else:
        assert len(lines) >= 2, captured.err  # at least found and done, one line each
        assert "Traceback" not in captured.err
    assert any((tmp_path / "warehouse").rglob("scan_0001.h5"))


def test_flow_info_lines_only_for_watch(monkeypatch, capsys):
    import logging

    def fake(args):
        logging.getLogger("spotkit.flows._flow").info("verified scan_0042.h5")
        return 0

    monkeypatch.setattr("spotkit.cli._main.cmd_kernel", fake)
    assert main(["kernel"]) == 0
    assert "scan_0042" not in capsys.readouterr().err
    assert main(["-v", "kernel"]) == 0
    assert "scan_0042" in capsys.readouterr().err
