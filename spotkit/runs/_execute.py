"""Execute one notebook for one dataset with papermill, and record the run in the catalog.

The checks made before anything runs (the notebook's parameters and accepted dataset
kinds) are in :mod:`spotkit.runs._checks`; their names are re-exported here.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from spotkit.errors import CatalogError, NotebookExecutionError
from spotkit.runs._checks import (
    RESERVED_PARAMETERS,
    check_kind,
    check_parameters,
    notebook_kinds,
    notebook_parameters,
)
from spotkit.runs._kernel import ensure_kernel, kernel_engine_options
from spotkit.runs._outputs import read_declared_outputs
from spotkit.runs._papermill_io import import_papermill
from spotkit.runs._paths import read_notebook, resolve_notebook
from spotkit.runs._telemetry import RunEvents

logger = logging.getLogger(__name__)

__all__ = [
    "RESERVED_PARAMETERS",
    "RunResult",
    "check_kind",
    "check_parameters",
    "notebook_kinds",
    "notebook_parameters",
    "run_notebook",
    "software_versions",
]

_VERSION_PACKAGES = ("spotkit", "numpy", "scipy", "h5py", "dask", "xarray", "papermill",
                     "ipykernel", "pyFAI", "finufft", "tomopy")


@dataclass(frozen=True)
class RunResult:
    """The outcome of a successful notebook run.

    Attributes
    ----------
    run_id : str
        Catalog id of the run.
    dataset_id : str
        The dataset the notebook ran for.
    notebook : pathlib.Path
        The input notebook.
    output_notebook : pathlib.Path
        The executed notebook, kept beside the outputs.
    output_dir : pathlib.Path
        Working directory of the run, where its products are written.
    outputs : tuple
        Derived :class:`~spotkit.catalog.Dataset` objects registered by the run.
    seconds : float
        Wall time of the execution.
    """

    run_id: str
    dataset_id: str
    notebook: Path
    output_notebook: Path
    output_dir: Path
    outputs: tuple = field(default_factory=tuple)
    seconds: float = 0.0
    state: str = "completed"




def software_versions() -> dict[str, str]:
    """The software a run records: Python, the platform, and spotkit's main packages.

    Returns
    -------
    dict
        ``{"python": "3.11.9", "spotkit": "...", "numpy": "...", ...}`` (packages not
        installed are left out).
    """
    versions = {"python": platform.python_version(), "platform": platform.platform(),
                "executable": sys.executable}
    for name in _VERSION_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def _versions() -> dict[str, str]:
    return software_versions()


def _sha256(path: Path) -> str:
    from spotkit.checksums import sha256_file

    return sha256_file(path)


def run_notebook(
    notebook: str | os.PathLike,
    dataset,
    *,
    parameters: dict[str, Any] | None = None,
    output_dir: str | os.PathLike | None = None,
    catalog=None,
    kernel_name: str | None = None,
    cell_timeout: float | None = 1800,
    start_timeout: float = 120,
    target: str = "local",
    log_output: bool = False,
    run_id: str | None = None,
    context: dict[str, Any] | None = None,
) -> RunResult:
    """Run a notebook for one dataset through papermill and record it in the catalog.

    The dataset id, the catalog path and the output directory are injected into the
    notebook's ``parameters`` cell together with ``parameters``. The executed notebook is
    kept in the output directory. On success, the files the notebook declared with
    :func:`spotkit.runs.declare_output` become derived datasets whose parent is ``dataset``,
    with the run as provenance. On failure the partial notebook is kept, the failing cell's
    index, error name and message are recorded, and :class:`NotebookExecutionError` is raised.

    Parameters
    ----------
    notebook : path-like or str
        Notebook with a cell tagged ``parameters`` that declares at least ``dataset_id``:
        a path, or the name of a shipped pipeline notebook (``"tomo_quicklook"``, with or
        without ``.ipynb``; see :func:`spotkit.runs.resolve_notebook`).
    dataset : str or Dataset
        Dataset id or catalog dataset; its kind must be one the notebook accepts
        (``metadata.spotkit.kinds``).
    parameters : dict, optional
        Extra parameters; every name must be declared by the notebook.
    output_dir : path-like, optional
        Where the executed notebook and products go; defaults to
        ``<catalog dir>/runs/<run id>``. It is also the kernel's working directory.
    catalog : Catalog or path-like, optional
        The catalog; defaults to :func:`spotkit.open_catalog`.
    kernel_name : str, optional
        Jupyter kernel; defaults to the kernel spotkit registers for this environment.
    cell_timeout : float or None
        Seconds one cell may run (None: no limit).
    start_timeout : float
        Seconds the kernel may take to start.
    target : str
        Compute target recorded with the run.
    log_output : bool
        Forward the notebook's stdout/stderr to the log.
    run_id : str, optional
        Execute an existing ``"queued"`` catalog run (made by :func:`spotkit.submit`)
        instead of recording a new one; its dataset and notebook must match. ``target`` is
        then the one the run was queued for.
    context : dict, optional
        Why it runs, recorded with the run (:attr:`spotkit.catalog.Run.context`); the flow
        records its rule here.

    Returns
    -------
    RunResult

    Raises
    ------
    FileNotFoundError
        Neither a notebook file nor a shipped notebook's name (the message lists those).
    InputFileError
        The file is not a Jupyter notebook.
    NotebookParameterError
        A parameter the notebook does not declare, or a value of the wrong type, out of
        range or not among the choices (see :func:`check_parameters`).
    NotebookKindError
        The notebook does not accept the dataset's kind.

    All of these are raised before anything is executed or recorded.

    DatasetNotFoundError
        ``dataset`` is not in the catalog.
    NotebookExecutionError
        A cell raised, the kernel died or a cell timed out.

    Examples
    --------
    A small notebook (a cell tagged ``parameters``, then one that writes and declares a
    product) run for a simulated scan, in a temporary catalog:

    >>> import pathlib, tempfile
    >>> import nbformat
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> import spotkit
    >>> from spotkit.sim import simulate_tomo_scan
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(folder / "scan.h5", shape=(31, 2, 32), seed=1)
    >>> cat = spotkit.open_catalog(folder / "catalog.db")
    >>> ds = cat.ingest(folder / "scan.h5")
    >>> params = new_code_cell('dataset_id = ""\\nlabel = "x"',
    ...                        metadata={"tags": ["parameters"]})
    >>> body = new_code_cell('from spotkit.runs import declare_output\\n'
    ...                      'with open("label.txt", "w") as f:\\n'
    ...                      '    f.write(label)\\n'
    ...                      'declare_output("label.txt", kind="test/label")')
    >>> nbformat.write(new_notebook(cells=[params, body]), folder / "label.ipynb")
    >>> result = spotkit.run_notebook(folder / "label.ipynb", ds, parameters={"label": "hi"})
    >>> [out.kind for out in result.outputs]
    ['test/label']
    >>> pathlib.Path(result.outputs[0].path).read_text()
    'hi'
    >>> cat.get_run(result.run_id).state, result.output_notebook.exists()
    ('completed', True)

    A shipped pipeline notebook is named without a path (``"tomo_quicklook"``); it
    reconstructs slices, which takes longer than an example should, so it is not run here:

    >>> result = spotkit.run_notebook("tomo_quicklook", ds,
    ...                               parameters={"n_slices": 3})  # doctest: +SKIP
    """
    papermill = import_papermill()  # no IRI grammar compiled, no chdir in its file I/O
    from papermill.exceptions import PapermillExecutionError

    from spotkit.catalog import Catalog, open_catalog

    notebook = resolve_notebook(notebook)
    read_notebook(notebook)  # a file that is not a notebook: InputFileError, nothing recorded
    if catalog is None and getattr(dataset, "_catalog", None) is not None:
        catalog = dataset._catalog  # a Dataset object: the catalog it came from
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    ds = cat[dataset if isinstance(dataset, str) else dataset.id]

    parameters = dict(parameters or {})
    declared = check_parameters(notebook, parameters)
    check_kind(notebook, ds)

    kernel = kernel_name or ensure_kernel()
    # a run made here is its own job (started, finished); a queued run is a batch job's,
    # whose start and end its Job records with the scheduler's times
    own = run_id is None
    if run_id is None:
        run_id = cat.start_run(
            dataset_id=ds.id,
            notebook=str(notebook),
            notebook_sha256=_sha256(notebook),
            parameters=parameters,
            target=target,
            versions=_versions(),
            context=context,
        )
    else:
        queued = cat.get_run(run_id)
        if queued.dataset_id != ds.id or Path(queued.notebook).resolve() != notebook:
            raise CatalogError(
                f"run {run_id} is for {Path(queued.notebook).name} on {queued.dataset_id}, "
                f"not {notebook.name} on {ds.id}"
            )
        cat.begin_run(run_id, notebook_sha256=_sha256(notebook), versions=_versions())
    out_dir = Path(output_dir) if output_dir else cat.home / "runs" / run_id
    out_dir = out_dir.expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    out_nb = out_dir / f"{notebook.stem}-{run_id}.ipynb"
    injected = {"dataset_id": ds.id, "catalog_path": cat.url, "output_dir": str(out_dir),
                "run_id": run_id}
    injected = {k: v for k, v in injected.items() if k in declared}
    injected.update(parameters)

    logger.info("run %s: %s for dataset %s on kernel %s", run_id, notebook.name, ds.id, kernel)
    telemetry = RunEvents(cat, ds, run_id, target if own else cat.get_run(run_id).target,
                          notebook.name, own=own)
    telemetry.started()
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook), str(out_nb), parameters=injected, kernel_name=kernel, language="python",
            # the kernel starts in out_dir (nbclient's resources.metadata.path); papermill's
            # cwd= would chdir the whole process, a race between concurrent runs' threads
            resources={"metadata": {"path": str(out_dir)}},
            progress_bar=False, log_output=log_output,
            start_timeout=start_timeout, execution_timeout=cell_timeout,
            **kernel_engine_options(kernel),
        )
    except PapermillExecutionError as exc:
        cell = _failed_cell_index(out_nb)
        _fail(cat, run_id, out_nb, cell, exc.ename, exc.evalue)
        telemetry.ended("failed", error=f"{exc.ename}: {exc.evalue}")
        raise NotebookExecutionError(
            notebook=notebook, run_id=run_id, dataset_id=ds.id, cell_index=cell,
            ename=exc.ename, evalue=exc.evalue, output_notebook=out_nb,
        ) from None
    except Exception as exc:  # kernel died, cell timeout, kernel failed to start
        ename, evalue = type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc) else ""
        _fail(cat, run_id, out_nb, None, ename, evalue)
        telemetry.ended("failed", error=f"{ename}: {evalue}")
        raise NotebookExecutionError(
            notebook=notebook, run_id=run_id, dataset_id=ds.id, cell_index=None,
            ename=ename, evalue=evalue, output_notebook=out_nb,
        ) from exc
    seconds = time.perf_counter() - t0

    import nbformat

    declared_outputs = read_declared_outputs(nbformat.read(out_nb, as_version=4))
    try:
        derived = cat.finish_run(run_id, state="completed", output_notebook=str(out_nb),
                                 outputs=declared_outputs)
    except CatalogError as exc:
        _fail(cat, run_id, out_nb, None, type(exc).__name__, str(exc))
        telemetry.ended("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    telemetry.ended("ok", derived)
    logger.info("run %s completed in %.1f s with %d output(s)", run_id, seconds, len(derived))
    return RunResult(run_id=run_id, dataset_id=ds.id, notebook=notebook, output_notebook=out_nb,
                     output_dir=out_dir, outputs=tuple(derived), seconds=seconds)


_PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def _failed_cell_index(out_nb: Path) -> int | None:
    """Index, in the *input* notebook, of the cell whose output is an error.

    papermill's own index counts the cells it inserted (the injected parameters, the error
    banners); the person fixing the notebook needs the index in the file they edit.
    """
    import nbformat

    try:
        nb = nbformat.read(out_nb, as_version=4)
    except (OSError, ValueError):
        return None
    index = 0
    for cell in nb.cells:
        if _PAPERMILL_TAGS & set(cell.metadata.get("tags", [])):
            continue
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
        index += 1
    return None


def _fail(cat, run_id, out_nb, cell_index, ename, evalue) -> None:
    logger.error("run %s failed in cell %s: %s: %s", run_id, cell_index, ename, evalue)
    cat.finish_run(run_id, state="failed",
                   output_notebook=str(out_nb) if Path(out_nb).exists() else None,
                   error_cell=cell_index, error_name=ename, error_message=evalue)
