"""argparse types of the ``spotkit`` options: counts, seconds, times and ``-p`` values.

Each refuses a bad value with one sentence that names the allowed forms and an example.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re

import yaml


def _whole(minimum: int, example: str):
    """argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number; give one of at least {minimum}, "
                f"e.g. {example}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be at least {minimum}, not {value}; e.g. {example}")
        return value

    return parse


def _port(text: str) -> int:
    """argparse type: a TCP port number, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def _seconds(*, zero_ok: bool, example: str):
    """argparse type: a finite number of seconds, > 0 (or >= 0 with ``zero_ok``)."""

    def parse(text: str) -> float:
        bound = "0 or more" if zero_ok else "more than 0"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number of seconds; give {bound}, e.g. {example}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(
                f"must be {bound} seconds, not {text}; e.g. {example}")
        return value

    return parse


_UNITS = {"m": "minutes", "min": "minutes", "mins": "minutes", "minute": "minutes",
          "minutes": "minutes", "h": "hours", "hr": "hours", "hrs": "hours", "hour": "hours",
          "hours": "hours", "d": "days", "day": "days", "days": "days", "w": "weeks",
          "week": "weeks", "weeks": "weeks"}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]+)(?:\s+ago)?$")
TIME_FORMS = ("an ISO date or time (2026-01-31, 2026-01-31T13:30, 2026-01-31T13:30+01:00; "
              "UTC unless an offset is given), 'today', 'yesterday', 'now', or an age such "
              "as 30m, 2h, 7d, 2w (also '3 days' or '3 days ago')")


def _now() -> dt.datetime:
    """The current UTC time (one place, so tests can hold the clock still)."""
    return dt.datetime.now(dt.UTC)


def _when(*, end: bool):
    """argparse type for ``--since`` (``end=False``) and ``--until`` (``end=True``).

    ISO text is passed on as given (the catalog reads it; a bare ``--until`` date includes
    that whole day); 'today'/'yesterday' are UTC days, as the catalog shows times in UTC.
    """

    def parse(text: str):
        word = text.strip().lower()
        now = _now()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if word == "now":
            return now
        if word in ("today", "yesterday"):
            day = midnight - dt.timedelta(days=1 if word == "yesterday" else 0)
            return day + dt.timedelta(days=1) if end else day
        match = _RELATIVE.match(word)
        if match and match.group(2) in _UNITS:
            try:
                return now - dt.timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
            except OverflowError:
                raise argparse.ArgumentTypeError(
                    f"{text!r} reaches back before the year 1; give a shorter age or a "
                    "date") from None
        try:
            if len(text.strip()) == 10:
                dt.date.fromisoformat(text.strip())
            else:
                dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a time spotkit understands; give {TIME_FORMS}") from None
        return text.strip()

    return parse


def _parse_value(text: str):
    """Parse a ``-p NAME VALUE`` value as YAML (numbers, booleans, lists, null); dates and
    anything YAML cannot read stay text."""
    if text.strip() in ("None", "null", "~"):
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None or not isinstance(value, int | float | bool | str | list | dict):
        return text
    return value
