"""A real PostgreSQL server for the tests (Debian ``postgresql``, installed by ``.ci/run``).

:func:`start_server` runs ``initdb`` into a fresh temporary folder and starts ``postgres``
with ``pg_ctl -w start`` on 127.0.0.1 and a free port, its Unix socket in a private folder,
as a non-root system user (``initdb`` and ``postgres`` refuse to run as root: as root, a
system user ``spotkit-pg`` is created with ``useradd`` if needed and the programs run with
``runuser -u``). Durability is switched off (``fsync=off``): it is a throw-away server.
:meth:`PostgresServer.stop` stops it (``pg_ctl -m immediate stop``: nothing in it is kept)
and removes its folder.

:meth:`PostgresServer.create_database` makes a fresh, empty database (one per test) and
returns its ``postgresql://`` URL; :meth:`PostgresServer.drop_database` drops it.

Run it by hand to poke at a server::

    python tests/_postgres.py      # prints the URL of a fresh database, stops on Enter
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "spotkit"  #: the server's superuser (trust authentication on 127.0.0.1 only)
SYSTEM_USER = "spotkit-pg"  #: the system user the server runs as when the tests run as root


def bin_dir() -> Path | None:
    """The folder with ``initdb``, ``pg_ctl`` and ``postgres``, or None if not installed."""
    found = shutil.which("pg_ctl")
    if found and Path(found).with_name("initdb").exists():
        return Path(found).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "pg_ctl").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def skip_reason() -> str | None:
    """Why a test PostgreSQL cannot be started here, or None when it can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return 'psycopg is not installed: pip install -e ".[postgres]"'
    if bin_dir() is None:
        return ("PostgreSQL server programs not found (initdb, pg_ctl); apt-get install "
                "postgresql (.ci/run does)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start postgres as another user"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


@dataclass
class PostgresServer:
    """A running test server: ``url(dbname)``, ``create_database()``, ``stop()``."""

    root: Path
    port: int
    bin: Path
    run_as: str | None

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.run_as, "--"] if self.run_as else []) + list(args)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _admin(self):
        import psycopg

        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server; ``remove=False`` keeps its folder (a cluster to start again
        with ``start_server(root=...)``, stopped cleanly so nothing is lost)."""
        mode = "immediate" if remove else "fast"
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"),
                                 "-m", mode, "-w", "-t", "300", "stop"), capture_output=True,
                       timeout=330)
        if not remove:
            return
        # a throw-away cluster is ~1,000 files: remove them in the background (seconds on a
        # busy disk) rather than make the test session wait
        subprocess.Popen(["rm", "-rf", "--", str(self.root)], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_server(root: Path | None = None,
                 settings: dict[str, str] | None = None) -> PostgresServer:
    """initdb + pg_ctl start on 127.0.0.1 and a free port; see the module docs.

    ``root``: a folder to keep the cluster in (default: a new temporary one); if it
    already holds one (``root/data``), that cluster is started again as it is (no initdb).
    ``settings``: server settings (``{"shared_buffers": "4GB"}``) on top of the test
    defaults (``shared_buffers`` 32 MB, no fsync).
    """
    where = bin_dir()
    if where is None:
        raise RuntimeError(skip_reason() or "no PostgreSQL")
    owned = root is None
    root = Path(tempfile.mkdtemp(prefix="spotkit-pg-")) if root is None else Path(root)
    root.mkdir(parents=True, exist_ok=True)
    run_as = None
    if os.geteuid() == 0:
        user = _system_user()
        run_as = user.pw_name
        os.chown(root, user.pw_uid, user.pw_gid)
    data, sockets = root / "data", root / "socket"
    server = PostgresServer(root, _free_port(), where, run_as)
    try:
        if not sockets.exists():
            subprocess.run(server._cmd("mkdir", "-m", "700", str(sockets)), check=True)
        if not (data / "PG_VERSION").exists():
            subprocess.run(server._cmd(str(where / "initdb"), "-D", str(data), "-U", SUPERUSER,
                                       "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"),
                           check=True, capture_output=True, timeout=120)
        options = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                   "max_connections": "60", "shared_buffers": "32MB", **(settings or {})}
        options_text = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {sockets} "
                        + " ".join(f"-c {k}={v}" for k, v in options.items()))
        subprocess.run(server._cmd(str(where / "pg_ctl"), "-D", str(data), "-l",
                                   str(root / "server.log"), "-o", options_text, "-w", "-t",
                                   "300", "start"), check=True, capture_output=True, timeout=330)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        out = getattr(exc, "stderr", b"") or b""
        if owned:
            shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start the test PostgreSQL: {exc}\n"
                           f"{out.decode(errors='replace')}\n{log}") from exc
    return server


def dump_postgres(url: str) -> list[str]:
    """Every row of every table of a database (public schema), as text, sorted: what a
    new connection sees (to check that a failed write left nothing behind)."""
    import psycopg

    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            out += sorted(f"{table}: {row!r}" for row in rows)
    return out


@pytest.fixture(scope="session")
def postgres_server():
    """A running test PostgreSQL for the session (:class:`PostgresServer`); skips, saying
    why, where the server programs or psycopg are missing."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    server = start_server()
    yield server
    server.stop()


if __name__ == "__main__":  # pragma: no cover - by hand
    srv = start_server()
    print(srv.create_database("manual"))
    try:
        input("PostgreSQL running; Enter stops it ")
    finally:
        srv.stop()
