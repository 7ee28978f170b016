"""Readers for what beamlines (and :mod:`spotkit.sim`) write.

* :func:`detect_kind` sniffs a raw HDF5 file: ``"tomo/raw"`` (Data Exchange) or
  ``"saxs/raw"`` (NeXus SAXS/GISAXS series with a PONI geometry file).
* :func:`read_metadata` returns a :class:`DatasetInfo` for the catalog.
* :func:`open_tomo` and :func:`open_saxs` return lazy (dask-backed) xarray objects;
  :func:`open_array` opens derived arrays (HDF5 dataset, ``.npy``, zarr).
* :func:`open_frames` reads detector frame series (TIFF, EDF, CBF, HDF5/NeXus) through
  fabio as a lazy array.
* :func:`write_frame_subset` writes a copy of a frame series with only some frames (the
  frames of interest that change detection marked).
* :func:`write_nxcansas` and :func:`read_nxcansas` write and read reduced SAS data in
  NXcanSAS (the canSAS standard; one SASentry per time step of a series).

Files are always opened read-only, and the dask graphs hold no open file handle (each
chunk read opens and closes the file), so they pickle and ship to workers. Every problem
with a file raises :class:`spotkit.errors.InputFileError` naming the file and the field.
"""

from ._arrays import open_array
from ._detect import detect_kind, read_metadata
from ._dxchange import open_tomo
from ._frames import FRAME_SUFFIXES, open_frames
from ._info import DatasetInfo
from ._nxcansas import read_nxcansas, read_nxcansas_entries, write_nxcansas
from ._saxs import open_saxs
from ._subset import write_frame_subset

__all__ = [
    "FRAME_SUFFIXES",
    "DatasetInfo",
    "detect_kind",
    "open_array",
    "open_frames",
    "open_saxs",
    "open_tomo",
    "read_metadata",
    "read_nxcansas",
    "read_nxcansas_entries",
    "write_frame_subset",
    "write_nxcansas",
]
