"""spotkit: a Jupyter-native toolkit for X-ray light sources.

The most used entry points are re-exported here:

- :func:`open_catalog` — the dataset catalog with provenance;
- :func:`run_notebook` — run a pipeline notebook for one dataset through papermill;
- :func:`submit` — the same run as a batch job on a compute target (local, Slurm, NERSC);
- :class:`SpotkitError` — the root of every error spotkit raises.
"""

from spotkit._version import __version__
from spotkit.errors import SpotkitError

__all__ = ["SpotkitError", "__version__", "open_catalog", "run_notebook", "submit"]


def open_catalog(path=None):
    """Open the spotkit catalog (SQLite) at ``path`` or at the default location.

    Parameters
    ----------
    path : path-like, optional
        Catalog database file; defaults to :func:`spotkit.config.catalog_path`.

    Returns
    -------
    spotkit.catalog.Catalog
    """
    from spotkit.catalog import open_catalog as _open

    return _open(path)


def run_notebook(notebook, dataset, **kwargs):
    """Run a notebook for one dataset; see :func:`spotkit.runs.run_notebook`."""
    from spotkit.runs import run_notebook as _run

    return _run(notebook, dataset, **kwargs)


def submit(notebook, dataset, **kwargs):
    """Run a notebook for one dataset as a batch job; see :func:`spotkit.compute.submit`."""
    from spotkit.compute import submit as _submit

    return _submit(notebook, dataset, **kwargs)
