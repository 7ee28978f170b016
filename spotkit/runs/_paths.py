"""Find a notebook by name or path, and read what it declares (kinds, parameter checks).

One resolver for every entry point: ``spotkit run NAME``, :func:`spotkit.run_notebook` and
:func:`spotkit.compute.submit` all take a shipped notebook's name (``"tomo_quicklook"``), the
name with ``.ipynb``, or a path to any notebook file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spotkit._startup import defer_iri_grammar
from spotkit.errors import InputFileError

__all__ = ["notebook_spec", "pipeline_notebook", "read_notebook", "resolve_notebook",
           "shipped_notebooks"]

_PACKAGE = Path(__file__).resolve().parents[1]


def _notebook_dirs() -> list[Path]:
    # A wheel ships them inside the package; an editable install finds the repository's copy.
    return [_PACKAGE / "_notebooks", _PACKAGE.parent / "notebooks"]


def shipped_notebooks() -> dict[str, Path]:
    """The pipeline notebooks shipped with spotkit, ``{name: path}`` sorted by name."""
    found: dict[str, Path] = {}
    for folder in _notebook_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.ipynb")):
                found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def pipeline_notebook(name: str) -> Path:
    """Return the path of a pipeline notebook shipped with spotkit.

    Parameters
    ----------
    name : str
        File name with or without ``.ipynb``, e.g. ``"tomo_quicklook"``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        If no such notebook is shipped; the message lists the available ones.
    """
    stem = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
    shipped = shipped_notebooks()
    if stem in shipped:
        return shipped[stem]
    raise FileNotFoundError(
        f"no pipeline notebook named {name!r}; the shipped ones are "
        f"{', '.join(shipped) or 'none (is spotkit installed completely?)'}. "
        "Give one of these names or the path of a .ipynb file."
    )


def resolve_notebook(notebook: str | os.PathLike) -> Path:
    """The notebook file a user means: an existing path, or a shipped notebook's name.

    An existing file wins; otherwise a bare name (``"tomo_quicklook"`` or
    ``"tomo_quicklook.ipynb"``, no folder) is looked up among the shipped notebooks.

    Parameters
    ----------
    notebook : str or path-like
        A path to a notebook file, or the name of a shipped pipeline notebook.

    Returns
    -------
    pathlib.Path
        The absolute path of an existing file.

    Raises
    ------
    FileNotFoundError
        Neither a file nor a shipped notebook; the message lists the shipped ones.

    Examples
    --------
    >>> resolve_notebook("tomo_quicklook").name
    'tomo_quicklook.ipynb'
    """
    text = os.fspath(notebook)
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a notebook file")
    if len(path.parts) == 1:
        return pipeline_notebook(text)
    shipped = ", ".join(shipped_notebooks())
    raise FileNotFoundError(
        f"notebook {path} does not exist; give an existing .ipynb file or the name of a "
        f"shipped pipeline notebook ({shipped})"
    )


def read_notebook(path: str | os.PathLike):
    """Read a notebook file, or say plainly why it is not one.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    nbformat.NotebookNode

    Raises
    ------
    InputFileError
        The file is not JSON, not a notebook, or cannot be read.
    """
    defer_iri_grammar()
    import nbformat
    from nbformat.reader import NotJSONError

    path = Path(path)
    hint = "Give a .ipynb notebook saved by Jupyter, or a shipped notebook's name."
    try:
        nb = nbformat.read(path, as_version=4)
    except NotJSONError:
        raise InputFileError(path, "is not a Jupyter notebook (not JSON).", hint=hint) from None
    except UnicodeDecodeError:
        raise InputFileError(path, "is not a Jupyter notebook (not UTF-8 text).",
                             hint=hint) from None
    except OSError as exc:
        raise InputFileError(path, f"cannot be read: {exc.strerror or exc}.") from None
    except Exception as exc:  # nbformat raises several kinds for JSON that is not a notebook
        raise InputFileError(path, f"is not a valid Jupyter notebook ({type(exc).__name__}: "
                             f"{exc}).", hint=hint) from None
    if "cells" not in nb:
        raise InputFileError(path, "is not a Jupyter notebook (JSON without cells).",
                             hint=hint)
    return nb


def notebook_spec(nb) -> dict[str, Any]:
    """What a notebook declares to spotkit in its metadata (``metadata.spotkit``).

    Parameters
    ----------
    nb : nbformat.NotebookNode

    Returns
    -------
    dict
        ``{"kinds": [...] or None, "parameters": {name: {"min", "max", "choices", "type"}}}``;
        ``kinds`` None means any dataset kind.
    """
    meta = nb.get("metadata", {}).get("spotkit", {}) or {}
    kinds = meta.get("kinds")
    if isinstance(kinds, str):
        kinds = [kinds]
    return {"kinds": list(kinds) if kinds else None,
            "parameters": dict(meta.get("parameters") or {})}
