"""Statistical tests of a product summary against its references' summaries.

Every test turns the comparison into a robust z score against the references' own spread,
so one threshold (``z_fail``, default :data:`Z_FAIL`) serves all of them:

* **histogram** (volumes): the 1-Wasserstein distance between the product's value
  distribution and the references' (pointwise median of their quantile functions, over
  the robust range 0.5-99.5 %). Its threshold is calibrated on the references themselves:
  leave-one-out, each reference's distance to the median of the others; the product's
  distance is scored against those (one-sided: only "farther" is bad).
* **iq_shape** (I(q)): chi-square of the ratio ``I(q) / I_ref(q)`` (scaled to a median of
  1: the shape) against the references' pointwise spread of the same ratio (1.4826 x MAD
  over the references, never below the product's own relative error), averaged over q;
  calibrated leave-one-out as above. ``I_ref`` is the references' pointwise median.
* **iq_level** (I(q)): the level, the inverse-variance weighted mean of ``I / I_ref - 1``
  (weights from the product's own errors), scored two-sided against the same number of
  each reference leave-one-out (a gain, beam or thickness change).
* **scalars** (:data:`SCALAR_TESTS`): ``(x - median_ref) / scale`` with ``scale = max(1.4826
  x MAD_ref, rel_floor x |median_ref|, abs_floor)``; the floors keep a set of nearly equal
  references from making noise look significant.

Distances and amplitudes (``histogram``, ``iq_shape``, ``ring_max``) are positive and vary by
factors from product to product (a phantom with more pores, a scan with a stronger ring
column), so they are scored on a log scale: ``z = (ln d - median(ln d_ref)) / scale``, the
scale at least 0.1 (about 10 %).

A summary value that is missing (not measurable for this product) skips its test, and the
result says so.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from spotkit.monitor._quality_summary import ProductSummary

__all__ = ["SCALAR_TESTS", "Z_FAIL", "ScalarTest", "TestResult", "compare_summaries", "robust_z"]

#: default threshold on a test's robust z score
Z_FAIL = 5.0
_MAD = 1.4826


@dataclasses.dataclass(frozen=True)
class ScalarTest:
    """How one summary number is tested.

    Attributes
    ----------
    family : str
        The summary family it belongs to.
    key : str
        The scalar in :attr:`ProductSummary.scalars`.
    sided : {"two", "high", "low"}
        Which deviations fail: both, only larger values, only smaller ones.
    rel_floor, abs_floor : float
        Lower bounds of the scale (relative to the references' median; absolute; for a
        ``log`` test, in natural-log units of the value: 0.1 is about 10 %).
    what : str
        What a failure means, for people.
    log : bool
        Score the logarithm (positive amounts that vary by factors: amplitudes).
    """

    family: str
    key: str
    sided: str
    rel_floor: float
    abs_floor: float
    what: str
    log: bool = False


#: the scalar tests per family (the order of the results)
SCALAR_TESTS: tuple[ScalarTest, ...] = (
    ScalarTest("volume", "ring_max", "high", 0.0, 0.1, "ring artefacts", log=True),
    ScalarTest("volume", "edge_level", "two", 0.0, 2e-4,
               "level at the edge of the field of view (gain or offset error)"),
    ScalarTest("volume", "center_offset", "two", 0.0, 0.1,
               "centre of rotation used vs found on the raw scan (pixels)"),
    ScalarTest("volume", "raw_dead_fraction", "high", 0.0, 1e-3,
               "dead detector pixels in the raw scan's flats"),
    ScalarTest("iq", "raw_dead_fraction", "high", 0.0, 1e-3,
               "dead detector pixels in the raw frames"),
    ScalarTest("tomo_raw", "dead_fraction", "high", 0.0, 1e-3, "dead detector pixels"),
    ScalarTest("tomo_raw", "flat_level", "two", 0.01, 0.0, "flat-field level (beam, gain)"),
    ScalarTest("tomo_raw", "dark_level", "two", 0.01, 0.5, "dark level"),
    ScalarTest("saxs_raw", "dead_fraction", "high", 0.0, 1e-3, "dead detector pixels"),
    ScalarTest("saxs_raw", "mean_counts", "two", 0.003, 0.0, "counts per pixel (gain, beam)"),
)


@dataclasses.dataclass(frozen=True)
class TestResult:
    """One test of a product against its references.

    Attributes
    ----------
    name : str
        ``"histogram"``, ``"iq_shape"`` or the scalar's name.
    statistic : str
        ``"wasserstein"``, ``"chi2_ratio"`` or ``"value"``.
    value : float or None
        The product's statistic (``None``: not measurable, test skipped).
    reference : float or None
        The references' median of the same statistic (leave-one-out for distances).
    scale : float or None
        The spread it is divided by (natural-log units for the distance tests and
        ``log`` scalar tests).
    z : float or None
        Robust z score.
    threshold : float
        ``|z|`` (or the signed side) above which the test fails.
    passed : bool
        False when it failed (a skipped test passes).
    message : str
        One line for people, with the numbers.
    """

    __test__ = False  # not a pytest test class

    name: str
    statistic: str
    value: float | None
    reference: float | None
    scale: float | None
    z: float | None
    threshold: float
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestResult:
        """Back from :meth:`to_dict`."""
        values: dict[str, Any] = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**values)


def robust_z(value: float, references: Sequence[float], *, rel_floor: float = 0.0,
             abs_floor: float = 0.0) -> tuple[float, float, float]:
    """Robust z score of ``value`` against reference values.

    Parameters
    ----------
    value : float
    references : sequence of float
        At least one finite value.
    rel_floor, abs_floor : float
        The scale is ``max(1.4826 * MAD, rel_floor * |median|, abs_floor)``.

    Returns
    -------
    (z, median, scale) : tuple of float

    Examples
    --------
    >>> z, med, scale = robust_z(14.0, [9.0, 10.0, 11.0, 10.0, 12.0])
    >>> round(z, 2), med
    (2.7, 10.0)
    """
    ref = np.asarray([r for r in references if r is not None and math.isfinite(r)], float)
    if ref.size == 0:
        raise ValueError("robust_z needs at least one finite reference value")
    med = float(np.median(ref))
    scale = max(_MAD * float(np.median(np.abs(ref - med))), rel_floor * abs(med), abs_floor)
    if scale <= 0:
        scale = max(abs(med) * 1e-6, 1e-12)
    return (float(value) - med) / scale, med, scale


def _fails(z: float, sided: str, threshold: float) -> bool:
    if sided == "high":
        return z > threshold
    if sided == "low":
        return z < -threshold
    return abs(z) > threshold


# -- distances with leave-one-out calibration -------------------------------------------------


def _wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein distance between two distributions given by quantiles at equal levels."""
    return float(np.nanmean(np.abs(a - b)))


def _on_grid(q_to: np.ndarray, summary: ProductSummary) -> np.ndarray:
    q = np.asarray(summary.curves["q"])
    i = np.asarray(summary.curves["intensity"])
    if q.shape == q_to.shape and np.allclose(q, q_to, rtol=1e-9, atol=0):
        return i
    return np.interp(q_to, q, i, left=np.nan, right=np.nan)


def _chi2_ratio(curve: np.ndarray, others: np.ndarray, rel_sigma: np.ndarray) -> float:
    """Mean over q of ((r(q) - 1) / spread(q))^2 with ``r = curve / median(others)`` scaled
    to a median of 1 (the shape; the level is :func:`_level`), and ``spread`` the
    others' pointwise 1.4826 x MAD of the same scaled ratio."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN q bins (masked)
        ref = np.nanmedian(others, axis=0)
        ratios = others / ref
        ratios = ratios / np.nanmedian(ratios, axis=1, keepdims=True)
        spread = _MAD * np.nanmedian(np.abs(ratios - np.nanmedian(ratios, axis=0)), axis=0)
        spread = np.fmax(np.fmax(spread, rel_sigma), 1e-6)
        mine = curve / ref
        mine = mine / np.nanmedian(mine)
        chi = ((mine - 1.0) / spread) ** 2
    chi = chi[np.isfinite(chi)]
    return float(np.mean(chi)) if chi.size else float("nan")


def _log(value: float) -> float:
    return math.log(max(value, 1e-300)) if math.isfinite(value) else value


def _distance_test(name: str, statistic: str, value: float, loo: list[float],
                   z_fail: float, what: str) -> TestResult:
    z, med, scale = robust_z(_log(value), [_log(d) for d in loo], abs_floor=0.1)
    med = math.exp(med)
    passed = not _fails(z, "high", z_fail)
    message = (f"{name}: {statistic} {value:.4g} vs references' own {med:.4g} "
               f"(x/ {math.exp(scale):.3g}): z = {z:+.1f}"
               + ("" if passed else f" > {z_fail:g}, {what}"))
    return TestResult(name, statistic, value, med, scale, z, z_fail, passed, message)


def _histogram_test(summary: ProductSummary, refs: list[ProductSummary],
                    z_fail: float) -> TestResult:
    qs = np.array([r.curves["quantiles"] for r in refs], dtype=float)
    mine = np.asarray(summary.curves["quantiles"], dtype=float)
    value = _wasserstein(mine, np.nanmedian(qs, axis=0))
    loo = [_wasserstein(qs[i], np.nanmedian(np.delete(qs, i, axis=0), axis=0))
           for i in range(len(qs))]
    return _distance_test("histogram", "wasserstein", value, loo, z_fail,
                          "the distribution of values differs from the references'")


def _level(curve: np.ndarray, ref: np.ndarray, rel_sigma: np.ndarray) -> float:
    """Weighted mean of ``curve / ref - 1`` (the relative level), each point weighted by
    ``(ref / sigma)^2`` with ``sigma = rel_sigma * |curve|`` (the reference's value, not the
    noisy one, sets the weight, so an upward fluctuation does not weigh more)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = curve / ref - 1.0
        sigma = np.fmax(rel_sigma * np.abs(curve), 1e-12 * np.nanmax(np.abs(ref)))
        weight = (ref / sigma) ** 2
    ok = np.isfinite(dev) & np.isfinite(weight) & (weight > 0)
    return float(np.sum(weight[ok] * dev[ok]) / np.sum(weight[ok])) if ok.any() else float("nan")


def _iq_tests(summary: ProductSummary, refs: list[ProductSummary],
              z_fail: float) -> list[TestResult]:
    q = np.asarray(summary.curves["q"], dtype=float)
    mine = np.asarray(summary.curves["intensity"], dtype=float)
    rel = np.nan_to_num(np.asarray(summary.curves.get("rel_sigma", np.zeros_like(q)), float))
    curves = np.array([_on_grid(q, r) for r in refs])
    rels = [np.nan_to_num(np.interp(q, np.asarray(r.curves["q"]),
                                    np.asarray(r.curves.get("rel_sigma",
                                                            np.zeros(len(r.curves["q"]))))))
            for r in refs]
    value = _chi2_ratio(mine, curves, rel)
    loo = [_chi2_ratio(curves[i], np.delete(curves, i, axis=0), rels[i])
           for i in range(len(curves))]
    shape = _distance_test("iq_shape", "chi2_ratio", value, loo, z_fail,
                           "the shape of I(q) differs from the references'")
    # the level: weighted mean ratio to the references' median curve, its spread leave-one-out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        level = _level(mine, np.nanmedian(curves, axis=0), rel)
        loo_levels = [_level(curves[i], np.nanmedian(np.delete(curves, i, axis=0), axis=0),
                             rels[i]) for i in range(len(curves))]
    z, med, scale = robust_z(level, loo_levels, abs_floor=1e-4)
    passed = not _fails(z, "two", z_fail)
    message = (f"iq_level: {100 * level:+.2f} % vs references' own {100 * med:+.2f} % (spread "
               f"{100 * scale:.2g} %): z = {z:+.1f}"
               + ("" if passed else f", beyond {z_fail:g}: the intensity level changed "
                                    "(gain, beam, thickness)"))
    return [shape, TestResult("iq_level", "weighted_ratio", level, med, scale, z, z_fail,
                              passed, message)]


# -- the comparison ---------------------------------------------------------------------------


def compare_summaries(summary: ProductSummary, references: Sequence[ProductSummary], *,
                      z_fail: float = Z_FAIL) -> list[TestResult]:
    """Test a product's summary against its references' summaries.

    Parameters
    ----------
    summary : ProductSummary
        The product's.
    references : sequence of ProductSummary
        At least 3, of the same family (the caller decides how many are enough).
    z_fail : float
        Threshold on every test's robust z.

    Returns
    -------
    list of TestResult
        The distance tests of the family first (``histogram``, or ``iq_shape`` and
        ``iq_level``; none for raw scans), then the scalar tests of :data:`SCALAR_TESTS`.

    Raises
    ------
    ValueError
        Fewer than 3 references, or references of another family.

    Examples
    --------
    >>> import numpy as np
    >>> from spotkit.monitor import summarize_iq
    >>> q = np.linspace(0.1, 2.0, 40)
    >>> rng = np.random.default_rng(1)
    >>> refs = [summarize_iq(q, 1 / q * rng.normal(1, 0.01, q.size)) for _ in range(8)]
    >>> ok = compare_summaries(summarize_iq(q, 1 / q * rng.normal(1, 0.01, q.size)), refs)
    >>> bad = compare_summaries(summarize_iq(q, 1.05 / q * rng.normal(1, 0.01, q.size)), refs)
    >>> all(t.passed for t in ok), [t.name for t in bad if not t.passed]
    (True, ['iq_level'])
    """
    refs = list(references)
    if len(refs) < 3:
        raise ValueError(f"need at least 3 references to calibrate the tests, got {len(refs)}")
    wrong = {r.family for r in refs} - {summary.family}
    if wrong:
        raise ValueError(f"references of family {sorted(wrong)} cannot be compared with a "
                         f"{summary.family!r} summary")
    results: list[TestResult] = []
    if summary.family == "volume" and "quantiles" in summary.curves:
        results.append(_histogram_test(summary, refs, z_fail))
    elif summary.family == "iq":
        results.extend(_iq_tests(summary, refs, z_fail))
    for test in SCALAR_TESTS:
        if test.family != summary.family:
            continue
        value = summary.scalars.get(test.key)
        ref_values = [v for r in refs if (v := r.scalars.get(test.key)) is not None]
        if value is None or len(ref_values) < 3:
            why = ("not measured for this product" if value is None
                   else f"only {len(ref_values)} references have it")
            results.append(TestResult(test.key, "value", value, None, None, None, z_fail, True,
                                      f"{test.key}: skipped ({why})"))
            continue
        if test.log:
            z, med, scale = robust_z(_log(value), [_log(v) for v in ref_values],
                                     abs_floor=test.abs_floor)
            med, spread = math.exp(med), f"x/ {math.exp(scale):.3g}"
        else:
            z, med, scale = robust_z(value, ref_values, rel_floor=test.rel_floor,
                                     abs_floor=test.abs_floor)
            spread = f"spread {scale:.3g}"
        passed = not _fails(z, test.sided, z_fail)
        message = (f"{test.key}: {value:.4g} vs references {med:.4g} ({spread}): "
                   f"z = {z:+.1f}" + ("" if passed else f", beyond {z_fail:g}: {test.what}"))
        results.append(TestResult(test.key, "value", value, med, scale, z, z_fail, passed,
                                  message))
    return results
