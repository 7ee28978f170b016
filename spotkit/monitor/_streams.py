"""Metric streams -> findings: a model of normal and one change detector per stream."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections import deque
from typing import Any

from spotkit.monitor._changepoint import ChangeDetector
from spotkit.monitor._cusum import _normal_quantile_upper
from spotkit.monitor._cusum import _normal_tail as _tail
from spotkit.monitor._findings import Finding
from spotkit.monitor._normal import LEVELS, NormalModel, _check_history, _label

__all__ = ["MetricWatcher", "watch_metrics"]

Stream = tuple[str, str | None, str | None]

#: after a change, the new level is measured on this many times the detector's warm-up
#: (the detector's ``rewarm``: 64 values by default, its mean to 1/8 sigma) before the
#: stream's normal moves to it and the detector scores again. A level measured on fewer
#: values leaves both off by its error (1/4 sigma from 16): the residuals then drift while
#: the model learns the rest, and a young baseline whose values wait while its statistic
#: is up holds its error just when it shows - both read as a second change
RECENTRE = 4

#: levels of :data:`LEVELS` at which the model knows a time of the week for a stream
KNOWN = frozenset(LEVELS[3:])

#: samples between false alarms the watcher's detectors are calibrated for: twice the
#: detector's default, because residuals of a model learned online are not exactly
#: independent N(0, 1) (bins of few values, patterns that do not follow the bins, streams
#: that share noise); on simulated stationary telemetry this gives about one false change
#: per 10,000 values
DEFAULT_ARL = 20_000.0


class _Stream:
    """A watched stream's state: its count, the values not learned yet, a pending re-centring."""

    __slots__ = ("held", "onset", "scale", "seen")

    def __init__(self) -> None:
        self.seen = 0  # values given to the watcher (the index of the next one)
        # (value, time, size, index, dataset_id) scored but not learned yet: while the
        # detector's statistics are above zero (a change may be under way) and, after a
        # change, until the stream is re-centred on its new level
        self.held: deque[tuple[float, float, float | None, int, str | None]] = deque()
        self.onset: int | None = None  # a change's onset, while the new level is measured
        self.scale = 1.0  # the detector's spread before that change


class MetricWatcher:
    """Watch metric streams for changes and anomalies against their model of normal.

    Each value is first scored against :class:`NormalModel` (the residual: how many robust
    sigmas it is from what is normal for its size, time of day/week, beamline and target),
    then the residual goes to the stream's :class:`ChangeDetector` (one per metric,
    beamline and target), then the value is learned by the model - once the detector's
    statistics are back at zero: values that may be the start of a change wait, so the
    model does not drift towards a new level before the change is confirmed.

    **When a stream is watched.** With history (:meth:`fit`, or a ``model`` that already
    holds ``min_history`` values of the stream at its first value here) from the stream's
    first new value: :meth:`fit` primes the detector with the out-of-sample residuals of
    the stream's last history values; a model fitted elsewhere gives residuals
    standardised as ``(0, 1)``, which the detector assumes (worth ``warmup`` values) and
    goes on learning. Without history the model learns the stream from its first value
    and the stream is watched once the model holds ``min_history`` values of it (100 by
    default: a median and a MAD-sigma of 100 values are known to about 0.13 and 0.12 of
    a sigma, so the residuals are standardised to ~10 %, and about 17 hours of values at
    one per 10 minutes have filled most hour-of-day bins once), then the detector learns
    its baseline from the next ``warmup`` residuals (16) before it scores.

    **After a change** (one finding: onset, magnitude, confidence) the values since the
    onset are held - neither scored nor learned by the model - until :data:`RECENTRE` x
    ``warmup`` of them (64; the detector's ``rewarm``) measure the new level against the
    model as it was (one fixed reference: a model that learned the new values meanwhile
    would move unevenly, bin by bin). Then, if the level is clearly away from the model
    (3 standard errors), the stream's bins are moved to it (:meth:`NormalModel.shift`:
    the new level is the new normal, its size and time structure kept); the detector's
    baseline restarts from the residuals of those values against the model (its spread
    carried over) and the values are learned. Where the model does not know those times
    of the week for the stream yet (most of the values' answers came from bins coarser
    than hour-of-day + weekday/weekend, :data:`KNOWN`; e.g. the first weekend of a stream
    watched without history), the "level" may be that part of the week: moving every bin
    to it would misplace the rest, so the model learns the values and the detector
    learns its baseline again from the next ``warmup`` residuals. A second real step is
    found from then on; one within those 64 values when they are checked, before they
    are learned: a split of them into two levels, at least ``2 * drift`` sigmas apart and
    significant at the detector's false-alarm rate, is reported as a change of its own
    and the values before it are dropped (a level that did not last is not normal).

    Findings carry the magnitude in sigmas of the model (``detail["units"]``) and, for
    log-space metrics, the factor on the typical value (``detail["factor"]``, e.g. 3.0 for
    queue waits three times longer than normal). ``detail["index"]`` and
    ``detail["onset_index"]`` count the stream's values given to the watcher (0: its first
    value after any history), ``onset`` is the onset value's own time and
    ``detail["onset_dataset_id"]`` its dataset (when known).

    Parameters
    ----------
    model : NormalModel, optional
        A model (e.g. fitted on the catalog's history); default: a new one.
    learn : bool
        Learn each value after scoring it (online model).
    rebase : bool
        Move a stream's normal to its new level after a change it confirmed. Without it a
        learning model drifts to the new level by itself, which its detector may later
        report as a change back.
    min_history : int
        Values of a stream the model needs before the stream is watched, when it had none
        at the stream's first value (no history).
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
    >>> [(f.detail["onset_index"], f.detail["index"] - f.detail["onset_index"] < 10)
    ...  for f in changes]
    [(400, True)]
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
        detector.setdefault("rewarm", min(RECENTRE * int(detector.get("warmup", 16)),
                                          int(detector.get("memory", 500))))
        ChangeDetector(**detector)  # check the options now, not at the first value
        self._options = detector
        self._detectors: dict[Stream, ChangeDetector] = {}
        self._streams: dict[Stream, _Stream] = {}
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

    def fit(self, history: Any, *, prime: int = 100) -> MetricWatcher:
        """Learn the catalog's history, so that each stream is watched from its next value.

        The model learns every row (as :meth:`NormalModel.fit`); the last ``prime`` values
        of each stream are scored before they are learned (out of sample, as new values
        will be) and their residuals prime the stream's detector (:meth:`ChangeDetector.prime`;
        only residuals of a model that already held ``min_history`` values of the stream).

        Parameters
        ----------
        history : pandas.DataFrame
            Columns ``time, metric, value, beamline, target, size``.
        prime : int
            Values per stream that prime its detector (at least ``warmup`` to skip the
            warm-up; 0: learn only, like ``model.fit``).

        Returns
        -------
        MetricWatcher
            ``self``.
        """
        if int(prime) != prime or prime < 0:
            raise ValueError(f"prime must be an integer >= 0, got {prime!r}")
        df = _check_history(history).sort_values("time", kind="stable")
        keys = list(zip(df["metric"].astype(str).tolist(),
                        [_label(b) for b in df["beamline"].tolist()],
                        [_label(g) for g in df["target"].tolist()], strict=True))
        values = df["value"].to_numpy(float)
        ok = values == values
        left: dict[Stream, int] = {}
        for k, good in zip(keys, ok.tolist(), strict=True):
            left[k] = left.get(k, 0) + int(good)
        late = []  # rows among the last `prime` values of their stream
        for i, (k, good) in enumerate(zip(keys, ok.tolist(), strict=True)):
            if good:
                left[k] -= 1
                if left[k] < prime:
                    late.append(i)
        early = ok.copy()
        early[late] = False
        self.model.fit(df[early])
        rows = df.iloc[late]
        residuals: dict[Stream, list[float]] = {}
        for i, m, v, t, s in zip(late, rows["metric"].astype(str).tolist(),
                                 rows["value"].tolist(), rows["time"].tolist(),
                                 rows["size"].tolist(), strict=True):
            k = keys[i]
            if self.model.count(m, beamline=k[1], target=k[2]) >= self.min_history:
                e = self.model.expected(m, t, size=s, beamline=k[1], target=k[2])
                if e.level in LEVELS[1:]:
                    residuals.setdefault(k, []).append(e.residual(v))
            self.model.learn(m, v, t, size=s, beamline=k[1], target=k[2])
        for k, res in residuals.items():
            self.detector(*k).prime(res)
        return self

    def update(self, metric: str, value: float, time: float, *, size: float | None = None,
               beamline: str | None = None, target: str | None = None,
               dataset_id: str | None = None) -> list[Finding]:
        """Score, watch and learn one value; return the findings it completes.

        Parameters
        ----------
        metric, value, time, size, beamline, target
            As for :meth:`NormalModel.learn`.
        dataset_id : str, optional
            Copied into an anomaly finding (and a change's ``onset_dataset_id``).

        Returns
        -------
        list of Finding
        """
        v = float(value)
        out: list[Finding] = []
        if v != v:
            return out
        key = (metric, _label(beamline), _label(target))
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream()
        index = st.seen
        st.seen += 1
        e = self.model.expected(metric, time, size=size, beamline=beamline, target=target)
        det = self._detectors.get(key)
        if e.level not in LEVELS[1:]:
            det = None
        elif det is None and self.model.count(metric, beamline=beamline,
                                              target=target) >= self.min_history:
            det = self.detector(metric, beamline, target)
            if index == 0:  # history: residuals standardised by the model, watched now
                det.assume(0.0, 1.0)
        if det is None:
            self._learn(metric, v, time, size, beamline, target)
            return out
        for f in det.update(e.residual(v), time, dataset_id=dataset_id, index=index):
            out.append(self._describe(f, e.scale, e.log))
        held = st.held
        held.append((v, time, size, index, dataset_id))
        for j, f in enumerate(out):
            if f.kind != "change":
                continue
            onset = int(f.detail["onset_index"])
            while held and held[0][3] < onset:
                h = held.popleft()
                if st.onset is None:  # the old level's last values
                    self._learn(metric, h[0], h[1], h[2], beamline, target)
                # else: a level that did not last until its re-centring is not normal
            if held:
                out[j] = dataclasses.replace(
                    f, detail={**f.detail, "onset_dataset_id": held[0][4]})
            st.onset, st.scale = onset, float(f.detail["scale"])
        if st.onset is not None:
            if det.ready and det.statistic == 0.0:
                out += self._recentre(st, det, metric, beamline, target)
        elif det.statistic == 0.0 or len(held) > det.warmup:
            # an excursion that has not become a change within ``warmup`` values is no
            # step (a 3-sigma one is confirmed in ~3): its oldest values are learned, or a
            # young model would starve of exactly the values it still has to learn
            while held and (det.statistic == 0.0 or len(held) > det.warmup):
                h = held.popleft()
                self._learn(metric, h[0], h[1], h[2], beamline, target)
        self.findings.extend(out)
        return out

    def _recentre(self, st: _Stream, det: ChangeDetector, metric: str,
                  beamline: str | None, target: str | None) -> list[Finding]:
        """Move the stream's normal to the level of the values held since a change.

        The held values were not scored: if they hold a second change (a split of them
        into two means, tested at the detector's false-alarm rate), that change is
        reported now and the values before it are dropped (a level that did not last).
        """
        held = list(st.held)
        model = self.model
        exp = [model.expected(metric, t, size=s, beamline=beamline, target=target)
               for _, t, s, _, _ in held]
        res = [e.residual(h[0]) for e, h in zip(exp, held, strict=True)]
        # in the model's own units (the residual times the scale it was standardised with):
        # a level change is one offset there, while in residuals it varies with each
        # bin's spread; each value weighs 1 / its variance
        dev = [r * e.scale for r, e in zip(res, exp, strict=True)]
        wts = [1.0 / (st.scale * e.scale) ** 2 for e in exp]
        least = max(3, det.warmup // 2)
        split = _split(dev, wts, det.arl, least, 2.0 * det.drift)
        if split is not None:
            k, stat, limit = split
            for _ in range(k):
                st.held.popleft()
            st.onset = held[k][3]
            ref = exp[k].scale
            before = _wmean(dev[:k], wts[:k]) / ref
            after = _wmean(dev[k:], wts[k:]) / ref
            last = held[-1]
            f = Finding("change", metric, time=last[1], onset=held[k][1], message="",
                        beamline=_label(beamline), target=_label(target),
                        magnitude=after - before,
                        confidence=max(0.0, 1.0 - 2.0 * _tail(math.sqrt(stat))
                                       * (len(res) - 2 * least + 1)),
                        detail={"index": last[3], "onset_index": held[k][3],
                                "sigmas": (after - before) / st.scale, "before": before,
                                "after": after, "scale": st.scale, "statistic": stat,
                                "threshold": limit, "delay": last[3] - held[k][3],
                                "onset_dataset_id": held[k][4],
                                "found": "in the values held after a change"})
            det.rebase(res[k:], scale=st.scale, rewarm=True)
            found = self._describe(f, ref, exp[k].log)
            det.findings.append(found)
            return [found]
        st.held.clear()
        st.onset = None
        known = sum(e.level in KNOWN for e in exp) * 2 > len(exp)
        if self.rebase and held and not known:
            # the model does not know this time of the week for the stream yet (its
            # answers came from coarser bins): the "level" may be that part of the week;
            # it learns the values, and the detector learns its baseline again after them
            for v, t, s, _, _ in held:
                self._learn(metric, v, t, s, beamline, target)
            det.reset()
            return []
        if self.rebase and held:
            delta = _wmean(dev, wts)
            if abs(delta) > 3.0 / math.sqrt(math.fsum(wts)):  # clearly a new level
                model.shift(metric, delta, beamline=beamline, target=target)
                res = [model.expected(metric, t, size=s, beamline=beamline,
                                      target=target).residual(v) for v, t, s, _, _ in held]
        det.rebase(res, scale=st.scale)
        for v, t, s, _, _ in held:
            self._learn(metric, v, t, s, beamline, target)
        return []

    def _learn(self, metric: str, v: float, time: float, size: float | None,
               beamline: str | None, target: str | None) -> None:
        if self.learn:
            self.model.learn(metric, v, time, size=size, beamline=beamline, target=target)

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


def _wmean(x: list[float], w: list[float]) -> float:
    return math.fsum(a * b for a, b in zip(x, w, strict=True)) / math.fsum(w)


def _split(dev: list[float], wts: list[float], arl: float, least: int,
           size: float) -> tuple[int, float, float] | None:
    """The best split of ``dev`` into two means, if significant: ``(k, T, limit)``.

    ``dev`` are independent normal values with variances ``1 / wts``; for a split at
    ``k`` the weighted means of both parts differ by ``d`` with variance ``1 / W_a + 1 /
    W_b``, and ``T = d^2 / (1 / W_a + 1 / W_b)`` is chi-square with one degree of freedom
    when nothing changed. Significant above the Bonferroni limit over the splits tried,
    for a false split no more often than the detector's false alarms over ``n`` values
    (``n / arl``), and if ``d`` is at least ``size`` sigmas (the shift the CUSUM is
    designed for, ``2 * drift``: smaller steady differences over tens of values are what
    a young model's bins leave in residuals, and what the CUSUM's slack tolerates
    online; a smaller real step is left to the CUSUM, after the hold). Each part has at
    least ``least`` values.
    """
    n = len(dev)
    splits = n - 2 * least + 1
    if splits < 1:
        return None
    w_all = math.fsum(wts)
    s_all = math.fsum(a * b for a, b in zip(dev, wts, strict=True))
    w_a = math.fsum(wts[:least - 1])
    s_a = math.fsum(a * b for a, b in zip(dev[:least - 1], wts[:least - 1], strict=True))
    best, at, dk = -1.0, 0, 0.0
    for k in range(least, n - least + 1):
        w_a += wts[k - 1]
        s_a += dev[k - 1] * wts[k - 1]
        w_b = w_all - w_a
        d = s_a / w_a - (s_all - s_a) / w_b
        stat = d * d / (1.0 / w_a + 1.0 / w_b)
        if stat > best:
            best, at, dk = stat, k, d
    limit = _normal_quantile_upper(min(0.25, n / arl / splits / 2.0)) ** 2
    sigma = 1.0 / math.sqrt(w_all / n)  # a typical value's spread
    return (at, best, limit) if best > limit and abs(dk) >= size * sigma else None


def watch_metrics(table: Any, *, history: Any = None, **options: Any) -> list[Finding]:
    """Changes and anomalies in a metrics table, against a model of normal (offline form).

    Parameters
    ----------
    table : pandas.DataFrame
        The metrics to watch (``time, metric, value, beamline, target, size``).
    history : pandas.DataFrame, optional
        Earlier metrics (e.g. the catalog's) to learn normal from first, not watched
        (:meth:`MetricWatcher.fit`): a stream with history is watched from its first
        value in ``table``; without, once the model holds ``min_history`` of its values.
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
        watcher.fit(history)
    return watcher.run(table)
