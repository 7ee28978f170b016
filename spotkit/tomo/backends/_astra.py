"""Adapter to astra-toolbox's 2-D algorithms (CPU, or CUDA where astra finds a GPU).

astra is opt-in (``backend="astra"``; never chosen by ``"auto"``): its CPU code is
single-threaded (``libastra`` links no OpenMP), so on a CPU it is much slower than
``builtin``, and its wheel pulls ~380 MB of CUDA libraries.

What runs, and why:

* ``fbp``: astra's filtered back-projection, with the filtering done here.
  astra's CPU ``FBP`` accepts only the ``parallel`` geometry, whose rotation axis is the
  detector centre; an off-centre axis would need the sinogram shifted by a fraction of a
  column (an interpolation). So the adapter filters the rows exactly as astra's ``FBP``
  does (:func:`_astra_filter`: ``genFilter`` in astra's ``src/Filters.cpp``, zero-padding
  and the ``π / (2 A)`` scale in ``src/FilteredBackProjectionAlgorithm.cpp``) and has
  astra back-project them (``BP``, or ``BP_CUDA``) on a ``parallel_vec`` geometry that puts
  the axis at ``center`` exactly. On a centred axis and detector-spaced rows this equals
  astra's ``FBP`` to ~5e-5 of the image maximum, for all five filters. The filtered rows
  are sampled every half column (band-limited, exact for the filtered data) because
  astra's back-projectors blur like a linear interpolation of the rows they get: on raw
  columns that is ~5 % NRMSE away from spotkit's own ``fbp``, at half columns ~3 %
  (spotkit's ``fbp`` does the same, see :func:`spotkit.tomo.backends._builtin._fbp`).
* ``sirt``: astra's ``SIRT`` (``SIRT_CUDA``) on the same geometry, ``num_iter`` iterations
  from zero, ``nonneg`` as astra's ``MinConstraint = 0``.

Units: astra's projectors are scaled as line integrals (``has_feature(
"projectors_scaled_as_line_integrals")``) and the volume pixel is 1 x 1 detector column,
so images are in attenuation per pixel, as spotkit's.

Geometry (tomopy's, :data:`~spotkit.tomo.backends._base.CONVENTION`): per angle ``θ``,
detector direction ``u = (cos θ, sin θ)`` in astra's ``(X, Y)``, rays along
``(-sin θ, cos θ)``, detector centre ``d`` placed so that detector pixel ``k`` (astra puts
it at ``d + (k - m/2 + 1/2) u / over`` for ``m`` pixels spaced ``1 / over``) is at column
``k / over``. astra's volume row ``i`` has ``Y = (n-1)/2 - i`` and column ``j`` has
``X = j - (n-1)/2``; with ``Y = -y`` a pixel at ``(x, y)`` lands on column
``axis + x cos θ - y sin θ`` (``axis = center - 1/2``, tomopy's centre value in column-centre
coordinates) and astra's image needs no flip. The adapter
checks that once per process with :func:`probe_orientation`, plus the units. The CUDA
path (same geometry, same filtering) has only been checked that way, not by the tests on
a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import logging

import numpy as np

from spotkit.tomo.backends._base import (
    ReconBackend,
    ReconRequest,
    axis_column,
    probe_orientation,
)

logger = logging.getLogger(__name__)

__all__ = ["AstraBackend"]

#: spotkit's filter names -> astra's ``FilterType`` names (same definitions, see
#: :func:`_astra_filter`).
_FILTERS = {"ramp": "ram-lak", "shepp": "shepp-logan", "cosine": "cosine", "hann": "hann",
            "hamming": "hamming"}
_ALGORITHMS = ("fbp", "sirt")
_PROJECTOR = "linear"  # CPU projector (Joseph); the CUDA algorithms bring their own
_FBP_OVERSAMPLE = 2


def _import_astra():
    try:
        import astra
    except ImportError as exc:
        raise ImportError("the astra backend needs astra-toolbox: pip install astra-toolbox "
                          "(GPLv3, ~380 MB with its CUDA libraries)") from exc
    return astra


@functools.lru_cache(maxsize=1)
def _use_cuda() -> bool:
    """Whether astra was built with CUDA and sees a usable GPU (asked once)."""
    astra = _import_astra()
    try:
        return bool(astra.use_cuda())
    except Exception as exc:  # a broken CUDA runtime means: run on the CPU
        logger.info("astra cannot use CUDA (%s: %s); using its CPU algorithms",
                    type(exc).__name__, exc)
        return False


def _fft_length(n_cols: int) -> int:
    """astra's FBP zero-padding: the power of two at or above ``2 n_cols``."""
    return 1 << int(np.ceil(np.log2(2 * n_cols)))


def _astra_filter(n_cols: int, name: str) -> tuple[np.ndarray, int]:
    """astra's FBP filter times astra's FBP scale, at ``rfftfreq(pad)``.

    astra (``genFilter`` in ``src/Filters.cpp``) takes twice the DFT of the discrete
    spatial ramp ``h(0) = 1/4``, ``h(k) = -1/(πk)²`` for odd ``k`` (Kak & Slaney), on the
    padded length ``pad``, and multiplies the window for ``w = 2πf`` and ``d = 1``; its FBP
    then scales the back-projection by ``π / (2 A)`` (pixel area 1). The factor 2 is folded
    in here, so the caller scales by ``π / A``.

    Returns ``(response, pad)``, the response at ``rfftfreq(pad)``.
    """
    pad = _fft_length(n_cols)
    k = np.arange(pad)
    k = np.minimum(k, pad - k)  # circular distance: the kernel is symmetric
    h = np.zeros(pad)
    h[0] = 0.25
    odd = (k % 2) == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    ramp = np.fft.rfft(h).real
    w = 2 * np.pi * np.fft.rfftfreq(pad)
    window = {
        "ram-lak": np.ones_like(w),
        "shepp-logan": np.sinc(w / (2 * np.pi)),  # sin(w/2) / (w/2)
        "cosine": np.cos(w / 2),
        "hamming": 0.54 + 0.46 * np.cos(w),
        "hann": 0.5 * (1 + np.cos(w)),
    }[_FILTERS[name]]
    return ramp * window, pad


def _filter_rows(sino: np.ndarray, name: str, over: int) -> np.ndarray:
    """Filtered rows sampled every ``1 / over`` column: ``(angles, over * cols)`` float32.

    Sample ``m`` is the band-limited interpolation of the filtered projection at column
    ``m / over``; the samples at whole columns are astra's filtered rows.
    """
    import scipy.fft

    n_cols = sino.shape[-1]
    response, pad = _astra_filter(n_cols, name)
    spec = scipy.fft.rfft(sino, n=pad, axis=-1)
    spec *= response.astype(np.float32)
    if over != 1:
        spec[..., -1] *= 0.5  # the Nyquist term splits into +/- frequencies when upsampled
    rows = scipy.fft.irfft(spec, n=over * pad, axis=-1)[..., : over * n_cols]
    if over != 1:
        rows *= np.float32(over)
    return np.ascontiguousarray(rows, dtype=np.float32)


def _geometry(astra, theta: np.ndarray, center: float, n_cols: int, over: int = 1) -> dict:
    """``parallel_vec`` geometry with column ``k / over`` on detector column ``k / over``
    (``center`` in tomopy's convention)."""
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    m = over * n_cols
    offset = (m / 2.0 - 0.5) / over - axis_column(center)  # detector centre from the axis
    vectors = np.stack([-sin_t, cos_t,                       # ray direction
                        offset * cos_t, offset * sin_t,      # detector centre
                        cos_t / over, sin_t / over],         # pixel k -> pixel k + 1
                       axis=1)
    return astra.create_proj_geom("parallel_vec", m, vectors)


class AstraBackend(ReconBackend):
    """astra-toolbox's back-projection (for ``fbp``) and SIRT, on the CPU or with CUDA.

    ``fbp`` filters as astra's FBP does (``ramp``, ``shepp``, ``cosine``, ``hann`` and
    ``hamming`` are astra's ``ram-lak``, ``shepp-logan``, ``cosine``, ``hann`` and
    ``hamming``) and back-projects with astra on the exact off-centre geometry. The CUDA
    algorithms (``BP_CUDA``, ``SIRT_CUDA``) run when ``astra.use_cuda()`` says a GPU is
    usable; otherwise the CPU ones (``BP``, ``SIRT``, linear projector). ``threads`` is
    ignored: astra's 2-D CPU code is single-threaded.

    Examples
    --------
    >>> AstraBackend().algorithms
    ('fbp', 'sirt')
    """

    name = "astra"
    algorithms = _ALGORITHMS
    filters = tuple(_FILTERS)
    priority = 0  # never chosen by backend="auto"

    def available(self) -> bool:
        """Whether astra can be imported."""
        return importlib.util.find_spec("astra") is not None

    def version(self) -> str:
        """astra-toolbox's version."""
        return f"astra-toolbox {_import_astra().__version__}"

    def engine(self, request: ReconRequest) -> str:
        """``astra-cuda`` or ``astra-cpu``: where astra runs ``request``."""
        return "astra-cuda" if _use_cuda() else "astra-cpu"

    def work_bytes(self, n_angles: int, n_cols: int, n: int, algorithm: str) -> tuple[int, int]:
        """Memory per call: one slice's work arrays (fixed), the float32 output (per slice).

        ``fbp``: the padded spectra and the 2x oversampled rows (~20 bytes per padded
        sample), their float32 copies in numpy and in astra, the image twice. ``sirt``:
        astra's sinogram, residual and ray weights, its image, pixel weights and scratch
        image, and the copy it hands back.
        """
        sample = n_angles * n_cols
        if algorithm == "fbp":
            pad = _fft_length(n_cols)
            fixed = 20 * n_angles * pad + 8 * _FBP_OVERSAMPLE * sample + 8 * n * n
        else:
            fixed = 12 * sample + 16 * n * n
        return int(fixed), int(4 * n * n)

    def _run(self, sino, theta, center, *, algorithm, filter="ramp", n=None, num_iter=1,
             nonneg=False):
        """Reconstruct one ``(angles, cols)`` sinogram; ``(n, n)`` float32 on tomopy's grid."""
        astra = _import_astra()
        n_cols = sino.shape[-1]
        n = n or n_cols
        cuda = _use_cuda()
        if algorithm == "fbp":
            over = _FBP_OVERSAMPLE
            data = _filter_rows(np.asarray(sino, dtype=np.float32), filter, over)
            kind, iterations = ("BP_CUDA" if cuda else "BP"), 1
        else:
            over = 1
            data = np.asarray(sino, dtype=np.float32)
            kind, iterations = ("SIRT_CUDA" if cuda else "SIRT"), int(num_iter)
        proj_geom = _geometry(astra, np.asarray(theta, dtype=np.float64), float(center),
                              n_cols, over)
        vol_geom = astra.create_vol_geom(n, n)
        projector = sino_id = rec_id = alg_id = None
        try:
            sino_id = astra.data2d.create("-sino", proj_geom, data)
            rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
            cfg = astra.astra_dict(kind)
            cfg.update(ProjectionDataId=sino_id, ReconstructionDataId=rec_id)
            if not cuda:
                projector = astra.create_projector(_PROJECTOR, proj_geom, vol_geom)
                cfg["ProjectorId"] = projector
            if algorithm == "sirt" and nonneg:
                cfg["option"] = {"MinConstraint": 0.0}
            alg_id = astra.algorithm.create(cfg)
            astra.algorithm.run(alg_id, iterations)
            image = astra.data2d.get(rec_id)
        finally:
            if alg_id is not None:
                astra.algorithm.delete(alg_id)
            astra.data2d.delete([i for i in (sino_id, rec_id) if i is not None])
            if projector is not None:
                astra.projector.delete(projector)
        if algorithm == "fbp":
            # astra's FBP scale π / (2 A), times the 2 of its filter (see _astra_filter);
            # rows spaced 1 / over add up over times in astra's back-projection
            image *= np.float32(np.pi / (len(theta) * over))
        return image.astype(np.float32, copy=False)

    @functools.cached_property
    def _orient(self):
        seen = []

        def run(sino, theta, center):
            seen.append((sino, self._run(sino, theta, center, algorithm="fbp")))
            return seen[-1][1]

        fix = probe_orientation(run, expected="identity", backend="astra")
        # units: every projection of the probe sums to the blob's mass, and so should the
        # image (spotkit's own fbp gets 1.05, astra's CPU path 1.04: the discrete ramp's
        # small DC gain); a wrong back-projection scale would be off by a factor ~2
        sino, image = seen[-1]
        ratio = float(image.sum()) / float(sino.sum(axis=1).mean())
        if abs(ratio - 1.0) > 0.1:
            logger.warning("astra's images are %.3g times spotkit's units on a test blob "
                           "(%s); check astra's back-projection scale", ratio,
                           "astra-cuda" if _use_cuda() else "astra-cpu")
        return fix

    def reconstruct(self, request: ReconRequest) -> np.ndarray:
        """Run astra slice by slice; images in tomopy's orientation and spotkit's units."""
        fix = self._orient
        out = np.empty((request.sinograms.shape[0], request.n, request.n), dtype=np.float32)
        for k, sino in enumerate(request.sinograms):
            out[k] = fix(self._run(
                sino, request.theta, request.center, algorithm=request.algorithm,
                filter=request.filter, n=request.n, num_iter=request.num_iter,
                nonneg=request.nonneg))
        return out
