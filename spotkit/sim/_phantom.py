"""Analytic 3-D phantoms made of ellipsoids, and their exact parallel-beam projections.

Geometry (shared with :mod:`spotkit.sim._tomo`)
-----------------------------------------------
All lengths are in detector pixels; the geometry is tomopy's (``tomopy.project``). Object
coordinates ``(x, y, z)`` have their origin on the rotation axis, ``y`` growing in the
direction of image rows (down an image shown with row 0 on top); ``z`` is the vertical axis
and equals the detector row coordinate (row ``r`` is centred at ``z = r``). A projection at
angle ``theta`` (degrees) integrates along the direction ``(sin theta, cos theta)``; the
point ``(x, y)`` lands on the detector at

    u = center + x cos(theta) - y sin(theta)

where ``u`` and ``center`` are measured from the left edge of column 0 (column ``j`` spans
``[j, j + 1)`` and is sampled at its middle, ``u = j + 1/2``): ``center`` is tomopy's value
for the rotation axis, ``n_cols / 2`` when it is on the middle of the detector.

Every ellipsoid may be rotated about the vertical axis only, so the slice of the phantom
at any height is a sum of ellipses, whose projection is known in closed form
(Kak & Slaney, *Principles of Computerized Tomographic Imaging*, eq. 3.8)::

    p(s) = 2 mu a b sqrt(a_t^2 - (s - s0)^2) / a_t^2,   |s - s0| <= a_t
    a_t^2 = a^2 cos^2(theta + phi) + b^2 sin^2(theta + phi)
    s0 = x0 cos(theta) - y0 sin(theta)

(Kak & Slaney's formula with ``y`` pointing up, ``s = x cos + y sin``, applied to the
mirrored ellipse ``(x0, -y0, -phi)``.)

The slice of an ellipsoid at height ``z`` is the ellipse scaled by
``k = sqrt(1 - ((z - z0)/c)^2)``, which enters the formula only through ``k^2 a_t^2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Ellipsoid", "line_integrals", "slice_image"]

# Largest number of float64 elements handled at once by :func:`line_integrals`
# (about 32 MiB per temporary array).
_MAX_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Ellipsoid:
    """One ellipsoid of an additive phantom.

    Attributes
    ----------
    x0, y0, z0 : float
        Centre in detector pixels; ``(x0, y0)`` relative to the rotation axis, ``z0`` a
        row coordinate.
    a, b, c : float
        Semi-axes in pixels: ``a`` and ``b`` in the horizontal plane, ``c`` vertical.
    phi : float
        Rotation of the ``a`` axis from the ``x`` axis about the vertical axis, degrees.
    mu : float
        Attenuation added inside the ellipsoid, 1/cm (negative for pores).
    """

    x0: float
    y0: float
    z0: float
    a: float
    b: float
    c: float
    phi: float
    mu: float

    def to_dict(self) -> dict:
        """Return the ellipsoid as a JSON-serialisable dict."""
        return {k: float(getattr(self, k)) for k in ("x0", "y0", "z0", "a", "b", "c", "phi", "mu")}


def _k2(e: Ellipsoid, z: np.ndarray) -> np.ndarray:
    """Squared scale of the ellipse cut from ``e`` at heights ``z`` (<= 0 where missed)."""
    return 1.0 - ((z - e.z0) / e.c) ** 2


def line_integrals(
    ellipsoids,
    rows,
    theta_deg,
    n_cols: int,
    center: float,
    *,
    scale: float = 1.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Exact parallel-beam line integrals through an ellipsoid phantom.

    Parameters
    ----------
    ellipsoids : sequence of Ellipsoid
        The phantom.
    rows : array_like of float
        Detector row coordinates (``z``).
    theta_deg : array_like of float
        Projection angles in degrees.
    n_cols : int
        Number of detector columns (column ``j`` sampled at ``u = j + 1/2``).
    center : float
        Rotation axis, tomopy's value (``n_cols / 2`` = the middle of the detector).
    scale : float, optional
        Factor applied to every ``mu`` (e.g. the pixel size in cm to get optical depth).
    out : ndarray, optional
        Float array of shape ``(len(rows), len(theta_deg), n_cols)`` to fill.

    Returns
    -------
    ndarray
        ``(rows, angles, cols)`` line integrals, in ``mu`` units times pixels times ``scale``.
    """
    rows = np.atleast_1d(np.asarray(rows, dtype=np.float64))
    theta = np.deg2rad(np.atleast_1d(np.asarray(theta_deg, dtype=np.float64)))
    shape = (rows.size, theta.size, n_cols)
    if out is None:
        out = np.zeros(shape, dtype=np.float64)
    else:
        if out.shape != shape:
            raise ValueError(f"out has shape {out.shape}; expected {shape}")
        out[...] = 0.0
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    s = np.arange(n_cols, dtype=np.float64) + 0.5 - center
    # Angles per pass so that a (angles, cols) temporary stays small.
    step = max(1, _MAX_ELEMENTS // max(n_cols, 1))
    for e in ellipsoids:
        k2 = _k2(e, rows)
        hit = np.nonzero(k2 > 0)[0]
        if hit.size == 0:
            continue
        phi = np.deg2rad(e.phi)
        at2 = e.a**2 * np.cos(theta + phi) ** 2 + e.b**2 * np.sin(theta + phi) ** 2
        coef = 2.0 * e.mu * scale * e.a * e.b / at2
        s0 = e.x0 * cos_t - e.y0 * sin_t
        for start in range(0, theta.size, step):
            sl = slice(start, start + step)
            d2 = (s[None, :] - s0[sl, None]) ** 2
            for r in hit:
                arg = k2[r] * at2[sl, None] - d2
                np.maximum(arg, 0.0, out=arg)
                np.sqrt(arg, out=arg)
                arg *= coef[sl, None]
                out[r, sl] += arg
    return out


def slice_image(
    ellipsoids,
    z: float,
    n: int,
    *,
    supersample: int = 4,
    scale: float = 1.0,
) -> np.ndarray:
    """Voxelise the phantom slice at height ``z`` on an ``n`` x ``n`` pixel grid.

    Pixel ``(iy, ix)`` is centred at ``x = ix - (n - 1)/2``, ``y = iy - (n - 1)/2``, so the
    grid centre is on the rotation axis; each pixel value is the mean over
    ``supersample**2`` sub-pixel samples.

    Parameters
    ----------
    ellipsoids : sequence of Ellipsoid
        The phantom.
    z : float
        Row coordinate of the slice.
    n : int
        Grid size.
    supersample : int, optional
        Sub-samples per pixel along each axis.
    scale : float, optional
        Factor applied to every ``mu``.

    Returns
    -------
    ndarray
        ``(n, n)`` float64 image, ``mu`` units times ``scale``.
    """
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    coords = (np.arange(n) - (n - 1) / 2.0)[:, None] + sub[None, :]  # (n, s)
    img = np.zeros((n, supersample, n, supersample), dtype=np.float64)
    yy = coords[:, :, None, None]
    xx = coords[None, None, :, :]
    for e in ellipsoids:
        k2 = float(_k2(e, np.asarray(z, dtype=np.float64)))
        if k2 <= 0:
            continue
        phi = np.deg2rad(e.phi)
        dx, dy = xx - e.x0, yy - e.y0
        xr = dx * np.cos(phi) + dy * np.sin(phi)
        yr = -dx * np.sin(phi) + dy * np.cos(phi)
        inside = (xr / e.a) ** 2 + (yr / e.b) ** 2 <= k2
        img += np.where(inside, e.mu * scale, 0.0)
    return img.mean(axis=(1, 3))


def make_phantom(rng: np.random.Generator, n_rows: int, n_cols: int, center: float) -> list:
    """Random cylinder-like sample with inclusions, in relative attenuation units.

    The sample stays inside the field of view at every angle. The caller rescales ``mu``
    to physical units.
    """
    axis = center - 0.5  # column-centre coordinate of the axis (column j centred at j)
    radius_fov = min(axis, n_cols - 1 - axis) - 1.0
    if radius_fov < 4:
        raise ValueError(
            f"the rotation axis at {center:.2f} leaves no room for a sample on a "
            f"{n_cols}-column detector; reduce |center_offset|"
        )
    r = 0.85 * radius_fov
    zc = (n_rows - 1) / 2.0
    height = max(3.0 * n_rows, 10.0)
    # Matrix (off-axis so the sinogram shows a sinusoid), a lighter core, a dense skin.
    ox, oy = 0.06 * r, -0.04 * r
    a_m, b_m = 0.80 * r, 0.68 * r
    phi_m = float(rng.uniform(0, 180))
    ells = [
        Ellipsoid(ox, oy, zc, a_m, b_m, height, phi_m, 1.0),
        Ellipsoid(ox, oy, zc, 0.92 * a_m, 0.9 * b_m, height, phi_m, -0.35),
        Ellipsoid(ox + 0.1 * r, oy, zc, 0.35 * a_m, 0.3 * b_m, 1.4 * n_rows + 2, phi_m, -0.25),
    ]
    n_inclusions = 7
    for i in range(n_inclusions):
        size = float(rng.uniform(0.05, 0.14)) * r
        aspect = float(rng.uniform(0.5, 1.0))
        max_rad = 0.75 * min(a_m, b_m) - size
        rad = float(rng.uniform(0.2, 1.0)) * max(max_rad, 0.0)
        ang = float(rng.uniform(0, 2 * np.pi))
        z0 = float(rng.uniform(0.1, 0.9)) * (n_rows - 1)
        c = float(rng.uniform(0.4, 1.0)) * n_rows + 1.5
        mu = float(rng.uniform(1.5, 3.0)) if i % 3 != 2 else -0.65  # particles and pores
        ells.append(
            Ellipsoid(
                ox + rad * np.cos(ang),
                oy + rad * np.sin(ang),
                z0,
                size,
                size * aspect,
                c,
                float(rng.uniform(0, 180)),
                mu,
            )
        )
    return ells
