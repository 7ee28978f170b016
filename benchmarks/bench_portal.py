"""The portal on a 1-million-dataset SQLite catalog: first paint, and kernel memory over time.

First paint (target < 3 s): from the ``spotkit.portal(catalog)`` call to the first data
applied to a panel (the Data tab, on screen first), and to every panel's first data; the
reference measured in the same run is what a person would do by hand: open the catalog
and read its first page of 25 newest datasets (``open_catalog`` + ``search(limit=25)``).
The first repeat follows a page-cache drop of the database (cold), the others are warm.
With ``--browser``: the read-only view of ``spotkit portal --serve`` on the same catalog
in headless Chromium, from ``page.goto`` to the header saying "refreshed"; Voila preheats
one kernel (starts it and runs the notebook before a page is asked for), and the benchmark
gives it :data:`PREHEAT_WAIT` seconds to do so before each page.

Memory (target: no growth): the portal runs inside a real IPython kernel (jupyter_client),
every panel refreshing every ``--interval`` seconds (compressed: an hour at 5 s is 720
refreshes), while this process drains the kernel's messages as a browser would. After a
warm-up, the kernel's RSS (/proc, no tracemalloc) is read after each third of
``--refreshes`` refreshes of every panel; then tracemalloc follows a further third and
the heap's growth (in all, and the largest by line) is printed.

    nice python benchmarks/bench_portal.py --db /work/tmp/p4/catalog-1m.db --write

Without ``--db`` a catalog of ``--n`` datasets is built first with
bench_catalog_search's generator (about two minutes for a million).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import drop_page_cache, machine_line, write_section

from spotkit.catalog import open_catalog

TARGET_PAINT_S = 3.0
#: Seconds given to Voila to preheat its next kernel (start it and run the portal notebook).
PREHEAT_WAIT = 30.0


def build_catalog(path: Path, n: int, seed: int) -> None:
    from bench_catalog_search import synthetic_records

    t = time.perf_counter()
    with open_catalog(path) as cat:
        cat.bulk_load(synthetic_records(n, seed))
    print(f"built {n:,} datasets in {time.perf_counter() - t:.0f} s: {path}")


def reference(db: Path) -> float:
    t = time.perf_counter()
    with open_catalog(db, create=False) as cat:
        cat.search(limit=25).to_records()  # the first page, read
    return time.perf_counter() - t


def first_paint(db: Path) -> dict:
    import warnings

    import spotkit
    from spotkit.widgets import PortalPanelWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PortalPanelWarning)
        t = time.perf_counter()
        portal = spotkit.portal(db, refresh=5.0)
        made = time.perf_counter() - t
    try:
        states = [portal.refresher.state(p) for p in portal.panels]
        ok = portal.refresher.wait(lambda: any(s.applied for s in states), timeout=60)
        first = time.perf_counter() - t
        portal.wait(timeout=120)
        every = time.perf_counter() - t
        panels = {s.title: (s.first_applied, s.seconds, s.error) for s in states}
    finally:
        portal.close()
    return {"made": made, "first": first if ok else float("inf"), "every": every,
            "panels": panels, "missing": dict(portal.missing)}


# -- the browser ------------------------------------------------------------------------------


def browser_paint(db: Path, repeats: int) -> list[float]:
    import secrets
    import socket
    import subprocess
    import urllib.error
    import urllib.request

    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_urlsafe(16)
    proc = subprocess.Popen([sys.executable, "-m", "spotkit.cli", "--catalog", str(db),
                             "portal", "--serve", "--port", str(port), f"--token={token}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/voila/static/", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)  # Voila starting
        time.sleep(PREHEAT_WAIT)  # Voila preheats a kernel: the notebook runs before a page
        chromium = os.environ.get("SPOTKIT_CHROMIUM", "/usr/bin/chromium")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                t = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/?token={token}")
                expect(page.locator(".spotkit-portal-state")).to_contain_text(
                    "refreshed", timeout=120_000)
                times.append(time.perf_counter() - t)
                page.close()
                time.sleep(PREHEAT_WAIT)  # the pool starts the next kernel
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return times


# -- memory in a real kernel ------------------------------------------------------------------

_KERNEL_START = """
import gc, json, time, tracemalloc, warnings
import os
import spotkit
from spotkit.widgets import PortalPanelWarning
warnings.simplefilter("ignore", PortalPanelWarning)
portal = spotkit.portal({db!r}, refresh={interval!r})
states = [portal.refresher.state(p) for p in portal.panels]
def applied():
    return min(s.applied for s in states)
def rss():  # resident pages (Linux /proc)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
assert portal.refresher.wait(lambda: applied() >= {warmup}, timeout=600), applied()
gc.collect()
base = applied()
print(json.dumps({{"base": base, "panels": [s.title for s in states], "rss0": rss()}}))
"""

# phase 1, RSS (no tracemalloc): the compressed hour, the RSS read at each third;
# phase 2, heap: tracemalloc over a further third, growth by line
_KERNEL_END = """
t0, marks = time.perf_counter(), []
for k in (1, 2, 3):
    ok = portal.refresher.wait(lambda: applied() >= base + k * {refreshes} // 3,
                               timeout={timeout})
    gc.collect()
    marks.append(rss())
seconds = time.perf_counter() - t0
done = applied() - base
tracemalloc.start(1)
heap0 = tracemalloc.take_snapshot()
more = applied()
ok2 = portal.refresher.wait(lambda: applied() >= more + {refreshes} // 3, timeout={timeout})
gc.collect()
heap1 = tracemalloc.take_snapshot()
portal.stop()
top = heap1.compare_to(heap0, "lineno")[:6]
grown = sum(s.size_diff for s in heap1.compare_to(heap0, "filename"))
print(json.dumps({{"ok": ok and ok2, "done": done, "seconds": seconds, "rss_marks": marks,
                  "heap_refreshes": applied() - more, "heap_growth": grown,
                  "errors": {{s.title: s.error for s in states if s.error}},
                  "top": [str(s) for s in top]}}))
portal.close()
"""


def _execute(client, code: str, timeout: float) -> str:
    msg_id = client.execute(code)
    out, deadline = [], time.monotonic() + timeout
    while True:
        msg = client.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue  # widget messages of the refresh thread: drained, as a browser would
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(out)


def kernel_memory(db: Path, interval: float, refreshes: int, warmup: int) -> dict:
    from jupyter_client.manager import start_new_kernel

    from spotkit.runs import ensure_kernel

    km, client = start_new_kernel(kernel_name=ensure_kernel())
    try:
        start = json.loads(_execute(client, _KERNEL_START.format(
            db=str(db), interval=interval, warmup=warmup), 900).splitlines()[-1])
        # the kernel's widget messages are drained meanwhile, as a browser would
        end = json.loads(_execute(client, _KERNEL_END.format(
            refreshes=refreshes, timeout=max(600, refreshes * 5)), 7200).splitlines()[-1])
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    return {**start, **end, "rss1": end["rss_marks"][-1]}


def heap_per_panel(db: Path, per_mark: int = 100, marks: int = 4) -> dict[str, list[float]]:
    """Each panel alone in a portal in this process, refreshed synchronously: the traced
    Python heap (KiB, from the first mark) after every ``per_mark`` refreshes."""
    import gc
    import tracemalloc
    import warnings

    import spotkit
    from spotkit.widgets import PANELS

    out = {}
    for name in PANELS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                portal = spotkit.portal(db, panels=[name], refresh=3600)
            except Exception as exc:  # a panel that cannot load here: said, not measured
                print(f"  heap per panel: {name} not measured ({exc})")
                continue
        try:
            portal.stop()
            for _ in range(30):
                portal.refresh()
            gc.collect()
            tracemalloc.start(1)
            values = []
            for _ in range(marks):
                for _ in range(per_mark):
                    portal.refresh()
                gc.collect()
                values.append(tracemalloc.get_traced_memory()[0])
            tracemalloc.stop()
        finally:
            portal.close()
        out[str(portal.panels[0].title)] = [(v - values[0]) / 1024 for v in values]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="SQLite catalog (default: build one)")
    parser.add_argument("--n", type=int, default=1_000_000, help="datasets to build")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=4, help="first-paint repeats")
    parser.add_argument("--browser", action="store_true", help="also in headless Chromium")
    parser.add_argument("--interval", type=float, default=0.05,
                        help="refresh interval of the memory run (compressed time)")
    parser.add_argument("--refreshes", type=int, default=720,
                        help="refreshes of every panel (720 = an hour at 5 s)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--load", default="", help="how busy the machine was (for RESULTS)")
    parser.add_argument("--write", action="store_true", help="write RESULTS.md's section")
    args = parser.parse_args(argv)

    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="spotkit-bench-portal-")
        db = Path(tmp.name) / "catalog.db"
        build_catalog(db, args.n, args.seed)
    with open_catalog(db, create=False) as cat:
        n = len(cat)
    print(f"catalog {db}: {n:,} datasets")

    paints, refs = [], []
    for i in range(args.repeats):
        if i == 0:
            drop_page_cache(db)
        paints.append(first_paint(db))
        refs.append(reference(db))
        p = paints[-1]
        print(f"{'cold' if i == 0 else 'warm'}: portal made {p['made']:.2f} s, first data "
              f"{p['first']:.2f} s, every panel {p['every']:.2f} s; by hand (open + first "
              f"page) {refs[-1] * 1e3:.0f} ms")
    for title, (first, seconds, error) in paints[-1]["panels"].items():
        print(f"  {title}: first applied at {first}, fetch {seconds} s, error {error}")
    if paints[-1]["missing"]:
        print(f"  left out: {paints[-1]['missing']}")
    warm = paints[1:] or paints
    warm_first = statistics.median(p["first"] for p in warm)
    warm_every = statistics.median(p["every"] for p in warm)
    warm_ref = statistics.median(refs[1:] or refs)
    lines = [
        f"## Portal: first paint and kernel memory (bench_portal.py, {n:,} datasets, SQLite)",
        "",
        machine_line(),
        f"- **Load:** {args.load or 'not stated'}; run under `nice`.",
        f"- **Panels:** {', '.join(paints[-1]['panels'])}"
        + (f"; left out: {', '.join(paints[-1]['missing'])}" if paints[-1]["missing"]
           else ""),
        "",
        "| first paint | cold (first run) | warm (median of "
        f"{len(warm)}) | target |",
        "|---|---|---|---|",
        f"| `spotkit.portal()` call -> first data applied (Data tab) | "
        f"{paints[0]['first']:.2f} s | {warm_first:.2f} s | < {TARGET_PAINT_S:g} s |",
        f"| -> every panel's first data | {paints[0]['every']:.2f} s | {warm_every:.2f} s | |",
        f"| reference: `open_catalog` + `search(limit=25)` by hand | {refs[0] * 1e3:.0f} ms | "
        f"{warm_ref * 1e3:.0f} ms | |",
        f"| ratio portal first data / reference | {paints[0]['first'] / refs[0]:.1f}x | "
        f"{warm_first / warm_ref:.1f}x | |",
    ]
    if args.browser:
        times = browser_paint(db, 3)
        print(f"browser (Voila, read-only): {', '.join(f'{t:.1f}' for t in times)} s")
        lines.append(f"| in Chromium, Voila read-only view (kernel preheated): `goto` -> "
                     f"header 'refreshed' | {times[0]:.1f} s | "
                     f"{statistics.median(times[1:] or times):.1f} s | |")
    if not args.skip_memory:
        mem = kernel_memory(db, args.interval, args.refreshes, args.warmup)
        mib = 2**20
        marks = [mem["rss0"], *mem["rss_marks"]]
        growth = (mem["rss1"] - mem["rss0"]) / mib
        steady = (marks[-1] - marks[1]) / mib
        print(f"memory: {mem['done']} refreshes of every panel in {mem['seconds']:.0f} s "
              f"(ok={mem['ok']}): RSS " + " -> ".join(f"{m / mib:.1f}" for m in marks)
              + f" MiB ({growth:+.1f}; last two thirds {steady:+.1f}); Python heap over "
              f"{mem['heap_refreshes']} more refreshes {mem['heap_growth'] / 1024:+.1f} KiB; "
              f"errors {mem['errors']}")
        for line in mem["top"]:
            print("  " + line)
        lines += [
            "",
            f"Memory: a real IPython kernel runs `spotkit.portal(...)` with every panel "
            f"refreshing every {args.interval:g} s (compressed time) while this process "
            f"drains its messages as a browser would. After {mem['base']} warm-up refreshes, "
            f"{mem['done']} more refreshes of every panel ({args.refreshes} = "
            f"{args.refreshes * 5 / 3600:g} h at 5 s) "
            f"took {mem['seconds']:.0f} s; the kernel's RSS is read (/proc, after "
            "`gc.collect()`, no tracemalloc) after each third. Then tracemalloc follows "
            f"{mem['heap_refreshes']} further refreshes of every panel.",
            "",
            "| kernel memory | after warm-up | 1/3 hour | 2/3 hour | the hour | growth |",
            "|---|---|---|---|---|---|",
            "| RSS | " + " | ".join(f"{m / mib:.1f} MiB" for m in marks)
            + f" | {growth:+.1f} MiB (last two thirds {steady:+.1f}) |",
            "",
            f"Python heap (tracemalloc) over the {mem['heap_refreshes']} further refreshes: "
            f"{mem['heap_growth'] / 1024:+.1f} KiB in all. Largest growths by line: "
            + "; ".join(textwrap.shorten(t, 120) for t in mem["top"][:3]) + ".",
        ]
    if not args.skip_memory:
        per_panel = heap_per_panel(db)
        for title, kib in per_panel.items():
            print(f"  heap of {title} alone after 100..400 refreshes: "
                  + ", ".join(f"{k:+.1f}" for k in kib) + " KiB")
        lines += [
            "",
            "Each panel alone, refreshed in this process (tracemalloc, after 30 warm-up "
            "refreshes): Python heap after 100, 200, 300 and 400 more refreshes, from the "
            "first: " + "; ".join(f"{t} " + ", ".join(f"{k:+.0f}" for k in kib) + " KiB"
                                  for t, kib in per_panel.items()) + ".",
        ]
    text = "\n".join(lines)
    print()
    print(text)
    if args.write:
        write_section("## Portal: first paint and kernel memory", text)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
