"""FrameReducer: one frame after another to I(q) and sigma, at pyFAI's own engine speed.

A live session (``spotkit live``) and :func:`integrate_frames` reduce thousands of frames
of one detector with one geometry and one set of options. pyFAI's ``integrate1d`` does,
on every call, work that does not change between such frames: it re-reads the options,
checksums the mask (CRC32 of every pixel), checks that its cached lookup table still
fits, and converts the float64 solid-angle array (and the polarization array) to float32
for its pre-processing step. :class:`FrameReducer` does that work once: it builds pyFAI's
lookup table (CSR sparse matrix) through ``integrate1d``, keeps pyFAI's compiled engine,
and then calls the engine's ``integrate_ng`` (the one ``integrate1d`` calls) with the
same arguments, prepared once. The frame itself is prepared (float32, invalid pixels set
to the dummy value) into a buffer reused from frame to frame.

The numbers are pyFAI's: at construction the reducer integrates a test frame both ways
(``integrate1d`` and the engine) and uses the engine only when the results are
bit-for-bit identical; otherwise (another pyFAI version, a method without a sparse
engine: ``histogram``, ``splitpixel``...) it calls ``integrate1d`` for every frame. When
pyFAI resets the integrator (its geometry changed), the engine is rebuilt.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from spotkit.scattering._geometry import check_geometry, pyfai
from spotkit.scattering._integrate import (
    _DELTA_DUMMY,
    _DUMMY,
    MIN_PIXELS,
    Method,
    _call_1d,
    _check_min_pixels,
    _intensity_sigma,
    check_mask,
    check_method,
    check_unit,
    orientation_check,
    prepare_frame,
    provenance,
)

if TYPE_CHECKING:
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

logger = logging.getLogger(__name__)

__all__ = ["FrameReducer"]


class FrameReducer:
    """Reduce detector frames one at a time to I(q) (or I(2theta)) with Poisson sigma.

    The same numbers as :func:`integrate_1d` with the same options, bit for bit, at the
    speed of pyFAI's compiled engine: the lookup table is built once, here, and the work
    ``integrate1d`` repeats on every call (option parsing, mask checksum, float32
    conversion of the solid angle) is done once. Calls from several threads take turns
    (pyFAI's engine has one working buffer).

    Parameters
    ----------
    integrator : AzimuthalIntegrator
        Geometry (:func:`spotkit.io.load_geometry`, :func:`make_geometry`). Do not integrate
        with the same integrator and the same options in another thread meanwhile.
    npt : int
        Number of radial bins.
    unit : {"q_nm^-1", "q_A^-1", "2th_deg"}
        Radial unit.
    mask : array_like of bool, optional
        True on invalid pixels (constant over the frames).
    method : str or tuple
        pyFAI method, one of :data:`METHODS` (``"csr"``: the fast sparse engine).
    correct_solid_angle, polarization_factor, radial_range
        As for :func:`integrate_1d`.
    shape : (int, int), optional
        Frame shape; default: the geometry's detector shape, else the mask's.
    min_pixels : float
        Bins with less than this many unmasked pixels are NaN (see :func:`integrate_1d`).
    check_orientation : bool
        Check on the first frames that the geometry fits their rings and the mask's
        beamstop (as :func:`integrate_1d` does), warning with :class:`GeometryWarning`.

    Attributes
    ----------
    radial : numpy.ndarray
        Bin centres (float64) in ``unit``.
    dim : str
        Name of the radial dimension: ``"q"`` or ``"two_theta"``.
    engine : str
        ``"engine"`` (pyFAI's compiled engine called directly) or ``"integrate1d"``.

    Examples
    --------
    >>> import numpy as np
    >>> from spotkit.scattering import make_geometry
    >>> ai = make_geometry(energy_kev=12.0, distance_m=2.0, beam_center=(100.0, 240.0),
    ...                    pixel_size_um=172, shape=(195, 487))
    >>> reducer = FrameReducer(ai, npt=200)
    >>> reducer.dim, reducer.radial.shape, reducer.engine
    ('q', (200,), 'engine')
    >>> frame = np.random.default_rng(0).poisson(100, (195, 487)).astype(np.int32)
    >>> intensity, sigma = reducer.reduce(frame)
    >>> intensity.dtype, intensity.shape, bool(np.all(sigma > 0))
    (dtype('float64'), (200,), True)
    """

    def __init__(self, integrator: AzimuthalIntegrator, *, npt: int = 300,
                 unit: str = "q_nm^-1", mask: npt.ArrayLike | None = None,
                 method: Method = "csr", correct_solid_angle: bool = True,
                 polarization_factor: float | None = None,
                 radial_range: tuple[float, float] | None = None,
                 shape: tuple[int, int] | None = None, min_pixels: float = MIN_PIXELS,
                 check_orientation: bool = True) -> None:
        self.dim, self.units = check_unit(unit)
        self.unit = unit
        self.method = check_method(method)
        if int(npt) != npt or int(npt) < 1:
            raise ValueError(f"npt must be an integer >= 1, got {npt!r}")
        self.npt = int(npt)
        self.min_pixels = _check_min_pixels(min_pixels)
        if polarization_factor is not None and not -1.0 <= float(polarization_factor) <= 1.0:
            raise ValueError(f"polarization_factor must be between -1 and 1 (or None), got "
                             f"{polarization_factor!r}")
        self.shape = self._frame_shape(integrator, mask, shape)
        check_geometry(integrator, self.shape)
        self.integrator = integrator
        self.mask = check_mask(mask, self.shape)
        self.correct_solid_angle = bool(correct_solid_angle)
        self.polarization_factor = (None if polarization_factor is None
                                    else float(polarization_factor))
        self.radial_range = None if radial_range is None else tuple(radial_range)
        self._check_orientation = bool(check_orientation)
        self._init = {"npt": self.npt, "unit": unit, "mask": self.mask, "method": self.method,
                      "correct_solid_angle": self.correct_solid_angle,
                      "polarization_factor": self.polarization_factor,
                      "radial_range": self.radial_range, "shape": self.shape,
                      "min_pixels": self.min_pixels,
                      "check_orientation": self._check_orientation}
        self._options = {"unit": unit, "method": self.method, "mask": self.mask,
                         "correct_solid_angle": self.correct_solid_angle,
                         "polarization_factor": self.polarization_factor,
                         "radial_range": self.radial_range, "min_pixels": self.min_pixels}
        self._lock = threading.Lock()
        self._buffer = np.empty(self.shape, np.float32)
        self._fast: dict[str, Any] | None = None
        self.radial = np.empty(0)
        self._build()

    # -- construction ------------------------------------------------------------------------

    @staticmethod
    def _frame_shape(integrator, mask, shape) -> tuple[int, int]:
        if shape is not None:
            out = tuple(int(s) for s in shape)
            if len(out) != 2 or min(out) < 1:
                raise ValueError(f"shape must be (rows, cols), got {shape!r}")
            return out
        det = integrator.detector
        det_shape = det.shape if det.shape is not None else det.max_shape
        if det_shape is not None:
            return (int(det_shape[0]), int(det_shape[1]))
        if mask is not None:
            m = np.shape(mask)
            if len(m) != 2:
                raise ValueError(f"mask must be 2-D (rows, cols), got shape {m}")
            return (int(m[0]), int(m[1]))
        raise ValueError("the geometry has no detector shape and no mask was given: "
                         "pass shape=(rows, cols) of the frames")

    def _test_frame(self) -> np.ndarray:
        """A deterministic frame with structure, negative pixels (gaps) and large values."""
        n = self.shape[0] * self.shape[1]
        values = (np.arange(n, dtype=np.int64) * 7919) % 1009 - 3  # includes -3..-1
        values[::97] = 2**20
        return values.reshape(self.shape).astype(np.int32)

    def _build(self) -> None:
        """Build pyFAI's lookup table (one ``integrate1d``) and, where pyFAI has a sparse
        compiled engine, check that calling it directly gives the same numbers."""
        test = self._test_frame()
        norm = 2.0
        res = self.integrator.integrate1d(
            prepare_frame(test), self.npt, unit=self.unit, method=self.method,
            mask=self.mask, dummy=_DUMMY, delta_dummy=_DELTA_DUMMY, error_model="poisson",
            correctSolidAngle=self.correct_solid_angle,
            polarization_factor=self.polarization_factor, normalization_factor=norm,
            radial_range=self.radial_range)
        self.radial = np.asarray(res.radial, dtype=np.float64)
        self._fast = None
        try:
            fast = self._engine_for(res)
        except Exception as exc:  # any failure (pyFAI internals moved): the generic path
            logger.debug("FrameReducer: no direct engine (%s); using integrate1d", exc)
            return
        if fast is None:
            return
        # what integrate_1d gives (integrate1d on the frame prepared with the dummy value)
        # against the engine on the frame prepared as reduce() prepares it
        got = self._engine_call(fast, self._prepare(test, nan=fast["nan"]), norm)
        same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(
            _intensity_sigma(got, self.min_pixels), _intensity_sigma(res, self.min_pixels),
            strict=True))
        same = same and np.array_equal(np.asarray(got.count), np.asarray(res.count))
        same = same and np.array_equal(np.asarray(got.position) * fast["scale"],
                                       np.asarray(res.radial))
        if same:
            self._fast = fast
        else:
            logger.warning("FrameReducer: pyFAI's engine called directly differs from "
                           "integrate1d (pyFAI %s); every frame goes through integrate1d",
                           pyfai().version)

    def _engine_for(self, res) -> dict[str, Any] | None:
        """What the direct engine call needs, or None when there is no such engine."""
        from pyFAI.containers import ErrorModel

        method = res.method
        if not (method.algo_is_sparse and method.impl_lower == "cython"
                and method.manage_variance):
            return None
        wrapper = self.integrator.engines.get(method)
        engine = None if wrapper is None else wrapper.engine
        if engine is None or not hasattr(engine, "integrate_ng"):
            return None
        solidangle = polarization = None
        if self.correct_solid_angle:
            solidangle = np.ascontiguousarray(
                self.integrator.solidAngleArray(self.shape, True).ravel(), dtype=np.float32)
        if self.polarization_factor is not None:
            polarization = np.ascontiguousarray(
                np.asarray(self.integrator.polarization(self.shape, self.polarization_factor))
                .ravel(), dtype=np.float32)
        # invalid pixels as NaN, which pyFAI's pre-processing rejects anyway, instead of the
        # dummy value, which it compares every pixel with; with a flat field the dummy stays
        # (pyFAI also compares the flat with it)
        nan = self.integrator.detector.flatfield is None
        return {"method": method, "wrapper": wrapper, "engine": engine, "nan": nan,
                "scale": res.unit.scale, "solidangle": solidangle,
                "polarization": polarization, "error_model": ErrorModel.POISSON,
                "weighted": bool(method.weighted_average)}

    def _engine_call(self, fast: dict[str, Any], frame: np.ndarray, normalization: float):
        det = self.integrator.detector
        dummy = None if fast["nan"] else np.float32(_DUMMY)
        delta = None if fast["nan"] else np.float32(_DELTA_DUMMY)
        return fast["engine"].integrate_ng(
            frame, error_model=fast["error_model"], dummy=dummy, delta_dummy=delta,
            dark=det.darkcurrent, flat=det.flatfield, solidangle=fast["solidangle"],
            polarization=fast["polarization"], normalization_factor=normalization,
            weighted_average=fast["weighted"])

    def _still_valid(self, fast: dict[str, Any]) -> bool:
        # pyFAI drops its engines when the geometry changes (AzimuthalIntegrator.reset)
        wrapper = self.integrator.engines.get(fast["method"])
        return wrapper is fast["wrapper"] and wrapper.engine is fast["engine"]

    # -- public ------------------------------------------------------------------------------

    @property
    def engine(self) -> str:
        """``"engine"``: pyFAI's compiled engine called directly; else ``"integrate1d"``."""
        return "engine" if self._fast is not None else "integrate1d"

    @property
    def attrs(self) -> dict:
        """Provenance of the reduced profiles (as :func:`integrate_1d`'s ``attrs``)."""
        return provenance(self.integrator, method=self.method, unit=self.unit,
                          mask=self.mask, npt=self.npt, extra={"min_pixels": self.min_pixels})

    def reduce(self, frame: npt.ArrayLike, *,
               normalization: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Reduce one frame.

        Parameters
        ----------
        frame : array_like, shape (rows, cols)
            Counts; negative and non-finite pixels (gaps, dead pixels) are ignored.
        normalization : float
            Monitor or exposure: intensity and sigma are divided by it.

        Returns
        -------
        intensity, sigma : numpy.ndarray
            float64, on :attr:`radial`; NaN in bins without pixels (or with less than
            ``min_pixels``).
        """
        a = np.asarray(frame)
        if a.shape != self.shape:
            raise ValueError(f"the frame is {' x '.join(map(str, a.shape)) or 'a scalar'} but "
                             f"this FrameReducer was made for {self.shape[0]} x "
                             f"{self.shape[1]} frames (its geometry and mask)")
        if a.dtype.kind not in "biuf":
            raise ValueError(f"the frame must hold numbers, got dtype {a.dtype}")
        norm = float(normalization)
        if not (np.isfinite(norm) and norm > 0):
            raise ValueError(f"normalization must be finite and > 0, got {normalization!r}")
        if self._check_orientation:
            orientation_check(a, self.integrator, self.mask)
        with self._lock:
            fast = self._fast
            if fast is not None and not self._still_valid(fast):
                logger.info("FrameReducer: the integrator was reset (geometry changed): "
                            "rebuilding pyFAI's lookup table")
                self._build()
                fast = self._fast
            if fast is None:
                _, intensity, sigma = _call_1d(self.integrator, prepare_frame(a), self.npt,
                                               normalization=norm, **self._options)
                return intensity, sigma
            res = self._engine_call(fast, self._prepare(a, nan=fast["nan"]), norm)
            return _intensity_sigma(res, self.min_pixels)

    # -- per frame ---------------------------------------------------------------------------

    def _prepare(self, a: np.ndarray, *, nan: bool) -> np.ndarray:
        """The frame as float32 in the reused buffer, its invalid pixels (negative, NaN,
        infinite) set to NaN (``nan=True``) or to the dummy value (:func:`prepare_frame`'s
        values)."""
        if not nan:
            return prepare_frame(a)
        out = self._buffer
        np.copyto(out, a, casting="unsafe")
        if a.dtype.kind == "i":
            out[a < 0] = np.nan
        elif a.dtype.kind == "f":
            out[~(out >= 0)] = np.nan  # negative (and NaN); infinite: rejected by pyFAI
        return out

    def __reduce__(self):
        # pickled as its options (dask's distributed scheduler, multiprocessing): pyFAI's
        # engine and the lock are made again where it is unpickled
        return (_restore, (self.integrator, self._init))

    def __repr__(self) -> str:
        return (f"FrameReducer({self.shape[0]} x {self.shape[1]} -> {self.npt} {self.dim} "
                f"bins, {self.method!r}, {self.engine})")


def _restore(integrator, options: dict) -> FrameReducer:
    return FrameReducer(integrator, **options)


_REDUCTION_THREAD: ThreadPoolExecutor | None = None
_REDUCTION_THREAD_LOCK = threading.Lock()


def _reduction_thread() -> ThreadPoolExecutor:
    """The one thread that reduces the frames of lazy series (made when first needed)."""
    global _REDUCTION_THREAD
    with _REDUCTION_THREAD_LOCK:
        if _REDUCTION_THREAD is None:
            if not hasattr(_forget_reduction_thread, "registered"):
                os.register_at_fork(after_in_child=_forget_reduction_thread)
                _forget_reduction_thread.registered = True  # type: ignore[attr-defined]
            _REDUCTION_THREAD = ThreadPoolExecutor(1, thread_name_prefix="spotkit-reduce")
        return _REDUCTION_THREAD


def _forget_reduction_thread() -> None:
    # a forked child has no such thread (nor a usable lock): it makes its own when needed
    global _REDUCTION_THREAD, _REDUCTION_THREAD_LOCK
    _REDUCTION_THREAD, _REDUCTION_THREAD_LOCK = None, threading.Lock()
