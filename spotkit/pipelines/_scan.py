"""Opening a tomography scan and reading detector rows from it, reading only those rows.

A scan is what :func:`spotkit.io.open_tomo` returns: a lazy (dask-backed) xarray Dataset
with ``data`` (angle, row, col), ``flats``, ``darks`` and ``theta``. A runner is given a
catalog ``tomo/raw`` dataset, a file, or that Dataset itself; :func:`open_scan` takes any
of the three.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from spotkit.io import open_tomo
from spotkit.tomo import as_radians

__all__ = ["is_scan_source", "open_scan", "read_rows", "read_sinogram", "scan_theta"]

def is_scan_source(source: Any) -> bool:
    """Whether ``source`` is a scan (path, catalog dataset or xarray scan), not an array.

    Examples
    --------
    >>> import numpy as np
    >>> is_scan_source("scan.h5"), is_scan_source(np.zeros((3, 4)))
    (True, False)
    """
    return isinstance(source, str | os.PathLike) or (
        hasattr(source, "data_vars") and "data" in source) or (
        hasattr(source, "to_xarray") and hasattr(source, "id"))


def open_scan(source) -> tuple[Any, dict[str, str]]:
    """Open a scan lazily; return it with a record of where it came from.

    Parameters
    ----------
    source : Dataset, path-like or xarray.Dataset
        A catalog ``tomo/raw`` dataset, a raw tomography file (Data Exchange, NXtomo), or
        the :class:`xarray.Dataset` of :func:`spotkit.io.open_tomo`.

    Returns
    -------
    scan : xarray.Dataset
        Lazy ``data``, ``flats``, ``darks`` and ``theta``.
    info : dict
        ``{"path": ...}`` and, for a catalog dataset, ``"dataset_id"`` (for provenance).

    Raises
    ------
    TypeError
        For anything else, naming what can be passed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from spotkit.sim import simulate_tomo_scan
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     truth = simulate_tomo_scan(pathlib.Path(tmp) / "scan.h5", shape=(31, 2, 32))
    ...     scan, info = open_scan(truth.path)
    ...     shape = scan["data"].shape
    >>> shape, sorted(info)
    ((31, 2, 32), ['path'])
    """
    if hasattr(source, "to_xarray") and hasattr(source, "id"):
        return source.to_xarray(), {"dataset_id": source.id, "path": str(source.path)}
    if isinstance(source, str | os.PathLike):
        return open_tomo(source), {"path": str(Path(source).resolve())}
    if hasattr(source, "data_vars") and "data" in source:
        return source, {"path": source.attrs.get("path", "")}
    raise TypeError(
        f"cannot read a scan from {type(source).__name__}; pass a Dataset, a path "
        "or an xarray.Dataset from spotkit.io.open_tomo"
    )


def scan_theta(scan) -> np.ndarray:
    """The scan's angles in radians: ``theta`` as its ``units`` say, degrees without units
    (Data Exchange's convention).

    Raises
    ------
    ValueError
        For units other than degrees or radians, or NaN angles, naming the field.
    """
    theta = scan["theta"]
    if "units" in theta.attrs:
        return as_radians(theta, what="scan theta")
    return np.deg2rad(np.asarray(theta.values, dtype=np.float64))


def read_rows(var, rows, angles: slice | None = None) -> np.ndarray:
    """Detector ``rows`` of a lazy ``(angle, row, col)`` variable, reading only those rows.

    Parameters
    ----------
    var : xarray.DataArray
        Projections, flats or darks from :func:`spotkit.io.open_tomo`.
    rows : slice or sequence of int
        Rows to read, in this order.
    angles : slice, optional
        Frames to read (a slice, e.g. every 4th: ``slice(None, None, 4)``).

    Returns
    -------
    ndarray
        ``(angles, len(rows), cols)``.

    Notes
    -----
    Dask folds a slice into the read of each HDF5 chunk, but a list of rows makes it read
    whole frames and then pick: on a 14 GB scan stored one frame per chunk that is the
    whole file. Lists are therefore read as runs of consecutive rows, one slice each.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> var = xr.DataArray(np.arange(24).reshape(2, 4, 3), dims=("angle", "row", "col"))
    >>> read_rows(var, [3, 1, 2])[0].tolist()
    [[9, 10, 11], [3, 4, 5], [6, 7, 8]]
    """
    sel = {} if angles is None else {var.dims[0]: angles}
    # one isel with both selections: dask folds one getitem into the chunk reads, not two
    if isinstance(rows, slice):
        return var.isel({**sel, "row": rows}).values
    rows = [int(r) for r in rows]
    runs: list[list[int]] = []
    for r in rows:
        if runs and r == runs[-1][-1] + 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    parts = [var.isel({**sel, "row": slice(run[0], run[-1] + 1)}).values for run in runs]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def read_sinogram(source, row: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The flat/dark-corrected ``-log`` sinogram of one detector row of a scan.

    Reads only that row of each frame (:func:`read_rows`), then
    :func:`spotkit.tomo.normalize` and :func:`spotkit.tomo.minus_log`.

    Parameters
    ----------
    source : Dataset, path-like or xarray.Dataset
        The scan (see :func:`open_scan`).
    row : int, optional
        Detector row; default the middle one.

    Returns
    -------
    sinogram : ndarray, float32, shape (angles, columns)
    theta : ndarray
        Angles in radians.
    origin : str
        Where it came from (``"<dataset id or file name>, row <r>"``).

    Raises
    ------
    ValueError
        For a row outside the detector, naming the allowed range.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from spotkit.sim import simulate_tomo_scan
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     truth = simulate_tomo_scan(pathlib.Path(tmp) / "scan.h5", shape=(31, 4, 32))
    ...     sino, theta, origin = read_sinogram(truth.path)
    >>> sino.shape, origin
    ((31, 32), 'scan.h5, row 2')
    """
    from spotkit.tomo import minus_log, normalize

    scan, info = open_scan(source)
    n_rows = scan["data"].shape[1]
    if row is None:
        row = n_rows // 2
    if not 0 <= int(row) < n_rows:
        raise ValueError(f"row must be in 0 .. {n_rows - 1} for this scan, got {row}")
    row = int(row)
    proj = read_rows(scan["data"], [row])  # only this row of each frame
    flats = read_rows(scan["flats"], [row])
    darks = read_rows(scan["darks"], [row])
    sino = minus_log(normalize(proj, flats, darks))[:, 0]
    where = info.get("dataset_id") or os.path.basename(info.get("path") or "") or "scan"
    return sino, scan_theta(scan), f"{where}, row {row}"
