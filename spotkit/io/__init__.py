"""Readers for what beamlines (and :mod:`spotkit.sim`) write.

Raw layouts are read through one registry of :class:`Reader` objects (built-ins plus the
``spotkit.readers`` entry-point group, see :func:`list_readers`):

==================  =========  ====================================================
reader              kind       layout
==================  =========  ====================================================
``nxtomo``          tomo/raw   NeXus NXtomo (Diamond ``/entry1/tomo_entry``, ESRF
                               nxtomomill ``/entry0000``, PSI ``/entry``)
``dxchange``        tomo/raw   Data Exchange HDF5 (ALS 8.3.2, APS)
``nexus-saxs``      saxs/raw   NeXus SAXS/GISAXS series naming its PONI file, or a
                               Dectris Eiger master and the data files it links
``frame-folder``    saxs/raw   a folder of numbered CBF/EDF/TIFF frames with its PONI
                               file and a metadata sidecar (the folder is the dataset)
==================  =========  ====================================================

* :func:`find_reader` picks the reader of a file or folder; :func:`detect_kind`,
  :func:`read_metadata` (a :class:`DatasetInfo` for the catalog) and
  :func:`check_complete` (has the acquisition finished? for the watcher) go through it.
* :func:`open_tomo` and :func:`open_saxs` return lazy (dask-backed) xarray objects, whatever
  the layout; :func:`open_array` opens derived arrays (HDF5 dataset, ``.npy``, zarr).
* :func:`follow_frames` follows a series while the detector writes it (an HDF5/NeXus file
  being appended, SWMR or not, or a folder of CBF/EDF/TIFF files arriving): a
  :class:`FrameSource` polls the new complete :class:`Frame` objects, in order.
* :func:`open_frames` reads detector frame series (TIFF, EDF, CBF, HDF5/NeXus) through
  fabio as a lazy array.
* :func:`write_frame_subset` writes a copy of a frame series with only some frames (the
  frames of interest that change detection marked).
* :func:`write_nxcansas` and :func:`read_nxcansas` write and read reduced SAS data in
  NXcanSAS (the canSAS standard; one SASentry per time step of a series).
* :func:`open_volume` opens a volume, a raw scan's projections or a remote (Tiled) array
  as a :class:`Volume` that reads one plane across any axis, only the chunks it crosses,
  with its physical :class:`Axis` scales; :func:`write_pyramid` writes a volume's coarse
  levels into a sidecar for viewing (:func:`read_pyramid`, :func:`pyramid_path`).
* :func:`write_preview_png` draws a tomography preview (:func:`spotkit.tomo.preview`) into
  a PNG file.
* :func:`load_geometry` and :func:`save_geometry` read and write detector geometries (pyFAI
  PONI files, converted to the image orientation of the data file, see
  :data:`ORIENTATIONS`); :func:`load_mask` and :func:`save_mask` read and write detector
  masks (EDF/TIFF, pyFAI-calib2's format).

Files are always opened read-only, and the dask graphs hold no open file handle (each
chunk read opens and closes the file), so they pickle and ship to workers. Every problem
with a file raises :class:`spotkit.errors.InputFileError` naming the file and the field.
"""

from ._arrays import open_array
from ._eiger import master_of as eiger_master_of
from ._follow import Frame, FrameSource, FrameSourceInfo, follow_frames
from ._framefolder import frame_series
from ._frames import FRAME_SUFFIXES, open_frames
from ._info import DatasetInfo
from ._masks import MASK_FORMATS, load_mask, save_mask
from ._nxcansas import read_nxcansas, read_nxcansas_entries, write_nxcansas
from ._poni import ORIENTATIONS, load_geometry, save_geometry
from ._preview_png import write_preview_png
from ._pyramid import pyramid_path, read_pyramid, write_pyramid
from ._reader import Reader
from ._registry import (
    check_complete,
    detect_kind,
    find_reader,
    folder_readers,
    get_reader,
    list_readers,
    open_saxs,
    open_tomo,
    read_metadata,
    register_reader,
    supported_layouts,
    watched_suffixes,
)
from ._subset import write_frame_subset
from ._volume import Axis, Volume, open_volume

__all__ = [
    "FRAME_SUFFIXES",
    "MASK_FORMATS",
    "ORIENTATIONS",
    "Axis",
    "DatasetInfo",
    "Frame",
    "FrameSource",
    "FrameSourceInfo",
    "Reader",
    "Volume",
    "check_complete",
    "detect_kind",
    "eiger_master_of",
    "find_reader",
    "folder_readers",
    "follow_frames",
    "frame_series",
    "get_reader",
    "list_readers",
    "load_geometry",
    "load_mask",
    "open_array",
    "open_frames",
    "open_saxs",
    "open_tomo",
    "open_volume",
    "pyramid_path",
    "read_metadata",
    "read_nxcansas",
    "read_nxcansas_entries",
    "read_pyramid",
    "register_reader",
    "save_geometry",
    "save_mask",
    "supported_layouts",
    "watched_suffixes",
    "write_frame_subset",
    "write_nxcansas",
    "write_preview_png",
    "write_pyramid",
]
