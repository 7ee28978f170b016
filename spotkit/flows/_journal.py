"""The flow journal: what happened to each dataset the watcher found, kept in the catalog DB.

Every dataset the watcher finds gets one row in ``flow_items``, keyed by an idempotency key
(path, size and mtime of the raw file), and one row per step of its path in ``flow_steps``
(``discovered``, ``ingested``, ``manifested``, ``transferred``, ``verified``,
``processed/<action>``, ``done``) with its state, attempts, last error, timing and size.
``flow_leases`` holds who works on a dataset now: a lease (owner ``host:pid:token`` and an
expiry) taken in one write transaction, so two watchers on one inbox never process the
same dataset at once. A lease whose owner process is gone (same host, dead pid) or whose
expiry has passed can be taken over.

On PostgreSQL (the catalog given as a ``postgresql://`` URL) the tables live in the catalog's
database and the same statements run there; a lease is taken in a write transaction that
holds the catalog's advisory write lock (see :mod:`spotkit.catalog._backend`), so watchers on
different hosts take turns exactly as watchers on one host do with SQLite's ``BEGIN
IMMEDIATE``: of two watchers asking for the same dataset, one gets it. (A ``SELECT ... FOR
UPDATE SKIP LOCKED`` queue would let writers run in parallel; with one short transaction
per lease it is not needed, and it would give the two backends different semantics.)

The journal only records; exactly-once comes from each step being either idempotent by
construction (ingest, transfer of verified files) or checked against its own effect in
the catalog before it is redone (a notebook run that completed is adopted, not re-run).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotkit.catalog import (
    connect_database,
    database_errors,
    loosen_check,
    mask_url,
    register_tables,
    run_ddl,
    table_exists,
    write_transaction,
)
from spotkit.errors import CatalogError, FlowError

__all__ = ["FINAL_STATES", "STATES", "STEPS", "Item", "Journal", "StepRecord", "make_owner"]

logger = logging.getLogger(__name__)

STATES = ("pending", "running", "done", "failed", "parked", "superseded", "forgotten")
#: states no watcher works on: finished, set aside by an operator, or replaced by a good copy
FINAL_STATES = ("done", "superseded", "forgotten")
#: the fixed steps, in order; ``processed/<action>`` steps come between verified and done
STEPS = ("discovered", "ingested", "manifested", "transferred", "verified", "done")


# The journal's tables, kept in the catalog database: one row per dataset the watcher
# found, keyed by an idempotency key (path, size, mtime), one row per step of its path, and
# the leases that keep two watchers from working on the same dataset at once.
_FLOW_TABLES = """
CREATE TABLE IF NOT EXISTS flow_items (
    key           TEXT PRIMARY KEY,
    path          TEXT NOT NULL,
    inbox         TEXT,
    size          INTEGER NOT NULL,
    mtime_ns      INTEGER NOT NULL,
    dataset_id    TEXT,
    beamline      TEXT,
    kind          TEXT,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'failed', 'parked',
                                   'superseded', 'forgotten')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  REAL NOT NULL DEFAULT 0,
    last_error    TEXT,
    discovered_at REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS flow_steps (
    key        TEXT NOT NULL REFERENCES flow_items(key) ON DELETE CASCADE,
    step       TEXT NOT NULL,
    state      TEXT NOT NULL
               CHECK (state IN ('pending', 'running', 'done', 'failed', 'parked')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    ended_at   REAL,
    seconds    REAL,
    bytes      INTEGER,
    last_error TEXT,
    result     TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (key, step)
);
CREATE TABLE IF NOT EXISTS flow_leases (
    key      TEXT PRIMARY KEY,
    owner    TEXT NOT NULL,
    expires  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS flow_items_state ON flow_items (state, next_attempt);
CREATE INDEX IF NOT EXISTS flow_items_path ON flow_items (path);
CREATE INDEX IF NOT EXISTS flow_items_dataset ON flow_items (dataset_id);
"""


_STATES_V3 = "CHECK (state IN ('pending', 'running', 'done', 'failed', 'parked'))"
_STATES_V5 = ("CHECK (state IN ('pending', 'running', 'done', 'failed', 'parked',\n"
              "                                   'superseded', 'forgotten'))")


def _tables_current(conn: Any) -> bool:
    if getattr(conn, "dialect", "sqlite") == "postgresql":  # created current (schema 5 on)
        return table_exists(conn, "flow_items")
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'flow_items'").fetchone()
    return row is not None and "'forgotten'" in row[0]


def _create_tables(conn: Any) -> None:
    """Create the journal's tables, or bring them up to date (idempotent)."""
    if _tables_current(conn):
        return
    run_ddl(conn, _FLOW_TABLES)
    # catalogs written before schema 5: items may now be 'superseded' or 'forgotten'
    loosen_check(conn, "flow_items", _STATES_V3, _STATES_V5)


# the catalog creates them with its own tables (and in the migration that added them)
register_tables("flows", _create_tables)


def _login() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name in some containers
        return f"uid {os.getuid()}"


def make_owner() -> str:
    """A lease owner name for this process: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_alive(owner: str) -> bool:
    """Whether the process named by a lease owner may still be running."""
    try:
        host, pid, _token = owner.rsplit(":", 2)
        pid_int = int(pid)
    except ValueError:
        return True
    if host != socket.gethostname():
        return True  # cannot tell from here: wait for the expiry
    if pid_int == os.getpid():
        return True
    try:
        os.kill(pid_int, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class StepRecord:
    """One step of one dataset, as the journal holds it."""

    key: str
    step: str
    state: str
    attempts: int
    started_at: float | None
    ended_at: float | None
    seconds: float | None
    bytes: int | None
    last_error: str | None
    result: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    """One dataset the watcher found, as the journal holds it."""

    key: str
    path: Path
    inbox: str | None
    size: int
    mtime_ns: int
    dataset_id: str | None
    beamline: str | None
    kind: str | None
    state: str
    attempts: int
    next_attempt: float
    last_error: str | None
    discovered_at: float
    updated_at: float


_ITEM_COLUMNS = (
    "key, path, inbox, size, mtime_ns, dataset_id, beamline, kind, state, attempts, "
    "next_attempt, last_error, discovered_at, updated_at"
)
_STEP_COLUMNS = (
    "key, step, state, attempts, started_at, ended_at, seconds, bytes, last_error, result"
)


def _item(row) -> Item:
    return Item(row[0], Path(row[1]), *row[2:])


def _step(row) -> StepRecord:
    key, step, state, attempts, started_at, ended_at, seconds, nbytes, error = row[:9]
    return StepRecord(key, step, state, attempts, started_at, ended_at, seconds, nbytes, error,
                      result=json.loads(row[9] or "{}"))


class Journal:
    """Per-dataset step records and leases in a catalog database.

    The journal opens its own connection to the catalog file (WAL: the watcher, the
    notebooks it runs and ``spotkit status`` use the file at once), or to the catalog's
    PostgreSQL database.

    Parameters
    ----------
    path : path-like or str
        The catalog database (``Catalog.path``): a SQLite file or a ``postgresql://`` URL.
    owner : str, optional
        Lease owner name (default: :func:`make_owner`).
    lease_seconds : float
        How long a lease lasts without renewal.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "catalog.db"
    >>> journal = Journal(db)
    >>> journal.discover("k1", "/inbox/scan.h5", size=10, mtime_ns=1)
    True
    >>> journal.summary()["counts"]["?"]["pending"]
    1
    >>> journal.forget("/inbox/scan.h5", reason="a test pattern", by="operator").state
    'forgotten'
    >>> journal.close()
    """

    def __init__(self, path: str | os.PathLike, *, owner: str | None = None,
                 lease_seconds: float = 120.0):
        text = os.fspath(path)
        url = "://" in text or text.lower().startswith(("postgresql:/", "postgres:/"))
        self.path: Path | str = text if url else Path(text)
        self.owner = owner or make_owner()
        self.lease_seconds = float(lease_seconds)
        self._lock = threading.RLock()
        self._conn: Any = connect_database(self.path)
        if not _tables_current(self._conn):  # a catalog made without the flow's tables
            with write_transaction(self._conn, self.path, "creating the flow journal",
                                   when_locked="will retry") as conn:
                _create_tables(conn)

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _where(self) -> str:
        """The database for messages (a URL without its password)."""
        return mask_url(str(self.path))

    def _connection(self) -> Any:
        if self._conn is None:
            raise CatalogError(f"journal on {self._where()} is closed")
        if getattr(self._conn, "broken", False):  # PostgreSQL: server restart, network
            logger.warning("connection to the flow journal in %s was lost; connecting again",
                           self._where())
            self._conn.close()
            self._conn = connect_database(self.path)
        return self._conn

    @contextmanager
    def _write(self, action: str) -> Iterator[Any]:
        with self._lock, write_transaction(self._connection(), self.path, action,
                                           when_locked="will retry") as conn:
            yield conn

    def _read(self, sql: str, params: tuple = ()) -> list:
        try:
            with self._lock:
                return self._connection().execute(sql, params).fetchall()
        except database_errors() as exc:
            raise CatalogError(
                f"reading the flow journal in {self._where()} failed: {exc}") from exc

    # -- items ------------------------------------------------------------------------

    def discover(self, key: str, path: str | os.PathLike, *, size: int, mtime_ns: int,
                 inbox: str | os.PathLike | None = None, kind: str | None = None) -> bool:
        """Record a dataset found complete; return True if it is new to the journal."""
        now = time.time()
        with self._write(f"journal: discovering {path}") as conn:
            cur = conn.execute(
                f"INSERT INTO flow_items ({_ITEM_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, 'pending', 0, 0, NULL, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                (key, str(path), str(inbox) if inbox else None, int(size), int(mtime_ns),
                 kind, now, now),
            )
            new = cur.rowcount == 1
            if new:
                conn.execute(
                    "INSERT INTO flow_steps (key, step, state, attempts, started_at, "
                    "ended_at, seconds, bytes) VALUES (?, 'discovered', 'done', 1, ?, ?, 0, ?) "
                    "ON CONFLICT (key, step) DO NOTHING",
                    (key, now, now, int(size)),
                )
        return new

    def keys(self) -> set[str]:
        """The idempotency keys of every dataset in the journal."""
        return {r[0] for r in self._read("SELECT key FROM flow_items")}

    def item(self, key: str) -> Item | None:
        """The journal row of one dataset, or None."""
        rows = self._read(f"SELECT {_ITEM_COLUMNS} FROM flow_items WHERE key = ?", (key,))  # noqa: S608
        return _item(rows[0]) if rows else None

    def items(self, *, state: str | None = None) -> list[Item]:
        """All datasets in the journal (optionally in one state), oldest first."""
        if state is None:
            rows = self._read(f"SELECT {_ITEM_COLUMNS} FROM flow_items ORDER BY discovered_at")  # noqa: S608
        else:
            rows = self._read(
                f"SELECT {_ITEM_COLUMNS} FROM flow_items WHERE state = ? "  # noqa: S608
                "ORDER BY discovered_at",
                (state,),
            )
        return [_item(r) for r in rows]

    def due(self, now: float | None = None) -> list[Item]:
        """Datasets not finished nor parked whose next attempt is due, oldest first."""
        now = time.time() if now is None else now
        rows = self._read(
            f"SELECT {_ITEM_COLUMNS} FROM flow_items "  # noqa: S608
            "WHERE state IN ('pending', 'running', 'failed') AND next_attempt <= ? "
            "ORDER BY discovered_at",
            (now,),
        )
        return [_item(r) for r in rows]

    def update_item(self, key: str, **fields: Any) -> None:
        """Set columns of a dataset's row (``dataset_id``, ``beamline``, ``kind``, ``state``...)."""
        allowed = {"dataset_id", "beamline", "kind", "state", "attempts", "next_attempt",
                   "last_error"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(
                f"unknown journal fields {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown state {fields['state']!r}; choose one of {STATES}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._write(f"journal: updating {key}") as conn:
            conn.execute(
                f"UPDATE flow_items SET {sets}, updated_at = ? WHERE key = ?",  # noqa: S608
                (*fields.values(), time.time(), key),
            )

    def find(self, item: str | os.PathLike) -> Item:
        """The journal row for an item named by its key, inbox path or dataset id.

        Parameters
        ----------
        item : str or path-like
            The idempotency key, the path the watcher found (absolute or relative to the
            working directory), or the catalog dataset id.

        Returns
        -------
        Item
            The newest matching row (a path re-written in the inbox has one row per version).

        Raises
        ------
        spotkit.errors.FlowError
            If nothing in the journal matches.
        """
        text = os.fspath(item)
        row = self.item(text)
        if row is not None:
            return row
        candidates = {text, os.path.abspath(os.path.expanduser(text))}
        marks = ",".join("?" * len(candidates))
        rows = self._read(
            f"SELECT {_ITEM_COLUMNS} FROM flow_items "  # noqa: S608
            f"WHERE path IN ({marks}) OR dataset_id = ? ORDER BY discovered_at DESC",
            (*candidates, text),
        )
        if not rows:
            raise FlowError(
                f"{text!r} is not in the flow journal of {self._where()}: give the inbox path or "
                "the dataset id that `spotkit status` lists."
            )
        return _item(rows[0])

    def _audit(self, conn, key: str, step: str, reason: str, by: str | None,
               before: str) -> None:
        now = time.time()
        conn.execute(
            "INSERT INTO flow_steps (key, step, state, attempts, started_at, ended_at, seconds, "
            "result) VALUES (?, ?, 'done', 1, ?, ?, 0, ?) ON CONFLICT (key, step) DO UPDATE "
            "SET attempts = flow_steps.attempts + 1, started_at = excluded.started_at, "
            "ended_at = excluded.ended_at, result = excluded.result",
            (key, step, now, now, json.dumps({"reason": reason, "by": by, "was": before},
                                             sort_keys=True)),
        )

    def _check_reason(self, reason: str, what: str) -> str:
        if not isinstance(reason, str) or not reason.strip():
            raise FlowError(f"{what} needs a reason (e.g. --reason \"file re-exported\"); "
                            "it is recorded with the item")
        return reason.strip()

    def retry(self, item: str | os.PathLike, *, reason: str, by: str | None = None) -> Item:
        """Put a parked or failed item back in the queue, with the reason recorded.

        Its failed and parked steps are cleared (steps done stay done, so a verified
        transfer is not repeated) and its attempts start again from zero; the next pass of
        any watcher picks it up. A quarantined file is read again from scratch (e.g. after
        a spotkit upgrade that added a reader for its layout).

        Parameters
        ----------
        item : str or path-like
            Key, inbox path or dataset id (see :meth:`find`).
        reason : str
            Why (kept in the item's ``retried`` step).
        by : str, optional
            Who (default: the login name).

        Returns
        -------
        Item
            The row after the change.

        Raises
        ------
        spotkit.errors.FlowError
            If the item is unknown, done, or being worked on now.
        """
        reason = self._check_reason(reason, "retry")
        found = self.find(item)
        if found.state in ("done", "running", "pending"):
            raise FlowError(
                f"{found.path} is {found.state}: only parked, failed, superseded or forgotten "
                "items can be retried" + (" (it is queued already)" if found.state == "pending"
                                          else ""))
        by = by or _login()
        with self._write(f"journal: retrying {found.key}") as conn:
            conn.execute(
                "DELETE FROM flow_steps WHERE key = ? AND state IN ('failed', 'parked', "
                "'running')", (found.key,))
            quarantined = conn.execute(
                "SELECT 1 FROM flow_steps WHERE key = ? AND step = 'ingested' "
                "AND result LIKE '%\"quarantined\": true%'", (found.key,)).fetchone()
            if quarantined:
                conn.execute("DELETE FROM flow_steps WHERE key = ? AND step = 'ingested'",
                             (found.key,))
            conn.execute(
                "UPDATE flow_items SET state = 'pending', attempts = 0, next_attempt = 0, "
                "last_error = NULL, updated_at = ? WHERE key = ?", (time.time(), found.key))
            self._audit(conn, found.key, "retried", reason, by, found.state)
        logger.info("event=retried path=%s by=%s reason=%s", found.path, by, reason)
        return self.item(found.key)  # type: ignore[return-value]

    def forget(self, item: str | os.PathLike, *, reason: str, by: str | None = None) -> Item:
        """Set an item aside for good: no watcher works on it again; the reason is recorded.

        The raw file and any catalog dataset stay (spotkit never deletes raw data); a
        quarantined dataset's catalog status becomes ``forgotten``, so it leaves the
        quarantine list of ``spotkit status``.

        Parameters
        ----------
        item : str or path-like
            Key, inbox path or dataset id (see :meth:`find`).
        reason : str
            Why (kept in the item's ``forgotten`` step and as its ``last_error``).
        by : str, optional
            Who (default: the login name).

        Returns
        -------
        Item

        Raises
        ------
        spotkit.errors.FlowError
            If the item is unknown, done or being worked on now.
        """
        reason = self._check_reason(reason, "forget")
        found = self.find(item)
        if found.state == "done":
            raise FlowError(f"{found.path} is done ({found.dataset_id}); there is nothing to "
                            "forget")
        owner = self.lease_owner(found.key)
        if found.state == "running" and owner is not None and owner != self.owner:
            raise FlowError(f"{found.path} is being processed by {owner} now; stop that "
                            "watcher or wait, then forget it")
        by = by or _login()
        with self._write(f"journal: forgetting {found.key}") as conn:
            conn.execute(
                "UPDATE flow_items SET state = 'forgotten', last_error = ?, updated_at = ? "
                "WHERE key = ?", (f"forgotten by {by}: {reason}", time.time(), found.key))
            conn.execute("DELETE FROM flow_leases WHERE key = ?", (found.key,))
            self._audit(conn, found.key, "forgotten", reason, by, found.state)
        logger.info("event=forgotten path=%s by=%s reason=%s", found.path, by, reason)
        if found.dataset_id:
            self._set_catalog_status(found.dataset_id, "forgotten", f"by {by}: {reason}")
        return self.item(found.key)  # type: ignore[return-value]

    def _set_catalog_status(self, dataset_id: str, status: str, reason: str) -> None:
        """A quarantined dataset of a forgotten item leaves the quarantine list."""
        from spotkit.catalog import Catalog

        with Catalog(self.path) as cat:
            ds = cat.get(dataset_id)
            if ds is not None and ds.status == "quarantined":
                cat.set_status(dataset_id, status, reason=reason)

    def supersede(self, path: str | os.PathLike, *, by_key: str,
                  dataset_id: str | None) -> list[Item]:
        """Mark older parked or failed items of the same path as replaced by ``by_key``.

        A file quarantined while it was being re-exported, then written again complete,
        is found as a new item (new size and mtime); once that one is done, the old one is
        history, not work: its state becomes ``superseded``.

        Returns
        -------
        list of Item
            The items superseded now.
        """
        rows = self._read(
            f"SELECT {_ITEM_COLUMNS} FROM flow_items WHERE path = ? AND key != ? "  # noqa: S608
            "AND state IN ('parked', 'failed', 'pending')",
            (str(path), by_key),
        )
        old = [_item(r) for r in rows]
        if not old:
            return []
        with self._write(f"journal: superseding older items of {path}") as conn:
            for it in old:
                conn.execute(
                    "UPDATE flow_items SET state = 'superseded', last_error = ?, updated_at = ? "
                    "WHERE key = ? AND state IN ('parked', 'failed', 'pending')",
                    (f"superseded by a good copy ({dataset_id or by_key}); was {it.state}: "
                     f"{it.last_error or ''}".rstrip(": "), time.time(), it.key),
                )
        for it in old:
            logger.info("event=superseded path=%s was=%s by=%s", it.path, it.state,
                        dataset_id or by_key)
        return old

    def record_failure(self, key: str, error: str, *, park: bool = False,
                       retry_in: float = 0.0, count: bool = True) -> None:
        """Record a failed attempt on a dataset: retry it after ``retry_in`` s, or park it.

        Parameters
        ----------
        key : str
        error : str
            What went wrong (kept as ``last_error``; the reason when parked).
        park : bool
            Park the dataset: no more attempts until someone looks (``spotkit status``).
        retry_in : float
            Seconds before the next attempt.
        count : bool
            False for an outage (destination down, catalog locked): the attempt is not
            counted against the dataset.
        """
        now = time.time()
        with self._write(f"journal: recording a failure of {key}") as conn:
            conn.execute(
                "UPDATE flow_items SET state = ?, attempts = attempts + ?, next_attempt = ?, "
                "last_error = ?, updated_at = ? WHERE key = ?",
                ("parked" if park else "failed", 1 if count else 0, now + retry_in, error,
                 now, key),
            )

    # -- steps ------------------------------------------------------------------------

    def step(self, key: str, step: str) -> StepRecord | None:
        """The record of one step of one dataset, or None if it never started."""
        rows = self._read(
            f"SELECT {_STEP_COLUMNS} FROM flow_steps WHERE key = ? AND step = ?",  # noqa: S608
            (key, step),
        )
        return _step(rows[0]) if rows else None

    def steps(self, key: str | None = None) -> list[StepRecord]:
        """Step records of one dataset (or all), in the order they started."""
        if key is None:
            rows = self._read(f"SELECT {_STEP_COLUMNS} FROM flow_steps ORDER BY started_at")  # noqa: S608
        else:
            rows = self._read(
                f"SELECT {_STEP_COLUMNS} FROM flow_steps WHERE key = ? "  # noqa: S608
                "ORDER BY started_at",
                (key,),
            )
        return [_step(r) for r in rows]

    def is_done(self, key: str, step: str) -> bool:
        """Whether a step of a dataset is recorded done."""
        rec = self.step(key, step)
        return rec is not None and rec.state == "done"

    def start_step(self, key: str, step: str, *, result: dict | None = None) -> StepRecord:
        """Mark a step running (one more attempt) and return its record."""
        now = time.time()
        with self._write(f"journal: starting {step} of {key}") as conn:
            conn.execute(
                "INSERT INTO flow_steps (key, step, state, attempts, started_at, result) "
                "VALUES (?, ?, 'running', 1, ?, ?) ON CONFLICT (key, step) DO UPDATE SET "
                "state = 'running', attempts = flow_steps.attempts + 1, "
                "started_at = excluded.started_at, ended_at = NULL, "
                "result = CASE WHEN excluded.result = '{}' THEN flow_steps.result "
                "ELSE excluded.result END",
                (key, step, now, json.dumps(result or {}, sort_keys=True)),
            )
            conn.execute(
                "UPDATE flow_items SET state = 'running', updated_at = ? WHERE key = ? "
                "AND state != 'parked'",
                (now, key),
            )
        rec = self.step(key, step)
        if rec is None:  # pragma: no cover - written in the transaction above
            raise CatalogError(f"journal: step {step} of {key} vanished")
        return rec

    def finish_step(self, key: str, step: str, *, state: str = "done",
                    seconds: float | None = None, nbytes: int | None = None,
                    result: dict | None = None, error: str | None = None) -> None:
        """Record the outcome of a step (``done``, ``failed`` or ``parked``)."""
        if state not in STATES:
            raise ValueError(f"unknown step state {state!r}; choose one of {STATES}")
        now = time.time()
        with self._write(f"journal: finishing {step} of {key}") as conn:
            conn.execute(
                "INSERT INTO flow_steps (key, step, state, attempts, started_at) "
                "VALUES (?, ?, 'pending', 0, ?) ON CONFLICT (key, step) DO NOTHING",
                (key, step, now),
            )
            conn.execute(
                "UPDATE flow_steps SET state = ?, ended_at = ?, seconds = coalesce(?, seconds), "
                "bytes = coalesce(?, bytes), last_error = ?, "
                "result = coalesce(?, result) WHERE key = ? AND step = ?",
                (state, now, seconds, nbytes, error,
                 json.dumps(result, sort_keys=True, default=str) if result is not None else None,
                 key, step),
            )

    # -- leases -----------------------------------------------------------------------

    def acquire(self, key: str) -> bool:
        """Take (or renew) the lease on a dataset; False if another live watcher holds it."""
        now = time.time()
        with self._write(f"journal: leasing {key}") as conn:
            row = conn.execute("SELECT owner, expires FROM flow_leases WHERE key = ?",
                               (key,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO flow_leases (key, owner, expires) VALUES (?, ?, ?)",
                             (key, self.owner, now + self.lease_seconds))
                return True
            owner, expires = row
            if owner != self.owner and expires > now and _owner_alive(owner):
                return False
            cur = conn.execute(
                "UPDATE flow_leases SET owner = ?, expires = ? WHERE key = ? AND owner = ?",
                (self.owner, now + self.lease_seconds, key, owner),
            )
            if owner != self.owner:
                logger.info("took over the lease on %s from %s", key, owner)
            return cur.rowcount == 1

    def release(self, key: str) -> None:
        """Give the lease on a dataset back (only if this journal's owner holds it)."""
        with self._write(f"journal: releasing {key}") as conn:
            conn.execute("DELETE FROM flow_leases WHERE key = ? AND owner = ?", (key, self.owner))

    def lease_owner(self, key: str) -> str | None:
        """Who holds the lease on a dataset now (None if nobody)."""
        rows = self._read("SELECT owner, expires FROM flow_leases WHERE key = ?", (key,))
        if not rows or rows[0][1] < time.time():
            return None
        return rows[0][0]

    # -- reporting --------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts per beamline and state, and the parked and failed datasets with reasons.

        Returns
        -------
        dict
            ``{"counts": {beamline: {state: n}}, "parked": [...], "failed": [...],
            "running": [...]}``; each list entry has ``path``, ``dataset_id``,
            ``beamline``, ``attempts`` and ``error``.
        """
        counts: dict[str, dict[str, int]] = {}
        for beamline, state, n in self._read(
            "SELECT coalesce(beamline, '?'), state, count(*) FROM flow_items "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ):
            counts.setdefault(beamline, dict.fromkeys(STATES, 0))[state] = n
        out: dict[str, Any] = {"counts": counts}
        for state in ("parked", "failed", "running"):
            out[state] = [
                {"path": it.path.as_posix(), "dataset_id": it.dataset_id,
                 "beamline": it.beamline, "attempts": it.attempts, "error": it.last_error}
                for it in self.items(state=state)
            ]
        return out
