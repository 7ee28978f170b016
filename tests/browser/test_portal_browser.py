"""The portal in a real JupyterLab and in its read-only Voila view, driven by headless Chromium.

JupyterLab: a notebook opens ``spotkit.portal`` on a small demo-like catalog with the real
Data, Viewers, Flow, Jobs and Monitor panels and two panels of this test (a clock that
counts background refreshes, a panel whose catalog query fails). The browser searches,
selects a dataset (routed by ``Portal.select`` to the panels and the header), opens its
provenance and follows it to the raw scan, changes a slice of the reconstruction, retries
the parked scan, cancels a running batch job (a real ``spotkit.submit`` on the Local
target), sees the background refresh move while the kernel is idle, and the failing
panel's error line while the others go on.

Voila: the real ``spotkit portal --serve`` on the same catalog: the page needs the token
or a staff member's ``spotkit serve`` API key (not a user's), loads read-only (no action
buttons, no code), and is laid out at desktop (1280 x 800) and phone (390 x 844) width;
screenshots of both are kept as test artefacts in ``$SPOTKIT_TEST_ARTIFACTS/portal`` or
else ``<pytest tmp>/portal-artifacts``.

Neither page may log a console error.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory, tiny_tomo, tiny_saxs):
    """A small demo-like catalog: a tomography scan, a SAXS series, a reconstruction of the
    scan (a small HDF5 volume, derived from it) and the scan parked by the flow."""
    import h5py
    import numpy as np

    from spotkit.catalog import open_catalog
    from spotkit.flows import Journal

    folder = tmp_path_factory.mktemp("portal")
    path = folder / "catalog.db"
    with h5py.File(folder / "recon.h5", "w") as f:
        f["volume"] = np.random.default_rng(0).random((12, 48, 48), dtype=np.float32)
    with open_catalog(path) as cat:
        tomo, saxs = cat.ingest(tiny_tomo[0]), cat.ingest(tiny_saxs[0])
        recon = cat.register_derived(
            files=[{"path": folder / "recon.h5", "role": "data", "key": "volume"}],
            kind="tomo/recon", parents=[tomo])
    with Journal(path) as journal:
        journal.discover("k1", str(tiny_tomo[0]), size=1, mtime_ns=1)
        journal.update_item("k1", beamline="8.3.2", dataset_id=tomo.id)
        journal.finish_step("k1", "processed/tomo/preview", state="parked", error="boom")
        journal.record_failure("k1", "RuntimeError: boom", park=True)
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = nbformat.v4.new_code_cell("dataset_id = None\ncatalog_path = None\n"
                                       "output_dir = '.'")
    params.metadata["tags"] = ["parameters"]
    # the job is cancelled well before it ends (and ends by itself if a test fails first)
    nb.cells = [params, nbformat.v4.new_code_cell("import time\ntime.sleep(180)")]
    nbformat.write(nb, folder / "sleepy.ipynb")
    return path, [tomo.id, saxs.id, recon.id]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    base = os.environ.get("SPOTKIT_TEST_ARTIFACTS")
    folder = (Path(base) / "portal") if base else tmp_path_factory.mktemp("portal-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _console_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    return errors


# Two panels of this test, beside the real ones: a clock that counts background refreshes
# (they go on while no cell runs) and a panel whose catalog query always fails.
PANELS_CELL = """
import ipywidgets as w
import spotkit

class Clock:
    title = "Clock"
    def __init__(self, catalog, **options):
        self.n, self.widget = 0, w.HTML()
        self.widget.add_class("t-clock")
    def fetch(self):
        self.n += 1
        return self.n
    def apply(self, n):
        self.widget.value = f"refresh {n}"
    def close(self):
        self.widget.close()

class Broken:
    title = "Broken"
    def __init__(self, catalog, **options):
        self.widget = w.HTML("old data")
    def fetch(self):
        raise TimeoutError("the catalog did not answer within 5 s")
    def apply(self, snapshot):
        pass
    def close(self):
        self.widget.close()
"""


def test_portal_in_jupyterlab(lab_server, page, small_catalog, artifacts):
    from playwright.sync_api import expect

    path, ids = small_catalog
    tomo, _, recon = ids
    errors = _console_errors(page)
    cells = [PANELS_CELL + (
                 "from spotkit.compute import Local\n"
                 f"cat = spotkit.open_catalog({str(path)!r})\n"
                 "target = Local(min_poll=0.2)   # a batch job that sleeps, to cancel\n"
                 f"job = spotkit.submit({str(path.parent / 'sleepy.ipynb')!r}, {tomo!r}, "
                 "target=target, catalog=cat)\n"),
             "portal = spotkit.portal(cat, refresh=0.5, panels=[\n"
             "    'data', 'viewers', 'flow', ('jobs', {'targets': [target]}), 'monitor',\n"
             "    Clock, Broken])\n"
             "portal",
             "print('KERNEL FREE')"]
    nb_cells, kernel_status = lab_server.open_and_run_all(page, "portal.ipynb", cells)
    root = page.locator(".spotkit-portal")
    expect(root).to_be_visible(timeout=60_000)
    header = root.locator(".spotkit-portal-state")
    expect(header).to_contain_text("catalog.db")
    expect(header).to_contain_text(re.compile(r"refreshed \d\d:\d\d:\d\d, every 0.5 s"))
    expect(nb_cells.nth(2).locator(".jp-OutputArea-output")).to_have_text("KERNEL FREE")

    # Data: search (Enter), one row per dataset found, select one
    data = root.locator(".spotkit-data-panel")
    rows = data.locator(".spotkit-data-row:visible")
    expect(rows).to_have_count(3)
    sample = data.locator(".spotkit-data-sample input")
    sample.fill("tiny-s*")
    sample.press("Enter")
    expect(rows).to_have_count(2)  # the scan and its reconstruction
    rows.filter(has_text=recon).click()
    expect(header).to_contain_text(f"dataset {recon}")

    # provenance: the reconstruction's graph names its raw scan; a click selects the scan
    detail = data.locator(".spotkit-data-detail")
    detail.get_by_role("tab", name="Provenance").click()
    parent = data.locator(".spotkit-node-" + re.sub(r"[^A-Za-z0-9]", "-", tomo))
    expect(parent).to_be_visible()
    parent.click()
    expect(header).to_contain_text(f"dataset {tomo}")
    rows.filter(has_text=recon).click()
    expect(header).to_contain_text(f"dataset {recon}")

    # Viewers: the selected reconstruction in the slice viewer; a slice change
    page.get_by_role("tab", name="Viewers").click()
    viewer = root.locator(".spotkit-slice-viewer")
    expect(viewer).to_be_visible(timeout=90_000)  # its first read imports h5py, dask...
    slider = viewer.locator(".widget-slider, .jupyter-widget-slider").first
    title = viewer.locator(".widget-html").nth(1)
    before = title.inner_text()
    slider.locator(".noUi-handle, [role=slider]").first.focus()
    page.keyboard.press("ArrowRight")
    expect(title).not_to_have_text(before)

    # Flow: retry the parked item (Journal.retry, with a reason)
    page.get_by_role("tab", name="Flow").click()
    flow = root.locator(".spotkit-flow-panel")
    expect(flow).to_contain_text("1 parked")
    flow.get_by_placeholder("why (recorded)").first.fill("disk replaced")
    flow.get_by_role("button", name="Retry").click()
    expect(flow).to_contain_text("now pending")

    # Jobs: the running batch job, inspected and cancelled (Job.cancel)
    page.get_by_role("tab", name="Jobs").click()
    jobs = root.locator(".spotkit-jobs-panel")
    expect(jobs.locator(".spotkit-jobs-panel select, select").first).to_contain_text("local")
    jobs.locator("select").first.select_option(index=0)
    cancel = jobs.get_by_role("button", name="Cancel")
    expect(cancel).to_be_enabled(timeout=60_000)
    cancel.click()
    expect(jobs).to_contain_text("cancel sent")
    expect(jobs).to_contain_text("CANCELLED", timeout=60_000)

    # Monitor: turnaround, streams, alerts and the selected dataset's quality verdict
    page.get_by_role("tab", name="Monitor").click()
    monitor = root.locator(".spotkit-monitor-panel")
    expect(monitor).to_contain_text("Quality verdicts")
    expect(monitor).to_contain_text(f"{recon}: no quality verdict")

    # the background refresh goes on with no cell running; the kernel stays idle
    page.get_by_role("tab", name="Clock").click()
    clock = root.locator(".t-clock")
    expect(clock).to_have_text(re.compile(r"refresh \d+"))
    first = int(clock.inner_text().split()[-1])
    expect(clock).not_to_have_text(f"refresh {first}", timeout=10_000)
    expect(kernel_status).to_have_text(re.compile(r"\| Idle$"))

    # a failing panel keeps its data under an error line; the header names it
    page.get_by_role("tab", name="Broken").click()
    banner = root.locator(".spotkit-portal-banner")
    expect(banner).to_contain_text("TimeoutError: the catalog did not answer within 5 s")
    expect(root.get_by_text("old data")).to_be_visible()
    expect(header).to_contain_text("1 panel failing (Broken)")
    page.get_by_role("tab", name="Data").click()
    page.screenshot(path=str(artifacts / "lab-desktop.png"))
    assert errors == []


# -- the read-only view through Voila ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def voila_portal(small_catalog, tmp_path_factory, chromium_path):
    """``spotkit portal --serve`` on the small catalog, with the configuration of a
    ``spotkit serve`` (alice is staff, bob a user): its URL, token and keys."""
    from spotkit.serve import create_api_key

    path, _ = small_catalog
    port, token = _free_port(), secrets.token_urlsafe(16)
    folder = tmp_path_factory.mktemp("voila")
    log = folder / "voila.log"
    (folder / "serve.yaml").write_text("staff: [alice]\nusers: {bob: [TEST-1]}\n")
    database = f"sqlite:///{folder / 'auth.db'}"
    # in a thread of its own: playwright's event loop may run in this one
    with ThreadPoolExecutor(1) as pool:
        keys = {user: pool.submit(create_api_key, database, user).result()
                for user in ("alice", "bob")}
    cmd = [sys.executable, "-m", "spotkit.cli", "--catalog", str(path), "portal", "--serve",
           "--port", str(port), f"--token={token}", "--refresh", "1",
           "--config", str(folder / "serve.yaml"), "--auth-database", database]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"spotkit portal --serve exited ({proc.returncode}):\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            try:  # without the token: sent to the login page
                urllib.request.urlopen(f"{url}/voila/static/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"Voila did not answer:\n{log.read_text(errors='replace')}")
                time.sleep(0.25)  # polling while Voila starts
        yield url, token, keys
    finally:
        proc.terminate()  # SIGTERM: the command stops Voila, which stops its kernels
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        left = _processes_with(f"--port={port}")
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"Voila outlived `spotkit portal --serve`: processes {left}"


def _settled(page, expression: str, limit: float, seconds: float = 10.0) -> float:
    """``expression``'s value once it is <= ``limit`` (or its last value after ``seconds``)."""
    deadline = time.monotonic() + seconds
    value = page.evaluate(expression)
    while value > limit and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        value = page.evaluate(expression)
    return value


def _processes_with(argument: str) -> list[int]:
    """Ids of the processes with ``argument`` on their command line (Linux /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if argument in (entry / "cmdline").read_bytes().decode(errors="replace").split("\0"):
                found.append(int(entry.name))
        except OSError:  # the process ended meanwhile
            continue
    return found


def test_portal_read_only_in_voila(browser, voila_portal, small_catalog, artifacts):
    from playwright.sync_api import expect

    url, token, keys = voila_portal
    # no token or key, no portal; a staff member's spotkit serve key lets in, a user's not
    opener = urllib.request.build_opener(_NoRedirect())
    for wrong in ("", f"?token=not-{token}", f"?api_key={keys['bob']}", "?api_key=00ff"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(f"{url}/{wrong}", timeout=10)
        assert refused.value.code == 302, wrong
        assert "/login" in refused.value.headers["Location"]

    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(60_000)
    page = context.new_page()
    errors = _console_errors(page)
    try:
        page.goto(f"{url}/?api_key={keys['alice']}")  # alice is staff
        root = page.locator(".spotkit-portal")
        expect(root).to_be_visible()
        header = root.locator(".spotkit-portal-state")
        expect(header).to_contain_text("read-only")
        expect(header).to_contain_text(re.compile(r"refreshed \d\d:\d\d:\d\d"))
        expect(root.locator(".spotkit-data-row:visible")).to_have_count(3)
        # read-only: no button that acts, in the portal or a panel; no code shown
        for label in ("Refresh", "Retry", "Forget", "Cancel", "Pause", "Resume", "Re-run",
                      "Submit", "Run", "Set status", "Find the centre", "Build pyramid"):
            expect(page.get_by_role("button", name=label, exact=True)).to_have_count(0)
        expect(page.locator(".jp-InputArea, .jp-CodeMirrorEditor")).to_have_count(0)
        # the same page at desktop, then at phone width (the CSS follows the width)
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(viewport)
            expect(root).to_be_visible()
            tabs = root.locator(".spotkit-portal-tabs .lm-TabBar-tab")
            # the widgets lay out again on the frames after a resize (Lumino's message loop):
            # measured once that has happened, not the frame the viewport changed in
            right = _settled(page, "Math.max(...[...document.querySelectorAll("
                             "'.spotkit-portal .lm-TabBar-tab')].map("
                             "t => t.getBoundingClientRect().right))", viewport["width"])
            assert right <= viewport["width"], f"{name}: a tab ends at {right} px"
            expect(tabs.first).to_be_visible()
            width = _settled(page, "document.documentElement.scrollWidth", viewport["width"] + 1)
            assert width <= viewport["width"] + 1, f"{name}: the page is {width} px wide"
            page.screenshot(path=str(artifacts / f"voila-{name}.png"))
            # the whole portal: Voila scrolls inside a viewport-high box, so grow the viewport
            tall = int(root.evaluate("e => e.scrollHeight")) + 40
            page.set_viewport_size({"width": viewport["width"],
                                    "height": max(viewport["height"], tall)})
            page.screenshot(path=str(artifacts / f"voila-{name}-whole.png"))
    finally:
        context.close()
    assert errors == [], f"console errors {errors}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None
