"""The registry of compute targets by kind, with the settings each one takes.

Like the reconstruction backends: built-in kinds (``local``, ``slurm``, ``nersc``) and any
a package adds through the ``spotkit.targets`` entry-point group. The settings a rules file
may give a target are derived from the target class's constructor (names, and the types its
annotations or defaults allow), so nothing copies them by hand.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import types
import typing
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

__all__ = [
    "ENTRY_POINT_GROUP",
    "make_target",
    "register_target",
    "target_choices",
    "target_class",
    "target_kinds",
    "target_settings",
]

logger = logging.getLogger(__name__)

#: entry-point group through which packages add compute targets (``kind = "pkg.mod:Class"``)
ENTRY_POINT_GROUP = "spotkit.targets"
_BUILTIN = {
    "local": "spotkit.compute._local:Local",
    "slurm": "spotkit.compute._slurm:Slurm",
    "nersc": "spotkit.compute._nersc:NERSC",
}
_REGISTRY: dict[str, Any] = dict(_BUILTIN)  # kind: class, or "module:Class" until loaded
_SCANNED = False


def register_target(kind: str, cls) -> None:
    """Make a compute target class available by kind.

    Parameters
    ----------
    kind : str
        The name used in rules files (``targets: {name: {kind: ...}}``).
    cls : type or str
        A subclass of :class:`spotkit.compute.Target`, or ``"module:Class"`` (imported
        when first used).
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"a target kind is a non-empty string, not {kind!r}")
    _REGISTRY[kind] = cls


def _scan() -> None:
    global _SCANNED
    if _SCANNED:
        return
    _SCANNED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTRY.setdefault(ep.name, ep.value)


def target_kinds() -> list[str]:
    """The kinds of compute target available, sorted."""
    _scan()
    return sorted(_REGISTRY)


def target_class(kind: str):
    """The class of a target kind (imported on first use).

    Raises
    ------
    ValueError
        For an unknown kind (the message lists the known ones), or a plug-in that cannot
        be imported.
    """
    _scan()
    if kind not in _REGISTRY:
        raise ValueError(f"unknown target kind {kind!r}; choose one of {target_kinds()}")
    cls = _REGISTRY[kind]
    if isinstance(cls, str):
        module, _, name = cls.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"target kind {kind!r} ({_REGISTRY[kind]}) cannot be loaded: "
                             f"{exc}") from exc
        from spotkit.compute._base import Target

        if not (isinstance(cls, type) and issubclass(cls, Target)):
            raise ValueError(f"target kind {kind!r}: {cls!r} is not a spotkit.compute.Target")
        _REGISTRY[kind] = cls
    return cls


def _types_of(annotation, default) -> tuple[type, ...]:
    """The plain types (as YAML gives them) a constructor parameter accepts."""
    out: list[type] = []

    def add(tp) -> None:
        origin = typing.get_origin(tp) or tp
        if origin in (typing.Union, types.UnionType):
            for arg in typing.get_args(tp):
                add(arg)
        elif tp is type(None) or tp is None:
            return
        elif origin is float:
            out.extend((int, float))
        elif origin in (str, Path, os.PathLike):
            out.append(str)
        elif origin in (list, tuple, set, frozenset) or (
                isinstance(origin, type) and issubclass(origin, typing.Sequence)
                and origin is not str):
            out.append(list)
        elif isinstance(origin, type) and issubclass(origin, typing.Mapping):
            out.append(dict)
        elif isinstance(origin, type):
            out.append(origin)

    if annotation is not inspect.Parameter.empty:
        add(annotation)
    elif default is not inspect.Parameter.empty and default is not None:
        add(type(default))
    return tuple(dict.fromkeys(out)) or (str, int, float, bool, list, dict)


def target_settings(kind: str) -> dict[str, tuple[type, ...]]:
    """The settings a rules file may give a target of this kind, with the types allowed.

    Derived from the class's constructor; a class may rename settings for rules files with
    a ``settings_aliases`` mapping (``{"key_file": "key"}``: a file name, never the key).

    Returns
    -------
    dict
        ``{setting: (type, ...)}``.
    """
    cls = target_class(kind)
    try:
        sig = inspect.signature(cls.__init__, eval_str=True)
    except (NameError, TypeError):
        sig = inspect.signature(cls.__init__)
    aliases = {v: k for k, v in getattr(cls, "settings_aliases", {}).items()}
    out = {}
    for name, param in sig.parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        out[aliases.get(name, name)] = _types_of(param.annotation, param.default)
    return out


def target_choices(kind: str) -> dict[str, tuple]:
    """The settings of a target kind that take one of a fixed set of values, with the values.

    From the class's ``setting_choices`` mapping (e.g. NERSC's machines and QOS names).
    """
    return dict(getattr(target_class(kind), "setting_choices", {}))


def make_target(kind: str, **settings):
    """Build a compute target from a rules file's settings for it.

    Parameters
    ----------
    kind : str
        One of :func:`target_kinds`.
    **settings
        Its settings (aliases such as ``key_file`` are mapped to the constructor's names;
        ``~`` in them is expanded).

    Returns
    -------
    spotkit.compute.Target
    """
    cls = target_class(kind)
    aliases = getattr(cls, "settings_aliases", {})
    kwargs = {}
    for name, value in settings.items():
        if name in aliases:
            name = aliases[name]
            value = os.path.expanduser(value) if isinstance(value, str) else value
        kwargs[name] = value
    return cls(**kwargs)
