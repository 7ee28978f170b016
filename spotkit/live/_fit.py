"""Live model fits: fit the newest I(q) of a series being written and record the result.

:func:`fit_latest` reads the series' :class:`~spotkit.live.ProfileLog` (the I(q) rows
``spotkit live`` appends), fits a sasmodels model with :func:`spotkit.scattering.fit_sas`
and records the parameters, their uncertainties and chi2 as a ``fit:<model>`` point on the
frame it fitted, where the live timeline and the portal show it beside the frame's
features. :func:`follow_fits` does it every N frames while the series is written (a
rule's ``fit`` action, or ``notebooks/saxs_fit.ipynb`` run as a batch job on any target).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from spotkit.catalog import LivePoint
from spotkit.errors import InputFileError
from spotkit.live._store import ProfileLog, profile_log_path
from spotkit.scattering import SasFit, fit_sas

__all__ = ["fit_latest", "follow_fits"]

logger = logging.getLogger(__name__)

#: ProfileLog axis units -> fit_sas's q units
_UNITS = {None: "nm^-1", "": "nm^-1", "nm^-1": "nm^-1", "q_nm^-1": "nm^-1", "1/nm": "nm^-1",
          "A^-1": "A^-1", "q_A^-1": "A^-1", "1/A": "A^-1", "Å^-1": "A^-1"}


def _catalog(catalog: Any) -> tuple[Any, bool]:
    if isinstance(catalog, str | os.PathLike):
        from spotkit.catalog import open_catalog

        return open_catalog(catalog, create=False), True
    if not callable(getattr(catalog, "record_live", None)):
        raise TypeError(f"catalog must be a spotkit Catalog (open_catalog) or its path, "
                        f"not {type(catalog).__name__}")
    return catalog, False


def _open_log(catalog: Any, dataset_id: str, profile_log: Any) -> tuple[ProfileLog, bool]:
    if isinstance(profile_log, ProfileLog):
        return profile_log, False
    path = profile_log_path(catalog, dataset_id) if profile_log is None else profile_log
    if not os.path.exists(path):
        raise InputFileError(path, f"no profile log for series {dataset_id!r}",
                             hint="Run `spotkit live` on the series (it writes the I(q) rows "
                                  "there), or pass profile_log= the ProfileLog file.")
    return ProfileLog.open(path), True


def _profile(log: ProfileLog, frames: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                    list[int]]:
    """q, mean intensity and its sigma over ``frames`` (None: the newest row)."""
    if frames is None:
        data = log.read(last=1)
        if data.sizes["frame"] == 0:
            raise InputFileError(log.path, "the profile log has no rows yet",
                                 hint="Wait for `spotkit live` to reduce a frame.")
    elif isinstance(frames, tuple) and len(frames) == 2:  # a window (first, last), inclusive
        first, last = (int(f) for f in frames)
        log.refresh()
        have = log.frames
        inside = have[(have >= first) & (have <= last)]
        if inside.size == 0:
            present = f"{have[0]}..{have[-1]}" if have.size else "none"
            raise KeyError(f"no frame of the window ({first}, {last}) in profile log "
                           f"{log.path}; frames there: {present}")
        data = log.read(frames=inside)
    else:
        if isinstance(frames, int | np.integer):
            frames = [int(frames)]
        data = log.read(frames=list(frames))
        if data.sizes["frame"] == 0:
            raise ValueError("frames is empty: give a frame index or a list of them")
    used = [int(f) for f in data["frame"].values]
    intensity = data["intensity"].values
    sigma = data["sigma"].values
    n = intensity.shape[0]
    mean = intensity.mean(axis=0)
    # the mean of n rows: errors add in quadrature; rows written without sigma have NaN
    err = None if np.all(np.isnan(sigma)) else np.sqrt(np.sum(sigma**2, axis=0)) / n
    return np.asarray(data[log.dim].values, dtype=np.float64), mean, err, used


def fit_latest(catalog: Any, dataset_id: Any, *, model: str = "sphere", frames: Any = None,
               profile_log: Any = None, record: bool = True, q_unit: str | None = None,
               **fit_options: Any) -> SasFit:
    """Fit a model to the newest I(q) of a live series and record the result on its frame.

    Parameters
    ----------
    catalog : Catalog or path-like
        The catalog ``spotkit live`` records the series into.
    dataset_id : str or Dataset
        The series.
    model : str
        A model of :data:`spotkit.scattering.SAS_MODELS` (``"sphere"``, ``"broad_peak"``...).
    frames : int, (int, int) or list of int, optional
        The frame to fit; a tuple ``(first, last)``: the window of frames (inclusive) whose
        rows are in the log, as a live rule passes it; a list (or range, array): these
        frames. Several frames: their mean I(q) is fitted (errors added in quadrature).
        Default: the newest row of the profile log.
    profile_log : path-like or ProfileLog, optional
        Where the I(q) rows are; default :func:`~spotkit.live.profile_log_path`.
    record : bool
        Record a :class:`~spotkit.catalog.LivePoint` of kind ``"fit:<model>"`` on the last
        (highest) frame fitted: the free parameters, ``"<name>_err"``, ``"chi2"``, ``"n_points"``,
        ``"q_unit"``, ``"frames"`` (how many were averaged; ``"window"``: ``"first-last"``
        when more than one), ``"fixed"`` (the held parameters as ``"name=value;..."``, in
        the same units: with the free ones, :func:`~spotkit.scattering.sas_model_curve`
        gives the fitted curve), ``"fit_s"`` (seconds) and, when the fit has any, its
        ``"notes"`` (a bound reached, a parameter the data do not determine...). The frame's
        time and written time are those of its ``features`` point.
    q_unit : str, optional
        Unit of the log's radial axis when the log does not say (spotkit writes nm^-1).
    **fit_options
        Passed to :func:`spotkit.scattering.fit_sas` (``params``, ``free``, ``bounds``,
        ``q_range``, ``method``...).

    Returns
    -------
    SasFit
        Lengths in nm when the log's q is in nm^-1 (:attr:`SasFit.units`).

    Raises
    ------
    InputFileError
        No profile log, or no row in it yet.
    KeyError
        A frame that is not in the log.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.live import ProfileLog, fit_latest, profile_log_path
    >>> from spotkit.scattering import sas_model_curve
    >>> from spotkit.sim import simulate_saxs_series
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> cat = open_catalog(work / "catalog.db")
    >>> series = cat.ingest(simulate_saxs_series(work / "s.h5", n_frames=2, seed=1).path)
    >>> q = np.linspace(0.05, 3.0, 200)
    >>> with ProfileLog(profile_log_path(cat, series.id), q, unit="nm^-1") as log:
    ...     for frame, radius in enumerate([4.0, 4.5]):
    ...         i = sas_model_curve(q, model="sphere", params={"radius": radius, "scale": 0.01})
    ...         log.append(frame, i, 0.01 * i)
    >>> fit = fit_latest(cat, series.id, model="sphere")
    >>> round(fit.params["radius"], 3)
    4.5
    >>> point = cat.live_points(series.id, kinds="fit")[-1]
    >>> point.frame, point.kind, round(point.values["radius"], 3)
    (1, 'fit:sphere', 4.5)
    """
    t0 = time.perf_counter()
    cat, owned = _catalog(catalog)
    try:
        ds_id: str = getattr(dataset_id, "id", dataset_id)
        if ds_id not in cat:
            from spotkit.errors import DatasetNotFoundError

            raise DatasetNotFoundError(ds_id, getattr(cat, "url", None))
        log, log_owned = _open_log(cat, ds_id, profile_log)
        try:
            if log.dim != "q":
                raise InputFileError(log.path, f"the profile log's axis is {log.dim!r}, not q",
                                     hint="Model fits need I(q): reduce the frames to q "
                                          "(unit 'q_nm^-1', spotkit's default).")
            unit = q_unit or _UNITS.get(log.unit, log.unit) or "nm^-1"
            q, intensity, sigma, used = _profile(log, frames)
        finally:
            if log_owned:
                log.close()
        fit = fit_sas(q, intensity, sigma, model=model, q_unit=unit, **fit_options)
        if record:
            _record(cat, ds_id, fit, used, time.perf_counter() - t0)
        logger.info("fit_latest %s frame %d: %s", ds_id, max(used), fit.summary())
        return fit
    finally:
        if owned:
            cat.close()


def _record(cat: Any, ds_id: str, fit: SasFit, used: list[int], elapsed: float) -> None:
    frame = max(used)
    values = fit.values()
    values["frames"] = float(len(used))
    if len(used) > 1:
        values["window"] = f"{min(used)}-{max(used)}"
    held = {k: v for k, v in fit.params.items() if k not in fit.free}
    if held:  # what the curve also needs (a text: readers plotting numbers skip it)
        values["fixed"] = ";".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in sorted(held.items()))
    values["fit_s"] = round(elapsed, 4)
    warnings = [n for n in fit.notes if not n.startswith(("q converted", "q in A^-1"))]
    if warnings:  # a bound reached, an undetermined parameter, relative weights...
        values["notes"] = "; ".join(warnings)
    features = cat.live_points(ds_id, since=frame - 1, kinds="features", limit=1)
    same = [p for p in features if p.frame == frame]
    time_s = same[0].time_s if same else None
    written_at = same[0].written_at if same else None
    cat.record_live(ds_id, [LivePoint(frame, f"fit:{fit.model}", values, time_s=time_s,
                                      written_at=written_at)])


def follow_fits(catalog: Any, dataset_id: Any, *, model: str = "sphere", every: int = 10,
                window: int = 1, profile_log: Any = None, interval: float = 0.5,
                idle_timeout: float | None = None, max_fits: int | None = None,
                stop: Any = None,
                fit_options: Mapping[str, Any] | None = None) -> Iterator[SasFit]:
    """Fit every ``every`` frames while a series is written; yield each fit (recorded).

    The newest ``window`` frames are averaged and fitted each time the series' newest
    ``features`` point is ``every`` frames past the last fit (the first fit comes at the
    first frame). It ends when the series ends (its live status), after ``max_fits``
    fits, after ``idle_timeout`` seconds without a new frame, or when ``stop`` is set. A fit
    that fails is logged and skipped; the next frames are fitted.

    Parameters
    ----------
    catalog : Catalog or path-like
    dataset_id : str or Dataset
    model : str
        A model of :data:`spotkit.scattering.SAS_MODELS`.
    every : int
        Frames between fits (>= 1).
    window : int
        Frames averaged per fit (>= 1).
    profile_log : path-like, optional
        Default :func:`~spotkit.live.profile_log_path`.
    interval : float
        Seconds between polls of the catalog (on PostgreSQL the wait ends early when the
        series' next point is NOTIFYed: :func:`spotkit.live.subscribe`).
    idle_timeout : float, optional
        Stop after this long without a new frame.
    max_fits : int, optional
        Stop after this many fits.
    stop : threading.Event, optional
        Set it (from another thread) to stop following.
    fit_options : dict, optional
        Passed to :func:`spotkit.scattering.fit_sas`.

    Yields
    ------
    SasFit

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from spotkit.catalog import LivePoint, open_catalog
    >>> from spotkit.live import ProfileLog, follow_fits, profile_log_path
    >>> from spotkit.scattering import sas_model_curve
    >>> from spotkit.sim import simulate_saxs_series
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> cat = open_catalog(work / "catalog.db")
    >>> series = cat.ingest(simulate_saxs_series(work / "s.h5", n_frames=2, seed=1).path)
    >>> q = np.linspace(0.05, 3.0, 200)
    >>> with ProfileLog(profile_log_path(cat, series.id), q, unit="nm^-1") as log:
    ...     for frame in range(5):  # what spotkit live records for each frame
    ...         i = sas_model_curve(q, model="sphere", params={"radius": 4.0 + 0.1 * frame})
    ...         log.append(frame, i, 0.01 * i)
    ...         _ = cat.record_live(series.id, [LivePoint(frame, "features", {})])
    >>> _ = cat.set_live_status(series.id, state="finished")  # written already: one fit
    >>> [round(f.params["radius"], 2) for f in follow_fits(cat, series.id, every=2)]
    [4.4]
    >>> [(p.frame, p.kind) for p in cat.live_points(series.id, kinds="fit")]
    [(4, 'fit:sphere')]
    """
    from spotkit.live._subscribe import subscribe

    for name, value in (("every", every), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    cat, owned = _catalog(catalog)
    ds_id: str = getattr(dataset_id, "id", dataset_id)
    done = 0
    last_fit = -1
    newest = -1
    idle_since = time.monotonic()
    try:
        with subscribe(cat, ds_id, kinds="features", interval=interval) as sub:
            while (max_fits is None or done < max_fits) and not (stop is not None
                                                                 and stop.is_set()):
                ended = sub.ended()  # before polling: what came before the end is all there
                points = sub.poll()
                if points:
                    newest = max(newest, max(p.frame for p in points))
                    idle_since = time.monotonic()
                due = newest >= 0 and (last_fit < 0 or newest - last_fit >= every)
                final = ended and not points and newest > last_fit  # the last frames
                if due or final:
                    fit = _fit_window(cat, ds_id, model, profile_log, newest, window,
                                      fit_options)
                    last_fit = newest
                    if fit is not None:
                        done += 1
                        yield fit
                    continue
                if ended and not points:
                    return
                if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
                    return
                _wait(sub, interval, stop)
    finally:
        if owned:
            cat.close()


def _wait(sub: Any, seconds: float, stop: Any) -> None:
    """Wait ``seconds`` before the next poll: on a PostgreSQL catalog, where the subscription
    listens, until the series' next point is NOTIFYed (a fit comes at the frame's commit, not
    at the next poll); ``stop`` ends the wait within 0.1 s there, at once elsewhere."""
    if stop is None:
        sub.sleep(seconds)
        return
    if not sub.listening:
        stop.wait(seconds)
        return
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0 or sub.sleep(min(left, 0.1)):
            return


def _fit_window(cat: Any, ds_id: str, model: str, profile_log: Any, newest: int, window: int,
                fit_options: Mapping[str, Any] | None) -> SasFit | None:
    """Fit the newest ``window`` frames of the log up to ``newest``; None when it fails."""
    from spotkit.scattering import SasFitError

    try:
        log, owned = _open_log(cat, ds_id, profile_log)
        try:
            log.refresh()
            have = [int(f) for f in log.frames if f <= newest]
        finally:
            if owned:
                log.close()
        frames = have[-window:] if have else [newest]
        return fit_latest(cat, ds_id, model=model, frames=frames, profile_log=profile_log,
                          **dict(fit_options or {}))
    except (SasFitError, KeyError, InputFileError) as exc:
        logger.warning("follow_fits %s frame %d: no fit (%s)", ds_id, newest, exc)
        return None
