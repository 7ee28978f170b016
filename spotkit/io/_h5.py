"""HDF5 plumbing shared by the readers: safe opening, lazy picklable datasets, field helpers."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, overload

import dask.array as da
import h5py
import numpy as np
from dask.base import tokenize

from spotkit.errors import InputFileError

logger = logging.getLogger("spotkit.io")

#: Layouts that :func:`spotkit.io.detect_kind` recognises, for error messages.
SUPPORTED_LAYOUTS = (
    "'tomo/raw': Data Exchange HDF5 (/exchange/data, /exchange/data_white, "
    "/exchange/data_dark, /exchange/theta); "
    "'saxs/raw': NeXus-style HDF5 with an NXentry holding /entry/data/data "
    "(frames x rows x cols) and a pyFAI PONI file named in "
    "/entry/instrument/detector/geometry_file"
)

#: File name endings of HDF5/NeXus files.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx", ".nx5")

_TRUNCATED_HINT = (
    "The file is probably truncated or corrupt: if it is still being written, wait until "
    "the acquisition has finished (or its .done sentinel appears); otherwise copy it again "
    "from the beamline."
)


def check_exists(path) -> Path:
    """Absolute path of an existing regular file, or :class:`InputFileError`."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise InputFileError(path, "the file does not exist.", hint="Check the path.")
    if path.is_dir():
        raise InputFileError(path, "is a directory, not a file.", hint="Pass the data file.")
    return path


def sniff_hdf5(path) -> bool:
    """True when ``path`` is a regular file with the HDF5 signature (never raises)."""
    try:
        return Path(path).is_file() and bool(h5py.is_hdf5(path))
    except OSError:
        return False


@contextmanager
def quiet_hdf5(path) -> Iterator[h5py.File | None]:
    """The open HDF5 file, or None when it cannot be opened (for cheap sniffing)."""
    if not sniff_hdf5(path):
        yield None
        return
    try:
        f = h5py.File(path, "r")
    except OSError:
        yield None
        return
    try:
        yield f
    finally:
        f.close()


def as_text(value) -> str:
    """An HDF5 attribute or scalar value as text (bytes decoded, arrays' first element)."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


@contextmanager
def open_hdf5(path) -> Iterator[h5py.File]:
    """Open an HDF5 file read-only, turning every low-level failure into InputFileError.

    ``OSError`` raised while the file is open (a truncated dataset, a corrupt B-tree) is
    also converted; :class:`InputFileError` raised by the caller passes through.
    """
    path = check_exists(path)
    try:
        is_h5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise InputFileError(
            path, f"the file cannot be read ({exc}).", hint="Check its permissions."
        ) from exc
    if not is_h5:
        raise InputFileError(
            path,
            "is not an HDF5 file (no HDF5 signature in its first bytes).",
            hint=f"spotkit reads these layouts: {SUPPORTED_LAYOUTS}. Check that this is the "
            "detector's output and that the transfer completed.",
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(
            path, f"the HDF5 file cannot be opened ({exc}).", hint=_TRUNCATED_HINT
        ) from exc
    try:
        yield f
    except OSError as exc:
        raise InputFileError(
            path, f"reading the HDF5 file failed ({exc}).", hint=_TRUNCATED_HINT
        ) from exc
    finally:
        f.close()


@functools.cache
def load_filter_plugins() -> bool:
    """Register the detectors' HDF5 compression filters (``hdf5plugin``: bitshuffle, LZ4,
    Blosc...) in this process, once; True when they are registered.

    A dask worker that reads an Eiger data file calls it on its first failed read, so the
    filters need not be imported by hand on every worker, only installed there.
    """
    try:
        import hdf5plugin  # noqa: F401  (registers the filters with HDF5)
    except ImportError:
        return False
    return True


class H5ArrayProxy:
    """Picklable array-like over one HDF5 dataset that opens the file only while reading.

    Each ``__getitem__`` opens the file read-only, reads the selection and closes it, so a
    dask graph built on it holds no file handle and can be shipped to other processes.
    """

    def __init__(self, path, key: str, shape: tuple[int, ...], dtype):
        self.path = str(path)
        self.key = key
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __getitem__(self, index):
        try:
            return self._read(index)
        except OSError as exc:
            error = exc
        if "filter" in str(error) and load_filter_plugins():
            try:  # a compression filter this process had not registered yet
                return self._read(index)
            except OSError as exc:
                error = exc
        filters = "filter" in str(error)
        raise InputFileError(
            self.path,
            f"reading {self.key} failed ({error}).",
            field=self.key,
            hint=("Install the detector's compression filters here and on every dask "
                  "worker: pip install hdf5plugin (bitshuffle/LZ4 of Eiger data files)."
                  if filters else _TRUNCATED_HINT),
        ) from error

    def _read(self, index):
        with h5py.File(self.path, "r") as f:
            return f[self.key][index]

    def __repr__(self) -> str:
        return f"H5ArrayProxy({self.path!r}, {self.key!r}, shape={self.shape}, dtype={self.dtype})"


def lazy_dataset(path: Path, dset: h5py.Dataset, chunks) -> da.Array:
    """Dask array over ``dset`` of the file at ``path`` (read lazily, file closed between reads)."""
    proxy = H5ArrayProxy(path, dset.name, dset.shape, dset.dtype)
    stat = Path(path).stat()
    name = "spotkit-h5-" + tokenize(str(path), dset.name, stat.st_mtime_ns, stat.st_size, chunks)
    return da.from_array(
        proxy, chunks=chunks, name=name, meta=np.empty((0,) * proxy.ndim, dtype=proxy.dtype)
    )


def frames_per_chunk(frame_shape, dtype, *, target_bytes: int = 64 * 2**20, cap: int = 16) -> int:
    """A few frames per chunk: at most ``cap`` and about ``target_bytes``."""
    frame_bytes = int(np.prod(frame_shape)) * np.dtype(dtype).itemsize
    return int(max(1, min(cap, target_bytes // max(frame_bytes, 1))))


def normalise_chunks(chunks, n_frames: int, frame_shape, dtype, *, cap: int = 16):
    """Dask chunks for a ``(frames, rows, cols)`` dataset from the user's ``chunks``."""
    if chunks is None:
        chunks = frames_per_chunk(frame_shape, dtype, cap=cap)
    if isinstance(chunks, int | np.integer):
        return (max(1, min(int(chunks), max(n_frames, 1))), *frame_shape)
    return chunks


def get_value(f: h5py.File, key: str):
    """Value of a scalar (or small) dataset, bytes decoded; None when absent."""
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        return None
    value = obj[()]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS" and value.size == 1:
        value = value.reshape(-1)[0]
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    if isinstance(value, np.generic):
        return value.item()
    return value


def get_str(f: h5py.File, key: str, path, *, default: str = "unknown") -> str:
    """String field, or ``default`` with a logged warning."""
    value = get_value(f, key)
    if value is None or (isinstance(value, str) and not value.strip()):
        logger.warning("%s: optional field %s is missing; using %r", path, key, default)
        return default
    return str(value)


_LENGTH_TO_UM = {
    "um": 1.0,
    "µm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "nm": 1e-3,
    "mm": 1e3,
    "m": 1e6,
    "cm": 1e4,
}
_ENERGY_TO_KEV = {"kev": 1.0, "ev": 1e-3, "mev": 1e3}
_TIME_TO_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6}
_LENGTH_TO_M = {k: v * 1e-6 for k, v in _LENGTH_TO_UM.items()}

CONVERSIONS = {"um": _LENGTH_TO_UM, "keV": _ENERGY_TO_KEV, "s": _TIME_TO_S, "m": _LENGTH_TO_M}


def get_number(
    f: h5py.File,
    key: str,
    path,
    *,
    to: str | None = None,
    default_units: str | None = None,
    warn: bool = True,
) -> float | None:
    """Numeric scalar field converted to units ``to`` using its ``units`` attribute.

    Missing fields give None (with a logged warning when ``warn``).
    """
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        if warn:
            logger.warning("%s: optional field %s is missing; recorded as unknown", path, key)
        return None
    try:
        value = float(np.asarray(obj[()]).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        logger.warning("%s: field %s is not a number; recorded as unknown", path, key)
        return None
    if to is None:
        return value
    units = obj.attrs.get("units", default_units)
    if isinstance(units, bytes):
        units = units.decode()
    if units is None:
        return value
    table = CONVERSIONS[to]
    factor = table.get(str(units).strip()) or table.get(str(units).strip().lower())
    if factor is None:
        logger.warning("%s: field %s has unknown units %r; assuming %s", path, key, units, to)
        return value
    return float(f"{value * factor:.12g}")  # drop float noise of the conversion


@overload
def get_time(f: h5py.File, key: str, path: str | os.PathLike[str], *,
             required: Literal[True]) -> datetime: ...
@overload
def get_time(f: h5py.File, key: str, path: str | os.PathLike[str], *,
             required: bool) -> datetime | None: ...
def get_time(f: h5py.File, key: str, path: str | os.PathLike[str], *,
             required: bool) -> datetime | None:
    """Timezone-aware UTC datetime from an ISO-8601 string field.

    A missing required time falls back to the file's modification time (with a warning);
    a naive time is taken as UTC (with a warning).
    """
    value = get_value(f, key)
    if value is None:
        if not required:
            return None
        mtime = datetime.fromtimestamp(Path(path).stat().st_mtime, tz=UTC)
        logger.warning(
            "%s: field %s is missing; using the file time %s", path, key, mtime.isoformat()
        )
        return mtime
    try:
        t = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputFileError(
            path,
            f"the time {value!r} is not ISO-8601.",
            field=key,
            hint="Write times like 2024-03-04T08:00:00+00:00.",
        ) from exc
    if t.tzinfo is None:
        logger.warning("%s: time %s in %s has no time zone; assuming UTC", path, value, key)
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC)
