"""Helpers shared by the simulated detectors: HDF5 writing, timestamps, physical constants."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np

#: h * c in keV * nm, for wavelength = HC_KEV_NM / energy.
HC_KEV_NM = 1.239841984

#: Base date of simulated acquisitions; each seed adds a deterministic offset.
_BASE_TIME = datetime(2024, 3, 4, 8, 0, 0, tzinfo=UTC)

_STR = h5py.string_dtype("utf-8")


def write_str(group: h5py.Group, name: str, value: str) -> h5py.Dataset:
    """Write a variable-length UTF-8 scalar string dataset."""
    return group.create_dataset(name, data=str(value), dtype=_STR, track_times=False)


def write_num(group: h5py.Group, name: str, value: float, units: str | None = None):
    """Write a float64 scalar dataset, with a ``units`` attribute when given."""
    ds = group.create_dataset(name, data=np.float64(value), track_times=False)
    if units is not None:
        ds.attrs["units"] = units
    return ds


def start_time_for(seed: int, start_time: datetime | None) -> datetime:
    """Acquisition start: ``start_time`` (made UTC) or a fixed base date plus a seeded offset."""
    if start_time is not None:
        if start_time.tzinfo is None:
            raise ValueError(
                f"start_time {start_time.isoformat()} has no time zone; pass an aware datetime, "
                "e.g. datetime(..., tzinfo=datetime.UTC)"
            )
        return start_time.astimezone(UTC)
    offset = int(np.random.default_rng([seed, 99]).integers(0, 30 * 24 * 3600))
    return _BASE_TIME + timedelta(seconds=offset)


def iso(t: datetime) -> str:
    """ISO-8601 UTC string with seconds resolution, e.g. ``2024-03-04T08:00:00+00:00``."""
    return t.astimezone(UTC).isoformat(timespec="seconds")


def prepare_path(path, overwrite: bool) -> Path:
    """Absolute path for a new file; refuse to replace an existing one unless asked."""
    path = Path(path).expanduser().absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it or choose another path"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    for extra in (Path(f"{path}.done"),):
        if extra.exists():
            extra.unlink()
    return path


def touch_sentinel(path: Path) -> Path:
    """Create the empty ``<path>.done`` file that tells watchers the file is complete."""
    done = Path(f"{path}.done")
    with open(done, "wb") as fh:
        fh.flush()
        os.fsync(fh.fileno())
    return done
