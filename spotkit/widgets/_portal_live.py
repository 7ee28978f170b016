"""The portal's Live panel: the series ``spotkit live`` follows, and one opened live.

:class:`LivePanel` lists :class:`~spotkit.widgets._portal_live_model.LivePanelModel`'s rows
(state, frames done of written, how far behind, rate, latency; a follower whose status
stopped coming is marked) and opens the chosen series in a
:class:`~spotkit.widgets.LiveTimeline` below the table. It follows the portal's panel
protocol: :meth:`fetch` reads the series (one query), :meth:`apply` only sets widget
values. The opened timeline polls its series on its own daemon thread every
``timeline_refresh`` seconds (a live series wants redrawing faster than the portal's
refresh); it is read only, so the read-only view shows it too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from spotkit.widgets._portal_flow_parts import (
    AMBER,
    RED,
    ModelPanel,
    html_table,
    ipywidgets,
    message_html,
    set_value,
)
from spotkit.widgets._portal_live_model import LivePanelModel, LiveSnapshot

logger = logging.getLogger(__name__)

__all__ = ["LivePanel", "LivePanelModel"]

_COLUMNS = (("dataset_id", "series"), ("beamline", "beamline"), ("sample", "sample"),
            ("state", "state"), ("frames", "done / written"),
            ("behind", "behind"), ("rate", "rate"), ("latency", "latency"),
            ("seen", "status"), ("path", "path"))


def _seen(row: dict) -> str:
    age = row["age"]
    if age != age:  # NaN
        return "–"
    text = f"{age:.0f} s ago"
    return f"{text} (no news: follower gone?)" if row["stale"] else text


class LivePanel(ModelPanel):
    """The portal's Live tab: live series, and the chosen one's timeline.

    Parameters
    ----------
    catalog : Catalog
    readonly : bool
        Accepted for the protocol; the panel only reads.
    on_select : callable, optional
        ``on_select(dataset_id)``: the portal's selection (set when a series is opened).
    request_refresh : callable, optional
        Asks the portal to refresh this panel now; the portal sets it.
    active : bool
        Only series being followed now (a checkbox changes it).
    timeline_refresh : float
        Seconds between two polls of the opened timeline.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> panel = LivePanel(cat)
    >>> panel.apply(panel.fetch())
    >>> "no live series" in panel.summary.value
    True
    >>> panel.close(); cat.close()
    """

    title = "Live"
    _worker_name = "spotkit-live-panel"

    def __init__(self, catalog: Any, *, readonly: bool = False,
                 on_select: Callable[[str], None] | None = None,
                 request_refresh: Callable[[], Any] | None = None, active: bool = True,
                 timeline_refresh: float = 1.0):
        super().__init__(LivePanelModel(catalog, active=active), readonly=readonly,
                         on_select=on_select, request_refresh=request_refresh)
        if not timeline_refresh > 0:
            raise ValueError(f"timeline_refresh must be > 0 seconds, got {timeline_refresh!r}")
        self.catalog = catalog
        self.timeline_refresh = float(timeline_refresh)
        self.timeline: Any = None  # the opened LiveTimeline
        self._last: LiveSnapshot | None = None

    # -- protocol ---------------------------------------------------------------------

    def fetch(self) -> LiveSnapshot:
        """The live series (one query; nothing written)."""
        return self.model.fetch()

    def apply(self, snap: LiveSnapshot) -> None:
        """Show a snapshot (widgets only)."""
        self.widget  # noqa: B018 - built on first use
        self._last = snap
        rows = [{**r, "seen": _seen(r), "behind": "–" if r["behind"] is None else r["behind"]}
                for r in snap.rows]
        n_behind = sum(1 for r in snap.rows if (r["behind"] or 0) > 0)
        n_stale = sum(1 for r in snap.rows if r["stale"])
        text = (f"{len(rows)} {'live' if snap.active else ''} series".replace("  ", " ")
                if rows else ("no live series: start one with `spotkit live PATH`"
                              if snap.active else "no series was ever followed live"))
        if n_behind:
            text += f' · <span style="color:{AMBER}">{n_behind} behind</span>'
        if n_stale:
            text += f' · <span style="color:{RED}">{n_stale} without news</span>'
        set_value(self.summary, text)

        def colour(row: dict, col: str) -> str | None:
            if col == "behind" and row["behind"] not in ("–", 0):
                return AMBER
            if col == "seen" and row["stale"]:
                return RED
            if col == "state" and row["state"] == "failed":
                return RED
            return None

        set_value(self.table, html_table(rows, _COLUMNS, css="spotkit-live-series",
                                         colour=colour, empty="(none)"))
        ids = [r["dataset_id"] for r in snap.rows]
        if self.timeline is not None and self.timeline.model.dataset_id not in ids:
            ids.append(self.timeline.model.dataset_id)  # keep the open one choosable
        if list(self.series.options) != ids:
            current = self.series.value
            self.series.options = ids
            self.series.value = current if current in ids else (ids[0] if ids else None)
        self.open_button.disabled = not ids

    @property
    def snapshot(self) -> LiveSnapshot | None:
        """What the panel shows now (the last snapshot applied), or None."""
        return self._last

    def show_dataset(self, dataset_id: str) -> None:
        """The portal's selection: a live series is opened (also when the finished file's
        own dataset is selected); other datasets are left alone."""
        if self._last is None:
            return
        for row in self._last.rows:
            if dataset_id in (row["dataset_id"], row["ingested_as"]):
                self.open(row["dataset_id"], select=False)
                return

    def open(self, dataset_id: str | None = None, *, select: bool = True) -> Any:
        """Open a series (default: the one chosen) in a LiveTimeline below the table;
        ``select``: make it the portal's selection too (``on_select``).

        Returns
        -------
        LiveTimeline
        """
        from spotkit.widgets._live_timeline import LiveTimeline

        self.widget  # noqa: B018 - built on first use
        dataset_id = dataset_id or self.series.value
        if not dataset_id:
            raise ValueError("no live series to open: choose one in the list")
        if self.timeline is not None:
            if self.timeline.model.dataset_id == dataset_id:
                return self.timeline  # already open (the portal's selection came back)
            self.timeline.close()
            self.timeline = None
        self.timeline = LiveTimeline(self.catalog, dataset_id, refresh=self.timeline_refresh)
        self.holder.children = (self.timeline.widget,)
        set_value(self.message, message_html(f"following {dataset_id}"))
        if select and self.on_select is not None:
            self.on_select(dataset_id)
        return self.timeline

    def close(self) -> None:
        """Stop the opened timeline and close the widgets."""
        if self.timeline is not None:
            self.timeline.close()
            self.timeline = None
        super().close()

    def __repr__(self) -> str:
        return "<LivePanel>"

    # -- building -----------------------------------------------------------------------

    def _build(self) -> None:
        w = ipywidgets("LivePanel")
        self.summary = w.HTML()
        self.table = w.HTML(layout=w.Layout(width="100%", overflow="auto"))
        self.active = w.Checkbox(value=self.model.active, description="only active",
                                 indent=False, layout=w.Layout(width="auto"))
        self.active.observe(self._active_changed, names="value")
        self.series = w.Dropdown(description="series", options=[],
                                 layout=w.Layout(width="100%", max_width="40em"))
        self.open_button = w.Button(description="Open timeline", icon="line-chart",
                                    tooltip="follow this series live below",
                                    layout=w.Layout(width="auto"), disabled=True)
        self.open_button.on_click(lambda _: self._open_clicked())
        self.message = w.HTML()
        self.holder = w.VBox([], layout=w.Layout(width="100%"))
        self._parts = [self.summary, self.table, self.active, self.series, self.open_button,
                       self.message, self.holder]
        self._widget = w.VBox([
            self.summary, self.table,
            w.HBox([self.series, self.open_button, self.active],
                   layout=w.Layout(align_items="center")),
            self.message, self.holder,
        ], layout=w.Layout(width="100%"))
        self._widget.add_class("spotkit-live-panel")

    def _open_clicked(self) -> None:
        try:
            self.open()
        except Exception as exc:  # shown, never raised into the event loop
            logger.info("live panel: cannot open: %s", exc)
            set_value(self.message, message_html(f"{type(exc).__name__}: {exc}", error=True))

    def _active_changed(self, change: dict) -> None:
        self.model.active = bool(change["new"])
        if self.request_refresh is not None:
            self.request_refresh()
            return

        def done(snap: Any, exc: BaseException | None) -> None:
            if exc is not None:
                set_value(self.message, message_html(f"{type(exc).__name__}: {exc}",
                                                     error=True))
            else:
                self.apply(snap)

        self.worker.run(self.model.fetch, done)

