"""NXcanSAS: the canSAS standard for reduced small-angle scattering data, read and written.

NXcanSAS (a NeXus application definition) stores reduced SAS data in HDF5: every
``SASentry`` group (``NX_class="NXentry"``, ``canSAS_class="SASentry"``,
``definition="NXcanSAS"``, with ``title`` and ``run``) holds one or more ``SASdata`` groups
(``NX_class="NXdata"``) whose ``I`` is plotted against ``Q`` (``@signal="I"``,
``@I_axes``, ``@Q_indices``), with optional uncertainties (``I/@uncertainties="Idev"``) and
Q resolutions (``Q/@resolutions="dQ"``), plus optional ``SASsample``, ``SASinstrument``
(``SASsource``) and ``SASprocess`` groups.

spotkit writes

* a 1-D profile as one ``SASentry`` (``sasentry01``);
* a time series (frame x q) as **one SASentry per time step** (``sasentry01``,
  ``sasentry02``...), each with its frame index, its coordinate values (time...) and, when
  known, an ISO-8601 timestamp;
* a 2-D product (``(qy, qx)`` maps, GISAXS ``(q_oop, q_ip)`` maps, ``(chi, q)`` cakes) as
  ``I_axes="Q,Q"`` with per-pixel ``Qx`` and ``Qy`` fields, the layout of the canSAS 2012
  examples, of Mantid and of sasdata's own writer; the product's 1-D axes are kept beside
  them so that spotkit reads back the same grid.

Files are written atomically (a temporary file in the same folder, renamed into place),
so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from spotkit.errors import InputFileError

from ._h5 import check_exists, logger, open_hdf5

__all__ = ["read_nxcansas", "read_nxcansas_entries", "write_nxcansas"]

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


# -- writing ---------------------------------------------------------------------------


def _str(group, key, value):
    group.create_dataset(key, data=str(value), dtype=h5py.string_dtype())


def _as_dataset(data, *, q_unit) -> tuple[xr.Dataset, str]:
    """Normalise the writer's input to a Dataset with ``intensity`` (+ ``sigma``, ``dq``)."""
    if isinstance(data, xr.DataArray):
        name = data.name or "intensity"
        ds = data.to_dataset(name="intensity")
        if name != "intensity":
            ds.attrs.setdefault("intensity_name", name)
        ds.attrs.update(data.attrs)
    elif isinstance(data, xr.Dataset):
        ds = data
        if "intensity" not in ds.data_vars:
            for alt in ("I", "i"):
                if alt in ds.data_vars:
                    ds = ds.rename({alt: "intensity"})
                    break
            else:
                raise ValueError(
                    "the Dataset has no 'intensity' variable (nor 'I'); it has "
                    f"{sorted(ds.data_vars)}. Pass spotkit.scattering.integrate_frames' output "
                    "or name the intensity 'intensity'."
                )
        for name, alts in (("sigma", ("Idev", "error", "sigma_intensity")), ("dq", ("dQ",))):
            if name not in ds.data_vars:
                for alt in alts:
                    if alt in ds.data_vars:
                        ds = ds.rename({alt: name})
                        break
    elif isinstance(data, tuple | list) and 2 <= len(data) <= 4:
        if q_unit is None:
            raise ValueError(
                "plain arrays carry no unit: pass q_unit='1/nm' or q_unit='1/angstrom'"
            )
        arrays = [None if a is None else np.asarray(a, dtype=np.float64) for a in data]
        q, intensity = arrays[0], arrays[1]
        if q.ndim != 1:
            raise ValueError(f"q must be 1-D, got shape {q.shape}")
        if intensity.ndim not in (1, 2) or intensity.shape[-1] != q.size:
            raise ValueError(
                f"I must have shape (n_q,) or (n_steps, n_q) with n_q={q.size}, "
                f"got {intensity.shape}"
            )
        dims = ("q",) if intensity.ndim == 1 else ("frame", "q")
        ds = xr.Dataset({"intensity": (dims, intensity)}, coords={"q": q})
        if len(arrays) > 2 and arrays[2] is not None:
            if arrays[2].shape != intensity.shape:
                raise ValueError(f"dI has shape {arrays[2].shape}, I has {intensity.shape}")
            ds["sigma"] = (dims, arrays[2])
        if len(arrays) > 3 and arrays[3] is not None:
            if arrays[3].shape != q.shape:
                raise ValueError(f"dQ has shape {arrays[3].shape}, q has {q.shape}")
            ds["dq"] = (("q",), arrays[3])
        if intensity.ndim == 2:
            ds = ds.assign_coords(frame=np.arange(intensity.shape[0]))
    else:
        raise TypeError(
            "data must be an xarray Dataset or DataArray, or a tuple (q, I[, dI[, dQ]]); "
            f"got {type(data).__name__}"
        )
    return ds, ds.attrs.get("intensity_name", "intensity")


def _is_axis(dim) -> bool:
    """Whether a dimension name looks like an axis of a product (q, qx, q_ip, chi...)."""
    d = str(dim).lower()
    return d == "q" or d.startswith(("chi", "azim")) or (
        d.startswith("q") and (len(d) <= 3 or d[1] == "_"))


def _dim_unit(ds, dim, q_unit) -> tuple[str, str]:
    """("q", unit) or ("angle", unit) for a 1-D axis of the product."""
    coord = ds.coords.get(dim)
    attrs = coord.attrs if coord is not None else {}
    unit = attrs.get("units") or attrs.get("unit")
    if str(dim).lower().startswith(("chi", "azim", "phi")):
        return "angle", _ANGLE_UNITS.get(str(unit or "degree").strip().lower(), "degree")
    if str(ds.attrs.get("unit", "")).startswith("2th") or "theta" in str(unit).lower():
        raise ValueError(
            "NXcanSAS stores intensity against q; this product is against 2theta. "
            "Integrate with unit='q_nm^-1' or 'q_A^-1'."
        )
    canon = _canonical_q_unit(unit) or _canonical_q_unit(ds.attrs.get("unit")) or q_unit
    if canon is None:
        raise ValueError(
            f"the unit of axis {dim!r} is unknown (attrs {dict(attrs)!r}); set "
            f"data[{dim!r}].attrs['units'] = '1/nm' (or '1/angstrom'), or pass q_unit=..."
        )
    return "q", canon


def _timestamps(ds, series_dim, n, timestamps) -> list[str | None]:
    if timestamps is not None:
        out = [None if t is None else _iso(t) for t in timestamps]
        if len(out) != n:
            raise ValueError(f"timestamps has {len(out)} values for {n} time steps")
        return out
    for coord in ds.coords.values():
        if coord.dims == (series_dim,) and np.issubdtype(coord.dtype, np.datetime64):
            return [_iso(t) for t in coord.values]
    start = ds.attrs.get("start_time")
    time = ds.coords.get("time")
    if start and time is not None and time.dims == (series_dim,) and np.issubdtype(
        time.dtype, np.number
    ):
        try:
            t0 = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        except ValueError:
            return [None] * n
        if t0.tzinfo is None:
            t0 = t0.replace(tzinfo=UTC)
        return [(t0 + timedelta(seconds=float(s))).isoformat() for s in time.values]
    return [None] * n


def _iso(t) -> str:
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat()
    if isinstance(t, np.datetime64):
        return np.datetime_as_string(t, unit="us") + "+00:00"
    return str(t)


def _write_common(entry, *, title, run, sample, instrument, radiation, wavelength_a,
                  parameters, date):
    from spotkit._version import __version__

    _str(entry, "definition", "NXcanSAS")
    _str(entry, "title", title)
    _str(entry, "run", run)
    if sample is not None:
        grp = entry.create_group("sassample")
        grp.attrs.update({"NX_class": "NXsample", "canSAS_class": "SASsample"})
        _str(grp, "name", sample)
    grp = entry.create_group("sasinstrument")
    grp.attrs.update({"NX_class": "NXinstrument", "canSAS_class": "SASinstrument"})
    _str(grp, "name", instrument or "unknown")
    src = grp.create_group("sassource")
    src.attrs.update({"NX_class": "NXsource", "canSAS_class": "SASsource"})
    _str(src, "radiation", radiation)
    low = radiation.lower()
    _str(src, "probe", "x-ray" if "x-ray" in low else "neutron" if "neutron" in low else low)
    if wavelength_a is not None:
        d = src.create_dataset("incident_wavelength", data=float(wavelength_a))
        d.attrs["units"] = "angstrom"
    proc = entry.create_group("sasprocess")
    proc.attrs.update({"NX_class": "NXprocess", "canSAS_class": "SASprocess"})
    _str(proc, "name", "spotkit")
    _str(proc, "date", date)
    _str(proc, "description", f"reduced with spotkit {__version__}")
    _str(proc, "version", __version__)
    if parameters:
        _str(proc, "parameters", json.dumps(parameters, sort_keys=True, default=str))


def _write_sasdata(entry, *, intensity, sigma, dq, axes, i_units, mask=None):
    """One SASdata group. ``axes`` is a list of (dim, kind, unit, values) per I dimension."""
    grp = entry.create_group("sasdata")
    grp.attrs.update({"NX_class": "NXdata", "canSAS_class": "SASdata", "signal": "I"})
    i = grp.create_dataset("I", data=intensity)
    i.attrs["units"] = i_units
    if sigma is not None:
        i.attrs["uncertainties"] = "Idev"
        grp.create_dataset("Idev", data=sigma).attrs["units"] = i_units
    if len(axes) == 1:
        (_dim, _kind, unit, values), = axes
        grp.attrs["I_axes"] = "Q"
        grp.attrs["Q_indices"] = np.array([0], dtype=np.int32)
        q = grp.create_dataset("Q", data=values)
        q.attrs["units"] = unit
        if dq is not None:
            q.attrs["resolutions"] = "dQ"
            grp.create_dataset("dQ", data=dq).attrs["units"] = unit
        return grp
    # 2-D: per-pixel Qx (along the columns) and Qy (along the rows), like canSAS 2012/Mantid
    (ydim, ykind, yunit, yv), (xdim, xkind, xunit, xv) = axes
    if ykind == "angle" and xkind == "q":  # cake (chi, q)
        chi = np.deg2rad(yv) if yunit == "degree" else np.asarray(yv)
        qx = xv[None, :] * np.cos(chi)[:, None]
        qy = xv[None, :] * np.sin(chi)[:, None]
        q_unit = xunit
    elif ykind == "q" and xkind == "q":
        xv_conv = xv if xunit == yunit else xv * (_Q_TO_INV_A[xunit] / _Q_TO_INV_A[yunit])
        qx = np.broadcast_to(xv_conv[None, :], (yv.size, xv.size))
        qy = np.broadcast_to(yv[:, None], (yv.size, xv.size))
        q_unit = yunit
    else:
        raise ValueError(
            f"a 2-D product must be (qy, qx) or (chi, q); got axes ({ydim!r}: {ykind}, "
            f"{xdim!r}: {xkind})"
        )
    grp.attrs["I_axes"] = "Q,Q"
    grp.attrs["Q_indices"] = np.array([0, 1], dtype=np.int32)
    for name, arr in (("Qx", qx), ("Qy", qy)):
        grp.create_dataset(name, data=np.ascontiguousarray(arr)).attrs["units"] = q_unit
    # the product's own 1-D axes, so spotkit reads back the same grid
    grp.attrs["spotkit_axes"] = f"{ydim},{xdim}"
    for dim, _kind, unit, values in axes:
        grp.create_dataset(dim, data=values).attrs["units"] = unit
    if mask is not None:
        grp.attrs["mask"] = "Mask"
        grp.attrs["Mask_indices"] = np.array([0, 1], dtype=np.int32)
        grp.create_dataset("Mask", data=np.asarray(mask, dtype=bool))
    return grp


def write_nxcansas(
    path,
    data,
    *,
    title: str | None = None,
    run: str | None = None,
    sample: str | None = None,
    instrument: str | None = None,
    radiation: str = "Synchrotron X-ray Source",
    wavelength_A: float | None = None,
    intensity_units: str | None = None,
    q_unit: str | None = None,
    series_dim: str | None = None,
    timestamps: Sequence | None = None,
    parameters: Mapping | None = None,
    overwrite: bool = False,
) -> Path:
    """Write reduced SAS data as an NXcanSAS file (one SASentry per time step).

    Parameters
    ----------
    path : path-like
        The ``.h5`` file to write.
    data : xarray.Dataset, xarray.DataArray or tuple
        * the output of :func:`spotkit.scattering.integrate_frames`: ``intensity`` and
          ``sigma`` with dims ``(frame, q)`` or ``(q,)``, optional ``dq``;
        * a 2-D product with dims ``(qy, qx)`` (any two q axes, e.g. ``(q_oop, q_ip)``) or
          ``(chi, q)`` (a cake), with or without a leading time-step dimension;
        * a tuple ``(q, I[, dI[, dQ]])`` of arrays (``I`` of shape ``(n_q,)`` or
          ``(n_steps, n_q)``); then ``q_unit`` is required.
    title, run, sample, instrument : str, optional
        Metadata; default from ``data.attrs`` (``title``, ``run``/``dataset_id``,
        ``sample``, ``instrument``/``beamline``), else ``"spotkit reduction"``/``"unknown"``.
    radiation : str
        NXcanSAS source type, default ``"Synchrotron X-ray Source"``.
    wavelength_A : float, optional
        Incident wavelength in angstrom; default from ``data.attrs`` (``wavelength_A`` or
        ``energy_kev``).
    intensity_units : str, optional
        Units of I, e.g. ``"1/cm"`` (absolute) or ``"arbitrary"`` (the default, unless
        ``data["intensity"].attrs["units"]`` says otherwise).
    q_unit : str, optional
        Unit of q when the data do not say it (``"1/nm"``, ``"1/angstrom"``).
    series_dim : str, optional
        The time-step dimension; default the one dimension that is not an axis of the
        product (``frame`` for ``integrate_frames`` output).
    timestamps : sequence, optional
        One ISO-8601 string or datetime per time step; default from a datetime coordinate,
        or from ``attrs["start_time"]`` plus a ``time`` coordinate in seconds.
    parameters : mapping, optional
        Reduction parameters and provenance, stored as JSON in ``sasprocess/parameters``
        (merged over ``data.attrs["provenance"]`` when that is a mapping).
    overwrite : bool
        Replace an existing file; by default an existing file is an error.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False.
    ValueError, TypeError
        When the data cannot be written as NXcanSAS (no q axis, unknown unit, bad shapes).

    Examples
    --------
    >>> import numpy as np
    >>> q = np.linspace(0.1, 2.0, 50); I = 1 / q**2
    >>> write_nxcansas("profile.h5", (q, I, np.sqrt(I)), q_unit="1/nm")  # doctest: +SKIP
    >>> write_nxcansas("series.h5", integrate_frames(frames, ai), sample="P3HT")  # doctest: +SKIP
    """
    path = Path(path).expanduser().absolute()
    q_unit = _check_q_unit(q_unit)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass overwrite=True to replace it, or choose another name."
        )
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name ending in .h5")
    ds, _ = _as_dataset(data, q_unit=q_unit)
    intensity = ds["intensity"]
    attrs = {**ds.attrs, **intensity.attrs}
    dims = list(intensity.dims)
    if series_dim is None:
        steps = [d for d in dims if not _is_axis(d)]
        if len(steps) > 1:
            raise ValueError(
                f"cannot tell the time-step dimension among {tuple(dims)}; pass series_dim=..."
            )
        series_dim = steps[0] if steps else None
    if series_dim is not None and series_dim not in dims:
        raise ValueError(f"series_dim {series_dim!r} is not a dimension of the data {dims}")
    axis_dims = [d for d in dims if d != series_dim]
    if len(axis_dims) not in (1, 2):
        raise ValueError(
            f"the data have dims {tuple(dims)}: expected (q,), (step, q), (qy, qx), (chi, q) "
            "or (step, qy, qx); name the time-step dimension with series_dim=..."
        )
    axes = []
    for d in axis_dims:
        kind, unit = _dim_unit(ds, d, q_unit)
        values = np.asarray(ds[d].values if d in ds.coords else np.arange(ds.sizes[d]),
                            dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"axis {d!r} must be 1-D")
        axes.append((str(d), kind, unit, values))
    if len(axes) == 1 and axes[0][1] != "q":
        raise ValueError(f"a 1-D product must be against q, not {axes[0][0]!r}")
    bad = [d for d, *_ in axes if d in _RESERVED] if len(axes) == 2 else []
    if bad:
        raise ValueError(f"axis names {bad} clash with NXcanSAS field names; rename them")
    order = ([series_dim] if series_dim else []) + axis_dims

    def values_of(name):
        if name not in ds.data_vars:
            return None
        var = ds[name]
        return np.asarray(var.transpose(*[d for d in order if d in var.dims]).values,
                          dtype=np.float64)

    inten, sigma = values_of("intensity"), values_of("sigma")
    if sigma is not None and sigma.shape != inten.shape:
        raise ValueError(f"sigma has shape {sigma.shape}, intensity has {inten.shape}")
    dq = None
    if "dq" in ds.data_vars:
        if ds["dq"].dims != tuple(axis_dims[-1:]) or len(axes) != 1:
            raise ValueError(f"dq must have dims ({axis_dims[-1]!r},), got {ds['dq'].dims}")
        dq = np.asarray(ds["dq"].values, dtype=np.float64)
    mask = values_of("mask") if "mask" in ds.data_vars and len(axes) == 2 else None
    n_steps = ds.sizes[series_dim] if series_dim else 1

    i_units = intensity_units or intensity.attrs.get("units") or "arbitrary"
    title = title or attrs.get("title") or "spotkit reduction"
    run = run or attrs.get("run") or attrs.get("dataset_id") or "unknown"
    sample = sample if sample is not None else attrs.get("sample")
    instrument = instrument or attrs.get("instrument") or attrs.get("beamline")
    if instrument == "unknown" and attrs.get("beamline"):
        instrument = attrs["beamline"]
    if wavelength_A is None:
        wavelength_A = attrs.get("wavelength_A")
        if wavelength_A is None and attrs.get("energy_kev"):
            wavelength_A = _HC_KEV_A / float(attrs["energy_kev"])
    params = dict(attrs["provenance"]) if isinstance(attrs.get("provenance"), Mapping) else {}
    params.update(parameters or {})
    for key in ("unit", "npt", "method"):
        if key in ds.attrs and key not in params:
            params[key] = ds.attrs[key]
    date = datetime.now(UTC).replace(microsecond=0).isoformat()
    stamps = _timestamps(ds, series_dim, n_steps, timestamps) if series_dim else [
        _iso(timestamps[0]) if timestamps else None]
    step_coords = {
        name: c for name, c in ds.coords.items()
        if series_dim and c.dims == (series_dim,) and name != series_dim
        and np.issubdtype(c.dtype, np.number)
    }
    if series_dim and series_dim in ds.coords and np.issubdtype(ds[series_dim].dtype, np.number):
        step_coords = {series_dim: ds[series_dim], **step_coords}
    width = max(2, len(str(n_steps)))

    def write(f):
        f.attrs.update({"NX_class": "NXroot", "creator": "spotkit", "file_time": date,
                        "file_name": path.name, "default": f"sasentry{1:0{width}d}"})
        if series_dim:
            f.attrs["spotkit_series_dim"] = str(series_dim)
        for k in range(n_steps):
            name = f"sasentry{k + 1:0{width}d}"
            entry = f.create_group(name)
            entry.attrs.update({"NX_class": "NXentry", "canSAS_class": "SASentry",
                                "version": "1.1", "default": "sasdata"})
            step_title = title if not series_dim else f"{title} ({series_dim} {k})"
            _write_common(entry, title=step_title, run=run, sample=sample,
                          instrument=instrument, radiation=radiation, wavelength_a=wavelength_A,
                          parameters=params, date=date)
            sl = (k,) if series_dim else ()
            grp = _write_sasdata(
                entry, intensity=inten[sl], sigma=None if sigma is None else sigma[sl], dq=dq,
                axes=axes, i_units=i_units, mask=None if mask is None else (
                    mask[sl] if mask.ndim == inten.ndim else mask),
            )
            if stamps[k]:
                grp.attrs["timestamp"] = stamps[k]
                entry.attrs["timestamp"] = stamps[k]
            if series_dim:
                entry.attrs["frame_index"] = np.int64(k)
                note = entry.create_group("sasnote")
                note.attrs.update({"NX_class": "NXnote", "canSAS_class": "SASnote"})
                _str(note, "SASnote", f"time step {k} of {n_steps} ({series_dim})")
                for cname, coord in step_coords.items():
                    d = note.create_dataset(f"coord_{cname}", data=coord.values[k])
                    unit = coord.attrs.get("units")
                    if unit:
                        d.attrs["units"] = str(unit)

    _atomic_write(path, write)
    logger.info("wrote NXcanSAS %s (%d entr%s)", path, n_steps, "y" if n_steps == 1 else "ies")
    return path


def _atomic_write(path: Path, write) -> None:
    """Run ``write(h5file)`` on a temporary file beside ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        dims = []
        coords = {"q": ("q", qv, {"units": out_unit or raw or "unknown", "long_name": "q"})}
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
        data_vars = {"intensity": (dims, intensity, {"units": i_unit})}
        if sigma is not None:
            data_vars["sigma"] = (dims, sigma, {"units": i_unit})
        res = _names(_attr(obj, "resolutions"))
        unc_q = _names(_attr(obj, "uncertainties", "uncertainty"))
        for names, targets in ((res, ("dq",) if len(res) == 1 else ("dq_width", "dq_length")),
                               (unc_q, ("q_sigma",))):
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
    coords: dict = {}
    if (len(sk_axes) == 2 and all(isinstance(grp.get(a), h5py.Dataset) for a in sk_axes)
            and tuple(grp[a].shape[0] for a in sk_axes) == shape):
        dims = tuple(sk_axes)
        for a in sk_axes:
            vals, u = np.asarray(grp[a][()], dtype=np.float64), _units(grp[a])
            cu = _canonical_q_unit(u)
            if cu is not None:
                vals, u = _convert(vals, cu, q_unit), q_unit or cu
            coords[a] = (a, vals, {"units": u or ""})
    elif qx is not None and _separable(qx, qy):
        ax = 0 if np.ptp(qx[:, 0]) > 0 else 1
        dims = ("qx", "qy") if ax == 0 else ("qy", "qx")
        qx1 = qx[:, 0] if ax == 0 else qx[0, :]
        qy1 = qy[0, :] if ax == 0 else qy[:, 0]
        coords = {"qx": ("qx", _convert(qx1, unit, q_unit), {"units": units}),
                  "qy": ("qy", _convert(qy1, unit, q_unit), {"units": units})}
    else:
        dims = ("y", "x")
        if qx is not None:
            coords = {"qx": (dims, _convert(qx, unit, q_unit), {"units": units}),
                      "qy": (dims, _convert(qy, unit, q_unit), {"units": units})}
        else:
            coords = {"q": (dims, _convert(qmag, unit, q_unit), {"units": units})}
    data_vars = {k: (dims, v, a) for k, (_, v, a) in data_vars.items()}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _separable(qx, qy) -> bool:
    """Qx varies along one axis only and Qy along the other (a regular grid)."""
    for ax in (0, 1):
        other = 1 - ax
        if (np.allclose(qx, np.take(qx, [0], axis=other)) and
                np.allclose(qy, np.take(qy, [0], axis=ax))):
            return True
    return False


def read_nxcansas_entries(path, *, q_unit: str | None = None) -> list[xr.Dataset]:
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
    >>> for ds in read_nxcansas_entries("VTMA.h5"):  # doctest: +SKIP
    ...     print(ds.attrs["title"], ds.sizes["q"])
    """
    return [ds for ds, _ in _read_blocks(path, _check_q_unit(q_unit))]


def _read_blocks(path, q_unit, entry=None) -> list[tuple[xr.Dataset, dict]]:
    """(Dataset, per-step coordinates spotkit stored) for every SASdata of the file.

    ``entry`` (a group name or a position) reads only that SASentry.
    """
    path = check_exists(path)
    out = []
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


def read_nxcansas(path, *, entry: str | int | None = None,
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
    >>> ds = read_nxcansas("series.h5", q_unit="1/nm")  # doctest: +SKIP
    >>> ds["intensity"].sel(q=0.5, method="nearest").plot()  # doctest: +SKIP
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
    coords = {
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
