"""One point of a live series (:class:`LivePoint`) and how it is checked and stored."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LIVE_KINDS", "LivePoint"]

#: The kinds of point ``spotkit live`` records; a kind may carry a name after a colon
#: (``"fit:sphere"``, ``"decision:notify-beamline"``), and a ``kinds=`` filter of ``"fit"``
#: selects every ``"fit:..."`` kind.
LIVE_KINDS = ("features", "event", "fit", "decision")

_KIND = re.compile(r"[a-z][a-z0-9_]*(:[A-Za-z0-9_.@+-]+)?")
_VALUE_TYPES = "float, int, bool, str or None"


@dataclass(frozen=True)
class LivePoint:
    """What is known about one frame of a series while it is being written.

    Parameters
    ----------
    frame : int
        The frame index in the series (>= 0).
    kind : str
        ``"features"`` (the online detector's features, score and state for the frame),
        ``"event"`` (a confirmed change: onset, end, confidence, feature), ``"fit:<model>"``
        (fitted parameters, ``"<name>_err"`` and ``"chi2"``) or ``"decision"`` (what a
        rule did and why); a name may follow the colon of any kind
        (``"decision:notify"``). One point per (series, frame, kind): recording it again
        replaces it.
    values : dict of str to float, int, bool, str or None
        The numbers (or short texts) of the point.
    time_s : float, optional
        The frame's time in the series (seconds from its start), if the writer says.
    written_at : float, optional
        Unix time at which the frame was seen written (for latency).
    recorded_at : float, optional
        Unix time at which the catalog recorded the point (set by
        :meth:`~spotkit.catalog.Catalog.record_live`; ignored when recording).

    Examples
    --------
    >>> from spotkit.catalog import LivePoint
    >>> p = LivePoint(12, "features", {"score": 0.8, "state": "stable"}, time_s=1.2)
    >>> p.frame, p.kind, p.values["state"]
    (12, 'features', 'stable')
    >>> p.family
    'features'
    >>> LivePoint(12, "fit:sphere", {"radius": 41.5}).family
    'fit'
    """

    frame: int
    kind: str
    values: dict[str, Any] = field(default_factory=dict, hash=False)  # hashable points
    time_s: float | None = None
    written_at: float | None = None
    recorded_at: float | None = None

    @property
    def family(self) -> str:
        """The kind without its name: ``"fit"`` for ``"fit:sphere"``."""
        return self.kind.split(":", 1)[0]


def check_kind(kind: Any, what: str = "kind") -> str:
    """A point kind as stored, or a ValueError naming what is wrong."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(
            f"{what} {kind!r} is not a live point kind: use one of {LIVE_KINDS}, optionally "
            "with a name after a colon (e.g. 'fit:sphere'; letters, digits, _ . @ + -)")
    return kind


def kind_clause(kinds: Any) -> tuple[str, list[str]]:
    """SQL (`` AND (...)``) and parameters selecting ``kinds``: each an exact kind, or a
    bare family (``"fit"``) that also selects its named kinds (``"fit:sphere"``)."""
    if kinds is None:
        return "", []
    if isinstance(kinds, str):
        kinds = [kinds]
    terms: list[str] = []
    args: list[str] = []
    for kind in kinds:
        check_kind(kind, "kinds entry")
        if ":" in kind:
            terms.append("kind = ?")
            args.append(kind)
        else:  # the family: the kind itself and its "kind:..." (':' < ';' byte-wise)
            terms.append("(kind = ? OR (kind > ? AND kind < ?))")
            args += [kind, kind + ":", kind + ";"]
    if not terms:
        raise ValueError("kinds is empty: give None for every kind, or at least one kind")
    return " AND (" + " OR ".join(terms) + ")", args


def _scalar(value: Any, where: str) -> Any:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a 0-d numpy array
        return _scalar(value.item(), where)
    raise TypeError(f"{where} is a {type(value).__name__}; a live point value must be "
                    f"one {_VALUE_TYPES} (put arrays in the ProfileLog)")


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where} must be a number (seconds) or None, got {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None


def point_row(point: Any, where: str) -> tuple[int, str, str, float | None, float | None]:
    """(frame, kind, payload JSON, time_s, written_at) of a point (a LivePoint or a mapping
    with the same fields), checked; errors name the point."""
    if isinstance(point, Mapping):
        unknown = sorted(set(point) - {"frame", "kind", "values", "time_s", "written_at",
                                       "recorded_at"})
        if unknown or "frame" not in point or "kind" not in point:
            raise TypeError(f"{where}: a mapping needs 'frame' and 'kind' (and optionally "
                            f"'values', 'time_s', 'written_at'); unknown keys {unknown}")
        point = LivePoint(point["frame"], point["kind"], dict(point.get("values") or {}),
                          point.get("time_s"), point.get("written_at"))
    if not isinstance(point, LivePoint):
        raise TypeError(f"{where} is a {type(point).__name__}, not a LivePoint")
    frame = point.frame
    if isinstance(frame, bool) or not isinstance(frame, numbers.Integral) or frame < 0:
        raise ValueError(f"{where}: frame must be an integer >= 0, got {frame!r}")
    kind = check_kind(point.kind, f"{where}: kind")
    if not isinstance(point.values, Mapping):
        raise TypeError(f"{where}: values must be a dict, got {type(point.values).__name__}")
    values = {}
    for key, value in point.values.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: value names must be str, got {key!r}")
        values[key] = _scalar(value, f"{where} ({kind}, frame {frame}): value {key!r}")
    payload = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return (int(frame), kind, payload, _number(point.time_s, f"{where}: time_s"),
            _number(point.written_at, f"{where}: written_at"))


def point_from_row(row: Any) -> LivePoint:
    """A LivePoint from (frame, kind, payload, time_s, written_at, recorded_at)."""
    return LivePoint(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])


def points_from_rows(rows: list, skip: int = 0) -> list[LivePoint]:
    """LivePoints from rows of (frame, kind, payload, time_s, written_at, recorded_at),
    after ``skip`` leading columns; the payloads are parsed in one go (a third faster
    than one by one on a long series)."""
    if not rows:
        return []
    k = skip
    values = json.loads("[" + ",".join(r[k + 2] for r in rows) + "]")
    return [LivePoint(r[k], r[k + 1], v, r[k + 3], r[k + 4], r[k + 5])
            for r, v in zip(rows, values, strict=True)]
