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


@njit(fastmath=True, cache=True, inline="always")
def _unpack_row(img, out, radius2, i):
    """Row ``i`` of :func:`unpack_pairs`."""
    pairs, n, _ = img.shape
    half = (n - 1) / 2.0
    y = i - half
    for j in range(n):
        x = j - half
        inside = x * x + y * y <= radius2
        for p in range(pairs):
            if inside:
                v = img[p, i, j]
                out[2 * p, i, j] = v.real
                out[2 * p + 1, i, j] = v.imag
            else:
                out[2 * p, i, j] = 0.0
                out[2 * p + 1, i, j] = 0.0


@njit(parallel=True, fastmath=True, cache=True)
def unpack_pairs(img, out, radius2):  # pragma: no cover - compiled
    """``out[2p] = img[p].real``, ``out[2p + 1] = img[p].imag`` inside the circle
    ``x² + y² <= radius2`` (pixel centres from the grid middle), 0 outside; one pass, rows
    split over threads (gridrec's packed transforms carry two slices each)."""
    for i in prange(img.shape[1]):
        _unpack_row(img, out, radius2, i)


@njit(nogil=True, fastmath=True, cache=True)
def unpack_pairs_serial(img, out, radius2):  # pragma: no cover - compiled
    """:func:`unpack_pairs` in the calling thread, without the GIL (one thread per slice
    group)."""
    for i in range(img.shape[1]):
        _unpack_row(img, out, radius2, i)


@njit(fastmath=True, cache=True, inline="always")
def _pack_angle(spec, resp, sino, vt, f, has_corr, factor, out, p, a):
    """Angle ``a`` of pair ``p`` of :func:`pack_pairs`."""
    n_freq = factor.shape[1]
    base = a * n_freq
    corr = np.zeros((2, 2 * n_freq), dtype=np.float32)
    if has_corr:
        # the wrap-around correction's spectrum: (row . V) @ F, rank r (~20) dot products
        # and rows; the row stays in L1 (no (angles, freqs) array goes through memory)
        for s in range(2):
            row = sino[2 * p + s, a]
            dst = corr[s]
            for i in range(vt.shape[0]):
                basis = vt[i]
                c = np.float32(0.0)
                for j in range(row.shape[0]):
                    c += row[j] * basis[j]
                fi = f[i]
                for k2 in range(2 * n_freq):
                    dst[k2] += c * fi[k2]
    for k in range(n_freq):
        fk = factor[a, k]
        r = resp[k]
        va = spec[2 * p, a, k] * r + (corr[0, 2 * k] + 1j * corr[0, 2 * k + 1])
        vb = spec[2 * p + 1, a, k] * r + (corr[1, 2 * k] + 1j * corr[1, 2 * k + 1])
        ga = va * fk
        gb = vb * fk
        out[p, 0, base + k] = 0.5 * (ga + 1j * gb)
        out[p, 1, base + k] = 0.5 * (np.conj(ga) + 1j * np.conj(gb))


@njit(parallel=True, fastmath=True, cache=True)
def pack_pairs(spec, resp, sino, vt, f, has_corr, factor, out):  # pragma: no cover
    """Strengths of gridrec's packed transforms, in one pass: with
    ``G = (spec * resp + C) * factor`` for slices ``2p`` (``Ga``) and ``2p + 1`` (``Gb``),
    ``out[p, 0] = (Ga + i Gb) / 2`` (at +k) and ``out[p, 1] = (conj Ga + i conj Gb) / 2``
    (at -k); ``C`` (only when ``has_corr``) is the spectrum of the wrap-around correction,
    ``(sino[., a] @ vt.T) @ f`` viewed as complex; angles split over threads."""
    for p in range(out.shape[0]):
        for a in prange(factor.shape[0]):
            _pack_angle(spec, resp, sino, vt, f, has_corr, factor, out, p, a)


@njit(nogil=True, fastmath=True, cache=True)
def pack_pairs_serial(spec, resp, sino, vt, f, has_corr, factor, out):  # pragma: no cover
    """:func:`pack_pairs` in the calling thread, without the GIL."""
    for p in range(out.shape[0]):
        for a in range(factor.shape[0]):
            _pack_angle(spec, resp, sino, vt, f, has_corr, factor, out, p, a)
