"""Federation: the local catalog, two real spotkit servers, a plain Tiled server and an
intake catalog exported from a spotkit catalog, searched in one call."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest
import yaml

pytest.importorskip("tiled.server")

from spotkit.serve import FederatedCatalog, FederationError, Hit, open_remote
from spotkit.serve._federation import Query, TiledMount

T0 = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)


def hours(n: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=n)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Tiled keeps one settings object per process (each app it builds overrides the last one's
# authentication and database), so every server here is a process of its own, as it would
# be at a facility.
def spawn(args: list[str], log: Path, stack: contextlib.ExitStack) -> tuple[str, object]:
    """Start a server process on a free port; (its /api URL, the process)."""
    port = _free_port()
    out = stack.enter_context(open(log, "w"))
    proc = subprocess.Popen([sys.executable, *args, "--port", str(port)], stdout=out,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    stack.callback(stop)
    return f"http://127.0.0.1:{port}/api", proc


def wait_until_up(url: str, proc, log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/v1/", timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def scan(cat, work: Path, name: str, *, sample: str, proposal: str, start: dt.datetime,
         seed: int):
    from spotkit.sim import simulate_tomo_scan

    path = work / f"{name}.h5"
    simulate_tomo_scan(path, shape=(12, 3, 24), seed=seed, sample=sample, proposal=proposal,
                       start_time=start)
    return cat.ingest(path)


def spotkit_server(work: Path, datasets: list[dict], users: dict, stack: contextlib.ExitStack,
                   extra_config: str = ""):
    """A catalog with these scans behind `spotkit serve` (a process); (url, keys, ids, proc)."""
    from spotkit.catalog import open_catalog
    from spotkit.serve import create_api_key

    work.mkdir(exist_ok=True)
    cat = open_catalog(work / "catalog.db")
    ids = {d["name"]: scan(cat, work, **d).id for d in datasets}
    cat.close()
    config = work / "serve.yaml"
    config.write_text(yaml.safe_dump({"staff": ["sam"], "users": users}) + extra_config)
    database = f"sqlite:///{work / 'auth.db'}"
    keys = {u: create_api_key(database, u) for u in ["sam", *users]}
    url, proc = spawn(["-m", "spotkit.cli", "serve", "--catalog", str(work / "catalog.db"),
                       "--config", str(config), "--auth-database", database, "--quiet"],
                      work / "server.log", stack)
    return url, keys, ids, proc


PLAIN_TILED = """
import sys, numpy as np, uvicorn
from tiled.adapters.array import ArrayAdapter
from tiled.adapters.mapping import MapAdapter
from tiled.config import Authentication
from tiled.server.app import build_app
arrays = {k: np.load(sys.argv[1])[k] for k in ("uid-1", "uid-2", "uid-3")}
meta = %r
tree = MapAdapter({k: ArrayAdapter.from_array(a, metadata=meta[k]) for k, a in arrays.items()})
app = build_app(tree, authentication=Authentication(single_user_api_key=%r))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""


@dataclass
class World:
    local: object
    local_ids: dict
    als: str
    als_keys: dict
    als_ids: dict
    nsls2: str
    nsls2_keys: dict
    nsls2_ids: dict
    bnl: str
    bnl_arrays: dict
    archive: Path
    work: Path


BNL_KEY = "bnlsecret123"
BNL_MAP = {"sample": "start.sample_name", "beamline": "start.beamline_id",
           "proposal": "start.proposal_id", "start_time": "start.time", "kind": "start.plan"}


def plain_tiled_server(work: Path, stack: contextlib.ExitStack) -> tuple[str, dict, object]:
    """A plain Tiled server (no spotkit), Bluesky-style metadata, a single-user API key."""
    rng = np.random.default_rng(1)
    arrays = {"uid-1": rng.random((4, 5)), "uid-2": rng.random((3, 5)),
              "uid-3": rng.random((2, 5))}
    np.savez(work / "bnl.npz", **arrays)
    meta = {
        "uid-1": {"start": {"sample_name": "lyso-bnl", "beamline_id": "28-ID",
                            "proposal_id": "P-9", "time": hours(6).timestamp(),
                            "plan": "tomo/raw"}},
        "uid-2": {"start": {"sample_name": "salt-bnl", "beamline_id": "28-ID",
                            "proposal_id": "P-9", "time": hours(7).timestamp(),
                            "plan": "tomo/raw"}},
        "uid-3": {"start": {"sample_name": "lyso-old", "beamline_id": "11-BM",
                            "proposal_id": "P-8", "time": hours(-30).timestamp(),
                            "plan": "count"}},
    }
    script = work / "plain_tiled.py"
    script.write_text(PLAIN_TILED % (meta, BNL_KEY))
    url, proc = spawn([str(script), str(work / "bnl.npz")], work / "bnl.log", stack)
    return url, arrays, proc


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from spotkit.catalog import open_catalog

    work = tmp_path_factory.mktemp("federation")
    with contextlib.ExitStack() as stack:
        bnl, bnl_arrays, bnl_proc = plain_tiled_server(work, stack)
        als, als_keys, als_ids, als_proc = spotkit_server(
            work / "als",
            [dict(name="als1", sample="lyso-als", proposal="P-A", start=hours(3), seed=2),
             dict(name="als2", sample="lyso-secret", proposal="P-B", start=hours(4), seed=3)],
            {"ann": ["P-A"]}, stack)
        nsls2, nsls2_keys, nsls2_ids, nsls2_proc = spotkit_server(
            work / "nsls2",
            [dict(name="ns1", sample="lyso-nsls2", proposal="P-C", start=hours(2), seed=4)],
            {}, stack)
        (work / "local").mkdir()
        local = open_catalog(work / "local" / "catalog.db")
        stack.callback(local.close)
        local_ids = {
            "loc1": scan(local, work / "local", "loc1", sample="lyso-local", proposal="P-A",
                         start=hours(1), seed=0).id,
            "loc2": scan(local, work / "local", "loc2", sample="gel-local", proposal="P-A",
                         start=hours(5), seed=1).id,
        }
        archive = local.export_intake(work / "archive.yaml")
        wait_until_up(bnl, bnl_proc, work / "bnl.log")
        wait_until_up(als, als_proc, work / "als" / "server.log")
        wait_until_up(nsls2, nsls2_proc, work / "nsls2" / "server.log")
        yield World(local, local_ids, als, als_keys, als_ids, nsls2, nsls2_keys, nsls2_ids,
                    bnl, bnl_arrays, archive, work)


@pytest.fixture
def fed(world):
    return _fed(world)


def _fed(world, **extra) -> FederatedCatalog:
    fed = FederatedCatalog(world.local, timeout=20)
    fed.mount("als", open_remote(world.als, api_key=world.als_keys["ann"]))
    fed.mount("nsls2", world.nsls2, api_key=world.nsls2_keys["sam"])
    fed.mount("bnl", world.bnl, api_key=BNL_KEY, field_map=BNL_MAP)
    fed.mount("archive", world.archive)
    for name, source in extra.items():
        fed.mount(name, source, timeout=2)
    return fed


def test_one_search_over_every_source(world, fed):
    hits = fed.search(sample="lyso*")
    assert hits.complete, hits.unreachable
    assert hits.keys == [
        ("bnl", "uid-1"),                       # 16:00
        ("als", world.als_ids["als1"]),         # 13:00 (ann does not see P-B's lyso-secret)
        ("nsls2", world.nsls2_ids["ns1"]),      # 12:00
        ("local", world.local_ids["loc1"]),     # 11:00, the same dataset in two sources:
        ("archive", world.local_ids["loc1"]),   # local first, then the mounts in order
        ("bnl", "uid-3"),                       # 2024-04-30
    ]
    assert hits.totals == {"local": 1, "als": 1, "nsls2": 1, "bnl": 2, "archive": 1}
    by = {h.key: h for h in hits}
    bnl = by["bnl", "uid-1"]
    assert (bnl.sample, bnl.beamline, bnl.proposal, bnl.kind, bnl.start_time) == (
        "lyso-bnl", "28-ID", "P-9", "tomo/raw", hours(6))
    als = by["als", world.als_ids["als1"]]
    assert (als.sample, als.proposal, als.kind, als.start_time) == (
        "lyso-als", "P-A", "tomo/raw", hours(3))
    arch = by["archive", world.local_ids["loc1"]]
    assert (arch.sample, arch.proposal, arch.beamline, arch.start_time) == (
        "lyso-local", "P-A", "8.3.2", hours(1))
    assert by["local", world.local_ids["loc1"]] == Hit(
        "local", world.local_ids["loc1"], kind="tomo/raw", beamline="8.3.2",
        sample="lyso-local", proposal="P-A", title=arch.title, status="raw",
        start_time=hours(1))


def test_criteria_mean_the_same_on_every_source(world, fed):
    recent = fed.search(since=hours(2), until=hours(6))
    assert recent.keys == [("bnl", "uid-1"), ("local", world.local_ids["loc2"]),
                           ("archive", world.local_ids["loc2"]),
                           ("als", world.als_ids["als1"]), ("nsls2", world.nsls2_ids["ns1"])]
    assert fed.search(text="gel*").keys == [("local", world.local_ids["loc2"]),
                                            ("archive", world.local_ids["loc2"])]
    assert fed.search(beamline="28-ID").keys == [("bnl", "uid-2"), ("bnl", "uid-1")]
    assert fed.search(proposal=["P-C", "P-8"]).keys == [("nsls2", world.nsls2_ids["ns1"]),
                                                         ("bnl", "uid-3")]
    assert fed.search(text="salt").keys == [("bnl", "uid-2")]
    top = fed.search(limit=3)
    assert top.keys == fed.search(limit=None).keys[:3]
    only = fed.search(sample="lyso*", sources=["archive", "bnl"])
    assert {h.source for h in only} == {"archive", "bnl"}
    assert set(only.totals) == {"archive", "bnl"}


def test_opening_hits_gives_their_data(world, fed):
    hits = {h.key: h for h in fed.search(sample="lyso*")}
    local = hits["local", world.local_ids["loc1"]].open()
    assert local.id == world.local_ids["loc1"]
    with h5py.File(world.work / "local" / "loc1.h5") as f:
        raw = f["exchange/data"][()]
    np.testing.assert_array_equal(local.to_dask().compute(), raw)
    np.testing.assert_array_equal(hits["archive", world.local_ids["loc1"]].open().read()
                                  .compute(), raw)
    remote = hits["als", world.als_ids["als1"]].open()
    assert remote.sample == "lyso-als"
    with h5py.File(world.work / "als" / "als1.h5") as f:
        np.testing.assert_array_equal(remote["data"][3], f["exchange/data"][3])
    np.testing.assert_array_equal(hits["bnl", "uid-1"].open().read(),
                                  world.bnl_arrays["uid-1"])
    assert fed.open("nsls2", world.nsls2_ids["ns1"]).sample == "lyso-nsls2"
    assert fed.open("archive", world.local_ids["loc2"]).metadata["sample"] == "gel-local"


def test_a_down_or_silent_mount_is_reported_not_fatal(world):
    down = f"http://127.0.0.1:{_free_port()}/api"
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        fed = _fed(world, down=down,
                   silent=f"http://127.0.0.1:{silent.getsockname()[1]}/api")
        started = time.monotonic()
        hits = fed.search(sample="lyso*", timeout=1.0)
        assert time.monotonic() - started < 5
        assert set(hits.unreachable) == {"down", "silent"}
        assert "ConnectError" in hits.unreachable["down"]
        assert "no answer within 1 s" in hits.unreachable["silent"]
        assert len(hits) == 6
        assert {h.source for h in hits} == {"local", "als", "nsls2", "bnl", "archive"}
        assert "unreachable down" in repr(hits)
    finally:
        silent.close()
    missing = FederatedCatalog(world.local, {"gone": world.work / "no-such.yaml"})
    result = missing.search()
    assert "cannot read the intake catalog" in result.unreachable["gone"]
    assert {h.source for h in result} == {"local"}
    refused = FederatedCatalog(None, {"als": world.als})  # no key: the server refuses
    assert "als" in refused.search().unreachable


def test_mounts_are_read_only(world, fed):
    before = world.archive.read_bytes()
    n_local = len(world.local)
    fed.search(sample="lyso*")[0].open()
    for hit in fed.search():
        hit.open()
    assert world.archive.read_bytes() == before
    assert len(world.local) == n_local
    assert not any(hasattr(fed, name) for name in ("ingest", "register_derived", "write"))
    client = fed["nsls2"].client()
    with pytest.raises(Exception, match=r"(?i)403|401|405|forbidden|not enough|permission"):
        client.write_array(np.zeros(3))
    assert len(open_remote(world.nsls2, api_key=world.nsls2_keys["sam"])) == 1


def test_setup_errors_name_the_mount_and_parameter(world, tmp_path):
    fed = FederatedCatalog(world.local)
    with pytest.raises(FederationError, match="'ds-x'"):
        fed.mount("ds-x", world.archive)
    with pytest.raises(FederationError, match="taken"):
        fed.mount("local", world.archive)
    with pytest.raises(FederationError, match=r"mount 'b'.*field_map names 'colour'"):
        fed.mount("b", world.bnl, field_map={"colour": "start.colour"})
    with pytest.raises(FederationError, match="neither an http"):
        fed.mount("c", tmp_path / "catalog.txt")
    with pytest.raises(FederationError, match="cannot search by 'color'"):
        Query.build(color="red")
    with pytest.raises(FederationError, match="no source 'x'"):
        fed.search(sources=["x"])
    with pytest.raises(FederationError, match="limit"):
        fed.search(limit=-1)
    with pytest.raises(FederationError, match="since"):
        fed.search(since="yesterday")
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: text\n")
    fed.mount("bad", bad)
    assert "not an intake catalog" in fed.search().unreachable["bad"]


def test_query_matching_semantics():
    q = Query.build(sample="lyso*", text="ring scan*", until="2024-05-01")
    hit = Hit("x", "1", sample="lyso-1", title="Ring Scanning", start_time=hours(-1))
    assert q.matches(hit)
    assert not q.matches(Hit("x", "1", sample="lyso-1", title="ring", start_time=hours(-1)))
    assert not q.matches(Hit("x", "1", sample="lyso-1", title="ring scan",
                             start_time=hours(24)))
    assert not q.matches(Hit("x", "1", sample="lyso-1", title="ring scan"))  # no time
    assert TiledMount("m", "http://example.org/api").uri == "http://example.org/api"
