"""``spotkit portal``: the line that opens the portal, the Voila command, and who gets in.

The served page itself is driven by Chromium in tests/browser/test_portal_browser.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spotkit.catalog import open_catalog
from spotkit.cli import main
from spotkit.cli._portal_cmd import (
    TEMPLATE,
    _write_template,
    portal_notebook,
    voila_command,
)


def test_without_serve_it_prints_how_to_open_the_portal(tmp_path, capsys):
    db = tmp_path / "catalog.db"
    open_catalog(db).close()
    assert main(["--catalog", str(db), "portal"]) == 0
    out = capsys.readouterr().out
    assert f"import spotkit; spotkit.portal({str(db)!r})" in out
    assert f"spotkit --catalog {db} portal --serve" in out


def test_a_missing_catalog_is_reported_not_created(tmp_path, capsys):
    assert main(["--catalog", str(tmp_path / "nope.db"), "portal"]) == 1
    assert "there is no catalog at" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()


def test_bad_options_are_refused(capsys):
    assert main(["portal", "--serve", "--port", "99999"]) == 2
    assert "not a port number" in capsys.readouterr().err


def test_the_served_notebook_is_read_only_and_the_command_strips_sources(tmp_path):
    import nbformat

    nb = nbformat.read(portal_notebook(), as_version=4)
    code = "".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "readonly=True" in code
    cmd = voila_command(portal_notebook(), host="127.0.0.1", port=1234, token="tok")
    assert "--strip_sources=True" in cmd
    assert "--show_tracebacks=False" in cmd
    assert "--token=tok" in cmd
    assert f"--template={TEMPLATE}" in cmd
    assert "--preheat_kernel=True" in cmd
    assert any(a.endswith("PortalIdentityProvider") for a in cmd)
    template = _write_template(tmp_path) / "voila" / "templates" / TEMPLATE / "index.html.j2"
    assert "cdn.jsdelivr.net" in template.read_text()  # the lines it drops


def test_staff_keys_of_spotkit_serve_let_in_and_others_do_not(tmp_path):
    pytest.importorskip("tiled")
    from spotkit.cli._portal_auth import staff_user_of_key
    from spotkit.serve import create_api_key

    database = f"sqlite:///{tmp_path / 'auth.db'}"
    alice = create_api_key(database, "alice")
    bob = create_api_key(database, "bob")
    expired = create_api_key(database, "alice", expires_in=1e-6)
    staff = frozenset({"alice"})

    def check(secret):
        return asyncio.run(staff_user_of_key(database, secret, staff))

    assert check(alice) == "alice"
    assert check(bob) is None            # a valid key, not staff
    assert check(expired) is None
    assert check("00" * 36) is None      # no such key
    assert check("not hex") is None


def test_the_demo_prints_the_line_that_opens_the_portal(tmp_path):
    import warnings

    from spotkit.demo import DemoReport
    from spotkit.widgets import Portal, PortalPanelWarning

    db = tmp_path / "catalog.db"
    open_catalog(db).close()
    report = DemoReport(workdir=tmp_path, catalog_path=db, intake_catalog=tmp_path / "x.yaml")
    assert report.portal_line == f"import spotkit; spotkit.portal({str(db)!r})"
    namespace: dict = {}
    with warnings.catch_warnings():  # a panel not there yet is named in the header
        warnings.simplefilter("ignore", PortalPanelWarning)
        exec(report.portal_line.replace("spotkit.portal(", "portal = spotkit.portal("),
             namespace)
    portal = namespace["portal"]
    try:
        assert isinstance(portal, Portal)
        assert portal.wait(timeout=30)
    finally:
        portal.close()


def test_the_identity_provider_takes_the_token_or_a_staff_key(tmp_path, monkeypatch):
    pytest.importorskip("tiled")
    from types import SimpleNamespace

    from spotkit.cli._portal_auth import KEYS_DB_ENV, STAFF_ENV, PortalIdentityProvider
    from spotkit.serve import create_api_key

    database = f"sqlite:///{tmp_path / 'auth.db'}"
    alice, bob = create_api_key(database, "alice"), create_api_key(database, "bob")
    monkeypatch.setenv(KEYS_DB_ENV, database)
    monkeypatch.setenv(STAFF_ENV, "alice")
    provider = PortalIdentityProvider(token="secret-token")

    def user(header: str = "", **query):
        handler = SimpleNamespace(
            token="secret-token", request=SimpleNamespace(headers={"Authorization": header},
                                                          remote_ip="127.0.0.1", host="x"),
            get_argument=lambda name, default=None: query.get(name, default),
            get_secure_cookie=lambda *args, **kwargs: None,
            log=SimpleNamespace(debug=lambda *args: None))
        found = asyncio.run(provider.get_user_token(handler))
        return None if found is None else found.username

    assert user(token="secret-token") is not None       # the server's token
    assert user(header="token secret-token") is not None
    assert user(token="wrong") is None
    assert user(api_key=alice) == "alice"                 # ?api_key=
    assert user(header=f"Apikey {alice}") == "alice"      # Authorization: Apikey
    assert user(api_key=bob) is None                      # not staff
    assert user() is None
    monkeypatch.delenv(KEYS_DB_ENV)
    assert user(api_key=alice) is None                    # no --config: keys not taken


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_voila_does_not_outlive_a_sigkilled_command():
    """The child (Voila in `spotkit portal --serve`) gets SIGTERM when its parent is
    SIGKILLed: nothing keeps serving on the port without the command."""
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess\n"
         "from spotkit.cli._portal_cmd import _die_with_parent\n"
         "p = subprocess.Popen(['sleep', '60'], preexec_fn=_die_with_parent)\n"
         "print(p.pid, flush=True)\n"
         "p.wait()\n"],
        stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists():
        state = Path(f"/proc/{child}/stat").read_text().split()[2] if Path(
            f"/proc/{child}/stat").exists() else "X"
        if state == "Z":  # ended, waiting for init to reap it
            break
        assert time.monotonic() < deadline, "the child outlived its SIGKILLed parent"
        time.sleep(0.05)  # polling until the kernel delivers SIGTERM
