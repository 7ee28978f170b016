"""Pausing and resuming a rule (spotkit.flows.pause_rule...), the flow's status in one read,
and a watcher honouring a pause made through another connection (as another process does)."""

from __future__ import annotations

import time

import pytest

from spotkit.errors import FlowError
from spotkit.flows import (
    Journal,
    Watcher,
    flow_status,
    load_rules,
    pause_rule,
    paused_rules,
    resume_rule,
)


def test_pause_resume_and_history(tmp_path):
    db = tmp_path / "catalog.db"
    assert paused_rules(db) == {}
    assert not db.exists() or flow_status(db).paused == {}
    p = pause_rule(db, " tomo ", reason=" detector swap ", by="ops")
    assert (p.rule, p.reason, p.by) == ("tomo", "detector swap", "ops")
    # pausing again records the new reason, keeps when it started
    again = pause_rule(db, "tomo", reason="still swapping", by="ops2")
    assert again.since == p.since
    assert again.reason == "still swapping"
    assert list(paused_rules(db)) == ["tomo"]
    assert resume_rule(db, "tomo", reason="done", by="ops").reason == "still swapping"
    assert paused_rules(db) == {}
    with pytest.raises(FlowError, match=r"'tomo' is not paused; paused rules: none"):
        resume_rule(db, "tomo")
    with pytest.raises(FlowError, match="needs a reason"):
        pause_rule(db, "tomo", reason="  ")
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT rule, action, reason, done_by FROM flow_rule_history "
                            "ORDER BY id").fetchall()
    assert rows == [("tomo", "pause", "detector swap", "ops"),
                    ("tomo", "pause", "still swapping", "ops2"),
                    ("tomo", "resume", "done", "ops")]


def test_pause_checks_the_rule_name_against_rules(tmp_path):
    rules = load_rules("targets: {local: {kind: local}}\nrules:\n"
                       "  - {name: tomo, match: {kind: saxs/raw}, actions: "
                       "[{name: q, notebook: saxs_quicklook, target: local}]}\n")
    with pytest.raises(FlowError, match=r"no rule 'tomi' in the rules \(did you mean 'tomo'"):
        pause_rule(tmp_path / "c.db", "tomi", reason="x", rules=rules)
    assert pause_rule(tmp_path / "c.db", "tomo", reason="x", rules=rules).rule == "tomo"


def _journal_with_items(db):
    """Two beamlines' items in several states, with action steps."""
    now = time.time()
    with Journal(db) as j:
        for key, bl, state, steps in [
            ("a", "8.3.2", "done", {"processed/tomo/preview": "done", "done": "done"}),
            ("b", "8.3.2", "parked", {"processed/tomo/preview": "parked"}),
            ("c", "8.3.2", "running", {"processed/tomo/preview": "done",
                                       "processed/tomo/full": "running"}),
            ("d", "7.3.3", "failed", {"processed/saxs/quick": "failed"}),
            ("e", "7.3.3", "pending", {}),
        ]:
            j.discover(key, f"/inbox/{key}.h5", size=1, mtime_ns=1)
            j.update_item(key, beamline=bl, state=state,
                          last_error=f"boom {key}" if state in ("parked", "failed") else None)
            for step, st in steps.items():
                j.finish_step(key, step, state=st, seconds=1.0)
    return now


def test_flow_status_counts_throughput_errors_and_pauses(tmp_path):
    db = tmp_path / "catalog.db"
    _journal_with_items(db)
    pause_rule(db, "saxs", reason="beam dump", by="ops")
    status = flow_status(db)
    assert status.beamlines["8.3.2"]["done"] == 1
    assert status.beamlines["7.3.3"]["pending"] == 1
    assert status.throughput == {"8.3.2": 1, "7.3.3": 0}
    rows = {(a.beamline, a.rule, a.action): a for a in status.actions}
    assert rows[("8.3.2", "tomo", "preview")].counts == {
        "pending": 0, "running": 0, "failed": 0, "parked": 1, "done": 2}
    assert rows[("8.3.2", "tomo", "preview")].last_hour == 2
    assert rows[("8.3.2", "tomo", "full")].counts["running"] == 1
    assert rows[("7.3.3", "saxs", "quick")].paused
    assert not rows[("8.3.2", "tomo", "full")].paused
    assert [(e.path, e.state, e.error) for e in status.errors] == [
        ("/inbox/d.h5", "failed", "boom d"), ("/inbox/b.h5", "parked", "boom b")]
    assert status.paused["saxs"].by == "ops"
    assert status.rules() == ["saxs", "tomo"]
    assert len(flow_status(db, errors=1).errors) == 1
    # done items older than the window leave the actions' counts, not the beamline's
    old = flow_status(db, window=1e-9)
    assert ("8.3.2", "tomo", "preview") in {(a.beamline, a.rule, a.action)
                                            for a in old.actions}  # parked b is still there
    with pytest.raises(ValueError, match="window must be > 0"):
        flow_status(db, window=0)


def test_flow_status_reads_and_never_writes(tmp_path):
    db = tmp_path / "catalog.db"
    _journal_with_items(db)
    import sqlite3

    with sqlite3.connect(db) as conn:  # as in a catalog made before pauses existed
        conn.execute("DROP TABLE flow_rule_pauses")
    before = db.stat().st_mtime_ns
    status = flow_status(db)
    assert status.paused == {}
    assert status.beamlines
    assert db.stat().st_mtime_ns == before
    with sqlite3.connect(db) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "flow_rule_pauses" not in names
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert flow_status(empty).actions == ()


@pytest.mark.notebook
def test_watcher_holds_a_paused_rule_and_continues_on_resume(flow_env):
    env = flow_env
    rules = env["write_rules"](env["root"] / "one.yaml", env["notebook"],
                               actions=(("preview", "preview"),))
    env["scan"](env["inbox"] / "scan_0.h5", seed=0)
    pause_rule(env["catalog"], "tomo", reason="detector swap", by="ops")
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=rules,
                      warehouse=env["warehouse"], settle=0)
    try:
        for _ in range(2):  # held, pass after pass: not failed, not counted, no run
            report = watcher.run_once()
            assert not report.done
            assert not report.failed
            assert not report.parked
        (item,) = watcher.journal.items()
        assert (item.state, item.attempts) == ("pending", 0)
        assert item.last_error == "rule tomo paused by ops: detector swap"
        step = watcher.journal.step(item.key, "processed/tomo/preview")
        assert step.state == "pending"
        assert watcher.journal.is_done(item.key, "verified")  # its data moved meanwhile
        assert watcher.catalog.runs(limit=None) == []
        assert watcher.journal.lease_owner(item.key) is None
        status = flow_status(env["catalog"])
        (act,) = status.actions
        assert act.paused
        assert act.counts["pending"] == 1
        resume_rule(env["catalog"], "tomo", by="ops")
        report = watcher.run_once()  # the first pass after the resume
        assert len(report.done) == 1
        (item,) = watcher.journal.items()
        assert item.state == "done"
        assert [r.state for r in watcher.catalog.runs(limit=None)] == ["completed"]
    finally:
        watcher.close()


def test_cli_pause_status_resume(tmp_path, capsys):
    from spotkit.catalog import open_catalog
    from spotkit.cli import main

    db = tmp_path / "catalog.db"
    open_catalog(db).close()
    cat = ["--catalog", str(db)]
    assert main([*cat, "flow", "pause", "tomo", "--reason", "detector swap", "--by",
                 "ops"]) == 0
    assert "rule tomo paused by ops: detector swap" in capsys.readouterr().out
    assert main([*cat, "status", "--wide"]) == 0
    out = capsys.readouterr().out
    assert "Paused rules" in out
    assert "detector swap" in out
    assert main([*cat, "status", "--json"]) == 0
    assert '"rule": "tomo"' in capsys.readouterr().out
    assert main([*cat, "flow", "pause", "tomo"]) == 2  # --reason is required
    capsys.readouterr()
    assert main([*cat, "flow", "resume", "tomo", "--by", "ops"]) == 0
    assert "rule tomo resumed" in capsys.readouterr().out
    assert main([*cat, "flow", "resume", "tomo"]) == 1
    assert "not paused" in capsys.readouterr().err
    assert main([*cat, "status"]) == 0
    assert "Paused rules" not in capsys.readouterr().out


@pytest.mark.slow
def test_pause_and_status_on_postgresql(request):
    server = request.getfixturevalue("postgres_server")
    url = server.create_database("control")
    try:
        from spotkit.catalog import open_catalog

        open_catalog(url).close()
        _journal_with_items(url)
        assert paused_rules(url) == {}
        pause_rule(url, "saxs", reason="beam dump", by="ops")
        with Journal(url) as journal:  # a watcher reads the pauses through its journal
            assert paused_rules(journal)["saxs"].by == "ops"
            journal.finish_step("d", "processed/saxs/quick", state="pending",
                                error="rule saxs paused by ops: beam dump")
            journal.update_item("d", state="pending", next_attempt=1e12)
        status = flow_status(url)
        rows = {(a.beamline, a.rule, a.action): a for a in status.actions}
        assert rows[("7.3.3", "saxs", "quick")].paused
        assert rows[("7.3.3", "saxs", "quick")].counts["pending"] == 1
        assert rows[("8.3.2", "tomo", "preview")].counts["parked"] == 1
        assert status.throughput["8.3.2"] == 1
        assert [e.path for e in status.errors] == ["/inbox/b.h5"]
        resume_rule(url, "saxs")  # what it held is due at once
        with Journal(url) as journal:
            assert [i.key for i in journal.due()] == ["c", "d", "e"]
    finally:
        server.drop_database(url)


def test_a_catalog_without_a_database_is_refused_clearly():
    from spotkit.errors import CatalogError

    class Served:  # what open_catalog("http://...") returns: no database to read
        uri = "http://127.0.0.1:8000"

    with pytest.raises(CatalogError, match="spotkit serve"):
        flow_status(Served())
