"""spotkit.live.LiveSession on an Eiger series (the twin's master + data files): one dataset,
every frame once and in order across the data files, a resume, the finished series ingested
with the data files' checksums."""

from __future__ import annotations

import hashlib

from spotkit.catalog import open_catalog
from spotkit.live import LiveSession
from spotkit.sim import LiveSeriesWriter, Transition

SHAPE = (24, 32)
N, PER_FILE = 16, 4
DETECTOR = {"warmup": 3, "holdoff": 2}


def _features(cat, ds):
    return [p.frame for p in cat.live_points(ds, kinds="features")]


def test_live_session_follows_an_eiger_series(tmp_path):
    writer = LiveSeriesWriter(tmp_path / "run_master.h5", fmt="eiger", frames_per_file=PER_FILE,
                              n_frames=N, shape=SHAPE, module_shape=None, seed=4,
                              transitions=[Transition(9, "radius_nm", 7.0)],
                              frame_interval_s=1.0, time_scale=0.01, swmr=False)
    cat = open_catalog(tmp_path / "catalog.db")
    with LiveSession(writer.path, catalog=cat, npt=40, detector=DETECTOR) as live:
        assert live.step() == []  # the master only: nothing yet
        writer.write(6)  # data file 1 closed, file 2 open with two frames (one held back)
        assert [p.frame for p in live.step() if p.kind == "features"] == [0, 1, 2, 3, 4]
        ds_id = live.dataset_id
    ds = cat[ds_id]
    assert ds.status == "acquiring"
    assert ds.path == writer.path  # the series is one dataset: its master
    assert cat.live_status(ds_id)["state"] == "stopped"

    writer.start()  # the rest in (scaled) real time, while a new session resumes
    with LiveSession(writer.path, catalog=cat, npt=40, detector=DETECTOR) as live:
        assert live.dataset_id == ds_id
        assert live.cursor == 4
        status = live.run(idle_timeout=10)
    assert writer.wait(10)
    assert (status.state, status.done, status.written) == ("finished", N, N)
    assert _features(cat, ds_id) == list(range(N))  # each frame once, across the files

    final = cat[live.ingested_as]
    assert (final.status, final.path) == ("raw", writer.path)
    assert cat[ds_id].status == "superseded"
    assert final.metadata["n_frames"] == N
    assert final.metadata["live_dataset"] == ds_id
    frames = [f for f in final.files if f.role == "frames"]
    assert [f.path for f in frames] == writer.data_files
    for f in frames:  # every data file ingested with its checksum
        assert f.sha256 == hashlib.sha256(f.path.read_bytes()).hexdigest()
    assert {f.role for f in final.files} == {"data", "frames", "geometry", "mask"}
    cat.close()
