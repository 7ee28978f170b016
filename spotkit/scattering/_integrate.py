"""Azimuthal integration with pyFAI: I(q) with Poisson errors, cakes, frame series.

Every function here calls pyFAI for the integration itself; spotkit adds validation before
any work, xarray results with physical coordinates and provenance, and lazy (dask)
reduction of frame series that reuses one integrator (pyFAI caches its lookup table, the
CSR matrix, on the integrator: building it is the expensive first call).
"""

from __future__ import annotations

import io
import json
import logging
import math
import uuid
import warnings
import weakref
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

from spotkit.scattering._geometry import (
    GeometryWarning,
    check_geometry,
    geometry_summary,
    pyfai,
)
from spotkit.scattering._mask import mask_summary
from spotkit.scattering._orientation import check_orientation as _check_orientation

if TYPE_CHECKING:  # pyFAI has no type information: Any for the type checker
    import xarray as xr
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "UNITS", "integrate_1d", "integrate_2d", "integrate_frames"]

#: Radial units: pyFAI name -> (dimension name, units written in ``attrs["units"]``).
UNITS = {
    "q_nm^-1": ("q", "nm^-1"),
    "q_A^-1": ("q", "A^-1"),
    "2th_deg": ("two_theta", "deg"),
}
#: pyFAI integration methods spotkit accepts by name (``"csr"``: bounding-box pixel
#: splitting with a CSR sparse matrix, the fast default for series).
METHODS = ("bbox", "csr", "histogram", "lut", "no", "splitpixel")
#: ``method=``: a name of :data:`METHODS` or pyFAI's (splitting, algorithm, implementation)
Method: TypeAlias = str | tuple[str, ...]

# Invalid pixels of a frame (negative: gaps, dead pixels; NaN) are set to this value and
# ignored by pyFAI through ``dummy``; the mask itself stays constant, so pyFAI keeps its
# cached lookup table (a changed mask would rebuild it, ~1 s for a Pilatus 2M).
#: Default ``min_pixels`` of the 1-D integrations: only bins without any pixel are NaN
#: (downstream analyses such as change detection need every measured bin).
MIN_PIXELS = 0.0
_DUMMY = -1.0
_DELTA_DUMMY = 0.5


# Integrators whose orientation was checked: id -> (weak reference, frames tried). A check
# that found evidence (sharp rings, a beamstop) ends it; without evidence (smooth frames)
# it is tried on 3 frames, so a series integrated frame by frame pays for it a few times.
_ORIENTATION_CHECKED: dict[int, tuple[weakref.ref, int]] = {}
_ORIENTATION_TRIES = 3


def orientation_check(image, integrator, mask) -> None:
    """Run :func:`check_orientation` (it warns) until one frame gave evidence, or 3 frames."""
    key = id(integrator)
    ref, tries = _ORIENTATION_CHECKED.get(key, (None, 0))
    if ref is None or ref() is not integrator:
        def forget(_ref, k: int = key) -> None:
            _ORIENTATION_CHECKED.pop(k, None)

        ref, tries = weakref.ref(integrator, forget), 0
    if tries >= _ORIENTATION_TRIES:
        return
    check = _check_orientation(image, integrator, mask=mask, warn=False)
    if not check.consistent:
        warnings.warn(check.message, GeometryWarning, stacklevel=3)
    evidence = check.mask_best is not None or any(
        math.isfinite(v) and v > 0.02 for v in check.sharpness.values())
    _ORIENTATION_CHECKED[key] = (ref, _ORIENTATION_TRIES if evidence else tries + 1)


def check_unit(unit) -> tuple[str, str]:
    """Dimension name and units of a radial unit, or ValueError naming the allowed ones."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; choose one of {sorted(UNITS)}")
    return UNITS[unit]


def check_method(method: Method) -> Method:
    """A method pyFAI accepts: one of :data:`METHODS`, or pyFAI's (split, algo, impl) tuple."""
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)} "
                             "(or a pyFAI (split, algorithm, implementation) tuple)")
        return method
    if isinstance(method, tuple | list) and len(method) == 3:
        return tuple(method)
    raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")


def check_mask(mask: npt.ArrayLike | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """Boolean mask of the frame shape (or None); ValueError for another shape."""
    if mask is None:
        return None
    out = np.asarray(mask, dtype=bool)
    if out.shape != tuple(shape):
        raise ValueError(f"the mask is {out.shape[0] if out.ndim else ''} x "
                         f"{out.shape[-1] if out.ndim else ''} pixels but the frames are "
                         f"{shape[0]} x {shape[1]}: build or load the mask for this detector "
                         "(spotkit.scattering.combine_masks(..., shape=frame_shape))")
    return out


def prepare_frame(frame) -> np.ndarray:
    """Float32 copy with invalid pixels (negative, NaN, inf) set to the dummy value."""
    frame = np.asarray(frame)
    out = frame.astype(np.float32)  # always a copy
    if frame.dtype.kind in "iu":
        if frame.dtype.kind == "i":
            out[frame < 0] = _DUMMY
        return out
    out[~(out >= 0)] = _DUMMY  # negative, NaN
    out[np.isinf(out)] = _DUMMY
    return out


def poni_text(integrator) -> str:
    """The geometry as the text of a PONI file."""
    from pyFAI.io.ponifile import PoniFile

    buf = io.StringIO()
    PoniFile(integrator).write(buf)
    return buf.getvalue()


def provenance(integrator, *, method, unit, mask, npt=None, extra=None) -> dict:
    """Attributes that say how a reduced product was made (netCDF-compatible values)."""
    from spotkit._version import __version__ as spotkit_version

    geo = geometry_summary(integrator)
    masked = mask_summary(mask)
    attrs = {
        "software": f"pyFAI {pyfai().version}, spotkit {spotkit_version}",
        "pyfai_version": str(pyfai().version),
        "spotkit_version": str(spotkit_version),
        "method": method if isinstance(method, str) else ",".join(method),
        "unit": unit,
        "error_model": "poisson",
        "geometry_poni": poni_text(integrator),
        "geometry": json.dumps({k: v for k, v in geo.items() if k != "poni"}),
        "distance_m": geo["distance_m"],
        "beam_center": geo["beam_center"],
        "energy_kev": geo["energy_kev"],
        "wavelength_nm": geo["wavelength_nm"],
        "mask_n_masked": masked["n_masked"],
        "mask_fraction": masked["fraction"],
    }
    if npt is not None:
        attrs["npt"] = npt
    attrs.update(extra or {})
    return attrs


def _call_1d(integrator, frame, npt, *, unit, method, mask, normalization, correct_solid_angle,
             polarization_factor, radial_range, min_pixels=MIN_PIXELS):
    res = integrator.integrate1d(
        frame, npt, unit=unit, method=method, mask=mask,
        dummy=_DUMMY, delta_dummy=_DELTA_DUMMY, error_model="poisson",
        correctSolidAngle=correct_solid_angle, polarization_factor=polarization_factor,
        normalization_factor=float(normalization), radial_range=radial_range,
    )
    return (np.asarray(res.radial, dtype=np.float64), *_intensity_sigma(res, min_pixels))


def _check_min_pixels(min_pixels) -> float:
    value = float(min_pixels)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"min_pixels must be a number >= 0, got {min_pixels!r}")
    return value


def _intensity_sigma(res, min_pixels=MIN_PIXELS):
    """A pyFAI result's intensity and sigma as float64, NaN in bins with less than
    ``min_pixels`` unmasked pixels (pyFAI's ``count``: split pixels count by their share)."""
    intensity = np.asarray(res.intensity, dtype=np.float64)
    sigma = np.asarray(res.sigma, dtype=np.float64)
    count = getattr(res, "count", None)
    if count is not None:
        count = np.asarray(count)
        empty = (count <= 0) | (count < min_pixels)
        intensity[empty] = np.nan
        sigma[empty] = np.nan
    return intensity, sigma


def _check_image(image: npt.ArrayLike, integrator: AzimuthalIntegrator) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (rows, cols), got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise ValueError(f"image must hold numbers, got dtype {image.dtype}")
    check_geometry(integrator, image.shape)
    return image


def _radial_coord(radial, unit):
    dim, units = UNITS[unit]
    long = {"q": "scattering vector q", "two_theta": "scattering angle 2theta"}[dim]
    return dim, (dim, radial, {"units": units, "long_name": long})


def integrate_1d(image: npt.ArrayLike, integrator: AzimuthalIntegrator, *, npt: int = 300,
                 unit: str = "q_nm^-1", method: Method = "csr",
                 mask: npt.ArrayLike | None = None, normalization: float = 1.0,
                 correct_solid_angle: bool = True, polarization_factor: float | None = None,
                 radial_range: tuple[float, float] | None = None,
                 check_orientation: bool = True,
                 min_pixels: float = MIN_PIXELS) -> xr.Dataset:
    """Azimuthally integrate one frame to I(q) or I(2theta) with Poisson errors.

    Parameters
    ----------
    image : array_like, shape (rows, cols)
        Counts. Negative and non-finite pixels (detector gaps) are ignored.
    integrator : AzimuthalIntegrator
        Geometry (:func:`spotkit.io.load_geometry`, :func:`make_geometry`...).
    npt : int
        Number of radial bins.
    unit : {"q_nm^-1", "q_A^-1", "2th_deg"}
        Radial unit.
    method : str or tuple
        pyFAI method, one of :data:`METHODS` (``"csr"`` is fast for repeated calls).
    mask : array_like of bool, optional
        True on invalid pixels.
    normalization : float
        Monitor or exposure: intensity and sigma are divided by it.
    correct_solid_angle : bool
        Correct for the solid angle of each pixel (pyFAI's default).
    polarization_factor : float, optional
        Between -1 and 1 (0.99 for a horizontally polarised synchrotron beam); None: none.
    radial_range : (float, float), optional
        Radial range in ``unit``.
    check_orientation : bool
        Check once per integrator that the geometry fits the image's rings and the mask's
        beamstop (:func:`check_orientation`: a few ms, ~0.1 s for a Pilatus 2M), warning with
        :class:`GeometryWarning` when a flipped geometry fits better (a Dioptas PONI).
    min_pixels : float
        Bins holding less than this many unmasked pixels (pyFAI's ``count``; a split pixel
        counts by its share) are NaN. pyFAI's radial range runs to the detector's farthest
        corner, so the last bins hold only a few pixels (or a share of one): their values
        are noise, the spike at the end of a plotted I(q). ``min_pixels=10`` leaves them
        out; the default (0) keeps every bin that holds any pixel.

    Returns
    -------
    xarray.Dataset
        ``intensity`` and ``sigma`` (Poisson: ``sqrt(sum counts) / sum normalisation``) on
        the radial dimension ``q`` (``attrs["units"]`` "nm^-1" or "A^-1") or ``two_theta``
        ("deg"); bins without any pixel (or with less than ``min_pixels``: masked, e.g.
        behind the beamstop, or beyond the detector) hold NaN; provenance in ``attrs``.

    Examples
    --------
    The ordering ring of the twin's series (at q = 1 nm^-1) is where the last frame gains
    most over the first:

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from spotkit.io import load_geometry, open_saxs
    >>> from spotkit.sim import simulate_saxs_series
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "film.h5"
    >>> truth = simulate_saxs_series(path, n_frames=4, onset_frame=2, ring_growth_frames=1,
    ...                              ring_strength=2.0, seed=3)
    >>> frames = open_saxs(path)
    >>> ai = load_geometry(truth.poni_path, shape=frames.shape[1:])
    >>> gaps = frames[0].values < 0
    >>> before = integrate_1d(frames[0].values, ai, npt=200, mask=gaps)
    >>> after = integrate_1d(frames[-1].values, ai, npt=200, mask=gaps)
    >>> gain = after.intensity - before.intensity
    >>> round(float(gain.q[int(np.nanargmax(gain.values))]), 1), truth.ring_q_nm
    (1.0, 1.0)
    >>> integrate_1d(frames[0].values, ai, npt=200, unit="q_A^-1").q.attrs["units"]
    'A^-1'
    """
    import xarray as xr

    check_unit(unit)
    method = check_method(method)
    img = _check_image(image, integrator)
    valid_mask = check_mask(mask, img.shape)
    if int(npt) < 1:
        raise ValueError(f"npt must be >= 1, got {npt}")
    min_pixels = _check_min_pixels(min_pixels)
    if check_orientation:
        orientation_check(img, integrator, valid_mask)
    radial, intensity, sigma = _call_1d(
        integrator, prepare_frame(img), int(npt), unit=unit, method=method, mask=valid_mask,
        normalization=normalization, correct_solid_angle=correct_solid_angle,
        polarization_factor=polarization_factor, radial_range=radial_range,
        min_pixels=min_pixels)
    dim, coord = _radial_coord(radial, unit)
    return xr.Dataset(
        {"intensity": (dim, intensity, {"long_name": "intensity", "units": "counts/pixel"}),
         "sigma": (dim, sigma, {"long_name": "Poisson standard error", "units": "counts/pixel"})},
        coords={dim: coord},
        attrs=provenance(integrator, method=method, unit=unit, mask=valid_mask, npt=int(npt),
                         extra={"normalization": float(normalization),
                                "min_pixels": min_pixels}),
    )


def integrate_2d(image: npt.ArrayLike, integrator: AzimuthalIntegrator, *,
                 npt_rad: int = 300, npt_azim: int = 360, unit: str = "q_nm^-1",
                 method: Method = "csr", mask: npt.ArrayLike | None = None,
                 normalization: float = 1.0, correct_solid_angle: bool = True,
                 polarization_factor: float | None = None,
                 radial_range: tuple[float, float] | None = None,
                 check_orientation: bool = True) -> xr.Dataset:
    """Regroup one frame into a cake: intensity against (chi, q) or (chi, 2theta).

    Parameters
    ----------
    image : array_like, shape (rows, cols)
        Counts; negative and non-finite pixels are ignored.
    integrator : AzimuthalIntegrator
        Geometry.
    npt_rad, npt_azim : int
        Number of radial and azimuthal bins (chi covers -180..180 degrees).
    unit : {"q_nm^-1", "q_A^-1", "2th_deg"}
        Radial unit.
    method, mask, normalization, correct_solid_angle, polarization_factor, radial_range
        As for :func:`integrate_1d`.
    check_orientation : bool
        As for :func:`integrate_1d`.

    Returns
    -------
    xarray.Dataset
        ``intensity`` and ``sigma`` with dims ``(chi, q)`` (or ``(chi, two_theta)``),
        ``chi`` in degrees (pyFAI's azimuth); empty bins hold NaN.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.io import load_geometry, open_saxs
    >>> from spotkit.sim import simulate_saxs_series
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "film.h5"
    >>> truth = simulate_saxs_series(path, n_frames=2, onset_frame=1)
    >>> frame = open_saxs(path)[-1].values
    >>> cake = integrate_2d(frame, load_geometry(truth.poni_path), npt_rad=100, npt_azim=36)
    >>> cake.intensity.dims, cake.intensity.shape  # cake.intensity.plot() in JupyterLab
    (('chi', 'q'), (36, 100))
    """
    import xarray as xr

    check_unit(unit)
    method = check_method(method)
    img = _check_image(image, integrator)
    valid_mask = check_mask(mask, img.shape)
    if int(npt_rad) < 1 or int(npt_azim) < 1:
        raise ValueError(f"npt_rad and npt_azim must be >= 1, got {npt_rad}, {npt_azim}")
    if check_orientation:
        orientation_check(img, integrator, valid_mask)
    res = integrator.integrate2d_ng(
        prepare_frame(img), int(npt_rad), int(npt_azim), unit=unit, method=method,
        mask=valid_mask, dummy=_DUMMY, delta_dummy=_DELTA_DUMMY, error_model="poisson",
        correctSolidAngle=correct_solid_angle, polarization_factor=polarization_factor,
        normalization_factor=float(normalization), radial_range=radial_range)
    intensity, sigma = _intensity_sigma(res, 0.0)  # a cake's small bins hold pixel shares
    dim, coord = _radial_coord(np.asarray(res.radial, np.float64), unit)
    chi = ("chi", np.asarray(res.azimuthal, np.float64),
           {"units": "deg", "long_name": "azimuthal angle chi"})
    return xr.Dataset(
        {"intensity": (("chi", dim), intensity, {"units": "counts/pixel"}),
         "sigma": (("chi", dim), sigma, {"units": "counts/pixel"})},
        coords={dim: coord, "chi": chi},
        attrs=provenance(integrator, method=method, unit=unit, mask=valid_mask,
                         npt=int(npt_rad),
                         extra={"npt_azim": int(npt_azim),
                                "normalization": float(normalization)}),
    )


def integrate_frames(
    frames: npt.ArrayLike | xr.DataArray,
    integrator: AzimuthalIntegrator,
    *,
    npt: int = 300,
    unit: str = "q_nm^-1",
    mask: npt.ArrayLike | None = None,
    method: Method = "csr",
    frame_coords: npt.ArrayLike | None = None,
    normalization: float | npt.ArrayLike | None = None,
    correct_solid_angle: bool = True,
    polarization_factor: float | None = None,
    radial_range: tuple[float, float] | None = None,
    source: str | None = None,
    check_orientation: bool = True,
    min_pixels: float = MIN_PIXELS,
) -> xr.Dataset:
    """Reduce a frame series to I(q) per frame with Poisson errors, lazily with dask.

    Everything is checked before any frame is integrated (shapes, dtype, mask, geometry,
    unit, method). pyFAI's lookup table is built once here, on a test frame, and the same
    integrator then serves every chunk; computing a subset of frames (``ds.isel(frame=...)``)
    integrates only those frames.

    Parameters
    ----------
    frames : xarray.DataArray, dask or numpy array, shape (n_frames, rows, cols)
        Detector frames, e.g. ``spotkit.io.open_saxs(path)`` (its ``time`` coordinate and
        source path are carried over). Negative pixels (gaps) are ignored.
    integrator : AzimuthalIntegrator
        Geometry, e.g. from :func:`spotkit.io.load_geometry`; one object is reused for all frames.
    npt : int
        Number of radial bins.
    unit : {"q_nm^-1", "q_A^-1", "2th_deg"}
        Radial unit.
    mask : array_like of bool, optional
        True where pixels are invalid (constant over the series).
    method : str
        pyFAI integration method, one of :data:`METHODS`.
    frame_coords : array_like, optional
        Values for the ``frame`` coordinate (default 0..n-1).
    normalization : float or array_like, optional
        Monitor or exposure per frame (or one value): intensity and sigma are divided by it.
    correct_solid_angle, polarization_factor, radial_range
        As for :func:`integrate_1d`.
    source : str, optional
        The raw file, recorded in ``attrs["source"]`` (default: the DataArray's path).
    check_orientation : bool
        Check that the geometry fits the mask's beamstop and, for frames in memory, the
        first frame's rings (:func:`check_orientation`; lazy frames are not read for it:
        check one frame yourself). Warns with :class:`GeometryWarning`.
    min_pixels : float
        Bins with less than this many unmasked pixels are NaN (see :func:`integrate_1d`).

    Returns
    -------
    xarray.Dataset
        ``intensity`` and ``sigma`` with dims ``(frame, q)`` (``(frame, two_theta)`` for
        2-theta); coordinate ``time`` (s) when the frames have one; provenance in ``attrs``
        (pyFAI version, method, unit, npt, geometry as PONI text, mask summary, source).
        Dask-backed when ``frames`` is lazy (dask or a dask-backed DataArray), computed
        otherwise; call ``.compute()`` once to keep the numbers.

    Raises
    ------
    ValueError
        Empty series, non-numeric frames, mask shape, unknown unit or method.
    GeometryError
        When the geometry is for another detector shape.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import spotkit.io, spotkit.sim
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.h5"
    >>> truth = spotkit.sim.simulate_saxs_series(path, n_frames=4, onset_frame=2)
    >>> frames = spotkit.io.open_saxs(path)
    >>> iq = integrate_frames(frames, spotkit.io.load_geometry(frames.attrs["poni_path"]),
    ...                       npt=100)  # lazy: nothing is integrated yet
    >>> iq.intensity.dims, iq.sizes["frame"]
    (('frame', 'q'), 4)
    >>> first = iq.isel(frame=slice(0, 2)).compute()  # integrates two frames
    >>> first.intensity.shape
    (2, 100)
    """
    import dask.array as da
    import xarray as xr

    time = None
    attrs_in = {}
    raw: Any = frames
    if isinstance(frames, xr.DataArray):
        attrs_in = dict(frames.attrs)
        if "time" in frames.coords and frames.coords["time"].dims == (frames.dims[0],):
            time = np.asarray(frames.coords["time"].values)
        raw = frames.data
    check_unit(unit)
    method = check_method(method)
    lazy = isinstance(raw, da.Array)
    stack: Any = raw if lazy else np.asarray(raw)  # a dask or numpy (frame, rows, cols) array
    if stack.ndim != 3:
        raise ValueError(f"frames must be 3-D (frame, rows, cols), got shape {stack.shape}")
    n_frames, ny, nx = (int(s) for s in stack.shape)
    if n_frames == 0:
        raise ValueError("the frame series is empty (0 frames): there is nothing to integrate; "
                         "check the file or glob pattern, or wait for the detector to write")
    if np.dtype(stack.dtype).kind not in "biuf":
        raise ValueError(f"frames must hold numbers, got dtype {stack.dtype}")
    if int(npt) < 1:
        raise ValueError(f"npt must be >= 1, got {npt}")
    npt = int(npt)
    min_pixels = _check_min_pixels(min_pixels)
    check_geometry(integrator, (ny, nx), source=attrs_in.get("poni_path"))
    valid_mask = check_mask(mask, (ny, nx))
    if check_orientation and (mask is not None or not lazy):
        orientation_check(None if lazy else stack[0], integrator, valid_mask)
    norm_in = np.asarray(1.0 if normalization is None else normalization, dtype=np.float64)
    norm = norm_in
    if norm.ndim > 1 or (norm.ndim == 1 and norm.size != n_frames):
        raise ValueError(f"normalization has {norm.size} values for {n_frames} frames; "
                         "give one value or one per frame")
    norm = np.broadcast_to(norm, (n_frames,))
    if not np.all(np.isfinite(norm) & (norm > 0)):
        raise ValueError("normalization values must be finite and > 0")
    coord_values = None if frame_coords is None else np.asarray(frame_coords)
    if coord_values is not None and len(coord_values) != n_frames:
        raise ValueError(f"frame_coords has {len(coord_values)} values for {n_frames} frames")
    # pyFAI's lookup table is built here, once, on a test frame, before any frame is read;
    # every frame then goes through the same FrameReducer (pyFAI's compiled engine, the
    # same numbers as integrate_1d)
    from spotkit.scattering._reducer import FrameReducer, _reduction_thread

    reducer = FrameReducer(integrator, npt=npt, unit=unit, mask=valid_mask, method=method,
                           correct_solid_angle=correct_solid_angle,
                           polarization_factor=polarization_factor, radial_range=radial_range,
                           shape=(ny, nx), min_pixels=min_pixels, check_orientation=False)
    radial = reducer.radial

    def _block(block, block_info=None):
        # the reducer's calls take turns (pyFAI's engine has one buffer; its compiled code
        # is multi-threaded itself): dask's threads read the next chunks meanwhile
        start = block_info[0]["array-location"][0][0] if block_info else 0
        out = np.empty((block.shape[0], 2, npt), np.float64)
        for k in range(block.shape[0]):
            out[k, 0], out[k, 1] = reducer.reduce(block[k], normalization=norm[start + k])
        return out

    if lazy:
        # dask's threads read the chunks; the frames are reduced by one thread, so pyFAI's
        # engine (OpenMP) always runs from the same thread, with one team of OpenMP threads,
        # instead of the teams of dask's threads taking turns (bench_live.py)
        def _funnelled(block, block_info=None):
            return _reduction_thread().submit(_block, block, block_info).result()

        arr = stack.rechunk({1: -1, 2: -1})
        # an explicit name: dask would otherwise hash the closure, pickling the integrator
        reduced = arr.map_blocks(_funnelled, dtype=np.float64,
                                 chunks=(arr.chunks[0], (2,), (npt,)),
                                 meta=np.empty((0, 0, 0), np.float64),
                                 name=f"spotkit-integrate1d-{uuid.uuid4().hex}")
    else:  # frames in memory: one after the other, no task graph
        reduced = _block(stack)
    intensity, sigma = reduced[:, 0, :], reduced[:, 1, :]
    rdim, rcoord = _radial_coord(radial, unit)
    coords: dict[str, Any] = {
        "frame": np.arange(n_frames) if coord_values is None else coord_values, rdim: rcoord}
    if time is not None and len(time) == n_frames:
        coords["time"] = ("frame", time, {"units": "s"})
    src = source or attrs_in.get("path") or ""
    extra = {"source": str(src),
             "normalization": "per frame" if norm_in.ndim else float(norm[0]),
             "min_pixels": min_pixels}
    for key in ("sample", "beamline", "proposal", "mode", "incidence_angle_deg"):
        if attrs_in.get(key) is not None:
            extra[f"source_{key}"] = attrs_in[key]
    ds = xr.Dataset(
        {"intensity": (("frame", rdim), intensity, {"units": "counts/pixel"}),
         "sigma": (("frame", rdim), sigma,
                   {"units": "counts/pixel", "long_name": "Poisson standard error"})},
        coords=coords,
        attrs=provenance(integrator, method=method, unit=unit, mask=valid_mask, npt=npt,
                         extra=extra),
    )
    logger.debug("integrate_frames: %d frames of %s -> %d bins (%s, %s)", n_frames,
                 (ny, nx), npt, unit, method)
    return ds
