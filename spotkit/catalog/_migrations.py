"""Migrations of the catalog's schema: ``MIGRATIONS[n](conn)`` upgrades version ``n`` to ``n + 1``.

:func:`spotkit.catalog._schema.connect` runs them in order, inside one transaction, when it
opens a catalog written by an older spotkit. PostgreSQL catalogs exist from schema version 5
on, so the migrations from version 5 on must work on both databases: use ``ALTER TABLE``
(and :func:`~spotkit.catalog._tables.run_ddl` for new tables), not SQLite's
``writable_schema``; :func:`loosen_check` does nothing on PostgreSQL.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from spotkit.catalog._backend import is_postgres
from spotkit.catalog._tables import (
    _PG_DOC_INDEX,
    _add_pg_doc,
    _create_extension_tables,
    _create_live_tables,
    _create_mark_tables,
    _create_replica_tables,
    _pg_search_indexes,
    table_exists,
)
from spotkit.errors import CatalogError

__all__ = ["MIGRATIONS", "loosen_check"]

logger = logging.getLogger(__name__)

#: ``MIGRATIONS[n](conn)`` upgrades a catalog from schema version ``n`` to ``n + 1``.
MIGRATIONS: dict[int, Callable[[Any], None]] = {}


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

def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """Add the flow journal and its leases (now created by :mod:`spotkit.flows` itself).

    Only new tables: nothing existing changes, so an older catalog keeps all its rows.
    """
    _create_extension_tables(conn)


MIGRATIONS[2] = _v2_to_v3

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

def loosen_check(conn: Any, table: str, old: str, new: str) -> None:
    """Replace a CHECK constraint by a looser one in place (no row is copied).

    SQLite's documented procedure for loosening a CHECK constraint
    (https://www.sqlite.org/lang_altertable.html#otheralter); the schema cookie is bumped
    so every other open connection reloads the schema. Nothing to do on PostgreSQL: its
    tables were created with the current constraints (schema version 5 on).
    """
    if is_postgres(conn):
        return
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


def _v5_to_v6(conn: Any) -> None:
    """PostgreSQL's free-text index splits words as SQLite's FTS5 does (``bone-0421`` is
    ``bone`` and ``0421``, not ``bone`` and the number ``-0421``): every dataset's document
    is indexed again. Nothing changes in a SQLite catalog (FTS5 always did)."""
    if not is_postgres(conn):
        return
    import json

    from spotkit.catalog._common import _fts_document

    rows = conn.execute("SELECT seq, title, sample, proposal, beamline, metadata "
                        "FROM datasets").fetchall()
    docs = [(_fts_document(r[1:5], json.loads(r[5]) if r[5] else None), r[0]) for r in rows]
    conn.executemany("UPDATE datasets_fts SET doc = to_tsvector('simple', ?) WHERE seq = ?",
                     docs)
    logger.info("indexed the free text of %d datasets again", len(docs))


MIGRATIONS[5] = _v5_to_v6


def _v6_to_v7(conn: Any) -> None:
    """PostgreSQL keeps each dataset's ``tsvector`` on its ``datasets`` row (column
    ``doc``, GIN-indexed) instead of a separate ``datasets_fts`` table, so a free-text
    search sorted by start time reads one row per candidate, not a second table by key.
    The documents are moved as they are (no text is parsed again); ``datasets_fts`` is
    dropped. The (field, start_time) indexes end in ``seq`` (as SQLite's end in the
    rowid), so a page is chosen in order from an index alone. Nothing changes in a SQLite
    catalog (FTS5 stays).

    On a large catalog this rewrites every row once (minutes per million datasets).
    """
    if not is_postgres(conn):
        return
    _pg_search_indexes(conn)
    _add_pg_doc(conn)
    if table_exists(conn, "datasets_fts"):
        moved = conn.execute("UPDATE datasets d SET doc = f.doc FROM datasets_fts f "
                             "WHERE f.seq = d.seq").rowcount
        conn.execute("DROP TABLE datasets_fts")
        logger.info("moved the free-text documents of %d datasets onto their rows", moved)
    conn.execute(_PG_DOC_INDEX)


MIGRATIONS[6] = _v6_to_v7


def _v7_to_v8(conn: Any) -> None:
    """The live store: ``live_points`` (a series' per-frame features, changes, fits and
    decisions while it is written) and ``live_status`` (how far ``spotkit live`` is).

    Only new tables, on both databases: existing rows are kept as they are.
    """
    _create_live_tables(conn)


MIGRATIONS[7] = _v7_to_v8
