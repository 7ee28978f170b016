"""Sniffing a raw file's layout and dispatching to the matching reader."""

from __future__ import annotations

import h5py

from spotkit.errors import InputFileError

from . import _dxchange, _saxs
from ._h5 import SUPPORTED_LAYOUTS, check_exists, open_hdf5
from ._info import DatasetInfo

__all__ = ["detect_kind", "read_metadata"]

KINDS = (_dxchange.KIND, _saxs.KIND)


def _nx_entry(f: h5py.File):
    entry = f.get("/entry")
    if isinstance(entry, h5py.Group):
        return entry
    for obj in f.values():
        nx_class = obj.attrs.get("NX_class", b"")
        nx_class = nx_class.decode() if isinstance(nx_class, bytes) else str(nx_class)
        if isinstance(obj, h5py.Group) and nx_class == "NXentry":
            return obj
    return None


def _kind_of(f: h5py.File, path) -> str:
    implements = f.attrs.get("implements", "")
    implements = implements.decode() if isinstance(implements, bytes) else str(implements)
    if "exchange" in f or implements.startswith("exchange"):
        return _dxchange.KIND
    entry = _nx_entry(f)
    if (
        entry is not None
        and entry.name == "/entry"
        and (
            "data/data" in entry or "mode" in entry or "instrument/detector/geometry_file" in entry
        )
    ):
        return _saxs.KIND
    raise InputFileError(
        path,
        "is an HDF5 file in a layout spotkit does not recognise.",
        hint=f"Supported layouts: {SUPPORTED_LAYOUTS}.",
    )


def detect_kind(path) -> str:
    """Sniff the layout of a raw HDF5 file.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    str
        ``"tomo/raw"`` (Data Exchange) or ``"saxs/raw"`` (NeXus SAXS/GISAXS series).

    Raises
    ------
    InputFileError
        When the file is not HDF5, is truncated, or has neither layout.
    """
    path = check_exists(path)
    with open_hdf5(path) as f:
        return _kind_of(f, path)


def read_metadata(path) -> DatasetInfo:
    """Read the metadata a raw file holds about itself.

    Parameters
    ----------
    path : path-like
        A Data Exchange tomography file or a NeXus SAXS/GISAXS series.

    Returns
    -------
    DatasetInfo
        Missing optional fields (energy, sample name, ...) are ``"unknown"`` or None, with
        a logged warning.

    Raises
    ------
    InputFileError
        When the file is unreadable or lacks a required field.

    Examples
    --------
    >>> info = read_metadata("scan.h5")  # doctest: +SKIP
    >>> info.kind, info.metadata["n_angles"]  # doctest: +SKIP
    ('tomo/raw', 181)
    """
    kind = detect_kind(path)
    if kind == _dxchange.KIND:
        return _dxchange.read_tomo_metadata(path)
    return _saxs.read_saxs_metadata(path)
