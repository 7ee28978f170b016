"""The reduced I(q) of a live series, one row per frame, appended to an HDF5 file.

Layout (NeXus ``NXdata`` at ``/entry/profiles``, readable by silx, h5web, h5py)::

    /entry/profiles            NX_class=NXdata, signal="intensity", axes=["frame", <dim>]
        <dim>        (npt,)    the radial axis (attribute ``units``)
        frame        (n,)      frame index of each row, strictly increasing
        intensity    (n, npt)
        intensity_errors (n, npt)   sigma (NaN when none was given)

The writer appends under HDF5's single-writer / multiple-reader mode (SWMR), so readers
(:meth:`ProfileLog.open`, another process: the live timeline, a fit) read it while it
grows, without locking the writer out. A row is complete when its ``frame`` is written
(last, after its data).

Crash safety with the catalog: append and :meth:`~ProfileLog.flush` (``autoflush``, the
default, flushes every append) *before* recording the frames' points in the catalog; a
killed writer then leaves every frame up to the catalog's cursor in the file, maybe a few
more. On restart, open the log again (a lock file says whether its writer is alive; a dead
writer's SWMR mark is cleared) and call ``truncate(after_frame=catalog.live_cursor(ds))``:
the rows the catalog never recorded go, and the session goes on from the next frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from spotkit.errors import InputFileError
from spotkit.live import _store_recovery
from spotkit.live._store_recovery import WriterLock

__all__ = ["ProfileLog", "profile_log_path"]

logger = logging.getLogger(__name__)

GROUP = "entry/profiles"
FORMAT_VERSION = 1
_CHUNK_BYTES = 64 * 1024
_OPEN_WAIT_S = 2.0  # a reader waits this long for a writer that is just creating the file
# readers open in this process: HDF5 will not open a file for writing that this process
# has open read-only, so a writer opening a log closes them, and they reopen on next read
_READERS: weakref.WeakSet[ProfileLog] = weakref.WeakSet()


def profile_log_path(catalog: Any, dataset_id: Any) -> Path:
    """Where ``spotkit live`` keeps a series' ProfileLog by default:
    ``<catalog home>/live/<dataset id>.profiles.h5``.

    Parameters
    ----------
    catalog : Catalog
        The catalog of the series (its :attr:`~spotkit.catalog.Catalog.home`).
    dataset_id : str or Dataset

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> profile_log_path(open_catalog(work / "catalog.db"), "ds-1").relative_to(work)
    PosixPath('live/ds-1.profiles.h5')
    """
    ds_id = getattr(dataset_id, "id", dataset_id)
    if not isinstance(ds_id, str) or not ds_id or "/" in ds_id or ds_id.startswith("."):
        raise ValueError(f"dataset_id must be a dataset id, got {dataset_id!r}")
    return Path(catalog.home) / "live" / f"{ds_id}.profiles.h5"


def _grow(frames: np.ndarray, more: np.ndarray) -> np.ndarray:
    """``frames`` with ``more`` after it, in a buffer that doubles (appending is O(1)
    amortised, not a copy of every frame so far); returns the view of the valid part."""
    n, k = frames.size, more.size
    base = frames.base
    if not (isinstance(base, np.ndarray) and base.dtype == np.int64 and base.ndim == 1
            and base.size >= n + k and frames.ctypes.data == base.ctypes.data):
        base = np.empty(max(1024, 2 * (n + k)), dtype=np.int64)
        base[:n] = frames
    base[n:n + k] = more
    return base[:n + k]


def _frames_argument(frames: Any) -> np.ndarray:
    if isinstance(frames, slice):
        raise TypeError("frames must be frame indices (a list, range or array), not a slice; "
                        "use range(start, stop)")
    arr = np.asarray(list(frames) if isinstance(frames, Iterable) and not isinstance(
        frames, np.ndarray) else frames)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size and (arr.dtype.kind not in "iu" or arr.ndim != 1):
        raise TypeError(f"frames must be integer frame indices, got {frames!r}")
    return arr.astype(np.int64)


class ProfileLog:
    """The reduced I(q) rows of a live series in one HDF5 file, readable while written.

    Parameters
    ----------
    path : path-like
        The HDF5 file (created with its folder when missing).
    radial : array-like, optional
        The radial axis (e.g. :attr:`FrameReducer.radial <spotkit.scattering.FrameReducer>`);
        needed to create a file; when the file exists it must match (else ValueError).
    dim : str, optional
        Name of the radial axis (``"q"``, ``"2th"``, ``"r"``...).
    unit : str, optional
        Its unit (e.g. ``"nm^-1"``), stored as the axis' ``units``.
    mode : {"a", "r"}, optional
        ``"a"`` (default): write (one writer at a time, checked with a lock file beside
        it); ``"r"``: read only (see :meth:`open`).
    dtype : {"float64", "float32"}, optional
        How intensities are stored (float32 halves the file).
    autoflush : bool, optional
        Flush after every :meth:`append` (default), so readers and a restart see each row
        as soon as it is appended.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from spotkit.live import ProfileLog
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.profiles.h5"
    >>> q = np.linspace(0.1, 2.0, 5)
    >>> log = ProfileLog(path, q, dim="q", unit="nm^-1")
    >>> for frame in range(4):
    ...     log.append(frame, np.full(5, 10.0 + frame), np.ones(5))
    >>> reader = ProfileLog.open(path)  # another process could do the same, meanwhile
    >>> reader.read(frames=[3])["intensity"].values
    array([[13., 13., 13., 13., 13.]])
    >>> log.truncate(after_frame=1)  # e.g. the catalog's cursor after a restart
    2
    >>> reader.read().frame.values
    array([0, 1])
    >>> log.close(); reader.close()
    """

    def __init__(
        self,
        path: str | os.PathLike,
        radial: Any = None,
        *,
        dim: str = "q",
        unit: str | None = None,
        mode: str = "a",
        dtype: str = "float64",
        autoflush: bool = True,
    ):
        import h5py

        if mode not in ("a", "r"):
            raise ValueError(f"mode must be 'a' (write) or 'r' (read), got {mode!r}")
        if np.dtype(dtype) not in (np.float64, np.float32):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        if not isinstance(dim, str) or not dim.isidentifier() or dim in ("frame", "intensity"):
            raise ValueError(f"dim must be a name like 'q' or '2th', got {dim!r}")
        self.path = Path(path).absolute()
        self.mode = mode
        self.autoflush = bool(autoflush)
        self._h5py = h5py
        self._lock: WriterLock | None = None
        self._file: Any = None
        self._suspended = False
        self._inode: int | None = None
        self.dim: str = dim
        self.unit: str | None = unit
        self.radial: np.ndarray = np.empty(0)
        self._frames: np.ndarray = np.empty(0, dtype=np.int64)
        if mode == "r":
            self._open_reader()
            return
        self._lock = WriterLock(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire(self.path)
        try:
            if self.path.exists():
                self._open_writer(radial, dim)
            else:
                self._create(radial, dim, unit, np.dtype(dtype))
            self._start_swmr()
        except BaseException:
            self.close()
            raise
        logger.info("profile log %s: %d rows, last frame %d", self.path, len(self),
                    self.last_frame)

    def _start_swmr(self) -> None:
        self._file.swmr_mode = True  # readers may open it from now on

    @classmethod
    def open(cls, path: str | os.PathLike) -> ProfileLog:
        """Open a ProfileLog to read, while it is written or after.

        Each :meth:`read` sees the rows appended (and flushed) until then.

        Parameters
        ----------
        path : path-like

        Returns
        -------
        ProfileLog
        """
        return cls(path, mode="r")

    # -- opening --------------------------------------------------------------------------

    def _create(self, radial: Any, dim: str, unit: str | None, dtype: np.dtype) -> None:
        if radial is None:
            raise ValueError(f"{self.path} does not exist: give the radial axis to create it")
        axis = self._check_radial(radial)
        npt = axis.size
        rows = max(1, min(1024, _CHUNK_BYTES // (npt * dtype.itemsize)))
        tmp = self.path.with_name(self.path.name + ".new")
        with self._h5py.File(tmp, "w", libver="latest", locking=False) as f:
            f.attrs["NX_class"] = "NXroot"
            entry = f.create_group("entry")
            entry.attrs["NX_class"] = "NXentry"
            g = entry.create_group("profiles")
            g.attrs.update(NX_class="NXdata", signal="intensity", axes=["frame", dim],
                           spotkit_profile_log=FORMAT_VERSION, dim=dim)
            ax = g.create_dataset(dim, data=axis)
            if unit:
                ax.attrs["units"] = unit
            g.create_dataset("frame", (0,), maxshape=(None,), dtype="i8", chunks=(4096,),
                             fillvalue=-1)
            for name in ("intensity", "intensity_errors"):
                g.create_dataset(name, (0, npt), maxshape=(None, npt), dtype=dtype,
                                 chunks=(rows, npt), fillvalue=np.nan)
        os.replace(tmp, self.path)  # a reader never sees a half-made file
        self._file = self._h5py.File(self.path, "r+", libver="latest", locking=False)
        self._bind()

    def _open_writer(self, radial: Any, dim: str) -> None:
        for reader in list(_READERS):
            if reader.path == self.path and reader._file is not None:
                reader._file.close()
                reader._file = None
                reader._suspended = True
        try:
            self._file = self._h5py.File(self.path, "r+", libver="latest", locking=False)
        except OSError as exc:
            if "already open for write" not in str(exc):
                raise InputFileError(self.path, f"cannot be opened as a profile log ({exc})",
                                     hint="Give another path, or remove the file.") from exc
            # its writer was killed (we hold the lock, so none is alive): clear its mark
            logger.warning("profile log %s: its last writer did not close it (killed?); "
                           "recovering it", self.path)
            if not _store_recovery.clear_swmr_mark(self.path):
                self._rebuild()
            self._file = self._h5py.File(self.path, "r+", libver="latest", locking=False)
        self._bind()
        if radial is not None:
            axis = self._check_radial(radial)
            if axis.shape != self.radial.shape or not np.allclose(axis, self.radial):
                raise ValueError(
                    f"{self.path} holds profiles on another radial axis ({self.radial.size} "
                    f"points, {self.radial[0]:g}..{self.radial[-1]:g}) than the one given "
                    f"({axis.size} points, {axis[0]:g}..{axis[-1]:g}); use another path")
        if self.dim != dim:
            raise ValueError(f"{self.path} holds profiles on {self.dim!r}, not {dim!r}")
        # a row the killed writer had not finished (its frame not written) goes
        n = self._valid_rows()
        if any(d.shape[0] != n for d in (self._frame, self._intensity, self._sigma)):
            logger.warning("profile log %s: dropping %d unfinished row(s)", self.path,
                           max(d.shape[0] for d in (self._frame, self._intensity)) - n)
            self._resize(n)

    def _rebuild(self) -> None:
        """Copy what a SWMR reader can read of a damaged log into a fresh file."""
        reader = ProfileLog(self.path, mode="r")
        try:
            data = reader.read()
            unit = reader.unit
        finally:
            reader.close()
        dim = data.attrs["dim"]
        bad = self.path.with_name(self.path.name + ".damaged")
        os.replace(self.path, bad)
        self._create(data[dim].values, dim, unit, data["intensity"].dtype)
        self._append_rows(data.frame.values, data["intensity"].values, data["sigma"].values)
        self._file.close()
        self._file = None
        bad.unlink()
        logger.warning("profile log %s rebuilt from its %d readable rows", self.path,
                       data.sizes["frame"])

    def _open_reader(self) -> None:
        deadline = time.monotonic() + _OPEN_WAIT_S
        while True:
            try:
                self._file = self._h5py.File(self.path, "r", swmr=True, libver="latest",
                                             locking=False)
                break
            except FileNotFoundError:
                raise InputFileError(self.path, "does not exist (no profile log yet)",
                                     hint="Is `spotkit live` following this series?") from None
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise InputFileError(self.path, f"cannot be read as a profile log ({exc})"
                                         ) from exc
                time.sleep(0.05)
        self._suspended = False
        _READERS.add(self)
        self._bind()

    def _bind(self) -> None:
        f = self._file
        if GROUP not in f or "spotkit_profile_log" not in f[GROUP].attrs:
            raise InputFileError(self.path, "is not a spotkit profile log",
                                 field=GROUP, hint="Give the path of a ProfileLog file.")
        g = f[GROUP]
        self.dim = str(g.attrs["dim"])
        self._radial_ds = g[self.dim]
        self.radial = np.asarray(self._radial_ds[()], dtype=np.float64)
        self.unit = (str(self._radial_ds.attrs["units"]) if "units" in self._radial_ds.attrs
                     else None)
        self._frame = g["frame"]
        self._intensity = g["intensity"]
        self._sigma = g["intensity_errors"]
        self._frames = np.asarray(self._frame[: self._valid_rows()], dtype=np.int64)
        with contextlib.suppress(OSError):
            self._inode = os.stat(self.path).st_ino

    @staticmethod
    def _check_radial(radial: Any) -> np.ndarray:
        axis = np.asarray(radial, dtype=np.float64)
        if axis.ndim != 1 or axis.size < 1 or not np.all(np.isfinite(axis)):
            raise ValueError(f"radial must be a 1-D array of finite numbers, got shape "
                             f"{axis.shape}")
        return axis

    def _valid_rows(self) -> int:
        """Rows whose frame is written (the writer writes it last)."""
        n = min(self._frame.shape[0], self._intensity.shape[0], self._sigma.shape[0])
        if n == 0:
            return 0
        tail = np.asarray(self._frame[max(0, n - 64): n])
        bad = np.flatnonzero(tail < 0)
        if bad.size == 0:
            return n
        if bad[0] > 0 or n <= 64:
            return max(0, n - 64) + int(bad[0])
        frames = np.asarray(self._frame[:n])
        return int(np.flatnonzero(frames < 0)[0])

    # -- writing --------------------------------------------------------------------------

    def _writable(self) -> None:
        if self._file is None:
            raise ValueError(f"profile log {self.path} is closed")
        if self.mode != "a":
            raise ValueError(f"profile log {self.path} was opened to read (mode 'r'); open "
                             "it with ProfileLog(path) to write")

    def append(self, frame: Any, intensity: Any, sigma: Any = None) -> None:
        """Append the I(q) of one frame (or of several: frames as a list, rows 2-D).

        Parameters
        ----------
        frame : int or sequence of int
            Frame index (> the last one in the log).
        intensity : array-like
            ``(npt,)``, or ``(k, npt)`` for ``k`` frames.
        sigma : array-like, optional
            Same shape (NaN when not given).

        Raises
        ------
        ValueError
            A frame not after the last one, or rows of the wrong length (nothing written).
        """
        self._writable()
        frames = _frames_argument(frame)
        npt = self.radial.size
        rows = np.asarray(intensity, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.shape != (frames.size, npt):
            raise ValueError(f"profile log {self.path}: intensity of shape "
                             f"{np.shape(intensity)} for {frames.size} frame(s) of {npt} "
                             f"points; expected ({npt},) per frame")
        errs = np.full_like(rows, np.nan) if sigma is None else np.asarray(sigma,
                                                                            dtype=np.float64)
        if errs.size != rows.size:
            raise ValueError(f"profile log {self.path}: sigma of shape {np.shape(sigma)} "
                             f"does not match intensity {rows.shape}")
        errs = errs.reshape(rows.shape)
        if frames.size == 0:
            return
        last = self.last_frame
        if frames[0] <= last or np.any(np.diff(frames) <= 0) or frames[0] < 0:
            raise ValueError(
                f"profile log {self.path}: frames must be >= 0, increasing and after the last "
                f"one ({last}), got {frames[:5].tolist()}; after a restart call "
                f"truncate(after_frame=...) first")
        self._append_rows(frames, rows, errs)
        if self.autoflush:
            self._file.flush()

    def _append_rows(self, frames: np.ndarray, rows: np.ndarray, errs: np.ndarray) -> None:
        n = self._frames.size
        k = frames.size
        for ds, data in ((self._intensity, rows), (self._sigma, errs)):
            ds.resize(n + k, axis=0)
            ds[n:] = data
        self._frame.resize((n + k,))
        self._frame[n:] = frames  # last: the row is complete once its frame is there
        self._frames = _grow(self._frames, frames)

    def flush(self) -> None:
        """Write what was appended to the file (readers and a restart see it)."""
        self._writable()
        self._file.flush()

    def _resize(self, n: int) -> None:
        for ds in (self._frame, self._intensity, self._sigma):
            ds.resize(n, axis=0)
        self._frames = self._frames[:n] if self._frames.size >= n else np.asarray(
            self._frame[:n], dtype=np.int64)
        self._file.flush()

    def truncate(self, after_frame: int) -> int:
        """Remove the rows of frames after ``after_frame`` (e.g. those a killed session
        appended but never recorded in the catalog: ``catalog.live_cursor(ds)``).

        Parameters
        ----------
        after_frame : int
            The last frame to keep (-1: remove all).

        Returns
        -------
        int
            Rows removed.
        """
        self._writable()
        keep = int(np.searchsorted(self._frames, int(after_frame), side="right"))
        removed = self._frames.size - keep
        if removed:
            self._resize(keep)
            logger.info("profile log %s: removed %d row(s) after frame %d", self.path,
                        removed, after_frame)
        return removed

    # -- reading --------------------------------------------------------------------------

    def refresh(self) -> None:
        """See the rows appended by the writer since (done by :meth:`read`)."""
        if self._suspended:  # a writer in this process opened the file meanwhile
            self._open_reader()
        if self._file is None:
            raise ValueError(f"profile log {self.path} is closed")
        if self.mode == "a":
            return
        inode: int | None
        try:
            inode = os.stat(self.path).st_ino
        except OSError:
            inode = self._inode
        if inode != self._inode:  # the writer rebuilt it: read the new file
            self._file.close()
            self._open_reader()
            return
        for ds in (self._frame, self._intensity, self._sigma):
            ds.refresh()
        n = self._valid_rows()
        if n < self._frames.size or (n and self._frames.size and int(
                self._frame[self._frames.size - 1]) != self._frames[-1]):
            self._frames = np.asarray(self._frame[:n], dtype=np.int64)  # truncated
        elif n > self._frames.size:
            self._frames = _grow(self._frames, np.asarray(self._frame[self._frames.size: n],
                                                          dtype=np.int64))

    @property
    def frames(self) -> np.ndarray:
        """The frame indices in the log (as of the last read or append)."""
        return self._frames.copy()

    @property
    def last_frame(self) -> int:
        """The last frame in the log (-1: none)."""
        return int(self._frames[-1]) if self._frames.size else -1

    def __len__(self) -> int:
        return int(self._frames.size)

    def read(self, frames: Any = None, *, last: int | None = None) -> Any:
        """The rows as an :class:`xarray.Dataset`: ``intensity`` and ``sigma`` on
        (``frame``, dim), with the frame indices and the radial axis as coordinates.

        Parameters
        ----------
        frames : int or iterable of int, optional
            These frames, in this order (default: all).
        last : int, optional
            Only the last ``last`` rows (with ``frames=None``).

        Returns
        -------
        xarray.Dataset

        Raises
        ------
        KeyError
            A frame that is not in the log (the message says which frames are).
        """
        import xarray as xr

        self.refresh()
        have = self._frames
        if frames is None:
            start = 0 if last is None else max(0, have.size - int(last))
            wanted = have[start:]
            rows: Any = slice(start, have.size)
        else:
            wanted = _frames_argument(frames)
            pos = np.searchsorted(have, wanted)
            found = (pos < have.size) & (have[np.minimum(pos, have.size - 1)] == wanted) if (
                have.size) else np.zeros(wanted.size, dtype=bool)
            if not np.all(found):
                missing = wanted[~found]
                present = f"{have[0]}..{have[-1]} ({have.size} rows)" if have.size else "none"
                raise KeyError(f"frame(s) {missing[:10].tolist()} not in profile log "
                               f"{self.path}; frames there: {present}")
            rows = pos
        intensity, sigma = self._rows(rows)
        dims = ("frame", self.dim)
        axis = xr.Variable(self.dim, self.radial, attrs={"units": self.unit} if self.unit
                           else {})
        return xr.Dataset(
            {"intensity": (dims, intensity), "sigma": (dims, sigma)},
            coords={"frame": ("frame", np.array(wanted, dtype=np.int64)), self.dim: axis},
            attrs={"dim": self.dim, "source": str(self.path)},
        )

    def _rows(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(rows, slice):
            return (np.asarray(self._intensity[rows], dtype=np.float64),
                    np.asarray(self._sigma[rows], dtype=np.float64))
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            empty = np.empty((0, self.radial.size))
            return empty, empty.copy()
        lo, hi = int(rows.min()), int(rows.max()) + 1
        if hi - lo <= 4 * rows.size:  # one block read, then pick
            block = slice(lo, hi)
            return (np.asarray(self._intensity[block], dtype=np.float64)[rows - lo],
                    np.asarray(self._sigma[block], dtype=np.float64)[rows - lo])
        order = np.unique(rows)
        where = np.searchsorted(order, rows)
        return (np.asarray(self._intensity[order], dtype=np.float64)[where],
                np.asarray(self._sigma[order], dtype=np.float64)[where])

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and close the file (and drop the writer's lock)."""
        self._suspended = False
        _READERS.discard(self)
        if self._file is not None:
            with contextlib.suppress(Exception):
                if self.mode == "a":
                    self._file.flush()
            self._file.close()
            self._file = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> ProfileLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._file is None else ("writing" if self.mode == "a" else "reading")
        return (f"<ProfileLog {self.path} ({state}): {len(self)} rows on {self.dim} "
                f"[{self.radial.size}]>")
