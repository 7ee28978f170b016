"""The portal's Live panel: the live series from the catalog (one read), a follower that went
quiet marked, the chosen series opened in a LiveTimeline; in the portal by default."""

from __future__ import annotations

import time

import pytest

from spotkit.catalog import LivePoint, open_catalog
from spotkit.widgets._portal_live_model import LivePanelModel, series_row

ipywidgets = pytest.importorskip("ipywidgets")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cat(tmp_path):
    from spotkit.sim import simulate_saxs_series

    c = open_catalog(tmp_path / "catalog.db")
    ids = []
    for i, state in enumerate(("following", "behind", "finished")):
        truth = simulate_saxs_series(tmp_path / f"s{i}.h5", n_frames=3, seed=i, shape=(30, 40),
                                     module_shape=(14, 18), module_gap=(2, 3),
                                     sample=f"sample {i}")
        ds = c.ingest(truth.path, status="acquiring")
        ids.append(ds.id)
        c.record_live(ds.id, [LivePoint(k, "features", {"difference": 1.0 + k})
                              for k in range(5 + i)])
        c.set_live_status(ds.id, state=state, path=str(truth.path), written=10 * (i + 1),
                          done=5 + i, behind=10 * (i + 1) - 5 - i, rate_hz=4.0 + i,
                          latency_s=0.25)
    c.ids = ids
    yield c
    c.close()


def test_model_lists_the_active_series_in_one_read(cat):
    model = LivePanelModel(cat)
    snap = model.fetch()
    following, behind, _finished = cat.ids
    assert sorted(r["dataset_id"] for r in snap.rows) == sorted([following, behind])
    row = next(r for r in snap.rows if r["dataset_id"] == behind)
    assert row["frames"] == "6 / 20"
    assert row["behind"] == 14
    assert row["rate"] == "5/s"
    assert row["latency"] == "0.25 s"
    assert row["sample"] == "sample 1"
    assert not row["stale"]
    assert "behind by 14 frames" in row["line"]
    model.active = False  # every series with a live status
    assert len(model.fetch().rows) == 3
    with pytest.raises(TypeError, match="live_series"):
        LivePanelModel(object())


def test_a_quiet_follower_is_marked():
    row = series_row({"dataset_id": "d", "state": "following", "updated_at": 0.0}, now=600.0)
    assert row["stale"]
    assert "no news for 600 s" in row["line"]
    done = series_row({"dataset_id": "d", "state": "finished", "updated_at": 0.0}, now=600.0)
    assert not done["stale"]


def test_panel_shows_and_opens_a_series(cat):
    from spotkit.widgets import LivePanel, LiveTimeline

    selected = []
    panel = LivePanel(cat, on_select=selected.append, timeline_refresh=0.05)
    try:
        panel.apply(panel.fetch())
        assert "2 live series" in panel.summary.value
        assert "2 behind" in panel.summary.value
        assert panel.table.value.count("<tr>") == 3  # header + 2
        assert set(panel.series.options) == set(cat.ids[:2])
        panel.series.value = cat.ids[1]
        panel.open_button.click()
        timeline = panel.timeline
        assert isinstance(timeline, LiveTimeline)
        assert timeline.model.dataset_id == cat.ids[1]
        assert panel.holder.children == (timeline.widget,)
        assert selected == [cat.ids[1]]
        assert timeline.wait(lambda m: m.n_frames == 6, timeout=20)
        # the portal's selection of another live series opens it instead
        panel.show_dataset(cat.ids[0])
        assert panel.timeline.model.dataset_id == cat.ids[0]
        assert not timeline.running  # the first one was closed
        panel.show_dataset("not-live")  # not a live series: left alone
        assert panel.timeline.model.dataset_id == cat.ids[0]
        cat.set_live_status(cat.ids[1], ingested_as="ds-final")  # the finished file's id
        panel.apply(panel.fetch())
        panel.show_dataset("ds-final")  # opens the live series it came from
        assert panel.timeline.model.dataset_id == cat.ids[1]
        panel.active.value = False  # finished ones too (a worker reads them)
        assert panel.worker.join(10)
        assert len(panel.snapshot.rows) == 3
    finally:
        panel.close()
    assert panel.timeline is None


def test_portal_has_a_live_tab(cat):
    from spotkit.widgets import LivePanel, Portal

    with Portal(cat, refresh=0.1) as portal:
        panel = portal.panel("Live")
        assert isinstance(panel, LivePanel)
        assert portal.wait(timeout=60)
        deadline = time.monotonic() + 20
        while panel.snapshot is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(panel.snapshot.rows) == 2
        portal.select(cat.ids[0], tab="Live")
        assert panel.timeline is not None
        assert panel.timeline.model.dataset_id == cat.ids[0]
