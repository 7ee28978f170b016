"""Where spotkit keeps its state: the spotkit home directory and the catalog database.

The home directory is, in order of precedence, the ``home`` argument, the ``SPOTKIT_HOME``
environment variable, or ``~/.spotkit``. The catalog is ``<home>/catalog.db`` unless
``SPOTKIT_CATALOG`` names another file or a ``postgresql://`` URL (a catalog shared by a
facility: see :func:`catalog_location`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["catalog_location", "catalog_path", "is_catalog_url", "spotkit_home"]


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


def is_catalog_url(location: str | os.PathLike) -> bool:
    """Whether ``location`` is a database URL (``postgresql://...``) rather than a file."""
    return isinstance(location, str) and "://" in location


def catalog_location(home: str | os.PathLike | None = None) -> str | Path:
    """Where the catalog is: a ``postgresql://`` URL from ``SPOTKIT_CATALOG``, or a file.

    Parameters
    ----------
    home : path-like, optional
        Explicit spotkit home; see :func:`spotkit_home`.

    Returns
    -------
    str or pathlib.Path
        The URL as given, or the path :func:`catalog_path` gives.

    Examples
    --------
    >>> from unittest import mock
    >>> with mock.patch.dict("os.environ", SPOTKIT_CATALOG="postgresql://spot@db/spotkit"):
    ...     catalog_location()
    'postgresql://spot@db/spotkit'
    """
    env = os.environ.get("SPOTKIT_CATALOG")
    if env and home is None and is_catalog_url(env):
        return env
    return catalog_path(home)


def catalog_path(home: str | os.PathLike | None = None) -> Path:
    """Return the path of the catalog database file.

    A ``postgresql://`` URL in ``SPOTKIT_CATALOG`` is not a path: use
    :func:`catalog_location`, which returns it as given.

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
