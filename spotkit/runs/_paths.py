"""Locate the pipeline notebooks shipped with spotkit."""

from __future__ import annotations

from pathlib import Path

__all__ = ["pipeline_notebook"]

_PACKAGE = Path(__file__).resolve().parents[1]


def _notebook_dirs() -> list[Path]:
    # A wheel ships them inside the package; an editable install finds the repository's copy.
    return [_PACKAGE / "_notebooks", _PACKAGE.parent / "notebooks"]


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
    fname = name if name.endswith(".ipynb") else f"{name}.ipynb"
    available: set[str] = set()
    for folder in _notebook_dirs():
        candidate = folder / fname
        if candidate.is_file():
            return candidate
        if folder.is_dir():
            available.update(p.stem for p in folder.glob("*.ipynb"))
    raise FileNotFoundError(
        f"no pipeline notebook named {name!r}; available: {sorted(available) or 'none found'}"
    )
