"""Fixtures for browser tests: a real JupyterLab server and headless Debian Chromium.

The server runs in a subprocess on a free port with a random token and its own config,
runtime, settings and workspace folders (nothing of the developer's JupyterLab setup leaks
in); notebooks use the kernel spotkit registers for this environment
(:func:`spotkit.runs.ensure_kernel`). Chromium is the Debian package driven by pip
``playwright`` through ``executable_path`` (``playwright install`` is never needed). Without
Chromium the tests skip, saying so; CI installs it (``.ci/run``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT = 90.0


def find_chromium() -> str | None:
    """``$SPOTKIT_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH or in /usr/bin."""
    candidates = [os.environ.get("SPOTKIT_CHROMIUM", "")]
    candidates += [shutil.which(name) or "" for name in ("chromium", "chromium-browser")]
    candidates += ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A running JupyterLab: its URL, token, notebook folder, kernel name and log file."""

    def __init__(self, proc, url: str, token: str, root: Path, kernel: str, log: Path):
        self.proc, self.url, self.token, self.root = proc, url, token, root
        self.kernel, self.log = kernel, log

    def request(self, path: str, method: str = "GET", timeout: float = 5.0):
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def lab_url(self, notebook: str) -> str:
        """URL that opens ``notebook`` in a fresh workspace (``?reset``)."""
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        """Write a notebook of code ``cells`` that runs on this environment's kernel."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": self.kernel, "display_name": self.kernel,
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        path = self.root / name
        nbformat.write(nb, path)
        return path

    def open_and_run_all(self, page, name: str, cells: list[str]):
        """Write ``cells`` as notebook ``name``, open it, wait for an idle kernel, Run All.

        Returns the locators of the notebook's cells and of the kernel status.

        Waits for every cell to be loaded first: JupyterLab shows the first cell before the
        notebook is complete, and "Run All Cells" then would run an empty notebook.
        """
        from playwright.sync_api import expect

        self.write_notebook(name, cells)
        page.goto(self.lab_url(name))
        expect(page.locator(".jp-NotebookPanel .jp-Cell")).to_have_count(len(cells),
                                                                        timeout=60_000)
        kernel_status = page.locator('#jp-main-statusbar [title^="Change kernel"]')
        expect(kernel_status).to_have_text(re.compile(r"\| Idle$"), timeout=60_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()  # Run > Run All Cells
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        return page.locator(".jp-NotebookPanel .jp-Cell"), kernel_status

    def log_tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


@pytest.fixture(scope="session")
def chromium_path():
    path = find_chromium()
    if path is None:
        pytest.skip("Chromium not found (looked at $SPOTKIT_CHROMIUM, chromium and "
                    "chromium-browser on PATH, /usr/bin): apt-get install chromium")
    return path


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory, chromium_path):
    """A JupyterLab server in a subprocess; shut down (with its kernels) at the end."""
    from spotkit.runs import ensure_kernel

    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "notebooks"
    root.mkdir()
    settings = base / "settings"
    # no "official Jupyter news?" toast over the page, no update check (no network anyway)
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        SPOTKIT_HOME=str(base / "spotkit-home"),
        PYTHONUNBUFFERED="1",
    )
    kernel = ensure_kernel()
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = base / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    server = LabServer(proc, f"http://127.0.0.1:{port}", token, root, kernel, log)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with status {proc.returncode} before it "
                            f"answered:\n{server.log_tail()}")
            try:
                server.request("/api/status", timeout=2.0)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer on port {port} within "
                                f"{SERVER_START_TIMEOUT:.0f} s:\n{server.log_tail()}")
                time.sleep(0.25)  # polling interval while the server starts
        yield server
    finally:
        try:
            server.request("/api/shutdown", method="POST")  # also shuts down the kernels
            proc.wait(timeout=20)
        except (urllib.error.URLError, ConnectionError, TimeoutError, subprocess.TimeoutExpired):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def browser(chromium_path):
    """Headless Chromium through playwright (module scope: the event loop ends with it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path, headless=True,
                                      args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, lab_server, tmp_path):
    """A fresh browser page; afterwards its screenshot and the server log are in ``tmp_path``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        try:
            pg.screenshot(path=str(tmp_path / "last-page.png"))
            (tmp_path / "server.log").write_text(lab_server.log_tail(200))
        finally:
            context.close()
