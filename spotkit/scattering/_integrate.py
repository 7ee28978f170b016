"""1-D azimuthal integration of a frame series."""

from __future__ import annotations

import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["integrate_frames", "load_geometry", "shadow_mask"]

UNITS = {"q_nm^-1": "q (nm^-1)", "q_A^-1": "q (A^-1)", "2th_deg": "2theta (deg)"}


def _pyfai():
    try:
        import pyFAI
    except ImportError as exc:
        raise ImportError(
            'azimuthal integration needs pyFAI: pip install "spotkit[scattering]"'
        ) from exc
    return pyFAI


def load_geometry(poni: str | os.PathLike):
    """Load a pyFAI geometry (PONI file) as an azimuthal integrator.

    Parameters
    ----------
    poni : path-like
        PONI file written by pyFAI-calib2 or by :func:`spotkit.sim.simulate_saxs_series`.

    Returns
    -------
    pyFAI.integrator.azimuthal.AzimuthalIntegrator
    """
    from spotkit.errors import InputFileError

    pyFAI = _pyfai()
    if not os.path.isfile(poni):
        raise InputFileError(poni, "PONI geometry file does not exist.",
                             hint="Calibrate with pyFAI-calib2 or pass the right path.")
    try:
        return pyFAI.load(str(poni))
    except Exception as exc:
        raise InputFileError(poni, f"cannot be read as a PONI geometry ({exc}).") from exc


def integrate_frames(
    frames,
    integrator,
    *,
    npt: int = 300,
    unit: str = "q_nm^-1",
    mask=None,
    method: str = "csr",
    frame_coords=None,
):
    """Azimuthally integrate each frame of a series to I(q) with Poisson errors.

    Parameters
    ----------
    frames : array_like, shape (n_frames, ny, nx)
        Detector frames; numpy or dask (read frame by frame).
    integrator : AzimuthalIntegrator
        Geometry, e.g. from :func:`load_geometry`.
    npt : int
        Number of radial bins.
    unit : {"q_nm^-1", "q_A^-1", "2th_deg"}
        Radial unit.
    mask : array_like of bool, optional
        True where pixels are invalid. Negative pixel values (Pilatus gaps) are always masked.
    method : str
        pyFAI integration method (``"csr"``, ``"histogram"``, ``"bbox"``...).
    frame_coords : array_like, optional
        Values for the ``frame`` coordinate (e.g. times in s).

    Returns
    -------
    xarray.Dataset
        ``intensity`` and ``sigma`` with dims ``(frame, q)`` (``q`` holds the radial values).
    """
    import xarray as xr

    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; choose one of {sorted(UNITS)}")
    if np.ndim(frames) != 3:
        raise ValueError(f"frames must be 3-D (frame, y, x), got shape {np.shape(frames)}")
    n_frames, ny, nx = frames.shape
    if n_frames == 0:
        raise ValueError("the frame series is empty")
    base_mask = np.zeros((ny, nx), bool) if mask is None else np.asarray(mask, bool)
    if base_mask.shape != (ny, nx):
        raise ValueError(f"mask shape {base_mask.shape} differs from frame shape {(ny, nx)}")
    intensity = np.empty((n_frames, npt), np.float64)
    sigma = np.empty((n_frames, npt), np.float64)
    radial = None
    for k in range(n_frames):
        frame = np.asarray(frames[k])
        m = base_mask | (frame < 0)
        res = integrator.integrate1d(frame, npt, unit=unit, mask=m, method=method,
                                     error_model="poisson")
        radial = res.radial
        intensity[k] = res.intensity
        sigma[k] = res.sigma
    coords = {"frame": np.arange(n_frames) if frame_coords is None else np.asarray(frame_coords),
              "q": radial}
    ds = xr.Dataset(
        {"intensity": (("frame", "q"), intensity), "sigma": (("frame", "q"), sigma)},
        coords=coords,
    )
    ds["q"].attrs["units"] = UNITS[unit]
    ds.attrs.update({"unit": unit, "npt": npt, "method": method})
    return ds


def shadow_mask(image, integrator, *, fraction: float = 0.2, n_rings: int = 200) -> np.ndarray:
    """Mask pixels far darker than their ring: beamstop and its arm, dead pixels, gaps.

    Each pixel is compared with the median of the valid pixels at the same scattering angle
    (a ring of the detector); it is masked when below ``fraction`` of that median. Negative
    pixels (Pilatus module gaps) are always masked.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        A frame, or better the mean of a few frames.
    integrator : AzimuthalIntegrator
        The detector geometry.
    fraction : float
        Threshold relative to the ring median, in (0, 1).
    n_rings : int
        Number of rings (radial bins) used for the medians.

    Returns
    -------
    ndarray of bool
        True where the pixel is invalid.

    Examples
    --------
    >>> mask = shadow_mask(frames[:5].mean(axis=0), ai)  # doctest: +SKIP
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    image = np.asarray(image, dtype=np.float64)
    tth = integrator.twoThetaArray(image.shape)
    if tth.shape != image.shape:
        raise ValueError(f"image shape {image.shape} does not match the geometry {tth.shape}")
    bad = image < 0
    edges = np.linspace(tth.min(), tth.max() + 1e-12, n_rings + 1)
    ring = np.clip(np.digitize(tth, edges) - 1, 0, n_rings - 1)
    medians = np.zeros(n_rings)
    valid_ring = ring[~bad]
    valid_vals = image[~bad]
    order = np.argsort(valid_ring, kind="stable")
    sorted_ring, sorted_vals = valid_ring[order], valid_vals[order]
    bounds = np.searchsorted(sorted_ring, np.arange(n_rings + 1))
    for k in range(n_rings):
        seg = sorted_vals[bounds[k]:bounds[k + 1]]
        if seg.size:
            medians[k] = np.median(seg)
    return bad | (image < fraction * medians[ring])
