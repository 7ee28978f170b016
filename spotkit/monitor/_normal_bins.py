"""The bins of a :class:`~spotkit.monitor._normal.NormalModel`: values, statistics, shrinkage.

A :class:`_Cell` holds the last values of one bin (with their times and log sizes) and
caches its median, robust sigma (MAD) and size slope; :func:`_between_variance` says how
much sibling bins really differ, which sets how strongly a bin with few values is shrunk
to its parent. :func:`_transform` / :func:`_inverse` map values to and from the model's
space (log for durations, rates and sizes).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

_MAD = 1.4826  # MAD -> sigma for a normal distribution


def _transform(v: float, log: bool) -> float:
    if not log:
        return v
    return math.log(v) if v > 1.0 else 0.0  # below 1 s, 1 B or 1 B/s: as 1


def _inverse(y: float, log: bool) -> float:
    return math.exp(y) if log else y


#: log(bytes) of the reference size (1 GB) values are adjusted to by the size slope
_LS0 = 9.0 * math.log(10.0)
#: values with a known size a bin needs before its size slope is fitted
_SLOPE_MIN = 20
#: new values after which a slope is fitted again (or a quarter of the bin, if more)
_SLOPE_EVERY = 32


class _Cell:
    """One bin: its last values (bounded), their log sizes, cached median/MAD and slope."""

    __slots__ = ("_fit_at", "_new", "_slope", "_stats", "_tau", "_tau_new", "children",
                 "sizes", "times", "values")

    def __init__(self, window: int) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.times: deque[float] = deque(maxlen=window)
        self.sizes: deque[float] = deque(maxlen=window)  # log bytes, NaN if unknown
        self._stats: tuple[float, tuple[int, float, float]] | None = None
        self._slope = 0.0
        self._fit_at = -_SLOPE_EVERY
        self._new = 0  # values added since the statistics were computed
        self.children: list[_Cell] = []  # the finer bins inside this one
        # between-bin variance of the bins below, per level: level -> (slope, variance)
        self._tau: dict[int, tuple[float, float]] | None = None
        self._tau_new = 0

    def add(self, t: float, y: float, ls: float, max_age: float | None) -> None:
        self.values.append(y)
        self.times.append(t)
        self.sizes.append(ls)
        if max_age is not None:
            while self.times and self.times[0] < t - max_age:
                self.times.popleft()
                self.values.popleft()
                self.sizes.popleft()
        self._new += 1
        self._tau_new += 1
        self._fit_at -= 1

    def slope(self) -> float:
        """d value / d log(size) of the bin (robust line; refitted every few values)."""
        if self._fit_at <= -max(_SLOPE_EVERY, len(self.values) >> 2):
            self._fit_at = 0
            ls = np.fromiter(self.sizes, float, len(self.sizes))
            ok = np.isfinite(ls)
            b = 0.0
            if ok.sum() >= _SLOPE_MIN:
                x = ls[ok]
                y = np.fromiter(self.values, float, len(self.values))[ok]
                b = _robust_slope(x, y)
            self._slope = b
            self._stats = None
        return self._slope

    def stats(self, slope: float) -> tuple[int, float, float]:
        """``(n, median, robust sigma)`` of the values adjusted to 1 GB with ``slope``.

        Computed again when the slope changed or when the values added since make up
        1/8 of the bin (every value while it holds fewer than 16): one value barely moves
        the median of many, and this keeps the cost of an update down.
        """
        if (self._stats is None or self._stats[0] != slope
                or self._new >= max(1, len(self.values) >> 3)):
            self._new = 0
            n = len(self.values)
            if n == 0:
                st = (0, math.nan, math.nan)
            else:
                # pure Python: faster than numpy for the few hundred values of a bin
                if slope:
                    a = sorted(v - slope * (ls - _LS0) if ls == ls else v
                               for v, ls in zip(self.values, self.sizes, strict=True))
                else:
                    a = sorted(self.values)
                med = _sorted_median(a)
                mad = _sorted_median(sorted(abs(v - med) for v in a)) * _MAD
                st = (n, med, mad)
            self._stats = (slope, st)
        return self._stats[1]


def _between_variance(cell: _Cell, depth: int, slope: float | None) -> float:
    """How much the centres of sibling bins really differ (a variance; NaN: unknown).

    The bins at ``depth`` below ``cell`` (1: its children; 2: its grandchildren...) are
    compared within their parents and pooled (method of moments): the spread of the
    medians of siblings with at least 3 values, less what sampling alone gives (``1.57
    sigma^2 / n`` for a median). Pooling lets a level with two bins per parent (weekday,
    weekend) learn from every hour at once. ``slope`` None: each bin adjusts with its own
    slope (streams under a metric).
    """
    key = -1.0 if slope is None else slope
    if cell._tau is not None and cell._tau_new < max(8, len(cell.values) >> 3):
        hit = cell._tau.get(depth)
        if hit is not None and hit[0] == key:
            return hit[1]
    else:
        cell._tau, cell._tau_new = {}, 0
    parents = [cell]
    for _ in range(depth - 1):
        parents = [c for p in parents for c in p.children]
    ss, dof, noise = 0.0, 0, []
    for p in parents:
        meds = []
        for child in p.children:
            n, med, sd = child.stats(child.slope() if slope is None else slope)
            if n >= 3:
                meds.append(med)
                noise.append(1.57 * sd * sd / n)
        if len(meds) >= 2:
            m = sum(meds) / len(meds)
            ss += sum((v - m) ** 2 for v in meds)
            dof += len(meds) - 1
    tau = max(ss / dof - sum(noise) / len(noise), 0.0) if dof >= 2 else math.nan
    cell._tau[depth] = (key, tau)
    return tau


def _sorted_median(a: list[float]) -> float:
    n = len(a)
    h = n // 2
    return a[h] if n % 2 else 0.5 * (a[h - 1] + a[h])


def _robust_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope, refitted without points beyond 3 robust sigmas (0 if x is flat)."""
    keep = np.ones(x.size, bool)
    b = 0.0
    for _ in range(2):
        xs, ys = x[keep], y[keep]
        dx = xs - xs.mean()
        sxx = float(dx @ dx)
        if xs.size < _SLOPE_MIN or sxx < 0.05 * xs.size:  # sizes within ~+-25 %: no slope
            return b
        b = float(dx @ (ys - ys.mean())) / sxx
        r = y - b * x
        r = r - np.median(r[keep])
        mad = float(np.median(np.abs(r[keep]))) * _MAD
        if not mad > 0:
            break
        keep = np.abs(r) <= 3 * mad
    return b
