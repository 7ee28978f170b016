"""The catalog's SQLite schema, connection settings and migrations.

One database file holds everything. It is opened in WAL mode with a busy timeout, so a
watcher process and a notebook can use it at once (one writer at a time, readers never
blocked); foreign keys are enforced. Timestamps are UTC epoch seconds (REAL).

Migrations: ``schema_version`` holds the version a file was written with. Opening a file
with an older version runs the functions in :data:`MIGRATIONS` in order (``MIGRATIONS[n]``
upgrades version ``n`` to ``n + 1``) inside one transaction; a file with a newer version is
refused, so an old spotkit never damages a catalog a newer one wrote.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

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
    "write_transaction",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 5  #: version of the schema this spotkit writes
BUSY_TIMEOUT_MS = 30_000  #: how long a writer waits for another process's write lock
CACHE_KIB = 65_536  #: page cache per connection (SQLite's default is 2 MiB)

#: ``MIGRATIONS[n](conn)`` upgrades a catalog from schema version ``n`` to ``n + 1``.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}

_RUN_STATES_V1 = "CHECK (state IN ('running', 'completed', 'failed'))"
_RUN_STATES_V2 = "CHECK (state IN ('queued', 'running', 'completed', 'failed', 'cancelled'))"


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Runs may also be ``'queued'`` (submitted to a batch scheduler) and ``'cancelled'``.

    Only a CHECK constraint becomes looser, so the table definition is edited in place, the
    procedure SQLite documents for removing or loosening a CHECK constraint
    (https://www.sqlite.org/lang_altertable.html#otheralter): no row is copied, and the
    foreign keys that point at ``runs`` stay as they are. The schema cookie is bumped so
    every other open connection reloads the schema.
    """
    (sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
    ).fetchone()
    if _RUN_STATES_V2 in sql:
        return
    if _RUN_STATES_V1 not in sql:
        raise CatalogError(f"unexpected definition of table runs, cannot migrate it: {sql}")
    cookie = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'runs'",
            (sql.replace(_RUN_STATES_V1, _RUN_STATES_V2),),
        )
        conn.execute(f"PRAGMA schema_version = {int(cookie) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    problems = conn.execute("PRAGMA integrity_check").fetchall()
    if problems != [("ok",)]:
        raise CatalogError(f"catalog integrity check failed after migrating runs: {problems}")


MIGRATIONS[1] = _v1_to_v2

# Tables that other parts of spotkit keep in the catalog database (the flow journal): they
# register their statements here (:func:`register_tables`), and the catalog creates them
# with its own tables and in the migration that introduced them.
_EXTENSIONS: dict[str, Callable[[sqlite3.Connection], None]] = {}


def register_tables(name: str, create: Callable[[sqlite3.Connection], None]) -> None:
    """Let a part of spotkit keep tables in the catalog database.

    ``create(conn)`` must be idempotent (``CREATE TABLE IF NOT EXISTS``...) and bring its
    tables up to date; it runs inside the catalog's schema transaction when a file is
    created or migrated, and whenever the part opens the database itself.

    Parameters
    ----------
    name : str
        Who owns the tables (``"flows"``).
    create : callable
        ``create(conn) -> None``.
    """
    _EXTENSIONS[name] = create


def _create_extension_tables(conn: sqlite3.Connection) -> None:
    for create in _EXTENSIONS.values():
        create(conn)


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """Add the flow journal and its leases (now created by :mod:`spotkit.flows` itself).

    Only new tables: nothing existing changes, so an older catalog keeps all its rows.
    """
    _create_extension_tables(conn)


MIGRATIONS[2] = _v2_to_v3

# Frame marks (spotkit.change): which frames of a series are "of interest" and which are
# "redundant". A mark is advice to the storage and transfer rules; spotkit never deletes a
# frame because of it.
_MARK_TABLES = """
CREATE TABLE IF NOT EXISTS frame_marks (
    dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    frame      INTEGER NOT NULL CHECK (frame >= 0),
    label      TEXT NOT NULL CHECK (label IN ('of interest', 'redundant')),
    reason     TEXT,
    run_id     TEXT REFERENCES runs(id),
    marked_at  REAL NOT NULL,
    PRIMARY KEY (dataset_id, frame)
);
CREATE INDEX IF NOT EXISTS frame_marks_label ON frame_marks (dataset_id, label);
"""


def _create_mark_tables(conn: sqlite3.Connection) -> None:
    for statement in _MARK_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v3_to_v4(conn: sqlite3.Connection) -> None:
    """Runs get a ``context`` (why they ran: the flow rule, its version, the watcher), and
    frames of a series can be marked ``of interest`` / ``redundant`` (``frame_marks``).

    A column with a constant default and a new table: existing rows are kept as they are.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    if "context" not in columns:
        conn.execute("ALTER TABLE runs ADD COLUMN context TEXT NOT NULL DEFAULT '{}'")
    _create_mark_tables(conn)


MIGRATIONS[3] = _v3_to_v4

# Replicas (copies) of a dataset's files: the catalog's ``files.path`` is where a file was
# registered (the inbox); each verified copy elsewhere (the warehouse, NERSC, tape) is a
# row here, with its verification state, so readers can use the best verified one and the
# inbox copy can be cleaned up without breaking the catalog.
_REPLICA_TABLES = """
CREATE TABLE IF NOT EXISTS replicas (
    file_id     INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    location    TEXT NOT NULL,
    path        TEXT NOT NULL,
    state       TEXT NOT NULL
                CHECK (state IN ('verified', 'unverified', 'missing', 'removed')),
    rank        INTEGER NOT NULL DEFAULT 0,
    verified_at REAL,
    manifest_id TEXT,
    detail      TEXT,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (file_id, location)
);
CREATE INDEX IF NOT EXISTS replicas_location ON replicas (location, state);
"""


def _create_replica_tables(conn: sqlite3.Connection) -> None:
    for statement in _REPLICA_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)


def loosen_check(conn: sqlite3.Connection, table: str, old: str, new: str) -> None:
    """Replace a CHECK constraint by a looser one in place (no row is copied).

    SQLite's documented procedure for loosening a CHECK constraint
    (https://www.sqlite.org/lang_altertable.html#otheralter); the schema cookie is bumped
    so every other open connection reloads the schema.
    """
    (sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if " ".join(new.split()) in " ".join(sql.split()):
        return
    flat = " ".join(sql.split())
    if " ".join(old.split()) not in flat:
        raise CatalogError(f"unexpected definition of table {table}, cannot migrate it: {sql}")
    cookie = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
            (flat.replace(" ".join(old.split()), new), table),
        )
        conn.execute(f"PRAGMA schema_version = {int(cookie) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    problems = conn.execute("PRAGMA integrity_check").fetchall()
    if problems != [("ok",)]:
        raise CatalogError(f"catalog integrity check failed after migrating {table}: {problems}")


def _v4_to_v5(conn: sqlite3.Connection) -> None:
    """Files get replicas (``replicas``), and flow items may be ``superseded`` (a good copy
    of the same file was processed) or ``forgotten`` (an operator said so, with a reason).

    A new table and a looser CHECK constraint: existing rows are kept as they are.
    """
    _create_replica_tables(conn)
    _create_extension_tables(conn)  # the flow journal loosens its own CHECK


MIGRATIONS[4] = _v4_to_v5

# ``datasets.id`` is the key every other table refers to. ``seq`` is only the rowid, made
# explicit so that VACUUM never renumbers it: the FTS index is keyed by it.
_TABLES = """
CREATE TABLE IF NOT EXISTS datasets (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    beamline    TEXT,
    sample      TEXT,
    proposal    TEXT,
    title       TEXT,
    start_time  REAL,
    end_time    REAL,
    ingested_at REAL NOT NULL,
    status      TEXT NOT NULL DEFAULT 'raw',
    run_id      TEXT REFERENCES runs(id),
    metadata    TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS files (
    id          INTEGER PRIMARY KEY,
    dataset_id  TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    role        TEXT NOT NULL,
    size        INTEGER,
    sha256      TEXT,
    format      TEXT,
    key         TEXT,
    UNIQUE (path, dataset_id)
);
CREATE TABLE IF NOT EXISTS runs (
    id              TEXT PRIMARY KEY,
    dataset_id      TEXT NOT NULL REFERENCES datasets(id),
    notebook        TEXT NOT NULL,
    notebook_sha256 TEXT,
    parameters      TEXT NOT NULL DEFAULT '{}',
    target          TEXT NOT NULL DEFAULT 'local',
    state           TEXT NOT NULL
                    CHECK (state IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    started_at      REAL NOT NULL,
    ended_at        REAL,
    output_notebook TEXT,
    error_cell      INTEGER,
    error_name      TEXT,
    error_message   TEXT,
    versions        TEXT NOT NULL DEFAULT '{}',
    job_id          TEXT,
    context         TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS lineage (
    child_id  TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    parent_id TEXT NOT NULL REFERENCES datasets(id),
    run_id    TEXT REFERENCES runs(id),
    PRIMARY KEY (child_id, parent_id)
);
"""

# Composite (field, start_time) indexes answer "field = ? ORDER BY start_time DESC LIMIT n"
# by walking one index range backwards; the rowid at the end of each entry breaks ties.
# (beamline, kind, start_time) serves the portal's usual "tomo scans at 8.3.2 this year".
_INDEXES = """
CREATE INDEX IF NOT EXISTS datasets_start ON datasets (start_time);
CREATE INDEX IF NOT EXISTS datasets_beamline_start ON datasets (beamline, start_time);
CREATE INDEX IF NOT EXISTS datasets_beamline_kind_start ON datasets (beamline, kind, start_time);
CREATE INDEX IF NOT EXISTS datasets_sample_start ON datasets (sample, start_time);
CREATE INDEX IF NOT EXISTS datasets_proposal_start ON datasets (proposal, start_time);
CREATE INDEX IF NOT EXISTS datasets_kind_start ON datasets (kind, start_time);
CREATE INDEX IF NOT EXISTS datasets_status_start ON datasets (status, start_time);
CREATE INDEX IF NOT EXISTS datasets_run ON datasets (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS files_dataset ON files (dataset_id);
CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256);
CREATE INDEX IF NOT EXISTS runs_dataset ON runs (dataset_id, started_at);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state, started_at);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS lineage_parent ON lineage (parent_id);
CREATE INDEX IF NOT EXISTS lineage_run ON lineage (run_id);
"""

# Free text over title, sample, proposal, beamline and the metadata values; its rowid is
# ``datasets.seq``. Written by the catalog in the same transaction as the dataset.
_FTS = """
CREATE VIRTUAL TABLE IF NOT EXISTS datasets_fts USING fts5 (
    title, sample, proposal, beamline, meta, tokenize = 'unicode61 remove_diacritics 2'
);
"""


def fts5_available() -> bool:
    """Return whether this Python's SQLite was built with the FTS5 extension."""
    try:
        with sqlite3.connect(":memory:") as conn:
            conn.execute("CREATE VIRTUAL TABLE probe USING fts5 (a)")
    except sqlite3.OperationalError:
        return False
    return True


def _create(conn: sqlite3.Connection) -> None:
    for statement in (_TABLES + _INDEXES).split(";"):
        if statement.strip():
            conn.execute(statement)
    _create_mark_tables(conn)
    _create_replica_tables(conn)
    _create_extension_tables(conn)
    if fts5_available():
        conn.execute(_FTS)
    else:
        logger.warning(
            "this SQLite has no FTS5 extension: catalog text search falls back to LIKE "
            "(slow on large catalogs)"
        )


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new file or bring an older one up to :data:`SCHEMA_VERSION`."""
    if _version(conn) == SCHEMA_VERSION:  # the common case, without taking the write lock
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn)  # again, now that no other process can change it
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"catalog {path} has schema version {version}, newer than this spotkit "
                f"understands ({SCHEMA_VERSION}); upgrade spotkit to open it."
            )
        if version == 0:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER NOT NULL, applied_at REAL NOT NULL)"
            )
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


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating or migrating if needed) the catalog database at ``path``.

    The connection is in autocommit mode (``isolation_level=None``): the catalog opens
    every write transaction itself with ``BEGIN IMMEDIATE``, so a writer waits for the
    lock up front instead of failing half-way.

    Parameters
    ----------
    path : pathlib.Path
        The database file; its directory is created if needed.

    Returns
    -------
    sqlite3.Connection

    Raises
    ------
    spotkit.errors.CatalogError
        If the file cannot be opened, is not a SQLite database, or has a newer schema.
    """
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
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise CatalogError(
            f"cannot open catalog {path}: {exc}. Is it a spotkit catalog (SQLite file)?"
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def write_transaction(
    conn: sqlite3.Connection, path, action: str, *, when_locked: str
) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction: everything inside commits together or not at all.

    Parameters
    ----------
    conn : sqlite3.Connection
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
        When the write lock cannot be taken, or an SQLite error rolled the transaction back.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise CatalogError(
            f"{action}: cannot lock catalog {path} for writing ({exc}); {when_locked}"
        ) from exc
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise CatalogError(f"{action} failed and nothing was written: {exc}") from exc
        raise
