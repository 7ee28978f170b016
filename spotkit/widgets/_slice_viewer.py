"""Look through a volume or a raw scan: three orthogonal planes, in JupyterLab.

:class:`SliceViewer` is the ipywidgets view of a :class:`SliceViewerModel`: one pane per axis
(the plane through the cursor, a slider along that axis, its position in physical units),
a colour map, a grey range with "Auto" (percentiles of the shown plane), and a zoom. A
slider move shows the coarse pyramid level at once and then the level that fills the display,
read in a background thread (a newer move supersedes an older one); the image sent to the
browser is never larger than the display. Every number comes from the model.

ipywidgets is an optional dependency (``pip install "spotkit[lab]"``).
"""

from __future__ import annotations

import html
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from spotkit.widgets._slice_viewer_model import ZOOMS, Rendered, SliceViewerModel

logger = logging.getLogger(__name__)

__all__ = ["SliceViewer", "SliceViewerModel"]


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError('spotkit.widgets.SliceViewer needs ipywidgets; install it with pip '
                          'install "spotkit[lab]" (SliceViewerModel works without it)') from exc
    return ipywidgets


class SliceViewer:
    """Three orthogonal planes through a volume or scan, with contrast, colours and zoom.

    Parameters
    ----------
    source : path-like, array-like, catalog Dataset, Volume or SliceViewerModel
        What :class:`SliceViewerModel` opens (or a model made already).
    background : bool
        Read the full-resolution image in a background thread after showing the coarse one
        (False: both in the caller's thread, e.g. in tests and for static notebooks).
    pane_size : int
        Pixels of each pane on screen (the model's ``display`` unless given).
    max_read_bytes : int
        A plane whose read would touch more storage than this (a y or x plane of a volume
        stored in per-slice chunks, without a pyramid) is not read on a slider move: its
        pane says what it would cost and offers "Read it" (and, for a volume file, "Build
        pyramid": :func:`spotkit.io.write_pyramid`).
    readonly : bool
        No "Build pyramid" button (the read-only portal view writes nothing).
    **model_options
        Keyword arguments of :class:`SliceViewerModel` (``key``, ``axis``, ``cursor``,
        ``display``, ``cmap``, ``vmin``, ``vmax``, ``percentiles``, ``fmt``, ``pyramid``).

    Attributes
    ----------
    model : SliceViewerModel
    widget : ipywidgets.VBox
        The whole view.
    sliders, images, titles : list of ipywidgets widgets
        One per axis (the pane showing the plane across that axis).
    cmap, contrast, auto_button, zoom, status : ipywidgets widgets
        The controls, for notebooks and tests to drive.

    Examples
    --------
    >>> import numpy as np
    >>> from spotkit.widgets._slice_viewer import SliceViewer
    >>> vol = np.random.default_rng(0).random((20, 30, 40)).astype("f4")
    >>> viewer = SliceViewer(vol, background=False, display=64)
    >>> viewer.sliders[0].value = 3          # the z plane through z = 3
    >>> viewer.model.cursor[0], bytes(viewer.images[0].value[:4])
    (3, b'\\x89PNG')
    >>> viewer                                # shows it in JupyterLab   # doctest: +SKIP
    """

    def __init__(self, source: Any, *, background: bool = True, pane_size: int | None = None,
                 max_read_bytes: int = 2**30, readonly: bool = False, **model_options: Any):
        w = _ipywidgets()
        if isinstance(source, SliceViewerModel):
            if model_options:
                raise ValueError("pass model options to SliceViewerModel, not with a model")
            self.model = source
        else:
            self.model = SliceViewerModel(source, **model_options)
        self.background = background
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="spotkit-slices") \
            if background else None
        self._generation = [0, 0, 0]
        self.max_read_bytes = int(max_read_bytes)
        self.readonly = bool(readonly)
        self._forced = [False, False, False]
        self._lock = threading.Lock()
        m = self.model
        size = int(pane_size or m.display)
        self._pane = size
        self.titles, self.sliders, self.images, panes = [], [], [], []
        self.notes, self.read_buttons = [], []
        for ax, axis in enumerate(m.volume.axes):
            title = w.HTML()
            slider = w.IntSlider(value=m.cursor[ax], min=0, max=axis.size - 1,
                                 description=axis.name, continuous_update=True,
                                 layout=w.Layout(width=f"{size}px"))
            image = w.Image(format=m.fmt, layout=w.Layout(object_fit="contain"))
            slider.observe(lambda change, ax=ax: self._moved(ax, change["new"]), names="value")
            note = w.HTML(layout=w.Layout(display="none", max_width=f"{size}px"))
            read = w.Button(description="Read it", layout=w.Layout(display="none"))
            read.on_click(lambda _, ax=ax: self.read_anyway(ax))
            self.titles.append(title)
            self.sliders.append(slider)
            self.images.append(image)
            self.notes.append(note)
            self.read_buttons.append(read)
            title.add_class("spotkit-slice-title")
            slider.add_class("spotkit-slice-index")
            pane = w.VBox([title, image, note, read, slider],
                          layout=w.Layout(margin="0 8px 8px 0"))
            pane.add_class("spotkit-slice-pane")
            panes.append(pane)
        vals = (m.vmin, m.vmax)
        lo, hi = self._range_limits(vals)
        self.cmap = w.Dropdown(options=_CMAPS if m.cmap in _CMAPS else [m.cmap, *_CMAPS],
                               value=m.cmap, description="colours",
                               layout=w.Layout(width="180px"))
        self.contrast = w.FloatRangeSlider(value=vals, min=lo, max=hi, step=(hi - lo) / 500,
                                           description="range", readout_format=".4g",
                                           continuous_update=False,
                                           layout=w.Layout(width="340px"))
        self.auto_button = w.Button(description="Auto", tooltip="grey range from the "
                                    f"{m.percentiles[0]:g}-{m.percentiles[1]:g} percentiles "
                                    "of the current plane", layout=w.Layout(width="60px"))
        self.zoom = w.ToggleButtons(options=[(f"{z}×", z) for z in ZOOMS], value=1,
                                    description="zoom", style={"button_width": "40px"})
        self.status = w.HTML()
        self.pyramid_button = w.Button(
            description="Build pyramid", icon="layer-group",
            tooltip="write coarse levels beside the volume (spotkit.io.write_pyramid): fast "
            "planes across every axis",
            layout=w.Layout(display="" if m.can_build_pyramid and not readonly else "none"))
        self.pyramid_button.on_click(lambda _: self.build_pyramid())
        self.cmap.observe(lambda c: self._set_cmap(c["new"]), names="value")
        self.contrast.observe(lambda c: self._set_contrast(*c["new"]), names="value")
        self.auto_button.on_click(lambda _: self.auto_contrast())
        self.zoom.observe(lambda c: self._set_zoom(c["new"]), names="value")
        header = w.HTML(f"<b>{html.escape(m.volume.name)}</b> &nbsp; "
                        f"{html.escape(self._shape_text())}")
        controls = w.HBox([self.cmap, self.contrast, self.auto_button, self.zoom,
                           self.pyramid_button],
                          layout=w.Layout(flex_flow="row wrap"))
        # the planes first, the controls under them (a narrow screen shows a plane at once)
        self.widget = w.VBox([header,
                              w.HBox(panes, layout=w.Layout(flex_flow="row wrap")),
                              controls, self.status])
        self.widget.add_class("spotkit-slice-viewer")
        for ax in range(3):  # images the model rendered already (e.g. in the portal's
            last = m.last.get(ax)  # background thread) are shown without reading again
            if last is not None and last.index == m.cursor[ax] and last.level == m.levels(ax)[1]:
                self._put(last)
            else:
                self._show(ax)

    # -- actions (also for notebooks and tests) -------------------------------------

    def refresh(self) -> None:
        """Render the three planes again."""
        for ax in range(3):
            self._show(ax)

    def auto_contrast(self) -> tuple[float, float]:
        """Set the grey range from the percentiles of the current plane."""
        vals = self.model.auto_contrast(apply=True)
        lo, hi = self._range_limits(vals)
        with self.contrast.hold_trait_notifications():
            self.contrast.min = min(self.contrast.min, lo)
            self.contrast.max = max(self.contrast.max, hi)
            self.contrast.value = vals
        self.refresh()
        return vals

    def read_anyway(self, axis: int) -> None:
        """Read the plane across ``axis`` even though it is costly (and keep doing so)."""
        self._forced[axis] = True
        self._show(axis)

    def build_pyramid(self) -> None:
        """Write the volume's pyramid (:meth:`SliceViewerModel.build_pyramid`, in a
        background thread when ``background``), then show the planes from it."""
        if self.readonly or not self.model.can_build_pyramid:
            raise ValueError("this viewer cannot write a pyramid (read-only, remote, a raw "
                             "scan, or one exists already)")
        self.pyramid_button.disabled = True
        self.status.value = "<small>writing the pyramid… (reads the whole volume once)</small>"

        def work() -> None:
            try:
                side = self.model.build_pyramid()
            except Exception as exc:  # shown in the view
                logger.warning("writing the pyramid failed: %s", exc, exc_info=True)
                self.status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
                self.pyramid_button.disabled = False
                return
            self.pyramid_button.layout.display = "none"
            self.refresh()
            self.status.value = f"<small>pyramid written: {html.escape(str(side))}</small>"

        if self._executor is None:
            work()
        else:
            threading.Thread(target=work, name="spotkit-pyramid", daemon=True).start()

    def close(self) -> None:
        """Close the widgets and the volume's files."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self.widget.close()
        self.model.close()

    # -- callbacks ------------------------------------------------------------------

    def _moved(self, axis: int, index: int) -> None:
        self.model.set_index(int(index), axis=axis)
        self.model.set_axis(axis)
        self._show(axis)

    def _set_cmap(self, name: str) -> None:
        self.model.set_cmap(name)
        self.refresh()

    def _set_contrast(self, vmin: float, vmax: float) -> None:
        if vmax <= vmin:
            return
        self.model.set_contrast(vmin, vmax)
        self.refresh()

    def _set_zoom(self, factor: int) -> None:
        for ax in range(3):
            self.model.zoom(factor, axis=ax)
        self.refresh()

    def _show(self, axis: int) -> None:
        """The coarse level now, then the level that fills the display."""
        with self._lock:
            self._generation[axis] += 1
            generation = self._generation[axis]
        coarse, fine = self.model.levels(axis)
        cost = self.model.read_bytes(axis, coarse=True)
        guarded = cost > self.max_read_bytes and not self._forced[axis]
        self.notes[axis].layout.display = self.read_buttons[axis].layout.display = (
            "" if guarded else "none")
        if guarded:
            hint = (" or build the pyramid" if self.model.can_build_pyramid
                    and not self.readonly else "")
            self.notes[axis].value = (
                f"<small>This plane would read {_size_text(cost)} (the volume is stored "
                f"in chunks of {self._chunks_text()}). Read it{hint}.</small>")
            return
        try:
            if coarse != fine or not self.background:
                self._put(self.model.render(axis, level=coarse))
            if coarse != fine:
                if self._executor is None:
                    self._put(self.model.render(axis, level=fine))
                else:
                    self._executor.submit(self._fine, axis, fine, generation)
            elif self.background:
                self._put(self.model.render(axis, level=fine))
        except Exception as exc:
            logger.warning("rendering plane %d failed: %s", axis, exc, exc_info=True)
            self.status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"

    def _fine(self, axis: int, level: int, generation: int) -> None:
        if generation != self._generation[axis]:
            return  # superseded by a newer move
        try:
            out = self.model.render(axis, level=level)
        except Exception as exc:
            logger.warning("rendering plane %d failed: %s", axis, exc, exc_info=True)
            self.status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return
        if generation == self._generation[axis]:
            self._put(out)

    def _put(self, out: Rendered) -> None:
        ax = out.axis
        image = self.images[ax]
        # the browser scales a coarse image up to the pane: the same size on screen as the
        # full one that follows, with the plane's physical aspect
        h, w = out.size
        scale = self._pane / max(h, w)
        width, height = f"{round(w * scale)}px", f"{round(h * scale)}px"
        if (image.layout.width, image.layout.height) != (width, height):
            image.layout.width, image.layout.height = width, height
        image.format = out.format
        image.value = out.data
        m = self.model
        a, b = (m.volume.axes[d].name for d in m.volume.plane_axes(ax))
        self.titles[ax].value = (f"<b>{html.escape(m.describe(ax))}</b><br><small>"
                                 f"{a} × {b}: {out.extent[0]:.4g} × {out.extent[1]:.4g} "
                                 f"{html.escape(out.units)}</small>")
        factor = 2 ** out.level
        self.status.value = (f"<small>plane {m.volume.axes[ax].name}: level {out.level} "
                             f"({factor}× coarser), read {out.read_shape[0]}×"
                             f"{out.read_shape[1]} in {out.read_s * 1e3:.0f} ms, image "
                             f"{out.size[0]}×{out.size[1]} ready in "
                             f"{out.total_s * 1e3:.0f} ms"
                             + (f"; values in {html.escape(m.volume.value_units)}"
                                if m.volume.value_units else "") + "</small>")

    # -- helpers --------------------------------------------------------------------

    def _range_limits(self, vals: tuple[float, float]) -> tuple[float, float]:
        lo, hi = vals
        span = hi - lo
        return lo - span, hi + span

    def _chunks_text(self) -> str:
        chunks = getattr(self.model.volume.levels[0], "chunks", None)
        return " × ".join(map(str, chunks)) if chunks else "one block"

    def _shape_text(self) -> str:
        parts = []
        for a in self.model.volume.axes:
            scale = f" × {a.spacing:.4g} {a.units}" if a.spacing else ""
            parts.append(f"{a.name} {a.size}{scale}")
        return ", ".join(parts) + f" ({self.model.volume.dtype})"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<SliceViewer {self.model!r}>"


def _size_text(n: int) -> str:
    """``"28.3 GB"``, ``"1.2 MB"``."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


_CMAPS = ["gray", "viridis", "magma", "inferno", "cividis", "bone", "coolwarm", "RdBu_r"]
