"""Readers of one plane of a 3-D array, touching only the chunks the plane crosses.

One small class per kind of storage, all with the same two members: ``shape`` and
``read_plane(axis, index, rows, cols)``. :class:`spotkit.io.Volume` holds one per pyramid
level. Each counts the storage chunks it reads (``chunks_read``), so tests and benchmarks can
check that a plane read stays a plane read.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import numpy as np

logger = logging.getLogger("spotkit.io")

__all__ = ["ArrayLevel", "H5Level", "ZarrLevel", "plane_index"]


def plane_index(axis: int, index: int, rows: slice, cols: slice) -> tuple:
    """The 3-D index of a plane: ``index`` on ``axis``, ``rows``/``cols`` on the other two."""
    out: list[Any] = [rows, cols]
    out.insert(axis, int(index))
    return tuple(out)


def _chunks_crossed(chunks: tuple[int, ...] | None, axis: int, rows: slice,
                    cols: slice) -> int:
    """How many storage chunks a plane selection crosses (1 for unchunked storage)."""
    if not chunks:
        return 1
    others = [d for d in range(3) if d != axis]
    n = 1
    for d, sl in zip(others, (rows, cols), strict=True):
        if sl.stop <= sl.start:
            return 0
        n *= (sl.stop - 1) // chunks[d] - sl.start // chunks[d] + 1
    return n


class H5Level:
    """A plane of an HDF5 dataset (kept open; reads under a lock).

    Planes across the last axis of an uncompressed chunked dataset are read chunk by chunk
    with ``read_direct_chunk`` (HDF5's element-wise hyperslab copy is ~20x slower there);
    the other planes go through one hyperslab read, which reads only the selected runs of
    uncompressed chunks.
    """

    def __init__(self, dataset, lock: threading.Lock | None = None):
        self.dataset = dataset
        self.shape = tuple(int(n) for n in dataset.shape)
        self.dtype = np.dtype(dataset.dtype)
        self.chunks = tuple(dataset.chunks) if dataset.chunks else None
        plist = dataset.id.get_create_plist()
        self.filtered = plist.get_nfilters() > 0
        self.lock = lock or threading.Lock()
        self.chunks_read = 0

    def read_plane(self, axis: int, index: int, rows: slice, cols: slice) -> np.ndarray:
        """The ``rows`` x ``cols`` part of plane ``index`` across ``axis``."""
        with self.lock:
            self.chunks_read += _chunks_crossed(self.chunks, axis, rows, cols)
            if axis == 2 and self.chunks and not self.filtered:
                return self._direct(axis, int(index), rows, cols)
            return np.asarray(self.dataset[plane_index(axis, index, rows, cols)])

    def read_slab(self, z0: int, z1: int) -> np.ndarray:
        """Planes ``z0:z1`` across the first axis (for building a pyramid)."""
        with self.lock:
            return np.asarray(self.dataset[z0:z1])

    def _direct(self, axis: int, index: int, rows: slice, cols: slice) -> np.ndarray:
        cs = self.chunks or self.shape
        oa, ob = (d for d in range(3) if d != axis)
        out = np.empty((rows.stop - rows.start, cols.stop - cols.start), self.dtype)
        dsid = self.dataset.id
        base = index // cs[axis] * cs[axis]
        fill = self.dataset.fillvalue
        for ca in range(rows.start // cs[oa] * cs[oa], rows.stop, cs[oa]):
            for cb in range(cols.start // cs[ob] * cs[ob], cols.stop, cs[ob]):
                offset = [0, 0, 0]
                offset[axis], offset[oa], offset[ob] = base, ca, cb
                a0, a1 = max(ca, rows.start), min(ca + cs[oa], rows.stop)
                b0, b1 = max(cb, cols.start), min(cb + cs[ob], cols.stop)
                target = out[a0 - rows.start:a1 - rows.start, b0 - cols.start:b1 - cols.start]
                if dsid.get_chunk_info_by_coord(tuple(offset)).byte_offset is None:
                    target[...] = fill  # never written
                    continue
                _, buf = dsid.read_direct_chunk(tuple(offset))
                chunk = np.frombuffer(buf, self.dtype).reshape(cs)
                sel: list[Any] = [slice(a0 - ca, a1 - ca), slice(b0 - cb, b1 - cb)]
                sel.insert(axis, index - base)
                target[...] = chunk[tuple(sel)]
        return out


class ZarrLevel:
    """A plane of a zarr array (zarr reads only the chunks the selection crosses)."""

    def __init__(self, array):
        self.array = array
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunks = tuple(int(c) for c in array.chunks)
        self.chunks_read = 0

    def read_plane(self, axis: int, index: int, rows: slice, cols: slice) -> np.ndarray:
        """The ``rows`` x ``cols`` part of plane ``index`` across ``axis``."""
        self.chunks_read += _chunks_crossed(self.chunks, axis, rows, cols)
        return np.asarray(self.array[plane_index(axis, index, rows, cols)])

    def read_slab(self, z0: int, z1: int) -> np.ndarray:
        """Planes ``z0:z1`` across the first axis (for building a pyramid)."""
        return np.asarray(self.array[z0:z1])


class ArrayLevel:
    """A plane of any array-like with ``shape`` and numpy-style slicing.

    numpy, dask (computed), xarray (its ``.data``) and remote arrays such as a Tiled client's
    ``ArrayClient`` (which asks the server for the selection only). ``step`` makes a coarse
    level of a source without a pyramid: every ``step``-th element along each axis, so a
    remote source sends ``1/step**2`` of the plane's bytes.
    """

    def __init__(self, array, *, step: int = 1):
        if hasattr(array, "dims") and hasattr(array, "data") and not _is_tiled(array):
            array = array.data  # xarray -> its (lazy) array
        self.array = array
        self.step = int(step)
        full = tuple(int(n) for n in array.shape)
        self.full_shape = full
        self.shape = tuple(math.ceil(n / self.step) for n in full)
        self.dtype = np.dtype(array.dtype)
        chunks = getattr(array, "chunksize", None) or getattr(array, "chunks", None)
        self.chunks = (tuple(int(c) for c in chunks)
                       if chunks and all(isinstance(c, int | np.integer) for c in chunks)
                       else None)
        self.chunks_read = 0
        self.requests = 0

    def read_plane(self, axis: int, index: int, rows: slice, cols: slice) -> np.ndarray:
        """The ``rows`` x ``cols`` part of plane ``index`` across ``axis`` (level pixels)."""
        s = self.step
        self.requests += 1
        if s == 1:
            self.chunks_read += _chunks_crossed(self.chunks, axis, rows, cols)
            idx = plane_index(axis, index, rows, cols)
        else:
            idx = plane_index(axis, index * s, slice(rows.start * s, rows.stop * s, s),
                              slice(cols.start * s, cols.stop * s, s))
        return _computed(self.array[idx])

    def read_slab(self, z0: int, z1: int) -> np.ndarray:
        """Planes ``z0:z1`` across the first axis (for building a pyramid)."""
        s = self.step
        return _computed(self.array[z0 * s:z1 * s:s, ::s, ::s])


def _computed(out) -> np.ndarray:
    if hasattr(out, "compute"):
        out = out.compute()
    return np.asarray(out)


def _is_tiled(array) -> bool:
    return type(array).__module__.split(".")[0] == "tiled"


def is_remote_array(array) -> bool:
    """True for a Tiled client array (reads go over the network)."""
    return _is_tiled(array)
