"""The built-in backend's filters: the ramp times a window, applied by FFT."""

from __future__ import annotations

import numpy as np

__all__ = ["FILTERS", "filter_response"]

FILTERS = ("ramp", "shepp", "cosine", "hann", "hamming")
#: the filtered rows :func:`_filtered` gives ``fbp`` are sampled every 1 / 2 column
_FBP_OVERSAMPLE = 2


def filter_response(n_cols: int, name: str) -> tuple[np.ndarray, int]:
    """Discrete ramp (Kak & Slaney) times a window, for projections zero-padded 2x.

    Parameters
    ----------
    n_cols : int
        Detector columns.
    name : {"ramp", "shepp", "cosine", "hann", "hamming"}
        Window.

    Returns
    -------
    response : ndarray, shape (pad // 2 + 1,)
        Real response at ``rfftfreq(pad)``.
    pad : int
        Padded length: a power of two, at least ``2 * n_cols``.

    Examples
    --------
    >>> r, pad = filter_response(100, "ramp")
    >>> pad, r.shape
    (256, (129,))
    """
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose one of {list(FILTERS)}")
    pad = max(64, int(2 ** np.ceil(np.log2(2 * n_cols))))
    k = np.arange(-(pad // 2), pad // 2)
    h = np.zeros(pad)
    h[k == 0] = 0.25
    odd = (k % 2) == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    ramp = np.real(np.fft.fft(np.fft.ifftshift(h)))[: pad // 2 + 1]
    window = _window_response(np.fft.rfftfreq(pad), name)  # cycles per pixel, 0 .. 0.5
    return ramp * window, pad


def _window_response(f: np.ndarray, name: str) -> np.ndarray:
    """The window ``name`` at frequencies ``f`` (cycles per pixel, ``0 <= f <= 1/2``)."""
    return {
        "ramp": lambda: np.ones_like(f),
        "shepp": lambda: np.sinc(f),
        "cosine": lambda: np.cos(np.pi * f),
        "hann": lambda: 0.5 * (1 + np.cos(2 * np.pi * f)),
        "hamming": lambda: 0.54 + 0.46 * np.cos(2 * np.pi * f),
    }[name]()


def _filtered(sino: np.ndarray, name: str, *, oversample: int = 1) -> np.ndarray:
    """Ramp-filtered sinograms sampled every ``1 / oversample`` column, plus one zero column.

    Returns ``(s, a, oversample * (cols - 1) + 2)`` float32: sample ``m`` is the filtered
    projection at column ``m / oversample`` (band-limited interpolation, exact for the
    filtered data), so a linear interpolation on it blurs far less than on the raw columns.
    """
    import scipy.fft

    n_cols = sino.shape[-1]
    response, pad = filter_response(n_cols, name)
    spec = scipy.fft.rfft(sino, n=pad, axis=-1)
    spec *= response.astype(spec.real.dtype)
    width = oversample * (n_cols - 1) + 1
    q = np.zeros((*sino.shape[:-1], width + 1), dtype=np.float32)
    q[..., :width] = scipy.fft.irfft(spec, n=oversample * pad, axis=-1)[..., :width]
    if oversample != 1:
        q *= np.float32(oversample)
    return q
