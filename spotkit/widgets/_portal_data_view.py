"""Drawing one dataset's detail in the Data panel (ipywidgets passed in; no I/O).

:class:`DetailView` shows a :class:`~spotkit.widgets._portal_data_detail.DatasetDetail`
in tabs: overview (fields, files and replicas, metadata), provenance (a drawn graph and a
clickable button per node, raw data -> runs -> products), runs (errors, links that open
the executed notebooks in JupyterLab), frame marks and previews. :func:`graph_svg` draws
the lineage as SVG (plain text, tested without widgets).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from spotkit.widgets._portal_data_detail import STATE_COLOURS, DatasetDetail, GraphNode

__all__ = ["DetailView", "graph_svg"]

TABS = ("Overview", "Provenance", "Runs", "Frame marks", "Previews")
_E = html.escape


def _table(head: list[str], rows: list[list[str]], cls: str) -> str:
    """An HTML table; cells are given already escaped."""
    if not rows:
        return "<i>none</i>"
    top = "".join(f"<th style='text-align:left;padding-right:1em'>{_E(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left;padding-right:1em;"
                                     f"vertical-align:top'>{c}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table class='{cls}'><thead><tr>{top}</tr></thead><tbody>{body}</tbody></table>"


def _coloured(state: str) -> str:
    colour = STATE_COLOURS.get(state)
    return f"<span style='color:{colour}'>{_E(state)}</span>" if colour else _E(state)


def graph_svg(detail: DatasetDetail, *, width: int = 170, height: int = 34) -> str:
    """The lineage as an SVG picture: columns oldest first, runs between generations.

    Examples
    --------
    >>> from spotkit.widgets._portal_data_detail import DatasetDetail, GraphNode
    >>> raw = GraphNode("ds-1", "dataset", "tomo/raw bone", "ds-1", "raw", True, "ds-1")
    >>> run = GraphNode("run-1", "run", "tomo_quicklook (failed)", "run-1", "failed",
    ...                 False, "ds-1")
    >>> d = DatasetDetail("ds-1", "tomo/raw", "raw", "", (), "{}", (), ((raw,), (run,)),
    ...                   (("ds-1", "run-1"),), False, (), ())
    >>> svg = graph_svg(d)
    >>> svg.startswith("<svg") and "tomo_quicklook (failed)" in svg and "<line" in svg
    True
    """
    gap_x, gap_y = 40, 10
    where: dict[str, tuple[float, float]] = {}
    tall = max((len(col) for col in detail.graph), default=0)
    for i, col in enumerate(detail.graph):
        offset = (tall - len(col)) * (height + gap_y) / 2
        for j, node in enumerate(col):
            where[node.id] = (i * (width + gap_x), offset + j * (height + gap_y))
    w_all = max(1, len(detail.graph)) * (width + gap_x)
    h_all = max(1, tall) * (height + gap_y)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w_all}' height='{h_all}' "
             f"class='spotkit-data-graph-svg' font-family='sans-serif' font-size='11'>",
             "<defs><marker id='spotkit-arrow' viewBox='0 0 10 10' refX='10' refY='5' "
             "markerWidth='6' markerHeight='6' orient='auto'>"
             "<path d='M0,0 L10,5 L0,10 z' fill='#57606a'/></marker></defs>"]
    for a, b in detail.graph_edges:
        if a in where and b in where:
            (x1, y1), (x2, y2) = where[a], where[b]
            parts.append(f"<line x1='{x1 + width}' y1='{y1 + height / 2}' x2='{x2}' "
                         f"y2='{y2 + height / 2}' stroke='#57606a' "
                         "marker-end='url(#spotkit-arrow)'/>")
    for col in detail.graph:
        for node in col:
            x, y = where[node.id]
            fill = "#ddf4ff" if node.type == "dataset" else "#f6f8fa"
            stroke = STATE_COLOURS.get(node.state, "#57606a")
            bold = " stroke-width='3'" if node.focus else ""
            rx = 4 if node.type == "dataset" else 14
            label = node.label if len(node.label) <= 26 else node.label[:25] + "…"
            parts.append(f"<g><title>{_E(node.tooltip)}</title><rect x='{x}' y='{y}' "
                         f"width='{width}' height='{height}' rx='{rx}' fill='{fill}' "
                         f"stroke='{stroke}'{bold}/><text x='{x + 6}' y='{y + 14}'>"
                         f"{_E(label)}</text><text x='{x + 6}' y='{y + 27}' fill='#57606a'>"
                         f"{_E(node.id)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


class DetailView:
    """The selected dataset's tabs; ``w`` is the ipywidgets module.

    Parameters
    ----------
    w : module
        ipywidgets.
    readonly : bool
        No action buttons and no links into JupyterLab (the Voila view).
    pick : callable
        ``pick(dataset_id)``: a graph node was clicked.
    set_status : callable
        ``set_status(dataset_id, status, reason)``: the "Set status" action.
    """

    def __init__(self, w, *, readonly: bool, pick: Callable[[str], Any],
                 set_status: Callable[[str, str, str], Any]):
        self._w = w
        self.readonly = readonly
        self._pick = pick
        self._set_status = set_status
        self.detail: DatasetDetail | None = None
        self.header = w.HTML("<i>Select a dataset to see its files, lineage and runs.</i>")
        self.overview = w.HTML()
        self.graph_picture = w.HTML()
        self.graph_nodes = w.HBox(layout=w.Layout(flex_flow="row", overflow="auto",
                                                  align_items="center"))
        self.graph_nodes.add_class("spotkit-data-graph")
        self.graph_note = w.HTML()
        provenance = w.VBox([self.graph_picture, self.graph_nodes, self.graph_note])
        self.runs = w.HTML()
        self.runs.add_class("spotkit-data-runs")
        self.marks = w.HTML()
        self.previews = w.Box(layout=w.Layout(flex_flow="row wrap"))
        self.tabs = w.Tab(children=[self.overview, provenance, self.runs, self.marks,
                                    self.previews])
        for i, title in enumerate(TABS):
            self.tabs.set_title(i, title)
        self.tabs.add_class("spotkit-data-detail")
        children = [self.header, self.tabs]
        self.status_menu = w.Dropdown(options=["quarantined", "raw", "derived"],
                                      value="quarantined", layout=w.Layout(width="9em"))
        self.reason = w.Text(placeholder="reason", layout=w.Layout(width="16em"))
        self.status_button = w.Button(description="Set status", icon="tag",
                                      tooltip="Catalog.set_status(dataset, status, reason)",
                                      layout=w.Layout(width="auto"))
        self.status_button.add_class("spotkit-data-set-status")
        self.status_button.on_click(self._status_clicked)
        self.actions = w.HBox([self.status_menu, self.reason, self.status_button])
        self.actions.add_class("spotkit-data-actions")
        if readonly:
            self.actions.layout.display = "none"
        else:
            children.append(self.actions)
        self.widget = w.VBox(children)
        self.tabs.layout.display = "none"
        self.actions.layout.display = "none"

    def _status_clicked(self, _button) -> None:
        if self.detail is not None and not self.readonly:
            self._set_status(self.detail.id, self.status_menu.value, self.reason.value)

    def show(self, detail: DatasetDetail | None) -> None:
        """Draw ``detail`` (``None``: nothing selected)."""
        self.detail = detail
        w = self._w
        if detail is None:
            self.header.value = "<i>Select a dataset to see its files, lineage and runs.</i>"
            self.tabs.layout.display = "none"
            self.actions.layout.display = "none"
            return
        self.tabs.layout.display = None
        if not self.readonly:
            self.actions.layout.display = None
        self.header.value = (f"<b>{_E(detail.id)}</b> <code>{_E(detail.kind)}</code> "
                             f"[{_coloured(detail.status)}] {_E(detail.title)}")
        self.overview.value = self._overview_html(detail)
        self.graph_picture.value = graph_svg(detail)
        self._old_nodes = list(self.graph_nodes.children)
        columns = []
        for i, col in enumerate(detail.graph):
            if i:
                columns.append(w.HTML("&rarr;"))
            columns.append(w.VBox([self._node_button(n) for n in col]))
        self.graph_nodes.children = columns
        for old in self._old_nodes:
            _close_all(old)
        self.graph_note.value = ("<small>more lineage beyond what is shown</small>"
                                 if detail.graph_truncated else "")
        self.runs.value = self._runs_html(detail)
        self.marks.value = _table(
            ["label", "frames", "count", "why"],
            [[_E(m["label"]), _E(m["frames"]), str(m["count"]), _E(m["reasons"])]
             for m in detail.marks], "spotkit-data-marks")
        self._show_previews(detail)

    def _node_button(self, node: GraphNode):
        w = self._w
        style = ("primary" if node.focus else "" if node.type == "dataset" else
                 {"completed": "success", "failed": "danger", "running": "info",
                  "queued": "", "cancelled": "warning"}.get(node.state, ""))
        button = w.Button(description=node.label[:40], tooltip=node.tooltip,
                          button_style=style, layout=w.Layout(width="auto"))
        button.add_class(f"spotkit-data-node-{node.type}")
        button.add_class("spotkit-node-" + "".join(c if c.isalnum() else "-" for c in node.id))
        if node.type == "dataset" and node.dataset_id:
            button.on_click(lambda _b, i=node.dataset_id: self._pick(i))
        else:  # a run: its errors and notebook are on the Runs tab
            button.on_click(lambda _b: setattr(self.tabs, "selected_index", 2))
        return button

    def _overview_html(self, d: DatasetDetail) -> str:
        fields = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{_E(k)}</th>"
                         f"<td style='text-align:left'>{_E(v)}</td></tr>"
                         for k, v in d.fields if v)
        rows = []
        for f in d.files:
            replicas = "<br>".join(
                f"{_E(r['location'])}: {_coloured(r['state'])} <code>{_E(r['path'])}</code>"
                + (f" <small>{_E(r['verified_at'])}</small>" if r["verified_at"] else "")
                + (f" <small>({_E(r['detail'])})</small>" if r["detail"] else "")
                for r in f["replicas"]) or "<small>no copies recorded</small>"
            rows.append([_E(f["role"]), f"<code>{_E(f['path'])}</code>", _E(f["size"]),
                         _E(f["format"]), f"<code>{_E(f['sha256'])}</code>", replicas])
        files = _table(["role", "path", "size", "format", "sha256", "replicas"], rows,
                       "spotkit-data-files")
        use = (f"<small>In a notebook: <code>spotkit.open_catalog(...)[{d.id!r}]"
               ".to_xarray()</code></small>")
        return (f"<table>{fields}</table>{use}<h4>Files</h4>{files}<h4>Metadata</h4>"
                f"<pre style='max-height:16em;overflow:auto'>{_E(d.metadata)}</pre>")

    def _runs_html(self, d: DatasetDetail) -> str:
        rows = []
        for r in d.runs:
            if r["url"] and not self.readonly:
                notebook = (f"<a href='{_E(r['url'], quote=True)}' target='_blank' "
                            f"class='spotkit-data-notebook-link' title='{_E(r['output'])}'>"
                            "open in JupyterLab</a>")
            else:
                notebook = f"<code>{_E(r['output'])}</code>" if r["output"] else ""
            error = f"<span style='color:#cf222e'>{_E(r['error'])}</span>" if r["error"] else ""
            rows.append([_E(r["id"]), _coloured(r["state"]), _E(r["notebook"]),
                         _E(r["target"]), _E(r["started"]), _E(r["duration"]), error,
                         notebook, f"<small>{_E(r['parameters'])}</small>"])
        return _table(["run", "state", "notebook", "target", "started", "took", "error",
                       "executed notebook", "parameters"], rows, "spotkit-data-run-table")

    def _show_previews(self, d: DatasetDetail) -> None:
        w = self._w
        old = list(self.previews.children)
        items = []
        for p in d.previews:
            caption = w.HTML(f"<small>{_E(p['title'])}<br><code>{_E(p['dataset_id'])}"
                             "</code></small>")
            if p["data"] is not None:
                fmt = "svg+xml" if p["format"] == "svg" else p["format"]
                picture = w.Image(value=p["data"], format=fmt,
                                  layout=w.Layout(max_width="320px", height="auto"))
                items.append(w.VBox([picture, caption]))
            else:
                items.append(w.VBox([w.HTML(f"<small>{_E(p['error'])}</small>"), caption]))
        if not items:
            items = [w.HTML("<i>no preview images</i>")]
        self.previews.children = items
        for child in old:
            _close_all(child)


def _close_all(widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_all(child)
    widget.close()
