"""``spotkit monitor``: the workflow's telemetry and what the monitor found in it.

``report``: the turnaround breakdown per beamline and compute target (a table and a figure);
``changes``: change points and anomalies of the metric streams; ``missing``: the missing-data
checks now; ``alerts``: the alert messages sent and the findings waiting; ``quality``: the
keep-up quality verdicts of the products, failures first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from spotkit.cli._catalog_cmds import _catalog
from spotkit.cli._monitor_beamtime import (
    _add_beamtime_arguments,
    _beamtime,
    _beamtime_line,
    _windows_json,
)
from spotkit.cli._output import _out, _table, _terminal_width
from spotkit.cli._types import _when, _whole

__all__ = ["add_monitor_parser", "cmd_monitor_alerts", "cmd_monitor_changes",
           "cmd_monitor_missing", "cmd_monitor_quality", "cmd_monitor_report"]

_SINCE_HELP = ("from this time: 2026-01-31, 2026-01-31T13:30, today, 7d, 2h (UTC)")


def add_monitor_parser(sub, common) -> None:
    """Add ``monitor`` (and ``monitor report``) to the sub-command parsers."""
    m = sub.add_parser("monitor", parents=common,
                       help="workflow telemetry: where the time goes, changes, missing data, "
                       "alerts, quality",
                       description="The timed events the flow, runs and jobs record in the "
                       "catalog, summarised; what the monitor finds in them.")
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
    _add_find_parsers(msub, common)


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


# -- changes, missing, alerts, quality ----------------------------------------------------------


def _duration(example: str):
    """argparse type: a duration as the alert rules write it (90s, 10m, 1h30m, 2d, 2w)."""

    def parse(text: str) -> float:
        from spotkit.monitor import parse_duration

        try:
            seconds = parse_duration(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration; give seconds or text like 90s, 10m, 1h30m, 2d, "
                f"e.g. {example}") from None
        if seconds <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0 s, not {text!r}; "
                                             f"e.g. {example}")
        return seconds

    return parse


def _positive(example: str):
    """argparse type: a finite number > 0."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0; e.g. {example}")
        return value

    return parse


def _epoch(when: Any) -> float | None:
    """UTC epoch seconds of what ``_when`` gives (a datetime, or ISO text; naive = UTC)."""
    if when is None:
        return None
    if isinstance(when, str):
        text = when.strip().replace("Z", "+00:00")
        when = (dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
                if len(text) == 10 else dt.datetime.fromisoformat(text))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _iso(epoch: Any) -> str:
    """``2026-12-04 19:30:05`` (UTC) of epoch seconds; empty for None/NaN."""
    if epoch is None or epoch != epoch:
        return ""
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _json(doc: Any) -> None:
    _out(json.dumps(doc, indent=1, default=str))


def _findings_json(findings: list) -> list[dict]:
    return [f.as_dict() for f in findings]


def _add_find_parsers(msub, common) -> None:
    """``monitor changes|missing|alerts|quality``."""
    c = msub.add_parser(
        "changes", parents=common,
        help="change points and anomalies of the metric streams (queue wait, transfer "
        "rate...) per beamline and target",
        description="Each metric stream (queue_wait, run_time, transfer_time, transfer_rate, "
        "ingest_time, interarrival, file_size, turnaround; per beamline and target) is "
        "scored against its model of normal (size, time of day and week), learned from "
        "the --history before --since and online after it; a calibrated CUSUM on the "
        "residuals reports each change with its onset, magnitude and confidence, and single "
        "values far from normal as anomalies.")
    c.add_argument("--since", type=_when(end=False), metavar="WHEN",
                   help="watch the values " + _SINCE_HELP + "; default: 7d")
    c.add_argument("--until", type=_when(end=True), metavar="WHEN",
                   help="values before this time; forms as --since")
    c.add_argument("--history", type=_duration("--history 30d"), default=30 * 86400.0,
                   metavar="DURATION",
                   help="learn normal from this long before --since first (not reported; "
                   "default: 30d)")
    c.add_argument("--beamline", help="only this beamline")
    c.add_argument("--target", help="only this compute target or transfer destination")
    c.add_argument("--metric", action="append", metavar="METRIC",
                   help="only this metric (repeat for more); default: all")
    c.add_argument("--kind", choices=("all", "change", "anomaly"), default="all",
                   help="which findings to list (default: %(default)s)")
    c.add_argument("--method", choices=("online", "offline", "bayes"), default="online",
                   help="online: the watcher's detectors (model of normal, CUSUM, anomalies); "
                   "offline: segment each stream's whole period at once (level changes; "
                   "for reports and short streams); bayes: the most probable segmentation "
                   "under the Bayesian detector's model (level and trend changes, random "
                   "walks; time grows with the square of a stream's length: each stream's "
                   "last 5000 values). Default: %(default)s")
    c.add_argument("--min-history", type=_whole(3, "--min-history 50"), default=100,
                   metavar="N", help="online: values of a stream normal needs before the "
                   "stream is watched (default: %(default)s)")
    c.add_argument("--arl", type=_positive("--arl 20000"), default=None, metavar="N",
                   help="values between false alarms the detectors are calibrated for "
                   "(default: the watcher's, 20000)")
    c.add_argument("--json", action="store_true", help="print JSON (findings in full)")
    c.add_argument("--wide", action="store_true", help="full messages, not fitted to the terminal")
    c.set_defaults(func=cmd_monitor_changes)

    m = msub.add_parser(
        "missing", parents=common,
        help="missing data now: silent beamlines, skipped scan numbers, stuck steps, "
        "missing products",
        description="The missing-data checks of the monitor, as of now (or --at): a beamline "
        "that sends nothing, a skipped scan number, a transfer or job running past its "
        "expected duration, and (with --rules) a dataset without the products its rules "
        "promise. What is too long is learned from the --history: factor x the p99 of "
        "each interval.")
    m.add_argument("--at", type=_when(end=False), metavar="WHEN",
                   help="check as of this time (replay); default: now")
    m.add_argument("--history", type=_duration("--history 7d"), default=7 * 86400.0,
                   metavar="DURATION",
                   help="events read before then, to learn the intervals (default: 7d)")
    m.add_argument("--beamline", help="only this beamline")
    m.add_argument("--factor", type=_positive("--factor 2"), default=2.0,
                   help="multiples of the p99 interval before a finding (default: %(default)s)")
    m.add_argument("--rules", type=Path, metavar="PATH",
                   help="rules.yaml: check that each dataset has the products its rules "
                   "promise (skipped without it)")
    _add_beamtime_arguments(m, scoped=True)
    m.add_argument("--json", action="store_true", help="print JSON")
    m.add_argument("--wide", action="store_true", help="full messages, not fitted to the terminal")
    m.set_defaults(func=cmd_monitor_missing)

    a = msub.add_parser(
        "alerts", parents=common,
        help="alert messages sent (or failed) and findings waiting to be sent",
        description="The alert state the watcher keeps in the catalog: the messages each "
        "alert rule sent or failed to send (newest first), and the findings waiting for a "
        "quiet period to end, a minimum interval or a retry.")
    a.add_argument("--since", type=_when(end=False), metavar="WHEN",
                   help="messages and waiting findings " + _SINCE_HELP)
    a.add_argument("--rule", help="only this alert rule")
    a.add_argument("--beamline", help="only waiting findings of this beamline")
    a.add_argument("--limit", type=_whole(1, "--limit 50"), default=50,
                   help="messages listed (default: %(default)s)")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.add_argument("--wide", action="store_true", help="full texts, not fitted to the terminal")
    a.set_defaults(func=cmd_monitor_alerts)

    q = msub.add_parser(
        "quality", parents=common,
        help="keep-up quality verdicts of the products, failures first",
        description="The verdicts stored by the keep-up quality checks (each product "
        "against the last good products of its configuration): failures first, then "
        "products without usable references, then passes; newest first within each.")
    q.add_argument("--since", type=_when(end=False), metavar="WHEN",
                   help="verdicts checked " + _SINCE_HELP)
    q.add_argument("--beamline", help="only this beamline")
    q.add_argument("--kind", help="only this dataset kind (tomo/recon, saxs/iq...)")
    q.add_argument("--verdict", choices=("pass", "fail", "no reference"),
                   help="only this verdict")
    q.add_argument("--limit", type=_whole(1, "--limit 50"), default=50,
                   help="verdicts listed (default: %(default)s)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.add_argument("--wide", action="store_true", help="full reasons, not fitted to the terminal")
    q.set_defaults(func=cmd_monitor_quality)


def _width(args) -> int | None:
    return None if args.wide else _terminal_width()


def _signed(value: Any, fmt: str = "+.1f") -> str:
    return "" if value is None or value != value else format(float(value), fmt)


def cmd_monitor_changes(args) -> int:
    from spotkit.monitor import METRICS, MetricWatcher, events, metrics

    unknown = sorted(set(args.metric or ()) - set(METRICS))
    if unknown:
        raise ValueError(f"--metric {', '.join(unknown)}: not a metric stream; choose from "
                         f"{', '.join(METRICS)}")
    start = _epoch(args.since)
    since = start if start is not None else time.time() - 7 * 86400.0
    until = _epoch(args.until)
    with _catalog(args) as cat:
        table = metrics(events(cat, since=since - args.history, until=args.until,
                               beamline=args.beamline))
    if args.target is not None:
        table = table[table["target"] == args.target]
    if args.metric:
        table = table[table["metric"].isin(args.metric)]
    history = table[table["time"] < since]
    watched = table[table["time"] >= since]
    if args.method in ("offline", "bayes"):
        found = _segment_streams(table, since, bayes=args.method == "bayes")
        watched_n: dict[tuple, int] = {}
        what = "Bayesian segmentation" if args.method == "bayes" else "offline segmentation"
        note = f"{what} of each stream's {len(table)} values (from --history before)"
    else:
        options: dict[str, Any] = {"min_history": args.min_history}
        if args.arl is not None:
            options["arl"] = args.arl
        watcher = MetricWatcher(**options)  # what watch_metrics does, with the counts kept
        if len(history):
            watcher.model.fit(history)
        need = watcher.min_history
        known = {key: watcher.model.count(key[0], beamline=key[1], target=key[2])
                 for key in {(m, _label(b), _label(g)) for m, b, g in zip(
                     watched["metric"], watched["beamline"], watched["target"], strict=True)}}
        found = watcher.run(watched)
        watched_n = {key: -max(0, need - before) for key, before in known.items()}
        note = (f"normal learned from {len(history)} earlier values and online (a stream is "
                f"watched once normal holds {need} of its values: --history, --min-history)")
    if args.kind != "all":
        found = [f for f in found if f.kind == args.kind]
    found.sort(key=lambda f: (f.beamline or "", f.target or "", f.metric,
                              f.onset if f.onset is not None else f.time))
    streams = []
    for (metric, beamline, target), part in watched.groupby(
            ["metric", "beamline", "target"], dropna=False, sort=True):
        key = (metric, _label(beamline), _label(target))
        mine = [f for f in found if (f.metric, f.beamline, f.target) == key]
        streams.append({"beamline": key[1], "target": key[2], "metric": metric,
                        "values": len(part),
                        "watched": max(0, len(part) + watched_n.get(key, 0)),
                        "changes": sum(f.kind == "change" for f in mine),
                        "anomalies": sum(f.kind == "anomaly" for f in mine)})
    if args.json:
        _json({"method": args.method, "since": _iso(since),
               "until": None if args.until is None else (
                   args.until if isinstance(args.until, str) else _iso(until)),
               "values": len(watched),
               "history_values": len(history), "streams": streams,
               "findings": _findings_json(found)})
        return 0
    # (a bare --until date includes that day: shown as given)
    shown_until = args.until if isinstance(args.until, str) else _iso(until)
    span = f"since {_iso(since)}" + (f" until {shown_until}" if until is not None else "")
    if not len(watched):
        where = f" of beamline {args.beamline}" if args.beamline else ""
        _out(f"no metric values{where} {span} UTC in {cat.url}; give an earlier --since "
             "(e.g. --since 30d) or check that the flow records telemetry")
        return 0
    _out(f"{len(watched)} values of {len(streams)} streams {span} UTC; {note}")
    rows = [{"onset": _iso(f.onset if f.onset is not None else f.time),
             "beamline": f.beamline, "target": f.target, "metric": f.metric, "kind": f.kind,
             "sigma": _sigmas(f),
             "factor": _signed(f.detail.get("factor"), ".3g"),
             "confidence": _signed(f.confidence, ".3f"),
             "detected": "" if _offline(f) else _iso(f.time),
             "message": f.message} for f in found]
    _out("")
    _out(_table(rows, ["onset", "beamline", "target", "metric", "kind", "sigma", "factor",
                       "confidence", "detected", "message"], width=_width(args),
                texts=("message",)) if rows else "no change points or anomalies")
    _out("")
    _out(_table(streams, ["beamline", "target", "metric", "values", "watched", "changes",
                          "anomalies"]))
    return 0


def _offline(f: Any) -> bool:
    return f.detail.get("method") in ("segment", "bayes-map")


def _sigmas(f: Any) -> str:
    """The size of a finding in sigmas (of the model of normal online, of the stream's noise
    offline); '>999' where the noise is about nil (values that hardly vary)."""
    sig = f.detail.get("sigmas") if _offline(f) else f.magnitude
    if sig is not None and sig == sig and abs(sig) > 999:
        return ">999" if sig > 0 else "<-999"
    return _signed(sig)


#: the most values of one stream ``monitor changes --method bayes`` segments (its time grows
#: with the square of their number: about 1.3 s for 4,000 on a busy 2-core machine)
BAYES_VALUES = 5000


def _segment_streams(table: Any, since: float, bayes: bool = False) -> list:
    """Offline change points of each stream (:func:`spotkit.monitor.segment`, or with
    ``bayes`` :func:`spotkit.monitor.bayesian_segment` on each stream's last
    :data:`BAYES_VALUES` values; durations, rates and sizes in log space), those with their
    onset at or after ``since``."""
    import dataclasses
    import math

    import numpy as np

    from spotkit.monitor import LOG_METRICS, bayesian_segment, segment

    method = bayesian_segment if bayes else segment
    how_found = "Bayesian segmentation" if bayes else "offline segmentation"

    out = []
    for (metric, beamline, target), part in table.sort_values("time", kind="stable").groupby(
            ["metric", "beamline", "target"], dropna=False, sort=True):
        if bayes:  # O(n^2): the most recent values of each stream
            part = part.iloc[-BAYES_VALUES:]
        values = part["value"].to_numpy(dtype=float)
        log = metric in LOG_METRICS
        if log:
            values = np.log(np.maximum(values, 1.0))
        where = "/".join(x for x in (_label(beamline), _label(target)) if x) or "all"
        for f in method(values, part["time"].to_numpy(dtype=float), metric=str(metric)):
            if f.onset is None or f.onset < since:
                continue
            a, b = f.detail["before"], f.detail["after"]
            detail = dict(f.detail)
            how = ""
            if log:
                a, b = math.exp(a), math.exp(b)
                detail["factor"] = b / a
                how = f" (x{b / a:.3g})"
            word = "rose" if b > a else "fell"
            when = dt.datetime.fromtimestamp(f.onset, dt.UTC).isoformat(timespec="seconds")
            out.append(dataclasses.replace(
                f, beamline=_label(beamline), target=_label(target), detail=detail,
                message=f"{metric} on {where} {word} from {a:.4g} to {b:.4g}{how} since "
                f"{when} ({how_found})"))
    return out


def _label(value: Any) -> str | None:
    """None for a missing (None/NaN) beamline or target, else its text."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def cmd_monitor_missing(args) -> int:
    from spotkit.monitor import MissingData, events

    at = _epoch(args.at)
    now = at if at is not None else time.time()
    schedule = _beamtime(args)
    with _catalog(args) as cat:
        table = events(cat, since=now - args.history, until=now, beamline=args.beamline)
        promised: Any = 0
        if args.rules is not None:
            promised = _promised(cat, args.rules)
        md = MissingData(schedule=schedule, factor=args.factor,
                         promised=promised).learn(table, now=now)
        found = md.check(table, now=now)
    found.sort(key=lambda f: (f.kind, f.beamline or "", f.onset or f.time))
    learned = {"interarrival_p99": md.interarrival, "product_delay_p99": md.product_delay,
               "duration_p99": {"/".join(str(k) for k in key): v
                                for key, v in md.durations.items()}}
    if args.json:
        _json({"now": _iso(now), "events": len(table), "products_checked": args.rules
               is not None, "beamtime": _windows_json(schedule, _iso), "learned": learned,
               "findings": _findings_json(found)})
        return 0
    _out(f"{len(table)} events from {_iso(now - args.history)} to {_iso(now)} UTC")
    _out(_beamtime_line(schedule, now, _iso))
    if md.interarrival:
        _out("usual cadence (p99 between datasets): " + ", ".join(
            f"{bl} {_span(v)}" for bl, v in sorted(md.interarrival.items())))
    else:
        _out("usual cadence: not learned yet (fewer than 20 datasets per beamline in the "
             "history; give a longer --history)")
    if args.rules is None:
        _out("products: not checked (give --rules rules.yaml for the products each "
             "dataset's rules promise)")
    rows = [{"kind": f.kind, "beamline": f.beamline, "since": _iso(f.onset),
             "dataset": f.dataset_id, "message": f.message} for f in found]
    _out("")
    _out(_table(rows, ["kind", "beamline", "since", "dataset", "message"], width=_width(args),
                texts=("message",)) if rows else "nothing missing")
    return 0


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _promised(cat, rules_path: Path):
    """``promised(row)`` for the products check: one product per action of the rules that
    match the dataset (as the watcher counts them); 0 for datasets not in the catalog."""
    from spotkit.errors import DatasetNotFoundError
    from spotkit.flows import load_rules

    rules = load_rules(rules_path)
    cache: dict[str, int] = {}

    def promised(row: Any) -> int:
        ds_id = getattr(row, "dataset_id", None)
        if not isinstance(ds_id, str):
            return 0
        if ds_id not in cache:
            try:
                cache[ds_id] = len(rules.actions_for(cat[ds_id]))
            except DatasetNotFoundError:  # not a dataset of this catalog's flow
                cache[ds_id] = 0
        return cache[ds_id]

    return promised


def cmd_monitor_alerts(args) -> int:
    from spotkit.catalog import connect_database, table_exists
    from spotkit.monitor import Alerts

    since = _epoch(args.since)
    with _catalog(args) as cat:
        # (the catalog makes the alert tables when it opens: a catalog from before them has
        # none, and reading must not write them)
        conn = connect_database(cat.url)
        try:
            kept = table_exists(conn, "monitor_alert_sends")
        finally:
            conn.close()
        history, pending, counts = [], [], {}
        if kept:
            with Alerts([], state=cat) as alerts:
                history = alerts.history(limit=1_000_000)
                pending = alerts.pending(args.rule)
                counts = alerts.counts()
        where = cat.url
    if not (history or pending):
        if args.json:
            _json({"history": [], "pending": [], "counts": {}})
        else:
            _out(f"no alerts in {where}: no alert rule has found anything to send on this "
                 "catalog (alert rules are in rules.yaml; spotkit watch runs them)")
        return 0
    history = [h for h in history if (args.rule is None or h["rule"] == args.rule)
               and (since is None or h["time"] >= since)][:args.limit]
    seen: set = set()
    waiting = []
    for f in pending:  # a finding two rules wait to send is listed once
        if f.key in seen or (args.beamline is not None and f.beamline != args.beamline) or (
                since is not None and f.time < since):
            continue
        seen.add(f.key)
        waiting.append(f)
    if args.rule is not None:
        counts = {k: v for k, v in counts.items() if k[0] == args.rule}
    if args.json:
        _json({"history": history, "pending": _findings_json(waiting),
               "counts": {f"{rule}/{outcome}": n for (rule, outcome), n in counts.items()}})
        return 0
    sent = ", ".join(f"{rule}: {n} {outcome}" for (rule, outcome), n in sorted(counts.items()))
    _out(f"messages since the alert state began: {sent or 'none'}")
    _out("")
    _out("Messages (newest first):")
    rows = [{"time": _iso(h["time"]), "rule": h["rule"], "channel": h["channel"],
             "findings": h["findings"], "outcome": h["outcome"], "error": h["error"] or ""}
            for h in history]
    _out(_table(rows, ["time", "rule", "channel", "findings", "outcome", "error"],
                width=_width(args), texts=("error",)))
    _out("")
    _out("Waiting to be sent (quiet period, minimum interval or retry):")
    rows = [{"found": _iso(f.time), "kind": f.kind, "severity": f.severity,
             "beamline": f.beamline, "message": f.message} for f in waiting]
    _out(_table(rows, ["found", "kind", "severity", "beamline", "message"], width=_width(args),
                texts=("message",)))
    return 0


_VERDICT_ORDER = {"fail": 0, "no reference": 1, "pass": 2}


def cmd_monitor_quality(args) -> int:
    from spotkit.monitor import quality_verdicts

    since = _epoch(args.since)
    with _catalog(args) as cat:
        table = quality_verdicts(cat, beamline=args.beamline, kind=args.kind,
                                 verdict=args.verdict, since=since)
    records = table.to_dict("records")
    records.sort(key=lambda r: (_VERDICT_ORDER.get(r["verdict"], 3), -r["checked_at"],
                                r["dataset_id"]))
    tally = {v: sum(r["verdict"] == v for r in records) for v in _VERDICT_ORDER}
    shown = records[:args.limit]
    if args.json:
        _json({"counts": tally, "verdicts": shown})
        return 0
    span = f" since {_iso(since)} UTC" if since is not None else ""
    if not records:
        _out(f"no quality verdicts{span} in {cat.url} (the flow checks products of kinds "
             "with a summary after each run: tomo/raw, tomo/recon, saxs/iq...)")
        return 0
    _out(f"{len(records)} verdicts{span}: " + ", ".join(f"{n} {v}" for v, n in tally.items())
         + (f" (first {len(shown)} listed; --limit)" if len(shown) < len(records) else ""))
    rows = [{"checked": _iso(r["checked_at"]), "dataset": r["dataset_id"], "kind": r["kind"],
             "beamline": r["beamline"], "verdict": r["verdict"], "refs": r["n_references"],
             "failed": ",".join(r["failed"]), "why": "; ".join(r["reasons"])} for r in shown]
    _out("")
    _out(_table(rows, ["checked", "dataset", "kind", "beamline", "verdict", "refs", "failed",
                       "why"], width=_width(args), texts=("why",)))
    return 0
