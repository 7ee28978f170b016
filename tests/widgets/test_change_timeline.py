"""ChangeTimelineModel in plain Python (and the ChangeTimeline view driven without a browser).

Series come from the digital twin with a known onset (a ring grows over 5 frames): 30 small
64 x 96 frames with Pilatus-like gaps, as in tests/change.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from spotkit.change import detect_changes, frame_features, reduction_policy
from spotkit.widgets import ChangeTimelineModel

pytestmark = pytest.mark.timeout(240)

SMALL = {"shape": (64, 96), "module_shape": (30, 45), "module_gap": (2, 3),
         "diffuse_counts": 500.0, "ring_strength": 1.0}
ONSET = 14


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """(truth, lazy xarray frames, frames as ndarray, their ChangeResult)."""
    import h5py

    from spotkit.io import open_saxs
    from spotkit.sim import simulate_saxs_series

    path = tmp_path_factory.mktemp("timeline") / "twin.h5"
    truth = simulate_saxs_series(path, n_frames=30, onset_frame=ONSET, seed=1, **SMALL)
    with h5py.File(truth.path) as f:
        frames = f["entry/data/data"][()]
    return truth, open_saxs(truth.path), frames, detect_changes(frames)


@pytest.fixture(scope="module")
def integrator(twin):
    from spotkit.io import load_geometry

    return load_geometry(twin[0].poni_path)


def test_onsets_are_those_of_detect_changes(twin):
    truth, _, frames, result = twin
    model = ChangeTimelineModel(frames, result=result)
    assert model.onsets == result.onsets
    assert len(model.onsets) == 1
    assert abs(model.onsets[0] - truth.onset_frame) <= 1
    assert model.events == result.events
    assert model.n_frames == 30
    assert model.frame_shape == (64, 96)
    assert model.selected == 0
    assert model.feature_names == ["unique_count", "difference", "ssim", "score"]
    np.testing.assert_array_equal(model.feature("difference"), result.features["difference"])
    np.testing.assert_array_equal(model.feature("score"), result.score)
    with pytest.raises(ValueError, match=r"unknown feature 'mean'; choose one of \["):
        model.feature("mean")


def test_without_a_result_it_detects_on_the_lazy_series(twin):
    _truth, lazy, frames, result = twin
    model = ChangeTimelineModel(lazy)  # dask-backed DataArray from open_saxs
    assert model.onsets == result.onsets
    np.testing.assert_allclose(model.feature("difference"), result.features["difference"])
    info = model.describe(model.onsets[0])
    assert info["time"] == pytest.approx(float(lazy["time"][model.onsets[0]]))
    assert info["flagged"]
    assert info["event"][:2] == (result.events[0].onset, result.events[0].end)
    assert info["label"] is None
    assert info["keep"] is None
    np.testing.assert_array_equal(model.image(3), frames[3])


def test_select_checks_the_range(twin):
    _, _, frames, result = twin
    model = ChangeTimelineModel(frames, result=result)
    assert model.select(29) == 29
    assert model.selected == 29
    for bad in (30, -1):
        with pytest.raises(IndexError, match=r"frame -?\d+ is outside the series: choose "
                                             r"0 \.\. 29"):
            model.select(bad)
    assert model.selected == 29  # a refused selection changes nothing
    with pytest.raises(TypeError, match="integer index"):
        model.select(2.0)
    with pytest.raises(IndexError, match=r"0 \.\. 29"):
        model.image(31)
    assert model.select(np.int64(4)) == 4


def test_next_and_previous_onset(twin):
    _, _, frames, result = twin
    onset = result.onsets[0]
    model = ChangeTimelineModel(frames, result=result)
    assert model.previous_onset() is None
    assert model.selected == 0
    assert model.next_onset() == onset
    assert model.selected == onset
    assert model.next_onset() is None  # no later onset: stays
    assert model.selected == onset
    model.select(onset + 5)
    assert model.previous_onset() == onset
    assert model.selected == onset


def test_change_map_of_a_flagged_frame_peaks_on_the_ring(twin):
    truth, _, frames, result = twin
    model = ChangeTimelineModel(frames, result=result)
    event = result.events[0]
    m = model.change_map(event.onset + 2)
    assert m.dims == ("y", "x")
    assert m.attrs["source"] == f"event {event.onset}..{event.end} (mean of its frames)"
    np.testing.assert_array_equal(m.values, event.change_map.values)
    assert "source" not in event.change_map.attrs  # the event's own map is left as it was
    q = truth.q_map()
    iy, ix = np.unravel_index(int(np.nanargmax(m.values)), m.shape)
    yy, xx = int(m["y"][iy]), int(m["x"][ix])
    assert abs(q[yy, xx] - truth.ring_q_nm) < 0.15 * truth.ring_q_nm
    assert np.nanmax(m.values) > 5


def test_change_map_of_any_other_frame_is_against_the_reference(twin):
    from spotkit.change import change_map

    truth, _, frames, result = twin
    model = ChangeTimelineModel(frames, result=result)
    np.testing.assert_allclose(model.reference, frames[:8].mean(axis=0))
    quiet = model.change_map(5)  # before the change: noise only
    assert quiet.dims == ("y", "x")
    assert quiet.shape == (64, 96)
    assert quiet.attrs["source"] == "frame 5 against the mean of frames 0..7"
    assert np.nanmax(np.abs(quiet.values)) < 6
    np.testing.assert_allclose(quiet.values, change_map(frames[5], model.reference).values,
                               equal_nan=True)
    assert np.isnan(quiet.values[frames[5] < 0]).all()  # gaps
    late = model.change_map(29)  # after the transition: the ring stands out
    iy, ix = np.unravel_index(int(np.nanargmax(late.values)), late.shape)
    assert abs(truth.q_map()[iy, ix] - truth.ring_q_nm) < 0.15 * truth.ring_q_nm
    assert model.change_map(5) is quiet  # cached: nothing is recomputed on selection


def test_profiles_given_or_integrated_on_demand(twin, integrator):
    from spotkit.scattering import integrate_frames

    _, lazy, frames, result = twin
    profiles = integrate_frames(lazy, integrator, npt=120)  # lazy: one frame computed at a time
    given = ChangeTimelineModel(frames, result=result, profiles=profiles)
    on_demand = ChangeTimelineModel(frames, result=result, integrator=integrator, npt=120)
    none = ChangeTimelineModel(frames, result=result)
    assert none.profile(3) is None
    assert none.reference_profile() is None
    assert not none.has_profiles
    assert given.has_profiles
    assert on_demand.has_profiles
    for model in (given, on_demand):
        p = model.profile(20)
        assert p["intensity"].dims == ("q",)
        assert p["intensity"].shape == (120,)
        assert p["sigma"].shape == (120,)
        ref = model.reference_profile()
        assert ref["intensity"].shape == (120,)
    np.testing.assert_allclose(given.profile(20)["intensity"],
                               on_demand.profile(20)["intensity"], rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(
        given.reference_profile()["intensity"],
        profiles["intensity"].isel(frame=slice(0, 8)).mean("frame"), rtol=1e-6,
        equal_nan=True)


def test_a_result_on_profiles_maps_change_in_q(twin, integrator):
    from spotkit.scattering import integrate_frames

    truth, _, frames, _ = twin
    profiles = integrate_frames(frames, integrator, npt=150)
    result = detect_changes(profiles)
    assert len(result.onsets) == 1
    model = ChangeTimelineModel(frames, result=result, profiles=profiles)
    flagged = model.change_map(result.events[0].end)
    assert flagged.dims == ("q",)
    quiet = model.change_map(3)
    assert quiet.dims == ("q",)
    late = model.change_map(29)
    q_peak = float(late["q"][int(np.nanargmax(late.values))])
    assert abs(q_peak - truth.ring_q_nm) < 0.15 * truth.ring_q_nm
    assert np.nanmax(np.abs(quiet.values)) < np.nanmax(late.values)
    with pytest.raises(ValueError, match="give profiles= or integrator="):
        ChangeTimelineModel(frames, result=result).change_map(3)


def test_plan_labels_and_given_features(twin):
    _, _, frames, result = twin
    plan = reduction_policy(result, every=10)
    feats = frame_features(frames, features=["unique_count", "mean"])
    model = ChangeTimelineModel(frames, result=result, plan=plan, features=feats)
    assert model.feature_names == ["unique_count", "mean", "difference", "score"]
    onset = result.onsets[0]
    assert model.describe(onset)["label"] == "of interest"
    assert model.describe(onset)["keep"] is True
    assert model.describe(1)["label"] == "redundant"
    assert model.describe(1)["keep"] is False
    assert set(model.describe(2)["features"]) == {"unique_count", "mean", "difference", "score"}


def test_mismatched_lengths_are_refused(twin, integrator):
    _, _, frames, result = twin
    short = detect_changes(frames[:20])
    with pytest.raises(ValueError, match="the change result has 20 frames but the series "
                                         "has 30"):
        ChangeTimelineModel(frames, result=short)
    with pytest.raises(ValueError, match="the feature table has 20 frames"):
        ChangeTimelineModel(frames, result=result, features=short.features)
    with pytest.raises(ValueError, match="the reduction plan has 40 frames"):
        ChangeTimelineModel(frames, result=result, plan=reduction_policy([3], n_frames=40))
    from spotkit.scattering import integrate_frames

    with pytest.raises(ValueError, match="profiles has 10 frames"):
        ChangeTimelineModel(frames, result=result,
                            profiles=integrate_frames(frames[:10], integrator, npt=50))


def test_bad_input_is_refused_clearly(twin, integrator):
    _, _, frames, result = twin
    with pytest.raises(ValueError, match=r"3-D \(frame, y, x\)"):
        ChangeTimelineModel(frames[0], result=result)
    with pytest.raises(ValueError, match="not both"):
        ChangeTimelineModel(frames, result=result, integrator=integrator,
                            profiles=result.features)
    with pytest.raises(ValueError, match="mask shape"):
        ChangeTimelineModel(frames, result=result, mask=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match=r"warmup must be an integer in 3 \.\. 30"):
        ChangeTimelineModel(frames, result=result, warmup=2)
    with pytest.raises(TypeError, match="ChangeResult"):
        ChangeTimelineModel(frames, result=[14])
    with pytest.raises(ValueError, match="detect_options apply only"):
        ChangeTimelineModel(frames, result=result, detect_options={"threshold": 8})


def test_importing_the_widgets_does_not_import_ipywidgets():
    code = ("import sys\n"
            "import spotkit.widgets\n"
            "assert 'ipywidgets' not in sys.modules, 'ipywidgets imported'\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_without_ipywidgets_the_view_says_what_to_install(twin, monkeypatch):
    from spotkit.widgets import ChangeTimeline

    _, _, frames, result = twin
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match=r'pip install "spotkit\[lab\]"'):
        ChangeTimeline(frames, result=result)
    model = ChangeTimelineModel(frames, result=result)  # the model needs no widgets
    assert model.next_onset() == result.onsets[0]


def test_default_feature_is_the_one_the_first_change_was_found_on(twin):
    _, _, frames, result = twin
    model = ChangeTimelineModel(frames, result=result)
    assert result.events[0].feature == "band_difference"  # not a per-frame feature
    assert model.default_feature == model.feature_names[0] == "unique_count"
    feats = frame_features(frames).assign(band_difference=result.features["difference"])
    shown = ChangeTimelineModel(frames, result=result, features=feats)
    assert shown.default_feature == "band_difference"
    quiet = ChangeTimelineModel(frames[:ONSET - 2], warmup=5)  # before the change
    assert quiet.onsets == ()
    assert quiet.default_feature == "difference"


def test_the_panels_draw_without_widgets(twin, monkeypatch):
    from spotkit.widgets._change_timeline_plots import Panels

    _, _, frames, result = twin
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    model = ChangeTimelineModel(frames, result=result)
    panels = Panels(model, cmap="gray", map_cmap="RdBu_r", dpi=40)
    onset = result.onsets[0]
    image, change = panels.image_png(onset), panels.map_png(onset)
    assert image.startswith(b"\x89PNG")
    assert change.startswith(b"\x89PNG")
    assert panels.image_png(onset) == image  # the same frame gives the same bytes
    assert panels.profile_png(onset) is None  # no profiles, no integrator
    assert panels.timeline_png(model.default_feature, onset).startswith(b"\x89PNG")


# -- the view, driven as a person would (button clicks), without a browser ---------------


def test_view_buttons_slider_and_dropdown(twin, integrator):
    from spotkit.widgets import ChangeTimeline

    _, lazy, _, result = twin
    plan = reduction_policy(result)
    view = ChangeTimeline(lazy, result=result, plan=plan, integrator=integrator, npt=100)
    assert view.widget._dom_classes == ("spotkit-change-timeline",)
    assert "application/vnd.jupyter.widget-view+json" in view._repr_mimebundle_()
    onset = result.onsets[0]
    assert view.slider.value == 0
    assert view.previous_button.disabled
    assert not view.next_button.disabled
    assert view.label.value.startswith("<b>frame 0</b>")
    before = {name: bytes(getattr(view, name).value)
              for name in ("timeline", "image", "map", "profile")}
    assert all(v.startswith(b"\x89PNG") for v in before.values())

    view.next_button.click()
    assert view.slider.value == onset == view.frame == view.model.selected
    assert view.label.value.startswith(f"<b>frame {onset}</b>")
    assert "change " in view.label.value
    assert "of interest" in view.label.value
    for name, png in before.items():
        assert bytes(getattr(view, name).value) != png, name
    assert view.next_button.disabled  # the only onset: nothing after it, nothing before
    assert view.previous_button.disabled

    view.slider.value = onset + 3  # as the slider does
    assert not view.previous_button.disabled
    view.previous_button.click()
    assert view.slider.value == onset

    view.slider.value = 3
    assert view.model.selected == 3
    assert view.label.value.startswith("<b>frame 3</b>")
    view.previous_button.click()  # no onset before 3: nothing moves
    assert view.slider.value == 3

    timeline = bytes(view.timeline.value)
    # another feature than the one shown (the onset's may be a band feature, shown as the
    # first per-frame feature)
    view.dropdown.value = next(n for n in view.dropdown.options if n != view.dropdown.value)
    assert bytes(view.timeline.value) != timeline
    with pytest.raises(IndexError, match=r"0 \.\. 29"):
        view.select(30)
    view.close()


@pytest.mark.slow
def test_selecting_a_frame_reuses_the_features(tmp_path):
    """Selecting a frame reads and integrates that frame only: the series' features are not
    computed again (the latency itself is a benchmark's business, not a unit test's)."""
    from spotkit.io import load_geometry, open_saxs
    from spotkit.sim import simulate_saxs_series
    from spotkit.widgets import ChangeTimeline

    truth = simulate_saxs_series(tmp_path / "full.h5", n_frames=40, onset_frame=25, seed=2)
    frames = open_saxs(truth.path)  # 195 x 487, Pilatus 100K-like, read lazily
    assert frames.shape[1:] == (195, 487)
    view = ChangeTimeline(frames, integrator=load_geometry(truth.poni_path))
    view.select(1)  # the first integration builds pyFAI's lookup table
    features = view.model.features
    for frame in (5, 24, 26, 30, 39):
        view.select(frame)
        assert view.model.features is features  # nothing recomputed on selection
