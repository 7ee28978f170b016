"""How the local mover moves bytes: a kernel copy, or a copy that hashes what it writes.

:func:`_copy_data` copies in the kernel (``copy_file_range``) or through a 16 MiB buffer;
:func:`_copy_hashing_data` reads each block once, writes it and computes its block check
and the sha256 of record from the very bytes written (the sha256 in a second thread). Both
start each chunk's writeback as soon as it is written, so the copy overlaps the device's
writes; :class:`_Progress` logs a line for long copies.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

from spotkit.checksums import block_check, read_block

from ._mover_base import COPY_CHUNK

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


def _both(first, second):
    """One callable feeding a block to two consumers, in order."""
    def update(block: bytes) -> None:
        first(block)
        second(block)

    return update


class _SourceUnreadable(Exception):
    """A read of the source failed (not the destination): carries the OSError."""


def _copy_hashing_data(src_fd: int, dst_fd: int, *, block_size: int, kind: str,
                       progress=None, tap=None) -> tuple[str, tuple[int, ...], int]:
    """Copy ``src_fd`` to ``dst_fd`` in one read, hashing the very bytes written.

    Each block is read once into an immutable ``bytes``; its block check is computed and it
    is written while a second thread adds it to the sha256 (hashlib releases the GIL), at
    most one block behind the reader; its writeback starts at once. A file of one block
    is hashed inline (no thread); the next block is prefetched from the source while this
    one is processed. ``tap(block)``, when given, gets every block in order beside the
    sha256 (a folder's tree hash). Returns (hex sha256, block checks, bytes copied); a
    failed source read raises :class:`_SourceUnreadable`.
    """
    check = block_check(kind)
    h = hashlib.sha256()
    update = h.update if tap is None else _both(h.update, tap)
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
                update(block)
            else:
                if hasher is None:
                    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
                hashed = hasher.submit(update, block)  # in order: one thread
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
