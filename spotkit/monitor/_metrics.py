"""Metric streams from telemetry events: the numbers the models of normal and the detectors
watch (queue wait, run time, transfer time and rate, ingest time, inter-arrival time, file
size, turnaround), one row per observation."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["METRICS", "METRIC_COLUMNS", "enrich", "metrics"]

#: the metric streams and their units
METRICS = {
    "queue_wait": "s from queued to started (the scheduler's Submit to Start where known)",
    "run_time": "s from started to finished (the scheduler's Start to End where known)",
    "transfer_time": "s one transfer took",
    "transfer_rate": "B/s of one transfer",
    "ingest_time": "s the ingest (catalogue, hash, stage) took",
    "interarrival": "s between a beamline's consecutive complete datasets",
    "file_size": "B of a dataset's files",
    "turnaround": "s from the raw file complete to the last run finished (per target)",
}

#: the columns of :func:`metrics`
METRIC_COLUMNS = ("time", "metric", "value", "beamline", "target", "dataset_id", "size")


def _first_map(df, key: str, value: str) -> dict:
    """``{key: value}`` from the rows that have both (the first such row per key)."""
    sub = df[df[key].notna() & df[value].notna()].drop_duplicates(key)
    return dict(zip(sub[key], sub[value], strict=True))


def enrich(events_df):
    """Fill in each event's dataset and beamline from the other events.

    Events made before a dataset exists (``complete``, ``discovered``) name only the flow
    ``item``; job events name their ``run_id``. The dataset of an item comes from its
    ``ingested`` event, the dataset of a run from any event that names both, and a
    dataset's beamline from any of its events.

    Parameters
    ----------
    events_df : pandas.DataFrame
        An events table (:func:`spotkit.monitor.events`).

    Returns
    -------
    pandas.DataFrame
        A copy, with ``dataset_id`` and ``beamline`` filled where they can be.

    Examples
    --------
    >>> from spotkit.monitor import frame
    >>> ev = frame([{"time": 1.0, "step": "complete", "item": "k1"},
    ...             {"time": 2.0, "step": "ingested", "item": "k1", "dataset_id": "d1",
    ...              "beamline": "8.3.2"}])
    >>> enrich(ev)[["step", "dataset_id", "beamline"]]
           step dataset_id beamline
    0  complete         d1    8.3.2
    1  ingested         d1    8.3.2
    """
    df = events_df.copy()
    if df.empty:
        return df
    item_ds = _first_map(df, "item", "dataset_id")
    run_ds = _first_map(df, "run_id", "dataset_id")
    job_ds = _first_map(df, "job_id", "dataset_id")
    ds = df["dataset_id"].copy()
    for col, mapping in (("item", item_ds), ("run_id", run_ds), ("job_id", job_ds)):
        missing = ds.isna() & df[col].notna()
        if missing.any():
            ds[missing] = df.loc[missing, col].map(mapping)
    df["dataset_id"] = ds.astype("object").where(ds.notna(), None)
    ds_bl = _first_map(df, "dataset_id", "beamline")
    bl = df["beamline"].copy()
    missing = bl.isna() & df["dataset_id"].notna()
    if missing.any():
        bl[missing] = df.loc[missing, "dataset_id"].map(ds_bl)
    df["beamline"] = bl.astype("object").where(bl.notna(), None)
    return df


def _span_start(df, step: str) -> dict:
    """``{run_id or job_id: earliest time}`` of one step's events."""
    out: dict[Any, float] = {}
    sub = df[df["step"] == step].sort_values("time")
    for col in ("job_id", "run_id"):
        s = sub[sub[col].notna()].drop_duplicates(col)
        out.update({(col, k): t for k, t in zip(s[col], s["time"], strict=True)
                    if (col, k) not in out})
    return out


def _since(df, rows, start: dict) -> np.ndarray:
    """``duration`` where recorded, else ``time`` minus the span's start by job or run."""
    values = rows["duration"].to_numpy(dtype=float).copy()
    for i, (job, run, t) in enumerate(zip(rows["job_id"], rows["run_id"], rows["time"],
                                          strict=True)):
        if np.isnan(values[i]):
            t0 = start.get(("job_id", job)) if job is not None else None
            if t0 is None and run is not None:
                t0 = start.get(("run_id", run))
            if t0 is not None:
                values[i] = t - t0
    return values


def metrics(events_df):
    """The metric streams of an events table, one row per observation.

    Parameters
    ----------
    events_df : pandas.DataFrame
        An events table (:func:`spotkit.monitor.events`, or one built with
        :func:`spotkit.monitor.frame`).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`METRIC_COLUMNS`: ``time`` (UTC epoch s of the observation),
        ``metric`` (one of :data:`METRICS`), ``value``, ``beamline``, ``target``,
        ``dataset_id`` and ``size`` (the dataset's bytes; NaN if unknown), sorted by time.

    Examples
    --------
    A batch job queued at 10 s, started at 70 s, finished at 100 s:

    >>> from spotkit.monitor import frame
    >>> ev = frame([
    ...     {"time": 0.0, "step": "complete", "item": "k1", "bytes": 2e9},
    ...     {"time": 5.0, "step": "ingested", "item": "k1", "dataset_id": "d1",
    ...      "beamline": "8.3.2", "duration": 4.0, "bytes": 2e9},
    ...     {"time": 10.0, "step": "queued", "dataset_id": "d1", "run_id": "r1",
    ...      "target": "slurm"},
    ...     {"time": 70.0, "step": "started", "run_id": "r1", "target": "slurm"},
    ...     {"time": 100.0, "step": "finished", "run_id": "r1", "target": "slurm"}])
    >>> m = metrics(ev)
    >>> m[["metric", "value", "target"]]
            metric  value target
    0  ingest_time    4.0   None
    1    file_size    2e+09   None
    2   queue_wait   60.0  slurm
    3     run_time   30.0  slurm
    4   turnaround  100.0  slurm
    >>> float(m["size"].iloc[-1])
    2000000000.0
    """
    import pandas as pd

    if events_df is None or len(events_df) == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("time", "value", "size")
                                          else "object") for c in METRIC_COLUMNS})
    df = enrich(events_df)
    df = df.sort_values(["time", "id"], kind="stable")
    sizes = _sizes(df)
    parts = []

    def add(rows, metric: str, values, time=None) -> None:
        values = np.asarray(values, dtype=float)
        if len(rows) == 0:
            return
        parts.append(pd.DataFrame({
            "time": rows["time"].to_numpy(dtype=float) if time is None else time,
            "metric": metric, "value": values,
            "beamline": rows["beamline"].to_numpy(dtype=object),
            "target": rows["target"].to_numpy(dtype=object),
            "dataset_id": rows["dataset_id"].to_numpy(dtype=object)}))

    ingested = df[df["step"] == "ingested"]
    add(ingested, "ingest_time", ingested["duration"])
    add(ingested, "file_size", ingested["bytes"])
    transfers = df[df["step"] == "transfer"]
    add(transfers, "transfer_time", transfers["duration"])
    rate = transfers["value"].to_numpy(dtype=float).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        guess = transfers["bytes"].to_numpy(dtype=float) / transfers["duration"].to_numpy(
            dtype=float)
    rate = np.where(np.isnan(rate), guess, rate)
    add(transfers, "transfer_rate", np.where(np.isfinite(rate), rate, np.nan))
    started = df[df["step"] == "started"]
    add(started, "queue_wait", _since(df, started, _span_start(df, "queued")))
    finished = df[df["step"] == "finished"]
    add(finished, "run_time", _since(df, finished, _span_start(df, "started")))
    arrivals = _arrivals(df)
    for _, group in arrivals.groupby(arrivals["beamline"].fillna(""), sort=False):
        group = group.sort_values("time")
        add(group.iloc[1:], "interarrival", np.diff(group["time"].to_numpy(dtype=float)))
    ends = turnaround_ends(df)
    if len(ends):
        add(ends, "turnaround", ends["end"] - ends["complete"], time=ends["end"].to_numpy())
    if not parts:
        return metrics(None)
    out = pd.concat(parts, ignore_index=True)
    out = out[np.isfinite(out["value"].to_numpy(dtype=float))]
    out["size"] = out["dataset_id"].map(sizes).astype("float64")
    out = out.sort_values("time", kind="stable").reset_index(drop=True)
    for col in ("beamline", "target", "dataset_id"):
        out[col] = out[col].astype("object").where(out[col].notna(), None)
    return out[list(METRIC_COLUMNS)]


def _sizes(df) -> dict:
    """``{dataset_id: bytes}`` from ingest (else the complete file's size)."""
    sizes: dict = {}
    for step in ("complete", "discovered", "ingested"):  # later steps win
        sub = df[(df["step"] == step) & df["dataset_id"].notna() & df["bytes"].notna()]
        sizes.update(dict(zip(sub["dataset_id"], sub["bytes"].astype(float), strict=True)))
    return sizes


def _arrivals(df):
    """One row per dataset arrival: its ``complete`` event (else ``discovered``)."""
    sub = df[df["step"] == "complete"]
    seen = set(sub["item"].dropna())
    other = df[(df["step"] == "discovered") & ~df["item"].isin(seen)]
    import pandas as pd

    both = pd.concat([sub, other]) if len(other) else sub
    return both.drop_duplicates(subset=["item"], keep="first") if both["item"].notna().all() \
        else both


def complete_times(df) -> dict:
    """``{dataset_id: when its raw data was complete}`` (``complete``, else ``discovered``
    minus its duration, else the start of ``ingested``)."""
    out: dict = {}
    for step in ("ingested", "discovered", "complete"):  # better sources win
        sub = df[(df["step"] == step) & df["dataset_id"].notna()].sort_values("time")
        sub = sub.drop_duplicates("dataset_id", keep="first")
        dur = sub["duration"].fillna(0.0).to_numpy(dtype=float)
        t = sub["time"].to_numpy(dtype=float) - (dur if step != "complete" else 0.0)
        out.update(dict(zip(sub["dataset_id"], t, strict=True)))
    return out


def turnaround_ends(df):
    """Per dataset and target: when the raw data was complete and when its last run on that
    target finished (a dataset without runs: when the flow finished it, target None).

    Parameters
    ----------
    df : pandas.DataFrame
        An events table passed through :func:`enrich`.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset_id, beamline, target, complete, end`` (UTC epoch s).
    """
    import pandas as pd

    starts = complete_times(df)
    fin = df[(df["step"] == "finished") & df["dataset_id"].notna()]
    rows = []
    for (dataset, target), group in fin.groupby(["dataset_id", fin["target"].fillna("")],
                                                sort=False):
        rows.append((dataset, group["beamline"].dropna().iloc[0]
                     if group["beamline"].notna().any() else None,
                     target or None, group["time"].max()))
    with_runs = {r[0] for r in rows}
    done = df[(df["step"] == "done") & df["dataset_id"].notna()
              & ~df["dataset_id"].isin(with_runs)]
    for dataset, group in done.groupby("dataset_id", sort=False):
        rows.append((dataset, group["beamline"].dropna().iloc[0]
                     if group["beamline"].notna().any() else None, None, group["time"].max()))
    out = pd.DataFrame(rows, columns=["dataset_id", "beamline", "target", "end"])
    out["complete"] = out["dataset_id"].map(starts).astype("float64")
    out = out[out["complete"].notna()].reset_index(drop=True)
    out["time"] = out["end"]
    return out
