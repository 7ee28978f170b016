"""Follow a frame series while a detector writes it: :func:`follow_frames`.

A :class:`FrameSource` hands out the frames of a series as they land, in order, and never a
frame the detector has not finished writing. Three kinds of series are followed:

* **one HDF5/NeXus file being appended** (:mod:`spotkit.io._follow_h5`): read with a SWMR
  reader when the writer has switched SWMR on (the HDF5 superblock says so), otherwise by
  re-opening the file for each poll and keeping a poll only when the file did not change
  while it was read. The file is always opened read-only with HDF5 file locking off, so the
  reader never blocks or locks the writer.
* **a folder of frame files arriving** (CBF, EDF, TIFF; :mod:`spotkit.io._follow_folder`):
  a file counts only once its bytes are all there (the format's own header says how many
  there must be), and frames are handed out in number order (a gap waits).
* **a Dectris Eiger series** (:mod:`spotkit.io._follow_eiger`): a ``*_master.h5`` file whose
  ``/entry/data/data_NNNNNN`` external links point at data files of a block of frames each,
  which appear one after another; each is followed like one HDF5 file being appended, the
  frame numbers running on across them (a data file that never comes is a gap).

:meth:`FrameSource.poll` never sleeps; :meth:`FrameSource.follow` is the blocking loop.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from spotkit.errors import InputFileError

__all__ = ["Frame", "FrameSource", "FrameSourceInfo", "follow_frames"]

logger = logging.getLogger("spotkit.io")


class Frame(NamedTuple):
    """One detector frame handed out by a :class:`FrameSource`.

    Attributes
    ----------
    index : int
        Frame number in the series (0 = the first frame the detector wrote).
    data : numpy.ndarray
        The ``(rows, cols)`` image, the file's dtype.
    time_s : float or None
        Acquisition time of the frame, seconds since the series started (the file's
        per-frame timestamps, else ``index * frame_time_s``), None when unknown.
    written_at : float
        Unix time at which the frame was seen written: the file's modification time for
        frame files, the time of the poll that first found it complete for HDF5.
    """

    index: int  # type: ignore[assignment]  # (the contract's name; shadows tuple.index)
    data: np.ndarray
    time_s: float | None
    written_at: float


@dataclass(frozen=True)
class FrameSourceInfo:
    """What a :class:`FrameSource` knows about its series (a snapshot; it grows).

    Attributes
    ----------
    path : pathlib.Path
        The HDF5 file (the master file of an Eiger series) or the folder followed.
    kind : str
        ``"hdf5"``, ``"eiger"`` or ``"folder"``.
    format : str
        ``"h5"``, ``"cbf"``, ``"edf"`` or ``"tiff"`` (``""`` until the first frame file).
    shape : (int, int) or None
        Frame shape, None until known.
    dtype : numpy.dtype or None
        Frame dtype, None until known.
    poni_path : pathlib.Path or None
        The pyFAI geometry file of the series, when one is named or found beside it.
    mask_path : pathlib.Path or None
        The detector mask file (EDF/TIFF, 1 = masked), when one is named or found.
    dataset : str or None
        HDF5 path of the frames (HDF5 only).
    swmr : bool
        The writer uses SWMR (HDF5 only).
    metadata : dict
        ``beamline``, ``sample``, ``proposal``, ``start_time``, ``end_time``,
        ``frame_time_s``, ``n_frames_expected``, ``energy_kev``... (what the file or the
        folder's sidecar says; absent keys are unknown), plus the reader's counters
        (``missing_frames``: frames skipped after ``gap_timeout_s``; ``read_races``:
        re-opened reads discarded because the writer changed the file meanwhile); Eiger
        series add ``data_files`` (those there so far), ``n_data_files`` (linked),
        ``frames_per_file`` and ``missing_files``.
    """

    path: Path
    kind: str
    format: str
    shape: tuple[int, int] | None
    dtype: np.dtype | None
    poni_path: Path | None
    mask_path: Path | None
    dataset: str | None = None
    swmr: bool = False
    metadata: dict = field(default_factory=dict)


class FrameSource:
    """Frames of a series being written, handed out in order as they land.

    Made by :func:`follow_frames`. Not thread-safe: one consumer polls it.

    Attributes
    ----------
    path : pathlib.Path
        The file or folder followed.
    """

    kind = ""

    def __init__(self, path: Path, *, start: int = 0):
        if int(start) < 0:
            raise ValueError(f"start must be >= 0 (a frame index), got {start}")
        self.path = path
        self._next = int(start)
        self._available = 0
        self._finished = False
        self._closed = False

    # -- what subclasses implement -------------------------------------------------------
    def _refresh(self) -> None:
        """Look at the series: update ``_available`` and ``_finished`` (no frame read)."""
        raise NotImplementedError

    def _read(self, start: int, stop: int) -> tuple[list[Frame], int]:
        """Frames ``start .. stop - 1`` (all known complete) and the next index to read.

        The next index is ``stop`` when all were read (or skipped as lost); a read that
        must be retried returns what it got and where to start again.
        """
        raise NotImplementedError

    @property
    def info(self) -> FrameSourceInfo:
        """What is known about the series so far (:class:`FrameSourceInfo`)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Close open handles."""

    # -- the public face -------------------------------------------------------------------
    def poll(self, max_frames: int | None = None) -> list[Frame]:
        """The frames written since the last poll, in order; never blocks.

        Parameters
        ----------
        max_frames : int, optional
            Hand out at most this many (the rest stay for the next poll: a reader slower
            than the detector catches up in bounded steps).

        Returns
        -------
        list of Frame
            Possibly empty. Never a frame the detector is still writing.
        """
        if self._closed:
            raise ValueError(f"the frame source of {self.path} is closed")
        if max_frames is not None and int(max_frames) < 0:
            raise ValueError(f"max_frames must be >= 0 or None, got {max_frames}")
        self._refresh()
        stop = self._available
        if max_frames is not None:
            stop = min(stop, self._next + int(max_frames))
        if stop <= self._next:
            return []
        frames, self._next = self._read(self._next, stop)
        return frames

    @property
    def next_index(self) -> int:
        """Index of the next frame :meth:`poll` will hand out."""
        return self._next

    @property
    def available(self) -> int:
        """Frames known completely written so far (frames ``0 .. available - 1``)."""
        return self._available

    @property
    def behind(self) -> int:
        """Frames written but not handed out yet."""
        return max(0, self._available - self._next)

    @property
    def finished(self) -> bool:
        """The writer has ended the series (end marker, ``.done`` file, all frames there)."""
        return self._finished

    @property
    def exhausted(self) -> bool:
        """Finished and every written frame handed out: nothing more will come."""
        return self._finished and self._next >= self._available

    def follow(self, *, interval: float = 0.2, idle_timeout: float | None = None,
               max_frames: int | None = None) -> Iterator[Frame]:
        """Yield frames as they land until the series is finished (blocking).

        Parameters
        ----------
        interval : float
            Seconds between polls when nothing new has landed.
        idle_timeout : float, optional
            Stop after this many seconds without a new frame (a writer that died leaves
            no end marker); default: wait for the end.
        max_frames : int, optional
            Frames per poll.
        """
        last = time.monotonic()
        while True:
            frames = self.poll(max_frames)
            if frames:
                last = time.monotonic()
                yield from frames
                continue
            if self.exhausted:
                return
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                logger.info("%s: no new frame for %.1f s; stop following", self.path,
                            idle_timeout)
                return
            time.sleep(interval)

    def close(self) -> None:
        """Release the file handles (idempotent)."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "finished" if self._finished else "following"
        return (f"<{type(self).__name__} {self.path} next={self._next} "
                f"available={self._available} {state}>")


def follow_frames(path: str | os.PathLike[str], *, start: int = 0, dataset: str | None = None,
                  counter: str | None = None, gap_timeout_s: float = 60.0) -> FrameSource:
    """Follow a frame series while it is written: an HDF5/NeXus file or a folder of frames.

    Parameters
    ----------
    path : path-like
        An HDF5/NeXus file being appended (it may not exist yet: the source waits for it),
        an Eiger master file (``/entry/data/data_NNNNNN`` external links to the data files,
        or, while it does not exist or cannot be read yet, a name ending in ``_master``), or
        a folder into which numbered CBF/EDF/TIFF frame files arrive.
    start : int
        First frame to hand out (resume after frame ``start - 1``).
    dataset : str, optional
        HDF5 path of the frames; default ``/entry/data/data``, else the NXdata signal of
        the default entry, else the one 3-D dataset of the file. Given (or ``counter``), the
        file is followed as one file even when it is an Eiger master.
    counter : str, optional
        HDF5 path of a 1-D dataset the writer appends to *after* each frame (a frame
        counts only once its counter entry exists); default: ``frame_timestamp`` beside
        the frames when present. Without one, the newest frame is held back until the
        next frame appears or the series ends, and a frame counts only when its chunks are
        allocated.
    gap_timeout_s : float
        Folders: a frame file missing (or unreadable) while later frames are complete is
        waited for this long, then skipped with a warning (it is recorded in
        ``info.metadata["missing_frames"]``). Eiger series: the same for a data file
        missing, unreadable or incomplete while later data files are there (its frames
        are recorded in ``missing_frames``, its name in ``missing_files``).

    Returns
    -------
    FrameSource
        :meth:`~FrameSource.poll` returns the new :class:`Frame` objects; ``available``,
        ``finished``, ``info``; close it (or use it as a context manager).

    Raises
    ------
    InputFileError
        A path that does not exist (and is not an HDF5 file name in an existing folder), a
        single frame file (follow its folder), or a file that is not HDF5. Polling raises it
        for an Eiger master that links no data file, a data file without the linked
        dataset, or data files whose frames differ in shape or dtype.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.sim import LiveSeriesWriter
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "live.h5"
    >>> writer = LiveSeriesWriter(path, n_frames=4, shape=(40, 50))
    >>> source = follow_frames(path)
    >>> writer.write(2)
    2
    >>> [frame.index for frame in source.poll()], source.finished
    ([0, 1], False)
    >>> writer.write(2)
    4
    >>> [frame.index for frame in source.poll()], source.finished
    ([2, 3], True)
    >>> source.close()
    """
    from ._follow_eiger import EigerFrameSource, is_eiger_master
    from ._follow_folder import FolderFrameSource
    from ._follow_h5 import HDF5FrameSource
    from ._h5 import HDF5_SUFFIXES

    p = Path(path).expanduser().absolute()
    if float(gap_timeout_s) < 0:
        raise ValueError(f"gap_timeout_s must be >= 0, got {gap_timeout_s}")
    if p.is_dir():
        if dataset is not None or counter is not None:
            raise ValueError(f"{p} is a folder of frame files: dataset= and counter= apply "
                             "to HDF5 files only")
        return FolderFrameSource(p, start=start, gap_timeout_s=gap_timeout_s)
    if p.suffix.lower() in HDF5_SUFFIXES:
        if not p.exists() and not p.parent.is_dir():
            raise InputFileError(p, "neither the file nor its folder exists.",
                                 hint="Check the path (the source waits for a file that does "
                                 "not exist yet, but only in an existing folder).")
        if dataset is None and counter is None and is_eiger_master(p):
            return EigerFrameSource(p, start=start, gap_timeout_s=gap_timeout_s)
        return HDF5FrameSource(p, start=start, dataset=dataset, counter=counter)
    if not p.exists():
        raise InputFileError(p, "does not exist.",
                             hint="Pass an HDF5/NeXus file (.h5, .nxs...) or the folder the "
                             "detector writes its frame files into.")
    from ._h5 import sniff_hdf5

    if sniff_hdf5(p):
        if dataset is None and counter is None and is_eiger_master(p):
            return EigerFrameSource(p, start=start, gap_timeout_s=gap_timeout_s)
        return HDF5FrameSource(p, start=start, dataset=dataset, counter=counter)
    raise InputFileError(p, "is neither an HDF5/NeXus file nor a folder of frame files.",
                         hint=f"To follow frame files (CBF/EDF/TIFF), pass their folder "
                         f"{p.parent}.")
