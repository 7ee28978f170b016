"""Operating a running flow: pause and resume a rule, and the flow's status in one read.

A pause is a row in the catalog database's ``flow_rule_pauses`` table (SQLite or
PostgreSQL; created with the catalog's tables through
:func:`spotkit.catalog.register_tables`, or by the first pause), so every watcher on that
catalog, in any process or on any host, honours it on its next pass: the datasets that a
paused rule's actions would process next wait (their journal state ``pending``, their
action step ``pending`` with the reason; not failed, not counted against their retries,
their data still ingested, moved and verified), and continue when the rule is resumed.
Actions already running finish. Every pause and resume is kept in ``flow_rule_history``
with its reason, who and when.

:func:`flow_status` reads what a dashboard shows (counts per beamline and per rule action,
throughput, recent errors, paused rules) in one statement.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from spotkit.errors import CatalogError, FlowError

__all__ = ["ActionStatus", "FlowStatus", "RecentError", "RulePause", "flow_status",
           "pause_rule", "paused_rules", "resume_rule"]

logger = logging.getLogger(__name__)

#: seconds before a dataset held by a paused rule is looked at again (a resume makes the
#: datasets it held due at once, so this only bounds how long a missed resume waits)
PAUSE_RECHECK = 60.0

#: the states counted per beamline and per rule action
STATUS_STATES = ("pending", "running", "failed", "parked", "done")

_TABLES = """
CREATE TABLE IF NOT EXISTS flow_rule_pauses (
    rule      TEXT PRIMARY KEY,
    reason    TEXT NOT NULL,
    paused_by TEXT,
    paused_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS flow_rule_history (
    id        INTEGER PRIMARY KEY,
    rule      TEXT NOT NULL,
    action    TEXT NOT NULL CHECK (action IN ('pause', 'resume')),
    reason    TEXT,
    done_by   TEXT,
    done_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS flow_rule_history_rule ON flow_rule_history (rule, done_at)
"""


def _create_tables(conn: Any) -> None:
    """Create the pause tables (idempotent; SQLite and PostgreSQL)."""
    run_ddl(conn, _TABLES)


# the catalog creates them with its own tables when a catalog is made or migrated
register_tables("flows_control", _create_tables)


@dataclass(frozen=True)
class RulePause:
    """A paused rule: why, by whom, since when (UTC epoch seconds)."""

    rule: str
    reason: str
    by: str | None
    since: float

    def describe(self) -> str:
        """One line for logs and the journal: ``rule R paused by U: reason``."""
        who = f" by {self.by}" if self.by else ""
        return f"rule {self.rule} paused{who}: {self.reason}"


@dataclass(frozen=True)
class ActionStatus:
    """One rule action on one beamline: its datasets per state (:data:`STATUS_STATES`).

    ``pending`` counts datasets waiting for the action (a paused rule's included);
    ``done`` those done within the status ``window``; ``last_hour`` those done in the last
    hour (the throughput per hour).
    """

    beamline: str
    rule: str
    action: str
    counts: dict[str, int]
    last_hour: int
    paused: bool


@dataclass(frozen=True)
class RecentError:
    """A failed or parked dataset with its last error (newest first in a status)."""

    key: str
    path: str
    dataset_id: str | None
    beamline: str
    state: str
    attempts: int
    error: str | None
    at: float


@dataclass(frozen=True)
class FlowStatus:
    """What the flow is doing, as :func:`flow_status` read it.

    Attributes
    ----------
    at : float
        When it was read (UTC epoch seconds).
    window : float
        Seconds back the actions' ``done`` counts go.
    beamlines : dict
        ``{beamline: {state: n}}`` over all datasets in the journal (every state of
        :data:`spotkit.flows.STATES`).
    throughput : dict
        ``{beamline: datasets done in the last hour}``.
    actions : tuple of ActionStatus
        Per beamline and rule action, sorted.
    errors : tuple of RecentError
        The newest failed or parked datasets.
    paused : dict
        ``{rule: RulePause}``.
    """

    at: float
    window: float
    beamlines: dict[str, dict[str, int]]
    throughput: dict[str, int]
    actions: tuple[ActionStatus, ...]
    errors: tuple[RecentError, ...]
    paused: dict[str, RulePause] = field(default_factory=dict)

    def rules(self) -> list[str]:
        """The rules seen in the journal or paused, sorted."""
        return sorted({a.rule for a in self.actions} | set(self.paused))


def _login() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name in some containers
        return f"uid {os.getuid()}"


def _location(catalog: Any) -> Path | str:
    """The database of a Catalog (or Journal), a path or a URL."""
    if catalog is None:
        raise ValueError("give a catalog (a Catalog, its file or its postgresql:// URL)")
    path = getattr(catalog, "path", None)
    if path is not None and not isinstance(catalog, str | os.PathLike):
        return path
    if not isinstance(catalog, str | os.PathLike):
        raise CatalogError(
            f"the flow's state is in the catalog database, which {catalog!r} does not give "
            "(a catalog served by `spotkit serve` does not): open the catalog's SQLite file "
            "or postgresql:// URL")
    text = os.fspath(catalog)
    return text if "://" in text else Path(text).expanduser().absolute()


@contextmanager
def _connection(catalog: Any) -> Iterator[Any]:
    where = _location(catalog)
    conn = connect_database(where)
    try:
        yield conn
    except database_errors() as exc:
        raise CatalogError(f"flow control in catalog {mask_url(str(where))} failed: {exc}"
                           ) from exc
    finally:
        conn.close()


def _check_rule(rule: str, rules: Any) -> str:
    if not isinstance(rule, str) or not rule.strip():
        raise FlowError(f"give the rule's name (its `name:` in rules.yaml), not {rule!r}")
    rule = rule.strip()
    if rules is not None:
        names = [r.name for r in rules.rules]
        if rule not in names:
            import difflib

            close = difflib.get_close_matches(rule, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise FlowError(f"no rule {rule!r} in the rules{hint}; the rules are {names}")
    return rule


def _pause_rows(conn: Any) -> dict[str, RulePause]:
    if not table_exists(conn, "flow_rule_pauses"):
        return {}
    rows = conn.execute("SELECT rule, reason, paused_by, paused_at FROM flow_rule_pauses "
                        "ORDER BY rule").fetchall()
    return {r[0]: RulePause(r[0], r[1], r[2], float(r[3])) for r in rows}


def paused_rules(catalog: Any) -> dict[str, RulePause]:
    """The rules paused now.

    Parameters
    ----------
    catalog : Catalog, Journal, path-like or str
        The catalog (its database file or ``postgresql://`` URL), or a journal on it (its
        connection is used). Read only: nothing is created in a catalog without pauses.

    Returns
    -------
    dict
        ``{rule: RulePause}``, sorted by rule.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "catalog.db"
    >>> paused_rules(db)
    {}
    >>> _ = pause_rule(db, "tomo", reason="detector swap", by="ops")
    >>> paused_rules(db)["tomo"].describe()
    'rule tomo paused by ops: detector swap'
    """
    from spotkit.flows._journal_store import _JournalStore

    if isinstance(catalog, _JournalStore):  # a watcher's journal: through its connection
        try:
            with catalog._lock:
                return _pause_rows(catalog._connection())
        except database_errors() as exc:
            raise CatalogError(f"reading the paused rules in {catalog._where()} failed: "
                               f"{exc}") from exc
    with _connection(catalog) as conn:
        return _pause_rows(conn)


def pause_rule(catalog: Any, rule: str, *, reason: str, by: str | None = None,
               rules: Any = None) -> RulePause:
    """Pause a rule: watchers start none of its actions until :func:`resume_rule`.

    Datasets its actions would process next wait on the next pass of every watcher on the
    catalog (in any process): their data is still ingested, moved and verified; they are
    neither failed nor parked, and continue when the rule is resumed. Actions already
    running finish. Pausing a paused rule records the new reason and keeps its start.

    Parameters
    ----------
    catalog : Catalog, path-like or str
    rule : str
        The rule's ``name`` in rules.yaml.
    reason : str
        Why (kept with the pause and in its history; shown by ``spotkit status``).
    by : str, optional
        Who (default: the login name).
    rules : Rules, optional
        Check that the rule exists in these rules (a misspelt name is refused).

    Returns
    -------
    RulePause

    Raises
    ------
    spotkit.errors.FlowError
        No reason, or a rule not in ``rules``.
    spotkit.errors.CatalogError
        The database cannot be written.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "catalog.db"
    >>> pause_rule(db, "saxs", reason="beam dump", by="ops").rule
    'saxs'
    """
    rule = _check_rule(rule, rules)
    if not isinstance(reason, str) or not reason.strip():
        raise FlowError('pausing a rule needs a reason (e.g. --reason "detector swap"); it '
                        "is recorded and shown to everyone")
    reason, by, now = reason.strip(), by or _login(), time.time()
    with _connection(catalog) as conn:
        with write_transaction(conn, _location(catalog), f"pausing rule {rule}",
                               when_locked="try again") as tx:
            _create_tables(tx)
            tx.execute(
                "INSERT INTO flow_rule_pauses (rule, reason, paused_by, paused_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (rule) DO UPDATE SET reason = excluded.reason, "
                "paused_by = excluded.paused_by", (rule, reason, by, now))
            tx.execute("INSERT INTO flow_rule_history (rule, action, reason, done_by, done_at) "
                       "VALUES (?, 'pause', ?, ?, ?)", (rule, reason, by, now))
        pause = _pause_rows(conn)[rule]
    logger.info("event=rule-paused rule=%s by=%s reason=%s", rule, by, reason)
    return pause


def resume_rule(catalog: Any, rule: str, *, reason: str | None = None,
                by: str | None = None) -> RulePause:
    """Resume a paused rule: the datasets it held are due again at once.

    Parameters
    ----------
    catalog : Catalog, path-like or str
    rule : str
    reason : str, optional
        Why (kept in the history).
    by : str, optional
        Who (default: the login name).

    Returns
    -------
    RulePause
        The pause that ended.

    Raises
    ------
    spotkit.errors.FlowError
        The rule is not paused (the message lists those that are).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "catalog.db"
    >>> _ = pause_rule(db, "saxs", reason="beam dump", by="ops")
    >>> resume_rule(db, "saxs", by="ops").reason
    'beam dump'
    >>> paused_rules(db)
    {}
    """
    rule = _check_rule(rule, None)
    by, now = by or _login(), time.time()
    with _connection(catalog) as conn:
        pause = _pause_rows(conn).get(rule)
        if pause is None:
            paused = sorted(_pause_rows(conn))
            raise FlowError(f"rule {rule!r} is not paused; paused rules: "
                            f"{paused or 'none'}")
        with write_transaction(conn, _location(catalog), f"resuming rule {rule}",
                               when_locked="try again") as tx:
            tx.execute("DELETE FROM flow_rule_pauses WHERE rule = ?", (rule,))
            tx.execute("INSERT INTO flow_rule_history (rule, action, reason, done_by, done_at) "
                       "VALUES (?, 'resume', ?, ?, ?)",
                       (rule, (reason or "").strip() or None, by, now))
            if table_exists(tx, "flow_steps"):  # what it held: due now, not in a minute
                tx.execute(
                    "UPDATE flow_items SET next_attempt = 0 WHERE state = 'pending' AND key IN "
                    "(SELECT key FROM flow_steps WHERE state = 'pending' AND step LIKE ?)",
                    (f"processed/{rule}/%",))
    logger.info("event=rule-resumed rule=%s by=%s", rule, by)
    return pause


# one statement: counts per beamline, rule action and state (items not done, or done within
# the window), item counts per beamline and state, the newest errors, the pauses
_T, _F = "CAST(NULL AS TEXT)", "CAST(NULL AS DOUBLE PRECISION)"  # typed for PostgreSQL
_STATUS_SQL = f"""
SELECT 'step', coalesce(i.beamline, '?'), s.step, s.state, count(*),
       sum(CASE WHEN s.state = 'done' AND s.ended_at >= ? THEN 1 ELSE 0 END),
       {_T}, {_F}, {_T}, {_T}
FROM flow_items i JOIN flow_steps s ON s.key = i.key
WHERE (i.state IN ('pending', 'running', 'failed', 'parked') OR
       (i.state = 'done' AND i.updated_at >= ?))
  AND (s.step LIKE 'processed/%' OR s.step = 'done')
GROUP BY coalesce(i.beamline, '?'), s.step, s.state
UNION ALL
SELECT 'item', coalesce(beamline, '?'), {_T}, state, count(*), 0, {_T}, {_F}, {_T}, {_T}
FROM flow_items GROUP BY coalesce(beamline, '?'), state
UNION ALL
SELECT 'error', coalesce(beamline, '?'), path, state, attempts, 0, last_error, updated_at,
       dataset_id, key
FROM (SELECT * FROM flow_items WHERE state IN ('failed', 'parked')
      ORDER BY updated_at DESC LIMIT ?) e
"""  # noqa: S608 - constant text
_PAUSES_SQL = f"""
UNION ALL
SELECT 'pause', rule, paused_by, {_T}, 0, 0, reason, paused_at, {_T}, {_T}
FROM flow_rule_pauses
"""  # noqa: S608 - constant text


def flow_status(catalog: Any, *, window: float = 86400.0, errors: int = 20) -> FlowStatus:
    """The flow's status per beamline and rule, in one read of the catalog database.

    Parameters
    ----------
    catalog : Catalog, path-like or str
    window : float
        Seconds back that the actions' ``done`` counts go (default a day); datasets not
        finished are always counted.
    errors : int
        How many of the newest failed or parked datasets to return.

    Returns
    -------
    FlowStatus
        Empty where no watcher has used the catalog. Read only: nothing is written.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.flows import Journal
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "catalog.db"
    >>> with Journal(db) as journal:
    ...     journal.discover("k1", "/inbox/scan.h5", size=10, mtime_ns=1)
    True
    >>> status = flow_status(db)
    >>> status.beamlines["?"]["pending"], status.actions, status.paused
    (1, (), {})
    """
    if window <= 0:
        raise ValueError(f"window must be > 0 seconds, not {window!r}")
    if errors < 0:
        raise ValueError(f"errors must be >= 0, not {errors!r}")
    now = time.time()
    params = (now - 3600.0, now - window, int(errors))
    with _connection(catalog) as conn:
        try:
            rows = conn.execute(_STATUS_SQL + _PAUSES_SQL, params).fetchall()
        except database_errors():  # a catalog without the flow's tables (or no pause yet)
            if not table_exists(conn, "flow_items"):
                rows = []
            elif table_exists(conn, "flow_rule_pauses"):
                raise
            else:
                rows = conn.execute(_STATUS_SQL, params).fetchall()
    return _status(rows, now, window)


def _status(rows: list, now: float, window: float) -> FlowStatus:
    paused: dict[str, RulePause] = {}
    for part, name, by, _s, _n, _r, reason, at, _d, _k in rows:
        if part == "pause":
            paused[name] = RulePause(name, reason, by, float(at))
    beamlines: dict[str, dict[str, int]] = {}
    throughput: dict[str, int] = {}
    acts: dict[tuple[str, str, str], dict[str, int]] = {}
    hour: dict[tuple[str, str, str], int] = {}
    errors: list[RecentError] = []
    from spotkit.flows._journal import STATES

    for part, beamline, name, state, n, recent, text, at, dataset_id, key in rows:
        if part == "item":
            beamlines.setdefault(beamline, dict.fromkeys(STATES, 0))[state] = int(n)
        elif part == "step" and name == "done":
            throughput[beamline] = throughput.get(beamline, 0) + int(recent or 0)
        elif part == "step":
            rule, _, action = name[len("processed/"):].partition("/")
            k = (beamline, rule, action)
            counts = acts.setdefault(k, dict.fromkeys(STATUS_STATES, 0))
            counts[state] = counts.get(state, 0) + int(n)
            hour[k] = hour.get(k, 0) + int(recent or 0)
        elif part == "error":
            errors.append(RecentError(key, name, dataset_id, beamline, state, int(n), text,
                                      float(at)))
    for beamline in beamlines:
        throughput.setdefault(beamline, 0)
    actions = tuple(ActionStatus(b, r, a, counts, hour[(b, r, a)], r in paused)
                    for (b, r, a), counts in sorted(acts.items()))
    errors.sort(key=lambda e: -e.at)
    return FlowStatus(now, float(window), beamlines, throughput, actions, tuple(errors),
                      paused)
