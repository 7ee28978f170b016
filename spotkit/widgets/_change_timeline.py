"""Look through a scattering series by its change features: a timeline and three panels.

Three collaborators behind :class:`ChangeTimeline`, as for :mod:`spotkit.widgets._jobmonitor`:

- :class:`~spotkit.widgets.ChangeTimelineModel` (:mod:`spotkit.widgets._change_timeline_model`)
  holds the series, its change result, profiles, plan and the selected frame, in plain
  Python (tested without a browser);
- :class:`~spotkit.widgets._change_timeline_plots.Panels` draws the timeline and the three
  panels with matplotlib's Agg canvas, as PNG bytes;
- :class:`ChangeTimeline` (here) lays them out with ipywidgets: a feature dropdown, the
  feature against frame with the onsets (and the plan's windows and kept frames), a frame
  slider with "previous onset" / "next onset" buttons, and three panels for the selected
  frame (detector image, spatial change map, I(q) against the reference).
"""

from __future__ import annotations

import html
import logging
import time

from spotkit.widgets._change_timeline_model import ChangeTimelineModel
from spotkit.widgets._change_timeline_plots import Panels

logger = logging.getLogger(__name__)

__all__ = ["ChangeTimeline", "ChangeTimelineModel"]

_LAB_EXTRA = 'pip install "spotkit[lab]"'


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError(
            f"spotkit.widgets.ChangeTimeline needs ipywidgets; install it with {_LAB_EXTRA} "
            "(ChangeTimelineModel works without it)"
        ) from exc
    return ipywidgets



class ChangeTimeline:
    """A scattering series by its change features: the timeline and the selected frame.

    Shows a feature (dropdown) against frame with the detected onsets and their confidence
    (and, with a plan, the windows of interest shaded and the kept frames ticked), a frame
    slider with "◀ previous onset" / "next onset ▶", and three panels for the selected frame:
    the detector image (log scale, one grey range for all frames), its spatial change map
    (diverging colours, one symmetric range for all frames) and its I(q) (log-log, against
    the reference profile). Every number comes from :class:`ChangeTimelineModel`, which
    calls :mod:`spotkit.change` and :mod:`spotkit.scattering`.

    Parameters
    ----------
    frames : array_like, dask array, xarray.DataArray or ChangeTimelineModel
        The ``(frame, y, x)`` series, or a model made already (then no other argument).
    feature : str, optional
        Feature shown first (default: the first detection feature of the result,
        ``"difference"`` when present).
    frame : int
        Frame selected first.
    cmap, map_cmap : str
        Matplotlib colour maps of the image and of the change map.
    dpi : int
        Resolution of the plots.
    **model_options
        Keyword arguments of :class:`ChangeTimelineModel` (``result``, ``features``,
        ``profiles``, ``integrator``, ``plan``, ``mask``, ``warmup``, ``smooth``, ``npt``,
        ``detect_options``).

    Attributes
    ----------
    model : ChangeTimelineModel
    widget : ipywidgets.VBox
        The whole view (displaying the ChangeTimeline displays it).
    dropdown, slider, previous_button, next_button, label, timeline, image, map, profile
        The parts, for notebooks and tests to drive.

    Examples
    --------
    >>> from spotkit.change import detect_changes, reduction_policy
    >>> from spotkit.io import open_saxs
    >>> from spotkit.io import load_geometry
    >>> from spotkit.sim import simulate_saxs_series
    >>> from spotkit.widgets import ChangeTimeline
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.h5"
    >>> truth = simulate_saxs_series(path, n_frames=40, onset_frame=25, seed=3)
    >>> frames = open_saxs(path)
    >>> result = detect_changes(frames)
    >>> view = ChangeTimeline(frames, result=result, plan=reduction_policy(result),
    ...     integrator=load_geometry(frames.attrs["poni_path"]))
    >>> view                     # displays the widget in JupyterLab   # doctest: +SKIP
    >>> view.next_onset()
    25
    """

    def __init__(self, frames, *, feature: str | None = None, frame: int = 0,
                 cmap: str = "gray", map_cmap: str = "RdBu_r", dpi: int = 80,
                 **model_options):
        w = _ipywidgets()
        if isinstance(frames, ChangeTimelineModel):
            if model_options:
                raise ValueError(f"a ChangeTimelineModel is complete already; leave out "
                                 f"{sorted(model_options)}")
            self.model = frames
        else:
            self.model = ChangeTimelineModel(frames, **model_options)
        model = self.model
        names = model.feature_names
        if feature is None:
            feature = model.default_feature
        if feature not in names:
            raise ValueError(f"unknown feature {feature!r}; choose one of {names}")
        if not isinstance(dpi, int) or dpi < 20:
            raise ValueError(f"dpi must be an integer >= 20, got {dpi!r}")
        model.select(frame)
        self._w = w
        self._panels = Panels(model, cmap=cmap, map_cmap=map_cmap, dpi=dpi)
        self._build(feature)
        self._render()

    # -- building -------------------------------------------------------------------------

    def _build(self, feature: str) -> None:
        w = self._w
        m = self.model
        self.dropdown = w.Dropdown(options=m.feature_names, value=feature,
                                   description="feature", layout=w.Layout(width="16em"))
        self.dropdown.add_class("spotkit-ct-feature")
        self.timeline = w.Image(format="png")
        self.timeline.add_class("spotkit-ct-timeline")
        self.slider = w.IntSlider(value=m.selected, min=0, max=m.n_frames - 1, step=1,
                                  description="frame", continuous_update=False,
                                  layout=w.Layout(width="60%"))
        self.slider.add_class("spotkit-ct-slider")
        self.previous_button = w.Button(description="previous onset", icon="step-backward",
                                        tooltip="select the last onset before this frame",
                                        layout=w.Layout(width="auto"))
        self.previous_button.add_class("spotkit-ct-previous")
        self.next_button = w.Button(description="next onset", icon="step-forward",
                                    tooltip="select the first onset after this frame",
                                    layout=w.Layout(width="auto"))
        self.next_button.add_class("spotkit-ct-next")
        self.label = w.HTML()
        self.label.add_class("spotkit-ct-label")
        # three side by side; narrow pages shrink them
        self.image, self.map, self.profile = (self._panel(name)
                                              for name in ("image", "map", "profile"))
        self.profile.layout.display = None if m.has_profiles else "none"
        self.profile_note = w.HTML("<i>no I(q) panel: give profiles= or integrator=</i>",
                                   layout=w.Layout(display="none" if m.has_profiles
                                                   else None))
        panels = w.HBox([self.image, self.map, self.profile, self.profile_note],
                        layout=w.Layout(align_items="flex-start"))
        panels.add_class("spotkit-ct-panels")

        self.dropdown.observe(lambda _: self._render_timeline(), names="value")
        self.slider.observe(lambda change: self._frame_changed(change["new"]), names="value")
        self.previous_button.on_click(lambda _: self.previous_onset())
        self.next_button.on_click(lambda _: self.next_onset())
        onsets = ", ".join(f"{e.onset} ({e.confidence:.2f})" for e in m.events) or "none"
        self.summary = w.HTML(f"{m.n_frames} frames &middot; onsets (confidence): "
                              f"<b>{html.escape(onsets)}</b>")
        self.summary.add_class("spotkit-ct-summary")
        self.widget = w.VBox([
            w.HBox([self.dropdown, self.summary], layout=w.Layout(align_items="center")),
            self.timeline,
            w.HBox([self.previous_button, self.slider, self.next_button],
                   layout=w.Layout(align_items="center")),
            self.label,
            panels,
        ])
        self.widget.add_class("spotkit-change-timeline")

    def _panel(self, name: str):
        w = self._w
        panel = w.Image(format="png", layout=w.Layout(max_width="33%", height="auto"))
        panel.add_class(f"spotkit-ct-{name}")
        return panel

    # -- actions ----------------------------------------------------------------------------

    def select(self, frame: int) -> int:
        """Select a frame (moves the slider; the panels follow). See
        :meth:`ChangeTimelineModel.select`."""
        frame = self.model.select(frame)
        if self.slider.value != frame:
            self.slider.value = frame  # observed: renders
        else:
            self._render_frame()
        return frame

    def next_onset(self) -> int | None:
        """Go to the next onset ("next onset" button); None when there is none after."""
        frame = self.model.next_onset()
        if frame is not None:
            self.select(frame)
        return frame

    def previous_onset(self) -> int | None:
        """Go to the previous onset ("previous onset" button); None when there is none."""
        frame = self.model.previous_onset()
        if frame is not None:
            self.select(frame)
        return frame

    @property
    def frame(self) -> int:
        """The selected frame."""
        return self.model.selected

    # -- rendering ----------------------------------------------------------------------------

    def _frame_changed(self, frame: int) -> None:
        self.model.select(int(frame))
        self._render_frame()

    def _render(self) -> None:
        self._render_timeline()
        self._render_frame()

    def _render_timeline(self) -> None:
        self.timeline.value = self._panels.timeline_png(self.dropdown.value, self.model.selected)

    def _render_frame(self) -> float:
        """Draw the selected frame's label, timeline marker and panels; return the seconds."""
        t0 = time.perf_counter()
        m = self.model
        frame = m.selected
        p = self._panels
        self._nav_state()
        self.label.value = self._label_html(m.describe(frame))
        self.timeline.value = p.timeline_png(self.dropdown.value, frame)
        self.image.value = p.image_png(frame)
        self.map.value = p.map_png(frame)
        prof = p.profile_png(frame)
        if prof is not None:
            self.profile.value = prof
        seconds = time.perf_counter() - t0
        logger.debug("rendered frame %d in %.3f s", frame, seconds)
        return seconds

    def _nav_state(self) -> None:
        onsets, sel = self.model.onsets, self.model.selected
        self.previous_button.disabled = not any(o < sel for o in onsets)
        self.next_button.disabled = not any(o > sel for o in onsets)

    @staticmethod
    def _label_html(info: dict) -> str:
        parts = [f"<b>frame {info['frame']}</b>"]
        if info["time"] is not None:
            parts.append(f"t = {info['time']:.3g} s")
        parts += [f"{html.escape(k)} = {v:.4g}" for k, v in info["features"].items()]
        if info["event"] is not None:
            onset, end, conf = info["event"]
            parts.append(f'<span style="color:#0969da">change {onset}..{end} '
                         f"(confidence {conf:.2f})</span>")
        if info["label"] is not None:
            parts.append(html.escape(info["label"]) + (", kept" if info["keep"] else ""))
        return " &middot; ".join(parts)

    # -- display ------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        """Close the widgets (they disappear from the notebook)."""
        self.widget.close()

    def __repr__(self) -> str:
        return f"<ChangeTimeline: {self.model!r}>"
