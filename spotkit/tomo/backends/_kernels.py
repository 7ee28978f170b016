"""numba kernels of the built-in backend (imported only when numba is installed).

Both kernels share one geometry and one linear interpolation, so the back-projector is the
exact transpose of the forward projector (what SIRT needs to converge). The filtered or
measured sinogram rows carry one extra zero column at the end (index ``n_cols``) so that
interpolation never reads outside the row. Threads split the work so that no two threads
ever write the same element: image rows for the back-projector, angles for the projector.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, fastmath=True, inline="always")
def _span(u0: float, c: float, n: int, n_cols: int) -> tuple[int, int]:
    """Image columns ``j`` in ``[lo, hi)`` whose detector coordinate ``u0 + j c`` is on the row."""
    if abs(c) < 1e-9:
        if 0.0 <= u0 <= n_cols - 1:
            return 0, n
        return 0, 0
    t1 = (0.0 - u0) / c
    t2 = (n_cols - 1 - u0) / c
    lo = min(t1, t2)
    hi = max(t1, t2)
    jlo = max(0, math.ceil(lo))
    jhi = min(n, math.floor(hi) + 1)
    return jlo, max(jlo, jhi)


@njit(parallel=True, fastmath=True, cache=True)
def back_project(q, cos_t, sin_t, center, n, out):  # pragma: no cover - compiled
    """``out[s, i, j] += sum_a q[s, a, u(i, j, a)]`` (linear interpolation).

    ``q`` is ``(slices, angles, n_cols + 1)`` float32 with a zero last column.
    """
    n_slices, n_angles, width = q.shape
    n_cols = width - 1
    half = (n - 1) / 2.0
    for i in prange(n):
        y = i - half
        for a in range(n_angles):
            c = cos_t[a]
            u0 = center + y * sin_t[a] - half * c
            jlo, jhi = _span(u0, c, n, n_cols)
            # float32 detector coordinate: exact to ~1e-4 pixel for 10^4 columns; _span keeps
            # 0 <= u <= n_cols - 1 (to rounding), so int(u) never leaves the padded row.
            u0f = np.float32(u0)
            cf = np.float32(c)
            for s in range(n_slices):
                row = q[s, a]
                dst = out[s, i]
                for j in range(jlo, jhi):
                    u = u0f + np.float32(j) * cf
                    k = int(u)
                    f = u - np.float32(k)
                    lo = row[k]
                    dst[j] += lo + f * (row[k + 1] - lo)


@njit(parallel=True, fastmath=True, cache=True)
def forward_project(img, cos_t, sin_t, center, out):  # pragma: no cover - compiled
    """Transpose of :func:`back_project`: ``out[s, a, :]`` receives every pixel of ``img[s]``.

    ``out`` is ``(slices, angles, n_cols + 1)`` float32, zeroed by the caller; its last
    column collects nothing useful and is dropped.
    """
    n_slices, n, _ = img.shape
    n_angles = out.shape[1]
    n_cols = out.shape[2] - 1
    half = (n - 1) / 2.0
    for a in prange(n_angles):
        c = cos_t[a]
        for i in range(n):
            y = i - half
            u0 = center + y * sin_t[a] - half * c
            jlo, jhi = _span(u0, c, n, n_cols)
            for s in range(n_slices):
                src = img[s, i]
                dst = out[s, a]
                for j in range(jlo, jhi):
                    u = u0 + j * c
                    k = min(max(int(u), 0), n_cols - 1)
                    f = np.float32(u - k)
                    v = src[j]
                    dst[k] += v - f * v
                    dst[k + 1] += f * v
