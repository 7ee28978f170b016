"""The command a batch job runs: ``python -m spotkit.compute._worker <run dir>/job.json``.

It reads the job spec written by :func:`spotkit.submit` and executes the notebook through
:func:`spotkit.runs.run_notebook` on the catalog run that was queued for it. The exit
status tells the scheduler how it went, so that Slurm reports ``FAILED`` for a failed
notebook:

- 0: the notebook ran and its outputs are registered;
- 1: the notebook failed (the run records the failing cell);
- 2: the job could not start the run (bad spec, catalog or dataset missing, run not queued).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from spotkit._startup import defer_iri_grammar
from spotkit.errors import NotebookExecutionError, SpotkitError

logger = logging.getLogger("spotkit.compute.worker")

__all__ = ["main", "run_spec"]

_REQUIRED = ("run_id", "notebook", "dataset_id", "catalog", "parameters", "output_dir")


def run_spec(spec_path: str | Path):
    """Execute the run described by a ``job.json`` file.

    Parameters
    ----------
    spec_path : path-like
        The job spec.

    Returns
    -------
    spotkit.runs.RunResult

    Raises
    ------
    ValueError
        The spec is not valid JSON or lacks a field.
    NotebookExecutionError
        The notebook failed (recorded in the run).
    SpotkitError
        The catalog, dataset or run is not usable.
    """
    from spotkit.catalog import open_catalog
    from spotkit.runs import run_notebook

    spec_path = Path(spec_path)
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read job spec {spec_path}: {exc}") from exc
    missing = [k for k in _REQUIRED if k not in spec]
    if missing:
        raise ValueError(f"job spec {spec_path} lacks {missing}")
    with open_catalog(spec["catalog"]) as cat:
        return run_notebook(
            spec["notebook"], spec["dataset_id"], parameters=spec["parameters"], catalog=cat,
            output_dir=spec["output_dir"], run_id=spec["run_id"],
            cell_timeout=spec.get("cell_timeout"), target=spec.get("target", "local"),
            log_output=bool(spec.get("log_output", False)),
        )


def _record_failure(spec_path: str, exc: BaseException) -> None:
    """Best effort: a run the job could not execute is recorded as failed, not left queued."""
    try:
        spec = json.loads(Path(spec_path).read_text())
        from spotkit.catalog import open_catalog

        with open_catalog(spec["catalog"]) as cat:
            if cat.get_run(spec["run_id"]).state in ("queued", "running"):
                cat.finish_run(spec["run_id"], state="failed", error_name=type(exc).__name__,
                               error_message=f"the batch job could not run it: {exc}")
    except (OSError, ValueError, KeyError, SpotkitError) as inner:
        logger.error("could not record the failure in the catalog either: %s", inner)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the batch job; returns the exit status (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    defer_iri_grammar()  # the notebook run imports nbformat: ~1 s less per job
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 1:
        logger.error("usage: python -m spotkit.compute._worker RUN_DIR/job.json")
        return 2
    try:
        result = run_spec(argv[0])
    except NotebookExecutionError as exc:
        logger.error("%s", exc)
        return 1
    except (SpotkitError, ValueError, OSError) as exc:
        logger.error("the job could not run: %s", exc)
        _record_failure(argv[0], exc)
        return 2
    logger.info("run %s completed in %.1f s with %d output(s): %s", result.run_id,
                result.seconds, len(result.outputs), ", ".join(o.id for o in result.outputs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
