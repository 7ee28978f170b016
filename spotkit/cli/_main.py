"""``spotkit`` sub-commands. Every command calls a public library function.

Errors are shown as one paragraph on stderr that says what was wrong and what to do, with
exit status 1 (2 for a bad command line); ``-v`` adds the traceback. Only ``demo``,
``ingest`` and ``watch`` may create a catalog: the other commands refuse a catalog path
that does not exist, so a typo is reported instead of starting an empty catalog."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import re
import shutil
import sys
import textwrap
import time
import traceback
import warnings
from pathlib import Path, PurePosixPath

import yaml

from spotkit._version import __version__
from spotkit.errors import SpotkitError

logger = logging.getLogger("spotkit.cli")

#: terminal width used when the real one is unknown (not a terminal, no $COLUMNS)
DEFAULT_WIDTH = 100


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# ---------------------------------------------------------------- tables
def _cell(value) -> str:
    return "" if value is None else str(value)


def _short_path(text: str, width: int) -> str:
    """``…/last/parts`` of a path, as many trailing parts as fit in ``width``."""
    if len(text) <= width:
        return text
    parts = PurePosixPath(text).parts
    best = ""
    for k in range(1, len(parts)):
        candidate = "…/" + "/".join(parts[-k:])
        if len(candidate) > width:
            break
        best = candidate
    return best or "…" + text[-(width - 1):]


def _one_line(text: str, width: int | None) -> str:
    """The first line of ``text``, clipped to ``width`` with an ellipsis when cut."""
    lines = text.strip().splitlines() or [""]
    line = lines[0].strip()
    more = len(lines) > 1
    if width is not None and len(line) + (2 if more else 0) > width:
        return line[: max(width - 1, 0)] + "…"
    return line + (" …" if more else "")


def _table(rows: list[dict], columns: list[str], *, width: int | None = None,
           paths: tuple[str, ...] = (), texts: tuple[str, ...] = ()) -> str:
    """Rows as aligned columns.

    With ``width``, the ``paths`` columns are shortened to ``…/last/parts`` and the
    ``texts`` columns clipped to one line until the table fits; ``texts`` are always one
    line (the full text is in ``--json``).
    """
    if not rows:
        return "(none)"
    cells = [{c: _cell(r.get(c)) for c in columns} for r in rows]
    if width is None:  # wide: everything, but one table row per row
        for row in cells:
            for c in texts:
                row[c] = " | ".join(ln.strip() for ln in row[c].strip().splitlines())
    else:
        for row in cells:
            for c in texts:
                row[c] = _one_line(row[c], None)
    widths = {c: max(len(c), *(len(row[c]) for row in cells)) for c in columns}
    if width is not None:
        flexible = [c for c in columns if c in paths or c in texts]
        room = width - 2 * (len(columns) - 1) - sum(
            widths[c] for c in columns if c not in flexible)
        if flexible and sum(widths[c] for c in flexible) > room:
            # the widest flexible columns give way first, to a common cap (water-filling)
            cap = max(widths[c] for c in flexible)
            while cap > 1 and sum(min(widths[c], cap) for c in flexible) > room:
                cap -= 1
            for c in flexible:
                widths[c] = min(widths[c], max(cap, len(c), 12))
        for row in cells:
            for c in columns:
                if c in paths:
                    row[c] = _short_path(row[c], widths[c])
                elif c in texts:
                    row[c] = _one_line(row[c], widths[c])
    head = "  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()
    lines = [head, "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in columns).rstrip() for row in cells]
    return "\n".join(lines)


def _terminal_width() -> int:
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


# ---------------------------------------------------------------- argument types
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


def _when(*, end: bool):
    """argparse type for ``--since`` (``end=False``) and ``--until`` (``end=True``).

    ISO text is passed on as given (the catalog reads it; a bare ``--until`` date includes
    that whole day); 'today'/'yesterday' are UTC days, as the catalog shows times in UTC.
    """

    def parse(text: str):
        word = text.strip().lower()
        now = dt.datetime.now(dt.UTC)
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


# ---------------------------------------------------------------- catalog
def _catalog(args, *, create: bool = False):
    """The catalog of ``--catalog`` (or the default); only creating commands make one."""
    from spotkit.catalog import open_catalog

    return open_catalog(args.catalog, create=create)


def _catalog_file(args) -> Path:
    if args.catalog is not None:
        return Path(args.catalog).expanduser()
    from spotkit.config import catalog_path

    return catalog_path()


# ---------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    if args.catalog is not None:
        raise SpotkitError(
            f"spotkit demo makes its own catalog, {Path(args.workdir) / 'catalog.db'}, and "
            f"does not use --catalog {args.catalog}; drop --catalog (choose the folder with "
            "--workdir)")
    from tqdm import tqdm

    from spotkit.demo import SAXS_SERIES, TOMO_SCANS, run_demo

    n_steps = len(TOMO_SCANS) + len(SAXS_SERIES) + 2  # write each; the flow; export
    with tqdm(total=n_steps, desc="spotkit demo", unit="step", file=sys.stderr,
              disable=args.quiet) as bar:
        def progress(msg: str) -> None:
            bar.set_postfix_str(msg[:60])
            logger.info("%s", msg)
            bar.update(1)

        report = run_demo(args.workdir, progress=progress)

    from spotkit.catalog import open_catalog

    cat = open_catalog(report.catalog_path, create=False)
    _out(f"\nspotkit demo finished in {report.seconds:.1f} s; workdir {report.workdir}\n")
    _out("Datasets")
    rows = []
    for ds in report.raw:
        rows.append({"id": ds.id, "kind": ds.kind, "beamline": ds.beamline, "sample": ds.sample,
                     "file": ds.path})
    for run in report.runs:
        for out_id in run.outputs:
            out = cat[out_id]
            rows.append({"id": out.id, "kind": out.kind, "beamline": out.beamline,
                         "sample": out.sample, "file": out.path})
    _out(_table(rows, ["id", "kind", "beamline", "sample", "file"]))
    _out("\nRuns")
    run_rows = []
    for run in report.runs:
        seconds = run.duration.total_seconds() if run.duration is not None else float("nan")
        run_rows.append({"run": run.id, "dataset": run.dataset_id,
                         "notebook": Path(run.notebook).name, "state": run.state,
                         "seconds": f"{seconds:.1f}", "outputs": len(run.outputs),
                         "executed notebook": run.output_notebook})
    _out(_table(run_rows, ["run", "dataset", "notebook", "state", "seconds", "outputs",
                           "executed notebook"]))
    _change_summary(cat, report)
    _out(f"\nCatalog: {report.catalog_path}\nIntake catalog: {report.intake_catalog}")
    _out(f"Try: spotkit --catalog {report.catalog_path} catalog search --beamline 8.3.2")
    cat.close()
    return 0


def _change_summary(cat, report) -> None:
    """One line per SAXS series: the change found (and the twin's truth), frames kept."""
    import json

    from spotkit.demo import SAXS_SERIES

    truth = {name: kw.get("onset_frame") for name, kw in SAXS_SERIES}
    for ds in report.raw:
        if ds.kind != "saxs/raw":
            continue
        reports = [cat[o] for r in report.runs if r.dataset_id == ds.id for o in r.outputs
                   if cat[o].kind == "saxs/change-report"]
        if not reports:
            continue
        doc = json.loads(Path(reports[0].path).read_text())
        onsets = ", ".join(f"frame {c['onset']} (confidence {c['confidence']:.2f})"
                           for c in doc["changes"]) or "none"
        red = doc["reduction"]
        marks = cat.frame_marks(ds)
        interest = sum(m["label"] == "of interest" for m in marks)
        _out(f"\nChange detection on {Path(ds.path).name}: change at {onsets}; the twin put "
             f"it at frame {truth.get(Path(ds.path).name)}. Frames marked of interest: "
             f"{interest} of {red['n_frames']} ({red['reduction_factor']:.1f}x less to move).")


def cmd_ingest(args) -> int:
    db = _catalog_file(args)
    missing = [p for p in (db, *db.parents) if not p.exists()]  # what opening will create
    cat = _catalog(args, create=True)
    status, ingested = 0, 0
    try:
        for path in args.paths:
            try:
                ds = cat.ingest(path)
            except (SpotkitError, ValueError, OSError) as exc:
                _error(exc, verbose=args.verbose)
                status = 1
                continue
            ingested += 1
            _out(f"{ds.id}  {ds.kind}  {ds.sample}  {ds.path}")
    finally:
        empty = not ingested and len(cat) == 0  # (another process may have used it meanwhile)
        cat.close()
        if missing and empty:
            _remove_new_catalog(missing)
    return status


def _remove_new_catalog(created: list[Path]) -> None:
    """Remove a catalog this command created but put nothing in (and the folders it made)."""
    db = created[0]
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    for folder in created[1:]:
        try:
            folder.rmdir()
        except OSError:
            break


def cmd_search(args) -> int:
    cat = _catalog(args)
    with cat:
        res = cat.search(beamline=args.beamline, sample=args.sample, proposal=args.proposal,
                         kind=args.kind, status=args.status, since=args.since,
                         until=args.until, text=args.text, limit=args.limit)
    if args.json:
        _out(json.dumps(res.to_records(), indent=1, default=str))
        return 0
    rows = [{"id": d.id, "kind": d.kind, "beamline": d.beamline, "sample": d.sample,
             "proposal": d.proposal, "start": d.start_time.strftime("%Y-%m-%d %H:%M"),
             "status": d.status} for d in res]
    _out(_table(rows, ["id", "kind", "beamline", "sample", "proposal", "start", "status"]))
    _out(f"{len(res)} shown of {res.total} matching")
    return 0


def cmd_show(args) -> int:
    with _catalog(args) as cat:
        return _show(cat, args)


def _show(cat, args) -> int:
    ds = cat[args.dataset_id]
    if args.json:
        _out(json.dumps(ds.provenance.to_dict(), indent=1, default=str))
        return 0
    _out(repr(ds))
    _out("\nFiles")
    _out(_table([{"role": f.role, "size": f.size, "sha256": f.sha256[:16], "path": f.path}
                 for f in ds.files], ["role", "size", "sha256", "path"]))
    _out("\nProvenance")
    _out(repr(ds.provenance))
    runs = ds.runs
    if runs:
        _out("\nRuns on this dataset")
        _out(_table([{"run": r.id, "notebook": Path(r.notebook).name, "state": r.state,
                      "error": (f"cell {r.error_cell}: {r.error_name}: {r.error_message}"
                                if r.state == "failed" else ""),
                      "outputs": ", ".join(r.outputs)} for r in runs],
                    ["run", "notebook", "state", "error", "outputs"]))
        flow = [r for r in runs if (r.context or {}).get("flow")]
        for r in flow:
            f = r.context["flow"]
            _out(f"{r.id}: started by the flow, rule {f.get('rule')!r} action "
                 f"{f.get('action')!r} (stage {f.get('stage')}, rules version "
                 f"{f.get('rules_version')})")
    marks = cat.frame_marks(ds)
    if marks:
        _out("\nFrame marks (advice for transfer and storage; nothing is deleted)")
        _out(_frame_ranges(marks))
    return 0


def _frame_ranges(marks: list[dict]) -> str:
    """``of interest: 0, 20, 35-45 (11 frames)`` lines, one per label."""
    lines = []
    for label in ("of interest", "redundant"):
        frames = [m["frame"] for m in marks if m["label"] == label]
        if not frames:
            continue
        spans, start = [], frames[0]
        for prev, cur in zip(frames, [*frames[1:], None], strict=True):
            if cur != prev + 1:
                spans.append(f"{start}" if start == prev else f"{start}-{prev}")
                start = cur
        runs = sorted({m["run_id"] for m in marks if m["label"] == label and m["run_id"]})
        lines.append(f"{label}: {', '.join(spans)} ({len(frames)} frames"
                     + (f"; run {', '.join(runs)}" if runs else "") + ")")
    return "\n".join(lines)


def cmd_export(args) -> int:
    with _catalog(args) as cat:
        path = cat.export_intake(args.path)
    _out(str(path))
    return 0


def cmd_run(args) -> int:
    from spotkit.runs import run_notebook

    params = {name: _parse_value(value) for name, value in (args.parameter or [])}
    with _catalog(args) as cat:
        res = run_notebook(args.notebook, args.dataset_id, parameters=params,
                           output_dir=args.output_dir, catalog=cat,
                           cell_timeout=args.cell_timeout, log_output=args.log_output)
    _out(f"run {res.run_id} completed in {res.seconds:.1f} s")
    _out(f"executed notebook: {res.output_notebook}")
    for out in res.outputs:
        _out(f"output {out.id}  {out.kind}  {out.path}")
    return 0


def cmd_kernel(args) -> int:
    from spotkit.runs import ensure_kernel

    _out(ensure_kernel())
    return 0


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

    from spotkit.flows import Watcher, load_rules

    _check_watch_paths(args)
    rules = load_rules(args.rules)
    watcher = Watcher(args.inboxes, catalog=_catalog(args, create=True), rules=rules,
                      warehouse=args.warehouse, poll=args.poll, settle=args.settle,
                      require_sentinel=args.sentinel, workers=args.workers,
                      cell_timeout=args.cell_timeout, inotify=False if args.no_inotify else None)

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
        watcher.close()
    return 0


def cmd_status(args) -> int:
    from spotkit.flows import STATES, Journal

    with _catalog(args) as cat:
        with Journal(cat.path) as journal:
            summary = journal.summary()
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


def _counts_table(counts: dict[str, dict[str, int]], states, width: int | None) -> str:
    """Items per beamline and state; narrower forms when the full table does not fit."""
    rows = [{"beamline": bl, **n} for bl, n in counts.items()]
    table = _table(rows, ["beamline", *states])
    if width is None or max(len(line) for line in table.splitlines()) <= width:
        return table
    used = [s for s in states if any(n.get(s) for n in counts.values())]
    table = _table(rows, ["beamline", *used])
    if max(len(line) for line in table.splitlines()) <= width:
        return table + "\n(states with no items not shown)"
    return "\n".join(
        textwrap.fill(f"{bl}: " + ", ".join(f"{s} {n[s]}" for s in used if n.get(s)),
                      width, subsequent_indent="  ")
        for bl, n in counts.items())


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


# ---------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one paragraph (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}. Run `{self.prog} --help` for the "
                     "options.\n")


def _common_options(*, suppress: bool) -> _Parser:
    """--catalog, -v and -q; on sub-commands with SUPPRESS defaults so both orders work."""
    p = _Parser(add_help=False)
    default = argparse.SUPPRESS if suppress else None
    p.add_argument("--catalog", default=default, metavar="PATH",
                   help="catalog database file (default: $SPOTKIT_CATALOG or "
                   "$SPOTKIT_HOME/catalog.db)")
    p.add_argument("-v", "--verbose", action="count",
                   default=argparse.SUPPRESS if suppress else 0,
                   help="more log output, and tracebacks of errors (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true",
                   default=argparse.SUPPRESS if suppress else False,
                   help="only errors and results")
    return p


def build_parser() -> argparse.ArgumentParser:
    """Build the ``spotkit`` argument parser.

    Returns
    -------
    argparse.ArgumentParser
    """
    common = [_common_options(suppress=True)]
    p = _Parser(prog="spotkit",
                description="spotkit: catalog, process and move synchrotron data.",
                parents=[_common_options(suppress=False)])
    p.add_argument("--version", action="version", version=f"spotkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", parents=common,
                       help="simulate a beamline session and process it end to end")
    d.add_argument("--workdir", default="spotkit-demo",
                   help="folder for the demo (default: %(default)s)")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("ingest", parents=common,
                       help="register raw files in the catalog (creates it if needed)")
    i.add_argument("paths", nargs="+", help="HDF5 files (Data Exchange tomography, NeXus SAXS)")
    i.set_defaults(func=cmd_ingest)

    c = sub.add_parser("catalog", parents=common, help="search, show and export the catalog")
    csub = c.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    s = csub.add_parser("search", parents=common, help="find datasets (newest first)")
    for name in ("beamline", "sample", "proposal", "kind", "status"):
        s.add_argument(f"--{name}")
    s.add_argument("--since", type=_when(end=False), metavar="WHEN",
                   help="from this time: 2026-01-31, 2026-01-31T13:30, today, yesterday, "
                   "7d, 2h (UTC)")
    s.add_argument("--until", type=_when(end=True), metavar="WHEN",
                   help="up to this time (a bare date includes that day); forms as --since")
    s.add_argument("--text", help="free-text query")
    s.add_argument("--limit", type=_whole(1, "--limit 20"), default=50,
                   help="at most this many (default: %(default)s)")
    s.add_argument("--json", action="store_true", help="print JSON records")
    s.set_defaults(func=cmd_search)
    sh = csub.add_parser("show", parents=common,
                         help="one dataset with its files, provenance and runs")
    sh.add_argument("dataset_id")
    sh.add_argument("--json", action="store_true", help="print the provenance as JSON")
    sh.set_defaults(func=cmd_show)
    e = csub.add_parser("export", parents=common, help="write an intake v2 catalog file")
    e.add_argument("path")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("run", parents=common,
                       help="run a notebook for one dataset through papermill")
    r.add_argument("notebook", help="notebook file, or the name of a shipped pipeline notebook")
    r.add_argument("dataset_id")
    r.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="notebook parameter (VALUE parsed as YAML: 3, 2.5, true, [1, 2])")
    r.add_argument("--output-dir", help="where the executed notebook and products go")
    r.add_argument("--cell-timeout", type=_seconds(zero_ok=False, example="--cell-timeout 600"),
                   default=1800, help="seconds per cell (default: %(default)s)")
    r.add_argument("--log-output", action="store_true", help="stream the notebook's output")
    r.set_defaults(func=cmd_run)

    w = sub.add_parser("watch", parents=common,
                       help="watch inbox folders and process every finished scan "
                       "(creates the catalog if needed)")
    w.add_argument("inboxes", nargs="+", metavar="INBOX", help="folders the detector writes to")
    w.add_argument("--rules", required=True, help="the facility's rules.yaml")
    w.add_argument("--warehouse", required=True, help="folder raw data is copied to (verified)")
    w.add_argument("--once", action="store_true",
                   help="one pass over what is complete now, finish it, then exit")
    w.add_argument("--no-drain", dest="drain", action="store_false",
                   help="with --once: a single pass only, even if work is left")
    w.add_argument("--poll", type=_seconds(zero_ok=False, example="--poll 5"), default=5.0,
                   help="seconds between passes (default: %(default)s)")
    w.add_argument("--settle", type=_seconds(zero_ok=True, example="--settle 5"), default=5.0,
                   help="seconds a file must stay unchanged before it is looked at "
                   "(default: %(default)s)")
    w.add_argument("--sentinel", action="store_true", help="also wait for <file>.done")
    w.add_argument("--no-inotify", action="store_true",
                   help="poll only (by default Linux inotify wakes the watcher early)")
    w.add_argument("--workers", type=_whole(1, "--workers 2"), default=2,
                   help="datasets handled at once (default: %(default)s)")
    w.add_argument("--cell-timeout", type=_seconds(zero_ok=False, example="--cell-timeout 600"),
                   default=1800, help="seconds per notebook cell (default: %(default)s)")
    w.set_defaults(func=cmd_watch)

    st = sub.add_parser("status", parents=common,
                        help="what the watcher has pending, running, failed, parked, done, "
                        "per beamline")
    st.add_argument("--json", action="store_true", help="print JSON (everything, in full)")
    st.add_argument("--wide", action="store_true",
                    help="full paths and errors instead of fitting the terminal")
    st.add_argument("--limit", type=_whole(1, "--limit 100"), default=100,
                    help="quarantined datasets listed (default: %(default)s)")
    st.set_defaults(func=cmd_status)

    f = sub.add_parser("flow", parents=common,
                       help="retry or forget an item the watcher parked, failed or quarantined")
    fsub = f.add_subparsers(dest="flow_command", required=True, metavar="ACTION")
    for name, text in (("retry", "put a parked, failed or quarantined item back in the queue"),
                       ("forget", "set an item aside for good (the raw file is kept)")):
        a = fsub.add_parser(name, parents=common, help=text, description=text)
        a.add_argument("item", metavar="ITEM",
                       help="the inbox path or the dataset id `spotkit status` lists")
        a.add_argument("--reason", required=True, help="why (recorded with the item)")
        a.add_argument("--by", help="who (default: your login name)")
        a.set_defaults(func=cmd_flow)

    k = sub.add_parser("kernel", parents=common,
                       help="register this environment's Jupyter kernel, print its name")
    k.set_defaults(func=cmd_kernel)
    return p


# ---------------------------------------------------------------- errors and logging
def _paragraph(exc: BaseException) -> str:
    """An exception's message as one paragraph (no blank lines)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
        if isinstance(exc, FileNotFoundError):
            text += "; check the path"
    else:
        text = str(exc).strip()
        if isinstance(exc, KeyError) and len(exc.args) == 1:
            text = str(exc.args[0])
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines) or type(exc).__name__


def _error(exc: BaseException, *, verbose: int) -> None:
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write(f"spotkit: error: {_paragraph(exc)}\n")


def _unexpected(exc: BaseException, *, verbose: int, command: str) -> None:
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
        hint = "The traceback is above; please include it when you report this."
    else:
        hint = "Rerun with -v to see the traceback, and include it when you report this."
    message = " ".join(_paragraph(exc).split())
    sys.stderr.write(f"spotkit: unexpected error in `spotkit {command}`: "
                     f"{type(exc).__name__}: {message}. This is probably a bug in spotkit. "
                     f"{hint}\n")


class _Formatter(logging.Formatter):
    """``HH:MM:SS message`` (level shown from WARNING up); tracebacks only with -v."""

    def __init__(self, verbose: int):
        fmt = ("%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose
               else "%(asctime)s %(message)s")
        super().__init__(fmt, datefmt=None if verbose else "%H:%M:%S")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if not self.verbose:
            if record.levelno >= logging.WARNING:
                record = logging.makeLogRecord(
                    {**record.__dict__, "msg": f"{record.levelname}: {record.getMessage()}",
                     "args": None, "exc_info": None, "exc_text": None, "stack_info": None})
            elif record.exc_info or record.stack_info:
                record = logging.makeLogRecord(
                    {**record.__dict__, "exc_info": None, "exc_text": None,
                     "stack_info": None})
        return super().format(record)


def _configure_logging(args) -> tuple[logging.Handler, dict[str, int]]:
    """Log spotkit's messages to stderr; ``watch`` shows the flow's per-step lines."""
    if args.quiet:
        level = logging.ERROR
    elif args.verbose > 1:
        level = logging.DEBUG
    elif args.verbose:
        level = logging.INFO
    else:
        level = logging.WARNING
    levels = {"spotkit": level}
    if args.command == "watch" and not args.quiet:
        levels["spotkit.flows"] = min(level, logging.INFO)
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(args.verbose))
    logging.getLogger("spotkit").addHandler(handler)
    return handler, saved


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one log line (no source lines)."""
    logging.getLogger("spotkit.warnings").warning("%s: %s", category.__name__, message)


def main(argv: list[str] | None = None) -> int:
    """Run the ``spotkit`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 on an error, 2 on a usage error, 130 if interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    command = " ".join(filter(None, (args.command, getattr(args, "catalog_command", None),
                                     getattr(args, "flow_command", None))))
    handler, saved = _configure_logging(args)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except KeyboardInterrupt:
        sys.stderr.write("spotkit: interrupted\n")
        return 130
    except BrokenPipeError:  # `spotkit catalog search | head`: the reader has gone
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except (SpotkitError, ValueError, OSError) as exc:
        _error(exc, verbose=args.verbose)
        return 1
    except Exception as exc:
        _unexpected(exc, verbose=args.verbose, command=command)
        return 1
    finally:
        logging.getLogger("spotkit").removeHandler(handler)
        for name, value in saved.items():
            logging.getLogger(name).setLevel(value)
