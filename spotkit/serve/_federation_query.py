"""Federation's query, hits and results: what a federated search asks and what it returns.

:class:`Query` (the criteria of :meth:`spotkit.catalog.Catalog.search`, checked here for
sources that cannot search as the catalog does), :class:`Hit` (one dataset, naming its
source), :class:`FederatedResult` (the hits of all sources, newest first, and the sources
that did not answer). Public through :mod:`spotkit.serve._federation`.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spotkit.errors import SpotkitError

__all__ = ["FIELDS", "LOCAL", "MAPPABLE", "FederatedResult", "FederationError", "Hit",
           "Query", "parse_time", "reason_of", "sort_key"]

#: the catalog fields a federated search takes (exact values, lists or GLOB patterns)
FIELDS = ("beamline", "sample", "proposal", "kind", "status")
#: fields a mount's field map may name (plus ``start_time`` and ``title``)
MAPPABLE = (*FIELDS, "title", "start_time")
#: the name of the local catalog among the sources
LOCAL = "local"
_WILDCARD = re.compile(r"[*?\[]")
_WORD = re.compile(r"\w+", re.UNICODE)


class FederationError(SpotkitError, ValueError):
    """A mount or a federated search was set up wrongly (the message names the mount and
    the parameter)."""


# ------------------------------------------------------------------- query and hits
def _as_time(value: Any, name: str, *, end_of_day: bool = False) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    if isinstance(value, _dt.date):
        day = _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC)
        return day + _dt.timedelta(days=1, microseconds=-1) if end_of_day else day
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return _as_time(_dt.date.fromisoformat(text), name, end_of_day=end_of_day)
            return _as_time(_dt.datetime.fromisoformat(text.replace("Z", "+00:00")), name)
        except ValueError:
            pass
    raise FederationError(f"{name} must be a datetime, date or ISO 8601 string, not {value!r}")


def parse_time(value: Any) -> _dt.datetime | None:
    """A start time as a source gives it (datetime, ISO 8601 text, epoch seconds), in UTC;
    None when it is missing or cannot be read."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return _dt.datetime.fromtimestamp(float(value), _dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        return _as_time(value, "start_time")
    except FederationError:
        return None


def _values(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable):
        out = tuple(str(v) for v in value)
        if not out:
            raise FederationError(f"{name}: an empty list matches nothing; leave it out")
        return out
    raise FederationError(f"{name} must be a string or a list of strings, not {value!r}")


def _is_pattern(value: str) -> bool:
    return bool(_WILDCARD.search(value))


def _field_matches(value: Any, alternatives: tuple[str, ...]) -> bool:
    from fnmatch import fnmatchcase

    if value is None:
        return False
    text = str(value)
    return any(fnmatchcase(text, a.replace("[^", "[!")) if _is_pattern(a) else text == a
               for a in alternatives)


@dataclass(frozen=True)
class Query:
    """One federated search's criteria (all must hold), as :meth:`Catalog.search` takes
    them: field values or GLOB patterns, a start-time range, free-text words."""

    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    text: str | None = None

    @classmethod
    def build(cls, *, since: Any = None, until: Any = None, text: str | None = None,
              **fields: Any) -> Query:
        """Validate and normalise search arguments.

        Examples
        --------
        >>> q = Query.build(sample="lyso*", proposal=["P-1", "P-2"], until="2024-01-31")
        >>> q.fields["proposal"], q.until.isoformat()
        (('P-1', 'P-2'), '2024-01-31T23:59:59.999999+00:00')
        """
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise FederationError(f"cannot search by {unknown[0]!r}; the fields are "
                                  f"{', '.join(FIELDS)}, since, until and text")
        values = {k: v for k, v in ((k, _values(fields[k], k)) for k in FIELDS if k in fields)
                  if v is not None}
        if text is not None and not isinstance(text, str):
            raise FederationError(f"text must be a string, not {text!r}")
        return cls(fields=values,
                   since=None if since is None else _as_time(since, "since"),
                   until=None if until is None else _as_time(until, "until", end_of_day=True),
                   text=text.strip() or None if text else None)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`spotkit.catalog.Catalog.search` (and the remote
        catalog's)."""
        out: dict[str, Any] = {k: v[0] if len(v) == 1 else list(v)
                               for k, v in self.fields.items()}
        if self.since is not None:
            out["since"] = self.since
        if self.until is not None:
            out["until"] = self.until
        if self.text:
            out["text"] = self.text
        return out

    def describe(self) -> dict[str, Any]:
        """The criteria as JSON-friendly data."""
        out: dict[str, Any] = {k: list(v) for k, v in self.fields.items()}
        for name in ("since", "until"):
            when = getattr(self, name)
            if when is not None:
                out[name] = when.isoformat()
        if self.text:
            out["text"] = self.text
        return out

    def matches(self, hit: Hit) -> bool:
        """Whether a hit meets every criterion (for sources that cannot search as the
        catalog does): fields exactly or by pattern, the start-time range, and every
        free-text word (case-insensitive; ``word*`` a prefix) in the hit's text fields or
        metadata values."""
        for name, alternatives in self.fields.items():
            if not _field_matches(getattr(hit, name), alternatives):
                return False
        start = hit.start_time
        if self.since is not None and (start is None or start < self.since):
            return False
        if self.until is not None and (start is None or start > self.until):
            return False
        if self.text:
            words = _words_of(hit)
            for word in self.text.lower().split():
                if word.endswith("*"):
                    stem = word.rstrip("*")
                    if not any(w.startswith(stem) for w in words):
                        return False
                elif not set(_WORD.findall(word)) <= words:
                    return False
        return True


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _words_of(hit: Hit) -> set[str]:
    texts = [hit.title, hit.sample, hit.proposal, hit.beamline, *_strings(hit.record)]
    return {w.lower() for t in texts if t for w in _WORD.findall(t)}


@dataclass(frozen=True)
class Hit:
    """One dataset found by a federated search.

    Attributes
    ----------
    source : str
        ``"local"`` or the name of the mount it came from.
    id : str
        Its id in that source (the dataset id, the Tiled key, the intake entry name).
    kind, beamline, sample, proposal, title, status : str or None
        Catalog fields (through the mount's field map).
    start_time : datetime.datetime or None
        UTC.
    record : dict
        The metadata as the source gave it.
    """

    source: str
    id: str
    kind: str | None = None
    beamline: str | None = None
    sample: str | None = None
    proposal: str | None = None
    title: str | None = None
    status: str | None = None
    start_time: _dt.datetime | None = None
    record: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    opener: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str]:
        """``(source, id)``: unique across a federated result."""
        return (self.source, self.id)

    def open(self) -> Any:
        """The data: a local :class:`~spotkit.catalog.Dataset`, a
        :class:`~spotkit.serve.RemoteDataset`, a Tiled client node, or an intake reader."""
        if self.opener is None:
            raise FederationError(f"{self.source}:{self.id} cannot be opened")
        return self.opener()

    def to_dict(self) -> dict[str, Any]:
        """The hit's fields as JSON-friendly data (without the source's full record)."""
        return {"source": self.source, "id": self.id, "kind": self.kind,
                "beamline": self.beamline, "sample": self.sample, "proposal": self.proposal,
                "title": self.title, "status": self.status,
                "start_time": self.start_time.isoformat() if self.start_time else None}


def sort_key(hit: Hit, rank: Mapping[str, int] | None = None) -> tuple:
    """Newest first; hits without a start time last; then by source (in ``rank`` order:
    local first, then the mounts in the order they were mounted; else by name) and id."""
    stamp = hit.start_time.timestamp() if hit.start_time is not None else 0.0
    order = (rank or {}).get(hit.source, len(rank or {}))
    return (hit.start_time is None, -stamp, order, hit.source, hit.id)


class FederatedResult(Sequence[Hit]):
    """The hits of one federated search, newest first, and what each source said.

    Attributes
    ----------
    totals : dict of str to int or None
        Matches per source that answered (None where the source cannot count them).
    unreachable : dict of str to str
        Sources that failed or did not answer in time, with the reason.
    query : dict
        The criteria.
    """

    def __init__(self, hits: Sequence[Hit], *, totals: Mapping[str, int | None],
                 unreachable: Mapping[str, str], query: Mapping[str, Any],
                 limit: int | None):
        self._hits = tuple(hits)
        self.totals = dict(totals)
        self.unreachable = dict(unreachable)
        self.query = dict(query)
        self.limit = limit

    def __len__(self) -> int:
        return len(self._hits)

    def __getitem__(self, index: Any) -> Any:
        return self._hits[index]

    @property
    def complete(self) -> bool:
        """True when every source answered."""
        return not self.unreachable

    @property
    def keys(self) -> list[tuple[str, str]]:
        """``(source, id)`` of each hit, in order."""
        return [h.key for h in self._hits]

    def by_source(self) -> dict[str, list[Hit]]:
        """The hits grouped by source (each list in result order)."""
        out: dict[str, list[Hit]] = {}
        for hit in self._hits:
            out.setdefault(hit.source, []).append(hit)
        return out

    def __repr__(self) -> str:
        lines = [f"<FederatedResult: {len(self)} datasets from "
                 f"{', '.join(self.totals) or 'no source'}>"]
        lines += [f"  {h.source}:{h.id}  {h.kind}  {h.sample}  {h.proposal}  "
                  f"{h.start_time.isoformat() if h.start_time else '-'}" for h in self._hits]
        lines += [f"  unreachable {name}: {why}" for name, why in self.unreachable.items()]
        return "\n".join(lines)


def reason_of(exc: BaseException) -> str:
    """Why a source failed, in one line, without credentials."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"(api_key=)[^&\s\"']+", r"\1[redacted]", text, flags=re.IGNORECASE)
    return text[:300]
