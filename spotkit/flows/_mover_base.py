"""The mover interface, what a transfer returns, and the registry of movers by kind.

See :mod:`spotkit.flows._movers` for the built-in movers.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from spotkit.errors import TransferError

from ._suitcase import (
    FileEntry,
    Manifest,
    Problem,
)

__all__ = ["Mover", "TransferResult", "frame_files", "frame_transfer_order", "make_mover",
           "mover_kinds", "register_mover"]

log = logging.getLogger("spotkit.flows._movers")

COPY_CHUNK = 16 * 2**20
PARTIAL_SUFFIX = ".spotkit-part"
#: hidden folders of a warehouse where the flow's ingest stages copies (see LocalCopy.stage)
STAGING_PREFIX = ".spotkit-stage-"
MANIFEST_SUFFIX = ".spotkit-manifest.json"

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_GONE = {errno.ENOENT, errno.ENOTDIR, errno.ESTALE, errno.EIO, errno.ENOTCONN,
         errno.EHOSTDOWN, errno.ETIMEDOUT}


@dataclass(frozen=True)
class TransferResult:
    """What one transfer did. Every file listed was verified at the destination.

    Attributes
    ----------
    manifest_id : str
    mover : str
        The mover's name (``"local"``, ``"rsync"``, ``"relay"``).
    dest : str
        Where the files are now.
    copied : tuple of str
        Relative paths copied by this call.
    skipped : tuple of str
        Relative paths already there and verified (idempotent re-run).
    bytes_copied : int
    seconds : float
        Wall time, verification included.
    ahead : int
        How many files went ahead of their turn in the manifest's order (a priority
        order: the frames of interest first, see :func:`frame_transfer_order`); 0 when
        the files went in the manifest's order.
    """

    manifest_id: str
    mover: str
    dest: str
    copied: tuple[str, ...]
    skipped: tuple[str, ...]
    bytes_copied: int
    seconds: float
    ahead: int = 0

    @property
    def mb_per_s(self) -> float:
        """Throughput of the copied bytes in MB/s (10**6 bytes), verification included."""
        return self.bytes_copied / 1e6 / self.seconds if self.seconds > 0 else float("inf")


def _partial_name(final: Path) -> Path:
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def _os_error(exc: OSError, *, dest, path: str | None, what: str) -> TransferError:
    """Turn an OSError at the destination into a TransferError with what to do."""
    code = exc.errno
    where = f" ({path})" if path else ""
    if code in _FULL:
        reason, todo = "disk full", "free space or raise the quota; the flow retries"
    elif code in _READ_ONLY:
        reason, todo = ("read-only or not writable",
                        "remount it read-write or fix its permissions; the flow retries")
    elif code in _GONE:
        reason, todo = "unavailable", "check that it is mounted and reachable; the flow retries"
    else:
        reason, todo = "I/O error", "check the destination; the flow retries"
    return TransferError(
        f"cannot {what} at destination {dest}{where}: {reason} "
        f"([Errno {code}] {exc.strerror}). Nothing partial kept its final name; {todo}.",
        path=path, dest=str(dest), reason=reason, transient=True, errno=code)


def _probe_dir(path: Path) -> tuple[bool, str]:
    """Is ``path`` an existing folder we can create a file in?"""
    if not path.exists():
        return False, f"destination {path} does not exist (not mounted?)"
    if not path.is_dir():
        return False, f"destination {path} is not a folder"
    # unique per call: several workers probe at once, and one must not unlink another's file
    probe = path / f".spotkit-probe-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        return False, f"destination {path} is not writable ([Errno {exc.errno}] {exc.strerror})"
    try:
        st = os.statvfs(path)
    except OSError:
        return True, "ok"
    if st.f_bavail == 0:
        return False, f"destination {path} is full"
    return True, f"ok, {st.f_bavail * st.f_frsize / 1e9:.1f} GB free"


# -- the order of a transfer: frames of interest first ---------------------------------

#: frames inside one file: a whole-file copy cannot put some frames first
_CONTAINER_SUFFIXES = (".h5", ".hdf5", ".nxs", ".nx5", ".zarr")


def _frame_folder(manifest: Manifest) -> str | None:
    """The folder (relative to the dataset root) the flow's manifest names as the dataset's
    data (role ``"data"``), when the manifest says so; None otherwise."""
    root = manifest.root
    for item in (manifest.metadata or {}).get("files") or ():
        if not (isinstance(item, list | tuple) and len(item) == 2 and item[1] == "data"):
            continue
        if not root:
            return None
        try:
            rel = os.path.relpath(os.path.abspath(str(item[0])), os.path.abspath(root))
        except ValueError:
            return None
        return "" if rel == "." else rel.replace(os.sep, "/")
    return None


def frame_files(manifest: Manifest) -> tuple[str, ...]:
    """The manifest's per-frame files in frame order (frame ``i`` is the ``i``-th), or ``()``.

    A dataset has per-frame files when it is a folder of one numbered series of CBF, EDF or
    TIFF frames (``<prefix><number>.<ext>``, ordered by number, as :mod:`spotkit.io` reads a
    frame folder: the frame numbers the live path marks are positions in this order). A
    dataset whose frames are inside one file (HDF5/NeXus) has none: ``()``. So has a
    manifest whose frame files cannot be told apart for sure (several series, frames in
    several folders, or a count that differs from the catalog's ``n_frames``).

    Parameters
    ----------
    manifest : Manifest

    Returns
    -------
    tuple of str
        Relative paths, as the manifest lists them.
    """
    if any(f.path.lower().endswith(_CONTAINER_SUFFIXES) for f in manifest.files):
        return ()
    from spotkit.io import frame_series

    folder = _frame_folder(manifest)
    names: dict[str, list[str]] = {}
    for f in manifest.files:
        where, name = posixpath.split(f.path)
        if folder is None or where == folder:
            names.setdefault(where, []).append(name)
    series = {(where, *key): [posixpath.join(where, n) for n in in_order]
              for where, ns in names.items() for key, in_order in frame_series(ns).items()}
    if len(series) != 1:
        if len(series) > 1:
            log.info("frame order: %s (%s) holds %d frame series; its files go in the "
                     "manifest's order", manifest.dataset, manifest.id, len(series))
        return ()
    (in_order,) = series.values()
    paths = tuple(in_order)
    expected = _catalog_frames(manifest)
    if expected is not None and expected != len(paths):
        log.warning("frame order: %s (%s) has %d frame files but the catalog recorded %d "
                    "frames: which file is which frame cannot be told; its files go in the "
                    "manifest's order", manifest.dataset, manifest.id, len(paths), expected)
        return ()
    return paths


def _catalog_frames(manifest: Manifest) -> int | None:
    """The frame count the catalog recorded (the flow's manifest carries it), or None."""
    for doc in (manifest.file_metadata or {}).values():
        n = ((doc or {}).get("metadata") or {}).get("n_frames") if isinstance(doc, dict) else None
        if isinstance(n, int) and not isinstance(n, bool):
            return n
    return None


def frame_transfer_order(manifest: Manifest,
                         frame_order: Callable[[int], Sequence[int]]) -> tuple[str, ...]:
    """The order in which a transfer should take a dataset's frame files, or ``()``.

    Maps a frame order (e.g. :meth:`Journal.frame_order <spotkit.flows.Journal.frame_order>`:
    frames of interest first, then the rest in order) onto the manifest's per-frame files
    (:func:`frame_files`). Give the result to a mover's ``transfer(..., order=...)``: those
    files go first, in this order; the dataset's other files (geometry, sidecar) follow.

    Frame order applies only to datasets with one file per frame (a folder of CBF, EDF or
    TIFF frames). For frames inside one file (an HDF5/NeXus series) a whole-file copy
    cannot put some frames first: ``()``, and the file is copied as always.

    Parameters
    ----------
    manifest : Manifest
    frame_order : callable
        ``frame_order(n)``: the frames ``0 .. n-1`` in the order they should go.

    Returns
    -------
    tuple of str
        Every frame file, in frame order; ``()`` when the dataset has no per-frame files or
        the order is the natural one (no frames of interest): the manifest's order stands.

    Raises
    ------
    ValueError
        When ``frame_order(n)`` is not an ordering of ``0 .. n-1``.

    Examples
    --------
    >>> from spotkit.flows import FileEntry, Manifest
    >>> files = tuple(FileEntry(f"s1/f_{i:03d}.cbf", 1, "0" * 64, 0.0) for i in range(5))
    >>> man = Manifest("s1", files + (FileEntry("s1/metadata.json", 1, "0" * 64, 0.0),))
    >>> frame_transfer_order(man, lambda n: [3, 4, 0, 1, 2])
    ('s1/f_003.cbf', 's1/f_004.cbf', 's1/f_000.cbf', 's1/f_001.cbf', 's1/f_002.cbf')
    >>> frame_transfer_order(man, lambda n: range(n))  # nothing of interest: as listed
    ()
    """
    frames = frame_files(manifest)
    if not frames:
        return ()
    order = [int(i) for i in frame_order(len(frames))]
    if sorted(order) != list(range(len(frames))):
        raise ValueError(f"frame order for {manifest.dataset} ({manifest.id}) is not an "
                         f"ordering of its {len(frames)} frames 0..{len(frames) - 1}: "
                         f"{order[:10]}{'...' if len(order) > 10 else ''}")
    if order == list(range(len(frames))):
        return ()
    return tuple(frames[i] for i in order)


def _ordered(manifest: Manifest, order: Sequence[str] | None) -> list[FileEntry]:
    """The manifest's files in transfer order: those ``order`` names first, in its order,
    then the others in the manifest's order."""
    if not order:
        return list(manifest.files)
    if isinstance(order, str):
        raise TypeError("order must be a sequence of relative paths, not one string")
    by_path = {f.path: f for f in manifest.files}
    unknown = [p for p in order if p not in by_path]
    if unknown:
        raise ValueError(
            f"order names {len(unknown)} file(s) that manifest {manifest.id} "
            f"({manifest.dataset}) does not list, e.g. {unknown[0]!r}: give paths relative "
            "to the dataset root, as the manifest lists them (frame_transfer_order does)")
    first = dict.fromkeys(order)
    return [by_path[p] for p in first] + [f for f in manifest.files if f.path not in first]


def _ahead(manifest: Manifest, entries: Sequence[FileEntry]) -> int:
    """How many of ``entries`` went ahead of their turn: the fewest leading files after
    which the rest are in the manifest's order."""
    index = {f.path: i for i, f in enumerate(manifest.files)}
    k = len(entries) - 1
    while k > 0 and index[entries[k - 1].path] < index[entries[k].path]:
        k -= 1
    return max(k, 0)


class Mover(ABC):
    """Base of every mover: copy a manifest's files to a destination and verify them there.

    Subclasses set :attr:`name` and implement :meth:`transfer`, :meth:`verify` and
    :meth:`available`. A mover never modifies or deletes source files, never leaves a
    partial file under its final name, and reports a file only once verified at the
    destination.

    Attributes
    ----------
    name : str
        Short name recorded with each step (``"local"``, ``"rsync"``).
    dest : str or pathlib.Path
        The default destination.
    """

    name = "mover"
    dest: str | Path
    #: the catalog location name of the copies this mover makes (see Catalog.add_replicas)
    location = "warehouse"
    #: their preference among verified copies readable here (the inbox copy ranks 10)
    rank = 100

    def replica_path(self, rel: str, dest=None) -> str:
        """Where the file at ``rel`` (relative to the dataset root) lands: a local path, or
        ``user@host:/path`` for a copy on another machine."""
        base = str(self.dest if dest is None else dest)
        ssh = getattr(self, "ssh", None)  # movers that copy to another machine have one
        if getattr(self, "_remote_dest", False) and ssh:
            return f"{ssh}:{posixpath.join(base, rel)}"
        return posixpath.join(base, rel) if base.startswith("/") else str(Path(base) / rel)

    #: whether :meth:`transfer` takes ``order=`` (files to copy first: the frames of interest,
    #: :func:`frame_transfer_order`); plug-in movers without it copy in the manifest's order
    can_order = False

    #: whether :meth:`stage` can copy a file while the flow's ingest hashes it (LocalCopy);
    #: movers that cannot (over ssh, through a relay) copy at :meth:`transfer` as before
    can_stage = False

    def stage(self, key: str, src) -> tuple[int, int, str, tuple[int, ...], str]:
        """Copy ``src`` into a staging area of the destination while hashing it, in one read.

        Only for movers with :attr:`can_stage`; see :meth:`LocalCopy.stage`.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot stage files")

    def transfer_staged(self, manifest: Manifest, src_root, key: str,
                        placed=None, *, order: Sequence[str] | None = None) -> TransferResult:
        """:meth:`transfer` using the copies staged under ``key`` where they verify.

        The default (movers that cannot stage) is a plain :meth:`transfer` (with ``order``
        where the mover :attr:`can_order`).
        """
        if order and self.can_order:
            return self.transfer(manifest, src_root, order=order)  # type: ignore[call-arg]
        return self.transfer(manifest, src_root)

    def discard_staged(self, key: str) -> None:
        """Remove what was staged under ``key`` (nothing for movers that cannot stage)."""
        return None

    def sweep_staged(self, keep) -> list[str]:
        """Remove staged leftovers of every key not in ``keep``; return what was removed."""
        return []

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """``(True, "ok...")`` when the destination can take files now, else ``(False, why)``."""

    @abstractmethod
    def transfer(self, manifest: Manifest, src_root, *, dest=None) -> TransferResult:
        """Copy the manifest's files from ``src_root`` to ``dest``, and verify them there.

        ``dest`` defaults to :attr:`dest`. Files already there and verified are skipped.
        Movers that :attr:`can_order` also take ``order=``: relative paths to copy first,
        in that order (the frames of interest, :func:`frame_transfer_order`), the
        manifest's other files after them.

        Raises
        ------
        TransferError
            When a file cannot be copied or does not verify; ``transient`` says whether
            retrying later may help.
        """

    @abstractmethod
    def verify(self, manifest: Manifest, dest=None, *, level: str = "sha256") -> list[Problem]:
        """Re-read the files at ``dest`` (default :attr:`dest`): size and checksum per file.

        ``level`` is ``"sha256"`` (re-hash everything), ``"crc32"`` (the manifest's block
        checks, CRC-32C or CRC-32, where the mover can check them; otherwise sha256) or
        ``"size"``.
        """

    def manifest_path(self, manifest: Manifest) -> str:
        """Where the manifest's copy goes, relative to the destination: beside the files.

        ``<folder of the first file>/<dataset>.spotkit-manifest.json``.
        """
        folder = posixpath.dirname(manifest.files[0].path) if manifest.files else ""
        return posixpath.join(folder, f"{manifest.dataset}{MANIFEST_SUFFIX}")

    def store_manifest(self, manifest: Manifest, dest=None) -> str:
        """Put a copy of the manifest beside the dataset at the destination (atomically).

        The suitcase travels with its contents: whoever finds the files in the warehouse
        can check them (:func:`~spotkit.flows.verify_manifest`) without the catalog.
        Writing it again is harmless.

        Returns
        -------
        str
            The copy's path at the destination.
        """
        final = Path(self.dest if dest is None else dest) / self.manifest_path(manifest)
        try:
            manifest.write(final)
        except OSError as exc:
            raise _os_error(exc, dest=final.parent, path=final.name,
                            what="write the manifest") from None
        return str(final)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.dest)!r})"


# -- the registry of movers ---------------------------------------------------------------

#: entry-point group through which packages add movers (``kind = "pkg.module:Class"``)
ENTRY_POINT_GROUP = "spotkit.movers"
_REGISTRY: dict[str, type[Mover]] = {}


def register_mover(kind: str, cls: type[Mover]) -> None:
    """Make a mover class available by kind (``"local"``, ``"rsync"``, ``"relay"``...).

    Parameters
    ----------
    kind : str
        The name rules files and :func:`make_mover` use.
    cls : type
        A subclass of :class:`Mover`.
    """
    if not (isinstance(cls, type) and issubclass(cls, Mover)):
        raise TypeError(f"mover {kind!r}: {cls!r} is not a subclass of spotkit.flows.Mover")
    _REGISTRY[kind] = cls


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        try:
            register_mover(ep.name, ep.load())
        except Exception as exc:  # a broken plug-in must not break the others
            log.warning("mover plug-in %s (%s) cannot be loaded: %s", ep.name, ep.value, exc)


def mover_kinds() -> list[str]:
    """The kinds of mover available (built-in and from entry points), sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def make_mover(kind: str, *args, **settings) -> Mover:
    """Build a mover by kind: ``make_mover("local", "/warehouse")``.

    Parameters
    ----------
    kind : str
        One of :func:`mover_kinds`.
    *args, **settings
        The mover class's own parameters.

    Returns
    -------
    Mover

    Raises
    ------
    ValueError
        For an unknown kind (the message lists the known ones) or settings the mover does
        not take.
    """
    _load_entry_points()
    if kind not in _REGISTRY:
        raise ValueError(f"unknown mover kind {kind!r}; available: {sorted(_REGISTRY)}")
    try:
        return _REGISTRY[kind](*args, **settings)
    except TypeError as exc:
        raise ValueError(f"mover {kind!r}: {exc}") from None
