"""What every reconstruction backend provides, and the record of which one ran."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CONVENTION", "ReconBackend", "ReconInfo", "ReconRequest", "axis_column"]

#: The geometry every backend, :mod:`spotkit.sim` and the centre finders share: tomopy's.
#: Saved volumes and previews carry it in their metadata (``convention`` attribute).
CONVENTION = {
    "name": "tomopy",
    "orientation": "image row i at y = i - (n-1)/2 (down), column j at x = j - (n-1)/2; "
                   "(x, y) projects onto detector position center + x cos(theta) - "
                   "y sin(theta), as tomopy.project",
    "center": "tomopy's value: measured from the left edge of column 0, n_cols / 2 is the "
              "middle of the detector (column j spans [j, j + 1))",
    "theta": "radians, as tomopy.recon",
}


def axis_column(center: float) -> float:
    """Column-centre coordinate of the rotation axis for tomopy's ``center`` value.

    tomopy measures the centre from the left edge of column 0, so the middle of an
    ``n``-column detector is ``n / 2``; in coordinates where column ``j`` is centred at
    ``j`` (what array indices and interpolation use) the axis is at ``center - 0.5``.

    Examples
    --------
    >>> axis_column(128.0)
    127.5
    """
    return float(center) - 0.5


@dataclass(frozen=True)
class ReconRequest:
    """A validated reconstruction request, in spotkit's geometry.

    Attributes
    ----------
    sinograms : ndarray
        ``(slices, angles, cols)`` float32, C-contiguous, finite.
    theta : ndarray
        ``(angles,)`` float64, radians.
    center : float
        Rotation axis in tomopy's convention (``n_cols / 2`` is the detector middle; see
        :data:`CONVENTION` and :func:`axis_column`).
    algorithm, filter : str
        Names already checked against the backend's lists.
    n : int
        Output grid size.
    num_iter : int
        Iterations of the iterative algorithms.
    nonneg : bool
        Clip negative values after each iteration (iterative algorithms).
    threads : int or None
        Threads to use; ``None`` lets the backend decide (all cores).
    """

    sinograms: np.ndarray
    theta: np.ndarray
    center: float
    algorithm: str
    filter: str
    n: int
    num_iter: int
    nonneg: bool
    threads: int | None


@dataclass(frozen=True)
class ReconInfo:
    """Provenance of one reconstruction: which backend, which version, which options.

    Attributes
    ----------
    backend : str
        Registry name of the backend that ran (``"builtin"``, ``"tomopy"``, ...).
    version : str
        Version of the backend's engine (for ``builtin``: spotkit's, plus finufft / numba).
    algorithm, filter : str
        What was run.
    center : float
        Rotation axis used (tomopy's convention, see :data:`CONVENTION`).
    n : int
        Output grid size.
    num_iter : int or None
        Iterations, for iterative algorithms.
    threads : int or None
        Threads requested.
    engine : str
        Which code path did the work (``"finufft"``, ``"numba"``, ``"numpy"``, ...).
    seconds : float
        Wall time of the reconstruction.
    """

    backend: str
    version: str
    algorithm: str
    filter: str
    center: float
    n: int
    num_iter: int | None
    threads: int | None
    engine: str
    seconds: float

    def to_dict(self) -> dict:
        """JSON-serialisable form, for provenance records (with the geometry convention)."""
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__},
                "convention": CONVENTION["name"]}


class ReconBackend:
    """Base class of reconstruction backends.

    A backend declares its :attr:`name`, the :attr:`algorithms` and :attr:`filters` it does
    correctly, says whether it can run here (:meth:`available`) and which version would run
    (:meth:`version`), and reconstructs a validated :class:`ReconRequest` into float32
    ``(slices, n, n)`` images in tomopy's geometry (:data:`CONVENTION`) and attenuation per
    pixel.
    Third-party backends subclass it and register through the ``spotkit.backends``
    entry-point group.

    Examples
    --------
    >>> class Mine(ReconBackend):
    ...     name = "mine"
    ...     algorithms = ("fbp",)
    ...     filters = ("ramp",)
    >>> Mine().available()
    True
    """

    name: str = ""
    algorithms: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    #: Used by ``backend="auto"``: higher wins among the available backends; 0 = never auto.
    priority: int = 0

    def available(self) -> bool:
        """Whether the backend's engine can be imported here."""
        return True

    def version(self) -> str:
        """Version string of the engine that would run."""
        return "unknown"

    def engine(self, request: ReconRequest) -> str:
        """Name of the code path that would serve ``request`` (for provenance)."""
        return self.name

    def work_bytes(self, n_angles: int, n_cols: int, n: int, algorithm: str) -> tuple[int, int]:
        """Memory one call needs: ``(fixed, per_slice)`` bytes, beyond its input.

        A call on ``s`` sinograms needs about ``fixed + s * per_slice`` bytes; memory-bounded
        runners (:meth:`spotkit.tomo.TomoPipeline.plan`) size their blocks with it. The
        default is a generous generic estimate; backends that know better override it.
        """
        return 0, int(3 * 4 * n * n + 16 * n_angles * n_cols)

    def reconstruct(self, request: ReconRequest) -> np.ndarray:
        """Reconstruct ``request``; return float32 ``(slices, n, n)``."""
        raise NotImplementedError(f"backend {self.name!r} does not implement reconstruct()")


_DIHEDRAL = (
    ("identity", lambda a: a),
    ("flip rows", lambda a: a[..., ::-1, :]),
    ("flip columns", lambda a: a[..., :, ::-1]),
    ("rotate 180", lambda a: a[..., ::-1, ::-1]),
    ("transpose", lambda a: np.swapaxes(a, -1, -2)),
    ("transpose, flip rows", lambda a: np.swapaxes(a, -1, -2)[..., ::-1, :]),
    ("transpose, flip columns", lambda a: np.swapaxes(a, -1, -2)[..., :, ::-1]),
    ("transpose, rotate 180", lambda a: np.swapaxes(a, -1, -2)[..., ::-1, ::-1]),
)


def probe_orientation(run, *, expected: str, backend: str, n: int = 64):
    """Find how a third-party engine's images map onto spotkit's pixel grid.

    Reconstructs (with ``run(sinogram, theta, center) -> (n, n) image``, ``center`` in
    tomopy's convention) the analytic sinogram of one off-centre Gaussian blob on an
    off-centre axis, and picks which of the 8 flips/transposes puts the blob where
    :data:`CONVENTION` says it is. A result
    different from ``expected`` (what the engine's documentation or source implies) is
    logged as a warning, since it means the engine changed its convention.

    Returns
    -------
    callable
        Applies the transform to ``(..., n, n)`` arrays.
    """
    import logging

    sigma, x0, y0, center = 2.0, n / 5.0, -n / 8.0, n / 2.0 + 1.5
    theta = np.linspace(0, np.pi, 4 * n, endpoint=False)
    s0 = axis_column(center) + x0 * np.cos(theta) - y0 * np.sin(theta)
    cols = np.arange(n, dtype=np.float64)
    sino = np.sqrt(2 * np.pi) * sigma * np.exp(-((cols[None, :] - s0[:, None]) ** 2)
                                               / (2 * sigma**2))
    c = np.arange(n) - (n - 1) / 2.0
    truth = np.exp(-((c[None, :] - x0) ** 2 + (c[:, None] - y0) ** 2) / (2 * sigma**2))
    image = np.asarray(run(sino.astype(np.float32), theta, center), dtype=np.float64)
    scores = [float(np.sum(fn(image) * truth)) for _, fn in _DIHEDRAL]
    best = int(np.argmax(scores))
    name, fn = _DIHEDRAL[best]
    log = logging.getLogger(__name__)
    if name != expected:
        log.warning("%s images needed %r (expected %r) to match tomopy's geometry; using %r",
                    backend, name, expected, name)
    fixed = fn(image)
    w = np.clip(fixed, 0, None) * (truth > 0.05)
    if w.sum() > 0:
        dy = float((w * c[:, None]).sum() / w.sum() - y0)
        dx = float((w * c[None, :]).sum() / w.sum() - x0)
        if max(abs(dx), abs(dy)) > 0.25:
            log.warning("%s images are offset by (%.2f, %.2f) pixels (rows, columns) from "
                        "tomopy's grid", backend, dy, dx)
    return fn
