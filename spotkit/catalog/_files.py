"""File facts the catalog records: absolute path, size, sha256, format."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["BLOCK_SIZE", "absolute", "checksum", "guess_format"]

BLOCK_SIZE = 8 * 1024 * 1024  #: bytes read at a time while hashing (8 MiB)

_FORMATS = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".nxs": "hdf5",
    ".nx5": "hdf5",
    ".cxi": "hdf5",
    ".zarr": "zarr",
    ".npy": "npy",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".edf": "edf",
    ".cbf": "cbf",
    ".poni": "poni",
    ".ipynb": "ipynb",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".csv": "csv",
    ".txt": "text",
    ".dat": "text",
}


def absolute(path: str | os.PathLike) -> Path:
    """Return ``path`` as an absolute, normalised path (``~`` expanded, symlinks kept)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def guess_format(path: str | os.PathLike) -> str | None:
    """Guess a file's format from its suffix (``"hdf5"``, ``"zarr"``, ``"npy"``, ...)."""
    return _FORMATS.get(Path(path).suffix.lower())


def _hash_file(path: Path, digest) -> int:
    size = 0
    with open(path, "rb") as stream:
        while block := stream.read(BLOCK_SIZE):
            digest.update(block)
            size += len(block)
    return size


def checksum(path: str | os.PathLike) -> tuple[int, str]:
    """Return the size in bytes and the sha256 hex digest of a file or directory.

    Files are streamed in blocks of :data:`BLOCK_SIZE`. A directory (a zarr store) gets a
    tree hash: the sha256 over, for every file below it in sorted order, its relative POSIX
    path, a NUL byte, and its content; its size is the sum of the file sizes.

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
    members = sorted(p for p in path.rglob("*") if p.is_file())
    for member in members:
        digest.update(member.relative_to(path).as_posix().encode() + b"\0")
        size += _hash_file(member, digest)
    return size, digest.hexdigest()
