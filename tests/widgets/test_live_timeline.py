"""LiveTimelineModel on a real catalog (what ``spotkit live`` records: features, events, fits,
decisions, status), and the LiveTimeline view driven headless while points keep coming."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from spotkit.catalog import LivePoint, open_catalog
from spotkit.widgets._live_timeline_model import LiveTimelineModel, status_text

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def series(tmp_path):
    """(catalog, dataset id) of a registered series being acquired."""
    from spotkit.sim import simulate_saxs_series

    cat = open_catalog(tmp_path / "catalog.db")
    truth = simulate_saxs_series(tmp_path / "s.h5", n_frames=4, seed=1, shape=(40, 50),
                                 module_shape=(18, 22), module_gap=(2, 3))
    ds = cat.ingest(truth.path)
    yield cat, ds.id
    cat.close()


def _until(condition, timeout=20.0):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def _features(frames, *, jump_at=30, flagged=()):
    rng = np.random.default_rng(0)
    return [LivePoint(k, "features", {
        "difference": float(1.0 + rng.normal(0, 0.1) + (4.0 if k >= jump_at else 0.0)),
        "intensity_mean": 100.0 + k, "score": float(k >= jump_at) * 20.0,
        "state": "warmup" if k < 8 else ("alarm" if k in flagged else "watching"),
        "flagged": int(k in flagged)}, time_s=0.1 * k, written_at=1e9 + k) for k in frames]


def test_fetch_reads_what_is_new_once(series):
    cat, ds = series
    cat.record_live(ds, _features(range(20)))
    cat.set_live_status(ds, state="following", written=25, done=20, behind=5, rate_hz=8.0,
                        latency_s=0.4)
    model = LiveTimelineModel(cat, ds)
    up = model.fetch()
    assert (up.new, up.changed, up.kinds) == (20, True, frozenset({"features"}))
    assert model.n_frames == 20
    assert model.last_frame == 19
    assert model.feature_names == ["difference", "intensity_mean", "score"]
    frames, values = model.feature("intensity_mean")
    np.testing.assert_array_equal(frames, np.arange(20))
    np.testing.assert_allclose(values, 100.0 + np.arange(20))
    assert model.state(3) == "warmup"
    assert model.state(12) == "watching"
    assert model.behind == 5
    assert model.status_text() == ("following · 20 of 25 frames done · behind by 5 frames · "
                                   "8 frames/s · latency 0.4 s")
    again = model.fetch()  # nothing new: nothing to redraw
    assert (again.new, again.changed) == (0, False)

    # the detector goes on: a change, flagged frames, its event, a fit, a decision
    cat.record_live(ds, _features(range(20, 40), flagged=range(30, 34)))
    cat.record_live(ds, [LivePoint(34, "event", {"onset": 30, "end": 33, "confidence": 0.98,
                                                 "statistic": 40.0, "feature": "difference",
                                                 "region": None}),
                         LivePoint(35, "decision:notebook", {"action": "notebook",
                                                             "reason": "onset at frame 30"})])
    cat.set_live_status(ds, state="following", written=40, done=40, behind=0, rate_hz=9.0)
    cat.mark_frames(ds, range(25, 40), "of interest", reasons="onset at frame 30")
    up = model.fetch()
    assert up.new == 22
    assert up.changed
    assert model.onsets == (30,)
    assert model.events[0]["end"] == 33
    assert model.events[0]["confidence"] == 0.98
    np.testing.assert_array_equal(model.flagged, np.arange(30, 34))
    assert model.default_feature == "difference"
    assert [d["reason"] for d in model.decisions] == ["onset at frame 30"]
    np.testing.assert_array_equal(model.of_interest, np.arange(25, 40))  # read on a change
    assert "up to date" in model.status_text()

    # a fit about frame 25 is recorded after the features of frame 39: it is still read
    cat.record_live(ds, [LivePoint(25, "fit:sphere", {
        "radius": 40.2, "radius_err": 0.5, "scale": 0.01, "scale_err": 1e-4, "chi2": 1.1,
        "n_points": 280.0, "q_unit": "nm^-1"})])
    cat.record_live(ds, [LivePoint(39, "fit:sphere", {
        "radius": 44.0, "radius_err": 0.6, "scale": 0.01, "scale_err": 1e-4, "chi2": 1.2,
        "n_points": 280.0, "q_unit": "nm^-1"})])
    assert model.fetch().new == 2
    assert model.fit_models == ["sphere"]
    assert model.fit_parameters("sphere") == ["radius", "scale"]  # not chi2, n_points...
    frames, values, errors = model.fit("sphere", "radius")
    np.testing.assert_array_equal(frames, [25, 39])
    np.testing.assert_allclose(values, [40.2, 44.0])
    np.testing.assert_allclose(errors, [0.5, 0.6])
    assert model.latest_fit()[:2] == ("sphere", 39)
    assert model.fetch().new == 0  # the re-read window does not count points twice


def test_late_frames_keep_the_order_and_new_features_are_padded(series):
    cat, ds = series
    model = LiveTimelineModel(cat, ds)
    model.ingest(_features([0, 1, 3]))
    model.ingest([LivePoint(2, "features", {"difference": 7.0, "extra": 1.0})])
    frames, values = model.feature("difference")
    np.testing.assert_array_equal(frames, [0, 1, 2, 3])
    assert values[2] == 7.0
    extra = model.feature("extra")[1]
    assert np.isnan(extra[[0, 1, 3]]).all()
    assert extra[2] == 1.0
    assert model.ingest(_features([0, 1])) == 0  # seen already


def test_errors_name_the_choices(series):
    cat, ds = series
    model = LiveTimelineModel(cat, ds)
    with pytest.raises(ValueError, match=r"unknown feature 'nope'; choose one of \(none"):
        model.feature("nope")
    model.ingest(_features(range(3)))
    with pytest.raises(ValueError, match=r"choose one of .*'difference'"):
        model.feature("nope")
    with pytest.raises(ValueError, match="no fits of model 'sphere'"):
        model.fit("sphere", "radius")
    model.ingest([LivePoint(2, "fit:sphere", {"radius": 4.0, "radius_err": 0.1})])
    with pytest.raises(ValueError, match=r"unknown parameter 'r'.*\['radius'\]"):
        model.fit("sphere", "r")
    with pytest.raises(ValueError, match="dataset_id must be"):
        LiveTimelineModel(cat, "")
    with pytest.raises(TypeError, match="live_points"):
        LiveTimelineModel(object(), ds)


def test_status_line():
    assert status_text(None) == "no live status yet"
    assert status_text({"state": "finished", "done": 40, "reduction_factor": 3.6}) == (
        "finished · 40 frames done · reduction 3.6x")
    assert status_text({"state": "behind", "written": 90, "done": 60, "behind": 30}) == (
        "behind · 60 of 90 frames done · behind by 30 frames")
    assert "no news for 60 s" in status_text({"state": "following", "updated_at": 40.0},
                                             now=100.0)
    assert "no news" not in status_text({"state": "finished", "updated_at": 40.0}, now=100.0)


def test_view_follows_in_the_background(series):
    pytest.importorskip("ipywidgets")
    from spotkit.widgets import LiveTimeline

    cat, ds = series
    cat.record_live(ds, _features(range(10)))
    view = LiveTimeline(cat, ds, refresh=0.05, dpi=40)
    try:
        assert view.running
        assert view.wait(lambda m: m.n_frames == 10, timeout=20)
        assert view.feature_dropdown.options == ("difference", "intensity_mean", "score")
        assert view.feature_dropdown.value == "difference"
        assert view.model_dropdown.options == ()
        assert "no live status yet" in view.status.value
        first = view.timeline.value
        assert first[:4] == b"\x89PNG"

        # the kernel stays free: points recorded from this thread are drawn by the poller
        def record():
            for k in range(10, 40, 5):
                cat.record_live(ds, _features(range(k, k + 5), flagged=range(30, 34)))
                time.sleep(0.02)
            cat.record_live(ds, [LivePoint(38, "fit:sphere", {"radius": 41.0,
                                                              "radius_err": 0.3})])
            cat.set_live_status(ds, state="behind", written=60, done=40, behind=20)

        writer = threading.Thread(target=record)
        t0 = time.perf_counter()
        writer.start()
        writer.join()
        assert _until(lambda: "behind by 20" in view.status.value
                      and "radius = 41 ± 0.3" in view.fit.value)
        assert time.perf_counter() - t0 < 20
        assert "behind by 20 frames" in view.status.value
        assert "#cf222e" in view.status.value  # behind: red
        assert view.model_dropdown.value == "sphere"
        assert view.parameter_dropdown.value == "radius"
        assert view.timeline.value != first
        time.sleep(0.2)  # the last render ends
        renders = view.renders
        time.sleep(0.3)  # nothing new: no redraw
        assert view.renders == renders
        view.feature_dropdown.value = "score"  # a choice redraws at once
        assert view.renders == renders + 1
    finally:
        view.close()
    assert not view.running


def test_latest_iq_comes_from_the_profile_log_with_the_fit_curve(series):
    """The newest frame's I(q) is read from the series' ProfileLog (found through the live
    status), and the newest fit is drawn from its recorded values with sasmodels."""
    pytest.importorskip("sasmodels")
    from spotkit.live import ProfileLog, fit_latest, profile_log_path
    from spotkit.scattering import sas_model_curve

    cat, ds = series
    q = np.linspace(0.1, 3.0, 120)
    truth = sas_model_curve(q, model="sphere", params={"radius": 6.0, "scale": 0.02,
                                                       "background": 0.01})
    rng = np.random.default_rng(3)
    path = profile_log_path(cat, ds)
    with ProfileLog(path, q, dim="q", unit="nm^-1") as log:
        for k in range(3):
            counts = rng.poisson(truth * 1e4) / 1e4
            log.append(k, counts, np.sqrt(np.maximum(counts, 1e-4) / 1e4))
        cat.record_live(ds, _features(range(3)))
        cat.set_live_status(ds, state="following", profile_log=str(path))
        model = LiveTimelineModel(cat, ds)
        assert model.fetch().changed
        profile = model.latest_profile
        assert profile.attrs["frame"] == 2
        np.testing.assert_allclose(profile["q"].values, q)
        assert model.fit_curve(profile, model.latest_fit()) is None  # no fit yet
        fit = fit_latest(cat, ds, model="sphere", profile_log=log)  # records fit:sphere
        model.fetch()
        assert model.latest_fit("sphere")[1] == 2
        assert model.fit_parameters("sphere")[0] == "radius"
        cq, ci = model.fit_curve(profile, model.latest_fit("sphere"))
        np.testing.assert_allclose(cq, q)
        np.testing.assert_allclose(ci, fit.evaluate(q), rtol=1e-6)  # the same curve
        assert abs(fit.params["radius"] - 6.0) < 0.1
        # a frame appended after: read at the next fetch
        log.append(3, truth, np.full_like(q, 0.01))
        cat.record_live(ds, _features([3]))
        model.fetch()
        assert model.latest_profile.attrs["frame"] == 3
    model.close()


def test_a_series_that_is_not_there_is_said_and_tried_again(series):
    pytest.importorskip("ipywidgets")
    from spotkit.widgets import LiveTimeline

    cat, _ = series
    view = LiveTimeline(cat, "ds-not-there", refresh=0.02, dpi=40)
    try:
        assert _until(lambda: "ds-not-there" in view.error.value)
        assert "no dataset with id" in view.error.value
        assert view.running  # it keeps trying (with a growing pause)
        assert "DatasetNotFoundError" in view.model.error
    finally:
        view.close()


def test_view_shows_a_chosen_frame_and_follows_the_newest_again(series):
    pytest.importorskip("ipywidgets")
    from spotkit.live import ProfileLog, profile_log_path
    from spotkit.widgets import LiveTimeline

    cat, ds = series
    q = np.linspace(0.2, 2.0, 40)
    with ProfileLog(profile_log_path(cat, ds), q, dim="q", unit="nm^-1") as log:
        for k in range(6):
            log.append(k, np.full(q.size, 10.0 + k), np.ones(q.size))
        cat.record_live(ds, _features(range(6)))
        cat.record_live(ds, [LivePoint(k, "fit:sphere", {"radius": 4.0 + k, "radius_err": 0.1})
                             for k in (1, 4)])
        view = LiveTimeline(cat, ds, autostart=False, dpi=40)
        try:
            view.refresh()
            assert view.frame_box.value == 5  # the newest, followed
            assert "at frame 4" in view.fit.value
            newest = view.profile.value
            view.newest_box.value = False
            view.frame_box.value = 2  # a past frame: its I(q), the fit of frame 1
            assert view.model.latest_fit("sphere", until=2)[1] == 1
            assert view.profile.value != newest
            view.frame_box.value = 9  # past the newest: the box stops at frame 5
            assert view.frame_box.value == 5
            with pytest.raises(ValueError, match="frame 9 has no I"):
                view.show_frame(9)
            view.show_frame(None)
            assert view.newest_box.value
            assert view.frame_box.disabled
        finally:
            view.close()
