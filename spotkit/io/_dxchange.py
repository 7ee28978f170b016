"""Reader for Data Exchange tomography files (ALS 8.3.2, APS 2-BM style)."""

from __future__ import annotations

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
    lazy_dataset,
    logger,
    normalise_chunks,
    open_hdf5,
    quiet_hdf5,
)
from ._info import DatasetInfo
from ._reader import Reader
from ._types import Chunks, PathLike

__all__ = ["DataExchangeReader", "open_tomo", "read_tomo_metadata"]

KIND = kinds.TOMO_RAW
_INCOMPLETE = (
    "The acquisition may not have finished (Data Exchange writers add it last): wait for the "
    "scan to complete, or copy the file again."
)


def _frames(f, path, key: str, what: str, frame_shape=None):
    ds = f.get(key)
    if ds is None:
        hint = (
            _INCOMPLETE
            if key in ("/exchange/data", "/exchange/theta")
            else (
                f"A Data Exchange scan needs its {what} in {key} to be normalised; add them, or "
                "ask the beamline for the matching flat/dark file."
            )
        )
        raise InputFileError(path, f"has no {what}.", field=key, hint=hint)
    if not hasattr(ds, "shape") or ds.ndim != 3:
        shape = getattr(ds, "shape", "a group")
        raise InputFileError(
            path,
            f"the {what} must be a 3-D dataset (frames x rows x cols), found {shape}.",
            field=key,
        )
    if frame_shape is not None and tuple(ds.shape[1:]) != tuple(frame_shape):
        raise InputFileError(
            path,
            f"the {what} have frames of {tuple(ds.shape[1:])} pixels but the projections "
            f"have {tuple(frame_shape)}.",
            field=key,
            hint="Flats and darks must come from the same detector region (ROI and binning) "
            "as the projections.",
        )
    return ds


def _validated(f, path):
    """The projection, flat and dark datasets and theta in degrees, all checked."""
    data = _frames(f, path, "/exchange/data", "projections")
    if data.shape[0] == 0:
        raise InputFileError(
            path, "has no projections yet (0 frames).", field="/exchange/data", hint=_INCOMPLETE
        )
    frame = data.shape[1:]
    flats = _frames(f, path, "/exchange/data_white", "flat (white) fields", frame)
    darks = _frames(f, path, "/exchange/data_dark", "dark fields", frame)
    th = f.get("/exchange/theta")
    if th is None:
        raise InputFileError(
            path, "has no rotation angles.", field="/exchange/theta", hint=_INCOMPLETE
        )
    theta = np.asarray(th[()], dtype=np.float64).reshape(-1)
    if theta.size != data.shape[0]:
        raise InputFileError(
            path,
            f"has {theta.size} rotation angles but {data.shape[0]} projections.",
            field="/exchange/theta",
            hint="The file is inconsistent (an interrupted or edited scan); it cannot be "
            "reconstructed as is.",
        )
    units = th.attrs.get("units", "degrees")
    units = units.decode() if isinstance(units, bytes) else str(units)
    if units.lower() in ("rad", "radian", "radians"):
        theta = np.rad2deg(theta)
    return data, flats, darks, theta


def _read(f, path) -> tuple[DatasetInfo, tuple]:
    data, flats, darks, theta = _validated(f, path)
    beamline = get_str(f, "/measurement/instrument/source/beamline", path)
    sample = get_str(f, "/measurement/sample/name", path)
    proposal = get_str(f, "/measurement/sample/experiment/proposal", path)
    start = get_time(f, "/process/acquisition/start_date", path, required=True)
    end = get_time(f, "/process/acquisition/end_date", path, required=False)
    implements = f.attrs.get("implements", "")
    implements = implements.decode() if isinstance(implements, bytes) else str(implements)
    n_angles, n_rows, n_cols = (int(s) for s in data.shape)
    metadata = {
        "format": "dataexchange",
        "implements": implements,
        "instrument": get_str(f, "/measurement/instrument/name", path),
        "source": get_str(f, "/measurement/instrument/source/name", path),
        "experimenter": get_str(f, "/measurement/sample/experimenter/name", path),
        "energy_kev": get_number(
            f, "/measurement/instrument/monochromator/energy", path, to="keV", default_units="keV"
        ),
        "pixel_size_um": get_number(
            f, "/measurement/instrument/detector/pixel_size_x", path, to="um", default_units="um"
        ),
        "pixel_size_y_um": get_number(
            f,
            "/measurement/instrument/detector/pixel_size_y",
            path,
            to="um",
            default_units="um",
            warn=False,
        ),
        "exposure_s": get_number(
            f, "/measurement/instrument/detector/exposure_time", path, to="s", default_units="s"
        ),
        "shape": [n_angles, n_rows, n_cols],
        "dtype": str(data.dtype),
        "n_angles": n_angles,
        "n_rows": n_rows,
        "n_cols": n_cols,
        "n_flats": int(flats.shape[0]),
        "n_darks": int(darks.shape[0]),
        "theta_min_deg": float(theta.min()),
        "theta_max_deg": float(theta.max()),
    }
    info = DatasetInfo(
        kind=KIND,
        beamline=beamline,
        sample=sample,
        proposal=proposal,
        start_time=start,
        end_time=end,
        title=f"{beamline} tomo scan of {sample}",
        metadata=metadata,
        files=((path, "data"),),
    )
    return info, (data, flats, darks, theta)


def read_tomo_metadata(path) -> DatasetInfo:
    """Read and check the metadata of a Data Exchange tomography file.

    Parameters
    ----------
    path : path-like
        The HDF5 file.

    Returns
    -------
    DatasetInfo

    Raises
    ------
    InputFileError
        When the file is not readable HDF5 or lacks a required field.
    """
    path = check_exists(path)
    with open_hdf5(path) as f:
        info, _ = _read(f, path)
    return info


def open_tomo(path: PathLike, *, chunks: Chunks = None) -> xr.Dataset:
    """Open a Data Exchange tomography scan lazily.

    Parameters
    ----------
    path : path-like
        The HDF5 file (opened read-only; never modified).
    chunks : int or tuple, optional
        Projections per dask chunk (int), or explicit dask chunks for ``data``. Default: a
        few projections (at most 16, about 64 MiB) per chunk.

    Returns
    -------
    xarray.Dataset
        Variables ``data`` (angle, row, col), ``flats`` (flat, row, col) and
        ``darks`` (dark, row, col), dask-backed; coordinates ``theta`` (angle, degrees),
        ``row`` and ``col`` (pixel indices); ``attrs`` hold the metadata of
        :func:`read_metadata` plus ``kind``, ``beamline``, ``sample``, ``proposal``,
        ``start_time``, ``end_time``, ``title`` and ``path``.

    Raises
    ------
    InputFileError
        When the file is not readable HDF5 or fails the Data Exchange checks.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.sim import simulate_tomo_scan
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scan.h5"
    >>> truth = simulate_tomo_scan(path, shape=(31, 4, 32))
    >>> ds = open_tomo(path)
    >>> ds.data.shape
    (31, 4, 32)
    >>> sino = ds.data[:, 2, :].compute()  # one sinogram, read now
    >>> sino.shape
    (31, 32)
    """
    path = check_exists(path)
    with open_hdf5(path) as f:
        info, (data, flats, darks, theta) = _read(f, path)
        frame = tuple(int(s) for s in data.shape[1:])
        darr = lazy_dataset(path, data, normalise_chunks(chunks, data.shape[0], frame, data.dtype))
        farr = lazy_dataset(path, flats, normalise_chunks(None, flats.shape[0], frame, flats.dtype))
        karr = lazy_dataset(path, darks, normalise_chunks(None, darks.shape[0], frame, darks.dtype))
    logger.debug("opened tomo scan %s with shape %s", path, darr.shape)
    ds = xr.Dataset(
        {
            "data": (
                ("angle", "row", "col"),
                darr,
                {"long_name": "projections", "units": "counts"},
            ),
            "flats": (
                ("flat", "row", "col"),
                farr,
                {"long_name": "flat fields", "units": "counts"},
            ),
            "darks": (
                ("dark", "row", "col"),
                karr,
                {"long_name": "dark fields", "units": "counts"},
            ),
        },
        coords={
            "theta": ("angle", theta, {"units": "degrees", "long_name": "rotation angle"}),
            "row": ("row", np.arange(frame[0])),
            "col": ("col", np.arange(frame[1])),
        },
        attrs=_attrs(info),
    )
    return ds


def _attrs(info: DatasetInfo) -> dict:
    attrs = {
        "kind": info.kind,
        "beamline": info.beamline,
        "sample": info.sample,
        "proposal": info.proposal,
        "start_time": info.start_time.isoformat(),
        "end_time": "" if info.end_time is None else info.end_time.isoformat(),
        "title": info.title,
        "path": str(info.files[0][0]),
    }
    attrs.update(info.metadata)
    return attrs


#: datasets that must exist and be non-empty for a Data Exchange scan to be complete
EXPECTED_DATASETS = kinds.raw_layout(kinds.TOMO_RAW).required


class DataExchangeReader(Reader):
    """Data Exchange HDF5 as written at ALS 8.3.2 and APS (``/exchange/data`` ...)."""

    name = "dxchange"
    kind = KIND
    layout = ("Data Exchange HDF5 (/exchange/data, /exchange/data_white, "
              "/exchange/data_dark, /exchange/theta), as written at ALS 8.3.2 and APS")
    suffixes = HDF5_SUFFIXES
    priority = 20

    def sniff(self, path):
        with quiet_hdf5(path) as f:
            if f is None:
                return False
            return "exchange" in f or as_text(f.attrs.get("implements", "")).startswith(
                "exchange")

    def read_metadata(self, path):
        return read_tomo_metadata(path)

    def open(self, path, *, chunks=None):
        return open_tomo(path, chunks=chunks)

    def check_complete(self, path):
        with open_hdf5(path) as f:
            for name in EXPECTED_DATASETS:
                obj = f.get(name)
                if not hasattr(obj, "shape"):
                    return False, f"{path}: dataset /{name} is missing (still being written?)"
                if obj.size == 0:
                    return False, f"{path}: dataset /{name} is empty"
        return super().check_complete(path)
