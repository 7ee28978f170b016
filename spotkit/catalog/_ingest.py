"""Registering raw files: :meth:`Catalog.ingest` and :meth:`Catalog.bulk_load`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from spotkit.catalog._common import (
    _check_name,
    _dumps,
    _fts_document,
)
from spotkit.catalog._core import CatalogCore
from spotkit.catalog._dataset import Dataset
from spotkit.catalog._files import absolute, checksum, guess_format
from spotkit.catalog._records import FileRecord
from spotkit.catalog._time import now_epoch, to_epoch
from spotkit.errors import InputFileError

logger = logging.getLogger("spotkit.catalog._catalog")


class IngestMixin(CatalogCore):
    """Ingest and bulk load for :class:`~spotkit.catalog.Catalog`."""

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
            the transfer's block checksums (and stages the warehouse copy) in the same read,
            so each file is read once. If it has a ``prepare`` method, ``prepare(paths)`` is
            called once with every file of the dataset before the first ``hasher(path)``
            (to hash them concurrently); the checksums it returns are used exactly as
            computed ones (same dedup, same idempotency).

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
        files = self._reader_files(primary, info.files)
        prepare = getattr(hasher, "prepare", None)
        if prepare is not None:
            prepare([file_path for file_path, _ in files])
        for file_path, role in files:
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
            seq = 0
            if not self._pg:
                seq = conn.execute("SELECT coalesce(max(seq), 0) FROM datasets").fetchone()[0]
            batch: list[Mapping] = []

            def flush() -> None:
                nonlocal seq
                now = now_epoch()
                ds_rows, file_rows, fts_rows = [], [], []
                seqs: list[int] = []
                if self._pg:  # keys from the table's own sequence, safe with other writers
                    seqs = [r[0] for r in conn.execute(
                        "SELECT nextval(pg_get_serial_sequence('datasets', 'seq')) "
                        "FROM generate_series(1, ?)", (len(batch),)).fetchall()]
                for i, rec in enumerate(batch):
                    seq = seqs[i] if self._pg else seq + 1
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
                    fts_rows.append(
                        (
                            seq, rec.get("title"), rec.get("sample"), rec.get("proposal"),
                            rec.get("beamline"), meta,
                        )
                    )  # fmt: skip
                if self._pg:  # the search document goes in with the row (schema 7)
                    conn.executemany(
                        "INSERT INTO datasets (seq, id, kind, beamline, sample, proposal, "
                        "title, start_time, end_time, ingested_at, status, metadata, doc) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, to_tsvector('simple', ?))",
                        [(*row, _fts_document(fts[1:5], fts[5]))
                         for row, fts in zip(ds_rows, fts_rows, strict=True)],
                    )
                    fts_rows.clear()
                else:
                    conn.executemany(
                        "INSERT INTO datasets (seq, id, kind, beamline, sample, proposal, "
                        "title, start_time, end_time, ingested_at, status, metadata) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        ds_rows,
                    )
                conn.executemany(
                    "INSERT INTO files (dataset_id, path, role, size, sha256, format, key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    file_rows,
                )
                self._write_fts(conn, fts_rows)
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
            if not self._pg:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        logger.info("bulk-loaded %d datasets into %s", total, self._where_name())
        return total
