"""The catalog: datasets, their files, notebook runs and lineage in one SQLite file (the
embedded default) or one PostgreSQL database (a ``postgresql://`` URL, for a facility)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from spotkit.catalog._backend import connect_postgres, is_url, mask_url, normalise_url
from spotkit.catalog._common import (
    _check_name,
    _dataset_id,
    _dumps,
)
from spotkit.catalog._core import CatalogCore
from spotkit.catalog._dataset import Dataset
from spotkit.catalog._derived import DerivedMixin
from spotkit.catalog._files import absolute
from spotkit.catalog._find import SearchMixin
from spotkit.catalog._ingest import IngestMixin
from spotkit.catalog._live import LiveMixin
from spotkit.catalog._marks import MarksMixin
from spotkit.catalog._replicas import ReplicaMixin
from spotkit.catalog._runs import RunsMixin
from spotkit.errors import CatalogError, DatasetNotFoundError

__all__ = ["Catalog", "open_catalog"]


def _require_tables(url: str) -> None:
    """``create=False`` on PostgreSQL: the database must already hold a catalog."""
    from spotkit.catalog._schema import table_exists

    conn = connect_postgres(url)
    try:
        present = table_exists(conn, "schema_version")
    finally:
        conn.close()
    if not present:
        raise CatalogError(
            f"no catalog in database {mask_url(url)}; run `spotkit ingest FILE` (or "
            "open_catalog(url)) once to create its tables, or check the database name"
        )

logger = logging.getLogger(__name__)
class Catalog(IngestMixin, RunsMixin, DerivedMixin, MarksMixin, SearchMixin, ReplicaMixin,
              LiveMixin, CatalogCore):
    """The spotkit dataset catalog with provenance, stored in one SQLite file or in a
    PostgreSQL database.

    Several processes (a watcher and a notebook) may open the same file at once: the
    database is in WAL mode, every write is one ``BEGIN IMMEDIATE`` transaction, and a
    writer waits up to :data:`spotkit.catalog._schema.BUSY_TIMEOUT_MS` for another's lock.
    On PostgreSQL, processes on any number of hosts may: every write transaction takes the
    catalog's advisory write lock (see :mod:`spotkit.catalog._backend`). One ``Catalog``
    object may be shared by threads.

    Parameters
    ----------
    path : path-like or str
        The database file, created with the schema if it does not exist; or a
        ``postgresql://user@host:port/dbname`` URL of an existing database (its tables are
        created if it has none).
    reader : callable, optional
        ``reader(path) -> DatasetInfo`` used by :meth:`ingest`; defaults to
        :func:`spotkit.io.read_metadata`, looked up when ``ingest`` is called.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan_0001.h5", shape=(32, 2, 32), seed=0)
    >>> with open_catalog(work / "catalog.db") as cat:
    ...     raw = cat.ingest(work / "scan_0001.h5")
    ...     hits = cat.search(sample="simulated*", since="2024-01-01")
    >>> hits.total
    1
    """

    def set_status(self, dataset_id: str, status: str, *, reason: str | None = None) -> Dataset:
        """Change a dataset's status (e.g. to ``"quarantined"``), recording why.

        Parameters
        ----------
        dataset_id : str or Dataset
        status : str
        reason : str, optional
            Stored in the dataset's metadata as ``status_reason``.

        Returns
        -------
        Dataset
            The updated dataset.
        """
        _check_name(status, "status")
        ds_id = _dataset_id(dataset_id)
        with self._write(f"setting the status of {ds_id}") as conn:
            row = conn.execute(
                "SELECT metadata, seq, title, sample, proposal, beamline FROM datasets "
                "WHERE id = ?", (ds_id,)).fetchone()
            if row is None:
                raise DatasetNotFoundError(ds_id, self._where_name())
            metadata = json.loads(row[0])
            if reason is not None:
                metadata["status_reason"] = reason
            conn.execute(
                "UPDATE datasets SET status = ?, metadata = ? WHERE id = ?",
                (status, _dumps(metadata, "metadata"), ds_id),
            )
            self._write_fts(conn, [(*row[1:], metadata)], update=True)
        logger.info("dataset %s is now %s%s", ds_id, status, f" ({reason})" if reason else "")
        return self[ds_id]

    # -- export -----------------------------------------------------------------------

    def export_intake(
        self, path: str | os.PathLike, *, limit: int | None = None, **search_kwargs
    ) -> Path:
        """Write matching datasets as an intake v2 catalog (YAML).

        Every dataset becomes an entry named by its id, with its id, kind, beamline,
        sample, proposal, title, start time, status, files and parents in the entry's
        metadata. HDF5 data (raw scans at ``/exchange/data`` or ``/entry/data/data``,
        derived arrays at their key) read as dask arrays, zarr stores through
        ``intake.readers.readers.DaskZarr``, ``.npy`` through ``NumpyReader``; other files
        (PNG figures, notebooks) as file entries that read to bytes.

        Parameters
        ----------
        path : path-like
            The YAML file to write (its directory is created).
        limit : int or None, optional
            Export at most this many datasets, newest first (default: all matches).
        **search_kwargs
            Criteria as for :meth:`search` (``beamline=``, ``since=``, ...).

        Returns
        -------
        pathlib.Path
            The written file; open it with ``intake.from_yaml_file(path)``.
        """
        from spotkit.catalog._intake import write_intake_catalog

        search_kwargs.pop("offset", None)
        hits = self.search(limit=limit, **search_kwargs)
        return write_intake_catalog(
            absolute(path),
            hits,
            parents={ds.id: [p.id for p in ds.parents] for ds in hits},
            source=self._where_name(),
            query=hits.query,
        )


def open_catalog(
    path: str | os.PathLike | None = None,
    *,
    reader: Callable | None = None,
    create: bool = True,
) -> Catalog:
    """Open the spotkit catalog, creating it unless ``create=False``.

    Parameters
    ----------
    path : path-like or str, optional
        The SQLite file, or a ``postgresql://user@host:port/dbname`` URL (psycopg 3:
        ``pip install "spotkit[postgres]"``; give the password through ``PGPASSWORD`` or
        ``~/.pgpass`` rather than in the URL). Defaults to ``$SPOTKIT_CATALOG`` (a file or
        a URL), else ``<spotkit home>/catalog.db`` (:func:`spotkit.config.catalog_path`).
    reader : callable, optional
        Metadata reader used by :meth:`Catalog.ingest`; defaults to
        :func:`spotkit.io.read_metadata`.
    create : bool, optional
        If True (default) a missing database file, and the folders above it, are
        created (on PostgreSQL: the tables, in the existing database). If False a missing
        file (a database without the catalog's tables) is an error and nothing is
        created: use this where a mistyped path should be reported rather than start an
        empty catalog.

    Returns
    -------
    Catalog

    Raises
    ------
    CatalogError
        If ``create=False`` and there is no catalog at the path; if the URL is not a
        PostgreSQL one, its server cannot be reached, or psycopg is not installed.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> cat = open_catalog(work / "catalog.db")
    >>> len(cat)
    0
    >>> open_catalog(work / "typo.db", create=False)
    Traceback (most recent call last):
    spotkit.errors.CatalogError: no catalog at .../typo.db; ...
    >>> (work / "typo.db").exists()
    False
    """
    if path is None:
        from spotkit.config import catalog_location

        path = catalog_location()  # a URL in SPOTKIT_CATALOG stays a URL
    text = os.fspath(path)
    if is_url(text):
        if not create:
            _require_tables(normalise_url(text))
        return Catalog(text, reader=reader)
    if text.startswith(("http://", "https://")):
        raise CatalogError(
            f"{mask_url(text)} is a spotkit serve address, not a catalog database: open it "
            "read-only with spotkit.open_catalog(url, api_key=...) (spotkit.serve.open_remote)"
        )
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise CatalogError(
            f"catalog {mask_url(text)!r}: {scheme}:// is not a catalog database; give a "
            "SQLite file path or a postgresql://user@host:port/dbname URL"
        )
    where = absolute(text)
    if not create and not where.is_file():
        if where.is_dir():
            raise CatalogError(
                f"no catalog at {where}: that is a folder; give the catalog's .db file "
                "(e.g. catalog.db inside it)"
            )
        raise CatalogError(
            f"no catalog at {where}; run `spotkit demo` or `spotkit ingest FILE` first, "
            "or pass --catalog PATH (or set SPOTKIT_CATALOG) to an existing catalog"
        )
    return Catalog(path, reader=reader)
