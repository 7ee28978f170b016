"""``spotkit monitor``: the workflow's telemetry (``report``: the turnaround breakdown per
beamline and compute target, as a table and a figure)."""

from __future__ import annotations

import json
from pathlib import Path

from spotkit.cli._catalog_cmds import _catalog
from spotkit.cli._output import _out
from spotkit.cli._types import _when

__all__ = ["add_monitor_parser", "cmd_monitor_report"]


def add_monitor_parser(sub, common) -> None:
    """Add ``monitor`` (and ``monitor report``) to the sub-command parsers."""
    m = sub.add_parser("monitor", parents=common,
                       help="workflow telemetry: where each dataset's time goes",
                       description="The timed events the flow, runs and jobs record in the "
                       "catalog, summarised.")
    msub = m.add_subparsers(dest="monitor_command", required=True, metavar="ACTION")
    r = msub.add_parser(
        "report", parents=common,
        help="turnaround breakdown per beamline and target (queue wait, transfer, run, idle)",
        description="Each dataset's turnaround (raw file complete to its last run finished, "
        "per compute target) split into queue wait, transfer (ingest, manifest, copy, "
        "verify), run and idle: median, 90th percentile and share of the turnaround, per "
        "beamline and target.")
    r.add_argument("--since", type=_when(end=False), metavar="WHEN",
                   help="events from this time: 2026-01-31, 2026-01-31T13:30, today, 7d, "
                   "2h (UTC)")
    r.add_argument("--until", type=_when(end=True), metavar="WHEN",
                   help="events before this time; forms as --since")
    r.add_argument("--beamline", help="only this beamline")
    r.add_argument("--figure", type=Path, metavar="PATH",
                   help="also write the breakdown as a figure (PNG, SVG or PDF, by suffix)")
    r.add_argument("--per-dataset", action="store_true",
                   help="one line per dataset and target instead of the summary")
    r.add_argument("--json", action="store_true", help="print JSON records")
    r.set_defaults(func=cmd_monitor_report)


def cmd_monitor_report(args) -> int:
    from spotkit.monitor import events, format_turnaround, plot_turnaround, turnaround

    with _catalog(args) as cat:
        table = events(cat, since=args.since, until=args.until, beamline=args.beamline)
    summary = turnaround(table)
    if args.per_dataset:
        per = turnaround(table, per_dataset=True)
        if args.json:
            _out(per.to_json(orient="records", indent=1))
        else:
            _out(per.to_string(index=False, float_format=lambda v: f"{v:.3f}")
                 if len(per) else "(none)")
    elif args.json:
        records = json.loads(summary.to_json(orient="records"))
        _out(json.dumps({"events": len(table), "turnaround": records}, indent=1))
    else:
        _out(format_turnaround(summary))
    if args.figure is not None:
        fig = plot_turnaround(summary)
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=120)
        if not args.json:
            _out(f"figure: {args.figure}")
    return 0
