"""Metric streams -> findings: a model of normal and one change detector per stream."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections import deque
from typing import Any

from spotkit.monitor._changepoint import ChangeDetector
from spotkit.monitor._findings import Finding
from spotkit.monitor._normal import LEVELS, NormalModel, _check_history, _label

__all__ = ["MetricWatcher", "watch_metrics"]

Stream = tuple[str, str | None, str | None]

#: samples between false alarms the watcher's detectors are calibrated for: twice the
#: detector's default, because residuals of a model learned online are not exactly
#: independent N(0, 1) (bins of few values, patterns that do not follow the bins, streams
#: that share noise); on simulated stationary telemetry this gives about one false change
#: per 10,000 values
DEFAULT_ARL = 20_000.0


class MetricWatcher:
    """Watch metric streams for changes and anomalies against their model of normal.

    Each value is first scored against :class:`NormalModel` (the residual: how many robust
    sigmas it is from what is normal for its size, time of day/week, beamline and target),
    then the residual goes to the stream's :class:`ChangeDetector` (one per metric,
    beamline and target), then the value is learned. A stream is scored once the model
    has ``min_history`` values of it (and ``model.prior``). When a change is confirmed the
    stream's detector learns its baseline again (``warmup`` values), then the stream's
    bins are moved to the new level (:meth:`NormalModel.shift`: the new level is the new
    normal, its size and time structure kept).

    Findings carry the magnitude in sigmas of the model (``detail["units"]``) and, for
    log-space metrics, the factor on the typical value (``detail["factor"]``, e.g. 3.0 for
    queue waits three times longer than normal).

    Parameters
    ----------
    model : NormalModel, optional
        A model (e.g. fitted on the catalog's history); default: a new one.
    learn : bool
        Learn each value after scoring it (online model).
    rebase : bool
        Move a stream's normal to its new level after a change it confirmed.
    min_history : int
        Values of a stream the model needs before the stream is watched.
    **detector
        Keyword arguments of :class:`ChangeDetector` (``arl``, ``drift``, ``warmup``...);
        ``arl`` defaults to :data:`DEFAULT_ARL` here.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> w = MetricWatcher()
    >>> found = []
    >>> for i in range(600):
    ...     wait = 120 * rng.lognormal(0, 0.3) * (4 if i >= 400 else 1)
    ...     found += w.update("queue_wait", wait, time=1.7e9 + 600 * i,
    ...                       beamline="8.3.2", target="perlmutter")
    >>> changes = [f for f in found if f.kind == "change"]
    >>> [(f.detail["index"] - f.detail["onset_index"] < 10) for f in changes]
    [True]
    >>> 2 < changes[0].detail["factor"] < 8   # x4, measured from the first few values
    True
    """

    def __init__(self, model: NormalModel | None = None, *, learn: bool = True,
                 rebase: bool = True, min_history: int = 100, **detector: Any) -> None:
        if model is not None and not isinstance(model, NormalModel):
            raise ValueError(f"model must be a NormalModel, got {type(model).__name__}")
        self.model = model if model is not None else NormalModel()
        self.learn, self.rebase = bool(learn), bool(rebase)
        if int(min_history) != min_history or min_history < 0:
            raise ValueError(f"min_history must be an integer >= 0, got {min_history!r}")
        self.min_history = int(min_history)
        detector = {"arl": DEFAULT_ARL, **detector}
        ChangeDetector(**detector)  # check the options now, not at the first value
        self._options = detector
        self._detectors: dict[Stream, ChangeDetector] = {}
        self._rebase: set[Stream] = set()
        self.findings: deque[Finding] = deque(maxlen=1000)

    def detector(self, metric: str, beamline: str | None = None,
                 target: str | None = None) -> ChangeDetector:
        """The change detector of one stream (made on first use)."""
        key = (metric, _label(beamline), _label(target))
        det = self._detectors.get(key)
        if det is None:
            det = self._detectors[key] = ChangeDetector(metric=metric, beamline=key[1],
                                                        target=key[2], **self._options)
        return det

    def update(self, metric: str, value: float, time: float, *, size: float | None = None,
               beamline: str | None = None, target: str | None = None,
               dataset_id: str | None = None) -> list[Finding]:
        """Score, watch and learn one value; return the findings it completes.

        Parameters
        ----------
        metric, value, time, size, beamline, target
            As for :meth:`NormalModel.learn`.
        dataset_id : str, optional
            Copied into an anomaly finding.

        Returns
        -------
        list of Finding
        """
        v = float(value)
        out: list[Finding] = []
        if v != v:
            return out
        e = self.model.expected(metric, time, size=size, beamline=beamline, target=target)
        key = (metric, _label(beamline), _label(target))
        if e.level in LEVELS[1:] and self.model.count(metric, beamline=beamline,
                                                       target=target) >= self.min_history:
            det = self.detector(metric, beamline, target)
            for f in det.update(e.residual(v), time, dataset_id=dataset_id):
                out.append(self._describe(f, e.scale, e.log))
            if any(f.kind == "change" for f in out):
                det.reset()  # its baseline is learned again from values after the alarm
                if self.rebase:
                    self._rebase.add(key)
            elif key in self._rebase and det.ready:
                # the new normal: the stream's bins move to the new level (their size and
                # time structure kept) and the detector's baseline with them - if the new
                # level is clearly away from the model (3 standard errors of the warm-up;
                # a false alarm is left to the detector's own baseline)
                self._rebase.discard(key)
                mean, sd = det.baseline
                if abs(mean) <= 3.0 * sd / math.sqrt(det.warmup):
                    return self._finish(out, metric, v, time, size, beamline, target)
                self.model.shift(metric, mean * e.scale, beamline=beamline, target=target)
                moved = self.model.expected(metric, time, size=size, beamline=beamline,
                                            target=target)
                # the residuals move by what the answer moved (shrinkage keeps a little)
                det._move((e.center - moved.center) / moved.scale
                          + mean * (e.scale / moved.scale - 1.0))
        return self._finish(out, metric, v, time, size, beamline, target)

    def _finish(self, out: list[Finding], metric: str, v: float, time: float,
                size: float | None, beamline: str | None,
                target: str | None) -> list[Finding]:
        if self.learn:
            self.model.learn(metric, v, time, size=size, beamline=beamline, target=target)
        self.findings.extend(out)
        return out

    def _describe(self, f: Finding, scale: float, log: bool) -> Finding:
        sig = float(f.magnitude or 0.0)
        if f.kind == "change":
            sig = float(f.detail["after"] - f.detail["before"])
        where = "/".join(x for x in (f.beamline, f.target) if x) or "all"
        detail = {**f.detail, "units": "model sigmas"}
        factor = None
        if log and math.isfinite(scale):
            factor = math.exp(sig * scale)
            detail["factor"] = factor
        how = f" (x{factor:.3g} of normal for its size and time)" if factor is not None else ""
        when = _dt.datetime.fromtimestamp(f.onset if f.onset is not None else f.time,
                                          _dt.UTC).isoformat(timespec="seconds")
        if f.kind == "change":
            word = "rose" if sig > 0 else "fell"
            msg = f"{f.metric} on {where} {word} by {abs(sig):.1f} sigma{how} since {when}"
        else:
            msg = (f"{f.metric} on {where}: one value {sig:+.1f} sigma from normal{how} at "
                   f"{when}")
        return dataclasses.replace(f, magnitude=sig, message=msg, detail=detail)

    def run(self, table: Any) -> list[Finding]:
        """Feed a whole metrics table (rows sorted by time); return all findings.

        Parameters
        ----------
        table : pandas.DataFrame
            Columns ``time, metric, value, beamline, target, size`` (and optionally
            ``dataset_id``), as :func:`spotkit.monitor.metrics` gives.
        """
        df = _check_history(table).sort_values("time", kind="stable")
        ids = (df["dataset_id"].tolist() if "dataset_id" in df.columns
               else [None] * len(df))
        out: list[Finding] = []
        for m, v, t, s, b, g, d in zip(df["metric"].astype(str).tolist(),
                                       df["value"].tolist(), df["time"].tolist(),
                                       df["size"].tolist(), df["beamline"].tolist(),
                                       df["target"].tolist(), ids, strict=True):
            out += self.update(m, v, t, size=s, beamline=b, target=g,
                               dataset_id=_label(d))
        return out


def watch_metrics(table: Any, *, history: Any = None, **options: Any) -> list[Finding]:
    """Changes and anomalies in a metrics table, against a model of normal (offline form).

    Parameters
    ----------
    table : pandas.DataFrame
        The metrics to watch (``time, metric, value, beamline, target, size``).
    history : pandas.DataFrame, optional
        Earlier metrics to learn normal from first (not watched).
    **options
        Keyword arguments of :class:`MetricWatcher` and :class:`ChangeDetector`.

    Returns
    -------
    list of Finding

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> t = 1.7e9 + 300.0 * np.arange(800)
    >>> rate = 5e8 * rng.lognormal(0, 0.2, t.size) * np.where(np.arange(800) >= 500, 0.4, 1)
    >>> df = pd.DataFrame({"time": t, "metric": "transfer_rate", "value": rate,
    ...                    "beamline": "7.3.3", "target": "nersc", "size": 2e9})
    >>> [(f.kind, bool(f.onset >= t[495])) for f in watch_metrics(df) if f.kind == "change"]
    [('change', True)]
    """
    watcher = MetricWatcher(**options)
    if history is not None:
        watcher.model.fit(history)
    return watcher.run(table)
