"""The default mover: a verified copy to a folder on a mounted file system.

:class:`LocalCopy` copies (or packs: manifest and copy in one read) each file to a hidden
partial name, fsyncs it, re-reads it from the device against the manifest and only then
renames it into place. How the bytes are moved is in :mod:`spotkit.flows._localcopy_io`;
staging during the flow's ingest in :mod:`spotkit.flows._localcopy_staging`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spotkit.checksums import DEFAULT_BLOCK_CHECK
from spotkit.errors import TransferError

from ._localcopy_io import (
    _copy_data,
    _copy_hashing_data,
    _drop_cache,
    _Progress,
    _SourceUnreadable,
)
from ._localcopy_staging import _staged_name, _Staging
from ._manifest import _fsync_dir
from ._mover_base import (
    Mover,
    TransferResult,
    _ahead,
    _ordered,
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
    check_file,
    default_workers,
    digest_file,
    sha256_file,
    usable_cpus,
    verify_manifest,
)

__all__ = ["LocalCopy"]

log = logging.getLogger("spotkit.flows._movers")


class LocalCopy(_Staging, Mover):
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
    can_order = True

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
                        placed=None, *, order: Sequence[str] | None = None) -> TransferResult:
        """:meth:`transfer` with ``stage_key=key`` (``placed(rel)`` after each rename)."""
        return self.transfer(manifest, src_root, stage_key=key, placed=placed, order=order)

    def transfer(self, manifest: Manifest, src_root, *, dest=None,
                 stage_key: str | None = None, placed=None,
                 order: Sequence[str] | None = None) -> TransferResult:
        """Copy, verify at the destination, then rename each file into place.

        Files start in the manifest's order, or in ``order`` first: a folder of frames
        whose frames of interest should land first (:func:`frame_transfer_order
        <spotkit.flows._movers.frame_transfer_order>`). Each file is verified before it gets
        its final name, whatever the order, and a re-run after a crash skips the files
        already there and verified. The dataset counts as complete at the destination only
        when every file verified (the flow then writes the manifest's copy beside it:
        :meth:`store_manifest`); the first files to land are not a complete copy. For a
        single HDF5 file (its frames inside it) the order does not apply: the whole file
        is copied as one.

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
            ``placed(relative path)`` after each file got its final name, verified (a
            staged copy renamed into place, or a file copied; the flow's fault point).
        order : sequence of str, optional
            Relative paths (as the manifest lists them) to copy first, in this order; the
            manifest's other files follow in its order. With several ``workers`` the files
            start in this order (and so land in about this order). The manifest is not
            changed; :attr:`TransferResult.ahead` says how many files went ahead of their
            turn, and :attr:`TransferResult.copied` lists the files in the order they went.

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
        entries = _ordered(manifest, order)
        ahead = _ahead(manifest, entries)
        t0 = time.perf_counter()

        staging = None if stage_key is None or dest != self.dest else self.staging_dir(stage_key)

        def one(entry):
            final = dest / entry.path
            if self._already_there(final, entry):
                return "skipped"
            src = src_root / entry.path
            if staging is None or not self._place_staged(staging / _staged_name(src), src,
                                                         final, entry, dest):
                self._copy_one(src, final, entry, dest)
            if placed is not None:
                placed(entry.path)
            return "copied"

        outcomes = self._in_pool(one, entries, dest, [e.path for e in entries])
        copied = [e.path for e, o in zip(entries, outcomes, strict=True) if o == "copied"]
        skipped = [e.path for e, o in zip(entries, outcomes, strict=True) if o == "skipped"]
        nbytes = sum(e.size for e, o in zip(entries, outcomes, strict=True) if o == "copied")
        result = TransferResult(manifest.id, self.name, str(dest), tuple(copied), tuple(skipped),
                                nbytes, time.perf_counter() - t0, ahead)
        log.info("transferred %s to %s: %d copied, %d already there, %.1f MB/s%s",
                 manifest.id, dest, len(copied), len(skipped), result.mb_per_s,
                 f", {ahead} file(s) first (priority order)" if ahead else "")
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
