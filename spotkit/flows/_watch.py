"""Finding finished scans in inbox folders: a polling scanner that works on any file system.

A file is *complete* when its size and modification time have not changed for ``settle``
seconds and it opens cleanly as a raw file spotkit knows, with the datasets its kind needs
(:func:`spotkit.io.detect_kind`), or, when a sentinel is required, once the acquisition's
sentinel file (``<file>.done``) exists. A file that stays unchanged but unreadable for
``quarantine_after`` seconds (or that has its sentinel and is unreadable) is *corrupt*.
Deciding is always done by polling, which behaves the same on NFS, GPFS and Lustre; on
Linux, inotify (:class:`~spotkit.flows._inotify.InboxEvents`) only wakes the watcher early.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EXPECTED_DATASETS",
    "RAW_SUFFIXES",
    "SENTINEL_SUFFIX",
    "Candidate",
    "InboxScanner",
    "check_complete",
]

logger = logging.getLogger(__name__)

RAW_SUFFIXES = (".h5", ".hdf5", ".nxs")  #: file names the scanner looks at
SENTINEL_SUFFIX = ".done"  #: ``scan.h5.done`` marks ``scan.h5`` as finished
#: datasets that must exist (and be readable) for a raw file of each kind to be complete
EXPECTED_DATASETS = {
    "tomo/raw": ("exchange/data", "exchange/data_white", "exchange/data_dark", "exchange/theta"),
    "saxs/raw": ("entry/data/data",),
}


@dataclass(frozen=True)
class Candidate:
    """A file the scanner has decided about.

    Attributes
    ----------
    path : pathlib.Path
        The raw file (absolute).
    inbox : pathlib.Path
        The inbox folder it was found in.
    size : int
        Size in bytes when it was found complete.
    mtime_ns : int
        Modification time (ns) when it was found complete.
    state : {"complete", "corrupt"}
        Whether it can be ingested or must be quarantined.
    kind : str or None
        Its kind (``"tomo/raw"``...) when complete.
    reason : str or None
        Why a corrupt file is considered corrupt.
    """

    path: Path
    inbox: Path
    size: int
    mtime_ns: int
    state: str
    kind: str | None = None
    reason: str | None = None

    @property
    def key(self) -> str:
        """Idempotency key: the same file with the same size and mtime is the same scan."""
        return f"{self.path}|{self.size}|{self.mtime_ns}"


def check_complete(path: str | os.PathLike) -> tuple[str | None, str | None]:
    """Check that a raw file opens cleanly and holds the datasets its kind needs.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    (kind, problem) : tuple
        ``(kind, None)`` when the file is complete, ``(None, reason)`` otherwise.
    """
    import h5py

    from spotkit.errors import SpotkitError
    from spotkit.io import detect_kind

    try:
        kind = detect_kind(path)
    except (SpotkitError, OSError, ValueError) as exc:
        return None, str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
    try:
        with h5py.File(path, "r") as f:
            for name in EXPECTED_DATASETS.get(kind, ()):
                obj = f.get(name)
                if not isinstance(obj, h5py.Dataset):
                    return None, f"{path}: dataset /{name} is missing (still being written?)"
                if obj.size == 0:
                    return None, f"{path}: dataset /{name} is empty"
    except (OSError, ValueError, KeyError) as exc:
        return None, f"{path}: cannot be read as HDF5 ({exc})"
    return kind, None


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time at which (size, mtime) was first seen


class InboxScanner:
    """Poll inbox folders and report the files that became complete (or corrupt).

    The scanner keeps what it saw between calls to :meth:`poll`; a file is reported once
    per (size, mtime). Nothing is read from a file until it has been stable for
    ``settle`` seconds.

    Parameters
    ----------
    inboxes : iterable of path-like
        Folders to watch (searched recursively).
    settle : float
        Seconds a file's size and mtime must stay the same.
    require_sentinel : bool
        Wait for ``<file>.done`` as well as the file being readable.
    quarantine_after : float, optional
        Seconds a stable file may stay unreadable before it is reported corrupt (default:
        ``max(30, 10 * settle)``); with a sentinel it is reported at once.
    suffixes : tuple of str
        File name endings of raw files.

    Examples
    --------
    >>> scanner = InboxScanner(["/data/inbox"], settle=5)          # doctest: +SKIP
    >>> [c.path.name for c in scanner.poll() if c.state == "complete"]  # doctest: +SKIP
    ['scan_0001.h5']
    """

    def __init__(
        self,
        inboxes: Iterable[str | os.PathLike],
        *,
        settle: float = 5.0,
        require_sentinel: bool = False,
        quarantine_after: float | None = None,
        suffixes: tuple[str, ...] = RAW_SUFFIXES,
    ):
        self.inboxes = [Path(p).expanduser().resolve() for p in inboxes]
        if not self.inboxes:
            raise ValueError("give at least one inbox folder to watch")
        if settle < 0:
            raise ValueError(f"settle must be >= 0 seconds, not {settle!r}")
        self.settle = float(settle)
        self.require_sentinel = bool(require_sentinel)
        self.quarantine_after = (
            max(30.0, 10 * self.settle) if quarantine_after is None else float(quarantine_after)
        )
        self.suffixes = tuple(s.lower() for s in suffixes)
        self._seen: dict[Path, _Seen] = {}
        self._reported: dict[Path, tuple[int, int]] = {}

    def _files(self) -> Iterable[tuple[Path, Path]]:
        for inbox in self.inboxes:
            if not inbox.is_dir():
                logger.warning("inbox %s does not exist or is not a folder (yet)", inbox)
                continue
            for root, dirs, names in os.walk(inbox):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if name.startswith(".") or not name.lower().endswith(self.suffixes):
                        continue
                    yield inbox, Path(root) / name

    def next_due(self) -> float | None:
        """Seconds until the next file seen changing has been stable for ``settle``.

        None when no file is waiting to settle. The watcher uses it to look again exactly
        then, instead of a whole poll interval later.
        """
        now = time.monotonic()
        # files already past it but not readable yet are left to the regular poll
        waiting = [s.since + self.settle - now for p, s in self._seen.items()
                   if self._reported.get(p) != (s.size, s.mtime_ns)
                   and s.since + self.settle > now]
        return min(waiting) if waiting else None

    def forget(self, path: str | os.PathLike) -> None:
        """Let a reported file be reported again (e.g. after a failed hand-over)."""
        self._reported.pop(Path(path), None)

    def poll(self, known: Callable[[str], bool] | None = None) -> list[Candidate]:
        """Look at every inbox once.

        Parameters
        ----------
        known : callable, optional
            ``known(key) -> bool``: files whose idempotency key (see
            :attr:`Candidate.key`) is already known are not opened again.

        Returns
        -------
        list of Candidate
            Files that became complete or corrupt since the last call, oldest mtime first.
        """
        now = time.monotonic()
        wall = time.time()
        found: list[Candidate] = []
        present: set[Path] = set()
        for inbox, path in self._files():
            present.add(path)
            try:
                st = path.stat()
            except OSError:  # vanished between listing and stat
                continue
            sig = (st.st_size, st.st_mtime_ns)
            if self._reported.get(path) == sig:
                continue
            seen = self._seen.get(path)
            if seen is None or (seen.size, seen.mtime_ns) != sig:
                # first sight: a file whose mtime is already old counts as settled
                age = max(0.0, wall - st.st_mtime_ns / 1e9)
                self._seen[path] = seen = _Seen(st.st_size, st.st_mtime_ns, now - age)
            stable_for = now - seen.since
            if stable_for < self.settle:
                continue
            if known is not None and known(f"{path}|{sig[0]}|{sig[1]}"):
                self._reported[path] = sig
                continue
            sentinel = path.with_name(path.name + SENTINEL_SUFFIX)
            has_sentinel = sentinel.exists()
            if self.require_sentinel and not has_sentinel:
                continue
            kind, problem = check_complete(path)
            try:
                if (path.stat().st_size, path.stat().st_mtime_ns) != sig:
                    continue  # changed while we read it
            except OSError:
                continue
            if kind is not None:
                state = "complete"
            elif has_sentinel or stable_for >= self.quarantine_after:
                state = "corrupt"
            else:
                logger.debug("%s is stable but not readable yet: %s", path, problem)
                continue
            self._reported[path] = sig
            found.append(Candidate(path, inbox, sig[0], sig[1], state, kind, problem))
        for gone in set(self._seen) - present:
            self._seen.pop(gone, None)
            self._reported.pop(gone, None)
        found.sort(key=lambda c: (c.mtime_ns, str(c.path)))
        return found
