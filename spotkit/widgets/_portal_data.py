"""The portal's Data panel: search the catalog, page through it, inspect a dataset.

Three parts, as for the job monitor:

- :class:`~spotkit.widgets._portal_data_model.DataPanelModel` holds the search, the page
  and the selection and reads the catalog (one library call per fetch: a keyset page with
  its count, or one dataset's overview); plain Python;
- :mod:`spotkit.widgets._portal_data_detail` turns a dataset's overview into plain values
  (fields, files and replicas, the lineage graph, runs, marks, preview bytes);
- :class:`DataPanel` (here) draws them with ipywidgets and turns clicks into model calls.

The panel follows the portal's protocol: :meth:`DataPanel.fetch` does all the I/O (in the
portal's background thread), :meth:`DataPanel.apply` only sets widget values. Used on its
own (no portal), a click or a search runs fetch and apply in the panel's own background
thread, so the kernel never waits for the catalog.
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
from collections.abc import Callable
from typing import Any

from spotkit.widgets._portal_data_detail import DatasetDetail
from spotkit.widgets._portal_data_model import (
    COLUMNS,
    PAGE_SIZES,
    DataPanelModel,
    DataSnapshot,
    GridPage,
)
from spotkit.widgets._portal_data_view import DetailView

logger = logging.getLogger(__name__)

__all__ = ["DataPanel", "DataPanelModel"]

_LAB_EXTRA = 'pip install "spotkit[lab]"'
THREAD_NAME = "spotkit-data-panel"


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError(
            f"spotkit's DataPanel needs ipywidgets; install it with {_LAB_EXTRA} "
            "(DataPanelModel works without it)"
        ) from exc
    return ipywidgets


class _Worker:
    """Runs the panel's fetch and apply off the kernel's thread when a person acts (the
    portal's own refreshes come on top). One daemon thread; kicks coalesce; the thread
    ends after a while without kicks and the next kick starts a new one."""

    def __init__(self, job: Callable[[], bool]):
        self._job = job
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.busy = False

    def kick(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._kick.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=THREAD_NAME,
                                                daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            self._kick.wait(30.0)
            with self._lock:
                if self._stop.is_set():
                    return
                if not self._kick.is_set():  # nothing for 30 s: end (a kick starts anew)
                    self._thread = None
                    return
                self.busy = True  # before the kick is cleared: idle() never sees neither
                self._kick.clear()
            try:
                while self._job() and not self._stop.is_set():
                    pass  # more was wanted at once (e.g. the detail after the page)
            except Exception:  # a bug must not die silently in a thread
                logger.exception("data panel: background fetch failed")
            finally:
                self.busy = False

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is wanted or being fetched (tests, scripts); True if idle."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self._kick.is_set() and not self.busy:
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)


class DataPanel:
    """The Data tab of the portal: a search form over a paged grid of the catalog, and
    the selected dataset's metadata, files and replicas, lineage graph (raw -> runs ->
    products, each node clickable), runs with errors and executed notebooks, frame marks
    and previews.

    The grid holds only the visible page: each page is one keyset query
    (:func:`spotkit.catalog.search_page`), so paging stays fast over millions of datasets.

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    readonly : bool, optional
        The phone / Voila view: no action buttons, no links into JupyterLab.
    page_size : int, optional
        Rows per page (10, 25, 50 or 100 in the page-size menu).
    on_select : callable, optional
        ``on_select(dataset_id)`` when a person picks a dataset (a row or a graph node):
        the portal's :meth:`select`, which calls :meth:`show_dataset` of every panel.
        Without it the panel shows the dataset itself.
    request_refresh : callable, optional
        Called (without arguments) when a person's action needs a fetch now; the portal
        then runs :meth:`fetch` and :meth:`apply`. Without it the panel runs them in its
        own background thread.
    lab : (str or None, str), optional
        The Jupyter server's root folder and base URL for links to executed notebooks
        (default: looked up; see :func:`spotkit.widgets._portal_data_detail.find_lab_root`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.widgets._portal_data import DataPanel
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> _ = cat.bulk_load({"kind": "saxs/raw", "beamline": "7.3.3", "sample": f"film-{i}",
    ...                    "start_time": 1.7e9 + i} for i in range(40))
    >>> panel = DataPanel(cat, page_size=10)
    >>> panel.apply(panel.fetch())       # what the portal's refresh does
    >>> panel.status.value.startswith("1–10 of 40 datasets")
    True
    >>> panel.close()
    """

    title = "Data"

    def __init__(self, catalog, *, readonly: bool = False, page_size: int = 25,
                 on_select: Callable[[str], Any] | None = None,
                 request_refresh: Callable[[], Any] | None = None,
                 lab: tuple[str | None, str] | None = None, **options: Any):
        if options:
            logger.debug("data panel: options not used: %s", sorted(options))
        self.readonly = bool(readonly)
        self.model = DataPanelModel(catalog, page_size=page_size,
                                    lab=(None, "/") if readonly else lab)
        self.on_select = on_select
        self.request_refresh = request_refresh
        self._worker = _Worker(self._fetch_and_apply)
        self._widget: Any = None
        self._shown_page: GridPage | None = None
        self._shown_detail: DatasetDetail | None = None
        self._apply_lock = threading.RLock()
        self._closed = False
        self.last_snapshot: DataSnapshot | None = None

    # -- the portal's protocol ----------------------------------------------------------

    @property
    def widget(self):
        """The panel's widget (built on first access)."""
        if self._widget is None:
            self._build()
        return self._widget

    def fetch(self) -> DataSnapshot:
        """Read the catalog (one library call); runs in the portal's background thread.

        Raises
        ------
        SpotkitError, OSError
            The catalog failed: the portal shows the error under its header and keeps
            this panel's last data (the panel's model keeps them too).
        """
        snapshot = self.model.fetch()
        if snapshot.error is not None and self.model.last_exception is not None:
            raise self.model.last_exception
        return snapshot

    def apply(self, snapshot: DataSnapshot) -> None:
        """Show a snapshot: sets widget values only (no I/O)."""
        with self._apply_lock:
            if self._closed:
                return
            self.last_snapshot = snapshot
            if self._widget is None:
                self._build()
            self._show_status(snapshot)
            if snapshot.page is not None and snapshot.page is not self._shown_page:
                self._show_page(snapshot.page)
            if snapshot.detail != self._shown_detail or (
                    snapshot.detail is None and self._shown_detail is not None):
                self._detail.show(snapshot.detail)
                self._shown_detail = snapshot.detail
            self._mark_selected(snapshot.selected)

    def close(self) -> None:
        """Stop the background thread and close the widgets."""
        self._closed = True
        self._worker.stop()
        if self._widget is not None:
            _close_tree(self._widget)
            for button, cells in self._slots:  # slots beyond the page size too
                for widget in (button, *cells):
                    widget.close()

    def show_dataset(self, dataset_id: str) -> None:
        """Show this dataset's detail (the portal calls it when any panel selects one, and
        then refreshes its panels; on its own, the panel reads it in its own thread)."""
        self.model.select(dataset_id)
        if self.on_select is None:
            self._kick()

    def __repr__(self) -> str:
        return f"<DataPanel {self.model.catalog!r}{' readonly' if self.readonly else ''}>"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- acting ----------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._closed:
            return
        if self.request_refresh is not None:
            self.request_refresh()
        else:
            self._worker.kick()

    def _fetch_and_apply(self) -> bool:
        snapshot = self.model.fetch()  # the error, if any, is shown in the status line
        self.apply(snapshot)
        return snapshot.pending

    def wait(self, timeout: float = 30.0) -> bool:
        """Wait for the panel's own background fetch to finish (scripts, tests)."""
        return self._worker.idle(timeout)

    def search(self, **form: Any) -> None:
        """Search with these values (as the form's Search button does)."""
        try:
            self.model.search(**form)
        except ValueError as exc:
            self._show_error(str(exc))
            return
        self._kick()

    def pick(self, dataset_id: str) -> None:
        """A person picked a dataset: tell the portal, or show it here."""
        if self.on_select is not None:
            self.on_select(dataset_id)
        else:
            self.show_dataset(dataset_id)

    # -- building --------------------------------------------------------------------------

    def _build(self) -> None:
        w = _ipywidgets()
        from spotkit import kinds

        def text(name, placeholder, width="9em"):
            box = w.Text(placeholder=placeholder, description="", continuous_update=False,
                         layout=w.Layout(width=width))
            box.add_class(f"spotkit-data-{name}")
            return box

        self.form = {
            "beamline": text("beamline", "beamline"),
            "proposal": text("proposal", "proposal"),
            "sample": text("sample", "sample (lyso*, ?, [ab])", "13em"),
            "kind": w.Combobox(placeholder="kind", options=sorted(kinds.KINDS),
                               ensure_option=False, layout=w.Layout(width="10em")),
            "status": w.Combobox(placeholder="status",
                                 options=["raw", "derived", "quarantined"],
                                 ensure_option=False, layout=w.Layout(width="8em")),
            "since": w.DatePicker(description="", layout=w.Layout(width="10em")),
            "until": w.DatePicker(description="", layout=w.Layout(width="10em")),
            "text": text("text", "free text (words, prefix*)", "14em"),
        }
        self._filling = False
        for name, box in self.form.items():
            box.add_class(f"spotkit-data-{name}")
            box.tooltip = name  # the field's name on hover
            if hasattr(box, "continuous_update"):
                box.continuous_update = False  # Enter (or leaving the box) searches
            box.observe(self._field_changed, "value")
        self.search_button = w.Button(description="Search", icon="search",
                                      button_style="primary", layout=w.Layout(width="auto"))
        self.clear_button = w.Button(description="Clear", layout=w.Layout(width="auto"))
        self.search_button.add_class("spotkit-data-search-button")
        self.search_button.on_click(lambda _b: self._search_from_form())
        self.clear_button.on_click(lambda _b: self._clear_form())
        dates = [w.HTML("from"), self.form["since"], w.HTML("to"), self.form["until"]]
        fields = [v for k, v in self.form.items() if k not in ("since", "until")]
        form_box = w.Box([*fields, *dates, self.search_button, self.clear_button],
                         layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.status = w.HTML()
        self.status.add_class("spotkit-data-status")
        # pager
        self.first_button = w.Button(icon="fast-backward", tooltip="first page",
                                     layout=w.Layout(width="3em"))
        self.prev_button = w.Button(icon="step-backward", tooltip="previous page",
                                    layout=w.Layout(width="3em"))
        self.next_button = w.Button(icon="step-forward", tooltip="next page",
                                    layout=w.Layout(width="3em"))
        self.last_button = w.Button(icon="fast-forward", tooltip="last page",
                                    layout=w.Layout(width="3em"))
        for button, go in ((self.first_button, self.model.first_page),
                           (self.prev_button, self.model.previous_page),
                           (self.next_button, self.model.next_page),
                           (self.last_button, self.model.last_page)):
            button.on_click(lambda _b, go=go: self._go(go))
        self.page_box = w.BoundedIntText(value=1, min=1, max=10**9, description="page",
                                         layout=w.Layout(width="11em"))
        self.page_box.observe(self._page_typed, "value")
        self.pages_label = w.HTML()
        self.size_menu = w.Dropdown(options=[(f"{n} rows", n) for n in PAGE_SIZES],
                                    value=self.model.page_size if self.model.page_size
                                    in PAGE_SIZES else 25, layout=w.Layout(width="7em"))
        self.size_menu.observe(self._size_chosen, "value")
        pager = w.Box([self.first_button, self.prev_button, self.page_box, self.pages_label,
                       self.next_button, self.last_button, self.size_menu],
                      layout=w.Layout(flex_flow="row wrap", align_items="center"))
        pager.add_class("spotkit-data-pager")
        # the grid: one slot per row, built once per page size, values set per page
        self.grid = w.GridBox(layout=w.Layout(
            grid_template_columns="max-content max-content auto auto auto auto auto "
                                  "minmax(8em, 1fr)",
            grid_gap="1px 10px", align_items="center", width="100%", overflow="auto"))
        self.grid.add_class("spotkit-data-grid")
        self._header = [w.HTML(f"<b>{html.escape(title)}</b>") for _, title in COLUMNS]
        self._slots: list[tuple[Any, list[Any]]] = []
        self._make_slots(self.model.page_size)
        self._detail = DetailView(w, readonly=self.readonly, pick=self.pick,
                                  set_status=self._set_status)
        self._widget = w.VBox([form_box, self.status, pager, self.grid, self._detail.widget],
                              layout=w.Layout(width="100%"))
        self._widget.add_class("spotkit-data-panel")

    def _make_slots(self, size: int) -> None:
        w = _ipywidgets()
        while len(self._slots) < size:
            button = w.Button(description="", layout=w.Layout(width="auto", display="none"))
            button.add_class("spotkit-data-row")
            button.on_click(self._row_clicked)
            cells = [w.HTML(layout=w.Layout(display="none")) for _ in COLUMNS[1:]]
            self._slots.append((button, cells))
        children = list(self._header)
        for button, cells in self._slots[:size]:
            children += [button, *cells]
        self.grid.children = children

    # -- drawing -------------------------------------------------------------------------

    def _show_status(self, snap: DataSnapshot) -> None:
        parts = []
        if snap.page is not None:
            parts.append(html.escape(snap.page.range_text))
        if snap.seconds and snap.did:
            parts.append(f"<small>({snap.did} read in {snap.seconds * 1e3:.0f} ms)</small>")
        parts += [f"<small>{html.escape(n)}</small>" for n in snap.notes]
        if snap.error:
            parts.append(f"<span style='color:#cf222e' class='spotkit-data-error'>"
                         f"{html.escape(snap.error)} (showing the last data read)</span>")
        self.status.value = " ".join(parts)

    def _show_error(self, message: str) -> None:
        if self._widget is None:
            self._build()
        self.status.value = (f"<span style='color:#cf222e' class='spotkit-data-error'>"
                             f"{html.escape(message)}</span>")

    def _show_page(self, page: GridPage) -> None:
        if len(page.rows) > len(self._slots) or len(self.grid.children) != (
                len(COLUMNS) * (1 + self.model.page_size)):
            self._make_slots(max(self.model.page_size, len(page.rows)))
        for i, (button, cells) in enumerate(self._slots):
            row = page.rows[i] if i < len(page.rows) else None
            display = None if row is not None else "none"
            button.description = row["id"] if row else ""
            button.tooltip = row["title"] if row else ""
            button.layout.display = display
            for cell, (key, _) in zip(cells, COLUMNS[1:], strict=True):
                value = row[key] if row else ""
                short = value if len(value) <= 60 else value[:59] + "…"
                cell.value = (f"<span title='{html.escape(value, quote=True)}'>"
                              f"{html.escape(short)}</span>") if row else ""
                cell.layout.display = display
        self._shown_page = page
        with self._quiet_page_box():
            exact = bool(page.pages and page.total_exact)
            self.page_box.max = max(page.pages or 1, page.page + 1) if exact else 10**9
            self.page_box.value = page.page + 1
        self.pages_label.value = (f"of {page.pages:,}" if page.pages and page.total_exact
                                  else f"of about {page.pages:,}" if page.pages else "")
        self.prev_button.disabled = self.first_button.disabled = page.page == 0
        self.next_button.disabled = self.last_button.disabled = page.at_end

    @contextlib.contextmanager
    def _quiet_page_box(self):
        self._typing = False
        try:
            yield
        finally:
            self._typing = True

    def _mark_selected(self, selected: str | None) -> None:
        for button, _ in self._slots:
            style = "info" if selected and button.description == selected else ""
            if button.button_style != style:
                button.button_style = style

    # -- events ---------------------------------------------------------------------------

    def _go(self, move: Callable[[], None]) -> None:
        move()
        self._kick()

    def _row_clicked(self, button) -> None:
        if button.description:
            self.pick(button.description)

    def _page_typed(self, change) -> None:
        if getattr(self, "_typing", True) and change["new"] != change["old"]:
            self.model.go(int(change["new"]) - 1)
            self._kick()

    def _size_chosen(self, change) -> None:
        self.model.set_page_size(int(change["new"]))
        self._kick()

    def _form_values(self) -> dict[str, Any]:
        return {name: box.value for name, box in self.form.items()}

    def _search_from_form(self) -> None:
        self.search(**self._form_values())

    def _clear_form(self) -> None:
        self._filling = True
        try:
            for name, box in self.form.items():
                box.value = None if name in ("since", "until") else ""
        finally:
            self._filling = False
        self.search()

    def _field_changed(self, _change) -> None:
        if not self._filling:
            self._search_from_form()

    def _set_status(self, dataset_id: str, status: str, reason: str) -> None:
        """The "Set status" action: :meth:`spotkit.catalog.Catalog.set_status`, off the
        kernel's thread; the panel reads the page and the dataset again afterwards."""
        if self.readonly:
            raise PermissionError("the read-only Data panel has no actions")

        def act():
            try:
                self.model.catalog.set_status(dataset_id, status, reason=reason or None)
            except (ValueError, OSError, Exception) as exc:  # shown, not raised in a thread
                self._show_error(f"setting the status of {dataset_id} failed: {exc}")
                return
            self.model.select(dataset_id)
            self.model.go(self.model.page_index)
            self._kick()

        threading.Thread(target=act, name=THREAD_NAME + "-action", daemon=True).start()


def _close_tree(widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()

