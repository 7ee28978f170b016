"""Errors of notebook runs refused up front: bad parameters, a dataset of the wrong kind.

Both derive from :class:`spotkit.errors.SpotkitError` (and :class:`ValueError`) and carry the
facts as attributes, so the CLI and widgets can present them as they like.
"""

from __future__ import annotations

from pathlib import Path

from spotkit.errors import NotebookParameterError, SpotkitError

__all__ = ["NotebookKindError", "NotebookParameterValueError", "ParameterProblem"]

#: Parameters spotkit injects itself (as ``spotkit.runs._execute.RESERVED_PARAMETERS``).
_SET_BY_SPOTKIT = ("dataset_id", "catalog_path", "output_dir", "run_id")


class ParameterProblem(tuple):
    """One bad parameter: ``(name, message)``."""

    __slots__ = ()

    def __new__(cls, name: str, message: str):
        return super().__new__(cls, (name, message))

    @property
    def name(self) -> str:
        return self[0]

    @property
    def message(self) -> str:
        return self[1]

    def __str__(self) -> str:
        return f"{self.name!r}: {self.message}"


class NotebookParameterValueError(NotebookParameterError):
    """Parameters a notebook does not declare, or values it does not accept; all at once.

    Attributes
    ----------
    notebook : pathlib.Path
    problems : list of ParameterProblem
        Every bad parameter with what is wrong with it.
    unknown : list of str
        The names the notebook does not declare.
    allowed : list of str
        The names it declares that a caller may set.
    """

    def __init__(self, notebook, problems, declared):
        self.notebook = Path(notebook)
        self.problems = list(problems)
        self.unknown = sorted(p.name for p in self.problems if "not declared" in p.message)
        self.allowed = sorted(n for n in declared if n not in _SET_BY_SPOTKIT)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        ValueError.__init__(
            self,
            f"notebook {self.notebook.name} refuses {len(self.problems)} parameter(s); "
            f"nothing was run or recorded:\n{lines}\n"
            f"Its parameters: {', '.join(map(repr, self.allowed)) or 'none'} "
            "(its parameters cell and first markdown cell say what each one accepts).",
        )


class NotebookKindError(SpotkitError, ValueError):
    """The dataset is of a kind the notebook does not accept (``metadata.spotkit.kinds``).

    Attributes
    ----------
    notebook : pathlib.Path
    dataset_id, kind : str
        The dataset and its kind.
    accepted : list of str
        The kinds the notebook accepts.
    alternatives : list of str
        Shipped notebooks that accept this kind.
    """

    def __init__(self, *, notebook, dataset_id: str, kind: str, accepted, alternatives):
        self.notebook = Path(notebook)
        self.dataset_id = dataset_id
        self.kind = kind
        self.accepted = list(accepted)
        self.alternatives = list(alternatives)
        other = (f"Notebooks that accept {kind}: {', '.join(self.alternatives)}."
                 if self.alternatives else f"No shipped notebook accepts {kind}.")
        super().__init__(
            f"notebook {self.notebook.name} accepts datasets of kind "
            f"{', '.join(self.accepted)}, but dataset {dataset_id} is {kind}; nothing was run "
            f"or recorded. {other}"
        )
