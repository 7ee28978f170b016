"""Online change points and anomalies on a (residual) stream: a calibrated two-sided CUSUM.

:class:`ChangeDetector` is the default detector of the monitor: O(1) pure-Python arithmetic
per value (no numpy per sample), a threshold computed from a stated average run length between
false alarms (:func:`cusum_threshold`), and a self-starting baseline so that it works on raw
series as well as on standardised residuals from :class:`~spotkit.monitor.NormalModel`.
:func:`find_changes` runs the same detector over a whole series (reports, benchmarks).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from spotkit.monitor._cusum import (
    _check_positive,
    _normal_quantile_upper,
    _normal_tail,
    cusum_arl,
    cusum_threshold,
)
from spotkit.monitor._findings import Finding

logger = logging.getLogger(__name__)

__all__ = ["ChangeDetector", "cusum_arl", "cusum_threshold", "find_changes"]

#: largest lag-1 autocorrelation allowed for in the CUSUM's scale
_RHO_MAX = 0.95


class ChangeDetector:
    """Online change points (level shifts) and anomalies (single outliers) on one stream.

    A two-sided CUSUM on standardised values ``z = (x - mean) / scale``:
    ``S+ = max(0, S+ + z - drift)``, ``S- = max(0, S- - z - drift)``. The alarm height comes
    from ``arl``, the wanted average number of samples between false alarms on a stationary
    Gaussian stream (:func:`cusum_threshold`, Siegmund's approximation), so the false-alarm
    rate is stated, not tuned. ``drift`` is half the shift (in sigmas) the detector is
    fastest at; a 3-sigma shift is caught in about ``(h + 1.17) / (3 - drift)`` samples.

    The baseline (``mean``, ``scale``) is self-starting: learned from the first ``warmup``
    values, then updated from values seen while both statistics are below half the height
    (so a change in progress is not learned), with a memory of ``memory`` values
    (exponential forgetting after that, so the memory is bounded and slow drifts are
    followed). During the first values of a baseline the scale is widened by
    ``sqrt(1 + 4 / n)`` to allow for its estimation error, and the CUSUM's scale allows
    for lag-1 autocorrelation ``rho`` of the baseline (the long-run sigma,
    ``sigma sqrt((1 + rho) / (1 - rho))``, with ``0 <= rho <= 0.95``), since the false-alarm
    rate of a CUSUM on dependent values would otherwise be far above the stated one. Pass
    ``mean`` and ``scale`` for a known baseline (e.g. ``0`` and ``1`` for residuals
    already standardised).

    A value with ``|z|`` above ``anomaly`` (default: the two-sided normal quantile of
    ``1 / arl``) is reported as an ``"anomaly"``; every ``z`` enters the CUSUM clipped to
    ``+-clip`` (3), so one outlier alone cannot raise a change. A change is reported when a
    statistic passes the height: its onset is the split of that statistic's excursion
    (the values since it was last zero) that best explains the excursion as a new mean
    (maximum likelihood), its magnitude the mean shift since the onset (in the stream's
    units; ``detail["sigmas"]`` in baseline sigmas), and its confidence
    ``exp(-m / ARL(S_peak))``, the chance that a stationary stream watched for ``m``
    samples would not reach the peak statistic. After a change the baseline's mean
    restarts from the values since the onset while its spread carries over (worth up to
    ``4 * warmup`` values): a level change seldom changes the noise, and a spread learned
    from a few new values alone makes a young detector jumpy (a second, false change soon
    after the first); a real change of spread is learned within a few dozen values.

    Each :meth:`update` costs a few microseconds of pure-Python arithmetic.

    Parameters
    ----------
    arl : float
        Average run length between false alarms (samples) on stationary data; default
        10,000 (one false alarm per 10,000 samples).
    drift : float
        CUSUM reference value ``k`` in sigmas (best for shifts of ``2 * drift``).
    warmup : int
        Values learned before the first value is scored.
    rewarm : int, optional
        Values learned after a change (from its onset) before values are scored again
        (default: ``warmup``); a second change closer than this to the first is found
        once they have passed.
    memory : int
        Effective number of values in the baseline (exponential forgetting beyond it).
    anomaly : float, optional
        ``|z|`` above which one value is an anomaly; ``None``: from ``arl``; ``math.inf``:
        never.
    clip : float
        ``z`` enters the CUSUM clipped to ``+-clip`` (a Huber-type robust CUSUM: heavy
        tails of real residuals do not raise false alarms; on Gaussian data the false
        alarms only get rarer than ``arl`` says).
    mean, scale : float, optional
        A known baseline instead of the self-starting one (both or neither): no warm-up,
        not learned while nothing changes; after a change the new baseline is learned.
    metric, beamline, target : str, optional
        Copied into the findings.

    Attributes
    ----------
    threshold : float
        The CUSUM height ``h``.
    findings : collections.deque
        The last 1000 findings (bounded).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> det = ChangeDetector(metric="queue_wait")
    >>> found = []
    >>> for i in range(400):
    ...     x = rng.gauss(0.0, 1.0) + (3.0 if i >= 200 else 0.0)
    ...     found += det.update(x, time=float(i))
    >>> changes = [f for f in found if f.kind == "change"]
    >>> len(changes), abs(changes[0].onset - 200) <= 2, round(changes[0].magnitude)
    (1, True, 3)
    """

    def __init__(self, *, arl: float = 10_000.0, drift: float = 1.0, warmup: int = 16,
                 rewarm: int | None = None, memory: int = 500,
                 anomaly: float | None = None, clip: float = 3.0, mean: float | None = None,
                 scale: float | None = None, autocorrelation: bool = True,
                 metric: str = "value",
                 beamline: str | None = None, target: str | None = None) -> None:
        _check_positive(drift=drift)
        if int(warmup) != warmup or warmup < 3:
            raise ValueError(f"warmup must be an integer >= 3, got {warmup!r}")
        if rewarm is None:
            rewarm = warmup
        if int(rewarm) != rewarm or rewarm < 3:
            raise ValueError(f"rewarm must be an integer >= 3, got {rewarm!r}")
        if int(memory) != memory or memory < max(warmup, rewarm):
            raise ValueError(f"memory must be an integer >= warmup and rewarm "
                             f"({max(warmup, rewarm)}), got {memory!r}")
        if (mean is None) != (scale is None):
            raise ValueError("give both mean and scale (a fixed baseline) or neither")
        if scale is not None and not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if mean is not None and not math.isfinite(mean):
            raise ValueError(f"mean must be finite, got {mean!r}")
        self.arl = float(arl)
        self.drift = float(drift)
        self.threshold = cusum_threshold(self.arl, self.drift)
        if anomaly is None:
            anomaly = _normal_quantile_upper(0.5 / self.arl)
        if not anomaly > 0:
            raise ValueError(f"anomaly must be > 0 (a |z| limit), got {anomaly!r}")
        self.anomaly = float(anomaly)
        if not clip > drift:
            raise ValueError(f"clip must be > drift ({drift}), got {clip!r}")
        self.clip = float(clip)
        self.warmup, self.memory = int(warmup), int(memory)
        self.rewarm = int(rewarm)
        self._need = self.warmup  # baseline values needed before values are scored
        self.metric, self.beamline, self.target = metric, beamline, target
        self._fixed = mean is not None
        self._auto = bool(autocorrelation)
        self.autocorrelation = self._auto and not self._fixed
        self._rho = 0.0
        self._mean0 = float(mean) if mean is not None else 0.0
        self._scale0 = float(scale) if scale is not None else 1.0
        self.findings: deque[Finding] = deque(maxlen=1000)
        self.n = 0  # values seen (index of the next one)
        self._vn0 = 0  # values the spread carried over from before a change is worth
        self._bn = 0
        self._var = self._c1 = 0.0
        self._restart()
        self._watch_start = 0

    # -- state ----------------------------------------------------------------------------
    def _restart(self, values: Sequence[float] = (), *, keep_scale: bool = False) -> None:
        """A new baseline, learned from ``values`` (the first ones of a new level) on.

        ``keep_scale``: the new level's mean is learned afresh, its spread (and lag-1
        autocovariance) starts from the old baseline's, worth up to ``4 * warmup`` values.
        """
        self._sp = self._sn = 0.0
        self._pc = self._nc = 0  # values since each statistic was last zero
        self._pending: deque[tuple[float, int, float]] = deque()  # (value, index, time)
        if self._fixed:
            self._bn = self.warmup
            self._mu, self._var = self._mean0, self._scale0**2
            self._sd = self._sdc = self._scale0
            self._ratio = 1.0
            return
        nv = self._bn + self._vn0
        if keep_scale and nv > 1 and self._var > 0:
            self._vn0 = min(nv, 4 * self.warmup)
        else:
            self._vn0 = 0
            self._var = self._c1 = 0.0
        self._bn = 0
        self._mu = 0.0
        self._dprev: float | None = None
        self._set_sd()
        for v in values:
            self._learn(v)

    def _set_sd(self) -> None:
        n = self._bn
        nv = n + self._vn0  # values the spread is learned from
        var = self._var * nv / (nv - 1) if nv > 1 else self._var
        sd = math.sqrt(var) if var > 0 else 0.0
        if sd <= 1e-12 * (abs(self._mu) + 1.0):
            sd = 1e-12 * (abs(self._mu) + 1.0) if sd <= 0 else sd
        self._sd = sd * math.sqrt(1.0 + 4.0 / n) if n else sd
        rho = 0.0
        if self.autocorrelation and self._var > 0 and nv >= 3:
            rho = min(max(self._c1 / self._var, 0.0), _RHO_MAX)
        self._rho = rho
        # the CUSUM adds up values: their long-run scale is what counts (AR(1) inflation)
        self._sdc = self._sd * math.sqrt((1.0 + rho) / (1.0 - rho))
        self._ratio = math.sqrt((1.0 - rho) / (1.0 + rho))  # z -> CUSUM units

    @property
    def ready(self) -> bool:
        """True once the baseline is learned and values are scored."""
        return self._bn >= self._need

    @property
    def baseline(self) -> tuple[float, float]:
        """The current ``(mean, scale)`` values are standardised with."""
        return self._mu, self._sd

    @property
    def statistic(self) -> float:
        """The larger of the two CUSUM statistics now (0 on a stationary stream, mostly)."""
        return max(self._sp, self._sn)

    def _learn(self, x: float) -> None:
        n = self._bn + 1
        memory = self.memory
        w = 1.0 / n if n <= memory else 1.0 / memory
        nv = n + self._vn0  # the spread may carry values from before a change
        wv = 1.0 / nv if nv <= memory else 1.0 / memory
        d = x - self._mu
        if self._dprev is not None:
            self._c1 += wv * (d * self._dprev - self._c1)
        self._mu += w * d
        # (1 - w) (var + w d^2) when wv == w (Welford with forgetting)
        self._var = (1.0 - wv) * self._var + wv * d * (x - self._mu)
        self._dprev = x - self._mu
        self._bn = n
        self._set_sd()

    def _learn_clipped(self, x: float) -> None:
        """Learn a value, winsorised at the anomaly limit (one outlier moves little)."""
        lim = self.anomaly * self._sd
        lo, hi = self._mu - lim, self._mu + lim
        self._learn(lo if x < lo else hi if x > hi else x)

    # -- the hot path ---------------------------------------------------------------------
    def update(self, value: float, time: float | None = None, *,
               dataset_id: str | None = None, index: int | None = None) -> list[Finding]:
        """Add the next value; return the findings it completes (usually none).

        Parameters
        ----------
        value : float
            The next value (a residual or a raw measurement); NaN is skipped (counted but
            neither scored nor learned).
        time : float, optional
            Its time (UTC epoch s); default: its index in the stream.
        dataset_id : str, optional
            Copied into an anomaly finding.
        index : int, optional
            The value's index in its stream, reported as ``detail["index"]`` and
            ``detail["onset_index"]`` (default: the count of values given to this detector,
            from 0). A caller that watches part of a stream passes the stream's own index.

        Returns
        -------
        list of Finding
            ``"anomaly"`` and/or ``"change"`` findings, usually empty.
        """
        i = self.n
        self.n = i + 1
        x = float(value)
        if x != x:
            return []
        at = i if index is None else int(index)
        t = float(i) if time is None else float(time)
        if self._bn < self._need:
            self._learn(x)
            if self._bn == self._need:
                self._watch_start = i + 1
            return []
        dx = x - self._mu
        z = dx / self._sd
        out: list[Finding] = []
        a = self.anomaly
        if z > a or z < -a:
            out.append(self._anomaly(at, t, x, z, dataset_id))
        c = self.clip
        if z > c or z < -c:  # Huber: a heavy tail moves the CUSUM no more than c sigma
            z = c if z > 0 else -c
        z *= self._ratio
        k = self.drift
        sp = self._sp + z - k
        if sp <= 0.0:
            sp = 0.0
            self._pc = 0
        else:
            self._pc += 1
        sn = self._sn - z - k
        if sn <= 0.0:
            sn = 0.0
            self._nc = 0
        else:
            self._nc += 1
        self._sp, self._sn = sp, sn
        # values wait while a statistic is above zero: they are learned once both are back
        # at zero (no change in progress), or start the new baseline after a change
        pending = self._pending
        h = self.threshold
        if sp > h or sn > h:
            pending.append((x, at, t))
            out.append(self._change(i, at, t, up=sp >= sn))
        elif sp == 0.0 and sn == 0.0:
            if not self._fixed:
                for v in pending:
                    self._learn_clipped(v[0])
                self._learn_clipped(x)
            pending.clear()
        else:
            pending.append((x, at, t))
            if len(pending) > self.memory:
                v = pending.popleft()
                if not self._fixed:
                    self._learn_clipped(v[0])
        return out

    # -- findings -------------------------------------------------------------------------
    def _anomaly(self, i: int, t: float, x: float, z: float,
                 dataset_id: str | None) -> Finding:
        f = Finding("anomaly", self.metric, time=t, severity="info", onset=t,
                    beamline=self.beamline, target=self.target, dataset_id=dataset_id,
                    magnitude=x - self._mu,
                    confidence=max(0.0, 1.0 - 2.0 * _normal_tail(abs(z)) * self.arl),
                    message=(f"{self.metric}: one value {z:+.1f} sigma from its baseline "
                             f"({x:.4g} vs {self._mu:.4g})"),
                    detail={"index": i, "sigmas": z, "value": x, "baseline": self._mu,
                            "scale": self._sd})
        self.findings.append(f)
        return f

    def _change(self, i: int, at: int, t: float, *, up: bool) -> Finding:
        c, stat = (self._pc, self._sp) if up else (self._nc, self._sn)
        c = max(c, 1)
        excursion = list(self._pending)[-c:]
        # the onset within the excursion: the split that best explains it as a new mean
        # (maximum likelihood for a known old mean; the CUSUM's last zero often takes in a
        # value or two of noise before the change)
        mu, best, cut = self._mu, -1.0, 0
        tail = 0.0
        for j in range(len(excursion) - 1, -1, -1):
            tail += excursion[j][0] - mu
            score = tail * tail / (len(excursion) - j)
            if score > best:
                best, cut = score, j
        excursion = excursion[cut:]
        onset_i, onset_t = excursion[0][1], excursion[0][2]
        post = [v[0] for v in excursion]
        new_mean = math.fsum(post) / len(post)
        mag = new_mean - self._mu
        sig = mag / self._sd
        watched = max(i + 1 - self._watch_start, 1)
        arl_peak = cusum_arl(stat, self.drift) / 2.0
        conf = math.exp(-watched / arl_peak) if arl_peak > 0 else 0.0
        word = "rose" if up else "fell"
        f = Finding("change", self.metric, time=t,
                    onset=onset_t,
                    beamline=self.beamline, target=self.target, magnitude=mag,
                    confidence=min(max(conf, 0.0), 1.0),
                    severity="warning",
                    message=(f"{self.metric} {word} by {abs(sig):.1f} sigma "
                             f"(from {self._mu:.4g} to {new_mean:.4g}) since sample "
                             f"{onset_i}"),
                    detail={"index": at, "onset_index": onset_i, "sigmas": sig,
                            "before": self._mu, "after": new_mean, "scale": self._sd,
                            "statistic": stat, "threshold": self.threshold,
                            "delay": at - onset_i})
        self.findings.append(f)
        logger.info("change in %s at sample %d (onset %d, %+.1f sigma)", self.metric, at,
                    onset_i, sig)
        # the new baseline starts from the values since the onset (a known baseline is
        # known no more: it is learned from here on)
        if self._fixed:
            self._fixed, self.autocorrelation = False, self._auto
        self._restart(post, keep_scale=True)
        self._need = self.rewarm
        self._watch_start = i + 1 + max(self._need - self._bn, 0)
        return f

    def reset(self) -> None:
        """Forget the baseline and the statistics (keep the findings)."""
        self._need = self.warmup
        self._restart()

    def prime(self, values: Sequence[float]) -> None:
        """Learn values into the baseline without scoring them (e.g. a stream's history).

        The residuals of a stream's recent history against its model of normal, primed
        here, let the detector score the stream's first new value (no warm-up on it).
        NaN values are skipped.

        Examples
        --------
        >>> det = ChangeDetector()
        >>> det.prime([0.1, -0.3, 0.2, 0.0] * 5)
        >>> det.ready
        True
        """
        if self._fixed:
            raise ValueError("this detector has a known baseline (mean, scale): there is "
                             "nothing to prime")
        self._need = self.warmup
        for v in values:
            x = float(v)
            if x == x:
                self._learn(x)
        if self.ready:
            self._watch_start = self.n

    def assume(self, mean: float, scale: float, *, weight: int | None = None) -> None:
        """Start from a baseline known roughly: ``(mean, scale)`` worth ``weight`` values.

        Values are scored from the next one on, and the baseline goes on learning (unlike
        a fixed ``mean, scale``): e.g. residuals standardised by a model of normal fitted
        on history start from ``(0, 1)`` and the detector learns how they really spread.

        Parameters
        ----------
        mean, scale : float
            The baseline assumed (``scale > 0``).
        weight : int, optional
            How many values it is worth (default and least: ``warmup``).

        Examples
        --------
        >>> det = ChangeDetector()
        >>> det.assume(0.0, 1.0)
        >>> det.ready, det.baseline[0], round(det.baseline[1], 2)  # widened as if learned
        (True, 0.0, 1.12)
        """
        if not (math.isfinite(mean) and scale > 0 and math.isfinite(scale)):
            raise ValueError(f"assume needs a finite mean and a scale > 0, got {mean!r}, "
                             f"{scale!r}")
        n = self.warmup if weight is None else max(int(weight), self.warmup)
        self._fixed = False
        self.autocorrelation = self._auto
        self._vn0 = 0
        self._need = self.warmup
        self._restart()
        # as if learned from n values (the same small-sample widening as a learned one)
        self._bn, self._mu, self._var = n, float(mean), float(scale) ** 2 * (n - 1) / n
        self._set_sd()
        self._watch_start = self.n

    def rebase(self, values: Sequence[float], *, scale: float | None = None,
               rewarm: bool = False) -> None:
        """A new baseline mean from ``values`` (the stream was re-centred upstream).

        The statistics start from zero; the spread carries over (as after a change), or
        is ``scale`` (worth ``4 * warmup`` values; ``values`` then set the mean only: they
        may straddle a step too small to split them, which must not widen the spread).
        ``rewarm``: score again only once the baseline holds ``rewarm`` values (as after
        a change).
        """
        self._fixed = False
        self.autocorrelation = self._auto
        vals = [float(v) for v in values if v == v]
        if scale is None:
            self._restart(vals, keep_scale=True)
        else:
            if not (scale > 0 and math.isfinite(scale)):
                raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
            rho = self._c1 / self._var if self._var > 0 else 0.0
            self._vn0 = 0
            self._restart()
            n, nv = len(vals), len(vals) + 4 * self.warmup
            self._bn, self._vn0 = n, 4 * self.warmup
            self._mu = math.fsum(vals) / n if n else 0.0
            self._var = float(scale) ** 2 * (nv - 1) / nv
            self._c1 = rho * self._var
            self._dprev = vals[-1] - self._mu if vals else None
            self._set_sd()
        self._need = self.rewarm if rewarm else self.warmup
        self._watch_start = self.n + max(self._need - self._bn, 0)


def find_changes(values: npt.ArrayLike, times: npt.ArrayLike | None = None, *,
                 metric: str = "value", anomalies: bool = False,
                 **options: Any) -> list[Finding]:
    """Run :class:`ChangeDetector` over a whole series (the offline form).

    Parameters
    ----------
    values : array_like
        1-D series (NaN values are skipped).
    times : array_like, optional
        Their times (UTC epoch s); default: the indices ``0, 1, 2...``.
    metric : str
        Name copied into the findings.
    anomalies : bool
        Also return the ``"anomaly"`` findings (default: changes only).
    **options
        Keyword arguments of :class:`ChangeDetector` (``arl``, ``drift``, ``warmup``...).

    Returns
    -------
    list of Finding
        In time order; ``f.detail["onset_index"]`` is the index of a change's first new
        value.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.r_[np.zeros(100), np.full(100, 4.0)] + np.random.default_rng(0).normal(size=200)
    >>> [f.detail["onset_index"] for f in find_changes(x)]
    [100]
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    if times is None:
        t: Sequence[float] | None = None
    else:
        ta = np.asarray(times, dtype=float)
        if ta.shape != x.shape:
            raise ValueError(f"times must have the shape of values {x.shape}, got {ta.shape}")
        t = ta.tolist()
    det = ChangeDetector(metric=metric, **options)
    out: list[Finding] = []
    upd = det.update
    if t is None:
        for v in x.tolist():
            out += upd(v)
    else:
        for v, tv in zip(x.tolist(), t, strict=True):
            out += upd(v, tv)
    if not anomalies:
        out = [f for f in out if f.kind == "change"]
    return out
