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

Pieces: the tables and rows are in :mod:`spotkit.flows._journal_tables`, the records the
flow writes (datasets, steps, leases) in :mod:`spotkit.flows._journal_store`; this module
adds what operators do (find, retry, forget, supersede, summary).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from spotkit.errors import FlowError

from ._journal_store import _JournalStore, make_owner
from ._journal_tables import _ITEM_COLUMNS, FINAL_STATES, STATES, STEPS, Item, StepRecord, _item

__all__ = ["FINAL_STATES", "STATES", "STEPS", "Item", "Journal", "StepRecord", "make_owner"]

logger = logging.getLogger(__name__)


def _login() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name in some containers
        return f"uid {os.getuid()}"


class Journal(_JournalStore):
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
