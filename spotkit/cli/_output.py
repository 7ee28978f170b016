"""What the ``spotkit`` commands print on stdout: lines and tables that fit the terminal."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import PurePosixPath

#: terminal width used when the real one is unknown (not a terminal, no $COLUMNS)
DEFAULT_WIDTH = 100


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


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


def _spans(frames) -> str:
    """Frame numbers as runs: ``[0, 1, 2, 3, 7, 9, 10]`` -> ``0-3, 7, 9-10``."""
    out: list[str] = []
    start = prev = None
    for f in [*sorted(frames), None]:
        if f is not None and prev is not None and f == prev + 1:
            prev = f
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = f
    return ", ".join(out)
