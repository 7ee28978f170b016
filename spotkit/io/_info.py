"""The description of one raw dataset that every reader returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["DatasetInfo"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a raw file says about itself, ready for a catalog.

    Attributes
    ----------
    kind : str
        ``"tomo/raw"`` or ``"saxs/raw"``.
    beamline : str
        Beamline name, e.g. ``"8.3.2"`` (``"unknown"`` if the file lacks it).
    sample : str
        Sample name (``"unknown"`` if the file lacks it).
    proposal : str
        Proposal or experiment id (``"unknown"`` if the file lacks it).
    start_time : datetime
        Timezone-aware UTC start of the acquisition.
    end_time : datetime or None
        Timezone-aware UTC end, None when the file does not say.
    title : str
        Short human title, e.g. ``"8.3.2 tomo scan of <sample>"``.
    metadata : dict
        JSON-serialisable details (energy_kev, pixel_size_um, exposure_s, shape, dtype, ...).
    files : tuple of (pathlib.Path, str)
        Absolute paths and their roles (``"data"``, ``"geometry"``).
    """

    kind: str
    beamline: str
    sample: str
    proposal: str
    start_time: datetime
    end_time: datetime | None
    title: str
    metadata: dict
    files: tuple[tuple[Path, str], ...]

    def to_dict(self) -> dict:
        """JSON-serialisable form (times as ISO-8601 strings, paths as strings)."""
        return {
            "kind": self.kind,
            "beamline": self.beamline,
            "sample": self.sample,
            "proposal": self.proposal,
            "start_time": self.start_time.isoformat(),
            "end_time": None if self.end_time is None else self.end_time.isoformat(),
            "title": self.title,
            "metadata": dict(self.metadata),
            "files": [[str(p), role] for p, role in self.files],
        }
