"""Centre of rotation by phase correlation of the 0° and the mirrored 180° projections."""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft

from spotkit.tomo._angles import as_radians
from spotkit.tomo._center_base import _HALF, _ramp_pad, _stripes

logger = logging.getLogger(__name__)

__all__ = ["find_center_pc"]


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
