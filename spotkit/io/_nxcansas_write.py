"""NXcanSAS writer: 1-D profiles, time series (one SASentry per step) and 2-D products.

The layout is described in :mod:`spotkit.io._nxcansas`. Files are written atomically (a
temporary file in the same folder, renamed into place).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from ._h5 import logger
from ._nxcansas_common import (
    _ANGLE_UNITS,
    _HC_KEV_A,
    _Q_TO_INV_A,
    _RESERVED,
    _canonical_q_unit,
    _check_q_unit,
)

__all__ = ["write_nxcansas"]

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
                    f"{sorted(map(str, ds.data_vars))}. Pass spotkit.scattering."
                    "integrate_frames' output or name the intensity 'intensity'."
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
        if data[0] is None or data[1] is None:
            raise ValueError("q and I are required in (q, I[, dI[, dQ]]); only dI and dQ "
                             "may be None")
        q = np.asarray(data[0], dtype=np.float64)
        intensity = np.asarray(data[1], dtype=np.float64)
        sigma = None if len(data) < 3 or data[2] is None else np.asarray(data[2], np.float64)
        dq = None if len(data) < 4 or data[3] is None else np.asarray(data[3], np.float64)
        if q.ndim != 1:
            raise ValueError(f"q must be 1-D, got shape {q.shape}")
        if intensity.ndim not in (1, 2) or intensity.shape[-1] != q.size:
            raise ValueError(
                f"I must have shape (n_q,) or (n_steps, n_q) with n_q={q.size}, "
                f"got {intensity.shape}"
            )
        dims = ("q",) if intensity.ndim == 1 else ("frame", "q")
        ds = xr.Dataset({"intensity": (dims, intensity)}, coords={"q": q})
        if sigma is not None:
            if sigma.shape != intensity.shape:
                raise ValueError(f"dI has shape {sigma.shape}, I has {intensity.shape}")
            ds["sigma"] = (dims, sigma)
        if dq is not None:
            if dq.shape != q.shape:
                raise ValueError(f"dQ has shape {dq.shape}, q has {q.shape}")
            ds["dq"] = (("q",), dq)
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
    path: str | os.PathLike[str],
    data: xr.Dataset | xr.DataArray | Sequence[ArrayLike | None],
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
    timestamps: Sequence[object] | None = None,
    parameters: Mapping[str, object] | None = None,
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
    A profile from plain arrays:

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> q = np.linspace(0.1, 2.0, 50); I = 1 / q**2
    >>> write_nxcansas(work / "profile.h5", (q, I, np.sqrt(I)), q_unit="1/nm").name
    'profile.h5'

    A reduced series, one SASentry per frame:

    >>> from spotkit.io import load_geometry, open_saxs
    >>> from spotkit.scattering import integrate_frames
    >>> from spotkit.sim import simulate_saxs_series
    >>> truth = simulate_saxs_series(work / "film.h5", n_frames=3, shape=(40, 50),
    ...                              onset_frame=1)
    >>> frames = open_saxs(work / "film.h5")
    >>> iq = integrate_frames(frames, load_geometry(truth.poni_path), npt=30)
    >>> path = write_nxcansas(work / "series.h5", iq, sample="P3HT")
    >>> import h5py
    >>> with h5py.File(path) as f:
    ...     sorted(f)
    ['sasentry01', 'sasentry02', 'sasentry03']
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
    dims = [str(d) for d in intensity.dims]
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
