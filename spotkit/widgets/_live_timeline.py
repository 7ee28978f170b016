"""Watch a series while ``spotkit live`` records it: features, onsets, fits and status.

Three collaborators behind :class:`LiveTimeline`, as for
:class:`~spotkit.widgets.ChangeTimeline`:

- :class:`~spotkit.widgets.LiveTimelineModel` (:mod:`spotkit.widgets._live_timeline_model`)
  reads what is new in the catalog and holds the growing series, in plain Python;
- :class:`~spotkit.widgets._live_timeline_plots.LivePlots` draws the timeline and the latest
  I(q) with matplotlib's Agg canvas, as PNG bytes;
- :class:`LiveTimeline` (here) lays them out with ipywidgets and keeps them current from a
  background thread, so the kernel stays free.
"""

from __future__ import annotations

import collections
import html
import logging
import math
import statistics
import threading
import time
from typing import Any

from spotkit.widgets._live_timeline_model import LiveTimelineModel, LiveUpdate
from spotkit.widgets._live_timeline_plots import LivePlots

logger = logging.getLogger(__name__)

__all__ = ["LiveTimeline", "LiveTimelineModel"]

_LAB_EXTRA = 'pip install "spotkit[lab]"'
_RED, _GREEN = "#cf222e", "#1a7f37"
#: values of a fit point that are not parameters (chi2 is shown last)
_NOT_SHOWN = frozenset({"chi2", "n_points", "frames", "fit_s", "elapsed_s"})
#: from the start of one redraw to the next, at least this many times a redraw's duration
#: (drawing takes at most half a core) but not more than _MAX_GAP seconds: the newest frame
#: is drawn within a second or so while a redraw takes less (on a busy machine, more often
#: than half a core then)
_BUSY = 2.0
_MAX_GAP = 1.0
#: seconds between two drawings of the latest I(q) when only the frame changed
_PROFILE_GAP = 2.0


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError(
            f"spotkit.widgets.LiveTimeline needs ipywidgets; install it with {_LAB_EXTRA} "
            "(LiveTimelineModel works without it)"
        ) from exc
    return ipywidgets


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fit_html(latest: tuple[str, int, dict] | None) -> str:
    """The newest fit as one line: ``sphere at frame 80: radius = 52.1 ± 0.4 · chi2 = 1.1``.

    Examples
    --------
    >>> fit_html(("sphere", 80, {"radius": 52.08, "radius_err": 0.41, "chi2": 1.07}))
    '<b>sphere</b> at frame 80: radius = 52.08 ± 0.41 &middot; χ² = 1.07'
    """
    if latest is None:
        return "<i>no model fit yet</i>"
    model, frame, values = latest
    parts = []
    for k, v in values.items():
        if k.endswith("_err") or k in _NOT_SHOWN or not isinstance(v, int | float) or \
                isinstance(v, bool):
            continue
        err = values.get(f"{k}_err")
        text = f"{html.escape(k)} = {html.escape(_fmt(v))}"
        if isinstance(err, int | float) and err == err:
            text += f" ± {_fmt(float(err))}"
        parts.append(text)
    if values.get("chi2") is not None:
        parts.append(f"χ² = {_fmt(values['chi2'])}")
    text = f"<b>{html.escape(model)}</b> at frame {frame}: " + " &middot; ".join(parts)
    if isinstance(values.get("notes"), str) and values["notes"]:
        text += f"<br><i>{html.escape(values['notes'])}</i>"
    return text


def decisions_html(decisions: list[dict], *, limit: int = 8) -> str:
    """The newest decisions (frame, action, reason), newest first, as an HTML list."""
    if not decisions:
        return "<i>no decision yet</i>"
    rows = []
    for d in reversed(decisions[-limit:]):
        what = d.get("action") or d.get("trigger") or "decision"
        reason = d.get("reason") or ""
        rows.append(f"<li>frame {d['frame']}: <b>{html.escape(str(what))}</b> "
                    f"{html.escape(str(reason))}</li>")
    return f'<ul style="margin:0">{"".join(rows)}</ul>'


class LiveTimeline:
    """A series as ``spotkit live`` records it, redrawn as frames land.

    Shows the live status ("behind by N frames", frames/s, latency), a feature (dropdown)
    against frame with the confirmed onsets and the flagged frames, below it on the same
    frame axis a fitted model parameter (dropdowns) with its error bars, the newest fit's
    values, the latest I(q) with the fit curve (or a chosen frame's, with the newest fit
    up to it: :meth:`show_frame`), and the recent decisions. A daemon thread
    polls the catalog every ``refresh`` seconds (:meth:`LiveTimelineModel.start`) and redraws
    only when something new came; the kernel is never blocked.

    Parameters
    ----------
    catalog : Catalog, path-like or LiveTimelineModel
        The catalog ``spotkit live`` records into (or where it is), or a model made already
        (then leave ``dataset_id`` out).
    dataset_id : str
        The live series.
    refresh : float
        Seconds between two polls.
    feature : str, optional
        Feature shown first (default: the first change's feature, else ``"difference"``).
    autostart : bool
        Start polling at once (else :meth:`start`, or :meth:`refresh` by hand).
    dpi : int
        Resolution of the plots.
    profile_log : ProfileLog or path-like, optional
        Where the series' I(q) are (default: from the live status).

    Attributes
    ----------
    model : LiveTimelineModel
    widget : ipywidgets.VBox
    status, feature_dropdown, model_dropdown, parameter_dropdown, timeline, profile,
    frame_box, newest_box, fit, decisions, error
        The parts, for notebooks and tests to drive.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import LivePoint, open_catalog
    >>> from spotkit.widgets import LiveTimeline
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> view = LiveTimeline(cat, "series-1", autostart=False)
    >>> view.model.ingest([LivePoint(frame=k, kind="features", values={"difference": 1.0})
    ...                    for k in range(4)])
    4
    >>> view.render()
    >>> view.feature_dropdown.options
    ('difference',)
    >>> view                        # displays the widget in JupyterLab   # doctest: +SKIP
    >>> view.close(); cat.close()
    """

    def __init__(self, catalog: Any, dataset_id: str | None = None, *, refresh: float = 0.5,
                 feature: str | None = None, autostart: bool = True, dpi: int = 80,
                 profile_log: Any = None):
        w = _ipywidgets()
        if not refresh > 0:
            raise ValueError(f"refresh must be > 0 seconds, got {refresh!r}")
        if not isinstance(dpi, int) or dpi < 20:
            raise ValueError(f"dpi must be an integer >= 20, got {dpi!r}")
        self._opened = None
        if isinstance(catalog, LiveTimelineModel):
            if dataset_id is not None or profile_log is not None:
                raise ValueError("a LiveTimelineModel knows its series already; leave "
                                 "dataset_id and profile_log out")
            self.model = catalog
        else:
            if dataset_id is None:
                raise ValueError("give the live series: LiveTimeline(catalog, dataset_id)")
            if not hasattr(catalog, "live_points"):
                from spotkit.catalog import open_catalog

                catalog = self._opened = open_catalog(catalog, create=False)
            self.model = LiveTimelineModel(catalog, dataset_id, profile_log=profile_log)
        self.interval = float(refresh)
        self._w = w
        self._plots = LivePlots(self.model, dpi=dpi)
        self._render_lock = threading.Lock()
        self._feature = feature
        self._closed = False
        self._profile_key: Any = ()
        self._profile_at = -math.inf
        self._profile_stale = False
        self._shown: tuple[int, Any] | None = None  # (frame, I(q)) chosen, None: newest
        self.renders = 0
        self.render_seconds = 0.0  # how long the last drawing took
        self._recent: collections.deque[float] = collections.deque(maxlen=6)
        self._drawn_at = -math.inf
        self._pending = False
        self._build()
        if autostart:
            self.start()
        else:
            self.render()

    # -- building -----------------------------------------------------------------------

    def _build(self) -> None:
        w = self._w
        self.status = w.HTML()
        self.status.add_class("spotkit-lt-status")
        self.feature_dropdown = w.Dropdown(options=[], description="feature",
                                           layout=w.Layout(width="16em"))
        self.model_dropdown = w.Dropdown(options=[], description="fit",
                                         layout=w.Layout(width="16em"))
        self.parameter_dropdown = w.Dropdown(options=[], description="parameter",
                                             layout=w.Layout(width="16em"))
        for dd in (self.feature_dropdown, self.model_dropdown, self.parameter_dropdown):
            dd.observe(self._chosen, names="value")
        self.timeline = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.timeline.add_class("spotkit-lt-timeline")
        self.profile = w.Image(format="png", layout=w.Layout(max_width="45%"))
        self.profile.add_class("spotkit-lt-profile")
        # which frame's I(q): the newest (followed) or one chosen (a past onset, say)
        self.newest_box = w.Checkbox(value=True, description="newest frame", indent=False,
                                     layout=w.Layout(width="auto"))
        self.frame_box = w.BoundedIntText(value=0, min=0, max=0, description="I(q) of frame",
                                          disabled=True, style={"description_width": "auto"},
                                          layout=w.Layout(width="14em"))
        self.newest_box.observe(self._frame_chosen, names="value")
        self.frame_box.observe(self._frame_chosen, names="value")
        self.fit = w.HTML()
        self.fit.add_class("spotkit-lt-fit")
        self.decisions = w.HTML()
        self.decisions.add_class("spotkit-lt-decisions")
        self.error = w.HTML()
        side = w.VBox([w.HBox([self.frame_box, self.newest_box]), w.HTML("<b>Fit</b>"),
                       self.fit, w.HTML("<b>Decisions</b>"), self.decisions],
                      layout=w.Layout(width="50%", padding="0 0 0 1em"))
        self.widget = w.VBox([
            w.HTML(f"<b>live: {html.escape(self.model.dataset_id)}</b>"),
            self.status,
            w.HBox([self.feature_dropdown, self.model_dropdown, self.parameter_dropdown]),
            self.timeline,
            w.HBox([self.profile, side], layout=w.Layout(align_items="flex-start")),
            self.error,
        ])
        self.widget.add_class("spotkit-live-timeline")

    # -- choices --------------------------------------------------------------------------

    def show_frame(self, frame: int | None) -> None:
        """Show the I(q) of ``frame`` (read from the ProfileLog now) with the newest fit at or
        before it, marked on the timeline; None: follow the newest frame again.

        Raises
        ------
        ValueError
            A frame with no I(q) in the series' ProfileLog (yet).
        """
        if frame is None:
            self._shown = None
        else:
            profile = self.model.profile(int(frame))
            if profile is None:
                raise ValueError(f"frame {frame} has no I(q) in the series' profile log (yet);"
                                 f" frames with features: 0..{self.model.last_frame}")
            self._shown = (int(frame), profile)
        self._syncing = True
        try:
            self.newest_box.value = frame is None
            self.frame_box.disabled = frame is None
            if frame is not None:
                self.frame_box.max = max(self.frame_box.max, int(frame))
                self.frame_box.value = int(frame)
        finally:
            self._syncing = False
        self.render()
        self._profile_now()  # asked for: not deferred

    def _profile_now(self) -> None:
        """Draw an I(q) left for later now (after an explicit request)."""
        with self._render_lock:
            if self._profile_stale and not self._closed:
                self._profile_stale = self._render_profile(
                    self.model.latest_fit(self.model_dropdown.value), force=True)

    def _frame_chosen(self, change: dict) -> None:
        if getattr(self, "_syncing", False):
            return
        if self.newest_box.value:
            self.show_frame(None)
            return
        try:
            self.show_frame(int(self.frame_box.value))
        except ValueError as exc:
            self._show_error(str(exc))

    def _chosen(self, change: dict) -> None:
        if getattr(self, "_syncing", False):
            return
        if change["owner"] is self.feature_dropdown:  # the user's choice, kept from now on
            self._feature = change["new"]
        if change["owner"] is self.model_dropdown:
            self._sync_parameters()
        self.render()

    def _sync_options(self) -> None:
        """Dropdowns follow what the model holds (new features, models, parameters)."""
        self._syncing = True
        try:
            m = self.model
            names = m.feature_names
            # until the user chooses, the feature shown follows the model's default (the
            # feature of the first change, once there is one)
            wanted = self._feature if self._feature in names else m.default_feature
            if list(self.feature_dropdown.options) != names:
                self.feature_dropdown.options = names
            if self.feature_dropdown.value != wanted:
                self.feature_dropdown.value = wanted
            last = m.last_frame
            if last is not None:
                if self.frame_box.max < last:
                    self.frame_box.max = last
                if self._shown is None and self.frame_box.value != last:
                    self.frame_box.value = last  # the newest frame, followed
            models = m.fit_models
            if list(self.model_dropdown.options) != models:
                current = self.model_dropdown.value
                self.model_dropdown.options = models
                self.model_dropdown.value = current if current in models else (
                    models[0] if models else None)
            self._sync_parameters()
        finally:
            self._syncing = False

    def _sync_parameters(self) -> None:
        model = self.model_dropdown.value
        params = self.model.fit_parameters(model) if model else []
        if list(self.parameter_dropdown.options) != params:
            current = self.parameter_dropdown.value
            was, self._syncing = getattr(self, "_syncing", False), True
            try:
                self.parameter_dropdown.options = params
                self.parameter_dropdown.value = current if current in params else (
                    params[0] if params else None)
            finally:
                self._syncing = was

    # -- rendering ------------------------------------------------------------------------

    def render(self) -> None:
        """Redraw everything from the model (no I/O: :meth:`LiveTimelineModel.fetch` read
        it all, the latest I(q) included)."""
        with self._render_lock:
            if self._closed:
                return
            t0, started = time.perf_counter(), time.monotonic()
            m = self.model
            self._sync_options()
            self.status.value = self._status_html()
            model, param = self.model_dropdown.value, self.parameter_dropdown.value
            self.timeline.value = self._plots.timeline_png(
                self.feature_dropdown.value, (model, param) if model and param else None,
                selected=None if self._shown is None else self._shown[0])
            latest = m.latest_fit(model)
            self.fit.value = fit_html(latest)
            stale = self._render_profile(latest)
            self.decisions.value = decisions_html(m.decisions)
            error = m.error
            self.error.value = ("" if error is None else
                                f'<span style="color:{_RED}">{html.escape(error)}</span>')
            self.renders += 1
            self._pending = False
            self._profile_stale = stale
            self._drawn_at = started
            self.render_seconds = time.perf_counter() - t0
            self._recent.append(self.render_seconds)
            logger.debug("live timeline rendered in %.3f s", self.render_seconds)

    def _render_profile(self, latest: tuple[str, int, dict] | None, *,
                        force: bool = False) -> bool:
        """Draw the latest I(q) with the newest fit's curve. A new fit is drawn at once, a
        newer I(q) alone at most every _PROFILE_GAP s (the timeline, where the newest
        frame's point goes, comes first); returns True when one is left for later."""
        m = self.model
        profile = m.latest_profile
        if self._shown is not None:  # a frame chosen: its I(q), the newest fit up to it
            profile = self._shown[1]
            latest = m.latest_fit(latest[0] if latest else None, until=self._shown[0])
        key = (id(profile), None if latest is None else latest[:2])
        if key == self._profile_key:
            return False
        new_fit = not self._profile_key or key[1] != self._profile_key[1]
        if not (new_fit or force) and time.monotonic() - self._profile_at < _PROFILE_GAP:
            return True
        curve = m.fit_curve(profile, latest) if profile is not None and latest else None
        label = f"{latest[0]} fit (frame {latest[1]})" if latest else "fit"
        self.profile.value = self._plots.profile_png(profile, curve, label=label, key=key)
        self._profile_key, self._profile_at = key, time.monotonic()
        return False

    def _status_html(self) -> str:
        m = self.model
        behind = m.behind
        colour = _RED if behind is not None and behind > 0 else _GREEN
        return f'<span style="color:{colour}">{html.escape(m.status_text())}</span>'

    def _typical_render(self) -> float:
        recent = list(self._recent)[1:] if len(self._recent) > 1 else list(self._recent)
        return statistics.median(recent) if recent else 0.0

    def _on_update(self, update: LiveUpdate) -> float | None:
        """After each poll (the poller's thread): redraw what changed; returns how soon to
        poll again when a redraw waits for its turn."""
        try:
            self._pending = self._pending or update.changed or self.renders == 0
            # a long series on a busy machine is redrawn less often, never piling up behind
            # the poller (the estimate: the median of the last redraws, not the first one,
            # which pays matplotlib's start)
            gap = min(_BUSY * self._typical_render(), _MAX_GAP)
            rest = gap - (time.monotonic() - self._drawn_at)  # since the last one started
            if self._pending and rest <= 0:
                self.render()
            elif self._profile_stale and not self._pending:  # only the I(q) is behind
                with self._render_lock:
                    if not self._closed:
                        self._profile_stale = self._render_profile(
                            self.model.latest_fit(self.model_dropdown.value))
            else:  # nothing new: only the status line (its age) moves
                text = self._status_html()
                if self.status.value != text:
                    self.status.value = text
            if self._pending and rest > 0:
                return rest  # its turn comes before the next poll: be asked then
        except Exception as exc:  # the thread goes on; the view says why
            logger.warning("live timeline: drawing failed: %s", exc)
            self._show_error(f"drawing failed: {type(exc).__name__}: {exc}")
        return None

    def _show_error(self, message: str) -> None:
        if not self._closed:
            self.error.value = (f'<span style="color:{_RED}">{html.escape(message)} '
                                "(tried again)</span>")

    # -- control --------------------------------------------------------------------------

    def refresh(self) -> LiveUpdate:
        """Read what is new and redraw all of it, in the calling thread."""
        update = self.model.fetch()
        self.render()
        self._profile_now()
        return update

    def start(self) -> None:
        """Poll and redraw in the background every ``refresh`` seconds."""
        self.model.start(self._on_update, interval=self.interval, on_error=self._show_error)

    def stop(self) -> None:
        """Stop polling (the view keeps what it shows)."""
        self.model.stop()

    @property
    def running(self) -> bool:
        """Polling in the background."""
        return self.model.running

    def wait(self, condition, timeout: float = 30.0) -> bool:
        """Wait until ``condition(model)`` holds, then redraw (see
        :meth:`LiveTimelineModel.wait`)."""
        ok = self.model.wait(condition, timeout)
        self.render()
        return ok

    def close(self) -> None:
        """Stop polling and close the widgets (and the catalog if this view opened it)."""
        self.model.close()
        with self._render_lock:
            self._closed = True
        self.widget.close()
        if self._opened is not None:
            self._opened.close()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<LiveTimeline: {self.model!r}>"
