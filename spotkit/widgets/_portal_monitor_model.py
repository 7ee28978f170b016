"""The portal's Monitor panel without widgets: turnaround, metric timelines, alerts, quality.

:class:`MonitorPanelModel` reads, per refresh, one query per kind, all read only:

- the telemetry (:func:`spotkit.monitor.events`): the newest events since the last read
  (the whole window again every ``reread`` seconds, for events written late), from which
  the turnaround breakdown (:func:`~spotkit.monitor.turnaround`, drawn by
  :func:`~spotkit.monitor.plot_turnaround`), the metric streams
  (:func:`~spotkit.monitor.metrics`) and their change points
  (:func:`~spotkit.monitor.find_changes` per stream) are computed again only when new
  events came;
- the alerted findings (:func:`spotkit.monitor.alert_log`);
- the keep-up quality verdicts (:func:`spotkit.monitor.quality_verdicts`).

Figures are rendered to PNG here (in the portal's background thread), so the view only
sets image bytes. No ipywidgets here.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["MonitorPanelModel", "MonitorSnapshot", "stream_key"]


def stream_key(metric: str, beamline: Any, target: Any) -> str:
    """``"queue_wait | 8.3.2 | slurm"`` (``–`` for a missing part)."""
    def part(v: Any) -> str:
        return "–" if v is None or (isinstance(v, float) and v != v) else str(v)
    return f"{metric} | {part(beamline)} | {part(target)}"


@dataclass(frozen=True)
class MonitorSnapshot:
    """One refresh: tables as rows of plain values, figures as PNG bytes."""

    at: float
    window: float
    events: int
    turnaround: list[dict]
    turnaround_png: bytes
    streams: list[dict]
    stream: str | None
    timeline_png: bytes
    changes: list[dict]
    alerts: list[dict]
    verdicts: list[dict]
    counts: dict[str, int] = field(default_factory=dict)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def _name(value: Any, missing: Any = "–") -> Any:
    return missing if value is None or (isinstance(value, float) and value != value) \
        else str(value)


def _when(epoch: Any) -> str:
    if epoch is None or (isinstance(epoch, float) and epoch != epoch):
        return "–"
    return time.strftime("%m-%d %H:%M", time.localtime(float(epoch)))


class MonitorPanelModel:
    """What the monitor knows, for the portal: one read per kind per refresh.

    Parameters
    ----------
    catalog : Catalog
    window : float
        Seconds of history shown (default a week).
    reread : float
        Seconds between two reads of the whole window (in between, only new events).
    changes : dict, optional
        Options of :func:`spotkit.monitor.find_changes` (``arl``, ``drift``...).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.monitor import Telemetry
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> with Telemetry(cat) as tel:
    ...     for i in range(3):
    ...         t = time.time() - 3000 + 600 * i
    ...         tel.record("complete", time=t, item=f"k{i}")
    ...         tel.record("ingested", time=t + 5, item=f"k{i}", dataset_id=f"d{i}",
    ...                    beamline="8.3.2", duration=5.0)
    >>> snap = MonitorPanelModel(cat).fetch()
    >>> snap.events, [s["stream"] for s in snap.streams][:1]
    (6, ['ingest_time | 8.3.2 | –'])
    >>> snap.alerts, snap.verdicts
    ([], [])
    >>> cat.close()
    """

    def __init__(self, catalog: Any, *, window: float = 7 * 86400.0, reread: float = 300.0,
                 changes: dict | None = None):
        if window <= 0:
            raise ValueError(f"window must be > 0 seconds, not {window!r}")
        self.catalog = catalog
        self._fetch_lock = threading.Lock()
        self.window = float(window)
        self.reread = float(reread)
        self.change_options = dict(changes or {})
        self.stream: str | None = None
        self._events: Any = None
        self._read_all_at = 0.0
        self._derived: dict[str, Any] = {}
        self._derived_for: tuple | None = None
        self._timeline_for: tuple | None = None
        self._timeline_png = b""

    def select_stream(self, key: str | None) -> None:
        """Draw this metric stream's timeline from the next :meth:`fetch` on."""
        self.stream = key

    # -- reading ----------------------------------------------------------------------

    def _read_events(self, now: float):
        """The window's events: the newest since the last read (one query), the whole
        window every ``reread`` seconds."""
        import pandas as pd

        from spotkit.monitor import events

        start = now - self.window
        old = self._events
        if old is None or now - self._read_all_at >= self.reread or not len(old):
            df = events(self.catalog, since=start)
            self._read_all_at = now
        else:
            # events are written in batches, up to a pass late: read back a little
            newest = float(old["time"].max())
            new = events(self.catalog, since=min(newest, now) - 600.0)
            df = pd.concat([old, new], ignore_index=True)
            df = df.drop_duplicates(subset="id", keep="last")
            df = df[df["time"] >= start].sort_values(["time", "id"], kind="stable")
            df = df.reset_index(drop=True)
        self._events = df
        return df

    def _derive(self, ev) -> dict[str, Any]:
        """Turnaround, metric streams and change points (only when the events changed)."""
        from spotkit.monitor import metrics, plot_turnaround, turnaround

        tag = (len(ev), float(ev["id"].max()) if len(ev) else None)
        if tag == self._derived_for:
            return self._derived
        summary = turnaround(ev)
        m = metrics(ev)
        try:
            found = self._changes(m)
        except (ValueError, RuntimeError) as exc:  # the monitor never breaks the panel
            logger.warning("portal monitor: change points not computed: %s", exc)
            found = []
        self._derived = {"summary": summary, "metrics": m, "changes": found,
                         "turnaround_png": _png(plot_turnaround(summary))}
        self._derived_for = tag
        self._timeline_for = None
        return self._derived

    def _changes(self, m) -> list:
        """Change points of every metric stream (:func:`spotkit.monitor.find_changes`, in
        log space for durations, rates and sizes), with where and when they began and the
        stream's median before and after."""
        import dataclasses

        import numpy as np

        from spotkit.monitor import LOG_METRICS, find_changes

        out: list[Any] = []
        if not len(m):
            return out
        for (metric, beamline, target), g in m.groupby(["metric", "beamline", "target"],
                                                       dropna=False, sort=True):
            values = g["value"].to_numpy(dtype=float)
            times = g["time"].to_numpy(dtype=float)
            keep = np.isfinite(values)
            values, times = values[keep], times[keep]
            if values.size < 3:
                continue
            log = metric in LOG_METRICS and bool((values > 0).all())
            series = np.log(values) if log else values
            for f in find_changes(series, times, metric=str(metric), **self.change_options):
                i = int(f.detail.get("onset_index", np.searchsorted(times, f.time)))
                i = min(max(i, 0), values.size - 1)
                before = float(np.median(values[max(0, i - 20):i])) if i else float("nan")
                after = float(np.median(values[i:i + 20]))
                message = (f"{metric} at {_name(beamline)} / {_name(target)} changed: median "
                           f"{before:.3g} -> {after:.3g} from {_when(times[i])}")
                out.append(dataclasses.replace(
                    f, beamline=_name(beamline, None), target=_name(target, None),
                    onset=float(times[i]), message=message))
        return out

    def fetch(self) -> MonitorSnapshot:
        """One refresh (events, alerts, verdicts: one read each; nothing written).

        One refresh at a time: a second caller (the portal's thread and a click) waits."""
        with self._fetch_lock:
            return self._fetch()

    def _fetch(self) -> MonitorSnapshot:
        """See :meth:`fetch`."""
        from spotkit.monitor import alert_log, quality_verdicts

        if not hasattr(self.catalog, "path"):
            from spotkit.errors import SpotkitError

            raise SpotkitError(f"the telemetry is in the catalog database, which "
                               f"{self.catalog!r} does not give (a catalog served by `spotkit "
                               "serve`): open the catalog's SQLite file or postgresql:// URL")
        now = time.time()
        ev = self._read_events(now)
        d = self._derive(ev)
        alerts = alert_log(self.catalog, since=now - self.window)
        verdicts = quality_verdicts(self.catalog, since=now - self.window)
        streams = self._stream_rows(d["metrics"], d["changes"], alerts)
        keys = [s["stream"] for s in streams]
        stream = self.stream if self.stream in keys else (keys[0] if keys else None)
        png = self._timeline(d["metrics"], d["changes"], alerts, stream)
        changes = [{"when": _when(f.time), "onset": _when(f.onset), "metric": f.metric,
                    "beamline": f.beamline, "target": f.target, "severity": f.severity,
                    "message": f.message,
                    "stream": stream_key(f.metric, f.beamline, f.target)}
                   for f in sorted(d["changes"], key=lambda f: -f.time)]
        alert_rows = [{"when": _when(r.last_seen), "rule": r.rule, "kind": r.kind,
                       "metric": r.metric, "beamline": r.beamline, "target": r.target,
                       "severity": r.severity, "message": r.message,
                       "sent": _when(r.last_sent) if r.last_sent is not None else "waiting",
                       "sends": r.sends} for r in alerts.itertuples()]
        verdict_rows = [{"when": _when(r.checked_at), "dataset_id": r.dataset_id,
                         "kind": r.kind, "beamline": r.beamline, "verdict": r.verdict,
                         "references": r.n_references, "reasons": "; ".join(r.reasons)}
                        for r in verdicts.itertuples()]
        counts = {"fail": sum(1 for v in verdict_rows if v["verdict"] == "fail"),
                  "pass": sum(1 for v in verdict_rows if v["verdict"] == "pass"),
                  "changes": len(changes), "alerts": len(alert_rows)}
        rows = d["summary"]
        turn = [{"beamline": r.beamline, "target": r.target, "component": r.component,
                 "datasets": r.datasets, "median_s": r.median_s, "p90_s": r.p90_s,
                 "share": r.share} for r in rows.itertuples()]
        return MonitorSnapshot(now, self.window, len(ev), turn, d["turnaround_png"], streams,
                               stream, png, changes, alert_rows, verdict_rows, counts)

    @staticmethod
    def _stream_rows(m, changes, alerts) -> list[dict]:
        import numpy as np

        rows: list[dict] = []
        if not len(m):
            return rows
        n_changes: dict[str, int] = {}
        last_change: dict[str, float] = {}
        for f in changes:
            k = stream_key(f.metric, f.beamline, f.target)
            n_changes[k] = n_changes.get(k, 0) + 1
            last_change[k] = max(last_change.get(k, 0.0), f.onset or f.time)
        n_alerts: dict[str, int] = {}
        for r in alerts.itertuples():
            k = stream_key(r.metric, r.beamline, r.target)
            n_alerts[k] = n_alerts.get(k, 0) + 1
        groups = m.groupby(["metric", "beamline", "target"], dropna=False, sort=True)
        for (metric, beamline, target), g in groups:
            k = stream_key(metric, beamline, target)
            values = g["value"].to_numpy(dtype=float)
            rows.append({"stream": k, "metric": metric, "values": int(values.size),
                         "last": float(values[-1]), "median": float(np.nanmedian(values)),
                         "changes": n_changes.get(k, 0),
                         "last_change": _when(last_change.get(k)),
                         "alerts": n_alerts.get(k, 0)})
        rows.sort(key=lambda r: (-r["changes"], -r["alerts"], r["stream"]))
        return rows

    def _timeline(self, m, changes, alerts, stream: str | None) -> bytes:
        tag = (stream, self._derived_for, len(alerts))
        if tag == self._timeline_for:
            return self._timeline_png
        from matplotlib.figure import Figure

        from spotkit.monitor import LOG_METRICS

        fig = Figure(figsize=(8, 2.6), layout="constrained")
        ax = fig.subplots()
        if stream is None:
            ax.text(0.5, 0.5, "no metric recorded yet", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
        else:
            keys = [stream_key(*t) for t in zip(m["metric"], m["beamline"], m["target"],
                                                strict=True)]
            g = m[[k == stream for k in keys]]
            metric = str(g["metric"].iloc[0])
            t0 = time.time()
            hours = (g["time"].to_numpy(dtype=float) - t0) / 3600.0
            ax.plot(hours, g["value"].to_numpy(dtype=float), ".", ms=3, color="#0969da")
            if metric in LOG_METRICS and (g["value"] > 0).all():
                ax.set_yscale("log")
            for f in changes:
                if stream_key(f.metric, f.beamline, f.target) == stream:
                    ax.axvline(((f.onset or f.time) - t0) / 3600.0, color="#cf222e", lw=1.2)
            for r in alerts.itertuples():
                if stream_key(r.metric, r.beamline, r.target) == stream:
                    ax.axvline((r.first_seen - t0) / 3600.0, color="#9a6700", lw=1, ls="--")
            ax.set_xlabel("hours before now (red: change points; amber dashed: alerts)")
            ax.set_title(stream, fontsize=9)
        self._timeline_png = _png(fig)
        self._timeline_for = tag
        return self._timeline_png
