"""Fixtures for the catalog tests: a fake metadata reader and small fake scan files, and
the catalog on both backends.

``cat`` (and ``catalog_url``) are parametrised: every test that uses them runs once on the
embedded SQLite file and once on a fresh database of a real PostgreSQL server (one server
for the test session, started by ``tests/_postgres.py``; those runs skip, saying why, where
PostgreSQL is not installed). Tests of SQLite-only matters (PRAGMAs, migrations of old
files) open a file themselves.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from spotkit.catalog import open_catalog
from spotkit.errors import InputFileError

sys.path.insert(0, str(Path(__file__).parents[1]))
from _postgres import dump_postgres

UTC = dt.UTC


@dataclass(frozen=True)
class FakeInfo:
    """Same fields as spotkit.io.DatasetInfo."""

    kind: str
    beamline: str
    sample: str
    proposal: str
    start_time: dt.datetime
    end_time: dt.datetime | None
    title: str
    metadata: dict
    files: tuple = ()


@dataclass
class FakeReader:
    """Stands in for spotkit.io.read_metadata: returns what was registered for a path."""

    infos: dict = field(default_factory=dict)
    calls: int = 0

    def __call__(self, path):
        self.calls += 1
        path = Path(path)
        if path not in self.infos:
            raise InputFileError(path, "is not a scan the fake reader knows", field="/exchange")
        return self.infos[path]


@dataclass
class ScanFactory:
    """Writes small fake scan files and tells the fake reader what they contain."""

    root: Path
    reader: FakeReader
    count: int = 0

    def __call__(
        self,
        *,
        beamline="8.3.2",
        sample="lysozyme",
        proposal="ALS-01234",
        kind="tomo/raw",
        start=None,
        title=None,
        metadata=None,
        extra_files=(),
        name=None,
    ) -> Path:
        self.count += 1
        path = self.root / (name or f"scan_{self.count:04d}.h5")
        path.write_bytes(f"scan {self.count} {sample}".encode() * 10)
        start = start or dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC) + dt.timedelta(hours=self.count)
        files = [(path, "data")]
        for extra, role in extra_files:
            extra = self.root / extra
            extra.write_text("geometry")
            files.append((extra, role))
        self.reader.infos[path] = FakeInfo(
            kind=kind,
            beamline=beamline,
            sample=sample,
            proposal=proposal,
            start_time=start,
            end_time=start + dt.timedelta(minutes=5),
            title=title or f"{beamline} scan of {sample}",
            metadata=metadata if metadata is not None else {"energy_kev": 25.0, "detector": "PCO"},
            files=tuple(files),
        )
        return path


@pytest.fixture
def reader():
    return FakeReader()


@pytest.fixture
def scans(tmp_path, reader):
    root = tmp_path / "beamline"
    root.mkdir()
    return ScanFactory(root, reader)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request, tmp_path):
    """Where a fresh catalog goes: a SQLite file, or the URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "catalog.db"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def cat(catalog_url, reader):
    with open_catalog(catalog_url, reader=reader) as catalog:
        yield catalog


def _dump(location) -> list[str]:
    if isinstance(location, str) and location.startswith("postgresql://"):
        return dump_postgres(location)
    with sqlite3.connect(location) as conn:
        return list(conn.iterdump())


@pytest.fixture
def dump():
    """``dump(cat.url)``: every table of a catalog database as text, as another process
    (a new connection) sees it."""
    return _dump
