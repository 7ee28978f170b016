"""Manifests: checksums, metadata from the files, JSON round trip, tamper detection."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from spotkit.checksums import DEFAULT_BLOCK_CHECK
from spotkit.errors import InputFileError
from spotkit.flows._suitcase import (
    FileEntry,
    Manifest,
    digest_file,
    make_manifest,
    sha256_file,
    verify_manifest,
)


@pytest.fixture
def dataset(tmp_path, tiny_tomo):
    """A dataset folder: a real Data Exchange file, a log and a nested text file."""
    root = tmp_path / "inbox"
    (root / "scan1" / "extra").mkdir(parents=True)
    h5 = root / "scan1" / "scan1.h5"
    h5.write_bytes(tiny_tomo[0].read_bytes())
    (root / "scan1" / "scan1.log").write_text("exposure 0.1 s\n")
    (root / "scan1" / "extra" / "notes.txt").write_bytes(os.urandom(10_000))
    return root


def test_sha256_matches_hashlib_across_blocks(tmp_path):
    p = tmp_path / "f.bin"
    data = os.urandom(3 * 1024 + 7)
    p.write_bytes(data)
    assert sha256_file(p, block_size=1024) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kind", ["crc32", "crc32c"])
def test_digest_file_gives_sha256_and_one_block_check_per_block(tmp_path, kind):
    import zlib

    if kind == "crc32c":
        google_crc32c = pytest.importorskip("google_crc32c")  # zarr's dependency
        reference = google_crc32c.value
    else:
        reference = zlib.crc32
    p = tmp_path / "f.bin"
    data = os.urandom(3 * 1024 + 7)
    p.write_bytes(data)
    sha, crcs = digest_file(p, block_size=1024, kind=kind)
    assert sha == hashlib.sha256(data).hexdigest()
    assert crcs == tuple(reference(data[i:i + 1024]) for i in range(0, len(data), 1024))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert digest_file(empty, kind=kind)[1] == ()


@pytest.mark.parametrize(("level", "kind"), [("sha256", DEFAULT_BLOCK_CHECK),
                                             ("crc32", "crc32"),
                                             ("crc32", DEFAULT_BLOCK_CHECK)])
def test_each_level_finds_one_flipped_bit_in_a_middle_block(tmp_path, level, kind):
    root = tmp_path / "d"
    root.mkdir()
    data = bytearray(os.urandom(5 * 4096 + 100))
    (root / "a.bin").write_bytes(data)
    sha, crcs = digest_file(root / "a.bin", block_size=4096, kind=kind)
    entry = FileEntry("a.bin", len(data), sha, 0.0, crcs, crc32_block=4096, crc32_kind=kind)
    man = Manifest("d", (entry,))
    assert verify_manifest(man, root, level=level, workers=3) == []
    data[2 * 4096 + 17] ^= 0x04
    (root / "a.bin").write_bytes(data)
    problems = verify_manifest(man, root, level=level, workers=3)
    assert [p.path for p in problems] == ["a.bin"]
    assert level in problems[0].problem
    # size alone cannot see it: that level is only for right after a checked copy
    assert verify_manifest(man, root, level="size") == []
    with pytest.raises(ValueError, match="unknown verification level 'md5'"):
        verify_manifest(man, root, level="md5")


def test_manifest_without_block_crcs_still_loads_and_verifies_by_sha256(dataset):
    man = make_manifest([dataset / "scan1"], root=dataset)
    assert all(f.crc32 is not None for f in man.files)
    doc = json.loads(man.to_json())
    for f in doc["files"]:
        del f["crc32"]  # a manifest from before block crc32s existed
    old = Manifest(doc["dataset"], tuple(FileEntry(f["path"], f["size"], f["sha256"],
                                                   f["mtime"]) for f in doc["files"]))
    again = Manifest.from_json(old.to_json())
    assert all(f.crc32 is None for f in again.files)
    assert verify_manifest(again, dataset, level="crc32") == []
    (dataset / "scan1" / "scan1.log").write_text("exposure 0.2 s\n")
    problems = verify_manifest(again, dataset, level="crc32")
    assert [str(p) for p in problems] == ["scan1/scan1.log: sha256 differs from the manifest"]


def test_manifest_lists_files_checksums_and_file_metadata(dataset):
    cfg = {"beamline": "8.3.2", "camera": "pco.edge", "pixel_um": 0.65}
    man = make_manifest([dataset / "scan1"], root=dataset, metadata={"operator": "ada"},
                        beamline_config=cfg)
    assert [f.path for f in man.files] == ["scan1/extra/notes.txt", "scan1/scan1.h5",
                                           "scan1/scan1.log"]
    for f in man.files:
        p = dataset / f.path
        assert f.size == p.stat().st_size
        assert f.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    meta = man.file_metadata["scan1/scan1.h5"]
    assert meta["kind"] == "tomo/raw"
    assert meta["sample"] == "tiny-sample"
    assert meta["files"][0][0] == "scan1/scan1.h5"  # relative, not the inbox's absolute path
    assert man.beamline_config == cfg
    assert man.metadata == {"operator": "ada"}
    assert man.dataset == "notes"  # first file's stem unless given
    assert man.total_bytes == sum(f.size for f in man.files)


def test_round_trip_and_stable_id(dataset, tmp_path):
    man = make_manifest(["scan1"], root=dataset, dataset="scan1", beamline_config={"a": 1})
    again = make_manifest([dataset / "scan1"], root=dataset, dataset="scan1",
                          beamline_config={"a": 1})
    assert man.id == again.id
    assert man.id.startswith("m-")
    back = Manifest.from_json(man.to_json())
    assert back == man
    assert back.id == man.id
    path = man.write(tmp_path / "out" / "scan1.manifest.json")
    assert Manifest.read(path) == man
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temp left
    other = make_manifest(["scan1"], root=dataset, dataset="scan1", beamline_config={"a": 2})
    assert other.id != man.id


def test_edited_manifest_is_rejected_naming_the_field(dataset, tmp_path):
    man = make_manifest(["scan1"], root=dataset, dataset="scan1")
    doc = json.loads(man.to_json())
    doc["files"][1]["sha256"] = "0" * 64
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match="digest") as info:
        Manifest.read(path)
    assert info.value.field == "digest"
    assert info.value.path == path
    del doc["files"]
    with pytest.raises(InputFileError, match="not a complete") as info:
        Manifest.from_json(json.dumps(doc))
    assert info.value.field == "files"
    with pytest.raises(InputFileError, match="not valid JSON"):
        Manifest.from_json("{")


def test_verify_finds_tampered_missing_and_truncated_files(dataset):
    man = make_manifest(["scan1"], root=dataset)
    assert verify_manifest(man, dataset) == []
    log = dataset / "scan1" / "scan1.log"
    log.write_text("exposure 0.2 s\n")  # same size, other bytes
    (dataset / "scan1" / "extra" / "notes.txt").unlink()
    problems = {p.path: p.problem for p in verify_manifest(man, dataset)}
    assert problems == {"scan1/scan1.log": "sha256 differs from the manifest",
                        "scan1/extra/notes.txt": f"missing under {dataset}"}
    with (dataset / "scan1" / "scan1.h5").open("r+b") as f:
        f.truncate(100)
    assert "size 100" in str(verify_manifest(man, dataset, files=["scan1/scan1.h5"])[0])


def test_bad_inputs_name_the_file(dataset, tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        make_manifest(["nope.h5"], root=dataset)
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    with pytest.raises(InputFileError, match="not under the dataset root"):
        make_manifest([outside], root=dataset)
    with pytest.raises(InputFileError, match="JSON") as info:
        make_manifest(["scan1"], root=dataset, metadata={"when": object()})
    assert info.value.field == "metadata"


def test_damaged_hdf5_raises_but_unknown_layout_is_recorded_without_metadata(dataset):
    import h5py

    other = dataset / "scan1" / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2, 3]
    man = make_manifest(["scan1"], root=dataset)
    assert "scan1/other.h5" in [f.path for f in man.files]
    assert "scan1/other.h5" not in man.file_metadata
    broken = dataset / "scan1" / "broken.h5"
    broken.write_bytes((dataset / "scan1" / "scan1.h5").read_bytes()[:2000])
    with pytest.raises(InputFileError) as info:
        make_manifest(["scan1"], root=dataset)
    assert info.value.path.name == "broken.h5"


# -- manifest format versions: 1 (zlib CRC-32 blocks), 2 (CRC-32C blocks) ------------------

#: a manifest exactly as spotkit wrote it before CRC-32C (format version 1), for a 10240-byte
#: file of bytes 0..255 repeated
OLD_MANIFEST = (
    '{"beamline_config": null, "created": "2026-12-01T10:00:00+00:00", "dataset": "scan", '
    '"digest": "a94ed7250748a894125f26f4f6efb3b91166e2fede141425511a4ac48bf87137", '
    '"file_metadata": {}, "files": [{"crc32": [3150855069], "crc32_block": 8388608, '
    '"mtime": 1764583200.0, "path": "scan.raw", "sha256": '
    '"e96760a87768717bcebcfd25ddc7d46b4dbc95a4b0014def080c08539f7d90d0", "size": 10240}], '
    '"metadata": {}, "root": "/beamline/inbox", "version": 1}')


def test_version_1_manifest_still_reads_verifies_and_keeps_its_id(tmp_path):
    man = Manifest.from_json(OLD_MANIFEST)
    assert man.id == "m-a94ed7250748a894"  # the id the journal and catalog recorded
    (entry,) = man.files
    assert (entry.crc32_kind, entry.crc32) == ("crc32", (3150855069,))
    assert man.version == 1
    assert json.loads(man.to_json())["digest"] == json.loads(OLD_MANIFEST)["digest"]
    data = bytearray(bytes(range(256)) * 40)
    (tmp_path / "scan.raw").write_bytes(data)
    assert verify_manifest(man, tmp_path, level="crc32") == []
    data[5000] ^= 1
    (tmp_path / "scan.raw").write_bytes(data)
    problems = verify_manifest(man, tmp_path, level="crc32")
    assert [p.problem for p in problems] == [
        "crc32 of a block differs from the manifest (block 0, bytes 0-10239)"]


def test_crc32c_manifest_is_version_2_and_round_trips(tmp_path):
    pytest.importorskip("google_crc32c")
    p = tmp_path / "a.bin"
    p.write_bytes(os.urandom(5000))
    man = make_manifest([p], root=tmp_path, read_file_metadata=False)
    (entry,) = man.files
    assert entry.crc32_kind == DEFAULT_BLOCK_CHECK == "crc32c"
    doc = json.loads(man.to_json())
    assert (doc["version"], doc["files"][0]["crc32_kind"]) == (2, "crc32c")
    back = Manifest.from_json(man.to_json())
    assert back == man
    assert verify_manifest(back, tmp_path, level="crc32") == []


def test_unknown_version_or_block_check_is_refused_by_name():
    doc = json.loads(OLD_MANIFEST)
    doc["version"] = 3
    with pytest.raises(InputFileError, match=r"format version 3.*reads versions \(1, 2\)"):
        Manifest.from_json(json.dumps(doc))
    doc["version"] = 2
    doc["files"][0]["crc32_kind"] = "adler32"
    with pytest.raises(InputFileError, match="unknown block check 'adler32'"):
        Manifest.from_json(json.dumps(doc))


def test_crc32c_blocks_without_their_library_are_checked_by_sha256(tmp_path, monkeypatch):
    from spotkit.flows import _suitcase

    pytest.importorskip("google_crc32c")
    p = tmp_path / "a.bin"
    p.write_bytes(os.urandom(5000))
    man = make_manifest([p], root=tmp_path, read_file_metadata=False)
    monkeypatch.setattr(_suitcase, "block_check_available", lambda kind: kind == "crc32")
    assert verify_manifest(man, tmp_path, level="crc32") == []
    p.write_bytes(os.urandom(5000))
    problems = verify_manifest(man, tmp_path, level="crc32")
    assert [q.problem for q in problems] == ["sha256 differs from the manifest"]


def test_known_checksums_from_ingest_keep_their_block_check_kind(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(os.urandom(5000))
    st = p.stat()
    sha, crcs = digest_file(p, kind="crc32")
    man = make_manifest([p], root=tmp_path, read_file_metadata=False,
                        known={p: (st.st_size, st.st_mtime_ns, sha, crcs, "crc32")})
    assert man.files[0].crc32_kind == "crc32"
    assert verify_manifest(man, tmp_path, level="crc32") == []
    sha, crcs = digest_file(p)  # what the flow's ingest passes: four items, default kind
    man = make_manifest([p], root=tmp_path, read_file_metadata=False,
                        known={p: (st.st_size, st.st_mtime_ns, sha, crcs)})
    assert man.files[0].crc32_kind == DEFAULT_BLOCK_CHECK
    assert verify_manifest(man, tmp_path, level="crc32") == []
