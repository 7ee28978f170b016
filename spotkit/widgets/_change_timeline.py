"""Look through a scattering series by its change features: a timeline and three panels.

Two layers, as for :mod:`spotkit.widgets._jobmonitor`:

- :class:`ChangeTimelineModel` holds a frame series, its :class:`~spotkit.change.ChangeResult`
  (features, onsets, change maps), optional I(q) profiles (or a pyFAI integrator to reduce
  the selected frame on demand) and an optional :class:`~spotkit.change.ReductionPlan`, and
  a selected frame. It is plain Python (tested without a browser): every number comes from
  :mod:`spotkit.change` and :mod:`spotkit.scattering`; nothing is re-implemented here.
- :class:`ChangeTimeline` draws the model with ipywidgets: a feature dropdown, the feature
  against frame with the onsets (and the plan's windows and kept frames), a frame slider
  with "previous onset" / "next onset" buttons, and three panels for the selected frame
  (detector image, spatial change map, I(q) against the reference).

The plots are PNGs drawn by matplotlib's Agg canvas on figures made once and updated in
place (no pyplot, no global state), so a frame renders in a fraction of a second and the
same frame always gives the same bytes.
"""

from __future__ import annotations

import html
import io
import logging
import time
from collections import OrderedDict

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["ChangeTimeline", "ChangeTimelineModel"]

_LAB_EXTRA = 'pip install "spotkit[lab]"'
_SCORE = "score"  # the detection score, offered beside the features
_CACHE = 16  # frames whose image, map and profile are kept


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError(
            f"spotkit.widgets.ChangeTimeline needs ipywidgets; install it with {_LAB_EXTRA} "
            "(ChangeTimelineModel works without it)"
        ) from exc
    return ipywidgets


class _LRU(OrderedDict):
    """A small least-recently-used cache (dict of the last ``size`` keys)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        if len(self) > self.size:
            self.popitem(last=False)
        return value


def _frames_array(frames):
    """The array behind ``frames`` (numpy, dask or xarray) and its per-frame times."""
    times = None
    if hasattr(frames, "dims") and hasattr(frames, "data") and hasattr(frames, "coords"):
        if hasattr(frames, "data_vars"):
            raise TypeError("frames must be (frame, y, x) detector frames, not an xarray "
                            "Dataset; pass I(q) profiles as profiles=")
        dims = tuple(frames.dims)
        if len(dims) != 3 or dims[0] not in ("frame", "time"):
            raise ValueError(f"frames must have dims (frame, y, x); got {dims}")
        if "time" in frames.coords and frames.coords["time"].dims == (dims[0],):
            times = np.asarray(frames.coords["time"].values)
        data = frames.data
    elif hasattr(frames, "shape") and hasattr(frames, "ndim"):
        data = frames
    else:
        data = np.asarray(frames)
    if data.ndim != 3:
        raise ValueError(f"frames must be a 3-D (frame, y, x) series; got shape "
                         f"{tuple(data.shape)}")
    if data.shape[0] == 0:
        raise ValueError("the series is empty: pass at least one frame")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise TypeError(f"frames must hold integers or floats, got dtype {data.dtype}")
    return data, times


def _check_length(what: str, n: int, n_frames: int) -> None:
    if n != n_frames:
        raise ValueError(f"{what} has {n} frames but the series has {n_frames}: were they "
                         "computed from another series (or a slice of it)?")


class ChangeTimelineModel:
    """A frame series with its change features, onsets, maps and I(q), and a selected frame.

    Nothing here touches a widget: :class:`ChangeTimeline` draws it. Features are computed
    once (by :func:`spotkit.change.detect_changes` when no result is given), never on
    selection; the selected frame's image, change map and profile are read or computed on
    demand and a few recent frames are cached.

    Parameters
    ----------
    frames : array_like, dask array or xarray.DataArray, shape (frame, y, x)
        Detector frames (integer counts, negative = gaps), e.g.
        :func:`spotkit.io.open_saxs`'s lazy DataArray (its ``time`` coordinate is shown).
    result : ChangeResult, optional
        From :func:`spotkit.change.detect_changes` (or ``OnlineDetector.result()``) on this
        series; default: computed here with ``detect_changes(frames, mask=mask,
        warmup=warmup, smooth=smooth)``.
    features : xarray.Dataset, optional
        Per-frame features from :func:`spotkit.change.frame_features`; default: the
        result's own ``features``.
    profiles : xarray.Dataset, optional
        I(q) per frame from :func:`spotkit.scattering.integrate_frames` (dims ``(frame,
        q)``, ``intensity`` and ``sigma``); only the selected frame is computed when lazy.
    integrator : pyFAI AzimuthalIntegrator, optional
        Instead of ``profiles``: reduce only the selected frame with
        :func:`spotkit.scattering.integrate_1d` (``npt``, ``mask``).
    plan : ReductionPlan, optional
        From :func:`spotkit.change.reduction_policy`: each frame's label ("of interest" /
        "redundant") and whether it is kept.
    mask : array_like of bool, shape (y, x), optional
        True on invalid pixels (beside the negative gap pixels), for detection, change maps
        and integration.
    warmup : int
        Frames that make the reference (the mean of the first ``warmup`` frames), as given
        to ``detect_changes``: pass the same value when ``result`` was made with another.
    smooth : float
        Gaussian width of :func:`spotkit.change.change_map`, in pixels.
    npt : int
        Radial bins of on-demand integration.
    detect_options : dict, optional
        More keyword arguments for ``detect_changes`` when the result is computed here.

    Attributes
    ----------
    result : ChangeResult
    features : xarray.Dataset
    plan : ReductionPlan or None
    n_frames : int
    selected : int
        The selected frame (0 at first).

    Raises
    ------
    ValueError
        When the series is not ``(frame, y, x)``, or the result, features, profiles or
        plan have another number of frames than the series; when both ``profiles`` and
        ``integrator`` are given.

    Examples
    --------
    >>> from spotkit.io import open_saxs
    >>> from spotkit.scattering import load_geometry
    >>> from spotkit.sim import simulate_saxs_series
    >>> from spotkit.widgets import ChangeTimelineModel
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.h5"
    >>> truth = simulate_saxs_series(path, n_frames=40, onset_frame=25, seed=3)
    >>> frames = open_saxs(path)
    >>> model = ChangeTimelineModel(frames, integrator=load_geometry(
    ...     frames.attrs["poni_path"]))
    >>> model.onsets
    (25,)
    >>> model.next_onset()
    25
    >>> model.change_map(25).dims, model.profile(25).intensity.dims
    (('y', 'x'), ('q',))
    """

    def __init__(self, frames, *, result=None, features=None, profiles=None, integrator=None,
                 plan=None, mask=None, warmup: int = 8, smooth: float = 2.0, npt: int = 300,
                 detect_options: dict | None = None):
        self._data, self._times = _frames_array(frames)
        self.n_frames = int(self._data.shape[0])
        self.frame_shape = tuple(int(s) for s in self._data.shape[1:])
        if int(warmup) != warmup or not 3 <= warmup <= self.n_frames:
            raise ValueError(f"warmup must be an integer in 3 .. {self.n_frames} (the series' "
                             f"length), got {warmup!r}")
        if not smooth >= 0:
            raise ValueError(f"smooth must be >= 0, got {smooth!r}")
        if int(npt) != npt or npt < 2:
            raise ValueError(f"npt must be an integer >= 2, got {npt!r}")
        if profiles is not None and integrator is not None:
            raise ValueError("give profiles= (reduced I(q)) or integrator= (reduce on demand), "
                             "not both")
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != self.frame_shape:
                raise ValueError(f"mask shape {mask.shape} differs from the frame shape "
                                 f"{self.frame_shape}")
        self.mask = mask
        self.warmup, self.smooth, self.npt = int(warmup), float(smooth), int(npt)

        if result is None:
            from spotkit.change import detect_changes

            t0 = time.perf_counter()
            result = detect_changes(frames, mask=mask, warmup=self.warmup, smooth=self.smooth,
                                    **(detect_options or {}))
            logger.info("detected %d change(s) in %d frames in %.2f s", len(result.events),
                        self.n_frames, time.perf_counter() - t0)
        elif detect_options:
            raise ValueError("detect_options apply only when the result is computed here; "
                             "leave them out with result=")
        if not (hasattr(result, "events") and hasattr(result, "n_frames")):
            raise TypeError(f"result must be a spotkit.change.ChangeResult, not "
                            f"{type(result).__name__}")
        _check_length("the change result", int(result.n_frames), self.n_frames)
        self.result = result
        if features is None:
            features = result.features
        if not hasattr(features, "data_vars"):
            raise TypeError("features must be an xarray Dataset (spotkit.change.frame_features)"
                            f", not {type(features).__name__}")
        fdim = next(iter(features.dims), None)
        _check_length("the feature table", int(features.sizes[fdim]) if fdim else 0,
                      self.n_frames)
        self.features = features
        if profiles is not None:
            if not hasattr(profiles, "data_vars") or "intensity" not in profiles:
                raise TypeError("profiles must be an xarray Dataset with 'intensity' (and "
                                "'sigma'), as from spotkit.scattering.integrate_frames")
            pdim = profiles["intensity"].dims[0]
            _check_length("profiles", int(profiles.sizes[pdim]), self.n_frames)
        self.profiles = profiles
        self.integrator = integrator
        if plan is not None:
            if not hasattr(plan, "labels") or not hasattr(plan, "keep"):
                raise TypeError(f"plan must be a spotkit.change.ReductionPlan, not "
                                f"{type(plan).__name__}")
            _check_length("the reduction plan", int(plan.n_frames), self.n_frames)
        self.plan = plan
        self.selected = 0
        self._images = _LRU(_CACHE)
        self._maps = _LRU(_CACHE)
        self._profiles = _LRU(_CACHE)
        self._reference = None
        self._reference_profile = None

    def __repr__(self) -> str:
        return (f"<ChangeTimelineModel: {self.n_frames} frames of {self.frame_shape}, "
                f"onsets {list(self.onsets)}, frame {self.selected} selected>")

    # -- what was detected ----------------------------------------------------------------

    @property
    def onsets(self) -> tuple[int, ...]:
        """Onset frames of the detected changes, in order."""
        return tuple(int(o) for o in self.result.onsets)

    @property
    def events(self) -> tuple:
        """The detected :class:`~spotkit.change.ChangeEvent` objects, in order of onset."""
        return tuple(self.result.events)

    @property
    def feature_names(self) -> list[str]:
        """Names that :meth:`feature` accepts: the features, then ``"score"`` (the
        detection score)."""
        names = list(self.features.data_vars)
        if _SCORE not in names and getattr(self.result, "score", None) is not None:
            names.append(_SCORE)
        return names

    def feature(self, name: str) -> np.ndarray:
        """One feature (or the detection score) for every frame, as floats.

        Raises
        ------
        ValueError
            For an unknown name (the message lists :attr:`feature_names`).
        """
        if name not in self.feature_names:
            raise ValueError(f"unknown feature {name!r}; choose one of {self.feature_names}")
        if name in self.features.data_vars:
            return np.asarray(self.features[name].values, dtype=np.float64)
        return np.asarray(self.result.score.values, dtype=np.float64)

    def event_at(self, frame: int):
        """The :class:`~spotkit.change.ChangeEvent` whose ``onset..end`` holds ``frame``,
        or None."""
        frame = self._check_frame(frame)
        for event in self.result.events:
            if event.onset <= frame <= event.end:
                return event
        return None

    def describe(self, frame: int | None = None) -> dict:
        """What is known about a frame (default: the selected one), as plain values.

        Returns
        -------
        dict
            ``frame``, ``time`` (s, or None), ``features`` ({name: value}), ``flagged``
            (inside a change), ``event`` (``(onset, end, confidence)`` or None), ``label``
            and ``keep`` (from the plan, or None).
        """
        frame = self.selected if frame is None else self._check_frame(frame)
        event = self.event_at(frame)
        flagged = getattr(self.result, "flagged", None)
        return {
            "frame": frame,
            "time": None if self._times is None else float(self._times[frame]),
            "features": {n: float(self.feature(n)[frame]) for n in self.feature_names},
            "flagged": bool(flagged[frame]) if flagged is not None else event is not None,
            "event": None if event is None else (int(event.onset), int(event.end),
                                                 float(event.confidence)),
            "label": None if self.plan is None else str(self.plan.labels[frame]),
            "keep": None if self.plan is None else bool(self.plan.keep[frame]),
        }

    # -- selection ------------------------------------------------------------------------

    def _check_frame(self, frame) -> int:
        if isinstance(frame, bool) or not isinstance(frame, int | np.integer):
            raise TypeError(f"a frame is an integer index, not {frame!r}")
        if not 0 <= frame < self.n_frames:
            raise IndexError(f"frame {frame} is outside the series: choose 0 .. "
                             f"{self.n_frames - 1}")
        return int(frame)

    def select(self, frame: int) -> int:
        """Select a frame.

        Parameters
        ----------
        frame : int
            Index in ``0 .. n_frames - 1``.

        Returns
        -------
        int
            The selected frame.

        Raises
        ------
        IndexError
            Outside the series (the message names the range).
        TypeError
            Not an integer.
        """
        self.selected = self._check_frame(frame)
        return self.selected

    def next_onset(self) -> int | None:
        """Select the first onset after the selected frame; None (nothing moves) if none."""
        later = [o for o in self.onsets if o > self.selected]
        return self.select(later[0]) if later else None

    def previous_onset(self) -> int | None:
        """Select the last onset before the selected frame; None (nothing moves) if none."""
        earlier = [o for o in self.onsets if o < self.selected]
        return self.select(earlier[-1]) if earlier else None

    # -- the selected frame's panels ------------------------------------------------------

    def image(self, frame: int | None = None) -> np.ndarray:
        """A detector frame as an array (default: the selected one); read on demand."""
        frame = self.selected if frame is None else self._check_frame(frame)
        return self._images.get_or(frame, lambda: np.asarray(self._data[frame]))

    @property
    def reference(self) -> np.ndarray:
        """Mean of the first ``warmup`` frames (what the change maps compare with)."""
        if self._reference is None:
            stack = np.stack([np.asarray(self._data[k], dtype=np.float64)
                              for k in range(self.warmup)])
            self._reference = stack.mean(axis=0)
        return self._reference

    def change_map(self, frame: int | None = None):
        """Where a frame differs from the reference, in noise standard deviations.

        For a frame inside a detected change this is the event's own map
        (:attr:`ChangeEvent.change_map <spotkit.change.ChangeEvent>`: the mean over the
        change, on the detector's binned grid or in q); for any other frame it is
        :func:`spotkit.change.change_map` of the frame against :attr:`reference` (or, for a
        result on I(q) profiles, of its profile against the reference profile).

        Returns
        -------
        xarray.DataArray
            Dims ``(y, x)`` (or ``(q,)``); ``attrs["source"]`` says which map it is.
        """
        frame = self.selected if frame is None else self._check_frame(frame)
        return self._maps.get_or(frame, lambda: self._make_map(frame))

    def _make_map(self, frame: int):
        from spotkit.change import change_map

        event = self.event_at(frame)
        if event is not None and event.change_map is not None:
            m = event.change_map
            return m.assign_attrs(source=f"event {event.onset}..{event.end} "
                                         "(mean of its frames)")
        if getattr(self.result, "kind", "frames") == "profiles":
            prof = self.profile(frame)
            ref = self.reference_profile()
            if prof is None or ref is None:
                raise ValueError("the change result is on I(q) profiles: give profiles= or "
                                 "integrator= to see the change map of a frame outside it")
            rdim = prof["intensity"].dims[0]
            m = change_map(prof["intensity"].values, ref["intensity"].values,
                           sigma=prof["sigma"].values, reference_sigma=ref["sigma"].values,
                           smooth=0.0, coords={"q": prof[rdim].values})
        else:
            ny, nx = self.frame_shape
            m = change_map(self.image(frame), self.reference, smooth=self.smooth,
                           mask=self.mask, coords={"y": np.arange(ny), "x": np.arange(nx)})
        return m.assign_attrs(source=f"frame {frame} against the mean of frames "
                                     f"0..{self.warmup - 1}")

    @property
    def has_profiles(self) -> bool:
        """I(q) can be shown (profiles or an integrator were given)."""
        return self.profiles is not None or self.integrator is not None

    def profile(self, frame: int | None = None):
        """I(q) of a frame (default: the selected one), or None without profiles or
        integrator.

        Returns
        -------
        xarray.Dataset or None
            ``intensity`` and ``sigma`` on the radial dimension (``q``).
        """
        frame = self.selected if frame is None else self._check_frame(frame)
        if not self.has_profiles:
            return None
        return self._profiles.get_or(frame, lambda: self._make_profile(frame))

    def _make_profile(self, frame: int):
        if self.profiles is not None:
            dim = self.profiles["intensity"].dims[0]
            return self.profiles.isel({dim: frame}).compute()
        from spotkit.scattering import integrate_1d

        return integrate_1d(self.image(frame), self.integrator, npt=self.npt, mask=self.mask)

    def reference_profile(self):
        """Mean I(q) of the first ``warmup`` frames (``sigma`` of the mean), or None."""
        if not self.has_profiles:
            return None
        if self._reference_profile is None:
            profs = [self.profile(k) for k in range(self.warmup)]
            ref = profs[0].copy()
            ref["intensity"] = sum(p["intensity"] for p in profs) / len(profs)
            ref["sigma"] = np.sqrt(sum(p["sigma"] ** 2 for p in profs)) / len(profs)
            self._reference_profile = ref
        return self._reference_profile


# -- drawing ------------------------------------------------------------------------------


def _figure(width: float, height: float, dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig, *, freeze: bool = True) -> bytes:
    """The figure as PNG bytes. ``freeze``: after this first drawing, keep the layout (the
    constrained-layout solver is the slowest part of a redraw and the layout does not
    change from frame to frame)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None},
                pil_kwargs={"compress_level": 1})
    if freeze and fig.get_layout_engine() is not None:
        fig.set_layout_engine("none")
    return buf.getvalue()


class _Panels:
    """The matplotlib figures of the view, made once and updated in place."""

    def __init__(self, model: ChangeTimelineModel, *, cmap: str, map_cmap: str, dpi: int):
        from matplotlib import colormaps
        from matplotlib.colors import LogNorm, Normalize

        self.model = model
        self.dpi = dpi
        ny, nx = model.frame_shape
        aspect = ny / nx
        panel_w = 3.6
        img_h = max(1.6, min(3.6, panel_w * aspect + 0.9))

        # detector image: log scale, one grey range for every frame
        lo, hi = self._grey_range()
        self.image_fig = fig = _figure(panel_w, img_h, dpi)
        ax = fig.add_subplot()
        self.image_ax = ax
        grey = colormaps[cmap].with_extremes(bad="#d0d0ff")  # gaps and masked pixels
        self.image_art = ax.imshow(np.ones((ny, nx)), cmap=grey, origin="upper",
                                   norm=LogNorm(vmin=lo, vmax=hi, clip=True),
                                   interpolation="nearest")
        fig.colorbar(self.image_art, ax=ax, label="counts", shrink=0.8)
        self._tidy_image_axes(ax)

        # change map: diverging, symmetric, one range for every frame
        lim = self._map_range()
        self.map_fig = fig = _figure(panel_w, img_h, dpi)
        ax = fig.add_subplot()
        self.map_ax = ax
        self.map_norm = Normalize(vmin=-lim, vmax=lim)
        diverging = colormaps[map_cmap].with_extremes(bad="#e0e0e0")
        self.map_art = ax.imshow(np.zeros((ny, nx)), cmap=diverging, norm=self.map_norm,
                                 origin="upper", interpolation="nearest",
                                 extent=(-0.5, nx - 0.5, ny - 0.5, -0.5))
        fig.colorbar(self.map_art, ax=ax, label="change (noise σ)", shrink=0.8)
        self._tidy_image_axes(ax)
        self.map_line = None  # for maps in q (results on profiles)

        # I(q), log-log, with the reference
        self.profile_fig = fig = _figure(panel_w, img_h, dpi)
        ax = self.profile_ax = fig.add_subplot()
        ax.set_xscale("log")
        ax.set_yscale("log")
        (self.ref_line,) = ax.plot([], [], color="0.6", lw=1.2,
                                   label=f"reference (frames 0..{model.warmup - 1})")
        (self.profile_line,) = ax.plot([], [], color="tab:red", lw=1.2, label="frame")
        ax.tick_params(labelsize=7)
        ax.set_ylabel("I(q)", fontsize=8)
        self._profile_ready = False

        # timeline
        self.timeline_fig = fig = _figure(11.0, 2.6, dpi)
        self.timeline_ax = fig.add_subplot()
        self.current_line = None
        self._feature = None

    def _grey_range(self) -> tuple[float, float]:
        m = self.model
        parts = [m.reference]
        parts += [m.image(e.end).astype(np.float64) for e in m.events[:3]]
        valid = np.concatenate([p[p >= 0].ravel() if m.mask is None
                                else p[(p >= 0) & ~m.mask].ravel() for p in parts])
        pos = valid[valid > 0]
        if pos.size == 0:
            return 0.5, 1.0
        lo, hi = np.percentile(pos, [1, 99.9])
        lo = max(float(lo), 0.5)
        return lo, max(float(hi), 2 * lo)

    def _map_range(self) -> float:
        lim = 5.0
        for e in self.model.events:
            if e.change_map is not None:
                vals = np.abs(np.asarray(e.change_map.values, dtype=np.float64))
                if np.isfinite(vals).any():
                    lim = max(lim, float(np.nanpercentile(vals, 99.5)))
        return lim

    @staticmethod
    def _tidy_image_axes(ax) -> None:
        ax.tick_params(labelsize=7)
        ax.set_xlabel("x (px)", fontsize=8)
        ax.set_ylabel("y (px)", fontsize=8)

    # -- per frame --------------------------------------------------------------------------

    def image_png(self, frame: int) -> bytes:
        img = self.model.image(frame)
        shown = np.ma.masked_less(img.astype(np.float64), 0)
        if self.model.mask is not None:
            shown = np.ma.masked_where(self.model.mask, shown)
        shown = np.ma.maximum(shown, self.image_art.norm.vmin)
        self.image_art.set_data(shown)
        self.image_ax.set_title(f"frame {frame}", fontsize=9)
        return _png(self.image_fig)

    def map_png(self, frame: int) -> bytes:
        m = self.model.change_map(frame)
        ax = self.map_ax
        values = np.asarray(m.values, dtype=np.float64)
        if m.ndim == 2:
            ys = np.asarray(m[m.dims[0]].values) if m.dims[0] in m.coords else None
            xs = np.asarray(m[m.dims[1]].values) if m.dims[1] in m.coords else None
            ny, nx = values.shape
            if ys is not None and xs is not None and ny > 0 and nx > 0:
                dy = ys[1] - ys[0] if ny > 1 else 1.0
                dx = xs[1] - xs[0] if nx > 1 else 1.0
                extent = (xs[0] - dx / 2, xs[-1] + dx / 2, ys[-1] + dy / 2, ys[0] - dy / 2)
            else:
                extent = (-0.5, nx - 0.5, ny - 0.5, -0.5)
            self.map_art.set_data(np.ma.masked_invalid(values))
            self.map_art.set_extent(extent)
            self.map_art.set_visible(True)
            if self.map_line is not None:
                self.map_line.set_visible(False)
        else:  # a map in q
            q = np.asarray(m[m.dims[0]].values) if m.dims[0] in m.coords else \
                np.arange(values.size)
            self.map_art.set_visible(False)
            if self.map_line is None:
                (self.map_line,) = ax.plot(q, values, color="tab:purple", lw=1.2)
            self.map_line.set_data(q, values)
            self.map_line.set_visible(True)
            ax.set_xlim(float(np.nanmin(q)), float(np.nanmax(q)))
            lim = self.map_norm.vmax
            ax.set_ylim(-lim, lim)
            ax.set_aspect("auto")
            ax.set_xlabel(m.dims[0], fontsize=8)
        ax.set_title(str(m.attrs.get("source", f"frame {frame}")), fontsize=8)
        return _png(self.map_fig)

    def profile_png(self, frame: int) -> bytes | None:
        prof = self.model.profile(frame)
        if prof is None:
            return None
        ax = self.profile_ax
        rdim = prof["intensity"].dims[0]
        q = np.asarray(prof[rdim].values, dtype=np.float64)
        iq = np.asarray(prof["intensity"].values, dtype=np.float64)
        ok = np.isfinite(iq) & (iq > 0) & (q > 0)
        if not self._profile_ready:
            ref = self.model.reference_profile()
            rq = np.asarray(ref[rdim].values, dtype=np.float64)
            ri = np.asarray(ref["intensity"].values, dtype=np.float64)
            rok = np.isfinite(ri) & (ri > 0) & (rq > 0)
            self.ref_line.set_data(rq[rok], ri[rok])
            units = prof[rdim].attrs.get("units", "")
            ax.set_xlabel(f"{rdim} ({units})" if units else rdim, fontsize=8)
            ax.legend(fontsize=7, frameon=False, loc="upper right")
            self._ref_ylim = (float(ri[rok].min()), float(ri[rok].max())) if rok.any() \
                else (1.0, 10.0)
            self._profile_ready = True
        self.profile_line.set_data(q[ok], iq[ok])
        lo, hi = self._ref_ylim
        if ok.any():
            lo, hi = min(lo, float(iq[ok].min())), max(hi, float(iq[ok].max()))
            ax.set_xlim(float(q[ok].min()) * 0.95, float(q[ok].max()) * 1.05)
        ax.set_ylim(lo / 1.5, hi * 1.5)
        ax.set_title(f"I(q) of frame {frame}", fontsize=9)
        return _png(self.profile_fig)

    # -- timeline -----------------------------------------------------------------------------

    def draw_timeline(self, feature: str) -> None:
        """Redraw the timeline axes for a feature (not needed when only the frame moves)."""
        m = self.model
        ax = self.timeline_ax
        ax.clear()
        self.timeline_fig.set_layout_engine("constrained")  # the y label may be wider
        frames = np.arange(m.n_frames)
        values = m.feature(feature)
        if m.plan is not None:
            for a, b in m.plan.windows:
                ax.axvspan(a - 0.5, b + 0.5, color="tab:orange", alpha=0.15, lw=0)
            kept = np.flatnonzero(m.plan.keep)
            ax.plot(kept, np.full(kept.size, 0.02), "|", color="tab:green", ms=8,
                    transform=ax.get_xaxis_transform(), label="kept")
            ax.axvspan(np.nan, np.nan, color="tab:orange", alpha=0.15, lw=0,
                       label=f"of interest ({m.plan.reduction_factor:.1f}x reduction)")
        ax.plot(frames, values, ".-", color="0.25", lw=1, ms=3, label=feature)
        for i, event in enumerate(m.events):
            ax.axvline(event.onset, color="tab:blue", lw=1.2, ls="--",
                       label="onset" if i == 0 else None)
            ax.text(event.onset, 0.97, f" onset {event.onset} ({event.confidence:.2f})",
                    transform=ax.get_xaxis_transform(), va="top", ha="left", fontsize=7,
                    color="tab:blue")
        self.current_line = ax.axvline(m.selected, color="tab:red", lw=1.5, alpha=0.8,
                                       label="selected")
        ax.set_xlim(-0.5, m.n_frames - 0.5)
        ax.set_xlabel("frame", fontsize=8)
        ax.set_ylabel(feature, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0),
                  ncols=6, borderaxespad=0.2)
        self._feature = feature

    def timeline_png(self, feature: str, frame: int) -> bytes:
        if feature != self._feature:
            self.draw_timeline(feature)
        self.current_line.set_xdata([frame, frame])
        return _png(self.timeline_fig)


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
    >>> from spotkit.scattering import load_geometry
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
            first = model.events[0].feature if model.events else "difference"
            feature = first if first in names else names[0]
        if feature not in names:
            raise ValueError(f"unknown feature {feature!r}; choose one of {names}")
        if not isinstance(dpi, int) or dpi < 20:
            raise ValueError(f"dpi must be an integer >= 20, got {dpi!r}")
        model.select(frame)
        self._w = w
        self._panels = _Panels(model, cmap=cmap, map_cmap=map_cmap, dpi=dpi)
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
        for name in ("image", "map", "profile"):  # three side by side; narrow pages shrink them
            panel = w.Image(format="png", layout=w.Layout(max_width="33%", height="auto"))
            panel.add_class(f"spotkit-ct-{name}")
            setattr(self, name, panel)
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
