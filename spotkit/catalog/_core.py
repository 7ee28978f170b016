"""The catalog's core: its connection, transactions, and datasets read from rows.

Every part of :class:`~spotkit.catalog.Catalog` (ingest, derived datasets, runs, search,
frame marks, replicas) builds on this class.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from spotkit.catalog import _backend, _schema
from spotkit.catalog._common import (
    _CHUNK,
    _DS_COLUMNS,
    _dataset_id,
    _dumps,
    _flatten_text,
    _fts_document,
)
from spotkit.catalog._dataset import Dataset, Provenance
from spotkit.catalog._files import absolute
from spotkit.catalog._ids import IdFactory
from spotkit.catalog._records import FileRecord
from spotkit.catalog._replica_paths import best_path, replica_rows
from spotkit.catalog._time import from_epoch, now_epoch

if typing.TYPE_CHECKING:
    from spotkit.catalog._catalog import Catalog
from spotkit.errors import CatalogError, DatasetNotFoundError

__all__ = ["CatalogCore"]

logger = logging.getLogger("spotkit.catalog._catalog")


class CatalogCore:
    """Connection, transactions and row loading shared by every part of the catalog."""

    def __init__(self, path: str | os.PathLike, *, reader: Callable | None = None):
        #: the SQLite file (a Path), or the PostgreSQL URL (a str) as given
        self.path: Path | str = (
            _backend.normalise_url(path) if _backend.is_url(path) else absolute(path))
        self._reader = reader
        self._ids = IdFactory()
        self._lock = threading.RLock()
        self._conn: Any = _schema.connect(self.path)
        self._pg = _backend.is_postgres(self._conn)
        # free text: PostgreSQL's tsvector column (schema 7) or SQLite's FTS5 table, if
        # this SQLite has FTS5 (else LIKE)
        self._fts = self._pg or _schema.table_exists(self._conn, "datasets_fts")

    @property
    def url(self) -> str:
        """Where this catalog is, as :func:`open_catalog` takes it: the SQLite file's path,
        or the ``postgresql://`` URL (hand it to batch jobs and other processes). A password
        written in the URL is part of it: give passwords through ``PGPASSWORD`` or
        ``~/.pgpass`` instead, so the URL can be passed around and shown."""
        return str(self.path)

    @property
    def home(self) -> Path:
        """The folder where spotkit keeps this catalog's files (run outputs go in
        ``home / "runs"``): beside a SQLite file; for a PostgreSQL catalog, which has no
        folder, the spotkit home (``$SPOTKIT_HOME``, on each host: point it at shared
        storage where batch jobs must see the outputs)."""
        if isinstance(self.path, Path):
            return self.path.parent
        from spotkit.config import spotkit_home

        return spotkit_home(create=False)

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "postgresql" if self._pg else "sqlite"

    def _where_name(self) -> str:
        """The catalog's location for messages (a URL without its password)."""
        return _backend.display(self.path)

    # -- connection -------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection (further use raises CatalogError)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"<Catalog {self._where_name()} ({state})>"

    def _connection(self) -> Any:
        if self._conn is None:
            raise CatalogError(
                f"catalog {self._where_name()} is closed; open it again with open_catalog")
        if self._pg and self._conn.broken:
            # the server restarted or the network dropped: the call that found it out
            # failed with a CatalogError; this one connects again
            logger.warning("connection to catalog %s was lost; connecting again",
                           self._where_name())
            self._conn.close()
            self._conn = _schema.connect(self.path)
        return self._conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except _backend.database_errors() as exc:
                raise CatalogError(f"reading catalog {self._where_name()} failed: {exc}") from exc

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[Any]:
        """One write transaction: everything inside commits together or not at all."""
        with self._lock, _schema.write_transaction(
            self._connection(), self.path, action,
            when_locked="another process holds it. Try again, or check for a stuck process.",
        ) as conn:
            yield conn

    # -- mapping-like access ----------------------------------------------------------

    def __len__(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT count(*) FROM datasets").fetchone()[0]

    def __contains__(self, dataset_id: object) -> bool:
        with self._read() as conn:
            row = conn.execute(
                "SELECT 1 FROM datasets WHERE id = ?", (_dataset_id(dataset_id),)
            ).fetchone()
        return row is not None

    def __getitem__(self, dataset_id: str) -> Dataset:
        with self._read() as conn:
            found = self._load(conn, "WHERE d.id = ?", (_dataset_id(dataset_id),))
        if not found:
            raise DatasetNotFoundError(_dataset_id(dataset_id), self._where_name())
        return found[0]

    def __iter__(self) -> Iterator[str]:
        """Iterate over dataset ids in registration order."""
        last = 0
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    "SELECT seq, id FROM datasets WHERE seq > ? ORDER BY seq LIMIT 1000", (last,)
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield from (r[1] for r in rows)

    def get(self, dataset_id: str, default: Any = None) -> Dataset | Any:
        """Return the dataset with this id, or ``default`` if there is none."""
        try:
            return self[dataset_id]
        except DatasetNotFoundError:
            return default

    # -- loading rows -----------------------------------------------------------------

    def _load(self, conn: Any, clause: str, params: Iterable) -> list[Dataset]:
        rows = conn.execute(f"SELECT {_DS_COLUMNS} FROM datasets d {clause}",  # noqa: S608
                            tuple(params)).fetchall()
        return self._datasets_from_rows(conn, rows)

    def _datasets_from_rows(self, conn: Any, rows: list) -> list[Dataset]:
        files: dict[str, list[FileRecord]] = {r[0]: [] for r in rows}
        ids = list(files)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found = conn.execute(
                "SELECT dataset_id, path, role, size, sha256, format, key, id FROM files "  # noqa: S608
                f"WHERE dataset_id IN ({marks}) ORDER BY id",
                chunk,
            ).fetchall()
            replicas = replica_rows(conn, [r[7] for r in found])
            for ds_id, path, role, size, sha, fmt, key, file_id in found:
                if file_id in replicas:
                    # read from the best verified copy; the registered path stays its identity
                    here = replicas[file_id]
                    files[ds_id].append(FileRecord(
                        best_path(Path(path), here), role, size, sha, fmt, key,
                        original=Path(path), replicas=tuple(sorted(
                            here, key=lambda r: (not r.readable, -r.rank, r.location)))))
                else:
                    files[ds_id].append(FileRecord(Path(path), role, size, sha, fmt, key))
        return [
            Dataset(
                id=r[0],
                kind=r[1],
                beamline=r[2],
                sample=r[3],
                proposal=r[4],
                title=r[5],
                start_time=from_epoch(r[6]),
                end_time=from_epoch(r[7]),
                ingested_at=from_epoch(r[8]),
                status=r[9],
                run_id=r[10],
                metadata=json.loads(r[11]),
                files=tuple(files[r[0]]),
                _catalog=typing.cast("Catalog", self),  # the core is always a Catalog
            )
            for r in rows
        ]

    def _related(self, dataset_id: str, direction: str) -> list[Dataset]:
        mine, other = (
            ("child_id", "parent_id") if direction == "parents" else ("parent_id", "child_id")
        )
        with self._read() as conn:
            return self._load(
                conn,
                f"JOIN lineage l ON l.{other} = d.id WHERE l.{mine} = ? "
                f"ORDER BY {self._newest_first}",
                (dataset_id,),
            )

    def _provenance(self, dataset_id: str) -> Provenance:
        memo: dict[str, Provenance] = {}

        def build(ds: Dataset, path: tuple[str, ...]) -> Provenance:
            if ds.id in path:
                raise CatalogError(f"lineage of {dataset_id} has a cycle through {ds.id}")
            if ds.id not in memo:
                parents = tuple(build(p, (*path, ds.id)) for p in ds.parents)
                run = typing.cast("Catalog", self).get_run(ds.run_id) if ds.run_id else None
                memo[ds.id] = Provenance(dataset=ds, run=run, parents=parents)
            return memo[ds.id]

        return build(self[dataset_id], ())

    # -- writing datasets -------------------------------------------------------------

    @property
    def _newest_first(self) -> str:
        """ORDER BY for "newest first": datasets without a start time last, as SQLite
        sorts NULL lowest (PostgreSQL sorts it highest unless told)."""
        if self._pg:
            return "d.start_time DESC NULLS LAST, d.seq DESC"
        return "d.start_time DESC, d.seq DESC"

    def _write_fts(self, conn: Any, rows: list[tuple], *, update: bool = False) -> None:
        """Index datasets for free text: ``rows`` of (seq, title, sample, proposal,
        beamline, metadata); FTS5 on SQLite, a tsvector on PostgreSQL."""
        if not self._fts or not rows:
            return
        if self._pg:  # the tsvector on the dataset's own row (schema 7)
            conn.executemany("UPDATE datasets SET doc = to_tsvector('simple', ?) WHERE seq = ?",
                             [(_fts_document(r[1:5], r[5]), r[0]) for r in rows])
            return
        flat = [(*r[:5], " ".join(_flatten_text(r[5], []))) for r in rows]
        if update:
            conn.executemany("UPDATE datasets_fts SET meta = ? WHERE rowid = ?",
                             [(r[5], r[0]) for r in flat])
        else:
            conn.executemany(
                "INSERT INTO datasets_fts (rowid, title, sample, proposal, beamline, meta) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                flat,
            )

    def _new_id(self, conn: Any, table: str, prefix: str) -> str:
        # Inside a write transaction, so no other process can take the id between the
        # check and the insert.
        while True:
            new = self._ids.new(prefix)
            if conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (new,)).fetchone() is None:  # noqa: S608
                return new

    def _insert_dataset(
        self,
        conn: Any,
        *,
        kind: str,
        beamline: str | None,
        sample: str | None,
        proposal: str | None,
        title: str | None,
        start_time: float | None,
        end_time: float | None,
        status: str,
        metadata: dict,
        files: list[FileRecord],
        run_id: str | None = None,
        parents: Iterable[str] = (),
    ) -> str:
        ds_id = self._new_id(conn, "datasets", "ds-")
        cursor = conn.execute(
            "INSERT INTO datasets (id, kind, beamline, sample, proposal, title, start_time, "
            "end_time, ingested_at, status, run_id, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" + (" RETURNING seq" if self._pg else ""),
            (
                ds_id, kind, beamline, sample, proposal, title, start_time, end_time,
                now_epoch(), status, run_id, _dumps(metadata, "metadata"),
            ),
        )  # fmt: skip
        seq = cursor.fetchone()[0] if self._pg else cursor.lastrowid
        conn.executemany(
            "INSERT INTO files (dataset_id, path, role, size, sha256, format, key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(ds_id, str(f.path), f.role, f.size, f.sha256, f.format, f.key) for f in files],
        )
        self._write_fts(conn, [(seq, title, sample, proposal, beamline, metadata)])
        conn.executemany(
            "INSERT INTO lineage (child_id, parent_id, run_id) VALUES (?, ?, ?)",
            [(ds_id, parent, run_id) for parent in parents],
        )
        return ds_id
