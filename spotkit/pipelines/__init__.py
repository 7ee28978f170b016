"""Pipelines on data on disk: the runners behind the science packages' whole-scan calls.

Orchestration layer: it may import :mod:`spotkit.io`, :mod:`spotkit.catalog` and the science
packages; the science packages do not import it. They reach it through the runners this
package registers when it is imported (``import spotkit`` imports it):

- :func:`run_tomo` — a :class:`spotkit.tomo.TomoPipeline` on a scan: row blocks read under
  a memory budget, reconstructed with dask (threads or a distributed client), streamed into
  an HDF5 volume with provenance. :meth:`TomoPipeline.run` calls it (runner
  ``"tomo.pipeline"``).
- :func:`preview_tomo` — the fast preview of a scan, reading only a few rows and two frames;
  :func:`spotkit.tomo.preview` calls it (runner ``"tomo.preview"``).
- :func:`is_scan_source`, :func:`open_scan`, :func:`read_rows`, :func:`read_sinogram`,
  :func:`scan_theta` — a scan opened lazily and the detector rows read from it, reading only
  those rows.

Importing this package is cheap: its modules (and the science and I/O packages they use)
are imported on first use.

Examples
--------
>>> import tempfile, pathlib
>>> from spotkit.sim import simulate_tomo_scan
>>> from spotkit.pipelines import run_tomo
>>> from spotkit.tomo import TomoPipeline
>>> with tempfile.TemporaryDirectory() as tmp:
...     truth = simulate_tomo_scan(pathlib.Path(tmp) / "scan.h5", shape=(61, 4, 48))
...     pipe = TomoPipeline.default(center=truth.center, algorithm="fbp")
...     result = run_tomo(pipe, truth.path, pathlib.Path(tmp) / "volume.h5")
>>> result.shape
(4, 48, 48)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from spotkit._runners import register_runner

__all__ = [
    "is_scan_source",
    "open_scan",
    "preview_tomo",
    "read_rows",
    "read_sinogram",
    "run_tomo",
    "scan_theta",
]

#: public name -> module that defines it (imported on first use)
_WHERE = {
    "is_scan_source": "spotkit.pipelines._scan",
    "open_scan": "spotkit.pipelines._scan",
    "read_rows": "spotkit.pipelines._scan",
    "read_sinogram": "spotkit.pipelines._scan",
    "scan_theta": "spotkit.pipelines._scan",
    "run_tomo": "spotkit.pipelines._tomo",
    "preview_tomo": "spotkit.pipelines._preview",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _deferred(name: str) -> Callable[..., Any]:
    """A runner that imports ``name``'s module on its first call (keeps this import cheap)."""

    def runner(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(_WHERE[name]), name)(*args, **kwargs)

    runner.__name__ = runner.__qualname__ = name
    runner.__doc__ = f"Calls :func:`spotkit.pipelines.{name}` (imported on first use)."
    return runner


register_runner("tomo.pipeline", _deferred("run_tomo"))
register_runner("tomo.preview", _deferred("preview_tomo"))
