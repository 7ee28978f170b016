"""The state of the centre-of-rotation finder, in plain Python (no ipywidgets).

:class:`CenterFinderModel` reads the sinogram (an array, or one detector row of a scan on
disk through :func:`spotkit.pipelines.read_sinogram`), reconstructs one slice at each
candidate centre with :func:`spotkit.tomo.center_sweep`, scores them with
:func:`spotkit.tomo.sweep_metric`, compares with :func:`spotkit.tomo.find_center`, and holds
the current candidate and the chosen centre. It also renders what a view shows (the slice
at a centre with one grey range for all centres, the score plot) as PNG bytes, so any view
— the ipywidgets :class:`~spotkit.widgets.CenterFinder`, a test, a web page — is a thin
layer over it. Every number comes from the library functions above.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from spotkit.pipelines import is_scan_source, read_sinogram
from spotkit.tomo import (
    CENTER_METHODS,
    SWEEP_METRICS,
    as_radians,
    center_sweep,
    circular_mask,
    downsample,
    find_center,
    sweep_metric,
)

logger = logging.getLogger(__name__)

__all__ = ["CenterFinderModel", "format_center"]

#: Small slices are enlarged (nearest neighbour) to at least this many pixels.
MIN_DISPLAY_PX = 384
#: Zoom factors a view offers, with their labels.
ZOOMS = (("1×", 1), ("2×", 2), ("4×", 4))


def format_center(center: float) -> str:
    """``1023.5``, ``1024.0``, ``1023.25``: two decimals at most, one at least.

    Examples
    --------
    >>> format_center(1024), format_center(1023.25), format_center(67.456)
    ('1024.0', '1023.25', '67.46')
    """
    text = f"{center:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _png(image: np.ndarray, *, vmin: float, vmax: float, cmap: str) -> bytes:
    from matplotlib.image import imsave

    buf = io.BytesIO()
    imsave(buf, image, vmin=vmin, vmax=vmax, cmap=cmap, format="png")
    return buf.getvalue()


class CenterFinderModel:
    """Candidate centres of rotation, one slice reconstructed at each, and the choice.

    Parameters
    ----------
    source : array_like, Dataset, path-like or xarray.Dataset
        A sinogram ``[angles, columns]`` of line integrals (normalised, after ``-log``), or a
        scan: a catalog ``tomo/raw`` dataset, a raw tomography file, or the
        :class:`xarray.Dataset` of :func:`spotkit.io.open_tomo`. For a scan, detector row
        ``row`` is flat/dark corrected and its angles are used
        (:func:`spotkit.pipelines.read_sinogram`).
    theta : array_like, shape (n_angles,), optional
        Angles in radians (an xarray coordinate with ``units="degrees"`` is converted);
        required with a sinogram, not allowed with a scan.
    centers : array_like of float, optional
        Candidate centres in detector columns (full resolution). Default: the automatic
        estimate rounded to ``step``, plus and minus ``around``.
    center_range : (start, stop, step), optional
        Candidates ``start, start + step, ...`` up to and including ``stop``; instead of
        ``centers``.
    around : float
        Half-width of the default range, in pixels.
    step : float
        Spacing of the default range, in pixels.
    row : int, optional
        Detector row of a scan (default: the middle row).
    metric : {"entropy", "negativity", "sharpness"}
        Score of each slice (see :func:`spotkit.tomo.sweep_metric`).
    center_method : {"pc", "sinusoid", "vo"}
        Method of the automatic estimate (:func:`spotkit.tomo.find_center`).
    binning : int
        Bin the sinogram columns by this factor before reconstructing (for wide detectors).
        Centres stay in full-resolution columns.
    reconstruct : callable, optional
        Passed to :func:`spotkit.tomo.center_sweep` (default: its filtered back-projection).
    roi : (row_start, row_stop, col_start, col_stop), optional
        Part of the slice to show, in slice pixels; the score still uses the whole slice.
    cmap : str
        Matplotlib colour map of the slice.

    Attributes
    ----------
    centers : ndarray
        The candidate centres, sorted.
    sweep : xarray.DataArray
        The slices, dims ``(center, y, x)`` (binned pixels when ``binning > 1``).
    score : xarray.DataArray
        The metric per centre; ``score.attrs["best_center"]`` is the best-scoring one.
    auto_center : float or None
        The automatic estimate (None when it failed for explicit candidates).
    index : int
        The current candidate (starts at the one nearest the automatic estimate).
    value : float or None
        The chosen centre; None until :meth:`select`.
    origin : str
        Where the sinogram came from.
    vmin, vmax : float
        The grey range shared by every slice (1st and 99th percentiles inside the
        reconstruction circle and the ``roi``).

    Raises
    ------
    ValueError
        For an empty or off-detector set of centres, ``theta`` not matching the sinogram,
        an unknown metric or method, or a bad ``step``, ``around``, ``binning``, ``row`` or
        ``roi``.
    TypeError
        For a source that is neither an array nor a scan.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> cols = np.arange(64) + 0.5
    >>> sino = np.exp(-((cols[None, :] - 32 - 10 * np.cos(theta)[:, None]) / 3.0) ** 2)
    >>> model = CenterFinderModel(sino, theta, around=2, step=0.5)
    >>> model.centers.tolist()
    [30.0, 30.5, 31.0, 31.5, 32.0, 32.5, 33.0, 33.5, 34.0]
    >>> model.best_center
    32.0
    >>> model.select(31.8)          # the nearest candidate is chosen
    32.0
    >>> model.slice_png(model.index)[:4]
    b'\\x89PNG'
    """

    def __init__(
        self,
        source,
        theta=None,
        *,
        centers: Sequence[float] | np.ndarray | None = None,
        center_range: tuple[float, float, float] | None = None,
        around: float = 10.0,
        step: float = 0.5,
        row: int | None = None,
        metric: str = "entropy",
        center_method: str = "vo",
        binning: int = 1,
        reconstruct: Callable | None = None,
        roi: tuple[int, int, int, int] | None = None,
        cmap: str = "gray",
    ):
        if metric not in SWEEP_METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {list(SWEEP_METRICS)}")
        if center_method not in CENTER_METHODS:
            raise ValueError(
                f"unknown center_method {center_method!r}; choose one of {list(CENTER_METHODS)}"
            )
        if int(binning) != binning or binning < 1:
            raise ValueError(f"binning must be an integer >= 1, got {binning!r}")
        if centers is not None and center_range is not None:
            raise ValueError("pass either centers or center_range, not both")
        sino, theta, origin = self._read_source(source, theta, row)
        n_cols = sino.shape[1]

        t0 = time.perf_counter()
        auto: float | None
        try:
            auto = float(find_center(sino, theta, method=center_method))
        except ValueError as exc:
            if centers is None and center_range is None:
                raise
            logger.warning("automatic centre (%s) failed: %s", center_method, exc)
            auto = None
        self.auto_center = auto
        self.center_method = center_method
        self.metric = metric
        self.origin = origin
        self.centers = self._candidates(centers, center_range, auto, around, step, n_cols)

        self.binning = int(binning)
        if self.binning > 1:
            sino = downsample(sino, factor=self.binning, axis=1)
        binned = self.centers / self.binning  # tomopy's convention: edges map to edges
        sweep = center_sweep(sino, theta, binned, reconstruct=reconstruct)
        self.sweep = sweep.assign_coords(center=self.centers)
        self.sweep.attrs.update(binning=self.binning, source=origin)
        self.score = sweep_metric(self.sweep, metric=metric)
        logger.info(
            "centre sweep of %s: %d centres %.2f .. %.2f in %.2f s; best %s %.2f, auto %s",
            origin, self.centers.size, self.centers[0], self.centers[-1],
            time.perf_counter() - t0, metric, self.score.attrs["best_center"], auto,
        )

        self.images = np.asarray(self.sweep.values)
        self.roi = self._check_roi(roi, self.images.shape[1:])
        self.cmap = cmap
        self.vmin, self.vmax = self.grey_range()
        self.value: float | None = None
        start = self.best_center if auto is None else auto
        self.index = int(np.argmin(np.abs(self.centers - start)))
        self._png_cache: dict[tuple[int, int], bytes] = {}
        self._callbacks: list[Callable[[float], Any]] = []

    # -- input ---------------------------------------------------------------------------

    @staticmethod
    def _read_source(source, theta, row) -> tuple[np.ndarray, np.ndarray, str]:
        if is_scan_source(source):
            if theta is not None:
                raise ValueError("theta comes from the scan; leave theta out for a scan source")
            return read_sinogram(source, row)
        if row is not None:
            raise ValueError("row applies to a scan source; a sinogram has one row already")
        try:
            sino = np.asarray(source, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"cannot use a {type(source).__name__} as a sinogram; pass a 2-D array, a "
                "catalog Dataset, a Data Exchange path or spotkit.io.open_tomo's result"
            ) from exc
        if sino.ndim != 2 or min(sino.shape) < 2:
            raise ValueError(
                f"sinogram must be 2-D [angles, columns], got shape {sino.shape}; "
                "for a projection stack pass the scan and a row"
            )
        if theta is None:
            raise ValueError("theta (angles in radians) is required with a sinogram")
        theta = as_radians(theta, what="theta")  # an xarray theta in degrees is converted
        if theta.shape != (sino.shape[0],):
            raise ValueError(
                f"theta has shape {theta.shape} but the sinogram has {sino.shape[0]} angles; "
                "theta needs one angle (radians) per sinogram row"
            )
        if not np.isfinite(sino).all():
            raise ValueError("sinogram contains NaN or infinite values; clean it first")
        return sino, theta, "sinogram"

    @staticmethod
    def _candidates(centers, center_range, auto, around, step, n_cols) -> np.ndarray:
        out: np.ndarray
        if centers is not None:
            out = np.atleast_1d(np.asarray(centers, dtype=np.float64))
            if out.ndim != 1 or out.size == 0:
                raise ValueError(f"centers must be a non-empty 1-D sequence, got {centers!r}")
            out = np.unique(out)
        elif center_range is not None:
            if len(center_range) != 3:
                raise ValueError(
                    f"center_range must be (start, stop, step), got {center_range!r}"
                )
            start, stop, rstep = (float(v) for v in center_range)
            if not rstep > 0 or stop < start:
                raise ValueError(
                    f"center_range needs step > 0 and stop >= start, got {center_range!r}"
                )
            out = start + rstep * np.arange(int(np.floor((stop - start) / rstep + 1e-9)) + 1)
        else:
            if not step > 0:
                raise ValueError(f"step must be > 0, got {step}")
            if not around >= 0:
                raise ValueError(f"around must be >= 0, got {around}")
            k = int(np.floor(around / step + 1e-9))
            out = round(auto / step) * step + step * np.arange(-k, k + 1)
            out = out[(out >= 0) & (out <= n_cols - 1)]
            if out.size == 0:
                raise ValueError(
                    f"the automatic centre {auto:.2f} +- around={around} leaves no centre on "
                    f"the detector (0 .. {n_cols - 1}); pass centers or center_range"
                )
        if not np.isfinite(out).all() or out.min() < 0 or out.max() > n_cols - 1:
            raise ValueError(
                f"centers must lie on the detector, 0 .. {n_cols - 1}; got "
                f"{out.min():g} .. {out.max():g}"
            )
        return out

    @staticmethod
    def _check_roi(roi, shape) -> tuple[int, int, int, int]:
        if roi is None:
            return (0, int(shape[0]), 0, int(shape[1]))
        if len(roi) != 4:
            raise ValueError(f"roi must be (row_start, row_stop, col_start, col_stop), got {roi}")
        r0, r1, c0, c1 = (int(v) for v in roi)
        if not (0 <= r0 < r1 <= shape[0] and 0 <= c0 < c1 <= shape[1]):
            raise ValueError(
                f"roi {tuple(roi)} must lie inside the {shape[0]} x {shape[1]} slice with "
                "start < stop"
            )
        return (r0, r1, c0, c1)

    # -- state -----------------------------------------------------------------------------

    @property
    def center(self) -> float:
        """The current candidate (full-resolution columns)."""
        return float(self.centers[self.index])

    @property
    def best_center(self) -> float:
        """The candidate with the best score."""
        return float(self.score.attrs["best_center"])

    def nearest(self, center: float) -> int:
        """Index of the candidate nearest ``center``."""
        return int(np.argmin(np.abs(self.centers - float(center))))

    def go_to(self, center: float | None) -> int:
        """Make the candidate nearest ``center`` the current one (None: stay); its index."""
        if center is not None:
            self.index = self.nearest(center)
        return self.index

    def select(self, center: float | None = None) -> float:
        """Choose a centre: store it in :attr:`value` and call the :meth:`on_select` callbacks.

        Parameters
        ----------
        center : float, optional
            Centre to choose (the nearest candidate becomes current first); default: the
            current one.

        Returns
        -------
        float
            The chosen centre.
        """
        self.go_to(center)
        chosen = self.center
        self.value = chosen
        logger.info("centre of rotation chosen: %.2f", chosen)
        for callback in list(self._callbacks):
            try:
                callback(chosen)
            except Exception:  # one bad callback must not stop the others (as in ipywidgets)
                logger.exception("centre callback %r failed", callback)
        return chosen

    def on_select(self, callback: Callable[[float], object], remove: bool = False) -> None:
        """Register (or with ``remove=True`` unregister) ``callback(center)``.

        It is called each time a centre is chosen, even the same centre again.
        """
        if remove:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
        elif callback not in self._callbacks:
            self._callbacks.append(callback)

    # -- what a view shows -----------------------------------------------------------------

    def label(self, index: int | None = None) -> str:
        """``"centre = 67.5 px · entropy = 5.123"`` for a candidate (default: the current)."""
        i = self.index if index is None else int(index)
        return (f"centre = {format_center(float(self.centers[i]))} px · "
                f"{self.score.attrs['metric']} = {float(self.score.values[i]):.4g}")

    def grey_range(self) -> tuple[float, float]:
        """1st and 99th percentiles of every slice inside the reconstruction circle and roi."""
        ny, nx = self.images.shape[1:]
        inside = circular_mask(np.ones((ny, nx), dtype=bool), ratio=0.95, value=False)
        r0, r1, c0, c1 = self.roi
        window = np.zeros_like(inside)
        window[r0:r1, c0:c1] = True
        pixels = self.images[:, inside & window] if (inside & window).any() else \
            self.images[:, r0:r1, c0:c1]
        lo, hi = np.percentile(pixels, [1, 99])
        if not hi > lo:
            hi = lo + 1.0
        return float(lo), float(hi)

    def view(self, index: int, zoom: int = 1) -> np.ndarray:
        """The part of slice ``index`` shown at ``zoom``: the roi's middle ``1 / zoom``,
        enlarged (nearest neighbour) to at least :data:`MIN_DISPLAY_PX` pixels."""
        r0, r1, c0, c1 = self.roi
        h, w = (r1 - r0) // zoom, (c1 - c0) // zoom
        top, left = r0 + (r1 - r0 - h) // 2, c0 + (c1 - c0 - w) // 2
        view = self.images[index, top:top + max(h, 1), left:left + max(w, 1)]
        scale = max(1, MIN_DISPLAY_PX // max(view.shape))
        if scale > 1:
            view = np.repeat(np.repeat(view, scale, axis=0), scale, axis=1)
        return view

    def slice_png(self, index: int, zoom: int = 1) -> bytes:
        """:meth:`view` as a PNG, in the shared grey range (cached)."""
        key = (int(index), int(zoom))
        if key not in self._png_cache:
            self._png_cache[key] = _png(self.view(*key), vmin=self.vmin, vmax=self.vmax,
                                        cmap=self.cmap)
        return self._png_cache[key]

    def plot_png(self, index: int | None = None) -> bytes:
        """The score against the centre, with the best, automatic and current ones marked."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        i = self.index if index is None else int(index)
        fig = Figure(figsize=(4.2, 2.0), dpi=90, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        scores = np.asarray(self.score.values)
        ax.plot(self.centers, scores, ".-", color="0.35", lw=1, ms=3)
        ax.axvline(self.best_center, color="tab:green", lw=1, label="best")
        if self.auto_center is not None:
            ax.axvline(self.auto_center, color="tab:blue", ls="--", lw=1, label="auto")
        ax.plot(self.centers[i], scores[i], "o", color="tab:red", ms=7, label="current")
        ax.set_xlabel("centre (px)", fontsize=8)
        ax.set_ylabel(self.score.attrs["metric"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best", frameon=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
