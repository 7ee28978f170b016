"""Several Catalog objects on one file (a watcher and a notebook), schema versions."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from spotkit.catalog import SCHEMA_VERSION, _schema, open_catalog
from spotkit.errors import CatalogError


def test_two_catalogs_on_one_file_see_each_others_commits(catalog_url, tmp_path, reader, scans):
    db = catalog_url
    with open_catalog(db, reader=reader) as watcher, open_catalog(db, reader=reader) as notebook:
        ds = watcher.ingest(scans())
        assert ds.id in notebook
        assert notebook[ds.id] == ds
        run = notebook.start_run(
            dataset_id=ds.id, notebook=tmp_path / "nb.ipynb", notebook_sha256=None, parameters={}
        )
        assert watcher.get_run(run).state == "running"
        notebook.finish_run(run, state="completed")
        assert watcher.runs(state="completed")[0].id == run
        assert len(watcher) == len(notebook) == 1
    if not isinstance(db, str):
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_writers_do_not_lose_datasets(catalog_url, reader, scans):
    db = catalog_url
    paths = [scans(sample=f"s{i}") for i in range(40)]
    cats = [open_catalog(db, reader=reader) for _ in range(2)]
    errors = []

    def work(cat, mine):
        try:
            for path in mine:
                cat.ingest(path)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c, paths[i::2])) for i, c in enumerate(cats)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cats[0]) == 40
    assert cats[1].search(limit=None).total == 40
    for c in cats:
        c.close()


def test_pragmas_and_schema_version(tmp_path):
    with open_catalog(tmp_path / "c.db") as cat:
        conn = cat._conn
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == _schema.BUSY_TIMEOUT_MS
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == (
            SCHEMA_VERSION
        )


def test_migration_hook_runs_for_older_files(tmp_path, monkeypatch):
    db = tmp_path / "old.db"
    open_catalog(db).close()
    calls = []

    def to_next(conn):
        calls.append(SCHEMA_VERSION)
        conn.execute("ALTER TABLE datasets ADD COLUMN note TEXT")

    monkeypatch.setattr(_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(_schema, "MIGRATIONS", {SCHEMA_VERSION: to_next})
    with open_catalog(db) as cat:
        cols = [r[1] for r in cat._conn.execute("PRAGMA table_info(datasets)")]
        assert "note" in cols
    open_catalog(db).close()  # already migrated: the hook does not run again
    assert calls == [SCHEMA_VERSION]


def test_newer_or_unmigratable_schema_is_refused(tmp_path, monkeypatch):
    db = tmp_path / "new.db"
    open_catalog(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 5,))
    with pytest.raises(CatalogError, match="newer"):
        open_catalog(db)
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 9)
    with pytest.raises(CatalogError, match="no migration"):
        open_catalog(db)


def test_not_a_database_and_default_location(tmp_path, monkeypatch):
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match=r"junk\.db"):
        open_catalog(bad)
    with pytest.raises(CatalogError, match="SQLite file path or a postgresql://"):
        open_catalog("mysql://host/db")
    with pytest.raises(CatalogError, match=r"cannot connect to catalog postgresql://u:\*\*\*@"
                                           r"127\.0\.0\.1:1/db") as err:
        open_catalog("postgresql://u:secret@127.0.0.1:1/db")  # nothing listens on port 1
    assert "secret" not in str(err.value)
    monkeypatch.setenv("SPOTKIT_CATALOG", str(tmp_path / "env" / "cat.db"))
    with open_catalog() as cat:
        assert cat.path == tmp_path / "env" / "cat.db"
        assert cat.path.exists()
