"""Missing arrivals: a beamline quiet during its beamtime, and scan number gaps
(see :mod:`spotkit.monitor._missing`)."""

from __future__ import annotations

import datetime as _dt
import itertools
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from spotkit.monitor._findings import Finding
from spotkit.monitor._missing_base import (
    DEFAULT_SCAN_PATTERN,
    _clock,
    _detail,
    _frame,
    _span,
    _text,
    p99,
    scan_number,
)
from spotkit.monitor._missing_beamtime import ALL_BEAMLINES

__all__ = ["Schedule", "check_gaps", "check_quiet", "learn_interarrival"]


# -- beamtime schedules -----------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """When each beamline is expected to send data (its scheduled beamtime).

    Two sources, and the one used is said in each finding (``detail["schedule"]``):

    * ``windows``: beamtime windows from configuration, ``{beamline: [(start, end), ...]}``
      (UTC epoch seconds or ISO 8601 strings; ``"*"``: the windows of every beamline not
      listed; a beamline not listed otherwise has no beamtime); :meth:`parse` reads them
      from ``START/END`` text or a beamtime file.
    * ``hours``: activity hours inferred from history (:meth:`infer`), ``{beamline:
      {hour of week (0 = Monday 00:00 UTC, ..., 167)}}``; a beamline is in beamtime in the
      hours it sent data in most weeks.

    With neither (``Schedule()``), every beamline is always in beamtime.

    Examples
    --------
    >>> s = Schedule(windows={"8.3.2": [("2026-12-04T08:00Z", "2026-12-04T20:00Z")]})
    >>> s.active("8.3.2", Schedule.epoch("2026-12-04T09:00Z"))
    True
    >>> s.active("7.3.3", Schedule.epoch("2026-12-04T09:00Z")), s.source
    (False, 'windows')
    """

    windows: Mapping[str, tuple[tuple[float, float], ...]] | None = None
    hours: Mapping[str, frozenset[int]] | None = None

    def __post_init__(self) -> None:
        if self.windows is not None:
            fixed: dict[str, tuple[tuple[float, float], ...]] = {}
            for beamline, spans in self.windows.items():
                pairs = []
                for span in spans:
                    try:
                        start, end = span
                    except (TypeError, ValueError):
                        raise ValueError(f"beamtime window {span!r} of {beamline!r}: give "
                                         "(start, end)") from None
                    s, e = self.epoch(start), self.epoch(end)
                    if e <= s:
                        raise ValueError(f"beamtime window {span!r} of {beamline!r} ends "
                                         "before it starts")
                    pairs.append((s, e))
                fixed[str(beamline)] = tuple(sorted(pairs))
            object.__setattr__(self, "windows", fixed)

    @staticmethod
    def epoch(when: float | str | _dt.datetime) -> float:
        """UTC epoch seconds of a number, an ISO 8601 string (no zone = UTC) or a datetime."""
        if isinstance(when, int | float) and not isinstance(when, bool):
            return float(when)
        if isinstance(when, str):
            try:
                when = _dt.datetime.fromisoformat(when.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"time {when!r}: write ISO 8601, e.g. "
                                 "2026-12-04T08:00:00Z") from None
        if isinstance(when, _dt.datetime):
            if when.tzinfo is None:
                when = when.replace(tzinfo=_dt.UTC)
            return when.timestamp()
        raise ValueError(f"time {when!r}: give epoch seconds or ISO 8601 text")

    @classmethod
    def parse(cls, windows: Iterable[str] = (), *, path: str | os.PathLike | None = None,
              beamline: str | None = None) -> Schedule:
        """Beamtime windows written as text, from the command line or a file.

        Parameters
        ----------
        windows : iterable of str
            ``START/END`` in ISO 8601 (no zone: UTC), or ``BEAMLINE=START/END``.
        path : path-like, optional
            A beamtime file: YAML ``{beamline: [START/END or [START, END], ...]}``, a list
            of windows, or one window per line (``#``: a comment); see
            :mod:`spotkit.monitor._missing_beamtime`.
        beamline : str, optional
            Whose the windows without a beamline are (default: every beamline's).

        Returns
        -------
        Schedule
            With ``windows`` (both sources together).

        Raises
        ------
        ValueError
            Naming the window (and the file) that cannot be read or ends before it starts.

        Examples
        --------
        >>> s = Schedule.parse(["2026-12-04T08:00Z/2026-12-04T20:00Z",
        ...                     "7.3.3=2026-12-05T08:00Z/2026-12-05T12:00Z"])
        >>> s.active("8.3.2", Schedule.epoch("2026-12-04T09:00Z"))
        True
        >>> s.active("7.3.3", Schedule.epoch("2026-12-04T09:00Z"))
        False
        """
        from spotkit.monitor._missing_beamtime import parse_windows, read_windows

        spans = parse_windows(windows, beamline=beamline)
        if path is not None:
            for name, more in read_windows(path, beamline=beamline).items():
                spans.setdefault(name, []).extend(more)
        given: Any = spans  # text times, made epoch seconds by __post_init__
        return cls(windows=given)

    @property
    def source(self) -> str:
        """``"windows"`` (configured), ``"hours"`` (inferred) or ``"always"``."""
        if self.windows is not None:
            return "windows"
        return "hours" if self.hours is not None else "always"

    @classmethod
    def infer(cls, events: pd.DataFrame, *, min_fraction: float = 0.5,
              step: str = "complete") -> Schedule:
        """Activity hours of each beamline from history: the hours of the week (UTC) in
        which it sent data in at least ``min_fraction`` of the weeks seen."""
        ev = _frame(events)
        ev = ev[ev["step"] == step]
        hours: dict[str, frozenset[int]] = {}
        for beamline, grp in ev.groupby("beamline"):
            epoch_hours = (grp["time"].to_numpy(dtype=float) // 3600).astype(np.int64)
            how = _hour_of_week(epoch_hours)
            week = (epoch_hours + 3 * 24) // 168  # weeks from Monday to Monday
            weeks = max(1, int(week.max() - week.min() + 1))
            seen = pd.DataFrame({"how": how, "week": week}).drop_duplicates()
            counts = seen.groupby("how").size()
            hours[str(beamline)] = frozenset(
                int(h) for h, n in counts.items() if n >= min_fraction * weeks)
        return cls(hours=hours)

    def active(self, beamline: str, when: float) -> bool:
        """Is ``beamline`` in its beamtime at ``when``?"""
        return self.since(beamline, when) is not None

    def since(self, beamline: str, when: float) -> float | None:
        """When the beamtime that ``when`` lies in began (None outside beamtime)."""
        if self.windows is not None:
            spans = self.windows.get(beamline, self.windows.get(ALL_BEAMLINES, ()))
            for start, end in spans:
                if start <= when < end:
                    return start
            return None
        if self.hours is not None:
            active = self.hours.get(beamline, frozenset())
            hour = int(when // 3600)
            if _hour_of_week(hour) not in active:
                return None
            while _hour_of_week(hour - 1) in active and hour > when // 3600 - 168:
                hour -= 1
            return float(hour * 3600)
        return -math.inf

    def same_beamtime(self, beamline: str, t0: float, t1: float) -> bool:
        """Do ``t0`` and ``t1`` lie in the same stretch of beamtime?"""
        s0 = self.since(beamline, t0)
        return s0 is not None and s0 == self.since(beamline, t1)


def _hour_of_week(epoch_hour: Any) -> Any:
    # 1970-01-01 was a Thursday: hour 0 of the epoch is hour 3 * 24 of its week
    return (epoch_hour + 3 * 24) % 168


# -- (a) quiet beamlines ------------------------------------------------------------------------


def _arrivals(ev: pd.DataFrame, step: str) -> dict[str, np.ndarray]:
    got = ev[(ev["step"] == step) & ev["beamline"].notna()]
    return {str(b): g["time"].to_numpy(dtype=float) for b, g in got.groupby("beamline")}


def _intervals(times: np.ndarray, beamline: str, schedule: Schedule) -> list[float]:
    """Gaps between consecutive arrivals inside one stretch of beamtime (nights and
    shutdowns between beamtimes are not part of the cadence)."""
    return [float(b - a) for a, b in itertools.pairwise(times)
            if schedule.same_beamtime(beamline, a, b)]


def learn_interarrival(events: pd.DataFrame, *, schedule: Schedule | None = None,
                       step: str = "complete", min_samples: int = 20) -> dict[str, float]:
    """p99 of the inter-arrival interval per beamline, inside beamtime only."""
    schedule = schedule or Schedule()
    out = {}
    for beamline, times in _arrivals(_frame(events), step).items():
        value = p99(_intervals(times, beamline, schedule), min_samples=min_samples)
        if value is not None:
            out[beamline] = value
    return out


def check_quiet(events: pd.DataFrame, now: float, *, schedule: Schedule | None = None,
                expected: Mapping[str, float] | None = None, factor: float = 2.0,
                step: str = "complete", min_samples: int = 20) -> list[Finding]:
    """Beamlines that sent nothing for ``factor`` x their p99 inter-arrival during beamtime.

    Parameters
    ----------
    events : pandas.DataFrame
        Telemetry events (at least ``time``, ``step``, ``beamline``).
    now : float
        The time of the check (UTC epoch seconds).
    schedule : Schedule, optional
        When each beamline has beamtime (default: always).
    expected : mapping, optional
        ``{beamline: p99 inter-arrival seconds}``; default: learned from ``events``.
    factor : float
        How many p99 intervals of silence make a finding.
    step : str
        The event that counts as an arrival.
    min_samples : int
        Intervals needed to learn a beamline's cadence (beamlines with fewer are skipped).

    Returns
    -------
    list of Finding
        Kind ``"quiet"``, metric ``"arrivals"``, onset at the last arrival (or the start of
        the beamtime, if later); ``magnitude`` is the silence in seconds.

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"time": [60.0 * i for i in range(30)], "step": "complete",
    ...                    "beamline": "8.3.2"})
    >>> check_quiet(ev, now=29 * 60 + 100)
    []
    >>> [f.message for f in check_quiet(ev, now=29 * 60 + 150)]  # doctest: +ELLIPSIS
    ['beamline 8.3.2 has sent nothing for 2.5 min during its beamtime (usually every 60 s...']
    """
    if factor <= 0:
        raise ValueError(f"factor must be > 0, not {factor!r}")
    schedule = schedule or Schedule()
    ev = _frame(events)
    arrivals = _arrivals(ev, step)
    learned = dict(expected) if expected is not None else None
    out = []
    beamlines = set(arrivals) | set(learned or {})
    if schedule.windows is not None:
        beamlines |= set(schedule.windows) - {ALL_BEAMLINES}
    for beamline in sorted(beamlines):
        since = schedule.since(beamline, now)
        if since is None:
            continue  # no beamtime now: silence is expected
        times = arrivals.get(beamline, np.empty(0))
        times = times[times <= now]
        if learned is not None:
            limit_p99 = learned.get(beamline)
            if limit_p99 is None:
                continue  # cadence not known yet
        gaps = _intervals(times[-200:], beamline, schedule)  # the recent cadence, for people
        typical = float(np.median(gaps)) if gaps else None
        if learned is None:
            limit_p99 = p99(_intervals(times, beamline, schedule), min_samples=min_samples)
        if limit_p99 is None:
            continue  # cadence not known yet
        last = float(times[-1]) if times.size else None
        onset = max(last if last is not None else -math.inf, since)
        if not np.isfinite(onset):
            continue  # never sent, and the beamtime has no start: nothing to measure from
        silent = now - onset
        if silent <= factor * limit_p99:
            continue
        usually = f"usually every {_span(typical)}, " if typical is not None else ""
        last_text = (f"last arrival {_clock(last)}" if last is not None
                     else "nothing arrived yet")
        message = (f"beamline {beamline} has sent nothing for {_span(silent)} during its "
                   f"beamtime ({usually}p99 {_span(limit_p99)}; {last_text}): check the "
                   "detector, the acquisition and the inbox mount")
        out.append(Finding(
            "quiet", "arrivals", time=float(now), message=message, onset=float(onset),
            beamline=beamline, magnitude=float(silent),
            detail={"p99_interval": limit_p99, "factor": factor, "last_arrival": last,
                    "schedule": schedule.source, "unit": "s"}))
    return out


# -- (b) scan number gaps ------------------------------------------------------------------------


def _scan_name(row: Any) -> Any:
    detail = _detail(row.detail)
    for key in ("scan_number", "scan"):
        if isinstance(detail.get(key), int):
            return f"{detail.get('series', '')}{detail[key]}"
    for key in ("name", "path"):
        if isinstance(detail.get(key), str):
            return detail[key]
    return _text(row.item) or _text(row.dataset_id)


def check_gaps(events: pd.DataFrame, now: float, *, expected: Mapping[str, float] | None = None,
               factor: float = 2.0, step: str = "complete",
               pattern: str = DEFAULT_SCAN_PATTERN, max_missing: int = 100,
               min_samples: int = 20, grace: float | None = None) -> list[Finding]:
    """Scan numbers skipped in a beamline's series (``scan_0041``, then ``scan_0043``).

    The number comes from ``detail["scan_number"]`` (with ``detail["series"]``), else from
    the file name (``detail["name"]``/``"path"``, ``item``, then ``dataset_id``) by
    ``pattern`` (see :func:`scan_number`). Scans may arrive out of order: a gap is reported
    once the scan after it is older than ``grace`` (default ``factor`` x the beamline's p99
    inter-arrival) and the missing numbers have still not come.

    Parameters
    ----------
    events : pandas.DataFrame
    now : float
    expected : mapping, optional
        ``{beamline: p99 inter-arrival seconds}``; default: learned from ``events``.
    factor : float
    step : str
        The event that counts as an arrival.
    pattern : str
        Regular expression with groups ``number`` (and ``prefix``) for the file stem.
    max_missing : int
        A larger jump is a renumbering, reported with severity ``"info"``.
    min_samples : int
    grace : float, optional
        Seconds to wait for late scans (overrides the learned value).

    Returns
    -------
    list of Finding
        Kind ``"gap"``, metric ``"scan_number"``, one per gap; ``onset`` is the arrival of
        the scan before the gap, ``dataset_id`` the scan after it, ``detail["missing"]``
        the numbers.

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"time": [0.0, 60.0, 120.0], "step": "complete", "beamline": "7.3.3",
    ...                    "item": ["scan_0041.h5", "scan_0043.h5", "scan_0044.h5"]})
    >>> [f.message for f in check_gaps(ev, now=400.0, grace=120)]  # doctest: +ELLIPSIS
    ['beamline 7.3.3: scan 42 of series scan_ is missing (between scan_0041.h5 and ...']
    """
    ev = _frame(events)
    got = ev[(ev["step"] == step) & ev["beamline"].notna()]
    learned = dict(expected) if expected is not None else (
        {} if grace is not None else learn_interarrival(ev, step=step, min_samples=min_samples))
    compiled = re.compile(pattern)
    out = []
    for beamline, grp in got.groupby("beamline"):
        beamline = str(beamline)
        wait = grace if grace is not None else (
            factor * learned[beamline] if beamline in learned else None)
        if wait is None:
            continue  # cadence unknown: cannot tell a gap from a late scan
        series: dict[str, list[tuple[int, float, str, str | None]]] = {}
        for row in grp.itertuples(index=False):
            name = _scan_name(row)
            parsed = scan_number(name, compiled)
            if parsed is None:
                continue
            prefix, number = parsed
            series.setdefault(prefix, []).append(
                (number, float(row.time), str(name), _text(row.dataset_id)))
        for prefix, scans in series.items():
            seen = {n for n, *_ in scans}
            ordered = sorted(scans, key=lambda s: (s[0], s[1]))
            for before, after in itertools.pairwise(ordered):
                missing = [n for n in range(before[0] + 1, after[0]) if n not in seen]
                if not missing or now - after[1] <= wait:
                    continue
                onset = min(before[1], after[1])
                if len(missing) > max_missing:
                    severity = "info"
                    what = (f"scan numbers of series {prefix or '(no prefix)'} jumped from "
                            f"{before[0]} to {after[0]} (a renumbering?)")
                else:
                    severity = "warning"
                    nums = (str(missing[0]) if len(missing) == 1
                            else f"{missing[0]}-{missing[-1]}")
                    what = (f"scan{'s' if len(missing) > 1 else ''} {nums} of series "
                            f"{prefix or '(no prefix)'} {'is' if len(missing) == 1 else 'are'} "
                            f"missing (between {before[2]} and {after[2]})")
                message = (f"beamline {beamline}: {what}; check the inbox and the "
                           "acquisition log for an aborted or misplaced scan")
                out.append(Finding(
                    "gap", "scan_number", time=float(now), message=message, onset=onset,
                    severity=severity, beamline=beamline, dataset_id=after[3] or after[2],
                    magnitude=float(len(missing)),
                    detail={"series": prefix, "missing": missing[:max_missing],
                            "before": before[2], "after": after[2], "grace": wait,
                            "unit": "scans"}))
    return out

