"""A real ``spotkit serve`` (uvicorn in a thread, a free port) over a tiny catalog with two
proposals, and API keys for a user of each, a staff member and a user with no proposal."""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("tiled.server")


@dataclass
class Site:
    url: str
    catalog: object
    database: str
    keys: dict[str, str]
    ids: dict[str, str]
    work: Path
    log: list[str] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_site(work: Path, location: object) -> tuple[object, dict[str, str]]:
    """A catalog: proposal P-A (tomo scan, SAXS series with marks, volume, I(q), a product
    of an A and a B scan), proposal P-B (tomo scan, volume), one dataset with no proposal."""
    from spotkit.catalog import open_catalog
    from spotkit.sim import simulate_saxs_series, simulate_tomo_scan

    simulate_tomo_scan(work / "a.h5", shape=(12, 3, 24), seed=0, sample="lyso-a",
                       proposal="P-A")
    simulate_tomo_scan(work / "b.h5", shape=(12, 3, 24), seed=1, sample="secret-b",
                       proposal="P-B")
    simulate_tomo_scan(work / "n.h5", shape=(12, 3, 24), seed=2, sample="orphan-n",
                       proposal=None)
    simulate_saxs_series(work / "s.h5", n_frames=6, onset_frame=3, seed=3, sample="film-a",
                         proposal="P-A")
    cat = open_catalog(location)
    a = cat.ingest(work / "a.h5")
    b = cat.ingest(work / "b.h5")
    n = cat.ingest(work / "n.h5")
    s = cat.ingest(work / "s.h5")
    cat.mark_frames(s.id, range(6), ["redundant"] * 3 + ["of interest"] * 3)
    rng = np.random.default_rng(0)
    with h5py.File(work / "vol_a.h5", "w") as f:
        f.create_dataset("recon", data=rng.random((5, 24, 24), dtype=np.float32))
    with h5py.File(work / "vol_b.h5", "w") as f:
        f.create_dataset("recon", data=rng.random((5, 24, 24), dtype=np.float32))
    with h5py.File(work / "iq.h5", "w") as f:
        f.create_dataset("intensity", data=rng.random((6, 50)))
        f.create_dataset("sigma", data=rng.random((6, 50)))
        f.create_dataset("q", data=np.linspace(0.1, 2, 50)).attrs["units"] = "nm^-1"
    vol_a = cat.register_derived(files=[{"path": work / "vol_a.h5", "role": "data",
                                         "key": "/recon"}], kind="tomo/recon", parents=[a])
    vol_b = cat.register_derived(files=[{"path": work / "vol_b.h5", "role": "data",
                                         "key": "/recon"}], kind="tomo/recon", parents=[b])
    iq = cat.register_derived(files=[{"path": work / "iq.h5", "role": "data",
                                      "key": "/intensity"}], kind="saxs/iq", parents=[s])
    # a product of scans of both proposals: proposal P-A (its first parent's)
    mixed = cat.register_derived(files=[{"path": work / "vol_a.h5", "role": "data",
                                         "key": "/recon"}], kind="tomo/recon",
                                 parents=[a, b], title="joint volume")
    ids = {"a": a.id, "b": b.id, "n": n.id, "s": s.id, "vol_a": vol_a.id,
           "vol_b": vol_b.id, "iq": iq.id, "mixed": mixed.id}
    return cat, ids


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory):
    """The running server over a SQLite catalog, then over a PostgreSQL one (skipped, saying
    why, where PostgreSQL is not installed); each shared by the serve tests."""
    import uvicorn

    from spotkit.serve import build_app, create_api_key, parse_config
    from spotkit.serve._app import redact_keys_in_logs

    work = tmp_path_factory.mktemp("serve")
    location: object = work / "catalog.db"
    if request.param == "postgresql":
        location = request.getfixturevalue("postgres_server").create_database()
    cat, ids = build_site(work, location)
    config = parse_config({"staff": ["sam"], "users": {"ann": ["P-A"], "bob": ["P-B"],
                                                       "eve": []}},
                          work / "serve.yaml")
    database = f"sqlite:///{work / 'auth.db'}"
    keys = {user: create_api_key(database, user) for user in ("ann", "bob", "sam", "eve")}
    app = build_app(cat, config, auth_database=database)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="debug", access_log=True))
    redact_keys_in_logs()
    log: list[str] = []
    collect = _Collect(log)
    collect.setFormatter(logging.Formatter("%(name)s %(message)s"))
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.access", "uvicorn.error",
                                              "tiled", "spotkit", "httpx", "sqlalchemy")]
    for lg in loggers:
        lg.addHandler(collect)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Site(f"http://127.0.0.1:{port}/api", cat, database, keys, ids, work, log)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for lg in loggers:
            lg.removeHandler(collect)
        cat.close()
