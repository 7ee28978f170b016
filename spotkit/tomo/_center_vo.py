"""Centre of rotation by Vo's Fourier metric (Vo, Dowman & Titarenko, Opt. Express 2014).

The sinogram and its left-right mirror, shifted by a trial amount, form a 360° sinogram whose
2-D spectrum is (almost) empty outside a double wedge at the right shift. The two spectra are
computed once and each trial shift applied as a phase ramp, over a coarse, a medium and a
fine grid (see :func:`find_center_vo`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.fft

from spotkit.tomo._center_base import _HALF, _as_sinogram, _destripe, _ramp_pad

logger = logging.getLogger(__name__)

__all__ = ["find_center_vo"]


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
