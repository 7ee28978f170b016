"""Notebook runs: started, queued, finished, with the datasets they made."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from spotkit.catalog._common import (
    _CHUNK,
    _OUTPUT_KEYS,
    _RUN_COLUMNS,
    FINAL_RUN_STATES,
    RUN_STATES,
    _dataset_id,
    _dumps,
)
from spotkit.catalog._dataset import Dataset
from spotkit.catalog._derived import DerivedMixin
from spotkit.catalog._files import absolute
from spotkit.catalog._records import Run
from spotkit.catalog._time import from_epoch, now_epoch
from spotkit.errors import CatalogError, DatasetNotFoundError

logger = logging.getLogger("spotkit.catalog._catalog")


class RunsMixin(DerivedMixin):
    """Runs for :class:`~spotkit.catalog.Catalog`."""

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
                raise DatasetNotFoundError(ds_id, self._where_name())
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
                raise CatalogError(f"no run with id {run_id!r} in catalog {self._where_name()}")
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
                raise CatalogError(f"no run with id {run_id!r} in catalog {self._where_name()}")

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
                raise CatalogError(f"no run with id {run_id!r} in catalog {self._where_name()}")
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

    def _runs_from_rows(self, conn: Any, rows: list) -> list[Run]:
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
                    f"no run with id {run_id!r} in catalog {self._where_name()}; list runs with "
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
        where: list[str] = []
        params: list[Any] = []
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
