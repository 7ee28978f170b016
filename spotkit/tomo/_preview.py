"""The fast-preview branch: a first look at a scan within seconds.

:func:`preview_from_arrays` turns a few detector rows (all angles, or every few) and two
projections 90 degrees apart into a binned first look: it finds the rotation axis (and
whether it is tilted), reconstructs the rows and returns, as one xarray Dataset, three
orthogonal-ish views (the 0° and 90° radiographs and the axial slices) for the automated
flow to send first.

:func:`preview` does the same from a scan on disk: reading only what it needs is
orchestration, so it calls the runner that :mod:`spotkit.pipelines` registers
(:func:`spotkit.pipelines.preview_tomo`). Drawing the preview into a PNG file is
:func:`spotkit.io.write_preview_png`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings

import numpy as np

from spotkit._runners import get_runner

logger = logging.getLogger(__name__)

__all__ = ["preview", "preview_from_arrays"]


def _bin_last(arr: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return arr.astype(np.float32)
    n = arr.shape[-1] // factor * factor
    return arr[..., :n].reshape(*arr.shape[:-1], n // factor, factor).mean(-1, dtype=np.float32)


def _bin2(arr: np.ndarray, factor: int) -> np.ndarray:
    out = _bin_last(arr, factor)
    return np.swapaxes(_bin_last(np.swapaxes(out, -1, -2), factor), -1, -2)


def preview(
    source,
    *,
    n_slices: int = 3,
    binning: int = 4,
    angle_step: int | None = None,
    center: float | None = None,
    center_method: str = "vo",
    algorithm: str = "gridrec",
    n_flats: int = 5,
    png: str | os.PathLike | None = None,
):
    """Reconstruct a binned first look at a scan, reading as little as possible.

    Reading the scan (and writing ``png``) is done by the runner that
    :mod:`spotkit.pipelines` registers: this is :func:`spotkit.pipelines.preview_tomo`
    (same parameters); the numbers come from :func:`preview_from_arrays`.

    Parameters
    ----------
    source : Dataset, path-like or xarray.Dataset
        A catalog ``tomo/raw`` dataset, a Data Exchange file or :func:`spotkit.io.open_tomo`'s
        result (read lazily).
    n_slices : int
        Axial slices, evenly spread between 20 % and 80 % of the detector height.
    binning : int
        Detector binning (columns, and rows for the radiographs).
    angle_step : int, optional
        Use every ``angle_step``-th projection (default: ``binning // 2``, at least 1).
    center : float, optional
        Rotation axis in full-resolution columns; found automatically when omitted.
    center_method : str
        Method passed to :func:`spotkit.tomo.find_center` (falls back to ``"sinusoid"`` when
        the method is unavailable).
    algorithm : str
        Reconstruction algorithm (falls back to ``"fbp"`` when unavailable).
    n_flats : int
        Flat and dark frames averaged for the radiographs.
    png : path-like, optional
        Also draw the preview into this PNG file (:func:`spotkit.io.write_preview_png`).

    Returns
    -------
    xarray.Dataset
        ``slices`` (slice, y, x) in 1/cm, ``radiographs`` (view, v, u) as transmission,
        with attributes ``center`` (full resolution), ``binning``, ``seconds`` and ``png``;
        with 3 slices or more also ``axis_tilted`` (0/1), ``tilt_px_per_row``, ``tilt_deg``
        and ``row_centers`` (the centre found on each previewed row, see
        :func:`spotkit.tomo.detect_tilt`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from spotkit.sim import simulate_tomo_scan
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     truth = simulate_tomo_scan(pathlib.Path(tmp) / "scan.h5", shape=(90, 8, 64))
    ...     pv = preview(truth.path, n_slices=2, binning=2, algorithm="fbp")
    >>> pv["slices"].shape, abs(pv.attrs["center"] - truth.center) < 1.5
    ((2, 32, 32), True)
    """
    runner = get_runner("tomo.preview", what="spotkit.tomo.preview")
    return runner(source, n_slices=n_slices, binning=binning, angle_step=angle_step,
                  center=center, center_method=center_method, algorithm=algorithm,
                  n_flats=n_flats, png=png)


def preview_from_arrays(
    proj,
    flats,
    darks,
    theta,
    *,
    rows,
    radiographs,
    radiograph_flat,
    radiograph_dark,
    view_angles,
    binning: int = 4,
    center: float | None = None,
    center_method: str = "vo",
    algorithm: str = "gridrec",
    pixel_size_um: float = 1.0,
    attrs: dict | None = None,
):
    """A binned first look from a few detector rows and two radiographs (arrays in).

    Parameters
    ----------
    proj : ndarray, shape (angles, len(rows), columns)
        Raw projections of the previewed detector rows (all angles, or every few).
    flats, darks : ndarray, shape (frames, len(rows), columns)
        Flat and dark frames of the same rows.
    theta : array_like, shape (angles,)
        Angles of ``proj`` in radians.
    rows : array_like of int
        The detector rows (full resolution), for the coordinates and the tilt fit.
    radiographs : ndarray, shape (2, detector rows, columns)
        Two raw projections about 90 degrees apart.
    radiograph_flat, radiograph_dark : ndarray, shape (detector rows, columns)
        Flat and dark frames for them (e.g. medians of a few).
    view_angles : sequence of float
        Angles of the two radiographs in degrees.
    binning : int
        Detector binning (columns; and rows for the radiographs).
    center : float, optional
        Rotation axis in full-resolution columns; found when omitted.
    center_method, algorithm : str
        As for :func:`preview`, with the same fall-backs.
    pixel_size_um : float
        Detector pixel size, for slices in 1/cm and coordinates in µm.
    attrs : dict, optional
        More attributes for the result (where the data came from).

    Returns
    -------
    xarray.Dataset
        As :func:`preview` returns, with ``seconds`` the time spent here.

    Raises
    ------
    ValueError
        For ``binning`` < 1, no rows, or shapes that disagree.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> u = np.arange(64.0) + 0.5                                    # column centres
    >>> sino = np.exp(-0.5 * ((u - 33 - 9 * np.cos(theta)[:, None]) / 3) ** 2)
    >>> proj = 1000 * np.exp(-np.stack([sino, sino], axis=1))         # two detector rows
    >>> flats, darks = np.full((2, 2, 64), 1000.0), np.zeros((2, 2, 64))
    >>> frames = 1000 * np.exp(-np.repeat(sino[[0, 45]][:, None], 16, axis=1))
    >>> pv = preview_from_arrays(proj, flats, darks, theta, rows=[5, 10], radiographs=frames,
    ...                          radiograph_flat=np.full((16, 64), 1000.0),
    ...                          radiograph_dark=np.zeros((16, 64)), view_angles=[0, 90],
    ...                          binning=2, algorithm="fbp")
    >>> pv["slices"].shape, pv["radiographs"].shape, abs(pv.attrs["center"] - 33) < 1
    ((2, 32, 32), (2, 8, 32), True)
    """
    import xarray as xr

    from spotkit.tomo import CenterEstimate, find_center, minus_log, normalize, reconstruct

    if binning < 1:
        raise ValueError(f"binning must be >= 1, got {binning}")
    rows = np.asarray(rows, dtype=int).ravel()
    proj = np.asarray(proj)
    theta = np.asarray(theta, dtype=np.float64)
    if rows.size < 1 or proj.ndim != 3 or proj.shape[1] != rows.size:
        raise ValueError(f"proj must be (angles, {rows.size} rows, columns) for rows "
                         f"{rows.tolist()}, got shape {proj.shape}")
    if theta.shape != (proj.shape[0],):
        raise ValueError(f"theta has {theta.size} angles but proj has {proj.shape[0]}")
    t0 = time.perf_counter()
    pixel_cm = float(pixel_size_um) * 1e-4
    sino = minus_log(
        normalize(_bin_last(proj, binning), _bin_last(np.asarray(flats), binning),
                  _bin_last(np.asarray(darks), binning))
    )
    sino = np.ascontiguousarray(np.swapaxes(sino, 0, 1))  # (rows, angles, cols)

    c_bin: float  # a CenterEstimate (a float) when found here
    if center is None:
        try:
            c_bin = find_center(sino, theta, method=center_method)
        except ValueError as exc:
            if "unknown" not in str(exc):
                raise
            logger.info("centre method %r unavailable; using 'sinusoid'", center_method)
            c_bin = find_center(sino, theta, method="sinusoid")
        center = float(c_bin) * binning  # tomopy's convention: edges map to edges
    else:
        c_bin = float(center) / binning
    tilt = _tilt(sino, theta, rows, binning, center_method)
    try:
        slices = reconstruct(sino, theta, c_bin, algorithm=algorithm)
    except ValueError as exc:
        if "unknown algorithm" not in str(exc):
            raise
        slices = reconstruct(sino, theta, c_bin, algorithm="fbp")
    slices = slices / (pixel_cm * binning)
    t_slices = time.perf_counter() - t0

    views = np.asarray(view_angles, dtype=np.float64)
    frames = np.asarray(radiographs)
    radiographs = np.clip(
        normalize(_bin2(frames, binning), _bin2(np.asarray(radiograph_flat), binning)[None],
                  _bin2(np.asarray(radiograph_dark), binning)[None]),
        0,
        2,
    )
    seconds = time.perf_counter() - t0

    n_out = slices.shape[-1]
    coord = (np.arange(n_out) - (n_out - 1) / 2) * pixel_cm * binning * 1e4
    ds = xr.Dataset(
        {
            "slices": (("slice", "y", "x"), slices.astype(np.float32), {"units": "1/cm"}),
            "radiographs": (
                ("view", "v", "u"),
                radiographs.astype(np.float32),
                {"units": "transmission"},
            ),
        },
        coords={
            "slice": rows,
            "x": coord,
            "y": coord,
            "view": views,
            "v": np.arange(radiographs.shape[1]) * binning,
            "u": np.arange(radiographs.shape[2]) * binning,
        },
        attrs={
            "center": float(center),
            "convention": "tomopy",
            **({"center_check": json.dumps(_full_resolution(c_bin, binning))}
               if isinstance(c_bin, CenterEstimate) else {}),
            "binning": binning,
            "seconds": seconds,
            "seconds_to_first_slices": t_slices,
            **(tilt or {}),
            **(attrs or {}),
        },
    )
    ds["x"].attrs["units"] = ds["y"].attrs["units"] = "um"
    logger.info("preview: centre %.2f, slices after %.2f s, all views after %.2f s",
                center, t_slices, seconds)
    return ds


def _full_resolution(estimate, binning: int) -> dict:
    """A binned :class:`~spotkit.tomo.CenterEstimate` as a record on the full detector."""
    record = estimate.to_dict()
    record["center"] = float(estimate) * binning
    if record["check_center"] is not None:
        record["check_center"] *= binning
    return record


def _tilt(sino, theta, rows, binning: int, method: str) -> dict | None:
    """Centre per previewed row and a tilt fit: ``axis_tilted``, slope, per-row centres.

    Needs 3 rows or more; a method that fails on a row (no sample there) leaves it out.
    """
    from spotkit.tomo import CenterWarning, detect_tilt, find_center

    if sino.shape[0] < 3:
        return None
    centers = np.full(sino.shape[0], np.nan)
    for i, s in enumerate(sino):
        try:
            with warnings.catch_warnings():  # a row may hold little sample: judged by the fit
                warnings.simplefilter("ignore", CenterWarning)
                centers[i] = find_center(s, theta, method=method, check=False) * binning
        except ValueError:
            continue
    try:
        fit = detect_tilt(np.asarray(rows, dtype=float), centers)
    except ValueError:
        return None
    return {
        "axis_tilted": int(fit.tilted),
        "tilt_px_per_row": float(fit.slope_px_per_row),
        "tilt_deg": float(fit.tilt_deg),
        "row_centers": centers.tolist(),
    }
