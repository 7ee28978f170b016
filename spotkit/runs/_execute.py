"""Execute one notebook for one dataset with papermill, and record the run in the catalog."""

from __future__ import annotations

import ast
import difflib
import fnmatch
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from spotkit.errors import (
    CatalogError,
    InputFileError,
    NotebookExecutionError,
    NotebookParameterError,
)
from spotkit.runs._errors import (
    NotebookKindError,
    NotebookParameterValueError,
    ParameterProblem,
)
from spotkit.runs._kernel import ensure_kernel, kernel_engine_options
from spotkit.runs._outputs import read_declared_outputs
from spotkit.runs._paths import notebook_spec, read_notebook, resolve_notebook, shipped_notebooks
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

#: Parameters spotkit injects itself; a notebook declares the ones it uses (``run_id``: the
#: catalog run executing it, for catalog writes made on the run's behalf, e.g. frame marks).
#: Parameters spotkit injects itself into every run (a caller may not set them)
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
    """Return the parameters a notebook declares, with the checks it declares for them.

    The names, defaults and help come from the cell tagged ``parameters`` (as papermill reads
    it); the accepted values from the default's type (or a type annotation) and from the
    notebook's metadata ``spotkit.parameters`` (see :func:`check_parameters`).

    Parameters
    ----------
    notebook : path-like or str
        The notebook file, or the name of a shipped pipeline notebook.

    Returns
    -------
    dict
        ``{name: {"default": ..., "inferred_type_name": ..., "help": ..., "type": ...,
        "min": ..., "max": ..., "exclusive_min": ..., "exclusive_max": ..., "choices": ...}}``;
        ``type`` is the list of accepted type names (None: any), the other checks are
        present when declared.

    Raises
    ------
    InputFileError
        The file is not a Jupyter notebook.
    """
    import tempfile

    import nbformat
    import papermill

    path = resolve_notebook(notebook)
    nb = read_notebook(path)
    # papermill needs a kernel name and language to pick its parameter parser; a notebook
    # written without them (by a script, say) is a Python notebook for spotkit.
    spec = nb.metadata.setdefault("kernelspec", {})
    spec.setdefault("name", "python3")
    spec.setdefault("display_name", "Python 3")
    spec.setdefault("language", "python")
    nb.metadata.setdefault("language_info", {}).setdefault("name", "python")
    with tempfile.TemporaryDirectory(prefix="spotkit-inspect-") as tmp:
        tmp_path = Path(tmp) / "notebook.ipynb"
        nbformat.write(nb, tmp_path)
        declared = {k: dict(v) for k, v in papermill.inspect_notebook(str(tmp_path)).items()}
    checks = notebook_spec(nb)["parameters"]
    for name, info in declared.items():
        extra = dict(checks.get(name) or {})
        info["type"] = _accepted_types(info, extra.pop("type", None))
        info.update({k: v for k, v in extra.items() if k in _CHECKS})
    return declared


#: Checks a notebook may declare for a parameter besides ``type``.
_CHECKS = ("min", "max", "exclusive_min", "exclusive_max", "choices")

#: Type names a notebook may give in ``metadata.spotkit.parameters.NAME.type``.
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "number": (int, float), "str": (str,),
    "bool": (bool,), "list": (list, tuple), "dict": (dict,), "none": (type(None),),
}
_ALIASES = {"integer": "int", "string": "str", "null": "none", "nonetype": "none",
            "boolean": "bool", "tuple": "list", "optional": "none"}


def _type_name(text: str) -> str | None:
    name = text.strip().lower()
    name = _ALIASES.get(name, name)
    return name if name in _TYPES else None


def _accepted_types(info: dict[str, Any], declared_type) -> list[str] | None:
    """Accepted type names of a parameter: declared in metadata, else its annotation, else
    the type of its default; None when nothing says (e.g. a default of None)."""
    if declared_type is not None:
        names = [declared_type] if isinstance(declared_type, str) else list(declared_type)
        return sorted({_type_name(str(n)) or str(n) for n in names})
    annotation = str(info.get("inferred_type_name") or "None")
    if annotation != "None":
        parts = annotation.replace("Optional[", "None|").replace("Union[", "").strip("]")
        found = {_type_name(p.strip(" []")) for p in parts.replace(",", "|").split("|")}
        if None not in found:
            return sorted(n for n in found if n is not None)
        return None
    try:
        default = ast.literal_eval(str(info.get("default")))
    except (ValueError, SyntaxError):
        return None
    if default is None:
        return None
    for name in ("bool", "int", "float", "str", "list", "dict"):
        if isinstance(default, _TYPES[name]):
            return ["float"] if name == "float" else [name]
    return None


def _type_ok(value, names: list[str]) -> bool:
    for name in names:
        types = _TYPES.get(name)
        if types is None:
            return True  # a type spotkit does not know: the notebook checks it
        if isinstance(value, bool) and name in ("int", "float", "number"):
            continue
        if isinstance(value, types):
            return True
    return False


def _value_problems(name: str, value, info: dict[str, Any]) -> list[str]:
    import numpy as np

    if isinstance(value, np.generic):  # a numpy scalar is its Python value to the notebook
        value = value.item()
    problems = []
    names = info.get("type")
    if names and not _type_ok(value, names):
        what = " or ".join("None" if n == "none" else n for n in names)
        problems.append(f"{value!r} is a {type(value).__name__}, the notebook expects "
                        f"{what} (default {info.get('default')})")
        return problems
    choices = info.get("choices")
    if choices is not None and value not in choices:
        problems.append(f"{value!r} is not one of the choices {choices!r}")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    low, high = info.get("min"), info.get("max")
    if is_number and low is not None and value < low:
        problems.append(f"{value!r} is below the minimum {low!r}")
    if is_number and high is not None and value > high:
        problems.append(f"{value!r} is above the maximum {high!r}")
    low, high = info.get("exclusive_min"), info.get("exclusive_max")
    if is_number and low is not None and value <= low:
        problems.append(f"{value!r} must be above {low!r}")
    if is_number and high is not None and value >= high:
        problems.append(f"{value!r} must be below {high!r}")
    return problems


def check_parameters(notebook: str | os.PathLike, parameters: dict[str, Any] | None
                     ) -> dict[str, Any]:
    """Check parameters against what a notebook declares, before anything runs.

    A notebook declares its parameters in the cell tagged ``parameters``; the type of each
    default (``n_slices = 3``: an int; ``0.5``: a number; ``"vo"``: a string; ``True``: a
    bool) or a type annotation (``center: Optional[float] = None``; papermill does not read
    ``float | None`` and drops such a parameter) gives the accepted type.
    Its metadata may add checks, keyed by parameter name::

        "metadata": {"spotkit": {"kinds": ["tomo/raw"], "parameters": {
            "n_slices": {"min": 1, "max": 64},
            "center": {"type": ["float", "none"], "min": 0},
            "center_method": {"choices": ["vo", "pc", "sinusoid"]}}}}

    ``type`` (a name or list of ``int``, ``float``/``number``, ``str``, ``bool``, ``list``,
    ``dict``, ``none``) overrides the default's type; ``min``/``max`` bound numbers
    (inclusive), ``exclusive_min``/``exclusive_max`` exclude the bound itself; ``choices``
    lists the allowed values. An int is accepted where a float is expected.

    Parameters
    ----------
    notebook : path-like or str
        The notebook file, or the name of a shipped pipeline notebook.
    parameters : dict or None
        Parameters to inject; every name must be declared, none may be reserved.

    Returns
    -------
    dict
        The notebook's declared parameters (see :func:`notebook_parameters`).

    Raises
    ------
    NotebookParameterError
        The notebook does not declare ``dataset_id``. Its subclass
        :class:`~spotkit.runs.NotebookParameterValueError` lists every bad parameter at once:
        a name not declared (with the closest declared one), one spotkit sets itself, a
        value of the wrong type, outside its range or not among its choices.
    InputFileError
        The file is not a Jupyter notebook.
    """
    parameters = dict(parameters or {})
    declared = notebook_parameters(notebook)
    path = resolve_notebook(notebook)
    if "dataset_id" not in declared:
        raise NotebookParameterError(path, ["dataset_id"], declared)
    problems = []
    for name, value in parameters.items():
        if name in RESERVED_PARAMETERS:
            problems.append(ParameterProblem(name, "is set by spotkit itself; do not pass it"))
        elif name not in declared:
            close = difflib.get_close_matches(name, [n for n in declared
                                                     if n not in RESERVED_PARAMETERS], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(ParameterProblem(name, f"is not declared by the notebook{hint}"))
        else:
            problems += [ParameterProblem(name, m)
                         for m in _value_problems(name, value, declared[name])]
    if problems:
        raise NotebookParameterValueError(path, problems, declared, RESERVED_PARAMETERS)
    return declared


def notebook_kinds(notebook: str | os.PathLike) -> list[str] | None:
    """The dataset kinds a notebook accepts (``metadata.spotkit.kinds``); None: any.

    Parameters
    ----------
    notebook : path-like or str
        The notebook file, or the name of a shipped pipeline notebook.

    Returns
    -------
    list of str or None
        Kinds such as ``"saxs/raw"``; shell-style patterns (``"saxs/*"``) are allowed.
    """
    return notebook_spec(read_notebook(resolve_notebook(notebook)))["kinds"]


def _kind_ok(kind: str, accepted: list[str] | None) -> bool:
    return accepted is None or any(fnmatch.fnmatchcase(kind, k) for k in accepted)


def check_kind(notebook: str | os.PathLike, dataset) -> None:
    """Refuse a dataset whose kind the notebook does not accept.

    Parameters
    ----------
    notebook : path-like or str
        The notebook file, or the name of a shipped pipeline notebook.
    dataset : Dataset
        The catalog dataset.

    Raises
    ------
    NotebookKindError
        Names the notebook, the dataset, its kind, the kinds accepted and the shipped
        notebooks that do accept this kind.
    """
    path = resolve_notebook(notebook)
    accepted = notebook_kinds(path)
    if _kind_ok(dataset.kind, accepted):
        return
    others = []
    for name, other in shipped_notebooks().items():
        try:
            if other.resolve() != path and _kind_ok(dataset.kind, notebook_kinds(other)):
                others.append(name)
        except InputFileError:  # pragma: no cover - a broken shipped notebook
            continue
    raise NotebookKindError(notebook=path, dataset_id=dataset.id, kind=dataset.kind,
                            accepted=accepted, alternatives=others)


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
    import papermill
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
            cwd=str(out_dir), progress_bar=False, log_output=log_output,
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
