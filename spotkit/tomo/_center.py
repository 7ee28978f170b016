"""Centre of rotation from the sinogram's centre of mass."""

from __future__ import annotations

import numpy as np

__all__ = ["find_center"]


def find_center(sinogram, theta, *, method: str = "sinusoid") -> float:
    """Find the rotation axis position in detector column coordinates.

    ``method="sinusoid"``: for parallel-beam data the centre of mass of each projection of a
    slice moves on a sinusoid, ``com(θ) = c + a cos θ + b sin θ``; a least-squares fit over
    all angles gives the axis ``c``. It needs the sample inside the field of view in every
    projection, and at least three distinct angles.

    Parameters
    ----------
    sinogram : array_like, shape (n_angles, n_cols) or (n_rows, n_angles, n_cols)
        Line integrals (after :func:`minus_log`); a stack is summed over rows first.
    theta : array_like, shape (n_angles,)
        Projection angles in radians.
    method : {"sinusoid"}
        Method to use.

    Returns
    -------
    float
        The centre, column ``j`` having its centre at ``j``.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> cols = np.arange(64.0)
    >>> sino = np.exp(-0.5 * ((cols[None] - 30.5 - 8 * np.cos(theta)[:, None]) / 3) ** 2)
    >>> round(find_center(sino, theta), 3)
    30.5
    """
    if method != "sinusoid":
        raise ValueError(f"unknown centre method {method!r}; choose one of ['sinusoid']")
    sino = np.asarray(sinogram, dtype=np.float64)
    if sino.ndim == 3:
        sino = sino.sum(axis=0)
    theta = np.asarray(theta, dtype=np.float64)
    if sino.ndim != 2 or sino.shape[0] != theta.size:
        raise ValueError(
            f"sinogram shape {np.shape(sinogram)} does not match {theta.size} angles in theta"
        )
    mass = np.clip(sino, 0, None)
    total = mass.sum(axis=1)
    ok = total > 0
    if ok.sum() < 3:
        raise ValueError("sinogram has fewer than 3 projections with signal; cannot fit a centre")
    cols = np.arange(sino.shape[1], dtype=np.float64)
    com = (mass[ok] @ cols) / total[ok]
    design = np.column_stack([np.ones(ok.sum()), np.cos(theta[ok]), np.sin(theta[ok])])
    coef, *_ = np.linalg.lstsq(design, com, rcond=None)
    return float(coef[0])
