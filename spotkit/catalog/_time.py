"""Conversions between the catalog's stored timestamps (UTC epoch seconds) and datetimes."""

from __future__ import annotations

import datetime as _dt

__all__ = ["from_epoch", "now_epoch", "to_epoch"]

UTC = _dt.UTC


def now_epoch() -> float:
    """Return the current time as UTC epoch seconds."""
    return _dt.datetime.now(UTC).timestamp()


def to_epoch(value, *, name: str = "time", end_of_day: bool = False) -> float | None:
    """Convert a datetime, date, ISO string or epoch number to UTC epoch seconds.

    Parameters
    ----------
    value : datetime.datetime, datetime.date, str, float or None
        The time. Naive datetimes (and dates, and ISO strings without an offset) are taken
        as UTC.
    name : str, optional
        Name of the argument, used in the error message.
    end_of_day : bool, optional
        When ``value`` is a bare date (or an ISO date string without a time), return the
        first instant of the *next* day instead of the first instant of that day, so that a
        range ``until=date`` includes the whole day.

    Returns
    -------
    float or None
        ``None`` when ``value`` is ``None``.

    Raises
    ------
    ValueError
        If ``value`` is a string that is not ISO 8601.
    TypeError
        If ``value`` has an unsupported type.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a datetime, date, ISO string or number, not bool")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:  # YYYY-MM-DD
                value = _dt.date.fromisoformat(text)
            else:
                value = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{name}={value!r} is not an ISO 8601 date or time; "
                "use e.g. '2024-05-01' or '2024-05-01T13:30:00+00:00'"
            ) from None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, _dt.date):
        day = value + _dt.timedelta(days=1) if end_of_day else value
        return _dt.datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    raise TypeError(
        f"{name} must be a datetime, date, ISO string or number, not {type(value).__name__}"
    )


def from_epoch(value: float | None) -> _dt.datetime | None:
    """Convert UTC epoch seconds to an aware UTC datetime (``None`` stays ``None``)."""
    if value is None:
        return None
    return _dt.datetime.fromtimestamp(value, UTC)
