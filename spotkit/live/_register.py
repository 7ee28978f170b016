"""A live series in the catalog: registered while it is written, ingested when it ends.

An Eiger series is one dataset: its master file (the path followed) is the primary file; once
it has ended, the data files it links to are ingested with it (role ``"frames"``, each with
its checksum), with the PONI and mask files.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from spotkit.errors import SpotkitError

logger = logging.getLogger(__name__)


def _no_checksum(path: Path) -> tuple[int, None]:
    """The registration hasher of a series still being written: its size, no sha256 (the
    finished series is ingested with its checksums)."""
    return os.stat(path).st_size, None


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def describe(path: Path, info: Any, *, n_frames: int | None = None) -> Any:
    """A :class:`spotkit.io.DatasetInfo` of a series being written, from its frame source.

    With ``n_frames`` (a finished series), the end time and the frame count go in, and an
    Eiger series' data files (``info.metadata["data_files"]``) are listed as its files.
    """
    from spotkit.io import DatasetInfo

    meta = dict(getattr(info, "metadata", None) or {})
    start = meta.get("start_time")
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start)
        except ValueError:
            start = None
    if not isinstance(start, datetime):
        start = datetime.now(UTC)
    elif start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    files = [(path, "data")]
    if n_frames is not None:
        files += [(Path(p), "frames") for p in meta.get("data_files") or ()]
    for attr, role in (("poni_path", "geometry"), ("mask_path", "mask")):
        extra = getattr(info, attr, None)
        if extra is not None and Path(extra).exists():
            files.append((Path(extra).absolute(), role))
    names = {k: str(meta.get(k) or "unknown") for k in ("beamline", "sample", "proposal")}
    metadata = {k: _json_value(v) for k, v in meta.items()
                if k not in ("beamline", "sample", "proposal", "start_time", "end_time")}
    shape = getattr(info, "shape", None)
    if shape is not None:
        metadata["frame_shape"] = [int(n) for n in shape]
    metadata["format"] = str(getattr(info, "format", "") or metadata.get("format", ""))
    end = None
    if n_frames is not None:
        metadata["n_frames"] = int(n_frames)
        try:
            end = datetime.fromisoformat(str(meta.get("end_time")))
            end = end if end.tzinfo is not None else end.replace(tzinfo=UTC)
        except ValueError:
            end = None
    return DatasetInfo(kind="saxs/raw", start_time=start, end_time=end,
                       title=f"{names['beamline']} live SAXS series of {names['sample']}",
                       metadata=metadata, files=tuple(files), **names)


def register(catalog: Any, path: Path, info: Any) -> str:
    """Register a series being written: a raw dataset with status ``"acquiring"``,
    described by what its frame source knows (``info``; the file itself may not be readable
    by the catalog's readers while the detector writes it), without checksums yet.

    Returns
    -------
    str
        The dataset id.
    """
    from spotkit.catalog import open_catalog

    described = describe(path, info)
    registrar = open_catalog(catalog.url, reader=lambda _path: described, create=False)
    try:
        ds = registrar.ingest(path, status="acquiring", hasher=_no_checksum,
                              extra_metadata={"live": True})
    finally:
        registrar.close()
    logger.info("%s: registered as %s (acquiring)", path, ds.id)
    return str(ds.id)


def ingest_final(catalog: Any, live_id: str, path: Path) -> str:
    """Ingest a finished series (checksums, status ``"raw"``, metadata ``live_dataset``); the
    frame marks are copied to it and the live dataset becomes ``"superseded"`` (set aside:
    its points and marks stay).

    Returns
    -------
    str
        The id of the finished series.
    """
    eiger = _eiger_series(path)
    if eiger is None:
        final = catalog.ingest(path, extra_metadata={"live_dataset": live_id})
    else:  # the catalog's readers read single files: describe the master + data files here
        from spotkit.catalog import open_catalog

        described = describe(path, eiger[0], n_frames=eiger[1])
        registrar = open_catalog(catalog.url, reader=lambda _path: described, create=False)
        try:
            final_id = registrar.ingest(path, extra_metadata={"live_dataset": live_id}).id
        finally:
            registrar.close()
        final = catalog[final_id]
    if final.id != live_id:
        marks = catalog.frame_marks(live_id)
        if marks:
            catalog.mark_frames(final.id, [m["frame"] for m in marks],
                                [m["label"] for m in marks],
                                reasons=[m["reason"] for m in marks])
        catalog.set_status(live_id, "superseded",
                           reason=f"acquisition finished; ingested as {final.id}")
    logger.info("%s: the finished series is %s", path, final.id)
    return str(final.id)


def _eiger_series(path: Path) -> tuple[Any, int] | None:
    """``(frame source info, frames)`` of the Eiger series at ``path``; None for another."""
    from spotkit.io import follow_frames

    try:
        source = follow_frames(path)
    except (SpotkitError, OSError, ValueError):
        return None
    try:
        if source.kind != "eiger":
            return None
        source.poll(0)  # looks at the master and every data file; hands out no frame
        return source.info, source.available
    finally:
        source.close()


def find_series(catalog: Any, path: Path, dataset_id: str | None, *,
                probe: bool = True) -> str | None:
    """The live series to record ``path`` into: ``dataset_id`` (checked), else the newest
    live series of that path, unless the file there now is another one (its frame differs
    from the series' fingerprint: a series written again under the same name); None: a
    new series."""
    if dataset_id is not None:
        return str(catalog[dataset_id].id)  # DatasetNotFoundError when unknown
    for entry in catalog.live_series(active=None):
        if entry.get("path") != str(path):
            continue
        if probe and entry.get("fingerprint") and \
                _probe(path, int(entry.get("fingerprint_frame", 0))) != entry["fingerprint"]:
            logger.warning("%s was written again (its frames differ from those of series "
                           "%s): a new series", path, entry["dataset_id"])
            return None
        return str(entry["dataset_id"])
    return None


def _probe(path: Path, frame: int) -> str | None:
    """The fingerprint of frame ``frame`` of the file at ``path`` now (None: none)."""
    from ._parts import fingerprint, open_source

    try:
        source = open_source(path, start=frame)
    except (SpotkitError, OSError):
        return None
    try:
        got = source.poll(1)
    finally:
        source.close()
    return fingerprint(got[0].data) if got and got[0].index == frame else None
