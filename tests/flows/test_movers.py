"""Movers with real files, real faults (SIGKILL, full and read-only tmpfs) and real rsync."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spotkit.errors import TransferError
from spotkit.flows import _localcopy, _localcopy_io, _localcopy_staging, _movers
from spotkit.flows._movers import LocalCopy, Relay, RetentionPolicy, Rsync
from spotkit.flows._suitcase import Manifest, make_manifest, verify_manifest

ROOT = Path(__file__).resolve().parents[2]


def _partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(_movers.PARTIAL_SUFFIX)
            or ".rsync-partial" in p.parts]


@pytest.fixture
def src(tmp_path):
    """A dataset: three files in two folders, one 3 MB, and its manifest."""
    root = tmp_path / "src"
    (root / "scan7" / "sub").mkdir(parents=True)
    (root / "scan7" / "scan7.raw").write_bytes(os.urandom(3_000_000))
    (root / "scan7" / "scan7.log").write_text("ok\n")
    (root / "scan7" / "sub" / "flat.bin").write_bytes(os.urandom(70_000))
    return root, make_manifest(["scan7"], root=root, dataset="scan7")


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mount small tmpfs file systems (root in this container can); skip where we cannot."""
    mounted = []

    def mount(name: str, size: str = "1m") -> Path:
        where = tmp_path / name
        where.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(where)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): "
                        f"{res.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def _remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


# -- local copy --------------------------------------------------------------------------


def test_copy_verifies_and_reruns_idempotently(src, tmp_path):
    root, man = src
    dest = tmp_path / "warehouse"
    dest.mkdir()
    mover = LocalCopy(dest)
    assert mover.available()[0]
    before = {p: p.stat().st_mtime for p in root.rglob("*") if p.is_file()}
    res = mover.transfer(man, root)
    assert sorted(res.copied) == sorted(f.path for f in man.files)
    assert res.skipped == ()
    assert res.bytes_copied == man.total_bytes
    assert res.mb_per_s > 0
    for f in man.files:
        assert (dest / f.path).read_bytes() == (root / f.path).read_bytes()
        assert (dest / f.path).stat().st_mtime == pytest.approx(f.mtime)
    assert mover.verify(man) == []
    assert not _partials(dest)
    again = mover.transfer(man, root)
    assert again.copied == ()
    assert len(again.skipped) == len(man.files)
    assert {p: p.stat().st_mtime for p in root.rglob("*") if p.is_file()} == before  # untouched


def test_manifest_copy_lands_beside_the_data_and_rewrites_harmlessly(src, tmp_path,
                                                                    mount_tmpfs):
    root, man = src
    dest = tmp_path / "wh"
    dest.mkdir()
    mover = LocalCopy(dest)
    mover.transfer(man, root)
    copy = Path(mover.store_manifest(man))
    assert copy == dest / "scan7" / "scan7.spotkit-manifest.json"
    assert Manifest.read(copy) == man
    assert verify_manifest(Manifest.read(copy), dest) == []  # checkable without the catalog
    assert Path(mover.store_manifest(man)) == copy  # again: same file, no leftovers
    assert sorted(p.name for p in copy.parent.iterdir() if p.name.startswith(".")) == []
    ro = mount_tmpfs("ro")
    _remount(ro, "ro")
    with pytest.raises(TransferError, match="read-only") as info:
        LocalCopy(ro).store_manifest(man)
    assert info.value.transient


def test_destination_missing_or_unmounted_is_unavailable(src, tmp_path):
    root, man = src
    gone = LocalCopy(tmp_path / "not-mounted")
    ok, why = gone.available()
    assert not ok
    assert "does not exist" in why
    with pytest.raises(TransferError, match="does not exist") as info:
        gone.transfer(man, root)
    assert info.value.transient
    as_file = tmp_path / "afile"
    as_file.write_text("")
    ok, why = LocalCopy(as_file).available()
    assert not ok
    assert "not a folder" in why
    empty_mountpoint = tmp_path / "mnt"
    empty_mountpoint.mkdir()
    marked = LocalCopy(empty_mountpoint, marker=".spotkit-warehouse")
    ok, why = marked.available()
    assert not ok
    assert "marker" in why
    (empty_mountpoint / ".spotkit-warehouse").touch()
    assert marked.available()[0]


def test_conflicting_file_at_destination_is_not_overwritten(src, tmp_path):
    root, man = src
    dest = tmp_path / "wh"
    (dest / "scan7").mkdir(parents=True)
    (dest / "scan7" / "scan7.log").write_text("someone else's\n")
    with pytest.raises(TransferError, match=r"different scan7/scan7\.log") as info:
        LocalCopy(dest).transfer(man, root)
    assert not info.value.transient
    assert (dest / "scan7" / "scan7.log").read_text() == "someone else's\n"


def test_damaged_copy_is_removed_and_named(src, tmp_path, monkeypatch):
    root, man = src
    dest = tmp_path / "wh"
    dest.mkdir()
    real = _localcopy._copy_data

    def flaky(src_fd, dst_fd, size, progress=None):  # the bytes that land differ from those sent
        real(src_fd, dst_fd, size, progress)
        if size > 1_000_000:
            os.pwrite(dst_fd, b"\xff\x00\xff", 12345)

    monkeypatch.setattr(_localcopy, "_copy_data", flaky)
    with pytest.raises(TransferError, match=r"checksum mismatch for scan7/scan7\.raw") as info:
        LocalCopy(dest).transfer(man, root)
    assert info.value.path == "scan7/scan7.raw"
    assert info.value.transient
    assert "damaged on the way" in str(info.value)
    assert not (dest / "scan7" / "scan7.raw").exists()
    assert not _partials(dest)
    monkeypatch.undo()
    assert LocalCopy(dest).transfer(man, root).copied  # the retry completes


def test_source_changed_after_manifest(src, tmp_path):
    root, man = src
    (root / "scan7" / "scan7.log").write_text("KO\n")  # same size, other bytes
    with pytest.raises(TransferError, match="source changed") as info:
        LocalCopy(tmp_path).transfer(man, root)
    assert not info.value.transient
    assert info.value.path == "scan7/scan7.log"
    (root / "scan7" / "scan7.log").write_text("longer now\n")
    with pytest.raises(TransferError, match="changed after the manifest"):
        LocalCopy(tmp_path).transfer(man, root)


@pytest.mark.slow
def test_sigkill_mid_file_then_rerun_completes(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    big = root / "big.raw"
    with big.open("wb") as f:  # 64 MiB, mostly holes, random blocks here and there
        f.truncate(64 * 2**20)
        for off in range(0, 64 * 2**20, 8 * 2**20):
            f.seek(off)
            f.write(os.urandom(65536))
    (root / "a_small.txt").write_text("first\n")
    man = make_manifest([root], root=root, dataset="big")
    mpath = man.write(tmp_path / "big.manifest.json")
    dest = tmp_path / "wh"
    dest.mkdir()
    child = textwrap.dedent(f"""
        import os, sys, time
        from spotkit.flows import _localcopy_io, _movers
        from spotkit.flows._suitcase import Manifest
        _localcopy_io.COPY_CHUNK = 2**20
        real = os.copy_file_range
        def slow(*a):
            time.sleep(0.02)
            return real(*a)
        os.copy_file_range = slow
        man = Manifest.read({str(mpath)!r})
        _movers.LocalCopy({str(dest)!r}).transfer(man, {str(root)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=ROOT)
    partial = dest / f".big.raw{_movers.PARTIAL_SUFFIX}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if partial.exists() and partial.stat().st_size >= 8 * 2**20:
            break
        assert proc.poll() is None, "the copying child ended before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    assert partial.exists()  # killed mid-file
    assert not (dest / "big.raw").exists()  # ... and the partial never had the final name
    assert (dest / "a_small.txt").exists()  # the file before it was complete
    res = LocalCopy(dest).transfer(man, root)
    assert res.copied == ("big.raw",)
    assert res.skipped == ("a_small.txt",)
    assert LocalCopy(dest).verify(man) == []
    assert not _partials(dest)


def test_disk_full_is_transient_and_leaves_nothing(src, mount_tmpfs):
    root, man = src
    small = mount_tmpfs("small", "1m")
    mover = LocalCopy(small)
    assert mover.available()[0]
    with pytest.raises(TransferError, match="disk full") as info:
        mover.transfer(man, root)
    err = info.value
    assert err.transient
    assert err.errno == errno.ENOSPC
    assert err.path == "scan7/scan7.raw"
    assert not (small / "scan7" / "scan7.raw").exists()
    assert not _partials(small)


def test_read_only_destination_then_writable_again(src, mount_tmpfs):
    root, man = src
    wh = mount_tmpfs("wh", "16m")
    mover = LocalCopy(wh)
    _remount(wh, "ro")
    ok, why = mover.available()
    assert not ok
    assert "not writable" in why
    assert "Read-only" in why
    with pytest.raises(TransferError, match=r"not writable|read-only") as info:
        mover.transfer(man, root)
    assert info.value.transient
    _remount(wh, "rw")
    assert mover.available()[0]
    assert len(mover.transfer(man, root).copied) == len(man.files)
    assert mover.verify(man) == []


def test_read_only_midway_raises_erofs(src, mount_tmpfs, monkeypatch):
    """The destination turns read-only between the availability check and the write."""
    root, man = src
    wh = mount_tmpfs("wh2", "16m")
    monkeypatch.setattr(LocalCopy, "available", lambda self: (True, "ok"))
    _remount(wh, "ro")
    with pytest.raises(TransferError) as info:
        LocalCopy(wh).transfer(man, root)
    assert info.value.errno == errno.EROFS
    assert info.value.transient
    assert "remount it read-write" in str(info.value)


# -- rsync and relay ---------------------------------------------------------------------

needs_rsync = pytest.mark.skipif(
    shutil.which("rsync") is None, reason="the rsync program is not installed (apt install rsync)")


@needs_rsync
@pytest.mark.parametrize("mode", ["push", "pull"])
def test_rsync_local_copies_verifies_and_skips_on_rerun(src, tmp_path, mode):
    root, man = src
    dest = tmp_path / f"wh-{mode}"
    dest.mkdir()
    (root / "scan7" / "not-in-manifest.tmp").write_text("x")
    mover = Rsync(dest, mode=mode)
    assert mover.available()[0]
    res = mover.transfer(man, root)
    assert sorted(res.copied) == sorted(f.path for f in man.files)
    assert not (dest / "scan7" / "not-in-manifest.tmp").exists()
    assert mover.verify(man) == []
    assert not _partials(dest)
    again = mover.transfer(man, root)
    assert again.copied == ()
    assert len(again.skipped) == len(man.files)


@needs_rsync
def test_rsync_failures_are_clear(src, tmp_path, mount_tmpfs):
    root, man = src
    with pytest.raises(TransferError, match="not a folder") as info:
        Rsync(tmp_path / "missing").transfer(man, root)
    assert info.value.transient
    small = mount_tmpfs("rs-small", "1m")
    with pytest.raises(TransferError, match="disk full") as info:
        Rsync(small).transfer(man, root)
    assert info.value.transient
    assert not (small / "scan7" / "scan7.raw").exists()
    with pytest.raises(ValueError, match="unknown rsync mode"):
        Rsync(tmp_path, mode="sideways")


@needs_rsync
def test_rsync_mismatch_removes_bad_copy(src, tmp_path):
    root, man = src
    dest = tmp_path / "wh"
    dest.mkdir()
    log = root / "scan7" / "scan7.log"
    log.write_text("KO\n")  # changed after the manifest: what lands does not verify
    with pytest.raises(TransferError,
                       match=r"scan7/scan7\.log: (sha256|crc32c? of a block) differs") as info:
        Rsync(dest).transfer(man, root)
    assert info.value.path == "scan7/scan7.log"
    assert not (dest / "scan7" / "scan7.log").exists()
    assert (dest / "scan7" / "scan7.raw").exists()  # the good ones stay


@pytest.fixture(scope="module")
def local_sshd(tmp_path_factory):
    """A private sshd on 127.0.0.1 with its own keys; skip (with the reason) where impossible."""
    import socket

    sshd, keygen = shutil.which("sshd") or "/usr/sbin/sshd", shutil.which("ssh-keygen")
    if not Path(sshd).exists() or keygen is None or shutil.which("ssh") is None:
        pytest.skip("no sshd/ssh here (apt-get install openssh-server openssh-client)")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host", "client"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "sshd_config").write_text(textwrap.dedent(f"""
        Port {port}
        ListenAddress 127.0.0.1
        HostKey {d / "host"}
        AuthorizedKeysFile {d / "authorized_keys"}
        PidFile {d / "sshd.pid"}
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PermitRootLogin yes
        StrictModes no
        UsePAM no
    """))
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(d / "sshd_config")],
                            stderr=subprocess.PIPE, text=True)
    user = os.environ.get("USER") or "root"
    opts = ("-p", str(port), "-i", str(d / "client"), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR")
    deadline = time.monotonic() + 15
    while True:
        res = subprocess.run(["ssh", *opts, f"{user}@127.0.0.1", "true"], capture_output=True,
                             text=True, timeout=30)
        if res.returncode == 0:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip(f"could not start a private sshd: {res.stderr.strip()}")
        time.sleep(0.2)
    yield f"{user}@127.0.0.1", opts
    proc.terminate()
    proc.wait(10)


@needs_rsync
@pytest.mark.slow
def test_rsync_over_ssh_push_and_pull(src, tmp_path, local_sshd):
    host, opts = local_sshd
    root, man = src
    dest = tmp_path / "remote-wh"
    dest.mkdir()
    mover = Rsync(dest, ssh=host, ssh_options=opts)
    assert mover.available()[0]
    res = mover.transfer(man, root)
    assert len(res.copied) == len(man.files)
    assert res.dest == f"{host}:{dest}"
    assert mover.verify(man) == []  # sha256sum over ssh
    copy = mover.store_manifest(man)  # over ssh, atomically
    assert copy == str(dest / "scan7" / "scan7.spotkit-manifest.json")
    assert Manifest.read(copy).id == man.id
    assert not list(dest.rglob("*.tmp"))
    (dest / "scan7" / "scan7.log").write_text("KO\n")
    assert [p.path for p in mover.verify(man)] == ["scan7/scan7.log"]
    (dest / "scan7" / "scan7.log").write_text("ok\n")
    ok, why = Rsync(tmp_path / "nope", ssh=host, ssh_options=opts).available()
    assert not ok
    assert "not a writable folder" in why
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    Rsync(pulled, ssh=host, mode="pull", ssh_options=opts).transfer(man, dest)
    assert Rsync(pulled).verify(man) == []


@needs_rsync
@pytest.mark.parametrize("second", ["local", "rsync"])
def test_relay_verifies_each_hop(src, tmp_path, second):
    root, man = src
    relay_dir, final = tmp_path / "relay", tmp_path / "final"
    relay_dir.mkdir()
    final.mkdir()
    hop2 = LocalCopy(final) if second == "local" else Rsync(final)
    mover = Relay(LocalCopy(relay_dir), hop2)
    assert mover.available()[0]
    res = mover.transfer(man, root)
    assert res.mover == "relay"
    assert len(res.copied) == len(man.files)
    assert mover.verify(man) == []
    assert not any(p.is_file() for p in relay_dir.rglob("*"))  # relay copies dropped
    assert all((root / f.path).exists() for f in man.files)  # source untouched
    ok, why = Relay(LocalCopy(tmp_path / "nope"), hop2).available()
    assert not ok
    assert why.startswith("relay hop")


# -- retention ---------------------------------------------------------------------------


def test_retention_prunes_only_what_is_verified(src, tmp_path):
    root, man = src
    wh1, wh2 = tmp_path / "wh1", tmp_path / "wh2"
    wh1.mkdir()
    wh2.mkdir()
    later = datetime.now(UTC) + timedelta(days=10)
    m1, m2 = LocalCopy(wh1), LocalCopy(wh2)
    assert RetentionPolicy().prunable(man, root, [m1], now=later) == []  # default: never
    assert RetentionPolicy(keep_days=0).prunable(man, root, [m1], now=later) == []  # no copy
    m1.transfer(man, root)
    (wh1 / "scan7" / "scan7.log").write_text("KO\n")  # copy damaged after the transfer
    (wh1 / "scan7" / "sub" / "flat.bin").unlink()  # ... and one lost
    policy = RetentionPolicy(keep_days=1)
    assert policy.prunable(man, root, [m1], now=later) == [root / "scan7" / "scan7.raw"]
    assert policy.prunable(man, root, [m1]) == []  # too young today
    two = RetentionPolicy(keep_days=1, require_verified_copies=2)
    assert two.prunable(man, root, [m1], now=later) == []
    m2.transfer(man, root)
    assert two.prunable(man, root, [m1, m2], now=later) == [root / "scan7" / "scan7.raw"]
    assert all((root / f.path).exists() for f in man.files)  # deciding deletes nothing
    with pytest.raises(ValueError, match="keep_days"):
        RetentionPolicy(keep_days=-1)


# -- pack: manifest and copy in one read ---------------------------------------------------


def test_pack_equals_manifest_then_transfer(src, tmp_path):
    root, man = src
    dest = tmp_path / "wh"
    dest.mkdir()
    mover = LocalCopy(dest)
    packed, res = mover.pack(["scan7"], root=root, dataset="scan7")
    assert packed.id == man.id
    assert sorted(res.copied) == sorted(f.path for f in man.files)
    assert mover.verify(man) == []
    assert not _partials(dest)
    again, res2 = mover.pack(["scan7"], root=root, dataset="scan7")
    assert again.id == man.id
    assert res2.copied == ()
    assert len(res2.skipped) == len(man.files)


def test_pack_damaged_copy_is_removed(src, tmp_path, monkeypatch):
    root, _ = src
    dest = tmp_path / "wh"
    dest.mkdir()
    real = _localcopy.LocalCopy._check_landed

    def corrupt_then_check(self, partial, src_path, entry, dest_dir):
        if entry.size > 1_000_000:
            with open(partial, "r+b") as f:
                f.write(b"\x00\x01")
        return real(self, partial, src_path, entry, dest_dir)

    monkeypatch.setattr(_movers.LocalCopy, "_check_landed", corrupt_then_check)
    with pytest.raises(TransferError, match=r"checksum mismatch for scan7/scan7\.raw"):
        LocalCopy(dest).pack(["scan7"], root=root)
    assert not (dest / "scan7" / "scan7.raw").exists()
    assert not _partials(dest)


def test_movers_are_found_by_kind_in_one_registry(tmp_path):
    from spotkit.flows import Mover, make_mover, mover_kinds, register_mover

    assert {"local", "rsync", "relay"} <= set(mover_kinds())
    mover = make_mover("local", tmp_path)
    assert isinstance(mover, LocalCopy)
    assert mover.location == "warehouse"
    with pytest.raises(ValueError, match=r"unknown mover kind 'globus'; available: \["):
        make_mover("globus", tmp_path)
    with pytest.raises(ValueError, match="mover 'local'"):
        make_mover("local", tmp_path, colour="blue")

    class Tape(LocalCopy):
        location = "tape"
        rank = 1

    register_mover("test-tape", Tape)
    assert make_mover("test-tape", tmp_path).location == "tape"
    with pytest.raises(TypeError, match="not a subclass"):
        register_mover("bad", dict)
    assert issubclass(Tape, Mover)


# -- block checks catch one bad block in the middle of a large file -----------------------


@pytest.fixture
def big(tmp_path):
    """A file of three block-check blocks (8 MiB each), the last one short."""
    from spotkit.checksums import BLOCK_SIZE

    root = tmp_path / "src"
    root.mkdir()
    (root / "big.raw").write_bytes(os.urandom(2 * BLOCK_SIZE + 4321))
    return root, BLOCK_SIZE


def _flip_middle_block(read_fd: int, write_fd: int, block_size: int) -> None:
    """One bit of the middle block differs at the destination from the source."""
    at = block_size + 12345
    (byte,) = os.pread(read_fd, 1, at)
    os.pwrite(write_fd, bytes([byte ^ 0x10]), at)


def test_transfer_finds_one_bad_block_in_the_middle(big, tmp_path, monkeypatch):
    root, block = big
    man = make_manifest(["big.raw"], root=root, read_file_metadata=False)
    assert len(man.files[0].crc32) == 3
    real = _localcopy._copy_data

    def flaky(src_fd, dst_fd, size, progress=None):
        real(src_fd, dst_fd, size, progress)
        _flip_middle_block(src_fd, dst_fd, block)

    monkeypatch.setattr(_localcopy, "_copy_data", flaky)
    dest = tmp_path / "wh"
    dest.mkdir()
    with pytest.raises(TransferError, match=r"checksum mismatch for big\.raw") as info:
        LocalCopy(dest).transfer(man, root)
    assert info.value.transient
    assert "damaged on the way" in str(info.value)
    assert list(dest.iterdir()) == []  # nothing kept, under any name
    # the same damage at rest is named by block (the flow's verify after a restart)
    monkeypatch.undo()
    LocalCopy(dest).transfer(man, root)
    fd = os.open(dest / "big.raw", os.O_RDWR)
    try:
        _flip_middle_block(fd, fd, block)
    finally:
        os.close(fd)
    (problem,) = LocalCopy(dest).verify(man, level="crc32")
    assert f"block 1, bytes {block}-{2 * block - 1}" in problem.problem


def test_pack_finds_one_bad_block_in_the_middle(big, tmp_path, monkeypatch):
    root, block = big
    real = _localcopy._copy_hashing_data

    def flaky(src_fd, dst_fd, **kw):
        out = real(src_fd, dst_fd, **kw)
        _flip_middle_block(src_fd, dst_fd, block)
        return out

    monkeypatch.setattr(_localcopy, "_copy_hashing_data", flaky)
    dest = tmp_path / "wh"
    dest.mkdir()
    with pytest.raises(TransferError, match=r"checksum mismatch for big\.raw") as info:
        LocalCopy(dest).pack(["big.raw"], root=root, read_file_metadata=False)
    assert info.value.transient
    assert list(dest.iterdir()) == []
    monkeypatch.undo()
    man, res = LocalCopy(dest).pack(["big.raw"], root=root, read_file_metadata=False)
    assert res.copied == ("big.raw",)
    assert man.id == make_manifest(["big.raw"], root=root, read_file_metadata=False).id
    assert verify_manifest(man, dest, level="sha256") == []
    assert (dest / "big.raw").read_bytes() == (root / "big.raw").read_bytes()


def test_pack_names_a_source_read_error_and_keeps_nothing(big, tmp_path, monkeypatch):
    root, _ = big
    real = _localcopy_io.read_block
    calls = []

    def failing(fd, size, **kw):
        calls.append(size)
        if len(calls) == 2:  # the disk under the inbox fails mid-file
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, size, **kw)

    monkeypatch.setattr(_localcopy_io, "read_block", failing)
    dest = tmp_path / "wh"
    dest.mkdir()
    with pytest.raises(TransferError, match=r"source file .*big\.raw could not be read "
                       r"\(\[Errno 5\]") as info:
        LocalCopy(dest).pack(["big.raw"], root=root, read_file_metadata=False)
    assert info.value.reason == "source unreadable"
    assert list(dest.iterdir()) == []


# -- staging: the flow's ingest copies while it hashes -------------------------------------


def _stage_all(mover, root, man, key="k"):
    got = {}
    for f in man.files:
        size, _, sha, crcs, kind = mover.stage(key, root / f.path)
        got[f.path] = (size, sha, crcs, kind)
    return got


def test_staged_copies_are_checked_then_renamed_into_place(src, tmp_path, monkeypatch):
    root, man = src
    dest = tmp_path / "wh"
    dest.mkdir()
    mover = LocalCopy(dest)
    got = _stage_all(mover, root, man)
    for f in man.files:  # the checksums of record and block checks come from the copy's read
        assert got[f.path] == (f.size, f.sha256, f.crc32, f.crc32_kind)
    assert mover.staging_dir("k").is_dir()
    assert not (dest / "scan7").exists()
    monkeypatch.setattr(_localcopy.LocalCopy, "_copy_one",
                        lambda *a: pytest.fail("the source was read again"))
    placed = []
    before = {p: p.stat().st_mtime for p in root.rglob("*") if p.is_file()}
    res = mover.transfer_staged(man, root, "k", placed=placed.append)
    assert sorted(res.copied) == sorted(placed) == sorted(f.path for f in man.files)
    assert verify_manifest(man, dest) == []
    assert {p: p.stat().st_mtime for p in root.rglob("*") if p.is_file()} == before
    assert (dest / "scan7" / "scan7.raw").stat().st_mtime == pytest.approx(
        (root / "scan7" / "scan7.raw").stat().st_mtime)
    assert not any(p.is_file() for p in mover.staging_dir("k").rglob("*"))
    mover.discard_staged("k")
    assert sorted(p.name for p in dest.iterdir()) == ["scan7"]
    assert not _partials(dest)


def test_a_damaged_or_missing_staged_copy_is_never_used(src, tmp_path, caplog):
    root, man = src
    dest = tmp_path / "wh"
    dest.mkdir()
    mover = LocalCopy(dest)
    _stage_all(mover, root, man)
    staging = mover.staging_dir("k")
    raw = next(p for p in staging.iterdir() if p.name.endswith("scan7.raw"))
    with open(raw, "r+b") as f:  # one bad byte in the middle (a torn write, a bad disk)
        f.seek(1_500_000)
        f.write(b"\xff")
    next(p for p in staging.iterdir() if p.name.endswith("flat.bin")).unlink()
    # a crashed ingest's partial staging file is not a staged copy
    (staging / f".x{_movers.PARTIAL_SUFFIX}").write_bytes(b"half")
    res = mover.transfer_staged(man, root, "k")
    assert sorted(res.copied) == sorted(f.path for f in man.files)
    assert verify_manifest(man, dest) == []  # the bad copy was replaced from the source
    assert "does not match the manifest" in caplog.text
    mover.discard_staged("k")
    assert not staging.exists()


def test_a_changed_source_is_not_kept_staged(tmp_path, monkeypatch):
    root = tmp_path / "src"
    root.mkdir()
    f = root / "a.raw"
    f.write_bytes(os.urandom(3 * 2**20))
    dest = tmp_path / "wh"
    dest.mkdir()
    mover = LocalCopy(dest)
    real = _localcopy_staging._copy_hashing_data

    def grow(src_fd, dst_fd, **kw):
        out = real(src_fd, dst_fd, **kw)
        with open(f, "ab") as g:  # still being written by the detector
            g.write(b"more")
        return out

    monkeypatch.setattr(_localcopy_staging, "_copy_hashing_data", grow)
    mover.stage("k", f)
    assert not any(mover.staging_dir("k").iterdir())


def test_staging_to_a_full_warehouse_says_so_and_keeps_nothing(src, mount_tmpfs):
    root, _ = src
    dest = mount_tmpfs("full", "1m")
    mover = LocalCopy(dest)
    with pytest.raises(TransferError, match="disk full") as info:
        mover.stage("k", root / "scan7" / "scan7.raw")
    assert info.value.transient
    assert not any(p.is_file() for p in dest.rglob("*"))
    with pytest.raises(FileNotFoundError):  # the source's own error, as a plain hash
        mover.stage("k", root / "nope.raw")


def test_staging_leftovers_of_finished_datasets_are_swept(src, tmp_path):
    root, man = src
    dest = tmp_path / "wh"
    dest.mkdir()
    mover = LocalCopy(dest)
    _stage_all(mover, root, man, key="done-long-ago")
    _stage_all(mover, root, man, key="still-pending")
    asked = []

    def keep():
        asked.append(True)
        return ["still-pending"]

    assert mover.sweep_staged(keep) == [str(mover.staging_dir("done-long-ago"))]
    assert asked == [True]
    assert not mover.staging_dir("done-long-ago").exists()
    assert mover.transfer_staged(man, root, "still-pending").copied  # still usable
    assert verify_manifest(man, dest) == []
    assert mover.sweep_staged([]) == [str(mover.staging_dir("still-pending"))]
    assert sorted(p.name for p in dest.iterdir()) == ["scan7"]


def test_a_staged_copy_checked_when_staged_is_not_read_again(src, tmp_path, monkeypatch):
    root, man = src
    dest = tmp_path / "wh"
    dest.mkdir()
    mover = LocalCopy(dest)
    checked = []
    real = _localcopy.check_file

    def counting(path, entry, **kw):
        checked.append(Path(path).parent.name)
        return real(path, entry, **kw)

    for module in (_localcopy, _localcopy_staging):  # transfer, staging
        monkeypatch.setattr(module, "check_file", counting)
    _stage_all(mover, root, man)
    assert len(checked) == len(man.files)  # each staged copy re-read once, from the device
    checked.clear()
    mover.transfer_staged(man, root, "k")
    assert checked == []
    assert verify_manifest(man, dest) == []
    # another process (after a crash) does not know: it re-reads them against the manifest
    fresh = LocalCopy(tmp_path / "wh2")
    (tmp_path / "wh2").mkdir()
    _stage_all(fresh, root, man)
    other = LocalCopy(tmp_path / "wh2")
    checked.clear()
    other.transfer_staged(man, root, "k")
    assert len(checked) == len(man.files)
    assert verify_manifest(man, tmp_path / "wh2") == []
