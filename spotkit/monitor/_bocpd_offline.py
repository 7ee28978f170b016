"""The most probable segmentation of a whole series under BayesianDetector's model (offline).

:class:`~spotkit.monitor.BayesianDetector` must decide value by value (filtering: only the
values so far). A whole series can be read both ways: :func:`bayesian_segment` finds the
exact maximum a posteriori (MAP) segmentation under the same model - the same segment
models (averaged), the same empirical-Bayes prior, the same constant hazard - by dynamic
programming over every segment's marginal likelihood (Fearnhead 2006, "Exact and efficient
Bayesian inference for multiple changepoint problems"; the Viterbi form of its recursion).
A change that only becomes clear some values later (a slow kink of trend) is placed where
it started, and one that later values explain away (an outlier, a bend of a random walk)
is not reported.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from spotkit.monitor._bocpd import BayesianDetector, _kalman_step, _scaled_options
from spotkit.monitor._findings import Finding
from spotkit.monitor._segment import winsorized

logger = logging.getLogger(__name__)

__all__ = ["bayesian_segment"]

#: BayesianDetector options that mean nothing offline (they belong to its reporting rule)
_ONLINE_ONLY = ("threshold", "confirm", "max_run", "warmup")


def _log_marginals(det: BayesianDetector, x: np.ndarray) -> np.ndarray:
    """Log marginal likelihood of ``x`` as one segment under each of ``det``'s models."""
    st = det._prior_col.copy()
    total = np.zeros(len(det.models))
    for j, v in enumerate(x.tolist()):
        logpred, new = _kalman_step(st, v, det._a[j:j + 1], det._const[j:j + 1],
                                    det._prior_col, det._q, det._delta)
        total += det._weight * logpred[:, 0]
        st = new[:, :, 1:]
    return total


def bayesian_segment(values: npt.ArrayLike, times: npt.ArrayLike | None = None, *,
                     min_size: int = 5, winsorize: float | None = 3.0,
                     metric: str = "value",
                     **options: Any) -> list[Finding]:
    """Change points of a whole series: the most probable segmentation under BOCPD's model.

    The series is modelled as :class:`~spotkit.monitor.BayesianDetector` models it:
    segments with a constant hazard ``1 / expected_run`` of ending after each value, each
    segment one of the segment ``model`` s (default: a steady trend under independent
    noise, or a random walk with drift under noise, averaged with equal prior weights) with
    the empirical-Bayes prior from robust statistics of the whole series. The segmentation
    with the highest posterior probability is found exactly by dynamic programming over the
    marginal likelihoods of all segments (Fearnhead 2006), each computed by the detector's
    vectorised Kalman recursion: O(n^2) time and O(n) memory (1.3 s for 4,000 values, 14 s
    for 10,000 on a busy 2-core machine; for long telemetry use
    :func:`~spotkit.monitor.segment`, O(n log n), or the most recent values). Each change's
    confidence is its posterior probability given the rest of the segmentation (the two
    segments it separates against one segment in their place).

    Parameters
    ----------
    values : array_like
        1-D series (NaN values are skipped; indices and times stay those of ``values``).
    times : array_like, optional
        Their times; default: the indices.
    min_size : int
        Fewest values in a segment (the first and last included): a shorter excursion is
        not a change (as the detector's ``confirm``). Default 5.
    winsorize : float or None
        With a number ``c``, each value is clipped to ``c`` noise standard deviations (the
        prior's noise scale) around a running median of ``min_size`` values (odd, at least
        3), as :func:`~spotkit.monitor.segment` does, so an isolated outlier cannot pay for
        a segment of its own (default 3); the findings' levels are those of the values as
        given. None: the values as they are.
    metric : str
        Name copied into the findings.
    **options
        :class:`~spotkit.monitor.BayesianDetector`'s model options (``model``,
        ``expected_run``, ``alpha``, ``noise``, ``center``, ``spread``, ``rho``, ``walk``,
        ``walk_noise``, ``walk_gate``, ``mean``, ``kappa``, ``beta``); the scales not given
        are robust statistics of the whole series.

    Returns
    -------
    list of Finding
        One ``"change"`` per change point, in order; ``detail["onset_index"]`` is the first
        index of the new segment, ``detail["sigmas"]`` its magnitude in noise standard
        deviations (the prior's noise scale), ``detail["method"]`` ``"bayes-map"``.

    Raises
    ------
    ValueError
        If ``values`` is not 1-D, ``times`` does not match it, ``min_size`` is not an
        integer >= 1, ``winsorize`` is not None or a number > 0, or an option is invalid
        (as :class:`BayesianDetector` says).

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> t = np.arange(200.0)
    >>> y = np.where(t < 120, 0.0, 0.2 * (t - 120)) + rng.normal(0, 0.5, 200)   # a kink
    >>> [abs(f.detail["onset_index"] - 120) <= 5 for f in bayesian_segment(y)]
    [True]
    >>> x = np.r_[np.zeros(80), 3 * np.ones(80)] + rng.normal(0, 1, 160)
    >>> x[40] += 12.0                                          # an outlier is not a change
    >>> [(f.detail["onset_index"], round(f.confidence, 2))
    ...  for f in bayesian_segment(x)]
    [(80, 1.0)]
    """
    x_all = np.asarray(values, dtype=float)
    if x_all.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x_all.shape}")
    if times is not None:
        t_all = np.asarray(times, dtype=float)
        if t_all.shape != x_all.shape:
            raise ValueError(f"times must have the shape of values {x_all.shape}, "
                             f"got {t_all.shape}")
    else:
        t_all = np.arange(x_all.size, dtype=float)
    if int(min_size) != min_size or min_size < 1:
        raise ValueError(f"min_size must be an integer >= 1, got {min_size!r}")
    min_size = int(min_size)
    if winsorize is not None and not (isinstance(winsorize, int | float)
                                      and math.isfinite(winsorize) and winsorize > 0):
        raise ValueError(f"winsorize must be None or a finite number > 0, got {winsorize!r}")
    ignored = [k for k in _ONLINE_ONLY if k in options]
    if ignored:
        raise ValueError(f"{', '.join(ignored)}: options of the online detector's reporting "
                         f"rule, not of bayesian_segment (use min_size)")
    keep = np.flatnonzero(np.isfinite(x_all))
    x = x_all[keep]
    n = x.size
    if n < 2 * min_size:
        return []
    det = BayesianDetector(metric=metric, max_run=n + 1, warmup=4,
                           **_scaled_options(x, dict(options)))
    if det.scales is None:  # a scale left to estimate (e.g. from fewer than 4 values)
        det._set_scales(x)
    raw = x
    if winsorize is not None:
        assert det.scales is not None
        x = winsorized(x, min_size, float(winsorize) * det.scales.noise)
    k = len(det.models)
    log_h, log_1h = det._log_h, det._log_1h
    log_w = det._log_w  # (k, 1): the models' prior weights
    # best[j]: log posterior (up to a constant) of the best segmentation of x[:j] whose last
    # segment ends at j - 1, with the change after it counted; start[j]: that segment's start
    best = np.full(n + 1, -np.inf)
    best[0] = 0.0
    start = np.zeros(n + 1, dtype=int)
    st = det._prior_col.copy()
    cum = np.zeros((k, 1))  # per model and start s = i - r: log marginal of x[s:i]
    for i, v in enumerate(x.tolist()):
        size = st.shape[2]
        logpred, st = _kalman_step(st, v, det._a[:size], det._const[:size],
                                   det._prior_col, det._q, det._delta)
        seg = cum + det._weight * logpred  # (k, i + 1): segments x[i - r : i + 1]
        m = seg + log_w
        top = m.max(axis=0)
        marg = top + np.log(np.exp(m - top).sum(axis=0))  # models averaged, per r
        r = np.arange(size)
        # a segment x[s : i + 1] (s = i - r) after the best segmentation of x[:s]
        cand = best[i - r] + marg + r * log_1h
        cand[r + 1 < min_size] = -np.inf  # (a start s < min_size has best[s] = -inf)
        j = int(np.argmax(cand))
        best[i + 1] = cand[j] + log_h
        start[i + 1] = i - j
        cum = np.concatenate((np.zeros((k, 1)), seg), axis=1)
    edges = [n]
    while edges[-1] > 0:
        edges.append(int(start[edges[-1]]))
    edges = edges[::-1]  # 0, change points..., n
    logger.debug("bayesian_segment(%s): %d changes in %d values", metric, len(edges) - 2, n)
    assert det.scales is not None
    noise = det.scales.noise
    out: list[Finding] = []
    # each segment's marginal per model, once (a change compares its two neighbours)
    seg_ml = [_log_marginals(det, x[a:b]) for a, b in itertools.pairwise(edges)]
    for k, (a, c, b) in enumerate(zip(edges[:-2], edges[1:-1], edges[2:], strict=True)):
        ml_a, ml_b = seg_ml[k], seg_ml[k + 1]
        ml_ab = _log_marginals(det, x[a:b])
        two = (float(np.logaddexp.reduce(ml_a + log_w[:, 0]))
               + float(np.logaddexp.reduce(ml_b + log_w[:, 0])) + log_h)
        one = float(np.logaddexp.reduce(ml_ab + log_w[:, 0])) + log_1h
        p = 1.0 / (1.0 + math.exp(min(one - two, 700.0)))
        before, after = float(raw[a:c].mean()), float(raw[c:b].mean())
        onset = int(keep[c])
        word = "rose" if after > before else "fell"
        out.append(Finding(
            "change", metric, time=float(t_all[onset]), onset=float(t_all[onset]),
            magnitude=after - before, confidence=p,
            message=(f"{metric} {word} from {before:.4g} to {after:.4g} at sample {onset} "
                     f"(Bayesian segmentation, p = {p:.2f})"),
            detail={"index": onset, "onset_index": onset, "before": before, "after": after,
                    "sigmas": (after - before) / noise, "method": "bayes-map",
                    "model": det.model,
                    "segment_model": det.models[int(np.argmax(ml_b))]}))
    return out
