"""Per-frame change features: unique integer values, smoothed difference, SSIM, I(q) chi^2."""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
from scipy import ndimage

from ._input import as_series, check_frame, check_mask

logger = logging.getLogger(__name__)

__all__ = [
    "BAND_FEATURES",
    "FEATURES",
    "change_map",
    "frame_features",
    "structural_similarity",
    "unique_count",
]

#: every feature :func:`frame_features` can compute, with its direction of change:
#: +1 grows with change, -1 falls with change, 0 may move either way
FEATURES = {"unique_count": 0, "difference": +1, "ssim": -1, "mean": 0, "median": 0}
#: features with one value per q band (profiles) or detector region (frames) and frame,
#: with their direction of change: ``band_shift`` is the mean noise-normalised residual of
#: the band (it moves either way), ``band_difference`` the band's smoothed difference
BAND_FEATURES = {"band_shift": 0, "band_difference": +1}
FRAME_DEFAULT = ("unique_count", "difference", "ssim")
PROFILE_DEFAULT = ("difference",)
_PROFILE_OK = ("difference", "mean", "median", *BAND_FEATURES)
_ALL = {**FEATURES, **BAND_FEATURES}
_MIN_BAND_BINS = 4  # fewest q bins in a band
_MIN_REGION_BINS = 16  # fewest valid binned pixels in a detector region
_MAX_BINNED = 160_000  # "auto" binning brings a frame to at most this many pixels
_MAX_COARSE = 20_000  # length of the vectors kept for onset refinement
_MAX_SSIM = 40_000  # SSIM is computed on a grid of at most this many blocks
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def unique_count(frame, *, mask=None) -> int:
    """Number of distinct integer values among the valid pixels of a frame.

    DEDUCE (Ushizima et al.) found that this simple count follows the temporal onset of
    change in scattering series, where the frame mean and median do not. Negative values
    (Pilatus module gaps hold -1) and ``mask`` pixels are ignored; floats are rounded to
    integers. Counts are tallied with ``np.bincount`` over the value range (linear time),
    falling back to ``np.unique`` when the range is much larger than the frame.

    Parameters
    ----------
    frame : array_like
        A detector frame (any shape), integer counts or floats.
    mask : array_like of bool, optional
        True where pixels are invalid; same shape as ``frame``.

    Returns
    -------
    int
        The number of distinct values ``>= 0`` among the valid pixels.

    Examples
    --------
    >>> unique_count(np.array([[0, 1, 1], [5, -1, 5]]))
    3
    """
    a = np.asarray(frame)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError("the frame contains NaN or infinite values; mask them instead")
        a = np.rint(a).astype(np.int64)
    elif a.dtype.kind not in "iub":
        raise TypeError(f"frame must hold integers or floats, got dtype {a.dtype}")
    m = None
    if mask is not None:
        m = check_mask(mask, a.shape).ravel()
        m = np.flatnonzero(m) if m.any() else None
    return _count_unique(a.ravel(), masked=m)


def _count_unique(v, *, buf=None, masked=None) -> int:
    """Distinct values >= 0 of the 1-D integer array ``v`` (``masked``: indices to ignore)."""
    if v.size == 0:
        return 0
    hi = int(v.max())
    if hi < 0:
        return 0
    if hi > 4 * v.size + 65_536:  # sparse range (hot pixels): sort instead
        if masked is not None:
            v = np.delete(v, masked)
        return int(np.unique(v[v >= 0]).size)
    if buf is None:
        buf = np.empty(v.size, dtype=np.intp)
    np.add(v, 1, out=buf, casting="unsafe")
    if int(v.min()) < -1:
        np.maximum(buf, 0, out=buf)  # every negative value goes to bin 0
    if masked is not None:
        buf[masked] = 0
    return int(np.count_nonzero(np.bincount(buf)[1:]))


def structural_similarity(a, b, *, sigma: float = 1.5, mask=None, data_range=None) -> float:
    """Mean structural similarity (SSIM) of two images with a Gaussian window.

    Wang et al. (2004): ``SSIM = (2 mu_a mu_b + C1)(2 cov_ab + C2) /
    ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))`` with local statistics from
    ``scipy.ndimage.gaussian_filter`` (``K1 = 0.01``, ``K2 = 0.03``), averaged over the valid
    pixels. 1 means identical.

    Parameters
    ----------
    a, b : array_like, shape (ny, nx)
        The two images.
    sigma : float
        Gaussian window width in pixels.
    mask : array_like of bool, optional
        True where pixels are invalid (excluded from the mean, set to 0 before filtering).
    data_range : float, optional
        Dynamic range of the images; default ``max - min`` of ``a`` over valid pixels.

    Returns
    -------
    float

    Examples
    --------
    >>> img = np.arange(64.0).reshape(8, 8)
    >>> round(structural_similarity(img, img), 6)
    1.0
    """
    a = check_frame(a)
    b = check_frame(b, shape=a.shape)
    if a.ndim != 2:
        raise ValueError(f"structural_similarity needs 2-D images, got shape {a.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    valid = ~check_mask(mask, a.shape)
    if not valid.any():
        raise ValueError("every pixel is masked")
    a = np.where(valid, a, 0).astype(np.float64)
    b = np.where(valid, b, 0).astype(np.float64)
    if data_range is None:
        data_range = float(a[valid].max() - a[valid].min()) or 1.0
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    return float(_ssim_map(a, b, sigma, data_range)[valid].mean())


def _ssim_map(a, b, sigma, data_range):
    f = ndimage.gaussian_filter
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    mu_a, mu_b = f(a, sigma), f(b, sigma)
    va = f(a * a, sigma) - mu_a * mu_a
    vb = f(b * b, sigma) - mu_b * mu_b
    cov = f(a * b, sigma) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a * mu_a + mu_b * mu_b + c1) * (va + vb + c2)
    )


def _noise_factor(smooth: float, ndim: int) -> float:
    """Standard deviation of unit white noise after a Gaussian filter of width ``smooth``."""
    if smooth <= 0:
        return 1.0
    return (2.0 * math.sqrt(math.pi) * smooth) ** (-ndim / 2.0)


def change_map(frame, reference, *, smooth: float = 2.0, mask=None, sigma=None,
               reference_sigma=None, coords=None):
    """Where a frame (or an I(q) profile) differs from a reference, in units of the noise.

    For detector frames the difference is normalised by the Poisson noise
    ``sqrt(max(reference, 1))``, smoothed with a Gaussian of width ``smooth`` pixels (masked
    pixels excluded) and divided by the noise left after smoothing, so that an unchanged
    region reads about N(0, 1) and a change of ``k`` standard deviations stands out as
    ``|map| >> 3``. For 1-D profiles the difference is divided by
    ``sqrt(sigma^2 + reference_sigma^2)`` (the standard deviation across nothing else is
    assumed), and smoothed along q only if ``smooth > 0``.

    Parameters
    ----------
    frame : array_like, shape (ny, nx) or (nq,)
        Frame (counts) or profile.
    reference : array_like
        Same shape: e.g. the mean of frames before the change.
    smooth : float
        Gaussian sigma in pixels (frames) or q bins (profiles); 0 for none.
    mask : array_like of bool, optional
        True where invalid; negative reference pixels (gaps) are always invalid.
    sigma, reference_sigma : array_like, optional
        Errors of a profile and of its reference (required for profiles).
    coords : dict, optional
        Coordinates for the output dims (``{"q": q}`` or ``{"y": ..., "x": ...}``).

    Returns
    -------
    xarray.DataArray
        Dims ``(y, x)`` or ``(q,)``; NaN on invalid pixels.

    Examples
    --------
    >>> ref = np.full((32, 32), 100.0)
    >>> frame = ref.copy(); frame[10:14, 10:14] += 40
    >>> m = change_map(frame, ref)
    >>> bool(m[12, 12] > 5 and abs(float(m[28, 28])) < 1)
    True
    """
    import xarray as xr

    f = check_frame(frame).astype(np.float64)
    ref = check_frame(reference, shape=f.shape).astype(np.float64)
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    valid = ~check_mask(mask, f.shape) & (ref >= 0) & (f >= 0 if f.ndim == 2 else True)
    if f.ndim == 2:
        # Poisson variance from the smoothed reference: a noisy reference in the denominator
        # would bias the map upwards where counts are low
        var = np.maximum(_smooth(np.where(valid, ref, 0.0), valid.astype(np.float64),
                                 max(smooth, 1.0)), 1.0)
        dims = ("y", "x")
    else:
        if sigma is None:
            raise ValueError("profiles need sigma (their errors) to be normalised")
        s = check_frame(sigma, shape=f.shape).astype(np.float64)
        rs = (np.zeros_like(s) if reference_sigma is None
              else check_frame(reference_sigma, shape=f.shape).astype(np.float64))
        var = s**2 + rs**2
        valid &= var > 0
        var = np.where(var > 0, var, 1.0)
        dims = ("q",)
    r = np.where(valid, (f - ref) / np.sqrt(var), 0.0)
    z = _smooth(r, valid.astype(np.float64), smooth) / _noise_factor(smooth, f.ndim)
    z = np.where(valid, z, np.nan)
    return xr.DataArray(z, dims=dims, coords=coords or {}, name="change",
                        attrs={"units": "noise standard deviations", "smooth": smooth})


def _smooth(r, validf, smooth, norm=None):
    if smooth <= 0:
        return r
    if norm is None:
        norm = ndimage.gaussian_filter(validf, smooth)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ndimage.gaussian_filter(r * validf, smooth) / norm
    return np.where(validf > 0, out, 0.0)


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


def _auto_bin(shape) -> int:
    b = 1
    while (shape[0] // b) * (shape[1] // b) > _MAX_BINNED:
        b += 1
    return b


class _Engine:
    """Features of each frame against a warm-up reference, frame by frame.

    Shared by :class:`~spotkit.change.OnlineDetector` and the offline functions so both see
    the same numbers. ``push`` returns the rows that became ready: none during the warm-up,
    the whole warm-up when the reference is complete, then one per frame. Each row is
    ``(index, {feature: value}, coarse residual vector)``; memory is bounded by the warm-up.
    """

    def __init__(self, *, kind, shape, mask=None, warmup=8, smooth=2.0, bin="auto",
                 features=None, ssim_sigma=1.5, bands="auto"):
        if kind not in ("frames", "profiles"):
            raise ValueError(f"unknown kind {kind!r}")
        if features is None:
            features = FRAME_DEFAULT if kind == "frames" else PROFILE_DEFAULT
        features = tuple(features)
        bad = [f for f in features if f not in _ALL]
        if bad:
            raise ValueError(f"unknown feature(s) {bad}; choose from {sorted(_ALL)}")
        if kind == "profiles":
            bad = [f for f in features if f not in _PROFILE_OK]
            if bad:
                raise ValueError(f"feature(s) {bad} need detector frames; for profiles choose "
                                 f"from {list(_PROFILE_OK)}")
        if "difference" not in features:
            features = (*features, "difference")  # the residuals drive onset refinement
        if int(warmup) != warmup or warmup < 3:
            raise ValueError(f"warmup must be an integer >= 3, got {warmup}")
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.kind, self.shape, self.features = kind, tuple(shape), features
        self.warmup, self.smooth, self.ssim_sigma = int(warmup), float(smooth), ssim_sigma
        self.mask = check_mask(mask, self.shape)
        if kind == "frames":
            if len(self.shape) != 2:
                raise ValueError(f"frames must be 2-D, got shape {self.shape}")
            if bin == "auto":
                bin = _auto_bin(self.shape)
            if int(bin) != bin or bin < 1:
                raise ValueError(f"bin must be 'auto' or a positive integer, got {bin!r}")
            self.bin = int(bin)
        else:
            self.bin = 1
        self.bands = check_bands(bands, kind)
        self._band_feats = tuple(f for f in features if f in BAND_FEATURES)
        if self._band_feats and self.bands == 0:
            raise ValueError(f"the features {list(self._band_feats)} need bands > 0 (or 'auto')")
        self._bandset = None  # made when the warm-up ends (validity is final then)
        self.index = 0
        self._buffer = []  # warm-up (index, partial features, binned, var)
        self._ref = None
        self._prev = None
        self._static = None
        self._fused_masks = None

    # -- per-frame reduction -------------------------------------------------------------
    def _setup(self, first):
        """Static validity from the mask and the first frame (gaps are negative)."""
        valid = ~self.mask
        if self.kind == "frames":
            valid &= first >= 0
            b = self.bin
            h, w = (self.shape[0] // b) * b, (self.shape[1] // b) * b
            if h == 0 or w == 0:
                raise ValueError(f"bin {b} is larger than the frame {self.shape}")
            self._hw = (h, w)
            inv = ~valid[:h, :w]
            self._inv_flat = np.flatnonzero(inv)
            rows, cols = np.divmod(self._inv_flat, w)
            self._inv_bin = (rows // b) * (w // b) + cols // b
            self._inv_full = rows * self.shape[1] + cols
            self._nbins = (h // b) * (w // b)
            self._user_masked = np.flatnonzero(self.mask) if self.mask.any() else None
            self._ubuf = None  # the numpy path's buffer, made when first needed
            nvalid = _block_sum((~inv).astype(np.float32), b)
            self._nvalid = nvalid
            self._bvalid = nvalid >= 0.5 * b * b
            self._bvalidf = self._bvalid.astype(np.float64)
            self._sm = self.smooth / b if self.smooth > 0 else 0.0
            if 0 < self._sm < 0.7:
                self._sm = 0.7
            self._norm = (ndimage.gaussian_filter(self._bvalidf, self._sm)
                          if self._sm > 0 else None)
            n = int(self._bvalid.sum())
            if n == 0:
                raise ValueError("every pixel of the frame is masked")
            stride = 1
            while math.ceil(self._bvalid.shape[0] / stride) * math.ceil(
                    self._bvalid.shape[1] / stride) > _MAX_COARSE:
                stride += 1
            self._stride = stride
            self._coarse_valid = self._bvalid[::stride, ::stride]
            bh, bw = self._bvalid.shape
            k = 1
            while (bh // k) * (bw // k) > _MAX_SSIM:
                k += 1
            self._sbin = k
            self._shw = ((bh // k) * k, (bw // k) * k)
            self._svalid = _block_sum(self._bvalid[: self._shw[0], : self._shw[1]].astype(
                np.float32), k) >= 0.5 * k * k
        else:
            self._bvalid = valid
            self._bvalidf = valid.astype(np.float64)
            self._sm = self.smooth
            self._norm = (ndimage.gaussian_filter1d(self._bvalidf, self._sm)
                          if self._sm > 0 else None)
            self._coarse_valid = valid
        self._rawvalid = valid
        self._static = True

    def _fused(self, raw):
        """The numba pass (unique count + block sums) for integer frames, or None."""
        kernels = _load_kernels()
        if kernels is None or raw.dtype.kind not in "iu" or raw.ndim != 2:
            return None
        if self._fused_masks is None:
            h, w = self._hw
            b = self.bin
            flags = np.where(self.mask, 0, kernels.COUNT).astype(np.uint8)
            flags[:h, :w] |= np.where(self._rawvalid[:h, :w], kernels.SUM, 0).astype(np.uint8)
            block_row = np.minimum(np.arange(raw.shape[0]) // b, h // b - 1).astype(np.int32)
            block_col = np.minimum(np.arange(raw.shape[1]) // b, w // b - 1).astype(np.int32)
            self._fused_masks = (flags, block_row, block_col)
            self._sums = np.zeros((h // b, w // b), np.int64)
            self._seen = np.zeros(65_536, np.int32)
        flags, block_row, block_col = self._fused_masks
        raw = np.ascontiguousarray(raw)
        n = kernels.fused_frame(raw, flags, block_row, block_col, self._seen, self._sums)
        if n < 0:  # a value beyond the table: grow it (up to the frame's own size) or sort
            hi = int(raw.max())
            if hi <= 4 * raw.size + 65_536:
                self._seen = np.zeros(hi + 1, np.int32)
                n = kernels.fused_frame(raw, flags, block_row, block_col, self._seen,
                                        self._sums)
            else:
                n = _count_unique(raw.ravel(), masked=self._user_masked)
        return n, self._sums

    def _reduce(self, raw, sig):
        """Features that need no reference, and the binned image / profile with its var."""
        vals = {}
        if self._static is None:
            self._setup(raw)
        fused = self._fused(raw) if self.kind == "frames" else None
        if "unique_count" in self.features:
            if fused is not None:
                vals["unique_count"] = float(fused[0])
            elif self.kind == "frames" and raw.dtype.kind in "iu":
                if self._ubuf is None:
                    self._ubuf = np.empty(raw.size, dtype=np.intp)
                vals["unique_count"] = float(_count_unique(raw.ravel(), buf=self._ubuf,
                                                           masked=self._user_masked))
            else:
                vals["unique_count"] = float(unique_count(raw, mask=self.mask))
        if "mean" in self.features or "median" in self.features:
            v = raw[self._rawvalid]
            if "mean" in self.features:
                vals["mean"] = float(v.mean()) if v.size else 0.0
            if "median" in self.features:
                vals["median"] = float(np.median(v)) if v.size else 0.0
        if fused is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                binned = np.where(self._bvalid, fused[1] / self._nvalid, 0.0).astype(np.float32)
            var = None
        elif self.kind == "frames":
            h, w = self._hw
            x = raw[:h, :w]
            s = _block_sum(x, self.bin)
            if self._inv_flat.size:  # take the masked pixels' values out again
                vals_inv = raw.ravel()[self._inv_full]
                s -= np.bincount(self._inv_bin, weights=vals_inv,
                                 minlength=self._nbins).reshape(s.shape).astype(np.float32)
            with np.errstate(invalid="ignore", divide="ignore"):
                binned = np.where(self._bvalid, s / self._nvalid, 0.0).astype(np.float32)
            var = None
        else:
            binned = np.where(self._bvalid, raw, 0.0).astype(np.float64)
            var = None if sig is None else np.where(self._bvalid, sig, 0.0) ** 2
        return vals, binned, var

    def _ssim_image(self, binned):
        k = self._sbin
        img = binned[: self._shw[0], : self._shw[1]]
        if k > 1:
            img = _block_sum(img, k) / np.float32(k * k)
        return np.where(self._svalid, img, np.float32(0.0))

    def _ssim(self, binned):
        img = self._ssim_image(binned)
        if self._prev is None:
            v = img[self._svalid]
            self._range = float(np.percentile(v, 99.5) - v.min()) or 1.0
            val = math.nan  # filled in from the second frame (SSIM is symmetric)
        else:
            val = float(_ssim_map(img, self._prev, self.ssim_sigma, self._range)[
                self._svalid].mean())
        self._prev = img
        return val

    def push(self, item, sigma=None):
        """Add one frame (or profile); return the feature rows that became ready."""
        raw = check_frame(item, shape=self.shape, index=self.index)
        if self.kind == "profiles" and sigma is not None:
            sigma = check_frame(sigma, shape=self.shape, index=self.index)
        idx = self.index
        self.index += 1
        vals, binned, var = self._reduce(raw, sigma)
        if "ssim" in self.features:
            vals["ssim"] = self._ssim(binned)
            if idx == 1 and self._buffer:  # the first frame gets its SSIM to the second
                self._buffer[0][1]["ssim"] = vals["ssim"]
        if self._ref is None:
            self._buffer.append((idx, vals, binned, var))
            if len(self._buffer) < self.warmup:
                return []
            return self._finish_warmup()
        return [self._row(idx, vals, binned, var, loo=None)]

    def _finish_warmup(self):
        stack = np.stack([b[2].astype(np.float64) for b in self._buffer])
        self._ref = stack.mean(axis=0)
        if self.kind == "frames":
            self._var = self._poisson_var(self._ref)
            self._var_from_sigma = False
        elif self._buffer[0][3] is not None:
            self._var_ref = np.stack([b[3] for b in self._buffer]).mean(axis=0)
            self._var_from_sigma = True
            bad = self._var_ref <= 0
            if bad.any():
                self._bvalid = self._bvalid & ~bad
                self._bvalidf = self._bvalid.astype(np.float64)
                self._coarse_valid = self._bvalid
                if self._norm is not None:
                    self._norm = ndimage.gaussian_filter1d(self._bvalidf, self._sm)
        else:
            var = stack.var(axis=0, ddof=1)
            floor = np.median(var[self._bvalid]) * 1e-3 if self._bvalid.any() else 1.0
            self._var = np.where(self._bvalid, np.maximum(var, floor if floor > 0 else 1.0), 1.0)
            self._var_from_sigma = False
        if not self._bvalid.any():
            raise ValueError("no valid pixel or q bin is left (all masked or zero sigma)")
        if self._band_feats:
            self._bandset = _BandSet.build(self)
        rows = [self._row(i, vals, b, v, loo=stack) for i, vals, b, v in self._buffer]
        self._buffer = []
        return rows

    def _row(self, idx, vals, binned, var, *, loo):
        w = self.warmup
        ref = self._ref
        extra = 1.0 / w
        if loo is not None:  # a warm-up frame: compare with the mean of the others
            ref = (w * self._ref - binned) / (w - 1)
            extra = 1.0 / (w - 1)
        if self._var_from_sigma:
            v = (var if var is not None else self._var_ref) + self._var_ref * extra
            v = np.where(self._bvalid & (v > 0), v, 1.0)
        elif loo is not None and self.kind == "frames":
            # Poisson variance from the reference the frame is compared with, which must not
            # contain the frame itself (it would bias the warm-up rows low)
            v = self._poisson_var(ref) * (1.0 + extra)
        else:
            v = self._var * (1.0 + extra)
        r = np.where(self._bvalid, (binned - ref) / np.sqrt(v), 0.0)
        ndim = 2 if self.kind == "frames" else 1
        if self._sm > 0:
            if ndim == 2:
                with np.errstate(invalid="ignore", divide="ignore"):
                    s = ndimage.gaussian_filter(r, self._sm) / self._norm
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    s = ndimage.gaussian_filter1d(r, self._sm) / self._norm
            s = np.where(self._bvalid, s, 0.0) / _noise_factor(self._sm, ndim)
        else:
            s = r
        vals = dict(vals)
        vals["difference"] = float(np.mean(s[self._bvalid] ** 2))
        if self._bandset is not None:
            shift, diff = self._bandset.features(r, s)
            if "band_shift" in self._band_feats:
                vals["band_shift"] = shift
            if "band_difference" in self._band_feats:
                vals["band_difference"] = diff
        if ndim == 2:
            coarse = s[::self._stride, ::self._stride][self._coarse_valid]
        else:
            coarse = s[self._bvalid]
        return idx, vals, coarse.astype(np.float32), s

    def _poisson_var(self, ref):
        """Variance of a binned mean from the (smoothed) reference rate."""
        sm = max(self._sm, 1.0)
        norm = ndimage.gaussian_filter(self._bvalidf, sm)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = ndimage.gaussian_filter(np.where(self._bvalid, ref, 0.0), sm) / norm
        rate = np.where(self._bvalid, np.maximum(rate, 1.0 / np.maximum(self._nvalid, 1.0)),
                        1.0)
        return np.where(self._bvalid, rate / np.maximum(self._nvalid, 1.0), 1.0)

    def reference_sigma(self):
        """Standard deviation of the reference (profiles) or None."""
        if self.kind != "profiles" or self._ref is None:
            return None
        v = self._var_ref if self._var_from_sigma else self._var
        return np.sqrt(v / self.warmup)


@functools.lru_cache(maxsize=1)
def _load_kernels():
    """spotkit.change._kernels when numba is installed (compiled once), else None."""
    try:
        from spotkit.change import _kernels
    except ImportError:
        logger.info("numba is not installed: change features run in numpy (about 2x slower)")
        return None
    _kernels.warm_up()
    return _kernels


def _block_sum(x, b):
    """Sum of ``b x b`` blocks as float32 (integers are summed exactly first)."""
    if b == 1:
        return x.astype(np.float32)
    if x.dtype.kind in "iub":
        lo, hi = int(x.min()), int(x.max())
        acc = np.int32 if max(abs(lo), abs(hi)) * b * b < 2**31 else np.int64
    else:
        acc = np.float64
    rows = x[0::b].astype(acc)  # strided adds: much faster than reshape(...).sum(axis=1)
    for i in range(1, b):
        rows += x[i::b]
    out = rows[:, 0::b].copy()
    for j in range(1, b):
        out += rows[:, j::b]
    return out.astype(np.float32)


def frame_features(series, *, features=None, mask=None, warmup: int = 8, smooth: float = 2.0,
                   bin="auto", sigma=None, bands="auto"):
    """Change features of every frame (or I(q) profile) of a series.

    * ``unique_count``: number of distinct integer values (:func:`unique_count`);
    * ``difference``: mean square of the Gaussian-smoothed difference from the reference
      (mean of the first ``warmup`` frames; each warm-up frame is compared with the mean of
      the others), in units of the noise: about 1 while nothing changes. For profiles with
      ``smooth=0`` it is chi^2 per degree of freedom of ``I - I_ref`` with the errors;
    * ``ssim``: structural similarity to the previous frame (frames only);
    * ``mean``, ``median``: of the valid pixels (baselines; they miss many changes);
    * ``band_shift``, ``band_difference`` (:data:`BAND_FEATURES`): per q band of a profile or
      per region of the detector, at nested scales (see ``bands``), the sum of the
      noise-normalised residuals divided by the square root of their number (about N(0, 1)
      while nothing changes; a change confined to the band adds up coherently instead of
      being diluted by the rest of the profile) and the band's own ``difference``.

    Parameters
    ----------
    series : array_like or xarray
        ``(frame, y, x)`` frames (numpy, dask, xarray) or ``(frame or time, q)`` profiles
        (DataArray, or Dataset with ``intensity`` and ``sigma``).
    features : sequence of str, optional
        Names from :data:`FEATURES` and :data:`BAND_FEATURES`; default ``("unique_count",
        "difference", "ssim")`` for frames, ``("difference",)`` for profiles. ``difference``
        is always included.
    mask : array_like of bool, optional
        True on invalid pixels; negative pixels of the first frame are also invalid.
    warmup : int
        Frames that make the reference (>= 3).
    smooth : float
        Gaussian sigma of the difference, in detector pixels (or q bins for profiles).
    bin : "auto" or int
        Frames are averaged in ``bin x bin`` blocks before the difference and SSIM ("auto":
        at most 160,000 blocks, e.g. 4 for a Pilatus 2M).
    sigma : array_like, optional
        Errors of ndarray profiles (an xarray Dataset brings its own ``sigma``). Without
        errors the noise is estimated from the warm-up frames.
    bands : "auto" or int
        Finest number of contiguous q bands (each of equal numbers of valid bins; "auto":
        16) or of detector regions per axis ("auto": 8, i.e. 8 x 8 tiles); coarser levels
        join neighbours two by two (2 x 2) down to the whole profile or frame. Used by the
        band features only.

    Returns
    -------
    xarray.Dataset
        One variable per feature, dims ``(frame,)`` (or ``time``) with the series'
        coordinate; band features have dims ``(frame, band)`` with the band's ``level``
        (number of bands per axis at its scale) and its extent: ``q_min``/``q_max`` (or bin
        indices ``lo``/``hi``) for profiles, pixel ``y0, y1, x0, x1`` (end exclusive) for
        frames.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.io import open_saxs
    >>> from spotkit.sim import simulate_saxs_series
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "series.h5"
    >>> truth = simulate_saxs_series(path, n_frames=12, onset_frame=8)
    >>> feats = frame_features(open_saxs(path), warmup=5)
    >>> feats["difference"].sizes["frame"]
    12
    >>> feats["difference"].plot()  # a line per feature in JupyterLab  # doctest: +SKIP
    """
    s = as_series(series, sigma=sigma)
    table, _, engine = _compute(s, features=features, mask=mask, warmup=warmup, smooth=smooth,
                                bin=bin, bands=bands)
    return _to_dataset(table, s, engine.features, engine)


def _compute(s, *, features, mask, warmup, smooth, bin, keep_coarse=False, bands="auto"):
    if s.n < warmup:
        raise ValueError(f"the series has {s.n} frames, fewer than warmup={warmup}")
    engine = _Engine(kind=s.kind, shape=s.shape, mask=mask, warmup=warmup, smooth=smooth,
                     bin=bin, features=features, bands=bands)
    table = {f: None if f in BAND_FEATURES else np.empty(s.n) for f in engine.features}
    coarse = [] if keep_coarse else None
    for k in range(s.n):
        for idx, vals, vec, _ in engine.push(s.item(k), s.sigma_item(k)):
            for f in engine.features:
                if table[f] is None:
                    table[f] = np.empty((s.n, len(vals[f])))
                table[f][idx] = vals[f]
            if coarse is not None:
                coarse.append(vec)
    logger.debug("computed %s for %d %s", engine.features, s.n, s.kind)
    return table, (np.stack(coarse) if coarse is not None else None), engine


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


def _to_dataset(table, s, names, engine=None):
    import xarray as xr

    data, coords = {}, {s.time_dim: s.time}
    for f in names:
        if f in BAND_FEATURES:
            data[f] = ((s.time_dim, "band"), table[f])
            coords.update(band_coords(engine, s))
        else:
            data[f] = ((s.time_dim,), table[f])
    ds = xr.Dataset(data, coords=coords)
    ds.attrs["kind"] = s.kind
    return ds
