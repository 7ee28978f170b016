"""The portal: one JupyterLab dashboard over the catalog, the flow, the jobs and the monitor.

:class:`Portal` is a shell: a header (the catalog, the refresh state, errors, the selected
dataset) over one tab per panel. The panels (``DataPanel``, ``ViewerPanel``, ``FlowPanel``,
``JobsPanel``, ``MonitorPanel``) follow one small protocol::

    class XxxPanel:
        title: str                              # the tab's title
        def __init__(self, catalog, *, readonly=False, **options): ...
        widget                                  # the panel's ipywidgets view
        def fetch(self) -> object: ...          # all I/O, in the refresh thread
        def apply(self, snapshot) -> None: ...  # widgets only, no I/O
        def close(self) -> None: ...
        def show_dataset(self, dataset_id): ... # optional: the portal's selection

A panel that has a ``request_refresh`` attribute set to None is given a callable that asks
the portal to refresh it now (e.g. after a search or an action), in the portal's thread.

The portal runs every panel's ``fetch`` in one background thread and hands each snapshot
to that panel's ``apply`` as soon as it is fetched
(:class:`~spotkit.widgets._portal_app_refresh.PortalRefresher`); a panel whose fetch fails
keeps its data under an error line, and the others go on. Panels talk to each other only
through :meth:`Portal.select`: each gets ``on_select=portal.select`` among its options.
"""

from __future__ import annotations

import html
import importlib
import logging
import threading
import warnings
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from spotkit.errors import SpotkitError
from spotkit.widgets._portal_app_layout import (
    PORTAL_CSS,
    banner_html,
    header_html,
    short_catalog,
)
from spotkit.widgets._portal_app_refresh import PortalRefresher

logger = logging.getLogger(__name__)

__all__ = ["PANELS", "Portal", "PortalPanelWarning", "portal"]

_LAB_EXTRA = 'pip install "spotkit[lab]"'

#: The portal's panels by name, in tab order: name -> "module:class".
PANELS = {
    "data": "spotkit.widgets._portal_data:DataPanel",
    "viewers": "spotkit.widgets._portal_viewers:ViewerPanel",
    "flow": "spotkit.widgets._portal_flow:FlowPanel",
    "jobs": "spotkit.widgets._portal_jobs:JobsPanel",
    "monitor": "spotkit.widgets._portal_monitor:MonitorPanel",
    "live": "spotkit.widgets._portal_live:LivePanel",
}

_PROTOCOL = ("title", "widget", "fetch", "apply", "close")


class PortalPanelWarning(UserWarning):
    """A default panel could not be loaded or made: the portal opens without it."""


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError(f"spotkit.portal needs ipywidgets; install it with {_LAB_EXTRA}"
                          ) from exc
    return ipywidgets


def _panel_class(name: str) -> type:
    if name not in PANELS:
        raise ValueError(f"unknown portal panel {name!r}; choose among {list(PANELS)} or "
                         "give a panel class or object")
    module, _, cls = PANELS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def _check_protocol(panel: Any) -> Any:
    missing = [attr for attr in _PROTOCOL if not hasattr(type(panel), attr)
               and not hasattr(panel, attr)]
    if missing:
        raise TypeError(f"{panel!r} is not a portal panel: it lacks {', '.join(missing)} "
                        "(see spotkit.widgets.Portal for the panel protocol)")
    return panel


def _where(catalog: Any) -> str:
    for attr in ("url", "uri", "path"):
        value = getattr(catalog, attr, None)
        if value:
            return str(value)
    return repr(catalog)


class Portal:
    """One dashboard: a header over one tab per panel, refreshed in the background.

    Every panel's ``fetch`` (its I/O: at most one catalog query per refresh) runs in one
    background thread, one at a time; each snapshot is applied to its panel's widgets as
    soon as it is fetched, so cells run meanwhile and a slow panel holds no other panel
    back (it is fetched less often: it waits at least as long as its fetch took). A panel
    whose fetch fails keeps its last data under a red line saying why, and is tried again
    after a growing pause (2, 4, 8 ... refresh intervals, at most 5 minutes). The tab on
    screen is refreshed first, and at once when it is chosen.

    Parameters
    ----------
    catalog : Catalog or path-like or str, optional
        An open catalog (``spotkit.open_catalog(...)``: SQLite, PostgreSQL or a
        ``spotkit serve``), or where to open one (a file or a ``postgresql://`` URL);
        default: ``$SPOTKIT_CATALOG`` or the spotkit home's catalog. A path must exist.
    readonly : bool
        The read-only view (``spotkit portal --serve``): no action buttons at all, in the
        portal or its panels.
    refresh : float
        Seconds between two refreshes of a panel.
    panels : sequence, optional
        Panel names (keys of :data:`PANELS`), panel classes (made with ``(catalog,
        readonly=..., on_select=...)``), ``(name or class, {options})`` pairs (the panel's
        own options, e.g. ``("jobs", {"targets": [Slurm()]})``) or panel objects; default:
        every panel of
        :data:`PANELS` that can be loaded (one that cannot is left out with a
        :class:`PortalPanelWarning` and named in the header).
    autostart : bool
        Start refreshing at once (else call :meth:`start` or :meth:`refresh`).
    close_catalog : bool, optional
        Close the catalog in :meth:`close`; default: only if the portal opened it.

    Attributes
    ----------
    catalog
        The catalog the panels read.
    panels : list
        The panels, in tab order.
    widget : ipywidgets.AppLayout
        The whole display (header and tabs).
    refresher : PortalRefresher
        The background refresh (its ``states`` say how each panel fares).
    selected : str or None
        The dataset selected last (:meth:`select`).

    Examples
    --------
    A portal over a new catalog with one small panel of our own (the standard panels are
    made the same way, from the catalog):

    >>> import pathlib, tempfile
    >>> import ipywidgets
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.widgets import Portal
    >>> class Count:
    ...     title = "Count"
    ...     def __init__(self, catalog, *, readonly=False, **options):
    ...         self.catalog, self.widget = catalog, ipywidgets.HTML()
    ...     def fetch(self): return len(self.catalog)          # I/O, in the thread
    ...     def apply(self, n): self.widget.value = f"{n} datasets"
    ...     def close(self): self.widget.close()
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> portal = Portal(cat, panels=[Count], refresh=1.0)
    >>> portal.wait(timeout=30)          # every panel shown once
    True
    >>> portal.panels[0].widget.value
    '0 datasets'
    >>> portal                           # displays the dashboard  # doctest: +SKIP
    >>> portal.close()
    >>> cat.close()
    """

    def __init__(self, catalog: Any = None, *, readonly: bool = False, refresh: float = 5.0,
                 panels: Sequence[Any] | None = None, autostart: bool = True,
                 close_catalog: bool | None = None):
        widgets = _ipywidgets()
        self._w = widgets
        self.readonly = bool(readonly)
        self._lock = threading.RLock()
        self._closed = False
        self._message: str | None = None
        self.selected: str | None = None
        self.missing: dict[str, str] = {}
        opened = catalog is None or not hasattr(catalog, "search")
        if opened:
            from spotkit.catalog import open_catalog

            catalog = open_catalog(catalog, create=False)
        self.catalog = catalog
        self._close_catalog = opened if close_catalog is None else bool(close_catalog)
        try:
            self.panels = self._make_panels(panels)
            self._connect(self.panels)
            self.refresher = PortalRefresher(
                self.panels, refresh, apply=self._apply, on_error=self._show_error,
                on_change=self._render_header, priority=self._rank)
            self._build()
        except BaseException:
            self._close_made()
            raise
        self._render_header()
        if autostart:
            self.start()

    # -- panels ---------------------------------------------------------------------------

    def _make_panels(self, panels: Sequence[Any] | None) -> list[Any]:
        options = {"readonly": self.readonly, "on_select": self.select}
        made: list[Any] = []
        if panels is None:
            for name in PANELS:
                try:
                    made.append(_check_protocol(_panel_class(name)(self.catalog, **options)))
                except Exception as exc:  # a broken panel warns, it does not crash
                    why = f"{type(exc).__name__}: {exc}"
                    self.missing[name] = why
                    warnings.warn(f"the portal opens without its {name!r} panel: {why}",
                                  PortalPanelWarning, stacklevel=3)
            return made
        if isinstance(panels, str) or not isinstance(panels, Iterable):
            raise TypeError("panels must be a list of panel names, classes or objects, "
                            f"not {panels!r}")
        try:
            for item in panels:
                extra: dict[str, Any] = {}
                if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
                    item, extra = item  # (name or class, the panel's own options)
                if isinstance(item, str):
                    item = _panel_class(item)
                if isinstance(item, type):
                    made.append(_check_protocol(item(self.catalog, **options, **extra)))
                elif extra:
                    raise TypeError(f"options are for panel names or classes, not for the "
                                    f"panel object {item!r}")
                else:
                    made.append(_check_protocol(item))
        except BaseException:
            for panel in made:
                panel.close()
            raise
        if not made:
            raise ValueError("panels is empty: give at least one panel (or None for all)")
        return made

    def _connect(self, panels: list[Any]) -> None:
        """Give each panel with a ``request_refresh`` attribute left None a callable that
        asks the portal to refresh that panel now (after a search or an action)."""
        for panel in panels:
            if getattr(panel, "request_refresh", False) is None:
                panel.request_refresh = (lambda p=panel: self._request_refresh(p))

    def _request_refresh(self, panel: Any) -> None:
        refresher = getattr(self, "refresher", None)
        if refresher is None or self._closed:
            return
        if refresher.running:
            refresher.wake(panel)
        else:  # paused or not started: refresh it at once, here
            refresher.refresh(panel)

    def panel(self, name: str) -> Any:
        """The panel whose title or class name is ``name`` (case-insensitive)."""
        key = name.lower()
        for p in self.panels:
            if key in (str(p.title).lower(), type(p).__name__.lower()):
                return p
        raise KeyError(f"no panel {name!r}; the portal has "
                       f"{[str(p.title) for p in self.panels]}")

    # -- building -------------------------------------------------------------------------

    def _build(self) -> None:
        w = self._w
        self._css = w.HTML(PORTAL_CSS, layout=w.Layout(display="none"))
        title = w.HTML("<b>spotkit portal</b>")
        title.add_class("spotkit-portal-title")
        self.status = w.HTML()
        self.status.add_class("spotkit-portal-state")
        parts = [self._css, title, self.status]
        self.refresh_button = None
        if not self.readonly:  # the read-only view has no buttons at all
            button = w.Button(description="Refresh", icon="refresh",
                              tooltip="refresh every panel now",
                              layout=w.Layout(width="auto"))
            button.add_class("spotkit-portal-refresh")
            button.on_click(lambda _: self.refresher.wake())
            self.refresh_button = button
            parts.append(button)
        self.header = w.HBox(parts, layout=w.Layout(width="100%"))
        self.header.add_class("spotkit-portal-header")
        self.banners = []
        pages = []
        for panel in self.panels:
            banner = w.HTML(layout=w.Layout(display="none"))
            banner.add_class("spotkit-portal-banner-line")
            self.banners.append(banner)
            page = w.VBox([banner, panel.widget], layout=w.Layout(width="100%"))
            page.add_class("spotkit-portal-page")
            page.add_class(f"spotkit-portal-page-{type(panel).__name__.lower()}")
            pages.append(page)
        self.tabs = w.Tab(children=pages, layout=w.Layout(width="100%"))
        for i, panel in enumerate(self.panels):
            self.tabs.set_title(i, str(panel.title))
        self.tabs.add_class("spotkit-portal-tabs")
        self.tabs.observe(self._tab_chosen, names="selected_index")
        self.widget = w.AppLayout(header=self.header, center=self.tabs,
                                  layout=w.Layout(width="100%"))
        # rows as tall as their content (AppLayout's pane_heights take only px or fr)
        self.widget.layout.grid_template_rows = "auto auto"
        self.widget.add_class("spotkit-portal")
        if self.readonly:
            self.widget.add_class("spotkit-portal-readonly")

    def _tab_chosen(self, change: dict) -> None:
        index = change.get("new")
        if isinstance(index, int) and 0 <= index < len(self.panels):
            self.refresher.wake(self.panels[index])

    def _rank(self, panel: Any) -> int:
        index = self.tabs.selected_index if hasattr(self, "tabs") else 0
        return 0 if index is not None and self.panels[index] is panel else 1

    # -- refresh callbacks (refresh thread) -------------------------------------------------

    def _apply(self, panel: Any, snapshot: Any) -> None:
        with self._lock:
            if self._closed:
                return
            panel.apply(snapshot)
            banner = self.banners[self.panels.index(panel)]
            if banner.layout.display != "none":
                banner.layout.display = "none"
                banner.value = ""

    def _show_error(self, panel: Any, text: str) -> None:
        with self._lock:
            if self._closed:
                return
            banner = self.banners[self.panels.index(panel)]
            banner.value = banner_html(self.refresher.state(panel))
            banner.layout.display = "block"

    def _render_header(self) -> None:
        with self._lock:
            if self._closed or not hasattr(self, "status"):
                return
            refresher = self.refresher
            busy = None
            for panel in self.panels:
                state = refresher.state(panel)
                if state.busy_since is not None and (state.applied == 0
                                                     or (state.seconds or 0.0) >= 1.0):
                    busy = (state.title, datetime.now(UTC))
            message = self._message
            if self.missing:
                gone = "; ".join(f"{k}: {v}" for k, v in self.missing.items())
                message = f"left out: {gone}" + (f" · {message}" if message else "")
            text = header_html(
                catalog=short_catalog(_where(self.catalog)),
                states=[refresher.state(p) for p in self.panels],
                interval=refresher.interval, running=refresher.running,
                closed=refresher.closed, readonly=self.readonly, busy=busy,
                selected=self.selected, message=message)
            if self.status.value != text:
                self.status.value = text

    # -- selection --------------------------------------------------------------------------

    def select(self, dataset_id: str, *, tab: str | None = None) -> None:
        """Show dataset ``dataset_id`` in every panel that shows datasets.

        Calls each panel's ``show_dataset(dataset_id)`` (panels without one are skipped),
        then refreshes the panels soon. A panel that fails shows why in its error line;
        the others still follow. Panels ask for a selection through the ``on_select``
        option they were given (this method).

        Parameters
        ----------
        dataset_id : str
            A catalog dataset id.
        tab : str, optional
            Also bring this panel's tab forward (its title or class name).
        """
        if not isinstance(dataset_id, str) or not dataset_id.strip():
            raise ValueError(f"dataset_id must be a dataset id (a non-empty string), "
                             f"not {dataset_id!r}")
        target = self.panel(tab) if tab is not None else None
        failed = []
        with self._lock:
            if self._closed:
                return
            self.selected = dataset_id
            for panel in self.panels:
                show = getattr(panel, "show_dataset", None)
                if show is None:
                    continue
                try:
                    show(dataset_id)
                except Exception as exc:  # one panel's failure does not stop the others
                    logger.warning("portal: %s cannot show %s: %s", panel.title, dataset_id,
                                   exc)
                    failed.append(f"{panel.title}: {type(exc).__name__}: {exc}")
            self._message = (f"cannot show {dataset_id} in " + "; ".join(failed)
                             if failed else None)
            if target is not None:
                self.tabs.selected_index = self.panels.index(target)
        self._render_header()
        self.refresher.wake()

    def show(self, tab: str) -> None:
        """Bring the tab of panel ``tab`` (its title or class name) forward."""
        self.tabs.selected_index = self.panels.index(self.panel(tab))

    # -- refreshing -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fetch and apply every panel now, in the calling thread (blocks the kernel
        while it runs; the background refresh does not)."""
        self.refresher.refresh()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every panel has been fetched at least once (shown, or failed).

        Returns
        -------
        bool
            False if ``timeout`` seconds passed first.
        """
        states = [self.refresher.state(p) for p in self.panels]
        return self.refresher.wait(lambda: all(s.fetches > 0 for s in states), timeout)

    @property
    def interval(self) -> float:
        """Seconds between refreshes (settable)."""
        return self.refresher.interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        self.refresher.interval = seconds
        self._render_header()

    @property
    def running(self) -> bool:
        """The refresh thread runs."""
        return self.refresher.running

    def start(self) -> None:
        """Start refreshing in the background (or refresh now if it runs)."""
        if self._closed:
            raise SpotkitError("this portal is closed; make a new one with spotkit.portal()")
        self.refresher.start()
        self._render_header()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Pause refreshing (the panels keep what they show); :meth:`start` resumes."""
        self.refresher.stop(timeout)
        self._render_header()

    def close(self) -> None:
        """Stop refreshing, close every panel and widget (and the catalog if the portal
        opened it). Calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # from now on nothing is applied
        # a fetch in progress is not interrupted; its result is dropped
        self.refresher.close(timeout=2.0)
        self.status.value = header_html(
            catalog=short_catalog(_where(self.catalog)), states=[], interval=self.interval,
            running=False, closed=True, readonly=self.readonly)
        self._close_made()

    def _close_made(self) -> None:
        with self._lock:
            self._closed = True
        for panel in getattr(self, "panels", []):
            try:
                panel.close()
            except Exception:  # close the others anyway
                logger.exception("portal: closing %s failed", getattr(panel, "title", panel))
        for name in ("widget", "tabs", "header", "status", "refresh_button", "_css"):
            part = getattr(self, name, None)
            if part is not None:
                part.close()
        for banner in getattr(self, "banners", []):
            banner.close()
        if self._close_catalog and self.catalog is not None:
            try:
                self.catalog.close()
            except Exception:  # the portal is closed either way
                logger.exception("portal: closing the catalog failed")

    def __enter__(self) -> Portal:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- display ----------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        if self._closed:  # its widgets are gone: say so in words
            return {"text/plain": repr(self)}
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        titles = ", ".join(html.unescape(str(p.title)) for p in self.panels)
        state = ("closed" if self._closed else "refreshing" if self.running else "paused")
        return f"<Portal {_where(self.catalog)}: {titles}; {state}>"


def portal(catalog: Any = None, *, readonly: bool = False, refresh: float = 5.0,
           panels: Sequence[Any] | None = None) -> Portal:
    """Open the portal: browse, inspect, watch and act on the catalog from JupyterLab.

    Tabs: Data (search and inspect datasets), Viewers (slices, I(q), centre), Flow (the
    watcher's rules and parked items), Jobs (batch jobs), Monitor (turnaround, metrics,
    quality) and Live (the series ``spotkit live`` follows, each with its live timeline),
    refreshed every ``refresh`` seconds in the background. See :class:`Portal`.

    Parameters
    ----------
    catalog : Catalog or path-like or str, optional
        An open catalog or where it is; default ``$SPOTKIT_CATALOG`` or the spotkit home's.
    readonly : bool
        No action buttons (the view ``spotkit portal --serve`` shows).
    refresh : float
        Seconds between refreshes.
    panels : sequence, optional
        Panel names, classes or objects; default every panel.

    Returns
    -------
    Portal
        Display it as a cell's last expression.

    Examples
    --------
    >>> import spotkit
    >>> spotkit.portal("spotkit-demo/catalog.db")        # doctest: +SKIP
    """
    return Portal(catalog, readonly=readonly, refresh=refresh, panels=panels)
