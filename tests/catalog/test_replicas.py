"""Replicas: the catalog records where copies of each file are and reads the best one."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from spotkit.catalog import SCHEMA_VERSION, open_catalog
from spotkit.errors import CatalogError, DatasetNotFoundError


def _copy_to(ds, dest):
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in ds.files:
        target = dest / f.path.name
        shutil.copy2(f.path, target)
        out[f.path] = target
    return out


def test_best_verified_replica_is_read_and_falls_back(cat, scans, tmp_path, dump):
    ds = cat.ingest(scans(extra_files=[("scan.poni", "geometry")]))
    inbox_paths = [f.path for f in ds.files]
    assert all(f.replicas == () and f.original is None for f in ds.files)
    wh = _copy_to(ds, tmp_path / "warehouse")
    reps = cat.add_replicas(ds.id, "warehouse", wh, manifest_id="man-1")
    assert [r.state for r in reps] == ["verified", "verified"]
    fresh = cat[ds.id]
    assert [f.path for f in fresh.files] == [wh[p] for p in inbox_paths]
    assert [f.registered_path for f in fresh.files] == inbox_paths
    assert [r.location for r in fresh.files[0].replicas] == ["warehouse"]
    d = fresh.files[0].to_dict()
    assert d["registered_path"] == str(inbox_paths[0])
    assert d["replicas"][0]["manifest_id"] == "man-1"
    # a copy on another machine is listed but never read from here
    cat.add_replicas(ds.id, "nersc", {p: f"dtn01.nersc.gov:/global/cfs/{p.name}"
                                      for p in inbox_paths}, rank=500)
    assert cat[ds.id].path == wh[inbox_paths[0]]
    # the warehouse copy vanishes without anyone saying so: the inbox copy is read
    wh[inbox_paths[0]].unlink()
    assert cat[ds.id].path == inbox_paths[0]
    report = cat.verify_replicas(ds.id, "warehouse")
    assert report["missing"] == [str(wh[inbox_paths[0]])]
    assert cat.replicas(ds.id)[inbox_paths[0]][0].location == "origin"
    # a corrupted copy is found out and not read
    wh[inbox_paths[1]].write_text("changed")
    assert cat.verify_replicas(ds.id)["unverified"] == [str(wh[inbox_paths[1]])]
    assert cat[ds.id].files[1].path == inbox_paths[1]
    # the registered path stays the file's identity: ingesting again finds the dataset
    assert cat.ingest(inbox_paths[0]).id == ds.id


def test_add_replicas_refuses_bad_input_and_writes_nothing(cat, scans, tmp_path, dump):
    ds = cat.ingest(scans())
    before = dump(cat.url)
    with pytest.raises(CatalogError, match="is not a file of dataset"):
        cat.add_replicas(ds.id, "warehouse", {ds.path: tmp_path / "a",
                                              tmp_path / "other.h5": tmp_path / "b"})
    with pytest.raises(CatalogError, match="replica state"):
        cat.add_replicas(ds.id, "warehouse", {ds.path: tmp_path / "a"}, state="fine")
    with pytest.raises(CatalogError, match="location"):
        cat.add_replicas(ds.id, "", {ds.path: tmp_path / "a"})
    with pytest.raises(DatasetNotFoundError):
        cat.add_replicas("ds-nope", "warehouse", {ds.path: tmp_path / "a"})
    assert dump(cat.url) == before


def test_a_schema_4_catalog_gains_replicas_and_final_flow_states(tmp_path, scans, reader):
    from spotkit.flows import Journal

    db = tmp_path / "v4.db"
    with open_catalog(db, reader=reader) as cat:
        ds = cat.ingest(scans())
    with Journal(db) as journal:
        journal.discover("k1", ds.path, size=1, mtime_ns=1)
    # turn the file back into schema 4: no replicas, the old CHECK on flow_items.state
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE replicas")
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'flow_items'").fetchone()
    old = sql.replace("'parked',\n                                   'superseded', 'forgotten'",
                      "'parked'")
    assert old != sql
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'flow_items'", (old,))
    conn.execute("PRAGMA writable_schema = OFF")
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version VALUES (4, 0)")
    conn.commit()
    conn.close()
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError):  # really the old constraint
        conn.execute("UPDATE flow_items SET state = 'forgotten'")
    conn.close()

    with open_catalog(db, reader=reader) as cat:
        assert cat[ds.id].files[0].replicas == ()
        cat.add_replicas(ds.id, "warehouse", {ds.path: tmp_path / "wh.h5"}, state="unverified")
        assert cat[ds.id].files[0].replicas[0].state == "unverified"
    with Journal(db) as journal:
        item = journal.forget("k1", reason="migrated", by="test")
        assert item.state == "forgotten"
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
