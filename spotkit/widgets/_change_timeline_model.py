"""The plain-Python side of :class:`~spotkit.widgets.ChangeTimeline`: series, onsets, maps.

:class:`ChangeTimelineModel` holds a frame series, its :class:`~spotkit.change.ChangeResult`
(features, onsets, change maps), optional I(q) profiles (or a pyFAI integrator to reduce
the selected frame on demand) and an optional :class:`~spotkit.change.ReductionPlan`, and a
selected frame. It imports neither ipywidgets nor matplotlib, so it is tested without a
browser: every number comes from :mod:`spotkit.change` and :mod:`spotkit.scattering`;
nothing is re-implemented here. The plots are drawn by
:mod:`spotkit.widgets._change_timeline_plots`, the widgets by
:mod:`spotkit.widgets._change_timeline`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["ChangeTimelineModel"]

_SCORE = "score"  # the detection score, offered beside the features
_CACHE = 16  # frames whose image, map and profile are kept


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
    >>> from spotkit.io import load_geometry
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
        self._reference: np.ndarray | None = None
        self._reference_profile: Any = None

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
    def default_feature(self) -> str:
        """The feature to show first: the one the first change was detected on (without
        a change: ``"difference"``); when that is not a per-frame feature (a band feature
        of the detector), the first of :attr:`feature_names`."""
        names = self.feature_names
        first = self.events[0].feature if self.events else "difference"
        return first if first in names else names[0]

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
