"""NXcanSAS units, names and small HDF5 helpers shared by the writer and the reader.
"""

from __future__ import annotations

import h5py
import numpy as np

#: canonical Q units and their factor to 1/angstrom
_Q_TO_INV_A = {"1/angstrom": 1.0, "1/nm": 0.1, "1/m": 1e-10, "1/cm": 1e-8}
_Q_ALIASES = {
    "1/angstrom": "1/angstrom", "1/a": "1/angstrom", "a^-1": "1/angstrom",
    "a-1": "1/angstrom", "1/å": "1/angstrom", "å^-1": "1/angstrom",
    "angstrom^-1": "1/angstrom", "1/ang": "1/angstrom", "ang^-1": "1/angstrom",
    "q (a^-1)": "1/angstrom", "q_a^-1": "1/angstrom", "inverse angstrom": "1/angstrom",
    "1/nm": "1/nm", "nm^-1": "1/nm", "nm-1": "1/nm", "q (nm^-1)": "1/nm", "q_nm^-1": "1/nm",
    "1/m": "1/m", "m^-1": "1/m", "1/cm": "1/cm", "cm^-1": "1/cm",
}
#: spotkit's radial-unit names (``integrate_frames(unit=...)``) for the canonical units
_SPOTKIT_UNIT = {"1/nm": "q_nm^-1", "1/angstrom": "q_A^-1"}
_ANGLE_UNITS = {"deg": "degree", "degree": "degree", "degrees": "degree", "rad": "radian",
                "radian": "radian", "radians": "radian"}
_HC_KEV_A = 12.398419843320026  # h c in keV angstrom
_RESERVED = {"I", "Idev", "Q", "Qx", "Qy", "Qz", "dQ", "dQx", "dQy", "Mask"}
_NOT_NXCANSAS_HINT = (
    "An NXcanSAS file has at least one group with @canSAS_class='SASentry' (or "
    "@NX_class='NXentry' and a 'definition' field 'NXcanSAS') holding a SASdata group with I "
    "and Q; export the reduced data as NXcanSAS (spotkit.io.write_nxcansas, SasView, Mantid, "
    "Irena/Nika) or open raw data with spotkit.io.open_saxs."
)


# -- small helpers ---------------------------------------------------------------------


def _text(value) -> str | None:
    """A string from an HDF5 attribute or field value (bytes, 1-element arrays...)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.size > 1:
            return ",".join(t for t in (_text(v) for v in value.reshape(-1)) if t is not None)
        value = value.reshape(-1)[0]
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def _names(value) -> list[str]:
    """A list of names from a string ("Q,Q"), a string array or a list."""
    if value is None:
        return []
    if isinstance(value, np.ndarray | list | tuple):
        out = []
        for v in np.asarray(value, dtype=object).reshape(-1):
            out.extend(_names(v))
        return out
    text = _text(value) or ""
    return [t.strip() for t in text.split(",") if t.strip()]


def _indices(value) -> list[int] | None:
    """Integer indices from an int, an int array, or a string such as "0,1"."""
    if value is None:
        return None
    try:
        if isinstance(value, np.ndarray | list | tuple) and np.asarray(value).dtype.kind in "iuf":
            return [int(v) for v in np.asarray(value).reshape(-1)]
        if isinstance(value, int | np.integer | float | np.floating):
            return [int(value)]
        return [int(t) for t in _names(value)]
    except (TypeError, ValueError):
        return None


def _attr(obj, *keys):
    for key in keys:
        if key in obj.attrs:
            return obj.attrs[key]
    return None


def _units(obj) -> str | None:
    return _text(_attr(obj, "units", "unit"))


def _canonical_q_unit(unit) -> str | None:
    if unit is None:
        return None
    return _Q_ALIASES.get(str(unit).strip().lower())


def _check_q_unit(q_unit: str | None) -> str | None:
    if q_unit is None:
        return None
    canon = _canonical_q_unit(q_unit)
    if canon is None:
        raise ValueError(
            f"unknown q_unit {q_unit!r}; choose one of {sorted(_Q_TO_INV_A)} "
            "(or an alias such as 'nm^-1', 'A^-1', 'q_nm^-1')"
        )
    return canon


def _field_text(group, key) -> str | None:
    obj = group.get(key)
    if not isinstance(obj, h5py.Dataset):
        return None
    return _text(obj[()])


def _field_number(group, key) -> tuple[float | None, str | None]:
    obj = group.get(key)
    if not isinstance(obj, h5py.Dataset):
        return None, None
    try:
        value = float(np.asarray(obj[()]).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None, None
    return value, _units(obj)


def _class_of(obj) -> str | None:
    """canSAS class of a group: @canSAS_class, else a canSAS-looking @NX_class."""
    cls = _text(_attr(obj, "canSAS_class"))
    if cls:
        return cls
    nx = _text(_attr(obj, "NX_class"))
    return nx
