"""The plain-Python side of :class:`~spotkit.widgets.LiveTimeline`: a live series as it grows.

:class:`LiveTimelineModel` follows one series that ``spotkit live`` (:mod:`spotkit.live`) is
recording in the catalog. Each :meth:`~LiveTimelineModel.fetch` reads only what is new: the
:class:`~spotkit.catalog.LivePoint` rows recorded since the last read (per-frame features,
confirmed changes, model fits, decisions) and the series' live status; :meth:`ingest` adds
points to the growing arrays (a point read twice is counted once). The latest I(q) is read
from the series' :class:`~spotkit.live.ProfileLog` on demand. Nothing here imports ipywidgets
or matplotlib, so it is tested without a browser; the plots are drawn by
:mod:`spotkit.widgets._live_timeline_plots`, the widgets by
:mod:`spotkit.widgets._live_timeline`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from spotkit.widgets._live_timeline_poll import LiveUpdate, Poller, number, status_text, steady

logger = logging.getLogger(__name__)

__all__ = ["LiveTimelineModel", "LiveUpdate", "status_text"]

FEATURES = "features"
EVENT = "event"
DECISION = "decision"
FIT = "fit:"
_SCORE = "score"
#: feature values that are not features (the detector's own bookkeeping)
_NOT_FEATURES = frozenset({"state", "flagged", "index", "frame"})
#: seconds between two reads of the frame marks while no change comes
_MARKS_EVERY_S = 5.0
#: fitted amplitudes, listed after the sample's parameters
_AMPLITUDES = frozenset({"scale", "background"})
#: values of a fit point that are not fitted parameters
_NOT_PARAMETERS = frozenset({"chi2", "n_points", "q_unit", "frames", "fit_s", "elapsed_s",
                             "method"})


def _held(text: Any) -> dict[str, float | str]:
    """A fit point's ``fixed`` text (``"name=value;..."``) as parameters.

    Examples
    --------
    >>> _held("sld=1.0;sld_solvent=6.3;shape=sphere")
    {'sld': 1.0, 'sld_solvent': 6.3, 'shape': 'sphere'}
    """
    held: dict[str, float | str] = {}
    if not isinstance(text, str):
        return held
    for item in text.split(";"):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            continue
        try:
            held[name.strip()] = float(value)
        except ValueError:
            held[name.strip()] = value.strip()
    return held


class LiveTimelineModel:
    """A live series as it grows: features, onsets, flagged frames, fits, decisions, status.

    Nothing here touches a widget: :class:`~spotkit.widgets.LiveTimeline` draws it. Call
    :meth:`fetch` (or :meth:`start` a background poller) to read what is new; every value
    comes from the catalog (written by :mod:`spotkit.live`), nothing is computed again.

    Parameters
    ----------
    catalog : Catalog
        The catalog ``spotkit live`` records into (SQLite or PostgreSQL).
    dataset_id : str
        The live series.
    profile_log : ProfileLog or path-like, optional
        Where the series' I(q) rows are (:class:`spotkit.live.ProfileLog`); default: the
        one the live status names (``profile_log``), if any.
    max_decisions : int
        Decisions kept (the newest).

    Attributes
    ----------
    catalog
    dataset_id : str
    status : dict or None
        The live status read last.
    decisions : list of dict
        ``{"frame", "kind", **values}`` of each recorded decision (by frame).
    events : list of dict
        ``{"frame" (where confirmed), "onset", "end", "confidence", "feature", ...}`` of
        each confirmed change, by onset.
    latest_profile : xarray.Dataset or None
        I(q) of the newest frame (``intensity``, ``sigma``; attribute ``frame``).
    of_interest : ndarray of int
        Frames marked "of interest" in the catalog (:meth:`Catalog.mark_frames
        <spotkit.catalog.Catalog.mark_frames>`: the reduction policy's advice).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import LivePoint, open_catalog
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> model = LiveTimelineModel(cat, "series-1")
    >>> model.ingest([LivePoint(frame=k, kind="features", values={"difference": 1.0 + k,
    ...     "score": 0.5, "state": "watching"}) for k in range(3)])
    3
    >>> model.n_frames, model.feature("difference")[1]
    (3, array([1., 2., 3.]))
    >>> model.ingest([LivePoint(frame=5, kind="event", values={"onset": 2, "end": 4,
    ...     "confidence": 0.9, "feature": "difference"})])
    1
    >>> model.onsets
    (2,)
    >>> cat.close()
    """

    def __init__(self, catalog: Any, dataset_id: str, *, profile_log: Any = None,
                 max_decisions: int = 200):
        if not isinstance(dataset_id, str) or not dataset_id.strip():
            raise ValueError(f"dataset_id must be a dataset id (a non-empty string), not "
                             f"{dataset_id!r}")
        for method in ("live_points", "live_status"):
            if not callable(getattr(catalog, method, None)):
                raise TypeError(f"catalog must be a spotkit catalog with {method}() (from "
                                f"spotkit.open_catalog), not {type(catalog).__name__}")
        if int(max_decisions) != max_decisions or max_decisions < 1:
            raise ValueError(f"max_decisions must be an integer >= 1, got {max_decisions!r}")
        self.catalog = catalog
        self.dataset_id = dataset_id
        self.max_decisions = int(max_decisions)
        self._profile_log = profile_log
        self._own_log = False
        self._lock = threading.RLock()
        self._fetching = threading.Lock()
        self._seen: dict[tuple[int, str], dict] = {}  # the values of each (frame, kind)
        # features, frame by frame (in frame order; a late frame is inserted)
        self._frames: list[int] = []
        self._values: dict[str, list[float]] = {}
        self._states: list[str | None] = []
        self._flags: list[bool] = []
        self.events: list[dict] = []
        self._fits: dict[str, dict[int, dict[str, Any]]] = {}
        self.decisions: list[dict] = []
        self.status: dict | None = None
        self._subscription: Any = None  # spotkit.live.subscribe, made at the first fetch
        self.version = 0  # bumped whenever something new came
        self.latest_profile: Any = None  # I(q) of the newest frame, read by fetch
        #: frames marked "of interest" in the catalog (Catalog.mark_frames), read by fetch
        self.of_interest = np.empty(0, dtype=np.int64)
        self._marks_at = -math.inf
        self._profile_frame: int | None = None
        self._poller: Poller | None = None

    def __repr__(self) -> str:
        return (f"<LiveTimelineModel {self.dataset_id}: {len(self._frames)} frames, onsets "
                f"{list(self.onsets)}, fits {self.fit_models}>")

    # -- reading --------------------------------------------------------------------------

    def fetch(self) -> LiveUpdate:
        """Read what is new since the last fetch: the points recorded meanwhile (one query
        through :func:`spotkit.live.subscribe`), the live status, and when a newer frame
        came its I(q) (:attr:`latest_profile`).

        Returns
        -------
        LiveUpdate
        """
        with self._fetching:  # one fetch at a time (the poller's and a caller's)
            return self._fetch()

    def _fetch(self) -> LiveUpdate:
        t0 = time.perf_counter()
        with self._lock:
            version = self.version
            if self._subscription is None:
                from spotkit.live import subscribe

                # on PostgreSQL it listens: the poller wakes when points are recorded
                self._subscription = subscribe(self.catalog, self.dataset_id)
            subscription = self._subscription
        # every point recorded since the last poll, once, in the order recorded (a fit
        # about an earlier frame too, and a point recorded again with its new values)
        points = subscription.poll()
        status = self.catalog.live_status(self.dataset_id)
        with self._lock:
            new, kinds = self._ingest(points)
            if steady(status) != steady(self.status):
                if not new:
                    self.version += 1
            self.status = status
            last = self.last_frame
        if last is not None and last != self._profile_frame:
            self._read_profile(last)
        if new:
            self._read_marks(urgent=EVENT in {k.partition(":")[0] for k in kinds})
        return LiveUpdate(new=new, changed=self.version != version, kinds=frozenset(kinds),
                          status=status, at=time.time(), seconds=time.perf_counter() - t0)

    def ingest(self, points: Iterable[Any]) -> int:
        """Add points (:class:`~spotkit.catalog.LivePoint`). A point of a (frame, kind)
        seen before replaces it (a fit done again); the same values again are skipped.

        Returns
        -------
        int
            How many were new or changed.
        """
        with self._lock:
            return self._ingest(points)[0]

    def _ingest(self, points: Iterable[Any]) -> tuple[int, set[str]]:
        new = 0
        kinds: set[str] = set()
        for p in points:
            frame, kind = int(p.frame), str(p.kind)
            key = (frame, kind)
            values = dict(p.values or {})
            again = key in self._seen
            if again and self._seen[key] == values:
                continue
            self._seen[key] = values
            family, _, name = kind.partition(":")
            if kind == FEATURES:
                self._add_features(frame, values, replace=again)
            elif family == EVENT:
                self.events = [e for e in self.events if e["frame"] != frame]
                self._add_event(frame, values)
            elif family == "fit" and name:
                self._fits.setdefault(name, {})[frame] = values
            elif family == DECISION:
                self.decisions = [d for d in self.decisions
                                  if (d["frame"], d["kind"]) != key]
                self.decisions.append({"frame": frame, "kind": kind, **values})
                self.decisions.sort(key=lambda d: d["frame"])
                del self.decisions[:-self.max_decisions]
            else:
                logger.debug("live timeline: point kind %r not shown", kind)
            new += 1
            kinds.add(kind)
        if new:
            self.version += 1
        return new, kinds

    def _add_features(self, frame: int, values: dict, *, replace: bool = False) -> None:
        if replace:  # recorded again: drop the old row first
            i = int(np.searchsorted(self._frames, frame))
            if i < len(self._frames) and self._frames[i] == frame:
                for column in self._values.values():
                    del column[i]
                del self._states[i], self._flags[i], self._frames[i]
        at = len(self._frames)
        if self._frames and frame < self._frames[-1]:  # late: keep the frames in order
            at = int(np.searchsorted(self._frames, frame))
        n = len(self._frames)
        for name, value in values.items():
            if name in _NOT_FEATURES or isinstance(value, str | bool) or (
                    value is None and name not in self._values):
                continue
            if name not in self._values:  # a feature seen first now: nan before
                self._values[name] = [math.nan] * n
        for name, column in self._values.items():
            column.insert(at, number(values.get(name)))
        state = values.get("state")
        self._states.insert(at, None if state is None else str(state))
        flagged = values.get("flagged")
        self._flags.insert(at, bool(flagged) if flagged is not None
                           else state in ("alarm", "flagged"))
        self._frames.insert(at, frame)

    def _add_event(self, frame: int, values: dict) -> None:
        onset = values.get("onset")
        event = {"frame": frame, "onset": int(onset) if onset is not None else frame,
                 "end": int(values["end"]) if values.get("end") is not None else None,
                 "confidence": number(values.get("confidence")),
                 "feature": values.get("feature")}
        event.update({k: v for k, v in values.items() if k not in event})
        self.events.append(event)
        self.events.sort(key=lambda e: e["onset"])

    # -- features -------------------------------------------------------------------------

    @property
    def frames(self) -> np.ndarray:
        """Frames with features, in order."""
        with self._lock:
            return np.asarray(self._frames, dtype=np.int64)

    @property
    def n_frames(self) -> int:
        """Newest frame with features + 1 (0 before the first)."""
        with self._lock:
            return self._frames[-1] + 1 if self._frames else 0

    @property
    def last_frame(self) -> int | None:
        """The newest frame with features, or None."""
        with self._lock:
            return self._frames[-1] if self._frames else None

    @property
    def feature_names(self) -> list[str]:
        """Names :meth:`feature` accepts (``"score"``, the detection score, last)."""
        with self._lock:
            names = [n for n in self._values if n != _SCORE]
            return [*names, _SCORE] if _SCORE in self._values else names

    @property
    def default_feature(self) -> str | None:
        """The feature to show first: the first change's feature, else ``"difference"``,
        else the first one (None before any)."""
        names = self.feature_names
        for name in [e.get("feature") for e in self.events] + ["difference"]:
            if name in names:
                return name
        return names[0] if names else None

    def feature(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(frames, values)`` of one feature (nan where a frame lacks it).

        Raises
        ------
        ValueError
            For an unknown name (the message lists :attr:`feature_names`).
        """
        with self._lock:
            if name not in self._values:
                raise ValueError(f"unknown feature {name!r}; choose one of "
                                 f"{self.feature_names or '(none recorded yet)'}")
            return (np.asarray(self._frames, dtype=np.int64),
                    np.asarray(self._values[name], dtype=np.float64))

    @property
    def flagged(self) -> np.ndarray:
        """Frames the detector flagged (inside a suspected or confirmed change)."""
        with self._lock:
            return np.asarray([f for f, flag in zip(self._frames, self._flags, strict=True)
                               if flag], dtype=np.int64)

    def state(self, frame: int) -> str | None:
        """The detector's state at a frame (``"warmup"``, ``"watching"``...), or None."""
        with self._lock:
            i = int(np.searchsorted(self._frames, frame))
            if i < len(self._frames) and self._frames[i] == frame:
                return self._states[i]
            return None

    @property
    def onsets(self) -> tuple[int, ...]:
        """Onset frames of the confirmed changes, in order."""
        with self._lock:
            return tuple(e["onset"] for e in self.events)

    # -- fits -----------------------------------------------------------------------------

    @property
    def fit_models(self) -> list[str]:
        """Models with recorded fits (``"sphere"`` for points of kind ``"fit:sphere"``)."""
        with self._lock:
            return sorted(self._fits)

    def fit_parameters(self, model: str) -> list[str]:
        """The fitted parameters of a model: those with ``<name>_err`` first, the sample's
        (``radius``...) before ``scale`` and ``background``; not ``chi2``, ``n_points`` or
        the ``*_err`` columns themselves."""
        fits = self._model_fits(model)
        names: dict[str, None] = {}
        for values in fits.values():
            for k, v in values.items():
                if k.endswith("_err") or k in _NOT_PARAMETERS or \
                        isinstance(v, str | bool) or v is None:
                    continue
                names[k] = None
        fitted = {k for k in names if any(f"{k}_err" in v for v in fits.values())}
        # the sample's parameters first (radius...), then the amplitudes, then fixed ones
        return sorted(names, key=lambda k: (k not in fitted, k in _AMPLITUDES))

    def _model_fits(self, model: str) -> dict[int, dict[str, Any]]:
        with self._lock:
            if model not in self._fits:
                raise ValueError(f"no fits of model {model!r} recorded; models with fits: "
                                 f"{self.fit_models or '(none yet)'}")
            return dict(self._fits[model])

    def fit(self, model: str, parameter: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(frames, values, errors)`` of one fitted parameter (errors nan when unknown).

        Raises
        ------
        ValueError
            For a model without fits or an unknown parameter (the message lists them).
        """
        fits = self._model_fits(model)
        names = self.fit_parameters(model)
        if parameter not in names and parameter != "chi2":
            raise ValueError(f"unknown parameter {parameter!r} of model {model!r}; choose one "
                             f"of {names}")
        frames = sorted(fits)
        return (np.asarray(frames, dtype=np.int64),
                np.asarray([number(fits[f].get(parameter)) for f in frames]),
                np.asarray([number(fits[f].get(f"{parameter}_err")) for f in frames]))

    def latest_fit(self, model: str | None = None, *, until: int | None = None,
                   ) -> tuple[str, int, dict] | None:
        """``(model, frame, values)`` of the newest fit (of ``model``, or of any; with
        ``until``, of a frame <= ``until``), or None."""
        with self._lock:
            best: tuple[str, int, dict] | None = None
            for name, fits in self._fits.items():
                frames = [f for f in fits if until is None or f <= until]
                if (model is not None and name != model) or not frames:
                    continue
                frame = max(frames)
                if best is None or frame > best[1]:
                    best = (name, frame, dict(fits[frame]))
            return best

    # -- status and I(q) ------------------------------------------------------------------

    def status_text(self, *, now: float | None = None) -> str:
        """The status line (:func:`status_text`)."""
        return status_text(self.status, last_frame=self.last_frame, now=now)

    @property
    def behind(self) -> int | None:
        """Frames written but not done yet (from the status), or None."""
        status = self.status or {}
        return None if status.get("behind") is None else int(status["behind"])

    def _log(self) -> Any:
        """The series' ProfileLog opened to read (None while it does not exist)."""
        log = self._profile_log
        if log is not None and hasattr(log, "read"):
            return log
        from spotkit.live import ProfileLog, profile_log_path

        path = log or (self.status or {}).get("profile_log") or profile_log_path(
            self.catalog, self.dataset_id)
        if not Path(path).exists():
            return None
        self._profile_log = ProfileLog.open(path)
        self._own_log = True  # opened here: closed by close()
        return self._profile_log

    def profile(self, frame: int | None = None) -> Any:
        """I(q) of a frame (default: the newest with features) read from the series'
        ProfileLog now, as an xarray Dataset (``intensity``, ``sigma`` on ``q``; attribute
        ``frame``), or None when the series has no ProfileLog or the frame is not in it.
        :meth:`fetch` keeps the newest one in :attr:`latest_profile`."""
        frame = self.last_frame if frame is None else int(frame)
        if frame is None:
            return None
        try:
            log = self._log()
            if log is None:
                return None
            ds = log.read(frames=[frame])
        except (KeyError, IndexError, ValueError, OSError) as exc:
            logger.debug("live timeline: no I(q) of frame %s: %s", frame, exc)
            return None
        fdim = "frame" if "frame" in ds.dims else None
        if fdim is not None:
            if ds.sizes[fdim] == 0:
                return None
            ds = ds.isel({fdim: -1})
        return ds.assign_attrs(frame=frame)

    def _read_marks(self, *, urgent: bool) -> None:
        """The frames marked "of interest" (the reduction policy's advice, marked as the
        series goes): read again after a change came, else at most every few seconds."""
        now = time.monotonic()
        if not urgent and now - self._marks_at < _MARKS_EVERY_S:
            return
        self._marks_at = now
        rows = self.catalog.frame_marks(self.dataset_id, label="of interest")
        frames = np.asarray(sorted(int(r["frame"]) for r in rows), dtype=np.int64)
        with self._lock:
            if not np.array_equal(frames, self.of_interest):
                self.of_interest = frames
                self.version += 1

    def _read_profile(self, frame: int) -> None:
        profile = self.profile(frame)
        if profile is None and hasattr(self._profile_log, "read"):
            return  # not flushed into the log yet: again at the next fetch
        with self._lock:
            changed = profile is not None or self.latest_profile is not None
            self.latest_profile = profile
            self._profile_frame = frame
            if changed:
                self.version += 1

    def fit_curve(self, profile: Any, latest: tuple[str, int, dict] | None,
                  ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(q, I)`` of a recorded fit (:meth:`latest_fit`) on a profile's q, or None when
        it cannot be evaluated (no profile, no fit, or a model :mod:`spotkit.scattering`
        does not know)."""
        if profile is None or latest is None:
            return None
        from spotkit.scattering import sas_model_curve

        model, _, values = latest
        rdim = profile["intensity"].dims[0]
        q = np.asarray(profile[rdim].values, dtype=np.float64)
        q_unit = str(values.get("q_unit") or "nm^-1")
        params: dict[str, float | str] = {
            k: float(v) for k, v in values.items() if k not in _NOT_PARAMETERS
            and not k.endswith("_err") and isinstance(v, int | float)
            and not isinstance(v, bool)}
        params.update(_held(values.get("fixed")))  # the parameters the fit held
        try:
            return q, np.asarray(sas_model_curve(q, model=model, q_unit=q_unit,
                                                 params=params), dtype=np.float64)
        except (ValueError, KeyError, TypeError, ImportError) as exc:
            logger.info("live timeline: cannot draw the %s fit: %s", model, exc)
            return None

    # -- background polling ----------------------------------------------------------------

    def start(self, on_update: Callable[[LiveUpdate], Any] | None = None, *,
              interval: float = 0.5, on_error: Callable[[str], Any] | None = None) -> None:
        """Poll in a daemon thread every ``interval`` seconds (on a PostgreSQL catalog:
        as soon as points are recorded, else at the subscription's safety-net interval;
        see :meth:`sleep`); ``on_update(update)`` (:class:`LiveUpdate`) is called there
        after each fetch (it may return the seconds after which to poll again, if
        sooner), ``on_error(message)`` after a fetch that failed (tried again after a
        growing pause). Never blocks the caller."""
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        if self._poller is not None and self._poller.running:
            self._poller.interval = float(interval)
            self._poller.on_update, self._poller.on_error = on_update, on_error
            return
        self._poller = Poller(self, on_update, float(interval), on_error)
        self._poller.start()

    def sleep(self, seconds: float, stop: threading.Event, *, idle: bool = True) -> None:
        """Wait before the next background fetch: ``seconds``, or until ``stop`` is set
        (then :meth:`wake` ends the wait).

        On a PostgreSQL catalog, where the subscription listens
        (:func:`spotkit.live.subscribe`), the wait ends as soon as a notification says
        the series got points, and an ``idle`` wait (not a retry, nor a sooner one asked
        by the view) lasts up to the subscription's safety-net interval instead: the
        catalog is then read when something came, not every ``seconds``.
        """
        subscription = self._subscription
        if subscription is None or not subscription.listening:
            stop.wait(seconds)
        elif not stop.is_set():
            subscription.sleep(max(seconds, subscription.interval) if idle else seconds)

    def wake(self) -> None:
        """End a background :meth:`sleep` on the subscription now (the poller stops)."""
        subscription = self._subscription
        if subscription is not None:
            subscription.wake()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the background poller (what was read stays)."""
        if self._poller is not None:
            self._poller.stop(timeout)

    def close(self) -> None:
        """Stop polling and let go of the subscription and the ProfileLog reader."""
        self.stop()
        with self._fetching, self._lock:
            subscription, self._subscription = self._subscription, None
            log = self._profile_log
        if subscription is not None:
            subscription.close()
        if log is not None and self._own_log:
            log.close()
            self._profile_log, self._own_log = None, False

    @property
    def running(self) -> bool:
        """The background poller runs."""
        return self._poller is not None and self._poller.running

    @property
    def error(self) -> str | None:
        """Why the last background fetch failed (None when it worked)."""
        return None if self._poller is None else self._poller.error

    def wait(self, condition: Callable[[LiveTimelineModel], bool], timeout: float = 30.0,
             ) -> bool:
        """Wait (for scripts and tests) until ``condition(model)`` holds; False on timeout.
        Polls itself when no background poller runs."""
        end = time.monotonic() + timeout
        while True:
            if not self.running:
                self.fetch()
            if condition(self):
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)
