"""The built-in backend's optional engines, finufft and numba, imported once.

Each loader logs once when its package is missing and returns None; the callers then take
their numpy path. Callers look the loaders up on this module at call time
(``_engines.load_numba()``), so a test can force the numpy path by patching one name.
"""

from __future__ import annotations

import contextlib
import functools
import logging

logger = logging.getLogger("spotkit.tomo.backends._builtin")

EXTRA = 'pip install "spotkit[tomo]"'


@functools.lru_cache(maxsize=1)
def load_finufft():
    try:
        import finufft
    except ImportError:
        logger.warning(
            "finufft is not installed: gridrec runs as filtered back-projection, which is "
            "much slower; %s", EXTRA)
        return None
    return finufft


@functools.lru_cache(maxsize=1)
def load_numba():
    try:
        import numba

        from spotkit.tomo.backends import _kernels
    except ImportError:
        logger.warning(
            "numba is not installed: back-projection and SIRT run in numpy, 20x slower or "
            "more; %s", EXTRA)
        return None
    return numba, _kernels


@contextlib.contextmanager
def numba_threads(numba, threads: int | None):
    if threads is None:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)
