"""Bayesian online change-point detection (Adams & MacKay 2007), truncated run length."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln

from spotkit.monitor._findings import Finding

__all__ = ["BayesianDetector", "bayesian_changes"]


class BayesianDetector:
    """Changes in mean and variance by Bayesian online change-point detection.

    Adams & MacKay (2007): the posterior of the run length (values since the last change)
    is updated with each value, under a constant hazard ``1 / expected_run`` and a
    Normal-Gamma model of each segment (unknown mean and variance; Student-t predictive).
    Run lengths beyond ``max_run`` are merged into the longest one (bounded memory and
    cost: one numpy pass over ``max_run`` values per update, tens of microseconds - the
    monitor's default :class:`~spotkit.monitor.ChangeDetector` is faster and has a stated
    false-alarm rate; this one also sees changes of variance and gives posterior
    probabilities).

    A change is reported when the most probable run length is ``confirm`` to
    ``2 confirm + 1`` values (a change that has stayed the most probable explanation for
    ``confirm`` values) and the posterior probability of a change since then is at least
    ``threshold``; its onset is the value after the most probable change, its confidence
    that probability, its magnitude the mean of the values since the onset minus the mean
    of the previous segment.

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
    mean, kappa, alpha, beta : float
        Normal-Gamma prior of a segment (mean, pseudo-count of the mean, shape and rate of
        the precision); the defaults suit z-scored data.
    metric, beamline, target : str, optional
        Copied into the findings.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.normal(0, 1, 150), rng.normal(0, 4, 150)]   # the variance changes
    >>> [abs(f.detail["onset_index"] - 150) <= 5 for f in bayesian_changes(x)]
    [True]
    """

    def __init__(self, *, expected_run: float = 100.0, threshold: float = 0.5,
                 confirm: int = 3, max_run: int = 500, mean: float = 0.0, kappa: float = 1.0,
                 alpha: float = 1.0, beta: float = 1.0, metric: str = "value",
                 beamline: str | None = None, target: str | None = None) -> None:
        if not (expected_run > 1 and math.isfinite(expected_run)):
            raise ValueError(f"expected_run must be a finite number > 1, got {expected_run!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        if int(confirm) != confirm or confirm < 0:
            raise ValueError(f"confirm must be an integer >= 0, got {confirm!r}")
        if int(max_run) != max_run or max_run < confirm + 2:
            raise ValueError(f"max_run must be an integer >= confirm + 2, got {max_run!r}")
        for name, v in (("kappa", kappa), ("alpha", alpha), ("beta", beta)):
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        self.expected_run, self.threshold = float(expected_run), float(threshold)
        self.confirm, self.max_run = int(confirm), int(max_run)
        self._prior = (float(mean), float(kappa), float(alpha), float(beta))
        self.metric, self.beamline, self.target = metric, beamline, target
        self._log_h = math.log(1.0 / self.expected_run)
        self._log_1h = math.log1p(-1.0 / self.expected_run)
        self.n = 0
        self.findings: deque[Finding] = deque(maxlen=1000)
        self._recent: deque[tuple[float, float]] = deque(maxlen=self.max_run + 1)
        self._last_onset = -1
        m, k, a, b = self._prior
        self._logr = np.zeros(1)
        self._mu, self._kappa = np.array([m]), np.array([k])
        self._alpha, self._beta = np.array([a]), np.array([b])

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
        self._recent.append((x, t))
        mu, kappa, alpha, beta = self._mu, self._kappa, self._alpha, self._beta
        # Student-t predictive of each run length
        scale2 = beta * (kappa + 1.0) / (alpha * kappa)
        nu = 2.0 * alpha
        logpred = (gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * np.log(np.pi * nu * scale2)
                   - (nu + 1) / 2 * np.log1p((x - mu) ** 2 / (nu * scale2)))
        joint = self._logr + logpred
        grow = joint + self._log_1h
        cp = np.logaddexp.reduce(joint + self._log_h)
        logr = np.concatenate(([cp], grow))
        # sufficient statistics after this value; a new run starts from the prior
        m0, k0, a0, b0 = self._prior
        new_mu = (kappa * mu + x) / (kappa + 1.0)
        new_beta = beta + kappa * (x - mu) ** 2 / (2.0 * (kappa + 1.0))
        mu = np.concatenate(([m0], new_mu))
        kappa = np.concatenate(([k0], kappa + 1.0))
        alpha = np.concatenate(([a0], alpha + 0.5))
        beta = np.concatenate(([b0], new_beta))
        if logr.size > self.max_run + 1:  # merge the longest run lengths (bounded memory)
            logr[-2] = np.logaddexp(logr[-2], logr[-1])
            logr, mu, kappa, alpha, beta = logr[:-1], mu[:-1], kappa[:-1], alpha[:-1], beta[:-1]
        logr -= np.logaddexp.reduce(logr)
        self._logr, self._mu, self._kappa, self._alpha, self._beta = logr, mu, kappa, alpha, beta
        r_map = int(np.argmax(logr))
        if not self.confirm <= r_map <= 2 * self.confirm + 1 or i < self.confirm + 1:
            return []
        p_recent = float(np.exp(np.logaddexp.reduce(logr[: r_map + 2])))
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
                            "method": "bocpd"})
        self.findings.append(f)
        return f


def bayesian_changes(values: npt.ArrayLike, times: npt.ArrayLike | None = None, *,
                     metric: str = "value", **options: Any) -> list[Finding]:
    """Run :class:`BayesianDetector` over a whole series (the offline form).

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
    det = BayesianDetector(metric=metric, **options)
    out: list[Finding] = []
    for j, v in enumerate(x.tolist()):
        out += det.update(v, None if ts is None else ts[j])
    return out
