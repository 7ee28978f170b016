"""The catalog's connection: settings, creating the schema and bringing it up to date.

One database holds everything: by default a SQLite file; or a PostgreSQL database named
by a ``postgresql://`` URL (see :mod:`spotkit.catalog._backend` for how one code path
serves both). On SQLite, the file It is opened in WAL mode with a busy timeout, so a
watcher process and a notebook can use it at once (one writer at a time, readers never
blocked); foreign keys are enforced. Timestamps are UTC epoch seconds (REAL).

Migrations: ``schema_version`` holds the version a file was written with. Opening a file
with an older version runs the functions in :data:`MIGRATIONS` in order (``MIGRATIONS[n]``
upgrades version ``n`` to ``n + 1``) inside one transaction; a file with a newer version is
refused, so an old spotkit never damages a catalog a newer one wrote.

The tables' statements live in :mod:`spotkit.catalog._tables` (on PostgreSQL the same
statements are run with the types translated by :func:`run_ddl`, and a ``tsvector`` column
on ``datasets`` with a GIN index replaces FTS5); the migrations live in
:mod:`spotkit.catalog._migrations`. Their public names are re-exported here, and
:func:`_migrate` looks :data:`MIGRATIONS` and :data:`SCHEMA_VERSION` up in this module.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spotkit.backoff import Backoff
from spotkit.catalog import _backend
from spotkit.catalog._backend import PgConnection, database_errors, is_postgres
from spotkit.catalog._migrations import MIGRATIONS, loosen_check
from spotkit.catalog._tables import (
    _FTS,
    _INDEXES,
    _PG_DOC_INDEX,
    _TABLES,
    _add_pg_doc,
    _create_extension_tables,
    _create_live_tables,
    _create_mark_tables,
    _create_replica_tables,
    _postgres_ddl,  # noqa: F401 (re-exported: tests translate DDL with it)
    register_tables,
    run_ddl,
    table_exists,
)
from spotkit.catalog._time import now_epoch
from spotkit.errors import CatalogError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "connect",
    "fts5_available",
    "loosen_check",
    "register_tables",
    "run_ddl",
    "table_exists",
    "write_transaction",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 8  #: version of the schema this spotkit writes
BUSY_TIMEOUT_MS = 30_000  #: how long a writer waits for another process's write lock
CACHE_KIB = 65_536  #: page cache per connection (SQLite's default is 2 MiB)

#: a connection of either database (the adapter offers what the catalog uses of sqlite3's)
Connection = sqlite3.Connection | PgConnection


def fts5_available() -> bool:
    """Return whether this Python's SQLite was built with the FTS5 extension."""
    try:
        with sqlite3.connect(":memory:") as conn:
            conn.execute("CREATE VIRTUAL TABLE probe USING fts5 (a)")
    except sqlite3.OperationalError:
        return False
    return True


def _create(conn: Any) -> None:
    if is_postgres(conn):
        # datasets.run_id and runs.dataset_id refer to each other: PostgreSQL checks a
        # reference when the table is created, so datasets gets its one afterwards
        tables = _TABLES.replace("run_id      TEXT REFERENCES runs(id),", "run_id      TEXT,")
        run_ddl(conn, tables + _INDEXES)
        conn.execute("ALTER TABLE datasets ADD CONSTRAINT datasets_run_id_fkey "
                     "FOREIGN KEY (run_id) REFERENCES runs(id)")
        _create_mark_tables(conn)
        _create_replica_tables(conn)
        _create_live_tables(conn)
        _create_extension_tables(conn)
        _add_pg_doc(conn)
        conn.execute(_PG_DOC_INDEX)
        return
    for statement in (_TABLES + _INDEXES).split(";"):
        if statement.strip():
            conn.execute(statement)
    _create_mark_tables(conn)
    _create_replica_tables(conn)
    _create_live_tables(conn)
    _create_extension_tables(conn)
    if fts5_available():
        conn.execute(_FTS)
    else:
        logger.warning(
            "this SQLite has no FTS5 extension: catalog text search falls back to LIKE "
            "(slow on large catalogs)"
        )


def _version(conn: Any) -> int:
    if not table_exists(conn, "schema_version"):
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _begin_write(conn: Any) -> None:
    """Open a write transaction holding the catalog's write lock (one writer at a time)."""
    if is_postgres(conn):
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_backend.WRITE_LOCK,))
    else:
        conn.execute("BEGIN IMMEDIATE")


def _migrate(conn: Any, path: Path | str) -> None:
    """Create the schema in a new file or bring an older one up to :data:`SCHEMA_VERSION`."""
    path = _backend.display(path)
    if _version(conn) == SCHEMA_VERSION:  # the common case, without taking the write lock
        return
    _begin_write(conn)
    try:
        version = _version(conn)  # again, now that no other process can change it
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"catalog {path} has schema version {version}, newer than this spotkit "
                f"understands ({SCHEMA_VERSION}); upgrade spotkit to open it."
            )
        if version == 0:
            run_ddl(conn, "CREATE TABLE IF NOT EXISTS schema_version "
                          "(version INTEGER NOT NULL, applied_at REAL NOT NULL)")
            _create(conn)
            logger.info("created catalog %s (schema version %d)", path, SCHEMA_VERSION)
        else:
            for step in range(version, SCHEMA_VERSION):
                if step not in MIGRATIONS:
                    raise CatalogError(
                        f"catalog {path} has schema version {version} and spotkit has no "
                        f"migration from version {step}; export it with an older spotkit."
                    )
                logger.info("migrating catalog %s from schema %d to %d", path, step, step + 1)
                MIGRATIONS[step](conn)
        if version != SCHEMA_VERSION:
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (SCHEMA_VERSION, now_epoch()),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def connect(path: Path | str) -> Any:
    """Open (creating or migrating if needed) the catalog database at ``path``.

    ``path`` may also be a ``postgresql://user@host:port/dbname`` URL: then the connection
    is a :class:`~spotkit.catalog._backend.PgConnection` (psycopg 3, autocommit), the
    tables are created in that database if it has none, and nothing else changes.

    The connection is in autocommit mode (``isolation_level=None``): the catalog opens
    every write transaction itself with ``BEGIN IMMEDIATE``, so a writer waits for the
    lock up front instead of failing half-way.

    Parameters
    ----------
    path : pathlib.Path or str
        The database file (its directory is created if needed), or a PostgreSQL URL.

    Returns
    -------
    sqlite3.Connection or PgConnection

    Raises
    ------
    spotkit.errors.CatalogError
        If the file cannot be opened, is not a SQLite database, or has a newer schema; or
        the PostgreSQL server cannot be reached.
    """
    if _backend.is_url(path):
        url = _backend.normalise_url(path)
        pg = _backend.connect_postgres(url)
        try:
            _migrate(pg, url)
        except database_errors() as exc:
            if pg.in_transaction:
                pg.execute("ROLLBACK")
            pg.close()
            raise CatalogError(f"cannot open catalog {_backend.mask_url(url)}: {exc}") from exc
        except BaseException:
            pg.close()
            raise
        return pg
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise CatalogError(
            f"cannot open catalog {path}: {exc}. Check that the directory exists and is "
            "writable, or set SPOTKIT_CATALOG to another file."
        ) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _settle(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise CatalogError(
            f"cannot open catalog {path}: {exc}. Is it a spotkit catalog (SQLite file)?"
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _settle(conn: sqlite3.Connection, path: Path) -> None:
    """WAL mode, connection settings and the schema, waiting out other openers.

    Switching a new file to WAL, or reading its schema while another process creates it,
    can fail with "database is locked" at once, without SQLite's busy handler: that is
    retried (with growing pauses) for up to the busy timeout; other errors are not.
    """
    waits = Backoff(first=0.02, factor=2.0, maximum=1.0)
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    failures = 0
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                logger.warning(
                    "catalog %s is in %s journal mode, not WAL (network file system?); "
                    "concurrent readers may wait for writers",
                    path,
                    mode,
                )
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(conn, path)
            return
        except sqlite3.OperationalError as exc:
            locked = "locked" in str(exc) or "busy" in str(exc)
            failures += 1
            pause = waits.delay(failures)
            if not locked or time.monotonic() + pause > deadline:
                raise
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            time.sleep(pause)


@contextlib.contextmanager
def write_transaction(
    conn: Any, path, action: str, *, when_locked: str
) -> Iterator[Any]:
    """One ``BEGIN IMMEDIATE`` transaction: everything inside commits together or not at all.

    On PostgreSQL: ``BEGIN`` and the catalog's advisory write lock (the same one writer at
    a time, across hosts), waiting up to 30 s for it.

    Parameters
    ----------
    conn : sqlite3.Connection or PgConnection
        An autocommit connection from :func:`connect`.
    path : path-like
        The database, for messages.
    action : str
        What is being written, for messages.
    when_locked : str
        What the caller should do when the database stays locked (end of the message).

    Raises
    ------
    CatalogError
        When the write lock cannot be taken, or a database error rolled the transaction
        back.
    """
    path = _backend.display(path)
    errors = database_errors()
    try:
        _begin_write(conn)
    except errors as exc:
        if is_postgres(conn) and conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.OperationalError) or _backend.lock_not_available(exc):
            raise CatalogError(
                f"{action}: cannot lock catalog {path} for writing ({exc}); {when_locked}"
            ) from exc
        raise CatalogError(f"{action}: cannot write to catalog {path}: {exc}") from exc
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, errors + database_errors()):
            raise CatalogError(f"{action} failed and nothing was written: {exc}") from exc
        raise
