"""The turnaround breakdown (X-SWAP's headline number): where a dataset's time goes, from its
raw file complete to its last product, per beamline and compute target.

Each dataset's turnaround on a target (its raw file complete to the end of its last run on
that target) is split into

- ``queue_wait``: its runs waiting for a compute slot (batch queue; a local worker slot),
- ``transfer``: getting the data in place (ingest with its hashing and staging, the
  manifest, the copy to the warehouse and its verification),
- ``run``: its runs executing,
- ``idle``: the rest (detection after the file settles, watcher passes, waits between
  stages); never below zero (runs that overlap may add up to more than the turnaround).

The summary gives, per beamline and target, the median and 90th percentile of each part in
seconds and its share of the turnaround: the sum of the part over the datasets divided by
the sum of their turnarounds (time-weighted, as X-SWAP's "queue wait was 60-70 % of
turnaround").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spotkit.monitor._metrics import enrich, metrics, turnaround_ends

__all__ = ["COMPONENTS", "format_turnaround", "plot_turnaround", "turnaround"]

#: the parts of a turnaround, in the order they are shown
COMPONENTS = ("queue_wait", "transfer", "run", "idle")
_TRANSFER_STEPS = ("ingested", "manifest", "transfer", "verified")
_LABELS = {"queue_wait": "queue wait", "transfer": "transfer", "run": "run", "idle": "idle",
           "turnaround": "turnaround"}
_COLOURS = {"queue_wait": "#d62728", "transfer": "#1f77b4", "run": "#2ca02c",
            "idle": "#c7c7c7"}


def _breakdown(events_df):
    import pandas as pd

    columns = ["beamline", "target", "dataset_id", "complete", "end", "turnaround",
               *COMPONENTS]
    if events_df is None or len(events_df) == 0:
        return pd.DataFrame(columns=columns)
    df = enrich(events_df)
    ends = turnaround_ends(df)
    if ends.empty:
        return pd.DataFrame(columns=columns)
    moving = df[df["step"].isin(_TRANSFER_STEPS) & df["dataset_id"].notna()]
    transfer = moving.groupby("dataset_id")["duration"].sum(min_count=1)
    m = metrics(events_df)
    m = m[m["dataset_id"].notna()].assign(target=m["target"].fillna(""))
    sums = m.groupby(["dataset_id", "target", "metric"])["value"].sum()
    out = ends.assign(target_key=ends["target"].fillna(""))
    out["turnaround"] = out["end"] - out["complete"]
    out["transfer"] = out["dataset_id"].map(transfer).fillna(0.0).astype(float)

    def part(metric: str):
        return np.array([float(sums.get((d, t, metric), 0.0))
                         for d, t in zip(out["dataset_id"], out["target_key"], strict=True)])

    out["queue_wait"] = part("queue_wait")
    out["run"] = part("run_time")
    out["idle"] = np.maximum(0.0, out["turnaround"] - out["transfer"] - out["queue_wait"]
                             - out["run"])
    out = out.sort_values(["beamline", "target", "complete"], na_position="last",
                          kind="stable").reset_index(drop=True)
    for col in ("beamline", "target", "dataset_id"):
        out[col] = out[col].astype("object").where(out[col].notna(), None)
    return out[columns]


def turnaround(events_df, *, per_dataset: bool = False):
    """The turnaround breakdown per beamline and compute target (see the module docs).

    Parameters
    ----------
    events_df : pandas.DataFrame
        An events table (:func:`spotkit.monitor.events`).
    per_dataset : bool
        Return one row per dataset and target (columns ``beamline, target, dataset_id,
        complete, end, turnaround, queue_wait, transfer, run, idle``, seconds and UTC
        epoch seconds) instead of the summary.

    Returns
    -------
    pandas.DataFrame
        The summary: one row per beamline, target and part (``turnaround``, then
        :data:`COMPONENTS`), columns ``beamline, target, component, datasets, median_s,
        p90_s, share`` (``share``: the part's total over the turnarounds' total; 1 for
        ``turnaround``). A dataset processed on no target has target ``None``.

    Examples
    --------
    Two datasets on one Slurm target: each in place 10 s after its raw file was complete,
    then queued for 60 s and running for 20 s; the first finishes 100 s after it was
    complete, the second 110 s (so they idled 10 s and 20 s):

    >>> from spotkit.monitor import frame
    >>> rows = []
    >>> for d, t0 in (("d1", 0.0), ("d2", 1000.0)):
    ...     rows += [{"time": t0, "step": "complete", "item": d},
    ...              {"time": t0 + 10, "step": "ingested", "item": d, "dataset_id": d,
    ...               "beamline": "8.3.2", "duration": 10.0},
    ...              {"time": t0 + 80, "step": "started", "dataset_id": d, "run_id": d,
    ...               "target": "slurm", "duration": 60.0},
    ...              {"time": t0 + 100 + (d == "d2") * 10, "step": "finished",
    ...               "dataset_id": d, "run_id": d, "target": "slurm", "duration": 20.0}]
    >>> summary = turnaround(frame(rows))
    >>> summary[["component", "median_s", "share"]].round(3)
        component  median_s  share
    0  turnaround     105.0  1.000
    1  queue_wait      60.0  0.571
    2    transfer      10.0  0.095
    3         run      20.0  0.190
    4        idle      15.0  0.143
    """
    import pandas as pd

    per = _breakdown(events_df)
    if per_dataset:
        return per
    rows: list[dict[str, Any]] = []
    for (b, t), group in _groups(per, sort=True):
        total = float(group["turnaround"].sum())
        for comp in ("turnaround", *COMPONENTS):
            values = group[comp].to_numpy(dtype=float)
            rows.append({"beamline": b, "target": t,
                         "component": comp, "datasets": len(group),
                         "median_s": float(np.median(values)),
                         "p90_s": float(np.percentile(values, 90)),
                         "share": float(values.sum() / total) if total > 0 else float("nan")})
    return pd.DataFrame(rows, columns=["beamline", "target", "component", "datasets",
                                       "median_s", "p90_s", "share"])


def _groups(df, *, sort: bool = False):
    """``((beamline, target), rows)`` per beamline and target; a missing one is None."""
    for (b, t), group in df.groupby(["beamline", "target"], sort=sort, dropna=False):
        yield (None if _missing(b) else b, None if _missing(t) else t), group


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _group_name(beamline: Any, target: Any) -> str:
    return f"{beamline or '(no beamline)'} / {target or '(no run)'}"


def format_turnaround(summary) -> str:
    """The summary of :func:`turnaround` as plain text: a table per beamline and target and
    one headline line each (``queue wait: 64 % of turnaround``).

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`turnaround`'s summary.

    Returns
    -------
    str

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.DataFrame({"beamline": "8.3.2", "target": "slurm",
    ...                   "component": ["turnaround", "queue_wait", "transfer", "run", "idle"],
    ...                   "datasets": 4, "median_s": [100.0, 64.0, 10.0, 20.0, 6.0],
    ...                   "p90_s": [130.0, 90.0, 12.0, 25.0, 9.0],
    ...                   "share": [1.0, 0.64, 0.1, 0.2, 0.06]})
    >>> print(format_turnaround(s))
    8.3.2 / slurm: 4 datasets; queue wait is 64 % of turnaround (the largest part)
      part          median      p90   share
      turnaround     100 s    130 s   100 %
      queue wait      64 s     90 s    64 %
      transfer        10 s     12 s    10 %
      run             20 s     25 s    20 %
      idle             6 s      9 s     6 %
    """
    if summary is None or len(summary) == 0:
        return "no turnaround to report: no dataset with a complete time and an end yet"
    lines: list[str] = []
    for (b, t), group in _groups(summary):
        group = group.set_index("component")
        n = int(group["datasets"].iloc[0])
        parts = group.loc[[c for c in COMPONENTS if c in group.index]]
        top = parts["share"].idxmax() if parts["share"].notna().any() else None
        head = _group_name(b, t)
        line = f"{head}: {n} dataset{'s' if n != 1 else ''}"
        if top is not None:
            line += (f"; queue wait is {_pct(group.loc['queue_wait', 'share'])} of turnaround"
                     + (" (the largest part)" if top == "queue_wait" else
                        f" ({_LABELS[top]} is the largest part: "
                        f"{_pct(group.loc[top, 'share'])})"))
        if lines:
            lines.append("")
        lines.append(line)
        lines.append(f"  {'part':<12}{'median':>8} {'p90':>8} {'share':>7}")
        for comp in ("turnaround", *COMPONENTS):
            if comp not in group.index:
                continue
            row = group.loc[comp]
            lines.append(f"  {_LABELS[comp]:<12}{_secs(row['median_s']):>8} "
                         f"{_secs(row['p90_s']):>8} {_pct(row['share']):>7}")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.0f} %"


def _secs(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 600:
        return f"{value / 60:.0f} min"
    return f"{value:.3g} s" if value < 10 else f"{value:.0f} s"


def plot_turnaround(summary, *, ax=None):
    """A figure of the turnaround breakdown: one bar per beamline and target, split into
    the shares of queue wait, transfer, run and idle, labelled with the median turnaround.

    Matplotlib only (no pyplot state, no widgets): save it with ``fig.savefig(path)``; in
    JupyterLab it displays as the cell's result.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`turnaround`'s summary.
    ax : matplotlib.axes.Axes, optional
        Draw into these axes (default: a new figure).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.DataFrame({"beamline": "8.3.2", "target": "slurm",
    ...                   "component": ["turnaround", "queue_wait", "transfer", "run", "idle"],
    ...                   "datasets": 4, "median_s": [100.0, 64.0, 10.0, 20.0, 6.0],
    ...                   "p90_s": [130.0, 90.0, 12.0, 25.0, 9.0],
    ...                   "share": [1.0, 0.64, 0.1, 0.2, 0.06]})
    >>> fig = plot_turnaround(s)
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['8.3.2 / slurm']
    """
    if ax is None:
        from matplotlib.figure import Figure

        groups = 1 if summary is None or len(summary) == 0 else len(
            summary[["beamline", "target"]].astype(str).drop_duplicates())
        fig = Figure(figsize=(8, 1.2 + 0.6 * groups), layout="constrained")
        ax = fig.subplots()
    fig = ax.figure
    if summary is None or len(summary) == 0:
        ax.text(0.5, 0.5, "no turnaround recorded yet", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    names, shares, medians = [], [], []
    for (b, t), group in _groups(summary):
        group = group.set_index("component")
        names.append(_group_name(b, t))
        shares.append([float(group["share"].get(c, 0.0)) for c in COMPONENTS])
        medians.append((float(group.loc["turnaround", "median_s"]),
                        int(group["datasets"].iloc[0])))
    y = np.arange(len(names))[::-1]
    left = np.zeros(len(names))
    values = np.nan_to_num(np.array(shares, dtype=float)) * 100
    for k, comp in enumerate(COMPONENTS):
        ax.barh(y, values[:, k], left=left, color=_COLOURS[comp], label=_LABELS[comp],
                height=0.6)
        for yi, li, vi in zip(y, left, values[:, k], strict=True):
            if vi >= 8:
                ax.text(li + vi / 2, yi, f"{vi:.0f}%", ha="center", va="center", fontsize=8,
                        color="black" if comp == "idle" else "white")
        left += values[:, k]
    for yi, li, (med, n) in zip(y, left, medians, strict=True):
        ax.text(li + 1, yi, f"median {_secs(med)}, n={n}", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.set_xlim(0, max(100.0, float(left.max())) * 1.35)
    ax.set_xlabel("share of turnaround (%)")
    ax.set_title("Turnaround breakdown: raw file complete to last run finished")
    ax.legend(loc="lower right", fontsize=8, ncols=len(COMPONENTS), frameon=False,
              bbox_to_anchor=(1.0, 1.08))
    return fig
