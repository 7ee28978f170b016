"""Beamtime windows of ``spotkit monitor missing`` (``--beamtime``, ``--beamtime-file``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__: list[str] = []


def _beamtime(args) -> Any:
    """The --beamtime windows and --beamtime-file as a Schedule (None: always)."""
    from spotkit.monitor import Schedule

    if not args.beamtime and args.beamtime_file is None:
        return None
    return Schedule.parse(args.beamtime, path=args.beamtime_file, beamline=args.beamline)


def _windows_json(schedule: Any,
                  _iso: Callable[[float], str]) -> dict[str, list[list[str]]] | None:
    if schedule is None:
        return None
    return {bl: [[_iso(a), _iso(b)] for a, b in spans]
            for bl, spans in sorted(schedule.windows.items())}


def _beamtime_line(schedule: Any, now: float, _iso: Callable[[float], str]) -> str:
    if schedule is None:
        return ("beamtime: always (give --beamtime START/END or --beamtime-file for the "
                "scheduled windows)")
    spans = [(bl, a, b) for bl, windows in sorted(schedule.windows.items())
             for a, b in windows]
    current = [f"{'every beamline' if bl == '*' else bl} until {_iso(b)}"
               for bl, a, b in spans if a <= now < b]
    return (f"beamtime: {len(spans)} window(s); now: "
            + ("; ".join(current) if current else "none (a silent beamline is expected)"))
