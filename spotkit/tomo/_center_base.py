"""Centre of rotation, shared parts: the estimate record, input checks, signal helpers.

Every centre method returns the rotation axis as tomopy gives it
(:data:`spotkit.tomo.CONVENTION`): positions measured from the left edge of column 0, so
``n_cols / 2`` is the middle of the detector. Internally the methods work in column-centre
coordinates (column ``j`` centred at ``j``, the axis at ``a = center - 1/2``,
:data:`_HALF`) and convert on the way out.

Flipping a projection left-right maps column ``j`` to ``n_cols - 1 - j``; the projection at
``θ + 180°`` is the one at ``θ`` mirrored about the axis, ``p(θ + π, u) = p(θ, 2 a - u)``, so
the mirrored projection must be shifted by ``s = 2 a - (n_cols - 1)`` columns to match, and
``a = (n_cols - 1) / 2 + s / 2``. Both "vo" (:mod:`._center_vo`) and "pc"
(:mod:`._center_pc`) measure that shift; "sinusoid" (:mod:`._center_sinusoid`) fits the
centre of mass; :func:`~spotkit.tomo.find_center` (:mod:`._center`) runs and cross-checks them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spotkit.tomo._angles import as_radians

__all__ = ["AGREEMENT_PX", "CENTER_METHODS", "MIN_SHARPNESS", "CenterEstimate", "CenterWarning"]

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
