"""What ``spotkit`` writes on stderr: one-paragraph errors, log lines and warnings."""

from __future__ import annotations

import logging
import sys
import traceback


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
