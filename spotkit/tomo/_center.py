"""Centre of rotation: Vo's Fourier metric, 0/180° phase correlation, sinusoid fit, axis tilt.

Every method returns the rotation axis as tomopy gives it (:data:`spotkit.tomo.CONVENTION`):
positions measured from the left edge of column 0, so ``n_cols / 2`` is the middle of the
detector, and a centre from tomopy, tomopy-cli, tomocupy or a beamline log means the same
here. Internally the methods work in column-centre coordinates (column ``j`` centred at
``j``, the axis at ``a = center - 1/2``) and convert on the way out.

Flipping a projection left-right maps column ``j`` to ``n_cols - 1 - j``; the projection at
``θ + 180°`` is the one at ``θ`` mirrored about the axis, ``p(θ + π, u) = p(θ, 2 a - u)``, so
the mirrored projection must be shifted by ``s = 2 a - (n_cols - 1)`` columns to match, and
``a = (n_cols - 1) / 2 + s / 2``. Both "vo" and "pc" measure that shift.

:func:`find_center` returns a :class:`CenterEstimate`: the value (a float) with how much to
trust it (the sharpness of the metric, a second independent method's answer) and a
:class:`CenterWarning` when the two disagree by more than a pixel, the answer sits on the
edge of the search range, or the metric is flat.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage

from spotkit.tomo._angles import as_radians

logger = logging.getLogger(__name__)

__all__ = [
    "CENTER_METHODS",
    "AxisTilt",
    "CenterEstimate",
    "CenterWarning",
    "detect_tilt",
    "find_center",
    "find_center_pc",
    "find_center_per_row",
    "find_center_vo",
]

CENTER_METHODS = ("pc", "sinusoid", "vo")
#: tomopy's centre minus the column-centre coordinate of the axis (see the module doc).
_HALF = 0.5
#: Largest disagreement (pixels) between two independent methods before a warning.
AGREEMENT_PX = 1.0
#: Half-width (pixels) of find_center's 'vo' search around the coarse estimate.
_VO_WINDOW = 8.0
#: Smallest relative depth of Vo's metric minimum still called sharp (see _vo_search).
MIN_SHARPNESS = 0.02


class CenterWarning(UserWarning):
    """The centre of rotation found may be wrong: look at it (e.g. with a centre sweep)."""


class CenterEstimate(float):
    """A centre of rotation (a float, tomopy's convention) and how much to trust it.

    Behaves as the number itself (``float(c)``, arithmetic, formatting); the attributes say
    how it was found.

    Attributes
    ----------
    method : str
        Method that gave the value.
    sharpness : float
        How distinct the method's optimum is: for ``"vo"`` the relative depth of the metric's
        minimum below its median over the search range (below
        :data:`MIN_SHARPNESS` = flat); for ``"pc"`` the correlation peak over the next
        highest; for ``"sinusoid"`` one minus the rms residual of the fit over the
        projections' spread (1 = perfect sinusoid). ``nan`` when not measured.
    check_method : str or None
        The independent method run as a cross-check (``None`` when none could run).
    check_center : float or None
        Its answer.
    warnings : tuple of str
        What looked wrong (each also raised as a :class:`CenterWarning`).
    """

    method: str
    sharpness: float
    check_method: str | None
    check_center: float | None
    warnings: tuple[str, ...]

    def __new__(cls, value, *, method, sharpness=float("nan"), check_method=None,
                check_center=None, warnings=()):
        self = super().__new__(cls, float(value))
        self.method = method
        self.sharpness = float(sharpness)
        self.check_method = check_method
        self.check_center = None if check_center is None else float(check_center)
        self.warnings = tuple(warnings)
        return self

    def __reduce__(self):
        return (_rebuild_estimate, (float(self), self.to_dict()))

    def __repr__(self) -> str:
        extra = "" if self.check_center is None else (
            f", {self.check_method} {self.check_center:.2f}")
        flag = f", {len(self.warnings)} warning(s)" if self.warnings else ""
        return f"CenterEstimate({float(self):.3f}, {self.method}{extra}{flag})"

    @property
    def disagreement(self) -> float:
        """``|value - check_center|`` in pixels (``nan`` without a check)."""
        return float("nan") if self.check_center is None else abs(float(self) - self.check_center)

    @property
    def ok(self) -> bool:
        """No warning was raised."""
        return not self.warnings

    def to_dict(self) -> dict:
        """JSON-serialisable record, for provenance."""
        return {"center": float(self), "method": self.method,
                "sharpness": None if np.isnan(self.sharpness) else round(self.sharpness, 5),
                "check_method": self.check_method, "check_center": self.check_center,
                "warnings": list(self.warnings), "convention": "tomopy"}


def _rebuild_estimate(value, record):
    return CenterEstimate(value, method=record["method"],
                          sharpness=float("nan") if record["sharpness"] is None
                          else record["sharpness"],
                          check_method=record["check_method"],
                          check_center=record["check_center"], warnings=record["warnings"])


# --------------------------------------------------------------------------- validation


def _check_method(method: str) -> None:
    if method not in CENTER_METHODS:
        raise ValueError(
            f"unknown centre method {method!r}; choose one of {list(CENTER_METHODS)}"
        )


def _as_sinogram(sinogram, theta, what: str = "sinogram") -> tuple[np.ndarray, np.ndarray]:
    """Validate a sinogram or a [rows, angles, cols] stack; return (2-D float64, theta)."""
    sino = np.asarray(sinogram)
    if sino.ndim not in (2, 3):
        raise ValueError(
            f"{what} must be 2-D [angles, columns] or 3-D [rows, angles, columns], "
            f"got shape {sino.shape}"
        )
    theta = as_radians(theta)
    if theta.ndim != 1 or sino.shape[-2] != theta.size:
        raise ValueError(
            f"{what} shape {sino.shape} does not match {theta.size} angles in theta "
            f"(angles must be the second-to-last axis)"
        )
    if sino.shape[-1] < 8:
        raise ValueError(f"{what} has {sino.shape[-1]} columns; at least 8 are needed")
    sino = sino.astype(np.float64, copy=False)
    if sino.ndim == 3:
        sino = sino.sum(axis=0)
    if not np.isfinite(sino).all():
        raise ValueError(
            f"{what} contains NaN or infinite values; clean it (e.g. minus_log with a floor) "
            "before finding the centre"
        )
    return sino, theta


def _ramp_pad(rows: np.ndarray, n_pad: int) -> np.ndarray:
    """Pad the last axis to ``n_pad`` with a linear ramp from the last value to the first.

    The padded rows are continuous when wrapped around, so circular (Fourier) shifts and
    correlations do not see a jump at the detector edges.
    """
    n = rows.shape[-1]
    extra = n_pad - n
    out = np.empty((*rows.shape[:-1], n_pad), dtype=rows.dtype)
    out[..., :n] = rows
    if extra > 0:
        w = (np.arange(1, extra + 1) / (extra + 1)).astype(rows.dtype)
        out[..., n:] = rows[..., -1:] * (1 - w) + rows[..., :1] * w
    return out


def _stripes(rows: np.ndarray, width: int = 5, max_angles: int = 128) -> np.ndarray:
    """Detector stripes of ``rows`` (``(..., angles, cols)``): ``(..., cols)`` offsets.

    A column with a gain error adds the same value at every angle, while the sample's
    features move across the columns as it turns. What a running median over ``width``
    columns does not follow (features narrower than ``width // 2`` columns) is taken in
    each projection, and its median over (up to ``max_angles``) angles is what stays put:
    the stripes. Sample features stay on one column only on the rotation axis.
    """
    step = max(1, rows.shape[-2] // max_angles)
    sample = np.asarray(rows[..., ::step, :], dtype=np.float64)
    size = (1,) * (sample.ndim - 1) + (width,)
    narrow = sample - ndimage.median_filter(sample, size=size, mode="nearest")
    return np.median(narrow, axis=-2)


def _destripe(sino: np.ndarray) -> np.ndarray:
    """The sinogram ``(angles, cols)`` without detector stripes (see :func:`_stripes`)."""
    return sino - _stripes(sino)[None, :]


def _truncated(sino: np.ndarray) -> bool:
    """Whether the sample reaches the detector's edges (partly outside the field of view)."""
    peak = float(np.percentile(np.abs(sino), 99.5))
    if peak <= 0:
        return False
    edges = np.abs(sino[:, [0, 1, -2, -1]])
    return float(np.percentile(edges, 90)) > 0.05 * peak


# --------------------------------------------------------------------------- sinusoid


def _sinusoid_fit(sino: np.ndarray, theta: np.ndarray) -> tuple[float, float]:
    """``(axis, quality)``: the fitted axis and ``1 - rms(residual) / std(centres of mass)``."""
    # No clipping of negative values: zero-mean noise in the air leaves the centre of mass
    # unbiased, while clipping it makes positive mass that pulls the estimate towards the
    # middle of the detector (1.5 px at low dose and a 40 px offset).
    mass = np.asarray(sino, dtype=np.float64)
    total = mass.sum(axis=1)
    ok = total > 0
    if ok.sum() < 3:
        raise ValueError("sinogram has fewer than 3 projections with signal; cannot fit a centre")
    cols = np.arange(sino.shape[1], dtype=np.float64)
    com = (mass[ok] @ cols) / total[ok]
    design = np.column_stack([np.ones(ok.sum()), np.cos(theta[ok]), np.sin(theta[ok])])
    coef, *_ = np.linalg.lstsq(design, com, rcond=None)
    spread = float(np.std(com))
    resid = float(np.sqrt(np.mean((design @ coef - com) ** 2)))
    quality = 1.0 - resid / spread if spread > 0 else float("nan")
    return float(coef[0]), quality


# --------------------------------------------------------------------------- Vo


def _half_turn(sino: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The projections of one half turn: check the scan covers 180°, drop a duplicated end
    projection (θ0 + 180°), keep the first half of a 360° scan."""
    n = theta.size
    if n < 8:
        raise ValueError(f"method 'vo' needs at least 8 projections, got {n}")
    span = abs(theta[-1] - theta[0])
    step = span / (n - 1)
    if span + step >= 2 * np.pi - 2 * step:  # a full turn (or more): its first half
        half = np.abs(theta - theta[0]) < np.pi - 0.5 * step
        return _half_turn(sino[half], theta[half])
    if abs(span - np.pi) <= 0.5 * step:  # endpoint included: last = mirrored first
        return sino[:-1]
    coverage = span + step
    if abs(coverage - np.pi) > max(2 * step, np.deg2rad(1.0)):
        raise ValueError(
            f"method 'vo' needs equally spaced angles covering 180 degrees; theta covers "
            f"{np.rad2deg(coverage):.2f} degrees. Use method 'sinusoid', or pass the "
            "projections of one half turn"
        )
    return sino


@dataclass(frozen=True)
class _VoSpectra:
    """FFTs of the sinogram and of its mirror, placed as the two halves of a 360° sinogram."""

    a: np.ndarray  # (2M, K) complex: FFT over angles (zero-padded to 2M) of rfft over columns
    b: np.ndarray  # same for the left-right flipped sinogram, times (-1)^m
    m: np.ndarray  # (2M,) signed angular frequency (cycles per turn)
    f: np.ndarray  # (K,) column frequency, cycles per detector pixel
    k: np.ndarray  # (K,) column frequency index
    n_pad: int


def _vo_spectra(sino: np.ndarray, max_shift: float, workers) -> _VoSpectra:
    n_angles, n_cols = sino.shape
    n_pad = scipy.fft.next_fast_len(int(n_cols + max_shift + 16), real=True)
    both = np.stack([sino, sino[:, ::-1]]).astype(np.float32)
    both = _ramp_pad(both, n_pad)
    spec = scipy.fft.rfft(both, axis=-1, workers=workers)
    spec = scipy.fft.fft(spec, n=2 * n_angles, axis=-2, workers=workers)
    m = np.rint(scipy.fft.fftfreq(2 * n_angles) * 2 * n_angles)
    sign = np.where(m % 2 == 0, 1.0, -1.0).astype(np.float32)
    k = np.arange(spec.shape[-1])
    return _VoSpectra(spec[0], spec[1] * sign[:, None], m, k / n_pad, k, n_pad)


def _vo_select(sp: _VoSpectra, *, radius: float, drop: int, m_max: int, sigma: float):
    """Masked spectrum entries (the double-wedge complement) up to angular frequency m_max."""
    am = np.abs(sp.m)
    rows = np.flatnonzero((am > drop) & (am <= m_max))
    f_lim = am[rows] / (2 * np.pi * radius)  # consistent sinograms have |m| <= 2 pi R |f|
    keep = (sp.f[None, :] <= f_lim[:, None]) & (sp.k[None, :] >= 1)  # DC is shift-invariant
    ri, ci = np.nonzero(keep)
    r, c = rows[ri], ci
    n2 = sp.a.shape[0]
    weight = np.exp(
        -2 * np.pi**2 * sigma**2 * (sp.f[c] ** 2 + (sp.m[r] / n2) ** 2)
    ).astype(np.float32)
    return sp.a[r, c], sp.b[r, c], sp.k[c], weight


def _vo_metric(sel, shifts: np.ndarray, n_pad: int, batch_elems: int = 4_000_000) -> np.ndarray:
    a, b, k, w = sel
    shifts = np.atleast_1d(np.asarray(shifts, dtype=np.float64))
    out = np.empty(shifts.size)
    kmax = int(k.max()) + 1 if k.size else 1
    per = max(1, batch_elems // max(a.size, 1))
    for start in range(0, shifts.size, per):
        s = shifts[start : start + per]
        # shift by s columns: multiply the spectrum by exp(-2 pi i k s / n_pad)
        table = np.exp(-2j * np.pi * np.outer(s, np.arange(kmax)) / n_pad).astype(np.complex64)
        x = a[None, :] + b[None, :] * table[:, k]
        out[start : start + per] = np.abs(x) @ w
    return out


def _argmin_parabola(values: np.ndarray, grid: np.ndarray) -> float:
    i = int(np.argmin(values))
    if 0 < i < values.size - 1:
        y0, y1, y2 = values[i - 1 : i + 2]
        den = y0 - 2 * y1 + y2
        if den > 0:
            return float(grid[i] + 0.5 * (y0 - y2) / den * (grid[1] - grid[0]))
    return float(grid[i])


def _vo_search(sino, theta, lo, hi, *, step=0.25, ratio=0.5, drop=20, sigma=2.0,
               workers=None) -> tuple[float, float, bool]:
    """Vo's search over axis positions ``[lo, hi]`` (column-centre coordinates).

    Returns ``(axis, sharpness, on_edge)``: sharpness is the depth of the coarse metric's
    minimum below its median, relative to the median; ``on_edge`` says the minimum is within
    a pixel of the search range's ends.
    """
    sino = _half_turn(sino, theta)
    n_angles, n_cols = sino.shape
    mid = (n_cols - 1) / 2.0
    max_shift = 2 * max(abs(lo - mid), abs(hi - mid)) + 4
    sp = _vo_spectra(sino, max_shift, workers)
    radius = ratio * n_cols / 2.0
    drop = int(min(drop, np.ceil(0.05 * 2 * n_angles)))
    m_all = n_angles  # Nyquist of the 360° sinogram

    def centres_metric(sel, centres):
        return _vo_metric(sel, 2.0 * (centres - mid), sp.n_pad)

    # 1) coarse: low angular frequencies, 2-pixel steps over the whole range
    coarse = _vo_select(sp, radius=radius, drop=drop, m_max=min(m_all, 48), sigma=4 * sigma + 4)
    grid = np.arange(lo, hi + 1e-9, 2.0)
    if grid[-1] < hi - 1e-9:
        grid = np.append(grid, hi)
    values = centres_metric(coarse, grid)
    best = grid[int(np.argmin(values))]
    median = float(np.median(values))
    sharpness = (median - float(values.min())) / median if median > 0 else 0.0
    # 2) medium: more frequencies, 0.5-pixel steps within +-4 px
    medium = _vo_select(sp, radius=radius, drop=drop, m_max=min(m_all, 160), sigma=2 * sigma)
    grid = np.clip(np.arange(best - 4, best + 4 + 1e-9, 0.5), lo, hi)
    best = grid[int(np.argmin(centres_metric(medium, grid)))]
    # 3) fine: all useful frequencies, `step` within +-1 px, parabola refinement
    fine = _vo_select(sp, radius=radius, drop=drop, m_max=min(m_all, 600), sigma=sigma)
    grid = np.arange(best - 1.0, best + 1.0 + 1e-9, step)
    axis = float(np.clip(_argmin_parabola(centres_metric(fine, grid), grid), lo, hi))
    on_edge = bool(axis - lo < 1.0 or hi - axis < 1.0)
    return axis, float(sharpness), on_edge


def _vo_range(n_cols: int, search) -> tuple[float, float]:
    """Search range in column-centre coordinates from ``search`` in tomopy's convention."""
    if search is None:
        lo, hi = n_cols / 2.0 - n_cols / 4.0, n_cols / 2.0 + n_cols / 4.0
    else:
        lo, hi = map(float, search)
    if not (0.5 <= lo < hi <= n_cols - 0.5):
        raise ValueError(
            f"search must be (low, high) with 0.5 <= low < high <= {n_cols - 0.5} (tomopy's "
            f"centre convention, {n_cols / 2:g} = the middle), got {search}")
    return lo - _HALF, hi - _HALF


def find_center_vo(
    sinogram,
    theta,
    *,
    search: tuple[float, float] | None = None,
    step: float = 0.25,
    ratio: float = 0.5,
    drop: int = 20,
    sigma: float = 2.0,
    destripe: bool = True,
    workers: int | None = None,
) -> float:
    """Centre of rotation by Vo's Fourier metric (Vo, Dowman & Titarenko, Opt. Express 2014).

    The sinogram (180°) and its left-right mirror, shifted by a trial amount, are stacked into
    a 360° sinogram. At the right shift it is consistent, and its 2-D Fourier transform has
    (almost) no energy outside the double wedge ``|m| <= 2 π R |f|`` (``m`` angular frequency
    in cycles per turn, ``f`` column frequency, ``R`` the object radius). The metric is the
    weighted magnitude of the spectrum in that region; its minimum gives the shift.

    This implementation computes the two spectra once and applies each trial shift as a phase
    ramp (an exact sub-pixel shift), evaluating all candidates in one vectorised batch:
    a coarse pass over ``search`` with low frequencies only, a 1-pixel pass, then ``step``
    sub-pixel steps around the best, refined by a parabola through the three lowest points.
    The columns are padded with a ramp that joins the two edges, so circular shifts see no
    jump. Detector stripes are removed first (``destripe``); a 360° scan uses its first half
    turn. This is the method alone, over the whole ``search`` range: far from the detector
    middle its metric can prefer a wrong minimum, so :func:`find_center` (which searches
    near an independent estimate and cross-checks) is the safer entry point.

    Parameters
    ----------
    sinogram : array_like, shape (n_angles, n_cols) or (n_rows, n_angles, n_cols)
        Line integrals (after :func:`minus_log`); a stack is summed over rows first.
    theta : array_like or xarray.DataArray, shape (n_angles,)
        Angles in radians (or with ``units``), equally spaced over one half turn
        (``[θ0, θ0 + π)``; a last projection at ``θ0 + π`` is dropped) or a full turn.
    search : (float, float), optional
        Smallest and largest centre to consider (tomopy's convention). Default: the middle
        half of the detector, ``n_cols / 2 ± n_cols / 4``.
    step : float
        Sub-pixel step of the fine search, in pixels (0.01 to 1).
    ratio : float
        Object diameter over detector width (0 < ratio <= 1); sets ``R = ratio * n_cols / 2``
        of the double-wedge mask (as tomopy's ``ratio``).
    drop : int
        Angular frequencies ``|m| <= drop`` are left out of the metric (at most 5 % of the
        angular frequencies; as tomopy's ``drop``).
    sigma : float
        Gaussian smoothing (pixels, both axes) applied as a spectral weight; suppresses noise.
    destripe : bool
        Remove detector stripes (columns offset at every angle) before measuring.
    workers : int, optional
        Threads for the FFTs (:func:`scipy.fft.fft`); default one, or what
        :func:`scipy.fft.set_workers` says.

    Returns
    -------
    float
        The centre, tomopy's convention (``n_cols / 2`` is the middle of the detector).

    Raises
    ------
    ValueError
        If the shapes disagree, the data contain NaN, the angles do not cover 180°, or an
        option is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 180, endpoint=False)
    >>> u = np.arange(128.0)[None] + 0.5          # column centres, tomopy's positions
    >>> sino = np.exp(-0.5 * ((u - 66.3 - 20 * np.cos(theta)[:, None]) / 4) ** 2)
    >>> sino += np.exp(-0.5 * ((u - 66.3 + 9 * np.sin(theta)[:, None]) / 6) ** 2)
    >>> round(find_center_vo(sino, theta), 1)
    66.3
    """
    sino, theta = _as_sinogram(sinogram, theta)
    _check_vo_options(step, ratio, drop, sigma)
    lo, hi = _vo_range(sino.shape[1], search)
    if destripe:
        sino = _destripe(sino)
    axis, sharpness, _ = _vo_search(sino, theta, lo, hi, step=step, ratio=ratio, drop=drop,
                                    sigma=sigma, workers=workers)
    logger.debug("vo centre %.3f (search %.1f..%.1f, sharpness %.3f)", axis + _HALF,
                 lo + _HALF, hi + _HALF, sharpness)
    return axis + _HALF


def _check_vo_options(step, ratio, drop, sigma) -> None:
    if not 0.01 <= step <= 1.0:
        raise ValueError(f"step must be between 0.01 and 1 pixel, got {step}")
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if drop < 0 or sigma < 0:
        raise ValueError(f"drop and sigma must be >= 0, got drop={drop}, sigma={sigma}")


# --------------------------------------------------------------------------- phase correlation


def _pair_index(theta: np.ndarray, i: int, offset: float) -> tuple[int, float]:
    """Index of the angle closest to ``theta[i] + offset`` (mod 2π) and the angle error."""
    diff = np.angle(np.exp(1j * (theta - theta[i] - offset)))
    j = int(np.argmin(np.abs(diff)))
    return j, float(diff[j])


def find_center_pc(
    projections,
    theta,
    *,
    tolerance: float | None = None,
    upsample: int = 100,
    sigma: float = 1.0,
    destripe: bool = True,
    workers: int | None = None,
) -> float:
    """Centre of rotation by phase correlation of the 0° and the mirrored 180° projections.

    The first projection (angle ``θ0``) is correlated with the mirrored projection closest to
    ``θ0 + 180°`` over all rows. The correlation peak is located to ``1 / upsample`` pixel by
    evaluating the band-limited correlation on a fine grid (an upsampled DFT, as in
    Guizar-Sicairos et al. 2008). Scans over ``[0, 180°)`` have no 180° projection; the
    projection at ``180° - Δ`` is used instead, and the small error it brings (the angle error
    times the sample's extent along the beam) is corrected to first order with the centre of
    mass of the projection at ``θ0 + 90°``. Pairs further apart than ``tolerance`` are refused.

    Parameters
    ----------
    projections : array_like, shape (n_angles, n_rows, n_cols) or (n_angles, n_cols)
        Line integrals (after :func:`minus_log`), projections layout; a 2-D array is one
        sinogram.
    theta : array_like or xarray.DataArray, shape (n_angles,)
        Angles in radians (or with ``units``).
    tolerance : float, optional
        Largest accepted difference (radians) between the partner's angle and ``θ0 + π``.
        Default: 1.5 times the median angle step (accepts ``180° - Δ`` scans).
    upsample : int
        Sub-pixel resolution of the peak search, ``1 / upsample`` pixel (1 to 1000).
    sigma : float
        Gaussian low-pass (pixels) applied to the normalised cross-power spectrum; reduces the
        weight of noisy high frequencies.
    destripe : bool
        Remove detector stripes (found from the median over angles) from both projections
        first: a stripe sits on the same column at 0° and 180° and pulls the correlation
        towards the detector middle.
    workers : int, optional
        Threads for the FFTs.

    Returns
    -------
    float
        The centre, tomopy's convention (``n_cols / 2`` is the middle of the detector).

    Raises
    ------
    ValueError
        If no projection lies within ``tolerance`` of ``θ0 + 180°`` (use method "vo" or
        "sinusoid"), if the shapes disagree, or the data contain NaN.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 181)       # 0 .. 180 degrees inclusive
    >>> u = np.arange(100.0)[None, None] + 0.5    # column centres, tomopy's positions
    >>> blob = np.exp(-0.5 * ((u - 52.7 - 15 * np.cos(theta)[:, None, None]) / 3) ** 2)
    >>> round(find_center_pc(np.repeat(blob, 4, axis=1), theta), 2)
    52.7
    """
    return _pc_search(projections, theta, tolerance=tolerance, upsample=upsample,
                      sigma=sigma, workers=workers, destripe=destripe)[0] + _HALF


def _pc_search(projections, theta, *, tolerance=None, upsample=100, sigma=1.0, workers=None,
               destripe=False) -> tuple[float, float]:
    """``(axis, sharpness)`` by phase correlation; axis in column-centre coordinates,
    sharpness = the correlation peak over the highest value more than 3 pixels from it."""
    proj = np.asarray(projections)
    if proj.ndim == 2:
        proj = proj[:, None, :]
    if proj.ndim != 3:
        raise ValueError(
            f"projections must be 3-D [angles, rows, columns] or 2-D [angles, columns], "
            f"got shape {np.shape(projections)}"
        )
    theta = as_radians(theta)
    if theta.ndim != 1 or theta.size != proj.shape[0]:
        raise ValueError(
            f"projections shape {proj.shape} does not match {theta.size} angles in theta "
            "(angles must be the first axis)"
        )
    if theta.size < 2 or proj.shape[-1] < 8:
        raise ValueError(f"need at least 2 angles and 8 columns, got shape {proj.shape}")
    if not 1 <= upsample <= 1000:
        raise ValueError(f"upsample must be between 1 and 1000, got {upsample}")
    if tolerance is None:
        tolerance = 1.5 * float(np.median(np.abs(np.diff(theta))))
    j, err = _pair_index(theta, 0, np.pi)
    if abs(err) > tolerance:
        raise ValueError(
            f"method 'pc' needs a projection at theta[0] + 180 degrees; the closest, "
            f"theta[{j}], is {np.rad2deg(err):+.2f} degrees off (tolerance "
            f"{np.rad2deg(tolerance):.2f}). Use method 'vo' or 'sinusoid' for this scan"
        )
    if not np.isfinite(proj).all():
        raise ValueError("projections contain NaN or infinite values; clean them first")
    p0 = proj[0].astype(np.float64)
    q = proj[j].astype(np.float64)
    if destripe:  # a stripe is the same column in both: it would pull the peak to s = 0
        stripes = _stripes(np.moveaxis(proj, 0, 1))  # (rows, cols)
        p0, q = p0 - stripes, q - stripes
    q = q[:, ::-1]
    n_cols = p0.shape[-1]
    n_pad = scipy.fft.next_fast_len(2 * n_cols, real=True)
    fa = scipy.fft.rfft(_ramp_pad(p0, n_pad), axis=-1, workers=workers)
    fq = scipy.fft.rfft(_ramp_pad(q, n_pad), axis=-1, workers=workers)
    cross = fq * np.conj(fa)
    cross /= np.abs(cross) + 1e-12 * np.abs(cross).max() + 1e-30
    freq = np.arange(cross.shape[-1]) / n_pad
    weight = np.exp(-2 * np.pi**2 * sigma**2 * freq**2)
    weight[1:] *= 2.0  # the negative frequencies of the real correlation
    spec = (cross * weight).sum(axis=0)  # all rows (zero vertical shift)
    corr = scipy.fft.irfft(spec, n=n_pad, workers=workers)
    i = int(np.argmax(corr))
    far = np.abs((np.arange(n_pad) - i + n_pad // 2) % n_pad - n_pad // 2) > 3
    second = float(corr[far].max()) if far.any() else 0.0
    sharpness = float(corr[i] / second) if second > 0 else float("inf")
    coarse = i if i <= n_pad // 2 else i - n_pad
    fine = coarse + np.arange(-1.0, 1.0 + 1e-9, 1.0 / upsample)
    k = np.arange(spec.size)
    values = np.real(np.exp(2j * np.pi * np.outer(fine, k) / n_pad) @ spec)
    d = float(fine[int(np.argmax(values))])
    # q(u) = p0(u - d), d = n_cols - 1 - 2c + err * v, v = com(θ0 + 90°) - c (first order)
    centre = (n_cols - 1 - d) / 2.0
    if err != 0.0:
        k90, _ = _pair_index(theta, 0, np.pi / 2)
        mass = np.clip(proj[k90].astype(np.float64).sum(axis=0), 0, None)
        if mass.sum() > 0:
            com90 = float(mass @ np.arange(n_cols) / mass.sum())
            centre = (n_cols - 1 - d + err * com90) / (2.0 + err)
    logger.debug("pc axis %.3f from theta[0] and theta[%d] (error %.3g rad)", centre, j, err)
    return float(centre), sharpness


# --------------------------------------------------------------------------- entry point


def find_center(sinogram, theta, *, method: str = "vo", check: bool = True,
                destripe: bool = True, **options) -> CenterEstimate:
    """Find the rotation axis, with a cross-check, in tomopy's convention.

    Methods:

    * ``"vo"`` (default): Vo's Fourier metric on the 360° sinogram (see
      :func:`find_center_vo`, whose keyword options are accepted here). The most accurate in
      spotkit's benchmarks on stripy, noisy tomopy-projected data and on the twin, and robust
      to a sample partly outside the field of view; needs a half or a full turn.
    * ``"pc"``: phase correlation of the first projection with the mirrored one at
      ``θ0 + 180°`` (see :func:`find_center_pc`). Here the input is a sinogram or a
      ``[rows, angles, cols]`` stack; call :func:`find_center_pc` directly with projections.
    * ``"sinusoid"``: for parallel-beam data the centre of mass of each projection moves on a
      sinusoid, ``com(θ) = a + p cos θ + q sin θ``; a least-squares fit gives the axis. Fast,
      any angles, but biased by rings, drifts, anything not rotating with the sample, and a
      sample that leaves the field of view.

    A second, independent method also runs (``"pc"`` when there is a projection at
    ``θ0 + 180°``, else ``"sinusoid"`` unless the sample leaves the field of view; ``"vo"``
    when the first method is one of those). For ``"vo"`` without ``search`` it runs first
    and ``"vo"`` searches within 8 pixels of its answer (Vo's metric alone can prefer a
    wrong minimum when the axis is far from the detector middle); with ``check`` the two
    answers are compared. A :class:`CenterWarning` is raised
    (and recorded on the result) when they disagree by more than :data:`AGREEMENT_PX`, when
    ``"vo"`` finds its minimum on the edge of the search range or a flat metric, or when
    ``"sinusoid"`` is asked for on a truncated sample.

    Parameters
    ----------
    sinogram : array_like, shape (n_angles, n_cols) or (n_rows, n_angles, n_cols)
        Line integrals (after :func:`minus_log`); a stack is summed over rows.
    theta : array_like or xarray.DataArray, shape (n_angles,)
        Projection angles in radians; an xarray coordinate with ``attrs["units"] =
        "degrees"`` is converted; a bare array spanning more than one turn is refused.
    method : {"vo", "pc", "sinusoid"}
        Method to use.
    check : bool
        Run a second method and compare.
    destripe : bool
        Remove detector stripes (a column offset at every angle) before every method.
    **options
        Keyword options of the method (:func:`find_center_vo`, :func:`find_center_pc`).

    Returns
    -------
    CenterEstimate
        A float (tomopy's convention, ``n_cols / 2`` the middle of the detector) with
        ``method``, ``sharpness``, ``check_method``, ``check_center`` and ``warnings``.

    Raises
    ------
    ValueError
        For an unknown method, shapes that disagree, data with NaN or angles in degrees.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> cols = np.arange(64.0) + 0.5
    >>> sino = np.exp(-0.5 * ((cols[None] - 30.5 - 8 * np.cos(theta)[:, None]) / 3) ** 2)
    >>> c = find_center(sino, theta)
    >>> round(c, 1), c.check_method, c.ok
    (30.5, 'pc', True)
    """
    _check_method(method)
    if method == "sinusoid" and options:
        raise TypeError(f"method 'sinusoid' takes no options, got {sorted(options)}")
    arr = np.asarray(sinogram)
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"sinogram must be 2-D [angles, columns] or 3-D [rows, angles, columns], "
            f"got shape {arr.shape}")
    sino, theta = _as_sinogram(arr, theta)
    if destripe:
        sino = _destripe(sino)
    # only needed without a 180° partner or for 'sinusoid': ~0.1 s on 1500 x 2048
    truncated = functools.cache(lambda: _truncated(sino))
    problems: list[str] = []

    def run(name: str, opts: dict) -> tuple[float, float]:
        if name == "vo":
            vo_opts = {k: v for k, v in opts.items()
                       if k not in ("search", "workers", "around")}
            _check_vo_options(vo_opts.get("step", 0.25), vo_opts.get("ratio", 0.5),
                              vo_opts.get("drop", 20), vo_opts.get("sigma", 2.0))
            lo, hi = _vo_range(sino.shape[1], opts.get("search"))
            if opts.get("around") is not None:  # near a coarse estimate (see below)
                lo = max(lo, opts["around"] - _VO_WINDOW)
                hi = min(hi, opts["around"] + _VO_WINDOW)
            axis, sharp, edge = _vo_search(sino, theta, lo, hi, workers=opts.get("workers"),
                                           **vo_opts)
            if edge and name == method:
                problems.append(
                    f"'vo' found its minimum at {axis + _HALF:.2f}, on the edge of the search "
                    f"range {lo + _HALF:.1f}..{hi + _HALF:.1f}: widen `search`, or look at "
                    "the centre with a sweep")
            if sharp < MIN_SHARPNESS and name == method:
                problems.append(
                    f"'vo' metric is flat (sharpness {sharp:.3f} < {MIN_SHARPNESS}): the "
                    "sinogram may hold no sample, or too little signal")
            return axis, sharp
        if name == "pc":  # a stack as projections: the correlation uses every row
            if arr.ndim == 3:
                return _pc_search(arr.transpose(1, 0, 2), theta, destripe=destripe, **opts)
            return _pc_search(sino, theta, **opts)
        return _sinusoid_fit(sino, theta)

    # 'vo' alone can lock onto a wrong minimum when the axis is far from the detector middle
    # (its mirrored half then overlaps the data less; seen 20 px off at 37 px from the middle
    # on 256 columns): it searches within a few pixels of the independent estimate, which
    # then also serves as the cross-check
    check_method = check_axis = None
    if method == "vo" and "search" not in options:
        check_method = _check_partner(method, theta, truncated)
        if check_method is not None:
            try:
                check_axis, _ = run(check_method, {})
            except ValueError as exc:
                logger.info("coarse centre with %r not possible: %s", check_method, exc)
                check_method = None
        options = {**options, "around": check_axis}
    axis, sharpness = run(method, options)
    if method == "sinusoid" and truncated():
        problems.append("the sample reaches the detector edges (partly outside the field of "
                        "view): 'sinusoid' is biased there; use 'vo'")
    if not check:
        check_method = check_axis = None
    elif check_axis is None:
        check_method = _check_partner(method, theta, truncated)
        if check_method is not None:
            try:
                check_axis, _ = run(check_method, {})
            except ValueError as exc:  # e.g. too few angles: no cross-check, say so
                logger.info("centre cross-check with %r not possible: %s", check_method, exc)
                check_method = None
    if check_axis is not None and abs(axis - check_axis) > AGREEMENT_PX:
        problems.append(
            f"'{method}' found {axis + _HALF:.2f} but '{check_method}' found "
            f"{check_axis + _HALF:.2f} ({abs(axis - check_axis):.1f} px apart): check the "
            "centre with a sweep (spotkit.tomo.center_sweep) or the CenterFinder")
    for text in problems:
        warnings.warn(text, CenterWarning, stacklevel=2)
    result = CenterEstimate(
        axis + _HALF, method=method, sharpness=sharpness, check_method=check_method,
        check_center=None if check_axis is None else check_axis + _HALF, warnings=problems)
    logger.debug("centre %r", result)
    return result


def _check_partner(method: str, theta: np.ndarray, truncated) -> str | None:
    """The independent method to cross-check ``method`` with (None when none fits);
    ``truncated()`` says whether the sample leaves the field of view."""
    step = float(np.median(np.abs(np.diff(theta)))) if theta.size > 1 else np.inf
    has_partner = abs(_pair_index(theta, 0, np.pi)[1]) <= 1.5 * step
    if method == "vo":
        if has_partner:
            return "pc"
        return None if truncated() else "sinusoid"
    return "vo"


# --------------------------------------------------------------------------- tilt


@dataclass(frozen=True)
class AxisTilt:
    """A straight-line fit of the centre of rotation against detector row.

    Attributes
    ----------
    slope_px_per_row : float
        Change of the centre per detector row (pixels per row).
    intercept : float
        Centre at row 0 (column coordinates).
    tilt_deg : float
        Axis tilt in the detector plane, ``degrees(arctan(slope))`` (square pixels assumed);
        positive when the centre moves to higher columns with increasing row.
    tilted : bool
        Whether the centre changes by more than the tolerance over the rows measured.
    residual_px : float
        Root-mean-square residual of the fit over the rows kept (pixels).
    """

    slope_px_per_row: float
    intercept: float
    tilt_deg: float
    tilted: bool
    residual_px: float

    def center_at(self, row):
        """Fitted centre at ``row`` (scalar or array)."""
        return self.intercept + self.slope_px_per_row * np.asarray(row, dtype=np.float64)


def _detect_layout(shape, n_theta: int, layout: str | None) -> str:
    layouts = ("projections", "sinograms")
    if layout is not None:
        if layout not in layouts:
            raise ValueError(f"unknown layout {layout!r}; choose one of {list(layouts)}")
        return layout
    as_proj, as_sino = shape[0] == n_theta, shape[1] == n_theta
    if as_proj and as_sino:
        raise ValueError(
            f"cannot tell the layout of shape {shape} with {n_theta} angles; pass "
            "layout='projections' ([angles, rows, cols]) or 'sinograms' ([rows, angles, cols])"
        )
    if not (as_proj or as_sino):
        raise ValueError(f"no axis of shape {shape} matches the {n_theta} angles in theta")
    return "projections" if as_proj else "sinograms"


def find_center_per_row(
    proj_or_sinos,
    theta,
    *,
    rows=None,
    method: str = "vo",
    layout: str | None = None,
    band: int = 1,
    min_signal: float = 0.05,
    **options,
) -> tuple[np.ndarray, np.ndarray]:
    """Find the centre of rotation separately for several detector rows.

    Parameters
    ----------
    proj_or_sinos : array_like, shape (n_angles, n_rows, n_cols) or (n_rows, n_angles, n_cols)
        Line integrals, as projections or as a stack of sinograms (see ``layout``).
    theta : array_like, shape (n_angles,)
        Angles in radians.
    rows : sequence of int, optional
        Rows to measure. Default: every row if there are at most 16, else 16 rows spread
        evenly over the middle 90 % of the detector.
    method : {"vo", "pc", "sinusoid"}
        Centre method (see :func:`find_center`).
    layout : {"projections", "sinograms"}, optional
        Axis order; guessed from which axis has ``len(theta)`` entries when not given.
    band : int
        Number of neighbouring rows summed around each row (odd; more rows, less noise).
    min_signal : float
        Rows whose largest absolute value is below this fraction of the largest over all
        measured rows (no sample there) get ``nan``.
    **options
        Options of the method.

    Returns
    -------
    rows : ndarray of int
    centers : ndarray of float64
        ``nan`` for rows without signal or where the method failed.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> u = np.arange(64.0)[None, None] + 0.5
    >>> c = 30.0 + 0.1 * np.arange(8)[None, :, None]          # centre moves 0.1 px per row
    >>> proj = np.exp(-0.5 * ((u - c - 9 * np.cos(theta)[:, None, None]) / 3) ** 2)
    >>> r, cs = find_center_per_row(proj, theta, method="sinusoid")
    >>> np.round(cs[[0, -1]], 2).tolist()
    [30.0, 30.7]
    """
    _check_method(method)
    arr = np.asarray(proj_or_sinos)
    theta = np.asarray(theta, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"expected a 3-D array of projections or sinograms, got {arr.shape}")
    if layout is None and theta.ndim != 1:
        raise ValueError(f"theta must be 1-D, got shape {theta.shape}")
    sinos = arr if _detect_layout(arr.shape, theta.size, layout) == "sinograms" else (
        arr.transpose(1, 0, 2)
    )
    n_rows = sinos.shape[0]
    if band < 1 or band % 2 == 0:
        raise ValueError(f"band must be a positive odd number of rows, got {band}")
    if rows is None:
        rows = (
            np.arange(n_rows)
            if n_rows <= 16
            else np.unique(np.linspace(0.05 * n_rows, 0.95 * n_rows - 1, 16).round().astype(int))
        )
    rows = np.asarray(rows, dtype=int).ravel()
    if rows.size == 0 or rows.min() < 0 or rows.max() >= n_rows:
        raise ValueError(f"rows must be indices in [0, {n_rows - 1}], got {rows.tolist()}")
    half = band // 2
    peaks = np.array(
        [float(np.abs(np.asarray(sinos[r], dtype=np.float64)).max()) for r in rows]
    )
    centres = np.full(rows.size, np.nan)
    for i, r in enumerate(rows):
        if not peaks[i] >= min_signal * peaks.max():
            continue
        sino = np.asarray(sinos[max(r - half, 0) : r + half + 1], dtype=np.float64).sum(axis=0)
        try:
            centres[i] = find_center(sino, theta, method=method, **options)
        except ValueError as exc:
            logger.warning("row %d: no centre (%s)", r, exc)
    return rows, centres


def detect_tilt(rows, centers, *, tolerance_px: float = 0.5) -> AxisTilt:
    """Fit the centre against the row and report a tilted rotation axis.

    A straight line is fitted by least squares; points further than
    ``max(3 × 1.4826 × MAD, tolerance_px)`` from it are dropped once and the line refitted.
    The axis is reported tilted when the fitted centre changes by more than ``tolerance_px``
    across the rows measured; a warning is logged then.

    Parameters
    ----------
    rows : array_like of float
        Detector rows (e.g. from :func:`find_center_per_row`).
    centers : array_like of float
        Centre at each row; ``nan`` entries are ignored.
    tolerance_px : float
        Largest change of the centre over the measured rows still called "not tilted".

    Returns
    -------
    AxisTilt

    Raises
    ------
    ValueError
        If fewer than 3 finite centres remain or the lengths differ.

    Examples
    --------
    >>> t = detect_tilt([0, 10, 20, 30], [50.0, 50.5, 51.0, 51.5])
    >>> round(t.slope_px_per_row, 3), t.tilted
    (0.05, True)
    """
    rows = np.asarray(rows, dtype=np.float64).ravel()
    centers = np.asarray(centers, dtype=np.float64).ravel()
    if rows.shape != centers.shape:
        raise ValueError(f"rows ({rows.size}) and centers ({centers.size}) differ in length")
    if not tolerance_px > 0:
        raise ValueError(f"tolerance_px must be > 0, got {tolerance_px}")
    ok = np.isfinite(rows) & np.isfinite(centers)
    if ok.sum() < 3 or np.ptp(rows[ok]) == 0:
        raise ValueError(
            f"need finite centres at 3 or more distinct rows to fit a tilt, got {int(ok.sum())}"
        )
    r, c = rows[ok], centers[ok]
    slope, intercept = np.polyfit(r, c, 1)
    resid = c - (intercept + slope * r)
    mad = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    keep = np.abs(resid) <= max(3 * mad, tolerance_px)
    if 3 <= keep.sum() < keep.size and np.ptp(r[keep]) > 0:
        r, c = r[keep], c[keep]
        slope, intercept = np.polyfit(r, c, 1)
        resid = c - (intercept + slope * r)
    change = abs(slope) * float(np.ptp(r))
    tilt = AxisTilt(
        slope_px_per_row=float(slope),
        intercept=float(intercept),
        tilt_deg=float(np.rad2deg(np.arctan(slope))),
        tilted=bool(change > tolerance_px),
        residual_px=float(np.sqrt(np.mean(resid**2))),
    )
    if tilt.tilted:
        logger.warning(
            "rotation axis is tilted: centre moves %.2f px over %d rows (%.4f deg); "
            "correct the tilt or reconstruct with a per-row centre",
            change, int(np.ptp(r)), tilt.tilt_deg,
        )
    return tilt
