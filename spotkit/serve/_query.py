"""Tiled queries on the spotkit catalog, translated to one :meth:`Catalog.search` call.

A :class:`Criteria` accumulates the queries a client sends (each ``search`` narrows the
previous one) plus the proposals the access policy allows, and turns them into the keyword
arguments of :meth:`spotkit.catalog.Catalog.search`: the catalog runs one SQL query with
every value bound as a parameter, so a page, its count and the lookup of one id never
depend on filtering rows in Python.

Supported (``key`` is one of :data:`FIELDS`, or ``start_time`` for comparisons):

==========================  ===================================================
``Eq(key, value)``          the field equals ``value``; ``*``, ``?``, ``[`` make it a
                            pattern (case-sensitive), as in ``spotkit catalog search``
``In(key, [v1, v2])``       any of the values (or patterns)
``Contains(key, text)``     the field contains ``text`` (a ``*text*`` pattern)
``FullText(text)``          every word occurs in title, sample, proposal, beamline or
                            metadata (``word*``: a prefix)
``Comparison(op, "start_time", t)``  ``ge``/``gt``/``le``/``lt`` an ISO 8601 time or
                            epoch seconds
``KeyLookup(id)``           one dataset by id (handled by the server)
==========================  ===================================================
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from tiled.queries import Comparison, Contains, Eq, FullText, In, QueryValueError

__all__ = ["FIELDS", "MAX_VALUES", "MAX_VALUE_LENGTH", "Criteria", "ProposalAccess"]

#: catalog fields a query may name (``Eq``, ``In``, ``Contains``)
FIELDS = ("beamline", "sample", "proposal", "kind", "status")
#: the one time field (``Comparison``)
TIME_FIELD = "start_time"
#: longest value accepted in a query (characters)
MAX_VALUE_LENGTH = 500
#: most values in one ``In`` query
MAX_VALUES = 500
_WILDCARD = re.compile(r"[*?\[]")
_EPS = _dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class ProposalAccess:
    """The access policy's filter: only datasets of these proposals (``None``: all)."""

    proposals: frozenset[str] | None


def _is_pattern(value: str) -> bool:
    return bool(_WILDCARD.search(value))


def _glob_match(value: str, pattern: str) -> bool:
    # SQLite GLOB writes a negated set as [^...], fnmatch as [!...]
    return fnmatchcase(value, pattern.replace("[^", "[!"))


def _matches(value: str | None, alternatives: tuple[str, ...]) -> bool:
    if value is None:
        return False
    return any(_glob_match(value, a) if _is_pattern(a) else value == a for a in alternatives)


def _text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise QueryValueError(f"{what}: expected a text value, not {type(value).__name__} "
                              f"{value!r}")
    text = str(value)
    if len(text) > MAX_VALUE_LENGTH:
        raise QueryValueError(f"{what}: value longer than {MAX_VALUE_LENGTH} characters")
    if "\x00" in text:
        raise QueryValueError(f"{what}: value contains a NUL character")
    return text


def _field(key: Any, query: str) -> str:
    if key not in FIELDS:
        raise QueryValueError(
            f"{query} on {key!r} is not supported; search the fields {', '.join(FIELDS)} "
            f"(Eq, In, Contains), {TIME_FIELD} (Comparison) or free text (FullText)")
    return str(key)


def _time(value: Any) -> _dt.datetime:
    if isinstance(value, bool):
        raise QueryValueError(f"{TIME_FIELD}: expected an ISO 8601 time or epoch seconds, "
                              f"not {value!r}")
    if isinstance(value, int | float):
        try:
            return _dt.datetime.fromtimestamp(float(value), _dt.UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise QueryValueError(f"{TIME_FIELD}: {value!r} is out of range") from exc
    if isinstance(value, str) and len(value) <= 64:
        try:
            when = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            return when if when.tzinfo else when.replace(tzinfo=_dt.UTC)
    raise QueryValueError(f"{TIME_FIELD}: {value!r} is not an ISO 8601 time "
                          "(2026-01-31T13:30:00Z) or epoch seconds")


def _both(a: tuple[str, ...] | None, b: tuple[str, ...] | None,
          name: str) -> tuple[str, ...] | None:
    """Values satisfying both alternatives lists (each an OR of values and patterns)."""
    if a is None:
        return b
    if b is None:
        return a
    if not any(map(_is_pattern, a)):
        return tuple(v for v in a if _matches(v, b))
    if not any(map(_is_pattern, b)):
        return tuple(v for v in b if _matches(v, a))
    raise QueryValueError(f"two patterns on {name} cannot be combined in one search; give one "
                          "pattern, or exact values")


@dataclass(frozen=True)
class Criteria:
    """Accumulated search criteria (AND of all the queries applied so far)."""

    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    words: tuple[str, ...] = ()
    #: the proposals the access policy allows (None: no restriction)
    allowed: frozenset[str] | None = None

    # -- narrowing --------------------------------------------------------------------

    def _with_field(self, name: str, values: tuple[str, ...]) -> Criteria:
        merged = dict(self.fields)
        both = _both(merged.get(name), values, name)
        merged[name] = both if both is not None else ()
        return replace(self, fields=merged)

    def add(self, query: Any) -> Criteria:
        """The criteria narrowed by one Tiled query.

        Raises
        ------
        tiled.queries.QueryValueError
            An unsupported query or field, or a bad value (the server answers 400).
        """
        if isinstance(query, ProposalAccess):
            if query.proposals is None:
                return self
            allowed = (query.proposals if self.allowed is None
                       else self.allowed & query.proposals)
            return replace(self, allowed=frozenset(allowed))
        if isinstance(query, Eq):
            name = _field(query.key, "Eq")
            return self._with_field(name, (_text(query.value, name),))
        if isinstance(query, In):
            name = _field(query.key, "In")
            values = list(query.value)
            if len(values) > MAX_VALUES:
                raise QueryValueError(f"In on {name}: more than {MAX_VALUES} values")
            return self._with_field(name, tuple(_text(v, name) for v in values))
        if isinstance(query, Contains):
            name = _field(query.key, "Contains")
            text = _text(query.value, name)
            # a literal substring: the pattern characters themselves are escaped as sets
            literal = "".join(f"[{c}]" if c in "*?[" else c for c in text)
            return self._with_field(name, (f"*{literal}*",))
        if isinstance(query, FullText):
            text = _text(query.text, "FullText")
            words = tuple(w for w in text.split() if w)
            return replace(self, words=self.words + words)
        if isinstance(query, Comparison):
            if query.key != TIME_FIELD:
                raise QueryValueError(f"Comparison on {query.key!r} is not supported; compare "
                                      f"{TIME_FIELD} (ge, gt, le, lt)")
            when = _time(query.value)
            op = getattr(query.operator, "value", query.operator)
            if op in ("ge", "gt"):
                when = when + _EPS if op == "gt" else when
                since = when if self.since is None else max(self.since, when)
                return replace(self, since=since)
            when = when - _EPS if op == "lt" else when
            until = when if self.until is None else min(self.until, when)
            return replace(self, until=until)
        raise QueryValueError(
            f"{type(query).__name__} queries are not supported by the spotkit catalog; use "
            "Eq, In, Contains, FullText, or Comparison on start_time")

    # -- to the catalog ---------------------------------------------------------------

    def search_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`Catalog.search` (one SQL query)."""
        kwargs: dict[str, Any] = {}
        for name, values in self.fields.items():
            kwargs[name] = list(values)
        if self.allowed is not None:
            kwargs["proposal"] = list(_both(tuple(sorted(self.allowed)),
                                            self.fields.get("proposal"), "proposal") or ())
        if self.since is not None:
            kwargs["since"] = self.since
        if self.until is not None:
            kwargs["until"] = self.until
        if self.words:
            kwargs["text"] = " ".join(self.words)
        return kwargs

    @property
    def empty(self) -> bool:
        """True when the criteria can match nothing (no need to ask the catalog)."""
        kwargs = self.search_kwargs()
        if any(isinstance(v, list) and not v for v in kwargs.values()):
            return True
        return (self.since is not None and self.until is not None
                and self.since > self.until)

    def allows(self, proposal: str | None) -> bool:
        """Whether the access restriction lets a dataset of ``proposal`` through."""
        return self.allowed is None or (proposal is not None and proposal in self.allowed)

    def matches_fields(self, dataset: Any) -> bool:
        """Whether one dataset meets the field, time and access criteria (not the text)."""
        if not self.allows(dataset.proposal):
            return False
        for name, values in self.fields.items():
            if not _matches(getattr(dataset, name), values):
                return False
        start = dataset.start_time
        if self.since is not None and (start is None or start < self.since):
            return False
        return not (self.until is not None and (start is None or start > self.until))

    def describe(self) -> dict[str, Any]:
        """The criteria as JSON-friendly data (without the access restriction)."""
        out: dict[str, Any] = {k: list(v) for k, v in self.fields.items()}
        if self.since is not None:
            out["since"] = self.since.isoformat()
        if self.until is not None:
            out["until"] = self.until.isoformat()
        if self.words:
            out["text"] = " ".join(self.words)
        return out
