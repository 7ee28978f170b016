"""Band features: q bands of a profile or detector regions of a frame, at several levels."""

from __future__ import annotations

import logging

import numpy as np

from ._feature_names import _MIN_BAND_BINS, _MIN_REGION_BINS

logger = logging.getLogger(__name__)


def check_bands(bands, kind) -> int:
    """Finest number of q bands (profiles) or of regions per detector axis (frames).

    ``"auto"``: 16 q bands, 8 x 8 detector regions; ``0`` or None: no band features.
    """
    if bands is None:
        return 0
    if isinstance(bands, str):
        if bands != "auto":
            raise ValueError(f"bands must be 'auto', 0 or a positive integer, got {bands!r}")
        return 16 if kind == "profiles" else 8
    if isinstance(bands, bool) or int(bands) != bands or not 0 <= bands <= 1024:
        raise ValueError(f"bands must be 'auto', 0 or an integer in 1..1024, got {bands!r}")
    return int(bands)


def _levels(n) -> list[int]:
    """Nested band counts from the finest ``n``: n, n/2, ... while even, then 1."""
    out = [n]
    while out[-1] % 2 == 0 and out[-1] > 1:
        out.append(out[-1] // 2)
    if out[-1] != 1:
        out.append(1)
    return out


class _BandSet:
    """Q bands of a profile or regions of a (binned) detector frame, at nested scales.

    The finest level splits the valid q bins into ``n`` contiguous groups of (nearly) equal
    count, or the binned detector into ``n x n`` tiles; each coarser level joins two
    neighbouring bands (2 x 2 tiles), down to the whole profile or frame. Per frame and band:
    ``band_shift`` = sum of the noise-normalised residuals / sqrt(count) (unit variance, a
    coherent change adds up), ``band_difference`` = mean square of the smoothed residuals.
    """

    def __init__(self, kind, level, where, members=None, tiles=None):
        self.kind, self.level, self.where = kind, np.asarray(level), tuple(where)
        self.members = members  # profiles: (K, nbins) 0/1 matrix
        self.tiles = tiles  # frames: (row edges, col edges, finest n, [(m, keep)], counts)
        self.count = None

    @property
    def size(self) -> int:
        return len(self.where)

    @classmethod
    def build(cls, engine):
        n = engine.bands
        valid = engine._bvalid
        if engine.kind == "profiles":
            idx = np.flatnonzero(valid)
            n = max(1, min(n, idx.size // _MIN_BAND_BINS))
            groups = np.array_split(idx, n)
            finest = np.empty(idx.size, dtype=np.intp)
            start = 0
            for g, grp in enumerate(groups):
                finest[start: start + grp.size] = g
                start += grp.size
            rows, level, where = [], [], []
            for m in _levels(n):
                lab = finest * m // n
                for j in range(m):
                    sel = idx[lab == j]
                    row = np.zeros(valid.size)
                    row[sel] = 1.0
                    rows.append(row)
                    level.append(m)
                    where.append((int(sel.min()), int(sel.max())))
            bs = cls("profiles", level, where, members=np.array(rows))
            bs.count = bs.members.sum(axis=1)
            return bs
        bh, bw = valid.shape
        n = max(1, min(n, bh, bw))
        re = np.linspace(0, bh, n + 1).round().astype(np.intp)
        ce = np.linspace(0, bw, n + 1).round().astype(np.intp)
        counts = _tile_sums(engine._bvalidf, re, ce)
        b = engine.bin
        levels, level, where, cnt = [], [], [], []
        for m in _levels(n):
            c = _coarsen(counts, m)
            keep = c.ravel() >= _MIN_REGION_BINS
            levels.append((m, keep))
            step = n // m
            for k in np.flatnonzero(keep):
                i, j = divmod(int(k), m)
                level.append(m)
                cnt.append(c.ravel()[k])
                where.append((int(re[i * step]) * b, int(re[(i + 1) * step]) * b,
                              int(ce[j * step]) * b, int(ce[(j + 1) * step]) * b))
        bs = cls("frames", level, where, tiles=(re[:-1], ce[:-1], n, levels))
        bs.count = np.asarray(cnt, dtype=np.float64)
        return bs

    def features(self, r, s):
        """``(band_shift, band_difference)`` of one frame's residual ``r`` and smoothed ``s``."""
        if self.kind == "profiles":
            both = self.members @ np.stack([r, s * s], axis=1)
            return both[:, 0] / np.sqrt(self.count), both[:, 1] / self.count
        re, ce, _n, levels = self.tiles
        sums_r = _tile_sums(r, re, ce, starts=True)
        sums_s = _tile_sums(s * s, re, ce, starts=True)
        out_r, out_s = [], []
        for m, keep in levels:
            out_r.append(_coarsen(sums_r, m).ravel()[keep])
            out_s.append(_coarsen(sums_s, m).ravel()[keep])
        sr, ss = np.concatenate(out_r), np.concatenate(out_s)
        return sr / np.sqrt(self.count), ss / self.count


def _tile_sums(a, re, ce, starts=False):
    """Sums of ``a`` over the tiles between row and column edges (``starts``: edges[:-1])."""
    if not starts:
        re, ce = re[:-1], ce[:-1]
    return np.add.reduceat(np.add.reduceat(a, re, axis=0), ce, axis=1)


def _coarsen(tiles, m):
    n = tiles.shape[0]
    if m == n:
        return tiles
    k = n // m
    return tiles.reshape(m, k, m, k).sum(axis=(1, 3))


def band_coords(engine, s) -> dict:
    """Coordinates of the ``band`` dimension: level and extent (q, bin index or pixels)."""
    bs = engine._bandset
    where = np.array(bs.where, dtype=np.int64).reshape(bs.size, -1)
    coords = {"band": np.arange(bs.size), "level": ("band", bs.level)}
    if s.kind == "frames":
        for k, name in enumerate(("y0", "y1", "x0", "x1")):
            coords[name] = ("band", where[:, k])
        return coords
    q = s.axis_coords.get(s.axis_dims[0])
    if q is not None and np.issubdtype(np.asarray(q).dtype, np.number):
        coords[f"{s.axis_dims[0]}_min"] = ("band", np.asarray(q)[where[:, 0]])
        coords[f"{s.axis_dims[0]}_max"] = ("band", np.asarray(q)[where[:, 1]])
    else:
        coords["lo"], coords["hi"] = ("band", where[:, 0]), ("band", where[:, 1])
    return coords


def band_extent(engine, s, k) -> dict:
    """Where band ``k`` is, as ``{dim: (first, last)}`` (q values, or pixel rows/columns)."""
    w = engine._bandset.where[k]
    if s.kind == "frames":
        return {"y": (w[0], w[1] - 1), "x": (w[2], w[3] - 1)}
    dim = s.axis_dims[0]
    q = s.axis_coords.get(dim)
    if q is not None and np.issubdtype(np.asarray(q).dtype, np.number):
        return {dim: (float(np.asarray(q)[w[0]]), float(np.asarray(q)[w[1]]))}
    return {f"{dim}_index": (w[0], w[1])}
