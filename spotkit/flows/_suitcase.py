"""The suitcase: one manifest per dataset, packing its files' checksums with its metadata.

:func:`make_manifest` reads a dataset's files once each (sha256 of record and block checks
in the same read, in threads) and packs them with their metadata into a
:class:`~spotkit.flows._manifest.Manifest`; :func:`verify_manifest` and :func:`check_file`
check files against it. It is what a transfer is verified against at the destination, and
what a retention policy checks before it lets a source file go. The manifest itself (its
entries, JSON form and digest) is in :mod:`spotkit.flows._manifest`; its names are
re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from spotkit.checksums import (  # BLOCK_SIZE, digest_file, sha256_file: re-exported
    BLOCK_SIZE,
    DEFAULT_BLOCK_CHECK,
    block_check_available,
    digest_file,
    first_bad_block,
    sha256_file,
)
from spotkit.errors import InputFileError

from ._manifest import FileEntry, Manifest, Problem  # re-exported (in __all__)

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


LEVELS = ("sha256", "crc32", "size")
"""How :func:`verify_manifest` checks a file: full sha256, the per-block crc32s, or size only."""
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx", ".nx5", ".cxi")


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
