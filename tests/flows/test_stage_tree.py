"""A folder dataset (a folder of detector frames) is read once on its way to the warehouse.

The catalog's tree hash, each file's sha256 and block checks (the manifest's) and the staged
copy in the warehouse come from one read of each source file; the transfer still re-reads
every copy from the device against the manifest before it renames it into place.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from spotkit import checksums
from spotkit.flows import LocalCopy, Watcher, _localcopy, _localcopy_staging, _suitcase
from spotkit.flows._flow import PassReport
from spotkit.flows._manifest import Manifest
from spotkit.flows._suitcase import verify_manifest


def _frames(folder: Path, n: int = 5) -> Path:
    (folder / "darks").mkdir(parents=True)
    for k in range(n):  # a multi-block frame too (blocks of 8 MiB)
        size = checksums.BLOCK_SIZE + 123 if k == 2 else 1000 + k
        (folder / f"frame_{k:05d}.raw").write_bytes(os.urandom(size))
    (folder / "darks" / "dark_0.raw").write_bytes(b"dark" * 10)
    (folder / "frame-index.txt").write_bytes(b"sorted by path parts, not by string")
    return folder


def test_tree_digest_is_the_tree_hash_and_each_files_digest(tmp_path):
    run = _frames(tmp_path / "run")
    got = checksums.tree_digest(run)
    assert (got.size, got.sha256) == checksums.checksum(run)
    members = [p for _, p in checksums.tree_members(run)]
    assert sorted(got.files) == sorted(str(p.absolute()) for p in members)
    for path, (size, mtime_ns, sha, crcs, kind) in got.files.items():
        st = Path(path).stat()
        assert (size, mtime_ns) == (st.st_size, st.st_mtime_ns)
        assert (sha, crcs) == checksums.digest_file(path, kind=kind)


def test_stage_tree_copies_in_the_read_and_transfer_renames_the_checked_copies(tmp_path):
    run = _frames(tmp_path / "inbox" / "run")
    mover = LocalCopy(tmp_path / "warehouse")
    (tmp_path / "warehouse").mkdir()
    got = mover.stage_tree("k", run)
    assert (got.size, got.sha256) == checksums.checksum(run)
    assert len(got.files) == len(checksums.tree_members(run))
    man = _suitcase.make_manifest([run], root=run.parent, known=got.files,
                                  read_file_metadata=False)
    res = mover.transfer_staged(man, run.parent, "k")
    assert len(res.copied) == len(got.files)
    assert list(mover.staging_dir("k").iterdir()) == []  # all renamed into place
    assert verify_manifest(man, tmp_path / "warehouse", level="sha256") == []


def test_a_staged_copy_that_does_not_verify_is_copied_again(tmp_path):
    """Staging does not weaken the transfer's check: a staged copy damaged after staging is
    re-read against the manifest, dropped, and the file copied from the source."""
    run = _frames(tmp_path / "inbox" / "run")
    (tmp_path / "warehouse").mkdir()
    mover = LocalCopy(tmp_path / "warehouse")
    got = mover.stage_tree("k", run)
    man = _suitcase.make_manifest([run], root=run.parent, known=got.files,
                                  read_file_metadata=False)
    damaged = next(p for p in mover.staging_dir("k").iterdir() if p.name.endswith("0.raw"))
    with open(damaged, "r+b") as f:  # a staged copy in the warehouse, not raw data
        f.write(b"X")
    mover.transfer_staged(man, run.parent, "k")
    assert verify_manifest(man, tmp_path / "warehouse", level="sha256") == []


def test_a_file_changing_while_it_is_read_is_not_staged(tmp_path, monkeypatch):
    run = _frames(tmp_path / "inbox" / "run")
    growing = run / "frame_00001.raw"
    real = _localcopy_staging._copy_hashing_data

    def copy_then_grow(src_fd, dst_fd, **kw):
        out = real(src_fd, dst_fd, **kw)
        if os.path.samestat(os.fstat(src_fd), growing.stat()):
            with open(growing, "ab") as f:  # the detector still writing (a test file)
                f.write(b"late")
        return out

    monkeypatch.setattr(_localcopy_staging, "_copy_hashing_data", copy_then_grow)
    (tmp_path / "warehouse").mkdir()
    mover = LocalCopy(tmp_path / "warehouse")
    got = mover.stage_tree("k", run)
    assert str(growing.absolute()) not in got.files
    assert len(got.files) == len(checksums.tree_members(run)) - 1
    left = [p.name for p in mover.staging_dir("k").iterdir()]
    assert not [n for n in left if "frame_00001" in n]  # neither staged nor a partial


def _rules(path: Path, notebook: Path) -> Path:
    path.write_text(
        "version: 1\nfacility: TEST\nstages: [preview]\n"
        "retry: {attempts: 1, backoff: 0.1}\n"
        "targets:\n  local: {kind: local, max_workers: 1}\n"
        "rules:\n  - name: saxs\n    match: {kind: saxs/raw}\n    actions:\n"
        f"      - {{name: quick, stage: preview, notebook: {notebook}, target: local, "
        "parameters: {tag: quick}}\n"
    )
    return path


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    from spotkit.sim import simulate_saxs_series

    path = tmp_path_factory.mktemp("twin") / "series.h5"
    simulate_saxs_series(path, n_frames=4, shape=(24, 24), module_shape=None, seed=3)
    return path


def _count_source_opens(monkeypatch, folder: Path) -> Counter:
    opened: Counter = Counter()
    real_open = os.open

    def counting(path, flags, *a, **kw):
        p = Path(os.fsdecode(path)).absolute()
        if folder in p.parents and flags & os.O_ACCMODE == os.O_RDONLY:
            opened[p.relative_to(folder).as_posix()] += 1
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", counting)
    return opened


@pytest.mark.parametrize("stage", [True, False], ids=["staging", "no-staging"])
def test_a_frame_folder_is_read_once_by_ingest_manifest_and_transfer(flow_env, series,
                                                                      monkeypatch, stage):
    """Staging: ingest reads each file once (tree hash, file checksums, staged copy) and the
    transfer renames the checked copies. Without staging (a full warehouse): ingest reads
    once for the tree hash and the manifest's checksums, the transfer copies."""
    from spotkit.sim import write_frame_folder

    env = flow_env
    run = write_frame_folder(env["inbox"] / "saxs_0001", series).absolute()
    opened = _count_source_opens(monkeypatch, run)
    monkeypatch.setattr(checksums, "_hash_file",
                        lambda p, d: pytest.fail(f"tree-hashed again: {p}"))
    monkeypatch.setattr(_suitcase, "digest_file",
                        lambda p, **kw: pytest.fail(f"the manifest read it again: {p}"))
    if stage:
        monkeypatch.setattr(_localcopy.LocalCopy, "_copy_one",
                            lambda self, src, *a: pytest.fail(f"copied again: {src}"))
    else:
        def full(self, key, folder):
            raise _localcopy.TransferError("cannot stage: disk full", reason="disk full",
                                           transient=True)
        monkeypatch.setattr(_localcopy.LocalCopy, "stage_tree", full)
    watcher = Watcher(env["inbox"], catalog=env["catalog"],
                      rules=_rules(env["root"] / "r.yaml", env["notebook"]),
                      warehouse=LocalCopy(env["warehouse"]), settle=0)
    report = PassReport()
    watcher._discover(report)
    (item,) = watcher.journal.items()
    opened.clear()  # what discovery and the reader open is not the data path
    ds = watcher._prepare(item, report)
    assert ds is not None, report
    files = [rel for rel, _ in checksums.tree_members(run)]
    staged = watcher.journal.step(item.key, "ingested").result["staged"]
    watcher.close()
    monkeypatch.undo()
    assert staged == (len(files) if stage else 0)
    # one read of each source file by ingest; the transfer's copy is a second without staging
    assert opened == Counter({rel: 1 if stage else 2 for rel in files})
    folder = next(f for f in ds.files if f.role == "data")
    assert (folder.size, folder.sha256) == checksums.checksum(run)
    (found,) = env["warehouse"].rglob("*.spotkit-manifest.json")
    man = Manifest.read(found)
    assert {f.path for f in man.files} == {f"saxs_0001/{rel}" for rel in files}
    assert verify_manifest(man, env["warehouse"], level="sha256") == []
    assert verify_manifest(man, env["inbox"], level="sha256") == []  # raw data untouched
    assert not [p for p in env["warehouse"].iterdir() if p.name.startswith(".")]
