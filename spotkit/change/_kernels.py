"""numba kernels for the per-frame features (imported only when numba is installed).

One pass over a detector frame does what three numpy passes do otherwise: it marks the
distinct integer values (for ``unique_count``) and sums the valid pixels into ``b x b``
blocks (for the smoothed difference and SSIM). On a Pilatus 2M frame that is ~2.5 ms
instead of ~10 ms, which keeps the online detector well under the reduction's own time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

COUNT = 1  #: flag bit: the pixel's value counts for ``unique_count``
SUM = 2  #: flag bit: the pixel is summed into its block


@njit(cache=True, nogil=True)
def fused_frame(raw, flags, block_row, block_col, seen, sums):  # pragma: no cover
    """Distinct values >= 0 among ``COUNT`` pixels, and block sums of ``SUM`` pixels.

    Parameters
    ----------
    raw : 2-D integer array
        The frame.
    flags : 2-D uint8 array, same shape
        ``COUNT | SUM`` bits per pixel (pixels outside whole blocks have no ``SUM`` bit).
    block_row, block_col : 1-D int32 arrays
        Block index of each row and column (clipped to the last block).
    seen : 1-D int32 array
        All zero on entry and on return; values ``>= len(seen)`` are not counted.
    sums : 2-D int64 array
        Overwritten with the block sums.

    Returns
    -------
    int
        The number of distinct values, or -1 when a value did not fit ``seen`` (the block
        sums are right even then).
    """
    sums[:, :] = 0
    n_seen = len(seen)
    overflow = False
    rows, cols = raw.shape
    for i in range(rows):
        srow = sums[block_row[i]]
        frow = flags[i]
        rrow = raw[i]
        for j in range(cols):
            v = rrow[j]
            if v >= 0:
                f = frow[j]
                if f & 1:
                    if v < n_seen:
                        seen[v] = 1
                    else:
                        overflow = True
                if f & 2:
                    srow[block_col[j]] += v
    distinct = 0
    for k in range(n_seen):
        distinct += seen[k]
        seen[k] = 0
    return -1 if overflow else distinct


def warm_up() -> None:
    """Compile the kernel (or load it from numba's cache) on a tiny frame."""
    idx = np.zeros(4, np.int32)
    fused_frame(np.zeros((4, 4), np.int32), np.full((4, 4), COUNT | SUM, np.uint8), idx, idx,
                np.zeros(2, np.int32), np.zeros((1, 1), np.int64))
