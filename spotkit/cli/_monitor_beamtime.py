"""Beamtime windows of ``spotkit monitor missing`` (``--beamtime``, ``--beamtime-file``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__: list[str] = []


def _add_beamtime_arguments(parser: Any, *, scoped: bool) -> None:
    """``--beamtime`` and ``--beamtime-file`` (``spotkit monitor missing``, ``spotkit watch``).

    ``scoped``: the command has ``--beamline``, and a window without ``BEAMLINE=`` is its.
    """
    whose = ("is --beamline's, else every beamline's" if scoped else "is every beamline's")
    parser.add_argument(
        "--beamtime", action="append", default=[], metavar="[BEAMLINE=]START/END",
        help="a beamtime window, ISO 8601 (no zone: UTC), e.g. "
        f"2026-12-04T08:00Z/2026-12-04T20:00Z; repeat for more; a window without BEAMLINE= "
        f"{whose}. Outside beamtime a silent beamline is expected and the nights between "
        "windows are not part of its cadence (default: always in beamtime)")
    parser.add_argument(
        "--beamtime-file", type=Path, metavar="PATH",
        help="beamtime windows from a file: YAML {beamline: [START/END, ...]} ('*': every "
        "beamline), a list of windows, or one [BEAMLINE=]START/END per line")


def _beamtime(args) -> Any:
    """The --beamtime windows and --beamtime-file as a Schedule (None: always)."""
    from spotkit.monitor import Schedule

    if not args.beamtime and args.beamtime_file is None:
        return None
    return Schedule.parse(args.beamtime, path=args.beamtime_file,
                          beamline=getattr(args, "beamline", None))


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
