"""Where spotkit keeps its state: the spotkit home directory and the catalog database.

The home directory is, in order of precedence, the ``home`` argument, the ``SPOTKIT_HOME``
environment variable, or ``~/.spotkit``. The catalog is ``<home>/catalog.db`` unless
``SPOTKIT_CATALOG`` names another file (or, later, a SQLAlchemy URL).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["catalog_path", "spotkit_home"]


def spotkit_home(home: str | os.PathLike | None = None, *, create: bool = True) -> Path:
    """Return the spotkit home directory, creating it if needed.

    Parameters
    ----------
    home : path-like, optional
        Explicit directory; defaults to ``$SPOTKIT_HOME`` or ``~/.spotkit``.
    create : bool, optional
        Create the directory if it does not exist (default True).

    Returns
    -------
    pathlib.Path
    """
    path = Path(home or os.environ.get("SPOTKIT_HOME") or Path.home() / ".spotkit")
    path = path.expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def catalog_path(home: str | os.PathLike | None = None) -> Path:
    """Return the path of the catalog database file.

    Nothing is created: :func:`spotkit.catalog.open_catalog` makes the file and its folder
    when it creates a catalog.

    Parameters
    ----------
    home : path-like, optional
        Explicit spotkit home; see :func:`spotkit_home`.

    Returns
    -------
    pathlib.Path
    """
    env = os.environ.get("SPOTKIT_CATALOG")
    if env and home is None:
        return Path(env).expanduser()
    return spotkit_home(home, create=False) / "catalog.db"
