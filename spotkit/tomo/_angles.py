"""Projection angles: radians everywhere, with units read from xarray and degrees refused.

Data Exchange files and :meth:`spotkit.catalog.Dataset.to_xarray` keep ``theta`` in degrees
(with ``attrs["units"] = "degrees"``), while every tomography function works in radians, as
tomopy does. A :class:`xarray.DataArray` (or anything with ``.attrs["units"]``) is converted;
a bare array whose span exceeds one turn is refused, since that is almost always degrees.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_radians"]

_DEGREES = {"deg", "degree", "degrees", "°"}
_RADIANS = {"rad", "radian", "radians"}
#: Largest span (max - min) a bare array of radians may have: one turn plus a margin.
MAX_SPAN = 2 * np.pi + 0.1


def as_radians(theta, *, what: str = "theta") -> np.ndarray:
    """``theta`` as a 1-D float64 array of radians.

    Parameters
    ----------
    theta : array_like or xarray.DataArray
        Angles. An object with ``attrs["units"]`` (an xarray coordinate from
        ``Dataset.to_xarray().theta``) is converted from ``"degrees"`` (``"deg"``, ``"°"``)
        or kept as ``"radians"``; other units are refused. A bare array must be in radians.
    what : str
        Name of the argument in error messages.

    Returns
    -------
    ndarray of float64

    Raises
    ------
    ValueError
        Unknown units, NaN or infinite angles, or a bare array spanning more than
        ``2π + 0.1`` (degrees passed as radians).

    Examples
    --------
    >>> import xarray as xr
    >>> as_radians(xr.DataArray([0.0, 90.0], attrs={"units": "degrees"})).round(4).tolist()
    [0.0, 1.5708]
    """
    units = getattr(theta, "attrs", {}).get("units") if hasattr(theta, "attrs") else None
    values = np.asarray(getattr(theta, "values", theta), dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    if units is not None:
        unit = str(units).strip().lower()
        if unit in _DEGREES:
            return np.deg2rad(values)
        if unit not in _RADIANS:
            raise ValueError(f"{what} has units {units!r}; use 'degrees' or 'radians'")
    elif values.size and float(np.ptp(values)) > MAX_SPAN:
        raise ValueError(
            f"{what} spans {float(np.ptp(values)):.4g}, more than one turn in radians: it looks "
            f"like degrees. Angles are radians (as in tomopy): pass np.deg2rad({what}), or "
            f"an xarray coordinate with attrs['units'] = 'degrees' (Dataset.to_xarray().theta)")
    return values
