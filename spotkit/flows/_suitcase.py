"""The suitcase: one manifest per dataset, packing its files' checksums with its metadata.

A :class:`Manifest` lists every file of a dataset (path relative to the dataset root,
size, sha256, mtime), the metadata read from the files themselves, the metadata the
caller adds, and the beamline configuration that applied. It is what a transfer is
verified against at the destination, and what a retention policy checks before it lets
a source file go. Its :attr:`Manifest.digest` covers everything but the creation time and
the source root, so the same files and metadata always give the same id, and a manifest
whose JSON was edited by hand no longer loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from spotkit.checksums import (  # BLOCK_SIZE, digest_file, sha256_file: re-exported
    BLOCK_CHECKS,
    BLOCK_SIZE,
    DEFAULT_BLOCK_CHECK,
    block_check_available,
    digest_file,
    first_bad_block,
    sha256_file,
)
from spotkit.errors import InputFileError

__all__ = [
    "BLOCK_SIZE",
    "FileEntry",
    "Manifest",
    "Problem",
    "default_workers",
    "digest_file",
    "make_manifest",
    "sha256_file",
    "verify_manifest",
]

log = logging.getLogger(__name__)


FORMAT_VERSION = 2
"""Version 2 adds ``crc32_kind`` to file entries (``"crc32c"`` block checks); a manifest
whose block checks are all zlib CRC-32 is still written as version 1, byte for byte as
before (same digest, same id), and both versions are read."""
_VERSIONS = (1, 2)
LEVELS = ("sha256", "crc32", "size")
"""How :func:`verify_manifest` checks a file: full sha256, the per-block crc32s, or size only."""
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx", ".nx5", ".cxi")


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset, as the manifest records it.

    Attributes
    ----------
    path : str
        POSIX path relative to the dataset root (never absolute, never with ``..``).
    size : int
        Bytes.
    sha256 : str
        Hex digest of the content (the checksum of record).
    mtime : float
        Modification time (seconds since the epoch) when the manifest was made.
    crc32 : tuple of int or None
        The block check of each ``crc32_block`` block, computed in the same read as the
        sha256; movers verify copies against them (fast, parallel). None in older manifests.
    crc32_block : int
        Bytes per block.
    crc32_kind : {"crc32", "crc32c"}
        Which block check ``crc32`` holds: zlib's CRC-32 (manifest version 1) or CRC-32C
        (version 2; see :mod:`spotkit.checksums`).
    """

    path: str
    size: int
    sha256: str
    mtime: float
    crc32: tuple[int, ...] | None = None
    crc32_block: int = BLOCK_SIZE
    crc32_kind: str = "crc32"

    def __post_init__(self) -> None:
        if self.crc32_kind not in BLOCK_CHECKS:
            raise ValueError(f"{self.path}: unknown block check {self.crc32_kind!r}; choose "
                             f"one of {BLOCK_CHECKS}")

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        doc = {"path": self.path, "size": self.size, "sha256": self.sha256, "mtime": self.mtime}
        if self.crc32 is not None:
            doc["crc32"] = list(self.crc32)
            doc["crc32_block"] = self.crc32_block
            if self.crc32_kind != "crc32":  # version 1 had only zlib's CRC-32
                doc["crc32_kind"] = self.crc32_kind
        return doc


@dataclass(frozen=True)
class Problem:
    """One reason a copy does not match its manifest.

    Attributes
    ----------
    path : str
        The file, relative to the dataset root.
    problem : str
        What is wrong (``"missing"``, ``"size 10 != 12"``, ``"sha256 differs"``...).
    """

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False, default=str)


@dataclass(frozen=True)
class Manifest:
    """The suitcase label of one dataset: its files, checksums and metadata.

    Build one with :func:`make_manifest`; read one with :meth:`from_json` or :meth:`read`.

    Attributes
    ----------
    dataset : str
        The dataset's name (by default the first file's stem).
    files : tuple of FileEntry
        Sorted by path.
    metadata : dict
        What the caller added (JSON-serialisable).
    file_metadata : dict
        ``{relative path: DatasetInfo.to_dict()}`` for the HDF5 files spotkit reads.
    beamline_config : dict or None
        The beamline configuration that applied when the data was taken.
    root : str
        The dataset root the manifest was made in (not part of the digest).
    created : str
        ISO-8601 UTC time the manifest was made (not part of the digest).
    """

    dataset: str
    files: tuple[FileEntry, ...]
    metadata: dict = field(default_factory=dict)
    file_metadata: dict = field(default_factory=dict)
    beamline_config: dict | None = None
    root: str = ""
    created: str = ""

    @property
    def version(self) -> int:
        """The format version this manifest is written in: 1 unless a file's block checks
        are CRC-32C (2)."""
        if any(f.crc32 is not None and f.crc32_kind != "crc32" for f in self.files):
            return FORMAT_VERSION
        return 1

    def _body(self) -> dict:
        return {
            "version": self.version,
            "dataset": self.dataset,
            "files": [f.to_dict() for f in self.files],
            "metadata": self.metadata,
            "file_metadata": self.file_metadata,
            "beamline_config": self.beamline_config,
        }

    @property
    def digest(self) -> str:
        """Hex sha256 of the canonical JSON of everything but ``root`` and ``created``."""
        return hashlib.sha256(_canonical(self._body()).encode()).hexdigest()

    @property
    def id(self) -> str:
        """Short stable id: ``"m-"`` and the first 16 hex digits of :attr:`digest`."""
        return "m-" + self.digest[:16]

    @property
    def total_bytes(self) -> int:
        """Sum of the file sizes."""
        return sum(f.size for f in self.files)

    def to_json(self, *, indent: int | None = 1) -> str:
        """The manifest as JSON, with its digest (checked again by :meth:`from_json`)."""
        doc = {**self._body(), "root": self.root, "created": self.created,
               "digest": self.digest}
        return json.dumps(doc, sort_keys=True, indent=indent, allow_nan=False, default=str)

    @classmethod
    def from_json(cls, text: str, *, source: str = "<manifest>") -> Manifest:
        """Parse :meth:`to_json` output and check its digest.

        Parameters
        ----------
        text : str
            The JSON.
        source : str, optional
            Where it came from, for error messages (a file name).

        Raises
        ------
        InputFileError
            When the JSON is malformed, a field is missing, or the content no longer matches
            the recorded digest (the manifest was edited or damaged).
        """
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(source, f"is not valid JSON ({exc}).",
                                 hint="Rebuild it with make_manifest().") from None
        try:
            version = doc["version"]
            if version not in _VERSIONS:
                raise InputFileError(source, f"has manifest format version {version!r}; this "
                                     f"spotkit reads versions {_VERSIONS}.", field="version",
                                     hint="Upgrade spotkit or rebuild the manifest.")
            files = tuple(FileEntry(path=str(f["path"]), size=int(f["size"]),
                                    sha256=str(f["sha256"]), mtime=float(f["mtime"]),
                                    crc32=(None if f.get("crc32") is None
                                           else tuple(int(c) for c in f["crc32"])),
                                    crc32_block=int(f.get("crc32_block", BLOCK_SIZE)),
                                    crc32_kind=(str(f.get("crc32_kind", "crc32"))
                                                if version > 1 else "crc32"))
                          for f in doc["files"])
            man = cls(dataset=doc["dataset"], files=files, metadata=doc.get("metadata") or {},
                      file_metadata=doc.get("file_metadata") or {},
                      beamline_config=doc.get("beamline_config"), root=doc.get("root", ""),
                      created=doc.get("created", ""))
            recorded = doc["digest"]
        except KeyError as exc:
            raise InputFileError(source, "is not a complete spotkit manifest.",
                                 field=str(exc.args[0]),
                                 hint="Rebuild it with make_manifest().") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InputFileError):
                raise
            raise InputFileError(source, f"has a malformed file entry ({exc}).", field="files",
                                 hint="Rebuild it with make_manifest().") from None
        if recorded != man.digest:
            raise InputFileError(
                source, f"does not match its digest (recorded {recorded[:16]}..., content "
                f"gives {man.digest[:16]}...): it was edited or damaged.", field="digest",
                hint="Do not trust it; rebuild it from the source files with make_manifest().")
        return man

    def write(self, path) -> Path:
        """Write the JSON atomically: a temporary file, fsync, then ``os.replace``.

        Parameters
        ----------
        path : path-like
            The manifest file; its folder is created if needed.

        Returns
        -------
        pathlib.Path
            ``path``. A crash leaves either the old file or the new one, never half of it.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return path

    @classmethod
    def read(cls, path) -> Manifest:
        """Read a manifest file written by :meth:`write` (digest checked)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputFileError(path, f"cannot be read ({exc.strerror}).") from None
        return cls.from_json(text, source=str(path))

    def entry(self, path: str) -> FileEntry:
        """The entry for one relative path (KeyError if the manifest lacks it)."""
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)


def _fsync_dir(path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # some file systems do not allow opening a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _relative(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root)
    except ValueError:
        raise InputFileError(path, f"is not under the dataset root {root}.",
                             hint="Pass root= the folder that holds all of the dataset's "
                             "files.") from None
    return rel.as_posix()


def _expand(paths: Iterable, root: Path) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.is_absolute():
            p = root / p
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise InputFileError(p, "does not exist or is not a regular file.",
                                 hint="Check the path; a manifest lists existing files only.")
    return out


def _file_metadata(path: Path, root: Path) -> dict | None:
    from spotkit.io import read_metadata

    try:
        info = read_metadata(path)
    except InputFileError as exc:
        if "layout" in exc.problem:  # valid HDF5, just not a layout spotkit knows
            log.info("%s: no spotkit metadata reader for this HDF5 layout", path)
            return None
        raise
    doc = info.to_dict()
    files = []
    for p, role in doc["files"]:
        try:
            p = Path(p).resolve().relative_to(root).as_posix()
        except ValueError:
            pass
        files.append([p, role])
    doc["files"] = files
    return doc


def default_workers() -> int:
    """Threads used to hash and copy files: the CPU count, at least 4 and at most 8.

    More threads than cores pay off here: while one waits for an fsync or a device read,
    another hashes (2 cores: 4 threads moved 2 GB 10-20 % faster than 2).
    """
    return max(4, min(8, usable_cpus()))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under ``taskset`` or a
    container's cpuset), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _hash_entry(p: Path, rel: str) -> FileEntry:
    try:
        st = p.stat()
        digest, crcs = digest_file(p, kind=DEFAULT_BLOCK_CHECK)
        after = p.stat()
    except OSError as exc:
        raise InputFileError(p, f"cannot be read ({exc.strerror}).") from None
    if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise InputFileError(p, f"changed while it was checksummed (size {st.st_size} -> "
                             f"{after.st_size}).", hint="Wait until the file is complete.")
    return FileEntry(path=rel, size=st.st_size, sha256=digest, mtime=st.st_mtime, crc32=crcs,
                     crc32_kind=DEFAULT_BLOCK_CHECK)


def make_manifest(paths, *, root, dataset: str | None = None, metadata: dict | None = None,
                  beamline_config: dict | None = None, read_file_metadata: bool = True,
                  workers: int | None = None, known: Mapping | None = None,
                  file_metadata: Mapping | None = None) -> Manifest:
    """Pack one dataset's files into a manifest: sizes, sha256 checksums and metadata.

    Parameters
    ----------
    paths : iterable of path-like
        The dataset's files and/or folders (walked recursively), absolute or relative to
        ``root``. Files are only read, never changed.
    root : path-like
        The dataset root; every file must be under it, and the manifest records paths
        relative to it (that is how they land at the destination).
    dataset : str, optional
        The dataset's name; by default the stem of the first file.
    metadata : dict, optional
        Extra JSON-serialisable metadata (proposal, operator...).
    beamline_config : dict, optional
        The beamline configuration that applied.
    read_file_metadata : bool, optional
        Read the metadata of HDF5 files with :func:`spotkit.io.read_metadata` (default).
    workers : int, optional
        Threads hashing files at the same time (default: :func:`default_workers`).
    known : mapping, optional
        ``{absolute path: (size, mtime_ns, sha256, block checks)}`` computed earlier in the
        same read as another checksum (the catalog's at ingest, by
        :func:`~spotkit.checksums.digest_file` with its defaults; a fifth item may name the
        block check kind): a file whose size and mtime still match is not read again.
    file_metadata : mapping, optional
        ``{absolute path: metadata dict}`` already read (the catalog's); those files are
        not opened again for their metadata.

    Returns
    -------
    Manifest

    Raises
    ------
    InputFileError
        When a path is missing or outside ``root``, an HDF5 file spotkit knows is damaged,
        or a metadata value cannot be written as JSON.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> inbox = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (inbox / "scan.h5").write_bytes(b"raw detector bytes" * 100)
    >>> _ = (inbox / "scan.poni").write_text("Distance: 0.5")
    >>> man = make_manifest(["scan.h5", "scan.poni"], root=inbox, read_file_metadata=False)
    >>> [(f.path, f.size) for f in man.files]
    [('scan.h5', 1800), ('scan.poni', 13)]
    >>> man.write(inbox / "scan.manifest.json").name
    'scan.manifest.json'
    >>> verify_manifest(man, inbox)
    []
    """
    rels = _collect(paths, root)
    known = {os.path.abspath(k): v for k, v in (known or {}).items()}

    def entry(p: Path, rel: str) -> FileEntry:
        got = known.get(os.path.abspath(p))
        if got is not None:
            size, mtime_ns, sha, crcs, *rest = got
            kind = rest[0] if rest else DEFAULT_BLOCK_CHECK
            try:
                st = p.stat()
            except OSError as exc:
                raise InputFileError(p, f"cannot be read ({exc.strerror}).") from None
            if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
                return FileEntry(path=rel, size=size, sha256=sha, mtime=st.st_mtime,
                                 crc32=tuple(crcs), crc32_kind=kind)
        return _hash_entry(p, rel)

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        entries = list(pool.map(entry, rels.values(), rels.keys()))
    given = {}
    for path, doc in (file_metadata or {}).items():
        try:
            rel = _relative(Path(path), Path(root).resolve())
        except InputFileError:
            continue
        given[rel] = dict(doc)
    return _assemble(rels, entries, root=root, dataset=dataset, metadata=metadata,
                     beamline_config=beamline_config, read_file_metadata=read_file_metadata,
                     given=given)


def _collect(paths, root) -> dict[str, Path]:
    """``{relative path: absolute path}`` of a dataset's files, checked to be under root."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputFileError(root, "(the dataset root) is not a folder.",
                             hint="Pass root= the folder that holds the dataset's files.")
    files = _expand(paths, root)
    if not files:
        raise InputFileError(root, "holds no files for this dataset.",
                             hint="Pass at least one existing file in paths=.")
    rels: dict[str, Path] = {}
    for p in files:
        rels.setdefault(_relative(p, root), p)
    return rels


def _assemble(rels: dict[str, Path], entries, *, root, dataset, metadata, beamline_config,
              read_file_metadata, given: dict | None = None) -> Manifest:
    """The manifest from hashed entries: file metadata read, user metadata checked."""
    root = Path(root).resolve()
    file_meta: dict[str, dict] = {k: v for k, v in (given or {}).items() if k in rels}
    if read_file_metadata:
        for rel, p in rels.items():
            if rel not in file_meta and p.suffix.lower() in _HDF5_SUFFIXES:
                doc = _file_metadata(p, root)
                if doc is not None:
                    file_meta[rel] = doc
    for name, value in (("metadata", metadata), ("beamline_config", beamline_config)):
        if value is not None:
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise InputFileError(root, f"{name} cannot be written as JSON ({exc}).",
                                     field=name, hint="Pass only str, numbers, lists and "
                                     "dicts.") from None
    by_path = {e.path: e for e in entries}
    man = Manifest(
        dataset=dataset or next(iter(rels.values())).stem,
        files=tuple(by_path[k] for k in sorted(by_path)),
        metadata=dict(metadata or {}),
        file_metadata=file_meta,
        beamline_config=None if beamline_config is None else dict(beamline_config),
        root=str(root),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    log.debug("manifest %s for %s: %d files, %d bytes", man.id, man.dataset, len(man.files),
              man.total_bytes)
    return man


def check_file(path, entry: FileEntry, *, level: str = "sha256", workers: int = 1) -> str | None:
    """Check one file against its manifest entry; return the problem, or None when it matches.

    Parameters
    ----------
    path : path-like
        The file to check.
    entry : FileEntry
        What it must be.
    level : {"sha256", "crc32", "size"}
        ``"sha256"`` re-hashes the whole file; ``"crc32"`` checks the block checks recorded
        with the sha256 (CRC-32 or CRC-32C, blocks read in ``workers`` threads; falls back
        to sha256 for entries without them, or whose kind cannot be computed here);
        ``"size"`` checks presence and size only.
    workers : int
        Threads reading blocks for ``"crc32"``.

    Returns
    -------
    str or None
    """
    if level not in LEVELS:
        raise ValueError(f"unknown verification level {level!r}; choose one of {LEVELS}")
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if size != entry.size:
        return f"size {size} != {entry.size} in the manifest"
    if level == "size":
        return None
    try:
        if (level == "crc32" and entry.crc32 is not None
                and block_check_available(entry.crc32_kind)):
            bad = first_bad_block(path, entry.crc32, entry.size, workers=workers,
                                  block_size=entry.crc32_block, kind=entry.crc32_kind)
            if bad is None:
                return None
            if bad < 0:
                return "size changed while it was checked"
            start = bad * entry.crc32_block
            end = min(start + entry.crc32_block, entry.size)
            return (f"{entry.crc32_kind} of a block differs from the manifest (block {bad}, "
                    f"bytes {start}-{end - 1})")
        if sha256_file(path) != entry.sha256:
            return "sha256 differs from the manifest"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None


def verify_manifest(manifest: Manifest, root, *, files: Iterable[str] | None = None,
                    level: str = "sha256", workers: int = 1) -> list[Problem]:
    """Check that the files under ``root`` are those of the manifest: present, size, checksum.

    Parameters
    ----------
    manifest : Manifest
    root : path-like
        Where the dataset's files are (a source or a local destination).
    files : iterable of str, optional
        Check only these relative paths (default: all).
    level : {"sha256", "crc32", "size"}, optional
        How thoroughly (see :func:`check_file`); default: re-hash with sha256.
    workers : int, optional
        Threads reading blocks at the ``"crc32"`` level.

    Returns
    -------
    list of Problem
        Empty when every file is there with the right size and checksum. The files are
        only read.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown verification level {level!r}; choose one of {LEVELS}")
    root = Path(root)
    wanted = None if files is None else set(files)
    problems: list[Problem] = []
    for entry in manifest.files:
        if wanted is not None and entry.path not in wanted:
            continue
        problem = check_file(root / entry.path, entry, level=level, workers=workers)
        if problem == "missing":
            problem = f"missing under {root}"
        if problem is not None:
            problems.append(Problem(entry.path, problem))
    return problems
