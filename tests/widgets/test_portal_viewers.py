"""The portal's Viewers panel: the viewer follows the dataset's kind; loading is in fetch."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr

from spotkit.catalog import open_catalog
from spotkit.errors import DatasetNotFoundError
from spotkit.sim import simulate_saxs_series, simulate_tomo_scan
from spotkit.widgets._portal_viewers_model import ViewerPanelModel, viewers_for

pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    work = tmp_path_factory.mktemp("viewers")
    truth = simulate_tomo_scan(work / "scan.h5", shape=(61, 4, 48), seed=0)
    cat = open_catalog(work / "catalog.db")
    raw = cat.ingest(work / "scan.h5")
    vol = work / "recon.h5"
    with h5py.File(vol, "w") as f:
        d = f.create_dataset("recon", data=np.random.default_rng(0).random((4, 32, 32)),
                             chunks=(1, 32, 32))
        d.attrs["pixel_size_um"] = 0.65
        d.attrs["units"] = "1/cm"
    recon = cat.register_derived(files=[{"path": vol, "role": "data", "key": "/recon"}],
                                 kind="tomo/recon", parents=[raw])
    simulate_saxs_series(work / "series.h5", n_frames=12, onset_frame=8, seed=3,
                         shape=(64, 96), module_shape=None)
    saxs = cat.ingest(work / "series.h5")
    from spotkit.io import write_nxcansas

    q = np.linspace(0.1, 2.0, 40)
    iq = {}
    for name, n in (("iq", 12), ("iq_alone", 5)):  # 12 profiles: one per frame
        profiles = xr.Dataset(
            {"intensity": (("frame", "q"), 1 + np.random.default_rng(n).random((n, 40))),
             "sigma": (("frame", "q"), np.full((n, 40), 0.1))}, coords={"q": q})
        write_nxcansas(work / f"{name}.h5", profiles, q_unit="1/nm", series_dim="frame")
        iq[name] = cat.register_derived(files=[(work / f"{name}.h5", "data")],
                                        kind="saxs/iq", parents=[saxs]).id
    return cat, {"raw": raw.id, "recon": recon.id, "saxs": saxs.id, "center": truth.center,
                 **iq}


def test_viewer_by_kind():
    assert viewers_for("tomo/recon") == ("slice",)
    assert viewers_for("tomo/raw") == ("slice", "center")
    assert viewers_for("saxs/raw") == ("frames",)
    assert viewers_for("saxs/iq") == ("iq",)
    assert viewers_for("tomo/segmented") == ("slice",)
    assert viewers_for("saxs/change-report") == ()


def test_model_loads_only_in_load(catalog):
    cat, ids = catalog
    model = ViewerPanelModel(cat, display=48)
    assert model.load() is None  # nothing selected
    model.select(ids["recon"])
    assert model.pending == ids["recon"]
    snap = model.load()
    assert model.pending is None
    assert model.load() is None
    slices = snap.models["slice"]
    assert slices.volume.axes[2].spacing == pytest.approx(0.65)
    assert slices.volume.value_units == "1/cm"
    assert set(slices.last) == {0, 1, 2}  # the first images were read in load()
    assert ids["recon"] in snap.title
    assert "tomo/recon" in snap.title
    slices.close()


def test_panel_shows_each_kind(catalog):
    from spotkit.widgets._portal_viewers import ViewerPanel
    from spotkit.widgets._slice_viewer import SliceViewer

    cat, ids = catalog
    panel = ViewerPanel(cat, display=48, background=False, on_select=lambda _id: None,
                        center_options={"around": 2, "step": 1})
    assert panel.title == "Viewers"
    assert "Select a dataset" in panel.widget.children[1].children[0].value
    panel.show_dataset(ids["raw"])
    assert "loading" in panel.widget.children[0].value
    panel.apply(panel.fetch())
    assert isinstance(panel.views["slice"], SliceViewer)
    assert [a.name for a in panel.views["slice"].model.volume.axes] == ["angle", "row",
                                                                           "column"]
    tabs = panel.widget.children[1].children[0]
    assert [tabs.get_title(i) for i in range(2)] == ["Slices", "Centre of rotation"]
    panel.views["center"].find()  # made on request: the CenterFinder on the raw scan
    finder = panel.views["center_finder"]
    assert finder.model.centers.min() < ids["center"] < finder.model.centers.max()
    assert finder.model.origin  # the sinogram read from the catalogued scan
    panel.apply(panel.fetch())  # nothing new selected: the views stay
    assert "center_finder" in panel.views

    panel.show_dataset(ids["saxs"])
    panel.apply(panel.fetch())
    timeline = panel.views["frames"]
    assert type(timeline).__name__ == "ChangeTimeline"
    assert timeline.model.n_frames == 12

    panel.model.select(ids["iq"])  # reduced I(q) with the frames they came from (the
    snap = panel.model.load()       # model only: the view is the ChangeTimeline above)
    assert type(snap.models["iq"]).__name__ == "ChangeTimelineModel"
    assert snap.models["iq"].has_profiles
    panel.show_dataset(ids["iq_alone"])  # profiles that match no frame series: plotted
    panel.apply(panel.fetch())
    assert bytes(panel.views["iq"].value[:4]) == b"\x89PNG"
    panel.close()


def test_readonly_panel_has_no_centre_finder_and_errors_show(catalog):
    from spotkit.widgets._portal_viewers import ViewerPanel

    cat, ids = catalog
    panel = ViewerPanel(cat, readonly=True, display=48, background=False)
    panel.show_dataset(ids["raw"])
    panel.apply(panel.fetch())
    assert "not offered in the read-only" in panel.views["center"].value
    panel.show_dataset("ds-does-not-exist")
    with pytest.raises(DatasetNotFoundError):
        panel.fetch()  # the portal shows the error; the last views stay
    assert "slice" in panel.views
    panel.show_error("no such dataset")
    assert "no such dataset" in panel.widget.children[0].value
    panel.close()
