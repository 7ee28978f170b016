"""Fixtures for the catalog tests: a fake metadata reader and small fake scan files."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from spotkit.catalog import open_catalog
from spotkit.errors import InputFileError

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


@pytest.fixture
def cat(tmp_path, reader):
    with open_catalog(tmp_path / "catalog.db", reader=reader) as catalog:
        yield catalog


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


@pytest.fixture
def dump():
    """``dump(path)``: every table of a database file as SQL text (as another process sees it)."""
    return _dump
