"""Reconstruction backends: the registry behind :func:`spotkit.tomo.reconstruct`.

Built-in backends are listed in :data:`BUILTIN_BACKENDS` (imported only when used);
third-party packages add theirs through the ``spotkit.backends`` entry-point group, each
entry pointing at a :class:`ReconBackend` subclass::

    [project.entry-points."spotkit.backends"]
    mygpu = "mypkg.recon:MyGpuBackend"

Entry points are read the first time a backend is looked up; one that fails to load is
reported with a warning and skipped.
"""

from __future__ import annotations

import functools
import importlib
import logging
import warnings
from importlib.metadata import entry_points

from spotkit.tomo.backends._base import ReconBackend, ReconInfo, ReconRequest

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_BACKENDS",
    "ReconBackend",
    "ReconInfo",
    "ReconRequest",
    "available_backends",
    "get_backend",
    "list_backends",
]

#: name -> "module:class" of the backends shipped with spotkit.
BUILTIN_BACKENDS = {
    "builtin": "spotkit.tomo.backends._builtin:BuiltinBackend",
    "tomopy": "spotkit.tomo.backends._tomopy:TomopyBackend",
    "astra": "spotkit.tomo.backends._astra:AstraBackend",
}
ENTRY_POINT_GROUP = "spotkit.backends"


def _load_class(target: str) -> type:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.lru_cache(maxsize=1)
def _plugins() -> dict[str, ReconBackend]:
    found: dict[str, ReconBackend] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_BACKENDS:
            warnings.warn(f"reconstruction backend plugin {ep.value!r} uses the reserved name "
                          f"{ep.name!r}; it is ignored", RuntimeWarning, stacklevel=2)
            continue
        try:
            cls = ep.load()
            backend = cls()
            if not isinstance(backend, ReconBackend):
                raise TypeError(f"{cls!r} is not a spotkit ReconBackend subclass")
        except Exception as exc:  # a broken plugin must not break spotkit
            warnings.warn(f"cannot load reconstruction backend {ep.name!r} from {ep.value!r}: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            continue
        found[ep.name] = backend
    return found


@functools.cache
def _builtin_instance(name: str) -> ReconBackend:
    return _load_class(BUILTIN_BACKENDS[name])()


def list_backends() -> list[str]:
    """Names of every registered backend, available here or not.

    Examples
    --------
    >>> "builtin" in list_backends()
    True
    """
    return [*BUILTIN_BACKENDS, *sorted(_plugins())]


def get_backend(name: str) -> ReconBackend:
    """The backend registered as ``name``.

    Parameters
    ----------
    name : str
        A name from :func:`list_backends`.

    Raises
    ------
    ValueError
        If no backend has that name.

    Examples
    --------
    >>> get_backend("builtin").name
    'builtin'
    """
    if name in BUILTIN_BACKENDS:
        return _builtin_instance(name)
    plugins = _plugins()
    if name in plugins:
        return plugins[name]
    raise ValueError(f"unknown backend {name!r}; choose one of {['auto', *list_backends()]}")


def available_backends() -> list[str]:
    """Names of the backends whose engine is installed here, best first.

    Examples
    --------
    >>> available_backends()[-1] in list_backends()
    True
    """
    usable = [(name, get_backend(name)) for name in list_backends()]
    usable = [(name, b) for name, b in usable if b.available()]
    return [name for name, b in sorted(usable, key=lambda item: -item[1].priority)]
