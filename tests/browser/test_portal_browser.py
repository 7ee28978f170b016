"""The portal in a real JupyterLab and in its read-only Voila view, driven by headless Chromium.

JupyterLab: a notebook opens ``spotkit.portal`` on a small catalog (two simulated raw
scans) with the panels defined in its first cell (tiny panels of this test that drive the
shell: a search box over the catalog, a panel that shows the selected dataset, a clock
that counts background refreshes and a panel whose catalog query fails). The browser
searches, selects a dataset (routed by ``Portal.select`` to the other panel and the
header), sees the background refresh move while the kernel is idle, and the failing
panel's error line while the others go on.

Voila: the real ``spotkit portal --serve`` on the same catalog: the page needs the token,
loads read-only (no action buttons, no code), and is laid out at desktop (1280 x 800) and
phone (390 x 844) width; screenshots of both are kept as test artefacts in
``$SPOTKIT_TEST_ARTIFACTS/portal`` or else ``<pytest tmp>/portal-artifacts``.

Neither page may log a console error.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory, tiny_tomo, tiny_saxs):
    """A catalog with the two tiny simulated scans (a tomography scan, a SAXS series)."""
    from spotkit.catalog import open_catalog

    path = tmp_path_factory.mktemp("portal") / "catalog.db"
    with open_catalog(path) as cat:
        ids = [cat.ingest(tiny_tomo[0]).id, cat.ingest(tiny_saxs[0]).id]
    return path, ids


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


# The panels of this test: enough to drive the shell (the real panels have their own tests).
PANELS_CELL = '''
import ipywidgets as w
import spotkit

class Search:
    """A search box over the catalog; a button per dataset selects it."""
    title = "Search"
    def __init__(self, catalog, *, readonly=False, on_select=None, **options):
        self.catalog, self.on_select, self.sample, self.shown = catalog, on_select, "", None
        self.box = w.Text(placeholder="sample (wildcards)")
        self.box.add_class("t-search")
        self.box.observe(self._typed, names="value")
        self.rows = w.VBox()
        self.rows.add_class("t-rows")
        self.widget = w.VBox([self.box, self.rows])
    def _typed(self, change):
        self.sample = change["new"]
        portal.refresher.wake(self)                 # fetch now, in the refresh thread
    def fetch(self):
        found = self.catalog.search(sample=self.sample or None, limit=10)
        return [(d.id, d.sample) for d in found]    # one query per refresh
    def apply(self, rows):
        if rows == self.shown:
            return
        self.shown, buttons = rows, []
        for dataset_id, sample in rows:
            b = w.Button(description=f"{sample} ({dataset_id})", layout=w.Layout(width="auto"))
            b.add_class("t-row")
            b.on_click(lambda _, i=dataset_id: self.on_select(i))
            buttons.append(b)
        self.rows.children = buttons
    def close(self):
        self.widget.close()

class Selected:
    """Shows the dataset the portal routes to it."""
    title = "Selected"
    def __init__(self, catalog, *, readonly=False, **options):
        self.catalog, self.dataset_id = catalog, None
        self.widget = w.HTML("nothing selected")
        self.widget.add_class("t-selected")
    def show_dataset(self, dataset_id):
        self.dataset_id = dataset_id
    def fetch(self):
        return None if self.dataset_id is None else self.catalog[self.dataset_id]
    def apply(self, ds):
        if ds is not None:
            self.widget.value = f"selected {ds.id}: {ds.kind} of {ds.sample}"
    def close(self):
        self.widget.close()

class Clock:
    """Counts its refreshes (they go on while no cell runs)."""
    title = "Clock"
    def __init__(self, catalog, **options):
        self.n = 0
        self.widget = w.HTML()
        self.widget.add_class("t-clock")
    def fetch(self):
        self.n += 1
        return self.n
    def apply(self, n):
        self.widget.value = f"refresh {n}"
    def close(self):
        self.widget.close()

class Broken:
    """Its catalog query always fails."""
    title = "Broken"
    def __init__(self, catalog, **options):
        self.widget = w.HTML("old data")
    def fetch(self):
        raise TimeoutError("the catalog did not answer within 5 s")
    def apply(self, snapshot):
        pass
    def close(self):
        self.widget.close()
'''


def test_portal_in_jupyterlab(lab_server, page, small_catalog, artifacts):
    from playwright.sync_api import expect

    path, ids = small_catalog
    errors = _console_errors(page)
    cells = [PANELS_CELL,
             f"portal = spotkit.portal({str(path)!r}, refresh=0.5,\n"
             "                        panels=[Search, Selected, Clock, Broken])\n"
             "portal",
             "print('KERNEL FREE')"]
    nb_cells, kernel_status = lab_server.open_and_run_all(page, "portal.ipynb", cells)
    root = page.locator(".spotkit-portal")
    expect(root).to_be_visible(timeout=60_000)
    header = root.locator(".spotkit-portal-state")
    expect(header).to_contain_text("catalog.db")
    expect(header).to_contain_text(re.compile(r"refreshed \d\d:\d\d:\d\d, every 0.5 s"))
    expect(nb_cells.nth(2).locator(".jp-OutputArea-output")).to_have_text("KERNEL FREE")

    # search: typing refreshes the panel in the background, one button per dataset
    rows = root.locator(".t-row")
    expect(rows).to_have_count(2)
    root.locator(".t-search input").fill("tiny-f*")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(ids[1])

    # select: routed through Portal.select to the other panel and the header
    rows.first.click()
    expect(header).to_contain_text(f"dataset {ids[1]}")
    page.get_by_role("tab", name="Selected").click()
    expect(root.locator(".t-selected")).to_contain_text(f"selected {ids[1]}: saxs")

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
    page.screenshot(path=str(artifacts / "lab-desktop.png"))
    assert errors == []


# -- the read-only view through Voila ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def voila_portal(small_catalog, tmp_path_factory, chromium_path):
    """``spotkit portal --serve`` on the small catalog: its URL and token."""
    path, _ = small_catalog
    port, token = _free_port(), secrets.token_urlsafe(16)
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    cmd = [sys.executable, "-m", "spotkit.cli", "--catalog", str(path), "portal", "--serve",
           "--port", str(port), "--token", token, "--refresh", "1"]
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
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_portal_read_only_in_voila(browser, voila_portal, small_catalog, artifacts):
    from playwright.sync_api import expect

    url, token = voila_portal
    # no token, no portal
    opener = urllib.request.build_opener(_NoRedirect())
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(f"{url}/", timeout=10)
    assert refused.value.code == 302
    assert "/login" in refused.value.headers["Location"]
    with pytest.raises(urllib.error.HTTPError) as wrong:
        opener.open(f"{url}/?token=not-{token}", timeout=10)
    assert wrong.value.code == 302

    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(60_000)
        page = context.new_page()
        errors = _console_errors(page)
        try:
            page.goto(f"{url}/?token={token}")
            root = page.locator(".spotkit-portal")
            expect(root).to_be_visible()
            header = root.locator(".spotkit-portal-state")
            expect(header).to_contain_text("read-only")
            expect(header).to_contain_text(re.compile(r"refreshed \d\d:\d\d:\d\d"))
            # read-only: the portal draws no button that acts, and no code is shown
            for label in ("Refresh", "Retry", "Forget", "Cancel", "Pause", "Resume",
                          "Re-run", "Submit", "Run"):
                expect(page.get_by_role("button", name=label, exact=True)).to_have_count(0)
            expect(page.locator(".jp-InputArea, .jp-CodeMirrorEditor")).to_have_count(0)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"] + 1, f"{name}: the page is {width} px wide"
            page.screenshot(path=str(artifacts / f"voila-{name}.png"), full_page=True)
        finally:
            context.close()
        assert errors == [], f"{name}: console errors {errors}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None
