"""Immutable records the catalog returns: files and notebook runs."""

from __future__ import annotations

import datetime as _dt
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FileRecord", "Replica", "Run"]


def _iso(value: _dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


#: locations that are not on this machine's file system: a replica there is listed, not read
_REMOTE = ("://",)


@dataclass(frozen=True)
class Replica:
    """One copy of a catalogued file somewhere (the warehouse, NERSC, tape).

    Attributes
    ----------
    location : str
        Where the copy is: ``"origin"`` (where the file was registered, usually the inbox),
        ``"warehouse"``, ``"nersc"``, ...
    path : str
        The copy's absolute local path, or ``host:/path`` / ``scheme://...`` for a copy
        this machine cannot read directly.
    state : str
        ``"verified"`` (size and sha256 checked against the catalog at ``verified_at``),
        ``"unverified"``, ``"missing"`` (looked for and not found) or ``"removed"``
        (deleted on purpose, e.g. an inbox cleaned up).
    rank : int
        Preference among verified copies readable here (higher first): the warehouse
        100, the origin 10 by default.
    verified_at : datetime.datetime or None
        When the copy was last checked (aware UTC).
    manifest_id : str or None
        The transfer manifest that brought it there.
    detail : str or None
        Why the state is what it is (a verification problem, who removed it).
    """

    location: str
    path: str
    state: str
    rank: int = 0
    verified_at: _dt.datetime | None = None
    manifest_id: str | None = None
    detail: str | None = None

    @property
    def local(self) -> bool:
        """Whether the path is a local path (not ``host:/path`` nor a URL)."""
        text = self.path
        if any(mark in text for mark in _REMOTE):
            return False
        head = text.split("/", 1)[0]
        return not (":" in head and not text.startswith("/"))

    @property
    def readable(self) -> bool:
        """Whether readers may use it: verified and local."""
        return self.state == "verified" and self.local

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "location": self.location,
            "path": self.path,
            "state": self.state,
            "rank": self.rank,
            "verified_at": _iso(self.verified_at),
            "manifest_id": self.manifest_id,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class FileRecord:
    """One file (or zarr directory) of a dataset.

    Attributes
    ----------
    path : pathlib.Path
        Absolute path to read it from: the best verified replica readable here (see
        :attr:`replicas`), else where it was registered.
    role : str
        What the file is for: ``"data"`` (the primary array), ``"flats"``, ``"geometry"``,
        ``"notebook"``, ``"figure"``, ...
    size : int or None
        Bytes (the sum over all files for a directory).
    sha256 : str or None
        Hex digest at registration (a tree hash for a directory).
    format : str or None
        ``"hdf5"``, ``"zarr"``, ``"npy"``, ``"png"``, ... (guessed from the suffix if not given).
    key : str or None
        Array inside the file (HDF5 dataset path or zarr component), if any.
    original : pathlib.Path or None
        Where the file was registered (the inbox for raw data); None when it is ``path``.
    replicas : tuple of Replica
        Its copies elsewhere, best first (empty for a file never transferred).
    """

    path: Path
    role: str
    size: int | None = None
    sha256: str | None = None
    format: str | None = None
    key: str | None = None
    original: Path | None = None
    replicas: tuple[Replica, ...] = ()

    @property
    def registered_path(self) -> Path:
        """Where the file was registered (the catalog's key for it)."""
        return self.original if self.original is not None else self.path

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        out: dict[str, Any] = {
            "path": str(self.path),
            "role": self.role,
            "size": self.size,
            "sha256": self.sha256,
            "format": self.format,
            "key": self.key,
        }
        if self.original is not None or self.replicas:
            out["registered_path"] = str(self.registered_path)
            out["replicas"] = [r.to_dict() for r in self.replicas]
        return out


@dataclass(frozen=True)
class Run:
    """One execution of a notebook for one dataset, as recorded in the catalog.

    Attributes
    ----------
    id : str
        ``"run-…"``, sortable by start.
    dataset_id : str
        The dataset the notebook ran on.
    notebook : pathlib.Path
        The source notebook.
    notebook_sha256 : str or None
        Digest of the source notebook when the run started.
    parameters : dict
        Parameters injected by papermill.
    target : str
        Where it ran: ``"local"``, ``"slurm"``, ``"nersc"``.
    state : str
        ``"running"``, ``"completed"`` or ``"failed"``.
    started_at, ended_at : datetime.datetime or None
        Aware UTC datetimes; ``ended_at`` is ``None`` while running.
    output_notebook : pathlib.Path or None
        The executed notebook.
    error_cell : int or None
        Index of the failing cell (papermill's ``cell_index``).
    error_name, error_message : str or None
        Exception name and message raised by the failing cell.
    versions : dict
        Software versions the run used (python, spotkit, numpy, papermill, ...).
    outputs : tuple of str
        Ids of the derived datasets the run registered.
    job_id : str or None
        Batch-scheduler job id, for Slurm or NERSC runs.
    context : dict
        Why it ran: for a run the flow started, ``{"flow": {...}}`` with the rule, the
        action, the rules file's version and the watcher; empty for a run started by hand.
    """

    id: str
    dataset_id: str
    notebook: Path
    notebook_sha256: str | None
    parameters: dict = field(default_factory=dict)
    target: str = "local"
    state: str = "running"
    started_at: _dt.datetime | None = None
    ended_at: _dt.datetime | None = None
    output_notebook: Path | None = None
    error_cell: int | None = None
    error_name: str | None = None
    error_message: str | None = None
    versions: dict = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    job_id: str | None = None
    context: dict = field(default_factory=dict)

    @property
    def duration(self) -> _dt.timedelta | None:
        """Wall time of a finished run (``None`` while running)."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (times as ISO 8601 strings)."""
        return {
            "id": self.id,
            "dataset_id": self.dataset_id,
            "notebook": str(self.notebook),
            "notebook_sha256": self.notebook_sha256,
            "parameters": dict(self.parameters),
            "target": self.target,
            "state": self.state,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "output_notebook": str(self.output_notebook) if self.output_notebook else None,
            "error_cell": self.error_cell,
            "error_name": self.error_name,
            "error_message": self.error_message,
            "versions": dict(self.versions),
            "outputs": list(self.outputs),
            "job_id": self.job_id,
            "context": dict(self.context),
        }

    def summary(self) -> str:
        """One line: id, state, notebook, target and the error if it failed."""
        text = f"{self.id} {self.state} {self.notebook.name} on {self.target}"
        if self.state == "failed" and (self.error_name or self.error_message):
            cell = f" in cell {self.error_cell}" if self.error_cell is not None else ""
            text += f" ({self.error_name}{cell}: {self.error_message})"
        return text

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in self.to_dict().items()
            if v not in (None, {}, [])
        )
        return f"<table>{rows}</table>"
