"""The default mover: a verified copy to a folder on a mounted file system."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from spotkit.checksums import DEFAULT_BLOCK_CHECK, block_check, read_block
from spotkit.errors import TransferError

from ._mover_base import (
    COPY_CHUNK,
    PARTIAL_SUFFIX,
    STAGING_PREFIX,
    Mover,
    TransferResult,
    _os_error,
    _partial_name,
    _probe_dir,
)
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
    usable_cpus,
    verify_manifest,
)

__all__ = ["LocalCopy"]

log = logging.getLogger("spotkit.flows._movers")


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


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing ``length`` bytes at ``offset`` to the device now, without waiting.

    On Linux, POSIX_FADV_DONTNEED on dirty pages starts their writeback (and drops them
    once clean). Without it nothing reaches the disk before the final fsync (the kernel
    waits for 10 % of memory to be dirty), so the copy and its writes would not overlap.
    """
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_data(src_fd: int, dst_fd: int, size: int, progress=None) -> None:
    """Copy ``size`` bytes in the kernel (copy_file_range), else through a 16 MiB buffer;
    each chunk's writeback starts as soon as it is written."""
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
            _write_all(dst_fd, buf)
        if n == 0:
            raise OSError(errno.EIO, "source file shrank while it was copied")
        _start_writeback(dst_fd, done, n)
        done += n
        if progress is not None:
            progress(done)


class _SourceUnreadable(Exception):
    """A read of the source failed (not the destination): carries the OSError."""


def _copy_hashing_data(src_fd: int, dst_fd: int, *, block_size: int, kind: str,
                       progress=None) -> tuple[str, tuple[int, ...], int]:
    """Copy ``src_fd`` to ``dst_fd`` in one read, hashing the very bytes written.

    Each block is read once into an immutable ``bytes``; its block check is computed and it
    is written while a second thread adds it to the sha256 (hashlib releases the GIL), at
    most one block behind the reader; its writeback starts at once. A file of one block
    is hashed inline (no thread); the next block is prefetched from the source while this
    one is processed. Returns (hex sha256, block checks, bytes copied); a failed source
    read raises :class:`_SourceUnreadable`.
    """
    check = block_check(kind)
    h = hashlib.sha256()
    crcs: list[int] = []
    done = 0
    hasher: ThreadPoolExecutor | None = None
    pending: Future | None = None
    try:
        while True:
            try:
                block = read_block(src_fd, block_size, prefetch=True)
            except OSError as exc:
                raise _SourceUnreadable(exc) from exc
            if not block:
                break
            hashed: Future | None = None
            if pending is None and len(block) < block_size:  # the only block: no thread
                h.update(block)
            else:
                if hasher is None:
                    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
                hashed = hasher.submit(h.update, block)  # in order: one thread
            crcs.append(check(block))
            _write_all(dst_fd, block)
            _start_writeback(dst_fd, done, len(block))
            done += len(block)
            if progress is not None:
                progress(done)
            if pending is not None:
                pending.result()  # bounds the blocks in flight to two
            pending = hashed
    finally:
        if hasher is not None:
            hasher.shutdown(wait=True)
    if pending is not None:
        pending.result()
    return h.hexdigest(), tuple(crcs), done


def _drop_cache(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes when a file is replaced or written: device, inode, size, mtime, ctime."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _staged_name(src) -> str:
    """The staging file name of a source file: a hash of its real path (the catalog and the
    manifest may spell it differently), its name kept at the end for people looking."""
    path = os.path.realpath(src)
    return f"{hashlib.sha256(path.encode()).hexdigest()[:24]}-{os.path.basename(path)}"


class LocalCopy(Mover):
    """Copy to a folder on a mounted file system (the default mover).

    Each file is copied to a hidden partial name beside its final place (its writeback
    started chunk by chunk as it is written), fsynced, its pages dropped, then re-read *from
    the device* and every block checked against the manifest's block checks (CRC-32C or
    CRC-32, computed in the same read as the sha256 of record; sha256 for manifests without
    them); only then is it renamed to its final name (and the folder fsynced). A file
    already at its final name with the right checksums is skipped, so re-running after a
    crash finishes the job without copying twice. Source files are only read.

    :meth:`transfer` copies the files of a manifest made earlier; :meth:`pack` makes the
    manifest and the copy in one read of each source file (the sha256 and block checks are
    computed from the very bytes written, in a second thread beside the writer). The
    flow's path splits pack in two around the catalog: :meth:`stage` (the catalog's hasher
    at ingest) copies each file into a hidden staging folder of the warehouse while it
    computes the checksum of record and the block checks; :meth:`transfer` with
    ``stage_key`` then fsyncs each staged copy, re-reads it from the device against the
    manifest and renames it into place (a staged copy that is missing or does not verify
    is copied again from the source); :meth:`discard_staged` and :meth:`sweep_staged`
    remove what is left.

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
    copy_slots : int, optional
        Of those, how many may be in their copy phase (read, hash, write) at once (default:
        the CPU count, at least 2, at most ``workers``). The others fsync or re-read their
        copy meanwhile, so the device's writes and reads overlap the hashing instead of all
        files reaching each phase together.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.flows import make_manifest
    >>> inbox, warehouse = (pathlib.Path(tempfile.mkdtemp()) for _ in range(2))
    >>> _ = (inbox / "scan.h5").write_bytes(b"raw detector bytes" * 100)
    >>> manifest = make_manifest(["scan.h5"], root=inbox, read_file_metadata=False)
    >>> mover = LocalCopy(warehouse)
    >>> mover.available()  # doctest: +ELLIPSIS
    (True, 'ok, ... GB free')
    >>> result = mover.transfer(manifest, inbox)
    >>> result.copied, (warehouse / "scan.h5").read_bytes() == (inbox / "scan.h5").read_bytes()
    (('scan.h5',), True)
    """

    name = "local"
    dest: Path

    def __init__(self, dest_root, *, marker: str | None = None, drop_cache: bool = True,
                 workers: int | None = None, copy_slots: int | None = None):
        self.dest = Path(dest_root)
        self.marker = marker
        self.drop_cache = drop_cache
        self.workers = workers or default_workers()
        self.copy_slots = copy_slots or min(self.workers, max(2, usable_cpus()))
        self._copying = threading.BoundedSemaphore(self.copy_slots)
        self._lock = threading.Lock()
        #: staged copies this process re-read from the device right after staging them:
        #: {path: (identity, block check kind, block checks)}
        self._checked: dict[str, tuple] = {}

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

    def transfer_staged(self, manifest: Manifest, src_root, key: str,
                        placed=None) -> TransferResult:
        """:meth:`transfer` with ``stage_key=key`` (``placed(rel)`` after each rename)."""
        return self.transfer(manifest, src_root, stage_key=key, placed=placed)

    def transfer(self, manifest: Manifest, src_root, *, dest=None,
                 stage_key: str | None = None, placed=None) -> TransferResult:
        """Copy, verify at the destination, then rename each file into place.

        Parameters
        ----------
        manifest : Manifest
            What to copy and what it must checksum to.
        src_root : path-like
            Where the files are now (the manifest's paths are relative to it).
        dest : path-like, optional
            Destination folder (default: ``dest_root``).
        stage_key : str, optional
            The key files were staged under by :meth:`stage` (the flow's ingest): a file's
            staged copy is fsynced, its blocks re-read from the device and checked against
            the manifest, and it is renamed into place instead of copied again; a staged
            copy that is missing or does not verify is dropped and the file copied from
            the source as usual. The staging folder stays until :meth:`discard_staged`.
        placed : callable, optional
            ``placed(relative path)`` after each staged copy got its final name (the
            flow's fault point).

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

        staging = None if stage_key is None or dest != self.dest else self.staging_dir(stage_key)

        def one(entry):
            final = dest / entry.path
            if self._already_there(final, entry):
                return "skipped"
            src = src_root / entry.path
            if staging is not None and self._place_staged(staging / _staged_name(src), src,
                                                          final, entry, dest):
                if placed is not None:
                    placed(entry.path)
                return "copied"
            self._copy_one(src, final, entry, dest)
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
            kind = DEFAULT_BLOCK_CHECK
            if final.exists():
                sha, crcs = digest_file(src, kind=kind)
                entry = FileEntry(rel, before.st_size, sha, before.st_mtime, crcs,
                                  crc32_kind=kind)
                if self._already_there(final, entry):
                    return entry, "skipped"
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                dst_fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    with self._copying:
                        sha, crcs, _ = _copy_hashing_data(
                            src_fd, dst_fd, block_size=BLOCK_SIZE, kind=kind,
                            progress=_Progress(rel, before.st_size))
                    os.fsync(dst_fd)
                    if self.drop_cache:
                        _drop_cache(dst_fd)
                finally:
                    os.close(dst_fd)
            except _SourceUnreadable as exc:
                err = exc.args[0]
                raise TransferError(
                    f"source file {src} could not be read ([Errno {err.errno}] "
                    f"{err.strerror}); nothing was kept. Check the inbox's disk.", path=rel,
                    dest=str(dest), reason="source unreadable", errno=err.errno,
                    transient=True) from None
            except OSError as exc:
                raise _os_error(exc, dest=dest, path=rel, what="write") from None
            after = os.fstat(src_fd)
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise TransferError(
                    f"source file {src} changed while it was read (size {before.st_size} -> "
                    f"{after.st_size}); is it still being written? Nothing was kept; the flow "
                    "retries.", path=rel, dest=str(dest), reason="source changed",
                    transient=True)
            entry = FileEntry(rel, after.st_size, sha, after.st_mtime, crcs, crc32_kind=kind)
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

    # -- staging: the flow's ingest copies while it hashes -------------------------------

    #: this mover can stage a copy while the flow's ingest hashes (see :meth:`stage`)
    can_stage = True

    def staging_dir(self, key: str) -> Path:
        """The hidden folder of the warehouse where the files staged under ``key`` wait."""
        return self.dest / f"{STAGING_PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def stage(self, key: str, src) -> tuple[int, int, str, tuple[int, ...], str]:
        """Copy one source file into the staging folder of ``key`` in one read, hashing it.

        The flow's ingest calls this as the catalog's hasher: each block of the source is
        read once, written to a hidden staging file in the warehouse (its writeback started
        at once) and block-checked while a second thread adds it to the sha256 of record.
        Out of its copy slot, the copy is fsynced, its pages dropped and every block re-read
        from the device and checked against the block checks just computed (as
        :meth:`pack` does), so one file's fsync and read-back overlap the next one's copy;
        only then does it get its staging name. It is not at any final path:
        :meth:`transfer` with ``stage_key=key`` renames it into place once its block checks
        are the manifest's and it is untouched since (same inode, size, mtime and ctime);
        otherwise, e.g. in another process after a crash, it re-reads the copy from the
        device against the manifest first. The source is only read.

        Parameters
        ----------
        key : str
            What the staged files belong to (the flow's journal key of the dataset).
        src : path-like
            A regular source file.

        Returns
        -------
        (size, mtime_ns, sha256, block checks, block check kind)
            Of the bytes read. When the source changed while it was read, nothing is kept
            staged (the values are still those of the bytes read).

        Raises
        ------
        OSError
            The source cannot be read (as a plain hash would).
        TransferError
            The staging copy cannot be written (disk full, unavailable...): hash instead.
        """
        src = Path(src)
        src_fd = os.open(src, os.O_RDONLY)  # OSError: the source's, as a plain hash's
        staging = self.staging_dir(key)
        staged = staging / _staged_name(src)
        # unique: a watcher that lost its lease may still be staging the same file
        partial = staging / f".{staged.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
        kept = False
        try:
            before = os.fstat(src_fd)
            kind = DEFAULT_BLOCK_CHECK
            try:
                staging.mkdir(parents=True, exist_ok=True)
                dst_fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    with self._copying:
                        sha, crcs, _ = _copy_hashing_data(
                            src_fd, dst_fd, block_size=BLOCK_SIZE, kind=kind,
                            progress=_Progress(src.name, before.st_size))
                    # out of its copy slot: this file's fsync and read-back overlap the
                    # next one's copy (as in pack)
                    os.fsync(dst_fd)
                    if self.drop_cache:
                        _drop_cache(dst_fd)
                finally:
                    os.close(dst_fd)
            except _SourceUnreadable as exc:
                raise exc.args[0] from None
            except OSError as exc:
                raise _os_error(exc, dest=staging, path=src.name, what="stage") from None
            after = os.fstat(src_fd)
            unchanged = ((after.st_size, after.st_mtime_ns)
                         == (before.st_size, before.st_mtime_ns))
            if unchanged:
                entry = FileEntry(src.name, after.st_size, sha, after.st_mtime, crcs,
                                  crc32_kind=kind)
                problem = check_file(partial, entry, level="crc32", workers=self.workers)
                if problem is not None:
                    raise TransferError(
                        f"the staged copy of {src} does not match what was read ({problem}); "
                        "it was removed.", path=src.name, dest=str(staging),
                        reason="checksum mismatch", transient=True)
                try:
                    os.replace(partial, staged)
                    st = os.stat(staged)
                except OSError as exc:
                    raise _os_error(exc, dest=staging, path=src.name, what="stage") from None
                kept = True
                with self._lock:
                    self._checked[str(staged)] = (_identity(st), kind, crcs)
            return after.st_size, after.st_mtime_ns, sha, crcs, kind
        finally:
            if not kept:
                partial.unlink(missing_ok=True)
            os.close(src_fd)

    def discard_staged(self, key: str) -> None:
        """Remove the staging folder of ``key`` (after its transfer, or when it is given up)."""
        shutil.rmtree(self.staging_dir(key), ignore_errors=True)

    def sweep_staged(self, keep) -> list[str]:
        """Remove the staging folders of every key not in ``keep`` (the datasets still on
        their way; or a callable giving them, asked after the folders are listed); return
        the folders removed.

        Leftovers of datasets that finished, were parked or forgotten while a watcher was
        down; a folder of a key in ``keep`` stays, to be used (after its check) or
        replaced when the dataset is ingested again.
        """
        try:
            names = [n for n in os.listdir(self.dest) if n.startswith(STAGING_PREFIX)]
        except OSError:
            return []
        if not names:
            return []
        # asked after listing: a folder another watcher creates meanwhile is not listed,
        # and one listed belongs to a dataset already in the journal
        wanted = {self.staging_dir(k).name for k in (keep() if callable(keep) else keep)}
        gone = []
        for name in names:
            if name not in wanted:
                shutil.rmtree(self.dest / name, ignore_errors=True)
                gone.append(str(self.dest / name))
        return gone

    def _place_staged(self, staged: Path, src: Path, final: Path, entry, dest: Path) -> bool:
        """Verify a staged copy (re-read from the device, unless this process did so when it
        staged it, against the same block checks, and it is untouched since) and rename it
        to its final name.

        False (and the staged copy dropped) when it is missing or does not match the
        manifest: the caller copies from the source instead. Never leaves a partial file at
        ``final``: the rename is the only step that makes the copy visible there.
        """
        try:
            fd = os.open(staged, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _os_error(exc, dest=dest, path=entry.path, what="read the staged copy") from None
        try:
            os.fsync(fd)  # fsynced when staged: nothing left to write, durable before the rename
            ident = _identity(os.fstat(fd))
            with self._lock:
                checked = self._checked.pop(str(staged), None)
            # re-read from the device when staged, against the block checks now in the
            # manifest, and not touched since (same inode, size, mtime, ctime): done
            fresh = checked is not None and checked == (ident, entry.crc32_kind, entry.crc32)
            if not fresh and self.drop_cache:
                _drop_cache(fd)
        except OSError as exc:
            staged.unlink(missing_ok=True)
            raise _os_error(exc, dest=dest, path=entry.path, what="write") from None
        finally:
            os.close(fd)
        problem = None if fresh else check_file(staged, entry, level="crc32",
                                                workers=self.workers)
        if problem is not None:
            log.warning("staged copy of %s does not match the manifest (%s): copying it "
                        "from the source again", entry.path, problem)
            staged.unlink(missing_ok=True)
            return False
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.copystat(src, staged)
            os.replace(staged, final)
        except OSError as exc:
            if exc.errno == errno.EXDEV:  # staging on another file system: copy as usual
                staged.unlink(missing_ok=True)
                return False
            raise _os_error(exc, dest=dest, path=entry.path, what="rename") from None
        return True

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
                    with self._copying:
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
