"""Follow a Dectris Eiger series: a NeXus *master* file and the *data* files it links to.

The layout (DECTRIS' NeXus header documentation, the NXmx application definition)
-----------------------------------------------------------------------------------
``<prefix>_master.h5`` holds the metadata (``/entry/instrument/detector/...``, with
``detectorSpecific/nimages`` x ``ntrigger`` the frames of the series) and, in the NXdata group
``/entry/data``, one HDF5 *external link* per data file: ``data_000001``, ``data_000002``...
each pointing at ``/entry/data/data`` in ``<prefix>_data_000001.h5``, ... A data file holds a
block of frames (100 or 1000 each, the last one fewer; ``image_nr_low`` / ``image_nr_high``
attributes say which, counted from 1). The detector writes the master first, its links
dangling until the data files appear one after another.

How the source reads it
-----------------------
* The links are read without being followed (``getlink=True``); a relative file name is taken
  relative to the master's folder (as HDF5 resolves it by default). The master is read again
  only when its size or modification time moves, and only a read during which it did not move
  counts.
* Each data file is followed like a single file being appended
  (:class:`~spotkit.io._follow_h5.HDF5FrameSource`: SWMR or safe re-opening, read-only, HDF5
  file locking off, never a frame whose chunks are not all there, the newest frame held back
  while a writer has the file open). A data file is done once its writer has closed it and
  every frame it holds is there (read with SWMR: once every frame its ``image_nr_low`` /
  ``image_nr_high`` announce is there); the next one is followed then. Frame numbers run on
  across the files (frame 0 is the first frame of ``data_000001``). Frames compressed with a
  filter HDF5 lacks (Eiger's bitshuffle/LZ4 without ``hdf5plugin``) are a clear error.
* A data file missing (its link dangling), unreadable (still being copied) or left short by
  a writer while later data files are there is waited for ``gap_timeout_s``, then its frames
  are skipped with a warning (``info.metadata["missing_frames"]``, ``"missing_files"``): its
  size is its ``image_nr_low`` / ``image_nr_high``, or the next file's ``image_nr_low``, or
  the files' common size.
* The end: a ``<master>.done`` sentinel, a non-empty ``/entry/end_time`` in the master, or the
  expected frame count reached, once no data file is awaited before later ones.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from spotkit.errors import InputFileError

from ._follow import Frame, FrameSource, FrameSourceInfo
from ._follow_h5 import (
    _TRANSIENT,
    HDF5FrameSource,
    _open,
    _stat,
    find_beside,
    series_metadata,
    superblock_status,
)
from ._h5 import get_value, load_filter_plugins

__all__ = ["EigerFrameSource", "eiger_links", "is_eiger_master"]

logger = logging.getLogger("spotkit.io")

_LINK = re.compile(r"data_(\d{6})$")
_DATA_GROUP = "/entry/data"
_MASK_SUFFIXES = (".edf", ".tif", ".tiff", ".npy")
#: seconds between looks for every later data file while one is awaited
RESCAN_S = 1.0


@dataclass(frozen=True)
class _Link:
    number: int  # 1, 2, ... (data_000001)
    name: str  # the link's name in /entry/data
    path: Path  # the data file, absolute
    key: str  # the frames' dataset in the data file


def eiger_links(f: h5py.File, master: Path) -> list[_Link]:
    """The ``data_NNNNNN`` external links of an open master file, in number order."""
    group = f.get(_DATA_GROUP)
    if not isinstance(group, h5py.Group):
        return []
    links = []
    for name in group:
        m = _LINK.match(name)
        if m is None:
            continue
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.ExternalLink):
            continue
        target = Path(link.filename)
        target = target if target.is_absolute() else master.parent / target
        links.append(_Link(int(m.group(1)), name, target.absolute(), str(link.path)))
    return sorted(links, key=lambda link: link.number)


def is_eiger_master(path: Path) -> bool:
    """True for an Eiger-style master: ``/entry/data/data_NNNNNN`` external links, or a name
    ending in ``_master`` (a master not written yet) unless the file holds its frames itself
    (``/entry/data/data``)."""
    named = path.stem.endswith("_master")
    if not path.exists():
        return named
    try:
        with _open(path, swmr=False) as f:
            if eiger_links(f, path):
                return True
            return named and not isinstance(f.get("/entry/data/data"), h5py.Dataset)
    except (*_TRANSIENT, ValueError):
        return named


def _check_filters(ds: h5py.Dataset, path: Path) -> None:
    """Every HDF5 filter the frames are compressed with can be used here (Eiger data files
    are bitshuffle/LZ4: registered by ``hdf5plugin``, imported when it is installed)."""
    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    missing = [f for f in filters if not h5py.h5z.filter_avail(f[0])]
    if missing and load_filter_plugins():
        missing = [f for f in missing if not h5py.h5z.filter_avail(f[0])]
    if missing:
        names = ", ".join(f"{f[0]} {bytes(f[3]).decode(errors='replace')}".strip()
                          for f in missing)
        raise InputFileError(path, f"its frames ({ds.name}) are compressed with HDF5 "
                             f"filter {names}, which this HDF5 library does not have.",
                             field=ds.name, hint="Install the detector filters: pip install "
                             "hdf5plugin (bitshuffle/LZ4 of Eiger data files).")


class _DataFile(HDF5FrameSource):
    """One data file of the series, followed as a single file (frame numbers within it)."""

    def __init__(self, link: _Link, *, start: int = 0):
        super().__init__(link.path, start=start, dataset=link.key)
        self.link = link
        self.ok = False  # the last look at the file succeeded
        self.size: int | None = None  # frames the file announces (dataset length)
        self.low: int | None = None  # image_nr_low (1 = the series' first frame)
        self.high: int | None = None
        self.full = False  # all announced frames there, under SWMR (see _ended)

    def look(self) -> tuple[bool, bool]:
        """Refresh; ``(readable, closed)``: closed = no writer had it open before the look."""
        status = superblock_status(self.path) if self.path.exists() else None
        closed = status is not None and not status[1]
        self.ok = False
        self._refresh()
        return self.ok, closed

    def _dataset(self, f: h5py.File, *, swmr: bool):
        ds = super()._dataset(f, swmr=swmr)
        if ds is not None:
            if self._shape is None:
                _check_filters(ds, self.path)
            self.size = int(ds.shape[0])
            for attr in ("image_nr_low", "image_nr_high"):
                value = ds.attrs.get(attr)
                if value is not None and np.size(value) == 1:
                    setattr(self, attr[9:], int(np.asarray(value).reshape(())))
        return ds

    def _apply(self, held: int, ended: bool, new_stamps) -> None:
        super()._apply(held, ended, new_stamps)
        self.ok = True

    def _failed(self, error: Exception, *, hopeless: bool) -> None:
        # a data file being copied is unreadable for a while: not an error here (a data file
        # that stays so while later ones are there is a gap)
        self._failing += 1
        logger.debug("%s: not readable yet (%s)", self.path, error)

    def _read_metadata(self, f: h5py.File) -> None:
        self._meta = {"data_file": str(self.path)}  # the series' metadata is the master's

    def _ended(self, f: h5py.File) -> bool:
        """Every frame the file announces is there, read with SWMR (its writer may keep it
        open a while: under SWMR a chunk is written before the index points at it)."""
        self.full = False
        if self._handle is None or self.low is None or self.high is None:
            return False
        ds = f.get(self._key) if self._key else None
        if not isinstance(ds, h5py.Dataset):
            return False
        ds.refresh()
        n = int(ds.shape[0])
        self.full = n == self.high - self.low + 1 and self._allocated(ds, n) == n
        return self.full

    def _allocated(self, ds: h5py.Dataset, n: int) -> int:
        self.size = n  # the dataset's length now (refreshed under SWMR)
        chunks = ds.chunks
        if chunks is not None and n > 0:
            per_frame = -(-ds.shape[1] // chunks[1]) * -(-ds.shape[2] // chunks[2])
            try:
                if ds.id.get_num_chunks() == -(-n // chunks[0]) * per_frame:
                    return n  # every chunk is there: no need to look them up one by one
            except Exception:  # noqa: S110  (an old HDF5: look them up)
                pass
        return super()._allocated(ds, n)


class EigerFrameSource(FrameSource):
    """Frames of an Eiger master + data files series (see :func:`spotkit.io.follow_frames`)."""

    kind = "eiger"

    def __init__(self, path: Path, *, start: int = 0, gap_timeout_s: float = 60.0):
        super().__init__(path, start=start)
        self._gap_timeout = float(gap_timeout_s)
        self._links: list[_Link] = []
        self._master_stat: tuple[int, int] | None = None
        self._master_failing = 0  # polls in a row that could not read the master
        self._swmr_seen = False  # a data file was read with SWMR
        self._scanned, self._scanned_at = -1, 0.0  # the last look for later data files
        self._meta: dict = {}
        self._expected: int | None = None
        self._ended = False
        self._shape: tuple[int, int] | None = None
        self._dtype: np.dtype | None = None
        self._first_file: Path | None = None
        # walked in order: the file followed now is _links[_cur], its first frame _offset
        self._cur = 0
        self._offset = 0
        self._block: int | None = None  # the frames of a full data file
        self._open: dict[int, tuple[int, _DataFile]] = {}  # link position -> (offset, file)
        self._ends: dict[int, int] = {}  # link position passed -> the next file's offset
        self._skipped: list[int] = []  # frame indices given up
        self._skipped_set: set[int] = set()
        self._missing_files: list[str] = []
        self._stuck: dict[int, float] = {}  # link position -> when it first held later ones

    # -- the master --------------------------------------------------------------------------
    def _read_master(self) -> None:
        before = _stat(self.path)
        if before is None or before == self._master_stat:
            return
        status = superblock_status(self.path)
        if status is None:
            return  # created, not yet written
        try:
            with _open(self.path, swmr=False) as f:
                links = eiger_links(f, self.path)
                meta, expected = series_metadata(f)
                end = str(get_value(f, "/entry/end_time") or "").strip()
                group = f.get(_DATA_GROUP)
                names = list(group) if isinstance(group, h5py.Group) else None
        except _TRANSIENT as exc:
            self._master_failing += 1
            logger.debug("%s: master not readable yet (%s)", self.path, exc)
            if self._master_failing == 100:
                logger.warning("%s: the master file has been unreadable for 100 polls (%s); "
                               "still trying (is it truncated?)", self.path, exc)
            return
        self._master_failing = 0
        if _stat(self.path) != before:
            return  # the writer changed it meanwhile: next poll
        if not links and not status[1]:
            found = ", ".join(sorted(names)[:6]) if names else "nothing"
            raise InputFileError(
                self.path, f"is not an Eiger master: {_DATA_GROUP} holds no data_NNNNNN "
                f"external links to data files (it holds {found}).", field=_DATA_GROUP,
                hint="Follow the series' *_master.h5 file; a single file holding its frames "
                "is followed with follow_frames(path, dataset='/entry/data/data').")
        self._master_stat = before
        if len(links) < len(self._links):
            logger.warning("%s: the master now links %d data files, before %d", self.path,
                           len(links), len(self._links))
        self._links = links
        if end:
            meta["end_time"] = end
            self._ended = True
        self._meta = meta
        self._expected = expected

    def _series_ended(self) -> bool:
        if self._ended or Path(f"{self.path}.done").exists():
            return True
        return self._expected is not None and self._available >= self._expected

    # -- the data files ----------------------------------------------------------------------
    def _file(self, pos: int, offset: int) -> _DataFile:
        if pos not in self._open:
            link = self._links[pos]
            self._open[pos] = (offset, _DataFile(link, start=max(0, self._next - offset)))
        return self._open[pos][1]

    def _check_frames(self, data: _DataFile) -> None:
        if data._shape is None:
            return
        if self._shape is None:
            self._shape, self._dtype, self._first_file = data._shape, data._dtype, data.path
            return
        if data._shape != self._shape or data._dtype != self._dtype:
            raise InputFileError(
                data.path, f"its frames ({data.link.key}) are {data._shape[0]} x "
                f"{data._shape[1]} {data._dtype}, but those of {self._first_file} are "
                f"{self._shape[0]} x {self._shape[1]} {self._dtype}.", field=data.link.key,
                hint=f"The data files linked from {self.path.name} must all come from one "
                "series (is a file of another acquisition under this name?): move the stray "
                "file away, or follow each series from its own master file.")

    def _size_of(self, pos: int, data: _DataFile | None, offset: int,
                 closed: bool) -> int | None:
        """Frames of data file ``pos`` (first frame ``offset``), from what is known: its
        ``image_nr_low/high``, its length once closed, the next file's ``image_nr_low``, the
        files' common size (else the next file's length: all but the last are alike)."""
        if data is not None and data.low is not None and data.high is not None:
            return data.high - data.low + 1
        if data is not None and data.ok and closed and data.size is not None:
            return data.size
        low, length = self._peek(pos + 1) if pos + 1 < len(self._links) else (None, None)
        if low is not None and low > offset:
            return low - offset
        if self._block is None and data is not None and data.ok:
            return data.size
        return self._block if self._block is not None else length

    def _peek(self, pos: int) -> tuple[int | None, int | None]:
        """``(image_nr_low - 1, length)`` of data file ``pos`` as far as it says them."""
        path = self._links[pos].path
        if not path.exists():
            return None, None
        try:
            with _open(path, swmr=False) as f:
                ds = f.get(self._links[pos].key)
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
                    return None, None
                low = ds.attrs.get("image_nr_low")
                length = int(ds.shape[0]) or None
        except _TRANSIENT:
            return None, None
        return (None if low is None else int(np.asarray(low).reshape(())) - 1), length

    def _later_there(self, pos: int) -> bool:
        """A data file after ``pos`` is there (all of them are looked for once a second;
        in between, the next one only: the detector writes them in order)."""
        nxt = self._links[pos + 1:pos + 2]
        if nxt and nxt[0].path.exists():
            return True
        now = time.monotonic()
        if self._scanned == pos and now - self._scanned_at < RESCAN_S:
            return False
        self._scanned, self._scanned_at = pos, now
        return any(link.path.exists() for link in self._links[pos + 2:])

    def _advance(self, pos: int, end: int) -> None:
        """Data file ``pos`` is passed: the next one starts at frame ``end``."""
        self._stuck.pop(pos, None)
        self._ends[pos] = end
        self._cur, self._offset = pos + 1, end
        self._available = max(self._available, end)

    def _refresh(self) -> None:
        if self._finished:
            return
        self._read_master()
        waiting = False  # a data file is awaited while later ones are there
        while self._cur < len(self._links):
            pos, offset = self._cur, self._offset
            link = self._links[pos]
            data = self._file(pos, offset) if link.path.exists() else None
            readable = closed = False
            if data is not None:
                readable, closed = data.look()
                self._swmr_seen = self._swmr_seen or data._seen_swmr
                if readable:
                    self._check_frames(data)
                    if data._shape is None and closed:
                        raise InputFileError(
                            link.path, f"has no dataset {link.key} (the target of "
                            f"{self.path.name}'s link {_DATA_GROUP}/{link.name}).",
                            field=link.key, hint="The data file is not the one the master "
                            "links to: check the detector's file writer settings.")
                    self._available = max(self._available, offset + data.available)
                    if (closed or data.full) and data.size is not None \
                            and data.available >= data.size:
                        if self._block is None or pos == 0:
                            self._block = data.size
                        self._advance(pos, offset + data.size)
                        continue
            # not done: it holds the series up only while later data files are there
            if not self._later_there(pos):
                self._stuck.pop(pos, None)
                break
            size = self._size_of(pos, data, offset, closed)
            if size is not None and offset + size <= self._next:
                self._advance(pos, offset + size)  # handed out before this source started
                continue
            now = time.monotonic()
            since = self._stuck.setdefault(pos, now)
            if size is None or now - since < self._gap_timeout:
                waiting = True
                break
            why = ("is missing" if data is None else "cannot be read" if not readable
                   else "is incomplete")
            have = data.available if data is not None and readable else 0
            lost = [k for k in range(offset + have, offset + size) if k >= self._next]
            self._skipped.extend(lost)
            self._skipped_set.update(lost)
            self._missing_files.append(link.path.name)
            logger.warning("%s: data file %s %s for %.0f s while later ones are there; "
                           "frames %d-%d skipped", self.path, link.path.name, why,
                           self._gap_timeout, offset + have, offset + size - 1)
            self._advance(pos, offset + size)
        if not waiting and self._series_ended():
            self._finished = True
            logger.info("%s: the series ended at %d frames", self.path, self._available)

    # -- reading -----------------------------------------------------------------------------
    def _holding(self, k: int) -> tuple[int, int, _DataFile] | None:
        """``(offset, end, data file)`` of the open data file holding frame ``k``."""
        for pos, (offset, data) in self._open.items():
            end = self._ends.get(pos, offset + data.available)
            if offset <= k < end:
                return offset, end, data
        return None

    def _read(self, start: int, stop: int) -> tuple[list[Frame], int]:
        frames: list[Frame] = []
        dt = self._meta.get("frame_time_s")
        k = start
        while k < stop:
            if k in self._skipped_set:
                k += 1
                continue
            held = self._holding(k)
            if held is None:  # not known to any data file (cannot happen): next poll
                break
            offset, end, data = held
            hi = min(stop, end, offset + data.available)
            for s in range(k, hi):  # skipped frames inside the file end the read
                if s in self._skipped_set:
                    hi = s
                    break
            got, nxt = data._read(k - offset, hi - offset)
            for f in got:
                index = offset + f.index
                frames.append(Frame(index, f.data, None if not dt else index * float(dt),
                                    f.written_at))
            if offset + nxt < hi:  # a read that raced the writer: the rest next poll
                k = offset + nxt
                break
            k = hi
        self._close_done(k)
        return frames, k

    def _close_done(self, next_index: int) -> None:
        """Close the data files whose frames are all handed out."""
        for pos in [p for p in self._open if p in self._ends and self._ends[p] <= next_index]:
            self._open.pop(pos)[1].close()

    def _release(self) -> None:
        for _, data in self._open.values():
            data.close()
        self._open.clear()

    # -- what is known -----------------------------------------------------------------------
    @property
    def info(self) -> FrameSourceInfo:
        """What is known about the series so far (:class:`FrameSourceInfo`)."""
        meta = dict(self._meta)
        prefix = self.path.stem.removesuffix("_master")
        poni = find_beside(self.path, meta.get("geometry_file"),
                           [self.path.with_suffix(".poni"),
                            self.path.with_name(f"{prefix}.poni")])
        mask = find_beside(self.path, meta.get("mask_file"),
                           [self.path.with_name(f"{stem}_mask{s}")
                            for stem in (self.path.stem, prefix) for s in _MASK_SUFFIXES])
        meta["data_files"] = [str(link.path) for link in self._links if link.path.exists()]
        meta["n_data_files"] = len(self._links)
        if self._block:
            meta["frames_per_file"] = self._block
        meta["missing_frames"] = list(self._skipped)
        meta["missing_files"] = list(self._missing_files)
        return FrameSourceInfo(path=self.path, kind=self.kind, format="h5", shape=self._shape,
                               dtype=self._dtype, poni_path=poni, mask_path=mask,
                               dataset=_DATA_GROUP, swmr=self._swmr_seen, metadata=meta)
