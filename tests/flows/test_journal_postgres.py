"""The flow on a PostgreSQL catalog: ``spotkit watch`` killed at fault points, then two
watchers at once on one inbox; every scan is ingested, transferred, verified and processed
exactly once, with the journal, the catalog and the leases all in one PostgreSQL database.

(The same scenario on SQLite, with many more kills, is tests/flows/test_exactly_once.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from spotkit.flows import FAULT_ENV, Journal, Manifest, verify_manifest

sys.path.insert(0, str(Path(__file__).parents[1]))

pytestmark = [pytest.mark.slow, pytest.mark.notebook]

ACTIONS = ("preview", "full")
#: one kill at each of these points (the first time a watcher reaches it), in path order
KILLS = ("ingest.after", "transfer.after", "run.started", "run.after", "done.before")


@pytest.fixture
def pg_catalog(request):
    server = request.getfixturevalue("postgres_server")
    url = server.create_database("flow")
    yield url
    server.drop_database(url)


def _watch(env, url, log, fault: str | None, *, once: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "spotkit.cli", "-v", "--catalog", url, "watch",
           str(env["inbox"]), "--rules", str(env["rules"]), "--warehouse", str(env["warehouse"]),
           "--poll", "0.2", "--settle", "0.3", "--cell-timeout", "60"]
    if once:
        cmd.append("--once")
    proc_env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        proc_env[FAULT_ENV] = fault
    # run outputs go under the catalog's home: keep them in the test's folder
    proc_env["SPOTKIT_HOME"] = str(env["root"] / "home")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=proc_env,
                            cwd=env["root"])


def test_flow_on_postgresql_exactly_once_across_kills_and_two_watchers(flow_env, pg_catalog):
    env, url = flow_env, pg_catalog
    written = [env["inbox"] / f"scan_{i:04d}.h5" for i in range(2)]
    for i, path in enumerate(written):
        env["scan"](path, i)
    log_path = env["root"] / "watch.log"
    killed: Counter = Counter()
    with open(log_path, "ab") as log:
        for fault in KILLS:
            proc = _watch(env, url, log, f"{fault}:1")
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:  # pragma: no cover - reported below
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            killed[fault] += proc.returncode == -signal.SIGKILL
        # then two watchers at once on the same inbox finish what is left
        both = [_watch(env, url, log, None, once=True) for _ in range(2)]
        codes = [p.wait(timeout=300) for p in both]
    tail = log_path.read_text(errors="replace")[-4000:]
    assert codes == [0, 0], tail
    assert sum(killed.values()) >= 4, (killed, tail)

    from spotkit.catalog import open_catalog

    with Journal(url) as journal:
        items = journal.items()
        assert len(items) == len(written)
        assert {it.state for it in items} == {"done"}, tail
        for item in items:
            man = Manifest.from_json(journal.step(item.key, "manifested").result["manifest"])
            assert verify_manifest(man, env["warehouse"]) == []
            for step in ("ingested", "manifested", "transferred", "verified", "done",
                         *(f"processed/tomo/{a}" for a in ACTIONS)):
                assert journal.is_done(item.key, step), (item.path, step)
            assert journal.lease_owner(item.key) is None
    with open_catalog(url, create=False) as cat:
        raw = cat.search(kind="tomo/raw", limit=None)
        registered = sorted(str(ds.files[0].registered_path) for ds in raw)
        assert registered == sorted(str(p.resolve()) for p in written)
        runs = cat.runs(limit=None)
        assert not [r for r in runs if r.state in ("running", "queued")]
        done = Counter((r.dataset_id, r.parameters["tag"]) for r in runs
                       if r.state == "completed")
        assert done == Counter({(ds.id, a): 1 for ds in raw for a in ACTIONS})
        derived = cat.search(kind="test/marker", limit=None)
        assert len(derived) == len(written) * len(ACTIONS)
        for ds in derived:
            assert [p.id for p in ds.parents] == [cat.get_run(ds.run_id).dataset_id]
            assert ds.files[0].path.exists()
        # nothing half-registered: outputs only from completed runs
        completed = {r.id for r in runs if r.state == "completed"}
        assert {ds.run_id for ds in derived} <= completed
