"""Runners: how a science entry point that needs files reaches the orchestration layer.

Science packages are array in, array out: they import neither the I/O layer nor
orchestration. A few of their entry points still take a scan on disk, because that is what
users hold: :meth:`spotkit.tomo.TomoPipeline.run` (read a scan block by block, write a
volume) and :func:`spotkit.tomo.preview`. They look up a *runner* here by name, and the
orchestration package that owns the files registers it (dependency inversion):
:mod:`spotkit.pipelines` registers ``"tomo.pipeline"`` and ``"tomo.preview"`` when it is
imported, and ``import spotkit`` imports it, so the runners are always there.

This module sits below every layer (it imports nothing of spotkit but the errors), so
registering a runner does not import the science package, nor looking one up the
orchestration package.

Examples
--------
>>> from spotkit._runners import get_runner, registered_runners
>>> "tomo.pipeline" in registered_runners()          # import spotkit registered it
True
>>> get_runner("tomo.pipeline").__name__
'run_tomo'
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from spotkit.errors import RunnerNotRegisteredError

__all__ = ["RunnerNotRegisteredError", "get_runner", "register_runner", "registered_runners"]


def _shared_registry() -> dict[str, Callable[..., Any]]:
    """The registry of this module's first copy, if this file is executed a second time.

    pytest's importlib import mode may execute a module again by path after its package
    imported it (collecting doctests): the second copy must not start an empty registry.
    """
    earlier = getattr(sys.modules.get("spotkit"), "_runners", None)
    found = getattr(earlier, "_RUNNERS", None)
    return found if isinstance(found, dict) else {}


_LOCK = threading.Lock()
_RUNNERS: dict[str, Callable[..., Any]] = _shared_registry()


def register_runner(name: str, runner: Callable[..., Any]) -> None:
    """Register ``runner`` under ``name``, replacing an earlier one.

    Parameters
    ----------
    name : str
        Dotted name, ``"<science package>.<entry point>"`` (``"tomo.pipeline"``).
    runner : callable
        What the entry point delegates to.

    Raises
    ------
    TypeError
        If ``runner`` is not callable.
    """
    if not callable(runner):
        raise TypeError(f"runner {name!r} must be callable, got {type(runner).__name__}")
    with _LOCK:
        _RUNNERS[str(name)] = runner


def get_runner(name: str, *, what: str = "this call",
               provider: str = "spotkit.pipelines") -> Callable[..., Any]:
    """The runner registered under ``name``.

    Raises
    ------
    RunnerNotRegisteredError
        Naming the entry point (``what``) and the package that registers it (``provider``).
    """
    with _LOCK:
        runner = _RUNNERS.get(name)
    if runner is None:
        raise RunnerNotRegisteredError(name, what=what, provider=provider)
    return runner


def registered_runners() -> list[str]:
    """Names of the registered runners, sorted."""
    with _LOCK:
        return sorted(_RUNNERS)


def unregister_runner(name: str) -> Callable[..., Any] | None:
    """Remove and return the runner under ``name`` (None if none); for tests."""
    with _LOCK:
        return _RUNNERS.pop(name, None)
