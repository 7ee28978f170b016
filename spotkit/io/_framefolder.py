"""Reader for a folder of detector frames (CBF, EDF, TIFF): one folder is one SAXS dataset.

Many SAXS/WAXS beamlines write one file per frame, numbered, into a folder per acquisition
(Pilatus/Eiger CBF at ESRF, Diamond, SLS; EDF at ESRF; TIFF at APS and ALS 7.3.3), with
the detector geometry in a pyFAI PONI file beside them. spotkit reads such a folder as one
``saxs/raw`` dataset:

A folder that also holds HDF5/NeXus files is not taken as a frame folder (those files are
datasets of their own, e.g. a scan with TIFF previews beside it).

* **frames**: every file ``<prefix><number>.<ext>`` with ext in :data:`FRAME_FILE_SUFFIXES`,
  ordered by number; all of one series (one prefix, one extension), all one shape and dtype;
* **geometry**: exactly one ``*.poni`` in the folder, or the file the sidecar names
  (``"poni": "../calib/pilatus.poni"``, relative to the folder);
* **sidecar** (optional but recommended): ``metadata.json`` / ``metadata.yaml`` (or the one
  ``*.json`` / ``*.yaml`` in the folder) with ``beamline``, ``sample``, ``proposal``,
  ``experimenter``, ``energy_kev``, ``start_time`` / ``end_time`` (ISO-8601),
  ``frame_time_s``, ``exposure_s``, ``mode`` and ``n_frames`` (how many frames the
  acquisition will write: the folder is complete when they are all there).

The dataset's primary path is **the folder itself** (the catalog hashes it as a tree and the
flow moves it whole); :attr:`DatasetInfo.files` lists the folder (role ``"data"``), the PONI
(``"geometry"``) and the sidecar (``"metadata"``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from spotkit import kinds
from spotkit.errors import InputFileError

from ._frames import _open, open_frames
from ._h5 import HDF5_SUFFIXES, logger
from ._info import DatasetInfo
from ._reader import Reader

__all__ = ["FRAME_FILE_SUFFIXES", "SIDECAR_NAMES", "FrameFolderReader", "frame_files",
           "frame_series"]

KIND = kinds.SAXS_RAW
#: single-frame file types a frame folder may hold
FRAME_FILE_SUFFIXES = (".cbf", ".edf", ".tif", ".tiff")
#: sidecar names looked for first (then the one *.json / *.yaml / *.yml in the folder)
SIDECAR_NAMES = ("metadata.json", "metadata.yaml", "metadata.yml")
_SIDECAR_SUFFIXES = (".json", ".yaml", ".yml")
_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")
MASK_VALUE = -1  # Pilatus/Eiger CBF: -1 in module gaps, -2 on bad pixels
_SIDECAR_TYPES = {"beamline": str, "sample": str, "proposal": str, "experimenter": str,
                  "mode": str, "title": str, "poni": str, "start_time": str, "end_time": str,
                  "energy_kev": float, "frame_time_s": float, "exposure_s": float,
                  "distance_m": float, "pixel_size_um": float, "n_frames": int}


def frame_series(names: Iterable[str]) -> dict[tuple[str, str], list[str]]:
    """Frame file names grouped into numbered series, each in frame order.

    A frame file is ``<prefix><number>.<ext>`` with a CBF, EDF or TIFF extension; a series is
    the files of one prefix and extension, ordered by number (then name): frame ``i`` of a
    series is its ``i``-th file, the numbering that the readers and the live path's marks
    use. Hidden names and other files are left out; a frame file without a number is a
    series of its own.

    Parameters
    ----------
    names : iterable of str
        File names (no folders).

    Returns
    -------
    dict
        ``(prefix, lower-case extension)`` -> the names of that series in frame order.

    Examples
    --------
    >>> frame_series(["s_10.cbf", "s_9.cbf", "metadata.json", "s_11.cbf", ".s_12.cbf"])
    {('s_', '.cbf'): ['s_9.cbf', 's_10.cbf', 's_11.cbf']}
    """
    series: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for name in names:
        stem, ext = os.path.splitext(name)
        if name.startswith(".") or ext.lower() not in FRAME_FILE_SUFFIXES:
            continue
        m = _NUMBERED.match(stem)
        prefix, number = (m["prefix"], int(m["number"])) if m else (stem, -1)
        series.setdefault((prefix, ext.lower()), []).append((number, name))
    return {key: [name for _, name in sorted(items)] for key, items in series.items()}


def frame_files(folder: Path) -> list[Path]:
    """The frame files of a folder's one series, in frame order (:func:`frame_series`).

    Raises
    ------
    InputFileError
        When the folder holds no frame, or frames of more than one series.
    """
    series = frame_series(p.name for p in folder.iterdir() if p.is_file())
    if not series:
        raise InputFileError(folder, f"holds no detector frames ({', '.join(FRAME_FILE_SUFFIXES)}"
                             ").", field="frames",
                             hint="Wait until the detector has written frames, or point at "
                             "the folder that holds them.")
    if len(series) > 1:
        names = ", ".join(f"{prefix}*{ext} ({len(v)})"
                          for (prefix, ext), v in sorted(series.items()))
        raise InputFileError(folder, f"holds more than one frame series: {names}; a folder of "
                             "frames is one dataset.", field="frames",
                             hint="Put each series in its own folder (or remove the stray "
                             "files).")
    (names_in_order,) = series.values()
    return [folder / name for name in names_in_order]


def find_sidecar(folder: Path) -> Path | None:
    """The metadata sidecar of a frame folder, or None."""
    for name in SIDECAR_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in _SIDECAR_SUFFIXES)
    if len(found) > 1:
        raise InputFileError(folder, "holds several possible metadata sidecars "
                             f"({', '.join(p.name for p in found)}).", field="sidecar",
                             hint=f"Name the sidecar {SIDECAR_NAMES[0]!r}.")
    return found[0] if found else None


def read_sidecar(path: Path) -> dict:
    """The sidecar's fields, checked (types of the known fields)."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(path, f"the metadata sidecar cannot be read ({exc}).",
                             hint="Write it as a JSON or YAML mapping.") from exc
    except Exception as exc:  # yaml.YAMLError
        raise InputFileError(path, f"the metadata sidecar is not valid YAML ({exc}).",
                             hint="Write it as a JSON or YAML mapping.") from exc
    if not isinstance(doc, dict):
        raise InputFileError(path, "the metadata sidecar must be a mapping (key: value).",
                             hint="e.g. {\"beamline\": \"ID02\", \"n_frames\": 100}")
    for key, typ in _SIDECAR_TYPES.items():
        value = doc.get(key)
        if value is None:
            continue
        try:
            if typ is int:
                if isinstance(value, bool) or int(value) != float(value) or int(value) < 1:
                    raise ValueError
                doc[key] = int(value)
            elif typ is float:
                if isinstance(value, bool):
                    raise ValueError
                doc[key] = float(value)
            else:
                doc[key] = str(value)
        except (TypeError, ValueError):
            want = "a positive integer" if typ is int else "a number" if typ is float else "text"
            raise InputFileError(path, f"{key} must be {want}, not {value!r}.",
                                 field=key) from None
    return doc


def _time(doc: dict, key: str, path: Path) -> datetime | None:
    value = doc.get(key)
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputFileError(path, f"the time {value!r} is not ISO-8601.", field=key,
                             hint="Write times like 2024-03-04T08:00:00+00:00.") from None
    if t.tzinfo is None:
        logger.warning("%s: time %s in %s has no time zone; assuming UTC", path, value, key)
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC)


def _poni(folder: Path, doc: dict, sidecar: Path | None) -> Path:
    named = doc.get("poni")
    if named:
        candidate = Path(named)
        candidate = candidate if candidate.is_absolute() else folder / candidate
        if not candidate.is_file():
            raise InputFileError(sidecar or folder, f"names the geometry file {candidate}, "
                                 "which does not exist.", field="poni",
                                 hint="Copy the pyFAI PONI calibration there, or fix the name.")
        return Path(os.path.abspath(candidate))  # "../calib/x.poni" without the ".."
    found = sorted(folder.glob("*.poni"))
    if not found:
        raise InputFileError(folder, "has no detector geometry: no *.poni file in the folder "
                             "and no 'poni' in its metadata sidecar.", field="poni",
                             hint="Copy the pyFAI PONI calibration into the folder (or "
                             "recalibrate with pyFAI-calib2); q cannot be computed without it.")
    if len(found) > 1:
        raise InputFileError(folder, "has several PONI files "
                             f"({', '.join(p.name for p in found)}).", field="poni",
                             hint="Keep one, or name the right one in the sidecar ('poni').")
    return found[0].absolute()


def _frame_header(path: Path) -> tuple[tuple[int, int], np.dtype]:
    img = _open(str(path))
    try:
        rows, cols = (int(s) for s in img.shape[-2:])
        return (rows, cols), np.dtype(img.dtype)
    finally:
        close = getattr(img, "close", None)
        if close is not None:
            close()


def _read(folder: Path) -> tuple[DatasetInfo, list[Path]]:
    files = frame_files(folder)
    sidecar = find_sidecar(folder)
    if sidecar is None:
        logger.warning("%s: no metadata sidecar (%s); beamline, sample and proposal are "
                       "unknown", folder, " / ".join(SIDECAR_NAMES))
    doc = read_sidecar(sidecar) if sidecar is not None else {}
    poni = _poni(folder, doc, sidecar)
    shape, dtype = _frame_header(files[0])
    if len(files) > 1:  # the last frame is the one a detector may still be writing
        last_shape, last_dtype = _frame_header(files[-1])
        if (last_shape, last_dtype) != (shape, dtype):
            raise InputFileError(
                files[-1], f"its frame is {last_shape[0]} x {last_shape[1]} {last_dtype} but "
                f"{files[0].name} is {shape[0]} x {shape[1]} {dtype}: a series must have one "
                "frame shape and dtype.", field="frame shape",
                hint="Remove the stray file, or put each detector's frames in its own folder.")
    where = sidecar or folder
    start = _time(doc, "start_time", where)
    if start is None:
        start = datetime.fromtimestamp(files[0].stat().st_mtime, tz=UTC)
        logger.warning("%s: no start_time in the sidecar; using the first frame's time %s",
                       folder, start.isoformat())
    end = _time(doc, "end_time", where)

    def text(key):
        value = doc.get(key)
        if value is None or not str(value).strip():
            if sidecar is not None:
                logger.warning("%s: optional field %s is missing; using 'unknown'", sidecar, key)
            return "unknown"
        return str(value)

    beamline, sample, proposal = text("beamline"), text("sample"), text("proposal")
    mode = str(doc.get("mode") or "saxs")
    expected = doc.get("n_frames")
    known = set(_SIDECAR_TYPES)
    metadata = {
        "format": "frames",
        "frame_format": files[0].suffix.lower().lstrip("."),
        "mode": mode,
        "experimenter": text("experimenter"),
        "energy_kev": doc.get("energy_kev"),
        "distance_m": doc.get("distance_m"),
        "pixel_size_um": doc.get("pixel_size_um"),
        "frame_time_s": doc.get("frame_time_s"),
        "exposure_s": doc.get("exposure_s"),
        "shape": [len(files), *shape],
        "dtype": str(dtype),
        "n_frames": len(files),
        "n_frames_expected": expected,
        "mask_value": MASK_VALUE,
        "geometry_file": str(poni),
        "frame_files": [files[0].name, files[-1].name],
        "sidecar": None if sidecar is None else str(sidecar),
        "extra": {k: v for k, v in doc.items() if k not in known
                  and isinstance(v, str | int | float | bool)},
    }
    listed = [(folder, "data"), (poni, "geometry")]
    if sidecar is not None:
        listed.append((sidecar.absolute(), "metadata"))
    info = DatasetInfo(kind=KIND, beamline=beamline, sample=sample, proposal=proposal,
                       start_time=start, end_time=end,
                       title=str(doc.get("title") or f"{beamline} {mode.upper()} series of "
                                 f"{sample}"),
                       metadata=metadata, files=tuple(listed))
    return info, files


def _folder(path) -> Path:
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise InputFileError(path, "does not exist.", hint="Check the path.")
    if not path.is_dir():
        raise InputFileError(path, "is a file; a frame series is read from its folder.",
                             hint=f"Pass the folder {path.parent}.")
    return path


def read_frame_folder_metadata(path) -> DatasetInfo:
    """Read and check a frame folder's metadata (frames, PONI, sidecar)."""
    return _read(_folder(path))[0]


def open_frame_folder(path, *, chunks=None):
    """Open a frame folder lazily, in the shape of :func:`spotkit.io.open_saxs`.

    Every frame file's shape and dtype are checked (a stray file is named); ``time`` is
    ``frame_time_s`` (from the sidecar; 1 s when absent, with a warning) times the index.
    """
    folder = _folder(path)
    info, files = _read(folder)
    frames = open_frames(files, chunks=1 if chunks is None else int(chunks))
    n = frames.sizes["frame"]
    dt = info.metadata.get("frame_time_s")
    if not dt:
        logger.warning("%s: no frame_time_s in the sidecar; using 1 s per frame", folder)
        dt = 1.0
    attrs = {"kind": info.kind, "beamline": info.beamline, "sample": info.sample,
             "proposal": info.proposal, "start_time": info.start_time.isoformat(),
             "end_time": "" if info.end_time is None else info.end_time.isoformat(),
             "title": info.title, "path": str(folder),
             "poni_path": info.metadata["geometry_file"]}
    attrs.update({k: v for k, v in info.metadata.items()
                  if v is not None and not isinstance(v, dict)})
    attrs["files"] = [str(p) for p in files]
    return frames.assign_coords(time=("frame", np.arange(n) * float(dt), {"units": "s"})
                                ).assign_attrs(attrs)


class FrameFolderReader(Reader):
    """A folder of numbered detector frames (CBF, EDF, TIFF) with its PONI and sidecar."""

    name = "frame-folder"
    kind = KIND
    layout = ("a folder of numbered detector frames (" + ", ".join(FRAME_FILE_SUFFIXES)
              + ") with one pyFAI .poni file and a metadata.json/.yaml sidecar "
              "(beamline, sample, proposal, energy_kev, n_frames expected)")
    folder = True
    priority = 10

    def sniff(self, path):
        path = Path(path)
        if not path.is_dir():
            return False
        try:
            suffixes = {p.suffix.lower() for p in path.iterdir() if not p.name.startswith(".")}
        except OSError:
            return False
        # a folder that also holds HDF5 files is not a frame series (e.g. a Data Exchange
        # scan with TIFF previews beside it): those files are datasets of their own
        return bool(suffixes & set(FRAME_FILE_SUFFIXES)) and not suffixes & set(HDF5_SUFFIXES)

    def read_metadata(self, path):
        return read_frame_folder_metadata(path)

    def open(self, path, *, chunks=None):
        return open_frame_folder(path, chunks=chunks)

    def check_complete(self, path):
        """Complete when the sidecar's ``n_frames`` are all there (or, without a count,
        when the folder reads cleanly: the watcher waits for it to stop changing)."""
        info = read_frame_folder_metadata(path)
        expected = info.metadata.get("n_frames_expected")
        have = info.metadata["n_frames"]
        if expected and have < expected:
            return False, f"{path}: {have} of {expected} frames so far"
        if expected and have > expected:
            logger.warning("%s: %d frames but the sidecar expects %d", path, have, expected)
        return True, None
