"""Reconstruction of parallel-beam sinograms, dispatched to a backend.

Geometry: tomopy's, shared by every backend, :mod:`spotkit.sim` and the centre finders
(:data:`spotkit.tomo.CONVENTION`). The output is an ``n x n`` image per slice, ``n`` = number
of detector columns unless given; image pixel ``(i, j)`` sits at ``x = j - (n - 1) / 2``,
``y = i - (n - 1) / 2`` (pixels, the rotation axis at the origin, ``y`` growing down the
rows); a point ``(x, y)`` projects at angle ``θ`` onto detector position
``center + x cos θ - y sin θ``, positions measured from the left edge of column 0 (column
``j`` spans ``[j, j + 1)``, so ``n_cols / 2`` is the middle of the detector): the same
``center`` number, the same image and the same angles as ``tomopy.recon``. Values are
attenuation per pixel (multiply by 1 / pixel size for physical units).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from spotkit.tomo._angles import as_radians
from spotkit.tomo.backends import ReconInfo, ReconRequest, available_backends, get_backend
from spotkit.tomo.backends._builtin import FILTERS

logger = logging.getLogger(__name__)

__all__ = ["ALGORITHMS", "FILTERS", "reconstruct", "reconstruct_with_info"]

ALGORITHMS = ("gridrec", "fbp", "sirt")
_DEFAULT_ITER = 100


def reconstruct(
    sinograms,
    theta,
    center: float | None = None,
    *,
    algorithm: str = "gridrec",
    filter: str = "shepp",
    backend: str = "auto",
    n: int | None = None,
    num_iter: int | None = None,
    nonneg: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Reconstruct slices from parallel-beam sinograms.

    Parameters
    ----------
    sinograms : array_like, shape (n_angles, n_cols) or (n_slices, n_angles, n_cols)
        Line integrals (after :func:`spotkit.tomo.minus_log`).
    theta : array_like or xarray.DataArray, shape (n_angles,)
        Angles in radians, covering 180 degrees; an xarray coordinate with
        ``attrs["units"] = "degrees"`` (``Dataset.to_xarray().theta``) is converted. A bare
        array spanning more than one turn is refused (degrees).
    center : float, optional
        Rotation axis, tomopy's value: ``n_cols / 2`` is the middle of the detector (a
        centre from tomopy, tomopy-cli, tomocupy or a beamline log means the same here).
        Default ``n_cols / 2``. Must lie on the detector.
    algorithm : {"gridrec", "fbp", "sirt"}
        ``"gridrec"``: Fourier gridding (the fastest; pixels outside the circle inscribed
        in the grid are 0). ``"fbp"``: filtered back-projection. ``"sirt"``: iterative, for
        few or unevenly spaced angles (ignores ``filter``).
    filter : {"shepp", "ramp", "cosine", "hann", "hamming"}
        Window applied to the ramp filter (analytic algorithms).
    backend : str
        ``"auto"`` (tomopy when installed and able, else ``"builtin"``), or a name from
        :func:`spotkit.tomo.backends.list_backends`. The choice is logged;
        :func:`reconstruct_with_info` returns it for provenance.
    n : int, optional
        Output image size; defaults to ``n_cols``.
    num_iter : int, optional
        Iterations of ``"sirt"``; default 100.
    nonneg : bool
        Clip negative values after each ``"sirt"`` iteration.
    threads : int, optional
        Threads to use; default all cores.

    Returns
    -------
    ndarray of float32, shape (n_slices, n, n) (or (n, n) for one sinogram)
        Attenuation per pixel.

    Raises
    ------
    ValueError
        Unknown ``algorithm``, ``filter`` or ``backend``; ``theta`` not matching the
        projections or in degrees; NaN or infinite values; ``center`` outside the detector.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 90, endpoint=False)
    >>> s = np.arange(64) + 0.5 - 32.0          # column centres, from the axis at 32
    >>> disc = 2 * np.sqrt(np.clip(10.0**2 - s**2, 0, None)) * 0.01   # mu = 0.01 / pixel
    >>> img = reconstruct(np.tile(disc, (90, 1)), theta, center=32.0, backend="builtin")
    >>> round(float(img[31:33, 31:33].mean()), 3)
    0.01
    """
    return reconstruct_with_info(
        sinograms, theta, center, algorithm=algorithm, filter=filter, backend=backend, n=n,
        num_iter=num_iter, nonneg=nonneg, threads=threads)[0]


def reconstruct_with_info(
    sinograms,
    theta,
    center: float | None = None,
    *,
    algorithm: str = "gridrec",
    filter: str = "shepp",
    backend: str = "auto",
    n: int | None = None,
    num_iter: int | None = None,
    nonneg: bool = False,
    threads: int | None = None,
) -> tuple[np.ndarray, ReconInfo]:
    """Like :func:`reconstruct`, and also say which backend and version did the work.

    Returns
    -------
    images : ndarray of float32
        As :func:`reconstruct`.
    info : ReconInfo
        Backend name and version, algorithm, filter, centre, engine, wall time; record
        ``info.to_dict()`` as provenance.

    Examples
    --------
    >>> import numpy as np
    >>> theta = np.linspace(0, np.pi, 30, endpoint=False)
    >>> img, info = reconstruct_with_info(np.ones((30, 16)), theta, backend="builtin")
    >>> info.backend, info.algorithm
    ('builtin', 'gridrec')
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {list(ALGORITHMS)}")
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; choose one of {list(FILTERS)}")
    chosen = _choose_backend(backend, algorithm, filter)

    sino = np.asarray(sinograms, dtype=np.float32)
    single = sino.ndim == 2
    if single:
        sino = sino[None]
    if sino.ndim != 3:
        raise ValueError(
            f"sinograms must be 2-D [angles, cols] or 3-D [slices, angles, cols], "
            f"got shape {np.shape(sinograms)}")
    sino = np.ascontiguousarray(sino)
    theta = as_radians(theta)
    n_slices, n_angles, n_cols = sino.shape
    if theta.shape != (n_angles,):
        raise ValueError(
            f"theta has shape {theta.shape} but the sinograms have {n_angles} projections; "
            "pass one angle (radians) per projection")
    if not np.isfinite(sino).all():
        bad = int(np.size(sino) - np.isfinite(sino).sum())
        raise ValueError(
            f"sinograms contain {bad} NaN or infinite values; clean them (e.g. "
            "minus_log with a floor, or np.nan_to_num) before reconstructing")
    center = n_cols / 2.0 if center is None else float(center)
    if not (np.isfinite(center) and 0 <= center <= n_cols):
        raise ValueError(f"center {center} is outside the detector (0 .. {n_cols}, tomopy's "
                         f"convention: {n_cols / 2:g} is the middle)")
    n = n_cols if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be a positive image size, got {n}")
    num_iter = _DEFAULT_ITER if num_iter is None else int(num_iter)
    if num_iter < 1:
        raise ValueError(f"num_iter must be >= 1, got {num_iter}")
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")

    request = ReconRequest(
        sinograms=sino, theta=theta, center=center, algorithm=algorithm, filter=filter, n=n,
        num_iter=num_iter, nonneg=bool(nonneg), threads=None if threads is None else int(threads))
    be = get_backend(chosen)
    engine = be.engine(request)
    logger.debug("reconstructing %d slice(s) of %d x %d with %s %s (%s, %s)", n_slices,
                n_angles, n_cols, chosen, algorithm, engine, be.version())
    t0 = time.perf_counter()
    out = np.asarray(be.reconstruct(request), dtype=np.float32)
    seconds = time.perf_counter() - t0
    if out.shape != (n_slices, n, n):
        raise RuntimeError(
            f"backend {chosen!r} returned shape {out.shape}, expected {(n_slices, n, n)}")
    info = ReconInfo(
        backend=chosen, version=be.version(), algorithm=algorithm, filter=filter,
        center=center, n=n, num_iter=num_iter if algorithm == "sirt" else None,
        threads=request.threads, engine=engine, seconds=seconds)
    return (out[0] if single else out), info


_ANNOUNCED: set[tuple[str, str]] = set()


def _choose_backend(backend: str, algorithm: str, filter: str) -> str:
    """Resolve ``"auto"`` and check the backend can do ``algorithm`` with ``filter``."""
    if backend == "auto":
        for name in available_backends():
            be = get_backend(name)
            if be.priority > 0 and algorithm in be.algorithms and filter in be.filters:
                if (name, algorithm) not in _ANNOUNCED:  # once per process, not per block
                    _ANNOUNCED.add((name, algorithm))
                    logger.info("backend='auto' chose %r (%s) for %s", name, be.version(),
                                algorithm)
                return name
        return "builtin"
    be = get_backend(backend)  # raises ValueError for an unknown name
    if algorithm not in be.algorithms:
        raise ValueError(f"backend {backend!r} does not do algorithm {algorithm!r}; it does "
                         f"{list(be.algorithms)}")
    if filter not in be.filters and algorithm != "sirt":
        raise ValueError(f"backend {backend!r} does not have filter {filter!r}; it has "
                         f"{list(be.filters)}")
    if not be.available():
        raise ImportError(f"backend {backend!r} is not installed here; available: "
                          f"{available_backends()}")
    return backend
