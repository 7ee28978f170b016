"""spotkit.catalog.dataset_overview: one read with lineage, runs, marks, replicas, previews."""

from __future__ import annotations

import pytest

from spotkit.catalog import dataset_overview
from spotkit.errors import DatasetNotFoundError


def _lineage(cat, root):
    """raw -> run A (completed) -> slices + preview.png; slices -> run B -> recon;
    raw -> run C (failed, nothing made); frame marks and a warehouse replica on raw."""
    data = root / "raw.h5"
    data.write_bytes(b"raw" * 10)
    cat.bulk_load([{"kind": "saxs/raw", "beamline": "7.3.3", "sample": "film",
                    "start_time": 1.7e9, "files": [{"path": data, "role": "data"}]}])
    raw = cat.search()[0]
    run_a = cat.start_run(dataset_id=raw.id, notebook=root / "quick.ipynb",
                          notebook_sha256="ab", parameters={"n": 1})
    for name in ("slices.npy", "preview.png", "recon.h5", "out.ipynb"):
        (root / name).write_bytes(name.encode())
    slices, png = cat.finish_run(run_a, state="completed", output_notebook=root / "out.ipynb",
                                 outputs=[{"path": root / "slices.npy", "kind": "tomo/slices"},
                                          {"path": root / "preview.png", "kind": "image/png"}])
    run_b = cat.start_run(dataset_id=slices.id, notebook=root / "recon.ipynb",
                          notebook_sha256="cd", parameters={})
    (recon,) = cat.finish_run(run_b, state="completed",
                              outputs=[{"path": root / "recon.h5", "kind": "tomo/recon"}])
    run_c = cat.start_run(dataset_id=raw.id, notebook=root / "reduce.ipynb",
                          notebook_sha256="ef", parameters={})
    cat.finish_run(run_c, state="failed", error_cell=3, error_name="ValueError",
                   error_message="no beam centre")
    cat.mark_frames(raw.id, [4, 5, 6], "of interest", reasons="onset at frame 5")
    cat.add_replicas(raw.id, "warehouse", {data: root / "warehouse-raw.h5"})
    return raw, slices, png, recon, (run_a, run_b, run_c)


def test_overview_of_raw_data_reads_everything(cat, tmp_path):
    raw, slices, png, recon, (run_a, run_b, run_c) = _lineage(cat, tmp_path)
    view = dataset_overview(cat, raw.id)
    assert view.dataset.id == raw.id
    assert view.producing_run is None
    assert [r.id for r in view.runs] == [run_c, run_a]  # newest first
    assert view.runs[0].error_name == "ValueError"
    assert view.runs[0].error_cell == 3
    graph = view.lineage
    assert graph.generation == {raw.id: 0, slices.id: 1, png.id: 1, recon.id: 2}
    assert graph.columns() == [[raw.id], sorted([png.id, slices.id],
                                                key=lambda i: graph.datasets[i].kind),
                               [recon.id]]
    assert set(graph.edges) == {(raw.id, slices.id, run_a), (raw.id, png.id, run_a),
                                (slices.id, recon.id, run_b)}
    assert graph.runs_into(recon.id) == [run_b]
    assert set(graph.runs) >= {run_a, run_b, run_c}
    assert not graph.truncated
    assert [m["frame"] for m in view.frame_marks] == [4, 5, 6]
    assert [p.dataset_id for p in view.previews] == [png.id]
    assert view.previews[0].path.read_bytes() == b"preview.png"
    (file,) = view.dataset.files
    assert [r.location for r in file.replicas] == ["warehouse"]


def test_overview_of_a_product_walks_up_to_the_raw_data(cat, tmp_path):
    raw, slices, _png, recon, (_run_a, run_b, _) = _lineage(cat, tmp_path)
    view = dataset_overview(cat, recon.id)
    assert view.producing_run.id == run_b
    assert view.runs == ()
    assert view.lineage.generation == {recon.id: 0, slices.id: -1, raw.id: -2}
    assert view.previews == ()  # the raw data's product is not this one's preview
    short = dataset_overview(cat, recon.id, up=1)
    assert short.lineage.generation == {recon.id: 0, slices.id: -1}
    assert short.lineage.truncated
    few = dataset_overview(cat, raw.id, down=3, max_nodes=1)
    assert len(few.lineage.datasets) == 2
    assert few.lineage.truncated


def test_overview_errors(cat):
    with pytest.raises(DatasetNotFoundError):
        dataset_overview(cat, "ds-nothing")
    with pytest.raises(ValueError, match="max_nodes must be"):
        dataset_overview(cat, "ds-nothing", max_nodes=-1)
