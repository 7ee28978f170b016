"""Models of normal: per metric, the expected value and spread given file size and time.

:class:`NormalModel` answers "what is normal for a 10 GB scan at 3 am" (:meth:`expected`)
and gives the standardised residual of a new value (:meth:`residual`). It is robust (medians
and MADs, in log space for durations, rates and sizes), conditioned on bins of dataset size
and local time of day and week with shrinkage to coarser bins when a bin has few values,
learned from a history table (:meth:`fit`) and updated online (:meth:`learn`) with bounded
memory (the last ``window`` values of each bin, none older than ``max_age``).

The bins themselves (bounded values, cached median/MAD and size slope, between-bin variance
for the shrinkage) are in :mod:`spotkit.monitor._normal_bins`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from spotkit.monitor._normal_bins import _LS0, _between_variance, _Cell, _inverse, _transform

__all__ = ["LOG_METRICS", "Expectation", "NormalModel"]

#: metrics modelled in log space by default (durations, rates, sizes: positive, skewed)
LOG_METRICS = frozenset({"queue_wait", "run_time", "transfer_time", "transfer_rate",
                         "ingest_time", "interarrival", "file_size", "turnaround"})

#: the levels of the bin hierarchy, coarsest first
LEVELS = ("metric", "stream", "hour", "hour+week", "hour+week+size")

#: columns a history table must have (``dataset_id`` and others may be there too)
HISTORY_COLUMNS = ("time", "metric", "value", "beamline", "target", "size")

#: a spread is harder to estimate than a centre: its shrinkage is this many times stronger
_SCALE_PRIOR = 3.0


@dataclasses.dataclass(frozen=True)
class Expectation:
    """What is normal for one metric in one situation (size, time, beamline, target).

    Attributes
    ----------
    metric : str
        The metric.
    median : float
        The expected (typical) value, in the metric's units.
    low, high : float
        The typical range: the centre -+ one robust sigma, in the metric's units.
    center, scale : float
        Centre and robust sigma in the model's space (``log(max(value, 1))`` for log
        metrics): a residual is ``(transform(value) - center) / scale``.
    n : int
        Values in the finest bin that contributed.
    level : str
        The finest level of :data:`LEVELS` whose bin had at least ``prior`` values (the
        one that mostly decided the answer).
    log : bool
        Whether the model works in log space for this metric.
    """

    metric: str
    median: float
    low: float
    high: float
    center: float
    scale: float
    n: int
    level: str
    log: bool

    def residual(self, value: float) -> float:
        """The standardised residual of ``value`` (NaN if the model has no data)."""
        y = _transform(float(value), self.log)
        return (y - self.center) / self.scale


class NormalModel:
    """Expected value and spread of each metric, given size, time of day/week and stream.

    Values are modelled in log space (``log(max(value, 1))``: seconds, bytes and bytes per
    second; a wait of 0 s counts as 1 s, sub-second durations are not told apart) for
    the metrics in :data:`LOG_METRICS` (or as ``log`` says) and kept in bins: by metric;
    by stream (metric, beamline, target); by stream and local hour-of-day bin
    (``hour_bin`` hours wide, in ``tz``); by hour and weekday/weekend; and by hour,
    weekday/weekend and size bin (``size_bins`` per decade of bytes; unknown sizes have
    their own bin). The metric and each stream
    also learn a size slope (a least-squares line of the value on log size, refitted
    without outliers; in log space a power law, e.g. transfer time ~ size): every bin's
    values are adjusted to 1 GB with the stream's slope and its answer moved back to the
    asked size, so a size never seen in a bin (a new regime of file sizes) is still
    compared with what the line and the time bins expect. Each bin keeps its last
    ``window`` values (and none older than ``max_age`` seconds before its newest), so
    memory is bounded and old behaviour is forgotten. The answer starts at the coarsest
    bin's median and MAD-sigma and walks down the hierarchy, each finer bin with ``n``
    values pulling the centre with the empirical-Bayes weight ``tau^2 / (tau^2 + 1.57
    sigma^2 / n)``, where ``tau^2`` is how much the medians of that bin and its siblings
    really differ (their variance less what sampling explains): bins that do not differ
    (no time-of-day effect) add no noise, bins that do are believed once they have a few
    values. With fewer than three siblings to compare the weight is ``n / (n + prior)``.
    The log-spread is pulled with ``(n - 1) / (n - 1 + 3 prior)`` (a spread needs more
    values than a centre). A spread below ``min_scale`` is raised to it (a floor for
    quantised or constant metrics).

    Parameters
    ----------
    log : bool, collection of str, or mapping of str to bool, optional
        Which metrics to model in log space: ``None`` (default) for :data:`LOG_METRICS`,
        ``True``/``False`` for all, a set of names, or a mapping metric -> bool.
    size_bins : int
        Size bins per decade of bytes (4: bins a factor 1.78 wide); 0 to ignore size.
    hour_bin : int
        Width of the time-of-day bins in hours (a divisor of 24); 24 to ignore the hour.
    weekend : bool
        Separate weekdays from weekends.
    tz : str, optional
        IANA time zone for the local hour and weekday (e.g. ``"America/Los_Angeles"``);
        default UTC.
    window : int
        Values kept per bin.
    max_age : float, optional
        Seconds: values older than this before a bin's newest value are forgotten.
    prior : float
        Shrinkage strength where bins cannot be compared (values a bin needs to count as
        much as its parent), and of the spreads.
    min_scale : float
        Smallest spread, in model units (0.05 in log space is 5 %).

    Examples
    --------
    What is normal for a 10 GB transfer at 3 am? Learn a history where night transfers
    are faster (a quiet network) and sizes matter:

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> t = 1.7e9 + np.sort(rng.uniform(0, 60 * 86400, 4000))
    >>> size = 10 ** rng.uniform(9, 11, t.size)
    >>> night = (t % 86400) / 3600 < 6
    >>> seconds = size / np.where(night, 1e9, 2.5e8) * rng.lognormal(0, 0.1, t.size)
    >>> hist = pd.DataFrame({"time": t, "metric": "transfer_time", "value": seconds,
    ...                      "beamline": "8.3.2", "target": "nersc", "size": size})
    >>> model = NormalModel().fit(hist)
    >>> three_am = 1.7e9 - 1.7e9 % 86400 + 90 * 86400 + 3 * 3600
    >>> e = model.expected("transfer_time", three_am, size=1e10, beamline="8.3.2",
    ...                    target="nersc")
    >>> e.level, 8 < e.median < 14
    ('hour+week+size', True)
    >>> e.residual(40.0) > 3    # 40 s would be slow at night...
    True
    >>> noon = three_am + 9 * 3600
    >>> model.expected("transfer_time", noon, size=1e10, beamline="8.3.2",
    ...                target="nersc").median > 30      # ...but is normal at noon
    True
    """

    def __init__(self, *, log: bool | Iterable[str] | Mapping[str, bool] | None = None,
                 size_bins: int = 4, hour_bin: int = 1, weekend: bool = True,
                 tz: str | None = None, window: int = 256, max_age: float | None = None,
                 prior: float = 10.0, min_scale: float = 0.05) -> None:
        if int(size_bins) != size_bins or size_bins < 0:
            raise ValueError(f"size_bins must be an integer >= 0 (bins per decade of bytes; "
                             f"0 ignores size), got {size_bins!r}")
        if int(hour_bin) != hour_bin or hour_bin < 1 or 24 % int(hour_bin):
            raise ValueError(f"hour_bin must be a whole divisor of 24 (1, 2, 3, 4, 6, 8, 12, "
                             f"24), got {hour_bin!r}")
        if int(window) != window or window < 3:
            raise ValueError(f"window must be an integer >= 3 (values kept per bin), got "
                             f"{window!r}")
        if max_age is not None and not max_age > 0:
            raise ValueError(f"max_age must be > 0 seconds or None, got {max_age!r}")
        if not (prior > 0 and math.isfinite(prior)):
            raise ValueError(f"prior must be a finite number > 0, got {prior!r}")
        if not (min_scale > 0 and math.isfinite(min_scale)):
            raise ValueError(f"min_scale must be a finite number > 0, got {min_scale!r}")
        self._zone: _dt.tzinfo = _dt.UTC
        if tz is not None:
            import zoneinfo

            try:
                self._zone = zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"tz {tz!r} is not a known IANA time zone (e.g. "
                                 f"'America/Los_Angeles')") from exc
        self.log = log
        self.size_bins, self.hour_bin, self.weekend = int(size_bins), int(hour_bin), weekend
        self.tz, self.window, self.max_age = tz, int(window), max_age
        self.prior, self.min_scale = float(prior), float(min_scale)
        self._cells: dict[tuple[Any, ...], _Cell] = {}
        self.n_learned = 0

    # -- bins ------------------------------------------------------------------------------
    def is_log(self, metric: str) -> bool:
        """Whether ``metric`` is modelled in log space."""
        log = self.log
        if log is None:
            return metric in LOG_METRICS
        if isinstance(log, bool):
            return log
        if isinstance(log, Mapping):
            return bool(log.get(metric, metric in LOG_METRICS))
        return metric in set(log)

    def _size_bin(self, size: float | None) -> int:
        if not self.size_bins or size is None or not (size > 0) or math.isinf(size):
            return -1
        return math.floor(self.size_bins * math.log10(size))

    def _log_size(self, size: float | None) -> float:
        if not self.size_bins or size is None or not (size > 0) or math.isinf(size):
            return math.nan
        return math.log(size)

    def _time_bins(self, time: float) -> tuple[int, int]:
        d = _dt.datetime.fromtimestamp(time, self._zone)
        return d.hour // self.hour_bin, int(self.weekend and d.weekday() >= 5)

    def _keys(self, metric: str, beamline: str | None, target: str | None, sbin: int,
              hbin: int, wbin: int) -> tuple[tuple[Any, ...], ...]:
        s = (metric, beamline, target)
        return ((metric,), s, (*s, hbin), (*s, hbin, wbin), (*s, hbin, wbin, sbin))

    # -- learning --------------------------------------------------------------------------
    def learn(self, metric: str, value: float, time: float, *, size: float | None = None,
              beamline: str | None = None, target: str | None = None) -> None:
        """Add one observed value (online update; memory stays bounded).

        Parameters
        ----------
        metric : str
            The metric (``"queue_wait"``...).
        value : float
            The value (NaN is ignored; a negative duration counts as 0 in log space).
        time : float
            When it happened (UTC epoch s).
        size : float, optional
            Dataset size in bytes (None or NaN: unknown).
        beamline, target : str, optional
            The stream it belongs to.
        """
        v = float(value)
        if v != v:
            return
        t = _check_time(time)
        y = _transform(v, self.is_log(metric))
        hb, wb = self._time_bins(t)
        keys = self._keys(metric, _label(beamline), _label(target), self._size_bin(size),
                          hb, wb)
        self._add(keys, t, y, self._log_size(size))

    def _add(self, keys: tuple[tuple[Any, ...], ...], t: float, y: float, ls: float) -> None:
        cells = self._cells
        for key in keys:
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = _Cell(self.window)
                if len(key) > 1:
                    cells[key[:1] if len(key) == 3 else key[:-1]].children.append(cell)
            cell.add(t, y, ls, self.max_age)
        self.n_learned += 1

    def fit(self, history: Any) -> NormalModel:
        """Learn a history table (rows in time order), after what was learned before.

        Parameters
        ----------
        history : pandas.DataFrame
            Columns ``time, metric, value, beamline, target, size`` (the table of
            :func:`spotkit.monitor.metrics`); other columns are ignored.

        Returns
        -------
        NormalModel
            ``self``, for chaining (the same state as :meth:`learn` row by row).
        """
        df = _check_history(history)
        df = df.sort_values("time", kind="stable")
        times = df["time"].to_numpy(float)
        hours, weekend = self._time_bins_array(times)
        metric = df["metric"].astype(str).tolist()
        values = df["value"].to_numpy(float)
        beam = [_label(b) for b in df["beamline"].tolist()]
        targ = [_label(b) for b in df["target"].tolist()]
        sizes = df["size"].to_numpy(float)
        logs = {m: self.is_log(m) for m in set(metric)}
        for i in range(len(df)):
            v = values[i]
            if v != v:
                continue
            m = metric[i]
            y = _transform(float(v), logs[m])
            sz = float(sizes[i])
            keys = self._keys(m, beam[i], targ[i], self._size_bin(sz), int(hours[i]),
                              int(weekend[i]))
            self._add(keys, float(times[i]), y, self._log_size(sz))
        return self

    def _time_bins_array(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import pandas as pd

        if times.size and not np.isfinite(times).all():
            raise ValueError("history column 'time' has NaN or infinite values; give UTC "
                             "epoch seconds for every row")
        idx = pd.to_datetime(times, unit="s", utc=True)
        if self.tz is not None:
            idx = idx.tz_convert(self.tz)
        hours = np.asarray(idx.hour) // self.hour_bin
        wk = (np.asarray(idx.day_of_week) >= 5) & bool(self.weekend)
        return hours, wk.astype(int)

    def forget(self, metric: str, *, beamline: str | None = None,
               target: str | None = None) -> int:
        """Drop what was learned about one stream; return the number of bins dropped.

        The metric-wide bin is kept (other streams share it).
        """
        gone = self._stream_keys(metric, beamline, target)
        dropped = {id(self._cells.pop(k)) for k in gone}
        top = self._cells.get((metric,))
        if top is not None:
            top.children = [c for c in top.children if id(c) not in dropped]
            top._tau = None
        return len(gone)

    def shift(self, metric: str, delta: float, *, beamline: str | None = None,
              target: str | None = None) -> int:
        """Move one stream's normal by ``delta`` (model units; a log factor for log metrics).

        After a confirmed level change the stream's bins keep their size and time structure
        but are re-centred on the new level (the metric-wide bin, shared with other
        streams, is left as it is and still pulls by ``prior / (n + prior)``). Returns the
        number of bins moved.

        Examples
        --------
        >>> m = NormalModel()
        >>> for i in range(40):
        ...     m.learn("queue_wait", 100.0, 1.7e9 + i, beamline="a")
        >>> m.shift("queue_wait", math.log(3.0), beamline="a")
        4
        >>> round(m.expected("queue_wait", 1.7e9 + 50, beamline="a").median, -1)  # not 300:
        240.0
        """
        if not math.isfinite(delta):
            raise ValueError(f"delta must be a finite number, got {delta!r}")
        keys = self._stream_keys(metric, beamline, target)
        for k in keys:
            cell = self._cells[k]
            cell.values = deque((v + delta for v in cell.values), maxlen=self.window)
            cell._stats = cell._tau = None
        top = self._cells.get((metric,))
        if top is not None:
            top._tau = None
        return len(keys)

    def count(self, metric: str, *, beamline: str | None = None,
              target: str | None = None) -> int:
        """Values of one stream the model holds now (its stream-wide bin)."""
        cell = self._cells.get((metric, _label(beamline), _label(target)))
        return len(cell.values) if cell is not None else 0

    def _stream_keys(self, metric: str, beamline: str | None,
                     target: str | None) -> list[tuple[Any, ...]]:
        s = (metric, _label(beamline), _label(target))
        return [k for k in self._cells if len(k) >= 3 and k[:3] == s]

    # -- answers ---------------------------------------------------------------------------
    def expected(self, metric: str, time: float, *, size: float | None = None,
                 beamline: str | None = None, target: str | None = None) -> Expectation:
        """What is normal for ``metric`` at ``time`` for a dataset of ``size`` bytes.

        Returns
        -------
        Expectation
            With ``n == 0`` and NaN values when nothing was learned for the metric.
        """
        t = _check_time(time)
        hb, wb = self._time_bins(t)
        keys = self._keys(metric, _label(beamline), _label(target), self._size_bin(size),
                          hb, wb)
        return self._expect(metric, keys, self._log_size(size))

    def _expect(self, metric: str, keys: tuple[tuple[Any, ...], ...],
                ls: float) -> Expectation:
        log = self.is_log(metric)
        center = logscale = math.nan
        level, n_used = LEVELS[0], 0
        parent: tuple[int, float, float] | None = None
        prior, floor = self.prior, self.min_scale
        dls = ls - _LS0 if ls == ls else 0.0
        slope = 0.0
        top: _Cell | None = None  # the metric's bin, then the stream's
        for depth, (name, key) in enumerate(zip(LEVELS, keys, strict=True)):
            cell = self._cells.get(key)
            if cell is None:
                break
            # how much bins like this one really differ: streams under their metric (each
            # with its own slope), finer bins pooled over the stream
            tau = math.nan
            if depth == 1 and top is not None:
                tau = _between_variance(top, 1, None)
            elif depth >= 2 and top is not None:
                tau = _between_variance(top, depth - 1, slope)
            if depth <= 1:
                top = cell
            if depth <= 1:  # the metric and each stream have their own size slope
                slope = cell.slope()
            n, med, sd = cell.stats(slope)
            if n == 0:
                break
            if (n, med, sd) == parent:
                # a bin holding the same values as its parent (nested bins) adds nothing:
                # it must not pull the answer a second time
                if n >= prior:
                    level = name
                continue
            parent = (n, med, sd)
            med += slope * dls  # the bin's answer at the asked size
            lsd = math.log(max(sd, floor))
            if center != center:  # the coarsest bin: taken as it is
                center, logscale = med, lsd
            else:
                if tau == tau:  # empirical Bayes: a bin counts as much as it is known
                    v = 1.57 * math.exp(2.0 * logscale) / n  # to differ from its siblings
                    w = tau / (tau + v) if tau + v > 0 else 0.0
                else:
                    w = n / (n + prior)
                center += w * (med - center)
                ws = (n - 1) / (n - 1 + _SCALE_PRIOR * prior)
                logscale += ws * (lsd - logscale)
            n_used = n
            if n >= prior:
                level = name
        if center != center:
            return Expectation(metric, math.nan, math.nan, math.nan, math.nan, math.nan, 0,
                               "none", log)
        scale = max(math.exp(logscale), floor)
        return Expectation(metric, _inverse(center, log), _inverse(center - scale, log),
                           _inverse(center + scale, log), center, scale, n_used, level, log)

    def residual(self, metric: str, value: float, time: float, *,
                 size: float | None = None, beamline: str | None = None,
                 target: str | None = None) -> float:
        """Standardised residual of one value against what is normal for it (NaN: no model).

        Examples
        --------
        >>> m = NormalModel(log=False)
        >>> for i in range(50):
        ...     m.learn("x", 10.0 + (i % 5), time=1.7e9 + i)
        >>> round(m.residual("x", 30.0, time=1.7e9 + 60), 1)
        12.1
        """
        return self.expected(metric, time, size=size, beamline=beamline,
                             target=target).residual(value)

    def residuals(self, table: Any) -> np.ndarray:
        """Residuals of every row of a history-like table against the model as it is now.

        Nothing is learned; rows whose metric is unknown to the model get NaN.
        """
        df = _check_history(table)
        times = df["time"].to_numpy(float)
        hours, weekend = self._time_bins_array(times)
        out = np.full(len(df), np.nan)
        for i, (m, v, b, g, s) in enumerate(zip(df["metric"].astype(str).tolist(),
                                                df["value"].to_numpy(float).tolist(),
                                                df["beamline"].tolist(),
                                                df["target"].tolist(),
                                                df["size"].to_numpy(float).tolist(),
                                                strict=True)):
            keys = self._keys(m, _label(b), _label(g), self._size_bin(s), int(hours[i]),
                              int(weekend[i]))
            out[i] = self._expect(m, keys, self._log_size(s)).residual(v)
        return out

    @property
    def metrics(self) -> list[str]:
        """Metrics learned so far."""
        return sorted(k[0] for k in self._cells if len(k) == 1)

    def __repr__(self) -> str:
        return (f"NormalModel(metrics={self.metrics}, bins={len(self._cells)}, "
                f"learned={self.n_learned})")


def _label(v: Any) -> str | None:
    """A beamline/target label: None for missing (None, NaN, pandas NA)."""
    if v is None:
        return None
    if isinstance(v, float) and v != v:
        return None
    try:
        import pandas as pd

        if v is pd.NA:
            return None
    except ImportError:  # pragma: no cover - pandas comes with the package
        pass
    return str(v)


def _check_time(time: float) -> float:
    try:
        t = float(time)
    except (TypeError, ValueError):
        raise ValueError(f"time must be UTC epoch seconds (a number), got {time!r}") from None
    if not math.isfinite(t):
        raise ValueError(f"time must be finite UTC epoch seconds, got {time!r}")
    return t


def _check_history(history: Any) -> Any:
    import pandas as pd

    if not isinstance(history, pd.DataFrame):
        raise ValueError(f"history must be a pandas DataFrame with columns "
                         f"{', '.join(HISTORY_COLUMNS)}; got {type(history).__name__}")
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise ValueError(f"history is missing column(s) {', '.join(missing)}; it needs "
                         f"{', '.join(HISTORY_COLUMNS)} (as spotkit.monitor.metrics gives)")
    return history
