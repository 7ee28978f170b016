"""What beamlines actually write, through the whole flow: an NXtomo file and a CBF folder.

The scanner takes a folder of frames as one candidate (complete when the sidecar's frame
count is reached, or when it stopped changing); the watcher ingests both datasets, moves every
file of each (the folder whole, its PONI and sidecar) to the warehouse, lists them in the
manifest, and the shipped pipeline notebooks process them into registered products.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from spotkit.catalog import open_catalog
from spotkit.flows import InboxScanner, Journal, Watcher
from spotkit.sim import (
    simulate_saxs_series,
    simulate_tomo_scan,
    write_frame_folder,
    write_nxtomo,
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Twin data: a Data Exchange scan and a SAXS series to rewrite in other layouts."""
    root = tmp_path_factory.mktemp("twin_sources")
    scan = simulate_tomo_scan(root / "scan.h5", shape=(91, 4, 96), center_offset=3.5,
                              seed=7, sample="nx-sample", proposal="TEST-NX")
    series = simulate_saxs_series(root / "series.h5", n_frames=8, onset_frame=5, seed=5,
                                  sample="cbf-film", proposal="TEST-CBF")
    return {"scan": root / "scan.h5", "scan_truth": scan, "series": root / "series.h5",
            "series_truth": series}


# -- the scanner: one candidate per folder ----------------------------------------------------


def test_a_growing_cbf_folder_is_one_candidate_once_all_frames_are_there(sources, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    full = write_frame_folder(tmp_path / "full", sources["series"])
    run = write_frame_folder(inbox / "run_0001", sources["series"], n_written=5)
    scanner = InboxScanner([inbox], settle=0, quarantine_after=60)
    assert scanner.poll() == []  # 5 of 8 frames: not complete, not corrupt
    for name in ("frame_00006.cbf", "frame_00007.cbf", "frame_00008.cbf"):
        shutil.copy(full / name, run / name)
    (cand,) = scanner.poll()
    assert cand.path == run.resolve()
    assert cand.state == "complete"
    assert cand.kind == "saxs/raw"
    assert cand.size == sum(p.stat().st_size for p in run.iterdir())
    assert scanner.poll() == []  # reported once, not once per frame


def test_a_folder_without_a_count_is_complete_when_it_stops_changing(sources, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    run = write_frame_folder(inbox / "run_0002", sources["series"], n_written=4,
                             expected=False)
    scanner = InboxScanner([inbox], settle=0.5, quarantine_after=60)
    shutil.copy(run / "frame_00004.cbf", run / "frame_00005.cbf")  # just written: not settled
    assert scanner.poll() == []
    time.sleep(0.6)
    (cand,) = scanner.poll()
    assert cand.path == run.resolve()
    assert cand.state == "complete"


def test_an_aborted_folder_is_quarantined_with_its_reason(sources, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_frame_folder(inbox / "run_0003", sources["series"], n_written=2)
    scanner = InboxScanner([inbox], settle=0, quarantine_after=0.3)
    assert scanner.poll() == []
    time.sleep(0.4)
    (cand,) = scanner.poll()
    assert cand.state == "corrupt"
    assert "2 of 8 frames" in cand.reason


def test_nxtomo_files_are_watched(sources, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_nxtomo(inbox / "esrf.nx", sources["scan"], variant="esrf")
    write_nxtomo(inbox / "dls.nxs", sources["scan"], variant="diamond")
    scanner = InboxScanner([inbox], settle=0)
    found = {c.path.name: (c.state, c.kind) for c in scanner.poll()}
    assert found == {"esrf.nx": ("complete", "tomo/raw"), "dls.nxs": ("complete", "tomo/raw")}


# -- the whole flow ----------------------------------------------------------------------------

RULES = """\
version: 1
facility: formats test
targets:
  local: {kind: local, max_workers: 1, concurrency: 1}
rules:
  - name: tomo
    match: {beamline: "8.3.2", kind: tomo/raw}
    actions:
      - {name: preview, stage: preview, notebook: tomo_quicklook, target: local,
         parameters: {n_slices: 2}}
  - name: saxs
    match: {beamline: "7.3.3", kind: saxs/raw}
    actions:
      - {name: quicklook, stage: preview, notebook: saxs_quicklook, target: local,
         parameters: {npt: 120}}
"""


@pytest.mark.slow
@pytest.mark.notebook
def test_nxtomo_and_cbf_folder_end_to_end(sources, tmp_path):
    inbox, warehouse = tmp_path / "inbox", tmp_path / "warehouse"
    inbox.mkdir()
    warehouse.mkdir()
    write_nxtomo(inbox / "tomo_0001.nx", sources["scan"], variant="esrf")
    run = write_frame_folder(inbox / "saxs_0001", sources["series"])
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    catalog_path = tmp_path / "catalog.db"
    watcher = Watcher([inbox], catalog=catalog_path, rules=rules, warehouse=warehouse,
                      poll=0.2, settle=0.2, workers=1)
    try:
        deadline = time.monotonic() + 240
        while True:
            watcher.run_once()
            with Journal(catalog_path) as journal:
                items = {Path(i.path).name: i for i in journal.items()}
            if len(items) == 2 and all(i.state in ("done", "parked") for i in items.values()):
                break
            assert time.monotonic() < deadline, {k: (i.state, i.error) for k, i in items.items()}
            time.sleep(0.2)
    finally:
        watcher.close()
    assert {k: i.state for k, i in items.items()} == {"tomo_0001.nx": "done",
                                                      "saxs_0001": "done"}
    cat = open_catalog(catalog_path)
    tomo = cat[items["tomo_0001.nx"].dataset_id]
    saxs = cat[items["saxs_0001"].dataset_id]

    # catalogued through the readers: the NXtomo as tomo/raw, the folder as one saxs/raw
    assert (tomo.kind, tomo.sample, tomo.beamline) == ("tomo/raw", "nx-sample", "8.3.2")
    assert tomo.metadata["format"] == "nxtomo"
    assert (saxs.kind, saxs.sample, saxs.beamline) == ("saxs/raw", "cbf-film", "7.3.3")
    roles = {f.role: Path(f.registered_path) for f in saxs.files}
    assert roles == {"data": run.resolve(), "geometry": (run / "series.poni").resolve(),
                     "metadata": (run / "metadata.json").resolve()}

    # every file travelled: the folder whole (each frame), its PONI and sidecar
    landed = sorted(p.relative_to(warehouse).as_posix() for p in warehouse.rglob("*")
                    if p.is_file())
    expected = ["tomo_0001.nx", "saxs_0001/metadata.json", "saxs_0001/series.poni",
                *(f"saxs_0001/frame_{k:05d}.cbf" for k in range(1, 9))]
    for name in expected:
        assert any(p == name or p.endswith("/" + name) for p in landed), (name, landed)
    for name in expected:
        src = inbox / name
        dest = next(warehouse.rglob(name))
        assert dest.read_bytes() == src.read_bytes()
    manifests = [json.loads(p.read_text()) for p in warehouse.rglob("*manifest*.json")]
    listed = {f["path"] for m in manifests for f in m["files"]}
    assert set(expected) <= listed, listed

    # processed by the shipped notebooks into registered products
    assert [r.state for r in tomo.runs] == ["completed"]
    assert [r.state for r in saxs.runs] == ["completed"]
    kinds = {c.kind for c in tomo.children}
    assert {"tomo/slices", "image/png"} <= kinds
    slices = next(c for c in tomo.children if c.kind == "tomo/slices")
    with h5py.File(slices.primary_file.path) as f:
        center = f["slices"].attrs["center"]
    assert abs(center - sources["scan_truth"].center) < 0.5
    iq = next(c for c in saxs.children if c.kind == "saxs/iq")
    with h5py.File(iq.primary_file.path) as f:
        intensity = f["intensity"][...]
    assert intensity.shape == (8, 120)
    assert np.isfinite(intensity).any()
    # the readers now read the warehouse copy: the inbox may be cleaned up
    assert Path(saxs.primary_file.path).is_relative_to(warehouse.resolve())
    cat.close()
