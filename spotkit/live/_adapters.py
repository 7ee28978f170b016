"""The parts a live session is made of: the frame source and the reducer.

The source prefers :func:`spotkit.io.follow_frames` and falls back to reading a finished
series (what spotkit had before it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Frame:
    index: int
    data: np.ndarray
    time_s: float | None
    written_at: float


class _Info(NamedTuple):
    shape: tuple[int, ...] | None
    dtype: Any
    poni_path: Path | None
    mask_path: Path | None
    metadata: dict


class _FinishedSeries:
    """A series that is already written (read through :func:`spotkit.io.open_saxs`).

    The stand-in for :func:`spotkit.io.follow_frames` where that is missing: every frame
    is available at once, and the series counts as finished.
    """

    def __init__(self, path: Path, *, start: int = 0) -> None:
        from spotkit.io import open_saxs, read_metadata

        self.path = Path(path)
        self._frames = open_saxs(self.path)
        meta = read_metadata(self.path)
        attrs = dict(self._frames.attrs)
        poni = attrs.get("poni_path") or attrs.get("geometry_file")
        self.info = _Info(shape=tuple(self._frames.shape[1:]), dtype=self._frames.dtype,
                          poni_path=Path(poni) if poni else None, mask_path=None,
                          metadata={"beamline": meta.beamline, "sample": meta.sample,
                                    "proposal": meta.proposal, "start_time": meta.start_time})
        self.next_index = int(start)
        self.available = int(self._frames.shape[0])
        self.finished = True
        self._mtime = os.stat(self.path).st_mtime
        self._dt = attrs.get("frame_time_s")

    def poll(self, max_frames: int | None = None) -> list[_Frame]:
        stop = self.available if max_frames is None else min(self.available,
                                                              self.next_index + max_frames)
        out = []
        for i in range(self.next_index, stop):
            t = None if self._dt is None else i * float(self._dt)
            out.append(_Frame(i, np.asarray(self._frames[i].values), t, self._mtime))
        self.next_index = max(self.next_index, stop)
        return out

    def close(self) -> None:
        pass


def open_source(path: str | os.PathLike, *, start: int = 0) -> Any:
    """A frame source following ``path`` from frame ``start``."""
    try:
        from spotkit.io import follow_frames  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        logger.info("spotkit.io.follow_frames is not available: reading %s as a finished "
                    "series", path)
        return _FinishedSeries(Path(path), start=start)
    return follow_frames(path, start=start)


def make_reducer(integrator: Any, *, npt: int, mask: np.ndarray | None) -> Any:
    """The frame reducer (I(q) and sigma per frame) for ``integrator``."""
    from spotkit.scattering import FrameReducer

    return FrameReducer(integrator, npt=npt, mask=mask)
