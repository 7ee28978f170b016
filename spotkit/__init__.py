"""spotkit: a Jupyter-native toolkit for X-ray light sources.

The most used entry points are re-exported here:

- :func:`open_catalog` — the dataset catalog with provenance;
- :func:`run_notebook` — run a pipeline notebook for one dataset through papermill;
- :func:`submit` — the same run as a batch job on a compute target (local, Slurm, NERSC);
- :func:`portal` — one JupyterLab dashboard over the catalog, the flow, jobs and monitor;
- :class:`SpotkitError` — the root of every error spotkit raises.

The subpackages (``spotkit.tomo``, ``spotkit.widgets``, ...) are imported on first
attribute access, so ``import spotkit`` stays cheap and ``spotkit.widgets.JobMonitor``
works without importing ``spotkit.widgets`` first.

Examples
--------
>>> import spotkit
>>> spotkit.tomo.__name__          # imported on first use
'spotkit.tomo'
>>> isinstance(spotkit.__version__, str)
True
"""

from __future__ import annotations

import importlib

from spotkit._version import __version__
from spotkit.errors import SpotkitError

__all__ = ["SpotkitError", "__version__", "open_catalog", "portal", "run_notebook", "submit"]

#: Subpackages loaded on first attribute access (``spotkit.widgets.JobMonitor``).
SUBPACKAGES = frozenset({
    "backoff", "catalog", "change", "checksums", "cli", "compute", "config", "demo", "errors",
    "flows", "io", "kinds", "monitor", "pipelines", "runs", "scattering", "serve", "sim", "tomo",
    "widgets",
})


def __getattr__(name: str):
    """Import a subpackage the first time it is used as an attribute of :mod:`spotkit`."""
    if name in SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | SUBPACKAGES)


def open_catalog(path=None, **kwargs):
    """Open the spotkit catalog: a SQLite file, a PostgreSQL database or a ``spotkit serve``.

    Parameters
    ----------
    path : path-like or str, optional
        Catalog database file, a ``postgresql://`` URL, or the ``http(s)://.../api`` address
        of a ``spotkit serve`` (read-only, through :func:`spotkit.serve.open_remote`; needs
        ``pip install "spotkit[serve]"``). Defaults to ``$SPOTKIT_CATALOG`` or
        :func:`spotkit.config.catalog_path`.
    **kwargs
        Passed to :func:`spotkit.catalog.open_catalog` (e.g. ``create=False`` to refuse a
        catalog that does not exist yet), or to :func:`spotkit.serve.open_remote` for a
        server (``api_key=...``).

    Returns
    -------
    spotkit.catalog.Catalog or spotkit.serve.RemoteCatalog

    Examples
    --------
    >>> import tempfile, pathlib, spotkit
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     cat = spotkit.open_catalog(pathlib.Path(tmp) / "catalog.db")
    ...     n = len(cat.search())
    ...     cat.close()
    >>> n
    0
    """
    if isinstance(path, str) and path.startswith(("http://", "https://")):
        from spotkit.serve import open_remote

        return open_remote(path, **kwargs)
    from spotkit.catalog import open_catalog as _open

    return _open(path, **kwargs)


def run_notebook(notebook, dataset, **kwargs):
    """Run a notebook for one dataset; see :func:`spotkit.runs.run_notebook`."""
    from spotkit.runs import run_notebook as _run

    return _run(notebook, dataset, **kwargs)


def submit(notebook, dataset, **kwargs):
    """Run a notebook for one dataset as a batch job; see :func:`spotkit.compute.submit`."""
    from spotkit.compute import submit as _submit

    return _submit(notebook, dataset, **kwargs)


def portal(catalog=None, **kwargs):
    """Open the portal in JupyterLab; see :func:`spotkit.widgets.portal` (``catalog`` may
    also be a ``spotkit serve`` address, opened with :func:`open_catalog`)."""
    from spotkit.widgets import Portal

    if isinstance(catalog, str) and catalog.startswith(("http://", "https://")):
        return Portal(open_catalog(catalog), close_catalog=True, **kwargs)
    return Portal(catalog, **kwargs)


# The orchestration package registers the runners that the science packages' whole-scan
# calls delegate to (TomoPipeline.run, tomo.preview); importing it is cheap (lazy modules).
import spotkit.pipelines  # noqa: E402, F401
