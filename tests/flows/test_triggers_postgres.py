"""Live triggers, transfer priorities and frame retention on a PostgreSQL catalog (the same
statements as on SQLite: decisions, resume, the journal's priority order, releases)."""

from __future__ import annotations

import pytest

from spotkit.catalog import LivePoint, open_catalog
from spotkit.flows import FrameRetention, Journal, LiveTriggers, load_rules
from spotkit.sim import simulate_saxs_series, write_frame_folder

RULES = """\
targets: {local: {kind: local}}
live:
  - {name: first, on: onset, actions: [{priority: {level: 5, window: [1, 2]}}]}
  - {name: tick, on: every, frames: 4, actions: [{priority: {level: 1}}]}
"""


@pytest.fixture
def pg_url(request):
    server = request.getfixturevalue("postgres_server")
    url = server.create_database("triggers")
    yield url
    server.drop_database(url)


def test_on_postgresql(pg_url, tmp_path):
    simulate_saxs_series(tmp_path / "s.h5", n_frames=6, shape=(24, 32), module_shape=None,
                         seed=2)
    folder = write_frame_folder(tmp_path / "run_0001", tmp_path / "s.h5", fmt="tiff")
    cat = open_catalog(pg_url)
    ds = cat.ingest(folder)
    journal = Journal(pg_url)
    for name in ("a", "b", "c"):
        journal.discover(name, f"/inbox/{name}", size=1, mtime_ns=1)
    journal.update_item("c", dataset_id=ds.id)
    rules = load_rules(RULES)

    def frames(t, seq, events=None):
        return [d for f in seq for d in t.on_frame(
            LivePoint(f, "features", {"state": "watching"}), event=(events or {}).get(f))]

    with LiveTriggers(rules, cat, dataset_id=ds.id, journal=journal) as t:
        got = frames(t, range(6), {3: LivePoint(3, "event", {"onset": 2, "confidence": 0.99})})
    assert [(d.trigger, d.frame) for d in got] == [("first", 3), ("tick", 3)]
    assert [p.kind for p in cat.live_points(ds.id, kinds="decision")] == [
        "decision:first", "decision:tick"]
    assert [i.key for i in journal.due()] == ["c", "a", "b"]
    assert [(p["first_frame"], p["priority"]) for p in journal.priorities(ds.id)] == [
        (1, 5), (None, 1)]
    with LiveTriggers(rules, cat, dataset_id=ds.id, journal=journal) as t:  # a restart
        again = frames(t, range(6, 8), {6: LivePoint(6, "event", {"onset": 2})})
    assert [(d.trigger, d.frame) for d in again] == [("tick", 7)]
    cat.mark_frames(ds.id, [1, 2], "redundant")
    policy = FrameRetention(validated_by="approval", min_age_days=0, dest=tmp_path / "cold")
    policy.approve(cat, ds.id, by="ops", reason="reviewed")
    assert policy.apply(cat, ds.id, dry_run=False).done == (1, 2)
    assert [r["frame"] for r in policy.releases(cat, ds.id)] == [1, 2]
    journal.close()
    cat.close()
