"""Benchmark: reading a reconstructed volume through ``spotkit serve`` vs h5py on the same file.

Writes a float32 volume of 2560 x 2560 slices (HDF5, one storage chunk per slice, as the
reconstruction notebook writes; ``--gb`` sets its size), registers it in a temporary catalog
as a ``tomo/recon`` of a tiny scan, starts ``spotkit serve`` in a subprocess on a free
loopback port with a users' key, then times in the same run, page cache warm for all:

* one slice (2560 x 2560, 26 MB): ``h5py`` ``f["recon"][k]`` vs Tiled's client
  ``node["data"][k]`` (one request), median over ``--slices`` random slices, plus the
  first-contact time (``from_uri`` + node lookup + the slice);
* the whole volume: ``h5py`` ``f["recon"][()]`` vs Tiled's client ``node["data"].read()``,
  which asks for blocks of up to 100 MiB (the declared chunks are whole slabs of ~64 MiB,
  so it makes a few large requests, not one per storage chunk), each with the client's
  default compression (blosc2 / zstd / lz4 offered) and with ``Accept-Encoding: identity``;
* with ``--plain``, the same whole-volume read from plain Tiled (its own ``HDF5Adapter`` on
  the same file, which declares the file's storage chunks) for comparison.

Targets (issue 14): >= 300 MB/s for a whole-volume read over loopback; < 300 ms for one
2560 x 2560 slice of a 15 GB volume (the slice time does not depend on the volume size with
per-slice storage chunks, so a 2 GB volume measures it). MB = 10**6 bytes.

    python benchmarks/bench_serve.py              # 2 GB volume, ~2 min on 2 cores
    python benchmarks/bench_serve.py --gb 0.5 --no-results   # quick check
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

SIDE = 2560


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def write_volume(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    plane = rng.random((SIDE, SIDE), dtype=np.float32)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("recon", shape=(n, SIDE, SIDE), dtype=np.float32,
                             chunks=(1, SIDE, SIDE))
        for k in range(n):
            d[k] = plane + np.float32(k)


def _plain_server(path: str, port: int) -> None:
    """Plain Tiled: its own HDF5 adapter over the file, single-user key 'secret'."""
    import uvicorn
    from tiled.adapters.hdf5 import HDF5Adapter
    from tiled.adapters.mapping import MapAdapter
    from tiled.config import Authentication
    from tiled.server.app import build_app

    tree = MapAdapter({"vol": HDF5Adapter.from_uris(Path(path).absolute().as_uri())})
    app = build_app(tree, authentication=Authentication(single_user_api_key="secret"))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best.append(time.perf_counter() - t)
    return statistics.median(best), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=2.0, help="volume size (GB, 10**9)")
    parser.add_argument("--slices", type=int, default=15, help="single slices timed")
    parser.add_argument("--repeat", type=int, default=3, help="whole-volume reads each")
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--plain", action="store_true", help="also time plain Tiled")
    parser.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--plain-server", nargs=2, metavar=("FILE", "PORT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        _plain_server(args.plain_server[0], int(args.plain_server[1]))
        return

    from tiled.client import from_uri

    from spotkit.catalog import open_catalog
    from spotkit.serve import create_api_key
    from spotkit.sim import simulate_tomo_scan

    n = max(2, round(args.gb * 1e9 / (SIDE * SIDE * 4)))
    work = Path(tempfile.mkdtemp(prefix="bench-serve-", dir=args.dir))
    vol = work / "volume.h5"
    t0 = time.perf_counter()
    write_volume(vol, n)
    size = vol.stat().st_size
    print(f"volume {n} x {SIDE} x {SIDE} float32, {size / 1e9:.2f} GB written in "
          f"{time.perf_counter() - t0:.1f} s  ({vol})")
    simulate_tomo_scan(work / "scan.h5", shape=(16, 2, 32), seed=0, proposal="P-1")
    with open_catalog(work / "catalog.db") as cat:
        raw = cat.ingest(work / "scan.h5")
        ds = cat.register_derived(files=[{"path": vol, "role": "data", "key": "/recon"}],
                                  kind="tomo/recon", parents=[raw])
    (work / "serve.yaml").write_text("users:\n  ann: [P-1]\n")
    database = f"sqlite:///{work / 'auth.db'}"
    key = create_api_key(database, "ann")
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "spotkit.cli", "serve", "-q", "--catalog",
         str(work / "catalog.db"), "--config", str(work / "serve.yaml"), "--auth-database",
         database, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    plain = None
    results: dict[str, float] = {}
    times: dict[str, list[float]] = {}
    try:
        url = f"http://127.0.0.1:{port}/api"
        _wait(f"{url}/v1/", server)
        arrays = {}
        t = time.perf_counter()
        client = from_uri(url, api_key=key, remember_me=False)
        arrays["serve"] = client[ds.id]["data"]
        arrays["serve"][0]
        results["first_contact_s"] = time.perf_counter() - t
        identity = {"accept-encoding": "identity"}
        arrays["serve, identity"] = from_uri(url, api_key=key, remember_me=False,
                                             headers=identity)[ds.id]["data"]
        if args.plain:
            pport = _free_port()
            plain = subprocess.Popen([sys.executable, __file__, "--plain-server", str(vol),
                                      str(pport)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
            purl = f"http://127.0.0.1:{pport}/api"
            _wait(f"{purl}/v1/", plain)
            arrays["plain"] = from_uri(purl, api_key="secret",
                                       remember_me=False)["vol"]["recon"]
            arrays["plain, identity"] = from_uri(purl, api_key="secret", remember_me=False,
                                                 headers=identity)["vol"]["recon"]
        results["requests_whole"] = float(arrays["serve"].fetch_count())
        with h5py.File(vol) as f:  # warm the page cache for everyone
            f["recon"][()]
        rng = np.random.default_rng(1)
        picks = [int(k) for k in rng.integers(0, n, args.slices)]
        with h5py.File(vol) as f:
            for k in picks:  # interleaved, so that load drifts hit every method alike
                t = time.perf_counter()
                ref = f["recon"][k]
                times.setdefault("slice h5py", []).append(time.perf_counter() - t)
                for name, arr in arrays.items():
                    t = time.perf_counter()
                    got = arr[k]
                    times.setdefault(f"slice {name}", []).append(time.perf_counter() - t)
                    if not np.array_equal(ref, got):
                        raise AssertionError(f"slice {k} differs ({name})")

        def h5_all():
            with h5py.File(vol) as f:
                return f["recon"][()]

        readers = {"h5py": h5_all, **{name: arr.read for name, arr in arrays.items()}}
        last = h5_all()[-1]
        for r in range(args.repeat):
            order = list(readers)
            order = order[r % len(order):] + order[:r % len(order)]  # rotate the order
            for name in order:
                t = time.perf_counter()
                out = readers[name]()
                times.setdefault(f"whole {name}", []).append(time.perf_counter() - t)
                if not np.array_equal(out[-1], last):  # type: ignore[index]
                    raise AssertionError(f"whole volume differs ({name})")
                del out
    finally:
        for proc in (server, plain):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        if args.dir is None:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    for name, values in times.items():
        if name.startswith("slice"):
            results[f"{name} ms"] = 1e3 * statistics.median(values)
            results[f"{name} p90 ms"] = 1e3 * float(np.percentile(values, 90))
        else:
            results[f"{name} MB/s"] = size / statistics.median(values) / 1e6
    for k, v in results.items():
        print(f"{k:32s} {v:10.1f}")
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if not args.no_results:
        from _results import machine_line, write_section

        r = results
        h5_slice, h5_whole = r["slice h5py ms"], r["whole h5py MB/s"]
        lines = [
            "## Remote slicing through spotkit serve (`benchmarks/bench_serve.py`)",
            "",
            machine_line(),
            f"- Load average at the end of the run: {load[0]:.1f} / {load[1]:.1f} / "
            f"{load[2]:.1f} (1/5/15 min; 2 cores shared with other work, so absolute "
            "numbers are pessimistic; methods are interleaved so the ratios are fair).",
            f"- Volume: {n} x {SIDE} x {SIDE} float32, {size / 1e9:.2f} GB HDF5, one storage "
            "chunk per slice, read from the page cache; server: `spotkit serve` (uvicorn, "
            "one process) in a subprocess, client: Tiled's `from_uri` in this process, "
            f"loopback. A whole-volume read is {r['requests_whole']:.0f} requests of up to "
            "100 MiB (the client splits at the declared slab chunks).",
            "- *identity*: the client sends `Accept-Encoding: identity` (spotkit's "
            "`open_remote` does on loopback); otherwise Tiled's client offers "
            "blosc2/zstd/lz4/gzip and the server compresses with blosc2 (random floats do "
            "not compress).",
            "",
            "| method | one 2560 x 2560 slice: median (p90) | vs h5py | whole volume | "
            "vs h5py |",
            "|---|---|---|---|---|",
            f"| h5py on the file | {h5_slice:.1f} ms | 1 | {h5_whole:.0f} MB/s | 1 |",
        ]
        for name in arrays:
            label = {"serve": "spotkit serve, compression offered",
                     "serve, identity": "**spotkit serve, identity**",
                     "plain": "plain Tiled (its HDF5Adapter), compression offered",
                     "plain, identity": "plain Tiled, identity"}[name]
            sl, p90 = r[f"slice {name} ms"], r[f"slice {name} p90 ms"]
            wh = r[f"whole {name} MB/s"]
            lines.append(f"| {label} | {sl:.0f} ms ({p90:.0f} ms) | {sl / h5_slice:.0f}x | "
                         f"{wh:.0f} MB/s | {h5_whole / wh:.1f}x slower |")
        lines += [
            "",
            f"- First contact (connect, look the dataset up, read one slice): "
            f"{r['first_contact_s']:.2f} s. About 30 ms of every request is Tiled's API-key "
            "check (a lookup and an update in the authentication database).",
            "- Targets (issue 14): whole volume >= 300 MB/s over loopback; one slice of a "
            "15 GB volume < 300 ms (with per-slice storage chunks the slice time does not "
            "depend on the volume's size).",
        ]
        write_section("## Remote slicing through spotkit serve", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
