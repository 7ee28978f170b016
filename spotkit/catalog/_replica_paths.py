"""Choosing which replica of a file to read, and loading replica records (no catalog
object needed: the core uses these while it turns rows into datasets)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from spotkit.catalog._records import Replica
from spotkit.catalog._time import from_epoch

__all__ = ["COPY_RANK", "ORIGIN", "ORIGIN_RANK", "REPLICA_STATES", "best_path", "replica_rows"]

#: the location name of the place a file was registered (the inbox, for raw data)
ORIGIN = "origin"
REPLICA_STATES = ("verified", "unverified", "missing", "removed")
#: default ranks: a verified warehouse copy is read before the inbox copy
ORIGIN_RANK = 10
COPY_RANK = 100

_COLUMNS = "r.location, r.path, r.state, r.rank, r.verified_at, r.manifest_id, r.detail"


def _replica(row) -> Replica:
    return Replica(row[0], row[1], row[2], int(row[3]), from_epoch(row[4]), row[5], row[6])


def _ordered(registered: Path, replicas: Iterable[Replica]) -> tuple[Replica, ...]:
    """The replicas best first, the origin included (implicitly verified unless marked)."""
    replicas = list(replicas)
    if not any(r.location == ORIGIN for r in replicas):
        replicas.append(Replica(ORIGIN, str(registered), "verified", ORIGIN_RANK))
    # readable ones first, by rank; then the others (listed, not read)
    return tuple(sorted(replicas, key=lambda r: (not r.readable, -r.rank, r.location)))


def best_path(registered: Path, replicas: Iterable[Replica]) -> Path:
    """The path a reader should use: the best readable replica that exists here.

    Parameters
    ----------
    registered : pathlib.Path
        Where the file was registered.
    replicas : iterable of Replica
        Its replicas (the origin is implied when not listed).

    Returns
    -------
    pathlib.Path
        The highest-ranked verified, local replica that exists (one ``stat`` per candidate
        until one does); if none exists, the highest-ranked one, so that the reader's
        error names the place the file was expected.
    """
    candidates = [r for r in _ordered(registered, replicas) if r.readable]
    for r in candidates:
        if os.path.exists(r.path):
            return Path(r.path)
    return Path(candidates[0].path) if candidates else registered


def replica_rows(conn, file_ids: list[int]) -> dict[int, list[Replica]]:
    """``{file id: [Replica, ...]}`` for the given files (those without replicas absent)."""
    out: dict[int, list[Replica]] = {}
    for start in range(0, len(file_ids), 900):
        chunk = file_ids[start:start + 900]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT r.file_id, {_COLUMNS} FROM replicas r "  # noqa: S608
            f"WHERE r.file_id IN ({marks})",
            chunk,
        ):
            out.setdefault(row[0], []).append(_replica(row[1:]))
    return out


