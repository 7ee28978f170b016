"""Reader for NeXus-style SAXS/GISAXS time series with a pyFAI PONI geometry file.

The frames are ``/entry/data/data`` of the file, or, for a Dectris Eiger master file, the
frames of the data files it links to (``/entry/data/data_NNNNNN``), read as one series
(:mod:`spotkit.io._eiger`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from spotkit import kinds
from spotkit.errors import InputFileError

from ._eiger import EigerSeries, eiger_mask, eiger_poni_candidates, is_eiger_master, master_of
from ._eiger import read_series as read_eiger_series
from ._eiger import stack as eiger_stack
from ._follow_h5 import series_metadata
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
DET = "/entry/instrument/detector"
#: an Eiger master's start time when it has no /entry/start_time
COLLECTION_DATE = f"{DET}/detectorSpecific/data_collection_date"
WAVELENGTH_KEY = "/entry/instrument/beam/incident_wavelength"
_HC_KEV_A = 12.398419843320026  # keV x angstrom
_TO_ANGSTROM = {"angstrom": 1.0, "a": 1.0, "\u00e5": 1.0, "nm": 10.0, "m": 1e10}


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


def _poni_path(f, path: Path, *, eiger: bool = False) -> Path:
    name = get_value(f, GEOMETRY_KEY)
    if name is None:
        candidates = eiger_poni_candidates(path) if eiger else [path.with_suffix(".poni")]
        candidate = next((c for c in candidates if c.is_file()), candidates[0])
        # a detector's Eiger master never names one: not worth a warning there
        logger.log(logging.INFO if eiger else logging.WARNING,
                   "%s: %s is missing; looking for %s", path, GEOMETRY_KEY,
                   " or ".join(c.name for c in candidates))
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


def _wavelength_a(f) -> float | None:
    """The incident wavelength in angstrom (NXmx, as Eiger masters record it), or None."""
    obj = f.get(WAVELENGTH_KEY)
    value = get_number(f, WAVELENGTH_KEY, "", warn=False)
    if value is None or value <= 0 or obj is None:
        return None
    units = obj.attrs.get("units", "angstrom")
    units = (units.decode() if isinstance(units, bytes) else str(units)).strip().lower()
    return value * _TO_ANGSTROM.get(units, 1.0)


def _beam_and_distance(f, path: Path) -> tuple[float | None, float | None, float | None]:
    """``(wavelength in angstrom, energy in keV, distance in m)``: the energy from the
    monochromator, else from the NXmx wavelength (Eiger masters); the distance, else NXmx's
    ``detector_distance``. Unknown ones are None (with a logged warning)."""
    wavelength = _wavelength_a(f)
    energy = get_number(f, "/entry/instrument/monochromator/energy", path, to="keV",
                        default_units="keV", warn=wavelength is None)
    if energy is None and wavelength is not None:
        energy = float(f"{_HC_KEV_A / wavelength:.12g}")
    distance = get_number(f, f"{DET}/distance", path, to="m", default_units="m", warn=False)
    if distance is None:
        distance = get_number(f, f"{DET}/detector_distance", path, to="m", default_units="m",
                              warn=False)
    if distance is None:
        logger.warning("%s: optional field %s/distance (or detector_distance) is missing; "
                       "recorded as unknown", path, DET)
    return wavelength, energy, distance


def _not_a_data_file(f, path: Path) -> None:
    """An Eiger data file (frames, no metadata) is opened through its master."""
    master = master_of(path)
    if master is not None and get_value(f, GEOMETRY_KEY) is None:
        raise InputFileError(
            path, f"is a data file of the Eiger series {master.name}: it holds frames but "
            "none of the series' metadata (geometry, time, sample).", field=DATA_KEY,
            hint=f"Open or ingest the master file {master} (it reads every data file).")


def _read(f, path) -> tuple[DatasetInfo, h5py.Dataset | EigerSeries]:
    data: h5py.Dataset | EigerSeries
    if is_eiger_master(f, path):
        data = read_eiger_series(f, path, expected=series_metadata(f)[1])
        eiger = data
        shape = (data.n_frames, *data.frame_shape)
    else:
        _not_a_data_file(f, path)
        data = _frames(f, path)
        eiger = None
        shape = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
    poni = _poni_path(f, path, eiger=eiger is not None)
    beamline = get_str(f, "/entry/instrument/source/beamline", path)
    sample = get_str(f, "/entry/sample/name", path)
    proposal = get_str(f, "/entry/experiment/proposal", path)
    mode = get_str(f, "/entry/mode", path, default="saxs")
    start_key = "/entry/start_time"
    if eiger is not None and get_value(f, start_key) is None and \
            get_value(f, COLLECTION_DATE) is not None:
        start_key = COLLECTION_DATE
    start = get_time(f, start_key, path, required=True)
    end = get_time(f, "/entry/end_time", path, required=False)
    n_frames, n_rows, n_cols = shape
    det = DET
    wavelength, energy, distance = _beam_and_distance(f, path)
    metadata: dict[str, Any] = {
        "format": "nexus" if eiger is None else "eiger",
        "mode": mode,
        "instrument": get_str(f, "/entry/instrument/name", path),
        "source": get_str(f, "/entry/instrument/source/name", path),
        "experimenter": get_str(f, "/entry/experiment/experimenter", path),
        "energy_kev": energy,
        "distance_m": distance,
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
    if wavelength is not None:
        metadata["wavelength_a"] = float(f"{wavelength:.12g}")
    if mode == "gisaxs":
        metadata["incidence_angle_deg"] = get_number(f, "/entry/sample/incidence_angle", path)
    files: list[tuple[Path, str]] = [(path, "data")]
    if eiger is not None:
        metadata.update(n_data_files=len(eiger.parts), frames_per_file=eiger.frames_per_file,
                        data_files=[str(p.path) for p in eiger.parts])
        if eiger.expected is not None:
            metadata["n_frames_expected"] = eiger.expected
        files += [(p.path, "frames") for p in eiger.parts]
    files.append((poni, "geometry"))
    mask = eiger_mask(path, get_value(f, f"{det}/mask_file")) if eiger is not None else None
    if mask is not None:
        files.append((mask, "mask"))
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
        files=tuple(files),
    )
    return info, data


def read_saxs_metadata(path) -> DatasetInfo:
    """Read and check the metadata of a NeXus SAXS/GISAXS series.

    Parameters
    ----------
    path : path-like
        The HDF5 file.

    Returns
    -------
    DatasetInfo
        ``files`` holds the data file and its PONI geometry; for an Eiger master, the master
        (``"data"``), its data files in order (``"frames"``), the PONI geometry and the
        detector mask when there is one (``"mask"``).

    Raises
    ------
    InputFileError
        When the file is unreadable, has no frames, or its PONI file is missing; for an
        Eiger master, when a data file is missing or unreadable (naming the link and the
        file); for an Eiger data file, naming its master.
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
        The HDF5 file (read-only), or a Dectris Eiger master file: the frames of the data
        files it links to (``/entry/data/data_NNNNNN``, relative names beside the master),
        in order, numbered on across the files; the master's metadata (energy or
        wavelength, distance or detector_distance, pixel size, beam centre).
    chunks : int or tuple, optional
        Frames per dask chunk (int) or explicit dask chunks; default one frame per chunk.
        For an Eiger series an int chunking never spans two data files.

    Returns
    -------
    xarray.DataArray
        ``frames`` with dims (frame, y, x), dask-backed, int counts with masked pixels at
        ``attrs["mask_value"]`` (-1); coordinate ``time`` (frame, seconds since the start;
        Eiger data files have no timestamps: frame x ``frame_time_s``) and pixel-index
        coordinates ``y``, ``x``; ``attrs`` hold the metadata, including ``poni_path``
        (Eiger: also ``data_files``, ``n_data_files``, ``frames_per_file``).

    Raises
    ------
    InputFileError
        When the file is unreadable, has no frames, or its PONI file is missing; a missing
        Eiger data file names the master, its link and the file.

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

    An Eiger series, from its master file (three data files of two, two and one frames):

    >>> from spotkit.sim import LiveSeriesWriter
    >>> writer = LiveSeriesWriter(path.with_name("run_master.h5"), fmt="eiger", n_frames=5,
    ...                           frames_per_file=2, shape=(40, 50), module_shape=None)
    >>> writer.write(5)
    5
    >>> frames = open_saxs(writer.path, chunks=2)
    >>> frames.shape, frames.data.chunks[0], frames.attrs["n_data_files"]
    ((5, 40, 50), (2, 2, 1), 3)
    """
    path = check_exists(path)
    with open_hdf5(path) as f:
        info, data = _read(f, path)
        n_frames, *frame = info.metadata["shape"]
        dt = info.metadata.get("frame_time_s") or 1.0
        if isinstance(data, EigerSeries):
            arr = _eiger_frames(path, data, chunks)
            # Eiger data files have no per-frame timestamps: the frame time is the clock
            logger.info("%s: %d frames from %d data files; %g s per frame", path, n_frames,
                        len(data.parts), dt)
            time = np.arange(n_frames) * dt
        else:
            arr = lazy_dataset(
                path,
                data,
                normalise_chunks(1 if chunks is None else chunks, n_frames, tuple(frame),
                                 data.dtype),
            )
            stamps = f.get("/entry/data/frame_timestamp")
            if stamps is not None and stamps.shape[0] >= n_frames:
                time = np.asarray(stamps[:n_frames], dtype=np.float64)
            else:
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


def _eiger_frames(path: Path, series: EigerSeries, chunks: Chunks):
    """The lazy stack of an Eiger series: ``chunks`` frames per chunk within each data file
    (default one), or explicit dask chunks."""
    if series.incomplete is not None:
        logger.warning("%s: %s; opening the %d frames there", path, series.incomplete,
                       series.n_frames)
    if chunks is None or isinstance(chunks, int | np.integer):
        return eiger_stack(series, 1 if chunks is None else int(chunks))
    return eiger_stack(series, series.frames_per_file).rechunk(chunks)


class SaxsNexusReader(Reader):
    """NeXus-style SAXS/GISAXS series: ``/entry/data/data`` plus a PONI file it names; or a
    Dectris Eiger master file linking its data files (``/entry/data/data_NNNNNN``)."""

    name = "nexus-saxs"
    kind = KIND
    layout = ("NeXus-style HDF5 with /entry/data/data (frames x rows x cols), or an Eiger "
              "master linking data files (/entry/data/data_NNNNNN), and a pyFAI PONI file "
              "named in /entry/instrument/detector/geometry_file (Eiger: or <master>.poni)")
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
                    or "instrument/detector/geometry_file" in entry
                    or is_eiger_master(f, path))

    def read_metadata(self, path):
        return read_saxs_metadata(path)

    def open(self, path, *, chunks=None):
        return open_saxs(path, chunks=chunks)

    def check_complete(self, path):
        with open_hdf5(path) as f:
            if is_eiger_master(f, path):
                # every data file there and whole, as many frames as the master announces
                series = read_eiger_series(f, path, expected=series_metadata(f)[1])
                if series.incomplete is not None:
                    return False, f"{path}: {series.incomplete}"
                return super().check_complete(path)
            obj = f.get(DATA_KEY)
            if not hasattr(obj, "shape"):
                return False, f"{path}: dataset {DATA_KEY} is missing (still being written?)"
            if obj.size == 0:
                return False, f"{path}: dataset {DATA_KEY} is empty"
        return super().check_complete(path)
