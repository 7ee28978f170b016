"""Frames of interest first inside one dataset's transfer: the movers take a frame folder's
files in the journal's frame order, verified, exactly once across a SIGKILL."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spotkit.errors import TransferError
from spotkit.flows import Journal
from spotkit.flows._movers import (
    PARTIAL_SUFFIX,
    LocalCopy,
    Relay,
    Rsync,
    frame_files,
    frame_transfer_order,
)
from spotkit.flows._suitcase import Manifest, make_manifest, verify_manifest

ROOT = Path(__file__).resolve().parents[2]
N_FRAMES = 40
#: frames of interest: 30-34 at priority 10, then 20-21 at priority 5
MARKED = [30, 31, 32, 33, 34, 20, 21]

needs_rsync = pytest.mark.skipif(
    shutil.which("rsync") is None, reason="the rsync program is not installed (apt install rsync)")


def _frame(i: int) -> str:
    return f"s1/frame_{i:05d}.cbf"


@pytest.fixture
def series(tmp_path):
    """A folder of 40 tiny frames with its PONI and sidecar, its manifest as the flow makes
    it, and the journal's frame order with two ranges of frames of interest."""
    root = tmp_path / "src"
    folder = root / "s1"
    folder.mkdir(parents=True)
    for i in range(N_FRAMES):
        (folder / f"frame_{i:05d}.cbf").write_bytes(os.urandom(1500 + i))
    (folder / "s1.poni").write_text("Distance: 1.0\n")
    (folder / "metadata.json").write_text('{"n_frames": 40}\n')
    man = make_manifest(["s1"], root=root, dataset="s1", read_file_metadata=False,
                        metadata={"dataset_id": "ds-1",
                                  "files": [[str(folder), "data"],
                                            [str(folder / "s1.poni"), "geometry"]]})
    with Journal(tmp_path / "catalog.db") as journal:
        journal.prioritize("ds-1", priority=10, frames=(30, 34), reason="onset at 31")
        journal.prioritize("live-1", priority=5, frames=(20, 21), path=folder,
                           reason="a jump, marked on the live series")
        order = frame_transfer_order(
            man, lambda n: journal.frame_order("ds-1", n, path=folder))
    return root, man, order


def _landed(dest: Path) -> set[str]:
    """The files at their final names."""
    return {p.relative_to(dest).as_posix() for p in dest.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def _partials(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)
            or ".rsync-partial" in p.parts]


def test_frame_files_in_frame_order_and_the_order_from_the_journal(series, tmp_path):
    _, man, order = series
    assert frame_files(man) == tuple(_frame(i) for i in range(N_FRAMES))
    rest = [i for i in range(N_FRAMES) if i not in MARKED]
    assert order == tuple(_frame(i) for i in MARKED + rest)
    # numbers without zero padding: frame order is by number, not by name
    loose = tmp_path / "loose"
    (loose / "s2").mkdir(parents=True)
    for i in (1, 2, 10):
        (loose / "s2" / f"img{i}.tif").write_bytes(b"x")
    man2 = make_manifest(["s2"], root=loose, read_file_metadata=False)
    assert frame_files(man2) == ("s2/img1.tif", "s2/img2.tif", "s2/img10.tif")
    assert frame_transfer_order(man2, lambda n: [2, 0, 1])[0] == "s2/img10.tif"
    # frames inside one HDF5 file: a whole-file copy, no frame order to fake
    (loose / "scan.h5").write_bytes(b"h5")
    man3 = make_manifest(["scan.h5"], root=loose, read_file_metadata=False)
    assert frame_files(man3) == ()
    assert frame_transfer_order(man3, lambda n: list(reversed(range(n)))) == ()
    # no frames of interest: the manifest's order stands
    assert frame_transfer_order(man, lambda n: range(n)) == ()
    with pytest.raises(ValueError, match="not an ordering"):
        frame_transfer_order(man, lambda n: [0, 0])


@pytest.mark.parametrize("workers", [1, 4])
def test_local_copy_lands_frames_of_interest_first(series, tmp_path, workers):
    root, man, order = series
    manifest_json = man.to_json()
    dest = tmp_path / "wh"
    dest.mkdir()
    placed: list[str] = []
    mover = LocalCopy(dest, workers=workers)
    res = mover.transfer(man, root, order=order, placed=placed.append)
    k = len(MARKED)
    assert res.ahead == k
    assert res.copied[:k] == order[:k]  # in the order they went
    assert sorted(res.copied) == sorted(f.path for f in man.files)
    if workers == 1:
        assert placed[:k] == list(order[:k])
    else:  # they start in order: the marked ones are all among the first to land
        assert set(order[:k]) <= set(placed[:k + workers - 1])
    assert mover.verify(man) == []
    assert man.to_json() == manifest_json  # the manifest is not touched
    copy = Manifest.read(mover.store_manifest(man))
    assert copy.id == man.id
    assert [f.path for f in copy.files] == [f.path for f in man.files]


def test_no_marks_keeps_the_manifest_order(series, tmp_path):
    root, man, _ = series
    dest = tmp_path / "wh"
    dest.mkdir()
    placed: list[str] = []
    res = LocalCopy(dest, workers=1).transfer(man, root, order=(), placed=placed.append)
    assert placed == [f.path for f in man.files]
    assert res.ahead == 0
    assert res.copied == tuple(f.path for f in man.files)
    with pytest.raises(ValueError, match="does not list"):
        LocalCopy(dest).transfer(man, root, order=["s1/nope.cbf"])


def test_staged_copies_are_placed_in_frame_order(series, tmp_path):
    """The flow's path: copies staged at ingest (tree order), renamed into place in the
    frame order, each checked against the manifest first."""
    root, man, order = series
    dest = tmp_path / "wh"
    dest.mkdir()
    mover = LocalCopy(dest, workers=1)
    got = mover.stage_tree("k", root / "s1")
    man = make_manifest(["s1"], root=root, dataset="s1", known=got.files,
                        read_file_metadata=False, metadata=man.metadata)
    placed: list[str] = []
    res = mover.transfer_staged(man, root, "k", placed=placed.append, order=order)
    assert placed[:len(MARKED)] == list(order[:len(MARKED)])
    assert res.ahead == len(MARKED)
    assert list(mover.staging_dir("k").iterdir()) == []  # every staged copy used
    assert mover.verify(man) == []


@needs_rsync
def test_rsync_lands_frames_of_interest_first_in_few_runs(series, tmp_path, monkeypatch):
    root, man, order = series
    dest = tmp_path / "wh"
    dest.mkdir()
    k = len(MARKED)
    runs: list[list[str]] = []
    real = Rsync._run

    def run(argv, *, input=None, timeout=None):
        if argv[0] == "rsync":
            runs.append([p for p in input.split("\0") if p])
            assert _landed(dest) == {p for r in runs[:-1] for p in r}  # the runs before, only
        return real(argv, input=input, timeout=timeout)

    monkeypatch.setattr(Rsync, "_run", staticmethod(run))
    res = Rsync(dest).transfer(man, root, order=order)
    assert res.ahead == k
    assert res.copied[:k] == order[:k]  # as rsync sent them
    # the fewest runs that rsync takes in name order: one per priority, then the rest
    assert runs[:2] == [[_frame(i) for i in (30, 31, 32, 33, 34)], [_frame(20), _frame(21)]]
    assert len(runs) == 3
    assert _landed(dest) == {f.path for f in man.files}
    assert Rsync(dest).verify(man) == []
    assert not _partials(dest)
    again = Rsync(dest).transfer(man, root, order=order)  # verified there: nothing sent
    assert again.copied == ()
    assert len(again.skipped) == len(man.files)
    plain = tmp_path / "plain"
    plain.mkdir()
    res = Rsync(plain).transfer(man, root)  # no marks: one run, the manifest's order
    assert res.ahead == 0
    assert res.copied == tuple(f.path for f in man.files)


@needs_rsync
def test_rsync_over_ssh_keeps_the_order(series, tmp_path, local_sshd):
    host, opts = local_sshd
    root, man, order = series
    dest = tmp_path / "remote-wh"
    dest.mkdir()
    mover = Rsync(dest, ssh=host, ssh_options=opts)
    res = mover.transfer(man, root, order=order)
    assert res.copied[:len(MARKED)] == order[:len(MARKED)]
    assert res.ahead == len(MARKED)
    assert mover.verify(man) == []  # sha256sum over ssh


@pytest.mark.parametrize("mover", ["local", pytest.param("rsync", marks=needs_rsync)])
def test_a_bad_frame_of_interest_stops_before_the_rest(series, tmp_path, mover):
    root, man, order = series
    bad = root / _frame(32)
    bad.write_bytes(os.urandom(bad.stat().st_size))  # changed after the manifest
    dest = tmp_path / "wh"
    dest.mkdir()
    m = LocalCopy(dest, workers=1) if mover == "local" else Rsync(dest)
    with pytest.raises(TransferError, match=r"frame_00032\.cbf") as info:
        m.transfer(man, root, order=order)
    assert not (dest / _frame(32)).exists()  # the bad copy never keeps its final name
    landed = _landed(dest)
    assert not landed & {_frame(i) for i in range(N_FRAMES) if i not in MARKED}
    assert not _partials(dest)
    assert info.value.path == _frame(32)


def test_relay_takes_frames_of_interest_through_both_hops_first(series, tmp_path):
    root, man, order = series
    relay, final = tmp_path / "relay", tmp_path / "final"
    relay.mkdir()
    final.mkdir()
    k = len(MARKED)
    mover = Relay(LocalCopy(relay, workers=1), LocalCopy(final, workers=1))
    assert mover.can_order
    res = mover.transfer(man, root, order=order)
    assert res.ahead == k
    assert res.copied[:k] == order[:k]
    assert mover.verify(man) == []
    assert not any(p.is_file() for p in relay.rglob("*"))


def test_exactly_once_after_sigkill_mid_ordered_transfer(series, tmp_path):
    root, man, order = series
    mpath = man.write(tmp_path / "s1.manifest.json")
    dest = tmp_path / "wh"
    dest.mkdir()
    # a slow copy in a child process, killed once a few frames of interest have landed
    child = textwrap.dedent(f"""
        import time
        from spotkit.flows import _localcopy
        from spotkit.flows._suitcase import Manifest
        real = _localcopy._copy_data
        def slow(*a, **k):
            time.sleep(0.05)
            return real(*a, **k)
        _localcopy._copy_data = slow
        man = Manifest.read({str(mpath)!r})
        _localcopy.LocalCopy({str(dest)!r}, workers=1).transfer(
            man, {str(root)!r}, order={list(order)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=ROOT)
    deadline = time.monotonic() + 30
    while len(_landed(dest)) < 3:
        assert proc.poll() is None, "the copying child ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    before = _landed(dest)
    assert 3 <= len(before) < len(man.files)
    assert before == set(order[:len(before)])  # what landed: the first in the order
    assert verify_manifest(man, dest, files=sorted(before)) == []  # ... each verified
    assert not list(dest.rglob("*.spotkit-manifest.json"))  # not complete at the destination
    res = LocalCopy(dest).transfer(man, root, order=order)
    assert set(res.skipped) == set(before)  # nothing copied twice
    assert set(res.copied) | set(before) == {f.path for f in man.files}
    assert not set(res.copied) & set(before)
    assert LocalCopy(dest).verify(man) == []
    assert not _partials(dest)


def _sshd_fixture():
    """The private sshd of test_movers (one definition, used by both modules)."""
    spec = importlib.util.spec_from_file_location("_movers_tests",
                                                  Path(__file__).with_name("test_movers.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.local_sshd


local_sshd = _sshd_fixture()


def test_the_watcher_moves_a_frame_folder_frames_of_interest_first(tmp_path, flow_env):
    """Through the flow: priorities set on the live series (by path) order the transfer of
    the folder ingested later, and the journal's transfer step says so."""
    from spotkit.flows import Watcher
    from spotkit.sim import simulate_saxs_series, write_frame_folder

    inbox, warehouse = flow_env["inbox"], flow_env["warehouse"]
    simulate_saxs_series(tmp_path / "series.h5", n_frames=8, shape=(32, 48), onset_frame=5,
                         seed=5)
    run = write_frame_folder(inbox / "saxs_0001", tmp_path / "series.h5")
    catalog = tmp_path / "catalog.db"
    with Journal(catalog) as journal:  # as a live trigger marks the series being acquired
        journal.prioritize("live-series", priority=10, frames=(5, 6), path=run.resolve(),
                           reason="onset at frame 5")
    watcher = Watcher([inbox], catalog=catalog, rules=flow_env["rules"], warehouse=warehouse,
                      poll=0.1, settle=0.1, workers=1)
    try:
        deadline = time.monotonic() + 30
        while True:
            watcher.run_once()
            with Journal(catalog) as journal:
                items = journal.items()
                step = journal.step(items[0].key, "transferred") if items else None
            if step is not None and step.state == "done":
                break
            assert time.monotonic() < deadline, [(i.state, i.error) for i in items]
            time.sleep(0.1)
    finally:
        watcher.close()
    assert step.result["order"] == "frames of interest first"
    assert step.result["ahead"] == 2
    assert step.result["copied"][:2] == ["saxs_0001/frame_00006.cbf",
                                         "saxs_0001/frame_00007.cbf"]
