"""Staging for the local mover: the flow's ingest copies each file while it hashes it.

:class:`_Staging` gives :class:`~spotkit.flows._localcopy.LocalCopy` its staging methods:
:meth:`~_Staging.stage` copies a source file into a hidden staging folder of the warehouse
in the same read as the checksum of record (the catalog's hasher at ingest), re-reads it
from the device and keeps it under a staging name; the transfer then verifies each staged
copy (:meth:`~_Staging._place_staged`) and renames it into place instead of copying it
again; :meth:`~_Staging.discard_staged` and :meth:`~_Staging.sweep_staged` remove what is
left.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from spotkit.checksums import DEFAULT_BLOCK_CHECK
from spotkit.errors import TransferError

from ._localcopy_io import _copy_hashing_data, _drop_cache, _Progress, _SourceUnreadable
from ._mover_base import PARTIAL_SUFFIX, STAGING_PREFIX, _os_error
from ._suitcase import BLOCK_SIZE, FileEntry, check_file

log = logging.getLogger("spotkit.flows._movers")


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes when a file is replaced or written: device, inode, size, mtime, ctime."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


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
