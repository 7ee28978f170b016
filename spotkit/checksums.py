"""Checksums of files, in one place: the catalog's sha256 of record, the transfer's block
crc32s, and a tree hash for folders.

* :func:`checksum` — size and sha256 of a file, or a tree hash of a folder (the catalog's);
* :func:`digest_file` — sha256 and one block check per block in the same read (the flow's:
  the catalog's checksum and the manifest's block checks come from one read of the source);
* :func:`tree_digest` — a folder's tree hash and every file's :func:`digest_file` in one
  read of each file (the flow's, for a folder of frames);
* :func:`sha256_file`, :func:`first_bad_block`, :func:`crc32_blocks_match` — check a copy.

Block checks are CRC-32C (Castagnoli; hardware-accelerated through ``google-crc32c``,
~25 GB/s per core here) where that package's compiled extension is installed, else zlib's
CRC-32 (~4 GB/s). Which one a list of block checks holds is recorded beside it
(:data:`BLOCK_CHECKS`), and both can be checked wherever their library is.

Files are read in blocks of :data:`BLOCK_SIZE` (constant memory) and never changed.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BLOCK_CHECKS",
    "BLOCK_SIZE",
    "DEFAULT_BLOCK_CHECK",
    "TreeDigest",
    "block_check",
    "block_check_available",
    "checksum",
    "crc32_blocks_match",
    "digest_file",
    "first_bad_block",
    "read_block",
    "sha256_file",
    "tree_digest",
    "tree_entry",
    "tree_members",
]

BLOCK_SIZE = 8 * 2**20
"""Bytes read at a time when hashing, and bytes per block check (8 MiB)."""

BLOCK_CHECKS = ("crc32", "crc32c")
"""The kinds of block check: zlib's CRC-32 and CRC-32C (Castagnoli)."""


def _crc32c_function() -> Callable[[bytes], int] | None:
    """google-crc32c's compiled CRC-32C, or None (not installed, or only its slow
    pure-Python fallback, which would make verification slower than a sha256)."""
    try:
        from google_crc32c import cext
    except ImportError:
        return None
    return cext.value


_CRC32C = _crc32c_function()

DEFAULT_BLOCK_CHECK = "crc32c" if _CRC32C is not None else "crc32"
"""The block check new manifests use: ``"crc32c"`` where google-crc32c is compiled, else
``"crc32"``."""


def block_check_available(kind: str) -> bool:
    """Whether block checks of this kind can be computed here at full speed."""
    return kind == "crc32" or (kind == "crc32c" and _CRC32C is not None)


def block_check(kind: str = DEFAULT_BLOCK_CHECK) -> Callable[[bytes], int]:
    """The function computing one block check of ``kind`` (see :data:`BLOCK_CHECKS`).

    It takes ``bytes`` (CRC-32C's extension accepts nothing else; zlib's also takes any
    buffer) and returns an unsigned 32-bit int. Both release the GIL on large blocks.

    Raises
    ------
    ValueError
        For an unknown kind, or ``"crc32c"`` without google-crc32c's compiled extension
        (``pip install google-crc32c``).

    Examples
    --------
    >>> block_check("crc32")(b"123456789") == 0xCBF43926
    True
    """
    if kind == "crc32":
        return zlib.crc32
    if kind == "crc32c":
        if _CRC32C is None:
            raise ValueError("block check 'crc32c' needs the compiled google-crc32c package "
                             "(pip install google-crc32c)")
        return _CRC32C
    raise ValueError(f"unknown block check {kind!r}; choose one of {BLOCK_CHECKS}")


def sha256_file(path, *, block_size: int = BLOCK_SIZE) -> str:
    """Hex sha256 of a file, read in ``block_size`` blocks (constant memory).

    Parameters
    ----------
    path : path-like
        The file.
    block_size : int, optional
        Bytes read at a time (8 MiB).

    Returns
    -------
    str
        64 hex digits.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> empty = pathlib.Path(tempfile.mkdtemp()) / "empty.h5"
    >>> empty.touch()
    >>> sha256_file(empty)
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    h = hashlib.sha256()
    buf = bytearray(block_size)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def digest_file(path, *, block_size: int = BLOCK_SIZE, kind: str = DEFAULT_BLOCK_CHECK,
                tap: Callable[[bytes], object] | None = None) -> tuple[str, tuple[int, ...]]:
    """sha256 of a file and the block check of each of its ``block_size`` blocks, in one read.

    The sha256 is the checksum of record; the block checks (CRC-32C, ~14x faster than
    sha256 here, or zlib's CRC-32, ~2.5x; checkable block by block in parallel) let a
    destination copy be verified quickly against the very bytes that were hashed. The
    sha256 runs in a second thread, so the next block is read while this one is hashed.

    Parameters
    ----------
    path : path-like
        The file.
    block_size : int, optional
        Bytes per block (8 MiB, :data:`BLOCK_SIZE`).
    kind : {"crc32c", "crc32"}, optional
        The block check (default :data:`DEFAULT_BLOCK_CHECK`).
    tap : callable, optional
        ``tap(block)`` with every block, in order, beside the sha256 (e.g. another
        digest's ``update``: a folder's tree hash in the same read).

    Returns
    -------
    (str, tuple of int)
        Hex sha256 and one block check per block (an empty file has no blocks).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scan.h5"
    >>> _ = path.write_bytes(b"spotkit" * 1000)
    >>> sha, crcs = digest_file(path, block_size=4096)
    >>> len(sha), len(crcs)
    (64, 2)
    """
    check = block_check(kind)
    h = hashlib.sha256()
    update = h.update if tap is None else _both(h.update, tap)
    crcs = []
    fd = os.open(path, os.O_RDONLY)
    hasher: ThreadPoolExecutor | None = None
    pending: Future | None = None
    try:
        while block := read_block(fd, block_size, prefetch=True):
            hashed: Future | None = None
            if pending is None and len(block) < block_size:  # the only block: no thread
                update(block)
            else:
                if hasher is None:  # sha256 in order, at most one block behind the reader
                    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
                hashed = hasher.submit(update, block)
            crcs.append(check(block))
            if pending is not None:
                pending.result()
            pending = hashed
    finally:
        os.close(fd)
        if hasher is not None:
            hasher.shutdown(wait=True)
    if pending is not None:
        pending.result()
    return h.hexdigest(), tuple(crcs)


def _both(first: Callable[[bytes], object],
          second: Callable[[bytes], object]) -> Callable[[bytes], None]:
    """One callable feeding a block to two consumers, in order."""
    def update(block: bytes) -> None:
        first(block)
        second(block)

    return update


def read_block(fd: int, size: int, *, prefetch: bool = False) -> bytes:
    """Read up to ``size`` bytes from ``fd`` at its position, short only at end of file.

    With ``prefetch``, ask the kernel to start reading the next ``size`` bytes now
    (POSIX_FADV_WILLNEED, asynchronous), so a cold file's next block arrives from the device
    while this one is hashed and written.
    """
    block = os.read(fd, size)
    if 0 < len(block) < size:
        parts = [block]
        got = len(block)
        while got < size and (more := os.read(fd, size - got)):
            parts.append(more)
            got += len(more)
        block = b"".join(parts)
    if prefetch and len(block) == size and hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, os.lseek(fd, 0, os.SEEK_CUR), size, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
    return block


def _block_crc(fd: int, index: int, block_size: int, size: int,
               check: Callable[[bytes], int]) -> int:
    """Block check of block ``index`` of an open file (pread: safe from several threads)."""
    want = min(block_size, size - index * block_size)
    data = os.pread(fd, want, index * block_size)
    if len(data) != want:
        raise OSError(5, "file shrank while it was verified")
    return check(data)


def crc32_blocks_match(path, crcs, size: int, *, workers: int = 1,
                       block_size: int = BLOCK_SIZE, kind: str = "crc32") -> bool:
    """Whether a file's blocks have the given block checks, reading blocks in ``workers``
    threads (see :func:`first_bad_block`, which says which block differs)."""
    return first_bad_block(path, crcs, size, workers=workers, block_size=block_size,
                           kind=kind) is None


def first_bad_block(path, crcs, size: int, *, workers: int = 1,
                    block_size: int = BLOCK_SIZE, kind: str = "crc32") -> int | None:
    """The index of the first block of a file whose block check differs, or None.

    Parameters
    ----------
    path : path-like
        The file (a copy to check); only read.
    crcs : sequence of int
        One block check per ``block_size`` block, as :func:`digest_file` gives them.
    size : int
        The size the file must have.
    workers : int, optional
        Threads reading blocks at once (pread; the checks release the GIL).
    block_size : int, optional
        Bytes per block.
    kind : {"crc32", "crc32c"}, optional
        Which block check ``crcs`` holds (manifests record it).

    Returns
    -------
    int or None
        None when every block matches; -1 when the size or the number of blocks is wrong.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "frame.raw"
    >>> _ = path.write_bytes(bytes(3000))
    >>> _, crcs = digest_file(path, block_size=1024, kind="crc32")
    >>> with open(path, "r+b") as f:
    ...     _ = f.seek(1500)
    ...     _ = f.write(b"x")
    >>> first_bad_block(path, crcs, 3000, block_size=1024, kind="crc32")
    1
    """
    check = block_check(kind)
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_size != size:
            return -1
        n = len(crcs)
        if n != -(-size // block_size):
            return -1
        def one(i: int) -> int:
            return _block_crc(fd, i, block_size, size, check)

        if workers <= 1 or n <= 1:
            return next((i for i, c in enumerate(crcs) if one(i) != c), None)
        with ThreadPoolExecutor(max_workers=min(workers, n)) as pool:
            got = pool.map(one, range(n))
            return next((i for i, (g, c) in enumerate(zip(got, crcs, strict=True)) if g != c),
                        None)
    finally:
        os.close(fd)


def _hash_file(path: Path, digest) -> int:
    size = 0
    with open(path, "rb") as stream:
        while block := stream.read(BLOCK_SIZE):
            digest.update(block)
            size += len(block)
    return size


def tree_members(folder: str | os.PathLike) -> list[tuple[str, Path]]:
    """The files below a folder in tree-hash order: ``(relative POSIX path, path)``.

    Every regular file (or link to one) at any depth, sorted by path as :func:`checksum`
    and :func:`tree_digest` hash them.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> (run / "sub").mkdir()
    >>> for name in ("frame_2.cbf", "frame_1.cbf", "sub/dark.cbf"):
    ...     _ = (run / name).write_bytes(b"x")
    >>> [rel for rel, _ in tree_members(run)]
    ['frame_1.cbf', 'frame_2.cbf', 'sub/dark.cbf']
    """
    folder = Path(folder)
    return [(p.relative_to(folder).as_posix(), p)
            for p in sorted(p for p in folder.rglob("*") if p.is_file())]


def tree_entry(rel: str) -> bytes:
    """What the tree hash takes before a file's content: its relative path and a NUL."""
    return rel.encode() + b"\0"


@dataclass(frozen=True)
class TreeDigest:
    """A folder's tree hash and its files' checksums, from one read of each file.

    Attributes
    ----------
    size : int
        Bytes read (the sum of the files' sizes).
    sha256 : str
        The tree hash of the bytes read (the same as :func:`checksum` of the folder).
    files : dict
        ``{absolute path: (size, mtime_ns, sha256, block checks, block check kind)}`` of
        every file that did not change while it was read (what
        :func:`spotkit.flows.make_manifest` takes as ``known``).
    """

    size: int
    sha256: str
    files: dict[str, tuple] = field(default_factory=dict)


def tree_digest(folder: str | os.PathLike, *, kind: str = DEFAULT_BLOCK_CHECK) -> TreeDigest:
    """A folder's tree hash and every file's sha256 and block checks, in one read.

    The tree hash is :func:`checksum`'s (the catalog's checksum of record of a folder); each
    file's blocks also feed its own sha256 and block checks (:func:`digest_file`), so a
    manifest of the folder's files needs no second read. Files are only read.

    Parameters
    ----------
    folder : path-like
        The folder (e.g. a folder of detector frames, a zarr store).
    kind : {"crc32c", "crc32"}, optional
        The block check (default :data:`DEFAULT_BLOCK_CHECK`).

    Returns
    -------
    TreeDigest

    Raises
    ------
    OSError
        A file cannot be read.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> for k in range(3):
    ...     _ = (run / f"frame_{k}.cbf").write_bytes(bytes([k]) * 1000)
    >>> got = tree_digest(run)
    >>> (got.size, got.sha256) == checksum(run)
    True
    >>> size, mtime_ns, sha, crcs, kind = got.files[str((run / "frame_1.cbf").absolute())]
    >>> sha == sha256_file(run / "frame_1.cbf"), len(crcs)
    (True, 1)
    """
    tree = hashlib.sha256()
    read = [0]

    def feed(block: bytes) -> None:
        tree.update(block)
        read[0] += len(block)

    files: dict[str, tuple] = {}
    for rel, member in tree_members(folder):
        tree.update(tree_entry(rel))
        before = member.stat()
        sha, crcs = digest_file(member, kind=kind, tap=feed)
        after = member.stat()
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            files[os.path.abspath(member)] = (after.st_size, after.st_mtime_ns, sha, crcs,
                                              kind)
    return TreeDigest(read[0], tree.hexdigest(), files)


def checksum(path: str | os.PathLike) -> tuple[int, str]:
    """Return the size in bytes and the sha256 hex digest of a file or directory.

    Files are streamed in blocks of :data:`BLOCK_SIZE`. A directory (a zarr store) gets a
    tree hash: the sha256 over, for every file below it in sorted order, its relative POSIX
    path, a NUL byte, and its content; its size is the sum of the file sizes
    (:func:`tree_digest` gives the same and each file's checksums in the same read).

    Parameters
    ----------
    path : path-like
        File or directory.

    Returns
    -------
    size : int
    sha256 : str

    Raises
    ------
    OSError
        If the path does not exist or cannot be read.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if not path.is_dir():
        size = _hash_file(path, digest)
        return size, digest.hexdigest()
    size = 0
    for rel, member in tree_members(path):
        digest.update(tree_entry(rel))
        size += _hash_file(member, digest)
    return size, digest.hexdigest()
