"""Where a catalog lives: the embedded SQLite file, or a PostgreSQL server (a URL).

Design: one code path for both databases
----------------------------------------
Every part of the catalog (and the flow journal) is written as plain SQL with ``?``
placeholders against a DB-API connection, and the SQL was tuned for SQLite (composite
indexes, ``INDEXED BY`` for one search, FTS5, ``BEGIN IMMEDIATE``). A PostgreSQL catalog
uses the very same statements through :class:`PgConnection`, a thin adapter over a
psycopg 3 connection that offers the few methods the catalog uses (``execute``,
``executemany``, ``in_transaction``, ``close``) and turns ``?`` into psycopg's ``%s``.
The few places where the two databases differ go through small, named functions (the
*dialect*): table DDL types (:func:`spotkit.catalog._schema.run_ddl`), free-text search
(FTS5 vs. ``tsvector``), wildcard matching (``GLOB`` vs. ``LIKE``/regex), the new row's key
(``lastrowid`` vs. ``RETURNING``), the write lock and the error classes.

Why not SQLAlchemy Core: rewriting ~100 hand-tuned statements as expression trees would
change every query of the SQLite default that laptops use today (and its measured search
times, benchmarks/RESULTS.md) for no gain in the SQL that actually runs; the statements
here are already portable except for the handful of dialect points above. The adapter
keeps the SQLite path byte-for-byte what it was (a plain :class:`sqlite3.Connection`), and
psycopg stays an optional extra (``pip install "spotkit[postgres]"``).

Concurrency on PostgreSQL: each write transaction first takes a transaction-scoped
advisory lock (:data:`WRITE_LOCK`), PostgreSQL's equivalent of SQLite's ``BEGIN
IMMEDIATE``: writers to one catalog database take turns (readers are never blocked, MVCC),
so the check-then-insert logic (ingest's idempotency, run state changes, journal leases)
means exactly what it means on SQLite, on any number of hosts. Unique constraints and
``ON CONFLICT`` upserts stay as a second line of defence. Statements run under READ
COMMITTED, so every statement after the lock sees all that earlier writers committed.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "WRITE_LOCK",
    "PgConnection",
    "database_errors",
    "is_postgres",
    "is_url",
    "mask_url",
    "normalise_url",
]

#: advisory lock key every catalog writer on PostgreSQL takes for its transaction (an
#: arbitrary constant, fixed forever: every spotkit version must use the same one)
WRITE_LOCK = 0x2F1C_5B0A_7D3E_4C21
#: how long a PostgreSQL writer waits for another's write lock (as SQLite's busy timeout)
LOCK_TIMEOUT_S = 30
#: a session that stalls inside a transaction (a frozen process, a host that vanished) is
#: ended by the server after this long, so it cannot hold the write lock for everyone
IDLE_IN_TRANSACTION_S = 60
#: the server probes an idle connection after this long (then every 10 s, 3 times), so a
#: dead host's session, and its lock, go within about a minute, not TCP's two hours
KEEPALIVE_IDLE_S = 30

_URL = re.compile(r"^(postgresql|postgres)(\+psycopg)?:/+", re.IGNORECASE)


def is_url(location: Any) -> bool:
    """Whether a catalog location is a PostgreSQL URL rather than a SQLite file path."""
    if isinstance(location, PgConnection):
        return True
    try:
        import os

        text = os.fspath(location)
    except TypeError:
        return False
    return isinstance(text, str) and bool(_URL.match(text))


def normalise_url(location: Any) -> str:
    """The URL as libpq takes it: ``postgresql://...``.

    Also repairs a URL that went through :class:`pathlib.Path` (which folds ``//`` into
    ``/``), and drops SQLAlchemy's ``+psycopg`` driver suffix.
    """
    import os

    text = os.fspath(location)
    match = _URL.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a postgresql:// URL")
    return "postgresql://" + text[match.end():]


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_LITERAL = re.compile(r"('(?:[^']|'')*')")


@functools.lru_cache(maxsize=1024)
def _to_psycopg(sql: str) -> str:
    """``?`` placeholders to ``%s``, outside string literals (``'?'`` stays a question
    mark); every literal ``%`` doubled, as psycopg reads the whole text."""
    parts = _LITERAL.split(sql.replace("%", "%%"))
    return "".join(part if i % 2 else part.replace("?", "%s") for i, part in enumerate(parts))


class PgConnection:
    """The part of :class:`sqlite3.Connection` the catalog uses, over a psycopg 3 connection.

    The connection is in autocommit mode, like the catalog's SQLite connections: write
    transactions are opened explicitly (:func:`spotkit.catalog.write_transaction`).
    """

    dialect = "postgresql"

    def __init__(self, raw: Any, url: str):
        self.raw = raw
        self.url = url

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.raw.execute(_to_psycopg(sql), tuple(params))

    def executemany(self, sql: str, rows: Any) -> Any:
        rows = [tuple(r) for r in rows]
        cursor = self.raw.cursor()
        if rows:
            cursor.executemany(_to_psycopg(sql), rows)
        return cursor

    @property
    def broken(self) -> bool:
        """Whether the connection was lost (server restart, network): reconnect then."""
        return bool(self.raw.broken or self.raw.closed)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        if self.broken:  # the server ended the session, and its transaction with it
            return False
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()

    def __repr__(self) -> str:
        return f"<PgConnection {mask_url(self.url)}>"


def is_postgres(conn: Any) -> bool:
    """Whether a catalog connection is a PostgreSQL one (else it is SQLite)."""
    return isinstance(conn, PgConnection)


def database_errors() -> tuple[type[Exception], ...]:
    """The exception classes a database call may raise: sqlite3's, and psycopg's once a
    PostgreSQL catalog was opened (psycopg is never imported for a SQLite catalog)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def lock_not_available(exc: BaseException) -> bool:
    """Whether a PostgreSQL error says the write lock could not be taken in time."""
    errors = sys.modules.get("psycopg.errors")
    return errors is not None and isinstance(exc, errors.LockNotAvailable)


def connect_postgres(url: str) -> PgConnection:
    """Connect to a PostgreSQL catalog (autocommit, lock timeout as SQLite's busy timeout).

    Raises
    ------
    spotkit.errors.CatalogError
        If psycopg is not installed, or the server cannot be reached or refuses the login.
    """
    from spotkit.errors import CatalogError

    try:
        import psycopg
    except ImportError:
        raise CatalogError(
            f"catalog {mask_url(url)} is on PostgreSQL, which needs the psycopg driver: "
            'pip install "spotkit[postgres]" (or "psycopg[binary]")'
        ) from None
    try:
        raw = psycopg.connect(url, autocommit=True, application_name="spotkit",
                              connect_timeout=30)
        for setting, value in (("jit", "off"), ("lock_timeout", f"{LOCK_TIMEOUT_S}s"),
                               ("idle_in_transaction_session_timeout",
                                f"{IDLE_IN_TRANSACTION_S}s"),
                               ("tcp_keepalives_idle", str(KEEPALIVE_IDLE_S)),
                               ("tcp_keepalives_interval", "10"),
                               ("tcp_keepalives_count", "3")):
            raw.execute(f"SET {setting} = '{value}'")
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatalogError(
            f"cannot connect to catalog {mask_url(url)}: {detail}. Check that the server "
            "runs and the URL (host, port, database, user) is right; give a password with "
            "PGPASSWORD or ~/.pgpass rather than in the URL."
        ) from None
    return PgConnection(raw, url)


def display(location: Path | str) -> str:
    """A catalog location for messages: the file, or the URL without its password."""
    return mask_url(location) if isinstance(location, str) and is_url(location) else str(location)
