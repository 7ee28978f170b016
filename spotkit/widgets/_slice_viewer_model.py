"""The state of the slice viewer, in plain Python (no ipywidgets).

:class:`SliceViewerModel` holds a :class:`spotkit.io.Volume` (a reconstructed volume, a raw
scan's projections, or a remote array from ``spotkit serve``), a cursor (one position along
each axis: the three orthogonal planes through it), the grey range, the colour map and a zoom
region per plane. It renders the plane across an axis into PNG (or JPEG) bytes sized to the
display, reading only that plane at the pyramid level the display needs
(:meth:`spotkit.io.Volume.choose_level`); :meth:`SliceViewerModel.render` with
``coarse=True`` reads a coarser level first, for an image at once while the full one is read.
Every read goes through :mod:`spotkit.io`; nothing here touches a widget.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from spotkit.io import Volume, open_volume

logger = logging.getLogger(__name__)

__all__ = ["IMAGE_FORMATS", "Rendered", "SliceViewerModel"]

#: Formats of the image bytes.
IMAGE_FORMATS = ("png", "jpeg")
#: Zoom factors a view offers.
ZOOMS = (1, 2, 4, 8)
#: Pixels sampled (at most, per side) for automatic contrast.
_SAMPLE = 512


@dataclass(frozen=True)
class Rendered:
    """One rendered plane.

    Attributes
    ----------
    data : bytes
        The image (PNG or JPEG).
    format : str
        ``"png"`` or ``"jpeg"``.
    axis, index, level : int
        The plane (full-resolution index) and the pyramid level read.
    size : (int, int)
        Height and width of the image in pixels.
    read_shape : (int, int)
        Shape of the array read at ``level``.
    extent : (float, float)
        Height and width of the shown region in the axes' units (pixels when unknown).
    units : str
        Units of ``extent``.
    read_s, total_s : float
        Seconds spent reading, and from the request to the bytes.
    """

    data: bytes
    format: str
    axis: int
    index: int
    level: int
    size: tuple[int, int]
    read_shape: tuple[int, int]
    extent: tuple[float, float]
    units: str
    read_s: float
    total_s: float


def colormap_lut(name: str) -> np.ndarray:
    """The 256 x 3 uint8 RGB table of a matplotlib colour map.

    Raises
    ------
    ValueError
        For a name matplotlib does not know.

    Examples
    --------
    >>> colormap_lut("gray")[[0, 255]].tolist()
    [[0, 0, 0], [255, 255, 255]]
    """
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colour map {name!r}; choose one of "
                         f"{sorted(matplotlib.colormaps)[:12]}...") from None
    rgba = cmap(np.linspace(0.0, 1.0, 256))
    return (rgba[:, :3] * 255 + 0.5).astype(np.uint8)


def to_uint8(plane: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Scale ``plane`` so that ``vmin`` -> 0 and ``vmax`` -> 255 (clipped; NaN -> 0).

    Examples
    --------
    >>> to_uint8(np.array([[0.0, 5.0, 10.0, np.nan]]), 0, 10).tolist()
    [[0, 128, 255, 0]]
    """
    span = float(vmax) - float(vmin)
    scale = 255.0 / span if span > 0 else 0.0
    out = (plane.astype(np.float32, copy=False) - np.float32(vmin)) * np.float32(scale)
    np.clip(out, 0, 255, out=out)
    out = np.nan_to_num(out, nan=0.0, copy=False)
    return (out + 0.5).astype(np.uint8)


class SliceViewerModel:
    """Three orthogonal planes through a cursor in a volume or scan, rendered for a display.

    Parameters
    ----------
    source : path-like, array-like, catalog Dataset or Volume
        Anything :func:`spotkit.io.open_volume` opens: an HDF5/zarr/``.npy`` volume, a raw
        scan (its projections ``[angle, row, column]``), a 3-D numpy/dask/xarray array or a
        Tiled client array from ``spotkit serve``.
    key : str, optional
        Dataset inside the file.
    axis : {0, 1, 2}
        The plane shown first (across this axis).
    cursor : (int, int, int), optional
        The point the planes go through (default: the middle).
    display : int
        Pixels of the display along an image's longer side; images are never larger.
    cmap : str
        Matplotlib colour map.
    vmin, vmax : float, optional
        Grey range; default: the ``percentiles`` of the first plane shown.
    percentiles : (float, float)
        Of automatic contrast.
    fmt : {"png", "jpeg"}
        Image format.
    pyramid : bool
        Use the volume's pyramid (see :func:`spotkit.io.write_pyramid`).

    Attributes
    ----------
    volume : spotkit.io.Volume
    cursor : list of int
    axis : int
        The current plane's axis.
    vmin, vmax : float
    cmap : str
    regions : dict
        Zoom region per axis, ``(row0, row1, col0, col1)`` in full-resolution pixels, or None.
    last : dict
        The last :class:`Rendered` per axis.

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    >>> model = SliceViewerModel(vol, axis=1, cursor=(1, 2, 3), display=64)
    >>> model.plane().tolist() == vol[:, 2, :].tolist()
    True
    >>> out = model.render()
    >>> out.data[:4], out.size
    (b'\\x89PNG', (4, 8))
    >>> model.describe(1)
    'y = 2 px (2 / 6)'
    """

    def __init__(self, source: Any, *, key: str | None = None, axis: int = 0,
                 cursor: tuple[int, int, int] | None = None, display: int = 512,
                 cmap: str = "gray", vmin: float | None = None, vmax: float | None = None,
                 percentiles: tuple[float, float] = (1.0, 99.5), fmt: str = "png",
                 pyramid: bool = True):
        if fmt not in IMAGE_FORMATS:
            raise ValueError(f"unknown image format {fmt!r}; choose one of {IMAGE_FORMATS}")
        if int(display) < 16:
            raise ValueError(f"display must be at least 16 pixels, got {display!r}")
        self.volume: Volume = open_volume(source, key=key, pyramid=pyramid)
        self.source_path = _source_path(source)
        self.display = int(display)
        self.fmt = fmt
        self.percentiles = self._check_percentiles(percentiles)
        self.cmap = cmap
        self._lut = colormap_lut(cmap)
        self.cursor = [n // 2 for n in self.volume.shape]
        if cursor is not None:
            for ax, i in enumerate(cursor):
                self.set_index(int(i), axis=ax)
        self.axis = self._check_axis(axis)
        self.regions: dict[int, tuple[int, int, int, int] | None] = {0: None, 1: None, 2: None}
        self.last: dict[int, Rendered] = {}
        if vmin is None or vmax is None:
            lo, hi = self.auto_contrast()
            vmin = lo if vmin is None else vmin
            vmax = hi if vmax is None else vmax
        self.set_contrast(float(vmin), float(vmax))

    # -- state ----------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """Full-resolution shape of the volume."""
        return self.volume.shape

    @property
    def index(self) -> int:
        """The current plane's index along :attr:`axis`."""
        return self.cursor[self.axis]

    def set_axis(self, axis: int) -> int:
        """Show the plane across ``axis``; returns it."""
        self.axis = self._check_axis(axis)
        return self.axis

    def set_index(self, index: int, *, axis: int | None = None) -> int:
        """Move the cursor along ``axis`` (default: the current one); returns the index."""
        ax = self.axis if axis is None else self._check_axis(axis)
        n = self.volume.shape[ax]
        if not 0 <= int(index) < n:
            raise IndexError(f"index {index} is outside 0..{n - 1} along "
                             f"{self.volume.axes[ax].name}")
        self.cursor[ax] = int(index)
        return self.cursor[ax]

    def set_contrast(self, vmin: float, vmax: float) -> tuple[float, float]:
        """Set the grey range (values at or below ``vmin`` black, at or above ``vmax`` white).

        Raises
        ------
        ValueError
            Unless ``vmin < vmax`` (both finite).
        """
        if not (np.isfinite(vmin) and np.isfinite(vmax) and vmin < vmax):
            raise ValueError(f"the grey range needs finite vmin < vmax, got {vmin!r}, {vmax!r}")
        self.vmin, self.vmax = float(vmin), float(vmax)
        return self.vmin, self.vmax

    def auto_contrast(self, percentiles: tuple[float, float] | None = None, *,
                      axis: int | None = None, apply: bool = False) -> tuple[float, float]:
        """The grey range from percentiles of the current plane (read at a coarse level).

        Parameters
        ----------
        percentiles : (float, float), optional
            Default: :attr:`percentiles`.
        axis : int, optional
            The plane's axis (default: the current one).
        apply : bool
            Also set it (:meth:`set_contrast`).
        """
        lo_p, hi_p = self._check_percentiles(percentiles or self.percentiles)
        ax = self.axis if axis is None else self._check_axis(axis)
        level = self.volume.choose_level(ax, min(self.display, _SAMPLE))
        plane = self.volume.read_plane(ax, self.cursor[ax], level=level)
        step = max(1, max(plane.shape) // _SAMPLE)
        values = plane[::step, ::step].astype(np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = (float(v) for v in np.percentile(values, [lo_p, hi_p]))
            if hi <= lo:  # a flat plane
                lo, hi = lo - 0.5, lo + 0.5
        if apply:
            self.set_contrast(lo, hi)
        return lo, hi

    def set_cmap(self, name: str) -> str:
        """Use the matplotlib colour map ``name``."""
        self._lut = colormap_lut(name)
        self.cmap = name
        return name

    def zoom(self, factor: float, *, axis: int | None = None,
             center: tuple[int, int] | None = None) -> tuple[int, int, int, int] | None:
        """Show ``1/factor`` of the plane around the cursor (or ``center``); 1 shows it all.

        Returns the region ``(row0, row1, col0, col1)`` in full-resolution pixels (None for
        the whole plane).
        """
        ax = self.axis if axis is None else self._check_axis(axis)
        if not factor >= 1:
            raise ValueError(f"zoom factor must be >= 1, got {factor!r}")
        if factor == 1:
            self.regions[ax] = None
            return None
        a, b = self.volume.plane_axes(ax)
        na, nb = self.volume.shape[a], self.volume.shape[b]
        ca, cb = center if center is not None else (self.cursor[a], self.cursor[b])
        ha, hb = max(1, round(na / factor / 2)), max(1, round(nb / factor / 2))
        r0 = int(min(max(ca - ha, 0), max(na - 2 * ha, 0)))
        c0 = int(min(max(cb - hb, 0), max(nb - 2 * hb, 0)))
        region = (r0, min(r0 + 2 * ha, na), c0, min(c0 + 2 * hb, nb))
        self.regions[ax] = region
        return region

    # -- reading and rendering ------------------------------------------------------

    def levels(self, axis: int | None = None) -> tuple[int, int]:
        """``(coarse, fine)`` levels for the plane across ``axis``: ``fine`` is the
        coarsest level that fills the display, ``coarse`` about 4x coarser (the same when
        there is none)."""
        ax = self.axis if axis is None else self._check_axis(axis)
        fine = self.volume.choose_level(ax, self.display, self.regions[ax])
        coarse = min(fine + 2, len(self.volume.levels) - 1)
        return coarse, fine

    def read_bytes(self, axis: int | None = None, *, coarse: bool = False) -> int:
        """Bytes of storage the next :meth:`render` of ``axis`` touches (see
        :meth:`spotkit.io.Volume.read_bytes`)."""
        ax = self.axis if axis is None else self._check_axis(axis)
        level = self.levels(ax)[0 if coarse else 1]
        return self.volume.read_bytes(ax, level=level, region=self.regions[ax])

    @property
    def can_build_pyramid(self) -> bool:
        """A volume file without pyramid levels: :meth:`build_pyramid` would help."""
        return (self.source_path is not None and len(self.volume.levels) == 1
                and not self.volume.remote)

    def build_pyramid(self, **options: Any):
        """Write the volume's pyramid sidecar (:func:`spotkit.io.write_pyramid`) and use it.

        Parameters
        ----------
        **options
            Keyword arguments of :func:`spotkit.io.write_pyramid` (``output``,
            ``min_size``, ``chunk``, ``max_memory``, ``overwrite``).

        Returns
        -------
        pathlib.Path
            The sidecar.
        """
        from spotkit.io import write_pyramid

        if self.source_path is None:
            raise ValueError("only a volume file (HDF5 or zarr) can get a pyramid; this "
                             f"viewer shows {self.volume.name}")
        key = self.volume.source_key
        side = write_pyramid(self.source_path, key=key, **options)
        old, self.volume = self.volume, open_volume(self.source_path, key=key)
        old.close()
        return side

    def plane(self, axis: int | None = None, *, level: int = 0) -> np.ndarray:
        """The plane across ``axis`` through the cursor (the zoom region of it), as read."""
        ax = self.axis if axis is None else self._check_axis(axis)
        return self.volume.read_plane(ax, self.cursor[ax], level=level,
                                      region=self.regions[ax])

    def render(self, axis: int | None = None, *, level: int | None = None,
               coarse: bool = False) -> Rendered:
        """Read the plane across ``axis`` and encode it for the display.

        Parameters
        ----------
        axis : int, optional
            Default: the current axis.
        level : int, optional
            Pyramid level to read (default: :meth:`levels`' fine one, or the coarse one
            with ``coarse=True``).
        coarse : bool
            Read the coarse level (a first image while the fine one is read).
        """
        t0 = time.perf_counter()
        ax = self.axis if axis is None else self._check_axis(axis)
        if level is None:
            level = self.levels(ax)[0 if coarse else 1]
        plane = self.plane(ax, level=level)
        t_read = time.perf_counter() - t0
        height, width = self._image_size(ax, level, plane.shape)
        data = self._encode(plane, (height, width))
        out = Rendered(data=data, format=self.fmt, axis=ax, index=self.cursor[ax],
                       level=int(level), size=(height, width),
                       read_shape=(int(plane.shape[0]), int(plane.shape[1])),
                       extent=self.extent(ax), units=self.units(ax), read_s=t_read,
                       total_s=time.perf_counter() - t0)
        self.last[ax] = out
        return out

    def extent(self, axis: int | None = None) -> tuple[float, float]:
        """Height and width of the shown region in :meth:`units` (pixels when unknown)."""
        ax = self.axis if axis is None else self._check_axis(axis)
        a, b = self.volume.plane_axes(ax)
        region = self.regions[ax] or (0, self.volume.shape[a], 0, self.volume.shape[b])
        sa, sb = self._spacings(ax)
        return ((region[1] - region[0]) * sa, (region[3] - region[2]) * sb)

    def units(self, axis: int | None = None) -> str:
        """Units of the plane's two axes (``"px"`` unless both have the same known unit)."""
        ax = self.axis if axis is None else self._check_axis(axis)
        a, b = (self.volume.axes[d] for d in self.volume.plane_axes(ax))
        if a.spacing and b.spacing and a.units == b.units and a.units:
            return a.units
        return "px"

    def describe(self, axis: int | None = None) -> str:
        """Where the plane is: ``"z = 12.35 µm (19 / 2160)"``."""
        ax = self.axis if axis is None else self._check_axis(axis)
        return self.volume.axes[ax].describe(self.cursor[ax])

    def close(self) -> None:
        """Close the volume's files."""
        self.volume.close()

    # -- helpers --------------------------------------------------------------------

    def _spacings(self, axis: int) -> tuple[float, float]:
        a, b = (self.volume.axes[d] for d in self.volume.plane_axes(axis))
        if self.units(axis) == "px":
            return 1.0, 1.0
        return float(a.spacing or 1.0), float(b.spacing or 1.0)

    def _image_size(self, axis: int, level: int, shape: tuple[int, ...]) -> tuple[int, int]:
        """Image size: the physical aspect of the region, at most :attr:`display` pixels
        along the longer side and never more pixels than were read."""
        h_phys, w_phys = self.extent(axis)
        h_read, w_read = int(shape[0]), int(shape[1])
        scale = min(self.display / max(h_phys, w_phys),
                    max(h_read, w_read) / max(h_phys, w_phys))
        return max(1, round(h_phys * scale)), max(1, round(w_phys * scale))

    def _encode(self, plane: np.ndarray, size: tuple[int, int]) -> bytes:
        from PIL import Image

        grey = to_uint8(plane, self.vmin, self.vmax)
        img = Image.fromarray(grey)  # uint8 2-D: mode "L"
        if (grey.shape[0], grey.shape[1]) != size:
            # area averaging when reducing (each output pixel the mean of the pixels it
            # covers: no aliasing, and ~4x faster than bilinear); bilinear when enlarging
            smaller = size[0] <= grey.shape[0] and size[1] <= grey.shape[1]
            img = img.resize((size[1], size[0]), Image.Resampling.BOX if smaller
                             else Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        if self.fmt == "jpeg":
            _palette(img, self._lut).convert("RGB").save(buf, format="JPEG", quality=90)
        else:
            _palette(img, self._lut).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    @staticmethod
    def _check_axis(axis: int) -> int:
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
        return int(axis)

    @staticmethod
    def _check_percentiles(p) -> tuple[float, float]:
        lo, hi = (float(v) for v in p)
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {p!r}")
        return lo, hi

    def __repr__(self) -> str:
        return (f"<SliceViewerModel {self.volume.name} {self.shape} axis {self.axis} "
                f"cursor {tuple(self.cursor)}>")


def _source_path(source: Any):
    """The volume file behind ``source`` (a path or a catalog dataset), else None."""
    from pathlib import Path

    if isinstance(source, str | Path):
        return Path(source)
    record = getattr(source, "primary_file", None)
    if record is not None and getattr(source, "kind", None) != "tomo/raw":
        return Path(record.path)
    return None


def _palette(img, lut: np.ndarray):
    """The grey image as a palette image of the colour map (1 byte per pixel)."""
    img = img.copy()
    img.putpalette(lut.reshape(-1).tolist())
    return img
