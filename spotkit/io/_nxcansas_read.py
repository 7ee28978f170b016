"""NXcanSAS reader: any SASentry/SASdata layout (spotkit, SasView, Mantid, sasdata) to xarray.

The layout is described in :mod:`spotkit.io._nxcansas`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import h5py
import numpy as np
import xarray as xr

from spotkit.errors import InputFileError

from ._h5 import check_exists, logger, open_hdf5
from ._nxcansas_common import (
    _NOT_NXCANSAS_HINT,
    _Q_TO_INV_A,
    _SPOTKIT_UNIT,
    _attr,
    _canonical_q_unit,
    _check_q_unit,
    _class_of,
    _field_number,
    _field_text,
    _indices,
    _names,
    _text,
    _units,
)
from ._types import PathLike

__all__ = ["read_nxcansas", "read_nxcansas_entries"]

# -- reading ---------------------------------------------------------------------------


def _find_entries(f, path) -> list[h5py.Group]:
    """SASentry groups at the root or one level down (NXentry/NXsubentry nesting)."""
    found = []

    def is_entry(g):
        cls = _text(_attr(g, "canSAS_class"))
        nx = _text(_attr(g, "NX_class"))
        definition = _field_text(g, "definition")
        if cls == "SASentry" or nx == "SASentry":
            if definition is not None and definition.strip() != "NXcanSAS":
                logger.warning("%s: %s is a SASentry but its definition is %r",
                               path, g.name, definition)
            return True
        return nx in ("NXentry", "NXsubentry") and (definition or "").strip() == "NXcanSAS"

    for g in f.values():
        if not isinstance(g, h5py.Group):
            continue
        if is_entry(g):
            found.append(g)
        else:
            found.extend(s for s in g.values() if isinstance(s, h5py.Group) and is_entry(s))
    return found


def _find_sasdata(entry) -> list[h5py.Group]:
    out = []
    for g in entry.values():
        if not isinstance(g, h5py.Group):
            continue
        cls = _class_of(g)
        if cls == "SASdata" or (cls == "NXdata" and "canSAS_class" not in g.attrs
                                and _text(g.attrs.get("signal", "I")) in g):
            out.append(g)
    return out


def _err(path, problem, field, hint=None):
    return InputFileError(path, problem, field=field, hint=hint)


def _convert(values, unit, to):
    if to is None or unit is None or unit == to:
        return values
    return values * (_Q_TO_INV_A[unit] / _Q_TO_INV_A[to])


def _entry_metadata(entry) -> dict:
    meta = {
        "entry": entry.name.lstrip("/"),
        "title": _field_text(entry, "title") or "",
        "run": _field_text(entry, "run") or "",
        "definition": _field_text(entry, "definition") or "",
    }
    for g in entry.values():
        if not isinstance(g, h5py.Group):
            continue
        cls = _class_of(g)
        if cls in ("SASsample", "NXsample"):
            meta["sample"] = (_field_text(g, "name") or _field_text(g, "ID")
                              or _field_text(g, "Title") or "")
        elif cls in ("SASinstrument", "NXinstrument"):
            if _field_text(g, "name"):
                meta["instrument"] = _field_text(g, "name")
            for s in g.values():
                if isinstance(s, h5py.Group) and _class_of(s) in ("SASsource", "NXsource"):
                    for key in ("radiation", "type", "probe"):
                        if _field_text(s, key):
                            meta.setdefault("radiation", _field_text(s, key))
                    wl, unit = _field_number(s, "incident_wavelength")
                    if wl is not None:
                        meta["wavelength_A"] = wl * {"nm": 10.0, "m": 1e10}.get(
                            (unit or "angstrom").strip().lower(), 1.0)
            if "wavelength_A" not in meta:
                wl, unit = _field_number(g, "incident_wavelength")
                if wl is not None:
                    meta["wavelength_A"] = wl * {"nm": 10.0}.get((unit or "").lower(), 1.0)
        elif cls in ("SASprocess", "NXprocess") and "process_name" not in meta:
            meta["process_name"] = _field_text(g, "name") or ""
            meta["process_date"] = _field_text(g, "date") or ""
            params = _field_text(g, "parameters")
            if params:
                meta["parameters"] = params
    if "timestamp" in entry.attrs:
        meta["timestamp"] = _text(entry.attrs["timestamp"])
    if "frame_index" in entry.attrs:
        meta["frame_index"] = int(np.asarray(entry.attrs["frame_index"]).reshape(-1)[0])
    return meta


def _step_coords(entry) -> dict:
    out = {}
    for g in entry.values():
        if isinstance(g, h5py.Group) and _class_of(g) in ("SASnote", "NXnote"):
            for key, d in g.items():
                if key.startswith("coord_") and isinstance(d, h5py.Dataset):
                    out[key[len("coord_"):]] = (d[()], _units(d))
    return out


def _pick_entry(path, entries, entry) -> h5py.Group:
    names = [e.name.rsplit("/", 1)[-1] for e in entries]
    if isinstance(entry, int | np.integer):
        if not -len(names) <= entry < len(names):
            raise InputFileError(path, f"has {len(names)} SASentries; entry={entry} is out "
                                 "of range.", field="/", hint=f"Entries: {names[:10]}")
        return entries[int(entry)]
    if entry in names:
        return entries[names.index(entry)]
    raise InputFileError(path, f"has no SASentry {entry!r}.", field=f"/{entry}",
                         hint=f"Its SASentries are {names[:10]}"
                         + (" ..." if len(names) > 10 else "") + ".")


def _read_sasdata(path, grp, q_unit, meta) -> xr.Dataset:
    where = grp.name
    signal = _text(grp.attrs.get("signal")) or "I"
    i_obj = grp.get(signal)
    if not isinstance(i_obj, h5py.Dataset):
        raise _err(path, f"SASdata group {where} has no intensity field {signal!r} "
                   f"(it has {sorted(grp)}).", f"{where}/{signal}",
                   "The file is not complete NXcanSAS; re-export it from the reduction.")
    intensity = np.asarray(i_obj[()], dtype=np.float64)
    i_axes = _names(grp.attrs.get("I_axes"))
    if not i_axes:
        logger.warning("%s: %s has no @I_axes; assuming Q for every dimension", path, where)
        i_axes = ["Q"] * intensity.ndim
    if len(i_axes) != intensity.ndim:
        raise _err(path, f"@I_axes of {where} names {len(i_axes)} axes {i_axes} but I has "
                   f"{intensity.ndim} dimension(s) (shape {intensity.shape}).", f"{where}/I",
                   "Fix @I_axes (one name per dimension of I).")
    q_idx = _indices(grp.attrs.get("Q_indices"))
    if q_idx is None:
        q_idx = [k for k, a in enumerate(i_axes) if a == "Q"]
    if not q_idx or any(k >= intensity.ndim or k < 0 for k in q_idx):
        raise _err(path, f"@Q_indices of {where} is {grp.attrs.get('Q_indices')!r}, which "
                   f"does not fit I of shape {intensity.shape}.", where,
                   "Q_indices must list the dimensions of I that Q depends on.")
    i_unit = _units(i_obj) or "arbitrary"
    unc_name = _text(_attr(i_obj, "uncertainties", "uncertainty")) or _text(
        _attr(grp, "I_uncertainties", "I_uncertainty"))
    sigma = None
    if unc_name:
        unc = grp.get(unc_name)
        if not isinstance(unc, h5py.Dataset):
            logger.warning("%s: %s names uncertainties %r, which is missing; reading I "
                           "without them", path, where, unc_name)
        else:
            sigma = np.asarray(unc[()], dtype=np.float64)
            if sigma.shape != intensity.shape:
                raise _err(path, f"the uncertainties have shape {sigma.shape} but I has "
                           f"{intensity.shape}.", f"{where}/{unc_name}",
                           "Idev must have one value per value of I.")
    attrs = {**meta, "sasdata": grp.name.rsplit("/", 1)[-1], "path": str(path)}
    if grp.attrs.get("timestamp") is not None and "timestamp" not in attrs:
        attrs["timestamp"] = _text(grp.attrs["timestamp"])

    def q_field(name, shape, what):
        obj = grp.get(name)
        if not isinstance(obj, h5py.Dataset):
            raise _err(path, f"{where} has no {what} field {name!r} (it has {sorted(grp)}).",
                       f"{where}/{name}", "The file is not complete NXcanSAS; re-export it.")
        values = np.asarray(obj[()], dtype=np.float64)
        if shape is not None and values.shape != shape:
            raise _err(path, f"{name} has shape {values.shape} but I has {intensity.shape}.",
                       f"{where}/{name}", "Q must have one value per point of I.")
        raw = _units(obj)
        unit = _canonical_q_unit(raw)
        if unit is None:
            if q_unit is not None:
                raise _err(path, f"the unit of {name} is {raw!r}, which spotkit cannot "
                           f"convert to {q_unit}.", f"{where}/{name}",
                           "Read it without q_unit=..., or fix its @units attribute.")
            logger.warning("%s: %s/%s has unknown units %r; kept as is", path, where, name, raw)
        return obj, values, unit, raw

    non_q = [k for k in range(intensity.ndim) if k not in q_idx]
    if len(q_idx) == 1:
        # 1-D I(Q), or I(other, Q) (several frames in one SASdata)
        axis = q_idx[0]
        qname = i_axes[axis]
        obj, q, unit, raw = q_field(qname, None, "Q")
        if q.ndim != 1 or q.size != intensity.shape[axis]:
            raise _err(path, f"{qname} has shape {q.shape} but I has {intensity.shape} "
                       f"(dimension {axis} has {intensity.shape[axis]} points).",
                       f"{where}/{qname}", "Q must have one value per point of I.")
        out_unit = q_unit or unit
        qv = _convert(q, unit, q_unit)
        dims: list[str] = []
        coords: dict[str, tuple[Any, ...]] = {
            "q": ("q", qv, {"units": out_unit or raw or "unknown", "long_name": "q"})}
        for k in range(intensity.ndim):
            if k == axis:
                dims.append("q")
                continue
            name = i_axes[k]
            dim = name.lower()
            dims.append(dim)
            extra = grp.get(name)
            if isinstance(extra, h5py.Dataset) and extra.shape == (intensity.shape[k],):
                coords[dim] = (dim, extra[()], {"units": _units(extra) or ""})
        data_vars: dict[str, tuple[Any, ...]] = {
            "intensity": (dims, intensity, {"units": i_unit})}
        if sigma is not None:
            data_vars["sigma"] = (dims, sigma, {"units": i_unit})
        res = _names(_attr(obj, "resolutions"))
        unc_q = _names(_attr(obj, "uncertainties", "uncertainty"))
        resolutions: tuple[str, ...] = ("dq",) if len(res) == 1 else ("dq_width", "dq_length")
        for names, targets in ((res, resolutions), (unc_q, ("q_sigma",))):
            for name, target in zip(names, targets, strict=False):
                d = grp.get(name)
                if not isinstance(d, h5py.Dataset):
                    logger.warning("%s: %s names Q resolution %r, which is missing",
                                   path, where, name)
                    continue
                vals = np.asarray(d[()], dtype=np.float64)
                if vals.shape != q.shape:
                    raise _err(path, f"{name} has shape {vals.shape} but {qname} has "
                               f"{q.shape}.", f"{where}/{name}",
                               "The Q resolution must have one value per Q.")
                d_unit = _canonical_q_unit(_units(d)) or unit
                data_vars[target] = ("q", _convert(vals, d_unit, q_unit),
                                     {"units": out_unit or raw or "unknown"})
        if out_unit in _SPOTKIT_UNIT:
            attrs["unit"] = _SPOTKIT_UNIT[out_unit]
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    if len(q_idx) != 2 or intensity.ndim != 2 or non_q:
        raise _err(path, f"{where} has I of shape {intensity.shape} with I_axes {i_axes}; "
                   "spotkit reads 1-D I(Q), I(step, Q) and 2-D I(Qy, Qx).", where,
                   "Read this SASdata with h5py, or split it into one SASdata per image.")
    shape = intensity.shape
    if "Qx" in grp and "Qy" in grp:
        _, qx, ux, rawx = q_field("Qx", shape, "Qx")
        _, qy, uy, _ = q_field("Qy", shape, "Qy")
        unit, raw = ux, rawx
        if uy != ux and ux is not None and uy is not None:
            qy = _convert(qy, uy, ux)
    else:
        qname = i_axes[q_idx[0]]
        obj, qv, unit, raw = q_field(qname, None, "Q")
        if qv.ndim == 3 and qv.shape[1:] == shape and qv.shape[0] >= 2:
            qx, qy = qv[0], qv[1]
        elif qv.shape == shape:
            qx = qy = None
            qmag = qv
        else:
            raise _err(path, f"{qname} has shape {qv.shape}; for I of shape {shape} it must "
                       f"be {shape} (|Q|) or (2 or 3, {shape[0]}, {shape[1]}) (Qx, Qy[, Qz]).",
                       f"{where}/{qname}", "Q must have one value (or vector) per pixel of I.")
    out_unit = q_unit or unit
    units = out_unit or raw or "unknown"
    data_vars = {"intensity": (None, intensity, {"units": i_unit})}
    if sigma is not None:
        data_vars["sigma"] = (None, sigma, {"units": i_unit})
    mask_name = _text(grp.attrs.get("mask"))
    if mask_name and isinstance(grp.get(mask_name), h5py.Dataset):
        m = np.asarray(grp[mask_name][()]).astype(bool)
        if m.shape == shape:
            data_vars["mask"] = (None, m, {"description": "True where the pixel is excluded"})
    if out_unit in _SPOTKIT_UNIT:
        attrs["unit"] = _SPOTKIT_UNIT[out_unit]

    sk_axes = _names(grp.attrs.get("spotkit_axes"))
    coords = {}
    grid: tuple[str, ...]
    if (len(sk_axes) == 2 and all(isinstance(grp.get(a), h5py.Dataset) for a in sk_axes)
            and tuple(grp[a].shape[0] for a in sk_axes) == shape):
        grid = tuple(sk_axes)
        for a in sk_axes:
            vals, u = np.asarray(grp[a][()], dtype=np.float64), _units(grp[a])
            cu = _canonical_q_unit(u)
            if cu is not None:
                vals, u = _convert(vals, cu, q_unit), q_unit or cu
            coords[a] = (a, vals, {"units": u or ""})
    elif qx is not None and _separable(qx, qy):
        ax = 0 if np.ptp(qx[:, 0]) > 0 else 1
        grid = ("qx", "qy") if ax == 0 else ("qy", "qx")
        qx1 = qx[:, 0] if ax == 0 else qx[0, :]
        qy1 = qy[0, :] if ax == 0 else qy[:, 0]
        coords = {"qx": ("qx", _convert(qx1, unit, q_unit), {"units": units}),
                  "qy": ("qy", _convert(qy1, unit, q_unit), {"units": units})}
    else:
        grid = ("y", "x")
        if qx is not None:
            coords = {"qx": (grid, _convert(qx, unit, q_unit), {"units": units}),
                      "qy": (grid, _convert(qy, unit, q_unit), {"units": units})}
        else:
            coords = {"q": (grid, _convert(qmag, unit, q_unit), {"units": units})}
    data_vars = {k: (grid, v, a) for k, (_, v, a) in data_vars.items()}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _separable(qx, qy) -> bool:
    """Qx varies along one axis only and Qy along the other (a regular grid)."""
    for ax in (0, 1):
        other = 1 - ax
        if (np.allclose(qx, np.take(qx, [0], axis=other)) and
                np.allclose(qy, np.take(qy, [0], axis=ax))):
            return True
    return False


def read_nxcansas_entries(path: PathLike, *, q_unit: str | None = None) -> list[xr.Dataset]:
    """Read every SASdata of every SASentry of an NXcanSAS file, one Dataset each.

    Parameters
    ----------
    path : path-like
        The NXcanSAS HDF5 file (opened read-only).
    q_unit : {"1/nm", "1/angstrom"}, optional
        Convert q (and its resolutions) to this unit; by default q keeps the file's unit.

    Returns
    -------
    list of xarray.Dataset
        In file order. A 1-D SASdata gives ``intensity`` (and ``sigma``, ``dq`` when the
        file has them) against the coordinate ``q``; a 2-D one gives dims ``(qy, qx)`` (or
        ``(qx, qy)``, or the product's own axes such as ``(chi, q)`` for files spotkit wrote)
        on a regular grid, else ``(y, x)`` with 2-D ``qx``/``qy`` coordinates, and ``mask``
        (True where excluded) when the file has one. ``attrs`` hold ``entry``, ``sasdata``,
        ``title``, ``run``, ``sample``, ``instrument``, ``radiation``, ``wavelength_A``,
        ``timestamp``, ``parameters`` (JSON) when present, and ``unit`` (spotkit's
        ``"q_nm^-1"``/``"q_A^-1"``).

    Raises
    ------
    InputFileError
        When the file is not NXcanSAS, or a SASdata lacks I or Q or has mismatched shapes;
        the error names the file and the field.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from spotkit.io import write_nxcansas
    >>> q = np.linspace(0.1, 2.0, 40)
    >>> path = write_nxcansas(pathlib.Path(tempfile.mkdtemp()) / "series.h5",
    ...                       (q, np.stack([1 / q**2, 2 / q**2])), q_unit="1/nm",
    ...                       title="anneal")
    >>> for ds in read_nxcansas_entries(path):
    ...     print(ds.attrs["entry"], ds.sizes["q"])
    sasentry01 40
    sasentry02 40
    """
    return [ds for ds, _ in _read_blocks(path, _check_q_unit(q_unit))]


def _read_blocks(path, q_unit, entry=None) -> list[tuple[xr.Dataset, dict]]:
    """(Dataset, per-step coordinates spotkit stored) for every SASdata of the file.

    ``entry`` (a group name or a position) reads only that SASentry.
    """
    path = check_exists(path)
    out: list[tuple[xr.Dataset, dict]] = []
    with open_hdf5(path) as f:
        entries = _find_entries(f, path)
        if not entries:
            raise InputFileError(
                path, "is not an NXcanSAS file: it has no SASentry group (top-level "
                f"objects: {sorted(f)[:10]}).", field="/", hint=_NOT_NXCANSAS_HINT)
        if entry is not None:
            entries = [_pick_entry(path, entries, entry)]
        for entry in entries:
            blocks = _find_sasdata(entry)
            if not blocks:
                raise InputFileError(
                    path, f"SASentry {entry.name} has no SASdata group (it has "
                    f"{sorted(entry)}).", field=entry.name,
                    hint="Every SASentry needs a SASdata group (@canSAS_class='SASdata') "
                    "with I and Q; re-export the file.")
            meta = _entry_metadata(entry)
            steps = _step_coords(entry)
            out.extend((_read_sasdata(path, grp, q_unit, meta), steps) for grp in blocks)
    return out


def read_nxcansas(path: PathLike, *, entry: str | int | None = None,
                  q_unit: str | None = None) -> xr.Dataset:
    """Read an NXcanSAS file into one Dataset; a time series is stacked along one dimension.

    The stacking rule: when the file holds several SASdata (one per SASentry, as spotkit
    writes a time series) that are all 1-D, or all 2-D, on the **same q grid** (same shape,
    values equal within 1e-9 relative, same units), they are stacked along one dimension:
    the file's ``@spotkit_series_dim`` (e.g. ``frame``) for files spotkit wrote, else
    ``entry``. Its coordinates are the entry names (``entry``), ``title``, ``run``,
    ``timestamp`` (datetime64, when every entry has one) and the per-step coordinates
    spotkit stored (``time``...). Files whose entries differ in grid cannot be stacked:
    pick one with ``entry=``, or read them all with :func:`read_nxcansas_entries`.

    Parameters
    ----------
    path : path-like
        The NXcanSAS HDF5 file (opened read-only).
    entry : str or int, optional
        Read only this SASentry (its group name, e.g. ``"sasentry01"``, or its position).
    q_unit : {"1/nm", "1/angstrom"}, optional
        Convert q to this unit; by default q keeps the file's unit.

    Returns
    -------
    xarray.Dataset
        ``intensity`` (and ``sigma``, ``dq``, ``mask``) against ``q`` (1-D) or two q axes
        (2-D), see :func:`read_nxcansas_entries`; with a leading series dimension for a
        stacked series.

    Raises
    ------
    InputFileError
        When the file is not NXcanSAS, a field is missing or inconsistent, ``entry`` is not
        in the file, or the entries cannot be stacked.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from spotkit.io import write_nxcansas
    >>> q = np.linspace(0.01, 0.2, 40)  # 1/angstrom
    >>> path = write_nxcansas(pathlib.Path(tempfile.mkdtemp()) / "series.h5",
    ...                       (q, np.stack([1 / q, 2 / q, 3 / q])), q_unit="1/angstrom")
    >>> ds = read_nxcansas(path, q_unit="1/nm")  # the three entries stacked, q converted
    >>> ds["intensity"].dims, round(float(ds.q.max()), 3)
    (('frame', 'q'), 2.0)
    >>> curve = ds["intensity"].sel(q=0.5, method="nearest")  # .plot() in JupyterLab
    """
    path = check_exists(path)
    pairs = _read_blocks(path, _check_q_unit(q_unit), entry)
    blocks = [ds for ds, _ in pairs]
    with h5py.File(path, "r") as f:
        series_dim = _text(f.attrs.get("spotkit_series_dim"))
    if len(blocks) == 1 and not series_dim:
        return blocks[0]
    problem = _stack_problem(blocks)
    if problem:
        raise InputFileError(
            path, f"holds {len(blocks)} SASdata blocks that cannot be stacked into one "
            f"series: {problem}.", field="/",
            hint="Read one with read_nxcansas(path, entry=...) or all of them with "
            "read_nxcansas_entries(path).")
    return _stack(blocks, [steps for _, steps in pairs], series_dim or "entry")


def _stack_problem(blocks) -> str | None:
    first = blocks[0]
    for b in blocks[1:]:
        if b["intensity"].dims != first["intensity"].dims:
            return (f"{b.attrs['entry']} has dims {b['intensity'].dims}, "
                    f"{first.attrs['entry']} has {first['intensity'].dims}")
        for name, c in first.coords.items():
            other = b.coords.get(name)
            if other is None or other.shape != c.shape or not np.allclose(
                    other.values, c.values, rtol=1e-9, atol=0, equal_nan=True):
                return f"{b.attrs['entry']} has another {name} grid than {first.attrs['entry']}"
            if other.attrs.get("units") != c.attrs.get("units"):
                return f"{b.attrs['entry']} has {name} in other units"
        if set(b.data_vars) != set(first.data_vars):
            return f"{b.attrs['entry']} has fields {sorted(b.data_vars)}"
    return None


def _stack(blocks, steps, series_dim) -> xr.Dataset:
    n = len(blocks)
    base = blocks[0]
    parts = []
    for b in blocks:
        part = b.copy(deep=False)
        part.attrs = {}
        parts.append(part)
    stacked = xr.concat(parts, dim=series_dim,
                        data_vars="all", coords="minimal", compat="override",
                        combine_attrs="drop")
    for var in ("dq", "dq_width", "dq_length", "q_sigma"):
        if var in stacked and series_dim in stacked[var].dims:
            stacked[var] = stacked[var].isel({series_dim: 0}, drop=True)
    for var in stacked.data_vars:
        stacked[var].attrs = dict(base[var].attrs)
    for name in base.coords:
        stacked[name].attrs = dict(base[name].attrs)
    coords: dict[str, tuple[Any, ...]] = {
        "entry": (series_dim, [b.attrs["entry"] for b in blocks]),
        "title": (series_dim, [b.attrs.get("title", "") for b in blocks]),
        "run": (series_dim, [b.attrs.get("run", "") for b in blocks]),
    }
    stamps = [b.attrs.get("timestamp") for b in blocks]
    if all(stamps):
        try:
            parsed = [datetime.fromisoformat(str(s).replace("Z", "+00:00")) for s in stamps]
            coords["timestamp"] = (series_dim, np.array(
                [(p.astimezone(UTC) if p.tzinfo else p).replace(tzinfo=None) for p in parsed],
                dtype="datetime64[us]"))
        except ValueError:
            coords["timestamp"] = (series_dim, [str(s) for s in stamps])
    for name in steps[0]:
        if all(name in s for s in steps):
            values = np.array([s[name][0] for s in steps])
            unit = steps[0][name][1]
            coords[name] = (series_dim, values, {"units": unit} if unit else {})
    if series_dim not in coords:
        coords[series_dim] = (series_dim, np.arange(n))
    stacked = stacked.assign_coords(coords)
    common = {}
    for key, value in base.attrs.items():
        if key in ("entry", "title", "run", "timestamp", "frame_index"):
            continue
        if all(_same(b.attrs.get(key), value) for b in blocks):
            common[key] = value
    common["title"] = _common_title([b.attrs.get("title", "") for b in blocks])
    runs = {b.attrs.get("run", "") for b in blocks}
    if len(runs) == 1:
        common["run"] = runs.pop()
    stacked.attrs = common
    return stacked


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b) or (math.isnan(a) and math.isnan(b))
    return a == b


def _common_title(titles) -> str:
    """The titles' common part: spotkit's "<title> (frame k)" gives back <title>."""
    stripped = {t.rsplit(" (", 1)[0] if t.endswith(")") else t for t in titles}
    return stripped.pop() if len(stripped) == 1 else ""
