"""Bayesian online change-point detection (Adams & MacKay 2007), truncated run length."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln

from spotkit.monitor._bocpd_prior import MODELS, Prior, Scales, make_prior, prior_scales
from spotkit.monitor._findings import Finding

__all__ = ["BayesianDetector", "bayesian_changes"]

#: values between the online re-estimates of the prior's scales
_REFRESH = 32


def _logsumexp(v: np.ndarray) -> float:
    top = float(v.max())
    return top + math.log(float(np.exp(v - top).sum()))


class BayesianDetector:
    """Changes of level, trend and variance by Bayesian online change-point detection.

    Adams & MacKay (2007): the posterior of the run length (values since the last change)
    is updated with each value, under a constant hazard ``1 / expected_run``. Each segment
    is a Bayesian linear regression with a normal-inverse-gamma prior (unknown coefficients
    and noise variance; Student-t predictive): ``model="trend"`` (default) a level and a
    slope, so that a steady trend is one segment and a change is a jump of level or a kink
    of slope; ``model="mean"`` a level only (the paper's model). The prior of a new segment
    comes from robust statistics of the series (empirical Bayes): the noise scale from the
    MADs of the first and second differences (as the marginal variance of AR(1) noise), the
    level around the median with the series' spread, the slope around 0 with one spread
    per expected run (see :mod:`spotkit.monitor._bocpd_prior`). Online, these scales are
    estimated from the first ``warmup`` values (held back until then) and re-estimated from
    the last ``max_run`` values every 32 values; :func:`bayesian_changes` takes them from the
    whole series. Pass ``noise``, ``center`` and ``spread`` to fix them. With ``rho=None``
    each value's evidence weighs ``(1 - rho) / (1 + rho)`` independent values, ``rho`` the
    noise's lag-1 autocorrelation estimated from the same differences (for stationary
    autocorrelated noise; on random-walk-like series the estimate reaches its cap and the
    detector goes nearly blind, so it is not the default). Run lengths beyond ``max_run``
    are merged into the longest one (bounded memory and cost: one numpy pass over
    ``max_run`` values per update, about 0.2 ms on a busy 2-core machine - the monitor's default
    :class:`~spotkit.monitor.ChangeDetector` is faster and has a stated false-alarm rate;
    this one also sees changes of trend and variance and gives posterior probabilities).

    A change is reported when the most probable run length is ``confirm`` to
    ``2 confirm + 1`` values (a change that has stayed the most probable explanation for
    ``confirm`` values; one that only becomes the most probable much later, as a slow
    drift does, is not reported) and the posterior probability of a change since then is
    at least ``threshold``; its onset is the value after the most probable change, its
    confidence that probability, its magnitude the mean of the values since the onset
    minus the mean of the previous segment.

    Defaults (since 2026-12-04; before: ``model="mean", mean=0, kappa=1, alpha=1, beta=1``,
    the paper's BOCPD for z-scored data): trend segments with the robust prior. They were
    chosen among seven candidate settings fixed in advance, by leave-one-series-out
    cross-validation on the TCPD benchmark's series (the honest score is the held-out
    one, F1 0.722, below the former defaults' 0.734 there: not shown better on TCPD); the
    candidate best on a simulated suite (``rho=None`` as well) scored F1 0.692 in its blind
    TCPD run (see benchmarks/RESULTS.md). They are kept because the prior is in the
    series' own units (the former one assumed z-scored data, which an online detector does
    not have) and a steady trend is one segment.

    Parameters
    ----------
    expected_run : float
        Prior mean number of values between changes (the hazard is its inverse).
    threshold : float
        Posterior probability needed to report a change.
    confirm : int
        Values after a change before it can be reported (more: fewer false alarms, later).
    max_run : int
        Longest run length tracked.
    model : {"trend", "mean"}
        Segment model: level and slope, or level only.
    alpha : float
        Shape of the inverse-gamma prior of a segment's noise variance (its weight in
        values is ``2 alpha``).
    noise, center, spread : float, optional
        The prior's scales (noise standard deviation; centre and spread of segment levels);
        default: robust estimates from the data.
    rho : float or None
        Lag-1 autocorrelation of the noise in ``[0, 1)``: each value's evidence weighs
        ``(1 - rho) / (1 + rho)`` (a power likelihood: the effective number of independent
        values per value of AR(1) noise); ``None``: estimated from the data (capped at
        0.95); default ``0``, independent noise.
    mean, kappa, beta : float, optional
        The classic Normal-Gamma form of the prior (``model="mean"``): prior mean, its
        pseudo-count and the rate of the precision; they set ``center = mean``,
        ``noise = sqrt(beta / alpha)`` and ``spread = noise / sqrt(kappa)``
        (``model="mean", mean=0, kappa=1, alpha=1, beta=1`` is the paper's default on
        z-scored data).
    warmup : int
        Values held back to estimate the scales that are not given (>= 4).
    metric, beamline, target : str, optional
        Copied into the findings.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.normal(0, 1, 150), rng.normal(0, 4, 150)]   # the variance changes
    >>> [abs(f.detail["onset_index"] - 150) <= 5 for f in bayesian_changes(x)]
    [True]
    >>> t = np.arange(300.0)
    >>> y = 0.2 * t + np.where(t >= 200, 8.0, 0.0) + rng.normal(0, 1, 300)  # a trend jumps
    >>> [f.detail["onset_index"] for f in bayesian_changes(y)]
    [200]
    >>> len(bayesian_changes(y, model="mean")) > 1                 # levels: a staircase
    True
    """

    def __init__(self, *, expected_run: float = 100.0, threshold: float = 0.5,
                 confirm: int = 3, max_run: int = 500, model: str = "trend",
                 alpha: float = 1.0, noise: float | None = None, center: float | None = None,
                 spread: float | None = None, mean: float | None = None,
                 kappa: float | None = None, beta: float | None = None,
                 rho: float | None = 0.0, warmup: int = 8,
                 metric: str = "value", beamline: str | None = None,
                 target: str | None = None) -> None:
        if not (expected_run > 1 and math.isfinite(expected_run)):
            raise ValueError(f"expected_run must be a finite number > 1, got {expected_run!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        if int(confirm) != confirm or confirm < 0:
            raise ValueError(f"confirm must be an integer >= 0, got {confirm!r}")
        if int(max_run) != max_run or max_run < confirm + 2:
            raise ValueError(f"max_run must be an integer >= confirm + 2, got {max_run!r}")
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; choose one of {list(MODELS)}")
        if int(warmup) != warmup or warmup < 4:
            raise ValueError(f"warmup must be an integer >= 4, got {warmup!r}")
        for name, v in (("alpha", alpha), ("kappa", kappa), ("beta", beta),
                        ("noise", noise), ("spread", spread)):
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name, v in (("center", center), ("mean", mean)):
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if rho is not None and not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {rho!r}")
        self.expected_run, self.threshold = float(expected_run), float(threshold)
        self.confirm, self.max_run, self.model = int(confirm), int(max_run), model
        self.alpha, self.warmup = float(alpha), int(warmup)
        if mean is not None:
            center = mean
        if beta is not None:
            noise = math.sqrt(beta / alpha)
        self._kappa = kappa
        self._fixed = (noise, center, spread, rho)
        self._count = 0
        self.metric, self.beamline, self.target = metric, beamline, target
        self._log_h = math.log(1.0 / self.expected_run)
        self._log_1h = math.log1p(-1.0 / self.expected_run)
        self.n = 0
        self.findings: deque[Finding] = deque(maxlen=1000)
        self._recent: deque[tuple[float, float]] = deque(maxlen=self.max_run + 1)
        self._held: list[tuple[int, float, float]] = []
        self._last_onset = -1
        # per run length r = 0..max_run: regressors of the value r values into a segment,
        # the shape of the noise posterior and the Student-t constant that depends on it
        r = np.arange(self.max_run + 2, dtype=float)
        self._u = r / self.expected_run
        self._a = self.alpha + r / 2.0
        nu = 2.0 * self._a
        self._const = gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * np.log(np.pi * nu)
        self.scales: Scales | None = None
        self._prior: Prior | None = None
        self._weight = 1.0
        self._logr = np.zeros(1)
        # the state of each run length: b, then the coefficients' means and the upper
        # triangle of P by rows ([b, m0, p00] or [b, m0, p00, m1, p01, p11])
        self._st = np.zeros((0, 3 if model == "mean" else 6))
        self._prior_row = np.zeros(self._st.shape[1])
        self._estimate = None in (noise, center, spread if kappa is None else kappa, rho)
        if not self._estimate:  # nothing to estimate: no values held back
            self._set_scales(None)

    def _set_scales(self, values: np.ndarray | None) -> None:
        """Set the prior of new segments from the fixed scales and estimates from ``values``."""
        est = (prior_scales(values) if values is not None else None) or Scales(1, 0, 1, 0)
        noise, center, spread, rho = (e if f is None else f
                                      for f, e in zip(self._fixed, est, strict=True))
        if self._kappa is not None:
            spread = noise / math.sqrt(self._kappa)
        self.scales = Scales(noise, center, spread, rho)
        self._weight = (1.0 - rho) / (1.0 + rho)
        self._prior = make_prior(self.model, self.alpha, noise, center, spread, spread)
        pr = self._prior
        row = [pr.b, pr.m[0], pr.p[0, 0]]
        if self.model == "trend":
            row += [pr.m[1], pr.p[0, 1], pr.p[1, 1]]
        self._prior_row = np.array(row)
        if self._st.shape[0] == 0:  # the first run starts from it too
            self._st = self._prior_row[None, :].copy()

    def run_length(self) -> np.ndarray:
        """Posterior probabilities of the run lengths ``0, 1, ...`` now."""
        return np.exp(self._logr)

    def update(self, value: float, time: float | None = None) -> list[Finding]:
        """Add the next value (NaN is skipped); return a change finding when one is confirmed."""
        i = self.n
        self.n = i + 1
        x = float(value)
        if x != x:
            return []
        t = float(i) if time is None else float(time)
        if self._prior is None:  # hold the first values back until the scales are known
            self._held.append((i, x, t))
            if len(self._held) < self.warmup:
                return []
            self._set_scales(np.array([v for _, v, _ in self._held]))
            held, self._held = self._held, []
            out: list[Finding] = []
            for j, v, tj in held:
                out += self._step(j, v, tj)
            return out
        return self._step(i, x, t)

    def _step(self, i: int, x: float, t: float) -> list[Finding]:
        self._recent.append((x, t))
        self._count += 1
        if self._estimate and self._count % _REFRESH == 0:
            self._set_scales(np.array([v for v, _ in self._recent]))
        prior = self._prior
        assert prior is not None
        st, size = self._st, self._logr.size
        u, a = self._u[:size], self._a[:size]
        # Student-t predictive of each run length (NIG regression: h = [1] or [1, u])
        b, m0, p00 = st[:, 0], st[:, 1], st[:, 2]
        if self.model == "trend":
            m1, p01, p11 = st[:, 3], st[:, 4], st[:, 5]
            ph0, ph1 = p00 + p01 * u, p01 + p11 * u
            s = 1.0 + ph0 + ph1 * u
            e = x - m0 - m1 * u
        else:
            ph0 = p00
            s = 1.0 + ph0
            e = x - m0
        scale2 = b / a * s
        nu = 2.0 * a
        logpred = (self._const[:size] - 0.5 * np.log(scale2)
                   - (nu + 1) / 2 * np.log1p(e * e / (nu * scale2)))
        joint = self._logr + self._weight * logpred
        logr = np.empty(size + 1)
        logr[0] = _logsumexp(joint) + self._log_h
        logr[1:] = joint + self._log_1h
        # posterior after this value (rank-one NIG update); a new run starts from the prior
        new = np.empty((size + 1, st.shape[1]))
        new[0] = self._prior_row
        k0 = ph0 / s
        new[1:, 0] = b + e * e / (2.0 * s)
        new[1:, 1] = m0 + k0 * e
        new[1:, 2] = p00 - k0 * ph0
        if self.model == "trend":
            k1 = ph1 / s
            new[1:, 3] = m1 + k1 * e
            new[1:, 4] = p01 - k0 * ph1
            new[1:, 5] = p11 - k1 * ph1
        if size + 1 > self.max_run + 1:  # merge the longest run lengths (bounded memory)
            logr[-2] = np.logaddexp(logr[-2], logr[-1])
            logr, new = logr[:-1], new[:-1]
        logr -= _logsumexp(logr)
        self._logr, self._st = logr, new
        r_map = int(np.argmax(logr))
        if not self.confirm <= r_map <= 2 * self.confirm + 1 or i < self.confirm + 1:
            return []
        p_recent = float(np.exp(_logsumexp(logr[: r_map + 2])))
        onset = i - r_map + 1
        if p_recent < self.threshold or onset <= self._last_onset + self.confirm:
            return []
        return [self._change(i, t, onset, r_map, p_recent)]

    def _change(self, i: int, t: float, onset: int, r_map: int, p: float) -> Finding:
        recent = list(self._recent)
        end = len(recent) - r_map  # the values since the onset are the last r_map
        post = recent[end:] or recent[-1:]
        n_before = onset - max(self._last_onset, 0)  # the previous segment's values
        before = recent[max(0, end - n_before): end] or recent[:1]
        after_mean = sum(v for v, _ in post) / len(post)
        before_mean = sum(v for v, _ in before) / len(before)
        self._last_onset = onset
        word = "rose" if after_mean > before_mean else "fell"
        f = Finding("change", self.metric, time=t, onset=post[0][1], beamline=self.beamline,
                    target=self.target, magnitude=after_mean - before_mean,
                    confidence=min(max(p, 0.0), 1.0),
                    message=(f"{self.metric} {word} from {before_mean:.4g} to "
                             f"{after_mean:.4g} since sample {onset} (BOCPD, p = {p:.2f})"),
                    detail={"index": i, "onset_index": onset, "before": before_mean,
                            "after": after_mean, "delay": i - onset,
                            "method": "bocpd", "model": self.model})
        self.findings.append(f)
        return f


def bayesian_changes(values: npt.ArrayLike, times: npt.ArrayLike | None = None, *,
                     metric: str = "value", **options: Any) -> list[Finding]:
    """Run :class:`BayesianDetector` over a whole series (the offline form).

    The prior's scales not given in ``options`` (``noise``, ``center``, ``spread``; ``rho``
    where it is passed as None) are robust statistics of the whole series (as z-scoring a
    series uses its whole mean and spread), not of its first values.

    Parameters
    ----------
    values : array_like
        1-D series (NaN values are skipped).
    times : array_like, optional
        Their times; default: the indices.
    metric : str
        Name copied into the findings.
    **options
        Keyword arguments of :class:`BayesianDetector`.

    Returns
    -------
    list of Finding

    Examples
    --------
    >>> x = np.r_[np.zeros(60), np.ones(60)] + np.random.default_rng(1).normal(0, 0.2, 120)
    >>> [f.detail["onset_index"] for f in bayesian_changes(x, metric="queue_wait")]
    [60]
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    ts = None
    if times is not None:
        ta = np.asarray(times, dtype=float)
        if ta.shape != x.shape:
            raise ValueError(f"times must have the shape of values {x.shape}, got {ta.shape}")
        ts = ta.tolist()
    est = prior_scales(x)
    if est is not None:
        given = {k for k, v in options.items() if v is not None}
        if "rho" not in options:
            given.add("rho")  # the default (0), not an estimate
        if given & {"mean", "beta"}:
            given |= {"center", "noise"}
        if "kappa" in given:
            given.add("spread")
        options = {**options, **{k: v for k, v in est._asdict().items() if k not in given}}
    det = BayesianDetector(metric=metric, **options)
    out: list[Finding] = []
    for j, v in enumerate(x.tolist()):
        out += det.update(v, None if ts is None else ts[j])
    return out
