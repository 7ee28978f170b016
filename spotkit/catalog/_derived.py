"""Registering what a notebook run made: :meth:`Catalog.register_derived`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from spotkit.catalog._common import (
    _FILE_KEYS,
    _check_name,
    _dataset_id,
    _dumps,
)
from spotkit.catalog._core import CatalogCore
from spotkit.catalog._dataset import Dataset
from spotkit.catalog._files import absolute, checksum, guess_format
from spotkit.catalog._records import FileRecord
from spotkit.catalog._time import now_epoch
from spotkit.errors import CatalogError, DatasetNotFoundError

logger = logging.getLogger("spotkit.catalog._catalog")


class DerivedMixin(CatalogCore):
    """Derived datasets for :class:`~spotkit.catalog.Catalog`."""

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
        conn: Any,
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
                raise DatasetNotFoundError(parent, self._where_name())
            first = first or row
        if first is None:  # pragma: no cover - parents is not empty
            raise ValueError("a derived dataset needs at least one parent dataset")
        start = now_epoch()
        if run_id is not None:
            run = conn.execute("SELECT started_at FROM runs WHERE id = ?", (run_id,)).fetchone()
            if run is None:
                raise CatalogError(f"no run with id {run_id!r} in catalog {self._where_name()}")
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
