"""The catalog: datasets, their files, notebook runs and lineage in one SQLite file."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import re
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from spotkit.catalog import _schema
from spotkit.catalog._dataset import Dataset, Provenance
from spotkit.catalog._files import absolute, checksum, guess_format
from spotkit.catalog._ids import IdFactory
from spotkit.catalog._records import FileRecord, Run
from spotkit.catalog._replicas import ReplicaMixin, best_path
from spotkit.catalog._search import SearchResult
from spotkit.catalog._time import from_epoch, now_epoch, to_epoch
from spotkit.errors import CatalogError, DatasetNotFoundError, InputFileError

__all__ = ["Catalog", "open_catalog"]

logger = logging.getLogger(__name__)

#: ``queued``: submitted to a batch scheduler, not started; ``running``: the notebook runs;
#: then one of the final states (``cancelled``: the job was cancelled before it finished).
RUN_STATES = ("queued", "running", "completed", "failed", "cancelled")
FINAL_RUN_STATES = ("completed", "failed", "cancelled")
_WILDCARD = re.compile(r"[*?\[]")
_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
_OUTPUT_KEYS = {"path", "kind", "role", "format", "key", "metadata", "title"}
_FILE_KEYS = {"path", "role", "format", "key"}

_DS_COLUMNS = (
    "d.id, d.kind, d.beamline, d.sample, d.proposal, d.title, d.start_time, d.end_time, "
    "d.ingested_at, d.status, d.run_id, d.metadata"
)
_RUN_COLUMNS = (
    "id, dataset_id, notebook, notebook_sha256, parameters, target, state, started_at, "
    "ended_at, output_notebook, error_cell, error_name, error_message, versions, job_id, "
    "context"
)
_CHUNK = 900  # ids per "IN (...)" query, well under SQLite's variable limit

# SQL text is assembled only from the constants above, fixed column names and "?"
# placeholders (hence the `noqa: S608`); every value goes in as a bound parameter.


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, _dt.datetime | _dt.date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value or {}, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must be JSON-serialisable (str, numbers, lists, dicts): {exc}"
        ) from None


def _flatten_text(value: Any, out: list[str]) -> list[str]:
    """Collect the keys and scalar values of nested metadata as words for text search."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.append(str(key))
            _flatten_text(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _flatten_text(item, out)
    elif value is not None and not isinstance(value, bool):
        out.append(str(value))
    return out


def _fts_query(text: str) -> str:
    """Turn user text into an FTS5 query: every word must occur; ``word*`` is a prefix."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*")
        word = word.rstrip("*").replace('"', '""')
        if any(ch.isalnum() for ch in word):
            terms.append(f'"{word}"' + ("*" if prefix else ""))
    return " ".join(terms)


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not valid; use a lower-case word such as 'raw', 'derived' "
            "or 'quarantined' (letters, digits, '_', '-', '.')"
        )
    return value


def _dataset_id(value: Any) -> str:
    return value.id if isinstance(value, Dataset) else str(value)


class Catalog(ReplicaMixin):
    """The spotkit dataset catalog with provenance, stored in one SQLite file.

    Several processes (a watcher and a notebook) may open the same file at once: the
    database is in WAL mode, every write is one ``BEGIN IMMEDIATE`` transaction, and a
    writer waits up to :data:`spotkit.catalog._schema.BUSY_TIMEOUT_MS` for another's lock.
    One ``Catalog`` object may be shared by threads.

    Parameters
    ----------
    path : path-like
        The database file, created with the schema if it does not exist.
    reader : callable, optional
        ``reader(path) -> DatasetInfo`` used by :meth:`ingest`; defaults to
        :func:`spotkit.io.read_metadata`, looked up when ``ingest`` is called.

    Examples
    --------
    >>> from spotkit.catalog import open_catalog
    >>> with open_catalog(tmp_path / "catalog.db") as cat:     # doctest: +SKIP
    ...     raw = cat.ingest("scan_0001.h5")
    ...     hits = cat.search(sample="lyso*", since="2024-05-01")
    """

    def __init__(self, path: str | os.PathLike, *, reader: Callable | None = None):
        self.path = absolute(path)
        self._reader = reader
        self._ids = IdFactory()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = _schema.connect(self.path)
        self._fts = (
            self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'datasets_fts'"
            ).fetchone()
            is not None
        )

    # -- connection -------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection (further use raises CatalogError)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"<Catalog {self.path} ({state})>"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CatalogError(f"catalog {self.path} is closed; open it again with open_catalog")
        return self._conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise CatalogError(f"reading catalog {self.path} failed: {exc}") from exc

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
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
            raise DatasetNotFoundError(_dataset_id(dataset_id), str(self.path))
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

    def _load(self, conn: sqlite3.Connection, clause: str, params: Iterable) -> list[Dataset]:
        rows = conn.execute(f"SELECT {_DS_COLUMNS} FROM datasets d {clause}", params).fetchall()  # noqa: S608
        return self._datasets_from_rows(conn, rows)

    def _datasets_from_rows(self, conn: sqlite3.Connection, rows: list) -> list[Dataset]:
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
            replicas = self._replica_rows(conn, [r[7] for r in found])
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
                _catalog=self,
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
                "ORDER BY d.start_time DESC, d.seq DESC",
                (dataset_id,),
            )

    def _provenance(self, dataset_id: str) -> Provenance:
        memo: dict[str, Provenance] = {}

        def build(ds: Dataset, path: tuple[str, ...]) -> Provenance:
            if ds.id in path:
                raise CatalogError(f"lineage of {dataset_id} has a cycle through {ds.id}")
            if ds.id not in memo:
                parents = tuple(build(p, (*path, ds.id)) for p in ds.parents)
                run = self.get_run(ds.run_id) if ds.run_id else None
                memo[ds.id] = Provenance(dataset=ds, run=run, parents=parents)
            return memo[ds.id]

        return build(self[dataset_id], ())

    # -- writing datasets -------------------------------------------------------------

    def _new_id(self, conn: sqlite3.Connection, table: str, prefix: str) -> str:
        # Inside a write transaction, so no other process can take the id between the
        # check and the insert.
        while True:
            new = self._ids.new(prefix)
            if conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (new,)).fetchone() is None:  # noqa: S608
                return new

    def _insert_dataset(
        self,
        conn: sqlite3.Connection,
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
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ds_id, kind, beamline, sample, proposal, title, start_time, end_time,
                now_epoch(), status, run_id, _dumps(metadata, "metadata"),
            ),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO files (dataset_id, path, role, size, sha256, format, key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(ds_id, str(f.path), f.role, f.size, f.sha256, f.format, f.key) for f in files],
        )
        if self._fts:
            conn.execute(
                "INSERT INTO datasets_fts (rowid, title, sample, proposal, beamline, meta) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    cursor.lastrowid, title, sample, proposal, beamline,
                    " ".join(_flatten_text(metadata, [])),
                ),
            )  # fmt: skip
        conn.executemany(
            "INSERT INTO lineage (child_id, parent_id, run_id) VALUES (?, ?, ?)",
            [(ds_id, parent, run_id) for parent in parents],
        )
        return ds_id

    def _reader_files(self, primary: Path, listed: Iterable) -> list[tuple[Path, str]]:
        """The primary file first, then the reader's other files (absolute, no repeats)."""
        out: list[tuple[Path, str]] = []
        primary_role = "data"
        for item in listed or ():
            path, role = item
            path = Path(path).expanduser()
            if not path.is_absolute():
                # relative to the working directory if it is there, else to the primary file
                path = absolute(path) if path.exists() else primary.parent / path
            path = absolute(path)
            if path == primary:
                primary_role = role
            elif (path, role) not in out:
                out.append((path, role))
        return [(primary, primary_role), *out]

    def ingest(
        self,
        path: str | os.PathLike,
        *,
        status: str = "raw",
        extra_metadata: Mapping | None = None,
        hasher: Callable | None = None,
    ) -> Dataset:
        """Register a raw data file (and the files that belong to it) as a new dataset.

        The metadata come from the file itself (:func:`spotkit.io.read_metadata`, or the
        catalog's ``reader``). Every file is hashed (sha256, streamed in 8 MiB blocks) before
        anything is written; the dataset, its files and its search entry are then written
        in one transaction, so a failure leaves the catalog exactly as it was.

        Ingesting is idempotent: if the primary file is already registered with the same
        path and the same sha256, the existing dataset is returned and nothing is added.

        Parameters
        ----------
        path : path-like
            The primary raw file (e.g. a Data Exchange HDF5 scan).
        status : str, optional
            Initial status, ``"raw"`` by default (``"quarantined"`` to keep it out of
            processing).
        extra_metadata : mapping, optional
            Added to (and overriding) the metadata read from the file.
        hasher : callable, optional
            ``hasher(path) -> (size, sha256 hex)`` for each file, instead of
            :func:`spotkit.catalog._files.checksum`: the flow passes one that also computes
            the transfer's block checksums in the same read, so each file is read once.

        Returns
        -------
        Dataset

        Raises
        ------
        spotkit.errors.InputFileError
            If the file cannot be read or lacks required metadata, or a file vanished or
            became unreadable before it was hashed.
        spotkit.errors.CatalogError
            If the catalog cannot be written (nothing is written then).
        """
        primary = absolute(path)
        _check_name(status, "status")
        reader = self._reader
        if reader is None:
            from spotkit import io

            reader = io.read_metadata
        info = reader(primary)
        metadata = {**(info.metadata or {}), **(extra_metadata or {})}
        _dumps(metadata, "metadata")  # fail early, before hashing
        records = []
        hasher = hasher or checksum
        for file_path, role in self._reader_files(primary, info.files):
            try:
                size, sha = hasher(file_path)
            except OSError as exc:
                raise InputFileError(
                    file_path,
                    f"cannot be read for its checksum ({exc.strerror or exc}); nothing was "
                    "registered.",
                    hint="Check that the scan is complete and the file was not moved.",
                ) from exc
            records.append(FileRecord(file_path, role, size, sha, guess_format(file_path)))
        with self._write(f"ingest of {primary}") as conn:
            # a quarantined (or superseded) registration of the same bytes does not count:
            # ingesting again, e.g. with a newer reader, makes a proper dataset
            set_aside = ("d.status = 'quarantined'" if status == "quarantined" else
                         "d.status NOT IN ('quarantined', 'superseded', 'forgotten')")
            row = conn.execute(
                "SELECT f.dataset_id FROM files f JOIN datasets d ON d.id = f.dataset_id "  # noqa: S608
                f"WHERE f.path = ? AND f.sha256 = ? AND {set_aside} LIMIT 1",
                (str(primary), records[0].sha256),
            ).fetchone()
            if row is not None:
                ds_id = row[0]
                logger.info("%s is already catalogued as %s; not ingested again", primary, ds_id)
            else:
                if conn.execute(
                    "SELECT 1 FROM files WHERE path = ? AND sha256 != ? LIMIT 1",
                    (str(primary), records[0].sha256),
                ).fetchone():
                    logger.warning(
                        "%s is already catalogued with other content (sha256 changed); "
                        "registering it as a new dataset",
                        primary,
                    )
                ds_id = self._insert_dataset(
                    conn,
                    kind=info.kind,
                    beamline=info.beamline,
                    sample=info.sample,
                    proposal=info.proposal,
                    title=info.title,
                    start_time=to_epoch(info.start_time, name="start_time"),
                    end_time=to_epoch(getattr(info, "end_time", None), name="end_time"),
                    status=status,
                    metadata=metadata,
                    files=records,
                )
                logger.info("ingested %s as %s (%s)", primary, ds_id, info.kind)
        return self[ds_id]

    def _normalise_files(self, files: Iterable) -> list[tuple[Path, str, str | None, str | None]]:
        out = []
        for item in files:
            if isinstance(item, Mapping):
                unknown = set(item) - _FILE_KEYS
                if unknown or "path" not in item:
                    raise ValueError(
                        f"file entry {dict(item)!r} needs 'path' and may have "
                        f"{sorted(_FILE_KEYS - {'path'})}; unknown: {sorted(unknown)}"
                    )
                path, role = item["path"], item.get("role", "data")
                fmt, key = item.get("format"), item.get("key")
            else:
                path, role = item
                fmt = key = None
            path = absolute(path)
            out.append((path, role, fmt or guess_format(path), key))
        if not out:
            raise ValueError("a derived dataset needs at least one file")
        return out

    @staticmethod
    def _hash_outputs(
        files: list[tuple[Path, str, str | None, str | None]], action: str
    ) -> list[FileRecord]:
        records = []
        for path, role, fmt, key in files:
            try:
                size, sha = checksum(path)
            except OSError as exc:
                reason = "does not exist" if not path.exists() else f"cannot be read ({exc})"
                raise CatalogError(
                    f"{action}: file {path} {reason}; nothing was registered. Check that "
                    "the notebook wrote it where it said."
                ) from exc
            records.append(FileRecord(path, role, size, sha, fmt, key))
        return records

    def _register_derived_in(
        self,
        conn: sqlite3.Connection,
        *,
        records: list[FileRecord],
        kind: str,
        parents: list[str],
        run_id: str | None,
        metadata: Mapping | None,
        title: str | None,
        status: str,
    ) -> str:
        if not parents:
            raise ValueError("a derived dataset needs at least one parent dataset")
        first = None
        for parent in parents:
            row = conn.execute(
                "SELECT beamline, sample, proposal, title FROM datasets WHERE id = ?", (parent,)
            ).fetchone()
            if row is None:
                raise DatasetNotFoundError(parent, str(self.path))
            first = first or row
        start = now_epoch()
        if run_id is not None:
            run = conn.execute("SELECT started_at FROM runs WHERE id = ?", (run_id,)).fetchone()
            if run is None:
                raise CatalogError(f"no run with id {run_id!r} in catalog {self.path}")
            start = run[0]
        return self._insert_dataset(
            conn,
            kind=kind,
            beamline=first[0],
            sample=first[1],
            proposal=first[2],
            title=title if title is not None else f"{kind} of {first[3] or parents[0]}",
            start_time=start,
            end_time=now_epoch(),
            status=status,
            metadata=dict(metadata or {}),
            files=records,
            run_id=run_id,
            parents=list(dict.fromkeys(parents)),
        )

    def register_derived(
        self,
        *,
        files: Iterable,
        kind: str,
        parents: Iterable,
        run_id: str | None = None,
        metadata: Mapping | None = None,
        title: str | None = None,
        status: str = "derived",
    ) -> Dataset:
        """Register files made from other datasets (a reconstruction, a reduced curve).

        Beamline, sample and proposal are inherited from the first parent; a lineage row
        links the new dataset to every parent (and to ``run_id``). Files are hashed first;
        everything is written in one transaction.

        Parameters
        ----------
        files : iterable
            ``(path, role)`` pairs or dicts ``{"path", "role", "format", "key"}``; the first
            file with role ``"data"`` is the primary one. ``format`` is guessed from the
            suffix when omitted; ``key`` names the array inside an HDF5 file or zarr store.
        kind : str
            E.g. ``"tomo/recon"``, ``"saxs/reduced"``.
        parents : iterable of str or Dataset
            The datasets it was derived from (at least one).
        run_id : str, optional
            The notebook run that produced it.
        metadata : mapping, optional
            JSON-serialisable metadata.
        title : str, optional
            Defaults to ``"<kind> of <first parent's title>"``.
        status : str, optional
            ``"derived"`` by default.

        Returns
        -------
        Dataset

        Raises
        ------
        spotkit.errors.DatasetNotFoundError
            If a parent is not in the catalog.
        spotkit.errors.CatalogError
            If a file is missing or unreadable, or ``run_id`` is unknown.
        """
        _check_name(status, "status")
        parent_ids = [_dataset_id(p) for p in parents]
        records = self._hash_outputs(self._normalise_files(files), f"registering {kind}")
        _dumps(metadata, "metadata")
        with self._write(f"registering {kind}") as conn:
            ds_id = self._register_derived_in(
                conn,
                records=records,
                kind=kind,
                parents=parent_ids,
                run_id=run_id,
                metadata=metadata,
                title=title,
                status=status,
            )
        logger.info("registered %s %s from %s", kind, ds_id, ", ".join(parent_ids))
        return self[ds_id]

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
            row = conn.execute("SELECT metadata FROM datasets WHERE id = ?", (ds_id,)).fetchone()
            if row is None:
                raise DatasetNotFoundError(ds_id, str(self.path))
            metadata = json.loads(row[0])
            if reason is not None:
                metadata["status_reason"] = reason
            conn.execute(
                "UPDATE datasets SET status = ?, metadata = ? WHERE id = ?",
                (status, _dumps(metadata, "metadata"), ds_id),
            )
            if self._fts:
                conn.execute(
                    "UPDATE datasets_fts SET meta = ? "
                    "WHERE rowid = (SELECT seq FROM datasets WHERE id = ?)",
                    (" ".join(_flatten_text(metadata, [])), ds_id),
                )
        logger.info("dataset %s is now %s%s", ds_id, status, f" ({reason})" if reason else "")
        return self[ds_id]

    #: The labels :meth:`mark_frames` accepts.
    FRAME_LABELS = ("of interest", "redundant")

    def mark_frames(
        self,
        dataset_id: str,
        frames: Iterable[int],
        labels: str | Iterable[str],
        *,
        reasons: str | Iterable[str | None] | None = None,
        run_id: str | None = None,
    ) -> int:
        """Mark frames of a series ``"of interest"`` or ``"redundant"`` (one transaction).

        A mark is advice for the transfer and storage rules (e.g. change detection's
        reduction policy, :mod:`spotkit.change`); spotkit never deletes a frame because of
        it. Marking a frame again replaces its mark.

        Parameters
        ----------
        dataset_id : str or Dataset
            The series (a raw dataset).
        frames : iterable of int
            Frame indices (>= 0).
        labels : str or iterable of str
            One label for all frames, or one per frame: ``"of interest"`` or ``"redundant"``.
        reasons : str or iterable of str, optional
            Why (one for all, or one per frame), e.g. ``"onset at frame 41"``.
        run_id : str, optional
            The run that decided it (its provenance).

        Returns
        -------
        int
            Number of frames marked.

        Raises
        ------
        ValueError
            A label other than those of :attr:`FRAME_LABELS`, a negative frame, or lists of
            different lengths (nothing is written).
        DatasetNotFoundError, CatalogError
            Unknown dataset or run.

        Examples
        --------
        >>> cat.mark_frames("ds-01abc", [40, 41, 42], "of interest",
        ...                 reasons="onset at frame 41")  # doctest: +SKIP
        3
        """
        ds_id = _dataset_id(dataset_id)
        frames = [int(f) for f in frames]
        n = len(frames)

        def per_frame(value, name):
            if value is None or isinstance(value, str):
                return [value] * n
            value = list(value)
            if len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} frames; give one "
                                 "per frame or a single value")
            return value

        labels = per_frame(labels, "labels")
        reasons = per_frame(reasons, "reasons")
        bad = sorted({str(lb) for lb in labels} - set(self.FRAME_LABELS))
        if bad:
            raise ValueError(f"unknown frame label(s) {bad}; choose one of {self.FRAME_LABELS}")
        if any(f < 0 for f in frames):
            raise ValueError(f"frame indices must be >= 0, got {min(frames)}")
        now = now_epoch()
        with self._write(f"marking {n} frames of {ds_id}") as conn:
            if conn.execute("SELECT 1 FROM datasets WHERE id = ?", (ds_id,)).fetchone() is None:
                raise DatasetNotFoundError(ds_id, str(self.path))
            if run_id is not None and conn.execute(
                    "SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise CatalogError(f"no run with id {run_id!r} in catalog {self.path}")
            conn.executemany(
                "INSERT INTO frame_marks (dataset_id, frame, label, reason, run_id, marked_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dataset_id, frame) DO UPDATE SET "
                "label = excluded.label, reason = excluded.reason, run_id = excluded.run_id, "
                "marked_at = excluded.marked_at",
                [(ds_id, f, lb, rs, run_id, now)
                 for f, lb, rs in zip(frames, labels, reasons, strict=True)],
            )
        logger.info("marked %d frames of %s (%s)", n, ds_id,
                    ", ".join(f"{lb}: {labels.count(lb)}" for lb in sorted(set(labels))))
        return n

    def frame_marks(self, dataset_id: str, *, label: str | None = None) -> list[dict]:
        """The frame marks of a series, by frame: ``{"frame", "label", "reason", "run_id",
        "marked_at"}`` each (see :meth:`mark_frames`).

        Parameters
        ----------
        dataset_id : str or Dataset
        label : str, optional
            Only this label.

        Returns
        -------
        list of dict
        """
        ds_id = _dataset_id(dataset_id)
        if label is not None and label not in self.FRAME_LABELS:
            raise ValueError(f"unknown frame label {label!r}; choose one of {self.FRAME_LABELS}")
        sql = ("SELECT frame, label, reason, run_id, marked_at FROM frame_marks "
               "WHERE dataset_id = ?")
        args: list = [ds_id]
        if label is not None:
            sql += " AND label = ?"
            args.append(label)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY frame", args).fetchall()
        return [{"frame": r[0], "label": r[1], "reason": r[2], "run_id": r[3],
                 "marked_at": from_epoch(r[4])} for r in rows]

    def bulk_load(self, records: Iterable[Mapping], *, batch_size: int = 20_000) -> int:
        """Insert many already-described datasets fast, in one transaction.

        Meant for migrating an existing catalog and for benchmarks: nothing is read from
        disk, and the given sizes and checksums are trusted. Rows go in with
        ``executemany`` in batches of ``batch_size``; all commit together or not at all.
        Afterwards the planner statistics are refreshed (``ANALYZE``) and the write-ahead
        log is checkpointed.

        Parameters
        ----------
        records : iterable of mapping
            Each with ``kind`` and optionally ``beamline``, ``sample``, ``proposal``,
            ``title``, ``start_time``, ``end_time`` (datetime, ISO string or epoch seconds),
            ``status`` (``"raw"``), ``metadata`` (dict) and ``files``: a list of dicts with
            ``path``, ``role`` and optionally ``size``, ``sha256``, ``format``, ``key``.
        batch_size : int, optional
            Records per ``executemany`` call.

        Returns
        -------
        int
            Number of datasets inserted.
        """
        total = 0
        with self._write("bulk load") as conn:
            seq = conn.execute("SELECT coalesce(max(seq), 0) FROM datasets").fetchone()[0]
            batch: list[Mapping] = []

            def flush() -> None:
                nonlocal seq
                now = now_epoch()
                ds_rows, file_rows, fts_rows = [], [], []
                for rec in batch:
                    seq += 1
                    ds_id = self._ids.new("ds-")
                    meta = rec.get("metadata") or {}
                    ds_rows.append(
                        (
                            seq, ds_id, rec["kind"], rec.get("beamline"), rec.get("sample"),
                            rec.get("proposal"), rec.get("title"),
                            to_epoch(rec.get("start_time"), name="start_time"),
                            to_epoch(rec.get("end_time"), name="end_time"),
                            now, rec.get("status", "raw"), _dumps(meta, "metadata"),
                        )
                    )  # fmt: skip
                    for f in rec.get("files", ()):
                        path = str(absolute(f["path"]))
                        file_rows.append(
                            (
                                ds_id, path, f.get("role", "data"), f.get("size"),
                                f.get("sha256"), f.get("format") or guess_format(path),
                                f.get("key"),
                            )
                        )  # fmt: skip
                    if self._fts:
                        fts_rows.append(
                            (
                                seq, rec.get("title"), rec.get("sample"), rec.get("proposal"),
                                rec.get("beamline"), " ".join(_flatten_text(meta, [])),
                            )
                        )  # fmt: skip
                conn.executemany(
                    "INSERT INTO datasets (seq, id, kind, beamline, sample, proposal, title, "
                    "start_time, end_time, ingested_at, status, metadata) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    ds_rows,
                )
                conn.executemany(
                    "INSERT INTO files (dataset_id, path, role, size, sha256, format, key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    file_rows,
                )
                if fts_rows:
                    conn.executemany(
                        "INSERT INTO datasets_fts (rowid, title, sample, proposal, beamline, "
                        "meta) VALUES (?, ?, ?, ?, ?, ?)",
                        fts_rows,
                    )
                batch.clear()

            for rec in records:
                batch.append(rec)
                total += 1
                if len(batch) >= batch_size:
                    flush()
            if batch:
                flush()
        with self._read() as conn:
            # fresh planner statistics, and fold the (large) WAL back into the database
            conn.execute("ANALYZE")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        logger.info("bulk-loaded %d datasets into %s", total, self.path)
        return total

    # -- search -----------------------------------------------------------------------

    @staticmethod
    def _match(column: str, value: Any, where: list[str], params: list) -> None:
        values = [value] if isinstance(value, str) else list(value)
        if not values:
            where.append("0")
            return
        exact = [v for v in values if not _WILDCARD.search(v)]
        globs = [v for v in values if _WILDCARD.search(v)]
        terms = []
        if len(exact) == 1:
            terms.append(f"{column} = ?")
        elif exact:
            terms.append(f"{column} IN ({','.join('?' * len(exact))})")
        terms += [f"{column} GLOB ?"] * len(globs)
        params += exact + globs
        where.append(terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")")

    def _where(self, **query: Any) -> tuple[str, list]:
        where: list[str] = []
        params: list = []
        for column in ("beamline", "sample", "proposal", "kind", "status"):
            value = query.get(column)
            if value is not None:
                self._match(f"d.{column}", value, where, params)
        since = to_epoch(query.get("since"), name="since")
        until = to_epoch(query.get("until"), name="until", end_of_day=True)
        if since is not None:
            where.append("d.start_time >= ?")
            params.append(since)
        if until is not None:
            date_only = isinstance(query["until"], _dt.date) and not isinstance(
                query["until"], _dt.datetime
            )
            date_only |= isinstance(query["until"], str) and len(query["until"].strip()) == 10
            where.append("d.start_time < ?" if date_only else "d.start_time <= ?")
            params.append(until)
        text = query.get("text")
        if text:
            if self._fts:
                match = _fts_query(text)
                if match:
                    where.append(
                        "d.seq IN (SELECT rowid FROM datasets_fts WHERE datasets_fts MATCH ?)"
                    )
                    params.append(match)
            else:
                for word in text.split():
                    like = "%" + word.strip("*").replace("\\", "\\\\").replace("%", "\\%")
                    like = like.replace("_", "\\_") + "%"
                    cols = ("d.title", "d.sample", "d.proposal", "d.beamline", "d.metadata")
                    where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in cols) + ")")
                    params += [like] * len(cols)
        return ("WHERE " + " AND ".join(where)) if where else "", params

    def search(
        self,
        *,
        beamline: str | Iterable[str] | None = None,
        sample: str | Iterable[str] | None = None,
        proposal: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        since: Any = None,
        until: Any = None,
        text: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> SearchResult:
        """Find datasets, newest first (by start time).

        All given criteria must hold. A string field matches exactly, or as a GLOB pattern
        if it contains ``*``, ``?`` or ``[`` (case-sensitive: ``sample="lyso*"``); a list
        matches any of its values.

        Parameters
        ----------
        beamline, sample, proposal, kind, status : str or list of str, optional
            Field values or patterns.
        since, until : datetime, date or ISO 8601 string, optional
            Start-time range, both ends included; ``until`` as a bare date includes that
            whole day. Naive times are UTC.
        text : str, optional
            Free text over title, sample, proposal, beamline and metadata values; every
            word must occur (whole words, or a prefix with a trailing ``*``).
        limit : int or None, optional
            Page size (``None``: all matches).
        offset : int, optional
            Number of matches to skip.

        Returns
        -------
        SearchResult
            The page, with ``total`` the number of all matches.

        Examples
        --------
        >>> cat.search(beamline="8.3.2", sample="lyso*", since="2024-05-01")  # doctest: +SKIP
        """
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative integer, not {offset!r}")
        query = {
            k: v
            for k, v in dict(
                beamline=beamline, sample=sample, proposal=proposal, kind=kind, status=status,
                since=since, until=until, text=text,
            ).items()
            if v is not None
        }  # fmt: skip
        where, params = self._where(**query)
        order = "ORDER BY d.start_time DESC, d.seq DESC"
        with self._read() as conn:
            source = "datasets d"
            fts_total = None
            match = _fts_query(text) if text and self._fts else ""
            if match and set(query) <= {"text", "since", "until"}:
                # Free text (and time) only. For a common word, walking the start-time index
                # newest first until the page is full beats reading every match's row to
                # sort them (~10 ms instead of ~100 ms for 5 % of 1e6 rows); for a rare word
                # it is the other way round. The FTS index counts the matches cheaply.
                fts_total = conn.execute(
                    "SELECT count(*) FROM datasets_fts WHERE datasets_fts MATCH ?", (match,)
                ).fetchone()[0]
                rows = conn.execute("SELECT max(seq) FROM datasets").fetchone()[0] or 0
                wanted = offset + (limit if limit is not None else fts_total)
                if fts_total and wanted * rows / fts_total < 20 * fts_total:
                    source = "datasets d INDEXED BY datasets_start"
            # Pick the page's rows by (start_time, seq) first -- from an index alone when
            # the criteria allow -- and only then read the full rows: sorting many full
            # rows made broad queries (sample="lyso*") ten times slower.
            page = f"SELECT d.seq FROM {source} {where} {order}"  # noqa: S608
            page_params = list(params)
            if limit is not None or offset:
                page += " LIMIT ? OFFSET ?"
                page_params += [-1 if limit is None else limit, offset]
            datasets = self._load(conn, f"WHERE d.seq IN ({page}) {order}", page_params)
            if limit is None or (len(datasets) < limit and (datasets or offset == 0)):
                total = offset + len(datasets)
            elif fts_total is not None and set(query) == {"text"}:
                total = fts_total
            else:
                total = conn.execute(
                    f"SELECT count(*) FROM {source} {where}",  # noqa: S608
                    params,
                ).fetchone()[0]
        return SearchResult(datasets, total=total, offset=offset, limit=limit, query=query)

    # -- runs -------------------------------------------------------------------------

    def start_run(
        self,
        *,
        dataset_id: str,
        notebook: str | os.PathLike,
        notebook_sha256: str | None,
        parameters: Mapping | None,
        target: str = "local",
        versions: Mapping | None = None,
        output_notebook: str | os.PathLike | None = None,
        job_id: str | None = None,
        state: str = "running",
        context: Mapping | None = None,
    ) -> str:
        """Record that a notebook started running for a dataset (or was queued to run).

        Parameters
        ----------
        dataset_id : str or Dataset
            The input dataset.
        notebook : path-like
            The source notebook.
        notebook_sha256 : str or None
            Its digest (what exactly ran).
        parameters : mapping
            Parameters injected into the notebook (JSON-serialisable).
        target : str, optional
            ``"local"``, ``"slurm"``, ``"nersc"``.
        versions : mapping, optional
            Software versions (python, spotkit, numpy, papermill, ...). When omitted, the
            versions of Python and spotkit are recorded.
        output_notebook : path-like, optional
            Where the executed notebook will be written.
        job_id : str, optional
            Batch-scheduler job id, if already known (see :meth:`set_job_id`).
        state : {"running", "queued"}, optional
            ``"queued"`` for a run handed to a batch scheduler; :meth:`begin_run` marks it
            running when the job starts it.
        context : mapping, optional
            Why the run happened (JSON-serialisable): for a run started by the flow, the
            rule, its action, the rules version and the watcher (:attr:`Run.context`).

        Returns
        -------
        str
            The run id (``"run-…"``), in state ``state``.
        """
        if state not in ("running", "queued"):
            raise ValueError(f"a new run is 'running' or 'queued', not {state!r}")
        ds_id = _dataset_id(dataset_id)
        if not isinstance(target, str) or not target:
            raise ValueError(f"target must be a name such as 'local', not {target!r}")
        if versions is None:
            from spotkit._version import __version__

            versions = {"python": sys.version.split()[0], "spotkit": __version__}
        params_json = _dumps(dict(parameters or {}), "parameters")
        versions_json = _dumps(dict(versions), "versions")
        context_json = _dumps(dict(context or {}), "context")
        with self._write(f"starting a run on {ds_id}") as conn:
            if conn.execute("SELECT 1 FROM datasets WHERE id = ?", (ds_id,)).fetchone() is None:
                raise DatasetNotFoundError(ds_id, str(self.path))
            run_id = self._new_id(conn, "runs", "run-")
            conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL, NULL, NULL, ?, ?, ?)",
                (
                    run_id, ds_id, str(absolute(notebook)), notebook_sha256, params_json,
                    target, state, now_epoch(),
                    str(absolute(output_notebook)) if output_notebook else None,
                    versions_json, job_id, context_json,
                ),
            )  # fmt: skip
        logger.info("run %s %s: %s on %s (%s)", run_id, "queued" if state == "queued"
                    else "started", Path(notebook).name, ds_id, target)
        return run_id

    def begin_run(
        self,
        run_id: str,
        *,
        notebook_sha256: str | None = None,
        versions: Mapping | None = None,
    ) -> Run:
        """Mark a queued run as running: its batch job started the notebook.

        ``started_at`` becomes now (the time in the queue is the job's, see
        :attr:`spotkit.compute.Job.queue_wait`).

        Parameters
        ----------
        run_id : str
        notebook_sha256 : str, optional
            Digest of the notebook as it is run (replaces the one taken at submission).
        versions : mapping, optional
            Software versions of the environment the job runs in (replace the submitter's).

        Returns
        -------
        Run

        Raises
        ------
        spotkit.errors.CatalogError
            If the run is unknown or not ``"queued"`` (already started, finished or
            cancelled).
        """
        versions_json = _dumps(dict(versions), "versions") if versions is not None else None
        with self._write(f"starting queued run {run_id}") as conn:
            row = conn.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise CatalogError(f"no run with id {run_id!r} in catalog {self.path}")
            if row[0] != "queued":
                raise CatalogError(
                    f"run {run_id} is {row[0]}, not queued; it cannot start (again). Submit "
                    "a new run instead."
                )
            conn.execute(
                "UPDATE runs SET state = 'running', started_at = ?, "
                "notebook_sha256 = coalesce(?, notebook_sha256), "
                "versions = coalesce(?, versions) WHERE id = ?",
                (now_epoch(), notebook_sha256, versions_json, run_id),
            )
        logger.info("run %s started", run_id)
        return self.get_run(run_id)

    def set_job_id(self, run_id: str, job_id: str) -> None:
        """Record the batch-scheduler job id of a run (Slurm / NERSC)."""
        with self._write(f"setting the job id of {run_id}") as conn:
            cursor = conn.execute("UPDATE runs SET job_id = ? WHERE id = ?", (job_id, run_id))
            if cursor.rowcount == 0:
                raise CatalogError(f"no run with id {run_id!r} in catalog {self.path}")

    def finish_run(
        self,
        run_id: str,
        *,
        state: str,
        output_notebook: str | os.PathLike | None = None,
        error_cell: int | None = None,
        error_name: str | None = None,
        error_message: str | None = None,
        outputs: Iterable[Mapping] = (),
    ) -> list[Dataset]:
        """Record the end of a run and register what it produced, in one transaction.

        Each output becomes a derived dataset whose parent is the run's dataset. All output
        files are checked and hashed first: if one is missing, :class:`CatalogError` names
        it and nothing is written (the run keeps its state; the caller then records it
        as failed).

        Parameters
        ----------
        run_id : str
        state : {"completed", "failed", "cancelled"}
        output_notebook : path-like, optional
            The executed notebook (overrides the one given to :meth:`start_run`).
        error_cell : int, optional
            Index of the failing cell.
        error_name, error_message : str, optional
            Exception name and message of the failing cell.
        outputs : iterable of dict
            ``{"path", "kind", "role": "data", "format": None, "key": None,
            "metadata": {}, "title": None}`` per derived product.

        Returns
        -------
        list of Dataset
            The derived datasets, in the order of ``outputs``.

        Raises
        ------
        spotkit.errors.CatalogError
            If the run is unknown or already finished, or an output file is missing.
        """
        if state not in FINAL_RUN_STATES:
            raise ValueError(f"state {state!r} is not final; use one of {FINAL_RUN_STATES}")
        action = f"finishing run {run_id}"
        prepared = []
        for out in outputs:
            unknown = set(out) - _OUTPUT_KEYS
            if unknown or "path" not in out or "kind" not in out:
                raise ValueError(
                    f"output {dict(out)!r} needs 'path' and 'kind' and may have "
                    f"{sorted(_OUTPUT_KEYS - {'path', 'kind'})}; unknown: {sorted(unknown)}"
                )
            files = self._normalise_files(
                [{k: out[k] for k in ("path", "role", "format", "key") if out.get(k)}]
            )
            _dumps(out.get("metadata"), "output metadata")
            prepared.append((out, self._hash_outputs(files, action)))
        with self._write(action) as conn:
            row = conn.execute(
                "SELECT dataset_id, state FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise CatalogError(f"no run with id {run_id!r} in catalog {self.path}")
            if row[1] not in ("running", "queued"):
                raise CatalogError(f"run {run_id} is already {row[1]}; it cannot finish again")
            conn.execute(
                "UPDATE runs SET state = ?, ended_at = ?, "
                "output_notebook = coalesce(?, output_notebook), error_cell = ?, "
                "error_name = ?, error_message = ? WHERE id = ?",
                (
                    state, now_epoch(),
                    str(absolute(output_notebook)) if output_notebook else None,
                    error_cell, error_name, error_message, run_id,
                ),
            )  # fmt: skip
            ids = [
                self._register_derived_in(
                    conn,
                    records=records,
                    kind=out["kind"],
                    parents=[row[0]],
                    run_id=run_id,
                    metadata=out.get("metadata"),
                    title=out.get("title"),
                    status="derived",
                )
                for out, records in prepared
            ]
        logger.info("run %s %s with %d output(s)", run_id, state, len(ids))
        return [self[i] for i in ids]

    def _runs_from_rows(self, conn: sqlite3.Connection, rows: list) -> list[Run]:
        outputs: dict[str, list[str]] = {r[0]: [] for r in rows}
        ids = list(outputs)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for run_id, ds_id in conn.execute(
                f"SELECT run_id, id FROM datasets WHERE run_id IN ({marks}) ORDER BY seq",  # noqa: S608
                chunk,
            ):
                outputs[run_id].append(ds_id)
        return [
            Run(
                id=r[0],
                dataset_id=r[1],
                notebook=Path(r[2]),
                notebook_sha256=r[3],
                parameters=json.loads(r[4]),
                target=r[5],
                state=r[6],
                started_at=from_epoch(r[7]),
                ended_at=from_epoch(r[8]),
                output_notebook=Path(r[9]) if r[9] else None,
                error_cell=r[10],
                error_name=r[11],
                error_message=r[12],
                versions=json.loads(r[13]),
                outputs=tuple(outputs[r[0]]),
                job_id=r[14],
                context=json.loads(r[15]),
            )
            for r in rows
        ]

    def get_run(self, run_id: str) -> Run:
        """Return the run with this id.

        Raises
        ------
        spotkit.errors.CatalogError
            If there is no such run.
        """
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",  # noqa: S608
                (run_id,),
            ).fetchall()
            if not rows:
                raise CatalogError(
                    f"no run with id {run_id!r} in catalog {self.path}; list runs with "
                    "`Catalog.runs()`"
                )
            return self._runs_from_rows(conn, rows)[0]

    def runs(
        self,
        *,
        dataset_id: str | None = None,
        state: str | None = None,
        limit: int | None = 100,
    ) -> list[Run]:
        """Return runs, newest first, optionally only those on one dataset or in one state.

        Parameters
        ----------
        dataset_id : str or Dataset, optional
        state : {"queued", "running", "completed", "failed", "cancelled"}, optional
        limit : int or None, optional
            At most this many (``None``: all).

        Returns
        -------
        list of Run
        """
        if state is not None and state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}; choose one of {RUN_STATES}")
        where, params = [], []
        if dataset_id is not None:
            where.append("dataset_id = ?")
            params.append(_dataset_id(dataset_id))
        if state is not None:
            where.append("state = ?")
            params.append(state)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._read() as conn:
            return self._runs_from_rows(conn, conn.execute(sql, params).fetchall())

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
            source=self.path,
            query=hits.query,
        )


def open_catalog(
    path: str | os.PathLike | None = None, *, reader: Callable | None = None
) -> Catalog:
    """Open (creating if needed) the spotkit catalog.

    Parameters
    ----------
    path : path-like, optional
        The SQLite file; defaults to :func:`spotkit.config.catalog_path` (``$SPOTKIT_CATALOG``
        or ``<spotkit home>/catalog.db``).
    reader : callable, optional
        Metadata reader used by :meth:`Catalog.ingest`; defaults to
        :func:`spotkit.io.read_metadata`.

    Returns
    -------
    Catalog

    Examples
    --------
    >>> from spotkit.catalog import open_catalog
    >>> cat = open_catalog(tmp_path / "catalog.db")      # doctest: +SKIP
    >>> len(cat)                                         # doctest: +SKIP
    0
    """
    if path is None:
        from spotkit.config import catalog_path

        path = catalog_path()
    text = os.fspath(path)
    if "://" in text:
        raise CatalogError(
            f"catalog {text!r}: only SQLite files are supported so far; give a file path"
        )
    return Catalog(path, reader=reader)
