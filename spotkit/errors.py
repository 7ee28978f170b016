"""The spotkit exception hierarchy.

Every error spotkit raises on purpose derives from :class:`SpotkitError`. Each subclass
carries the facts it is about (the file, the field, the dataset, the cell) as attributes,
and its message says what was wrong and what to do about it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CatalogError",
    "DatasetNotFoundError",
    "InputFileError",
    "MemoryBudgetError",
    "NotebookExecutionError",
    "NotebookParameterError",
    "PipelineValidationError",
    "SpotkitError",
]


class SpotkitError(Exception):
    """Root of every error that spotkit raises on purpose."""


class InputFileError(SpotkitError, ValueError):
    """A raw or derived file cannot be used: not readable, truncated, or missing a field.

    Parameters
    ----------
    path : path-like
        The file at fault.
    problem : str
        What is wrong with it (one sentence).
    field : str, optional
        The HDF5 path or metadata field at fault, when there is one.
    hint : str, optional
        What the user can do about it.
    """

    def __init__(self, path, problem: str, *, field: str | None = None, hint: str | None = None):
        self.path = Path(path)
        self.field = field
        self.problem = problem
        self.hint = hint
        where = f"{self.path}" + (f" (field {field!r})" if field else "")
        msg = f"{where}: {problem}"
        if hint:
            msg += f" {hint}"
        super().__init__(msg)


class CatalogError(SpotkitError):
    """The catalog database cannot be opened, read or written."""


class DatasetNotFoundError(CatalogError, LookupError):
    """No dataset with the given id is in the catalog."""

    def __init__(self, dataset_id: str, catalog: str | None = None):
        self.dataset_id = dataset_id
        self.catalog = catalog
        where = f" in catalog {catalog}" if catalog else ""
        super().__init__(
            f"no dataset with id {dataset_id!r}{where}; "
            "list the ids with `spotkit catalog search` or `open_catalog().search()`."
        )

    def __str__(self) -> str:  # LookupError would otherwise quote the message
        return self.args[0]


class NotebookParameterError(SpotkitError, ValueError):
    """Parameters passed to a notebook run that the notebook does not declare, or bad values."""

    def __init__(self, notebook, unknown, allowed):
        self.notebook = Path(notebook)
        self.unknown = sorted(unknown)
        self.allowed = sorted(allowed)
        super().__init__(
            f"notebook {self.notebook} does not declare parameter(s) "
            f"{', '.join(map(repr, self.unknown))} in its 'parameters' cell; "
            f"it declares {', '.join(map(repr, self.allowed)) or 'none'}. "
            "Fix the name, or add the parameter to the notebook's parameters cell."
        )


class NotebookExecutionError(SpotkitError):
    """A cell of a notebook run raised; the partial notebook was kept and the run recorded.

    Attributes
    ----------
    run_id : str
        The catalog run that recorded the failure.
    cell_index : int or None
        Index (0-based) of the failing cell in the input notebook, the file a person edits.
    ename, evalue : str
        Exception name and message raised by the cell.
    output_notebook : pathlib.Path
        The executed (partial) notebook, kept for inspection.
    """

    def __init__(self, *, notebook, run_id, dataset_id, cell_index, ename, evalue, output_notebook):
        self.notebook = Path(notebook)
        self.run_id = run_id
        self.dataset_id = dataset_id
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.output_notebook = Path(output_notebook)
        cell = f"cell {cell_index}" if cell_index is not None else "a cell"
        super().__init__(
            f"notebook {self.notebook.name} failed in {cell} for dataset {dataset_id}: "
            f"{ename}: {evalue}. The partial notebook is at {self.output_notebook}; "
            f"run {run_id} records the failure (`spotkit catalog show {dataset_id}`)."
        )


class PipelineValidationError(SpotkitError, ValueError):
    """A pipeline description has problems; all of them are in :attr:`problems`.

    Attributes
    ----------
    problems : list of Problem
        Every problem found, each naming the step and the field at fault.
    """

    def __init__(self, problems, source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s){where}:\n{lines}")


class MemoryBudgetError(SpotkitError, ValueError):
    """The memory budget is too small to process even one slice."""

    def __init__(self, budget: int, needed: int):
        self.budget = budget
        self.needed = needed
        super().__init__(
            f"max_memory={budget / 2**20:.0f} MiB is too small: one slice needs about "
            f"{needed / 2**20:.0f} MiB; raise max_memory, bin the data, or use fewer workers"
        )
