"""The portal shell: background refresh, errors, selection, read-only, closing, memory.

Driven with small panels defined here (the real panels have their own tests); widgets are
built headless (no kernel, no browser). Browser tests: tests/browser/test_portal_browser*.py.
"""

from __future__ import annotations

import threading
import time
import tracemalloc

import pytest

ipywidgets = pytest.importorskip("ipywidgets")

from spotkit.catalog import open_catalog  # noqa: E402
from spotkit.errors import CatalogError  # noqa: E402
from spotkit.widgets import PANELS, Portal, PortalPanelWarning, portal  # noqa: E402
from spotkit.widgets._portal_app_layout import banner_html, header_html  # noqa: E402
from spotkit.widgets._portal_app_refresh import (  # noqa: E402
    THREAD_NAME,
    PanelState,
    PortalRefresher,
)


class Counter:
    """Counts the catalog's datasets; records the threads it is called from."""

    title = "Count"

    def __init__(self, catalog, *, readonly=False, **options):
        self.catalog, self.readonly, self.options = catalog, readonly, options
        self.widget = ipywidgets.HTML()
        self.fetch_threads: list[str] = []
        self.applied: list[object] = []
        self.shown: list[str] = []
        self.closed = False
        self.delay = 0.0
        self.fail: Exception | None = None
        self._inside = 0
        self.overlaps = 0

    def fetch(self):
        self._inside += 1
        self.overlaps += self._inside > 1
        try:
            self.fetch_threads.append(threading.current_thread().name)
            if self.delay:
                time.sleep(self.delay)
            if self.fail is not None:
                raise self.fail
            return len(self.catalog)
        finally:
            self._inside -= 1

    def apply(self, snapshot):
        self.applied.append(snapshot)
        self.widget.value = f"{snapshot} datasets"

    def show_dataset(self, dataset_id):
        self.shown.append(dataset_id)

    def close(self):
        self.closed = True
        self.widget.close()


class Other(Counter):
    title = "Other"


class Acting(Counter):
    """Has an action button unless read-only (as every real panel must)."""

    title = "Acting"

    def __init__(self, catalog, *, readonly=False, **options):
        super().__init__(catalog, readonly=readonly, **options)
        children = [self.widget]
        if not readonly:
            children.append(ipywidgets.Button(description="Retry"))
        self.widget = ipywidgets.VBox(children)

    def apply(self, snapshot):
        self.applied.append(snapshot)


@pytest.fixture
def cat(tmp_path):
    catalog = open_catalog(tmp_path / "catalog.db")
    yield catalog
    catalog.close()


def _buttons(widget) -> list:
    found, todo, seen = [], [widget], set()
    while todo:
        w = todo.pop()
        if id(w) in seen:
            continue
        seen.add(id(w))
        if isinstance(w, ipywidgets.Button):
            found.append(w)
        for attr in ("children", "header", "center", "footer", "left_sidebar",
                     "right_sidebar"):
            value = getattr(w, attr, None)
            if isinstance(value, (list, tuple)):
                todo += list(value)
            elif isinstance(value, ipywidgets.Widget):
                todo.append(value)
    return found


def _portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def test_fetch_runs_in_the_refresh_thread_and_data_is_applied(cat):
    with Portal(cat, panels=[Counter, Other], refresh=0.05) as p:
        assert p.wait(timeout=20)
        counter, other = p.panels
        assert counter.widget.value == "0 datasets"
        assert other.applied[0] == 0
        assert set(counter.fetch_threads) == {THREAD_NAME}
        assert threading.current_thread().name not in counter.fetch_threads
        assert p.refresher.wait(lambda: len(counter.applied) >= 3, timeout=20)
        assert "every 0.05 s" in p.status.value
        assert "catalog.db" in p.status.value
        assert counter.options["on_select"] == p.select
        assert p.running
    assert not p.running
    assert counter.closed
    assert other.closed
    assert not cat._conn is None  # a catalog given open stays open  # noqa: E714
    assert not _portal_threads()


def test_no_two_fetches_overlap_and_a_slow_panel_holds_no_one_back(cat):
    slow, fast = Counter(cat), Other(cat)
    slow.delay = 0.3
    with Portal(cat, panels=[slow, fast], refresh=0.05) as p:
        manual = threading.Thread(target=p.refresh)  # a manual refresh meanwhile
        manual.start()
        assert p.refresher.wait(lambda: len(slow.applied) >= 3, timeout=30)
        manual.join(10)
        # the fast panel was applied between the slow fetches, not after all of them
        assert len(fast.applied) >= len(slow.applied)
        state = p.refresher.state(slow)
        assert state.seconds >= 0.3
    assert slow.overlaps == 0
    assert fast.overlaps == 0
    assert [slow._inside, fast._inside] == [0, 0]


def test_a_failing_panel_keeps_its_data_and_shows_why_then_recovers(cat):
    bad, good = Counter(cat), Other(cat)
    with Portal(cat, panels=[bad, good], refresh=0.05, autostart=False) as p:
        p.refresh()
        assert bad.widget.value == "0 datasets"
        bad.fail = CatalogError("database is locked")
        p.refresh()
        state = p.refresher.state(bad)
        assert state.failures == 1
        assert state.error == "CatalogError: database is locked"
        assert bad.widget.value == "0 datasets"  # the last data stays
        banner = p.banners[0]
        assert banner.layout.display == "block"
        assert "database is locked" in banner.value
        assert "showing the data of" in banner.value
        assert "1 panel failing (Count)" in p.status.value
        assert good.applied == [0, 0]
        assert p.banners[1].layout.display == "none"
        # backs off: the next try is at least 2 intervals away
        assert state.next_due - time.monotonic() > 0.05
        bad.fail = None
        p.refresher.wake(bad)
        p.start()
        assert p.refresher.wait(lambda: state.error is None, timeout=20)
        assert banner.layout.display == "none"
        assert "panel failing" not in p.status.value


def test_a_slow_catalog_shows_that_the_portal_is_waiting(cat):
    slow = Counter(cat)
    slow.delay = 1.0
    with Portal(cat, panels=[slow], refresh=5) as p:
        assert p.refresher.wait(lambda: p.refresher.busy is not None, timeout=10)
        assert "fetching Count (since" in p.status.value
        assert "loading" in p.status.value
        assert p.wait(timeout=20)
        assert "fetching" not in p.status.value
        assert "refreshed" in p.status.value


def test_an_exception_in_apply_is_shown_not_fatal(cat):
    class Broken(Counter):
        def apply(self, snapshot):
            raise KeyError("row")

    with Portal(cat, panels=[Broken, Other], refresh=0.05, autostart=False) as p:
        p.refresh()
        assert "showing the data failed: KeyError" in p.refresher.state(p.panels[0]).error
        assert p.panels[1].applied == [0]


def test_select_routes_to_every_panel_even_when_one_fails(cat):
    class Refusing(Counter):
        title = "Refusing"

        def show_dataset(self, dataset_id):
            raise FileNotFoundError("volume.h5")

    class Blind(Counter):  # no show_dataset: skipped
        title = "Blind"
        show_dataset = None

    with Portal(cat, panels=[Counter, Refusing, Blind, Other], autostart=False) as p:
        p.panels[0].options["on_select"]("ds-000042")  # how a panel asks for it
        assert p.selected == "ds-000042"
        assert p.panels[0].shown == ["ds-000042"]
        assert p.panels[3].shown == ["ds-000042"]
        assert "ds-000042" in p.status.value
        assert "cannot show ds-000042 in Refusing: FileNotFoundError" in p.status.value
        p.select("ds-000043", tab="other")
        assert p.tabs.selected_index == 3
        assert p.panels[3].shown[-1] == "ds-000043"
        with pytest.raises(ValueError, match="dataset_id"):
            p.select("")
        with pytest.raises(KeyError, match="no panel 'nope'"):
            p.select("ds-1", tab="nope")


def test_the_tab_on_screen_is_refreshed_first(cat):
    with Portal(cat, panels=[Counter, Other], autostart=False) as p:
        p.tabs.selected_index = 1
        assert p.refresher._due()[0] is p.panels[1]


def test_readonly_has_no_buttons_and_tells_panels(cat):
    with Portal(cat, panels=[Acting], readonly=True, autostart=False) as p:
        assert _buttons(p.widget) == []
        assert p.panels[0].readonly is True
        assert "read-only" in p.status.value
        assert "spotkit-portal-readonly" in p.widget._dom_classes
    with Portal(cat, panels=[Acting], autostart=False) as p:
        names = sorted(b.description for b in _buttons(p.widget))
        assert names == ["Refresh", "Retry"]


def test_panels_are_checked(cat):
    with pytest.raises(TypeError, match="lacks title, widget, fetch, apply, close"):
        Portal(cat, panels=[object()], autostart=False)
    with pytest.raises(ValueError, match="unknown portal panel 'maps'"):
        Portal(cat, panels=["maps"], autostart=False)
    with pytest.raises(ValueError, match="panels is empty"):
        Portal(cat, panels=[], autostart=False)
    with pytest.raises(TypeError, match="list of panel names"):
        Portal(cat, panels="data", autostart=False)
    with pytest.raises(ValueError, match="positive number of seconds"):
        Portal(cat, panels=[Counter], refresh=0)


def test_a_default_panel_that_cannot_load_is_left_out_with_a_warning(cat, monkeypatch):
    monkeypatch.setattr("spotkit.widgets._portal.PANELS",
                        {"count": f"{__name__}:Counter", "gone": "spotkit.widgets._nope:X"})
    with pytest.warns(PortalPanelWarning, match="without its 'gone' panel"):
        p = Portal(cat, autostart=False)
    with p:
        assert [type(x).__name__ for x in p.panels] == ["Counter"]
        assert "left out: gone: ModuleNotFoundError" in p.status.value
    assert set(PANELS) == {"data", "viewers", "flow", "jobs", "monitor", "live"}


def test_a_catalog_path_is_opened_and_closed_by_the_portal(tmp_path):
    open_catalog(tmp_path / "catalog.db").close()
    p = portal(tmp_path / "catalog.db", panels=[Counter], refresh=0.05)
    assert p.wait(timeout=20)
    catalog = p.catalog
    p.close()
    p.close()  # twice is fine
    with pytest.raises(CatalogError):
        len(catalog)
    assert "closed" in repr(p)
    assert p._repr_mimebundle_() == {"text/plain": repr(p)}
    assert "closed" in p.status.value
    with pytest.raises(CatalogError):  # a mistyped path is not created
        portal(tmp_path / "missing.db", panels=[Counter])
    assert not (tmp_path / "missing.db").exists()


def test_nothing_is_applied_after_close(cat):
    slow = Counter(cat)
    slow.delay = 0.5
    p = Portal(cat, panels=[slow], refresh=0.05)
    assert p.refresher.wait(lambda: p.refresher.busy is not None, timeout=10)
    p.refresher.close(timeout=0.01)  # the fetch is still running
    p.close()
    time.sleep(0.7)
    assert slow.applied == []


def test_memory_does_not_grow_over_many_refreshes(cat):
    """A compressed hour at 5 s: 720 refreshes of two panels (the benchmark does more)."""
    with Portal(cat, panels=[Counter, Other], refresh=5, autostart=False) as p:
        for _ in range(50):  # warm up (caches, first-time allocations)
            p.refresh()
        for panel in p.panels:
            panel.applied.clear()
            panel.fetch_threads.clear()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(720):
                p.refresh()
                for panel in p.panels:  # the test panels' own logs are not the portal's
                    panel.applied.clear()
                    panel.fetch_threads.clear()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert p.refresher.state(p.panels[0]).applied == 770
    assert grown < 64 * 1024, f"{grown} bytes more after 720 refreshes"


def test_header_and_banner_text_are_escaped():
    state = PanelState("Data <b>", error="CatalogError: <script>", failures=2)
    text = header_html(catalog="<x>.db", states=[state], interval=5, running=False,
                       selected="<id>", message="a & b")
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert "paused" in text
    assert "&lt;x&gt;.db" in text
    assert "&lt;id&gt;" in text
    assert "a &amp; b" in text
    assert "<script>" not in banner_html(state)
    assert "(2x)" in banner_html(state)
    assert banner_html(PanelState("Data")) == ""


def test_refresher_interval_is_validated_and_closed_does_not_start():
    refresher = PortalRefresher([Counter(None)], interval=1)
    with pytest.raises(ValueError, match="not 'soon'"):
        refresher.interval = "soon"
    refresher.close()
    assert refresher.start() is False
    assert not refresher.running


def test_a_panel_may_ask_for_a_refresh_now(cat):
    class Asking(Counter):
        request_refresh = None  # the portal fills it in

    with Portal(cat, panels=[Asking], refresh=60) as p:
        panel = p.panels[0]
        assert p.wait(timeout=20)
        assert callable(panel.request_refresh)
        panel.request_refresh()  # e.g. after a search: fetched now, not in 60 s
        assert p.refresher.wait(lambda: len(panel.applied) >= 2, timeout=20)
        assert set(panel.fetch_threads) == {THREAD_NAME}
        p.stop()
        panel.request_refresh()  # paused: refreshed at once in the caller's thread
        assert len(panel.applied) == 3


def test_a_panel_gets_its_own_options(cat):
    with Portal(cat, panels=[(Counter, {"colour": "red"}), Other], autostart=False) as p:
        assert p.panels[0].options["colour"] == "red"
        assert "colour" not in p.panels[1].options
    with pytest.raises(TypeError, match="options are for panel names or classes"):
        Portal(cat, panels=[(Counter(cat), {"colour": "red"})], autostart=False)
