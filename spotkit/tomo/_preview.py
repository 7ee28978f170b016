"""The fast-preview branch: a first look at a scan within seconds.

:func:`preview` reads only what it needs — a few detector rows (all angles) and two
projections 90 degrees apart — bins them, finds the rotation axis, reconstructs the rows and
returns, as one xarray Dataset, three orthogonal-ish views (the 0° and 90° radiographs and the
axial slices) for the automated flow to send first. :func:`save_preview_png` draws it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["preview", "save_preview_png"]


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
        Also draw the preview into this PNG file.

    Returns
    -------
    xarray.Dataset
        ``slices`` (slice, y, x) in 1/cm, ``radiographs`` (view, v, u) as transmission,
        with attributes ``center`` (full resolution), ``binning``, ``seconds`` and ``png``;
        with 3 slices or more also ``axis_tilted`` (0/1), ``tilt_px_per_row``, ``tilt_deg``
        and ``row_centers`` (the centre found on each previewed row, see
        :func:`spotkit.tomo.detect_tilt`).
    """
    import xarray as xr

    from spotkit.tomo import CenterEstimate, find_center, minus_log, normalize, reconstruct
    from spotkit.tomo._pipeline import _open_source, read_rows

    if binning < 1 or n_slices < 1:
        raise ValueError(f"binning and n_slices must be >= 1, got {binning} and {n_slices}")
    t0 = time.perf_counter()
    scan, info = _open_source(source)
    n_angles, n_rows, _ = scan["data"].shape
    step = angle_step or max(1, binning // 2)
    theta_deg = np.asarray(scan["theta"].values, dtype=np.float64)
    pixel_cm = float(scan.attrs.get("pixel_size_um") or 1.0) * 1e-4

    rows = np.unique(
        np.linspace(0.2 * (n_rows - 1), 0.8 * (n_rows - 1), n_slices).round().astype(int)
    )
    angles = np.arange(0, n_angles, step)
    proj = read_rows(scan["data"], rows, angles=slice(0, None, step))
    flats = read_rows(scan["flats"], rows)
    darks = read_rows(scan["darks"], rows)
    t_read = time.perf_counter() - t0
    sino = minus_log(
        normalize(_bin_last(proj, binning), _bin_last(flats, binning), _bin_last(darks, binning))
    )
    sino = np.ascontiguousarray(np.swapaxes(sino, 0, 1))  # (rows, angles, cols)
    theta = np.deg2rad(theta_deg[angles])

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

    # two radiographs 90 degrees apart: orthogonal views of the sample
    views = [int(np.argmin(abs(theta_deg - theta_deg[0] - d))) for d in (0.0, 90.0)]
    frames = np.concatenate(  # one slice per view: a list would read whole dask chunks
        [scan["data"].isel(angle=slice(v, v + 1)).values for v in views]
    )
    flat = np.median(scan["flats"][: max(1, n_flats)].values, axis=0)
    dark = np.median(scan["darks"][: max(1, n_flats)].values, axis=0)
    radiographs = np.clip(
        normalize(_bin2(frames, binning), _bin2(flat, binning)[None], _bin2(dark, binning)[None]),
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
            "view": theta_deg[views],
            "v": np.arange(radiographs.shape[1]) * binning,
            "u": np.arange(radiographs.shape[2]) * binning,
        },
        attrs={
            "center": float(center),
            "convention": "tomopy",
            **({"center_check": json.dumps(_full_resolution(c_bin, binning))}
               if isinstance(c_bin, CenterEstimate) else {}),
            "binning": binning,
            "angle_step": step,
            "seconds": seconds,
            "seconds_to_first_slices": t_slices,
            "seconds_reading": t_read,
            "sample": str(scan.attrs.get("sample", "")),
            **(tilt or {}),
            **{f"source_{k}": v for k, v in info.items()},
        },
    )
    ds["x"].attrs["units"] = ds["y"].attrs["units"] = "um"
    logger.info(
        "preview: centre %.2f, slices after %.2f s, all views after %.2f s",
        center,
        t_slices,
        seconds,
    )
    if png is not None:
        ds.attrs["png"] = str(save_preview_png(ds, png))
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


def save_preview_png(preview_ds, path: str | os.PathLike, *, dpi: int = 80) -> Path:
    """Draw a preview (radiographs with the slice rows marked, then the slices) into a PNG.

    Parameters
    ----------
    preview_ds : xarray.Dataset
        The result of :func:`preview`.
    path : path-like
        PNG file to write.
    dpi : int
        Resolution.

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.figure import Figure

    path = Path(path)
    n_sl = preview_ds.sizes["slice"]
    fig = Figure(figsize=(3.2 * (2 + n_sl), 3.4))
    axes = fig.subplots(1, 2 + n_sl)
    for ax, view in zip(axes[:2], range(2), strict=True):
        img = preview_ds["radiographs"][view]
        ax.imshow(img, cmap="gray", vmin=0, vmax=1.05, aspect="auto")
        for r in preview_ds["slice"].values:
            ax.axhline(r / preview_ds.attrs["binning"], color="tab:orange", lw=0.8)
        ax.set_title(f"radiograph {float(preview_ds['view'][view]):.0f}°", fontsize=9)
        ax.axis("off")
    sl = preview_ds["slices"].values
    lo, hi = np.percentile(sl, [1, 99.8])
    for ax, k in zip(axes[2:], range(n_sl), strict=True):
        ax.imshow(sl[k], cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(f"row {int(preview_ds['slice'][k])}", fontsize=9)
        ax.axis("off")
    fig.suptitle(
        f"{preview_ds.attrs.get('sample', '')}  centre {preview_ds.attrs['center']:.2f}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
