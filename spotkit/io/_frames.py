"""Detector frame series through fabio: TIFF, EDF, CBF, HDF5/NeXus, one or many files.

A series is a list of single-frame files (a glob pattern or a list of paths), or one
multi-frame file (multi-frame EDF, an HDF5/NeXus or Eiger master file). It opens as a lazy
dask-backed :class:`xarray.DataArray` ``(frame, y, x)``: every frame is read by fabio when a
computation needs it. Each file's shape and dtype are checked when the series is opened, so
a mixed or empty series fails before any processing, naming the file at fault.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spotkit.errors import InputFileError

if TYPE_CHECKING:
    import xarray as xr

logger = logging.getLogger("spotkit.io")

__all__ = ["FRAME_SUFFIXES", "open_frames"]

#: File types read through fabio (others that fabio knows work too).
FRAME_SUFFIXES = (".cbf", ".edf", ".h5", ".hdf5", ".nxs", ".tif", ".tiff")


def fabio_module():
    """Import fabio, or say which extra installs it."""
    try:
        import fabio
    except ImportError as exc:  # pragma: no cover - fabio is installed in the test env
        raise ImportError(
            'reading detector images needs fabio: pip install "spotkit[scattering]"'
        ) from exc
    return fabio


def _open(spec: str):
    fabio = fabio_module()
    path = spec.split("::", 1)[0]
    if not os.path.isfile(path):
        raise InputFileError(path, "the frame file does not exist.", hint="Check the path.")
    try:
        return fabio.open(spec)
    except Exception as exc:
        raise InputFileError(
            path, f"fabio cannot read it as a detector image ({type(exc).__name__}: {exc}).",
            hint=f"Frames must be one of {', '.join(FRAME_SUFFIXES)} (or another format "
            "fabio reads); check that the transfer completed.") from exc


def _read_frame(spec: str, index: int, n_frames: int) -> np.ndarray:
    img = _open(spec)
    try:
        data = img.data if n_frames == 1 else img.getframe(index).data
        return np.asarray(data)
    finally:
        close = getattr(img, "close", None)
        if close is not None:
            close()


def _expand(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(source, str | os.PathLike):
        text = str(source)
        if any(c in text for c in "*?[") and "::" not in text:
            files = sorted(glob.glob(os.path.expanduser(text)))
            if not files:
                raise InputFileError(text, "no file matches this pattern: the series is empty.",
                                     hint="Check the folder and the pattern (e.g. "
                                     "'run/frame_*.cbf'), or wait for the detector.")
            return files
        return [text]
    files = [str(p) for p in source]
    if not files:
        raise ValueError("the frame series is empty (an empty list of files); pass at least "
                         "one file or a glob pattern")
    return files


def open_frames(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                dataset: str | None = None, chunks: int = 1) -> xr.DataArray:
    """Open a series of detector frames lazily, through fabio.

    Parameters
    ----------
    source : path-like, glob pattern or sequence of paths
        One multi-frame file (EDF, HDF5/NeXus, Eiger master), a pattern such as
        ``"scan/img_*.cbf"`` (files sorted by name), or a list of single-frame files.
    dataset : str, optional
        HDF5 path of the frames in an HDF5/NeXus file (e.g. ``"/entry/data/data"``);
        default: fabio finds the NXdata signal.
    chunks : int
        Frames per dask chunk.

    Returns
    -------
    xarray.DataArray
        ``frames`` with dims ``(frame, y, x)``, dask-backed, the files' dtype; coordinate
        ``file`` (frame) names each frame's file; ``attrs["files"]`` lists them and
        ``attrs["format"]`` is fabio's class name.

    Raises
    ------
    InputFileError
        A file missing or unreadable, a pattern matching nothing, or a file whose frame
        shape or dtype differs from the first file's (named, with both shapes/dtypes).
    ValueError
        An empty list of files, or ``chunks < 1``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.sim import simulate_saxs_series, write_frame_folder
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> truth = simulate_saxs_series(work / "series.h5", n_frames=3, shape=(40, 50),
    ...                              onset_frame=1)
    >>> folder = write_frame_folder(work / "run_0001", work / "series.h5", fmt="tiff")
    >>> frames = open_frames(str(folder / "frame_*.tif*"))  # one file per frame
    >>> frames.shape
    (3, 40, 50)
    >>> frames = open_frames(work / "series.h5", dataset="/entry/data/data")  # HDF5 via fabio
    >>> int(frames[0].max()) > 0
    True
    """
    import dask
    import dask.array as da
    import xarray as xr

    if int(chunks) < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    files = _expand(source)
    entries: list[tuple[str, int, int]] = []  # (spec, index in file, n frames in file)
    shape: tuple[int, int] | None = None
    dtype: np.dtype | None = None
    first = None
    kind = None
    for name in files:
        spec = f"{name}::{dataset}" if dataset and Path(name).suffix.lower() in (
            ".h5", ".hdf5", ".nxs") else name
        img = _open(spec)
        try:
            n = int(getattr(img, "nframes", 1) or 1)
            rows, cols = (int(s) for s in img.shape[-2:])
            fshape = (rows, cols)
            fdtype = np.dtype(img.dtype)
            kind = kind or type(img).__name__
        finally:
            close = getattr(img, "close", None)
            if close is not None:
                close()
        if n < 1:
            raise InputFileError(name, "holds no frames (0 frames).",
                                 hint="Wait until the detector has written frames.")
        if shape is None:
            shape, dtype, first = fshape, fdtype, name
        elif fshape != shape:
            raise InputFileError(
                name, f"its frames are {fshape[0]} x {fshape[1]} pixels but those of {first} "
                f"are {shape[0]} x {shape[1]}: a series must have one frame shape.",
                hint="Remove the stray file from the list or pattern, or open the series "
                "from each detector separately.")
        elif fdtype != dtype:
            raise InputFileError(
                name, f"its frames are {fdtype} but those of {first} are {dtype}: a series "
                "must have one dtype.",
                hint="Remove the stray file (e.g. a processed image among raw frames), or "
                "convert the files to one dtype first.")
        entries.extend((spec, k, n) for k in range(n))
    assert shape is not None  # _expand returns at least one file
    assert dtype is not None
    read = dask.delayed(_read_frame, pure=True)
    lazy = [da.from_delayed(read(spec, k, n), shape=shape, dtype=dtype)
            for spec, k, n in entries]
    arr = da.stack(lazy, axis=0).rechunk((int(chunks), *shape))
    frame_files = np.array([spec.split("::", 1)[0] for spec, _, _ in entries])
    logger.info("opened %d frames of %s %s from %d file(s)", len(entries), shape, dtype,
                len(files))
    return xr.DataArray(
        arr,
        dims=("frame", "y", "x"),
        coords={"file": ("frame", frame_files), "y": np.arange(shape[0]),
                "x": np.arange(shape[1])},
        name="frames",
        attrs={"files": list(files), "format": kind or "", "dtype": str(dtype),
               "shape": [len(entries), *shape], "path": files[0]},
    )
