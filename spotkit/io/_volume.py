"""3-D volumes and raw scans opened for viewing: one plane at a time, in physical units.

:func:`open_volume` opens a reconstructed volume (HDF5, zarr, ``.npy``), a raw tomography
scan (its projections), an in-memory or dask array, or a remote array served by
``spotkit serve`` (a Tiled client array) as a :class:`Volume`. ``Volume.read_plane`` reads one
plane across any of the three axes, and only the storage chunks that plane (or the region of
it asked for) crosses; coarse levels come from the volume's pyramid sidecar
(:func:`spotkit.io.write_pyramid`), or for a remote array from strided requests. Axis names,
voxel sizes and units come from the file's metadata.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spotkit.errors import InputFileError

from ._volume_levels import ArrayLevel, is_remote_array

logger = logging.getLogger("spotkit.io")

__all__ = ["Axis", "Volume", "open_volume"]

_UM = "µm"
_UNIT_ALIASES = {"um": _UM, "micrometer": _UM, "micron": _UM, "µm": _UM, "μm": _UM,
                 "degree": "deg", "degrees": "deg", "deg": "deg", "nm": "nm", "mm": "mm"}


@dataclass(frozen=True)
class Axis:
    """One axis of a volume: its name, length and physical scale.

    Attributes
    ----------
    name : str
        ``"z"``, ``"y"``, ``"x"`` for a volume; ``"angle"``, ``"row"``, ``"column"`` for a
        raw scan's projections.
    size : int
        Number of samples.
    spacing : float or None
        Physical step between samples in ``units`` (None: unknown, positions in pixels).
    units : str or None
        ``"µm"``, ``"deg"``, ... (None with ``spacing`` None).
    coords : tuple of float, optional
        Positions of the samples when the file gives them (e.g. a scan's angles).
    """

    name: str
    size: int
    spacing: float | None = None
    units: str | None = None
    coords: tuple[float, ...] | None = None

    def position(self, index: int) -> float | None:
        """Physical position of sample ``index`` (None without a scale).

        Examples
        --------
        >>> Axis("z", 10, 0.5, "µm").position(4)
        2.0
        """
        if self.coords is not None and 0 <= index < len(self.coords):
            return float(self.coords[index])
        if self.spacing is None:
            return None
        return float(index) * self.spacing

    def describe(self, index: int) -> str:
        """``"z = 2.00 µm (42 / 2160)"``: the position in units and in samples.

        Examples
        --------
        >>> Axis("z", 10, 0.5, "µm").describe(4)
        'z = 2.00 µm (4 / 10)'
        >>> Axis("x", 10).describe(4)
        'x = 4 px (4 / 10)'
        """
        pos = self.position(index)
        where = f"{index} px" if pos is None else f"{pos:.2f} {self.units or ''}".rstrip()
        return f"{self.name} = {where} ({index} / {self.size})"


class Volume:
    """A 3-D array read one plane at a time, with its pyramid levels and physical axes.

    Made by :func:`open_volume`. Plane ``i`` across axis ``a`` is what numpy indexing gives:
    ``read_plane(0, i) == vol[i]``, ``read_plane(1, i) == vol[:, i, :]``,
    ``read_plane(2, i) == vol[:, :, i]``.

    Attributes
    ----------
    shape : tuple of int
        Full-resolution shape.
    dtype : numpy.dtype
    axes : tuple of Axis
        Names, spacings and units of the three axes.
    levels : list
        Level readers, full resolution first; level ``k`` is about ``2**k`` times coarser.
    value_units : str or None
        Units of the values (e.g. ``"1/cm"`` for a reconstruction).
    name : str
        What it is (file and dataset, or the array's name).
    source_key : str or None
        The HDF5 dataset or zarr path inside the file.
    remote : bool
        Read through a server (coarse levels are strided requests).
    """

    def __init__(self, levels: Sequence[Any], *, axes: Sequence[Axis] | None = None,
                 value_units: str | None = None, name: str = "", source_key: str | None = None,
                 remote: bool = False, closers: Sequence[Any] = ()):
        if not levels:
            raise ValueError("a volume needs at least its full-resolution level")
        self.levels = list(levels)
        self.shape = tuple(int(n) for n in self.levels[0].shape)
        if len(self.shape) != 3:
            raise ValueError(f"a volume is 3-D; got shape {self.shape} ({name})")
        self.dtype = np.dtype(self.levels[0].dtype)
        names = ("z", "y", "x")
        self.axes = tuple(axes) if axes is not None else tuple(
            Axis(n, s) for n, s in zip(names, self.shape, strict=True))
        if tuple(a.size for a in self.axes) != self.shape:
            raise ValueError(f"axes {[a.size for a in self.axes]} do not match {self.shape}")
        self.value_units = value_units
        self.name = name
        self.source_key = source_key
        self.remote = remote
        self._closers = list(closers)

    # -- geometry -------------------------------------------------------------------

    @property
    def voxel_size(self) -> tuple[float | None, ...]:
        """Spacing of each axis in its units (None where unknown)."""
        return tuple(a.spacing for a in self.axes)

    def factor(self, level: int) -> tuple[float, float, float]:
        """How many full-resolution samples one sample of ``level`` spans, per axis."""
        shape = self.levels[self._level(level)].shape
        fz, fy, fx = (n0 / n for n0, n in zip(self.shape, shape, strict=True))
        return fz, fy, fx

    def plane_axes(self, axis: int) -> tuple[int, int]:
        """The two axes a plane across ``axis`` shows (rows, then columns)."""
        self._axis(axis)
        a, b = (d for d in range(3) if d != axis)
        return a, b

    def plane_shape(self, axis: int, level: int = 0) -> tuple[int, int]:
        """Shape of a whole plane across ``axis`` at ``level``."""
        shape = self.levels[self._level(level)].shape
        a, b = self.plane_axes(axis)
        return int(shape[a]), int(shape[b])

    def choose_level(self, axis: int, display: int,
                     region: tuple[int, int, int, int] | None = None) -> int:
        """The coarsest level that still gives ``display`` pixels across the region.

        Parameters
        ----------
        axis : int
            The axis the plane is across.
        display : int
            Pixels of the display along the region's longer side.
        region : (row0, row1, col0, col1), optional
            Part of the plane in full-resolution pixels (default: all of it).
        """
        r0, r1, c0, c1 = self._region(axis, region)
        a, b = self.plane_axes(axis)
        best = 0
        for level in range(len(self.levels)):
            f = self.factor(level)
            if max((r1 - r0) / f[a], (c1 - c0) / f[b]) >= display:
                best = level
        return best

    # -- reading --------------------------------------------------------------------

    def read_plane(self, axis: int, index: int, *, level: int = 0,
                   region: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Read one plane (or a region of it), touching only the chunks it crosses.

        Parameters
        ----------
        axis : {0, 1, 2}
            The axis the plane is across.
        index : int
            The plane, in full-resolution samples along ``axis`` (mapped to ``level``).
        level : int
            Pyramid level (0: full resolution).
        region : (row0, row1, col0, col1), optional
            Part of the plane, in full-resolution pixels of its rows and columns.

        Returns
        -------
        numpy.ndarray
            2-D, at ``level``'s resolution.

        Examples
        --------
        >>> import numpy as np
        >>> vol = open_volume(np.arange(24).reshape(2, 3, 4))
        >>> vol.read_plane(1, 2).tolist() == np.arange(24).reshape(2, 3, 4)[:, 2, :].tolist()
        True
        """
        reader, li, rows, cols = self._locate(axis, index, level, region)
        return reader.read_plane(axis, li, rows, cols)

    def read_bytes(self, axis: int, *, level: int = 0,
                   region: tuple[int, int, int, int] | None = None) -> int:
        """Bytes of storage a plane read across ``axis`` touches (whole chunks).

        What a plane costs before it is read: a plane across per-slice chunks (1, n, n) of
        an axis other than the first touches the whole volume.

        Examples
        --------
        >>> import numpy as np
        >>> open_volume(np.zeros((4, 8, 8), np.float32), pyramid=False).read_bytes(0)
        256
        """
        reader, _, rows, cols = self._locate(axis, 0, level, region)
        itemsize = np.dtype(reader.dtype).itemsize
        chunks = getattr(reader, "chunks", None)
        if not chunks:
            return (rows.stop - rows.start) * (cols.stop - cols.start) * itemsize
        from ._volume_levels import _chunks_crossed

        per_chunk = int(np.prod(chunks)) * itemsize
        return _chunks_crossed(tuple(chunks), axis, rows, cols) * per_chunk

    def _locate(self, axis: int, index: int, level: int, region):
        level = self._level(level)
        self._axis(axis)
        n = self.shape[axis]
        if not -n <= int(index) < n:
            raise IndexError(f"plane {index} is outside 0..{n - 1} along axis {axis} "
                             f"({self.axes[axis].name})")
        index = int(index) % n
        r0, r1, c0, c1 = self._region(axis, region)
        reader = self.levels[level]
        f = self.factor(level)
        a, b = self.plane_axes(axis)
        li = min(int(index // f[axis]), reader.shape[axis] - 1)
        rows = slice(int(r0 // f[a]), min(math.ceil(r1 / f[a]), reader.shape[a]))
        cols = slice(int(c0 // f[b]), min(math.ceil(c1 / f[b]), reader.shape[b]))
        return reader, li, rows, cols

    @property
    def chunks_read(self) -> int:
        """Storage chunks read so far, all levels together."""
        return sum(getattr(lv, "chunks_read", 0) for lv in self.levels)

    def close(self) -> None:
        """Close the files the volume holds open."""
        for closer in [*self.levels, *self._closers]:
            if not hasattr(closer, "close"):
                continue
            try:
                closer.close()
            except Exception:
                logger.debug("closing %r failed", closer, exc_info=True)
        self._closers.clear()

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        sizes = " x ".join(f"{a.name} {a.size}" for a in self.axes)
        return f"<Volume {self.name}: {sizes} {self.dtype}, {len(self.levels)} level(s)>"

    # -- checks ---------------------------------------------------------------------

    def _axis(self, axis: int) -> None:
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")

    def _level(self, level: int) -> int:
        if not 0 <= int(level) < len(self.levels):
            raise ValueError(f"level {level!r} does not exist; the volume has levels "
                             f"0..{len(self.levels) - 1}")
        return int(level)

    def _region(self, axis: int, region) -> tuple[int, int, int, int]:
        a, b = self.plane_axes(axis)
        if region is None:
            return 0, self.shape[a], 0, self.shape[b]
        r0, r1, c0, c1 = (int(v) for v in region)
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, self.shape[a]), min(c1, self.shape[b])
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"region {tuple(region)} is empty or outside the plane "
                             f"{self.shape[a]} x {self.shape[b]}")
        return r0, r1, c0, c1


# -- opening --------------------------------------------------------------------------


def open_volume(source, *, key: str | None = None, pyramid: bool = True,
                axes: Sequence[Axis] | None = None) -> Volume:
    """Open a volume or a raw scan for viewing, one plane at a time.

    Parameters
    ----------
    source : path-like, array-like, xarray object or catalog Dataset
        An HDF5 file (a reconstruction such as :func:`spotkit.pipelines.run_tomo` writes,
        or a raw Data Exchange scan: its projections), a zarr array or OME-NGFF multiscale
        group, a ``.npy`` file, a catalog :class:`~spotkit.catalog.Dataset`, the
        :class:`xarray.Dataset` of :func:`spotkit.io.open_tomo`, a dataset of a remote catalog
        (``spotkit.open_catalog("http://host/api")``: its ``data`` array, read through the
        server), or a 3-D array: numpy, dask, :class:`xarray.DataArray`, or a Tiled client
        array from ``spotkit serve``.
    key : str, optional
        The dataset inside an HDF5 file (default: its only 3-D dataset) or zarr group.
    pyramid : bool
        Use the volume's pyramid sidecar (:func:`spotkit.io.write_pyramid`) when it is
        current; for a remote array, add strided coarse levels.
    axes : sequence of Axis, optional
        Override the axes found in the metadata.

    Returns
    -------
    Volume

    Raises
    ------
    InputFileError
        For a missing or unreadable file, or one without a 3-D dataset.
    ValueError
        For an array that is not 3-D.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import h5py, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "recon.h5"
    >>> with h5py.File(path, "w") as f:
    ...     d = f.create_dataset("recon", data=np.arange(60, dtype="f4").reshape(3, 4, 5),
    ...                          chunks=(1, 4, 5))
    ...     d.attrs["pixel_size_um"] = 0.65
    ...     d.attrs["units"] = "1/cm"
    >>> with open_volume(path) as vol:
    ...     plane = vol.read_plane(2, 1)
    ...     print(vol.axes[2].describe(1), vol.value_units, plane.shape, vol.chunks_read)
    x = 0.65 µm (1 / 5) 1/cm (3, 4) 3
    """
    from ._volume_meta import open_path_volume

    if isinstance(source, Volume):
        return source
    if isinstance(source, str | Path):
        return open_path_volume(Path(source), key=key, pyramid=pyramid, axes=axes)
    if hasattr(source, "primary_file") and hasattr(source, "kind"):  # a catalog Dataset
        record = source.primary_file
        if record is None:
            raise InputFileError(Path(str(source.id)), "the dataset has no files to view.")
        return open_path_volume(Path(record.path), key=key or record.key, pyramid=pyramid,
                                axes=axes, kind=source.kind)
    if hasattr(source, "arrays") and hasattr(source, "kind"):  # a RemoteDataset (serve)
        from ._volume_meta import remote_axes

        data = source["data"]
        return _array_volume(data, pyramid=pyramid, axes=axes or remote_axes(source, data))
    if hasattr(source, "data_vars") and "data" in source.data_vars:  # open_tomo's Dataset
        path = source.attrs.get("path")
        if path and source.attrs.get("format") == "dataexchange" and Path(path).exists():
            return open_path_volume(Path(path), key=None, pyramid=pyramid, axes=axes)
        from ._volume_meta import scan_axes

        return Volume([ArrayLevel(source["data"])], axes=axes or scan_axes(source),
                      name=str(source.attrs.get("path", "scan")))
    return _array_volume(source, pyramid=pyramid, axes=axes)


def _array_volume(array, *, pyramid: bool, axes) -> Volume:
    from ._volume_meta import array_axes

    if not hasattr(array, "shape"):
        array = np.asarray(array)
    if len(array.shape) != 3:
        raise ValueError(f"a volume is 3-D; got an array of shape {tuple(array.shape)}")
    remote = is_remote_array(array)
    levels: list[Any] = [ArrayLevel(array)]
    if pyramid and (remote or isinstance(array, np.ndarray)):
        step = 2  # like write_pyramid's levels: until the largest side is at most 64
        while max(math.ceil(n / (step // 2)) for n in array.shape) > 64 and step <= 256:
            levels.append(ArrayLevel(array, step=step))
            step *= 2
    meta = getattr(array, "metadata", None) or getattr(array, "attrs", None) or {}
    name = str(meta.get("name", "")) if hasattr(meta, "get") else ""
    units = meta.get("units") if hasattr(meta, "get") else None
    return Volume(levels, axes=axes or array_axes(array, meta), name=name or "array",
                  value_units=None if units is None else str(units), remote=remote)


#: shared lock for HDF5 handles opened here (the HDF5 library is not re-entrant)
H5_LOCK = threading.Lock()
