"""Wake-ups from Linux inotify, so a finished scan is looked at at once instead of next poll.

inotify only *wakes* the watcher early; deciding that a file is complete stays with the
polling :class:`~spotkit.flows.InboxScanner` (size and mtime settled, file readable,
sentinel), which is what works on network file systems, where inotify sees only the
changes made on this machine. Where inotify is missing (not Linux, the watch limit
reached, a file system that refuses it), :meth:`InboxEvents.open` returns None and the
watcher simply polls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["InboxEvents"]

logger = logging.getLogger(__name__)

# <sys/inotify.h>
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

#: what wakes the watcher: a file closed after writing, moved in, or created (a sentinel,
#: a new sub-folder); plain writes (IN_MODIFY) would wake it for every detector block
WAKE_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len


def _libc():
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name, use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return libc


class InboxEvents:
    """inotify watches on inbox folders and their sub-folders (added as they appear).

    Use :meth:`open`, which returns None where inotify cannot be used.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> inbox = pathlib.Path(tempfile.mkdtemp())
    >>> events = InboxEvents.open([inbox])  # None where inotify cannot be used (not Linux)
    >>> events.wait(0.1)  # nothing happened within 0.1 s
    False
    >>> _ = (inbox / "scan_0001.h5").write_bytes(b"detector data")  # written and closed
    >>> events.wait(5.0)  # True as soon as something happened, before the 5 s ran out
    True
    >>> events.close()
    """

    def __init__(self, fd: int, libc):
        self._fd = fd
        self._libc = libc
        self._dirs: dict[int, Path] = {}

    @classmethod
    def open(cls, folders: Iterable[str | os.PathLike]) -> InboxEvents | None:
        """Watch ``folders`` recursively; None (and a log line why) where inotify is unusable.

        Parameters
        ----------
        folders : iterable of path-like
            The inbox folders (those that do not exist yet are skipped; the poll finds
            files there once they appear).

        Returns
        -------
        InboxEvents or None
        """
        if not sys.platform.startswith("linux"):
            logger.info("inotify is Linux only: polling the inboxes")
            return None
        try:
            libc = _libc()
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError) as exc:
            logger.info("inotify unavailable (%s): polling the inboxes", exc)
            return None
        if fd < 0:
            err = ctypes.get_errno()
            logger.info("inotify unavailable (%s): polling the inboxes", os.strerror(err))
            return None
        events = cls(fd, libc)
        try:
            for folder in folders:
                events._watch_tree(Path(folder))
        except OSError as exc:
            events.close()
            logger.warning("inotify cannot watch the inboxes (%s); polling them. Raise "
                           "fs.inotify.max_user_watches if the limit was reached.", exc)
            return None
        logger.info("inotify watching %d folders", len(events._dirs))
        return events

    def _watch(self, folder: Path) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), WAKE_MASK | IN_ONLYDIR)
        if wd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOENT, errno.ENOTDIR):  # gone, or not a folder: nothing to watch
                return
            raise OSError(err, f"inotify_add_watch {folder}: {os.strerror(err)}")
        self._dirs[wd] = folder

    def _watch_tree(self, root: Path) -> None:
        if not root.is_dir():
            return
        self._watch(root)
        for parent, dirs, _ in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for d in dirs:
                self._watch(Path(parent) / d)

    def _drain(self) -> int:
        """Read every pending event; watch new sub-folders. Returns the number of events."""
        n = 0
        while True:
            try:
                buf = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return n
            except OSError as exc:
                logger.warning("reading inotify events failed: %s", exc)
                return n
            if not buf:
                return n
            offset = 0
            while offset + _EVENT.size <= len(buf):
                wd, mask, _cookie, length = _EVENT.unpack_from(buf, offset)
                name = buf[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                n += 1
                if mask & IN_Q_OVERFLOW:
                    logger.warning("inotify queue overflowed: the next poll catches up")
                if mask & IN_IGNORED:
                    self._dirs.pop(wd, None)
                    continue
                if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO) and wd in self._dirs:
                    new = self._dirs[wd] / os.fsdecode(name)
                    if not new.name.startswith("."):
                        try:
                            self._watch_tree(new)
                        except OSError as exc:
                            logger.warning("inotify cannot watch %s (%s); polling finds its "
                                           "files", new, exc)

    def wait(self, timeout: float) -> bool:
        """Block until an event arrives or ``timeout`` seconds pass; True if events came."""
        try:
            ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        except (OSError, ValueError):  # closed meanwhile
            return False
        if not ready:
            return False
        return self._drain() > 0

    @property
    def folders(self) -> list[Path]:
        """The folders watched now."""
        return sorted(self._dirs.values())

    def close(self) -> None:
        """Stop watching."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> InboxEvents:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
