"""File facts the catalog records: absolute path, size, sha256, format."""

from __future__ import annotations

import os
from pathlib import Path

from spotkit.checksums import BLOCK_SIZE, checksum  # re-exported: they used to live here

__all__ = ["BLOCK_SIZE", "absolute", "checksum", "guess_format"]

_FORMATS = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".nxs": "hdf5",
    ".nx5": "hdf5",
    ".nx": "hdf5",
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
