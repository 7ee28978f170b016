"""A slow local catalog query holds its own request only, never the server's event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

pytest.importorskip("tiled.server")


class _SlowPages:
    """A real catalog whose page queries for the sample ``slow`` wait until released (the
    counting query, ``limit=0``, answers at once): a search that takes as long as the
    test wants, made in whichever thread the server asks it from."""

    def __init__(self, catalog):
        self._catalog = catalog
        self.release = threading.Event()
        self.waiting = threading.Event()
        self.threads: list[str] = []

    def search(self, **kwargs):
        if kwargs.get("sample") == ["slow"] and kwargs.get("limit"):
            self.threads.append(threading.current_thread().name)
            self.waiting.set()
            assert self.release.wait(30), "the test never released the slow query"
        return self._catalog.search(**kwargs)

    def __getattr__(self, name):
        return getattr(self._catalog, name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    import uvicorn

    from spotkit.catalog import open_catalog
    from spotkit.serve import build_app, create_api_key, parse_config
    from spotkit.sim import simulate_tomo_scan

    simulate_tomo_scan(tmp_path / "a.h5", shape=(12, 3, 24), seed=0, sample="quick",
                       proposal="P-A")
    cat = open_catalog(tmp_path / "catalog.db")
    ds = cat.ingest(tmp_path / "a.h5")
    slow = _SlowPages(cat)
    database = f"sqlite:///{tmp_path / 'auth.db'}"
    key = create_api_key(database, "sam")
    config = parse_config({"staff": ["sam"]}, tmp_path / "serve.yaml")
    app = build_app(slow, config, auth_database=database)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(),
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in 30 s"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{srv.config.port}/api/v1"
    try:
        yield url, {"Authorization": f"Apikey {key}"}, slow, ds.id
    finally:
        slow.release.set()
        srv.should_exit = True
        thread.join(timeout=10)
        cat.close()


def test_a_slow_local_query_does_not_hold_another_request(server):
    url, headers, slow, ds_id = server

    async def both():
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            slow_search = asyncio.create_task(client.get(
                f"{url}/search/", params={"filter[eq][condition][key]": "sample",
                                          "filter[eq][condition][value]": '"slow"'}))
            while not slow.waiting.is_set():  # the page query has started and waits
                await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            other = await client.get(f"{url}/metadata/{ds_id}")
            listing = await client.get(f"{url}/search/", params={"page[limit]": 5})
            answered = time.perf_counter() - t0
            still_waiting = not slow_search.done()
            slow.release.set()
            return other, listing, answered, still_waiting, await slow_search

    other, listing, answered, still_waiting, slow_answer = asyncio.run(both())
    assert other.status_code == 200, other.text
    assert other.json()["data"]["attributes"]["metadata"]["sample"] == "quick"
    assert [d["id"] for d in listing.json()["data"]] == [ds_id]
    assert still_waiting  # both answered while the slow query was still running
    assert answered < 10
    assert slow_answer.status_code == 200, slow_answer.text
    assert slow_answer.json()["data"] == []
    # the query ran in the catalog's own threads, not in the server's event loop
    assert slow.threads
    assert all(t.startswith("spotkit-catalog") for t in slow.threads)


def test_lookups_and_pages_run_in_the_catalogs_threads(tmp_path):
    """The awaitable paths Tiled uses give what the synchronous ones give."""
    from spotkit.catalog import open_catalog
    from spotkit.serve import CatalogAdapter
    from spotkit.serve._local_queries import _offset
    from spotkit.sim import simulate_tomo_scan

    cat = open_catalog(tmp_path / "catalog.db")
    ids = []
    for k in range(3):
        simulate_tomo_scan(tmp_path / f"s{k}.h5", shape=(12, 3, 24), seed=k, sample=f"s{k}",
                           proposal="P-A")
        ids.append(cat.ingest(tmp_path / f"s{k}.h5").id)
    root = CatalogAdapter(cat)

    async def ask():
        node = await root.lookup_adapter([ids[1]])
        return (await root.exact_len(), await root.keys_range(0, 2),
                [k for k, _ in await root.items_range(1, None)], node,
                (await root.keys_page(None, 10))[0], await root.lookup_adapter([]))

    count, first_two, rest, node, page, itself = asyncio.run(ask())
    assert count == len(root) == 3
    assert first_two == list(root.keys())[:2]
    assert rest == list(root.keys())[1:]
    assert page == list(root.keys())
    assert node._metadata is not None  # read in the catalog's thread, with the lookup
    assert node.metadata()["sample"] == "s1"
    assert itself is root
    from tiled.server.core import NoEntry

    with pytest.raises(NoEntry):
        asyncio.run(root.lookup_adapter(["no-such-id"]))
    assert _offset("40") == 40
    cat.close()
