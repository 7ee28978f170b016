"""Generic lazy access to derived arrays: an HDF5 dataset, a .npy file or a zarr store."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import h5py
import numpy as np
from dask.base import tokenize

from spotkit import kinds
from spotkit.errors import InputFileError

from ._eiger import is_eiger_master
from ._eiger import read_series as read_eiger_series
from ._eiger import stack as eiger_stack
from ._h5 import check_exists, lazy_dataset, open_hdf5
from ._types import PathLike

__all__ = ["open_array"]

_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")
_TARGET_CHUNK_BYTES = 64 * 2**20
#: the frames of a SAXS series in spotkit's layout; an Eiger master has them in data files
_SAXS_KEY = kinds.raw_layout(kinds.SAXS_RAW).key


class NpyArrayProxy:
    """Picklable array-like over a ``.npy`` file, memory-mapped only while reading."""

    def __init__(self, path, shape, dtype):
        self.path = str(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __getitem__(self, index):
        arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return np.array(arr[index])


def _leading_axis_chunks(shape, dtype):
    if not shape:
        return ()
    inner = int(np.prod(shape[1:])) * np.dtype(dtype).itemsize
    n = max(1, min(shape[0], _TARGET_CHUNK_BYTES // max(inner, 1)))
    return (n, *shape[1:])


def _datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(
        lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset) else None
    )
    return names


def _open_hdf5_array(path: Path, key: str | None) -> da.Array:
    with open_hdf5(path) as f:
        if key is None:
            names = [n for n in _datasets(f) if f[n].ndim > 0]
            if len(names) != 1:
                raise InputFileError(
                    path,
                    f"holds {len(names)} array datasets; which one is meant is unclear.",
                    hint=f"Pass key= one of {names[:20]}.",
                )
            key = names[0]
        dset = f.get(key)
        if dset is None and key == _SAXS_KEY and is_eiger_master(f, path):
            # a Dectris Eiger master: its frames are in the data files it links
            series = read_eiger_series(f, path.resolve())
            return eiger_stack(series, series.frames_per_file)
        if not isinstance(dset, h5py.Dataset):
            raise InputFileError(
                path,
                f"has no dataset {key!r}.",
                field=key,
                hint=f"Datasets in the file: {_datasets(f)[:20]}.",
            )
        chunks = dset.chunks or _leading_axis_chunks(dset.shape, dset.dtype)
        if dset.chunks:  # read several storage chunks per dask chunk, up to ~64 MiB
            lead = _leading_axis_chunks(dset.shape, dset.dtype)
            chunks = (max(dset.chunks[0], lead[0]) if lead else (), *dset.chunks[1:])
            chunks = tuple(min(c, s) for c, s in zip(chunks, dset.shape, strict=True))
        return lazy_dataset(path, dset, chunks)


def _open_npy(path: Path) -> da.Array:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputFileError(
            path,
            f"is not a readable .npy array ({exc}).",
            hint="Write derived arrays with numpy.save.",
        ) from exc
    proxy = NpyArrayProxy(path, arr.shape, arr.dtype)
    stat = path.stat()
    name = "spotkit-npy-" + tokenize(str(path), stat.st_mtime_ns, stat.st_size)
    return da.from_array(
        proxy,
        chunks=_leading_axis_chunks(arr.shape, arr.dtype),
        name=name,
        meta=np.empty((0,) * arr.ndim, dtype=arr.dtype),
    )


def _is_zarr(path: Path) -> bool:
    markers = (".zarray", ".zgroup", "zarr.json")
    return path.suffix == ".zarr" or (path.is_dir() and any((path / m).exists() for m in markers))


def _open_zarr(path: Path, key: str | None) -> da.Array:
    try:
        import zarr  # noqa: F401  (optional dependency; dask needs it)
    except ImportError as exc:
        raise ImportError(
            f'reading the zarr store {path} needs zarr: pip install "spotkit[tomo]"'
        ) from exc
    try:
        return da.from_zarr(str(path), component=key)
    except (KeyError, ValueError, OSError, TypeError) as exc:
        raise InputFileError(
            path,
            f"cannot be opened as a zarr array ({exc}).",
            field=key,
            hint="Pass key= the array inside the store.",
        ) from exc


def open_array(path: PathLike, *, key: str | None = None) -> da.Array:
    """Open a derived array lazily as a dask array.

    Parameters
    ----------
    path : path-like
        An HDF5 file, a ``.npy`` file or a zarr store (directory).
    key : str, optional
        Dataset inside an HDF5 file or array inside a zarr group. For HDF5 it may be
        omitted when the file holds exactly one array.

    Returns
    -------
    dask.array.Array
        Reads happen at compute time; no file handle stays open; the graph is picklable.

    Raises
    ------
    InputFileError
        When the file is missing, unreadable, of an unsupported format, or lacks ``key``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import h5py, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "recon.h5"
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("volume", data=np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    >>> vol = open_array(path, key="/volume")
    >>> vol.shape, float(vol[1].sum().compute())
    ((2, 3, 4), 210.0)
    >>> np.save(path.with_suffix(".npy"), np.ones((3, 5)))
    >>> open_array(path.with_suffix(".npy")).shape
    (3, 5)
    """
    p = Path(path).expanduser().absolute()
    if _is_zarr(p):
        if not p.exists():
            raise InputFileError(p, "the zarr store does not exist.", hint="Check the path.")
        return _open_zarr(p, key)
    p = check_exists(p)
    if p.suffix == ".npy":
        return _open_npy(p)
    if p.suffix.lower() in _HDF5_SUFFIXES or h5py.is_hdf5(p):
        return _open_hdf5_array(p, key)
    raise InputFileError(
        p,
        "is not a supported array format.",
        hint=f"open_array reads HDF5 ({', '.join(_HDF5_SUFFIXES)}), .npy and zarr stores.",
    )
