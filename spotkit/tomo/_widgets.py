"""Pick the centre of rotation by eye: a JupyterLab widget over a centre sweep.

:class:`CenterFinder` reconstructs one slice at each candidate centre with
:func:`spotkit.tomo.center_sweep`, scores the images with :func:`spotkit.tomo.sweep_metric`
and shows a slider over the candidates, the slice at the current centre (one grey range for
all centres, so only the centre changes what you see), the score against the centre, the
automatic estimate for comparison, and a "Use this centre" button that sets
:attr:`CenterFinder.value`.

The widget holds no science of its own: every number comes from the library functions above.
ipywidgets is an optional dependency (``pip install "spotkit[lab]"``); this module is imported
only when :class:`CenterFinder` is first used.
"""

from __future__ import annotations

import html
import io
import logging
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

try:
    import ipywidgets as widgets
    import traitlets
except ImportError as exc:  # pragma: no cover - exercised only without the lab extra
    raise ImportError(
        'spotkit.tomo.CenterFinder needs ipywidgets; install it with pip install "spotkit[lab]"'
    ) from exc

from spotkit.tomo._center import CENTER_METHODS, find_center
from spotkit.tomo._sweep import SWEEP_METRICS, center_sweep, sweep_metric

logger = logging.getLogger(__name__)

__all__ = ["CenterFinder"]

_MIN_DISPLAY_PX = 384  # small slices are enlarged (nearest neighbour) to at least this size
_ZOOMS = (("1×", 1), ("2×", 2), ("4×", 4))


def _fmt(center: float) -> str:
    """``1023.5``, ``1024.0``, ``1023.25``: two decimals at most, one at least."""
    text = f"{center:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _png(image: np.ndarray, *, vmin: float, vmax: float, cmap: str) -> bytes:
    from matplotlib.image import imsave

    buf = io.BytesIO()
    imsave(buf, image, vmin=vmin, vmax=vmax, cmap=cmap, format="png")
    return buf.getvalue()


def _sinogram_from_scan(source, row: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Normalised ``-log`` sinogram of one detector row of a scan, theta in radians."""
    from spotkit.tomo._pipeline import _open_source, read_rows
    from spotkit.tomo._prep import minus_log, normalize

    scan, info = _open_source(source)
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
    theta = np.deg2rad(np.asarray(scan["theta"].values, dtype=np.float64))
    where = info.get("dataset_id") or os.path.basename(info.get("path") or "") or "scan"
    return sino, theta, f"{where}, row {row}"


class CenterFinder(widgets.VBox):
    """Choose the centre of rotation by looking at one slice reconstructed at each candidate.

    A slider moves over the candidate centres; the slice at the current centre is shown with
    a grey range common to all candidates, next to the sweep score (:func:`sweep_metric`)
    against the centre, with the current centre, the best-scoring one and the automatic
    estimate (:func:`find_center`) marked. "Use this centre" stores the current centre in
    :attr:`value` (an observable trait) and calls the callbacks registered with
    :meth:`on_select`.

    Parameters
    ----------
    source : array_like, Dataset, path-like or xarray.Dataset
        A sinogram ``[angles, columns]`` of line integrals (normalised, after ``-log``), or a
        scan: a catalog ``tomo/raw`` dataset, a Data Exchange file, or the
        :class:`xarray.Dataset` of :func:`spotkit.io.open_tomo`. For a scan, detector row
        ``row`` is flat/dark corrected (:func:`spotkit.tomo.normalize`,
        :func:`spotkit.tomo.minus_log`) and its angles are used.
    theta : array_like, shape (n_angles,), optional
        Angles in radians; required with a sinogram, not allowed with a scan.
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
        Score shown against the centre (see :func:`sweep_metric`).
    center_method : {"pc", "sinusoid", "vo"}
        Method of the automatic estimate (:func:`find_center`).
    binning : int
        Bin the sinogram columns by this factor before reconstructing (for wide detectors:
        a 2560-column sweep of 40 centres holds 1 GB of slices unbinned). Centres stay in
        full-resolution columns.
    reconstruct : callable, optional
        Passed to :func:`center_sweep` (default: its filtered back-projection).
    roi : (row_start, row_stop, col_start, col_stop), optional
        Part of the slice to show, in slice pixels; the score still uses the whole slice.
    cmap : str
        Matplotlib colour map of the slice.

    Attributes
    ----------
    value : float or None
        The chosen centre (full-resolution columns); None until a centre is chosen.
        Observe it with ``finder.observe(handler, names="value")``.
    centers : ndarray
        The candidate centres.
    sweep : xarray.DataArray
        The slices, dims ``(center, y, x)`` (binned pixels when ``binning > 1``).
    score : xarray.DataArray
        The metric per centre; ``score.attrs["best_center"]`` is the best-scoring one.
    auto_center : float or None
        The automatic estimate (None when it failed for explicit candidates).
    slider, image, plot, label, use_button : ipywidgets widgets
        The parts, for notebooks and tests to drive.

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
    >>> from spotkit.tomo import CenterFinder
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> cols = np.arange(64)
    >>> sino = np.exp(-((cols[None, :] - 32 - 10 * np.cos(theta)[:, None]) / 3.0) ** 2)
    >>> finder = CenterFinder(sino, theta, around=2, step=0.5)
    >>> finder  # displays the widget in JupyterLab  # doctest: +SKIP
    >>> finder.on_select(lambda c: print("centre", c))
    >>> finder.value is None  # set by "Use this centre"
    True
    """

    value = traitlets.Float(None, allow_none=True, help="the chosen centre of rotation")

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
        try:
            auto = float(find_center(sino, theta, method=center_method))
        except ValueError as exc:
            if centers is None and center_range is None:
                raise
            logger.warning("automatic centre (%s) failed: %s", center_method, exc)
            auto = None
        self.auto_center = auto
        self.center_method = center_method
        self.centers = self._candidates(centers, center_range, auto, around, step, n_cols)

        binning = int(binning)
        if binning > 1:
            from spotkit.tomo._prep import downsample

            sino = downsample(sino, factor=binning, axis=1)
        binned = self.centers / binning  # tomopy's convention: edges map to edges
        sweep = center_sweep(sino, theta, binned, reconstruct=reconstruct)
        self.sweep = sweep.assign_coords(center=self.centers)
        self.sweep.attrs.update(binning=binning, source=origin)
        self.score = sweep_metric(self.sweep, metric=metric)
        self.binning = binning
        logger.info(
            "centre sweep of %s: %d centres %.2f .. %.2f in %.2f s; best %s %.2f, auto %s",
            origin, self.centers.size, self.centers[0], self.centers[-1],
            time.perf_counter() - t0, metric, self.score.attrs["best_center"], auto,
        )

        self._images = np.asarray(self.sweep.values)
        self._roi = self._check_roi(roi, self._images.shape[1:])
        self._cmap = cmap
        self._vmin, self._vmax = self._grey_range()
        self._png_cache: dict[tuple[int, int], bytes] = {}
        self._select_callbacks = widgets.CallbackDispatcher()

        super().__init__(self._build_widgets(metric, origin))
        self.add_class("spotkit-center-finder")
        self._refresh()

    # -- input ---------------------------------------------------------------------------

    @staticmethod
    def _read_source(source, theta, row):
        if isinstance(source, str | os.PathLike) or hasattr(source, "data_vars") or (
            hasattr(source, "to_xarray") and hasattr(source, "id")
        ):
            if theta is not None:
                raise ValueError("theta comes from the scan; leave theta out for a scan source")
            return _sinogram_from_scan(source, row)
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
        from spotkit.tomo._angles import as_radians

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
    def _check_roi(roi, shape):
        if roi is None:
            return (0, shape[0], 0, shape[1])
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
        """The centre under the slider (full-resolution columns); set it to move the slider."""
        return float(self.centers[self.slider.index])

    @center.setter
    def center(self, value: float) -> None:
        self._go_to(value)

    @property
    def best_center(self) -> float:
        """The candidate with the best score."""
        return float(self.score.attrs["best_center"])

    def select(self, center: float | None = None) -> float:
        """Choose a centre: store it in :attr:`value` and call the :meth:`on_select` callbacks.

        Parameters
        ----------
        center : float, optional
            Centre to choose (the slider moves to the nearest candidate first); default: the
            one under the slider. This is what "Use this centre" does.

        Returns
        -------
        float
            The chosen centre.
        """
        if center is not None:
            self._go_to(center)
        chosen = self.center
        self.value = chosen
        self.chosen_label.value = f"chosen: {_fmt(chosen)} px"
        logger.info("centre of rotation chosen: %.2f", chosen)
        self._select_callbacks(chosen)
        return chosen

    def on_select(self, callback: Callable[[float], object], remove: bool = False) -> None:
        """Register (or with ``remove=True`` unregister) ``callback(center)``.

        It is called each time a centre is chosen, even when the same centre is chosen
        again (the :attr:`value` trait notifies only on a change).
        """
        self._select_callbacks.register_callback(callback, remove=remove)

    # -- display ---------------------------------------------------------------------------

    def _build_widgets(self, metric: str, origin: str) -> list:
        """Create the parts and wire them; return the children of the finder."""
        auto, best = self.auto_center, self.best_center
        start = int(np.argmin(np.abs(self.centers - (best if auto is None else auto))))
        self.slider = widgets.SelectionSlider(
            options=[(_fmt(c), float(c)) for c in self.centers],
            index=start,
            description="centre (px)",
            continuous_update=False,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="98%"),
        )
        self.slider.add_class("spotkit-cf-slider")
        self.zoom = widgets.ToggleButtons(
            options=_ZOOMS, value=1, description="zoom",
            style={"button_width": "4em", "description_width": "initial"},
        )
        self.image = widgets.Image(format="png")
        self.image.add_class("spotkit-cf-image")
        self.plot = widgets.Image(format="png")
        self.plot.add_class("spotkit-cf-plot")
        self.label = widgets.Label()
        self.label.add_class("spotkit-cf-label")
        auto_text = "failed" if auto is None else f"{_fmt(round(auto, 2))} px"
        self.info = widgets.HTML(
            f"auto ({self.center_method}): <b>{auto_text}</b> &middot; best {metric} "
            f"({'lower' if self.score.attrs['best'] == 'min' else 'higher'} is better): "
            f"<b>{_fmt(best)} px</b> &middot; {html.escape(origin)}"
        )
        self.use_button = widgets.Button(
            description="Use this centre", button_style="success", icon="check",
            tooltip="store the current centre in .value",
        )
        self.use_button.add_class("spotkit-cf-use")
        self.best_button = widgets.Button(description="Go to best", tooltip=f"best {metric}")
        self.auto_button = widgets.Button(
            description="Go to auto", disabled=auto is None,
            tooltip=f"find_center(method={self.center_method!r})",
        )
        self.chosen_label = widgets.Label("chosen: none yet")
        self.chosen_label.add_class("spotkit-cf-chosen")

        self.slider.observe(self._refresh, names="index")
        self.zoom.observe(self._refresh, names="value")
        self.use_button.on_click(lambda _: self.select())
        self.best_button.on_click(lambda _: self._go_to(best))
        self.auto_button.on_click(lambda _: self._go_to(auto))

        side = widgets.VBox(
            [self.label, self.plot, self.info, self.zoom,
             widgets.HBox([self.use_button, self.best_button, self.auto_button]),
             self.chosen_label],
            layout=widgets.Layout(padding="0 0 0 1em"),
        )
        return [widgets.HBox([self.image, side]), self.slider]

    def _go_to(self, center: float | None) -> None:
        if center is None:
            return
        self.slider.index = int(np.argmin(np.abs(self.centers - float(center))))

    def _grey_range(self) -> tuple[float, float]:
        from spotkit.tomo._prep import circular_mask

        ny, nx = self._images.shape[1:]
        inside = circular_mask(np.ones((ny, nx), dtype=bool), ratio=0.95, value=False)
        r0, r1, c0, c1 = self._roi
        window = np.zeros_like(inside)
        window[r0:r1, c0:c1] = True
        pixels = self._images[:, inside & window] if (inside & window).any() else \
            self._images[:, r0:r1, c0:c1]
        lo, hi = np.percentile(pixels, [1, 99])
        if not hi > lo:
            hi = lo + 1.0
        return float(lo), float(hi)

    def _view(self, index: int, zoom: int) -> np.ndarray:
        r0, r1, c0, c1 = self._roi
        h, w = (r1 - r0) // zoom, (c1 - c0) // zoom
        top, left = r0 + (r1 - r0 - h) // 2, c0 + (c1 - c0 - w) // 2
        view = self._images[index, top:top + max(h, 1), left:left + max(w, 1)]
        scale = max(1, _MIN_DISPLAY_PX // max(view.shape))
        if scale > 1:
            view = np.repeat(np.repeat(view, scale, axis=0), scale, axis=1)
        return view

    def _slice_png(self, index: int) -> bytes:
        key = (index, int(self.zoom.value))
        if key not in self._png_cache:
            self._png_cache[key] = _png(self._view(*key), vmin=self._vmin, vmax=self._vmax,
                                        cmap=self._cmap)
        return self._png_cache[key]

    def _plot_png(self, index: int) -> bytes:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.2, 2.0), dpi=90, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        scores = np.asarray(self.score.values)
        ax.plot(self.centers, scores, ".-", color="0.35", lw=1, ms=3)
        ax.axvline(self.best_center, color="tab:green", lw=1, label="best")
        if self.auto_center is not None:
            ax.axvline(self.auto_center, color="tab:blue", ls="--", lw=1, label="auto")
        ax.plot(self.centers[index], scores[index], "o", color="tab:red", ms=7, label="current")
        ax.set_xlabel("centre (px)", fontsize=8)
        ax.set_ylabel(self.score.attrs["metric"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best", frameon=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()

    def _refresh(self, change=None) -> None:
        index = int(self.slider.index)
        c = float(self.centers[index])
        self.label.value = (
            f"centre = {_fmt(c)} px · {self.score.attrs['metric']} = "
            f"{float(self.score.values[index]):.4g}"
        )
        self.image.value = self._slice_png(index)
        self.plot.value = self._plot_png(index)
