"""Filtered back-projection on the CPU (the simple built-in reconstruction).

Geometry (shared by every spotkit backend and by :mod:`spotkit.sim`): the output is an
``n x n`` image per slice, ``n`` = number of detector columns unless given; image pixel
``(i, j)`` sits at ``x = j - (n - 1) / 2``, ``y = i - (n - 1) / 2`` (pixels, the rotation axis
at the origin); a point ``(x, y)`` projects at angle ``θ`` onto detector column
``center + x cos θ + y sin θ``. Values are attenuation per pixel (multiply by
1 / pixel size for physical units).
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["FILTERS", "reconstruct"]

FILTERS = ("ramp", "shepp", "cosine", "hann", "hamming")
ALGORITHMS = ("fbp",)


def _filter_response(n_cols: int, name: str) -> tuple[np.ndarray, int]:
    """Frequency response of the discrete ramp (Kak & Slaney) times a window, zero-padded 2x."""
    pad = max(64, int(2 ** np.ceil(np.log2(2 * n_cols))))
    k = np.arange(-(pad // 2), pad // 2)
    h = np.zeros(pad)
    h[k == 0] = 0.25
    odd = (k % 2) == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    ramp = np.real(np.fft.fft(np.fft.ifftshift(h)))[: pad // 2 + 1]
    f = np.fft.rfftfreq(pad)  # cycles per pixel, 0 .. 0.5
    if name == "shepp":
        ramp = ramp * np.sinc(f)
    elif name == "cosine":
        ramp = ramp * np.cos(np.pi * f)
    elif name == "hann":
        ramp = ramp * 0.5 * (1 + np.cos(2 * np.pi * f))
    elif name == "hamming":
        ramp = ramp * (0.54 + 0.46 * np.cos(2 * np.pi * f))
    return ramp, pad


def reconstruct(
    sinograms,
    theta,
    center: float | None = None,
    *,
    algorithm: str = "fbp",
    filter: str = "ramp",
    n: int | None = None,
) -> np.ndarray:
    """Reconstruct slices from parallel-beam sinograms.

    Parameters
    ----------
    sinograms : array_like, shape (n_angles, n_cols) or (n_slices, n_angles, n_cols)
        Line integrals (after :func:`spotkit.tomo.minus_log`).
    theta : array_like, shape (n_angles,)
        Angles in radians, covering 180 degrees.
    center : float, optional
        Rotation axis in column coordinates; defaults to ``n_cols / 2``.
    algorithm : {"fbp"}
        Reconstruction algorithm.
    filter : {"ramp", "shepp", "cosine", "hann", "hamming"}
        Filter window applied to the ramp.
    n : int, optional
        Output image size; defaults to ``n_cols``.

    Returns
    -------
    ndarray of float32, shape (n_slices, n, n) (or (n, n) for one sinogram)
        Attenuation per pixel.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> s = np.arange(64) - 32.0
    >>> disc = 2 * np.sqrt(np.clip(10.0**2 - s**2, 0, None)) * 0.01   # mu = 0.01 / pixel
    >>> img = reconstruct(np.tile(disc, (90, 1)), theta, center=32.0)
    >>> round(float(img[31:33, 31:33].mean()), 3)
    0.01
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {list(ALGORITHMS)}")
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; choose one of {list(FILTERS)}")
    sino = np.asarray(sinograms, dtype=np.float32)
    single = sino.ndim == 2
    if single:
        sino = sino[None]
    if sino.ndim != 3:
        raise ValueError(f"sinograms must be 2-D or 3-D, got shape {np.shape(sinograms)}")
    theta = np.asarray(theta, dtype=np.float64)
    n_slices, n_angles, n_cols = sino.shape
    if theta.shape != (n_angles,):
        raise ValueError(
            f"theta has {theta.size} angles but the sinograms have {n_angles} projections"
        )
    if not np.isfinite(sino).all():
        raise ValueError(
            "sinograms contain NaN or infinite values; clean them before reconstructing"
        )
    center = n_cols / 2.0 if center is None else float(center)
    if not 0 <= center < n_cols:
        raise ValueError(f"center {center} is outside the detector (0 .. {n_cols - 1})")
    n = n or n_cols

    response, pad = _filter_response(n_cols, filter)
    spec = np.fft.rfft(sino, n=pad, axis=-1)
    filtered = np.fft.irfft(spec * response, n=pad, axis=-1)[..., :n_cols].astype(np.float32)

    coord = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    x = coord[None, :]
    y = coord[:, None]
    out = np.zeros((n_slices, n, n), dtype=np.float32)
    cols = np.arange(n_cols, dtype=np.float64)
    for a, th in enumerate(theta):
        s = center + x * np.cos(th) + y * np.sin(th)  # (n, n) detector coordinate
        inside = (s >= 0) & (s <= n_cols - 1)
        s_flat = s.ravel()
        for k in range(n_slices):
            vals = np.interp(s_flat, cols, filtered[k, a], left=0.0, right=0.0)
            out[k] += vals.reshape(n, n) * inside
    out *= np.float32(np.pi / n_angles)
    return out[0] if single else out
