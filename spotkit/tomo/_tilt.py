"""A tilted rotation axis: the centre found row by row, and a straight-line fit of it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from spotkit.tomo._center import find_center
from spotkit.tomo._center_base import _check_method

logger = logging.getLogger(__name__)

__all__ = ["AxisTilt", "detect_tilt", "find_center_per_row"]


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
