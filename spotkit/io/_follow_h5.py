"""Follow an HDF5/NeXus frame series being appended (SWMR, or safe re-opening).

How the reader decides what it may read
---------------------------------------
* **Mode**: the HDF5 superblock's status flags say whether a writer has the file open and
  whether it switched SWMR on (``H5F_SUPER_WRITE_ACCESS`` = 1, ``H5F_SUPER_SWMR_WRITE_ACCESS``
  = 4; a version 2/3 superblock keeps them in byte 11, versions 0/1 in bytes 20-23). With a
  SWMR writer the source keeps one SWMR reader open and refreshes the datasets at each poll.
  Otherwise it opens the file for each poll and closes it again, and keeps what it read
  only when the file's size and modification time did not change while it read (a writer
  that flushes between frames leaves a consistent file; a read that raced a flush is
  retried; on kernels without fine-grained timestamps a flush within the same clock tick
  as the read may go unseen: writers appending fast should use SWMR). Always read-only
  with file locking off: the writer is never blocked or locked.
* **Complete frames**: when the writer appends to a per-frame counter dataset *after* each
  frame (``frame_timestamp`` beside the frames, or ``counter=``), a frame counts once its
  counter entry exists. Otherwise a frame counts when its chunks are allocated, and the
  newest one is held back while a writer has the file open (until another frame appears,
  the writer closes the file, or the series ends).
* **The end**: a ``<file>.done`` sentinel, a non-empty ``/entry/end_time``, or the expected
  frame count reached (Eiger's ``detectorSpecific/nimages`` x ``ntrigger``). A writer that
  closes the file without one may re-open it: the source keeps following (a killed writer
  leaves no marker either: consumers stop on an idle timeout).
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from pathlib import Path

import h5py
import numpy as np

from spotkit.errors import InputFileError

from ._follow import Frame, FrameSource, FrameSourceInfo
from ._h5 import get_value

__all__ = ["HDF5FrameSource", "superblock_status"]

logger = logging.getLogger("spotkit.io")

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_WRITE_ACCESS = 0x01
_SWMR_WRITE_ACCESS = 0x04
_DEFAULT_KEY = "/entry/data/data"
_DET = "/entry/instrument/detector"
_MASK_SUFFIXES = (".edf", ".tif", ".tiff", ".npy")
_RETRIES = 3
#: what HDF5 raises on a file whose writer is half-way through a flush (retried next poll;
#: InputFileError, a ValueError, is not among them)
_TRANSIENT = (OSError, RuntimeError, KeyError)


def superblock_status(path) -> tuple[int, bool, bool] | None:
    """``(superblock version, open for writing, SWMR writing)`` of an HDF5 file, or None.

    Read from the superblock's file status flags (what ``h5clear -s`` clears after a
    crash). None when the file has no HDF5 signature (yet).
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            offset = 0
            while offset + 24 <= size:
                fh.seek(offset)
                head = fh.read(24)
                if head[:8] == _SIGNATURE:
                    version = head[8]
                    flags = head[11] if version >= 2 else int.from_bytes(head[20:24], "little")
                    return version, bool(flags & _WRITE_ACCESS), bool(flags & _SWMR_WRITE_ACCESS)
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return None
    return None


def _open(path: Path, *, swmr: bool) -> h5py.File:
    try:
        return h5py.File(path, "r", swmr=swmr, locking=False)
    except OSError as exc:
        if "locking flag" not in str(exc):
            raise
        # the writer is in this very process and opened the file with locking on: HDF5
        # shares one file object per process and wants the same setting
        return h5py.File(path, "r", swmr=swmr)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _find_frames(f: h5py.File) -> str | None:
    """The frames' HDF5 path: /entry/data/data, the default NXdata signal, or the one 3-D set."""
    if isinstance(f.get(_DEFAULT_KEY), h5py.Dataset):
        return _DEFAULT_KEY
    entry_name = f.attrs.get("default")
    entry_name = entry_name.decode() if isinstance(entry_name, bytes) else entry_name
    entry = f.get(str(entry_name)) if entry_name else None
    if isinstance(entry, h5py.Group):
        data_name = entry.attrs.get("default", "data")
        data_name = data_name.decode() if isinstance(data_name, bytes) else data_name
        group = entry.get(str(data_name))
        if isinstance(group, h5py.Group):
            signal = group.attrs.get("signal", "data")
            signal = signal.decode() if isinstance(signal, bytes) else signal
            ds = group.get(str(signal))
            if isinstance(ds, h5py.Dataset) and ds.ndim == 3:
                return ds.name
    found: list[str] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim == 3:
            found.append("/" + name)

    f.visititems(visit)
    return found[0] if len(found) == 1 else None


def series_metadata(f: h5py.File) -> tuple[dict, int | None]:
    """What a NeXus (or Eiger master) file says about its series, and the frames expected.

    Returns
    -------
    dict
        ``beamline``, ``sample``, ``proposal``, ``start_time``, ``energy_kev``,
        ``distance_m``, ``frame_time_s``... (absent keys are unknown), and
        ``n_frames_expected`` when the detector says it (Eiger's
        ``detectorSpecific/nimages`` x ``ntrigger``).
    int or None
        The frames expected.
    """
    def text(key):
        value = get_value(f, key)
        return None if value is None or not str(value).strip() else str(value)

    def number(key):
        value = get_value(f, key)
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    meta = {
        "beamline": text("/entry/instrument/source/beamline"),
        "instrument": text("/entry/instrument/name"),
        "sample": text("/entry/sample/name"),
        "proposal": text("/entry/experiment/proposal"),
        "experimenter": text("/entry/experiment/experimenter"),
        "title": text("/entry/title"),
        "mode": text("/entry/mode"),
        "start_time": text("/entry/start_time"),
        "energy_kev": number("/entry/instrument/monochromator/energy"),
        # NXmx / Eiger masters: detector_distance
        "distance_m": number(f"{_DET}/distance") or number(f"{_DET}/detector_distance"),
        "frame_time_s": number(f"{_DET}/frame_time"),
        "exposure_s": number(f"{_DET}/count_time"),
    }
    if meta["energy_kev"] is None:  # NXmx: the wavelength in angstrom
        wavelength = number("/entry/instrument/beam/incident_wavelength")
        if wavelength:
            meta["energy_kev"] = 12.398419843320026 / wavelength
    expected = None
    nimages = number(f"{_DET}/detectorSpecific/nimages")
    if nimages:
        ntrigger = number(f"{_DET}/detectorSpecific/ntrigger") or 1.0
        expected = int(nimages * ntrigger)
        meta["n_frames_expected"] = expected
    meta["geometry_file"] = text(f"{_DET}/geometry_file")
    meta["mask_file"] = text(f"{_DET}/mask_file")
    return {k: v for k, v in meta.items() if v is not None}, expected


def find_beside(path: Path, named, candidates: list[Path]) -> Path | None:
    """The file a series names (relative to its folder), else the first candidate there."""
    tries = [Path(str(named))] if named else []
    for c in [*tries, *candidates]:
        c = c if c.is_absolute() else path.parent / c
        if c.is_file():
            return c.absolute()
    return None


class HDF5FrameSource(FrameSource):
    """Frames of an HDF5/NeXus file being appended (see :func:`spotkit.io.follow_frames`)."""

    kind = "hdf5"

    def __init__(self, path: Path, *, start: int = 0, dataset: str | None = None,
                 counter: str | None = None):
        super().__init__(path, start=start)
        self._key = dataset
        self._counter_key = counter
        self._handle: h5py.File | None = None  # the SWMR reader, kept open
        self._seen_swmr = False
        self._shape: tuple[int, int] | None = None
        self._dtype: np.dtype | None = None
        self._meta: dict = {}
        self._stamps: list[float] = []  # per-frame timestamps read so far
        # breakpoints: frames below _seen_n[i] (and not below the previous one) were first
        # seen complete at _seen_t[i]; pruned as frames are handed out
        self._seen_n: list[int] = []
        self._seen_t: list[float] = []
        self._races = 0
        self._failing = 0  # consecutive polls that could not read the file
        self._expected: int | None = None

    # -- opening ---------------------------------------------------------------------------
    def _swmr_handle(self) -> h5py.File:
        if self._handle is None:
            self._handle = _open(self.path, swmr=True)
            logger.info("%s: following with a SWMR reader", self.path)
        return self._handle

    def _drop_handle(self) -> None:
        if self._handle is not None:
            try:
                self._handle.close()
            except Exception:
                logger.debug("%s: closing the SWMR reader failed", self.path, exc_info=True)
            self._handle = None

    def _release(self) -> None:
        self._drop_handle()

    # -- looking at the file -------------------------------------------------------------------
    def _refresh(self) -> None:
        if self._finished or not self.path.exists():
            return
        status = superblock_status(self.path)
        if status is None:
            return  # created, not yet written
        _, writing, swmr = status
        if swmr:
            self._seen_swmr = True
            try:
                self._look(self._swmr_handle(), swmr=True, writing=True)
                self._failing = 0
            except _TRANSIENT as exc:
                logger.debug("%s: SWMR refresh failed (%s); reopening next poll", self.path, exc)
                self._drop_handle()
                self._failed(exc, hopeless=False)
            return
        self._drop_handle()
        error: Exception | None = None
        errors = 0
        first = _stat(self.path)
        for _ in range(_RETRIES):
            before = _stat(self.path)
            try:
                with _open(self.path, swmr=False) as f:
                    result = self._look(f, swmr=False, writing=writing, dry=True)
            except _TRANSIENT as exc:
                logger.debug("%s: re-open failed (%s); retrying", self.path, exc)
                result, error = None, exc
                errors += 1
            if result is not None and _stat(self.path) == before:
                self._apply(*result)
                self._failing = 0
                return
            self._races += 1
        logger.debug("%s: the writer changed the file during %d reads; next poll", self.path,
                     _RETRIES)
        if error is not None:
            # every try failed and nobody writes the file: it will not get better. "Nobody"
            # is asked again: a writer that (re-)opened the file since the superblock was read
            # made the reads fail ("already open for write") and changed the file
            now = superblock_status(self.path)
            hopeless = (errors == _RETRIES and not writing and now is not None and not now[1]
                        and _stat(self.path) == first)
            self._failed(error, hopeless=hopeless)

    def _failed(self, error: Exception, *, hopeless: bool) -> None:
        """A poll could not read the file: transient while a writer has it open, not after."""
        self._failing += 1
        if hopeless:
            raise InputFileError(self.path, f"cannot be read ({type(error).__name__}: {error}) "
                                 "and no writer has it open.",
                                 hint="The file is truncated or corrupt: copy it again from "
                                 "the detector's storage.") from error
        if self._failing == 100:
            logger.warning("%s: unreadable for 100 polls while its writer has it open (%s); "
                           "still trying", self.path, error)

    def _dataset(self, f: h5py.File, *, swmr: bool):
        key = self._key or _find_frames(f)
        ds = f.get(key) if key else None
        if not isinstance(ds, h5py.Dataset):
            if self._key and (swmr or self._ended(f)):
                raise InputFileError(self.path, f"has no dataset {self._key}.", field=self._key,
                                     hint="Pass dataset= the HDF5 path of the frames (e.g. "
                                     "/entry/data/data).")
            return None
        if ds.ndim != 3:
            raise InputFileError(self.path, "the frames must be a 3-D dataset (frames x rows "
                                 f"x cols), found shape {ds.shape}.", field=ds.name,
                                 hint="Pass dataset= the frame stack's HDF5 path.")
        self._key = ds.name
        return ds

    def _ended(self, f: h5py.File) -> bool:
        end = f.get("/entry/end_time")
        if isinstance(end, h5py.Dataset):
            if self._handle is not None:
                end.refresh()
            value = str(get_value(f, "/entry/end_time") or "").strip()
            if value:
                self._meta["end_time"] = value
                return True
        return Path(f"{self.path}.done").exists()

    def _look(self, f: h5py.File, *, swmr: bool, writing: bool, dry: bool = False):
        """Count the complete frames of the open file; apply it (or return it when dry)."""
        ds = self._dataset(f, swmr=swmr)
        if ds is None:
            return (self._available, self._finished, None) if dry else None
        if swmr:
            ds.refresh()
        if not self._meta:
            self._read_metadata(f)
        if self._shape is None:
            self._shape = (int(ds.shape[1]), int(ds.shape[2]))
            self._dtype = np.dtype(ds.dtype)
        ended = self._ended(f)
        n = int(ds.shape[0])
        counter = self._counter(f, ds)
        if counter is not None:
            if swmr:
                counter.refresh()
            n = min(n, int(counter.shape[0]))
            held = n
        else:
            n = self._allocated(ds, n)
            # the newest frame may be half written while a writer has the file open
            held = n if ended or not writing else max(self._available, n - 1)
        stamps = f.get(ds.parent.name + "/frame_timestamp")
        new_stamps = None
        if isinstance(stamps, h5py.Dataset) and stamps.ndim == 1:
            if swmr and stamps is not counter:
                stamps.refresh()
            have = len(self._stamps)
            upto = min(held, int(stamps.shape[0]))
            if upto > have:
                new_stamps = np.asarray(stamps[have:upto], dtype=np.float64)
        if self._expected is not None and held >= self._expected:
            ended = True
        result = (held, ended, new_stamps)
        if dry:
            return result
        self._apply(*result)
        return None

    def _apply(self, held: int, ended: bool, new_stamps) -> None:
        if new_stamps is not None:
            self._stamps.extend(new_stamps.tolist())
        if held > self._available:
            self._seen_n.append(held)
            self._seen_t.append(time.time())
            self._available = held
        if ended and not self._finished:
            self._finished = True
            logger.info("%s: the writer ended the series at %d frames", self.path,
                        self._available)

    def _counter(self, f: h5py.File, ds: h5py.Dataset):
        key = self._counter_key or ds.parent.name + "/frame_timestamp"
        obj = f.get(key)
        if isinstance(obj, h5py.Dataset) and obj.ndim == 1:
            return obj
        if self._counter_key:
            raise InputFileError(self.path, f"the counter dataset {self._counter_key} is "
                                 "missing or not 1-D.", field=self._counter_key,
                                 hint="Name the 1-D dataset the writer appends to after each "
                                 "frame, or leave counter= out.")
        return None

    def _allocated(self, ds: h5py.Dataset, n: int) -> int:
        """How many frames have all their chunks written (no counter), checking only the
        frames not yet known: from ``available`` (or ``next_index``: frames before it were
        handed out by an earlier source, on resuming)."""
        chunks = ds.chunks
        if chunks is None:
            return n
        rows, cols = ds.shape[1], ds.shape[2]
        corners = [(r, c) for r in range(0, rows, chunks[1]) for c in range(0, cols, chunks[2])]
        k = max(self._available, min(self._next, n))
        while k < n:
            base = k - k % chunks[0]
            for r, c in corners:
                # the chunk index lookup of a read (get_chunk_info_by_coord scans the whole
                # index: 1.5 ms per call at 36,000 chunks, against 15 us here); it raises
                # when the chunk is not allocated (or mid-flush: retried next poll)
                try:
                    ds.id.read_direct_chunk((base, r, c))
                except Exception:  # not there (yet)
                    return k
            k += 1
        return n

    def _read_metadata(self, f: h5py.File) -> None:
        self._meta, expected = series_metadata(f)
        if expected is not None:
            self._expected = expected

    # -- reading frames ----------------------------------------------------------------------
    def _written_at(self, index: int) -> float:
        pos = bisect.bisect_right(self._seen_n, index)
        return self._seen_t[min(pos, len(self._seen_t) - 1)]

    def _time(self, index: int) -> float | None:
        if index < len(self._stamps):
            return float(self._stamps[index])
        dt = self._meta.get("frame_time_s")
        return None if not dt else index * float(dt)

    def _read(self, start: int, stop: int) -> tuple[list[Frame], int]:
        block = None
        if self._handle is not None:
            try:
                ds = self._handle[self._key]
                block = np.asarray(ds[start:stop])
            except _TRANSIENT as exc:
                logger.debug("%s: SWMR read failed (%s); next poll", self.path, exc)
                self._drop_handle()
                return [], start
        else:
            for _ in range(_RETRIES):
                before = _stat(self.path)
                try:
                    with _open(self.path, swmr=False) as f:
                        block = np.asarray(f[self._key][start:stop])
                except _TRANSIENT as exc:
                    logger.debug("%s: re-open read failed (%s)", self.path, exc)
                    block = None
                if block is not None and _stat(self.path) == before:
                    break
                self._races += 1
                block = None
            if block is None:
                return [], start
        frames = [Frame(start + i, block[i], self._time(start + i), self._written_at(start + i))
                  for i in range(block.shape[0])]
        done = bisect.bisect_right(self._seen_n, start + len(frames))
        if done > 1:  # breakpoints of frames handed out are not needed any more
            del self._seen_n[:done - 1], self._seen_t[:done - 1]
        return frames, start + len(frames)

    @property
    def info(self) -> FrameSourceInfo:
        """What is known about the series so far (:class:`FrameSourceInfo`)."""
        meta = dict(self._meta)
        poni = mask = None
        named = meta.get("geometry_file")
        candidates = [Path(named)] if named else []
        candidates.append(self.path.with_suffix(".poni"))
        for c in candidates:
            c = c if c.is_absolute() else self.path.parent / c
            if c.is_file():
                poni = c.absolute()
                break
        named = meta.get("mask_file")
        candidates = [Path(named)] if named else []
        candidates += [self.path.with_name(f"{self.path.stem}_mask{s}") for s in _MASK_SUFFIXES]
        for c in candidates:
            c = c if c.is_absolute() else self.path.parent / c
            if c.is_file():
                mask = c.absolute()
                break
        meta["read_races"] = self._races
        return FrameSourceInfo(path=self.path, kind=self.kind, format="h5", shape=self._shape,
                               dtype=self._dtype, poni_path=poni, mask_path=mask,
                               dataset=self._key, swmr=self._seen_swmr, metadata=meta)
