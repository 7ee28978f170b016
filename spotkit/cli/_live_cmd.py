"""``spotkit live PATH``: follow a series while the detector writes it; ``--status``: the live
series of the catalog.

Calls :class:`spotkit.live.LiveSession`. Progress lines go to stdout (one when a change is
confirmed, one every ``--every`` seconds otherwise); SIGTERM and Ctrl-C stop after the
frame being processed (the series' status says ``stopped``); a SIGKILL loses nothing: run
the same command again and it resumes at the first frame not recorded.

Hooked into the parser by :func:`add_live_parser` (one call in ``_main.build_parser``).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path

from spotkit.cli._output import _out, _table, _terminal_width
from spotkit.cli._types import _seconds, _whole
from spotkit.errors import SpotkitError

__all__ = ["add_live_parser", "cmd_live"]

logger = logging.getLogger("spotkit.cli")


def add_live_parser(sub, common) -> None:
    """Add ``live`` to the sub-command parsers."""
    p = sub.add_parser(
        "live", parents=common,
        help="follow a series while the detector writes it: reduce, detect changes, record, "
        "act (creates the catalog if needed)",
        description="Follow an HDF5/NeXus file being appended, a Dectris Eiger series (its "
        "*_master.h5 file: the data files it links to are read in order as they appear, and "
        "the series is one dataset) or a folder that CBF/EDF/TIFF frames arrive in: each "
        "frame is reduced to I(q), judged by the online change "
        "detector, recorded in the catalog (features, changes, frame marks, status) and "
        "handed to the live triggers of --rules. Killed, it resumes where it stopped when "
        "run again. With --status: list the live series.")
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="the HDF5/NeXus file, the Eiger master file (run_master.h5, with "
                   "its run_data_NNNNNN.h5 files beside it) or the folder of frame files being "
                   "written")
    p.add_argument("--status", action="store_true",
                   help="list the live series of the catalog (with --all: also ended ones)")
    p.add_argument("--all", action="store_true", help="with --status: ended series too")
    p.add_argument("--json", action="store_true", help="with --status: print JSON")
    p.add_argument("--rules", help="rules.yaml with a live: section (change-triggered actions)")
    p.add_argument("--poni", help="detector geometry (default: the series' own PONI file)")
    p.add_argument("--mask", help="detector mask file (default: the series' mask, if any)")
    p.add_argument("--npt", type=_whole(2, "--npt 300"), default=300,
                   help="bins of I(q) (default: %(default)s)")
    p.add_argument("--detector", action="append", default=[], metavar="NAME=VALUE",
                   help="an option of the online change detector (spotkit.change.OnlineDetector"
                   "), e.g. --detector threshold=15 --detector rearm=6; repeatable")
    p.add_argument("--dataset", metavar="ID",
                   help="record into this dataset (default: the live series of PATH, else "
                   "a new one)")
    p.add_argument("--once", action="store_true",
                   help="process the frames written when it starts, then exit")
    p.add_argument("--idle-timeout", type=_seconds(zero_ok=False, example="--idle-timeout 600"),
                   default=None, metavar="S",
                   help="exit after S seconds without a new frame (default: wait for the "
                   "writer to end the series)")
    p.add_argument("--every", type=_seconds(zero_ok=False, example="--every 5"), default=5.0,
                   metavar="S", help="seconds between progress lines (default: %(default)s; "
                   "none with -q)")
    p.add_argument("--no-ingest", dest="ingest", action="store_false",
                   help="do not ingest the finished series at the end")
    p.set_defaults(func=cmd_live)


def _status_rows(series: list[dict]) -> list[dict]:
    rows = []
    for s in series:
        latency = s.get("latency_s")
        rows.append({
            "dataset": s["dataset_id"], "state": s.get("state"),
            "done": f"{s.get('done', 0)}/{s.get('written', 0)}", "behind": s.get("behind"),
            "rate": f"{s.get('rate_hz') or 0:.1f}/s",
            "latency": "" if latency is None else f"{latency:.2f} s",
            "events": s.get("events"),
            "kept": "" if not s.get("reduction_factor") else f"1/{s['reduction_factor']:.1f}",
            "updated": f"{s.get('age_s', 0):.0f} s ago", "path": s.get("path")})
    return rows


def _print_status(args) -> int:
    from spotkit.cli._catalog_cmds import _catalog

    with _catalog(args) as cat:
        series = cat.live_series(active=None if args.all else True)
    if args.json:
        _out(json.dumps(series, indent=1, default=str))
        return 0
    if not series:
        _out("no live series" + ("" if args.all else " being followed (--all: ended ones too)"))
        return 0
    _out(_table(_status_rows(series), ["dataset", "state", "done", "behind", "rate",
                                       "latency", "events", "kept", "updated", "path"],
                width=_terminal_width(), paths=("path",)))
    return 0


def _detector_options(items: list[str]) -> dict:
    from spotkit.cli._types import _parse_value

    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise SpotkitError(f"--detector {item!r}: write NAME=VALUE, e.g. --detector "
                               "threshold=15")
        options[name.strip()] = _parse_value(value)
    return options


def _check_paths(args) -> None:
    path = Path(args.path).expanduser()
    if not path.exists() and not path.parent.is_dir():
        raise SpotkitError(f"{path}: neither it nor its folder exists; check the path (the "
                           "file may be created later, but in an existing folder)")
    for name in ("poni", "mask", "rules"):
        value = getattr(args, name)
        if value is not None and not Path(value).expanduser().is_file():
            raise SpotkitError(f"--{name} {value}: no such file")


def cmd_live(args) -> int:
    from spotkit.cli._catalog_cmds import _catalog

    if args.status:
        return _print_status(args)
    if args.path is None:
        raise SpotkitError("give the PATH of the series to follow (or --status)")
    _check_paths(args)
    from spotkit.live import LiveSession

    rules = None
    if args.rules is not None:
        from spotkit.flows import load_rules

        rules = load_rules(args.rules)
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        logger.info("signal %d: stopping after this frame", signum)
        stop.set()

    def on_point(point) -> None:
        if point.kind == "event":
            v = point.values
            _out(f"change at frame {v['onset']} (frames {v['onset']}..{v['end']}, confidence "
                 f"{v['confidence']:.3f}, {v['feature']}), confirmed at frame {point.frame}")

    previous = signal.signal(signal.SIGTERM, on_signal)
    cat = _catalog(args, create=True)
    try:
        with LiveSession(args.path, catalog=cat, geometry=args.poni, mask=args.mask,
                         npt=args.npt, rules=rules, dataset_id=args.dataset,
                         detector=_detector_options(args.detector),
                         on_point=on_point, ingest=args.ingest) as live:
            if live.cursor >= 0:
                _out(f"resuming {live.dataset_id} after frame {live.cursor}")
            _follow(live, args, stop)
            status = live.status
            _out(f"{live.dataset_id}: {status.summary()}" + (
                f"; reduction factor {status.reduction_factor:.1f}"
                if status.reduction_factor else ""))
            if live.ingested_as and live.ingested_as != live.dataset_id:
                _out(f"the finished series is {live.ingested_as}")
    finally:
        signal.signal(signal.SIGTERM, previous)
        cat.close()
    return 0


def _follow(live, args, stop: threading.Event) -> None:
    """Step the session, printing progress every ``--every`` seconds."""
    last_line = time.monotonic()
    idle_since = time.monotonic()
    target = None  # --once: the frames written when it started
    while not stop.is_set():
        got = live.step(live.batch_size)
        status = live.status
        if target is None:
            target = status.written
        if got:
            idle_since = time.monotonic()
        if status.state in ("finished", "failed"):
            return
        if args.once and status.done >= target and (not got or status.behind == 0):
            return
        if not getattr(args, "quiet", False) and time.monotonic() - last_line >= args.every:
            _out(f"{live.dataset_id}: {status.summary()}")
            last_line = time.monotonic()
        if not got:
            if args.idle_timeout is not None and \
                    time.monotonic() - idle_since > args.idle_timeout:
                _out(f"no new frame for {args.idle_timeout:g} s: stopping (run again to "
                     "resume)")
                return
            stop.wait(0.05)
