"""What the Flow, Jobs and Monitor panels share: tables as HTML, a worker for clicks.

Plain functions over plain values (HTML text), and :class:`ClickWorker`, which runs a
button's library call off the kernel's thread (a catalog write, a scheduler call) and
then hands its outcome to the view. Nothing here imports ipywidgets at module level.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["RED", "ClickWorker", "html_table", "ipywidgets", "message_html", "set_value"]

_LAB_EXTRA = 'pip install "spotkit[lab]"'
RED = "#cf222e"
GREEN = "#1a7f37"
AMBER = "#9a6700"


def ipywidgets(what: str):
    """Import ipywidgets, or say which extra installs it."""
    try:
        import ipywidgets as widgets
    except ImportError as exc:
        raise ImportError(f"spotkit's {what} needs ipywidgets; install it with {_LAB_EXTRA} "
                          f"({what}Model works without it)") from exc
    return widgets


def _cell(value: Any, limit: int) -> str:
    text = "–" if value is None or value == "" else str(value)
    if limit and len(text) > limit:
        return (f'<span title="{html.escape(text, quote=True)}">'
                f"{html.escape(text[:limit - 1])}…</span>")
    return html.escape(text)


def html_table(rows: Sequence[dict], columns: Iterable[tuple[str, str]], *,
               css: str = "", limit: int = 80, empty: str = "(none)",
               colours: dict[str, str] | None = None,
               row_class: Callable[[dict], str] | None = None,
               colour: Callable[[dict, str], str | None] | None = None) -> str:
    """Rows as an HTML table (escaped; long cells clipped with the full text as a tooltip;
    in a box that scrolls sideways on a narrow screen).

    ``colours``: ``{column: colour}`` for cells that are not zero or empty (e.g. parked
    counts in red); ``colour(row, column)``: a colour per cell (or None); ``row_class(row)``:
    a CSS class per row.

    Examples
    --------
    >>> html_table([{"a": 1, "b": "<x>"}], [("a", "A"), ("b", "B")], css="t")[-51:]
    '<tr><td>1</td><td>&lt;x&gt;</td></tr></table></div>'
    """
    columns = list(columns)
    if not rows:
        return f'<div class="spotkit-empty {css}">{html.escape(empty)}</div>'
    colours = colours or {}
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key)
            text = _cell(value, limit)
            tint = colours.get(key) if value not in (None, "", 0, "0", False) else None
            if colour is not None:
                tint = colour(row, key) or tint
            if tint:
                text = f'<span style="color:{tint};font-weight:600">{text}</span>'
            cells.append(f"<td>{text}</td>")
        cls = row_class(row) if row_class else ""
        attr = f' class="{html.escape(cls, quote=True)}"' if cls else ""
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    # scrolls sideways on its own on a narrow screen (the phone view), not the whole page
    return (f'<div class="spotkit-table-box" style="overflow-x:auto;max-width:100%">'
            f'<table class="spotkit-table {css}"><tr>{head}</tr>{"".join(body)}</table></div>')


def message_html(text: str, *, error: bool = False) -> str:
    """One line for the outcome of an action (red for an error)."""
    if not text:
        return ""
    colour = RED if error else GREEN
    return f'<span style="color:{colour}">{html.escape(text)}</span>'


def set_value(widget: Any, value: Any) -> None:
    """Set a widget's value only if it changed (nothing is sent to the browser otherwise)."""
    if widget.value != value:
        widget.value = value


class ClickWorker:
    """Run a button's call in a daemon thread, one at a time, then report its outcome.

    ``run(call, done)``: ``call()`` runs in the thread; ``done(result, error)`` is called
    there after it (the view sets widget values, which ipykernel sends thread-safely).
    A click while a call runs is refused (returns False), so a double click does not
    retry an item twice.
    """

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def run(self, call: Callable[[], Any], done: Callable[[Any, BaseException | None], None],
            ) -> bool:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._thread = threading.Thread(target=self._work, args=(call, done),
                                            name=self.name, daemon=True)
            self._thread.start()
        return True

    @staticmethod
    def _work(call, done) -> None:
        try:
            result = call()
        except Exception as exc:  # shown by the view: a click never dies silently
            logger.info("portal action failed: %s: %s", type(exc).__name__, exc)
            done(None, exc)
            return
        done(result, None)

    def join(self, timeout: float | None = 30.0) -> bool:
        """Wait for the running call; False if it is still running."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True


class ModelPanel:
    """What the Flow, Jobs and Monitor panels share: a plain-Python ``model``, the portal's
    callbacks, a :class:`ClickWorker` for buttons, a view built on first access by the
    subclass's ``_build`` (which sets ``_widget`` and the ``_parts`` closed with it)."""

    _worker_name = "spotkit-portal-panel"

    def __init__(self, model: Any, *, readonly: bool,
                 on_select: Callable[[str], None] | None,
                 request_refresh: Callable[[], Any] | None):
        self.model = model
        self.request_refresh = request_refresh
        self.readonly = bool(readonly)
        self.on_select = on_select
        self.worker = ClickWorker(self._worker_name)
        self._widget: Any = None
        self._parts: list = []

    def _build(self) -> None:
        raise NotImplementedError

    @property
    def widget(self):
        """The panel's view (built on first access)."""
        if self._widget is None:
            self._build()
        return self._widget

    def close(self) -> None:
        """Close the widgets."""
        if self._widget is not None:
            for w in self._parts:
                w.close()
            self._widget.close()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
