"""Execute one notebook for one dataset with papermill, and record the run in the catalog."""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from spotkit.errors import CatalogError, NotebookExecutionError, NotebookParameterError
from spotkit.runs._kernel import ensure_kernel
from spotkit.runs._outputs import read_declared_outputs

logger = logging.getLogger(__name__)

__all__ = ["RESERVED_PARAMETERS", "RunResult", "check_parameters", "notebook_parameters",
           "run_notebook"]

#: Parameters spotkit injects itself; a notebook declares the ones it uses (``run_id``: the
#: catalog run executing it, for catalog writes made on the run's behalf, e.g. frame marks).
RESERVED_PARAMETERS = ("dataset_id", "catalog_path", "output_dir", "run_id")

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


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """Return the parameters a notebook declares in its ``parameters`` cell.

    Parameters
    ----------
    notebook : path-like
        The notebook file.

    Returns
    -------
    dict
        ``{name: {"default": ..., "inferred_type_name": ..., "help": ...}}`` as papermill
        infers them.
    """
    import tempfile

    import nbformat
    import papermill

    nb = nbformat.read(notebook, as_version=4)
    # papermill needs a kernel name and language to pick its parameter parser; a notebook
    # written without them (by a script, say) is a Python notebook for spotkit.
    spec = nb.metadata.setdefault("kernelspec", {})
    spec.setdefault("name", "python3")
    spec.setdefault("display_name", "Python 3")
    spec.setdefault("language", "python")
    nb.metadata.setdefault("language_info", {}).setdefault("name", "python")
    with tempfile.TemporaryDirectory(prefix="spotkit-inspect-") as tmp:
        path = Path(tmp) / "notebook.ipynb"
        nbformat.write(nb, path)
        return dict(papermill.inspect_notebook(str(path)))


def check_parameters(notebook: str | os.PathLike, parameters: dict[str, Any] | None
                     ) -> dict[str, Any]:
    """Check parameters against what a notebook declares, before anything runs.

    Parameters
    ----------
    notebook : path-like
        The notebook file.
    parameters : dict or None
        Parameters to inject; every name must be declared, none may be reserved.

    Returns
    -------
    dict
        The notebook's declared parameters (see :func:`notebook_parameters`).

    Raises
    ------
    NotebookParameterError
        The notebook does not declare ``dataset_id``, or a parameter is not declared.
    ValueError
        A parameter is one spotkit sets itself (``dataset_id``, ``catalog_path``,
        ``output_dir``, ``run_id``).
    """
    parameters = dict(parameters or {})
    declared = notebook_parameters(notebook)
    if "dataset_id" not in declared:
        raise NotebookParameterError(notebook, ["dataset_id"], declared)
    clash = sorted(set(parameters) & set(RESERVED_PARAMETERS))
    if clash:
        raise ValueError(f"parameters {clash} are set by spotkit itself; do not pass them")
    unknown = set(parameters) - set(declared)
    if unknown:
        raise NotebookParameterError(notebook, unknown, declared)
    return declared


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform(),
                "executable": sys.executable}
    for name in _VERSION_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    notebook : path-like
        Notebook with a cell tagged ``parameters`` that declares at least ``dataset_id``.
    dataset : str or Dataset
        Dataset id or catalog dataset.
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
    NotebookParameterError
        A parameter the notebook does not declare (before anything is executed or recorded).
    DatasetNotFoundError
        ``dataset`` is not in the catalog.
    NotebookExecutionError
        A cell raised, the kernel died or a cell timed out.

    Examples
    --------
    >>> import spotkit
    >>> result = spotkit.run_notebook("tomo_quicklook.ipynb", "ds-01abc",
    ...                               parameters={"n_slices": 3})  # doctest: +SKIP
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from spotkit.catalog import Catalog, open_catalog

    notebook = Path(notebook).expanduser().resolve()
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {notebook} does not exist")
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    ds = cat[dataset if isinstance(dataset, str) else dataset.id]

    parameters = dict(parameters or {})
    declared = check_parameters(notebook, parameters)

    kernel = kernel_name or ensure_kernel()
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
    out_dir = Path(output_dir) if output_dir else Path(cat.path).parent / "runs" / run_id
    out_dir = out_dir.expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    out_nb = out_dir / f"{notebook.stem}-{run_id}.ipynb"
    injected = {"dataset_id": ds.id, "catalog_path": str(cat.path), "output_dir": str(out_dir),
                "run_id": run_id}
    injected = {k: v for k, v in injected.items() if k in declared}
    injected.update(parameters)

    logger.info("run %s: %s for dataset %s on kernel %s", run_id, notebook.name, ds.id, kernel)
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook), str(out_nb), parameters=injected, kernel_name=kernel, language="python",
            cwd=str(out_dir), progress_bar=False, log_output=log_output,
            start_timeout=start_timeout, execution_timeout=cell_timeout,
        )
    except PapermillExecutionError as exc:
        cell = _failed_cell_index(out_nb)
        _fail(cat, run_id, out_nb, cell, exc.ename, exc.evalue)
        raise NotebookExecutionError(
            notebook=notebook, run_id=run_id, dataset_id=ds.id, cell_index=cell,
            ename=exc.ename, evalue=exc.evalue, output_notebook=out_nb,
        ) from None
    except Exception as exc:  # kernel died, cell timeout, kernel failed to start
        ename, evalue = type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc) else ""
        _fail(cat, run_id, out_nb, None, ename, evalue)
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
        raise
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
