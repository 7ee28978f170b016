"""The flow journal's records: datasets, their steps and the leases on them.

:class:`_JournalStore` is what the flow writes as it works: a row per dataset found
(:meth:`~_JournalStore.discover`), the start and outcome of each step, failed attempts,
and the leases that keep two watchers off the same dataset (one write transaction each;
a lease whose owner process is gone or whose expiry has passed can be taken over).
:class:`~spotkit.flows._journal.Journal` adds what operators do on top of it.
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
from pathlib import Path
from typing import Any, Self

from spotkit.catalog import connect_database, database_errors, mask_url, write_transaction
from spotkit.errors import CatalogError

from ._journal_tables import (
    _ITEM_COLUMNS,
    _STEP_COLUMNS,
    STATES,
    Item,
    StepRecord,
    _create_tables,
    _item,
    _step,
    _tables_current,
)

__all__ = ["make_owner"]

logger = logging.getLogger("spotkit.flows._journal")


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


class _JournalStore:
    """Per-dataset step records and leases in a catalog database (see
    :class:`~spotkit.flows._journal.Journal`, which adds the operators' actions)."""

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

    def __enter__(self) -> Self:
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
        """Datasets not finished nor parked whose next attempt is due: the highest transfer
        priority first (:meth:`prioritize`), then the oldest."""
        now = time.time() if now is None else now
        rows = self._read(
            f"SELECT {_ITEM_COLUMNS} FROM flow_items "  # noqa: S608
            "WHERE state IN ('pending', 'running', 'failed') AND next_attempt <= ? "
            "ORDER BY coalesce((SELECT max(p.priority) FROM flow_priorities p "
            "WHERE p.dataset_id = flow_items.dataset_id OR p.path = flow_items.path), 0) DESC, "
            "discovered_at",
            (now,),
        )
        return [_item(r) for r in rows]

    # -- transfer priority ------------------------------------------------------------

    def prioritize(self, dataset_id: str, *, priority: int, reason: str,
                   frames: tuple[int, int] | None = None, path: str | os.PathLike | None = None,
                   by: str | None = None) -> None:
        """Let a dataset's transfer (or some of its frames) go first, with the reason.

        The watcher takes due datasets by their highest priority first, then the oldest;
        the frame ranges tell a transfer which frames of a series matter most
        (:meth:`priorities`). Setting the same range again keeps the higher priority, with
        its reason. A dataset the watcher has not found yet gets its priority when
        it does (matched by dataset id or by ``path``).

        Parameters
        ----------
        dataset_id : str
        priority : int
            Higher goes first (everything else has 0).
        reason : str
            Why (e.g. ``"live trigger 'onset-look': onset at frame 41"``).
        frames : (int, int), optional
            First and last frame of interest; None: the whole dataset.
        path : path-like, optional
            The file the watcher will find, when the dataset is not ingested by it yet.
        by : str, optional
            Who decided (a live trigger, an operator).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> from spotkit.flows import Journal
        >>> journal = Journal(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
        >>> journal.prioritize("ds-1", priority=10, frames=(36, 61), reason="onset at 41")
        >>> [(p["first_frame"], p["last_frame"], p["priority"]) for p in journal.priorities("ds-1")]
        [(36, 61, 10)]
        >>> journal.close()
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("a transfer priority needs a reason; it is recorded with it")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an integer, not {priority!r}")
        first, last = (-1, -1) if frames is None else (int(frames[0]), int(frames[1]))
        if frames is not None and not 0 <= first <= last:
            raise ValueError(f"frames {frames!r}: give (first, last) with 0 <= first <= last")
        with self._write(f"journal: prioritizing {dataset_id}") as conn:
            conn.execute(
                "INSERT INTO flow_priorities (dataset_id, first_frame, last_frame, path, "
                "priority, reason, set_by, set_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (dataset_id, first_frame, last_frame) DO UPDATE SET "
                "priority = CASE WHEN excluded.priority > flow_priorities.priority "
                "THEN excluded.priority ELSE flow_priorities.priority END, "
                "reason = CASE WHEN excluded.priority >= flow_priorities.priority "
                "THEN excluded.reason ELSE flow_priorities.reason END, "
                "set_by = CASE WHEN excluded.priority >= flow_priorities.priority "
                "THEN excluded.set_by ELSE flow_priorities.set_by END, "
                "set_at = CASE WHEN excluded.priority >= flow_priorities.priority "
                "THEN excluded.set_at ELSE flow_priorities.set_at END, "
                "path = coalesce(excluded.path, flow_priorities.path)",
                (str(dataset_id), first, last, os.fspath(path) if path is not None else None,
                 int(priority), reason.strip(), by, time.time()))
        logger.info("event=prioritized dataset=%s frames=%s priority=%d reason=%s", dataset_id,
                    "all" if frames is None else f"{first}-{last}", priority, reason.strip())

    def priorities(self, dataset_id: str | None = None) -> list[dict[str, Any]]:
        """Transfer priorities (of one dataset), highest first: ``dataset_id``,
        ``first_frame``, ``last_frame`` (None for the whole dataset), ``path``,
        ``priority``, ``reason``, ``set_by``, ``set_at``."""
        sql = ("SELECT dataset_id, first_frame, last_frame, path, priority, reason, set_by, "
               "set_at FROM flow_priorities")
        args: tuple = ()
        if dataset_id is not None:
            sql += " WHERE dataset_id = ?"
            args = (str(dataset_id),)
        rows = self._read(sql + " ORDER BY priority DESC, first_frame", args)
        keys = ("dataset_id", "first_frame", "last_frame", "path", "priority", "reason",
                "set_by", "set_at")
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for p in out:
            if p["first_frame"] < 0:
                p["first_frame"] = p["last_frame"] = None
        return out

    def frame_order(self, dataset_id: str, frames: int, *,
                    path: str | os.PathLike | None = None) -> list[int]:
        """Frames ``0 .. frames-1`` in the order a transfer should take them: frames of
        interest by priority (then in order), then the rest in order.

        Movers take a frame folder's files in this order
        (:func:`~spotkit.flows._movers.frame_transfer_order`).

        Parameters
        ----------
        dataset_id : str
        frames : int
            How many frames the dataset has.
        path : path-like, optional
            The dataset's file or folder: priorities set for it under another dataset id
            count too (a live series' triggers mark the series being acquired, which is
            ingested again under a new id when it is finished).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> from spotkit.flows import Journal
        >>> journal = Journal(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
        >>> journal.prioritize("ds-1", priority=5, frames=(4, 5), reason="onset at 4")
        >>> journal.frame_order("ds-1", 7)
        [4, 5, 0, 1, 2, 3, 6]
        >>> journal.prioritize("live-1", priority=9, frames=(6, 6), path="/in/s1",
        ...                    reason="jump at 6")
        >>> journal.frame_order("ds-1", 7, path="/in/s1")
        [6, 4, 5, 0, 1, 2, 3]
        >>> journal.close()
        """
        n = int(frames)
        if n < 0:
            raise ValueError(f"frames must be >= 0, not {frames!r}")
        found = self.priorities(dataset_id)
        if path is not None:
            names = sorted({os.fspath(path), os.path.abspath(path), os.path.realpath(path)})
            marks = ", ".join("?" * len(names))
            rows = self._read(
                "SELECT first_frame, last_frame, priority FROM flow_priorities "  # noqa: S608
                f"WHERE path IN ({marks}) AND dataset_id != ?", (*names, str(dataset_id)))
            found += [{"first_frame": None if a < 0 else a, "last_frame": b, "priority": p}
                      for a, b, p in rows]
        rank = [0] * n
        for p in found:
            if p["first_frame"] is None:
                continue
            for f in range(max(0, p["first_frame"]), min(n - 1, p["last_frame"]) + 1):
                rank[f] = max(rank[f], int(p["priority"]))
        return sorted(range(n), key=lambda f: (-rank[f], f))

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
