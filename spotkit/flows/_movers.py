"""Movers: copy a dataset's files to a warehouse and prove, at the destination, that they landed.

Every mover shares one small interface (:class:`Mover`), so a Globus mover can be added
later without touching the flow:

* ``available() -> (ok, reason)`` — is the destination there and writable (outage detection);
* ``transfer(manifest, src_root, *, dest=None) -> TransferResult`` — copy, then verify;
* ``verify(manifest, dest=None, *, level="sha256") -> list[Problem]`` — re-read what is at
  the destination (``level="crc32"``: against the manifest's block crc32s, faster).

Built-ins: :class:`LocalCopy` (default; any mounted file system), :class:`Rsync` (local or
over ssh, push or pull) and :class:`Relay` (source -> relay -> destination, verified at each
hop, as SPADE did). The source is never modified or deleted by a mover; a partial file never
carries its final name; faults raise :class:`spotkit.errors.TransferError`, with
``transient=True`` when retrying later may help.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import posixpath
import shlex
import shutil
import subprocess
import threading
import time
import uuid
import zlib
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spotkit.errors import TransferError

from ._suitcase import (
    BLOCK_SIZE,
    FileEntry,
    Manifest,
    Problem,
    _assemble,
    _collect,
    _fsync_dir,
    check_file,
    default_workers,
    digest_file,
    sha256_file,
    verify_manifest,
)

__all__ = [
    "LocalCopy",
    "Mover",
    "Relay",
    "RetentionPolicy",
    "Rsync",
    "TransferResult",
]

log = logging.getLogger(__name__)

COPY_CHUNK = 16 * 2**20
PARTIAL_SUFFIX = ".spotkit-part"
MANIFEST_SUFFIX = ".spotkit-manifest.json"

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_GONE = {errno.ENOENT, errno.ENOTDIR, errno.ESTALE, errno.EIO, errno.ENOTCONN,
         errno.EHOSTDOWN, errno.ETIMEDOUT}


@dataclass(frozen=True)
class TransferResult:
    """What one transfer did. Every file listed was verified at the destination.

    Attributes
    ----------
    manifest_id : str
    mover : str
        The mover's name (``"local"``, ``"rsync"``, ``"relay"``).
    dest : str
        Where the files are now.
    copied : tuple of str
        Relative paths copied by this call.
    skipped : tuple of str
        Relative paths already there and verified (idempotent re-run).
    bytes_copied : int
    seconds : float
        Wall time, verification included.
    """

    manifest_id: str
    mover: str
    dest: str
    copied: tuple[str, ...]
    skipped: tuple[str, ...]
    bytes_copied: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        """Throughput of the copied bytes in MB/s (10**6 bytes), verification included."""
        return self.bytes_copied / 1e6 / self.seconds if self.seconds > 0 else float("inf")


def _partial_name(final: Path) -> Path:
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def _os_error(exc: OSError, *, dest, path: str | None, what: str) -> TransferError:
    """Turn an OSError at the destination into a TransferError with what to do."""
    code = exc.errno
    where = f" ({path})" if path else ""
    if code in _FULL:
        reason, todo = "disk full", "free space or raise the quota; the flow retries"
    elif code in _READ_ONLY:
        reason, todo = ("read-only or not writable",
                        "remount it read-write or fix its permissions; the flow retries")
    elif code in _GONE:
        reason, todo = "unavailable", "check that it is mounted and reachable; the flow retries"
    else:
        reason, todo = "I/O error", "check the destination; the flow retries"
    return TransferError(
        f"cannot {what} at destination {dest}{where}: {reason} "
        f"([Errno {code}] {exc.strerror}). Nothing partial kept its final name; {todo}.",
        path=path, dest=str(dest), reason=reason, transient=True, errno=code)


def _probe_dir(path: Path) -> tuple[bool, str]:
    """Is ``path`` an existing folder we can create a file in?"""
    if not path.exists():
        return False, f"destination {path} does not exist (not mounted?)"
    if not path.is_dir():
        return False, f"destination {path} is not a folder"
    # unique per call: several workers probe at once, and one must not unlink another's file
    probe = path / f".spotkit-probe-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        return False, f"destination {path} is not writable ([Errno {exc.errno}] {exc.strerror})"
    try:
        st = os.statvfs(path)
    except OSError:
        return True, "ok"
    if st.f_bavail == 0:
        return False, f"destination {path} is full"
    return True, f"ok, {st.f_bavail * st.f_frsize / 1e9:.1f} GB free"


class Mover(ABC):
    """Base of every mover: copy a manifest's files to a destination and verify them there.

    Subclasses set :attr:`name` and implement :meth:`transfer`, :meth:`verify` and
    :meth:`available`. A mover never modifies or deletes source files, never leaves a
    partial file under its final name, and reports a file only once verified at the
    destination.

    Attributes
    ----------
    name : str
        Short name recorded with each step (``"local"``, ``"rsync"``).
    dest : str or pathlib.Path
        The default destination.
    """

    name = "mover"
    dest: str | Path
    #: the catalog location name of the copies this mover makes (see Catalog.add_replicas)
    location = "warehouse"
    #: their preference among verified copies readable here (the inbox copy ranks 10)
    rank = 100

    def replica_path(self, rel: str, dest=None) -> str:
        """Where the file at ``rel`` (relative to the dataset root) lands: a local path, or
        ``user@host:/path`` for a copy on another machine."""
        base = str(self.dest if dest is None else dest)
        if getattr(self, "_remote_dest", False) and getattr(self, "ssh", None):
            return f"{self.ssh}:{posixpath.join(base, rel)}"
        return posixpath.join(base, rel) if base.startswith("/") else str(Path(base) / rel)

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """``(True, "ok...")`` when the destination can take files now, else ``(False, why)``."""

    @abstractmethod
    def transfer(self, manifest: Manifest, src_root, *, dest=None) -> TransferResult:
        """Copy the manifest's files from ``src_root`` to ``dest``, and verify them there.

        ``dest`` defaults to :attr:`dest`. Files already there and verified are skipped.

        Raises
        ------
        TransferError
            When a file cannot be copied or does not verify; ``transient`` says whether
            retrying later may help.
        """

    @abstractmethod
    def verify(self, manifest: Manifest, dest=None, *, level: str = "sha256") -> list[Problem]:
        """Re-read the files at ``dest`` (default :attr:`dest`): size and checksum per file.

        ``level`` is ``"sha256"`` (re-hash everything), ``"crc32"`` (the manifest's block
        crc32s, where the mover can check them; otherwise sha256) or ``"size"``.
        """

    def manifest_path(self, manifest: Manifest) -> str:
        """Where the manifest's copy goes, relative to the destination: beside the files.

        ``<folder of the first file>/<dataset>.spotkit-manifest.json``.
        """
        folder = posixpath.dirname(manifest.files[0].path) if manifest.files else ""
        return posixpath.join(folder, f"{manifest.dataset}{MANIFEST_SUFFIX}")

    def store_manifest(self, manifest: Manifest, dest=None) -> str:
        """Put a copy of the manifest beside the dataset at the destination (atomically).

        The suitcase travels with its contents: whoever finds the files in the warehouse
        can check them (:func:`~spotkit.flows.verify_manifest`) without the catalog.
        Writing it again is harmless.

        Returns
        -------
        str
            The copy's path at the destination.
        """
        final = Path(self.dest if dest is None else dest) / self.manifest_path(manifest)
        try:
            manifest.write(final)
        except OSError as exc:
            raise _os_error(exc, dest=final.parent, path=final.name,
                            what="write the manifest") from None
        return str(final)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.dest)!r})"


#: seconds between progress lines while one file is being copied
PROGRESS_SECONDS = 10.0


class _Progress:
    """Log ``copying <file>: 45 % (1.2 of 2.7 GB, 310 MB/s)`` at INFO every PROGRESS_SECONDS."""

    def __init__(self, what: str, total: int):
        self.what = what
        self.total = max(1, int(total))
        self.t0 = time.monotonic()
        self.next = self.t0 + PROGRESS_SECONDS

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + PROGRESS_SECONDS
        rate = done / max(now - self.t0, 1e-9) / 1e6
        log.info("copying %s: %.0f %% (%.2f of %.2f GB, %.0f MB/s)", self.what,
                 100.0 * done / self.total, done / 1e9, self.total / 1e9, rate)


def _copy_data(src_fd: int, dst_fd: int, size: int, progress=None) -> None:
    """Copy ``size`` bytes in the kernel (copy_file_range), else through a 16 MiB buffer."""
    done = 0
    use_cfr = hasattr(os, "copy_file_range")
    while done < size:
        if use_cfr:
            try:
                n = os.copy_file_range(src_fd, dst_fd, min(COPY_CHUNK, size - done))
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    use_cfr = False
                    continue
                raise
        else:
            buf = os.read(src_fd, min(COPY_CHUNK, size - done))
            n = len(buf)
            view = memoryview(buf)
            while view:
                view = view[os.write(dst_fd, view):]
        if n == 0:
            raise OSError(errno.EIO, "source file shrank while it was copied")
        done += n
        if progress is not None:
            progress(done)


def _read_block(fd: int, view: memoryview) -> int:
    """Fill ``view`` from ``fd`` (short only at end of file); return the bytes read."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    return got


def _drop_cache(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


class LocalCopy(Mover):
    """Copy to a folder on a mounted file system (the default mover).

    Each file is copied to a hidden partial name beside its final place, fsynced, then
    re-read *at the destination* and checked against the manifest's size and sha256; only
    then is it renamed to its final name (and the folder fsynced). A file already at its
    final name with the right checksum is skipped, so re-running after a crash finishes
    the job without copying twice. Source files are only read.

    Parameters
    ----------
    dest_root : path-like
        The warehouse folder; the dataset's relative paths are created under it.
    marker : str, optional
        A file that must exist in ``dest_root`` for it to count as available (e.g.
        ``".spotkit-warehouse"``): guards against writing into an empty mount point when
        the real file system is not mounted.
    drop_cache : bool, optional
        After fsync, drop the copy's pages from the page cache so the verification re-reads
        it from the device (default True; it also keeps big transfers from evicting
        everything else).
    workers : int, optional
        Files copied and verified at the same time (default: CPU count, 4 to 8), so that
        one file's checksum overlaps another's fsync.

    Examples
    --------
    >>> mover = LocalCopy("/warehouse/8.3.2")  # doctest: +SKIP
    >>> mover.available()  # doctest: +SKIP
    (True, 'ok, 812.4 GB free')
    >>> result = mover.transfer(manifest, "/inbox")  # doctest: +SKIP
    """

    name = "local"

    def __init__(self, dest_root, *, marker: str | None = None, drop_cache: bool = True,
                 workers: int | None = None):
        self.dest = Path(dest_root)
        self.marker = marker
        self.drop_cache = drop_cache
        self.workers = workers or default_workers()

    def available(self) -> tuple[bool, str]:
        """Check that the destination exists, is a folder, carries the marker and is writable."""
        if self.marker and self.dest.is_dir() and not (self.dest / self.marker).exists():
            return False, (f"destination {self.dest} lacks its marker file {self.marker!r} "
                           "(the warehouse is probably not mounted)")
        return _probe_dir(self.dest)

    def verify(self, manifest: Manifest, dest=None, *, level: str = "sha256") -> list[Problem]:
        """Re-read every file at the destination: present, size, checksum (see ``level``)."""
        return verify_manifest(manifest, self.dest if dest is None else dest, level=level,
                               workers=self.workers)

    def transfer(self, manifest: Manifest, src_root, *, dest=None) -> TransferResult:
        """Copy, verify at the destination, then rename each file into place.

        Parameters
        ----------
        manifest : Manifest
            What to copy and what it must checksum to.
        src_root : path-like
            Where the files are now (the manifest's paths are relative to it).
        dest : path-like, optional
            Destination folder (default: ``dest_root``).

        Returns
        -------
        TransferResult

        Raises
        ------
        TransferError
            Destination missing, full, read-only (``transient=True``); a file that does not
            verify at the destination (the bad copy is removed; ``path`` names the file);
            a source file missing or changed since the manifest (``transient=False``).
        """
        src_root = Path(src_root)
        dest = self.dest if dest is None else Path(dest)
        ok, why = self.available() if dest == self.dest else _probe_dir(dest)
        if not ok:
            raise TransferError(f"cannot transfer {manifest.dataset} ({manifest.id}): {why}. "
                                "The flow retries when it is back.", dest=str(dest),
                                reason="unavailable", transient=True)
        t0 = time.perf_counter()

        def one(entry):
            final = dest / entry.path
            if self._already_there(final, entry):
                return "skipped"
            self._copy_one(src_root / entry.path, final, entry, dest)
            return "copied"

        outcomes = self._in_pool(one, manifest.files, dest, [e.path for e in manifest.files])
        copied = [e.path for e, o in zip(manifest.files, outcomes, strict=True) if o == "copied"]
        skipped = [e.path for e, o in zip(manifest.files, outcomes, strict=True)
                   if o == "skipped"]
        nbytes = sum(e.size for e, o in zip(manifest.files, outcomes, strict=True)
                     if o == "copied")
        result = TransferResult(manifest.id, self.name, str(dest), tuple(copied), tuple(skipped),
                                nbytes, time.perf_counter() - t0)
        log.info("transferred %s to %s: %d copied, %d already there, %.1f MB/s",
                 manifest.id, dest, len(copied), len(skipped), result.mb_per_s)
        return result

    def _in_pool(self, fn, items, dest: Path, rels) -> list:
        """Run ``fn`` over items in threads; fsync each touched folder once; first error wins.

        After the first failure, items not started yet are not started (the retry does them).
        """
        stop = threading.Event()

        def guarded(item):
            if stop.is_set():
                return None
            try:
                return fn(item)
            except BaseException:
                stop.set()
                raise

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(guarded, item) for item in items]
        outcomes, error = [], None
        for fut in futures:
            try:
                outcomes.append(fut.result())
            except BaseException as exc:
                outcomes.append(None)
                error = error or exc
        def was_copied(out) -> bool:
            return "copied" in (out if isinstance(out, tuple) else (out,))

        touched = {(dest / rel).parent for rel, out in zip(rels, outcomes, strict=True)
                   if was_copied(out)}
        for folder in touched:
            _fsync_dir(folder)  # once per folder: makes the renames durable
        if error is not None:
            raise error
        return outcomes

    def pack(self, paths, *, root, dest=None, dataset: str | None = None,
             metadata: dict | None = None, beamline_config: dict | None = None,
             read_file_metadata: bool = True) -> tuple[Manifest, TransferResult]:
        """Make the manifest and copy in one read of the source, then verify at the destination.

        The same as :func:`~spotkit.flows.make_manifest` followed by :meth:`transfer`, but
        each source file is read once: its sha256 is computed from the very bytes written to
        the destination. The copy is then fsynced, re-read at the destination and checked
        against that checksum before it gets its final name, exactly as in :meth:`transfer`.
        A source file whose size or mtime changes while it is read is refused.

        Parameters
        ----------
        paths, root, dataset, metadata, beamline_config, read_file_metadata
            As for :func:`~spotkit.flows.make_manifest`.
        dest : path-like, optional
            Destination folder (default: ``dest_root``).

        Returns
        -------
        (Manifest, TransferResult)
            Write the manifest (:meth:`Manifest.write`) where the flow keeps it.

        Raises
        ------
        TransferError, InputFileError
            As :meth:`transfer` and :func:`~spotkit.flows.make_manifest`.
        """
        dest = self.dest if dest is None else Path(dest)
        ok, why = self.available() if dest == self.dest else _probe_dir(dest)
        if not ok:
            raise TransferError(f"cannot transfer {paths!r}: {why}. The flow retries when it "
                                "is back.", dest=str(dest), reason="unavailable",
                                transient=True)
        t0 = time.perf_counter()
        rels = _collect(paths, root)
        items = list(rels.items())

        def one(item):
            rel, src = item
            return self._copy_hashing(src, dest / rel, rel, dest)

        outcomes = self._in_pool(one, items, dest, [rel for rel, _ in items])
        entries = [entry for entry, _ in outcomes]
        man = _assemble(rels, entries, root=root, dataset=dataset, metadata=metadata,
                        beamline_config=beamline_config, read_file_metadata=read_file_metadata)
        copied = tuple(e.path for e, how in sorted(outcomes, key=lambda o: o[0].path)
                       if how == "copied")
        skipped = tuple(e.path for e, how in sorted(outcomes, key=lambda o: o[0].path)
                        if how == "skipped")
        result = TransferResult(man.id, self.name, str(dest), copied, skipped,
                                sum(e.size for e, how in outcomes if how == "copied"),
                                time.perf_counter() - t0)
        log.info("packed and transferred %s to %s: %d copied, %d already there, %.1f MB/s",
                 man.id, dest, len(copied), len(skipped), result.mb_per_s)
        return man, result

    def _copy_hashing(self, src: Path, final: Path, rel: str, dest: Path):
        """Copy one file through a buffer, hashing what is written; verify; rename."""
        try:
            src_fd = os.open(src, os.O_RDONLY)
        except OSError as exc:
            raise TransferError(f"source file {src} cannot be read ([Errno {exc.errno}] "
                                f"{exc.strerror}). Check the inbox.", path=rel, dest=str(dest),
                                reason="source unreadable", errno=exc.errno) from None
        partial = _partial_name(final)
        try:
            before = os.fstat(src_fd)
            if final.exists():
                sha, crcs = digest_file(src)
                entry = FileEntry(rel, before.st_size, sha, before.st_mtime, crcs)
                if self._already_there(final, entry):
                    return entry, "skipped"
            h = hashlib.sha256()
            crcs = []
            buf = bytearray(BLOCK_SIZE)
            view = memoryview(buf)
            progress = _Progress(rel, before.st_size)
            done = 0
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                dst_fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    while n := _read_block(src_fd, view):
                        done += n
                        progress(done)
                        out = view[:n]
                        h.update(out)
                        crcs.append(zlib.crc32(out))
                        while out:
                            out = out[os.write(dst_fd, out):]
                    os.fsync(dst_fd)
                    if self.drop_cache:
                        _drop_cache(dst_fd)
                finally:
                    os.close(dst_fd)
            except OSError as exc:
                raise _os_error(exc, dest=dest, path=rel, what="write") from None
            after = os.fstat(src_fd)
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise TransferError(
                    f"source file {src} changed while it was read (size {before.st_size} -> "
                    f"{after.st_size}); is it still being written? Nothing was kept; the flow "
                    "retries.", path=rel, dest=str(dest), reason="source changed",
                    transient=True)
            entry = FileEntry(rel, after.st_size, h.hexdigest(), after.st_mtime, tuple(crcs))
            self._check_landed(partial, src, entry, dest)
            try:
                shutil.copystat(src, partial)
                os.replace(partial, final)
            except OSError as exc:
                raise _os_error(exc, dest=dest, path=rel, what="rename") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            os.close(src_fd)
        return entry, "copied"

    def _already_there(self, final: Path, entry) -> bool:
        try:
            st = final.stat()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _os_error(exc, dest=final.parent, path=entry.path, what="inspect") from None
        if st.st_size == entry.size and check_file(final, entry, level="crc32",
                                                   workers=self.workers) is None:
            return True
        raise TransferError(
            f"destination already holds a different {entry.path} at {final} (size "
            f"{st.st_size}, manifest {entry.size}, checksum differs); it was not overwritten. "
            "Move it aside if it is stale, then retry.", path=entry.path, dest=str(final.parent),
            reason="destination conflict", transient=False)

    def _copy_one(self, src: Path, final: Path, entry, dest: Path) -> None:
        try:
            src_fd = os.open(src, os.O_RDONLY)
        except OSError as exc:
            raise TransferError(
                f"source file {src} cannot be read ([Errno {exc.errno}] {exc.strerror}); "
                f"it is listed in the manifest of {entry.path!r}. Check the inbox.",
                path=entry.path, dest=str(dest), reason="source unreadable",
                transient=False, errno=exc.errno) from None
        partial = _partial_name(final)
        try:
            src_size = os.fstat(src_fd).st_size
            if src_size != entry.size:
                raise TransferError(
                    f"source file {src} is {src_size} bytes, the manifest says {entry.size}: it "
                    "changed after the manifest was made. Rebuild the manifest.",
                    path=entry.path, dest=str(dest), reason="source changed", transient=False)
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                dst_fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    _copy_data(src_fd, dst_fd, entry.size,
                               _Progress(entry.path, entry.size))
                    os.fsync(dst_fd)
                    if self.drop_cache:
                        _drop_cache(dst_fd)
                finally:
                    os.close(dst_fd)
            except OSError as exc:
                raise _os_error(exc, dest=dest, path=entry.path, what="write") from None
            self._check_landed(partial, src, entry, dest)
            try:
                shutil.copystat(src, partial)
                os.replace(partial, final)
            except OSError as exc:
                raise _os_error(exc, dest=dest, path=entry.path, what="rename") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            os.close(src_fd)

    def _check_landed(self, partial: Path, src: Path, entry, dest: Path) -> None:
        """Re-read the copy at the destination: block crc32s (or sha256 without them)."""
        if check_file(partial, entry, level="crc32", workers=self.workers) is None:
            return
        source_ok = sha256_file(src) == entry.sha256
        why = ("the copy was damaged on the way (the source still matches)" if source_ok
               else "the source changed after the manifest was made; rebuild the manifest")
        raise TransferError(
            f"checksum mismatch for {entry.path} at destination {dest}: {why}. The bad copy "
            "was removed.", path=entry.path, dest=str(dest), reason="checksum mismatch",
            transient=source_ok)


# -- rsync -------------------------------------------------------------------------------

_RSYNC_TRANSIENT = {5, 10, 11, 12, 14, 23, 24, 30, 35, 255}


class Rsync(Mover):
    """Copy with the ``rsync`` program, locally or over ssh, then verify the checksums.

    rsync writes each file under a temporary name and renames it when complete; with
    ``--partial-dir`` an interrupted file is kept in a hidden folder (never under its final
    name) and resumed by the next run. After rsync, every file is re-read at the destination
    and checked against the manifest (over ssh with ``sha256sum``); a file that does not
    match is removed and reported.

    Parameters
    ----------
    dest : str or path-like
        The destination folder: on this machine, or on ``ssh`` when ``mode="push"``.
    ssh : str, optional
        ``"user@host"`` of the remote end. With ``mode="push"`` the destination is there;
        with ``mode="pull"`` the *source* is there and ``dest`` is local (run it on the
        warehouse side, as SPADE's pull mode does).
    mode : {"push", "pull"}
        See ``ssh``. Without ``ssh`` both mean a local copy.
    options : sequence of str
        Extra rsync options (e.g. ``("--bwlimit=200M",)``).
    ssh_options : sequence of str
        Options for ssh (default ``("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")``).
    timeout : float, optional
        Seconds rsync may go without progress before it is stopped (``--timeout``).

    Examples
    --------
    >>> Rsync("/global/cfs/warehouse", ssh="spot@dtn01.nersc.gov")  # doctest: +SKIP
    """

    name = "rsync"

    def __init__(self, dest, *, ssh: str | None = None, mode: str = "push",
                 options=(), ssh_options=("-o", "BatchMode=yes", "-o", "ConnectTimeout=10"),
                 timeout: float | None = 600):
        if mode not in ("push", "pull"):
            raise ValueError(f"unknown rsync mode {mode!r}; choose one of ['pull', 'push'] "
                             "(for relay, compose two movers with Relay)")
        if isinstance(options, str):
            raise TypeError("options must be a sequence of separate arguments, not one string")
        self.dest = str(dest)
        self.ssh = ssh
        self.mode = mode
        self.options = tuple(options)
        self.ssh_options = tuple(ssh_options)
        self.timeout = timeout

    def __repr__(self) -> str:
        at = f", ssh={self.ssh!r}, mode={self.mode!r}" if self.ssh else ""
        return f"Rsync({self.dest!r}{at})"

    @property
    def _remote_dest(self) -> bool:
        return bool(self.ssh) and self.mode == "push"

    def _ssh_argv(self, *remote: str) -> list[str]:
        return ["ssh", *self.ssh_options, self.ssh, "--", " ".join(map(shlex.quote, remote))]

    def available(self) -> tuple[bool, str]:
        """rsync installed; destination folder there and writable (over ssh when remote)."""
        if shutil.which("rsync") is None:
            return False, "the rsync program is not installed (e.g. apt-get install rsync)"
        if not self._remote_dest:
            return _probe_dir(Path(self.dest))
        res = self._run(self._ssh_argv("test", "-d", self.dest, "-a", "-w", self.dest),
                        timeout=60)
        if res.returncode == 0:
            return True, "ok"
        detail = (res.stderr or "").strip().splitlines()[-1:] or [f"exit {res.returncode}"]
        return False, (f"{self.ssh}:{self.dest} is not a writable folder or not reachable "
                       f"({detail[0]})")

    @staticmethod
    def _run(argv, *, input=None, timeout=None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                                  text=True, check=False)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(argv, 124, exc.stdout or "",
                                               f"timed out after {timeout} s")
        except FileNotFoundError as exc:
            return subprocess.CompletedProcess(argv, 127, "", str(exc))

    def transfer(self, manifest: Manifest, src_root, *, dest=None) -> TransferResult:
        """Run rsync for the manifest's files, then verify each at the destination.

        Parameters
        ----------
        manifest : Manifest
        src_root : str or path-like
            The dataset root (on ``ssh`` when ``mode="pull"``).
        dest : str or path-like, optional
            Destination folder (default: ``dest``).

        Returns
        -------
        TransferResult

        Raises
        ------
        TransferError
            rsync failed (``transient`` for full, read-only, network and timeout failures),
            or a file does not verify at the destination (the bad copy is removed).
        """
        dest = self.dest if dest is None else str(dest)
        t0 = time.perf_counter()
        src_spec = str(src_root).rstrip("/") + "/"
        dst_spec = dest.rstrip("/") + "/"
        argv = ["rsync", "--recursive", "--times", "--partial-dir=.rsync-partial",
                "--files-from=-", "--from0", "--out-format=%n", "--protect-args"]
        if self.timeout:
            argv.append(f"--timeout={int(self.timeout)}")
        if self.ssh:
            argv += ["-e", shlex.join(["ssh", *self.ssh_options])]
            if self.mode == "push":
                dst_spec = f"{self.ssh}:{dst_spec}"
            else:
                src_spec = f"{self.ssh}:{src_spec}"
        elif not Path(dest).is_dir():
            raise TransferError(f"cannot transfer {manifest.dataset} ({manifest.id}): "
                                f"destination {dest} is not a folder (not mounted?). The flow "
                                "retries when it is back.", dest=dest, reason="unavailable",
                                transient=True)
        argv += [*self.options, src_spec, dst_spec]
        file_list = "\0".join(f.path for f in manifest.files) + "\0"
        log.debug("running %s", shlex.join(argv))
        res = self._run(argv, input=file_list, timeout=None)
        if res.returncode != 0:
            raise self._rsync_error(res, manifest, dest)
        copied = {line.strip() for line in res.stdout.splitlines() if line.strip()}
        problems = self.verify(manifest, dest, level="crc32")
        if problems:
            self._remove_bad(problems, dest)
            names = ", ".join(str(p) for p in problems)
            raise TransferError(
                f"checksum mismatch at destination {dest} after rsync: {names}. The bad "
                "copies were removed; the flow retries.", path=problems[0].path, dest=dest,
                reason="checksum mismatch", transient=True)
        done = tuple(f.path for f in manifest.files if f.path in copied)
        result = TransferResult(manifest.id, self.name, dest if not self._remote_dest
                                else f"{self.ssh}:{dest}", done,
                                tuple(f.path for f in manifest.files if f.path not in copied),
                                sum(f.size for f in manifest.files if f.path in copied),
                                time.perf_counter() - t0)
        log.info("rsync %s to %s: %d copied, %d already there", manifest.id, result.dest,
                 len(result.copied), len(result.skipped))
        return result

    def _rsync_error(self, res, manifest: Manifest, dest: str) -> TransferError:
        err = (res.stderr or "").strip()
        low = err.lower()
        if "no space left" in low or "disk quota" in low:
            reason = "disk full"
        elif "read-only file system" in low or "permission denied" in low:
            reason = "read-only or not writable"
        elif res.returncode in (255, 12, 10, 5) or "connection" in low:
            reason = "unreachable"
        elif res.returncode in (124, 30, 35):
            reason = "timed out"
        else:
            reason = f"rsync exit {res.returncode}"
        transient = reason in ("disk full", "read-only or not writable", "unreachable",
                               "timed out") or res.returncode in _RSYNC_TRANSIENT
        last = err.splitlines()[-3:]
        where = f"{self.ssh}:{dest}" if self._remote_dest else dest
        return TransferError(
            f"rsync of {manifest.dataset} ({manifest.id}) to {where} failed ({reason}, exit "
            f"{res.returncode}): {' | '.join(last)}. Partial files stay in .rsync-partial and "
            f"are resumed; {'the flow retries' if transient else 'fix the command or options'}.",
            dest=where, reason=reason, transient=transient)

    def verify(self, manifest: Manifest, dest=None, *, level: str = "sha256") -> list[Problem]:
        """Re-read every file at the destination (over ssh with ``sha256sum`` when remote).

        A remote destination is always checked with sha256 (``level`` applies to local ones).
        """
        dest = self.dest if dest is None else str(dest)
        if not self._remote_dest:
            return verify_manifest(manifest, dest, level=level, workers=default_workers())
        paths = [f"{dest.rstrip('/')}/{f.path}" for f in manifest.files]
        res = self._run(self._ssh_argv("sha256sum", "--", *paths), timeout=None)
        found = {}
        for line in res.stdout.splitlines():
            digest, _, name = line.partition("  ")
            found[name] = digest
        problems = []
        for f, p in zip(manifest.files, paths, strict=True):
            if p not in found:
                problems.append(Problem(f.path, f"missing or unreadable on {self.ssh}:{dest}"))
            elif found[p] != f.sha256:
                problems.append(Problem(f.path, "sha256 differs from the manifest"))
        return problems

    def store_manifest(self, manifest: Manifest, dest=None) -> str:
        """Put a copy of the manifest beside the dataset (over ssh when remote)."""
        dest = self.dest if dest is None else str(dest)
        if not self._remote_dest:
            return super().store_manifest(manifest, dest)
        final = f"{dest.rstrip('/')}/{self.manifest_path(manifest)}"
        tmp = f"{final}.{uuid.uuid4().hex[:8]}.tmp"
        script = (f"mkdir -p {shlex.quote(posixpath.dirname(final))} && cat > "
                  f"{shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(final)}")
        res = self._run(self._ssh_argv("sh", "-c", script),
                        input=manifest.to_json(), timeout=60)
        if res.returncode != 0:
            raise TransferError(f"cannot write the manifest copy {final} on {self.ssh}: "
                                f"{res.stderr.strip()[-300:]}", dest=dest,
                                reason="manifest copy", transient=True)
        return final

    def _remove_bad(self, problems, dest: str) -> None:
        paths = [f"{dest.rstrip('/')}/{p.path}" for p in problems]
        if self._remote_dest:
            self._run(self._ssh_argv("rm", "-f", "--", *paths), timeout=60)
        else:
            for p in paths:
                Path(p).unlink(missing_ok=True)


# -- relay -------------------------------------------------------------------------------


class Relay(Mover):
    """Source -> relay folder -> destination, verified at each hop (SPADE's relay mode).

    Parameters
    ----------
    first : Mover
        Moves from the source to the relay folder (its ``dest``).
    second : Mover
        Moves from the relay folder to the final destination (its ``dest``).
    keep_relay_copy : bool, optional
        Keep the files in the relay folder after the final destination verified them
        (default False: they are removed then; the source is never touched).

    Examples
    --------
    >>> Relay(LocalCopy("/scratch/relay"), Rsync("/warehouse", ssh="spot@dtn"))  # doctest: +SKIP
    """

    name = "relay"

    def __init__(self, first: Mover, second: Mover, *, keep_relay_copy: bool = False):
        self.first = first
        self.second = second
        self.keep_relay_copy = keep_relay_copy
        self.dest = second.dest

    def __repr__(self) -> str:
        return f"Relay({self.first!r}, {self.second!r})"

    def available(self) -> tuple[bool, str]:
        """Both hops must be available."""
        for hop, mover in (("relay", self.first), ("destination", self.second)):
            ok, why = mover.available()
            if not ok:
                return False, f"{hop} hop: {why}"
        return True, "ok"

    def transfer(self, manifest: Manifest, src_root, *, dest=None) -> TransferResult:
        """Copy to the relay and verify, then on to the destination and verify there."""
        t0 = time.perf_counter()
        hop1 = self.first.transfer(manifest, src_root)
        hop2 = self.second.transfer(manifest, self.first.dest, dest=dest)
        relay_is_local = not getattr(self.first, "_remote_dest", False)
        if not self.keep_relay_copy and relay_is_local:
            relay = Path(self.first.dest)
            if relay.is_dir():
                for f in manifest.files:
                    (relay / f.path).unlink(missing_ok=True)
        return TransferResult(manifest.id, self.name, hop2.dest, hop2.copied, hop2.skipped,
                              hop1.bytes_copied + hop2.bytes_copied, time.perf_counter() - t0)

    def verify(self, manifest: Manifest, dest=None, *, level: str = "sha256") -> list[Problem]:
        """Verify at the final destination."""
        return self.second.verify(manifest, dest, level=level)

    def store_manifest(self, manifest: Manifest, dest=None) -> str:
        """Put the manifest's copy at the final destination."""
        return self.second.store_manifest(manifest, dest)

    def replica_path(self, rel: str, dest=None) -> str:
        """Where the file lands at the final destination."""
        return self.second.replica_path(rel, dest)


# -- retention ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionPolicy:
    """Which source files may be pruned: only old enough ones, verified at enough destinations.

    spotkit itself never deletes raw data; this policy only *answers* which files a
    facility's own clean-up may remove. The default (``keep_days=None``) never allows it.

    Parameters
    ----------
    keep_days : float or None
        Keep source files at least this many days after their mtime; None keeps them forever.
    require_verified_copies : int
        How many destinations must hold a verified copy (re-read and checksummed now).

    Examples
    --------
    >>> policy = RetentionPolicy(keep_days=30, require_verified_copies=2)  # doctest: +SKIP
    >>> dests = [LocalCopy("/wh1"), LocalCopy("/wh2")]  # doctest: +SKIP
    >>> policy.prunable(manifest, "/inbox", dests)  # doctest: +SKIP
    """

    keep_days: float | None = None
    require_verified_copies: int = 1

    def __post_init__(self):
        if self.keep_days is not None and self.keep_days < 0:
            raise ValueError(f"keep_days must be >= 0 or None, not {self.keep_days!r}")
        if self.require_verified_copies < 1:
            raise ValueError("require_verified_copies must be at least 1, not "
                             f"{self.require_verified_copies!r}")

    def prunable(self, manifest: Manifest, src_root, destinations, *,
                 now: datetime | None = None) -> list[Path]:
        """The source files that may be pruned now.

        A file qualifies when the policy allows pruning at all, its source still has the
        size and mtime of the manifest, it is older than ``keep_days``, and at least
        ``require_verified_copies`` of ``destinations`` hold it with the manifest's size and
        sha256 — re-verified by this call, not taken from a past record.

        Parameters
        ----------
        manifest : Manifest
        src_root : path-like
            The dataset root at the source.
        destinations : sequence of Mover
            Where copies should be; each is asked to ``verify`` (at its default dest).
        now : datetime, optional
            The current time (for tests); timezone-aware.

        Returns
        -------
        list of pathlib.Path
            Absolute source paths; empty when nothing may go.
        """
        if self.keep_days is None:
            return []
        src_root = Path(src_root)
        now = now or datetime.now(UTC)
        cutoff = (now - timedelta(days=self.keep_days)).timestamp()
        candidates = []
        for f in manifest.files:
            try:
                st = (src_root / f.path).stat()
            except OSError:
                continue
            if st.st_size != f.size or abs(st.st_mtime - f.mtime) > 1e-3 or st.st_mtime > cutoff:
                continue
            candidates.append(f.path)
        if not candidates:
            return []
        counts = dict.fromkeys(candidates, 0)
        for mover in destinations:
            wanted = set(candidates)
            sub = Manifest(manifest.dataset, tuple(f for f in manifest.files if f.path in wanted))
            bad = {p.path for p in mover.verify(sub)}
            for p in candidates:
                if p not in bad:
                    counts[p] += 1
        ok = [src_root / p for p in candidates if counts[p] >= self.require_verified_copies]
        log.info("retention for %s: %d of %d files may be pruned", manifest.id, len(ok),
                 len(manifest.files))
        return ok
