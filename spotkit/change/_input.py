"""Validation and coercion of frame series and profile series (shared by every entry point)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["Bands", "Binning", "FrameStack", "Names", "Series", "SeriesLike", "as_series",
           "check_frame", "check_mask"]

#: a series: frames ``(n, y, x)`` or profiles ``(n, q)``, as numpy, dask or xarray (a Dataset
#: with ``intensity`` and optionally ``sigma``)
SeriesLike: TypeAlias = "npt.ArrayLike | xr.DataArray | xr.Dataset"
#: feature names (``detect=``, ``features=``); None: the defaults
Names: TypeAlias = Sequence[str] | None
#: ``bin=``: pixels per side of the square blocks frames are binned by, or "auto"
Binning: TypeAlias = int | Literal["auto"]
#: ``bands=``: finest number of q bands / regions per detector axis, "auto", or 0/None (none)
Bands: TypeAlias = int | Literal["auto"] | None

#: names accepted for the leading (time-like) dimension of xarray inputs
TIME_DIMS = ("frame", "time")


class FrameStack(Protocol):
    """What a series' data offers: a shape and indexing by frame (numpy, dask, xarray)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any, /) -> Any: ...


@dataclass(frozen=True, eq=False)
class Series:
    """A validated series: ``data`` is ``(n, y, x)`` frames or ``(n, q)`` profiles."""

    data: FrameStack  # numpy, dask or xarray-backed array, indexed frame by frame
    kind: str  # "frames" or "profiles"
    time_dim: str
    time: np.ndarray
    axis_dims: tuple[str, ...]
    axis_coords: dict
    sigma: FrameStack | None = None  # (n, q) errors for profiles

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape[1:])

    def item(self, k: int) -> np.ndarray:
        return np.asarray(self.data[k])

    def sigma_item(self, k: int) -> np.ndarray | None:
        return None if self.sigma is None else np.asarray(self.sigma[k], dtype=np.float64)


def _from_xarray(obj, sigma):
    import xarray as xr

    if isinstance(obj, xr.Dataset):
        if "intensity" not in obj:
            raise ValueError(
                f"a Dataset needs an 'intensity' variable (and optionally 'sigma'); it has "
                f"{sorted(obj.data_vars)}"
            )
        if sigma is None and "sigma" in obj:
            sigma = obj["sigma"]
        obj = obj["intensity"]
    if not isinstance(obj, xr.DataArray):
        raise TypeError(f"expected an xarray DataArray or Dataset, got {type(obj).__name__}")
    dims = tuple(obj.dims)
    if obj.ndim not in (2, 3):
        raise ValueError(
            f"the series must have dims (frame or time, q) or (frame or time, y, x); got {dims}"
        )
    if dims[0] not in TIME_DIMS:
        raise ValueError(
            f"the first dimension must be one of {list(TIME_DIMS)} (one entry per frame or time "
            f"step); got dims {dims}. Transpose the array so that time comes first."
        )
    time = np.asarray(obj[dims[0]].values) if dims[0] in obj.coords else np.arange(obj.shape[0])
    axis_coords = {d: np.asarray(obj[d].values) for d in dims[1:] if d in obj.coords}
    if sigma is not None and hasattr(sigma, "dims"):
        if tuple(sigma.dims) != dims:
            raise ValueError(f"sigma dims {tuple(sigma.dims)} differ from the intensity's {dims}")
        sigma = sigma.data
    return obj.data, dims[0], time, dims[1:], axis_coords, sigma


def as_series(series: SeriesLike, *, sigma: SeriesLike | None = None) -> Series:
    """Validate ``series`` and return a :class:`Series` (no data is read beyond shapes)."""
    import xarray as xr

    if isinstance(series, xr.DataArray | xr.Dataset):
        data, tdim, time, axis_dims, axis_coords, sigma = _from_xarray(series, sigma)
    elif isinstance(series, list | tuple):
        if len(series) == 0:
            raise ValueError("the series is empty: pass at least one frame or profile")
        shapes = {np.shape(s) for s in series}
        if len(shapes) > 1:
            raise ValueError(f"frames of mixed shape in the series: {sorted(shapes)}")
        dtypes = {np.asarray(s).dtype.kind for s in series}
        if len(dtypes) > 1:
            raise ValueError(f"frames of mixed dtype kinds in the series: {sorted(dtypes)}")
        data = np.stack([np.asarray(s) for s in series])
        tdim, time, axis_dims, axis_coords = "frame", np.arange(len(series)), (), {}
    else:
        if not hasattr(series, "shape") or not hasattr(series, "ndim"):
            series = np.asarray(series)
        data = series
        tdim, time, axis_dims, axis_coords = "frame", np.arange(series.shape[0] if series.ndim
                                                                else 0), (), {}
    if data.ndim not in (2, 3):
        raise ValueError(
            "the series must be 3-D (frame, y, x) frames or 2-D (frame, q) profiles; "
            f"got shape {tuple(data.shape)}"
        )
    if data.shape[0] == 0:
        raise ValueError("the series is empty: pass at least one frame or profile")
    if min(data.shape[1:]) == 0:
        raise ValueError(f"frames or profiles of size zero: shape {tuple(data.shape)}")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise TypeError(f"the series must hold integers or floats, got dtype {data.dtype}")
    kind = "frames" if data.ndim == 3 else "profiles"
    if not axis_dims:
        axis_dims = ("y", "x") if kind == "frames" else ("q",)
    if sigma is not None:
        if kind != "profiles":
            raise ValueError("sigma is only used with (frame, q) profiles")
        if tuple(np.shape(sigma)) != tuple(data.shape):
            raise ValueError(f"sigma shape {np.shape(sigma)} differs from the profiles' "
                             f"{tuple(data.shape)}")
    return Series(data=data, kind=kind, time_dim=tdim, time=time, axis_dims=tuple(axis_dims),
                  axis_coords=axis_coords, sigma=_as_stack(sigma))


def _as_stack(values: Any) -> FrameStack | None:
    """Values indexable frame by frame: numpy and dask arrays as they are, others as numpy."""
    if values is None:
        return None
    if hasattr(values, "shape") and hasattr(values, "__getitem__"):
        return values
    return np.asarray(values)


def check_frame(item: npt.ArrayLike, *, shape: tuple[int, ...] | None = None,
                index: int | None = None) -> np.ndarray:
    """A frame or profile as an array; NaN, infinities or a shape change raise ValueError."""
    a = np.asarray(item)
    where = "" if index is None else f" (frame {index})"
    if a.ndim not in (1, 2):
        raise ValueError(f"a frame must be 2-D (y, x) or a profile 1-D (q); got shape "
                         f"{a.shape}{where}")
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"frame shape {a.shape}{where} differs from the series' {tuple(shape)}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(
            f"the data contain NaN or infinite values{where}; mark bad pixels with a mask (or a "
            "negative value) instead"
        )
    if a.dtype.kind not in "iuf":
        raise TypeError(f"frames must hold integers or floats, got dtype {a.dtype}{where}")
    return a


def check_mask(mask: npt.ArrayLike | None, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask (True = invalid) of ``shape``, or all False."""
    if mask is None:
        return np.zeros(shape, dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(shape):
        raise ValueError(f"mask shape {m.shape} differs from the frame shape {tuple(shape)}")
    return m
