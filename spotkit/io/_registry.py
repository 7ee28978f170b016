"""The reader registry: one place that knows every raw layout spotkit reads.

Built-in readers are listed in :data:`BUILTIN_READERS` (imported only when used);
third-party packages add theirs through the ``spotkit.readers`` entry-point group, each entry
pointing at a :class:`~spotkit.io.Reader` subclass::

    [project.entry-points."spotkit.readers"]
    mybeamline = "mypkg.readers:MyBeamlineReader"

Entry points are read the first time a reader is looked up; one that fails to load is
reported with a warning and skipped. :func:`register_reader` adds a reader at run time (a
notebook, a test). :func:`find_reader` asks each reader, most specific first, whether it
understands a path; :func:`detect_kind`, :func:`read_metadata`, :func:`check_complete`,
:func:`open_tomo` and :func:`open_saxs` dispatch through it.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from spotkit import kinds
from spotkit.errors import InputFileError

from ._info import DatasetInfo
from ._reader import Reader
from ._types import Chunks, PathLike

if TYPE_CHECKING:
    import xarray as xr

logger = logging.getLogger("spotkit.io")

__all__ = [
    "BUILTIN_READERS",
    "ENTRY_POINT_GROUP",
    "check_complete",
    "detect_kind",
    "find_reader",
    "get_reader",
    "list_readers",
    "open_saxs",
    "open_tomo",
    "read_metadata",
    "register_reader",
    "supported_layouts",
]

#: name -> "module:class" of the readers shipped with spotkit.
BUILTIN_READERS = {
    "nxtomo": "spotkit.io._nxtomo:NXtomoReader",
    "dxchange": "spotkit.io._dxchange:DataExchangeReader",
    "nexus-saxs": "spotkit.io._saxs:SaxsNexusReader",
    "frame-folder": "spotkit.io._framefolder:FrameFolderReader",
}
ENTRY_POINT_GROUP = "spotkit.readers"

_lock = threading.Lock()
_registered: dict[str, Reader] = {}  # added at run time by register_reader


def _load_class(target: str) -> type:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.cache
def _builtin(name: str) -> Reader:
    return _load_class(BUILTIN_READERS[name])()


@functools.lru_cache(maxsize=1)
def _plugins() -> dict[str, Reader]:
    found: dict[str, Reader] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_READERS:
            if ep.value != BUILTIN_READERS[ep.name]:  # spotkit's own table lists them too
                warnings.warn(f"reader plugin {ep.value!r} uses the reserved name {ep.name!r}; "
                              "it is ignored", RuntimeWarning, stacklevel=3)
            continue
        try:
            reader = ep.load()()
            if not isinstance(reader, Reader):
                raise TypeError(f"{reader!r} is not a spotkit.io.Reader")
        except Exception as exc:  # a broken plugin must not break spotkit
            warnings.warn(f"cannot load reader {ep.name!r} from {ep.value!r}: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)
            continue
        found[ep.name] = reader
    return found


def list_readers() -> list[str]:
    """Names of every registered reader, in the order they are asked (most specific first).

    Examples
    --------
    >>> {"nxtomo", "dxchange", "nexus-saxs", "frame-folder"} <= set(list_readers())
    True
    """
    return [r.name for r in _ordered()]


def get_reader(name: str) -> Reader:
    """The reader registered as ``name``.

    Raises
    ------
    ValueError
        If no reader has that name.

    Examples
    --------
    >>> get_reader("nxtomo").kind
    'tomo/raw'
    """
    if name in BUILTIN_READERS:
        return _builtin(name)
    with _lock:
        if name in _registered:
            return _registered[name]
    plugins = _plugins()
    if name in plugins:
        return plugins[name]
    raise ValueError(f"unknown reader {name!r}; choose one of {list_readers()}")


def register_reader(reader: Reader, *, replace: bool = False) -> Reader:
    """Add a reader at run time (entry points are the way for an installed package).

    Parameters
    ----------
    reader : Reader
        An instance of a :class:`~spotkit.io.Reader` subclass with a ``name`` and ``kind``.
    replace : bool
        Replace a reader registered earlier under the same name (built-ins cannot be
        replaced; give yours a higher ``priority`` instead).

    Returns
    -------
    Reader
        ``reader``, so the call can decorate an instantiation.

    Raises
    ------
    TypeError
        If ``reader`` is not a Reader instance.
    ValueError
        If it has no name or kind, or the name is taken.
    """
    if isinstance(reader, type) or not isinstance(reader, Reader):
        raise TypeError(f"register_reader takes a spotkit.io.Reader instance, not {reader!r}")
    if not reader.name or not reader.kind:
        raise ValueError(f"{reader!r} needs a name and a kind (e.g. 'tomo/raw')")
    if reader.name in BUILTIN_READERS:
        raise ValueError(f"{reader.name!r} is a built-in reader's name; choose another")
    with _lock:
        if reader.name in _registered and not replace:
            raise ValueError(f"a reader named {reader.name!r} is already registered; "
                             "pass replace=True to replace it")
        _registered[reader.name] = reader
    return reader


def _unregister(name: str) -> None:
    """Forget a reader added by :func:`register_reader` (tests)."""
    with _lock:
        _registered.pop(name, None)


def _ordered() -> list[Reader]:
    readers = [_builtin(n) for n in BUILTIN_READERS]
    with _lock:
        readers += list(_registered.values())
    readers += list(_plugins().values())
    # stable: equal priorities keep the table order
    return sorted(readers, key=lambda r: -r.priority)


def supported_layouts() -> str:
    """One line per registered reader: its name, kind and layout (for error messages)."""
    return "; ".join(f"{r.name} ({r.kind}): {r.layout}" for r in _ordered())


def folder_readers() -> list[Reader]:
    """Readers whose datasets are folders (the watcher asks them about each folder)."""
    return [r for r in _ordered() if r.folder]


def watched_suffixes() -> tuple[str, ...]:
    """File name endings of every file-based layout (what the watcher looks at)."""
    out: list[str] = []
    for r in _ordered():
        out += [s.lower() for s in r.suffixes if s.lower() not in out]
    return tuple(out)


def find_reader(path: PathLike) -> Reader:
    """The reader that understands ``path`` (a file, or a folder for folder layouts).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Reader

    Raises
    ------
    InputFileError
        The path does not exist, is a damaged HDF5 file (with what is wrong), or no reader
        recognises it (the message lists the supported layouts).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.sim import simulate_tomo_scan, write_nxtomo
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan.h5", shape=(32, 2, 32), seed=0)
    >>> _ = write_nxtomo(work / "scan.nxs", work / "scan.h5", variant="esrf")
    >>> find_reader(work / "scan.nxs").name, find_reader(work / "scan.h5").name
    ('nxtomo', 'dxchange')
    """
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise InputFileError(path, "does not exist.", hint="Check the path.")
    for reader in _ordered():
        try:
            if reader.sniff(path):
                return reader
        except Exception as exc:
            logger.warning("reader %r failed to sniff %s: %s", reader.name, path, exc)
    if path.is_file():
        from ._h5 import HDF5_SUFFIXES, open_hdf5, sniff_hdf5

        if path.suffix.lower() in HDF5_SUFFIXES or sniff_hdf5(path):
            with open_hdf5(path):  # raises the precise problem of a damaged HDF5 file
                pass
            raise InputFileError(path, "is an HDF5 file in a layout spotkit does not "
                                 "recognise.", hint=f"Supported layouts: {supported_layouts()}.")
        raise InputFileError(path, "is a file in a layout spotkit does not recognise.",
                             hint=f"Supported layouts: {supported_layouts()}.")
    raise InputFileError(path, "is a folder in a layout spotkit does not recognise (no "
                         "reader takes it as one dataset).",
                         hint=f"Supported layouts: {supported_layouts()}.")


def detect_kind(path: PathLike) -> str:
    """The dataset kind of a raw file or folder: ``"tomo/raw"`` or ``"saxs/raw"``...

    Parameters
    ----------
    path : path-like
        A raw file (Data Exchange, NXtomo, NeXus SAXS) or a folder of detector frames.

    Returns
    -------
    str

    Raises
    ------
    InputFileError
        When no reader recognises it (the message lists the supported layouts).
    """
    return find_reader(path).kind


def read_metadata(path: PathLike) -> DatasetInfo:
    """Read the metadata a raw dataset holds about itself, through its reader.

    Parameters
    ----------
    path : path-like
        A Data Exchange or NXtomo tomography file, a NeXus SAXS/GISAXS series (an Eiger
        master: its data files are listed with role ``"frames"``), or a folder of detector
        frames (with its PONI and metadata sidecar).

    Returns
    -------
    DatasetInfo
        ``files`` lists every file (or folder) that belongs to the dataset with its role;
        missing optional fields (energy, sample name, ...) are ``"unknown"`` or None, with
        a logged warning.

    Raises
    ------
    InputFileError
        When the dataset is unreadable, lacks a required field, or no reader knows it.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.sim import simulate_tomo_scan
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scan.h5"
    >>> _ = simulate_tomo_scan(path, shape=(32, 2, 32), seed=0)
    >>> info = read_metadata(path)
    >>> info.kind, info.metadata["n_angles"]
    ('tomo/raw', 32)
    """
    path = Path(path).expanduser().absolute()
    return find_reader(path).read_metadata(path)


def check_complete(path: PathLike) -> tuple[str | None, str | None]:
    """Whether a raw dataset's acquisition has finished, as its reader judges it.

    Parameters
    ----------
    path : path-like
        A raw file or a folder of frames.

    Returns
    -------
    (kind, problem) : tuple
        ``(kind, None)`` when it is complete, ``(None, reason)`` otherwise (unknown,
        unreadable, or still being written: e.g. ``"12 of 20 frames"``).
    """
    try:
        reader = find_reader(path)
    except (InputFileError, OSError) as exc:
        return None, _first_line(exc)
    try:
        ok, problem = reader.check_complete(Path(path).expanduser().absolute())
    except (InputFileError, OSError, ValueError) as exc:
        return None, _first_line(exc)
    return (reader.kind, None) if ok else (None, problem or "incomplete")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _open_kind(path, kind: str, chunks, opener: str):
    path = Path(path).expanduser().absolute()
    reader = find_reader(path)
    if reader.kind != kind:
        other = {kinds.TOMO_RAW: "open_tomo", kinds.SAXS_RAW: "open_saxs"}.get(reader.kind)
        raise InputFileError(
            path, f"is a {reader.kind} dataset ({reader.name} layout), not {kind}.",
            hint=(f"Open it with spotkit.io.{other}." if other else
                  f"Open it with the '{reader.name}' reader: "
                  f"spotkit.io.get_reader({reader.name!r}).open(path)."))
    logger.debug("%s: %s opens %s", opener, reader.name, path)
    return reader.open(path, chunks=chunks)


def open_tomo(path: PathLike, *, chunks: Chunks = None) -> xr.Dataset:
    """Open a tomography scan lazily, whatever layout it was written in.

    Parameters
    ----------
    path : path-like
        A Data Exchange HDF5 file (ALS, APS) or a NeXus NXtomo file (Diamond, ESRF, PSI);
        opened read-only, never modified.
    chunks : int or tuple, optional
        Projections per dask chunk (int), or explicit dask chunks for ``data``. Default: a
        few projections (at most 16, about 64 MiB) per chunk.

    Returns
    -------
    xarray.Dataset
        Variables ``data`` (angle, row, col), ``flats`` (flat, row, col) and ``darks``
        (dark, row, col), dask-backed; coordinates ``theta`` (angle, degrees), ``row`` and
        ``col``; ``attrs`` hold the metadata of :func:`read_metadata` plus ``kind``,
        ``beamline``, ``sample``, ``proposal``, ``start_time``, ``end_time``, ``title`` and
        ``path``.

    Raises
    ------
    InputFileError
        When the file is unreadable, fails its layout's checks, or is not a tomography scan.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.sim import simulate_tomo_scan
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scan.h5"
    >>> _ = simulate_tomo_scan(path, shape=(32, 2, 32), seed=0)
    >>> ds = open_tomo(path)
    >>> ds.data[:, 1, :].compute().shape  # the sinogram of row 1: (angles, columns)
    (32, 32)
    """
    return _open_kind(path, kinds.TOMO_RAW, chunks, "open_tomo")


def open_saxs(path: PathLike, *, chunks: Chunks = None) -> xr.DataArray:
    """Open a SAXS/GISAXS series lazily, whatever layout it was written in.

    Parameters
    ----------
    path : path-like
        A NeXus SAXS/GISAXS series (HDF5 naming its PONI file), a Dectris Eiger master file
        (its data files, linked as ``/entry/data/data_NNNNNN``, are read in order as one
        series), or a folder of detector frames (CBF, EDF, TIFF) with a PONI file and a
        metadata sidecar; read-only.
    chunks : int or tuple, optional
        Frames per dask chunk (int) or explicit dask chunks; default one frame per chunk
        (an Eiger series: a chunk never spans two data files, unless explicit chunks say so).

    Returns
    -------
    xarray.DataArray
        ``frames`` with dims (frame, y, x), dask-backed; coordinate ``time`` (frame,
        seconds since the start) and pixel-index coordinates ``y``, ``x``; ``attrs`` hold
        the metadata, including ``poni_path`` and ``mask_value``.

    Raises
    ------
    InputFileError
        When the data are unreadable, the PONI file is missing, or it is not a SAXS series.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.sim import simulate_saxs_series, write_frame_folder
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_saxs_series(work / "series.h5", n_frames=3, shape=(24, 32),
    ...                          module_shape=None, seed=0)
    >>> open_saxs(work / "series.h5").shape
    (3, 24, 32)
    >>> _ = write_frame_folder(work / "run_0007", work / "series.h5")  # CBF frames + PONI
    >>> open_saxs(work / "run_0007").shape
    (3, 24, 32)
    """
    return _open_kind(path, kinds.SAXS_RAW, chunks, "open_saxs")

