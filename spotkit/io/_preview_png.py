"""Draw a tomography preview (:func:`spotkit.tomo.preview`) into a PNG file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["write_preview_png"]


def write_preview_png(preview_ds, path: str | os.PathLike, *, dpi: int = 80) -> Path:
    """Draw a preview (radiographs with the slice rows marked, then the slices) into a PNG.

    Parameters
    ----------
    preview_ds : xarray.Dataset
        The result of :func:`spotkit.tomo.preview` (or
        :func:`spotkit.tomo.preview_from_arrays`).
    path : path-like
        PNG file to write (replaced if it exists).
    dpi : int
        Resolution.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If ``preview_ds`` lacks the ``slices`` or ``radiographs`` of a preview.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np, xarray as xr
    >>> pv = xr.Dataset(
    ...     {"slices": (("slice", "y", "x"), np.random.default_rng(0).random((2, 16, 16))),
    ...      "radiographs": (("view", "v", "u"), np.ones((2, 8, 16)))},
    ...     coords={"slice": [3, 5], "view": [0.0, 90.0]},
    ...     attrs={"binning": 1, "center": 8.0, "sample": "demo"})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     png = write_preview_png(pv, pathlib.Path(tmp) / "preview.png")
    ...     png.read_bytes()[:4]
    b'\\x89PNG'
    """
    from matplotlib.figure import Figure

    missing = [k for k in ("slices", "radiographs")
               if k not in getattr(preview_ds, "data_vars", {})]
    if missing:
        raise ValueError(f"preview_ds has no {missing}: pass the result of spotkit.tomo.preview")
    path = Path(path)
    n_sl = preview_ds.sizes["slice"]
    fig = Figure(figsize=(3.2 * (2 + n_sl), 3.4))
    axes = fig.subplots(1, 2 + n_sl)
    for ax, view in zip(axes[:2], range(2), strict=True):
        img = preview_ds["radiographs"][view]
        ax.imshow(img, cmap="gray", vmin=0, vmax=1.05, aspect="auto")
        for r in preview_ds["slice"].values:
            ax.axhline(r / preview_ds.attrs["binning"], color="tab:orange", lw=0.8)
        ax.set_title(f"radiograph {float(preview_ds['view'][view]):.0f}°", fontsize=9)
        ax.axis("off")
    sl = preview_ds["slices"].values
    lo, hi = np.percentile(sl, [1, 99.8])
    for ax, k in zip(axes[2:], range(n_sl), strict=True):
        ax.imshow(sl[k], cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(f"row {int(preview_ds['slice'][k])}", fontsize=9)
        ax.axis("off")
    fig.suptitle(
        f"{preview_ds.attrs.get('sample', '')}  centre {preview_ds.attrs['center']:.2f}",
        fontsize=10,
    )
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.partial")
    try:  # a reader never sees half a PNG
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
