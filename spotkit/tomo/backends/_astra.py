"""Adapter to astra-toolbox's CPU algorithms (FBP_CPU, SIRT_CPU) in spotkit's geometry.

astra is opt-in (``backend="astra"``; never chosen by ``"auto"``): on a CPU it is slow
(~37 s for a 1500 x 2048 slice) and its wheel pulls ~380 MB of CUDA libraries.

Geometry: a ``parallel_vec`` projection geometry with, per angle ``θ``, ray direction
``(sin θ, -cos θ)``, detector direction ``u = (cos θ, sin θ)`` and detector centre
``d = -(center - (n_cols - 1) / 2) u``, so that a point ``p`` lands on column
``center + p·u`` as in spotkit (astra's detector pixel ``k`` is at
``d + (k - n_cols / 2 + 1/2) u``). astra's volume rows run along decreasing ``y``;
the adapter checks the orientation once with :func:`probe_orientation`.
"""

from __future__ import annotations

import functools
import importlib.util
import logging

import numpy as np

from spotkit.tomo.backends._base import ReconBackend, ReconRequest, probe_orientation

logger = logging.getLogger(__name__)

__all__ = ["AstraBackend"]

_FILTERS = {"ramp": "ram-lak", "shepp": "shepp-logan", "cosine": "cosine", "hann": "hann",
            "hamming": "hamming"}
_ALGORITHMS = {"fbp": "FBP_CPU", "sirt": "SIRT_CPU"}


def _import_astra():
    try:
        import astra
    except ImportError as exc:
        raise ImportError("the astra backend needs astra-toolbox: pip install astra-toolbox "
                          "(GPLv3, ~380 MB with its CUDA libraries)") from exc
    return astra


class AstraBackend(ReconBackend):
    """astra-toolbox FBP_CPU and SIRT_CPU.

    Examples
    --------
    >>> AstraBackend().algorithms
    ('fbp', 'sirt')
    """

    name = "astra"
    algorithms = tuple(_ALGORITHMS)
    filters = tuple(_FILTERS)
    priority = 0  # never chosen by backend="auto"

    def available(self) -> bool:
        """Whether astra can be imported."""
        return importlib.util.find_spec("astra") is not None

    def version(self) -> str:
        """astra-toolbox's version."""
        astra = _import_astra()
        return f"astra-toolbox {astra.__version__}"

    def engine(self, request: ReconRequest) -> str:
        """astra's algorithm name."""
        return _ALGORITHMS[request.algorithm]

    def _run(self, sino, theta, center, *, algorithm, filter="ramp", n=None, num_iter=1,
             nonneg=False):
        astra = _import_astra()
        _n_angles, n_cols = sino.shape
        n = n or n_cols
        u = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        ray = np.stack([np.sin(theta), -np.cos(theta)], axis=1)
        d = -(center - (n_cols - 1) / 2.0) * u
        vectors = np.concatenate([ray, d, u], axis=1)
        proj_geom = astra.create_proj_geom("parallel_vec", n_cols, vectors)
        vol_geom = astra.create_vol_geom(n, n)
        projector = astra.create_projector("linear", proj_geom, vol_geom)
        sino_id = astra.data2d.create("-sino", proj_geom, np.asarray(sino, dtype=np.float32))
        rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
        cfg = astra.astra_dict(_ALGORITHMS[algorithm])
        cfg.update(ProjectorId=projector, ProjectionDataId=sino_id, ReconstructionDataId=rec_id)
        if algorithm == "fbp":
            cfg["FilterType"] = _FILTERS[filter]
        elif nonneg:
            cfg["option"] = {"MinConstraint": 0.0}
        alg_id = astra.algorithm.create(cfg)
        try:
            astra.algorithm.run(alg_id, 1 if algorithm == "fbp" else int(num_iter))
            return astra.data2d.get(rec_id)
        finally:
            astra.algorithm.delete(alg_id)
            astra.data2d.delete([sino_id, rec_id])
            astra.projector.delete(projector)

    @functools.cached_property
    def _orient(self):
        return probe_orientation(
            lambda s, t, c: self._run(s, t, c, algorithm="fbp"),
            expected="flip rows", backend="astra")

    def reconstruct(self, request: ReconRequest) -> np.ndarray:
        """Run astra slice by slice; images in spotkit's orientation and units."""
        out = np.empty((request.sinograms.shape[0], request.n, request.n), dtype=np.float32)
        for k, sino in enumerate(request.sinograms):
            out[k] = self._orient(self._run(
                sino, request.theta, request.center, algorithm=request.algorithm,
                filter=request.filter, n=request.n, num_iter=request.num_iter,
                nonneg=request.nonneg))
        return out
