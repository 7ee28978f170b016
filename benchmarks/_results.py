"""Shared by the benchmarks: write one section of RESULTS.md; drop a file from the page cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section that starts with ``heading`` (up to the next ``## ``), or append it.

    The file is read just before it is written: other benchmarks rewrite their own sections.
    """
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\b.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    block = text.rstrip() + "\n"
    if pattern.search(old):
        new = pattern.sub(lambda _: block + "\n", old, count=1).rstrip() + "\n"
    else:
        new = old.rstrip() + "\n\n" + block
    path.write_text(new)


def drop_page_cache(path) -> None:
    """Evict a file's pages from the page cache (no root needed), so it is read from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
