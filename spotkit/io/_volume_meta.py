"""Open a volume file for :func:`spotkit.io.open_volume`: find the array, its axes and units."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spotkit import kinds
from spotkit.errors import InputFileError

from ._pyramid import read_pyramid
from ._volume import _UNIT_ALIASES, H5_LOCK, Axis, Volume
from ._volume_levels import ArrayLevel, H5Level, ZarrLevel

logger = logging.getLogger("spotkit.io")

_SCAN_NAMES = ("angle", "row", "column")


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
        return _text(value)
    return str(value)


def _unit(value) -> str | None:
    text = _text(value)
    if not text:
        return None
    return _UNIT_ALIASES.get(text.strip().lower(), text.strip())


def _uniform(values: np.ndarray) -> float | None:
    if values.size < 2:
        return None
    step = np.diff(values.astype(float))
    med = float(np.median(step))
    return med if med != 0 else None


def _spacing_attr(attrs, n_axes: int = 3) -> list[float | None] | None:
    for name in ("voxel_size_um", "pixel_size_um", "voxel_size", "pixel_size"):
        if name in attrs:
            vals = np.atleast_1d(np.asarray(attrs[name], dtype=float)).tolist()
            if len(vals) == 1:
                return [float(vals[0])] * n_axes
            if len(vals) == n_axes:
                return [float(v) for v in vals]
    return None


def _h5_axes(f, dset) -> list[Axis]:
    """Axes of an HDF5 dataset: dimension labels and sibling coordinate datasets
    (``/z``, ``/y``, ``/x`` as :func:`spotkit.pipelines.run_tomo` writes them), else a
    ``voxel_size_um``/``pixel_size_um`` attribute (µm)."""
    shape = dset.shape
    labels = [_text(dset.dims[i].label) or "" for i in range(3)]
    names = [lab or default for lab, default in zip(labels, ("z", "y", "x"), strict=True)]
    parent = dset.parent
    fallback = _spacing_attr(dset.attrs)
    axes = []
    for i, name in enumerate(names):
        spacing, units, coords = None, None, None
        scale = None
        if len(dset.dims[i]):  # an attached dimension scale
            scale = dset.dims[i][0]
        elif name in parent and parent[name] is not dset:
            scale = parent[name]
        if scale is not None and scale.ndim == 1 and scale.shape[0] == shape[i]:
            values = np.asarray(scale[()], dtype=float)
            spacing = _uniform(values)
            if spacing is not None:
                spacing = abs(spacing)
                units = _unit(scale.attrs.get("units")) or _UNIT_ALIASES["um"]
        if spacing is None and fallback is not None:
            spacing, units = fallback[i], _UNIT_ALIASES["um"]
        axes.append(Axis(name, int(shape[i]), spacing, units, coords))
    return axes


def scan_axes(scan) -> list[Axis]:
    """Axes of a raw scan's projections (angle in degrees, detector rows and columns in µm)."""
    data = scan["data"]
    shape = tuple(int(n) for n in data.shape)
    theta = np.asarray(scan["theta"].values, dtype=float) if "theta" in scan else None
    px = scan.attrs.get("pixel_size_um")
    py = scan.attrs.get("pixel_size_y_um") or px
    ang_units = _unit(scan["theta"].attrs.get("units")) if theta is not None else None
    if theta is not None and ang_units not in ("deg", None):
        theta = np.degrees(theta)  # radians
    angle = Axis("angle", shape[0], _uniform(theta) if theta is not None else None,
                 "deg" if theta is not None else None,
                 tuple(theta.tolist()) if theta is not None and theta.size == shape[0]
                 else None)
    row = Axis("row", shape[1], float(py) if py else None, "µm" if py else None)
    col = Axis("column", shape[2], float(px) if px else None, "µm" if px else None)
    return [angle, row, col]


def array_axes(array, meta) -> list[Axis]:
    """Axes of an in-memory or remote array: its dims (xarray) and a voxel size in its
    metadata or attributes, in µm."""
    dims = getattr(array, "dims", None)
    names = [str(d) for d in dims] if dims and len(dims) == 3 else ["z", "y", "x"]
    spacing = _spacing_attr(meta) if hasattr(meta, "keys") else None
    shape = tuple(int(n) for n in array.shape)
    return [Axis(n, s, spacing[i] if spacing else None, "µm" if spacing else None)
            for i, (n, s) in enumerate(zip(names, shape, strict=True))]


def remote_axes(dataset, data) -> list[Axis] | None:
    """Axes of a remote dataset's ``data``: a raw scan's angles (its ``theta`` array) and
    pixel size (its metadata), else a voxel size in the array's or the dataset's metadata."""
    meta = dict(getattr(dataset, "metadata", None) or {})
    if dataset.kind == kinds.TOMO_RAW and "theta" in getattr(dataset, "arrays", ()):
        node = dataset["theta"]
        theta = np.asarray(node.read(), dtype=float)
        units = (dict(getattr(node, "metadata", None) or {})).get("units") or "degree"
        n = tuple(int(s) for s in data.shape)
        return scan_axes(_ScanLike(theta, meta, n, units))
    arr_meta = dict(getattr(data, "metadata", None) or {})
    return array_axes(data, {**meta, **arr_meta})


class _ScanLike(dict):
    """What :func:`scan_axes` reads from open_tomo's Dataset, from remote parts."""

    def __init__(self, theta, attrs, shape, units):
        import xarray as xr

        super().__init__(data=np.broadcast_to(np.zeros((), np.uint8), shape),
                         theta=xr.DataArray(theta, dims=("angle",), attrs={"units": units}))
        self.attrs = attrs


def _three_d(f) -> list[str]:
    import h5py

    found: list[str] = []
    f.visititems(lambda name, obj: found.append("/" + name)
                 if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None)
    return found


def open_path_volume(path: Path, *, key: str | None, pyramid: bool,
                     axes: Sequence[Axis] | None, kind: str | None = None) -> Volume:
    """A :class:`Volume` over a file or store (see :func:`spotkit.io.open_volume`)."""
    path = path.expanduser().absolute()
    if not path.exists():
        raise InputFileError(path, "does not exist.", hint="Check the path.")
    if path.suffix == ".zarr" or (path.is_dir() and any(
            (path / m).exists() for m in ("zarr.json", ".zarray", ".zgroup"))):
        return _zarr_volume(path, key=key, pyramid=pyramid, axes=axes)
    if path.suffix == ".npy":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.ndim != 3:
            raise InputFileError(path, f"holds a {arr.ndim}-D array, not a 3-D volume.")
        return Volume([ArrayLevel(arr)], axes=axes, name=path.name)
    import h5py

    if not h5py.is_hdf5(path):
        raise InputFileError(path, "is neither HDF5, zarr nor .npy.",
                             hint="open_volume reads HDF5 volumes and scans, zarr and .npy.")
    f = h5py.File(path, "r", rdcc_nbytes=0)  # chunks are read once per plane: no cache
    try:
        return _h5_volume(f, path, key=key, pyramid=pyramid, axes=axes, kind=kind)
    except BaseException:
        f.close()
        raise


def _h5_volume(f, path: Path, *, key, pyramid, axes, kind) -> Volume:
    raw_key = kinds.raw_layout(kinds.TOMO_RAW).data
    is_scan = key is None and raw_key in f and (kind in (None, kinds.TOMO_RAW))
    if is_scan:
        key = raw_key
    if key is None:
        found = _three_d(f)
        if len(found) != 1:
            raise InputFileError(path, f"holds {len(found)} 3-D datasets; which one to view "
                                 "is unclear.", hint=f"Pass key= one of {found[:20]}.")
        key = found[0]
    dset = f.get(key)
    if dset is None or not hasattr(dset, "shape"):
        raise InputFileError(path, f"has no dataset {key!r}.", field=key)
    if dset.ndim != 3:
        raise InputFileError(path, f"dataset {key!r} is {dset.ndim}-D, not a 3-D volume.",
                             field=key)
    levels: list[Any] = [H5Level(dset, H5_LOCK)]
    closers: list[Any] = [f]
    if is_scan:
        from ._registry import open_tomo

        axes = axes or scan_axes(open_tomo(path))
    else:
        axes = axes or _h5_axes(f, dset)
    if pyramid:
        found_pyr = read_pyramid(path, key=key)
        if found_pyr is not None:
            pyr_levels, meta = found_pyr
            levels += [H5Level(lv, H5_LOCK) if hasattr(lv, "id") else ZarrLevel(lv)
                       for lv in pyr_levels]
            if pyr_levels and hasattr(pyr_levels[0], "file"):
                closers.append(pyr_levels[0].file)
            logger.debug("volume %s: %d pyramid level(s) from %s", path,
                         len(pyr_levels), meta["sidecar"])
    return Volume(levels, axes=axes, value_units=_text(dset.attrs.get("units")),
                  name=f"{path.name}:{key}", source_key=key, closers=closers)


def _zarr_volume(path: Path, *, key, pyramid, axes) -> Volume:
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover - zarr comes with the tomo extra
        raise ImportError(f'reading the zarr store {path} needs zarr: pip install '
                          '"spotkit[tomo]"') from exc
    node: Any
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise InputFileError(path, f"cannot be opened as zarr ({exc}).") from exc
    attrs: dict[str, Any] = dict(node.attrs)
    ms: Any = attrs.get("multiscales")
    if key is not None:
        node = node[key]
    elif hasattr(node, "array_keys"):  # a group: an OME-NGFF multiscale image
        if not ms:
            names = list(node.array_keys())
            if len(names) != 1:
                raise InputFileError(path, f"is a zarr group of {len(names)} arrays and no "
                                     "multiscales metadata.", hint=f"Pass key= one of {names}.")
            node = node[names[0]]
            key = names[0]
    if hasattr(node, "array_keys"):
        paths = [d["path"] for d in ms[0]["datasets"]]
        levels: list[Any] = [ZarrLevel(node[p]) for p in paths]
        axes = axes or _ngff_axes(ms[0], levels[0].shape)
        key = paths[0]
    else:
        levels = [ZarrLevel(node)]
        axes = axes or array_axes(node, dict(node.attrs))
        if pyramid:
            found = read_pyramid(path, key=key)
            if found is not None:
                levels += [ZarrLevel(lv) if not hasattr(lv, "id") else H5Level(lv, H5_LOCK)
                           for lv in found[0]]
    if len(levels[0].shape) != 3:
        raise InputFileError(path, f"holds a {len(levels[0].shape)}-D array, not a 3-D volume.")
    units = attrs.get("units") or getattr(node, "attrs", {}).get("units")
    return Volume(levels, axes=axes, value_units=_text(units), name=path.name,
                  source_key=key)


def _ngff_axes(ms: dict, shape) -> list[Axis]:
    axes_meta = ms.get("axes") or [{"name": n} for n in ("z", "y", "x")]
    scale = [1.0] * 3
    for t in ms["datasets"][0].get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [float(s) for s in t["scale"]][-3:]
    out = []
    for i, a in enumerate(axes_meta[-3:]):
        a = a if isinstance(a, dict) else {"name": str(a)}
        unit = _unit(a.get("unit"))
        out.append(Axis(str(a.get("name", "zyx"[i])), int(shape[i]),
                        scale[i] if unit else None, unit))
    return out
