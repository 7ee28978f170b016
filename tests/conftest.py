"""Shared fixtures: a private spotkit home per test session, tiny simulated datasets."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# one real PostgreSQL server for the whole test session (started on first use)
from _postgres import postgres_server  # noqa: F401 (a fixture)


@pytest.fixture(autouse=True)
def _private_spotkit_home(tmp_path_factory, monkeypatch):
    """Never touch the developer's ~/.spotkit: every test gets its own home."""
    home = tmp_path_factory.mktemp("spotkit-home")
    monkeypatch.setenv("SPOTKIT_HOME", str(home))
    monkeypatch.delenv("SPOTKIT_CATALOG", raising=False)


@pytest.fixture(scope="session")
def tiny_tomo(tmp_path_factory):
    """A tiny simulated tomography scan (Data Exchange HDF5) and its truth."""
    from spotkit.sim import simulate_tomo_scan

    path = tmp_path_factory.mktemp("raw") / "tiny_tomo.h5"
    truth = simulate_tomo_scan(path, shape=(91, 4, 96), center_offset=3.5, seed=7,
                               sample="tiny-sample", proposal="TEST-1")
    return path, truth


@pytest.fixture(scope="session")
def tiny_saxs(tmp_path_factory):
    """A tiny simulated SAXS frame series with its PONI file and truth."""
    from spotkit.sim import simulate_saxs_series

    path = tmp_path_factory.mktemp("raw") / "tiny_saxs.h5"
    truth = simulate_saxs_series(path, n_frames=12, onset_frame=8, seed=5,
                                 sample="tiny-film", proposal="TEST-2")
    return path, truth


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`spotkit demo` run once per session as a user runs it (a new folder, a private
    spotkit home, the default ``./spotkit-demo`` workdir): tests/test_demo.py checks what it
    made and printed, and the README's code blocks (tests/test_docs.py) then run in that
    folder. ``snapshot`` is a copy of the catalog taken as the demo ended, before any test
    adds to it."""
    work = tmp_path_factory.mktemp("docs")
    home = tmp_path_factory.mktemp("docs-home")
    env = dict(os.environ, SPOTKIT_HOME=str(home), MPLBACKEND="Agg")
    env.pop("SPOTKIT_CATALOG", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    res = subprocess.run([sys.executable, "-m", "spotkit.cli", "demo"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"spotkit demo failed:\n{res.stderr[-3000:]}"
    snapshot = tmp_path_factory.mktemp("demo-snapshot") / "catalog.db"
    with closing(sqlite3.connect(work / "spotkit-demo" / "catalog.db")) as src, \
            closing(sqlite3.connect(snapshot)) as dst:
        src.backup(dst)  # consistent whatever the journal mode
    return {"work": work, "home": home, "env": env, "stdout": res.stdout,
            "workdir": work / "spotkit-demo", "snapshot": snapshot}


@pytest.fixture
def catalog(tmp_path):
    """A fresh, empty catalog in a temporary folder."""
    from spotkit.catalog import open_catalog

    cat = open_catalog(tmp_path / "catalog.db")
    yield cat
    cat.close()
