"""What the portal draws besides its panels: the header text and the page's CSS.

Plain functions over plain values (no ipywidgets): the header is HTML built from the
refresher's :class:`~spotkit.widgets._portal_app_refresh.PanelState` objects, so it is
tested without a browser. The CSS lays the portal out for a narrow screen (a phone, in the
read-only Voila view) below :data:`NARROW_PX` pixels.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime

from spotkit.widgets._jobmonitor_model import OUTCOME_COLOURS
from spotkit.widgets._portal_app_refresh import PanelState

__all__ = ["NARROW_PX", "PORTAL_CSS", "banner_html", "header_html", "short_catalog"]

#: Below this width (CSS pixels) the portal uses its narrow-screen layout.
NARROW_PX = 600

_RED = OUTCOME_COLOURS["failed"]

#: Loaded once per portal (an ``HTML`` widget holding a ``<style>``): a full-width header
#: that wraps, tabs that wrap instead of scrolling sideways, and on a narrow screen smaller
#: paddings, rows of controls that wrap, tables (grids) that scroll sideways inside their
#: panel, and nothing wider than the screen.
PORTAL_CSS = f"""<style>
.spotkit-portal {{ width: 100%; box-sizing: border-box; }}
.spotkit-portal-header {{ display: flex; flex-wrap: wrap; align-items: center;
  gap: 4px 12px; padding: 4px 2px; border-bottom: 1px solid #d0d7de; }}
.spotkit-portal-title {{ font-weight: 600; white-space: nowrap; }}
.spotkit-portal-state {{ flex: 1 1 20em; min-width: 0; }}
.spotkit-portal-state .spotkit-portal-error {{ color: {_RED}; }}
.spotkit-portal-banner {{ color: {_RED}; }}
.spotkit-portal .lm-TabBar-content, .spotkit-portal .p-TabBar-content {{ flex-wrap: wrap; }}
.spotkit-portal .lm-TabBar, .spotkit-portal .p-TabBar {{ min-height: fit-content; }}
@media (max-width: {NARROW_PX - 0.02}px) {{
  .spotkit-portal {{ font-size: 14px; }}
  .spotkit-portal .widget-tab > .widget-tab-contents,
  .spotkit-portal .jupyter-widget-tab > .widget-tab-contents {{ padding: 4px 2px; }}
  .spotkit-portal .lm-TabBar-tab, .spotkit-portal .p-TabBar-tab {{
    min-width: 0; flex: 1 1 auto; padding: 0 6px; }}
  .spotkit-portal .widget-hbox, .spotkit-portal .jupyter-widget-hbox {{ flex-wrap: wrap; }}
  .spotkit-portal .widget-gridbox, .spotkit-portal .jupyter-widget-gridbox {{
    max-width: 100%; overflow-x: auto; }}
  .spotkit-portal .widget-text, .spotkit-portal .widget-dropdown,
  .spotkit-portal .widget-inline-hbox {{ width: 100% !important; max-width: 100%; }}
  .spotkit-portal img, .spotkit-portal canvas, .spotkit-portal svg,
  .spotkit-portal table {{ max-width: 100%; height: auto; }}
  .spotkit-portal-state {{ overflow-wrap: anywhere; }}
  .spotkit-portal .widget-gridbox .widget-html-content,
  .spotkit-portal .jupyter-widget-gridbox .widget-html-content {{ white-space: nowrap; }}
}}
</style>"""


def _clock(when: datetime | None) -> str:
    return "–" if when is None else when.astimezone().strftime("%H:%M:%S")


def banner_html(state: PanelState) -> str:
    """The line above a panel while its refresh fails (empty when it does not)."""
    if state.error is None:
        return ""
    kept = ("showing the data of " + _clock(state.refreshed_at)
            if state.refreshed_at is not None else "no data yet")
    return (f'<span class="spotkit-portal-banner">{html.escape(state.title)} could not '
            f"refresh since {_clock(state.error_since)} ({state.failures}x): "
            f"{html.escape(state.error)}</span> <i>({kept}; retrying)</i>")


def header_html(*, catalog: str, states: Iterable[PanelState], interval: float,
                running: bool, closed: bool = False, readonly: bool = False,
                busy: tuple[str, datetime] | None = None, selected: str | None = None,
                message: str | None = None) -> str:
    """The header's state text: catalog, refresh state, selection and errors.

    Parameters
    ----------
    catalog : str
        Where the catalog is (shown as given; no password).
    states : iterable of PanelState
        One per panel.
    interval : float
        Seconds between refreshes.
    running, closed : bool
        The refresh thread runs; the portal is closed.
    readonly : bool
        Say "read-only".
    busy : (str, datetime), optional
        The title of the panel being fetched and since when (the portal passes it when that
        panel's last fetch was slow or it has no data yet).
    selected : str, optional
        The selected dataset id.
    message : str, optional
        A last line (e.g. a failed selection).

    Returns
    -------
    str
        HTML.

    Examples
    --------
    >>> from spotkit.widgets._portal_app_refresh import PanelState
    >>> text = header_html(catalog="/data/catalog.db", states=[PanelState("Data")],
    ...                    interval=5, running=True)
    >>> "every 5 s" in text and "catalog.db" in text
    True
    """
    states = list(states)
    parts = [f"catalog <code>{html.escape(catalog)}</code>"]
    if readonly:
        parts.append("read-only")
    stamps = [s.refreshed_at for s in states if s.refreshed_at is not None]
    if closed:
        refresh = "closed"
    elif not running:
        refresh = "paused"
    else:
        refresh = f"every {interval:g} s"
    if stamps:
        refresh = f"refreshed {_clock(max(stamps))}, {refresh}"
    elif running and not closed:
        refresh = f"loading…, {refresh}"
    parts.append(refresh)
    if busy is not None and not closed:
        parts.append(f"fetching {html.escape(busy[0])} (since {_clock(busy[1])})")
    if selected:
        parts.append(f"dataset <code>{html.escape(selected)}</code>")
    text = " &middot; ".join(parts)
    failing = [s for s in states if s.error is not None]
    if failing:
        names = ", ".join(html.escape(s.title) for s in failing)
        first = failing[0]
        text += (f'<br><span class="spotkit-portal-error">{len(failing)} panel'
                 f'{"s" if len(failing) > 1 else ""} failing ({names}): '
                 f"{html.escape(first.error or '')}</span>")
    if message:
        text += f'<br><span class="spotkit-portal-error">{html.escape(message)}</span>'
    return text


def short_catalog(where: str, *, limit: int = 60) -> str:
    """``where`` shortened from the left to ``limit`` characters (the file name stays).

    Examples
    --------
    >>> short_catalog("/a/very/long/path/to/the/catalog.db", limit=20)
    '…h/to/the/catalog.db'
    """
    return where if len(where) <= limit else "…" + where[-(limit - 1):]

