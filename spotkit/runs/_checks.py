"""What a notebook declares and accepts, checked before anything runs or is recorded.

A notebook declares its parameters in the cell tagged ``parameters`` (read as papermill
reads it) and, in its metadata ``spotkit``, the dataset kinds it accepts and the checks on
its parameters (type, range, choices). :func:`check_parameters` and :func:`check_kind`
apply them and report every problem at once; :func:`spotkit.runs.run_notebook` calls both
first, and the flow's rules checker uses them without running anything.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import os
from pathlib import Path
from typing import Any

from spotkit.errors import InputFileError, NotebookParameterError
from spotkit.runs._errors import (
    NotebookKindError,
    NotebookParameterValueError,
    ParameterProblem,
)
from spotkit.runs._paths import notebook_spec, read_notebook, resolve_notebook, shipped_notebooks

__all__ = [
    "RESERVED_PARAMETERS",
    "check_kind",
    "check_parameters",
    "notebook_kinds",
    "notebook_parameters",
]

#: Parameters spotkit injects itself; a notebook declares the ones it uses (``run_id``: the
#: catalog run executing it, for catalog writes made on the run's behalf, e.g. frame marks).
#: Parameters spotkit injects itself into every run (a caller may not set them)
RESERVED_PARAMETERS = ("dataset_id", "catalog_path", "output_dir", "run_id")


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

    from spotkit.runs._papermill_io import import_papermill

    papermill = import_papermill()  # no IRI grammar compiled, no chdir in its file I/O
    import nbformat

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
