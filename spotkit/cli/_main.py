"""``spotkit`` sub-commands. Every command calls a public library function.

Errors are shown as one paragraph on stderr that says what was wrong and what to do, with
exit status 1 (2 for a bad command line); ``-v`` adds the traceback. Only ``demo``,
``ingest`` and ``watch`` may create a catalog: the other commands refuse a catalog path
that does not exist, so a typo is reported instead of starting an empty catalog.

The commands live by group: :mod:`._catalog_cmds` (ingest, catalog search/show/export),
:mod:`._flow_cmds` (watch, status, flow), :mod:`._run_cmds` (run, kernel),
:mod:`._demo_cmd` (demo); the option types in :mod:`._types`, what is printed in
:mod:`._output` and on stderr in :mod:`._diagnostics`. This module builds the parser and
runs a command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from spotkit._startup import defer_iri_grammar
from spotkit._version import __version__
from spotkit.cli._catalog_cmds import (
    _catalog,
    _catalog_file,
    _frame_ranges,
    _remove_new_catalog,
    _show,
    cmd_export,
    cmd_ingest,
    cmd_search,
    cmd_show,
)
from spotkit.cli._demo_cmd import _change_summary, cmd_demo
from spotkit.cli._diagnostics import (
    _configure_logging,
    _error,
    _Formatter,
    _paragraph,
    _show_warning,
    _unexpected,
)
from spotkit.cli._flow_cmds import (
    _check_watch_paths,
    cmd_flow,
    cmd_flow_rule,
    cmd_status,
    cmd_watch,
)
from spotkit.cli._frames_cmd import add_frames_parser
from spotkit.cli._live_cmd import add_live_parser
from spotkit.cli._monitor_beamtime import _add_beamtime_arguments
from spotkit.cli._monitor_cmds import add_monitor_parser
from spotkit.cli._output import (
    DEFAULT_WIDTH,
    _cell,
    _counts_table,
    _one_line,
    _out,
    _short_path,
    _table,
    _terminal_width,
)
from spotkit.cli._portal_cmd import add_portal_parser
from spotkit.cli._run_cmds import cmd_kernel, cmd_run
from spotkit.cli._serve_cmd import add_serve_parser
from spotkit.cli._types import TIME_FORMS, _parse_value, _seconds, _when, _whole
from spotkit.errors import SpotkitError

__all__ = ["build_parser", "main"]

# names that tests and callers reach through this module (the parser reads the cmd_*
# functions from here, so monkeypatching spotkit.cli._main.cmd_X replaces a command)
_REEXPORTED = (DEFAULT_WIDTH, TIME_FORMS, _catalog, _catalog_file, _cell, _change_summary,
               _check_watch_paths, _counts_table, _error, _Formatter, _frame_ranges,
               _one_line, _out, _paragraph, _parse_value, _remove_new_catalog, _short_path,
               _show, _table, _terminal_width)

logger = logging.getLogger("spotkit.cli")


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
    p.add_argument("--catalog", default=default, metavar="PATH|URL",
                   help="catalog database file or postgresql:// URL (default: "
                   "$SPOTKIT_CATALOG or $SPOTKIT_HOME/catalog.db)")
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
    s.add_argument("--exact-total", action="store_true",
                   help="count every match (PostgreSQL estimates totals above 10,000)")
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
    w.add_argument("--metrics-port", type=_whole(0, "--metrics-port 9464"), default=None,
                   help="serve Prometheus metrics on this port (the rules' alerts run anyway)")
    w.add_argument("--metrics-host", default="127.0.0.1",
                   help="address for --metrics-port (0.0.0.0: all; default: %(default)s)")
    _add_beamtime_arguments(w, scoped=False)
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
                       help="retry or forget an item the watcher parked, failed or quarantined; "
                       "pause or resume a rule; release a series' redundant frames")
    fsub = f.add_subparsers(dest="flow_command", required=True, metavar="ACTION")
    for name, text in (("retry", "put a parked, failed or quarantined item back in the queue"),
                       ("forget", "set an item aside for good (the raw file is kept)")):
        a = fsub.add_parser(name, parents=common, help=text, description=text)
        a.add_argument("item", metavar="ITEM",
                       help="the inbox path or the dataset id `spotkit status` lists")
        a.add_argument("--reason", required=True, help="why (recorded with the item)")
        a.add_argument("--by", help="who (default: your login name)")
        a.set_defaults(func=cmd_flow)
    for name, text in (("pause", "pause a rule: every watcher holds its datasets (they wait, "
                                 "not failed) from its next pass until resumed"),
                       ("resume", "resume a paused rule: the datasets it held continue")):
        a = fsub.add_parser(name, parents=common, help=text, description=text)
        a.add_argument("rule", metavar="RULE", help="the rule's name in rules.yaml")
        a.add_argument("--reason", required=name == "pause",
                       help="why (recorded with the pause and shown by `spotkit status`)")
        a.add_argument("--by", help="who (default: your login name)")
        if name == "pause":
            a.add_argument("--rules", help="the rules file: refuse a rule not in it")
        a.set_defaults(func=cmd_flow_rule)
    add_frames_parser(fsub, common)

    k = sub.add_parser("kernel", parents=common,
                       help="register this environment's Jupyter kernel, print its name")
    k.set_defaults(func=cmd_kernel)
    add_serve_parser(sub, common)
    add_monitor_parser(sub, common)
    add_portal_parser(sub, common)
    add_live_parser(sub, common)
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
        Exit status: 0 on success, 1 on an error, 2 on a usage error, 130 if interrupted.
    """
    defer_iri_grammar()  # commands that run or read notebooks start ~1 s sooner
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    command = " ".join(filter(None, (args.command, getattr(args, "catalog_command", None),
                                     getattr(args, "flow_command", None),
                                     getattr(args, "monitor_command", None))))
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
