"""Reading the telemetry: the ``events`` table of a catalog as a pandas DataFrame."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from spotkit.catalog import connect_database, database_errors, mask_url, table_exists
from spotkit.errors import CatalogError
from spotkit.monitor._telemetry import _SHARED, EVENT_COLUMNS, _epoch, _location

__all__ = ["events", "frame"]


def _steps(step: str | Iterable[str] | None) -> list[str] | None:
    if step is None:
        return None
    return [step] if isinstance(step, str) else [str(s) for s in step]


def events(catalog: Any, since: Any = None, until: Any = None, beamline: str | None = None,
           step: str | Iterable[str] | None = None):
    """The telemetry events of a catalog as a table, oldest first.

    Events this process has recorded and not yet written are written first.

    Parameters
    ----------
    catalog : Catalog, path-like or str
        The catalog (its database file or ``postgresql://`` URL).
    since, until : float, datetime or str, optional
        Only events at or after ``since`` and before ``until``: UTC epoch seconds, a
        datetime, an ISO 8601 date or time (UTC unless it says otherwise; a bare date as
        ``until`` includes that day), or an age such as ``"24h"`` or ``"7d"``.
    beamline : str, optional
        Only this beamline's events.
    step : str or list of str, optional
        Only these steps.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`EVENT_COLUMNS`: ``time`` and ``duration`` in seconds (float),
        ``bytes`` and ``value`` as float (NaN when not recorded), ``detail`` a dict.

    Raises
    ------
    spotkit.errors.CatalogError
        The database cannot be read.
    ValueError
        ``since`` or ``until`` is not a time.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.monitor import Telemetry
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "catalog.db"
    >>> with Telemetry(db) as tel:
    ...     tel.record("complete", time=100.0, item="scan_1.h5", nbytes=10)
    ...     tel.record("ingested", time=103.0, item="scan_1.h5", dataset_id="ds1",
    ...                beamline="8.3.2", duration=1.5, detail={"files": 1})
    >>> table = events(db, since=101.0)
    >>> table[["time", "step", "dataset_id", "duration"]]
        time      step dataset_id  duration
    0  103.0  ingested        ds1       1.5
    >>> table.loc[0, "detail"]
    {'files': 1}
    """
    where = str(_location(catalog))
    shared = _SHARED.get(where)
    if shared is not None:
        shared.flush()
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append("time >= ?")
        params.append(_epoch(since, "since"))
    if until is not None:
        clauses.append("time < ?")
        params.append(_epoch(until, "until", end_of_day=True))
    if beamline is not None:
        clauses.append("beamline = ?")
        params.append(str(beamline))
    steps = _steps(step)
    if steps is not None:
        clauses.append(f"step IN ({', '.join('?' * len(steps))})")
        params.extend(steps)
    sql = (f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"  # noqa: S608
           + (f" WHERE {' AND '.join(clauses)}" if clauses else "") + " ORDER BY time, id")
    location = _location(catalog)
    conn = connect_database(location)
    try:
        rows = conn.execute(sql, tuple(params)).fetchall() if table_exists(conn, "events") else []
    except database_errors() as exc:
        raise CatalogError(f"reading telemetry events from {mask_url(where)} failed: {exc}"
                           ) from exc
    finally:
        conn.close()
    return frame(rows)


def frame(rows: Iterable[Iterable[Any]] = ()):
    """An events table (:data:`EVENT_COLUMNS`) from rows, with the column types of :func:`events`.

    Parameters
    ----------
    rows : iterable of sequences or mappings
        Each row's values in :data:`EVENT_COLUMNS` order, or a mapping (missing columns are
        null; ``detail`` may be a dict or JSON text).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> frame([{"time": 5.0, "step": "queued", "target": "slurm"}])[["time", "step", "target"]]
       time    step target
    0   5.0  queued  slurm
    """
    import pandas as pd

    records = []
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            unknown = set(row) - set(EVENT_COLUMNS)
            if unknown:
                raise ValueError(f"unknown event columns {sorted(unknown)}; the columns are "
                                 f"{list(EVENT_COLUMNS)}")
            rec = {c: row.get(c) for c in EVENT_COLUMNS}
            if rec["id"] is None:
                rec["id"] = i + 1
        else:
            rec = dict(zip(EVENT_COLUMNS, row, strict=True))
        detail = rec["detail"]
        if detail is None:
            rec["detail"] = {}
        elif isinstance(detail, str):
            try:
                rec["detail"] = json.loads(detail)
            except ValueError:
                rec["detail"] = {"text": detail}
        else:
            rec["detail"] = dict(detail)
        records.append(rec)
    df = pd.DataFrame.from_records(records, columns=list(EVENT_COLUMNS))
    df["id"] = df["id"].astype("int64")
    for col in ("time", "duration", "bytes", "value"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("step", "beamline", "dataset_id", "item", "target", "run_id", "job_id",
                "outcome"):
        df[col] = df[col].astype("object").where(df[col].notna(), None)
    return df
