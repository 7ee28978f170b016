"""``spotkit watch``, ``spotkit status`` and ``spotkit flow retry|forget|pause|resume``: the data
flow."""

from __future__ import annotations

import json
import logging
import os
import textwrap
import time
from pathlib import Path

from spotkit.cli._catalog_cmds import _catalog
from spotkit.cli._monitor_beamtime import _beamtime
from spotkit.cli._output import _counts_table, _one_line, _out, _table, _terminal_width
from spotkit.errors import SpotkitError

logger = logging.getLogger("spotkit.cli")


def _check_watch_paths(args) -> None:
    """Refuse a missing inbox or warehouse parent before anything is created."""
    for inbox in args.inboxes:
        path = Path(inbox).expanduser()
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise SpotkitError(
                f"inbox {path} {what}: check the path (the folder the detector writes to), "
                "or create it first (mkdir -p) if the beamline has not written yet")
    if not os.path.isfile(os.path.expanduser(args.rules)):
        raise SpotkitError(f"rules file {args.rules} does not exist: give the facility's "
                           "rules.yaml with --rules")
    warehouse = Path(args.warehouse).expanduser()
    if not warehouse.is_dir() and not warehouse.parent.is_dir():
        raise SpotkitError(
            f"warehouse {warehouse}: its folder {warehouse.parent} does not exist; check the "
            "path, or create the warehouse folder first (mkdir -p)")


def cmd_watch(args) -> int:
    import signal

    from spotkit.flows import Watcher, load_rules, start_monitor

    _check_watch_paths(args)
    try:
        schedule = _beamtime(args)
    except ValueError as exc:  # a window or file the schedule cannot read: before any work
        raise SpotkitError(str(exc)) from None
    rules = load_rules(args.rules)
    watcher = Watcher(args.inboxes, catalog=_catalog(args, create=True), rules=rules,
                      warehouse=args.warehouse, poll=args.poll, settle=args.settle,
                      require_sentinel=args.sentinel, workers=args.workers,
                      cell_timeout=args.cell_timeout, inotify=False if args.no_inotify else None)
    port = getattr(args, "metrics_port", None)
    try:  # the rules' alerts, and the metrics endpoint: in a thread beside the watcher
        monitor = start_monitor(watcher, metrics_port=port, schedule=schedule,
                                metrics_host=getattr(args, "metrics_host", "127.0.0.1"))
    except (OSError, ValueError) as exc:  # port taken or out of range
        watcher.close()
        raise SpotkitError(str(exc)) from exc
    if monitor is not None and monitor.metrics is not None:
        _out(f"metrics at {monitor.metrics.url}")

    def stop(signum, frame) -> None:
        logger.info("signal %d: stopping after this pass", signum)
        watcher.stop()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        if args.once:
            # one pass finds what is complete now; further passes finish what it started
            report = watcher.run_once()
            while args.drain:
                # files still being written (or written just now) settle first: wait for them
                due = watcher.scanner.next_due()
                if due is None and not watcher.pending():
                    break
                time.sleep(min(args.poll, 1.0) if due is None else due + 0.05)
                more = watcher.run_once()
                report.done += more.done
                report.failed.update(more.failed)
                report.parked.update(more.parked)
                report.outages += more.outages
                if due is None and not (more.done or more.failed or more.outages
                                        or more.discovered):
                    break
            if watcher.scanner.next_due() is not None:
                _out("some files are still changing (written in the last --settle seconds); "
                     "run again once the acquisition has finished")
            _out(f"done {len(report.done)}, failed {len(report.failed)}, parked "
                 f"{len(report.parked)}, outages {len(report.outages)}")
            for path, reason in report.parked.items():
                _out(f"parked {path}: {_one_line(str(reason), None)}")
        else:
            watcher.run_forever()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if monitor is not None:
            if args.once:
                monitor.check()  # one check of what this run recorded (alerts, metrics)
            monitor.stop()
        watcher.close()
    return 0


def cmd_status(args) -> int:
    from spotkit.flows import STATES, Journal, paused_rules

    with _catalog(args) as cat:
        with Journal(cat.path) as journal:
            summary = journal.summary()
            summary["paused_rules"] = [
                {"rule": p.rule, "reason": p.reason, "by": p.by,
                 "since": time.strftime("%Y-%m-%d %H:%M", time.localtime(p.since))}
                for p in paused_rules(journal).values()]
        quarantined = cat.search(status="quarantined", limit=args.limit)
        summary["quarantined"] = [
            {"dataset_id": d.id, "path": str(d.path) if d.files else None,
             "reason": d.metadata.get("status_reason")} for d in quarantined
        ]
    if args.json:
        _out(json.dumps(summary, indent=1, default=str))
        return 0
    width = None if args.wide else _terminal_width()
    _out(_counts_table(summary["counts"], STATES, width))
    if summary["paused_rules"]:
        _out("\nPaused rules (their datasets wait; `spotkit flow resume RULE`)")
        _out(_table(summary["paused_rules"], ["rule", "since", "by", "reason"], width=width,
                    texts=("reason",)))
    for state in ("running", "failed", "parked"):
        if summary[state]:
            _out(f"\n{state.capitalize()}")
            _out(_table(summary[state], ["path", "dataset_id", "attempts", "error"],
                        width=width, paths=("path",), texts=("error",)))
    if summary["quarantined"]:
        _out("\nQuarantined")
        _out(_table(summary["quarantined"], ["dataset_id", "path", "reason"], width=width,
                    paths=("path",), texts=("reason",)))
    if width is not None and any(summary[s] for s in ("running", "failed", "parked",
                                                        "quarantined")):
        _out("\n" + textwrap.fill("(paths and errors shortened to fit; --wide or --json for "
                                  "the full text)", width, break_on_hyphens=False))
    return 0


def cmd_flow(args) -> int:
    from spotkit.flows import Journal

    with _catalog(args) as cat:
        path = cat.path
    with Journal(path) as journal:
        before = journal.find(args.item)
        if args.flow_command == "retry":
            item = journal.retry(args.item, reason=args.reason, by=args.by)
            then = "the next pass of a watcher picks it up"
        else:
            item = journal.forget(args.item, reason=args.reason, by=args.by)
            then = "no watcher works on it again; the raw file is kept"
    ds = f" ({item.dataset_id})" if item.dataset_id else ""
    _out(f"{item.path}{ds}: {before.state} -> {item.state}; {then}. "
         f"Reason recorded: {args.reason.strip()}")
    return 0


def cmd_flow_rule(args) -> int:
    from spotkit.flows import load_rules, pause_rule, resume_rule

    with _catalog(args) as cat:
        if args.flow_command == "pause":
            rules = load_rules(args.rules) if args.rules else None
            p = pause_rule(cat, args.rule, reason=args.reason, by=args.by, rules=rules)
            _out(f"rule {p.rule} paused by {p.by}: {p.reason}. Watchers hold its datasets "
                 "from their next pass (they wait, not failed); `spotkit flow resume "
                 f"{p.rule}` lets them continue.")
        else:
            p = resume_rule(cat, args.rule, reason=args.reason, by=args.by)
            _out(f"rule {p.rule} resumed (paused by {p.by} since "
                 f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(p.since))}: {p.reason}); "
                 "the datasets it held continue on the next pass.")
    return 0
