"""Batch scripts for NERSC: the ``#SBATCH`` lines spotkit sets and the files staged with them.

Plain text work, no network: the NERSC target (:mod:`spotkit.compute._nersc`) uploads what
these functions produce.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

__all__ = ["MAX_STAGED_BYTES", "STAGED_SUFFIXES", "safe_name", "staged_files",
           "with_directives"]

log = logging.getLogger(__name__)

STAGED_SUFFIXES = (".json", ".yaml", ".yml")
"""Files of the local run folder that are uploaded next to the batch script."""

MAX_STAGED_BYTES = 8 * 2**20
_SHORT = {"J": "job-name", "q": "qos", "C": "constraint", "t": "time", "A": "account",
          "D": "chdir", "o": "output", "e": "error"}
_DIRECTIVE = re.compile(r"^#SBATCH\s+(--?[\w-]+)")


def safe_name(name: str) -> str:
    """A file/job name made of ``[A-Za-z0-9_.-]`` (nothing a shell or #SBATCH line parses).

    Examples
    --------
    >>> safe_name("scan 12 (retake)/v2")
    'scan_12_retake_v2'
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "job"
    return safe[:100]


def _directive_name(line: str) -> str | None:
    match = _DIRECTIVE.match(line.strip())
    if not match:
        return None
    name = match.group(1).lstrip("-")
    return _SHORT.get(name, name)


def with_directives(text: str, *, add: list[str], replace: list[str]) -> str:
    r"""The script with ``replace`` lines instead of same-named ones, and the ``add`` lines
    whose option the script does not set yet, right after the shebang.

    Examples
    --------
    >>> text = "#!/bin/bash\n#SBATCH -q debug\n#SBATCH --output=here.out\nrun\n"
    >>> print(with_directives(text, add=["#SBATCH --qos=regular", "#SBATCH --time=10"],
    ...                       replace=["#SBATCH --output=/scratch/j/slurm-%j.out"]), end="")
    #!/bin/bash
    #SBATCH --time=10
    #SBATCH --output=/scratch/j/slurm-%j.out
    #SBATCH -q debug
    run
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    replaced = {_directive_name(d) for d in replace}
    kept = [ln for ln in lines if _directive_name(ln) not in replaced]
    present = {_directive_name(ln) for ln in kept} - {None}
    new = [d for d in add if _directive_name(d) not in present] + list(replace)
    if kept and kept[0].startswith("#!"):
        head, body = kept[:1], kept[1:]
    else:
        head, body = ["#!/bin/bash\n"], kept
    return "".join(head + [d + "\n" for d in new] + body)


def staged_files(workdir: Path, script: Path) -> list[Path]:
    """Small job files of the run folder that travel with the script."""
    if not workdir.is_dir():
        return []
    files = []
    for path in sorted(workdir.iterdir()):
        if not path.is_file() or path.resolve() == script.resolve():
            continue
        if path.suffix not in STAGED_SUFFIXES:
            continue
        if path.stat().st_size > MAX_STAGED_BYTES:
            log.warning("not uploading %s to NERSC: larger than %d MiB", path,
                        MAX_STAGED_BYTES // 2**20)
            continue
        files.append(path)
    return files
