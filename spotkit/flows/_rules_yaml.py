"""Reading a rules file: YAML text with the line of every key and item kept.

The document is parsed once into a node tree (every node carries its start mark), built
into plain Python objects from that tree, and the tree is walked for ``{path: line}``, so
that a problem found at ``("rules", 0, "actions", 2, "target")`` names its line.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Lines", "Source", "read_source"]

Loc = tuple[Any, ...]


@dataclass
class Lines:
    """1-based lines of the keys and items of a YAML document, by path.

    ``lines[("targets", "local", "kind")]`` is the line of the key ``kind`` of the target
    ``local``; :meth:`of` answers for any path with the line of its deepest known part.
    """

    by_path: dict[Loc, int] = field(default_factory=dict)

    def of(self, path: Loc) -> int | None:
        """The line of ``path``, or of the nearest enclosing key or item; None if unknown."""
        for i in range(len(path), -1, -1):
            line = self.by_path.get(tuple(path[:i]))
            if line is not None:
                return line
        return None


@dataclass
class Source:
    """A rules document as read: its data, the lines of its parts and where it came from."""

    data: Any
    lines: Lines
    name: str | None
    base: Path
    duplicates: list[tuple[Loc, int, int]] = field(default_factory=list)
    """``(path, line, first_line)`` of every key given twice in one mapping."""


class SourceError(Exception):
    """The source cannot be read or is not YAML; ``line`` is where the parser stopped."""

    def __init__(self, message: str, name: str | None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.name = name
        self.line = line


def read_source(source: Any, base_dir: str | os.PathLike | None = None) -> Source:
    """Read a rules source: a ``.yaml`` path, YAML text, or a mapping.

    Raises
    ------
    SourceError
        The file cannot be read, or the text is not valid YAML (with the parser's line).
    """
    if isinstance(source, Mapping):
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        return Source(copy.deepcopy(dict(source)), Lines(), None, base)
    name = None
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and "\n" not in source
        and (source.endswith((".yaml", ".yml")) or _is_file(source))
    ):
        path = Path(source)
        name = str(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SourceError(f"cannot read: {exc}", name) from exc
        if base_dir is None:
            base_dir = path.resolve().parent
    else:
        text = str(source)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        lines = Lines()
        duplicates: list[tuple[Loc, int, int]] = []
        _walk(loader, node, (), lines.by_path, duplicates)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc)
        raise SourceError(f"not valid YAML: {what}", name, line) from None
    finally:
        loader.dispose()
    return Source(data, lines, name, base, duplicates)


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a long or odd line of YAML is no file name
        return False


def _walk(loader: yaml.SafeLoader, node: yaml.Node | None, path: Loc, out: dict[Loc, int],
          duplicates: list[tuple[Loc, int, int]]) -> None:
    """Record the start line of every mapping key and sequence item below ``node``."""
    if node is None:
        return
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = _key(loader, key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                duplicates.append(((*path, key), line, seen[key]))
            seen.setdefault(key, line)
            out[(*path, key)] = line
            _walk(loader, value_node, (*path, key), out, duplicates)
            out[(*path, key)] = line  # the key's line, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(loader, item, (*path, i), out, duplicates)


def _key(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """The key as the document's data has it (``1:`` is the int 1, ``a:`` the str 'a')."""
    if isinstance(node, yaml.ScalarNode):
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            return node.value
    return None  # a mapping or list as a key: refused later as a key that is not a name
