"""What a notebook job costs before its first cell: a fresh process that runs a notebook.

Every batch job, every ``spotkit`` command that runs or reads a notebook, and every worker
of the flow is a new Python process that imports papermill and nbformat. nbformat imports
jsonschema, whose format checkers import ``rfc3987_syntax`` when it is installed (it comes
with the Jupyter stack); that module compiles its IRI grammars on import.
:func:`spotkit._startup.defer_iri_grammar` (called by the CLI, the job worker and the
notebook runner) leaves them until an IRI is checked, which no notebook schema asks for.

Measured in the same run, alternating, each in a fresh process (wall and CPU time):

- ``import papermill`` as a process pays it, and with the grammar deferred;
- a whole notebook run as a batch job runs it (``python -m spotkit.compute._worker``'s
  path: ``spotkit.run_notebook`` of a two-cell notebook on a catalog dataset, its output
  registered), with the deferral and with it switched off (the real module imported first,
  as before this change).

Usage::

    python benchmarks/bench_job_startup.py [--repeat 7] [--write]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT = {"plain": "import papermill",
          "deferred": "from spotkit._startup import defer_iri_grammar as d; d(); import papermill"}

RUN = """
import sys
if sys.argv[1] == "plain":
    import rfc3987_syntax  # what every process paid before: the grammars compiled at import
import spotkit
from spotkit.catalog import open_catalog
cat = open_catalog(sys.argv[2])
ds = cat.search(kind="tomo/raw")[0]
spotkit.run_notebook(sys.argv[3], ds, catalog=cat, output_dir=sys.argv[4])
"""

def _timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _setup(root: Path) -> tuple[Path, Path]:
    from bench_beamline_day import _notebook  # the beamline day's two-cell preview notebook

    from spotkit.catalog import open_catalog
    from spotkit.sim import simulate_tomo_scan

    scan = root / "scan.h5"
    simulate_tomo_scan(scan, shape=(16, 2, 32), n_flats=1, n_darks=1, seed=0)
    cat = open_catalog(root / "catalog.db")
    cat.ingest(scan)
    cat.close()
    return root / "catalog.db", _notebook(root / "job.ipynb")


def measure(repeat: int = 7) -> dict:
    """Median wall and CPU seconds per case (each case ``repeat`` times, alternating)."""
    out: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="spotkit-startup-") as tmp:
        root = Path(tmp)
        catalog, notebook = _setup(root)
        for i in range(repeat):
            for mode in ("plain", "deferred"):
                out.setdefault(f"import papermill, {mode}", []).append(
                    _timed([sys.executable, "-c", IMPORT[mode]]))
                run_dir = root / f"run-{mode}-{i}"
                run_dir.mkdir()
                out.setdefault(f"notebook job, {mode}", []).append(_timed(
                    [sys.executable, "-c", RUN, mode, str(catalog), str(notebook),
                     str(run_dir)]))
    return {k: {"wall_s": statistics.median(w for w, _ in v),
                "cpu_s": statistics.median(c for _, c in v), "n": len(v)}
            for k, v in out.items()}


def _table(res: dict) -> str:
    lines = ["| case | wall (median) | CPU (median) | runs |", "|---|---|---|---|"]
    for k, v in res.items():
        lines.append(f"| {k} | {v['wall_s']:.2f} s | {v['cpu_s']:.2f} s | {v['n']} |")
    for what in ("import papermill", "notebook job"):
        p, d = res[f"{what}, plain"], res[f"{what}, deferred"]
        lines.append(f"| {what}: saved | {p['wall_s'] - d['wall_s']:.2f} s "
                     f"({p['wall_s'] / d['wall_s']:.2f}x) | {p['cpu_s'] - d['cpu_s']:.2f} s | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    res = measure(args.repeat)
    print(_table(res))
    print(json.dumps(res))
    if args.write:
        from _results import machine_line, write_section

        write_section("## Job start-up: a notebook job before its first cell", f"""\
## Job start-up: a notebook job before its first cell

{machine_line()}
- **Run:** `python benchmarks/bench_job_startup.py --repeat {args.repeat}`: each case in a fresh
  process, the cases alternating; "plain" imports `rfc3987_syntax` as jsonschema does on
  import (what every process paid before), "deferred" is spotkit's processes now
  (`spotkit._startup.defer_iri_grammar`). The notebook job is `spotkit.run_notebook` of a
  two-cell notebook on a catalog dataset with its output registered (what
  `python -m spotkit.compute._worker` runs for a batch job), kernel start included.

{_table(res)}
""")


if __name__ == "__main__":
    main()
