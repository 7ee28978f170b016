"""Completeness detection and the watcher's behaviour under faults.

Partial files are never ingested; corrupt files are quarantined with their reason; a
failing notebook is retried and then parked without stopping the other datasets; two
watchers on one inbox process each dataset once; outages of the warehouse and the catalog
are waited out.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from spotkit.catalog import _schema, open_catalog
from spotkit.cli import main
from spotkit.flows import InboxScanner, Journal, LocalCopy, Watcher, check_complete


def _truncated_copy(src, dest, fraction=0.5):
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def _passes(watcher, until, timeout=60.0, pause=0.2):
    """Run passes until ``until()`` holds (or fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    reports = []
    while time.monotonic() < deadline:
        reports.append(watcher.run_once())
        if until():
            return reports
        time.sleep(pause)
    raise AssertionError(f"not reached in {timeout} s; last reports {reports[-3:]}")


def _states(catalog_path):
    with Journal(catalog_path) as journal:
        return Counter(i.state for i in journal.items())


# -- completeness --------------------------------------------------------------------------


def test_check_complete(flow_env, tmp_path):
    good = flow_env["scan"](tmp_path / "good.h5")
    assert good is not None
    assert check_complete(tmp_path / "good.h5") == ("tomo/raw", None)
    bad = _truncated_copy(tmp_path / "good.h5", tmp_path / "bad.h5")
    kind, problem = check_complete(bad)
    assert kind is None
    assert "bad.h5" in problem


@pytest.mark.notebook
def test_partial_file_is_never_reported_or_ingested(flow_env):
    env = flow_env
    path = env["inbox"] / "slow.h5"
    # blocks of 16 projections with a pause longer than `settle` after each
    writer = threading.Thread(target=env["scan"], args=(path,),
                              kwargs={"write_delay": 0.5, "shape": (64, 2, 32)})
    scanner = InboxScanner([env["inbox"]], settle=0.2, quarantine_after=60)
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=env["warehouse"], settle=0.2, quarantine_after=60)
    writer.start()
    seen_partial = 0
    while writer.is_alive():
        found = scanner.poll()
        report = watcher.run_once()
        if writer.is_alive():  # still being written after both looked at it
            seen_partial += path.exists()
            assert found == []
            assert report.discovered == []
            assert len(watcher.catalog) == 0
        time.sleep(0.1)
    writer.join()
    assert seen_partial >= 3  # it was looked at while it was growing
    time.sleep(0.3)
    (cand,) = scanner.poll()
    assert cand.state == "complete"
    assert cand.kind == "tomo/raw"
    assert cand.path == path.resolve()
    assert scanner.poll() == []  # reported once
    _passes(watcher, lambda: _states(env["catalog"]) == Counter(done=1))
    watcher.close()


def test_sentinel_required(flow_env):
    env = flow_env
    env["scan"](env["inbox"] / "a.h5")
    scanner = InboxScanner([env["inbox"]], settle=0, require_sentinel=True)
    assert scanner.poll() == []
    (env["inbox"] / "a.h5.done").touch()
    (cand,) = scanner.poll()
    assert cand.state == "complete"


def test_an_eiger_series_is_one_candidate_its_master(flow_env):
    from spotkit.sim import LiveSeriesWriter

    inbox = flow_env["inbox"]
    writer = LiveSeriesWriter(inbox / "run_master.h5", n_frames=6, fmt="eiger",
                              frames_per_file=2, shape=(16, 16))
    writer.write(6)
    writer.stop()
    assert len(writer.data_files) == 3
    scanner = InboxScanner([inbox], settle=0)
    (cand,) = scanner.poll()  # the data files are part of it, not datasets of their own
    assert cand.path.name == "run_master.h5"
    assert cand.state == "complete"


def test_stable_unreadable_file_is_reported_corrupt(flow_env, tmp_path):
    env = flow_env
    env["scan"](tmp_path / "good.h5")
    _truncated_copy(tmp_path / "good.h5", env["inbox"] / "broken.h5")
    (env["inbox"] / "garbage.nxs").write_bytes(b"not hdf5 at all" * 100)
    scanner = InboxScanner([env["inbox"]], settle=0, quarantine_after=0.5)
    assert scanner.poll() == []  # unreadable, but maybe still being written
    time.sleep(0.6)
    found = {c.path.name: c for c in scanner.poll()}
    assert set(found) == {"broken.h5", "garbage.nxs"}
    assert all(c.state == "corrupt" and c.reason for c in found.values())


# -- the watcher ----------------------------------------------------------------------------


@pytest.mark.notebook
def test_corrupt_file_quarantined_with_reason(flow_env, tmp_path, capsys):
    env = flow_env
    env["scan"](tmp_path / "good.h5")
    _truncated_copy(tmp_path / "good.h5", env["inbox"] / "broken.h5")
    env["scan"](env["inbox"] / "fine.h5", seed=3)
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=env["warehouse"], settle=0, quarantine_after=0.5)
    _passes(watcher, lambda: _states(env["catalog"]) == Counter(done=1, parked=1))
    (bad,) = watcher.catalog.search(status="quarantined")
    assert bad.path.name == "broken.h5"
    assert "broken.h5" in bad.metadata["status_reason"]
    assert not (env["warehouse"] / "broken.h5").exists()  # never moved nor processed
    assert watcher.catalog.runs(dataset_id=bad.id) == []
    # the quarantine is done once, whatever the passes
    watcher.run_once()
    assert len(watcher.catalog.search(status="quarantined")) == 1
    watcher.close()

    assert main(["--catalog", str(env["catalog"]), "status"]) == 0
    out = capsys.readouterr().out
    assert "Parked" in out
    assert "Quarantined" in out
    assert "broken.h5" in out


@pytest.mark.notebook
def test_failing_notebook_retried_then_parked_others_continue(flow_env, capsys):
    env = flow_env
    env["fail_file"].write_text("bad-sample")
    env["scan"](env["inbox"] / "bad.h5", seed=1, sample="bad-sample")
    env["scan"](env["inbox"] / "good.h5", seed=2, sample="good-sample")
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=env["warehouse"], settle=0)
    _passes(watcher, lambda: _states(env["catalog"]) == Counter(done=1, parked=1))
    cat = watcher.catalog
    (bad,) = cat.search(sample="bad-sample", kind="tomo/raw")
    (good,) = cat.search(sample="good-sample", kind="tomo/raw")
    bad_runs = cat.runs(dataset_id=bad.id)
    # retried: the rules allow 2 attempts; the "full" action never ran for it
    assert [r.state for r in bad_runs] == ["failed", "failed"]
    assert {r.parameters["tag"] for r in bad_runs} == {"preview"}
    assert all(r.error_name == "RuntimeError" for r in bad_runs)
    good_runs = cat.runs(dataset_id=good.id)
    assert sorted(r.parameters["tag"] for r in good_runs if r.state == "completed") == [
        "full", "preview"]
    with Journal(env["catalog"]) as journal:
        (parked,) = journal.items(state="parked")
        assert parked.dataset_id == bad.id
        assert "RuntimeError" in parked.last_error
        step = journal.step(parked.key, "processed/tomo/preview")
        assert step.state == "parked"
        assert step.attempts == 2
    # parked stays parked: no more runs
    watcher.run_once()
    assert len(cat.runs(dataset_id=bad.id)) == 2
    watcher.close()
    assert main(["--catalog", str(env["catalog"]), "status", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"parked"' in out
    assert "RuntimeError" in out


@pytest.mark.slow
@pytest.mark.notebook
def test_two_watcher_processes_process_each_dataset_once(flow_env):
    env = flow_env
    for i in range(3):
        env["scan"](env["inbox"] / f"scan_{i}.h5", seed=i)
    cmd = [sys.executable, "-m", "spotkit.cli", "--catalog", str(env["catalog"]), "watch",
           str(env["inbox"]), "--rules", str(env["rules"]), "--warehouse",
           str(env["warehouse"]), "--once", "--settle", "0", "--poll", "0.2"]
    open_catalog(env["catalog"]).close()  # both start on an existing catalog
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(2)]
    outs = [p.communicate(timeout=240)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # no dataset finished twice: the lease kept the second process off the first's datasets
    finished = [int(line.split()[1].rstrip(",")) for out in outs
                for line in out.splitlines() if line.startswith("done ")]
    assert sum(finished) <= 3, outs
    # whatever one process left (it may have stopped early), one more pass finishes
    if _states(env["catalog"]) != Counter(done=3):
        assert subprocess.run(cmd, capture_output=True, timeout=240).returncode == 0
    assert _states(env["catalog"]) == Counter(done=3)
    cat = open_catalog(env["catalog"])
    runs = cat.runs(limit=None)
    assert Counter(r.state for r in runs) == Counter(completed=6)  # none cancelled or doubled
    assert len({(r.dataset_id, r.parameters["tag"]) for r in runs}) == 6
    assert len(cat.search(kind="tomo/raw")) == 3
    cat.close()


@pytest.mark.notebook
def test_warehouse_outage_is_waited_out(flow_env):
    env = flow_env
    env["scan"](env["inbox"] / "a.h5")
    mover = LocalCopy(env["warehouse"], marker=".spotkit-warehouse")  # "not mounted"
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=mover, settle=0, outage_backoff=0.05, max_outage_backoff=0.2)
    for _ in range(3):
        report = watcher.run_once()
        time.sleep(0.25)
    assert report.outages or _states(env["catalog"]) == Counter(failed=1)
    with Journal(env["catalog"]) as journal:
        (item,) = journal.items()
        assert item.state == "failed"
        assert item.attempts == 0  # an outage does not count against the dataset
        assert "marker" in item.last_error
    assert watcher.catalog.runs() == []  # nothing processed before the data is safe
    (env["warehouse"] / ".spotkit-warehouse").touch()  # mounted again
    _passes(watcher, lambda: _states(env["catalog"]) == Counter(done=1))
    assert (env["warehouse"] / "a.h5").exists()
    watcher.close()


@pytest.mark.notebook
def test_catalog_locked_is_waited_out(flow_env, monkeypatch):
    env = flow_env
    monkeypatch.setattr(_schema, "BUSY_TIMEOUT_MS", 200)
    env["scan"](env["inbox"] / "a.h5")
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=env["warehouse"], settle=0, outage_backoff=0.05)
    import sqlite3

    blocker = sqlite3.connect(env["catalog"], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        report = watcher.run_once()
        assert report.outages
        assert report.done == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    _passes(watcher, lambda: _states(env["catalog"]) == Counter(done=1))
    watcher.close()


@pytest.mark.notebook
def test_preview_stage_first_and_target_concurrency(flow_env):
    env = flow_env
    for i in range(3):
        env["scan"](env["inbox"] / f"scan_{i}.h5", seed=i)
    # three datasets at once, but the rules allow one run at a time on the local target
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=env["warehouse"], settle=0, workers=3)
    report = watcher.run_once()
    assert len(report.done) == 3
    runs = sorted(watcher.catalog.runs(limit=None), key=lambda r: r.started_at)
    assert [r.state for r in runs] == ["completed"] * 6
    # the preview of every dataset ran before any full reconstruction
    assert [r.parameters["tag"] for r in runs] == ["preview"] * 3 + ["full"] * 3
    for before, after in itertools.pairwise(runs):
        assert before.ended_at <= after.started_at  # never two at once on the target
    # every step recorded its timing and size
    with Journal(env["catalog"]) as journal:
        for step in journal.steps():
            assert step.state == "done"
            assert step.seconds is not None
            if step.step in ("ingested", "manifested", "transferred", "verified", "done"):
                assert step.bytes > 0
    watcher.close()


@pytest.mark.notebook
def test_batch_path_through_submit_on_a_local_pool(flow_env):
    env = flow_env
    env["scan"](env["inbox"] / "a.h5")
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=env["warehouse"], settle=0, local_in_process=False)
    _passes(watcher, lambda: _states(env["catalog"]) == Counter(done=1), timeout=120)
    runs = watcher.catalog.runs(limit=None)
    assert sorted(r.parameters["tag"] for r in runs if r.state == "completed") == [
        "full", "preview"]
    assert all(r.job_id for r in runs)  # they went through the batch path
    assert len(watcher.catalog.search(kind="test/marker")) == 2
    watcher.close()


# -- inotify -------------------------------------------------------------------------------


def test_inotify_events_wake_for_new_files_and_new_sub_folders(tmp_path):
    from spotkit.flows._inotify import InboxEvents

    events = InboxEvents.open([tmp_path, tmp_path / "not-there-yet"])
    if events is None:
        pytest.skip("inotify is not available on this machine")
    with events:
        assert events.folders == [tmp_path]
        assert not events.wait(0.2)  # nothing happened
        (tmp_path / "run7").mkdir()
        assert events.wait(2.0)
        assert tmp_path / "run7" in events.folders  # watched from now on
        (tmp_path / "run7" / "scan.h5").write_bytes(b"x")  # create + close-write
        assert events.wait(2.0)
        (tmp_path / "run7" / ".hidden").mkdir()
        events.wait(1.0)
        assert tmp_path / "run7" / ".hidden" not in events.folders


def test_next_due_is_when_a_changing_file_settles(tmp_path):
    scanner = InboxScanner([tmp_path], settle=2.0)
    assert scanner.next_due() is None
    (tmp_path / "a.h5").write_bytes(b"partial")
    assert scanner.poll() == []  # seen, not settled
    due = scanner.next_due()
    assert due is not None
    assert 1.5 < due <= 2.0


@pytest.mark.notebook
@pytest.mark.parametrize("inotify", [True, False])
def test_inotify_wakes_the_watcher_long_before_the_next_poll(flow_env, inotify):
    from spotkit.flows._inotify import InboxEvents

    if inotify and InboxEvents.open([flow_env["inbox"]]) is None:
        pytest.skip("inotify is not available on this machine")
    env = flow_env
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=env["warehouse"], poll=60, settle=0.3, inotify=inotify)
    thread = threading.Thread(target=watcher.run_forever, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)  # the first pass has run and found nothing
        env["scan"](env["inbox"] / "late.h5")
        def found() -> bool:
            with Journal(env["catalog"]) as journal:
                return bool(journal.items())

        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline and not found():
            time.sleep(0.1)
        # with inotify the scan is found within seconds; polling alone waits for the
        # next pass, a minute away
        assert found() is inotify
    finally:
        watcher.stop()
        thread.join(30)
        watcher.close()


def test_a_lost_batch_job_counts_against_the_dataset_and_closes_its_run(flow_env):
    """A job the scheduler lost is a failed attempt (retried, then parked), not an outage."""
    from spotkit.errors import JobLostError
    from spotkit.flows._flow import PassReport

    env = flow_env
    env["scan"](env["inbox"] / "a.h5")
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=env["rules"],
                      warehouse=env["warehouse"], settle=0)
    watcher.journal.discover("k1", env["inbox"] / "a.h5", size=1, mtime_ns=1)
    item = watcher.journal.item("k1")
    ds = watcher.catalog.ingest(env["inbox"] / "a.h5")
    action = watcher.rules.actions_for(ds)[0]
    run_id = watcher.catalog.start_run(dataset_id=ds.id, notebook=action.notebook_path,
                                       notebook_sha256=None, parameters={"tag": "preview"},
                                       target="slurm", state="queued")

    class LostJob:
        id = "4242"
        run_id = None

        def wait(self, check=False):
            raise JobLostError(job_id="4242", target="slurm", seconds=61.0, run_id=run_id)

    job = LostJob()
    job.run_id = run_id
    with pytest.raises(JobLostError) as info:
        watcher._follow(job, action)
    run = watcher.catalog.get_run(run_id)
    assert (run.state, run.error_name) == ("failed", "JobLostError")
    assert "is lost" in run.error_message
    report = PassReport()
    watcher.journal.acquire("k1")
    watcher._failed(item, info.value, report, max_attempts=1, retry=watcher.rules.retry)
    assert str(item.path) in report.parked  # counted (and parked at the limit)
    assert not report.outages
    assert watcher.journal.lease_owner("k1") is None  # let go for any watcher
    watcher.close()
