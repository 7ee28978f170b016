"""Shared by the benchmarks: write one section of RESULTS.md; drop a file from the page cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine_line() -> str:
    """``Date (UTC) and machine: CPU model, cores, RAM, Python`` for a results section."""
    import datetime
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        ram = float("nan")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"- **Date:** {now}. **Machine:** {cpu}, nproc {os.cpu_count()}, {ram:.0f} GiB "
            f"RAM, Python {platform.python_version()}, {platform.system()} "
            f"{platform.release()}.")


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section that starts with ``heading`` (up to the next ``## ``), or append it.

    The file is read just before it is written: other benchmarks rewrite their own sections.
    """
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    # the heading is a prefix of the section's first line (which may end in ")")
    pattern = re.compile(rf"^{re.escape(heading)}.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
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
