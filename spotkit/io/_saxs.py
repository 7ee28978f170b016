"""Reader for NeXus-style SAXS/GISAXS time series with a pyFAI PONI geometry file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from spotkit import kinds
from spotkit.errors import InputFileError

from ._h5 import (
    HDF5_SUFFIXES,
    as_text,
    check_exists,
    get_number,
    get_str,
    get_time,
    get_value,
    lazy_dataset,
    logger,
    normalise_chunks,
    open_hdf5,
    quiet_hdf5,
)
from ._info import DatasetInfo
from ._reader import Reader
from ._types import Chunks, PathLike

__all__ = ["SaxsNexusReader", "open_saxs", "read_saxs_metadata"]

KIND = kinds.SAXS_RAW
DATA_KEY = kinds.raw_layout(kinds.SAXS_RAW).key
GEOMETRY_KEY = "/entry/instrument/detector/geometry_file"
MASK_VALUE = -1


def _frames(f, path):
    ds = f.get(DATA_KEY)
    if ds is None:
        raise InputFileError(
            path,
            "has no detector frames.",
            field=DATA_KEY,
            hint="The series may still be starting; wait for frames.",
        )
    if not hasattr(ds, "ndim") or ds.ndim != 3:
        raise InputFileError(
            path,
            "the frames must be a 3-D dataset (frames x rows x cols), "
            f"found {getattr(ds, 'shape', 'a group')}.",
            field=DATA_KEY,
        )
    if ds.shape[0] == 0:
        raise InputFileError(
            path,
            "has no frames yet (0 frames).",
            field=DATA_KEY,
            hint="Wait until the detector has written frames.",
        )
    return ds


def _poni_path(f, path: Path) -> Path:
    name = get_value(f, GEOMETRY_KEY)
    if name is None:
        logger.warning(
            "%s: %s is missing; looking for %s", path, GEOMETRY_KEY, path.with_suffix(".poni").name
        )
        candidate = path.with_suffix(".poni")
    else:
        candidate = Path(str(name))
        if not candidate.is_absolute():
            candidate = path.parent / candidate
    if not candidate.is_file():
        raise InputFileError(
            path,
            f"its detector geometry file {candidate} is missing.",
            field=GEOMETRY_KEY,
            hint="Copy the pyFAI PONI calibration next to the data file under that name "
            "(or recalibrate with pyFAI-calib2); q cannot be computed without it.",
        )
    return candidate.absolute()


def _read(f, path) -> tuple[DatasetInfo, tuple]:
    data = _frames(f, path)
    poni = _poni_path(f, path)
    beamline = get_str(f, "/entry/instrument/source/beamline", path)
    sample = get_str(f, "/entry/sample/name", path)
    proposal = get_str(f, "/entry/experiment/proposal", path)
    mode = get_str(f, "/entry/mode", path, default="saxs")
    start = get_time(f, "/entry/start_time", path, required=True)
    end = get_time(f, "/entry/end_time", path, required=False)
    n_frames, n_rows, n_cols = (int(s) for s in data.shape)
    det = "/entry/instrument/detector"
    metadata = {
        "format": "nexus",
        "mode": mode,
        "instrument": get_str(f, "/entry/instrument/name", path),
        "source": get_str(f, "/entry/instrument/source/name", path),
        "experimenter": get_str(f, "/entry/experiment/experimenter", path),
        "energy_kev": get_number(
            f, "/entry/instrument/monochromator/energy", path, to="keV", default_units="keV"
        ),
        "distance_m": get_number(f, f"{det}/distance", path, to="m", default_units="m"),
        "pixel_size_um": get_number(f, f"{det}/x_pixel_size", path, to="um", default_units="m"),
        "beam_center": [
            get_number(f, f"{det}/beam_center_y", path, warn=False),
            get_number(f, f"{det}/beam_center_x", path, warn=False),
        ],
        "frame_time_s": get_number(f, f"{det}/frame_time", path, to="s", default_units="s"),
        "exposure_s": get_number(
            f, f"{det}/count_time", path, to="s", default_units="s", warn=False
        ),
        "shape": [n_frames, n_rows, n_cols],
        "dtype": str(data.dtype),
        "n_frames": n_frames,
        "mask_value": MASK_VALUE,
        "geometry_file": str(poni),
    }
    if mode == "gisaxs":
        metadata["incidence_angle_deg"] = get_number(f, "/entry/sample/incidence_angle", path)
    title = f"{beamline} {mode.upper()} series of {sample}"
    info = DatasetInfo(
        kind=KIND,
        beamline=beamline,
        sample=sample,
        proposal=proposal,
        start_time=start,
        end_time=end,
        title=title,
        metadata=metadata,
        files=((path, "data"), (poni, "geometry")),
    )
    return info, (data,)


def read_saxs_metadata(path) -> DatasetInfo:
    """Read and check the metadata of a NeXus SAXS/GISAXS series.

    Parameters
    ----------
    path : path-like
        The HDF5 file.

    Returns
    -------
    DatasetInfo
        ``files`` holds the data file and its PONI geometry.

    Raises
    ------
    InputFileError
        When the file is unreadable, has no frames, or its PONI file is missing.
    """
    path = check_exists(path)
    with open_hdf5(path) as f:
        info, _ = _read(f, path)
    return info


def open_saxs(path: PathLike, *, chunks: Chunks = None) -> xr.DataArray:
    """Open a SAXS/GISAXS series lazily.

    Parameters
    ----------
    path : path-like
        The HDF5 file (read-only).
    chunks : int or tuple, optional
        Frames per dask chunk (int) or explicit dask chunks; default one frame per chunk.

    Returns
    -------
    xarray.DataArray
        ``frames`` with dims (frame, y, x), dask-backed, int counts with masked pixels at
        ``attrs["mask_value"]`` (-1); coordinate ``time`` (frame, seconds since the start)
        and pixel-index coordinates ``y``, ``x``; ``attrs`` hold the metadata, including
        ``poni_path``.

    Raises
    ------
    InputFileError
        When the file is unreadable, has no frames, or its PONI file is missing.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.io import load_geometry
    >>> from spotkit.sim import simulate_saxs_series
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.h5"
    >>> truth = simulate_saxs_series(path, n_frames=3, shape=(40, 50), onset_frame=1)
    >>> frames = open_saxs(path)
    >>> frames.dims, frames.shape
    (('frame', 'y', 'x'), (3, 40, 50))
    >>> ai = load_geometry(frames.attrs["poni_path"], shape=frames.shape[1:])
    """
    path = check_exists(path)
    with open_hdf5(path) as f:
        info, (data,) = _read(f, path)
        n_frames = data.shape[0]
        frame = tuple(int(s) for s in data.shape[1:])
        arr = lazy_dataset(
            path,
            data,
            normalise_chunks(1 if chunks is None else chunks, n_frames, frame, data.dtype),
        )
        stamps = f.get("/entry/data/frame_timestamp")
        if stamps is not None and stamps.shape[0] >= n_frames:
            time = np.asarray(stamps[:n_frames], dtype=np.float64)
        else:
            dt = info.metadata.get("frame_time_s") or 1.0
            logger.warning("%s: no per-frame timestamps; using %g s per frame", path, dt)
            time = np.arange(n_frames) * dt
    attrs = {
        "kind": info.kind,
        "beamline": info.beamline,
        "sample": info.sample,
        "proposal": info.proposal,
        "start_time": info.start_time.isoformat(),
        "end_time": "" if info.end_time is None else info.end_time.isoformat(),
        "title": info.title,
        "path": str(path),
        "poni_path": info.metadata["geometry_file"],
    }
    attrs.update(info.metadata)
    attrs["beam_center"] = [np.nan if v is None else v for v in attrs["beam_center"]]
    return xr.DataArray(
        arr,
        dims=("frame", "y", "x"),
        coords={
            "time": ("frame", time, {"units": "s"}),
            "y": ("y", np.arange(frame[0])),
            "x": ("x", np.arange(frame[1])),
        },
        name="frames",
        attrs=attrs,
    )


class SaxsNexusReader(Reader):
    """NeXus-style SAXS/GISAXS series: ``/entry/data/data`` plus a PONI file it names."""

    name = "nexus-saxs"
    kind = KIND
    layout = ("NeXus-style HDF5 with /entry/data/data (frames x rows x cols) and a pyFAI "
              "PONI file named in /entry/instrument/detector/geometry_file")
    suffixes = HDF5_SUFFIXES
    priority = 10

    def sniff(self, path):
        with quiet_hdf5(path) as f:
            if f is None:
                return False
            entry = f.get("/entry")
            if not hasattr(entry, "keys"):
                return False
            definition = entry.get("definition")
            if isinstance(definition, h5py.Dataset) and as_text(definition[()]).strip() in (
                    "NXtomo", "NXcanSAS"):
                return False  # raw tomography or reduced data: not a SAXS frame series
            return ("data/data" in entry or "mode" in entry
                    or "instrument/detector/geometry_file" in entry)

    def read_metadata(self, path):
        return read_saxs_metadata(path)

    def open(self, path, *, chunks=None):
        return open_saxs(path, chunks=chunks)

    def check_complete(self, path):
        with open_hdf5(path) as f:
            obj = f.get(DATA_KEY)
            if not hasattr(obj, "shape"):
                return False, f"{path}: dataset {DATA_KEY} is missing (still being written?)"
            if obj.size == 0:
                return False, f"{path}: dataset {DATA_KEY} is empty"
        return super().check_complete(path)
