"""The portal's Monitor panel: turnaround, metric timelines with change points and alerts,
and quality verdicts.

:class:`MonitorPanel` shows :class:`~spotkit.widgets._portal_monitor_model.MonitorPanelModel`'s
snapshot: the turnaround breakdown (figure and table), the metric streams (one chosen
stream's timeline with its change points and alerts), the change points, the alerted
findings and the keep-up quality verdicts. Everything is read only, so the read-only view
shows the same. It follows the portal's panel protocol: :meth:`fetch` reads one query per
kind, :meth:`apply` only sets widget values (figures come as PNG bytes).
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from typing import Any

from spotkit.widgets._jobmonitor_model import format_seconds
from spotkit.widgets._portal_flow_parts import (
    AMBER,
    GREEN,
    RED,
    ModelPanel,
    html_table,
    ipywidgets,
    message_html,
    set_value,
)
from spotkit.widgets._portal_monitor_model import MonitorPanelModel, MonitorSnapshot

logger = logging.getLogger(__name__)

__all__ = ["MonitorPanel", "MonitorPanelModel", "summary_html"]

_TURN_COLUMNS = (("beamline", "beamline"), ("target", "target"), ("component", "part"),
                 ("datasets", "datasets"), ("median", "median"), ("p90", "p90"),
                 ("share", "share"))
_STREAM_COLUMNS = (("stream", "metric | beamline | target"), ("values", "values"),
                   ("last", "last"), ("median", "median"), ("changes", "changes"),
                   ("last_change", "last change"), ("alerts", "alerts"))
_CHANGE_COLUMNS = (("when", "found"), ("onset", "onset"), ("stream", "stream"),
                   ("severity", "severity"), ("message", "message"))
_ALERT_COLUMNS = (("when", "last seen"), ("rule", "rule"), ("kind", "kind"),
                  ("metric", "metric"), ("beamline", "beamline"), ("severity", "severity"),
                  ("message", "message"), ("sent", "sent"), ("sends", "messages"))
_VERDICT_COLUMNS = (("when", "checked"), ("dataset_id", "dataset"), ("kind", "kind"),
                    ("beamline", "beamline"), ("verdict", "verdict"),
                    ("references", "refs"), ("reasons", "reasons"))
_VERDICT_COLOURS = {"fail": RED, "pass": GREEN, "no reference": AMBER}
_SEVERITY_COLOURS = {"critical": RED, "warning": AMBER}


def _number(value: float) -> str:
    if value != value:  # NaN
        return "–"
    return f"{value:.3g}"


def summary_html(snap: MonitorSnapshot) -> str:
    """The panel's first line: what was read, and the counts that need a look."""
    c = snap.counts
    days = snap.window / 86400.0
    text = (f"{snap.events} events in the last {days:g} d; {c.get('changes', 0)} change "
            f"point(s), {c.get('alerts', 0)} alerted finding(s), ")
    fails = c.get("fail", 0)
    text += (f'<span style="color:{RED};font-weight:600">{fails} failed quality '
             "verdict(s)</span>" if fails else "no failed quality verdict")
    stamp = time.strftime("%H:%M:%S", time.localtime(snap.at))
    return f'<span class="spotkit-monitor-summary">{text} &middot; read {stamp}</span>'


class MonitorPanel(ModelPanel):
    """The portal's Monitor tab (read only in every view).

    Parameters
    ----------
    catalog : Catalog
    readonly : bool
        Accepted for the protocol; the panel has no action.
    on_select : callable, optional
        ``on_select(dataset_id)``: the portal's selection (a verdict's dataset).
    request_refresh : callable, optional
        Asks the portal to refresh this panel now (a stream chosen); the portal sets it.
    window, reread, changes
        See :class:`MonitorPanelModel`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> panel = MonitorPanel(cat)
    >>> panel.apply(panel.fetch())
    >>> "0 events" in panel.summary.value
    True
    >>> panel.close(); cat.close()
    """

    title = "Monitor"
    _worker_name = "spotkit-monitor-panel"

    def __init__(self, catalog: Any, *, readonly: bool = False,
                 on_select: Callable[[str], None] | None = None,
                 request_refresh: Callable[[], Any] | None = None, **options: Any):
        super().__init__(MonitorPanelModel(catalog, **options), readonly=readonly,
                         on_select=on_select, request_refresh=request_refresh)
        self._last: MonitorSnapshot | None = None
        self._dataset: str | None = None

    # -- protocol ---------------------------------------------------------------------

    def fetch(self) -> MonitorSnapshot:
        """Events, alerts, verdicts: one read each (nothing written)."""
        return self.model.fetch()

    def apply(self, snap: MonitorSnapshot) -> None:
        """Show a snapshot (widgets only)."""
        self.widget  # noqa: B018 - built on first use
        self._last = snap
        set_value(self.summary, summary_html(snap))
        set_value(self.turnaround_image, snap.turnaround_png)
        turn = [{**r, "median": format_seconds(r["median_s"]),
                 "p90": format_seconds(r["p90_s"]),
                 "share": "–" if r["share"] != r["share"] else f"{r['share']:.0%}"}
                for r in snap.turnaround]
        set_value(self.turnaround_table, html_table(
            turn, _TURN_COLUMNS, css="spotkit-monitor-turnaround",
            empty="no turnaround recorded yet (telemetry of the flow)"))
        streams = [{**s, "last": _number(s["last"]), "median": _number(s["median"])}
                   for s in snap.streams]
        set_value(self.streams, html_table(
            streams, _STREAM_COLUMNS, css="spotkit-monitor-streams",
            colours={"changes": RED, "alerts": AMBER}, empty="no metric recorded yet"))
        keys = [s["stream"] for s in snap.streams]
        if list(self.stream.options) != keys:
            self.stream.options = keys
        if snap.stream is not None and self.stream.value != snap.stream:
            self.stream.value = snap.stream
        set_value(self.timeline, snap.timeline_png)
        severity = lambda row, col: (_SEVERITY_COLOURS.get(row["severity"])  # noqa: E731
                                     if col == "severity" else None)
        set_value(self.changes, html_table(snap.changes, _CHANGE_COLUMNS, limit=140,
                                           css="spotkit-monitor-changes", colour=severity,
                                           empty="no change point in the window"))
        set_value(self.alerts, html_table(snap.alerts, _ALERT_COLUMNS, limit=140,
                                          css="spotkit-monitor-alerts", colour=severity,
                                          empty="no alerted finding in the window"))
        verdict = lambda row, col: (_VERDICT_COLOURS.get(row["verdict"])  # noqa: E731
                                    if col == "verdict" else None)
        set_value(self.verdicts, html_table(snap.verdicts, _VERDICT_COLUMNS, limit=140,
                                            css="spotkit-monitor-verdicts", colour=verdict,
                                            empty="no quality verdict in the window"))
        self._show_selected()

    @property
    def snapshot(self) -> MonitorSnapshot | None:
        """What the panel shows now (the last snapshot applied), or None."""
        return self._last

    def show_dataset(self, dataset_id: str) -> None:
        """The portal's selection: its quality verdict, if it has one, is shown."""
        self._dataset = dataset_id
        if self._widget is not None:
            self._show_selected()

    def __repr__(self) -> str:
        return "<MonitorPanel>"

    # -- building -----------------------------------------------------------------------

    def _build(self) -> None:
        w = ipywidgets("MonitorPanel")
        wide = w.Layout(width="100%", overflow="auto")
        self.summary = w.HTML()
        self.turnaround_image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.turnaround_table = w.HTML(layout=wide)
        self.streams = w.HTML(layout=wide)
        self.stream = w.Dropdown(description="timeline", options=[],
                                 layout=w.Layout(width="100%", max_width="40em"))
        self.stream.observe(self._stream_chosen, names="value")
        self.timeline = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.changes = w.HTML(layout=wide)
        self.alerts = w.HTML(layout=wide)
        self.verdicts = w.HTML(layout=wide)
        self.selected = w.HTML()
        self.message = w.HTML()
        heading = lambda text: w.HTML(f"<b>{html.escape(text)}</b>")  # noqa: E731
        self._parts: list[Any] = [self.summary, self.turnaround_image, self.turnaround_table,
                                  self.streams, self.stream, self.timeline, self.changes,
                                  self.alerts, self.verdicts, self.selected, self.message]
        self._widget = w.VBox([
            self.summary, heading("Turnaround"), self.turnaround_image, self.turnaround_table,
            heading("Metric streams"), self.streams, self.stream, self.timeline,
            heading("Change points"), self.changes, heading("Alerts"), self.alerts,
            heading("Quality verdicts"), self.selected, self.verdicts, self.message,
        ], layout=w.Layout(width="100%"))
        self._widget.add_class("spotkit-monitor-panel")

    def _show_selected(self) -> None:
        text = ""
        if self._dataset and self._last is not None:
            mine = [v for v in self._last.verdicts if v["dataset_id"] == self._dataset]
            if mine:
                v = mine[0]
                colour = _VERDICT_COLOURS.get(v["verdict"], "")
                text = (f"{html.escape(self._dataset)}: <span style=\"color:{colour};"
                        f"font-weight:600\">{html.escape(v['verdict'])}</span> "
                        f"{html.escape(v['reasons'])}")
            else:
                text = f"{html.escape(self._dataset)}: no quality verdict"
        set_value(self.selected, text)

    # -- choosing a stream ----------------------------------------------------------------

    def _stream_chosen(self, change: dict) -> None:
        if change["new"] is None or change["new"] == self.model.stream or (
                self._last is not None and change["new"] == self._last.stream):
            return
        self.model.select_stream(change["new"])
        if self.request_refresh is not None:  # in the portal: its thread reads
            self.request_refresh()
            return

        def done(snap: Any, exc: BaseException | None) -> None:
            if exc is not None:
                set_value(self.message, message_html(f"{type(exc).__name__}: {exc}",
                                                     error=True))
            else:
                self.apply(snap)

        self.worker.run(self.model.fetch, done)
