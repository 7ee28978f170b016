"""The built-in backend's projectors: back- and forward projection with linear
interpolation on the detector (numba kernels when available, numpy otherwise), and the
reconstruction circle."""

from __future__ import annotations

import functools

import numpy as np

from spotkit.tomo.backends import _engines
from spotkit.tomo.backends._base import axis_column


@functools.lru_cache(maxsize=4)
def _circle(n: int) -> np.ndarray:
    """The inscribed circle of an ``n x n`` grid (cached, read-only: ~10 ms at n = 2048)."""
    c = np.arange(n) - (n - 1) / 2.0
    mask = (c[:, None] ** 2 + c[None, :] ** 2) <= (n / 2.0) ** 2
    mask.setflags(write=False)
    return mask



def _directions(theta, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Detector steps per image column and per image row: ``(cos θ, -sin θ)`` (tomopy's
    orientation: pixel ``(x, y)`` lands on ``axis + x cos θ - y sin θ``), times ``scale``."""
    return (scale * np.cos(theta).astype(np.float64),
            -scale * np.sin(theta).astype(np.float64))


def _back_project(q, theta, center, n, threads) -> np.ndarray:
    """Sum over angles of ``q`` sampled at each pixel's detector coordinate (no scaling)."""
    return _back_project_scaled(q, theta, center, n, threads, 1)


def _back_project_scaled(q, theta, center, n, threads, over) -> np.ndarray:
    """:func:`_back_project` for rows sampled every ``1 / over`` column (``center`` in
    tomopy's convention)."""
    out = np.zeros((q.shape[0], n, n), dtype=np.float32)
    cos_t, sin_t = _directions(theta, over)
    center = over * axis_column(center)
    loaded = _engines.load_numba()
    if loaded is not None:
        numba, kernels = loaded
        with _engines.numba_threads(numba, threads):
            kernels.back_project(q, cos_t, sin_t, float(center), n, out)
        return out
    n_cols = q.shape[-1] - 1
    coord = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    flat = q.reshape(q.shape[0], -1)
    for a in range(len(theta)):
        u = (center + coord[None, :] * cos_t[a] + coord[:, None] * sin_t[a]).ravel()
        inside = (u >= 0) & (u <= n_cols - 1)
        k = np.clip(u.astype(np.int64), 0, n_cols - 1)
        f = (u - k).astype(np.float32)
        base = a * (n_cols + 1)
        lo = flat[:, base + k]
        hi = flat[:, base + k + 1]
        out += ((lo + f * (hi - lo)) * inside).reshape(-1, n, n)
    return out


def _forward_project(img, theta, center, n_cols, threads) -> np.ndarray:
    """Transpose of :func:`_back_project`: ``(s, a, n_cols + 1)`` float32."""
    n_slices, n, _ = img.shape
    out = np.zeros((n_slices, len(theta), n_cols + 1), dtype=np.float32)
    cos_t, sin_t = _directions(theta)
    center = axis_column(center)
    loaded = _engines.load_numba()
    if loaded is not None:
        numba, kernels = loaded
        with _engines.numba_threads(numba, threads):
            kernels.forward_project(np.ascontiguousarray(img, dtype=np.float32), cos_t, sin_t,
                                    float(center), out)
        return out
    coord = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    flat = img.reshape(n_slices, -1)
    for a in range(len(theta)):
        u = (center + coord[None, :] * cos_t[a] + coord[:, None] * sin_t[a]).ravel()
        inside = (u >= 0) & (u <= n_cols - 1)
        k = np.clip(u.astype(np.int64), 0, n_cols - 1)[inside]
        f = (u[inside] - k).astype(np.float32)
        for s in range(n_slices):
            v = flat[s, inside]
            out[s, a] += np.bincount(k, v * (1 - f), minlength=n_cols + 1)
            out[s, a] += np.bincount(k + 1, v * f, minlength=n_cols + 1)
    return out
