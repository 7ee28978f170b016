"""Ingesting raw files: fields, files and checksums, idempotency, rollback on failure."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest

from spotkit.catalog import Dataset, FileRecord, open_catalog
from spotkit.errors import CatalogError, DatasetNotFoundError, InputFileError


def test_ingest_records_fields_files_and_checksums(cat, scans):
    path = scans(sample="lysozyme", extra_files=[("scan.poni", "geometry")])
    ds = cat.ingest(path, extra_metadata={"operator": "ada"})
    assert isinstance(ds, Dataset)
    assert ds.id.startswith("ds-")
    assert len(ds.id) == 15
    assert (ds.kind, ds.beamline, ds.sample, ds.proposal) == (
        "tomo/raw",
        "8.3.2",
        "lysozyme",
        "ALS-01234",
    )
    assert ds.status == "raw"
    assert ds.start_time == dt.datetime(2024, 5, 1, 13, 0, tzinfo=dt.UTC)
    assert ds.start_time.tzinfo is not None
    assert ds.ingested_at.tzinfo is not None
    assert ds.end_time - ds.start_time == dt.timedelta(minutes=5)
    assert ds.metadata == {"energy_kev": 25.0, "detector": "PCO", "operator": "ada"}
    assert ds.path == path
    assert ds.path.is_absolute()
    assert [f.role for f in ds.files] == ["data", "geometry"]
    data = ds.files[0]
    assert isinstance(data, FileRecord)
    assert data.size == path.stat().st_size
    assert data.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert data.format == "hdf5"
    assert ds.parents == []
    assert ds.children == []
    assert ds.runs == []
    assert ds.producing_run is None


def test_getitem_contains_len_and_missing_id(cat, scans):
    ds = cat.ingest(scans())
    assert cat[ds.id] == ds
    assert ds.id in cat
    assert ds in cat
    assert "ds-0000000000000" not in cat
    assert len(cat) == 1
    assert list(cat) == [ds.id]
    with pytest.raises(DatasetNotFoundError, match="ds-nope") as info:
        cat["ds-nope"]
    assert info.value.dataset_id == "ds-nope"
    assert isinstance(info.value, KeyError | LookupError)
    assert cat.get("ds-nope") is None


def test_ids_are_unique_and_sort_by_creation(cat, scans):
    ids = [cat.ingest(scans()).id for _ in range(20)]
    assert len(set(ids)) == 20
    assert ids == sorted(ids)


def test_reingest_is_idempotent(cat, scans, tmp_path, caplog, dump):
    path = scans()
    first = cat.ingest(path)
    before = dump(cat.url)
    with caplog.at_level("INFO", logger="spotkit.catalog"):
        again = cat.ingest(path)
    assert again.id == first.id
    assert len(cat) == 1
    assert dump(cat.url) == before
    assert "already catalogued" in caplog.text


def test_changed_content_at_same_path_is_a_new_dataset(cat, scans):
    path = scans()
    first = cat.ingest(path)
    path.write_bytes(b"rewritten")
    second = cat.ingest(path)
    assert second.id != first.id
    assert len(cat) == 2


def test_reader_error_leaves_catalog_untouched(cat, scans, tmp_path, dump):
    cat.ingest(scans())
    before = dump(cat.url)
    unknown = tmp_path / "beamline" / "garbage.h5"
    unknown.write_bytes(b"not hdf5")
    with pytest.raises(InputFileError, match=r"garbage\.h5"):
        cat.ingest(unknown)
    assert dump(cat.url) == before


def test_file_vanishing_before_hashing_leaves_catalog_untouched(cat, scans, reader, tmp_path, dump):
    cat.ingest(scans())
    before = dump(cat.url)
    path = scans(extra_files=[("flats.h5", "flats")])
    (tmp_path / "beamline" / "flats.h5").unlink()  # listed by the reader, gone before hashing
    with pytest.raises(InputFileError, match=r"flats\.h5") as info:
        cat.ingest(path)
    assert info.value.path.name == "flats.h5"
    assert dump(cat.url) == before


def test_constraint_failure_mid_transaction_rolls_back(cat, scans, reader, tmp_path, dump):
    cat.ingest(scans())
    before = dump(cat.url)
    path = scans()
    extra = tmp_path / "beamline" / "same.dat"
    extra.write_text("x")
    info = reader.infos[path]
    # the same file twice with different roles violates UNIQUE(path, dataset_id) after the
    # dataset row and the first files are already inserted
    reader.infos[path] = dataclasses.replace(info, files=(*info.files, (extra, "a"), (extra, "b")))
    with pytest.raises(CatalogError, match="nothing was written"):
        cat.ingest(path)
    assert dump(cat.url) == before
    assert len(cat) == 1


def test_bad_status_and_unserialisable_metadata_are_refused(cat, scans, tmp_path):
    path = scans()
    with pytest.raises(ValueError, match="status"):
        cat.ingest(path, status="Not Valid")
    with pytest.raises(TypeError, match="JSON"):
        cat.ingest(path, extra_metadata={"x": object()})
    assert len(cat) == 0


def test_quarantine_with_reason(cat, scans):
    ds = cat.ingest(scans(), status="quarantined")
    assert ds.status == "quarantined"
    ds = cat.set_status(ds.id, "raw")
    assert ds.status == "raw"
    ds = cat.set_status(ds, "quarantined", reason="truncated flats")
    assert ds.metadata["status_reason"] == "truncated flats"
    assert cat.search(text="truncated").ids == [ds.id]
    with pytest.raises(DatasetNotFoundError):
        cat.set_status("ds-missing", "raw")


def test_default_reader_is_spotkit_io(catalog_url, monkeypatch, scans, reader):
    io = pytest.importorskip("spotkit.io")
    path = scans()
    monkeypatch.setattr(io, "read_metadata", reader)
    with open_catalog(catalog_url) as cat:
        assert cat.ingest(path).sample == "lysozyme"
    assert reader.calls == 1


def test_closed_catalog_raises(catalog_url):
    cat = open_catalog(catalog_url)
    cat.close()
    with pytest.raises(CatalogError, match="closed"):
        len(cat)
    assert "closed" in repr(cat)
