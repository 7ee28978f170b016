"""Beamtime windows written by people: ``START/END`` text and beamtime files.

What :meth:`spotkit.monitor.Schedule.parse` reads (``spotkit monitor missing --beamtime``):

* a window is ``START/END`` in ISO 8601 (``2026-12-04T08:00Z/2026-12-04T20:00Z``; no zone
  means UTC), optionally for one beamline: ``8.3.2=START/END``; a window without a beamline
  is every beamline's (the key ``"*"``);
* a beamtime file is YAML (or JSON): a mapping ``{beamline: [window, ...]}`` (``"*"``: every
  beamline) whose windows are ``START/END`` text or ``[START, END]`` pairs; or a list of
  windows; or plain text, one window per line (``#`` starts a comment).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["ALL_BEAMLINES", "parse_windows", "read_windows"]

#: the key of windows that are every beamline's
ALL_BEAMLINES = "*"


def _window(text: Any, where: str) -> tuple[str, str]:
    if isinstance(text, list | tuple) and len(text) == 2:
        return str(text[0]), str(text[1])
    parts = str(text).strip().split("/")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ValueError(f"beamtime window {text!r} ({where}): write START/END in ISO 8601, "
                         "e.g. 2026-12-04T08:00Z/2026-12-04T20:00Z")
    return parts[0].strip(), parts[1].strip()


def parse_windows(texts: Iterable[str], *, beamline: str | None = None,
                  where: str = "--beamtime") -> dict[str, list[tuple[str, str]]]:
    """``{beamline: [(start, end), ...]}`` from ``[BEAMLINE=]START/END`` texts (a window
    without a beamline is ``beamline``'s, or every beamline's)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for text in texts:
        name, sep, span = str(text).partition("=")
        if not sep:
            name, span = beamline or ALL_BEAMLINES, text
        out.setdefault(name.strip(), []).append(_window(span, where))
    return out


def read_windows(path: str | os.PathLike, *,
                 beamline: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """``{beamline: [(start, end), ...]}`` from a beamtime file (see the module docstring).

    Raises
    ------
    ValueError
        Naming the file, when it cannot be read or holds something else.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"beamtime file {path}: cannot be read ({exc.strerror})") from None
    where = f"in {path}"
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = text  # plain text, one window per line
    if doc is None:
        return {}
    if isinstance(doc, str):
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        return parse_windows([line for line in lines if line], beamline=beamline, where=where)
    if isinstance(doc, list):
        return {beamline or ALL_BEAMLINES: [_window(w, where) for w in doc]}
    if isinstance(doc, dict):
        out: dict[str, list[tuple[str, str]]] = {}
        for name, windows in doc.items():
            if not isinstance(windows, list):
                windows = [windows]
            out[str(name)] = [_window(w, f"{where}, beamline {name}") for w in windows]
        return out
    raise ValueError(f"beamtime file {path}: write a mapping {{beamline: [START/END, ...]}}, "
                     "a list of START/END windows, or one START/END per line")
