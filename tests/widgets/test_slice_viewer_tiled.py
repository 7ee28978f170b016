"""The slice viewer through ``spotkit serve``: a real Tiled server on loopback.

Marked slow: starting the server (Tiled's app, its authentication database) takes seconds.
"""

from __future__ import annotations

import socket
import threading
import time

import h5py
import numpy as np
import pytest

pytest.importorskip("tiled")
pytest.importorskip("uvicorn")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import uvicorn

    from spotkit.catalog import open_catalog
    from spotkit.serve import build_app, create_api_key, parse_config
    from spotkit.sim import simulate_tomo_scan

    work = tmp_path_factory.mktemp("tiled-viewer")
    simulate_tomo_scan(work / "scan.h5", shape=(24, 6, 40), seed=0)
    cat = open_catalog(work / "catalog.db")
    raw = cat.ingest(work / "scan.h5")
    volume = np.random.default_rng(0).random((10, 160, 160)).astype(np.float32)
    with h5py.File(work / "vol.h5", "w") as f:
        f.create_dataset("recon", data=volume, chunks=(1, 160, 160)).attrs["units"] = "1/cm"
    recon = cat.register_derived(files=[{"path": work / "vol.h5", "role": "data",
                                         "key": "/recon"}], kind="tomo/recon", parents=[raw])
    database = f"sqlite:///{work / 'auth.db'}"
    config = parse_config({"staff": ["sam"]}, work / "serve.yaml")
    key = create_api_key(database, "sam")
    app = build_app(cat, config, auth_database=database)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/api", key, raw.id, recon.id, volume
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        cat.close()


def test_planes_through_spotkit_serve(served):
    from spotkit.io import open_volume
    from spotkit.serve import open_remote
    from spotkit.widgets._slice_viewer_model import SliceViewerModel

    uri, key, raw_id, recon_id, volume = served
    remote = open_remote(uri, api_key=key)
    ds = remote[recon_id]
    vol = open_volume(ds)
    assert vol.remote
    assert vol.value_units == "1/cm"
    for axis in range(3):
        np.testing.assert_array_equal(vol.read_plane(axis, 7),
                                      volume[(slice(None),) * axis + (7,)])
    # coarse levels are strided requests: a quarter of the plane's bytes at level 1
    np.testing.assert_array_equal(vol.read_plane(0, 4, level=1), volume[4, ::2, ::2])
    assert [lv.shape for lv in vol.levels] == [(10, 160, 160), (5, 80, 80), (3, 40, 40)]
    model = SliceViewerModel(ds, display=16)
    assert model.levels(0) == (2, 2)  # 40 px at level 2 fill 16
    assert model.render(0).data[:4] == b"\x89PNG"
    scan = open_volume(remote[raw_id])
    assert [a.name for a in scan.axes] == ["angle", "row", "column"]
    assert scan.axes[0].units == "deg"
    assert scan.axes[2].spacing == pytest.approx(0.65)
