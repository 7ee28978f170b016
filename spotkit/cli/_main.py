"""``spotkit`` sub-commands. Every command calls a public library function; errors derived
from :class:`spotkit.SpotkitError` are shown as one paragraph and give exit status 1."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import yaml

from spotkit._version import __version__
from spotkit.errors import SpotkitError

logger = logging.getLogger("spotkit.cli")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    head = "  ".join(c.upper().ljust(widths[c]) for c in columns)
    lines = [head, "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


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


def _catalog(args):
    from spotkit.catalog import open_catalog

    return open_catalog(args.catalog)


# ---------------------------------------------------------------- commands
def cmd_demo(args) -> int:
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

    cat = open_catalog(report.catalog_path)
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
    cat = _catalog(args)
    status = 0
    for path in args.paths:
        try:
            ds = cat.ingest(path)
        except SpotkitError as exc:
            logger.error("%s", exc)
            sys.stderr.write(f"error: {exc}\n")
            status = 1
            continue
        _out(f"{ds.id}  {ds.kind}  {ds.sample}  {ds.path}")
    return status


def cmd_search(args) -> int:
    cat = _catalog(args)
    res = cat.search(beamline=args.beamline, sample=args.sample, proposal=args.proposal,
                     kind=args.kind, status=args.status, since=args.since, until=args.until,
                     text=args.text, limit=args.limit)
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
    cat = _catalog(args)
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
    cat = _catalog(args)
    path = cat.export_intake(args.path)
    _out(str(path))
    return 0


def cmd_run(args) -> int:
    from spotkit.runs import pipeline_notebook, run_notebook

    notebook = Path(args.notebook)
    if not notebook.exists() and "/" not in args.notebook:
        notebook = pipeline_notebook(args.notebook)
    params = {name: _parse_value(value) for name, value in (args.parameter or [])}
    res = run_notebook(notebook, args.dataset_id, parameters=params,
                       output_dir=args.output_dir, catalog=_catalog(args),
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


def cmd_watch(args) -> int:
    import signal

    from spotkit.flows import Watcher, load_rules

    rules = load_rules(args.rules)
    watcher = Watcher(args.inboxes, catalog=_catalog(args), rules=rules,
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
            while watcher.pending() and args.drain:
                time.sleep(min(args.poll, 1.0))
                more = watcher.run_once()
                report.done += more.done
                report.parked.update(more.parked)
                if not (more.done or more.failed or more.outages or more.discovered):
                    break
            _out(f"done {len(report.done)}, failed {len(report.failed)}, parked "
                 f"{len(report.parked)}, outages {len(report.outages)}")
            for path, reason in report.parked.items():
                _out(f"parked {path}: {reason}")
        else:
            watcher.run_forever()
    finally:
        signal.signal(signal.SIGTERM, previous)
        watcher.close()
    return 0


def cmd_status(args) -> int:
    from spotkit.flows import STATES, Journal

    cat = _catalog(args)
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
    rows = [{"beamline": bl, **counts} for bl, counts in summary["counts"].items()]
    _out(_table(rows, ["beamline", *STATES]))
    for state in ("running", "failed", "parked"):
        if summary[state]:
            _out(f"\n{state.capitalize()}")
            _out(_table(summary[state], ["path", "dataset_id", "attempts", "error"]))
    if summary["quarantined"]:
        _out("\nQuarantined")
        _out(_table(summary["quarantined"], ["dataset_id", "path", "reason"]))
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """Build the ``spotkit`` argument parser.

    Returns
    -------
    argparse.ArgumentParser
    """
    p = argparse.ArgumentParser(prog="spotkit", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"spotkit {__version__}")
    p.add_argument("--catalog", help="catalog database file (default: $SPOTKIT_HOME/catalog.db)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and results")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="simulate a beamline session and process it end to end")
    d.add_argument("--workdir", default="spotkit-demo",
                   help="folder for the demo (default: %(default)s)")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("ingest", help="register raw files in the catalog")
    i.add_argument("paths", nargs="+", help="HDF5 files (Data Exchange tomography, NeXus SAXS)")
    i.set_defaults(func=cmd_ingest)

    c = sub.add_parser("catalog", help="search, show and export the catalog")
    csub = c.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    s = csub.add_parser("search", help="find datasets (newest first)")
    for name in ("beamline", "sample", "proposal", "kind", "status"):
        s.add_argument(f"--{name}")
    s.add_argument("--since", help="ISO date or time, e.g. 2026-01-31")
    s.add_argument("--until", help="ISO date or time")
    s.add_argument("--text", help="free-text query")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--json", action="store_true", help="print JSON records")
    s.set_defaults(func=cmd_search)
    sh = csub.add_parser("show", help="one dataset with its files, provenance and runs")
    sh.add_argument("dataset_id")
    sh.add_argument("--json", action="store_true", help="print the provenance as JSON")
    sh.set_defaults(func=cmd_show)
    e = csub.add_parser("export", help="write an intake v2 catalog file")
    e.add_argument("path")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("run", help="run a notebook for one dataset through papermill")
    r.add_argument("notebook", help="notebook file, or the name of a shipped pipeline notebook")
    r.add_argument("dataset_id")
    r.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="notebook parameter (VALUE parsed as YAML: 3, 2.5, true, [1, 2])")
    r.add_argument("--output-dir", help="where the executed notebook and products go")
    r.add_argument("--cell-timeout", type=float, default=1800, help="seconds per cell")
    r.add_argument("--log-output", action="store_true", help="stream the notebook's output")
    r.set_defaults(func=cmd_run)

    w = sub.add_parser("watch", help="watch inbox folders and process every finished scan")
    w.add_argument("inboxes", nargs="+", metavar="INBOX", help="folders the detector writes to")
    w.add_argument("--rules", required=True, help="the facility's rules.yaml")
    w.add_argument("--warehouse", required=True, help="folder raw data is copied to (verified)")
    w.add_argument("--once", action="store_true",
                   help="one pass over what is complete now, finish it, then exit")
    w.add_argument("--no-drain", dest="drain", action="store_false",
                   help="with --once: a single pass only, even if work is left")
    w.add_argument("--poll", type=float, default=5.0, help="seconds between passes")
    w.add_argument("--settle", type=float, default=5.0,
                   help="seconds a file must stay unchanged before it is looked at")
    w.add_argument("--sentinel", action="store_true", help="also wait for <file>.done")
    w.add_argument("--no-inotify", action="store_true",
                   help="poll only (by default Linux inotify wakes the watcher early)")
    w.add_argument("--workers", type=int, default=2, help="datasets handled at once")
    w.add_argument("--cell-timeout", type=float, default=1800, help="seconds per notebook cell")
    w.set_defaults(func=cmd_watch)

    st = sub.add_parser("status", help="what the watcher has pending, running, failed, parked, "
                        "done, per beamline")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.add_argument("--limit", type=int, default=100, help="quarantined datasets listed")
    st.set_defaults(func=cmd_status)

    k = sub.add_parser("kernel", help="register this environment's Jupyter kernel, print its name")
    k.set_defaults(func=cmd_kernel)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``spotkit`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 on a spotkit error, 2 on a usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.INFO if args.verbose else logging.WARNING)
    if args.verbose > 1:
        level = logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (SpotkitError, FileNotFoundError) as exc:
        sys.stderr.write(f"spotkit: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("spotkit: interrupted\n")
        return 130
