"""The flow journal: idempotent discovery, step records, leases, failures, the migration.

``db`` is parametrised: each test that uses it runs on a SQLite catalog file and on a fresh
database of a real PostgreSQL server (tests/_postgres.py; skipped, saying why, where
PostgreSQL is not installed).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from spotkit.catalog import SCHEMA_VERSION, open_catalog
from spotkit.flows import Journal

sys.path.insert(0, str(Path(__file__).parents[1]))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        path = tmp_path / "catalog.db"
        open_catalog(path).close()
        yield path
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database("journal")
    open_catalog(url).close()
    yield url
    server.drop_database(url)


def _tables(db) -> set[str]:
    if isinstance(db, str):
        import psycopg

        with psycopg.connect(db) as conn:
            return {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}


def _discover(journal, key="k1", path="/inbox/a.h5"):
    return journal.discover(key, path, size=10, mtime_ns=5, inbox="/inbox", kind="tomo/raw")


def test_discover_is_idempotent(db):
    with Journal(db) as journal:
        assert _discover(journal) is True
        assert _discover(journal) is False
        items = journal.items()
        assert [i.key for i in items] == ["k1"]
        assert items[0].state == "pending"
        assert journal.is_done("k1", "discovered")
        assert journal.due()[0].key == "k1"


def test_step_records_timing_size_attempts(db):
    with Journal(db) as journal:
        _discover(journal)
        rec = journal.start_step("k1", "ingested")
        assert rec.state == "running"
        assert rec.attempts == 1
        journal.finish_step("k1", "ingested", state="failed", error="boom")
        rec = journal.start_step("k1", "ingested")
        assert rec.attempts == 2
        journal.finish_step("k1", "ingested", seconds=0.5, nbytes=10, result={"dataset_id": "x"})
        rec = journal.step("k1", "ingested")
        assert rec.state == "done"
        assert rec.seconds == 0.5
        assert rec.bytes == 10
        assert rec.result == {"dataset_id": "x"}
        assert rec.last_error is None
        assert journal.item("k1").state == "running"
        assert [s.step for s in journal.steps("k1")] == ["discovered", "ingested"]


def test_failures_back_off_and_park(db):
    with Journal(db) as journal:
        _discover(journal)
        journal.record_failure("k1", "outage", retry_in=60, count=False)
        item = journal.item("k1")
        assert item.state == "failed"
        assert item.attempts == 0
        assert journal.due() == []  # not before the backoff has passed
        journal.record_failure("k1", "bad notebook", park=True)
        item = journal.item("k1")
        assert item.state == "parked"
        assert item.attempts == 1
        assert item.last_error == "bad notebook"
        summary = journal.summary()
        assert summary["parked"][0]["error"] == "bad notebook"
        assert summary["counts"]["?"]["parked"] == 1


def test_update_item_validates(db):
    with Journal(db) as journal:
        _discover(journal)
        journal.update_item("k1", dataset_id="ds-1", beamline="8.3.2")
        assert journal.item("k1").beamline == "8.3.2"
        with pytest.raises(ValueError, match="unknown journal fields"):
            journal.update_item("k1", path="/x")
        with pytest.raises(ValueError, match="unknown state"):
            journal.update_item("k1", state="nearly")


def test_lease_is_exclusive_between_live_owners(db):
    a = Journal(db, owner=None)
    b = Journal(db)
    try:
        _discover(a)
        assert a.acquire("k1") is True
        assert a.acquire("k1") is True  # renewal
        assert b.acquire("k1") is False
        assert b.lease_owner("k1") == a.owner
        a.release("k1")
        assert b.acquire("k1") is True
        assert a.acquire("k1") is False
    finally:
        a.close()
        b.close()


def test_lease_of_dead_process_or_expired_is_taken_over(db):
    # a lease held by a process that no longer exists on this host
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    import socket

    dead = f"{socket.gethostname()}:{int(proc.stdout)}:dead0000"
    with Journal(db, owner=dead) as ghost:
        _discover(ghost)
        assert ghost.acquire("k1")
    with Journal(db) as journal:
        assert journal.acquire("k1") is True
    # an expired lease of another host
    with Journal(db, owner="elsewhere:1:abcd", lease_seconds=-1) as remote:
        _discover(remote, key="k2", path="/inbox/b.h5")
        assert remote.acquire("k2")
    with Journal(db) as journal:
        assert journal.acquire("k2") is True
    # a live lease of another host is respected
    with Journal(db, owner="elsewhere:1:abcd", lease_seconds=600) as remote:
        _discover(remote, key="k3", path="/inbox/c.h5")
        assert remote.acquire("k3")
    with Journal(db) as journal:
        assert journal.acquire("k3") is False


def test_lease_race_has_one_winner(db):
    with Journal(db) as setup:
        _discover(setup)
    journals = [Journal(db) for _ in range(6)]
    results = []
    barrier = threading.Barrier(len(journals))

    def take(j):
        barrier.wait()
        results.append(j.acquire("k1"))

    threads = [threading.Thread(target=take, args=(j,)) for j in journals]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for j in journals:
        j.close()
    assert sorted(results) == [False] * 5 + [True]


def test_migration_adds_journal_tables_to_a_version_2_catalog(tmp_path):
    path = tmp_path / "old.db"
    open_catalog(path).close()
    conn = sqlite3.connect(path)
    for table in ("flow_steps", "flow_leases", "flow_items"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version VALUES (2, 0)")
    conn.commit()
    conn.close()
    open_catalog(path).close()  # migrates
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"flow_items", "flow_steps", "flow_leases", "datasets", "runs"} <= names
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    with Journal(path) as journal:
        assert _discover(journal)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request, tmp_path):
    """A location with no catalog yet: a file path, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "cat.db"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database("bare")
    yield url
    server.drop_database(url)


def test_the_journal_creates_its_own_tables_in_a_catalog_made_without_it(empty_db, tmp_path):
    """The catalog schema does not define the flow's tables: the journal brings them."""
    db = empty_db
    code = ("import sys; from spotkit.catalog import open_catalog; open_catalog(sys.argv[1]); "
            "assert 'spotkit.flows' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(db)], check=True)
    names = _tables(db)
    assert "datasets" in names
    assert "flow_items" not in names
    with Journal(db) as journal:
        assert journal.discover("k", tmp_path / "a.h5", size=1, mtime_ns=1)
        assert journal.forget("k", reason="test", by="me").state == "forgotten"


# One watcher's loop over the journal, as the flow does it: lease, check the step's own
# record, do the work, record it, release. Run as separate processes with owners on two
# different "hosts", so only the lease (not a dead-pid check) keeps them apart.
_WATCHER = textwrap.dedent("""
    import json, sys, time
    from spotkit.flows import Journal
    db, host, out = sys.argv[1], sys.argv[2], sys.argv[3]
    done = []
    with Journal(db, owner=f"{host}:1:tok", lease_seconds=60) as journal:
        while True:
            due = journal.due()
            if not due:
                break
            for item in due:
                if not journal.acquire(item.key):
                    continue
                try:
                    if journal.is_done(item.key, "processed/x"):
                        continue
                    journal.start_step(item.key, "processed/x")
                    time.sleep(0.002)
                    journal.finish_step(item.key, "processed/x", result={"by": host})
                    journal.update_item(item.key, state="done")
                    done.append(item.key)
                finally:
                    journal.release(item.key)
            time.sleep(0.01)
    with open(out, "w") as f:
        json.dump(done, f)
""")


def test_two_watchers_on_two_hosts_share_the_work_exactly_once(db, tmp_path):
    n = 40
    with Journal(db) as setup:
        for i in range(n):
            setup.discover(f"k{i:02d}", f"/inbox/{i}.h5", size=1, mtime_ns=1)
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [subprocess.Popen([sys.executable, "-c", _WATCHER, str(db), host, str(out)])
             for host, out in zip(("hostA", "hostB"), outs, strict=True)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    a, b = (json.loads(out.read_text()) for out in outs)
    assert not set(a) & set(b)
    assert sorted(a + b) == [f"k{i:02d}" for i in range(n)]
    with Journal(db) as journal:
        steps = [s for s in journal.steps() if s.step == "processed/x"]
        assert len(steps) == n
        assert all(s.attempts == 1 and s.state == "done" for s in steps)
        assert {i.state for i in journal.items()} == {"done"}
        assert journal.lease_owner("k00") is None


def test_journal_on_postgresql_keeps_its_url(db):
    with Journal(db) as journal:
        assert str(journal.path) == str(db)
        if isinstance(db, str):
            assert journal.path == db  # a URL stays a URL (not a pathlib.Path)
        assert _discover(journal)
        with pytest.raises(Exception, match="not in the flow journal"):
            journal.find("/inbox/never.h5")
