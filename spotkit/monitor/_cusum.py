"""The CUSUM's calibration: average run length to a false alarm, and its inverse.

Siegmund's approximation of a one-sided CUSUM's run length on N(0, 1) data
(:func:`cusum_arl`), the height that gives a stated false-alarm rate
(:func:`cusum_threshold`), and the normal tail helpers the detectors share.
"""

from __future__ import annotations

import math

__all__ = ["cusum_arl", "cusum_threshold"]

#: Siegmund's correction of the CUSUM height for the overshoot (Siegmund 1985)
_OVERSHOOT = 1.166
def cusum_arl(threshold: float, drift: float) -> float:
    """Average run length to a false alarm of a one-sided CUSUM on N(0, 1) data.

    Siegmund's approximation for ``S = max(0, S + z - drift)`` alarming at ``S > threshold``:
    ``ARL = (exp(2 k b) - 2 k b - 1) / (2 k^2)`` with ``b = threshold + 1.166`` and
    ``k = drift``. A two-sided CUSUM (one upper, one lower) alarms about twice as often.

    Parameters
    ----------
    threshold : float
        Alarm height ``h`` (in noise standard deviations), > 0.
    drift : float
        Reference value ``k`` subtracted per sample, > 0.

    Returns
    -------
    float
        Samples between false alarms, on average.

    Examples
    --------
    >>> round(cusum_arl(5.0, 0.5))
    938
    """
    _check_positive(threshold=threshold, drift=drift)
    b = threshold + _OVERSHOOT
    x = 2.0 * drift * b
    if x > 700:  # exp overflows; the run length is astronomically long
        return math.inf
    return (math.exp(x) - x - 1.0) / (2.0 * drift * drift)


def cusum_threshold(arl: float, drift: float, *, sides: int = 2) -> float:
    """The CUSUM height whose false alarms come every ``arl`` samples on average.

    Inverts :func:`cusum_arl` (bisection); for ``sides=2`` each one-sided CUSUM gets
    ``2 * arl``, so the pair alarms once per ``arl`` samples of N(0, 1) noise.

    Parameters
    ----------
    arl : float
        Wanted average run length between false alarms (samples), > 1.
    drift : float
        Reference value ``k`` (half the shift, in sigmas, the CUSUM is best at), > 0.
    sides : int
        1 (one-sided) or 2 (upper and lower CUSUM together).

    Returns
    -------
    float
        The height ``h``.

    Examples
    --------
    >>> h = cusum_threshold(10_000, 1.0)
    >>> round(h, 2)
    4.14
    >>> round(cusum_arl(h, 1.0))
    20000
    """
    _check_positive(drift=drift)
    if not arl > 1:
        raise ValueError(f"arl must be > 1 (samples between false alarms), got {arl!r}")
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides!r}")
    target = arl * sides
    lo, hi = 1e-6, 1.0
    while cusum_arl(hi, drift) < target:
        hi *= 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if cusum_arl(mid, drift) < target:
            lo = mid
        else:
            hi = mid
    return hi


def _normal_quantile_upper(p: float) -> float:
    """z with P(Z > z) = p, for small p (Acklam's rational approximation, ~1e-9 relative)."""
    # tail region of Acklam's algorithm (p < 0.02425), good enough for thresholds
    if not 0.0 < p < 0.5:
        raise ValueError(f"p must be in (0, 0.5), got {p!r}")
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
         3.754408661907416e00)
    if p < 0.02425:
        q = math.sqrt(-2.0 * math.log(p))
        num = ((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]
        den = (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0
        return -num / den
    from statistics import NormalDist

    return -NormalDist().inv_cdf(p)


def _normal_tail(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if not (isinstance(v, int | float) and v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
