"""Replicas: where copies of a dataset's files are, and whether they are verified.

The catalog keeps every file at the path it was registered with (``files.path``, usually
the beamline's inbox): that path is the file's identity. Each copy made elsewhere (the
warehouse after a verified transfer, a scratch copy at NERSC, tape) is a *replica* with its
location, path, verification state and rank. When the catalog hands out a dataset, each
file's :attr:`~spotkit.catalog.FileRecord.path` is the best verified replica that this
machine can read (highest rank first: the warehouse before the inbox), so the inbox copy
can be cleaned up, and notebooks keep working, without anyone editing the catalog.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from spotkit.catalog._core import CatalogCore
from spotkit.catalog._files import absolute, checksum
from spotkit.catalog._records import Replica
from spotkit.catalog._replica_paths import (
    COPY_RANK,
    ORIGIN,
    ORIGIN_RANK,
    REPLICA_STATES,
    _ordered,
    best_path,
    replica_rows,
)
from spotkit.catalog._time import from_epoch, now_epoch, to_epoch
from spotkit.errors import CatalogError

__all__ = ["ORIGIN", "REPLICA_STATES", "ReplicaMixin", "best_path", "replica_rows"]

logger = logging.getLogger(__name__)

class ReplicaMixin(CatalogCore):
    """Replica bookkeeping for :class:`~spotkit.catalog.Catalog` (see the module docs)."""

    def _file_ids(self, conn, dataset_id: str) -> dict[str, tuple[int, int | None, str | None]]:
        rows = conn.execute(
            "SELECT path, id, size, sha256 FROM files WHERE dataset_id = ? ORDER BY id",
            (dataset_id,),
        ).fetchall()
        if not rows and conn.execute("SELECT 1 FROM datasets WHERE id = ?",
                                     (dataset_id,)).fetchone() is None:
            from spotkit.errors import DatasetNotFoundError

            raise DatasetNotFoundError(dataset_id)
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def add_replicas(
        self,
        dataset_id: str,
        location: str,
        paths: Mapping,
        *,
        state: str = "verified",
        rank: int | None = None,
        manifest_id: str | None = None,
        detail: str | None = None,
        verified_at=None,
    ) -> list[Replica]:
        """Record copies of a dataset's files at one location (replacing earlier records).

        Parameters
        ----------
        dataset_id : str
        location : str
            A short name: ``"warehouse"``, ``"nersc"``, ``"tape"`` (``"origin"`` is where
            the files were registered).
        paths : mapping
            ``{registered path: replica path}`` for each file copied; the registered path is
            the one the catalog lists (``FileRecord.registered_path``). A replica path is an
            absolute local path, or ``host:/path`` / a URL for copies not readable here.
        state : str
            ``"verified"`` (default: checked against the catalog's size and sha256),
            ``"unverified"``, ``"missing"`` or ``"removed"``.
        rank : int, optional
            Preference among readable verified copies (default 100; the origin 10).
        manifest_id : str, optional
            The transfer manifest that brought the copies there.
        detail : str, optional
            Free text kept with the record.
        verified_at : datetime or float, optional
            When they were verified (default: now, for ``"verified"``).

        Returns
        -------
        list of Replica

        Raises
        ------
        spotkit.errors.CatalogError
            If a registered path is not one of the dataset's files (nothing is written), or
            ``state`` / ``location`` is not valid.
        spotkit.errors.DatasetNotFoundError
            If there is no such dataset.
        """
        if state not in REPLICA_STATES:
            raise CatalogError(f"replica state {state!r} is not one of {REPLICA_STATES}")
        if not isinstance(location, str) or not location.strip():
            raise CatalogError(f"replica location must be a non-empty name, not {location!r}")
        rank = (ORIGIN_RANK if location == ORIGIN else COPY_RANK) if rank is None else int(rank)
        when = now_epoch() if verified_at is None and state == "verified" else (
            to_epoch(verified_at, name="verified_at") if verified_at is not None else None)
        out = []
        with self._write(f"recording replicas of {dataset_id} at {location}") as conn:
            files = self._file_ids(conn, dataset_id)
            rows = []
            for registered, copy in paths.items():
                key = str(absolute(registered))
                if key not in files:
                    raise CatalogError(
                        f"{registered} is not a file of dataset {dataset_id}; its files are "
                        f"{sorted(files)}. Nothing was recorded."
                    )
                text = os.fspath(copy)
                rep = Replica(location, text, state, rank, from_epoch(when), manifest_id,
                              detail)
                if rep.local:
                    rep = Replica(location, str(absolute(text)), state, rank, from_epoch(when),
                                  manifest_id, detail)
                rows.append((files[key][0], location, rep.path, state, rank, when,
                             manifest_id, detail, now_epoch()))
                out.append(rep)
            conn.executemany(
                "INSERT INTO replicas (file_id, location, path, state, rank, verified_at, "
                "manifest_id, detail, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (file_id, location) DO UPDATE SET path = excluded.path, "
                "state = excluded.state, rank = excluded.rank, "
                "verified_at = coalesce(excluded.verified_at, replicas.verified_at), "
                "manifest_id = coalesce(excluded.manifest_id, replicas.manifest_id), "
                "detail = excluded.detail, updated_at = excluded.updated_at",
                rows,
            )
        logger.info("dataset %s: %d file(s) %s at %s", dataset_id, len(out), state, location)
        return out

    def mark_replicas(self, dataset_id: str, location: str, state: str, *,
                      detail: str | None = None, paths: Iterable | None = None) -> int:
        """Change the state of a dataset's replicas at one location.

        Use it when a copy is deleted on purpose (``"removed"``, e.g. the inbox cleaned up
        after the warehouse copy was verified: ``location="origin"``) or found gone.

        Parameters
        ----------
        dataset_id : str
        location : str
        state : str
            One of ``"verified"``, ``"unverified"``, ``"missing"``, ``"removed"``.
        detail : str, optional
            Why (kept with the record).
        paths : iterable, optional
            Registered paths of the files concerned (default: all of the dataset's files).

        Returns
        -------
        int
            How many replica records changed.
        """
        if state not in REPLICA_STATES:
            raise CatalogError(f"replica state {state!r} is not one of {REPLICA_STATES}")
        with self._read() as conn:
            files = self._file_ids(conn, dataset_id)
            known = replica_rows(conn, [v[0] for v in files.values()])
        wanted = set(files) if paths is None else {str(absolute(p)) for p in paths}
        unknown = wanted - set(files)
        if unknown:
            raise CatalogError(f"{sorted(unknown)} are not files of dataset {dataset_id}")
        changes = {}
        for registered in wanted:
            file_id = files[registered][0]
            here = [r for r in known.get(file_id, []) if r.location == location]
            if here:
                changes[registered] = here[0].path
            elif location == ORIGIN:
                changes[registered] = registered
        if not changes:
            return 0
        self.add_replicas(dataset_id, location, changes, state=state, detail=detail,
                          rank=None if location == ORIGIN else next(
                              (r.rank for rs in known.values() for r in rs
                               if r.location == location), None))
        return len(changes)

    def replicas(self, dataset_id: str) -> dict[Path, tuple[Replica, ...]]:
        """Every file of a dataset with its replicas, best first (the origin included).

        Parameters
        ----------
        dataset_id : str

        Returns
        -------
        dict
            ``{registered path: (Replica, ...)}``.
        """
        with self._read() as conn:
            files = self._file_ids(conn, dataset_id)
            rows = replica_rows(conn, [v[0] for v in files.values()])
        return {Path(p): _ordered(Path(p), rows.get(v[0], [])) for p, v in files.items()}

    def verify_replicas(self, dataset_id: str, location: str | None = None) -> dict[str, list]:
        """Re-read the local replicas of a dataset now and record what was found.

        Each local copy (at ``location``, or everywhere, the origin included) is checked
        for presence, size and sha256 against the catalog: ``verified`` when it matches,
        ``missing`` when it is gone, ``unverified`` (with the difference in ``detail``)
        when it does not match. Copies recorded ``removed`` and remote ones are not read.

        Parameters
        ----------
        dataset_id : str
        location : str, optional

        Returns
        -------
        dict
            ``{"verified": [paths], "missing": [paths], "unverified": [paths]}``.
        """
        out: dict[str, list] = {"verified": [], "missing": [], "unverified": []}
        with self._read() as conn:
            files = self._file_ids(conn, dataset_id)
        for registered, reps in self.replicas(dataset_id).items():
            _id, size, sha = files[str(registered)]
            for rep in reps:
                if (location is not None and rep.location != location) or not rep.local \
                        or rep.state == "removed":
                    continue
                detail = None
                if not os.path.exists(rep.path):
                    state = "missing"
                else:
                    try:
                        got_size, got_sha = checksum(rep.path)
                    except OSError as exc:
                        state, detail = "unverified", f"cannot be read: {exc}"
                    else:
                        if (size is not None and got_size != size) or (sha and got_sha != sha):
                            state = "unverified"
                            detail = (f"size {got_size} sha256 {got_sha[:12]}… differ from the "
                                      f"catalog's {size} {str(sha)[:12]}…")
                        else:
                            state = "verified"
                self.add_replicas(dataset_id, rep.location, {registered: rep.path},
                                  state=state, rank=rep.rank, detail=detail)
                out[state].append(rep.path)
                if state != "verified":
                    logger.warning("dataset %s: replica %s at %s is %s%s", dataset_id,
                                   rep.path, rep.location, state,
                                   f" ({detail})" if detail else "")
        return out
