"""Type aliases of spotkit.io's public signatures."""

from __future__ import annotations

import os
from typing import Any, TypeAlias

__all__ = ["Chunks", "PathLike"]

#: a file or folder name
PathLike: TypeAlias = str | os.PathLike[str]
#: ``chunks=``: frames (or projections) per dask chunk, explicit dask chunks, or None (default)
Chunks: TypeAlias = int | tuple[Any, ...] | None
