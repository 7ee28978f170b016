"""The manifest of one dataset: its files' sizes and checksums, and its metadata, as JSON.

A :class:`Manifest` lists every file of a dataset as a :class:`FileEntry` (path relative to
the dataset root, size, sha256, mtime, block checks), the metadata read from the files
themselves, the metadata the caller adds, and the beamline configuration that applied. Its
:attr:`Manifest.digest` covers everything but the creation time and the source root, so the
same files and metadata always give the same id, and a manifest whose JSON was edited by
hand no longer loads. :class:`Problem` is one reason a copy does not match it.

Making one (reading the files) and checking files against one are in
:mod:`spotkit.flows._suitcase`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from spotkit.checksums import BLOCK_CHECKS, BLOCK_SIZE
from spotkit.errors import InputFileError

__all__ = ["FileEntry", "Manifest", "Problem"]


FORMAT_VERSION = 2
"""Version 2 adds ``crc32_kind`` to file entries (``"crc32c"`` block checks); a manifest
whose block checks are all zlib CRC-32 is still written as version 1, byte for byte as
before (same digest, same id), and both versions are read."""
_VERSIONS = (1, 2)


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
