"""Bad input on the command line: one paragraph on stderr that names what was wrong and says
what to do, a non-zero exit, no traceback, and nothing created or recorded."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from spotkit.cli import main
from spotkit.cli._main import _when


def _spotkit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spotkit.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def _one_paragraph(err: str) -> None:
    text = err.strip()
    assert text, "nothing on stderr"
    assert "Traceback" not in text
    assert "\n\n" not in text, f"more than one paragraph:\n{err}"
    assert text.startswith("spotkit"), text


def _tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
def cat_db(tmp_path, tiny_tomo):
    db = tmp_path / "cat.db"
    assert main(["--catalog", str(db), "-q", "ingest", str(tiny_tomo[0])]) == 0
    return db


WATCH = ["watch", "INBOX", "--rules", "RULES", "--warehouse", "WAREHOUSE", "--once"]


BAD_OPTIONS = [
    (["catalog", "search", "--since", "someday"],
     ["--since", "'someday'", "yesterday", "7d", "2026-01-31"]),
    (["catalog", "search", "--until", "2026-13-45"], ["--until", "2026-13-45"]),
    (["catalog", "search", "--since", "99999999d"], ["--since", "99999999d"]),
    (["catalog", "search", "--limit", "-3"], ["--limit", "-3", "at least 1"]),
    (["catalog", "search", "--limit", "lots"], ["--limit", "'lots'", "whole number"]),
    ([*WATCH, "--poll", "-1"], ["--poll", "-1", "more than 0"]),
    ([*WATCH, "--poll", "nan"], ["--poll"]),
    ([*WATCH, "--workers", "0"], ["--workers", "at least 1"]),
    ([*WATCH, "--settle", "-5"], ["--settle", "-5", "0 or more"]),
    ([*WATCH, "--cell-timeout", "0"], ["--cell-timeout", "more than 0"]),
    (["run", "tomo_quicklook", "ds-x", "--cell-timeout", "0"], ["--cell-timeout"]),
    (["status", "--limit", "0"], ["--limit"]),
    (["flow", "retry", "scan.h5"], ["--reason", "required"]),
    (["flow", "forget", "scan.h5"], ["--reason", "required"]),
    (["catalog", "search", "--no-such-option"], ["--no-such-option"]),
]


@pytest.mark.parametrize(("argv", "needles"), BAD_OPTIONS,
                         ids=[" ".join((a[0], *a[-2:])) for a, _ in BAD_OPTIONS])
def test_bad_option_is_one_paragraph_and_creates_nothing(tmp_path, argv, needles, capsys):
    db = tmp_path / "sub" / "cat.db"
    argv = [str(tmp_path / a) if a in ("INBOX", "RULES", "WAREHOUSE") else a for a in argv]
    assert main(["--catalog", str(db), *argv]) == 2
    err = capsys.readouterr().err
    _one_paragraph(err)
    for needle in needles:
        assert needle in err
    assert "--help" in err
    assert _tree(tmp_path) == []


def test_bad_option_as_a_user_runs_it(tmp_path):
    res = _spotkit("--catalog", str(tmp_path / "c.db"), "catalog", "search", "--since",
                   "yesterdy")
    assert res.returncode == 2
    _one_paragraph(res.stderr)
    assert "usage:" not in res.stderr
    assert "yesterday" in res.stderr
    assert not (tmp_path / "c.db").exists()


@pytest.mark.parametrize(
    "argv",
    [["catalog", "search"], ["catalog", "show", "ds-x"], ["catalog", "export", "OUT"],
     ["status"], ["flow", "retry", "scan.h5", "--reason", "r"],
     ["flow", "forget", "scan.h5", "--reason", "r"], ["run", "tomo_quicklook", "ds-x"]],
    ids=" ".join,
)
def test_missing_catalog_is_an_error_and_is_not_created(tmp_path, argv, capsys):
    db = tmp_path / "nonexistent" / "dir" / "cat.db"
    argv = [str(tmp_path / "out.yaml") if a == "OUT" else a for a in argv]
    assert main(["--catalog", str(db), *argv]) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert f"no catalog at {db}" in err
    assert "spotkit demo" in err
    assert "spotkit ingest" in err
    assert "--catalog" in err
    assert _tree(tmp_path) == []


def test_default_catalog_missing_creates_nothing_in_spotkit_home(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("SPOTKIT_HOME", str(home))
    assert main(["catalog", "search"]) == 1
    assert f"no catalog at {home / 'catalog.db'}" in capsys.readouterr().err
    assert not home.exists()


def test_catalog_folder_instead_of_file(tmp_path, capsys):
    assert main(["--catalog", str(tmp_path), "catalog", "search"]) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert "folder" in err
    assert _tree(tmp_path) == []


def test_watch_missing_inbox_is_an_error(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\n")
    inbox = tmp_path / "nonexistent" / "inbox"
    argv = ["--catalog", str(tmp_path / "cat.db"), "watch", str(inbox), "--once",
            "--rules", str(rules), "--warehouse", str(tmp_path / "warehouse")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert f"inbox {inbox} does not exist" in err
    assert _tree(tmp_path) == ["rules.yaml"]


def test_watch_missing_rules_or_warehouse_folder(tmp_path, capsys):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    base = ["--catalog", str(tmp_path / "cat.db"), "watch", str(inbox), "--once"]
    assert main([*base, "--rules", str(tmp_path / "rulez.yaml"), "--warehouse",
                 str(tmp_path / "wh")]) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert "rulez.yaml" in err
    (tmp_path / "rules.yaml").write_text("version: 1\n")
    assert main([*base, "--rules", str(tmp_path / "rules.yaml"), "--warehouse",
                 str(tmp_path / "no" / "such" / "wh")]) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert f"{tmp_path / 'no' / 'such'} does not exist" in err
    assert _tree(tmp_path) == ["inbox", "rules.yaml"]


def test_watch_takes_beamtime_windows_and_refuses_bad_ones_before_any_work(tmp_path, capsys,
                                                                          monkeypatch):
    """``spotkit watch --beamtime``: the monitor beside the watcher gets the windows (outside
    them a quiet beamline is expected); a window it cannot read is one paragraph, no catalog."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "rules.yaml").write_text(
        "targets: {local: {kind: local, max_workers: 1}}\nrules:\n"
        "  - {name: recon, match: {kind: tomo/raw}, actions: [{name: q, "
        "notebook: tomo_quicklook, target: local}]}\n")
    base = ["--catalog", str(tmp_path / "cat.db"), "-q", "watch", str(inbox), "--once",
            "--rules", str(tmp_path / "rules.yaml"), "--warehouse", str(tmp_path),
            "--settle", "0", "--no-inotify"]
    assert main([*base, "--beamtime", "2026-12-04T08:00/soon"]) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert "soon" in err
    assert not (tmp_path / "cat.db").exists()

    seen = {}

    def start_monitor(watcher, **options):
        seen.update(options)

    monkeypatch.setattr("spotkit.flows.start_monitor", start_monitor)
    assert main([*base, "--beamtime", "8.3.2=2026-12-04T08:00Z/2026-12-04T20:00Z",
                 "--beamtime", "2026-12-05T08:00Z/2026-12-05T20:00Z"]) == 0
    schedule = seen["schedule"]
    assert sorted(schedule.windows) == ["*", "8.3.2"]
    t = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC).timestamp()
    assert schedule.active("8.3.2", t)
    assert not schedule.active("7.3.3", t)
    assert main(base) == 0  # no windows: always in beamtime
    assert seen["schedule"] is None


def test_invalid_rules_file_is_one_paragraph_and_creates_no_catalog(tmp_path, capsys):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules: [{name: x, match: {beamline: 8.3.2}, nonsense: 1}]\n")
    argv = ["--catalog", str(tmp_path / "cat.db"), "watch", str(inbox), "--once",
            "--rules", str(rules), "--warehouse", str(tmp_path)]
    assert main(argv) == 1
    _one_paragraph(capsys.readouterr().err)
    assert not (tmp_path / "cat.db").exists()


# ---------------------------------------------------------------- --since / --until
def test_relative_times():
    now = dt.datetime.now(dt.UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    since, until = _when(end=False), _when(end=True)
    assert since("yesterday") == midnight - dt.timedelta(days=1)
    assert since("today") == midnight
    assert until("today") == midnight + dt.timedelta(days=1)
    assert until("yesterday") == midnight
    for text, delta in (("7d", dt.timedelta(days=7)), ("2h", dt.timedelta(hours=2)),
                        ("30m", dt.timedelta(minutes=30)), ("2w", dt.timedelta(weeks=2)),
                        ("3 days ago", dt.timedelta(days=3)), ("1.5h", dt.timedelta(hours=1.5))):
        assert abs((now - delta) - since(text)).total_seconds() < 5, text
    assert since("2026-01-31") == "2026-01-31"
    assert since("2026-01-31T13:30+01:00") == "2026-01-31T13:30+01:00"


def test_search_since_yesterday_finds_todays_scan_only(tmp_path, tiny_tomo, capsys,
                                                     monkeypatch):
    from spotkit.sim import simulate_tomo_scan

    # the clock held at mid-day: between 00:00 and 01:00 UTC a scan taken an hour ago
    # really is yesterday's (CI ran into exactly that)
    noon = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    monkeypatch.setattr("spotkit.cli._types._now", lambda: noon)
    recent = tmp_path / "recent.h5"
    simulate_tomo_scan(recent, shape=(16, 2, 32), n_flats=1, n_darks=1, seed=3,
                       sample="fresh", start_time=noon - dt.timedelta(hours=1))
    db = str(tmp_path / "cat.db")
    assert main(["--catalog", db, "-q", "ingest", str(recent), str(tiny_tomo[0])]) == 0
    capsys.readouterr()
    for when, shown in (("yesterday", 1), ("today", 1), ("2h", 1), ("30m", 0), ("7d", 1)):
        assert main(["--catalog", db, "catalog", "search", "--since", when]) == 0
        out = capsys.readouterr().out
        assert f"{shown} shown of {shown} matching" in out, when
        assert ("fresh" in out) == bool(shown)
    assert main(["--catalog", db, "catalog", "search", "--until", "yesterday"]) == 0
    out = capsys.readouterr().out
    assert "1 shown of 1 matching" in out
    assert "tiny-sample" in out


# ---------------------------------------------------------------- errors from the library
def _raise(exc):
    def command(args):
        raise exc

    return command


@pytest.mark.parametrize(
    ("exc", "needle"),
    [(ValueError("threshold must be positive\n\n  got -1; give e.g. 0.5"),
      "threshold must be positive\n  got -1; give e.g. 0.5"),
     (FileNotFoundError(2, "No such file or directory", "/data/scan.h5"),
      "No such file or directory: /data/scan.h5; check the path")],
    ids=["ValueError", "FileNotFoundError"],
)
def test_library_error_is_one_paragraph(monkeypatch, capsys, exc, needle):
    monkeypatch.setattr("spotkit.cli._main.cmd_kernel", _raise(exc))
    assert main(["kernel"]) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert err == f"spotkit: error: {needle}\n"


def test_spotkit_error_shows_traceback_only_with_verbose(monkeypatch, capsys):
    from spotkit.errors import InputFileError

    monkeypatch.setattr("spotkit.cli._main.cmd_kernel",
                        _raise(InputFileError("/data/x.h5", "is not a scan")))
    assert main(["kernel"]) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert "/data/x.h5: is not a scan" in err
    assert main(["kernel", "-v"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.rstrip().endswith("/data/x.h5: is not a scan")


def test_unexpected_error_hints_at_verbose(monkeypatch, capsys):
    monkeypatch.setattr("spotkit.cli._main.cmd_kernel", _raise(RuntimeError("kaboom")))
    assert main(["kernel"]) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert "RuntimeError: kaboom" in err
    assert "-v" in err
    assert "spotkit kernel" in err
    assert main(["-v", "kernel"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "kaboom" in err


def test_unknown_dataset_is_one_paragraph(cat_db, capsys):
    assert main(["--catalog", str(cat_db), "catalog", "show", "ds-nope"]) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert "ds-nope" in err


# ---------------------------------------------------------------- run: bad notebook / value
def _runs(db):
    from spotkit.catalog import open_catalog

    with open_catalog(db, create=False) as cat:
        return [r for ds in cat.search() for r in ds.runs]


def test_run_of_a_shell_script_named_ipynb(tmp_path, cat_db):
    from spotkit.catalog import open_catalog

    with open_catalog(cat_db, create=False) as cat:
        ds_id = cat.search()[0].id
    script = tmp_path / "not_a_notebook.ipynb"
    script.write_text("#!/bin/sh\necho hello\n")
    res = _spotkit("--catalog", str(cat_db), "run", "./not_a_notebook.ipynb", ds_id,
                   cwd=tmp_path)
    assert res.returncode == 1
    _one_paragraph(res.stderr)
    assert "not_a_notebook.ipynb" in res.stderr
    assert _runs(cat_db) == []


def test_run_with_a_parameter_of_the_wrong_type(tmp_path, cat_db, capsys):
    from spotkit.catalog import open_catalog

    with open_catalog(cat_db, create=False) as cat:
        ds_id = cat.search()[0].id
    argv = ["--catalog", str(cat_db), "run", "tomo_quicklook", ds_id, "-p", "n_slices", "abc",
            "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert "n_slices" in err
    assert "abc" in err
    assert _runs(cat_db) == []
    assert not (tmp_path / "out").exists()


def test_warning_is_one_line_without_source(monkeypatch, capsys):
    def command(args):
        import warnings

        warnings.warn("the flat field is 3% dimmer than the last scan's", UserWarning,
                      stacklevel=1)
        return 0

    monkeypatch.setattr("spotkit.cli._main.cmd_kernel", command)
    assert main(["kernel"]) == 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "WARNING: UserWarning: the flat field is 3% dimmer" in err
    assert "warnings.warn" not in err
    assert main(["kernel", "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_ingest_of_a_bad_file_then_a_good_one_keeps_the_new_catalog(tmp_path, tiny_tomo,
                                                                   capsys):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    db = tmp_path / "new" / "cat.db"
    assert main(["--catalog", str(db), "ingest", str(bad), str(tiny_tomo[0])]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("spotkit: error:") == 1
    assert str(bad) in captured.err
    assert "tiny-sample" in captured.out
    assert db.is_file()
    assert main(["--catalog", str(db), "ingest", str(bad)]) == 1
    assert db.is_file()  # an existing catalog is never removed


def test_demo_refuses_a_catalog_it_would_not_use(tmp_path, capsys):
    argv = ["demo", "--workdir", str(tmp_path / "demo"), "--catalog", str(tmp_path / "c.db")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    _one_paragraph(err)
    assert "--workdir" in err
    assert _tree(tmp_path) == []
