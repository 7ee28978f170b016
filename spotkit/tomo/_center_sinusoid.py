"""Centre of rotation from the sinusoid traced by the sinogram's centre of mass."""

from __future__ import annotations

import numpy as np

__all__: list[str] = []


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
