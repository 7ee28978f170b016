"""The Data panel's ipywidgets view, built headless (no browser): protocol, clicks, readonly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("ipywidgets")

import spotkit.widgets._portal_data_model as data_model
from spotkit.errors import CatalogError
from spotkit.widgets._portal_data import DataPanel
from spotkit.widgets._portal_data_view import graph_svg

sys.path.insert(0, str(Path(__file__).parent))
from test_portal_data_model import lineage_catalog


@pytest.fixture
def built(tmp_path):
    cat, things = lineage_catalog(tmp_path)
    yield cat, things, tmp_path
    cat.close()


def _visible_rows(panel):
    return [b.description for b, _ in panel._slots if b.layout.display != "none"]


def test_protocol_grid_and_selection_through_the_portal(built):
    cat, t, root = built
    picked = []
    panel = DataPanel(cat, page_size=10, on_select=picked.append, lab=(str(root), "/"))
    assert panel.title == "Data"
    assert panel._widget is None
    panel.apply(panel.fetch())
    assert _visible_rows(panel) == cat.search(limit=10).ids
    assert panel.status.value.startswith("1–10 of 60 datasets")
    assert panel.pages_label.value == "of 6"
    assert panel.prev_button.disabled
    # a click on a row goes to the portal, which calls show_dataset on every panel
    button = next(b for b, _ in panel._slots if b.description == t["raw"].id)
    button.click()
    assert picked == [t["raw"].id]
    panel.request_refresh = lambda: None  # the portal refreshes: no thread of our own
    panel.show_dataset(t["raw"].id)
    snap = panel.fetch()
    panel.apply(snap)
    assert snap.did == "detail"
    assert button.button_style == "info"
    detail = panel._detail
    assert t["raw"].id in detail.header.value
    assert detail.tabs.layout.display is None
    assert "warehouse" in detail.overview.value
    assert "bone-scan" in detail.overview.value
    assert "centre out of range" in detail.runs.value
    assert "href='/lab/tree/runs/out.ipynb'" in detail.runs.value
    assert "onset at frame 3" in detail.marks.value
    assert bytes(detail.previews.children[0].children[0].value).startswith(b"\x89PNG")
    assert "<svg" in detail.graph_picture.value
    # graph nodes: the product's button picks it, a run's shows the Runs tab
    columns = detail.graph_nodes.children[::2]
    product = next(b for b in columns[2].children if t["slices"].id in b.tooltip)
    product.click()
    assert picked[-1] == t["slices"].id
    columns[1].children[0].click()
    assert detail.tabs.selected_index == 2
    assert detail.actions.layout.display is None  # actions shown when not read-only
    panel.close()


def test_readonly_hides_actions_and_links(built):
    cat, t, root = built
    panel = DataPanel(cat, readonly=True, page_size=5, request_refresh=lambda: None,
                      lab=(str(root), "/"))
    panel.apply(panel.fetch())
    panel.show_dataset(t["raw"].id)
    panel.apply(panel.fetch())
    detail = panel._detail
    assert detail.actions.layout.display == "none"
    assert detail.actions not in \
        detail.widget.children
    assert "href" not in detail.runs.value
    assert "out.ipynb" in detail.runs.value
    with pytest.raises(PermissionError):
        panel._set_status(t["raw"].id, "quarantined", "")
    panel.close()


def test_form_search_and_paging_run_in_the_panels_own_thread(built):
    cat, _t, _ = built
    panel = DataPanel(cat, page_size=5, lab=(None, "/"))
    panel.widget  # noqa: B018 (build)
    panel.form["sample"].value = "bone-2*"
    panel.search_button.click()
    assert panel.wait(30)
    assert _visible_rows(panel) == cat.search(sample="bone-2*", limit=5).ids
    panel.next_button.click()
    assert panel.wait(30)
    assert _visible_rows(panel) == cat.search(sample="bone-2*", limit=5, offset=5).ids
    assert panel.page_box.value == 2
    assert panel.next_button.disabled
    panel.form["text"].value = "scan 21"  # Enter in a field searches too
    assert panel.wait(30)
    assert _visible_rows(panel) == cat.search(sample="bone-2*", text="scan 21").ids
    panel.search(since="last week")  # a bad date: shown, nothing read
    assert "not a date" in panel.status.value
    panel.close()


def test_errors_are_shown_and_the_last_page_kept(built, monkeypatch):
    cat, _, _ = built
    panel = DataPanel(cat, page_size=5, lab=(None, "/"))
    panel.apply(panel.fetch())
    rows = _visible_rows(panel)

    def broken(*args, **kwargs):
        raise CatalogError("reading catalog x failed: server closed the connection")

    monkeypatch.setattr(data_model, "search_page", broken)
    with pytest.raises(CatalogError, match="server closed"):  # the portal shows it
        panel.fetch()
    panel.next_button.click()  # on its own, the panel shows it in its status line
    assert panel.wait(30)
    assert "server closed the connection" in panel.status.value
    assert "showing the last data read" in panel.status.value
    assert _visible_rows(panel) == rows
    panel.close()


def test_set_status_action_calls_the_catalog(built):
    cat, t, _ = built
    panel = DataPanel(cat, page_size=5, lab=(None, "/"))
    panel.show_dataset(t["raw"].id)
    assert panel.wait(30)
    panel._detail.status_menu.value = "quarantined"
    panel._detail.reason.value = "detector fault"
    panel._detail.status_button.click()
    for _ in range(300):
        if cat[t["raw"].id].status == "quarantined" and panel.wait(30) and \
                panel._detail.detail.status == "quarantined":
            break
        import time

        time.sleep(0.01)
    assert cat[t["raw"].id].metadata["status_reason"] == "detector fault"
    assert panel._detail.detail.status == "quarantined"
    panel.close()


def test_graph_svg_escapes_text(built):
    cat, t, _ = built
    from spotkit.catalog import dataset_overview
    from spotkit.widgets._portal_data_detail import describe

    detail = describe(dataset_overview(cat, t["raw"].id), previews=False)
    svg = graph_svg(detail)
    assert svg.count("<rect") == sum(len(c) for c in detail.graph) == 5
    # raw -> quick look -> (slices, preview); raw -> the failed recon run
    assert svg.count("<line") == len(detail.graph_edges) == 4
    from dataclasses import replace

    from spotkit.widgets._portal_data_detail import GraphNode

    evil = GraphNode("ds-x", "dataset", "<script>x</script>", "a & b", "raw", True, "ds-x")
    svg = graph_svg(replace(detail, graph=((evil,),), graph_edges=()))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "a &amp; b" in svg
