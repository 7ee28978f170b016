"""The autonomous flow: time from a scan's completion to its first preview, and throughput.

1. *First preview*: the twin writes one scan of the demo's size (361 x 16 x 512) into an inbox
   while a :class:`spotkit.flows.Watcher` polls it (``settle`` 1 s, ``poll`` 0.5 s); rules run
   ``tomo_quicklook`` (3 slices) in the preview stage. Measured: from the moment the writer
   closes the file to the moment the preview PNG is registered in the catalog (target < 15 s).
   Reference in the same run: the same notebook run directly with ``spotkit.run_notebook``
   on the finished file (what the flow adds = the difference).
2. *Sustained throughput*: N small scans (181 x 4 x 128) dropped into the inbox at once, then
   passes until all are done; datasets per minute, with the preview notebook for each.

Usage::

    python benchmarks/bench_flow.py [--n 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

RULES = """\
version: 1
facility: bench
targets:
  local: {kind: local, max_workers: 1, concurrency: 1}
rules:
  - name: tomo
    match: {kind: tomo/raw}
    actions:
      - {name: preview, stage: preview, notebook: tomo_quicklook, target: local,
         parameters: {n_slices: 3}}
"""


def _preview_registered(catalog) -> bool:
    return any(d.kind == "image/png" for d in catalog.search(status="derived"))


def first_preview(tmp: Path) -> dict:
    """Seconds from scan completion to the registered preview, and the direct reference."""
    import spotkit
    from spotkit.catalog import open_catalog
    from spotkit.flows import Watcher
    from spotkit.runs import pipeline_notebook
    from spotkit.sim import simulate_tomo_scan

    inbox, warehouse = tmp / "inbox", tmp / "warehouse"
    inbox.mkdir()
    warehouse.mkdir()
    (tmp / "rules.yaml").write_text(RULES)
    cat = open_catalog(tmp / "catalog.db")
    watcher = Watcher([inbox], catalog=cat, rules=tmp / "rules.yaml", warehouse=warehouse,
                      poll=0.5, settle=1.0)
    done = {}

    def write():
        simulate_tomo_scan(inbox / "scan.h5", shape=(361, 16, 512), seed=1, write_delay=0.05)
        done["t"] = time.perf_counter()

    writer = threading.Thread(target=write)
    writer.start()
    t_end = None
    while t_end is None:
        watcher.run_once()
        if "t" in done and _preview_registered(cat):
            t_end = time.perf_counter()
        else:
            time.sleep(0.5)
    writer.join()
    watcher.close()
    flow = t_end - done["t"]

    ref_dir = tmp / "ref"
    ref_dir.mkdir()
    ref_cat = open_catalog(ref_dir / "catalog.db")
    ds = ref_cat.ingest(inbox / "scan.h5")
    t0 = time.perf_counter()
    spotkit.run_notebook(pipeline_notebook("tomo_quicklook"), ds, catalog=ref_cat,
                         parameters={"n_slices": 3})
    direct = time.perf_counter() - t0
    return {"flow": flow, "direct": direct}


def throughput(tmp: Path, n: int) -> dict:
    """Datasets per minute for ``n`` small scans dropped at once."""
    from spotkit.catalog import open_catalog
    from spotkit.flows import Watcher
    from spotkit.sim import simulate_tomo_scan

    inbox, warehouse = tmp / "inbox", tmp / "warehouse"
    stage = tmp / "stage"
    for d in (inbox, warehouse, stage):
        d.mkdir()
    (tmp / "rules.yaml").write_text(RULES)
    for i in range(n):
        simulate_tomo_scan(stage / f"scan_{i:03d}.h5", shape=(181, 4, 128), seed=i)
    cat = open_catalog(tmp / "catalog.db")
    watcher = Watcher([inbox], catalog=cat, rules=tmp / "rules.yaml", warehouse=warehouse,
                      poll=0.5, settle=0.5)
    for p in stage.iterdir():
        os.replace(p, inbox / p.name)  # complete files appear at once
    t0 = time.perf_counter()
    while sum(d.kind == "image/png" for d in cat.search(status="derived", limit=None)) < n:
        watcher.run_once()
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    watcher.close()
    return {"n": n, "seconds": seconds, "per_minute": 60 * n / seconds}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10, help="small scans for the throughput run")
    args = p.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        fp = first_preview(Path(tmp))
    print(f"first preview: {fp['flow']:.1f} s after the scan completed "
          f"(the notebook alone: {fp['direct']:.1f} s; the flow adds "
          f"{fp['flow'] - fp['direct']:.1f} s: settle, ingest, manifest, verified copy, polls)")
    with tempfile.TemporaryDirectory() as tmp:
        tp = throughput(Path(tmp), args.n)
    print(f"sustained: {tp['n']} small scans in {tp['seconds']:.1f} s = "
          f"{tp['per_minute']:.1f} datasets/min (preview notebook each, one local worker)")


if __name__ == "__main__":
    main()
