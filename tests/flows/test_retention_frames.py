"""FrameRetention: frames marked redundant move or age out only after the validation the
facility configures (a verified copy, a quality verdict, an approval, a minimum age); dry
run by default; raw data never deleted without a verified copy; every release recorded."""

from __future__ import annotations

import shutil

import pytest

from spotkit.catalog import open_catalog
from spotkit.flows import FrameRetention
from spotkit.sim import simulate_saxs_series, write_frame_folder

DAY = 86400.0


@pytest.fixture
def series(tmp_path):
    _ = simulate_saxs_series(tmp_path / "s.h5", n_frames=6, shape=(24, 32), module_shape=None,
                             seed=2)
    folder = write_frame_folder(tmp_path / "run_0001", tmp_path / "s.h5", fmt="tiff")
    cat = open_catalog(tmp_path / "catalog.db")
    ds = cat.ingest(folder)
    cat.mark_frames(ds.id, [1, 2, 3], "redundant", reasons="no change")
    cat.mark_frames(ds.id, [4], "of interest", reasons="onset at frame 4")
    yield cat, ds, folder
    cat.close()


def frame(folder, i):
    return folder / f"frame_{i + 1:05d}.tif"


def warehouse_copy(cat, ds, folder, tmp_path):
    copy = tmp_path / "warehouse" / folder.name
    shutil.copytree(folder, copy)
    cat.add_replicas(ds.id, "warehouse", {ds.primary_file.registered_path: copy})
    return copy


def test_refused_settings():
    with pytest.raises(ValueError, match="validated_by"):
        FrameRetention(validated_by=["sha"], dest="x")
    with pytest.raises(ValueError, match="needs dest"):
        FrameRetention()
    with pytest.raises(ValueError, match="no frame's only copy is ever deleted"):
        FrameRetention(validated_by=["approval"], action="age_out")


def test_nothing_goes_without_validation_and_age(series, tmp_path):
    cat, ds, folder = series
    policy = FrameRetention(validated_by=["replica", "approval"], min_age_days=1,
                            dest=tmp_path / "cold")
    plan = policy.apply(cat, ds.id, dry_run=False)
    assert plan.frames == ()
    assert plan.done == ()
    assert set(plan.held) == {1, 2, 3}  # frame 4 is of interest: never a candidate
    assert plan.checks == {
        "replica": (False, "no verified copy anywhere but the origin"),
        "approval": (False, "nobody approved releasing its redundant frames")}
    warehouse_copy(cat, ds, folder, tmp_path)
    policy.approve(cat, ds.id, by="ops", reason="timeline reviewed")
    plan = policy.plan(cat, ds.id)
    assert plan.validated
    assert set(plan.held.values()) == {"younger than 1 days"}
    plan = policy.plan(cat, ds.id, now=plan_time(2))
    assert plan.frames == (1, 2, 3)
    assert [p.name for p in plan.files] == ["frame_00002.tif", "frame_00003.tif",
                                            "frame_00004.tif"]
    assert all(frame(folder, i).exists() for i in range(6))  # a plan changes nothing


def plan_time(days: float) -> float:
    import time

    return time.time() + days * DAY


def test_age_out_after_a_verified_copy_frame_by_frame(series, tmp_path):
    cat, ds, folder = series
    copy = warehouse_copy(cat, ds, folder, tmp_path)
    policy = FrameRetention(action="age_out", min_age_days=0)
    assert policy.apply(cat, ds.id).done == ()  # a dry run by default
    assert frame(folder, 1).exists()
    # the copy of frame 2 went bad after it was verified: it is re-read, and frame 2 stays
    frame(copy, 2).write_bytes(b"not the frame")
    cat.add_replicas(ds.id, "warehouse", {ds.primary_file.registered_path: copy})
    plan = policy.apply(cat, ds.id, dry_run=False, by="retention job")
    assert plan.checks["replica"] == (False, "no verified copy anywhere but the origin")
    assert plan.done == ()
    assert all(frame(folder, i).exists() for i in range(6))
    shutil.copy2(frame(folder, 2), frame(copy, 2))  # repaired
    cat.add_replicas(ds.id, "warehouse", {ds.primary_file.registered_path: copy})
    plan = policy.apply(cat, ds.id, dry_run=False, by="retention job")
    assert plan.done == (1, 2, 3)
    assert [frame(folder, i).exists() for i in range(6)] == [True, False, False, False,
                                                             True, True]
    assert all(frame(copy, i).exists() for i in range(6))  # the copy is untouched
    released = policy.releases(cat, ds.id)
    assert [(r["frame"], r["action"], r["dest"], r["released_by"]) for r in released] == [
        (1, "age_out", None, "retention job"), (2, "age_out", None, "retention job"),
        (3, "age_out", None, "retention job")]
    assert released[0]["reason"].startswith("replica: verified copy at warehouse")
    origin = [r for r in cat.replicas(ds.id)[ds.primary_file.registered_path]
              if r.location == "origin"]
    assert origin[0].state == "unverified"  # readers take the complete copy
    # frame numbers stay right although files have gone: frame 5 is still frame_00006
    cat.mark_frames(ds.id, [5], "redundant")
    plan = policy.plan(cat, ds.id)
    assert plan.frames == (5,)
    assert plan.files[0].name == "frame_00006.tif"


def test_move_on_approval(series, tmp_path):
    cat, ds, _folder = series
    policy = FrameRetention(validated_by="approval", min_age_days=0, dest=tmp_path / "cold")
    policy.approve(cat, ds.id, by="beamline scientist", reason="reviewed")
    plan = policy.apply(cat, ds.id, dry_run=False)
    assert plan.done == (1, 2, 3)
    moved = tmp_path / "cold" / ds.id
    assert sorted(p.name for p in moved.iterdir()) == ["frame_00002.tif", "frame_00003.tif",
                                                       "frame_00004.tif"]
    assert [r["dest"] for r in policy.releases(cat, ds.id)] == [
        str(moved / f"frame_0000{i}.tif") for i in (2, 3, 4)]
    assert policy.apply(cat, ds.id, dry_run=False).done == ()  # once only


def test_a_series_in_one_file_or_still_acquired_stays(series, tmp_path):
    cat, ds, _folder = series
    policy = FrameRetention(validated_by="approval", min_age_days=0, dest=tmp_path / "cold")
    policy.approve(cat, ds.id, by="ops", reason="ok")
    cat.set_live_status(ds.id, state="following")
    plan = policy.apply(cat, ds.id, dry_run=False)
    assert set(plan.held.values()) == {"the series is still being acquired"}
    h5 = cat.ingest(tmp_path / "s.h5")
    cat.mark_frames(h5.id, [0], "redundant")
    policy.approve(cat, h5.id, by="ops", reason="ok")
    plan = policy.apply(cat, h5.id, dry_run=False)
    assert plan.held == {0: "its frames are inside one file (s.h5): a frame cannot leave it "
                            "on its own (only a frame folder's files can)"}
    cat.set_live_status(ds.id, state="finished")
    cat.set_status(ds.id, "superseded", reason="acquisition finished; ingested as ds-2")
    plan = policy.plan(cat, ds.id)
    assert set(plan.held.values()) == {"superseded (acquisition finished; ingested as ds-2): "
                                       "release the frames of the dataset that replaced it"}
    cat.set_status(ds.id, "registered")
    verdict = FrameRetention(validated_by="verdict", min_age_days=0, dest=tmp_path / "c")
    assert verdict.plan(cat, ds.id).checks == {
        "verdict": (False, "no passed quality check on the series or its products")}
