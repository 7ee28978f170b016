"""The fast-preview branch on a scan on disk: read a few rows and two frames, then preview.

:func:`preview_tomo` reads only what a first look needs (a few detector rows at every few
angles, two projections 90 degrees apart, a few flats and darks), hands the arrays to
:func:`spotkit.tomo.preview_from_arrays` and, when asked, draws the result into a PNG file
(:func:`spotkit.io.write_preview_png`). :func:`spotkit.tomo.preview` calls it.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from spotkit.io import write_preview_png
from spotkit.pipelines._scan import open_scan, read_rows, scan_theta
from spotkit.tomo import preview_from_arrays

logger = logging.getLogger(__name__)

__all__ = ["preview_tomo"]


def preview_tomo(
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

    Parameters and result are those of :func:`spotkit.tomo.preview` (which calls this).

    Returns
    -------
    xarray.Dataset
        With also ``seconds_reading``, ``angle_step``, ``sample``, ``source_*`` (where the
        scan came from) and ``png`` (when written).

    Raises
    ------
    ValueError
        For ``binning`` or ``n_slices`` below 1.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from spotkit.sim import simulate_tomo_scan
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     truth = simulate_tomo_scan(pathlib.Path(tmp) / "scan.h5", shape=(90, 8, 64))
    ...     pv = preview_tomo(truth.path, n_slices=2, binning=2, algorithm="fbp",
    ...                       png=pathlib.Path(tmp) / "preview.png")
    ...     written = pathlib.Path(pv.attrs["png"]).stat().st_size > 1000
    >>> pv["radiographs"].shape, written
    ((2, 4, 32), True)
    """
    if binning < 1 or n_slices < 1:
        raise ValueError(f"binning and n_slices must be >= 1, got {binning} and {n_slices}")
    t0 = time.perf_counter()
    scan, info = open_scan(source)
    n_angles, n_rows, _ = scan["data"].shape
    step = angle_step or max(1, binning // 2)
    theta = scan_theta(scan)
    theta_deg = np.rad2deg(theta)
    rows = np.unique(
        np.linspace(0.2 * (n_rows - 1), 0.8 * (n_rows - 1), n_slices).round().astype(int)
    )
    angles = np.arange(0, n_angles, step)
    proj = read_rows(scan["data"], rows, angles=slice(0, None, step))
    flats = read_rows(scan["flats"], rows)
    darks = read_rows(scan["darks"], rows)
    # two radiographs 90 degrees apart: orthogonal views of the sample
    views = [int(np.argmin(abs(theta_deg - theta_deg[0] - d))) for d in (0.0, 90.0)]
    frames = np.concatenate(  # one slice per view: a list would read whole dask chunks
        [scan["data"].isel(angle=slice(v, v + 1)).values for v in views]
    )
    flat = np.median(scan["flats"][: max(1, n_flats)].values, axis=0)
    dark = np.median(scan["darks"][: max(1, n_flats)].values, axis=0)
    t_read = time.perf_counter() - t0
    ds = preview_from_arrays(
        proj, flats, darks, theta[angles], rows=rows, radiographs=frames,
        radiograph_flat=flat, radiograph_dark=dark, view_angles=theta_deg[views],
        binning=binning, center=center, center_method=center_method, algorithm=algorithm,
        pixel_size_um=float(scan.attrs.get("pixel_size_um") or 1.0),
        attrs={"sample": str(scan.attrs.get("sample", "")),
               **{f"source_{k}": v for k, v in info.items()}},
    )
    ds.attrs.update(
        angle_step=step,
        seconds_reading=t_read,
        seconds_to_first_slices=t_read + ds.attrs["seconds_to_first_slices"],
        seconds=time.perf_counter() - t0,
    )
    if png is not None:
        ds.attrs["png"] = str(write_preview_png(ds, png))
    logger.info("preview of %s: read in %.2f s, done in %.2f s", info.get("path"), t_read,
                ds.attrs["seconds"])
    return ds
