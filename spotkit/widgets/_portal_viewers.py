"""The portal's Viewers tab: the selected dataset in the viewer that suits its kind.

:class:`ViewerPanel` follows the portal's panel protocol (``title``, ``widget``, ``fetch``,
``apply``, ``close``, ``show_dataset``). :meth:`ViewerPanel.show_dataset` only records the
selection; the portal's background thread runs :meth:`ViewerPanel.fetch`, which looks the
dataset up and opens it (:class:`~spotkit.widgets._portal_viewers_model.ViewerPanelModel`),
and :meth:`ViewerPanel.apply` puts the views in place: the :class:`SliceViewer` for
tomography volumes and raw scans, the :class:`ChangeTimeline` for scattering series and
their I(q), and for a raw scan the :class:`CenterFinder` (made on request: it reconstructs
dozens of slices; not offered in the read-only view).
"""

from __future__ import annotations

import html
import logging
import threading
from typing import Any

from spotkit.widgets._portal_viewers_model import (
    VIEWERS,
    ViewerPanelModel,
    ViewerSnapshot,
    close_models,
    viewers_for,
)

logger = logging.getLogger(__name__)

__all__ = ["ViewerPanel", "ViewerPanelModel", "viewers_for"]

_TAB_TITLES = {"slice": "Slices", "frames": "Frames & I(q)", "iq": "I(q)",
               "center": "Centre of rotation"}


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError('the portal needs ipywidgets; install it with pip install '
                          '"spotkit[lab]"') from exc
    return ipywidgets


class ViewerPanel:
    """The Viewers tab of :func:`spotkit.portal`: shows the selected dataset.

    Parameters
    ----------
    catalog : spotkit Catalog
        Where selected datasets are looked up.
    readonly : bool
        The read-only (Voila) view: no centre finder (no "Use this centre" action).
    display : int
        Pixels of a slice viewer pane.
    background : bool
        Slice viewers read full-resolution images in a background thread.
    **options
        ``on_select`` (given by the portal; unused: this panel only follows the selection),
        ``slice_options`` (keyword arguments of :class:`SliceViewerModel`),
        ``center_options`` (of :class:`CenterFinder`, e.g. ``around``, ``step``).

    Attributes
    ----------
    title : str
        ``"Viewers"``.
    model : ViewerPanelModel
    views : dict
        Viewer name -> its view (SliceViewer, ChangeTimeline, CenterFinder, or an
        ipywidgets widget) for the dataset shown.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> from spotkit.widgets._portal_viewers import ViewerPanel
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan.h5", shape=(31, 4, 32), seed=0)
    >>> cat = open_catalog(work / "catalog.db")
    >>> ds = cat.ingest(work / "scan.h5")
    >>> panel = ViewerPanel(cat, display=64, background=False)
    >>> panel.show_dataset(ds.id)      # the portal calls this on a selection
    >>> panel.apply(panel.fetch())     # the portal: fetch in its thread, apply in the kernel's
    >>> sorted(panel.views)
    ['center', 'slice']
    """

    title = "Viewers"

    def __init__(self, catalog: Any, *, readonly: bool = False, display: int = 384,
                 background: bool = True, **options: Any):
        self.catalog = catalog
        self.readonly = bool(readonly)
        self.background = bool(background)
        self.on_select = options.pop("on_select", None)
        self.center_options = dict(options.pop("center_options", None) or {})
        self.model = ViewerPanelModel(catalog, display=display,
                                      slice_options=options.pop("slice_options", None))
        if options:
            raise TypeError(f"ViewerPanel got unknown options {sorted(options)}")
        self.views: dict[str, Any] = {}
        self._widget: Any = None
        self._shown: ViewerSnapshot | None = None
        self._error: str | None = None

    # -- panel protocol ----------------------------------------------------------------

    @property
    def widget(self):
        """The tab's widget (built on first access)."""
        if self._widget is None:
            w = _ipywidgets()
            self._header = w.HTML(self._header_html())
            self._body = w.VBox([w.HTML("<i>Select a dataset (Data tab) to view it.</i>")])
            self._widget = w.VBox([self._header, self._body])
            self._widget.add_class("spotkit-portal-viewers")
        return self._widget

    def show_dataset(self, dataset_id: str) -> None:
        """Show ``dataset_id`` (loaded by the next :meth:`fetch`; no I/O here)."""
        self.model.select(dataset_id)
        self._error = None
        if self._widget is not None:
            self._header.value = self._header_html(loading=dataset_id)

    def fetch(self) -> ViewerSnapshot | None:
        """Load the selected dataset (catalog look-up, files, first images); None when the
        selection has not changed. Runs in the portal's background thread."""
        return self.model.load()

    def apply(self, snapshot: ViewerSnapshot | None) -> None:
        """Put the views of a newly loaded dataset in place (no I/O)."""
        if snapshot is None or snapshot is self._shown:
            return
        self._close_views()
        self._shown = snapshot
        views: dict[str, Any] = {}
        for name in snapshot.viewers:
            if name in snapshot.errors:
                continue
            try:
                views[name] = self._make_view(name, snapshot.models[name])
            except Exception as exc:
                logger.warning("viewer %s of %s: %s", name, snapshot.dataset_id, exc)
                snapshot.errors[name] = f"{type(exc).__name__}: {exc}"
        self.views = views
        self._layout(snapshot)

    def close(self) -> None:
        """Close the views and their files."""
        self._close_views()
        if self._widget is not None:
            self._widget.close()

    def show_error(self, error: BaseException | str) -> None:
        """Show why loading failed (the last views stay)."""
        self._error = str(error)
        if self._widget is not None:
            self._header.value = self._header_html()

    # -- views -------------------------------------------------------------------------

    def _make_view(self, name: str, model: Any) -> Any:
        w = _ipywidgets()
        if name == "slice":
            from spotkit.widgets._slice_viewer import SliceViewer

            return SliceViewer(model, background=self.background, readonly=self.readonly,
                               max_read_bytes=self.model.max_read_bytes)
        if name in ("frames", "iq") and type(model).__name__ == "ChangeTimelineModel":
            from spotkit.widgets._change_timeline import ChangeTimeline

            return ChangeTimeline(model)
        if name == "iq":
            return w.Image(value=_profiles_png(model), format="png")
        if name == "center":
            return self._center_view(model)
        raise ValueError(f"unknown viewer {name!r}; choose one of {sorted(VIEWERS)}")

    def _center_view(self, ds) -> Any:
        w = _ipywidgets()
        if self.readonly:
            return w.HTML("<i>The centre-of-rotation finder is not offered in the read-only "
                          "view: open the portal in JupyterLab.</i>")
        n_cols = int((ds.metadata or {}).get("n_cols") or 0)
        binning = max(1, n_cols // 512)
        button = w.Button(description="Find the centre", icon="crosshairs",
                          tooltip="reconstruct the middle row at candidate centres "
                          "(spotkit.tomo.center_sweep)")
        status = w.HTML(f"<small>binning {binning} for {n_cols or '?'} detector "
                        "columns</small>")
        box = w.VBox([w.HBox([button, status])])

        def run(_=None) -> None:
            button.disabled = True
            status.value = "<small>reconstructing the candidates…</small>"

            def work() -> None:
                from spotkit.widgets._center_finder import CenterFinder

                try:
                    finder = CenterFinder(ds, **{"binning": binning, **self.center_options})
                except Exception as exc:
                    status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
                    button.disabled = False
                    return
                self.views["center_finder"] = finder
                box.children = (finder,)

            if self.background:
                threading.Thread(target=work, name="spotkit-center", daemon=True).start()
            else:
                work()

        button.on_click(run)
        box.find = run  # for notebooks and tests
        return box

    def _layout(self, snap: ViewerSnapshot) -> None:
        w = _ipywidgets()
        self.widget  # noqa: B018 - built now if it was not
        self._header.value = self._header_html()
        parts = []
        for name in snap.viewers:
            if name in self.views:
                view = self.views[name]
                parts.append(getattr(view, "widget", view))
            else:
                parts.append(w.HTML(f"<span style='color:#b00'>cannot show it here: "
                                    f"{html.escape(snap.errors.get(name, '?'))}</span>"))
        if not parts:
            parts = [w.HTML(f"<i>No viewer for {html.escape(snap.kind)} datasets.</i>")]
        if len(parts) == 1:
            self._body.children = tuple(parts)
            return
        tabs = w.Tab(children=parts)
        for i, name in enumerate(snap.viewers):
            tabs.set_title(i, _TAB_TITLES.get(name, name))
        self._body.children = (tabs,)

    def _close_views(self) -> None:
        for view in self.views.values():
            try:
                view.close()
            except Exception:
                logger.debug("closing a view failed", exc_info=True)
        if self._shown is not None:
            close_models(self._shown)
        self.views = {}

    def _header_html(self, loading: str | None = None) -> str:
        snap = self._shown
        text = ("<b>Viewers</b>" if snap is None else
                f"<b>{html.escape(snap.title)}</b> <small>(loaded in "
                f"{snap.seconds:.2f} s)</small>")
        if loading:
            text += f" &nbsp; <i>loading {html.escape(loading)}…</i>"
        if self._error:
            text += f"<br><span style='color:#b00'>{html.escape(self._error)}</span>"
        return text

    def __repr__(self) -> str:
        shown = self._shown.dataset_id if self._shown else None
        return f"<ViewerPanel showing {shown}>"


def _profiles_png(profiles) -> bytes:
    """Every profile of a reduced series against q (log-log), first to last in colour."""
    import io

    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.4), dpi=80)
    ax = fig.subplots()
    intensity = np.asarray(profiles["intensity"].values)
    q = np.asarray(profiles["q"].values)
    rows = intensity.reshape(-1, intensity.shape[-1]) if intensity.ndim > 1 else intensity[None]
    colors = __import__("matplotlib").colormaps["viridis"](np.linspace(0, 1, len(rows)))
    for row, c in zip(rows, colors, strict=True):
        ax.loglog(q, np.where(row > 0, row, np.nan), color=c, lw=0.8)
    unit = str(profiles.attrs.get("unit", "q")).replace("q_", "").replace("^-1", "⁻¹")
    ax.set_xlabel(f"q ({unit})")
    ax.set_ylabel("I(q)")
    ax.set_title(f"{len(rows)} profile(s)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
