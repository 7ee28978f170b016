"""Telemetry of every step: timed events in the catalog database, and the table to read them.

The flow (discovered, complete, ingested, manifest, transfer, verified, done), notebook
runs (started, finished, run, product) and batch jobs (queued, started, finished, with the
scheduler's own times where it gives them) record one row each in the ``events`` table of
the catalog database, on SQLite and PostgreSQL alike (created through
:func:`spotkit.catalog.register_tables`; no schema version of its own).

Recording is cheap: :meth:`Telemetry.record` only appends a tuple to a buffer; the buffer
is written in one transaction when it holds ``batch_size`` events, when its oldest event is
``max_delay`` seconds old, when the flow ends a pass, and at interpreter exit. A failure to
write (database locked for long, server gone) is logged and the events are kept for the
next try (at most :data:`MAX_PENDING`); it never reaches the caller. An event may carry an
idempotency ``key``: a second event with the same key is ignored by the database, so a
job's ``started`` seen by two watchers, or an event written again after a crash, is
stored once.

Set ``SPOTKIT_TELEMETRY=off`` in the environment to record nothing.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import logging
import math
import os
import re
import threading
import time as _time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from spotkit.catalog import (
    connect_database,
    database_errors,
    mask_url,
    register_tables,
    run_ddl,
    table_exists,
    write_transaction,
)
from spotkit.errors import CatalogError

__all__ = [
    "EVENT_COLUMNS",
    "MAX_PENDING",
    "STEPS",
    "Telemetry",
    "record",
    "telemetry_for",
]

logger = logging.getLogger(__name__)

#: the columns of :func:`events` (the contract other parts of the monitor read)
EVENT_COLUMNS = ("id", "time", "step", "beamline", "dataset_id", "item", "target", "run_id",
                 "job_id", "duration", "bytes", "value", "outcome", "detail")

#: the steps spotkit records, and what their columns mean
STEPS = {
    "complete": "the raw file stopped changing (time: its mtime); bytes: its size",
    "discovered": "the watcher recorded the complete file; duration: since it was complete",
    "quarantined": "a corrupt raw file was set aside (outcome 'failed')",
    "ingested": "catalogued (and hashed, staged); duration, bytes: the dataset's files",
    "manifest": "the suitcase manifest made; bytes: what it lists",
    "transfer": "copied to a destination (target); bytes copied, value: rate in B/s",
    "verified": "the copy checked at the destination (target)",
    "queued": "a run waits for a compute slot or a batch job was submitted (target)",
    "started": "a run or job began; duration: its queue wait when the scheduler says it",
    "finished": "a run or job ended; duration: its run time; outcome 'ok' or the state",
    "run": "a notebook's execution (papermill) ended; duration: its seconds",
    "product": "a derived dataset registered by a run; bytes: its files",
    "done": "the flow finished a dataset; duration: since discovered",
}

#: events kept in memory at most while the database cannot be written (then the oldest go)
MAX_PENDING = 100_000

_COLUMNS = (*EVENT_COLUMNS[1:], "key")
_INSERT = (f"INSERT INTO events ({', '.join(_COLUMNS)}) "  # noqa: S608
           f"VALUES ({', '.join('?' * len(_COLUMNS))}) ON CONFLICT (key) DO NOTHING")

# the events table, kept in the catalog database (SQLite statements; run_ddl translates
# them for PostgreSQL). ``key`` (optional, unique) makes an event idempotent.
_EVENT_TABLES = """
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY,
    time       REAL NOT NULL,
    step       TEXT NOT NULL,
    beamline   TEXT,
    dataset_id TEXT,
    item       TEXT,
    target     TEXT,
    run_id     TEXT,
    job_id     TEXT,
    duration   REAL,
    bytes      INTEGER,
    value      REAL,
    outcome    TEXT,
    detail     TEXT,
    key        TEXT
);
CREATE INDEX IF NOT EXISTS events_step_time ON events (step, time);
CREATE INDEX IF NOT EXISTS events_beamline_time ON events (beamline, time);
CREATE INDEX IF NOT EXISTS events_dataset ON events (dataset_id);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events (key);
"""


def _create_tables(conn: Any) -> None:
    """Create the events table and its indexes (idempotent)."""
    run_ddl(conn, _EVENT_TABLES)


# the catalog creates it with its own tables when it makes a new database
register_tables("monitor", _create_tables)


def _enabled_by_env() -> bool:
    return os.environ.get("SPOTKIT_TELEMETRY", "on").strip().lower() not in (
        "0", "off", "false", "no")


def _location(catalog: Any) -> Path | str:
    """The database of a Catalog, a path or a URL, as :func:`connect_database` takes it."""
    if catalog is None:
        raise ValueError("telemetry needs a catalog (a Catalog, its file or its URL), not None")
    if hasattr(catalog, "path") and hasattr(catalog, "get_run"):  # a Catalog
        return catalog.path
    text = os.fspath(catalog)
    if "://" in text:
        return text
    return Path(text).expanduser().absolute()


def _float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    out = float(value)
    if math.isnan(out):
        return None
    return out


def _epoch(value: Any, name: str, *, end_of_day: bool = False) -> float:
    """UTC epoch seconds from a number, a datetime or date (naive ones are UTC, as the
    catalog takes them), ISO 8601 text or an age (``"24h"``). ``end_of_day``: a bare date
    means the first instant of the next day (``until="2026-12-04"`` includes that day)."""
    given = value
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a time")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        ago = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text)
        if ago:
            unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[ago[2]]
            return _time.time() - float(ago[1]) * unit
        try:
            value = (_dt.date.fromisoformat(text) if len(text) == 10
                     else _dt.datetime.fromisoformat(text))
        except ValueError:
            value = None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return value.timestamp()
    if isinstance(value, _dt.date):
        day = value + _dt.timedelta(days=1) if end_of_day else value
        return _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC).timestamp()
    if value is not None and hasattr(value, "timestamp"):  # pandas.Timestamp
        return float(value.timestamp())
    raise ValueError(
        f"{name}={given!r} is not a time: give UTC epoch seconds, a datetime, an ISO 8601 "
        "date or time ('2026-12-04', '2026-12-04T18:00Z'; UTC unless it says otherwise) or "
        "an age such as '30m', '24h', '7d'")


class Telemetry:
    """A buffered recorder of timed events into a catalog's ``events`` table.

    Most code uses the shared recorder of a catalog, :func:`telemetry_for` (or
    :func:`record`); make your own to control flushing, e.g. in a benchmark.

    Parameters
    ----------
    catalog : Catalog, path-like or str
        The catalog (its database file or ``postgresql://`` URL).
    enabled : bool, optional
        Record at all (default: unless ``SPOTKIT_TELEMETRY=off``).
    batch_size : int
        Write when this many events are buffered.
    max_delay : float
        Write when the oldest buffered event is this many seconds old (checked when an
        event is recorded; the flow also flushes after every pass).
    keep_open : bool
        Keep the database connection between writes (False: connect for each write, as
        the shared recorders of :func:`telemetry_for` do, so that a process touching many
        catalogs holds no connection to them).

    Attributes
    ----------
    written : int
        Events handed to the database so far (a duplicate key is counted, and ignored).
    dropped : int
        Events given up because the database could not be written for too long.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.monitor import events
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "catalog.db"
    >>> with Telemetry(db) as tel:
    ...     tel.record("transfer", time=1.7e9, beamline="8.3.2", target="warehouse",
    ...                duration=2.0, nbytes=4_000_000, value=2e6)
    ...     tel.flush()
    1
    >>> events(db)[["step", "beamline", "bytes", "value"]]
           step beamline      bytes      value
    0  transfer    8.3.2  4000000.0  2000000.0
    """

    def __init__(self, catalog: Any, *, enabled: bool | None = None, batch_size: int = 500,
                 max_delay: float = 5.0, keep_open: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size!r}")
        if max_delay < 0:
            raise ValueError(f"max_delay must be >= 0 seconds, not {max_delay!r}")
        self.location = _location(catalog)
        self.enabled = _enabled_by_env() if enabled is None else bool(enabled)
        self.batch_size = int(batch_size)
        self.max_delay = float(max_delay)
        self.written = 0
        self.dropped = 0
        self._rows: list[tuple] = []
        self._oldest: float | None = None  # monotonic time the oldest buffered event came
        self._lock = threading.Lock()  # the buffer
        self._write_lock = threading.Lock()  # the connection
        self.keep_open = bool(keep_open)
        self._conn: Any = None
        self._failing = False

    def __repr__(self) -> str:
        return (f"<Telemetry {mask_url(str(self.location))} "
                f"({'on' if self.enabled else 'off'}, {len(self._rows)} pending)>")

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Events recorded and not yet written."""
        return len(self._rows)

    def record(self, step: str, *, time: Any = None, beamline: str | None = None,
               dataset_id: str | None = None, item: str | None = None,
               target: str | None = None, run_id: str | None = None,
               job_id: str | None = None, duration: float | None = None,
               nbytes: int | None = None, value: float | None = None,
               outcome: str | None = None, detail: Mapping[str, Any] | None = None,
               key: str | None = None, flush: bool = False) -> None:
        """Record one event (buffered; never raises for a database problem).

        Parameters
        ----------
        step : str
            What happened (see :data:`STEPS`; other short words are allowed).
        time : float, datetime or str, optional
            When it happened (UTC epoch seconds; default: now). For a span, when it ended.
        beamline, dataset_id, item, target, run_id, job_id : str, optional
            Where and to what it happened (``item``: the flow's item, before a dataset
            exists; ``target``: the compute target or transfer destination).
        duration : float, optional
            Seconds the step took.
        nbytes : int, optional
            Bytes involved (the ``bytes`` column).
        value : float, optional
            A step-specific number (a transfer's rate in B/s).
        outcome : str, optional
            ``"ok"``, ``"failed"``, a scheduler state...
        detail : mapping, optional
            Anything else (stored as JSON).
        key : str, optional
            Idempotency key: an event whose key is already stored is ignored.
        flush : bool
            Write now (with whatever else is buffered).
        """
        if not self.enabled:
            return
        try:
            if not step or not isinstance(step, str):
                raise ValueError(f"step must be a non-empty string, not {step!r}")
            when = _time.time() if time is None else _epoch(time, "time")
            row = (when, step, _text(beamline), _text(dataset_id), _text(item), _text(target),
                   _text(run_id), _text(job_id), _float(duration, "duration"),
                   None if nbytes is None else int(nbytes), _float(value, "value"),
                   _text(outcome),
                   json.dumps(dict(detail), default=str, separators=(",", ":"))
                   if detail else None, _text(key))
        except (TypeError, ValueError) as exc:
            logger.warning("telemetry: event %r not recorded: %s", step, exc)
            return
        now = _time.monotonic()
        with self._lock:
            self._rows.append(row)
            if self._oldest is None:
                self._oldest = now
            due = (flush or len(self._rows) >= self.batch_size
                   or now - self._oldest >= self.max_delay)
        if due:
            self.flush()

    def flush(self) -> int:
        """Write the buffered events in one transaction; return how many were written.

        A database error is logged (once until writing works again) and the events are kept
        for the next flush; nothing is raised.
        """
        if not self._rows:
            return 0
        with self._write_lock:
            with self._lock:
                rows, self._rows, self._oldest = self._rows, [], None
            if not rows:
                return 0
            errors: tuple[type[BaseException], ...] = (CatalogError, OSError,
                                                        *database_errors())
            try:
                conn = self._connection()
                with write_transaction(conn, self.location, "telemetry: writing events",
                                       when_locked="the events are kept for the next try"
                                       ) as tx:
                    tx.executemany(_INSERT, rows)
            except errors as exc:
                self._keep(rows, exc)
                return 0
            finally:
                if not self.keep_open and self._conn is not None:
                    self._close_connection()
            if self._failing:
                logger.info("telemetry: writing events to %s works again",
                            mask_url(str(self.location)))
                self._failing = False
            self.written += len(rows)
            return len(rows)

    def last_time(self, steps: Iterable[str]) -> float | None:
        """When the newest stored event of these steps happened (None: there is none).

        Buffered events are written first. Raises :class:`~spotkit.errors.CatalogError`
        when the database cannot be read.

        Parameters
        ----------
        steps : iterable of str

        Returns
        -------
        float or None
        """
        self.flush()
        newest = None
        with self._write_lock:
            try:
                conn = self._connection()
                for step in steps:  # each one reads the (step, time) index backwards
                    (t,) = conn.execute("SELECT max(time) FROM events WHERE step = ?",
                                        (step,)).fetchone()
                    if t is not None and (newest is None or t > newest):
                        newest = float(t)
            except database_errors() as exc:
                raise CatalogError(f"reading telemetry events from "
                                   f"{mask_url(str(self.location))} failed: {exc}") from exc
            finally:
                if not self.keep_open and self._conn is not None:
                    self._close_connection()
        return newest

    def _keep(self, rows: list[tuple], exc: BaseException) -> None:
        with self._lock:
            rows = rows + self._rows
            over = len(rows) - MAX_PENDING
            if over > 0:
                self.dropped += over
                rows = rows[over:]
            self._rows = rows
            self._oldest = _time.monotonic()
        if not self._failing:
            logger.warning("telemetry: cannot write %d event(s) to %s (kept for the next "
                           "try): %s", len(rows), mask_url(str(self.location)), exc)
            self._failing = True
        if self._conn is not None and getattr(self._conn, "broken", False):
            self._close_connection()

    def _connection(self) -> Any:
        if self._conn is not None and getattr(self._conn, "broken", False):
            self._close_connection()
        if self._conn is None:
            conn = connect_database(self.location)
            try:
                if not table_exists(conn, "events"):  # a catalog made before telemetry
                    with write_transaction(conn, self.location, "creating the events table",
                                           when_locked="will retry") as tx:
                        _create_tables(tx)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _close_connection(self) -> None:
        try:
            self._conn.close()
        except Exception as exc:  # a broken connection may fail to close; it is gone anyway
            logger.debug("telemetry: closing the connection: %s", exc)
        self._conn = None

    def close(self) -> None:
        """Write what is buffered and close the connection."""
        self.flush()
        with self._write_lock:
            if self._conn is not None:
                self._close_connection()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- one shared recorder per catalog database in this process ---------------------------

_SHARED: dict[str, Telemetry] = {}
_SHARED_LOCK = threading.Lock()


def _flush_shared() -> None:
    for tel in list(_SHARED.values()):
        try:
            tel.close()
        except Exception as exc:  # at exit: say it, never raise
            logger.warning("telemetry: events not written at exit: %s", exc)


def telemetry_for(catalog: Any) -> Telemetry:
    """The recorder this process shares for a catalog's database (made on first use).

    The flow, notebook runs and batch jobs of one process record through it; it is
    flushed at interpreter exit. It connects to the database for each write (once per
    flow pass), so a process that touches many catalogs keeps no connection open.

    Parameters
    ----------
    catalog : Catalog, path-like or str

    Returns
    -------
    Telemetry

    Examples
    --------
    >>> import pathlib, tempfile
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "catalog.db"
    >>> telemetry_for(db) is telemetry_for(str(db))
    True
    """
    where = str(_location(catalog))
    with _SHARED_LOCK:
        tel = _SHARED.get(where)
        if tel is None:
            if not _SHARED:
                atexit.register(_flush_shared)
            tel = _SHARED[where] = Telemetry(where, keep_open=False)
        return tel


def record(catalog: Any, step: str, **fields: Any) -> None:
    """Record one event through the catalog's shared recorder (see :meth:`Telemetry.record`).

    Never raises: with no catalog (``None``) or a problem, it logs and returns.

    Parameters
    ----------
    catalog : Catalog, path-like, str or None
    step : str
    **fields
        As for :meth:`Telemetry.record`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.monitor import events
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "catalog.db"
    >>> record(db, "queued", target="perlmutter", run_id="r1", flush=True)
    >>> events(db, step="queued")["target"].tolist()
    ['perlmutter']
    """
    if catalog is None:
        return
    try:
        tel = telemetry_for(catalog)
    except (TypeError, ValueError) as exc:
        logger.warning("telemetry: event %r not recorded: %s", step, exc)
        return
    tel.record(step, **fields)
