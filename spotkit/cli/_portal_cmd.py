"""``spotkit portal``: how to open the portal in JupyterLab; ``--serve``: its read-only view.

``--serve`` runs Voila on the read-only portal notebook shipped in the package
(``spotkit/widgets/portal.ipynb``): the viewer cannot run code (Voila renders the notebook
with its sources stripped and its kernels accept only widget messages, no execute
requests), the portal is made with ``readonly=True`` (no action buttons) and its CSS lays
it out for a narrow screen. Every request needs the server's token or, with ``--config``,
a staff member's ``spotkit serve`` API key (:mod:`spotkit.cli._portal_auth`).

Hooked into the parser by :func:`add_portal_parser` (one call in ``_main.build_parser``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from spotkit.cli._output import _out
from spotkit.cli._types import _port, _seconds
from spotkit.errors import SpotkitError

__all__ = ["add_portal_parser", "cmd_portal", "portal_notebook", "voila_command"]

logger = logging.getLogger("spotkit.cli")

_LOCAL = ("127.0.0.1", "localhost", "::1")


def portal_notebook() -> Path:
    """The read-only portal notebook shipped with spotkit (what Voila shows)."""
    # beside spotkit.widgets (not imported: it is not needed to serve the notebook)
    return Path(__file__).resolve().parents[1] / "widgets" / "portal.ipynb"


def add_portal_parser(sub, common) -> None:
    """Add ``portal`` to the sub-command parsers."""
    p = sub.add_parser(
        "portal", parents=common,
        help="the dashboard: how to open it in JupyterLab, or serve its read-only view",
        description="Without --serve: print how to open the portal in JupyterLab. With "
        "--serve: run its read-only view (no action buttons, no code execution, laid out "
        "for a phone) through Voila, behind a token or, with --config, staff API keys of "
        "`spotkit serve`.")
    p.add_argument("--serve", action="store_true",
                   help="run the read-only view with Voila until Ctrl-C")
    p.add_argument("--host", default="127.0.0.1",
                   help="with --serve: address to listen on (default: %(default)s)")
    p.add_argument("--port", type=_port, default=8866,
                   help="with --serve: port (default: %(default)s)")
    p.add_argument("--token", default=None,
                   help="with --serve: the access token (default: a new random one, "
                   "printed in the URL); $SPOTKIT_PORTAL_TOKEN also sets it")
    p.add_argument("--config", type=Path, default=None,
                   help="with --serve: the `spotkit serve` configuration; its staff may "
                   "also come in with their API key (?api_key=KEY)")
    p.add_argument("--auth-database", default=None,
                   help="with --config: SQLAlchemy URL of the API-key database (default: as "
                   "`spotkit serve`)")
    p.add_argument("--refresh", type=_seconds(zero_ok=False, example="5"), default=5.0,
                   help="seconds between refreshes (default: %(default)s)")
    p.set_defaults(func=cmd_portal)


def _catalog_location(args) -> str:
    """The catalog as given (a file checked to exist, a database or server URL)."""
    from spotkit.config import catalog_location, is_catalog_url

    location = str(args.catalog if args.catalog is not None else catalog_location())
    if location.startswith(("http://", "https://")):
        return location
    if is_catalog_url(location):
        from spotkit.catalog import open_catalog

        open_catalog(location, create=False).close()  # reachable, a catalog
        return location
    path = Path(location).expanduser().resolve()
    if not path.is_file():
        raise SpotkitError(f"there is no catalog at {path}; give --catalog PATH|URL (a "
                           "catalog made by `spotkit ingest`, `spotkit watch` or "
                           "`spotkit demo`)")
    return str(path)


def _python_line(catalog: str) -> str:
    return f"import spotkit; spotkit.portal({catalog!r})"


#: The Voila template of the portal: Voila's "lab" template without the two style sheets it
#: loads from a CDN (Font Awesome on cdn.jsdelivr.net): the page makes no request outside
#: the server (a facility network may have no internet; a viewer's browser tells no CDN).
TEMPLATE = "spotkit-portal"
_TEMPLATE_CONF = '{"base_template": "lab"}\n'
_TEMPLATE_INDEX = """{%- extends 'lab/index.html.j2' -%}
{%- block notebook_css -%}
{%- set cdn = '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/' -%}
{%- for line in super().split('\\n') if cdn not in line -%}
{{ line }}
{% endfor -%}
{%- endblock notebook_css -%}
"""


def _write_template(root: Path) -> Path:
    """Write the portal's Voila template under ``root`` (a Jupyter data folder)."""
    folder = root / "voila" / "templates" / TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conf.json").write_text(_TEMPLATE_CONF)
    (folder / "index.html.j2").write_text(_TEMPLATE_INDEX)
    return root


def voila_command(notebook: Path, *, host: str, port: int, token: str) -> list[str]:
    """The Voila command line that serves ``notebook`` read-only.

    Examples
    --------
    >>> cmd = voila_command(Path("portal.ipynb"), host="127.0.0.1", port=8866, token="t")
    >>> "--strip_sources=True" in cmd and "--token=t" in cmd
    True
    """
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser",
            f"--Voila.ip={host}", f"--port={port}", f"--token={token}",
            "--strip_sources=True", "--show_tracebacks=False",
            "--Voila.identity_provider_class=spotkit.cli._portal_auth.PortalIdentityProvider",
            # serve no file beside the notebook (Voila's default allows images): a pattern
            # that no file name matches
            "--VoilaConfiguration.file_allowlist=^$",
            f"--template={TEMPLATE}", "--theme=light",
            # one kernel started and the notebook run before anyone asks: a page opens in
            # ~3 s instead of ~12 s (a new kernel, spotkit's imports, the first refresh)
            "--preheat_kernel=True", "--pool_size=1"]


def _key_settings(args, env: dict[str, str], catalog: str) -> str:
    """Put the key database and staff in ``env``; say who may come in with a key."""
    from spotkit.cli._serve_cmd import _serve_module

    serve = _serve_module()
    config = serve.load_config(args.config)
    database = args.auth_database or config.database
    if database is None:
        if catalog.startswith(("http://", "https://")):
            raise SpotkitError("with a remote catalog give --auth-database (the API-key "
                               "database of your `spotkit serve`)")
        from spotkit.catalog import open_catalog

        with open_catalog(catalog, create=False) as cat:
            database = serve.default_auth_database(cat)
    serve.init_auth_database(database)
    from spotkit.cli._portal_auth import KEYS_DB_ENV, STAFF_ENV

    env[KEYS_DB_ENV] = database
    env[STAFF_ENV] = ",".join(sorted(config.staff))
    return (f"; staff ({', '.join(sorted(config.staff)) or 'none'}) may also use their "
            "`spotkit serve` API key: ?api_key=KEY")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """Ask Linux to SIGTERM this (Voila) process when its parent dies, even by SIGKILL.

    Without it a ``spotkit portal --serve`` killed with SIGKILL leaves Voila (and its
    kernels) serving on the port; SIGTERM lets Voila shut its kernels down. Elsewhere
    (no prctl) it does nothing.
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # Voila shuts its kernels down on SIGTERM
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a service manager, a test stopping us) ends the wait like Ctrl-C, so Voila
    and its kernels are stopped rather than left running without us."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_portal(args) -> int:
    """Print how to open the portal, or serve its read-only view until Ctrl-C."""
    catalog = _catalog_location(args)
    if not args.serve:
        _out("Open the portal in JupyterLab: run in a notebook cell\n\n"
             f"    {_python_line(catalog)}\n\n"
             "or serve its read-only view (a phone, a browser outside JupyterLab):\n\n"
             f"    spotkit --catalog {catalog} portal --serve")
        return 0
    try:
        import voila  # noqa: F401
    except ImportError:
        raise SpotkitError('spotkit portal --serve runs Voila; install it with pip install '
                           '"spotkit[lab]"') from None
    from spotkit.runs import ensure_kernel

    token = args.token or os.environ.get("SPOTKIT_PORTAL_TOKEN") or secrets.token_urlsafe(24)
    env = dict(os.environ, SPOTKIT_CATALOG=catalog, SPOTKIT_PORTAL_REFRESH=str(args.refresh))
    keys = _key_settings(args, env, catalog) if args.config is not None else ""
    if args.host not in _LOCAL:
        logger.warning("serving the portal on %s over plain HTTP: put a TLS proxy in front "
                       "so that tokens and keys never cross the network in clear text",
                       args.host)
    with tempfile.TemporaryDirectory(prefix="spotkit-portal-") as folder:
        import nbformat

        nb = nbformat.read(portal_notebook(), as_version=4)
        kernel = ensure_kernel()
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel,
                                     "language": "python"}
        (Path(folder) / "notebook").mkdir()
        notebook = Path(folder) / "notebook" / "portal.ipynb"  # alone: nothing else served
        nbformat.write(nb, notebook)
        data = _write_template(Path(folder) / "jupyter")
        env["JUPYTER_PATH"] = os.pathsep.join(
            [str(data), *filter(None, [os.environ.get("JUPYTER_PATH")])])
        shown = "localhost" if args.host in _LOCAL else args.host
        _out(f"spotkit portal (read-only): http://{shown}:{args.port}/?token={token}  "
             f"(catalog {catalog}{keys}). Ctrl-C stops it.")
        cmd = voila_command(notebook, host=args.host, port=args.port, token=token)
        linux = sys.platform.startswith("linux")
        proc = subprocess.Popen(cmd, env=env, cwd=notebook.parent,
                                preexec_fn=_die_with_parent if linux else None)
        with _sigterm_as_interrupt():
            try:
                code = proc.wait()
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: Voila stops, with its kernels
                _stop(proc)
                return 0
    if code:
        raise SpotkitError(f"Voila stopped with status {code} (see its messages above; is "
                           f"port {args.port} free? try --port)")
    return 0
