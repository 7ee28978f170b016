"""Adapter to tomopy (conda-forge only): its gridrec and SIRT, quantitative, in tomopy's own
geometry (which is spotkit's, :data:`~spotkit.tomo.backends._base.CONVENTION`).

What is mapped, and why (line numbers are those of tomopy's sources as read at commits
``0265b7f`` of ``source/libtomo/gridrec/gridrec.c``, ``27dd1e5`` of
``source/libtomo/recon/utils.c`` and ``3359a2e`` of ``source/libtomo/recon/sirt.c``):

* ``gridrec``: tomopy pads projections only to the next power of two (``gridrec.c``
  l.219-221), which is not quantitative (values off by ~2x, strong negative background);
  the adapter zero-pads each side by half the width first (>= 2x in all), shifting
  ``center`` by the same amount. Filters map ``ramp -> ramlak``; the others keep their
  names. Pixels outside the inscribed circle are set to 0, as in spotkit's own gridrec.

  Grid: ``set_filter_tables`` (l.138-186) multiplies the spectrum of the zero-padded
  projection (column ``j`` at sample ``j``, l.357-376) by ``exp(-2πi k center / pdim)``
  (l.148, l.163-164), which puts column ``center`` (column ``j`` centred at ``j``) on
  index 0 of the ``pdim x pdim`` inverse FFT (l.442), the point gridrec rotates about; the
  ``n x n`` image is cropped from it starting ``ceil(n / 2)`` samples before (l.479-505).
  tomopy's projector (and the convention) put the axis at column ``center - 1/2`` and pixel
  ``i`` at ``i - (n-1)/2`` from it. So tomopy's own gridrec, given tomopy's centre, turns
  about a point half a column right of its projector's axis (measured on
  ``shared/reference/tomopy-1.15.2``: the image of one bright pixel lands 0.42 column right
  of it, blurred; correlation with the phantom 0.958, 0.989 once corrected). The adapter
  hands gridrec the axis, ``center - 1/2``, and the projections of the object moved by
  ``(-delta, -delta)`` pixels (rows, columns), ``delta = ceil(n/2) - (n-1)/2`` (1/2 for even
  ``n``, 1 for odd): each row resampled at ``column + delta (cos θ + sin θ)`` by a Fourier
  phase, so gridrec's grid samples the object where the convention's grid does.
* ``sirt`` (and every tomopy algorithm built on ``utils.c``): pixel edges at ``-n/2 + i``
  (``preprocessing``, ``utils.c`` l.66-86), so pixel centres at ``i - (n-1)/2``; the ray
  of detector pixel ``d`` runs at ``d - center + 0.5`` from the axis (``sirt.c`` l.113,
  ``utils.c`` l.80 and l.85): the convention itself. (``utils.c`` l.81-84 add 0.01 when
  that offset is within 0.01 above an integer, to keep rays off the grid lines: a
  0.01-pixel shift, left as is.) ``num_iter`` passes through; ``nonneg`` is not supported
  and raises.
* ``fbp`` is refused: tomopy's ``fbp`` does no filtering at all.

Orientation: tomopy's images are the convention's (``- y sin θ``), so none is changed. The
adapter still verifies orientation and grid offset once per process and algorithm family
with :func:`probe_orientation`, follows the probe if tomopy ever changes its orientation,
and logs a warning if its image is offset from the convention's grid.
"""

from __future__ import annotations

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

__all__ = ["TomopyBackend"]

_FILTERS = {"ramp": "ramlak", "shepp": "shepp", "cosine": "cosine", "hann": "hann",
            "hamming": "hamming"}


def _import_tomopy():
    try:
        import tomopy
    except ImportError as exc:
        raise ImportError(
            "the tomopy backend needs tomopy, which is on conda-forge only: "
            "conda install -c conda-forge tomopy") from exc
    return tomopy


def _gridrec_grid_offset(n: int) -> float:
    """``ceil(n/2) - (n-1)/2``: how far gridrec's pixels sit from the convention's, when it
    turns about the axis (both axes): 1/2 for even ``n``, 1 for odd."""
    return (n + 1) // 2 - (n - 1) / 2.0


def _shift_rows(sino: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Each row ``a`` resampled at ``column + shift[a]`` (band-limited, by an FFT phase).

    The rows must end in enough zeros to take the shift without wrapping around.
    """
    import scipy.fft

    n_cols = sino.shape[-1]
    length = scipy.fft.next_fast_len(n_cols, real=True)
    phase = np.outer(shift, np.fft.rfftfreq(length))
    factor = np.exp(2j * np.pi * phase).astype(np.complex64)
    spec = scipy.fft.rfft(sino, n=length, axis=-1)
    spec *= factor
    return scipy.fft.irfft(spec, n=length, axis=-1)[..., :n_cols].astype(np.float32)


class TomopyBackend(ReconBackend):
    """tomopy's gridrec (made quantitative by 2x padding) and SIRT.

    Examples
    --------
    >>> TomopyBackend().algorithms
    ('gridrec', 'sirt')
    """

    name = "tomopy"
    algorithms = ("gridrec", "sirt")
    filters = tuple(_FILTERS)
    # below builtin: on the twin's 128-column slice tomopy's gridrec (2x padded) is 12 %
    # high inside the sample and NRMSE 0.16 against the phantom (builtin: 0.08); it runs
    # when asked for by name (backend="tomopy")
    priority = 5

    def __init__(self):
        self._fixes = {}  # algorithm -> orientation transform found by the probe

    def available(self) -> bool:
        """Whether tomopy can be imported."""
        return importlib.util.find_spec("tomopy") is not None

    def version(self) -> str:
        """tomopy's version."""
        return f"tomopy {_import_tomopy().__version__}"

    def engine(self, request: ReconRequest) -> str:
        """``tomopy.<algorithm>``."""
        return f"tomopy.{request.algorithm}"

    def _run(self, sino, theta, center, *, algorithm, filter="shepp", n=None, num_iter=1,
             threads=None):
        """tomopy's images, as tomopy orients them, on the convention's grid."""
        tomopy = _import_tomopy()
        sino = np.asarray(sino, dtype=np.float32)
        if sino.ndim == 2:
            sino = sino[None]
        theta = np.asarray(theta, dtype=np.float64)
        n_cols = sino.shape[-1]
        n = n or n_cols
        kwargs = {"num_gridx": n, "num_gridy": n}
        if algorithm == "gridrec":
            pad = (n_cols + 1) // 2
            sino = np.pad(sino, ((0, 0), (0, 0), (pad, pad)))
            # gridrec turns about column `center` (column j at j): give it the axis, and
            # move the object by (-delta, -delta) so that gridrec's grid samples it where
            # the convention's grid samples the original (see module doc)
            delta = _gridrec_grid_offset(n)
            sino = _shift_rows(sino, delta * (np.cos(theta) + np.sin(theta)))
            tomopy_center = axis_column(center) + pad
            kwargs["filter_name"] = _FILTERS[filter]
        else:
            tomopy_center = center
            kwargs["num_iter"] = int(num_iter)
        centers = np.full(sino.shape[0], tomopy_center, dtype=np.float32)
        return tomopy.recon(sino, theta.astype(np.float32), center=centers,
                            sinogram_order=True, algorithm=algorithm, ncore=threads,
                            **kwargs)

    def _orient(self, algorithm: str):
        """The transform putting ``algorithm``'s images on the convention's grid (probed
        once; the identity unless tomopy changed)."""
        if algorithm not in self._fixes:
            options = {"filter": "ramp"} if algorithm == "gridrec" else {"num_iter": 30}
            self._fixes[algorithm] = probe_orientation(
                lambda s, t, c: self._run(s, t, c, algorithm=algorithm, **options)[0],
                expected="identity", backend=f"tomopy {algorithm}")
        return self._fixes[algorithm]

    def reconstruct(self, request: ReconRequest) -> np.ndarray:
        """Run tomopy and return images in the convention's orientation and spotkit's
        units."""
        if request.nonneg:
            raise ValueError("the tomopy backend does not support nonneg=True; "
                             "use backend='builtin'")
        rec = self._run(request.sinograms, request.theta, request.center,
                        algorithm=request.algorithm, filter=request.filter, n=request.n,
                        num_iter=request.num_iter, threads=request.threads)
        out = np.ascontiguousarray(self._orient(request.algorithm)(rec), dtype=np.float32)
        if request.algorithm == "gridrec":
            c = np.arange(request.n) - (request.n - 1) / 2.0
            out *= (c[:, None] ** 2 + c[None, :] ** 2) <= (request.n / 2.0) ** 2
        return out
