"""The Data panel's model in plain Python: search, keyset paging, the selected dataset."""

from __future__ import annotations

import pytest

import spotkit.widgets._portal_data_model as data_model
from spotkit.catalog import open_catalog
from spotkit.errors import CatalogError
from spotkit.widgets._portal_data_model import DataPanelModel, parse_form

T0 = 1.7e9


def lineage_catalog(root):
    """A simulated tomography scan (spotkit.sim) ingested, a quick-look run that made slices
    and a preview image, a failed run, frame marks and a warehouse replica; plus 57 more
    datasets with ties in start time and some without one."""
    from spotkit.sim import simulate_tomo_scan

    scan = simulate_tomo_scan(root / "scan_0001.h5", shape=(12, 2, 32), seed=0, center_offset=0.0,
                              sample="bone-scan", proposal="ALS-1").path
    cat = open_catalog(root / "catalog.db")
    cat.bulk_load({"kind": "tomo/raw" if i % 3 else "saxs/raw", "beamline": "8.3.2",
                   "sample": f"bone-{i:02d}", "proposal": f"ALS-{i % 4}",
                   "start_time": None if i % 11 == 7 else T0 + (i // 3) * 60,
                   "title": f"scan {i}"} for i in range(57))
    raw = cat.ingest(scan)
    runs = root / "runs"
    runs.mkdir()
    run = cat.start_run(dataset_id=raw.id, notebook=root / "tomo_quicklook.ipynb",
                        notebook_sha256="ab", parameters={"rows": 2})
    for name in ("slices.npy", "out.ipynb"):
        (runs / name).write_bytes(name.encode())
    (runs / "preview.png").write_bytes(b"\x89PNG\r\n\x1a\n fake image")
    slices, png = cat.finish_run(run, state="completed", output_notebook=runs / "out.ipynb",
                                 outputs=[{"path": runs / "slices.npy", "kind": "tomo/slices"},
                                          {"path": runs / "preview.png", "kind": "image/png",
                                           "title": "quick look"}])
    failed = cat.start_run(dataset_id=raw.id, notebook=root / "tomo_recon.ipynb",
                           notebook_sha256="cd", parameters={})
    cat.finish_run(failed, state="failed", error_cell=4, error_name="ValueError",
                   error_message="centre out of range", output_notebook=runs / "out.ipynb")
    cat.mark_frames(raw.id, [2, 3, 4, 9], "of interest", reasons="onset at frame 3")
    cat.add_replicas(raw.id, "warehouse", {scan: root / "warehouse" / scan.name})
    return cat, {"raw": raw, "slices": slices, "png": png, "run": run, "failed": failed}


@pytest.fixture
def built(tmp_path):
    cat, things = lineage_catalog(tmp_path)
    yield cat, things
    cat.close()


@pytest.fixture
def calls(monkeypatch):
    """Every catalog call the model makes, with its keyword arguments."""
    seen = []
    for name in ("search_page", "dataset_overview"):
        real = getattr(data_model, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            seen.append((_name, kwargs))
            return _real(*args, **kwargs)

        monkeypatch.setattr(data_model, name, spy)
    return seen


def test_pages_follow_the_search_with_one_call_per_fetch(built, calls):
    cat, _ = built
    everything = cat.search(limit=None).ids
    assert len(everything) == 60
    model = DataPanelModel(cat, page_size=7, lab=(None, "/"))
    snap = model.fetch()
    assert snap.page.ids == everything[:7]
    assert snap.page.total == 60
    assert snap.page.pages == 9
    assert snap.page.range_text == "1–7 of 60 datasets"

    def show(action, *args):
        before = len(calls)
        action(*args)
        page = model.fetch().page
        assert len(calls) == before + 1  # one library call, whatever the page
        return page

    assert show(model.next_page).ids == everything[7:14]
    assert show(model.next_page).ids == everything[14:21]
    assert calls[0][1]["count"] is True  # a new search counts; a move keeps its count
    assert calls[-1][1]["count"] is False
    assert calls[-1][1]["after"] is not None
    assert calls[-1][1]["skip"] == 0
    last = show(model.last_page)
    assert last.ids == everything[56:]
    assert last.at_end
    assert last.page == 8
    assert calls[-1][1]["last"] is True
    assert show(model.previous_page).ids == everything[49:56]
    assert calls[-1][1]["before"] is not None
    assert calls[-1][1]["skip"] == 0
    # a jump between known rows starts from the nearest one
    assert show(model.go, 4).ids == everything[28:35]
    # (known: rows 0-20 and 49-59; from row 20 it skips 7, from the top it would skip 28)
    assert "after" in calls[-1][1]
    assert calls[-1][1]["skip"] == 7
    assert show(model.go, 99).page == 8  # clipped to the last page
    assert show(model.first_page).ids == everything[:7]
    model.set_page_size(25)
    assert model.fetch().page.ids == everything[:25]


def test_search_form(built):
    cat, _ = built
    model = DataPanelModel(cat, page_size=10, lab=(None, "/"))
    model.search(sample="bone-1*", beamline="8.3.2", since="", text=None)
    page = model.fetch().page
    assert page.query == {"sample": "bone-1*", "beamline": "8.3.2"}
    assert page.ids == cat.search(sample="bone-1*", limit=10).ids
    assert page.total == 10
    with pytest.raises(ValueError, match="since 'yesterday' is not a date"):
        model.search(since="yesterday")
    with pytest.raises(ValueError, match="swap them"):
        parse_form(since="2024-05-02", until="2024-05-01")
    with pytest.raises(ValueError, match="unknown search field"):
        parse_form(owner="ada")
    assert model.query == {"sample": "bone-1*", "beamline": "8.3.2"}  # unchanged


def test_selected_dataset_detail(built, calls, tmp_path):
    cat, t = built
    model = DataPanelModel(cat, page_size=5, lab=(str(tmp_path), "/user/ada/"))
    model.fetch()
    model.select(t["raw"].id)
    snap = model.fetch()
    assert calls[-1][0] == "dataset_overview"
    assert snap.did == "detail"
    d = snap.detail
    assert d.id == t["raw"].id
    assert ("sample", "bone-scan") in d.fields
    kinds = [[n.type for n in col] for col in d.graph]
    assert kinds == [["dataset"], ["run", "run"], ["dataset", "dataset"]]
    focus = [n for col in d.graph for n in col if n.focus]
    assert [n.id for n in focus] == [t["raw"].id]
    products = {n.dataset_id for n in d.graph[2]}
    assert products == {t["slices"].id, t["png"].id}
    assert (t["raw"].id, t["run"]) in d.graph_edges
    assert (t["run"], t["png"].id) in d.graph_edges
    failed = next(r for r in d.runs if r["id"] == t["failed"])
    assert failed["error"] == "ValueError in cell 4: centre out of range"
    assert failed["url"] == "/user/ada/lab/tree/runs/out.ipynb"
    assert d.marks == ({"label": "of interest", "count": 4, "frames": "2-4, 9",
                        "reasons": "onset at frame 3"},)
    assert [r["location"] for r in d.files[0]["replicas"]] == ["warehouse"]
    assert d.previews[0]["data"].startswith(b"\x89PNG")
    assert d.previews[0]["title"] == \
        "quick look"
    # an unchanged image is not read again; a changed one is
    model.select(t["raw"].id)
    assert model.fetch().detail.previews[0]["data"] is d.previews[0]["data"]
    t["png"].path.write_bytes(b"\x89PNG changed")
    model.select(t["raw"].id)
    assert model.fetch().detail.previews[0]["data"] == b"\x89PNG changed"
    # nothing asked: refreshes alternate between the page and the detail
    assert [model.fetch().did for _ in range(4)] == ["page", "detail", "page", "detail"]
    model.select(None)
    assert model.fetch().detail is None


def test_a_failing_catalog_shows_the_error_and_keeps_the_last_data(built, monkeypatch):
    cat, _ = built
    model = DataPanelModel(cat, page_size=5, lab=(None, "/"))
    good = model.fetch()

    def broken(*args, **kwargs):
        raise CatalogError("reading catalog x failed: database is locked")

    monkeypatch.setattr(data_model, "search_page", broken)
    model.next_page()
    snap = model.fetch()
    assert "database is locked" in snap.error
    assert snap.page is good.page
    assert not snap.pending  # no tight retry loop; the next refresh tries again
    monkeypatch.undo()
    snap = model.fetch()
    assert snap.error is None
    assert snap.page.first == 5


def test_refresh_shows_new_datasets_on_the_first_page_and_keeps_a_deep_page(built):
    cat, _ = built
    model = DataPanelModel(cat, page_size=5, lab=(None, "/"))
    model.fetch()
    cat.bulk_load([{"kind": "tomo/raw", "sample": "newest", "start_time": 4e9}])
    snap = model.fetch()  # a periodic refresh
    assert snap.page.rows[0]["sample"] == "newest"
    assert snap.page.total == 61
    assert snap.notes == ("1 new dataset(s) since the last refresh",)
    model.go(3)
    rows = model.fetch().page.ids
    cat.bulk_load([{"kind": "tomo/raw", "sample": "newer", "start_time": 4.1e9}])
    again = model.fetch().page
    assert again.ids == rows
    assert again.total == 62


class FakeRemote:
    """Stands in for spotkit.serve's RemoteCatalog: offset search, datasets by id."""

    def __init__(self, cat):
        self.cat = cat
        self.calls = []

    def search(self, *, limit=100, offset=0, **query):
        self.calls.append((limit, offset))
        return self.cat.search(limit=limit, offset=offset, **query)

    def __getitem__(self, dataset_id):
        from types import SimpleNamespace

        ds = self.cat[dataset_id]
        return SimpleNamespace(
            id=ds.id, kind=ds.kind, status=ds.status, beamline=ds.beamline,
            sample=ds.sample, proposal=ds.proposal, title=ds.title,
            start_time=ds.start_time, end_time=ds.end_time, metadata=ds.metadata,
            files=[{"name": f.path.name, "role": f.role, "size": f.size} for f in ds.files],
            parents=[p.id for p in ds.parents], children=[c.id for c in ds.children],
            frame_marks={"of interest": [[2, 4], [9, 9]]})


def test_a_remote_catalog_pages_by_offset_and_shows_what_it_has(built):
    cat, t = built
    remote = FakeRemote(cat)
    everything = cat.search(limit=None).ids
    model = DataPanelModel(remote, page_size=7)
    assert model.fetch().page.ids == everything[:7]
    model.last_page()
    page = model.fetch().page
    assert page.ids == everything[56:]
    assert page.page == 8
    assert remote.calls[-1] == (7, 56)
    model.select(t["raw"].id)
    detail = model.fetch().detail
    assert [sorted(n.id for n in col) for col in detail.graph] == [
        [t["raw"].id], sorted([t["slices"].id, t["png"].id])]
    assert detail.marks[0]["frames"] == "2-4, 9"
    assert detail.runs == ()
    assert detail.files[0]["path"] == "scan_0001.h5"


def test_lab_root_from_the_running_servers_files(tmp_path, monkeypatch):
    import json

    from spotkit.widgets._portal_data_detail import find_lab_root

    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "jpserver-1.json").write_text(json.dumps(
        {"root_dir": str(tmp_path), "base_url": "/user/ada/"}))
    (runtime / "jpserver-2.json").write_text("{broken")
    (runtime / "jpserver-3.json").write_text(json.dumps({"root_dir": "/elsewhere"}))
    work = tmp_path / "notebooks"
    work.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("SPOTKIT_LAB_ROOT", raising=False)
    monkeypatch.chdir(work)
    assert find_lab_root() == (str(tmp_path), "/user/ada/")
    monkeypatch.setenv("SPOTKIT_LAB_ROOT", "/srv")
    assert find_lab_root() == ("/srv", "/")


def test_random_moves_always_show_the_rows_of_the_search(built):
    """Whatever the path to a page (next, previous, jumps, last, page size changes), its
    rows are those of the search at that offset: ties in start time and datasets without
    one included."""
    import random

    cat, _ = built
    rng = random.Random(3)
    for query in ({}, {"sample": "bone-[0-3]*"}):
        everything = cat.search(limit=None, **query).ids
        model = DataPanelModel(cat, page_size=6, lab=(None, "/"))
        model.search(**query)
        model.fetch()
        for _ in range(40):
            move = rng.choice(["next", "previous", "go", "last", "size"])
            if move == "go":
                model.go(rng.randrange(0, 12))
            elif move == "size":
                model.set_page_size(rng.choice([4, 6, 9]))
            else:
                getattr(model, {"next": "next_page", "previous": "previous_page",
                                "last": "last_page"}[move])()
            page = model.fetch().page
            assert page.ids == everything[page.first:page.first + model.page_size], move
            assert page.first == page.page * model.page_size


def test_an_estimated_total_keeps_pages_contiguous(built, monkeypatch):
    """A PostgreSQL catalog estimates big totals: the last page's position is then an
    estimate, and paging back from it (or forward from the top) still shows every row
    once, in order."""
    import dataclasses

    cat, _ = built
    real = data_model.search_page

    def estimating(*args, **kwargs):
        page = real(*args, **kwargs)
        if page.total is None:
            return page
        return dataclasses.replace(page, total=page.total + 7, total_exact=False)

    monkeypatch.setattr(data_model, "search_page", estimating)
    everything = cat.search(limit=None).ids
    model = DataPanelModel(cat, page_size=8, lab=(None, "/"))
    first = model.fetch().page
    assert first.total == 67
    assert not first.total_exact
    model.last_page()
    shown = list(model.fetch().page.ids)
    assert shown == everything[-8:]
    for _ in range(3):
        model.previous_page()
        shown = list(model.fetch().page.ids) + shown
    assert shown == everything[-len(shown):]
    model.first_page()
    shown = list(model.fetch().page.ids)
    for _ in range(3):
        model.next_page()
        shown += model.fetch().page.ids
    assert shown == everything[:len(shown)]
