"""spotkit.live.LiveSession: a series followed while the twin writes it, pauses, truncated
frames, a faster detector, a kill in the middle of a batch (nothing counted twice)."""

from __future__ import annotations

import numpy as np
import pytest

from spotkit.catalog import open_catalog
from spotkit.change import reduction_policy
from spotkit.errors import SpotkitError
from spotkit.flows import load_rules
from spotkit.live import LiveSession, LiveStatus
from spotkit.sim import LiveSeriesWriter, Transition

SHAPE = (48, 64)
N = 40
#: two changes, far enough apart for the detector's hold-off and warm-up (DETECTOR)
CHANGES = (Transition(12, "radius_nm", 7.0), Transition(28, "peak_amplitude", 40.0))
DETECTOR = {"warmup": 5, "holdoff": 4}


def _writer(path, *, n_frames=N, transitions=CHANGES, **kw):
    return LiveSeriesWriter(path, n_frames=n_frames, shape=SHAPE, transitions=transitions,
                            module_shape=None, seed=4, **kw)


RULES = """
targets: {local: {kind: local}}
live:
  - {name: first-frames, on: onset, min_confidence: 0.9,
     actions: [{priority: {level: 10, window: [2, 8]}}]}
"""


def _points(cat, ds, kind):
    return [(p.frame, p.values) for p in cat.live_points(ds, kinds=kind)]


@pytest.mark.parametrize("fmt", ["h5", "cbf"])
def test_follows_a_series_while_it_is_written(tmp_path, fmt):
    writer = _writer(tmp_path / ("run.h5" if fmt == "h5" else "run"), fmt=fmt)
    cat = open_catalog(tmp_path / "catalog.db")
    seen = []
    rules = load_rules(RULES) if fmt == "h5" else None
    live = LiveSession(writer.path, catalog=cat, detector=DETECTOR, on_point=seen.append,
                       rules=rules)
    assert live.step() == []
    assert live.status.done == 0
    writer.write(8)
    writer.write_partial(0.5)  # frame 8 caught mid-write: never handed out
    first = live.step()
    assert [p.frame for p in first if p.kind == "features"] == list(range(8))
    assert live.status.state == "following"
    assert live.status.written == 8
    ds = cat[live.dataset_id]
    assert ds.status == "acquiring"
    assert cat.live_status(ds.id)["path"] == str(writer.path)
    writer.write(100)  # the rest, and the end of the series
    status = live.run(idle_timeout=10)
    live.close()
    assert isinstance(status, LiveStatus)
    assert (status.state, status.done, status.written, status.behind) == ("finished", N, N, 0)
    features = _points(cat, ds.id, "features")
    assert [f for f, _ in features] == list(range(N))  # each frame once, in order
    assert [p.frame for p in seen if p.kind == "features"] == list(range(N))
    assert all(p.recorded_at is not None for p in seen)
    # both changes found at their onsets, confirmed within the detector's delay
    events = _points(cat, ds.id, "event")
    assert [v["onset"] for _, v in events] == [12, 28]
    assert all(f - v["end"] <= 4 for f, v in events)  # the detector's confirm delay
    assert [v["state"] for _, v in features[:9]] == ["warmup"] * 5 + ["watching"] * 4
    assert features[events[0][0] + 1][1]["state"] == "holdoff"
    # every frame marked, as the reduction policy labels the whole series
    plan = reduction_policy([(v["onset"], v["end"]) for _, v in events], n_frames=N)
    marks = cat.frame_marks(ds.id)
    assert [m["frame"] for m in marks] == list(range(N))
    assert [m["label"] for m in marks] == list(plan.labels)
    assert status.reduction_factor == pytest.approx(plan.reduction_factor)
    # the finished series ingested with its checksums; the live one says where it went
    final = cat[live.ingested_as]
    assert final.status == "raw"
    assert final.metadata["live_dataset"] == ds.id
    assert cat[ds.id].status == "superseded"
    assert [m["label"] for m in cat.frame_marks(final.id)] == list(plan.labels)
    st = cat.live_status(ds.id)
    assert (st["state"], st["active"], st["done"]) == ("finished", False, N)
    assert st["ingested_as"] == final.id
    if rules is not None:  # the live trigger acted on each change, and said why
        decisions = [v for _, v in _points(cat, ds.id, "decision")]
        assert [d["trigger"] for d in decisions] == ["first-frames"] * 2
        assert decisions[0]["reason"].startswith("onset at frame 12")
    profiles = live_profiles(cat, ds.id)
    assert profiles.frame.values.tolist() == list(range(N))
    assert np.isfinite(profiles.intensity.values[:, 20:]).all()
    cat.close()


def live_profiles(cat, ds):
    from spotkit.live import ProfileLog

    log = ProfileLog.open(cat.live_status(ds)["profile_log"])
    try:
        return log.read()
    finally:
        log.close()


def test_a_kill_mid_batch_counts_nothing_twice(tmp_path, monkeypatch, caplog):
    """A session that dies between writing I(q) rows and recording their points, and one
    that dies between recording points and marking frames, resume exactly: the same points,
    events and marks as a session that was never interrupted (the detector rebuilt from a
    checkpoint and the profiles after it, or from the profiles since its fresh start)."""
    import spotkit.live._checkpoint as checkpoint
    import spotkit.live._session as session

    monkeypatch.setattr(session, "BATCH_SECONDS", 1e6)  # batches of max_batch, however slow
    reference = tmp_path / "ref"
    reference.mkdir()
    writer = _writer(reference / "run.h5")
    writer.write(N)
    rules = load_rules(RULES)
    with open_catalog(reference / "catalog.db") as cat:
        with LiveSession(writer.path, catalog=cat, detector=DETECTOR, max_batch=5,
                         rules=rules) as live:
            live.run(idle_timeout=10)
        want_features = _points(cat, live.dataset_id, "features")
        want_events = _points(cat, live.dataset_id, "event")
        want_marks = [(m["frame"], m["label"], m["reason"])
                      for m in cat.frame_marks(live.dataset_id)]
        want_decisions = _decisions(cat, live.dataset_id)
        assert len(want_decisions) == 2

    writer = _writer(tmp_path / "run.h5")
    writer.write(N)
    cat = open_catalog(tmp_path / "catalog.db")
    monkeypatch.setattr(checkpoint, "CHECKPOINT_EVERY", 6)
    caplog.set_level("INFO", logger="spotkit.live")

    def die(method, after):  # the session's `after`-th call dies; the others go through
        calls = []
        real = getattr(cat, method)

        def dying(*args, **kwargs):
            mine = method != "record_live" or any(p.kind == "features" for p in args[1])
            if mine:  # not the triggers' own records of their decisions
                calls.append(1)
            if mine and len(calls) == after:
                raise KeyboardInterrupt("killed")
            return real(*args, **kwargs)

        monkeypatch.setattr(cat, method, dying)

    # batches of 5 frames; a checkpoint after frame 9 (CHECKPOINT_EVERY); the change at 12
    # is confirmed at frame 16, then 4 frames of hold-off and a fresh detector from frame 21
    die("record_live", after=4)  # in the 4th batch: frames 15..19 are in the ProfileLog only
    live = LiveSession(writer.path, catalog=cat, detector=DETECTOR, max_batch=5, rules=rules)
    with pytest.raises(KeyboardInterrupt):
        live.run(idle_timeout=10)
    with pytest.raises(SpotkitError, match="start a new one: it resumes at frame 15"):
        live.step()  # frames were handed out and not recorded: this session may not go on
    _abandon(live)
    assert cat.live_cursor(live.dataset_id) == 14

    die("mark_frames", after=1)  # after recording frames 15..19 (with the change), before
    # the marks and the triggers saw them
    live = LiveSession(writer.path, catalog=cat, detector=DETECTOR, max_batch=5, rules=rules)
    assert live.cursor == 14
    with pytest.raises(KeyboardInterrupt):
        live.run(idle_timeout=10)
    assert "from a checkpoint and 5 recorded profiles (frames 10..14)" in caplog.text
    _abandon(live)
    assert cat.live_cursor(live.dataset_id) == 19
    assert cat.frame_marks(live.dataset_id) == []

    die("record_live", after=2)  # records frames 20..24, dies on 25..29
    live = LiveSession(writer.path, catalog=cat, detector=DETECTOR, max_batch=5, rules=rules)
    with pytest.raises(KeyboardInterrupt):
        live.run(idle_timeout=10)
    _abandon(live)

    with LiveSession(writer.path, catalog=cat, detector=DETECTOR, max_batch=5, rules=rules) as live:
        assert live.cursor == 24
        status = live.run(idle_timeout=10)
    assert "rebuilt from 4 recorded profiles (frames 21..24)" in caplog.text
    assert status.done == N
    assert status.state == "finished"
    assert _points(cat, live.dataset_id, "features") == want_features
    assert _points(cat, live.dataset_id, "event") == want_events
    assert _decisions(cat, live.dataset_id) == want_decisions  # each taken, once
    assert [(m["frame"], m["label"], m["reason"])
            for m in cat.frame_marks(live.dataset_id)] == want_marks
    assert live_profiles(cat, live.dataset_id).frame.values.tolist() == list(range(N))
    cat.close()


def _decisions(cat, ds):
    return [(p.frame, p.kind, p.values["onset"], p.values["reason"])
            for p in cat.live_points(ds, kinds="decision")]


def _abandon(live):
    """What a killed process leaves: nothing more written; its files closed by the OS."""
    live._closed = True
    live._log.close()
    live._source.close()


def test_behind_a_faster_detector_then_a_real_time_writer_that_pauses(tmp_path,
                                                                       monkeypatch):
    import spotkit.live._session as session

    monkeypatch.setattr(session, "WAIT_AFTER_S", 0.15)
    # 24 frames: 12 at once, then one every 20 ms with a 0.8 s pause after frame 17
    writer = _writer(tmp_path / "run.h5", n_frames=24, transitions=(), time_scale=0.02,
                     pauses=[(17, 40.0)])
    writer.write(12)
    with open_catalog(tmp_path / "catalog.db") as cat:
        live = LiveSession(writer.path, catalog=cat)
        live.step(max_frames=2)
        status = live.status
        assert (status.done, status.written, status.behind, status.state) == (2, 12, 10,
                                                                              "behind")
        assert cat.live_status(live.dataset_id)["behind"] == 10
        states = []

        def watch():  # called once per loop of run(): what the status said meanwhile
            states.append((live.status.state, cat.live_status(live.dataset_id)["state"]))
            return False

        writer.start()
        status = live.run(stop=watch, idle_timeout=10)
        assert writer.wait(10)
        live.close()
    assert (status.done, status.written, status.behind, status.state) == (24, 24, 0,
                                                                          "finished")
    seen = [s for s, _ in states]
    assert seen.index("following") < seen.index("waiting")  # the writer paused
    assert ("waiting", "waiting") in states  # and the catalog said so
    assert status.rate_hz > 0
    assert status.latency_s is not None


def test_clear_errors(tmp_path):
    writer = _writer(tmp_path / "run.h5", n_frames=5, transitions=())
    writer.write(2)
    with open_catalog(tmp_path / "catalog.db") as cat:
        with pytest.raises(ValueError, match="npt"):
            LiveSession(writer.path, catalog=cat, npt=1)
        with pytest.raises(ValueError, match="detector options: 'mask'"):
            LiveSession(writer.path, catalog=cat, detector={"mask": None})
        with pytest.raises(ValueError, match="warmup"):
            LiveSession(writer.path, catalog=cat, detector={"warmup": 1})
        live = LiveSession(writer.path, catalog=cat, mask=np.zeros((3, 3), bool))
        with pytest.raises(ValueError, match=r"mask of shape \(3, 3\)"):
            live.step()
        live.close()
        live = LiveSession(writer.path, catalog=cat)  # stopped before the series ends
        assert live.step()
        with pytest.raises(SpotkitError, match="being followed by another live session"):
            LiveSession(writer.path, catalog=cat)
        live.close()
        assert cat.live_status(live.dataset_id)["state"] == "stopped"
        assert cat.live_series() == []
        writer.write(1)
        live = LiveSession(writer.path, catalog=cat, npt=100)
        with pytest.raises(ValueError, match="reduced to 300 bins of q"):
            live.step()
        live.close()


def test_on_postgresql(postgres_server, tmp_path):
    """The same session on a PostgreSQL catalog: registered, recorded, resumed by path."""
    url = postgres_server.create_database()
    try:
        writer = _writer(tmp_path / "run.h5", n_frames=16, transitions=())
        writer.write(10)
        with open_catalog(url) as cat:
            with LiveSession(writer.path, catalog=cat, detector=DETECTOR) as live:
                assert live.run(idle_timeout=0.2).done == 10
            writer.write(6)
            with LiveSession(writer.path, catalog=cat, detector=DETECTOR) as again:
                assert again.dataset_id == live.dataset_id
                assert again.cursor == 9
                status = again.run(idle_timeout=5)
            assert (status.done, status.state) == (16, "finished")
            points = cat.live_points(live.dataset_id, kinds="features")
            assert [p.frame for p in points] == list(range(16))
            assert [m["frame"] for m in cat.frame_marks(live.dataset_id)] == list(range(16))
            assert cat[again.ingested_as].status == "raw"
    finally:
        postgres_server.drop_database(url)


def test_a_series_written_again_under_its_name_is_a_new_series(tmp_path):
    path = tmp_path / "run.h5"
    with open_catalog(tmp_path / "catalog.db") as cat:
        for seed in (1, 2):
            if path.exists():
                path.unlink()  # the detector writes a new file of the same name
            writer = LiveSeriesWriter(path, n_frames=6, shape=SHAPE, transitions=(),
                                      module_shape=None, seed=seed, overwrite=True)
            writer.write(6)
            with LiveSession(path, catalog=cat, detector=DETECTOR) as live:
                assert live.cursor == -1
                assert live.run(idle_timeout=5).done == 6
        assert len(cat.live_series(active=None)) == 2


def test_a_writer_killed_mid_frame(tmp_path):
    """The last frame half-written and the series never ended: every whole frame is done,
    the half one never handed out; the session waits, then stops when told to."""
    writer = _writer(tmp_path / "run.h5", n_frames=8, transitions=(), truncate_last=True)
    writer.write(8)
    with open_catalog(tmp_path / "catalog.db") as cat:
        with LiveSession(writer.path, catalog=cat, detector=DETECTOR) as live:
            status = live.run(idle_timeout=0.3)
        assert (status.done, status.written, status.behind) == (7, 7, 0)
        assert status.state in ("following", "waiting")
        assert cat.live_status(live.dataset_id)["state"] == "stopped"
        assert cat.live_cursor(live.dataset_id) == 6


def test_a_catalog_outage_delays_points_and_loses_none(tmp_path, monkeypatch):
    import spotkit.live._session as session
    from spotkit.backoff import Backoff
    from spotkit.errors import CatalogError

    monkeypatch.setattr(session, "OUTAGE_BACKOFF", Backoff(first=0.01, maximum=0.02))
    writer = _writer(tmp_path / "run.h5", n_frames=12, transitions=())
    writer.write(12)
    with open_catalog(tmp_path / "catalog.db") as cat:
        real, calls = cat.record_live, []

        def away(ds, points, **kw):  # the 2nd and 3rd batches find the catalog away
            calls.append(1)
            if len(calls) in (2, 3):
                raise CatalogError("database is locked")
            return real(ds, points, **kw)

        monkeypatch.setattr(cat, "record_live", away)
        with LiveSession(writer.path, catalog=cat, detector=DETECTOR, max_batch=4) as live:
            states = []
            status = live.run(idle_timeout=5, stop=lambda: states.append(live.status.state))
        assert "outage" in states
        assert (status.done, status.state) == (12, "finished")
        points = cat.live_points(live.dataset_id, kinds="features")
        assert [p.frame for p in points] == list(range(12))
        assert [m["frame"] for m in cat.frame_marks(live.dataset_id)] == list(range(12))
