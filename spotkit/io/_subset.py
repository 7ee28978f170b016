"""A copy of a frame series that holds only some of its frames (e.g. the frames of interest).

Change detection (:mod:`spotkit.change`) marks which frames of a series matter; what is moved
to an HPC centre or kept on fast storage can then be a subset file written here, with the
same layout as the raw file, so every spotkit reader and notebook takes it as it is. The raw
file is only read.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from spotkit import kinds
from spotkit.errors import InputFileError

from ._eiger import eiger_poni_candidates, is_eiger_master
from ._eiger import read_series as read_eiger_series
from ._eiger import stack as eiger_stack
from ._types import PathLike

__all__ = ["write_frame_subset"]

logger = logging.getLogger(__name__)

DATA_KEY = kinds.raw_layout(kinds.SAXS_RAW).key
INDEX_KEY = "/entry/data/frame_index"
GEOMETRY_KEY = "/entry/instrument/detector/geometry_file"


def _check_frames(frames, n: int, src: Path) -> np.ndarray:
    idx = np.asarray(frames)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"a boolean frame selection must have one value per frame ({n}), "
                             f"got shape {idx.shape}")
        idx = np.flatnonzero(idx)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise ValueError("frames must be a 1-D list of frame indices or a boolean array")
    idx = idx.astype(np.int64)
    if idx.size == 0:
        raise ValueError(f"no frame selected from {src}: nothing to write")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"frame indices must be in 0 .. {n - 1} for {src}, got "
                         f"{int(idx.min())} .. {int(idx.max())}")
    if np.any(np.diff(idx) <= 0):
        raise ValueError("frame indices must be increasing and unique (sort them first)")
    return idx


def write_frame_subset(src: PathLike, dst: PathLike, frames: Sequence[int] | npt.ArrayLike, *,
                       data_key: str = DATA_KEY, overwrite: bool = False,
                       block: int = 16) -> Path:
    """Write a copy of a frame series (NeXus-style HDF5) that holds only ``frames``.

    Every group, dataset and attribute of ``src`` is copied; datasets whose first axis runs
    over the frames (the frames themselves, per-frame timestamps...) keep only the selected
    entries. ``/entry/data/frame_index`` records the original index of each kept frame and
    the root attributes name the source. A relative PONI geometry file is copied beside
    ``dst``. The file appears complete or not at all (temporary name, then rename). A
    Dectris Eiger master (frames in the data files it links) gives one self-contained file:
    the master's groups without the links, the kept frames as ``/entry/data/data``, and the
    series' PONI file (beside the master) copied beside it as ``<dst stem>.poni``.

    Parameters
    ----------
    src : path-like
        The raw series (only read).
    dst : path-like
        The subset file to write.
    frames : sequence of int or array of bool
        Increasing frame indices, or one boolean per frame (e.g. ``ReductionPlan.keep``).
    data_key : str
        The frames dataset (``(frame, row, col)``).
    overwrite : bool
        Replace an existing ``dst``.
    block : int
        Frames copied at a time (memory: ``block`` frames).

    Returns
    -------
    pathlib.Path
        ``dst``.

    Raises
    ------
    InputFileError
        ``src`` is not an HDF5 frame series with ``data_key``.
    ValueError
        Empty, out-of-range or unsorted frame indices.
    FileExistsError
        ``dst`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.io import open_saxs
    >>> from spotkit.sim import simulate_saxs_series
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> truth = simulate_saxs_series(work / "film.h5", n_frames=6, shape=(40, 50),
    ...                              onset_frame=3)
    >>> keep = [0, 3, 4]  # e.g. spotkit.change.reduction_policy(result).keep
    >>> out = write_frame_subset(work / "film.h5", work / "film_kept.h5", keep)
    >>> open_saxs(out).shape
    (3, 40, 50)
    """
    import h5py

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"the subset cannot replace its source {src}")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True to replace it")
    try:
        fin = h5py.File(src, "r")
    except OSError as exc:
        raise InputFileError(src, f"cannot be opened as HDF5 ({exc}).") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        with fin:
            data = fin.get(data_key)
            eiger = None
            if data is None and data_key == DATA_KEY and is_eiger_master(fin, src):
                eiger = read_eiger_series(fin, src.resolve())
                n = eiger.n_frames
            elif not isinstance(data, h5py.Dataset) or data.ndim != 3:
                raise InputFileError(src, "has no 3-D frames dataset (frame, row, col).",
                                     field=data_key, hint="Pass data_key= the frames dataset.")
            else:
                n = int(data.shape[0])
            idx = _check_frames(frames, n, src)
            with h5py.File(tmp, "w") as fout:
                fout.attrs.update(dict(fin.attrs))
                _copy_group(fin, fout, n, idx, block, links=eiger is None)
                if eiger is not None:
                    _write_eiger_frames(eiger, fout, idx, block)
                fout[INDEX_KEY] = idx
                fout[INDEX_KEY].attrs["long_name"] = "index of the frame in the source series"
                fout.attrs["spotkit_subset_of"] = str(src.resolve())
                fout.attrs["spotkit_subset_frames"] = f"{idx.size} of {n}"
            poni = _geometry(fin, src)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if poni is None and eiger is not None:  # beside the master: beside the subset too
        found = next((p for p in eiger_poni_candidates(src) if p.is_file()), None)
        if found is not None and not dst.with_suffix(".poni").exists():
            shutil.copy2(found, dst.with_suffix(".poni"))
    elif poni is not None:
        target = dst.parent / poni.relative_to(src.parent)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(poni, target)
    logger.info("wrote %d of %d frames of %s to %s", idx.size, n, src, dst)
    return dst


def _copy_group(gin, gout, n: int, idx: np.ndarray, block: int, *,
                links: bool = True) -> None:
    """Copy ``gin`` into ``gout``, the per-frame datasets cut to ``idx``; with ``links``
    False, external links are left out (an Eiger master's data files: their frames are
    written as one dataset instead)."""
    import h5py

    for name in gin:
        if not links and isinstance(gin.get(name, getlink=True), h5py.ExternalLink):
            continue
        obj = gin[name]
        if isinstance(obj, h5py.Group):
            sub = gout.create_group(name)
            sub.attrs.update(dict(obj.attrs))
            _copy_group(obj, sub, n, idx, block, links=links)
        elif isinstance(obj, h5py.Dataset) and obj.ndim >= 1 and obj.shape[0] == n:
            out = gout.create_dataset(
                name, shape=(idx.size, *obj.shape[1:]), dtype=obj.dtype,
                chunks=(1, *obj.shape[1:]) if obj.ndim == 3 else None,
                compression=obj.compression, compression_opts=obj.compression_opts)
            out.attrs.update(dict(obj.attrs))
            for start in range(0, idx.size, block):
                sel = idx[start:start + block]
                out[start:start + sel.size] = obj[sel]
        elif isinstance(obj, h5py.Dataset):
            gin.copy(obj, gout, name=name)


def _write_eiger_frames(series, fout, idx: np.ndarray, block: int) -> None:
    """The kept frames of an Eiger series' data files as the subset's one frames dataset
    (``/entry/data/data``, as spotkit's own layout), read ``block`` frames at a time."""
    frames = eiger_stack(series, block)
    out = fout.require_group(DATA_KEY.rsplit("/", 1)[0]).create_dataset(
        DATA_KEY.rsplit("/", 1)[1], shape=(idx.size, *series.frame_shape),
        dtype=series.dtype, chunks=(1, *series.frame_shape))
    out.attrs["signal"] = 1
    for start in range(0, idx.size, block):
        sel = idx[start:start + block]
        out[start:start + sel.size] = np.asarray(frames[sel].compute())


def _geometry(f, src: Path) -> Path | None:
    """The relative PONI file the open series ``f`` names, when it exists beside ``src``."""
    name = f.get(GEOMETRY_KEY)
    if name is None:
        return None
    value = name[()]
    value = value.decode() if isinstance(value, bytes) else str(value)
    path = Path(value)
    if path.is_absolute():
        return None
    path = src.parent / path
    return path if path.is_file() else None
