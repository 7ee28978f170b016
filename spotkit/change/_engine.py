"""The feature engine: each frame's features against a warm-up reference, frame by frame.

Shared by :func:`spotkit.change.frame_features`, :func:`spotkit.change.detect_changes` and
:class:`spotkit.change.OnlineDetector`, so that all three see the same numbers.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ._bands import _BandSet, check_bands
from ._feature_names import (
    _ALL,
    _MAX_BINNED,
    _MAX_COARSE,
    _MAX_SSIM,
    _PROFILE_OK,
    BAND_FEATURES,
    FRAME_DEFAULT,
    PROFILE_DEFAULT,
)
from ._input import Bands, Binning, Names, check_frame, check_mask
from ._measures import _count_unique, _noise_factor, _ssim_map, unique_count

logger = logging.getLogger(__name__)


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

    def __init__(self, *, kind: str, shape: tuple[int, ...], mask: npt.ArrayLike | None = None,
                 warmup: int = 8, smooth: float = 2.0, bin: Binning = "auto",
                 features: Names = None, ssim_sigma: float = 1.5,
                 bands: Bands = "auto") -> None:
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
        self._bandset: _BandSet | None = None  # made when the warm-up ends (validity final)
        self.index = 0
        #: the warm-up so far: (index, partial features, binned frame, variance or None)
        self._buffer: list[tuple[int, dict[str, Any], np.ndarray, np.ndarray | None]] = []
        self._ref: np.ndarray | None = None
        self._need = self.warmup  # frames that make the next reference
        self._nref = self.warmup  # frames that made the current one
        #: the last frames pushed, in the same form (see :meth:`keep`; None: not kept)
        self._recent: deque | None = None
        #: the variance of the reference before a re-arm, kept for the new one (profiles
        #: without sigma: a variance from a few frames is too noisy)
        self._keep_var: np.ndarray | None = None
        self._prev = None
        self._static = None
        self._fused_masks = None

    @property
    def bandset(self) -> _BandSet:
        """The bands or detector regions (made when the warm-up ends)."""
        if self._bandset is None:
            raise RuntimeError("the bands are made when the warm-up ends; push more frames")
        return self._bandset

    @property
    def warmup_left(self) -> int:
        """Frames still needed to complete the reference (0 once it is made)."""
        return 0 if self._ref is not None else max(self._need - len(self._buffer), 0)

    def restart(self) -> None:
        """Forget the reference: the next frames make a new warm-up."""
        self._ref = None
        self._buffer = []
        self._need = self.warmup
        self._keep_var = None

    def keep(self, n: int) -> None:
        """Keep the last ``n`` frames pushed (reduced: binned image or profile), for
        :meth:`rearm`."""
        self._recent = deque(maxlen=int(n))

    def rearm(self, after: int, n: int) -> tuple[list, int]:
        """A new reference from the first ``n`` kept frames after frame ``after``.

        The frames kept after those are scored against the new reference at once; when
        fewer than ``n`` frames are kept after ``after``, the next frames pushed complete
        the reference. A variance learned from the frames themselves (profiles without
        sigma) is kept from the previous reference: one from a few frames would be noisy,
        and correlated with the residuals of those frames (whose features start the
        detector's new baseline). Needs :meth:`keep`.

        Returns
        -------
        rows : list
            The rows that became ready (as from :meth:`push`).
        n_ref : int
            How many of them are the new reference's own frames (0 while it is incomplete).
        """
        if self._recent is None:
            raise RuntimeError("rearm() needs the recent frames: call keep() first")
        keep = None
        if self._ref is not None and not self._var_from_sigma and self.kind == "profiles":
            keep = self._var
        elif self._ref is None:
            keep = self._keep_var  # re-armed again before the last reference was made
        self._ref = None
        self._buffer = []
        self._need = int(n)
        self._keep_var = keep
        rows: list = []
        n_ref = 0
        for item in [r for r in self._recent if r[0] > after]:
            if self._ref is None:
                self._buffer.append(item)
                if len(self._buffer) >= self._need:
                    rows = self._finish_warmup()
                    n_ref = len(rows)
            else:
                rows.append(self._row(*item, loo=None))
        return rows, n_ref

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
        if self._recent is not None:
            self._recent.append((idx, vals, binned, var))
        if self._ref is None:
            self._buffer.append((idx, vals, binned, var))
            if len(self._buffer) < self._need:
                return []
            return self._finish_warmup()
        return [self._row(idx, vals, binned, var, loo=None)]

    def _finish_warmup(self):
        stack = np.stack([b[2].astype(np.float64) for b in self._buffer])
        self._ref = stack.mean(axis=0)
        self._nref = len(self._buffer)
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
            if self._keep_var is not None:  # a re-armed short reference
                self._var = self._keep_var
            self._var_from_sigma = False
        self._keep_var = None
        if not self._bvalid.any():
            raise ValueError("no valid pixel or q bin is left (all masked or zero sigma)")
        if self._band_feats:
            self._bandset = _BandSet.build(self)
        rows = [self._row(i, vals, b, v, loo=stack) for i, vals, b, v in self._buffer]
        self._buffer = []
        return rows

    def _row(self, idx, vals, binned, var, *, loo):
        w = self._nref
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
        return np.sqrt(v / self._nref)


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
