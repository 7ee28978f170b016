"""A simulated suite of annotated series, for choosing change-point defaults blind to TCPD.

The suite was written before any of the detectors compared on it was run on TCPD with the
new options, from what real series of the kind look like in general (economic, physical and
workflow series: levels that jump, trends that bend, autocorrelated or heavy-tailed noise,
seasonal cycles, a few outliers), not from TCPD's series or annotations. Each series has
its true change points (jumps of level, kinks of trend, changes of variance), and is scored
with TCPD's own F1 (margin 5) and cover, the truth as the one annotator, after z-scoring
as TCPDBench does.

Families (equally likely): ``level`` piecewise-constant means; ``kink`` a continuous
piecewise-linear trend; ``jump+trend`` piecewise-linear with jumps; ``smooth`` a smooth
trend (exponential, logistic or quadratic) with level jumps (none in a third of them);
``variance`` changes of the noise's spread. Noise: Gaussian (half), AR(1) with phi in
[0.2, 0.7] (a quarter) or Student-t with 3 degrees of freedom (a quarter); 15 % of the series
carry a 12-value seasonal cycle, 10 % one to three outliers of 6-10 noise sds. Lengths
log-uniform in [20, 800]; changes at a rate log-uniform in [1/300, 1/50] per value, at least
8 values apart and from the ends.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

FAMILIES = ("level", "kink", "jump+trend", "smooth", "variance")


def _locations(rng: np.random.Generator, n: int) -> list[int]:
    rate = math.exp(rng.uniform(math.log(1 / 300), math.log(1 / 50)))
    k = int(rng.poisson(rate * n))
    locs: list[int] = []
    for _ in range(50 * k):
        if len(locs) == k:
            break
        c = int(rng.integers(8, n - 8)) if n > 16 else -1
        if c > 0 and all(abs(c - o) >= 8 for o in locs):
            locs.append(c)
    return sorted(locs)


def _noise(rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
    u = rng.uniform()
    if u < 0.5:
        return rng.normal(0, 1, n), "gauss"
    if u < 0.75:
        phi = rng.uniform(0.2, 0.7)
        e = rng.normal(0, math.sqrt(1 - phi * phi), n)
        out = np.empty(n)
        out[0] = rng.normal()
        for i in range(1, n):
            out[i] = phi * out[i - 1] + e[i]
        return out, "ar1"
    return rng.standard_t(3, n) / math.sqrt(3.0), "t3"


def simulate(rng: np.random.Generator) -> tuple[np.ndarray, list[int], str]:
    """One series, its true change points (first index of each new segment), its kind.

    The kind is ``family/noise[+seasonal][+outliers]``.
    """
    n = round(math.exp(rng.uniform(math.log(20), math.log(800))))
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    locs = _locations(rng, n)
    edges = [0, *locs, n]
    t = np.arange(n, dtype=float)
    noise, kind = _noise(rng, n)
    signal = np.zeros(n)
    sign = lambda: rng.choice([-1.0, 1.0])  # noqa: E731
    if family == "level":
        level = 0.0
        for a, b in itertools.pairwise(edges):
            signal[a:b] = level
            level += sign() * rng.uniform(1.5, 6.0)
    elif family in ("kink", "jump+trend"):
        level, slope = 0.0, rng.normal(0, 3.0) / max(n, 1) * 10
        for a, b in itertools.pairwise(edges):
            signal[a:b] = level + slope * (t[a:b] - a)
            level += slope * (b - a)
            if family == "jump+trend":
                level += sign() * rng.uniform(1.5, 6.0)
            # a kink that moves the level by 4-12 noise sds over 20 values
            slope += sign() * rng.uniform(4.0, 12.0) / 20.0
    elif family == "smooth":
        shape = rng.integers(3)
        z = t / max(n - 1, 1)
        amp = rng.uniform(3.0, 30.0)
        base = (np.expm1(3 * z) / np.expm1(3) if shape == 0
                else 1 / (1 + np.exp(-12 * (z - 0.5))) if shape == 1 else z * z)
        signal = amp * sign() * base
        if rng.uniform() < 1 / 3:
            locs, edges = [], [0, n]
        level = 0.0
        for a, b in itertools.pairwise(edges):
            signal[a:b] += level
            level += sign() * rng.uniform(1.5, 6.0)
    else:
        sd = 1.0
        for a, b in itertools.pairwise(edges):
            noise[a:b] *= sd
            sd *= math.exp(sign() * rng.uniform(math.log(2), math.log(4)))
    x = signal + noise
    if rng.uniform() < 0.15:
        kind += "+seasonal"
        x += rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 2 * np.pi))
    if rng.uniform() < 0.10:
        kind += "+outliers"
        for j in rng.integers(0, n, int(rng.integers(1, 4))):
            x[j] += sign() * rng.uniform(6.0, 10.0)
    x = x * rng.uniform(0.1, 1000.0) + rng.normal(0, 100.0)  # any units
    y = (x - x.mean()) / x.std(ddof=1)  # as TCPDBench's load_dataset
    return y, locs, f"{family}/{kind}"


def suite(count: int, seed: int = 20261204) -> list[tuple[np.ndarray, list[int], str]]:
    """``count`` simulated series (fixed by ``seed``)."""
    rng = np.random.default_rng(seed)
    return [simulate(rng) for _ in range(count)]
