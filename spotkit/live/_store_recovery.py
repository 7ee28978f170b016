"""Crash recovery for :class:`~spotkit.live.ProfileLog`: the writer's lock file and
clearing the "open for SWMR write" mark a killed writer leaves in an HDF5 file."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import logging
import os
from pathlib import Path

from spotkit.errors import InputFileError

__all__ = ["WriterLock", "clear_swmr_mark"]

logger = logging.getLogger("spotkit.live._store")


def _hdf5_library() -> ctypes.CDLL | None:
    """The HDF5 library h5py is linked with (its wheel's copy, or the system's)."""
    import h5py

    here = Path(h5py.__file__).parent
    names = glob.glob(str(here.parent / "h5py.libs" / "libhdf5-*.so*"))
    names += glob.glob(str(here / ".dylibs" / "libhdf5*.dylib"))
    for name in [*names, "libhdf5.so", "libhdf5_serial.so"]:
        with contextlib.suppress(OSError):
            return ctypes.CDLL(name)
    return None


def clear_swmr_mark(path: Path) -> bool:
    """Clear the "open for SWMR write" mark a killed writer left in a file (what the
    ``h5clear -s`` tool does: a file access property that HDF5 itself reads). Only call
    it when no writer holds the file (the lock file says so)."""
    from h5py import h5f, h5p

    lib = _hdf5_library()
    if lib is None:
        return False
    try:
        fapl = h5p.create(h5p.FILE_ACCESS)
        fapl.set_libver_bounds(h5f.LIBVER_LATEST, h5f.LIBVER_LATEST)
        lib.H5Pset.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
        flag = ctypes.c_bool(True)
        if lib.H5Pset(fapl.id, b"clear_status_flags", ctypes.byref(flag)) < 0:
            return False
        h5f.open(os.fsencode(path), h5f.ACC_RDWR, fapl=fapl).close()
    except (OSError, AttributeError, RuntimeError, ValueError) as exc:
        logger.debug("could not clear the SWMR mark of %s: %s", path, exc)
        return False
    return True


class WriterLock:
    """An exclusive lock on ``<log>.lock``, held while a writer has the log open (the OS
    drops it when the process dies, however it dies)."""

    def __init__(self, path: Path):
        self.path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def acquire(self, log: Path) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, as h5py alone
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = self.path.read_text().strip() or "?"
            raise InputFileError(
                log, f"is being written by another process (pid {holder})",
                hint="Read it with ProfileLog.open(path), or stop that process first.",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
