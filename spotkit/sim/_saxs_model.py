"""The SAXS twin's physics and detector: q map, ring growth, GISAXS rods, beamstop and gaps.

The geometry convention and the scattering model are described in :mod:`spotkit.sim._saxs`.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ._common import (
    HC_KEV_NM,
)

logger = logging.getLogger(__name__)




__all__ = ["q_map"]

_MODES = ("saxs", "gisaxs")
_CRITICAL_ANGLE_DEG = 0.15  # of the simulated film: position of the Yoneda band
_BEAMSTOP_TRANSMISSION = 1e-3


def q_map(shape, *, pixel_size_um, distance_m, beam_center, energy_kev) -> np.ndarray:
    """Scattering vector modulus per pixel, nm^-1, for an untilted flat detector.

    Parameters
    ----------
    shape : (int, int)
        Detector ``(rows, cols)``.
    pixel_size_um : float
        Square pixel size in micrometres.
    distance_m : float
        Sample-detector distance in metres.
    beam_center : (float, float)
        Direct beam ``(row, col)`` in pixel-index coordinates.
    energy_kev : float
        Photon energy.

    Returns
    -------
    ndarray
        ``(rows, cols)`` float64, ``q = 4 pi sin(theta) / lambda`` in nm^-1.
    """
    p = pixel_size_um * 1e-6
    y = (np.arange(shape[0]) + 0.5) * p - (beam_center[0] + 0.5) * p
    x = (np.arange(shape[1]) + 0.5) * p - (beam_center[1] + 0.5) * p
    r = np.hypot(y[:, None], x[None, :])
    two_theta = np.arctan2(r, distance_m)
    wavelength_nm = HC_KEV_NM / energy_kev
    return 4.0 * np.pi * np.sin(two_theta / 2.0) / wavelength_nm


def _gap_mask(shape, module_shape, module_gap) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    if module_shape is None:
        return mask
    for axis in (0, 1):
        period = module_shape[axis] + module_gap[axis]
        idx = np.arange(shape[axis]) % period >= module_shape[axis]
        if axis == 0:
            mask[idx, :] = True
        else:
            mask[:, idx] = True
    return mask


def _beamstop_mask(shape, beam_center, radius) -> np.ndarray:
    i = np.arange(shape[0])[:, None]
    j = np.arange(shape[1])[None, :]
    disc = (i - beam_center[0]) ** 2 + (j - beam_center[1]) ** 2 <= radius**2
    arm = (np.abs(j - beam_center[1]) <= 0.4 * radius) & (i >= beam_center[0])
    return disc | arm


def _ring_amplitude(n_frames, onset_frame, growth, strength) -> np.ndarray:
    t = np.arange(n_frames, dtype=np.float64)
    if growth <= 0:
        frac = (t >= onset_frame).astype(np.float64)
    else:
        frac = np.clip((t - onset_frame + 1) / growth, 0.0, 1.0)
    return strength * frac


def _gisaxs_images(
    shape,
    q,
    oz,
    oz_at_ring,
    background,
    sigma_q,
    ring_q_nm,
    pixel_size_um,
    distance_m,
    beam_center,
    wavelength_nm,
    incidence_angle_deg,
):
    """Diffuse and Bragg-rod images in grazing incidence (distorted-wave flavour)."""
    p = pixel_size_um * 1e-6
    vert = (beam_center[0] - np.arange(shape[0]))[:, None] * p  # up is positive
    horiz = (np.arange(shape[1]) - beam_center[1])[None, :] * p
    alpha_i = math.radians(incidence_angle_deg)
    alpha_c = math.radians(_CRITICAL_ANGLE_DEG)
    alpha_f = np.arctan2(vert, distance_m) - alpha_i
    two_theta_f = np.arctan2(horiz, distance_m)
    k = 2.0 * np.pi / wavelength_nm
    q_y = k * np.sin(two_theta_f) * np.cos(alpha_f)
    q_z = k * (np.sin(alpha_f) + math.sin(alpha_i))
    above = alpha_f > 0
    width = 0.3 * alpha_c
    yoneda = 1.0 + 2.0 * np.exp(-0.5 * ((alpha_f - alpha_c) / width) ** 2)
    horizon = np.where(above, 1.0, 0.02)
    base = oz * yoneda * horizon + background
    rods = np.exp(-0.5 * ((np.abs(q_y) - ring_q_nm) / sigma_q) ** 2)
    rod_decay = np.exp(-np.clip(q_z, 0, None) / (1.5 * ring_q_nm))
    peak = oz_at_ring * rods * rod_decay * yoneda * np.where(above, 1.0, 0.0)
    return base, np.broadcast_to(peak, shape).copy()
