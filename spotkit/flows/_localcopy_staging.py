"""Staging for the local mover: the flow's ingest copies each file while it hashes it.

:class:`_Staging` gives :class:`~spotkit.flows._localcopy.LocalCopy` its staging methods:
:meth:`~_Staging.stage` copies a source file into a hidden staging folder of the warehouse
in the same read as the checksum of record (the catalog's hasher at ingest), re-reads it
from the device and keeps it under a staging name (:meth:`~_Staging.stage_tree` does so
for every file of a folder, in the read that computes the folder's tree hash); the
transfer then verifies each staged copy (:meth:`~_Staging._place_staged`) and renames it
into place instead of copying it again; :meth:`~_Staging.discard_staged` and
:meth:`~_Staging.sweep_staged` remove what is left.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import logging
import os
import shutil
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from spotkit.checksums import DEFAULT_BLOCK_CHECK, TreeDigest, tree_entry, tree_members
from spotkit.errors import TransferError

from ._localcopy_io import _copy_hashing_data, _drop_cache, _Progress, _SourceUnreadable
from ._mover_base import PARTIAL_SUFFIX, STAGING_PREFIX, _os_error
from ._suitcase import BLOCK_SIZE, FileEntry, check_file

log = logging.getLogger("spotkit.flows._movers")


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes when a file is replaced or written: device, inode, size, mtime, ctime."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@dataclass(frozen=True)
class _Copied:
    """A source file copied to its partial staging name (open, not fsynced yet)."""

    src: Path
    staging: Path
    staged: Path  #: its staging name, once kept
    partial: Path
    dst_fd: int
    stat: os.stat_result  #: the source's, right after the read
    sha: str
    crcs: tuple[int, ...]
    kind: str
    read: int  #: bytes read (and hashed)
    unchanged: bool  #: the source's size and mtime did not change while it was read

    @property
    def size(self) -> int:
        return self.stat.st_size

    @property
    def mtime_ns(self) -> int:
        return self.stat.st_mtime_ns


class _TreeFeed:
    """A folder's tree hash fed block by block, in order, in its own thread (at most a few
    blocks behind), so it runs beside the file's own sha256."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: collections.deque[Future] = collections.deque()

    def feed(self, data: bytes) -> None:
        if len(data) < 1 << 16:  # a path, a small file: not worth a hand-over
            if self._pending:
                self._drain(0)
            self._h.update(data)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tree-sha256")
        self._pending.append(self._pool.submit(self._h.update, data))
        self._drain(2)

    def _drain(self, keep: int) -> None:
        while len(self._pending) > keep:
            self._pending.popleft().result()

    def close(self) -> str:
        """Wait for the blocks fed so far; the hex tree hash."""
        try:
            self._drain(0)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        return self._h.hexdigest()


class _ReadAhead:
    """The files of a tree in order, each opened (and its reading from the device started:
    POSIX_FADV_WILLNEED) a few files before it is copied, so a folder of small frames is
    read from a cold disk without waiting for each file in turn: yields (relative path,
    path, open fd); the caller closes each fd it gets, :meth:`close` those opened ahead."""

    #: bytes opened ahead of the file being copied (at least one file)
    AHEAD = 64 * 2**20

    def __init__(self, members):
        self._todo = collections.deque(members)
        self._open: collections.deque[tuple[str, Path, int, int]] = collections.deque()
        self._bytes = 0

    def _fill(self) -> None:
        while self._todo and (not self._open or self._bytes < self.AHEAD):
            rel, path = self._todo.popleft()
            fd = os.open(path, os.O_RDONLY)  # OSError: the source's, as a plain hash's
            try:
                size = os.fstat(fd).st_size
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(fd, 0, size, os.POSIX_FADV_WILLNEED)
            except OSError:
                size = 0
            self._open.append((rel, path, fd, size))
            self._bytes += size

    def __iter__(self):
        while True:
            self._fill()
            if not self._open:
                return
            rel, path, fd, size = self._open.popleft()
            self._bytes -= size
            yield rel, path, fd

    def close(self) -> None:
        while self._open:
            os.close(self._open.popleft()[2])


def _staged_name(src) -> str:
    """The staging file name of a source file: a hash of its real path (the catalog and the
    manifest may spell it differently), its name kept at the end for people looking."""
    path = os.path.realpath(src)
    return f"{hashlib.sha256(path.encode()).hexdigest()[:24]}-{os.path.basename(path)}"


class _Staging:
    """The staging methods of :class:`~spotkit.flows._localcopy.LocalCopy` (a mixin)."""

    dest: Path
    workers: int
    drop_cache: bool
    _copying: threading.BoundedSemaphore
    _lock: threading.Lock
    #: staged copies this process re-read from the device right after staging them:
    #: {path: (identity, block check kind, block checks)}
    _checked: dict[str, tuple]

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
        copied = self._stage_copy(key, src)
        self._stage_keep(copied)
        return copied.size, copied.mtime_ns, copied.sha, copied.crcs, copied.kind

    def stage_tree(self, key: str, folder) -> TreeDigest:
        """Copy every file of a folder into the staging folder of ``key``, in one read of
        each file that also computes the folder's tree hash.

        The flow's ingest calls this for a folder dataset (a folder of frames, a zarr
        store): the files are read one after another in tree-hash order
        (:func:`~spotkit.checksums.tree_members`); each block is written to the file's
        staging copy, block-checked, and fed to the file's sha256 and to the folder's tree
        hash (the catalog's checksum of record, :func:`~spotkit.checksums.checksum`). Each
        copy is then fsynced, re-read from the device against its block checks and given
        its staging name as in :meth:`stage`, in other threads while the next files are
        copied. :meth:`transfer` with ``stage_key=key`` renames them into place, after the
        same checks. The source is only read.

        Parameters
        ----------
        key : str
            What the staged files belong to (the flow's journal key of the dataset).
        folder : path-like
            The folder.

        Returns
        -------
        TreeDigest
            The tree hash and size of the bytes read, and the checksums of each file
            staged (a file that changed while it was read is not staged nor listed).

        Raises
        ------
        OSError
            A source file cannot be read (as a plain tree hash would).
        TransferError
            A staging copy cannot be written or does not verify (disk full...): hash
            instead. Copies staged so far stay until :meth:`discard_staged`.
        """
        tree = _TreeFeed()
        slots = threading.BoundedSemaphore(max(2, self.workers))  # copies not yet kept
        read = 0
        done: list[Future] = []

        def keep(copied: _Copied) -> _Copied | None:
            try:
                return copied if self._stage_keep(copied) else None
            finally:
                slots.release()

        pool = ThreadPoolExecutor(max_workers=max(1, self.workers),
                                  thread_name_prefix="spotkit-stage-keep")
        ahead = _ReadAhead(tree_members(folder))
        try:
            for rel, member, fd in ahead:
                if any(f.done() and f.exception() is not None for f in done[-4:]):
                    os.close(fd)
                    break  # a copy did not keep: stop early (raised below)
                tree.feed(tree_entry(rel))
                slots.acquire()
                try:
                    copied = self._stage_copy(key, member, tap=tree.feed, src_fd=fd)
                except BaseException:
                    slots.release()
                    raise
                read += copied.read
                done.append(pool.submit(keep, copied))
        finally:
            ahead.close()
            pool.shutdown(wait=True)
            sha = tree.close()
        files = {}
        for fut in done:
            copied = fut.result()  # the first TransferError
            if copied is not None:
                files[os.path.abspath(copied.src)] = (copied.size, copied.mtime_ns, copied.sha,
                                                      copied.crcs, copied.kind)
        return TreeDigest(read, sha, files)

    def _stage_copy(self, key: str, src, *, tap=None, src_fd: int | None = None) -> _Copied:
        """Copy one source file to a hidden partial name in the staging folder of ``key``,
        hashing it (``tap(block)`` with every block too); the copy is not fsynced yet.
        ``src_fd``: the source already open (it is closed here)."""
        src = Path(src)
        if src_fd is None:
            src_fd = os.open(src, os.O_RDONLY)  # OSError: the source's, as a plain hash's
        staging = self.staging_dir(key)
        staged = staging / _staged_name(src)
        # unique: a watcher that lost its lease may still be staging the same file
        partial = staging / f".{staged.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
        dst_fd = -1
        try:
            before = os.fstat(src_fd)
            kind = DEFAULT_BLOCK_CHECK
            try:
                staging.mkdir(parents=True, exist_ok=True)
                dst_fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with self._copying:
                    sha, crcs, read = _copy_hashing_data(
                        src_fd, dst_fd, block_size=BLOCK_SIZE, kind=kind,
                        progress=_Progress(src.name, before.st_size), tap=tap)
            except _SourceUnreadable as exc:
                raise exc.args[0] from None
            except OSError as exc:
                raise _os_error(exc, dest=staging, path=src.name, what="stage") from None
            after = os.fstat(src_fd)
        except BaseException:
            if dst_fd >= 0:
                os.close(dst_fd)
            partial.unlink(missing_ok=True)
            raise
        finally:
            os.close(src_fd)
        unchanged = (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
        return _Copied(src, staging, staged, partial, dst_fd, after, sha, crcs, kind, read,
                       unchanged)

    def _stage_keep(self, copied: _Copied) -> bool:
        """Out of its copy slot (so one file's fsync and read-back overlap the next one's
        copy, as in pack): fsync the copy, drop its pages, re-read it from the device
        against the block checks just computed and give it its staging name. False (the
        copy removed) when its source changed while it was read."""
        c = copied
        kept = False
        try:
            try:
                os.fsync(c.dst_fd)
                if self.drop_cache:
                    _drop_cache(c.dst_fd)
            except OSError as exc:
                raise _os_error(exc, dest=c.staging, path=c.src.name, what="stage") from None
            finally:
                os.close(c.dst_fd)
            if not c.unchanged:
                return False
            entry = FileEntry(c.src.name, c.size, c.sha, c.stat.st_mtime, c.crcs,
                              crc32_kind=c.kind)
            problem = check_file(c.partial, entry, level="crc32", workers=self.workers)
            if problem is not None:
                raise TransferError(
                    f"the staged copy of {c.src} does not match what was read ({problem}); "
                    "it was removed.", path=c.src.name, dest=str(c.staging),
                    reason="checksum mismatch", transient=True)
            try:
                os.replace(c.partial, c.staged)
                st = os.stat(c.staged)
            except OSError as exc:
                raise _os_error(exc, dest=c.staging, path=c.src.name, what="stage") from None
            kept = True
            with self._lock:
                self._checked[str(c.staged)] = (_identity(st), c.kind, c.crcs)
            return True
        finally:
            if not kept:
                c.partial.unlink(missing_ok=True)

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
