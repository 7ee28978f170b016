"""Centre-of-rotation sweep: one slice reconstructed at each candidate centre, and a score.

The sweep is an :class:`xarray.DataArray` with dims ``(center, y, x)`` and the candidate
centre as the ``center`` coordinate, so every image carries its centre. :func:`sweep_metric`
scores each image; :func:`plot_sweep` shows them with the centre in each title.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import xarray as xr
from scipy import ndimage

from spotkit.tomo._prep import circular_mask

logger = logging.getLogger(__name__)

__all__ = ["SWEEP_METRICS", "center_sweep", "plot_sweep", "sweep_metric"]

SWEEP_METRICS = ("entropy", "negativity", "sharpness")


def center_sweep(
    sinogram,
    theta,
    centers,
    *,
    reconstruct: Callable | None = None,
    n: int | None = None,
) -> xr.DataArray:
    """Reconstruct one slice at each candidate centre of rotation.

    Parameters
    ----------
    sinogram : array_like, shape (n_angles, n_cols)
        Line integrals of one slice.
    theta : array_like, shape (n_angles,)
        Angles in radians.
    centers : array_like of float
        Candidate centres (tomopy's convention, ``n_cols / 2`` = the middle of the detector).
    reconstruct : callable, optional
        ``reconstruct(sinogram, theta, center, n=n) -> (n, n) array``. Default:
        :func:`spotkit.tomo.reconstruct` (filtered back-projection).
    n : int, optional
        Image size; defaults to ``n_cols``.

    Returns
    -------
    xarray.DataArray
        Dims ``(center, y, x)``; coordinates ``center`` (the candidates) and ``y``, ``x``
        (pixels from the axis, ``i - (n - 1) / 2``); name ``"center_sweep"``.

    Raises
    ------
    ValueError
        For a bad shape, NaN in the data, or no / out-of-range centres.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 60, endpoint=False)
    >>> u = np.arange(32.0)[None]
    >>> sino = np.exp(-0.5 * ((u - 16 - 6 * np.cos(theta)[:, None]) / 2) ** 2)
    >>> sweep = center_sweep(sino, theta, [15.0, 16.0, 17.0])
    >>> sweep.dims, sweep.center.values.tolist()
    (('center', 'y', 'x'), [15.0, 16.0, 17.0])
    """
    sino = np.asarray(sinogram, dtype=np.float32)
    theta = np.asarray(theta, dtype=np.float64)
    if sino.ndim != 2:
        raise ValueError(f"sinogram must be 2-D [angles, columns], got shape {sino.shape}")
    if theta.shape != (sino.shape[0],):
        raise ValueError(
            f"sinogram has {sino.shape[0]} angles but theta has shape {theta.shape}"
        )
    if not np.isfinite(sino).all():
        raise ValueError("sinogram contains NaN or infinite values; clean it first")
    centers = np.atleast_1d(np.asarray(centers, dtype=np.float64))
    n_cols = sino.shape[1]
    if centers.ndim != 1 or centers.size == 0:
        raise ValueError(f"centers must be a non-empty 1-D sequence, got {centers.tolist()}")
    if not (np.isfinite(centers).all() and centers.min() >= 0 and centers.max() <= n_cols):
        raise ValueError(
            f"centers must lie on the detector, 0 .. {n_cols} (tomopy's convention, "
            f"{n_cols / 2:g} = the middle); got {centers.tolist()}"
        )
    n = n_cols if n is None else int(n)
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if reconstruct is None:
        from spotkit.tomo._recon import reconstruct as _default

        def reconstruct(s, t, c, n):
            return _default(s, t, c, n=n)

    images = np.empty((centers.size, n, n), dtype=np.float32)
    for i, c in enumerate(centers):
        img = np.asarray(reconstruct(sino, theta, float(c), n=n))
        if img.shape != (n, n):
            raise ValueError(
                f"reconstruct returned shape {img.shape} for centre {c}; expected {(n, n)}"
            )
        images[i] = img
    logger.debug("centre sweep: %d centres %.2f .. %.2f", centers.size, centers[0], centers[-1])
    coord = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    return xr.DataArray(
        images,
        dims=("center", "y", "x"),
        coords={"center": centers, "y": coord, "x": coord},
        name="center_sweep",
        attrs={"long_name": "slice reconstructed at each candidate centre",
               "units": "1/pixel"},
    )


def sweep_metric(sweep: xr.DataArray, *, metric: str = "entropy", bins: int = 256) -> xr.DataArray:
    """Score each image of a centre sweep; the best centre is in ``attrs["best_center"]``.

    Only the pixels inside the inscribed circle (the region every projection sees) count.

    * ``"entropy"`` (lower is better; Donath et al., JOSA A 23, 1048, 2006): Shannon
      entropy of the grey-value histogram over a range common to all images. A wrong centre
      smears edges into arcs and spreads the histogram.
    * ``"negativity"`` (lower is better): the negative part of the image (smoothed with a
      1.5-pixel Gaussian against noise) relative to its absolute sum; a wrong centre adds
      negative arcs beside every edge.
    * ``"sharpness"`` (higher is better): mean squared gradient magnitude of the smoothed
      image; weaker than the others on noisy data (the noise texture does not depend on
      the centre).

    Parameters
    ----------
    sweep : xarray.DataArray
        From :func:`center_sweep`, dims ``(center, y, x)``.
    metric : {"entropy", "negativity", "sharpness"}
        Score to compute.
    bins : int
        Histogram bins for ``"entropy"``.

    Returns
    -------
    xarray.DataArray
        Dim ``center``; ``attrs``: ``metric``, ``best`` (``"min"`` or ``"max"``) and
        ``best_center``.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 60, endpoint=False)
    >>> u = np.arange(32.0)[None]
    >>> sino = np.exp(-0.5 * ((u - 16 - 6 * np.cos(theta)[:, None]) / 2) ** 2)
    >>> score = sweep_metric(center_sweep(sino, theta, [14.0, 16.0, 18.0]))
    >>> score.attrs["best_center"]
    16.0
    """
    if metric not in SWEEP_METRICS:
        raise ValueError(f"unknown sweep metric {metric!r}; choose one of {list(SWEEP_METRICS)}")
    if not isinstance(sweep, xr.DataArray) or sweep.dims != ("center", "y", "x"):
        raise ValueError(
            "sweep must be an xarray.DataArray with dims ('center', 'y', 'x') from "
            f"center_sweep, got {getattr(sweep, 'dims', type(sweep).__name__)}"
        )
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    imgs = np.asarray(sweep.values, dtype=np.float64)
    ny, nx = imgs.shape[1:]
    inside = circular_mask(np.ones((ny, nx), dtype=bool), ratio=0.95, value=False)
    if metric == "entropy":
        vals = imgs[:, inside]
        lo, hi = np.percentile(vals, [0.1, 99.9])
        if not hi > lo:
            hi = lo + 1.0
        scores = np.empty(imgs.shape[0])
        for i, v in enumerate(vals):
            hist, _ = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
            p = hist[hist > 0] / hist.sum()
            scores[i] = -(p * np.log2(p)).sum()
        best = "min"
    else:
        smooth = ndimage.gaussian_filter(imgs, sigma=(0, 1.5, 1.5))[:, inside]  # against noise
        if metric == "negativity":
            scores = np.clip(-smooth, 0, None).sum(axis=1) / (np.abs(smooth).sum(axis=1) + 1e-30)
            best = "min"
        else:
            full = ndimage.gaussian_filter(imgs, sigma=(0, 1.5, 1.5))
            gy, gx = np.gradient(full, axis=(1, 2))
            scores = (gy**2 + gx**2)[:, inside].mean(axis=1)
            best = "max"
    idx = int(np.argmin(scores) if best == "min" else np.argmax(scores))
    centers = sweep["center"].values
    return xr.DataArray(
        scores,
        dims=("center",),
        coords={"center": centers},
        name=metric,
        attrs={"metric": metric, "best": best, "best_center": float(centers[idx])},
    )


def plot_sweep(sweep: xr.DataArray, ax=None, *, metric: xr.DataArray | None = None, **imshow):
    """Show each image of a centre sweep in its own panel, titled with its centre.

    Parameters
    ----------
    sweep : xarray.DataArray
        From :func:`center_sweep`.
    ax : sequence of matplotlib Axes, optional
        One per centre (a single Axes for a one-centre sweep); default: a new figure with a
        grid of panels.
    metric : xarray.DataArray, optional
        From :func:`sweep_metric`; its value is added to each title and the best centre
        is marked.
    **imshow
        Passed to :meth:`matplotlib.axes.Axes.imshow` (default ``cmap="gray"`` and a grey
        range common to all panels).

    Returns
    -------
    ndarray of Axes
        The panels, in the order of ``sweep.center``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from spotkit.tomo import center_sweep
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> sino = np.ones((90, 64))
    >>> axes = plot_sweep(center_sweep(sino, theta, [31.0, 32.0, 33.0]))
    >>> len(axes)
    3
    """
    import matplotlib.pyplot as plt

    if not isinstance(sweep, xr.DataArray) or sweep.dims != ("center", "y", "x"):
        raise ValueError("sweep must be an xarray.DataArray with dims ('center', 'y', 'x')")
    centers = sweep["center"].values
    k = centers.size
    if ax is None:
        cols = int(np.ceil(np.sqrt(k)))
        rows = int(np.ceil(k / cols))
        _, grid = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
        axes = grid.ravel()
        for extra in axes[k:]:
            extra.set_visible(False)
    else:
        axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
        if axes.size < k:
            raise ValueError(f"need {k} axes for {k} centres, got {axes.size}")
    vals = np.asarray(sweep.values)
    lo, hi = np.percentile(vals, [1, 99])
    opts = {"cmap": "gray", "vmin": lo, "vmax": hi, **imshow}
    best = None if metric is None else metric.attrs.get("best_center")
    for i, c in enumerate(centers):
        a = axes[i]
        a.imshow(vals[i], **opts)
        title = f"center = {c:.2f}"
        if metric is not None:
            title += f"\n{metric.attrs.get('metric', 'score')} {float(metric.values[i]):.4g}"
            if best is not None and c == best:
                title += " (best)"
        a.set_title(title, fontsize=9)
        a.set_axis_off()
    return axes[:k]
