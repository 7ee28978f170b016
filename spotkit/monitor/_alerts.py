"""Alert rules: which findings go where, once, and not at night.

An :class:`AlertRule` selects findings (kind, metric, beamline, target globs and a minimum
severity) and sends them through one channel (:mod:`spotkit.monitor._notify`: log, e-mail,
webhook). :class:`Alerts` applies the rules:

* **De-duplication**: a finding with the same :attr:`Finding.key` as one sent by the same
  rule less than ``dedup`` seconds ago is not sent again (unless it became more severe).
  Detectors re-report a lasting condition at every check; it is sent once per window.
* **Quiet periods** (:class:`QuietPeriod`: nightly hours, weekdays, a maintenance window)
  and a **minimum interval** per rule hold findings back; they are sent together, as one
  message, when the rule may send again.
* **Failures** of a channel are logged and retried with :class:`spotkit.backoff.Backoff`;
  :meth:`Alerts.dispatch` never raises for a channel's failure, so the watcher goes on.
* **State** (what was sent, what waits) is a small table in the catalog database
  (``monitor_alerts``, ``monitor_alert_sends``; created through
  :func:`spotkit.catalog.register_tables`), so a restarted watcher does not alert twice;
  a sender claims what it sends in a write transaction, so two watchers on one catalog
  do not either.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import fnmatch
import json
import logging
import os
import re
import sqlite3
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spotkit.backoff import Backoff
from spotkit.catalog import (
    connect_database,
    database_errors,
    register_tables,
    run_ddl,
    table_exists,
    write_transaction,
)
from spotkit.errors import CatalogError
from spotkit.monitor._findings import SEVERITIES, Finding
from spotkit.monitor._notify import Channel, NotifyError

__all__ = [
    "AlertRule",
    "Alerts",
    "Delivery",
    "QuietPeriod",
    "parse_duration",
]

log = logging.getLogger(__name__)

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(min|s|m|h|d|w)")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: seconds a sender's claim on pending findings holds (then another watcher may send them)
CLAIM_SECONDS = 300.0


def parse_duration(value: Any) -> float:
    """Seconds from a number or text such as ``"90s"``, ``"10m"``, ``"1h30m"``, ``"2d"``.

    Examples
    --------
    >>> parse_duration("1h30m"), parse_duration(45), parse_duration("2d")
    (5400.0, 45.0, 172800.0)
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"duration {value!r} is negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNITS[u] for n, u in parts)
    raise ValueError(f"duration {value!r}: give seconds or text like 90s, 10m, 1h30m, 2d")


def _clock_time(value: Any) -> _dt.time:
    if isinstance(value, _dt.time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # YAML reads 22:00 as 1320
        value = f"{value // 60:02d}:{value % 60:02d}"
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hour, minute = map(int, value.strip().split(":"))
        if hour == 24 and minute == 0:
            return _dt.time(23, 59, 59, 999999)
        if hour < 24 and minute < 60:
            return _dt.time(hour, minute)
    raise ValueError(f"time of day {value!r}: write HH:MM, e.g. '22:00'")


@dataclass(frozen=True)
class QuietPeriod:
    """A time in which a rule sends nothing: daily hours, weekdays, or one window.

    Parameters
    ----------
    start, end : str, optional
        Times of day ``"HH:MM"``; a period that ends before it starts runs over midnight
        (``start="22:00", end="07:00"``). Without them: the whole day.
    days : sequence of str, optional
        Weekdays (``mon`` ... ``sun``) on which the period applies (for a period over
        midnight: the day it starts). Default: every day.
    begin, finish : float or str, optional
        One window instead (a maintenance or shutdown): UTC epoch seconds or ISO 8601.
    timezone : str
        IANA zone of the times of day and weekdays (default ``"UTC"``).

    Examples
    --------
    >>> night = QuietPeriod(start="22:00", end="07:00", timezone="Europe/Berlin")
    >>> night.contains(QuietPeriod.epoch("2026-12-04T23:30+01:00"))
    True
    >>> QuietPeriod(days=["sat", "sun"]).contains(QuietPeriod.epoch("2026-12-05T12:00Z"))
    True
    """

    start: Any = None
    end: Any = None
    days: Sequence[str] | None = None
    begin: Any = None
    finish: Any = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        try:
            zone = zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}: give an IANA name such as "
                             "'Europe/Berlin' or 'America/Los_Angeles'") from None
        object.__setattr__(self, "_zone", zone)
        window = self.begin is not None or self.finish is not None
        daily = self.start is not None or self.end is not None or self.days is not None
        if window and daily:
            raise ValueError("a quiet period is either a window (begin, finish) or daily "
                             "hours/weekdays (start, end, days), not both")
        if not window and not daily:
            raise ValueError("a quiet period needs start/end (HH:MM), days, or begin/finish")
        if window:
            if self.begin is None or self.finish is None:
                raise ValueError("a quiet window needs both begin and finish")
            b, f = self.epoch(self.begin), self.epoch(self.finish)
            if f <= b:
                raise ValueError(f"quiet window ends ({self.finish}) before it begins "
                                 f"({self.begin})")
            object.__setattr__(self, "begin", b)
            object.__setattr__(self, "finish", f)
            return
        if (self.start is None) != (self.end is None):
            raise ValueError("daily quiet hours need both start and end (HH:MM)")
        if self.start is not None:
            object.__setattr__(self, "start", _clock_time(self.start))
            object.__setattr__(self, "end", _clock_time(self.end))
        if self.days is not None:
            days = [self.days] if isinstance(self.days, str) else list(self.days)
            bad = [d for d in days if str(d).lower()[:3] not in WEEKDAYS]
            if bad or not days:
                raise ValueError(f"quiet days {days!r}: use {', '.join(WEEKDAYS)}")
            object.__setattr__(self, "days", tuple(str(d).lower()[:3] for d in days))

    @staticmethod
    def epoch(when: Any) -> float:
        """UTC epoch seconds of a number, ISO 8601 text (no zone = UTC) or a datetime."""
        if isinstance(when, int | float) and not isinstance(when, bool):
            return float(when)
        if isinstance(when, str):
            try:
                when = _dt.datetime.fromisoformat(when.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"time {when!r}: write ISO 8601, e.g. "
                                 "2026-12-24T08:00:00Z") from None
        if isinstance(when, _dt.date) and not isinstance(when, _dt.datetime):
            when = _dt.datetime(when.year, when.month, when.day)
        if isinstance(when, _dt.datetime):
            return (when if when.tzinfo else when.replace(tzinfo=_dt.UTC)).timestamp()
        raise ValueError(f"time {when!r}: give epoch seconds or ISO 8601 text")

    def contains(self, epoch: float) -> bool:
        """Is ``epoch`` (UTC seconds) inside this quiet period?"""
        if self.begin is not None:
            return bool(self.begin <= epoch < self.finish)
        local = _dt.datetime.fromtimestamp(epoch, self._zone)  # type: ignore[attr-defined]
        day = WEEKDAYS[local.weekday()]
        if self.start is None:
            return self.days is None or day in self.days
        now = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            inside, started = self.start <= now < self.end, day
        elif now >= self.start:  # over midnight, evening part
            inside, started = True, day
        else:
            inside = now < self.end  # over midnight, morning part: started the day before
            started = WEEKDAYS[(local.weekday() - 1) % 7]
        return inside and (self.days is None or started in self.days)

    def describe(self) -> str:
        """The period in words, for logs."""
        if self.begin is not None:
            iso = _dt.datetime.fromtimestamp
            return (f"{iso(self.begin, _dt.UTC):%Y-%m-%d %H:%M} to "
                    f"{iso(self.finish, _dt.UTC):%Y-%m-%d %H:%M} UTC")
        hours = f"{self.start:%H:%M}-{self.end:%H:%M}" if self.start is not None else "all day"
        days = f" on {','.join(self.days)}" if self.days else ""
        return f"{hours}{days} ({self.timezone})"


def _globs(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class AlertRule:
    """Which findings to send through which channel, how often.

    Parameters
    ----------
    name : str
    channel : Channel
        :class:`~spotkit.monitor.LogChannel`, :class:`~spotkit.monitor.EmailChannel`,
        :class:`~spotkit.monitor.WebhookChannel` (or your own).
    kind, metric, beamline, target : str or sequence of str, optional
        Globs the finding's field must match (any of them); None matches everything.
    severity : str
        The lowest severity sent (:data:`~spotkit.monitor.SEVERITIES`).
    dedup : float
        Seconds in which the same finding (same :attr:`Finding.key`) is sent only once.
    min_interval : float
        Seconds between two messages of this rule (findings in between wait and go
        together).
    quiet : sequence of QuietPeriod
        When nothing is sent (findings wait until the period ends).
    retry : Backoff
        Waits after a channel's failures.

    Examples
    --------
    >>> from spotkit.monitor import LogChannel
    >>> rule = AlertRule("ops", LogChannel(), kind=["quiet", "stuck"], severity="warning")
    >>> rule.selects(Finding("quiet", "arrivals", time=0.0, message="..."))
    True
    >>> rule.selects(Finding("quiet", "arrivals", time=0.0, message="...", severity="info"))
    False
    """

    name: str
    channel: Channel
    kind: str | Sequence[str] | None = None
    metric: str | Sequence[str] | None = None
    beamline: str | Sequence[str] | None = None
    target: str | Sequence[str] | None = None
    severity: str = "warning"
    dedup: float = 3600.0
    min_interval: float = 0.0
    quiet: Sequence[QuietPeriod] = ()
    retry: Backoff = field(default_factory=lambda: Backoff(first=30.0, factor=2.0,
                                                           maximum=900.0))

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"alert rule name {self.name!r}: a non-empty name without '/'")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert rule {self.name!r}: severity {self.severity!r}; choose "
                             f"one of {SEVERITIES}")
        if self.dedup < 0 or self.min_interval < 0:
            raise ValueError(f"alert rule {self.name!r}: dedup and min_interval must be >= 0")
        for name in ("kind", "metric", "beamline", "target"):
            object.__setattr__(self, name, _globs(getattr(self, name)))
        object.__setattr__(self, "quiet", tuple(self.quiet))

    def selects(self, finding: Finding) -> bool:
        """Does this rule send ``finding``?"""
        if SEVERITIES.index(finding.severity) < SEVERITIES.index(self.severity):
            return False
        for name in ("kind", "metric", "beamline", "target"):
            globs = getattr(self, name)
            if globs is None:
                continue
            value = getattr(finding, name)
            if value is None or not any(fnmatch.fnmatchcase(str(value), g) for g in globs):
                return False
        return True

    def quiet_at(self, epoch: float) -> QuietPeriod | None:
        """The quiet period ``epoch`` falls in, if any."""
        return next((q for q in self.quiet if q.contains(epoch)), None)


@dataclass(frozen=True)
class Delivery:
    """One message a rule tried to send: when, how many findings, and how it went."""

    time: float
    rule: str
    channel: str
    keys: tuple[tuple, ...]
    ok: bool
    error: str | None = None


# -- state in the catalog database ------------------------------------------------------------

_TABLES = """
CREATE TABLE IF NOT EXISTS monitor_alerts (
    rule       TEXT NOT NULL,
    key        TEXT NOT NULL,
    finding    TEXT NOT NULL,
    severity   TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    last_sent  REAL,
    sent_severity TEXT,
    sends      INTEGER NOT NULL DEFAULT 0,
    pending    INTEGER NOT NULL DEFAULT 0,
    seq        INTEGER NOT NULL DEFAULT 0,
    claimed    REAL,
    PRIMARY KEY (rule, key)
);
CREATE TABLE IF NOT EXISTS monitor_alert_sends (
    id       INTEGER PRIMARY KEY,
    time     REAL NOT NULL,
    rule     TEXT NOT NULL,
    channel  TEXT NOT NULL,
    findings INTEGER NOT NULL,
    outcome  TEXT NOT NULL,
    error    TEXT
);
CREATE INDEX IF NOT EXISTS monitor_alerts_pending ON monitor_alerts (rule, pending);
CREATE INDEX IF NOT EXISTS monitor_alert_sends_rule ON monitor_alert_sends (rule, time)
"""


def _create_tables(conn: Any) -> None:
    if not table_exists(conn, "monitor_alert_sends"):
        run_ddl(conn, _TABLES)


register_tables("monitor_alerts", _create_tables)


def _finding_from(text: str) -> Finding:
    data = json.loads(text)
    names = {f.name for f in dataclasses.fields(Finding)}
    return Finding(**{k: v for k, v in data.items() if k in names})


def _key_text(finding: Finding) -> str:
    return json.dumps(list(finding.key))


class Alerts:
    """Apply alert rules to findings: de-duplicate, hold in quiet periods, send, retry.

    Parameters
    ----------
    rules : sequence of AlertRule
    state : path-like, str or None
        The catalog database (file or PostgreSQL URL) that keeps what was sent, so that a
        restarted watcher does not send it again; None keeps it in memory (for a notebook).
    clock : callable
        ``clock() -> epoch seconds`` (tests pass a fake one).

    Examples
    --------
    >>> from spotkit.monitor import LogChannel
    >>> alerts = Alerts([AlertRule("log", LogChannel(), dedup=600)], clock=lambda: 1000.0)
    >>> f = Finding("quiet", "arrivals", time=1000.0, beamline="8.3.2", message="silent")
    >>> [d.ok for d in alerts.dispatch([f])]
    [True]
    >>> alerts.dispatch([f])  # the same finding within 600 s: not sent again
    []
    >>> alerts.close()
    """

    def __init__(self, rules: Sequence[AlertRule], *, state: Any = None,
                 clock: Callable[[], float] = time.time):
        names = [r.name for r in rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"alert rule names repeat: {twice}; give each rule its own name")
        self.rules = tuple(rules)
        self.clock = clock
        self._lock = threading.RLock()
        self._failures: dict[str, int] = {}
        self._next_attempt: dict[str, float] = {}
        if state is None:
            self._where = "memory"
            self._conn: Any = sqlite3.connect(":memory:", isolation_level=None,
                                              check_same_thread=False)
        else:
            path = getattr(state, "path", state)  # a Catalog gives its database
            self._where = str(path)
            self._conn = connect_database(path if "://" in str(path) else os.fspath(path))
        if not table_exists(self._conn, "monitor_alert_sends"):
            with write_transaction(self._conn, self._where, "creating the alert tables",
                                   when_locked="will retry") as conn:
                _create_tables(conn)

    def close(self) -> None:
        """Close the state database."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Alerts:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- the work ------------------------------------------------------------------------

    def dispatch(self, findings: Iterable[Finding], now: float | None = None) -> list[Delivery]:
        """Take new findings, and send what each rule may send now.

        Parameters
        ----------
        findings : iterable of Finding
            Findings of this check (a lasting condition may be reported every time).
        now : float, optional
            Default: the clock.

        Returns
        -------
        list of Delivery
            The messages tried (failed ones too); empty when nothing was due.
        """
        now = self.clock() if now is None else float(now)
        findings = list(findings)
        out = []
        errors: tuple[type[BaseException], ...] = (CatalogError, *database_errors())
        with self._lock:
            for rule in self.rules:
                try:
                    self._take(rule, [f for f in findings if rule.selects(f)], now)
                    delivery = self._flush(rule, now)
                except errors as exc:
                    log.warning("alert rule %s: cannot read or write the alert state in %s: "
                                "%s (trying again at the next check)", rule.name,
                                self._where, exc)
                    continue
                if delivery is not None:
                    out.append(delivery)
        return out

    def _take(self, rule: AlertRule, findings: list[Finding], now: float) -> None:
        if not findings:
            return
        with write_transaction(self._conn, self._where, f"alert rule {rule.name}",
                               when_locked="trying again at the next check") as conn:
            for f in findings:
                key = _key_text(f)
                row = conn.execute(
                    "SELECT last_sent, sent_severity, pending FROM monitor_alerts "
                    "WHERE rule = ? AND key = ?", (rule.name, key)).fetchone()
                text = json.dumps(f.as_dict(), default=str)
                if row is None:
                    conn.execute(
                        "INSERT INTO monitor_alerts (rule, key, finding, severity, first_seen, "
                        "last_seen, pending, seq) VALUES (?, ?, ?, ?, ?, ?, 1, (SELECT "
                        "COALESCE(MAX(seq), 0) + 1 FROM monitor_alerts))",
                        (rule.name, key, text, f.severity, now, now))
                    continue
                last_sent, sent_severity, pending = row
                recent = last_sent is not None and now - last_sent < rule.dedup
                worse = (sent_severity is not None and SEVERITIES.index(f.severity)
                         > SEVERITIES.index(sent_severity))
                if recent and not worse and not pending:
                    conn.execute("UPDATE monitor_alerts SET last_seen = ? WHERE rule = ? AND "
                                 "key = ?", (now, rule.name, key))
                    continue
                conn.execute(
                    "UPDATE monitor_alerts SET finding = ?, severity = ?, last_seen = ?, "
                    "first_seen = CASE WHEN pending = 1 THEN first_seen ELSE ? END, "
                    "seq = CASE WHEN pending = 1 THEN seq ELSE (SELECT COALESCE(MAX(seq), 0) "
                    "+ 1 FROM monitor_alerts) END, pending = 1 WHERE rule = ? AND key = ?",
                    (text, f.severity, now, now, rule.name, key))

    def _flush(self, rule: AlertRule, now: float) -> Delivery | None:
        quiet = rule.quiet_at(now)
        if quiet is not None:
            log.debug("alert rule %s: quiet period %s, findings wait", rule.name,
                      quiet.describe())
            return None
        if now < self._next_attempt.get(rule.name, -float("inf")):
            return None
        rows = self._claim(rule, now)
        if not rows:
            return None
        findings = [_finding_from(text) for _key, text in rows]
        keys = tuple(tuple(f.key) for f in findings)
        channel = getattr(rule.channel, "kind", type(rule.channel).__name__)
        try:
            rule.channel.send(findings, rule=rule.name)
        except Exception as exc:  # a channel's failure must never stop the watcher
            failures = self._failures.get(rule.name, 0) + 1
            self._failures[rule.name] = failures
            wait = rule.retry.delay(failures)
            self._next_attempt[rule.name] = now + wait
            level = logging.WARNING if isinstance(exc, NotifyError) else logging.ERROR
            log.log(level, "alert rule %s: %s channel failed (%s); %d finding(s) kept, "
                    "trying again in %.0f s", rule.name, channel, exc, len(findings), wait)
            with write_transaction(self._conn, self._where, f"alert rule {rule.name}",
                                   when_locked="not recorded") as conn:
                for key, _text in rows:
                    conn.execute("UPDATE monitor_alerts SET claimed = NULL WHERE rule = ? AND "
                                 "key = ?", (rule.name, key))
                self._insert_send(conn, rule, channel, len(findings), now, str(exc))
            return Delivery(now, rule.name, channel, keys, False, str(exc))
        self._failures.pop(rule.name, None)
        self._next_attempt.pop(rule.name, None)
        with write_transaction(self._conn, self._where, f"alert rule {rule.name}",
                               when_locked="it may be sent again") as conn:
            for (key, text), f in zip(rows, findings, strict=True):
                # a finding updated meanwhile (by another watcher) stays pending
                conn.execute(
                    "UPDATE monitor_alerts SET pending = 0, last_sent = ?, sent_severity = ?, "
                    "sends = sends + 1 WHERE rule = ? AND key = ? AND finding = ?",
                    (now, f.severity, rule.name, key, text))
                conn.execute("UPDATE monitor_alerts SET claimed = NULL WHERE rule = ? AND "
                             "key = ?", (rule.name, key))
            self._insert_send(conn, rule, channel, len(findings), now, None)
        return Delivery(now, rule.name, channel, keys, True)

    def _claim(self, rule: AlertRule, now: float) -> list[tuple[str, str]]:
        """The rule's pending findings, claimed for this sender in one write transaction:
        two watchers on one catalog never send the same finding twice (a claim older than
        :data:`CLAIM_SECONDS`, of a sender that died, is taken over)."""
        with write_transaction(self._conn, self._where, f"alert rule {rule.name}",
                               when_locked="trying again at the next check") as conn:
            if rule.min_interval > 0:
                (last,) = conn.execute(
                    "SELECT MAX(time) FROM monitor_alert_sends WHERE rule = ? AND "
                    "outcome = 'ok'", (rule.name,)).fetchone()
                if last is not None and now - last < rule.min_interval:
                    return []
            rows = conn.execute(
                "SELECT key, finding FROM monitor_alerts WHERE rule = ? AND pending = 1 AND "
                "(claimed IS NULL OR claimed < ?) ORDER BY first_seen, seq",
                (rule.name, now - CLAIM_SECONDS)).fetchall()
            for key, _text in rows:
                conn.execute("UPDATE monitor_alerts SET claimed = ? WHERE rule = ? AND key = ?",
                             (now, rule.name, key))
        return [(str(k), str(t)) for k, t in rows]

    @staticmethod
    def _insert_send(conn: Any, rule: AlertRule, channel: str, n: int, now: float,
                     error: str | None) -> None:
        conn.execute(
            "INSERT INTO monitor_alert_sends (time, rule, channel, findings, outcome, error) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (now, rule.name, channel, n, "ok" if error is None else "failed", error))

    # -- reading the state -----------------------------------------------------------------

    def pending(self, rule: str | None = None) -> list[Finding]:
        """Findings waiting to be sent (in a quiet period, a minimum interval, or a retry)."""
        with self._lock:
            sql = "SELECT finding FROM monitor_alerts WHERE pending = 1"
            params: tuple = ()
            if rule is not None:
                sql, params = sql + " AND rule = ?", (rule,)
            rows = self._conn.execute(sql + " ORDER BY first_seen, seq", params).fetchall()
        return [_finding_from(text) for (text,) in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """``{(rule, "ok" or "failed"): messages}`` since the state was created."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT rule, outcome, COUNT(*) FROM monitor_alert_sends GROUP BY rule, outcome"
            ).fetchall()
        return {(r, o): int(n) for r, o, n in rows}

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last ``limit`` messages: time, rule, channel, findings, outcome, error."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT time, rule, channel, findings, outcome, error FROM monitor_alert_sends "
                "ORDER BY time DESC, id DESC LIMIT ?", (int(limit),)).fetchall()
        names = ("time", "rule", "channel", "findings", "outcome", "error")
        return [dict(zip(names, r, strict=True)) for r in rows]
