"""The flow journal's tables in the catalog database, and the rows read from them.

``flow_items`` (one row per dataset the watcher found, keyed by an idempotency key),
``flow_steps`` (one row per step of its path), ``flow_leases`` (who works on a dataset
now), ``flow_priorities`` (frames of interest that go first, with the reason), and the
frame retention's ``frame_files`` (which file holds which frame of a frame folder),
``frame_approvals`` and ``frame_releases`` (:class:`spotkit.flows.FrameRetention`); the
catalog creates them with its own tables (:func:`spotkit.catalog.register_tables`).
:class:`Item` and :class:`StepRecord` are their rows as the journal returns them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotkit.catalog import loosen_check, register_tables, run_ddl, table_exists

__all__ = ["FINAL_STATES", "STATES", "STEPS", "Item", "StepRecord"]

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
CREATE TABLE IF NOT EXISTS flow_priorities (
    dataset_id  TEXT NOT NULL,
    first_frame INTEGER NOT NULL,
    last_frame  INTEGER NOT NULL,
    path        TEXT,
    priority    INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    set_by      TEXT,
    set_at      REAL NOT NULL,
    PRIMARY KEY (dataset_id, first_frame, last_frame)
);
CREATE TABLE IF NOT EXISTS frame_files (
    dataset_id TEXT NOT NULL,
    frame      INTEGER NOT NULL,
    path       TEXT NOT NULL,
    PRIMARY KEY (dataset_id, frame)
);
CREATE TABLE IF NOT EXISTS frame_approvals (
    dataset_id  TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    reason      TEXT NOT NULL,
    approved_at REAL NOT NULL,
    PRIMARY KEY (dataset_id, approved_by, approved_at)
);
CREATE TABLE IF NOT EXISTS frame_releases (
    dataset_id  TEXT NOT NULL,
    frame       INTEGER NOT NULL,
    path        TEXT NOT NULL,
    action      TEXT NOT NULL,
    dest        TEXT,
    sha256      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    released_by TEXT,
    released_at REAL NOT NULL,
    PRIMARY KEY (dataset_id, frame)
);
CREATE INDEX IF NOT EXISTS flow_items_state ON flow_items (state, next_attempt);
CREATE INDEX IF NOT EXISTS flow_priorities_path ON flow_priorities (path);
CREATE INDEX IF NOT EXISTS flow_items_path ON flow_items (path);
CREATE INDEX IF NOT EXISTS flow_items_dataset ON flow_items (dataset_id);
"""


_STATES_V3 = "CHECK (state IN ('pending', 'running', 'done', 'failed', 'parked'))"
_STATES_V5 = ("CHECK (state IN ('pending', 'running', 'done', 'failed', 'parked',\n"
              "                                   'superseded', 'forgotten'))")


def _tables_current(conn: Any) -> bool:
    if not table_exists(conn, "frame_releases"):  # the newest tables (frame retention)
        return False
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
