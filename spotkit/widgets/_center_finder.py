"""Pick the centre of rotation by eye: a JupyterLab widget over a centre sweep.

:class:`CenterFinder` is the ipywidgets view of a :class:`CenterFinderModel`: a slider over
the candidate centres, the slice at the current centre (one grey range for all centres, so
only the centre changes what you see), the score against the centre, the automatic
estimate for comparison, and a "Use this centre" button that sets
:attr:`CenterFinder.value`. The view holds no science and no state of its own beyond the
widgets: every number comes from the model, which calls the library.

ipywidgets is an optional dependency (``pip install "spotkit[lab]"``); this module is
imported only when :class:`CenterFinder` is first used.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import numpy as np

try:
    import ipywidgets as widgets
    import traitlets
except ImportError as exc:  # pragma: no cover - exercised only without the lab extra
    raise ImportError(
        'spotkit.widgets.CenterFinder needs ipywidgets; install it with pip install '
        '"spotkit[lab]"'
    ) from exc

from spotkit.widgets._center_finder_model import ZOOMS, CenterFinderModel, format_center

__all__ = ["CenterFinder"]


class CenterFinder(widgets.VBox):
    """Choose the centre of rotation by looking at one slice reconstructed at each candidate.

    A slider moves over the candidate centres; the slice at the current centre is shown with
    a grey range common to all candidates, next to the sweep score
    (:func:`spotkit.tomo.sweep_metric`) against the centre, with the current centre, the
    best-scoring one and the automatic estimate (:func:`spotkit.tomo.find_center`) marked.
    "Use this centre" stores the current centre in :attr:`value` (an observable trait) and
    calls the callbacks registered with :meth:`on_select`.

    Parameters
    ----------
    source, theta, centers, center_range, around, step, row, metric, center_method, binning, \
reconstruct, roi, cmap
        As for :class:`~spotkit.widgets.CenterFinderModel`, which does the work: ``source``
        is a sinogram ``[angles, columns]`` (with ``theta`` in radians) or a scan (a catalog
        ``tomo/raw`` dataset, a raw file, or :func:`spotkit.io.open_tomo`'s result, with a
        detector ``row``).

    Attributes
    ----------
    model : CenterFinderModel
        The state: candidates, slices, scores, current and chosen centre.
    value : float or None
        The chosen centre (full-resolution columns); None until a centre is chosen.
        Observe it with ``finder.observe(handler, names="value")``.
    centers, sweep, score, auto_center, binning
        The model's (see :class:`~spotkit.widgets.CenterFinderModel`).
    slider, image, plot, label, info, zoom, use_button, best_button, auto_button, \
chosen_label : ipywidgets widgets
        The parts, for notebooks and tests to drive.

    Raises
    ------
    ValueError, TypeError
        As :class:`~spotkit.widgets.CenterFinderModel`.

    Examples
    --------
    Make it the last line of a cell to display it in JupyterLab:

    >>> import numpy as np
    >>> from spotkit.widgets import CenterFinder
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> cols = np.arange(64)
    >>> sino = np.exp(-((cols[None, :] - 32 - 10 * np.cos(theta)[:, None]) / 3.0) ** 2)
    >>> finder = CenterFinder(sino, theta, around=2, step=0.5)
    >>> finder.on_select(lambda c: print("centre", c))
    >>> finder.value is None  # set by "Use this centre"
    True
    >>> finder.use_button.click()
    centre 32.5
    >>> finder.value
    32.5
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
        model = CenterFinderModel(
            source, theta, centers=centers, center_range=center_range, around=around,
            step=step, row=row, metric=metric, center_method=center_method, binning=binning,
            reconstruct=reconstruct, roi=roi, cmap=cmap,
        )
        self.model = model
        model.on_select(self._chosen)  # first: the trait and label before user callbacks
        super().__init__(self._build_widgets())
        self.add_class("spotkit-center-finder")
        self._refresh()

    # -- the model's state, as attributes of the widget -------------------------------------

    @property
    def centers(self) -> np.ndarray:
        return self.model.centers

    @property
    def sweep(self):
        return self.model.sweep

    @property
    def score(self):
        return self.model.score

    @property
    def auto_center(self) -> float | None:
        return self.model.auto_center

    @property
    def center_method(self) -> str:
        return self.model.center_method

    @property
    def binning(self) -> int:
        return self.model.binning

    @property
    def center(self) -> float:
        """The centre under the slider (full-resolution columns); set it to move the slider."""
        return self.model.center

    @center.setter
    def center(self, value: float) -> None:
        self._go_to(value)

    @property
    def best_center(self) -> float:
        """The candidate with the best score."""
        return self.model.best_center

    @property
    def _vmin(self) -> float:
        return self.model.vmin

    @property
    def _vmax(self) -> float:
        return self.model.vmax

    def _grey_range(self) -> tuple[float, float]:
        return self.model.grey_range()

    def _view(self, index: int, zoom: int) -> np.ndarray:
        return self.model.view(index, zoom)

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
        self._go_to(center)
        return self.model.select()

    def on_select(self, callback: Callable[[float], object], remove: bool = False) -> None:
        """Register (or with ``remove=True`` unregister) ``callback(center)``.

        It is called each time a centre is chosen, even when the same centre is chosen
        again (the :attr:`value` trait notifies only on a change).
        """
        self.model.on_select(callback, remove=remove)

    # -- display ---------------------------------------------------------------------------

    def _chosen(self, center: float) -> None:
        self.value = center
        self.chosen_label.value = f"chosen: {format_center(center)} px"

    def _build_widgets(self) -> list:
        """Create the parts and wire them; return the children of the finder."""
        model = self.model
        auto, best, metric = model.auto_center, model.best_center, model.metric
        self.slider = widgets.SelectionSlider(
            options=[(format_center(c), float(c)) for c in model.centers],
            index=model.index,
            description="centre (px)",
            continuous_update=False,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="98%"),
        )
        self.slider.add_class("spotkit-cf-slider")
        self.zoom = widgets.ToggleButtons(
            options=ZOOMS, value=1, description="zoom",
            style={"button_width": "4em", "description_width": "initial"},
        )
        self.image = widgets.Image(format="png")
        self.image.add_class("spotkit-cf-image")
        self.plot = widgets.Image(format="png")
        self.plot.add_class("spotkit-cf-plot")
        self.label = widgets.Label()
        self.label.add_class("spotkit-cf-label")
        auto_text = "failed" if auto is None else f"{format_center(round(auto, 2))} px"
        self.info = widgets.HTML(
            f"auto ({model.center_method}): <b>{auto_text}</b> &middot; best {metric} "
            f"({'lower' if model.score.attrs['best'] == 'min' else 'higher'} is better): "
            f"<b>{format_center(best)} px</b> &middot; {html.escape(model.origin)}"
        )
        self.use_button = widgets.Button(
            description="Use this centre", button_style="success", icon="check",
            tooltip="store the current centre in .value",
        )
        self.use_button.add_class("spotkit-cf-use")
        self.best_button = widgets.Button(description="Go to best", tooltip=f"best {metric}")
        self.auto_button = widgets.Button(
            description="Go to auto", disabled=auto is None,
            tooltip=f"find_center(method={model.center_method!r})",
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
        if center is not None:
            self.slider.index = self.model.nearest(center)  # _refresh follows the slider

    def _refresh(self, change=None) -> None:
        index = self.model.index = int(self.slider.index)
        self.label.value = self.model.label(index)
        self.image.value = self.model.slice_png(index, int(self.zoom.value))
        self.plot.value = self.model.plot_png(index)
