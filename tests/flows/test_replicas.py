"""Every catalogued file of a dataset reaches the warehouse; the catalog then reads it there.

A SAXS series is two files (the NeXus ``.h5`` and the ``.poni`` it names): both travel, are
verified and are listed in the manifest, and the catalog records their warehouse replicas,
so the inbox copy can be cleaned up without breaking the catalog or the notebooks.
Parked and quarantined items can be retried or forgotten with a reason, and an item whose
good copy was processed later is superseded, not left parked.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from spotkit.catalog import open_catalog
from spotkit.errors import FlowError
from spotkit.flows import Journal, Manifest, Watcher, verify_manifest

#: a pipeline notebook body that records which paths it was given for the series' files
SAXS_BODY = """\
import json, pathlib
from spotkit.catalog import open_catalog
from spotkit.runs import declare_output
ds = open_catalog(catalog_path)[dataset_id]
seen = {f.role: str(f.path) for f in ds.files}
frames = ds.to_xarray()
assert frames.shape[0] > 0
assert pathlib.Path(seen["geometry"]).read_text().startswith("#") or "Distance" in \\
    pathlib.Path(seen["geometry"]).read_text()
out = pathlib.Path(output_dir) / f"{tag}.json"
out.write_text(json.dumps(seen))
declare_output(out, kind="test/paths", metadata={"tag": tag})
"""


def _saxs_rules(path: Path, notebook: Path) -> Path:
    path.write_text(
        "version: 1\nfacility: TEST\nstages: [preview]\n"
        "retry: {attempts: 1, backoff: 0.1}\n"
        "targets:\n  local: {kind: local, max_workers: 1}\n"
        "rules:\n  - name: saxs\n    match: {kind: saxs/raw}\n    actions:\n"
        f"      - {{name: quick, stage: preview, notebook: {notebook}, target: local, "
        "parameters: {tag: quick}}\n"
    )
    return path


def _until(watcher, cond, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watcher.run_once()
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError("flow did not get there in time")


def _states(catalog):
    with Journal(catalog) as journal:
        return Counter(i.state for i in journal.items())


@pytest.mark.notebook
def test_saxs_geometry_travels_is_verified_listed_and_read_from_the_warehouse(flow_env):
    from spotkit.sim import simulate_saxs_series

    env = flow_env
    truth = simulate_saxs_series(env["inbox"] / "series_0001.h5", n_frames=4, shape=(40, 48),
                                 module_shape=None, seed=1)
    notebook = env["write_notebook"](env["root"] / "saxs.ipynb", SAXS_BODY)
    rules = _saxs_rules(env["root"] / "saxs.yaml", notebook)
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=rules,
                      warehouse=env["warehouse"], settle=0)
    _until(watcher, lambda: _states(env["catalog"]) == Counter(done=1))
    watcher.close()

    # both files are in the warehouse, and the manifest that travelled lists both
    wh_h5 = env["warehouse"] / "series_0001.h5"
    wh_poni = env["warehouse"] / "series_0001.poni"
    assert wh_h5.read_bytes() == truth.path.read_bytes()
    assert wh_poni.read_bytes() == truth.poni_path.read_bytes()
    (man_file,) = env["warehouse"].glob("*.spotkit-manifest.json")
    man = Manifest.read(man_file)
    assert sorted(f.path for f in man.files) == ["series_0001.h5", "series_0001.poni"]
    assert verify_manifest(man, env["warehouse"]) == []

    # the catalog knows the verified replicas and hands out the warehouse paths
    cat = open_catalog(env["catalog"])
    (ds,) = cat.search(kind="saxs/raw")
    assert {f.role: f.path for f in ds.files} == {"data": wh_h5, "geometry": wh_poni}
    assert {f.registered_path for f in ds.files} == {truth.path, truth.poni_path}
    for f in ds.files:
        best = f.replicas[0]
        assert (best.location, best.state, Path(best.path)) == ("warehouse", "verified", f.path)
        assert best.manifest_id == man.id
    # the notebook the flow ran read the series and its geometry from the warehouse
    (run,) = [r for r in cat.runs(dataset_id=ds.id) if r.state == "completed"]
    (out,) = [cat[o] for o in run.outputs]
    assert json.loads(out.path.read_text()) == {"data": str(wh_h5), "geometry": str(wh_poni)}

    # the facility cleans the inbox: the catalog still opens the data (from the warehouse)
    shutil.move(truth.path, env["root"] / "elsewhere.h5")
    shutil.move(truth.poni_path, env["root"] / "elsewhere.poni")
    assert cat.mark_replicas(ds.id, "origin", "removed", detail="inbox cleaned") == 2
    again = cat[ds.id]
    assert again.to_xarray().shape[0] == 4
    origin = [r for r in again.files[0].replicas if r.location == "origin"]
    assert origin[0].state == "removed"
    assert origin[0].detail == "inbox cleaned"
    report = cat.verify_replicas(ds.id)
    assert sorted(report["verified"]) == sorted([str(wh_h5), str(wh_poni)])
    cat.close()


def test_files_outside_the_inbox_still_travel(flow_env):
    """A geometry file kept outside the inbox travels too, packed relative to a common
    folder, and the catalog records both replicas."""
    import h5py

    from spotkit.flows._flow import PassReport
    from spotkit.sim import simulate_saxs_series

    env = flow_env
    series = env["inbox"] / "run7" / "series_0007.h5"
    series.parent.mkdir()
    simulate_saxs_series(series, n_frames=2, shape=(24, 24), module_shape=None, seed=7)
    # the beamline keeps the calibration elsewhere and the file names it
    calib = env["root"] / "calib" / "detector.poni"
    calib.parent.mkdir()
    shutil.move(series.with_suffix(".poni"), calib)
    with h5py.File(series, "r+") as f:  # a test file made here, not a beamline's raw data
        del f["/entry/instrument/detector/geometry_file"]
        f["/entry/instrument/detector/geometry_file"] = str(calib)
    rules = _saxs_rules(env["root"] / "r.yaml", env["notebook"])
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=rules,
                      warehouse=env["warehouse"], settle=0)
    report = PassReport()
    watcher._discover(report)
    (item,) = watcher.journal.items()
    ds = watcher._prepare(item, report)
    assert ds is not None, report
    assert (env["warehouse"] / "inbox" / "run7" / "series_0007.h5").is_file()
    assert (env["warehouse"] / "calib" / "detector.poni").read_bytes() == calib.read_bytes()
    fresh = watcher.catalog[ds.id]
    assert {f.path for f in fresh.files} == {
        env["warehouse"] / "inbox" / "run7" / "series_0007.h5",
        env["warehouse"] / "calib" / "detector.poni"}
    watcher.close()


@pytest.mark.notebook
def test_quarantined_then_good_copy_supersedes_and_retry_forget(flow_env, tmp_path, capsys):
    from spotkit.cli import main

    env = flow_env
    env["scan"](tmp_path / "good.h5", seed=4)
    good = (tmp_path / "good.h5").read_bytes()
    (env["inbox"] / "scan.h5").write_bytes(good[: len(good) // 2])  # truncated export
    (env["inbox"] / "junk.h5").write_bytes(b"not hdf5" * 64)
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=env["warehouse"], settle=0, quarantine_after=0.2)
    _until(watcher, lambda: _states(env["catalog"]) == Counter(parked=2))
    cat = watcher.catalog
    assert len(cat.search(status="quarantined")) == 2

    # the beamline re-exports scan.h5 complete: processed, and the broken one is history
    (env["inbox"] / "scan.h5").write_bytes(good)
    _until(watcher, lambda: _states(env["catalog"]) == Counter(done=1, superseded=1, parked=1))
    (q,) = cat.search(status="quarantined")
    assert q.path.name == "junk.h5"
    (old,) = cat.search(status="superseded")
    assert "a good copy" in old.metadata["status_reason"]
    with Journal(env["catalog"]) as journal:
        (sup,) = journal.items(state="superseded")
        assert "superseded by a good copy" in sup.last_error

        # retry and forget need a known item and a reason, and record both
        with pytest.raises(FlowError, match="not in the flow journal"):
            journal.retry("/no/such/file.h5", reason="x")
        with pytest.raises(FlowError, match="needs a reason"):
            journal.forget(env["inbox"] / "junk.h5", reason=" ")
        (done,) = journal.items(state="done")
        with pytest.raises(FlowError, match="only parked, failed"):
            journal.retry(done.dataset_id, reason="again")
        item = journal.forget(env["inbox"] / "junk.h5", reason="test pattern, not data",
                              by="operator")
        assert item.state == "forgotten"
        step = journal.step(item.key, "forgotten")
        assert step.result == {"reason": "test pattern, not data", "by": "operator",
                               "was": "parked"}
    assert len(cat.search(status="quarantined")) == 0
    (forgotten,) = cat.search(status="forgotten")
    assert "test pattern" in forgotten.metadata["status_reason"]
    watcher.run_once()
    assert _states(env["catalog"]) == Counter(done=1, superseded=1, forgotten=1)
    watcher.close()
    assert main(["--catalog", str(env["catalog"]), "status"]) == 0
    out = capsys.readouterr().out
    assert "Parked" not in out
    assert "Quarantined" not in out


@pytest.mark.notebook
def test_retry_runs_a_parked_item_again_and_keeps_done_steps(flow_env):
    env = flow_env
    env["fail_file"].write_text("flaky-sample")
    env["scan"](env["inbox"] / "flaky.h5", seed=5, sample="flaky-sample")
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=env["warehouse"], settle=0)
    _until(watcher, lambda: _states(env["catalog"]) == Counter(parked=1))
    with Journal(env["catalog"]) as journal:
        (parked,) = journal.items(state="parked")
        verified_at = journal.step(parked.key, "verified").ended_at
    env["fail_file"].unlink()  # the cause is fixed
    with Journal(env["catalog"]) as journal:
        item = journal.retry(env["inbox"] / "flaky.h5", reason="notebook fixed", by="op")
        assert (item.state, item.attempts, item.last_error) == ("pending", 0, None)
        assert journal.step(item.key, "retried").result["reason"] == "notebook fixed"
    _until(watcher, lambda: _states(env["catalog"]) == Counter(done=1))
    with Journal(env["catalog"]) as journal:
        # the verified transfer was not repeated
        assert journal.step(parked.key, "verified").ended_at == verified_at
    watcher.close()


def test_ingest_manifest_and_transfer_read_each_source_file_once(flow_env, monkeypatch):
    """The catalog's sha256, the manifest's block checks and the warehouse copy come from one
    read of each source file: ingest stages the copy, transfer checks it and renames it."""
    from spotkit import checksums
    from spotkit.catalog import _ingest
    from spotkit.flows import _localcopy, _suitcase
    from spotkit.flows._flow import PassReport
    from spotkit.sim import simulate_saxs_series

    env = flow_env
    simulate_saxs_series(env["inbox"] / "s.h5", n_frames=2, shape=(24, 24),
                         module_shape=None, seed=2)
    reads = Counter()
    real_stage = _localcopy.LocalCopy.stage

    def counting(path, **kw):
        reads["hash " + Path(path).name] += 1
        return checksums.sha256_file(path), ()

    def staging(self, key, path):
        reads["stage " + Path(path).name] += 1
        return real_stage(self, key, path)

    def copying(self, src, *a):
        reads["copy " + Path(src).name] += 1
        pytest.fail(f"the transfer read the source again: {src}")

    monkeypatch.setattr(_suitcase, "digest_file", counting)
    monkeypatch.setattr(checksums, "digest_file", counting)
    monkeypatch.setattr(_ingest, "checksum", lambda p: pytest.fail(f"hashed again: {p}"))
    monkeypatch.setattr(_localcopy.LocalCopy, "stage", staging)
    monkeypatch.setattr(_localcopy.LocalCopy, "_copy_one", copying)
    rules = _saxs_rules(env["root"] / "r.yaml", env["notebook"])
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=rules,
                      warehouse=env["warehouse"], settle=0)
    report = PassReport()
    watcher._discover(report)
    (item,) = watcher.journal.items()
    assert watcher._prepare(item, report) is not None, report
    assert watcher.journal.step(item.key, "ingested").result["staged"] == 2
    assert watcher.journal.step(item.key, "transferred").result["copied"] == ["s.h5", "s.poni"]
    watcher.close()
    assert reads == Counter({"stage s.h5": 1, "stage s.poni": 1})
    man = Manifest.read(next(env["warehouse"].glob("*.spotkit-manifest.json")))
    assert man.file_metadata["s.h5"]["kind"] == "saxs/raw"
    assert verify_manifest(man, env["warehouse"]) == []
    assert verify_manifest(man, env["inbox"]) == []  # the raw data untouched
    # nothing staged is left: the warehouse holds the data and its manifest only
    assert sorted(p.name for p in env["warehouse"].iterdir()) == [
        "s.h5", "s.poni", "s.spotkit-manifest.json"]


def test_without_a_staging_warehouse_ingest_hashes_and_transfer_copies(flow_env, monkeypatch):
    """A warehouse that cannot take the staged copy at ingest (here: not mounted yet) costs
    a second read at transfer, nothing else; so does a staging copy that fails."""
    from spotkit.flows import LocalCopy, _localcopy
    from spotkit.flows._flow import PassReport
    from spotkit.sim import simulate_saxs_series

    env = flow_env
    simulate_saxs_series(env["inbox"] / "s.h5", n_frames=2, shape=(24, 24),
                         module_shape=None, seed=2)

    def full(self, key, path):
        raise _localcopy.TransferError("cannot stage: disk full", reason="disk full",
                                       transient=True)

    monkeypatch.setattr(_localcopy.LocalCopy, "stage", full)
    rules = _saxs_rules(env["root"] / "r.yaml", env["notebook"])
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=rules,
                      warehouse=LocalCopy(env["warehouse"]), settle=0)
    report = PassReport()
    watcher._discover(report)
    (item,) = watcher.journal.items()
    assert watcher._prepare(item, report) is not None, report
    assert watcher.journal.step(item.key, "ingested").result["staged"] == 0
    watcher.close()
    man = Manifest.read(next(env["warehouse"].glob("*.spotkit-manifest.json")))
    assert verify_manifest(man, env["warehouse"]) == []
    assert sorted(p.name for p in env["warehouse"].iterdir()) == [
        "s.h5", "s.poni", "s.spotkit-manifest.json"]


def test_known_checksums_are_used_only_while_the_file_is_unchanged(tmp_path):
    from spotkit.flows import make_manifest
    from spotkit.flows._suitcase import digest_file

    f = tmp_path / "a.bin"
    f.write_bytes(b"one" * 1000)
    st = f.stat()
    sha, crcs = digest_file(f)
    fake = {f: (st.st_size, st.st_mtime_ns, "0" * 64, crcs)}
    assert make_manifest([f], root=tmp_path, known=fake).files[0].sha256 == "0" * 64
    f.write_bytes(b"two" * 1000)  # changed since: hashed again
    assert make_manifest([f], root=tmp_path, known=fake).files[0].sha256 != "0" * 64
    assert make_manifest([f], root=tmp_path, known=fake).files[0].sha256 != sha


def test_a_file_that_cannot_be_read_while_staging_quarantines_and_keeps_nothing(
        flow_env, monkeypatch):
    """Files of one dataset are staged concurrently; a source that fails to read makes the
    catalog refuse the dataset (quarantined, as before) and nothing staged is kept."""
    from spotkit.flows import _localcopy
    from spotkit.flows._flow import PassReport
    from spotkit.sim import simulate_saxs_series

    env = flow_env
    simulate_saxs_series(env["inbox"] / "s.h5", n_frames=2, shape=(24, 24),
                         module_shape=None, seed=2)
    real = _localcopy.LocalCopy.stage

    def flaky(self, key, path):
        if Path(path).suffix == ".poni":
            raise OSError(5, "Input/output error")
        return real(self, key, path)

    monkeypatch.setattr(_localcopy.LocalCopy, "stage", flaky)
    rules = _saxs_rules(env["root"] / "r.yaml", env["notebook"])
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=rules,
                      warehouse=env["warehouse"], settle=0)
    report = PassReport()
    watcher._discover(report)
    (item,) = watcher.journal.items()
    assert watcher._prepare(item, report) is None
    assert "Input/output error" in report.parked[str(item.path)]
    assert len(watcher.catalog.search(kind="saxs/raw")) == 0
    watcher.close()
    assert not any(p.is_file() for p in env["warehouse"].rglob("*"))


def test_a_restarted_watcher_sweeps_staging_left_by_finished_datasets(flow_env):
    from spotkit.flows import LocalCopy

    env = flow_env
    mover = LocalCopy(env["warehouse"])
    stale = env["root"] / "stale.bin"
    stale.write_bytes(b"x" * 1000)
    mover.stage("a dataset finished or forgotten meanwhile", stale)
    rules = _saxs_rules(env["root"] / "r.yaml", env["notebook"])
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=rules, warehouse=mover,
                      settle=0)
    watcher.run_once()
    watcher.close()
    assert list(env["warehouse"].iterdir()) == []
