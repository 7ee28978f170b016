"""Flat/dark normalisation and the minus-log transform."""

from __future__ import annotations

import numpy as np

__all__ = ["minus_log", "normalize"]


def normalize(proj, flats, darks, *, floor: float = 1e-6, out=None) -> np.ndarray:
    """Flat- and dark-field correct projections.

    The flats and darks are averaged with a median over their first axis (robust against
    zingers in single frames), then ``(proj - dark) / (flat - dark)``.

    Parameters
    ----------
    proj : array_like, shape (n_angles, n_rows, n_cols)
        Raw projections (any numeric dtype).
    flats, darks : array_like, shape (n, n_rows, n_cols) or (n_rows, n_cols)
        Open-beam and dark-current frames.
    floor : float
        Smallest allowed value of ``flat - dark``; pixels at or below it (dead pixels) give
        a transmission of 1 instead of a division by zero.
    out : ndarray, optional
        Float32 array to write into.

    Returns
    -------
    ndarray of float32
        Transmission, nominally in (0, 1].

    Raises
    ------
    ValueError
        If the frame shapes of ``flats`` or ``darks`` differ from those of ``proj``.

    Examples
    --------
    >>> import numpy as np
    >>> proj = np.full((2, 3, 4), 600.0); flats = np.full((5, 3, 4), 1100.0)
    >>> darks = np.full((5, 3, 4), 100.0)
    >>> float(normalize(proj, flats, darks)[0, 0, 0])
    0.5
    """
    proj = np.asarray(proj)
    if proj.ndim != 3:
        raise ValueError(f"proj must be 3-D [angles, rows, columns], got shape {proj.shape}")
    flat = _average(flats, "flats", proj.shape[1:])
    dark = _average(darks, "darks", proj.shape[1:])
    denom = flat - dark
    dead = denom <= floor
    denom[dead] = 1.0
    if out is None:
        out = np.empty(proj.shape, dtype=np.float32)
    np.subtract(proj, dark, out=out, dtype=np.float32, casting="unsafe")
    np.divide(out, denom, out=out)
    out[:, dead] = 1.0
    return out


def _average(frames, name: str, frame_shape: tuple[int, ...]) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[1:] != frame_shape:
        raise ValueError(
            f"{name} have frame shape {frames.shape[1:]} but projections have {frame_shape}; "
            f"use {name} recorded with the same detector region of interest"
        )
    if frames.shape[0] == 0:
        raise ValueError(f"{name} is empty; at least one frame is needed")
    return np.median(frames, axis=0).astype(np.float32)


def minus_log(trans, *, floor: float = 1e-4, out=None) -> np.ndarray:
    """Turn transmission into line integrals, ``-log(max(trans, floor))``.

    Parameters
    ----------
    trans : array_like
        Transmission from :func:`normalize`.
    floor : float
        Values below it (noise, dead pixels) are clamped before the logarithm, so the
        result is finite.
    out : ndarray, optional
        Array to write into (may be ``trans`` itself).

    Returns
    -------
    ndarray of float32

    Examples
    --------
    >>> import numpy as np
    >>> [round(float(v), 2) for v in minus_log(np.array([1.0, np.exp(-2.0), 0.0]))]
    [-0.0, 2.0, 9.21]
    """
    if floor <= 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    trans = np.asarray(trans, dtype=np.float32)
    out = np.maximum(trans, np.float32(floor), out=out)
    np.log(out, out=out)
    np.negative(out, out=out)
    return out
