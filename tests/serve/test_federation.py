"""Federation: the local catalog, two real spotkit servers, a plain Tiled server and an
intake catalog exported from a spotkit catalog, searched in one call."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import threading
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
def spawn(args: list[str], log: Path, stack: contextlib.ExitStack,
          env: dict | None = None) -> tuple[str, object]:
    """Start a server process on a free port; (its /api URL, the process)."""
    port = _free_port()
    out = stack.enter_context(open(log, "w"))
    proc = subprocess.Popen([sys.executable, *args, "--port", str(port)], stdout=out,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

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
                   mounts: dict | None = None, env: dict | None = None, quiet: bool = True):
    """A catalog with these scans behind `spotkit serve` (a process); (url, keys, ids, proc).
    Not ``quiet``: its log (server.log) has spotkit's warnings and the access log."""
    from spotkit.catalog import open_catalog
    from spotkit.serve import create_api_key

    work.mkdir(exist_ok=True)
    cat = open_catalog(work / "catalog.db")
    ids = {d["name"]: scan(cat, work, **d).id for d in datasets}
    cat.close()
    config = work / "serve.yaml"
    config.write_text(yaml.safe_dump({"staff": ["sam"], "users": users,
                                      **({"mounts": mounts} if mounts else {})}))
    database = f"sqlite:///{work / 'auth.db'}"
    keys = {u: create_api_key(database, u) for u in ["sam", *users]}
    url, proc = spawn(["-m", "spotkit.cli", "serve", "--catalog", str(work / "catalog.db"),
                       "--config", str(config), "--auth-database", database,
                       *(["--quiet"] if quiet else [])],
                      work / "server.log", stack, env)
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


HANGING = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[-1])))
server.listen(128)
held = []
while True:  # accept every connection, read nothing, answer nothing
    held.append(server.accept()[0])
"""


def hanging_server(work: Path, stack: contextlib.ExitStack) -> tuple[str, object]:
    """A server process that accepts connections and never answers (a hung facility)."""
    script = work / "hanging.py"
    script.write_text(HANGING)
    return spawn([str(script)], work / "hanging.log", stack)


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
    hanging: str


BNL_KEY = "bnlsecret123"
#: seconds the hanging mount of the server with mounts has to answer
SILENT_TIMEOUT = 6.0
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
        hanging, hanging_proc = hanging_server(work, stack)
        als, als_keys, als_ids, als_proc = spotkit_server(
            work / "als",
            [dict(name="als1", sample="lyso-als", proposal="P-A", start=hours(3), seed=2),
             dict(name="als2", sample="lyso-secret", proposal="P-B", start=hours(4), seed=3)],
            {"ann": ["P-A"]}, stack)
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
        # nsls2 mounts the others (serve.yaml `mounts`): als for staff only (with ann's key
        # there), bnl and the intake archive for every user, and a server that is down
        mounts = {
            "als": {"uri": als, "api_key_env": "ALS_KEY"},
            "bnl": {"uri": bnl, "api_key_env": "BNL_KEY", "field_map": BNL_MAP,
                    "public": True},
            "archive": {"intake": str(archive), "public": True},
            "down": {"uri": f"http://127.0.0.1:{_free_port()}/api", "public": True,
                     "timeout": 2},
            "silent": {"uri": hanging, "timeout": SILENT_TIMEOUT},  # staff only
        }
        nsls2, nsls2_keys, nsls2_ids, nsls2_proc = spotkit_server(
            work / "nsls2",
            [dict(name="ns1", sample="lyso-nsls2", proposal="P-C", start=hours(2), seed=4),
             dict(name="ns2", sample="mica-nsls2", proposal="P-A", start=hours(8), seed=5)],
            {"ann": ["P-A"], "eve": []}, stack, mounts,
            {"ALS_KEY": als_keys["ann"], "BNL_KEY": BNL_KEY}, quiet=False)
        wait_until_up(bnl, bnl_proc, work / "bnl.log")
        wait_until_up(als, als_proc, work / "als" / "server.log")
        wait_until_up(nsls2, nsls2_proc, work / "nsls2" / "server.log")
        assert hanging_proc.poll() is None, (work / "hanging.log").read_text()
        yield World(local, local_ids, als, als_keys, als_ids, nsls2, nsls2_keys, nsls2_ids,
                    bnl, bnl_arrays, archive, work, hanging)


@pytest.fixture
def fed(world):
    return _fed(world)


def _fed(world, **extra) -> FederatedCatalog:
    fed = FederatedCatalog(world.local, timeout=20)
    fed.mount("als", open_remote(world.als, api_key=world.als_keys["ann"]))
    fed.mount("nsls2", world.nsls2, api_key=world.nsls2_keys["sam"])
    fed.mount("bnl", world.bnl, api_key=BNL_KEY, field_map=BNL_MAP)
    fed.mount("archive", world.archive)
    for name, source in extra.items():  # the silent one must outlast the search's timeout
        fed.mount(name, source, timeout=2 if name == "down" else 10)
    return fed


@pytest.mark.slow  # four server processes (started once for the module)
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


@pytest.mark.slow  # four server processes (started once for the module)
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


@pytest.mark.slow  # four server processes (started once for the module)
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


@pytest.mark.slow  # four server processes (started once for the module)
def test_a_down_or_silent_mount_is_reported_not_fatal(world):
    down = f"http://127.0.0.1:{_free_port()}/api"
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        fed = _fed(world, down=down,
                   silent=f"http://127.0.0.1:{silent.getsockname()[1]}/api")
        started = time.monotonic()
        hits = fed.search(sample="lyso*", timeout=4.0)
        assert time.monotonic() - started < 8
        assert set(hits.unreachable) == {"down", "silent"}
        assert "ConnectError" in hits.unreachable["down"]
        assert "no answer within 4 s" in hits.unreachable["silent"]
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


@pytest.mark.slow  # four server processes (started once for the module)
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
    assert len(open_remote(world.nsls2, api_key=world.nsls2_keys["sam"])) == 2


def test_setup_errors_name_the_mount_and_parameter(tmp_path):
    from spotkit.catalog import open_catalog

    local = open_catalog(tmp_path / "catalog.db")
    archive = local.export_intake(tmp_path / "archive.yaml")
    fed = FederatedCatalog(local)
    with pytest.raises(FederationError, match="'ds-x'"):
        fed.mount("ds-x", archive)
    with pytest.raises(FederationError, match="taken"):
        fed.mount("local", archive)
    with pytest.raises(FederationError, match=r"mount 'b'.*field_map names 'colour'"):
        fed.mount("b", "http://127.0.0.1:1/api", field_map={"colour": "start.colour"})
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
    fed.mount("archive", archive)
    result = fed.search()
    assert (len(result), result.totals["archive"], result.totals["local"]) == (0, 0, 0)
    local.close()


def test_query_matching_semantics():
    q = Query.build(sample="lyso*", text="ring scan*", until="2024-05-01")
    hit = Hit("x", "1", sample="lyso-1", title="Ring Scanning", start_time=hours(-1))
    assert q.matches(hit)
    assert not q.matches(Hit("x", "1", sample="lyso-1", title="ring", start_time=hours(-1)))
    assert not q.matches(Hit("x", "1", sample="lyso-1", title="ring scan",
                             start_time=hours(24)))
    assert not q.matches(Hit("x", "1", sample="lyso-1", title="ring scan"))  # no time
    assert TiledMount("m", "http://example.org/api").uri == "http://example.org/api"


# ---------------------------------------------------------------- mounts in spotkit serve
@pytest.fixture(scope="module")
def hub(world):
    """Tiled clients of the server with mounts (nsls2), for staff, a user, a user without
    proposals."""
    from tiled.client import from_uri

    return {user: from_uri(world.nsls2, api_key=world.nsls2_keys[user], remember_me=False)
            for user in ("sam", "ann", "eve")}


@pytest.mark.slow  # four server processes (started once for the module)
def test_serve_shows_mounts_beside_the_local_datasets(world, hub):
    from tiled.queries import Comparison, Eq, FullText

    sam, ann = hub["sam"], hub["ann"]
    assert set(sam) == set(world.nsls2_ids.values())  # mounts are not listed as datasets
    assert list(ann) == [world.nsls2_ids["ns2"]]      # local access by proposal holds
    assert sam.metadata["spotkit"]["mounts"] == ["archive", "bnl", "down"]  # the public ones
    bnl = ann["bnl"]
    assert bnl.metadata["spotkit"]["mount"] == "bnl"
    assert list(bnl) == ["uid-2", "uid-1", "uid-3"]   # newest first
    assert list(bnl.search(Eq("sample", "lyso*"))) == ["uid-1", "uid-3"]
    assert list(bnl.search(Comparison("ge", "start_time", hours(0).isoformat()))
                .search(FullText("lyso"))) == ["uid-1"]
    one = bnl["uid-1"]
    assert (one.metadata["source"], one.metadata["id"], one.metadata["sample"],
            one.metadata["start_time"]) == ("bnl", "uid-1", "lyso-bnl", hours(6).isoformat())
    np.testing.assert_array_equal(one["data"].read(), world.bnl_arrays["uid-1"])
    np.testing.assert_array_equal(one["data"][1:3, ::2], world.bnl_arrays["uid-1"][1:3, ::2])
    loc1 = world.local_ids["loc1"]
    archive = ann["archive"]
    assert list(archive.search(Eq("sample", "lyso-local"))) == [loc1]
    entry = archive[loc1]
    assert entry.metadata["record"]["files"][0]["name"] == "loc1.h5"
    assert str(world.work) not in str(dict(entry.metadata))  # no paths of the source
    with h5py.File(world.work / "local" / "loc1.h5") as f:
        np.testing.assert_array_equal(entry["data"][2], f["exchange/data"][2])
    als = sam["als"]  # staff: the remote spotkit serve, with the key of ann there
    assert list(als) == [world.als_ids["als1"]]
    with h5py.File(world.work / "als" / "als1.h5") as f:
        np.testing.assert_array_equal(als[world.als_ids["als1"]]["data"][4],
                                      f["exchange/data"][4])
    assert als[world.als_ids["als1"]].metadata["proposal"] == "P-A"


@pytest.mark.slow  # four server processes (started once for the module)
def test_serve_mount_policy_and_read_only(world, hub):
    sam, ann, eve = hub["sam"], hub["ann"], hub["eve"]
    for user in (ann, eve):  # als is not public: it does not exist for users
        with pytest.raises(KeyError):
            user["als"]
    assert world.als_ids["als1"] in sam["als"]
    assert list(eve["bnl"]) == ["uid-2", "uid-1", "uid-3"]  # public: any user with a key
    for user in (sam, ann):
        with pytest.raises(Exception, match=r"(?i)403|405|forbidden|not enough|not allowed"):
            user["bnl"].write_array(np.zeros(3))
        with pytest.raises(Exception, match=r"(?i)403|405|forbidden|not enough|not allowed"):
            user.write_array(np.zeros(3), key="bnl")
    r = httpx.get(f"{world.nsls2}/v1/metadata/bnl")
    assert r.status_code == 401  # no key, no mount
    for route in ("metadata", "search"):  # a mount that is down: 502, saying so
        r = httpx.get(f"{world.nsls2}/v1/{route}/down",
                      headers={"Authorization": f"Apikey {world.nsls2_keys['ann']}"})
        assert r.status_code == 502
        assert "'down' did not answer" in r.text
    assert list(ann["bnl"])  # and the others still answer
    log = (world.work / "nsls2" / "server.log").read_text()
    assert world.als_keys["ann"] not in log  # the mounts' keys are never logged
    assert BNL_KEY not in log


@pytest.mark.slow  # four server processes (started once for the module)
def test_a_hanging_mount_does_not_hold_the_server(world):
    """While requests to a mount whose server accepts connections and never answers wait
    out its timeout, the same server answers requests for its local datasets and its
    other mounts at once; the hanging mount's requests end with 504 naming it, and a
    request after that gets the same answer without waiting again."""
    staff = {"Authorization": f"Apikey {world.nsls2_keys['sam']}"}
    api = f"{world.nsls2}/v1"
    hung: dict[str, tuple[int, str, float]] = {}

    def ask(route: str) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        r = httpx.get(f"{api}/{route}", headers=staff, timeout=60)
        return r, time.monotonic() - started

    def ask_hanging(route: str) -> None:
        r, took = ask(route)
        hung[route] = (r.status_code, r.text, took)

    ns2, loc1 = world.nsls2_ids["ns2"], world.local_ids["loc1"]
    answering = ("search/", f"metadata/{ns2}", f"array/full/{ns2}/data?slice=0", "search/bnl",
                 "metadata/bnl/uid-1", f"metadata/archive/{loc1}",
                 f"array/full/{ns2}/data?slice=1")
    before = {route: ask(route)[1] for route in answering}  # connected, files opened
    for route in ("metadata/silent", "metadata/silent/uid-1", "search/silent"):
        started = time.monotonic()  # a user who may not see the mount: it is not asked
        r = httpx.get(f"{api}/{route}", timeout=60,
                      headers={"Authorization": f"Apikey {world.nsls2_keys['ann']}"})
        assert r.status_code == 404, (route, r.text)
        assert r.json()["detail"] == f"No such entry: {route.split('/')[1:]}"
        assert time.monotonic() - started < SILENT_TIMEOUT / 3
    waiting = [threading.Thread(target=ask_hanging, args=(route,)) for route in
               ("search/silent", "metadata/silent", "metadata/silent/uid-1",
                "search/silent?page[offset]=2&page[limit]=1")]
    for thread in waiting:
        thread.start()
    time.sleep(0.5)  # the four requests are in the server, waiting on the mount
    latency = {}
    for route in answering:
        r, latency[route] = ask(route)
        assert r.status_code == 200, (route, r.text)
    still_waiting = [thread.is_alive() for thread in waiting]
    for thread in waiting:
        thread.join(timeout=60)
    print(f"\nlocal and other mounts' requests, no mount hanging (s): {before}"
          f"\nthe same while 'silent' hangs (s): {latency}"
          f"\nthe hanging mount's requests (status, s): "
          f"{ {k: (v[0], round(v[2], 2)) for k, v in hung.items()} }")
    assert all(still_waiting), hung  # answered while every hanging request still waited
    assert max(latency.values()) < SILENT_TIMEOUT / 3, latency
    assert len(hung) == 4
    for route, (status, text, took) in hung.items():
        assert status == 504, (route, text)
        assert f"'silent' did not answer within {SILENT_TIMEOUT:g} s" in text, (route, text)
        assert SILENT_TIMEOUT - 0.5 < took < SILENT_TIMEOUT + 3, (route, took)
    again, took = ask("search/silent")  # remembered: no second wait
    assert again.status_code == 504, again.text
    assert "'silent'" in again.text
    assert took < SILENT_TIMEOUT / 3, took
    log = (world.work / "nsls2" / "server.log").read_text()
    assert "mount silent" in log, log[-2000:]
    assert "no answer within" in log


@pytest.mark.parametrize(("mounts", "field", "words"), [
    ({"Bad Name": {"uri": "http://x/api"}}, "mounts.Bad Name", "lowercase"),
    ({"ds-1": {"uri": "http://x/api"}}, "mounts.ds-1", "not 'ds-'"),
    ({"a": {"uri": "http://x/api", "intake": "c.yaml"}}, "mounts.a", "exactly one"),
    ({"a": {}}, "mounts.a", "exactly one"),
    ({"a": {"uri": "ftp://x"}}, "mounts.a.uri", "http(s)://"),
    ({"a": {"intake": "c.json"}}, "mounts.a.intake", ".yaml"),
    ({"a": {"uri": "http://x/api", "api_key_env": "abc def"}}, "mounts.a.api_key_env",
     "environment variable"),
    ({"a": {"intake": "c.yaml", "api_key_env": "K"}}, "mounts.a.api_key_env", "only a `uri`"),
    ({"a": {"uri": "http://x/api", "field_map": {"colour": "c"}}}, "mounts.a.field_map.colour",
     "unknown field"),
    ({"a": {"uri": "http://x/api", "public": "yes"}}, "mounts.a.public", "true or false"),
    ({"a": {"uri": "http://x/api", "timeout": 0}}, "mounts.a.timeout", "positive"),
    ({"a": {"uri": "http://x/api", "key": "x"}}, "mounts.a.key", "unknown field"),
    (["a"], "mounts", "must map"),
])
def test_mount_config_errors_name_the_file_and_field(tmp_path, mounts, field, words):
    from spotkit.serve import ServeConfigError, load_config

    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"mounts": mounts}))
    with pytest.raises(ServeConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path.absolute()}: {field}: ")
    assert words in str(info.value)


def test_mount_config_reads_keys_from_the_environment(tmp_path, monkeypatch):
    from spotkit.serve import ServeConfigError, load_config
    from spotkit.serve._federation_server import build_mounts

    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"mounts": {
        "far": {"uri": "https://far.example.org/api", "api_key_env": "FAR_KEY"},
        "arch": {"intake": "sub/cat.yaml", "public": True}}}))
    cfg = load_config(path)
    far, arch = sorted(cfg.mounts, key=lambda m: m.name != "far")
    assert (far.name, far.public, far.timeout, arch.intake) == (
        "far", False, 10.0, tmp_path / "sub" / "cat.yaml")
    monkeypatch.delenv("FAR_KEY", raising=False)
    with pytest.raises(ServeConfigError, match=r"mounts\.far\.api_key_env: the environment "
                       r"variable FAR_KEY is not set"):
        build_mounts(cfg)
    monkeypatch.setenv("FAR_KEY", "k" * 40)
    built = build_mounts(cfg)
    assert set(built) == {"far", "arch"}
    fed = FederatedCatalog.from_config(None, path)
    assert set(fed.sources) == {"far", "arch"}
    assert fed["far"].uri == "https://far.example.org/api"
    assert fed["arch"].path == tmp_path / "sub" / "cat.yaml"
    assert built["far"].federation_public is False
    assert "k" * 40 not in repr(built) + str(built["far"].metadata())


def test_intake_v1_catalog_with_a_field_map(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"sources": {
        "old1": {"driver": "csv", "args": {"urlpath": str(tmp_path / "a.csv")},
                 "metadata": {"specimen": "lyso-v1", "when": "2020-01-02T00:00:00Z",
                              "kind": "table"}},
        "old2": {"driver": "csv", "args": {"urlpath": str(tmp_path / "b.csv")},
                 "metadata": {"specimen": "other", "when": 1577836800}}}}))
    fed = FederatedCatalog(None)
    fed.mount("v1", path, field_map={"sample": "specimen", "start_time": "when"})
    result = fed.search()
    assert result.keys == [("v1", "old1"), ("v1", "old2")]
    assert result[1].start_time == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert fed.search(sample="lyso*", until="2020-01-02").keys == [("v1", "old1")]
    assert fed.search(since="2020-01-03").keys == []
