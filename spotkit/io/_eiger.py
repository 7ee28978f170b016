"""Reading a written Dectris Eiger series: the master file and the data files it links to.

The layout is described in :mod:`spotkit.io._follow_eiger` (which follows a series while the
detector writes it): ``<prefix>_master.h5`` holds the metadata and, in ``/entry/data``, one
HDF5 external link per data file (``data_000001`` -> ``<prefix>_data_000001.h5:
/entry/data/data``), each data file a block of frames (``image_nr_low`` / ``image_nr_high``,
counted from 1).

Here the series is read once it is written, as one stack of frames:

* The links are read without being followed (:func:`~spotkit.io._follow_eiger.eiger_links`)
  and each data file is opened directly, its relative name taken relative to the master's
  folder. (HDF5 itself would first look for a relative target in the current working
  directory, and a link whose target is missing just reads as absent.)
* Frame ``k`` of the series is frame ``k - first`` of the data file holding it, the data files
  in link order, the numbering continuous. A data file that is missing, unreadable, without
  the linked dataset, with frames of another shape or type, or holding fewer frames than it
  announces while later data files follow is an error naming the master, the link and the
  data file (frames after it would otherwise get the wrong numbers).
* The stack is lazy (:func:`stack`): one dask array per data file, chunks never spanning two
  files, each chunk read opening and closing its data file. Nothing is ever written.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
from dask.base import tokenize

from spotkit.errors import InputFileError

from ._follow_eiger import _DATA_GROUP, _MASK_SUFFIXES, _check_filters, eiger_links
from ._follow_h5 import find_beside
from ._h5 import H5ArrayProxy, open_hdf5

__all__ = [
    "EigerPart",
    "EigerSeries",
    "eiger_mask",
    "eiger_poni_candidates",
    "is_eiger_master",
    "master_of",
    "read_series",
    "stack",
]

logger = logging.getLogger("spotkit.io")

_DATA_FILE = re.compile(r"^(?P<prefix>.+)_data_\d{6}$")


@dataclass(frozen=True)
class EigerPart:
    """One data file of a series: frames ``first .. first + n_frames - 1`` of the series."""

    link: str  # the link in the master, e.g. /entry/data/data_000001
    path: Path  # the data file, absolute
    key: str  # the frames' dataset in the data file
    first: int
    n_frames: int


@dataclass(frozen=True)
class EigerSeries:
    """What the master and its data files say about a written series."""

    master: Path
    parts: tuple[EigerPart, ...]
    frame_shape: tuple[int, int]
    dtype: np.dtype
    #: frames the master announces (``detectorSpecific/nimages`` x ``ntrigger``), or None
    expected: int | None
    #: why the series looks unfinished (a short last data file, fewer frames than announced)
    incomplete: str | None

    @property
    def n_frames(self) -> int:
        """Frames in the data files."""
        return sum(p.n_frames for p in self.parts)

    @property
    def frames_per_file(self) -> int:
        """Frames of the first data file (all but the last hold as many)."""
        return self.parts[0].n_frames


def is_eiger_master(f: h5py.File, path: Path) -> bool:
    """True when the open file links data files (``/entry/data/data_NNNNNN``)."""
    return bool(eiger_links(f, path))


def master_of(path: Path) -> Path | None:
    """The master of an Eiger data file ``<prefix>_data_NNNNNN.h5`` when it is beside it."""
    m = _DATA_FILE.match(path.stem)
    if m is None:
        return None
    master = path.with_name(f"{m.group('prefix')}_master{path.suffix}")
    return master if master.is_file() else None


def eiger_poni_candidates(master: Path) -> list[Path]:
    """Where a master that names no PONI file has it: ``<master stem>.poni``, ``<prefix>.poni``
    (as the live twin and :func:`spotkit.io.follow_frames` look for it)."""
    prefix = master.stem.removesuffix("_master")
    return [master.with_suffix(".poni"), master.with_name(f"{prefix}.poni")]


def eiger_mask(master: Path, named) -> Path | None:
    """The detector mask the master names (``mask_file``), else ``<stem>_mask.edf`` (or
    .tif, .tiff, .npy; stem the master's or its prefix) beside it; None when there is none."""
    prefix = master.stem.removesuffix("_master")
    return find_beside(master, named, [master.with_name(f"{stem}_mask{s}")
                                       for stem in (master.stem, prefix)
                                       for s in _MASK_SUFFIXES])


def _missing(master: Path, link_name: str, target: Path, key: str, before: int) -> InputFileError:
    return InputFileError(
        master,
        f"its data file {target.name} is missing (the master's link {_DATA_GROUP}/{link_name} "
        f"points at {target}:{key}; frames from {before} on are in it and in the data files "
        "after it).",
        field=f"{_DATA_GROUP}/{link_name}",
        hint=f"Put the data file back beside {master.name} under that name (copy every "
        f"<prefix>_data_NNNNNN file of the series with the master), or wait until the "
        "detector has written it; the series cannot be opened without it. The master is "
        "not changed.")


def read_series(f: h5py.File, master: Path, *, expected: int | None = None) -> EigerSeries:
    """Read the data files an open master links to (their shapes, not their frames).

    Parameters
    ----------
    f : h5py.File
        The master, open.
    master : Path
        Its absolute path (relative link targets are relative to its folder).
    expected : int, optional
        Frames the master announces.

    Returns
    -------
    EigerSeries

    Raises
    ------
    InputFileError
        A data file is missing or unreadable, lacks the linked dataset, holds frames of
        another shape or type than the first, is compressed with a filter HDF5 lacks, or
        holds fewer frames than it announces while later data files follow.
    """
    links = eiger_links(f, master)
    if not links:
        raise InputFileError(master, f"is not an Eiger master: {_DATA_GROUP} holds no "
                             "data_NNNNNN external links to data files.", field=_DATA_GROUP)
    parts: list[EigerPart] = []
    shape: tuple[int, int] | None = None
    dtype: np.dtype | None = None
    first_file: Path | None = None
    incomplete: str | None = None
    first = 0
    for j, link in enumerate(links):
        field = f"{_DATA_GROUP}/{link.name}"
        if not link.path.is_file():
            raise _missing(master, link.name, link.path, link.key, first)
        if incomplete is not None:  # the data file before this one is short
            raise InputFileError(
                master, f"{incomplete}, yet a later data file ({link.path.name}) follows: the "
                "frames after it cannot be numbered.", field=field,
                hint="Copy the data file again from the detector (or wait until it is "
                "written); the master is not changed.")
        with open_hdf5(link.path) as data:
            ds = data.get(link.key)
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
                raise InputFileError(
                    link.path, f"has no 3-D frames dataset {link.key} (the target of "
                    f"{master.name}'s link {field}; found "
                    f"{getattr(ds, 'shape', 'nothing' if ds is None else 'a group')}).",
                    field=link.key, hint="The data file is not the one the master links to: "
                    "check the detector's file writer settings, or copy the file again.")
            _check_filters(ds, link.path)
            n = int(ds.shape[0])
            frame = (int(ds.shape[1]), int(ds.shape[2]))
            low, high = (ds.attrs.get(a) for a in ("image_nr_low", "image_nr_high"))
            if shape is None:
                shape, dtype, first_file = frame, ds.dtype, link.path
            elif frame != shape or ds.dtype != dtype:
                raise InputFileError(
                    link.path, f"its frames ({link.key}) are {frame[0]} x {frame[1]} "
                    f"{ds.dtype}, but those of {first_file} are {shape[0]} x {shape[1]} "
                    f"{dtype}.", field=link.key,
                    hint=f"The data files linked from {master.name} must all come from one "
                    "series: is a file of another acquisition under this name?")
        if low is not None and high is not None and np.size(low) == 1 and np.size(high) == 1:
            announced = int(np.asarray(high).reshape(())) - int(np.asarray(low).reshape(())) + 1
            if n < announced:
                incomplete = (f"data file {j + 1} ({link.path.name}) holds {n} of the "
                              f"{announced} frames it announces (image_nr_low/high)")
        if n == 0 and incomplete is None:
            incomplete = f"data file {j + 1} ({link.path.name}) holds no frames"
        parts.append(EigerPart(field, link.path, link.key, first, n))
        first += n
    if shape is None or dtype is None:  # pragma: no cover  (links is not empty)
        raise InputFileError(master, "links no data file.", field=_DATA_GROUP)
    if incomplete is None and expected is not None and first < expected:
        incomplete = f"the data files hold {first} of the {expected} frames the master announces"
    return EigerSeries(master, tuple(parts), shape, np.dtype(dtype), expected, incomplete)


def stack(series: EigerSeries, frames_per_chunk: int) -> da.Array:
    """The frames of every data file, in order, as one lazy dask array.

    Each data file is its own dask array of ``frames_per_chunk`` frames per chunk (fewer at
    the end of a file: a chunk never spans two files); each chunk read opens its data file
    read-only and closes it again, so the graph pickles and ships to workers.
    """
    per = max(1, int(frames_per_chunk))
    arrays = []
    for part in series.parts:
        if part.n_frames == 0:
            continue
        shape = (part.n_frames, *series.frame_shape)
        proxy = H5ArrayProxy(part.path, part.key, shape, series.dtype)
        stat = part.path.stat()
        chunks = (min(per, part.n_frames), *series.frame_shape)
        name = "spotkit-eiger-" + tokenize(str(part.path), part.key, stat.st_mtime_ns,
                                           stat.st_size, shape, chunks)
        arrays.append(da.from_array(proxy, chunks=chunks, name=name,
                                    meta=np.empty((0, 0, 0), dtype=series.dtype)))
    return da.concatenate(arrays, axis=0)
