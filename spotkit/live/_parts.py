"""The parts of a live session: frame source, geometry, mask, reducer, frame fingerprint."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from spotkit.errors import SpotkitError


def fingerprint(data: np.ndarray) -> str:
    """A frame's content hash: a series written again under the same name is another."""
    a = np.ascontiguousarray(data)
    digest = hashlib.blake2b(a.tobytes(), digest_size=16)
    digest.update(f"{a.shape}{a.dtype}".encode())
    return digest.hexdigest()


def open_source(path: str | os.PathLike, *, start: int = 0) -> Any:
    """A frame source following ``path`` from frame ``start``."""
    from spotkit.io import follow_frames

    return follow_frames(path, start=start)


def make_reducer(integrator: Any, *, npt: int, mask: np.ndarray | None) -> Any:
    """The frame reducer (I(q) and sigma per frame) for ``integrator``."""
    from spotkit.scattering import FrameReducer

    return FrameReducer(integrator, npt=npt, mask=mask)


def load_integrator(geometry: Any, info: Any, shape: tuple[int, ...], path: Path) -> Any:
    """The azimuthal integrator: ``geometry`` itself, its PONI file, or the series' own."""
    from spotkit.io import load_geometry

    if geometry is not None and hasattr(geometry, "integrate1d"):
        return geometry
    if geometry is None:
        geometry = getattr(info, "poni_path", None)
    if geometry is None:
        raise SpotkitError(f"{path}: no detector geometry: the series names no PONI "
                           "file; give one (geometry= in Python, --poni on the command "
                           "line)")
    return load_geometry(geometry, shape=shape)


def load_mask(mask: Any, info: Any, shape: tuple[int, ...], path: Path) -> np.ndarray | None:
    """The detector mask: ``mask`` itself, its file, or the series' own mask file."""
    from spotkit.io import load_mask as read_mask

    if mask is None:
        mask = getattr(info, "mask_path", None)
        if mask is None:
            return None
    if isinstance(mask, str | os.PathLike):
        return read_mask(mask, shape=shape)
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(shape):
        raise ValueError(f"mask of shape {m.shape} does not fit the frames of {path} "
                         f"({tuple(shape)})")
    return m
