"""Follow a folder into which a detector writes numbered frame files (CBF, EDF, TIFF).

The folder is laid out as :mod:`spotkit.io._framefolder` reads it (``<prefix><number>.<ext>``
frames, a PONI file, a ``metadata.json``/``.yaml`` sidecar). While it fills:

* a file counts only once it holds every byte its header announces
  (:func:`~spotkit.io._follow_check.file_complete`), so a half-written file is never read;
* frames are handed out in number order: frame ``k`` is the file numbered ``first + k``
  (``first``: the lowest number in the folder). A missing, incomplete or unreadable file
  while later frames are complete is waited for ``gap_timeout_s``, then skipped with a
  warning (``info.metadata["missing_frames"]``);
* the series ends with a ``<folder>.done`` (or ``<folder>/.done``) sentinel, an ``end_time``
  in the sidecar, or the sidecar's ``n_frames`` all there, once no frame is awaited before
  later ones (a gap is skipped first; a last file left incomplete is not handed out).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from spotkit.errors import InputFileError

from ._follow import Frame, FrameSource, FrameSourceInfo
from ._follow_check import file_complete
from ._framefolder import _NUMBERED, FRAME_FILE_SUFFIXES, find_sidecar, read_sidecar
from ._frames import _open

__all__ = ["FolderFrameSource"]

logger = logging.getLogger("spotkit.io")

_MASK_SUFFIXES = (".edf", ".tif", ".tiff", ".npy")
#: seconds after which the folder is listed again even if its mtime did not move
RESCAN_S = 1.0
_FORMATS = {".cbf": "cbf", ".edf": "edf", ".tif": "tiff", ".tiff": "tiff"}


class FolderFrameSource(FrameSource):
    """Frames of a folder of numbered frame files (see :func:`spotkit.io.follow_frames`)."""

    kind = "folder"

    def __init__(self, path: Path, *, start: int = 0, gap_timeout_s: float = 60.0):
        super().__init__(path, start=start)
        self._gap_timeout = float(gap_timeout_s)
        self._series: tuple[str, str] | None = None
        self._names: dict[int, str] = {}        # frame number -> file name
        self._parsed: dict[str, tuple[str, str, int] | None] = {}
        self._base: int | None = None
        self._complete: set[int] = set()        # frame indices known complete
        self._skipped: list[int] = []
        self._stuck: dict[int, float] = {}      # index -> when it first blocked later frames
        self._unreadable: set[int] = set()
        self._ignored: set[tuple[str, str]] = set()
        self._doc: dict = {}
        self._sidecar: tuple[Path, int] | None = None
        self._shape: tuple[int, int] | None = None
        self._dtype: np.dtype | None = None
        self._dir_mtime = -1
        self._scanned_at = 0.0

    # -- scanning --------------------------------------------------------------------------
    def _parse(self, name: str) -> tuple[str, str, int] | None:
        if name not in self._parsed:
            ext = os.path.splitext(name)[1].lower()
            m = _NUMBERED.match(name[: len(name) - len(ext)]) if ext else None
            ok = not name.startswith(".") and ext in FRAME_FILE_SUFFIXES and m is not None
            self._parsed[name] = (m["prefix"], ext, int(m["number"])) if ok and m else None
        return self._parsed[name]

    def _scan(self) -> None:
        # files appear, vanish or are renamed: the folder's mtime moves. A file growing in
        # place does not move it, but that file's name is known already. Rescan anyway
        # every RESCAN_S (folders whose mtime is coarse, e.g. over NFS).
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        now = time.monotonic()
        if mtime == self._dir_mtime and now - self._scanned_at < RESCAN_S:
            return
        self._dir_mtime, self._scanned_at = mtime, now
        found: dict[tuple[str, str], dict[int, str]] = {}
        try:
            with os.scandir(self.path) as it:
                for entry in it:
                    parsed = self._parse(entry.name)
                    if parsed is not None:
                        found.setdefault(parsed[:2], {})[parsed[2]] = entry.name
        except FileNotFoundError:
            return
        if not found:
            return
        if self._series is None:
            if len(found) > 1:
                listed = ", ".join(f"{p}*{e} ({len(v)})" for (p, e), v in sorted(found.items()))
                raise InputFileError(self.path, f"holds more than one frame series: {listed}; "
                                     "a followed folder must hold one.", field="frames",
                                     hint="Put each series in its own folder.")
            (self._series,) = found
        for key in found:
            if key != self._series and key not in self._ignored:
                self._ignored.add(key)
                logger.warning("%s: ignoring files %s*%s: not of the series %s*%s", self.path,
                               key[0], key[1], *self._series)
        names = found.get(self._series, {})
        self._names.update(names)
        if self._base is None and names:
            self._base = min(names)
            logger.info("%s: frame 0 is file number %d", self.path, self._base)

    def _read_sidecar(self) -> None:
        try:
            sidecar = find_sidecar(self.path)
            if sidecar is None:
                return
            mtime = sidecar.stat().st_mtime_ns
            if self._sidecar == (sidecar, mtime):
                return
            self._doc = read_sidecar(sidecar)
            self._sidecar = (sidecar, mtime)
        except (InputFileError, OSError) as exc:  # being written: try again next poll
            logger.debug("%s: sidecar not readable yet (%s)", self.path, exc)

    def _ended(self) -> bool:
        if Path(f"{self.path}.done").exists() or (self.path / ".done").exists():
            return True
        if self._doc.get("end_time"):
            return True
        expected = self._doc.get("n_frames")
        return expected is not None and self._available >= int(expected)

    def _blocked(self, k: int, why: str) -> bool:
        """Frame ``k`` is not ready: skip it (True) after ``gap_timeout_s`` with later frames."""
        assert self._base is not None
        later = any(n > self._base + k for n in self._names)
        if not later:
            self._stuck.pop(k, None)
            return False
        now = time.monotonic()
        since = self._stuck.setdefault(k, now)
        if now - since < self._gap_timeout:
            return False
        self._stuck.pop(k, None)
        self._skipped.append(k)
        logger.warning("%s: frame %d (file number %d) %s for %.0f s while later frames are "
                       "there; skipped", self.path, k, self._base + k, why, self._gap_timeout)
        return True

    def _refresh(self) -> None:
        if self._finished:
            return
        self._read_sidecar()
        self._scan()
        waiting = False  # a frame is awaited while later ones are there
        if self._base is not None:
            k = self._available
            while True:
                if k in self._skipped or k in self._complete:
                    k += 1
                    continue
                name = self._names.get(self._base + k)
                if name is None:
                    if self._blocked(k, "is missing"):
                        continue
                    break
                if k in self._unreadable:
                    if self._blocked(k, "cannot be read"):
                        continue
                    break
                if not file_complete(self.path / name):
                    if self._blocked(k, "is incomplete"):
                        continue
                    break
                self._stuck.pop(k, None)
                self._complete.add(k)
                k += 1
            self._available = k
            waiting = bool(self._stuck)
        if not waiting and self._ended():
            self._finished = True
            logger.info("%s: the series ended at %d frames", self.path, self._available)

    # -- reading ----------------------------------------------------------------------------
    def _read(self, start: int, stop: int) -> tuple[list[Frame], int]:
        assert self._base is not None
        frames: list[Frame] = []
        skipped = set(self._skipped)  # a list: few, in the order they were given up
        dt = self._doc.get("frame_time_s")
        for k in range(start, stop):
            if k in skipped:
                continue
            path = self.path / self._names[self._base + k]
            try:
                written_at = path.stat().st_mtime
                img = _open(str(path))
                try:
                    data = np.asarray(img.data)
                finally:
                    close = getattr(img, "close", None)
                    if close is not None:
                        close()
            except (InputFileError, OSError) as exc:
                logger.warning("%s: frame %d cannot be read (%s); waiting", self.path, k, exc)
                self._complete.discard(k)
                self._unreadable.add(k)
                self._available = k
                return frames, k
            self._unreadable.discard(k)
            if data.ndim != 2:
                raise InputFileError(path, f"holds a {data.ndim}-D image; frame files must "
                                     "hold one 2-D frame each.", field="frames")
            if self._shape is None:
                self._shape = (int(data.shape[0]), int(data.shape[1]))
                self._dtype = data.dtype
            elif data.shape != self._shape or data.dtype != self._dtype:
                raise InputFileError(
                    path, f"its frame is {data.shape[0]} x {data.shape[1]} {data.dtype} but the "
                    f"series' frames are {self._shape[0]} x {self._shape[1]} {self._dtype}.",
                    field="frame shape", hint="Remove the stray file, or put each detector's "
                    "frames in its own folder.")
            frames.append(Frame(k, data, None if not dt else k * float(dt), written_at))
        return frames, stop

    # -- what is known ----------------------------------------------------------------------------
    def _find(self, named, siblings: list[Path], pattern: str | None) -> Path | None:
        candidates = []
        if named:
            p = Path(str(named))
            candidates.append(p if p.is_absolute() else self.path / p)
        candidates += siblings
        for c in candidates:
            if c.is_file():
                return Path(os.path.abspath(c))
        if pattern:
            found = sorted(self.path.glob(pattern)) if self.path.is_dir() else []
            if len(found) == 1:
                return found[0].absolute()
        return None

    @property
    def info(self) -> FrameSourceInfo:
        """What is known about the series so far (:class:`FrameSourceInfo`)."""
        doc = self._doc
        poni = self._find(doc.get("poni"), [self.path.with_name(self.path.name + ".poni")],
                          "*.poni")
        mask = self._find(doc.get("mask"), [self.path.with_name(f"{self.path.name}_mask{s}")
                                            for s in _MASK_SUFFIXES]
                          + [self.path / f"mask{s}" for s in _MASK_SUFFIXES], None)
        meta: dict[str, object] = {
            k: v for k, v in doc.items() if k not in ("n_frames", "poni", "mask")
            and isinstance(v, str | int | float | bool)}
        if doc.get("n_frames"):
            meta["n_frames_expected"] = int(doc["n_frames"])
        meta["missing_frames"] = list(self._skipped)
        if self._base is not None:
            meta["first_number"] = self._base
        if self._sidecar is not None:
            meta["sidecar"] = str(self._sidecar[0])
        fmt = _FORMATS.get(self._series[1], self._series[1]) if self._series else ""
        return FrameSourceInfo(path=self.path, kind=self.kind, format=fmt, shape=self._shape,
                               dtype=self._dtype, poni_path=poni, mask_path=mask,
                               metadata=meta)
