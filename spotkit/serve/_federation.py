"""Federation: the local catalog and other facilities' catalogs, searched in one call.

A :class:`FederatedCatalog` is a read-only view over the local spotkit catalog (SQLite or
PostgreSQL) and any number of named *mounts*:

* another ``spotkit serve`` (a :class:`~spotkit.serve.RemoteCatalog`, or its URL): every
  criterion runs on that server, with the catalog's own semantics;
* a plain Tiled server (its URL, or any Tiled client container): exact field values are
  sent as Tiled ``Eq``/``In`` queries on the keys of the mount's *field map*
  (``{"sample": "start.sample", "start_time": "start.time"}`` for a Bluesky-style
  server), and every criterion (patterns, times, free text) is checked again here on the
  metadata that came back, so a hit means the same on every source;
* an intake catalog (a YAML file, v2 as written by ``spotkit catalog export``, or v1), read
  with intake's own API and filtered here.

:meth:`FederatedCatalog.search` asks every source at once (one thread each, with a
per-source timeout) and returns one :class:`FederatedResult`: the hits of all sources,
newest first (then by source: local first, then the mounts in mount order; then id),
each naming its ``source`` (``"local"`` or the
mount's name) and its ``id`` there. A source that fails or does not answer in time does
not fail the search: :attr:`FederatedResult.unreachable` says which and why.
:meth:`Hit.open` gives the data: a local :class:`~spotkit.catalog.Dataset`, a
:class:`~spotkit.serve.RemoteDataset` (arrays sliced on the server), a Tiled client node,
or an intake reader.

Nothing here writes: the view offers search and open only, mounts are reached through
read-only clients (a ``spotkit serve`` grants read scopes only), and an intake file is read,
never written.

Security: an intake YAML names the Python classes that read its entries; mount only files
you trust, as you would import their code.
"""

from __future__ import annotations

import concurrent.futures as _futures
import datetime as _dt
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotkit.errors import SpotkitError

__all__ = [
    "FIELDS",
    "FederatedCatalog",
    "FederatedResult",
    "FederationError",
    "Hit",
    "IntakeMount",
    "LocalSource",
    "Query",
    "TiledMount",
    "make_source",
]

logger = logging.getLogger("spotkit.serve")

#: the catalog fields a federated search takes (exact values, lists or GLOB patterns)
FIELDS = ("beamline", "sample", "proposal", "kind", "status")
#: fields a mount's field map may name (plus ``start_time`` and ``title``)
MAPPABLE = (*FIELDS, "title", "start_time")
#: the name of the local catalog among the sources
LOCAL = "local"
#: default seconds a source has to answer one search
DEFAULT_TIMEOUT = 10.0
#: most candidates read from a plain Tiled source for one search (checked and sorted here)
MAX_CANDIDATES = 10_000
#: seconds a plain Tiled source's checked candidates are reused for the same query
RECHECK_AFTER = 2.0
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
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


# ------------------------------------------------------------------- sources
def _same(value: Any) -> Any:
    return value


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _check_field_map(name: str, field_map: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, path in (field_map or {}).items():
        if key not in MAPPABLE:
            raise FederationError(f"mount {name!r}: field_map names {key!r}; it maps the "
                                  f"fields {', '.join(MAPPABLE)}")
        if not isinstance(path, str) or not path.strip():
            raise FederationError(f"mount {name!r}: field_map.{key} must be a metadata key "
                                  f"(dotted for nested keys, e.g. start.sample), not {path!r}")
        out[key] = path.strip()
    return out


def _hit(source: str, key: str, record: Mapping[str, Any], field_map: Mapping[str, str],
         opener: Callable[[], Any] | None) -> Hit:
    def get(name: str) -> Any:
        return _lookup(record, field_map.get(name, name))

    def text(name: str) -> str | None:
        value = get(name)
        return None if value is None else str(value)

    return Hit(source=source, id=str(key), kind=text("kind"), beamline=text("beamline"),
               sample=text("sample"), proposal=text("proposal"), title=text("title"),
               status=text("status"), start_time=parse_time(get("start_time")),
               record=record, opener=opener)


class LocalSource:
    """The local spotkit catalog as a federated source (search and open only)."""

    def __init__(self, catalog: Any, name: str = LOCAL):
        self.name = name
        self._catalog = catalog

    def _hit_of(self, ds: Any) -> Hit:
        return Hit(source=self.name, id=ds.id, kind=ds.kind, beamline=ds.beamline,
                   sample=ds.sample, proposal=ds.proposal, title=ds.title, status=ds.status,
                   start_time=ds.start_time, record={"metadata": dict(ds.metadata)},
                   opener=functools.partial(_same, ds))

    def search(self, query: Query, limit: int | None,
               offset: int = 0) -> tuple[list[Hit], int | None]:
        """One :meth:`Catalog.search`."""
        page = self._catalog.search(**query.kwargs(), limit=limit, offset=offset)
        return [self._hit_of(ds) for ds in page], int(page.total)

    def get(self, key: str) -> Hit:
        """The hit of one dataset by id (KeyError if there is none)."""
        ds = self._catalog.get(key)
        if ds is None:
            raise KeyError(key)
        return self._hit_of(ds)

    def __repr__(self) -> str:
        return f"<LocalSource {self.name}>"


class TiledMount:
    """A Tiled server (or any Tiled client container) mounted read-only.

    Parameters
    ----------
    name : str
        The mount's name (hits say ``source == name``).
    source : str, RemoteCatalog or tiled client container
        ``http(s)://host/api`` (connected on first use), a
        :class:`~spotkit.serve.RemoteCatalog`, or a Tiled client node.
    api_key : str, optional
        For a URL.
    field_map : mapping, optional
        spotkit field -> metadata key there (dotted for nested keys). Ignored for a
        ``spotkit serve``, whose fields are the catalog's.
    timeout : float, optional
        Seconds for connecting and for each request.

    Notes
    -----
    A ``spotkit serve`` (recognised by its root metadata) runs every criterion itself. On
    another Tiled server, exact values are sent as ``Eq``/``In`` queries on the mapped
    keys; patterns, the time range and free text are checked here on every candidate (at
    most :data:`MAX_CANDIDATES`), which are then sorted newest first.
    """

    def __init__(self, name: str, source: Any, *, api_key: str | None = None,
                 field_map: Mapping[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT):
        self.name = name
        self.field_map = _check_field_map(name, field_map)
        self.timeout = float(timeout)
        self._api_key = api_key
        self._uri: str | None = None
        self._client: Any = None
        self._spotkit: bool | None = None
        self._lock = threading.Lock()
        self._recent: dict[str, tuple[float, int, list[Hit], bool]] = {}
        if isinstance(source, str):
            if not source.startswith(("http://", "https://")):
                raise FederationError(f"mount {name!r}: {source!r} is not an http(s):// "
                                      "URL of a Tiled server")
            self._uri = source
        elif hasattr(source, "tiled") and hasattr(source, "uri"):  # RemoteCatalog
            self._client, self._uri, self._spotkit = source.tiled, source.uri, True
        elif hasattr(source, "search") and hasattr(source, "items"):
            self._client = source
        else:
            raise FederationError(f"mount {name!r}: cannot mount {type(source).__name__}; "
                                  "give a URL, a RemoteCatalog or a Tiled client container")

    @property
    def uri(self) -> str | None:
        """The server's address (None for a client node given directly)."""
        return self._uri

    def client(self) -> Any:
        """The Tiled client container (connects on first use)."""
        if self._client is None:
            import httpx
            from tiled.client import from_uri

            # one plain request first: Tiled's client retries a refused connection for a
            # long while; this says at once that the server is down
            try:
                httpx.get(str(self._uri), timeout=self.timeout)
            except httpx.TransportError as exc:
                raise FederationError(f"mount {self.name!r}: cannot reach {self._uri} "
                                      f"({type(exc).__name__}: {exc})") from exc
            self._client = from_uri(self._uri, structure_clients="numpy",
                                    api_key=self._api_key, remember_me=False,
                                    timeout=httpx.Timeout(self.timeout))
        return self._client

    @property
    def is_spotkit(self) -> bool:
        """Whether the mount is a ``spotkit serve`` (its root metadata says so)."""
        if self._spotkit is None:
            self._spotkit = "spotkit" in dict(self.client().metadata or {})
        return self._spotkit

    def _server_side(self, node: Any, query: Query) -> Any:
        from tiled.queries import Comparison, Eq, FullText, In

        if self.is_spotkit:
            for name, values in query.fields.items():
                node = node.search(Eq(name, values[0]) if len(values) == 1
                                   else In(name, list(values)))
            if query.since is not None:
                node = node.search(Comparison("ge", "start_time", query.since.isoformat()))
            if query.until is not None:
                node = node.search(Comparison("le", "start_time", query.until.isoformat()))
            if query.text:
                node = node.search(FullText(query.text))
            return node
        for name, values in query.fields.items():
            if any(map(_is_pattern, values)):
                continue  # checked here: plain Tiled has no GLOB patterns
            key = self.field_map.get(name, name)
            node = node.search(Eq(key, values[0]) if len(values) == 1
                               else In(key, list(values)))
        return node

    def _hit_of(self, key: str, child: Any) -> Hit:
        record = dict(child.metadata or {})
        if self.is_spotkit:
            from spotkit.serve._client import RemoteDataset

            return _hit(self.name, key, record, {}, functools.partial(RemoteDataset, child))
        return _hit(self.name, key, record, self.field_map, functools.partial(_same, child))

    def search(self, query: Query, limit: int | None,
               offset: int = 0) -> tuple[list[Hit], int | None]:
        """Search the server (see the class notes)."""
        node = self._server_side(self.client(), query)
        total = len(node)
        if self.is_spotkit:
            stop = total if limit is None else min(total, offset + limit)
            items = node.items()[offset:stop] if stop > offset else []
            return [self._hit_of(k, c) for k, c in items], total
        # every candidate is read and checked here, then sorted newest first: the server's
        # own order is not the catalog's, so a page could otherwise miss the newest hits.
        # The sorted list is kept a moment, so a count and the pages after it (one request
        # to a server that mounts this source) read the candidates once.
        hits, exact = self._checked(node, query, total)
        end = None if limit is None else offset + limit
        return hits[offset:end], (len(hits) if exact else None)

    def _checked(self, node: Any, query: Query, total: int) -> tuple[list[Hit], bool]:
        key = repr(sorted(query.describe().items()))
        now = time.monotonic()
        with self._lock:
            cached = self._recent.get(key)
            if cached is not None and now - cached[0] < RECHECK_AFTER and cached[1] == total:
                return cached[2], cached[3]
        seen = min(total, MAX_CANDIDATES)
        if seen < total:
            logger.warning("mount %s: %d candidates, only the first %d are checked; narrow "
                           "the search by exact field values", self.name, total, seen)
        hits = [hit for hit in (self._hit_of(k, c)
                                for k, c in (node.items()[0:seen] if seen else []))
                if query.matches(hit)]
        hits.sort(key=sort_key)
        with self._lock:
            self._recent = {k: v for k, v in self._recent.items()
                            if now - v[0] < RECHECK_AFTER}
            self._recent[key] = (now, total, hits, seen == total)
        return hits, seen == total

    def get(self, key: str) -> Hit:
        """The hit of one entry by its key (KeyError if there is none)."""
        return self._hit_of(key, self.client()[key])

    def __repr__(self) -> str:
        return f"<TiledMount {self.name} {self._uri or self._client!r} (read-only)>"


class IntakeMount:
    """An intake catalog (YAML, v2 or v1) mounted read-only; searched here.

    Parameters
    ----------
    name : str
    source : path-like or intake catalog
        The YAML file (re-read when it changes), or an open intake catalog.
    field_map : mapping, optional
        spotkit field -> key in each entry's metadata. The default reads catalogs that
        ``spotkit catalog export`` writes (``kind``, ``sample``, ... at the top level).
    """

    def __init__(self, name: str, source: Any, *,
                 field_map: Mapping[str, str] | None = None):
        self.name = name
        self.field_map = _check_field_map(name, field_map)
        self._cat: Any = None
        self._stamp: tuple[int, int] | None = None
        self.path: Path | None = None
        if isinstance(source, str | os.PathLike):
            self.path = Path(source).expanduser()
        else:
            self._cat = source

    def catalog(self) -> Any:
        """The intake catalog (read again when the file changed)."""
        if self.path is None:
            return self._cat
        try:
            st = self.path.stat()
        except OSError as exc:
            raise FederationError(f"mount {self.name!r}: cannot read the intake catalog "
                                  f"{self.path} ({exc.strerror})") from exc
        stamp = (st.st_size, st.st_mtime_ns)
        if self._cat is None or stamp != self._stamp:
            self._cat, self._stamp = _read_intake(self.path), stamp
        return self._cat

    def _entries(self) -> list[tuple[str, dict, Callable[[], Any]]]:
        cat = self.catalog()
        entries = getattr(cat, "entries", None)
        if isinstance(entries, Mapping):  # intake v2
            return [(str(k), dict(getattr(e, "metadata", None) or {}),
                     functools.partial(cat.__getitem__, k)) for k, e in entries.items()]
        out: list[tuple[str, dict, Callable[[], Any]]] = []
        for key in list(cat):  # intake v1 catalogs
            entry = cat[key]
            out.append((str(key), dict(getattr(entry, "metadata", None) or {}),
                        functools.partial(_same, entry)))
        return out

    def search(self, query: Query, limit: int | None,
               offset: int = 0) -> tuple[list[Hit], int | None]:
        """Every entry's metadata checked against the query."""
        hits = []
        for key, record, opener in self._entries():
            hit = _hit(self.name, key, record, self.field_map, opener)
            if query.matches(hit):
                hits.append(hit)
        hits.sort(key=sort_key)
        stop = None if limit is None else offset + limit
        return hits[offset:stop], len(hits)

    def get(self, key: str) -> Hit:
        """The hit of one entry by name (KeyError if there is none)."""
        for name, record, opener in self._entries():
            if name == key:
                return _hit(self.name, key, record, self.field_map, opener)
        raise KeyError(key)

    def __repr__(self) -> str:
        return f"<IntakeMount {self.name} {self.path or self._cat!r} (read-only)>"


def _read_intake(path: Path) -> Any:
    import intake
    import yaml

    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise FederationError(f"{path}: not a readable intake catalog ({exc})") from exc
    if isinstance(data, Mapping) and str(data.get("version", "")) == "2":
        return intake.from_yaml_file(str(path))
    if isinstance(data, Mapping) and "sources" in data:
        return intake.open_catalog(str(path))
    raise FederationError(f"{path}: not an intake catalog (neither `version: 2` with "
                          "`entries`, nor v1 `sources`)")


def make_source(name: str, source: Any, *, api_key: str | None = None,
                field_map: Mapping[str, str] | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> Any:
    """The mount for ``source``: an ``http(s)://`` URL, a RemoteCatalog or Tiled client
    (:class:`TiledMount`); a ``.yaml``/``.yml`` path or an intake catalog
    (:class:`IntakeMount`); a spotkit :class:`~spotkit.catalog.Catalog`
    (:class:`LocalSource`, read-only)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.startswith("ds-"):
        raise FederationError(
            f"mount name {name!r}: use 1-32 lowercase letters, digits, '-' or '_', starting "
            "with a letter (not 'ds-', which dataset ids use)")
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return TiledMount(name, source, api_key=api_key, field_map=field_map,
                          timeout=timeout)
    if isinstance(source, str | os.PathLike):
        if Path(source).suffix.lower() not in (".yaml", ".yml"):
            raise FederationError(f"mount {name!r}: {source} is neither an http(s):// URL "
                                  "nor an intake catalog (.yaml)")
        return IntakeMount(name, source, field_map=field_map)
    if hasattr(source, "tiled") or (hasattr(source, "search") and hasattr(source, "items")
                                     and hasattr(source, "context")):
        return TiledMount(name, source, field_map=field_map, timeout=timeout)
    if hasattr(source, "entries") or type(source).__module__.startswith("intake"):
        return IntakeMount(name, source, field_map=field_map)
    if hasattr(source, "search") and hasattr(source, "ingest"):
        return LocalSource(source, name)
    raise FederationError(f"mount {name!r}: cannot mount {type(source).__name__}; give a "
                          "Tiled URL, a RemoteCatalog, a Tiled client, an intake YAML or a "
                          "spotkit Catalog")


def source_of(spec: Any) -> TiledMount | IntakeMount:
    """The mount a ``serve.yaml`` entry (:class:`~spotkit.serve._config.MountSpec`)
    describes; its key is read from the environment variable it names."""
    if spec.uri is not None:
        return TiledMount(spec.name, spec.uri, api_key=spec.api_key(),
                          field_map=spec.field_map, timeout=spec.timeout)
    return IntakeMount(spec.name, spec.intake, field_map=spec.field_map)


# ------------------------------------------------------------------- the view
class FederatedCatalog:
    """The local catalog plus read-only mounts, searched in one call.

    Parameters
    ----------
    local : spotkit.catalog.Catalog or None
        The local catalog (source ``"local"``); None for mounts only.
    mounts : mapping, optional
        Name -> source (anything :meth:`mount` takes, or a mount object).
    timeout : float, optional
        Seconds each source has to answer a search (default 10).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "a.h5", shape=(12, 3, 24), seed=0, sample="lyso")
    >>> here = open_catalog(work / "here.db")
    >>> ds = here.ingest(work / "a.h5")
    >>> _ = here.export_intake(work / "archive.yaml")
    >>> fed = FederatedCatalog(here, {"archive": work / "archive.yaml"})
    >>> hits = fed.search(sample="lyso")
    >>> [(h.source, h.id == ds.id) for h in hits], hits.unreachable
    ([('local', True), ('archive', True)], {})
    >>> hits[1].open().read().shape
    (12, 3, 24)
    """

    def __init__(self, local: Any = None, mounts: Mapping[str, Any] | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT):
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise FederationError(f"timeout must be a positive number of seconds, not "
                                  f"{timeout!r}")
        self.timeout = float(timeout)
        self._sources: dict[str, Any] = {}
        if local is not None:
            self._sources[LOCAL] = LocalSource(local)
        for name, source in (mounts or {}).items():
            self.mount(name, source)

    @classmethod
    def from_config(cls, local: Any, config: Any, *,
                    timeout: float = DEFAULT_TIMEOUT) -> FederatedCatalog:
        """The local catalog plus the mounts a ``serve.yaml`` declares (keys from the
        environment variables it names), as a notebook or a script sees them.

        Parameters
        ----------
        local : spotkit.catalog.Catalog or None
        config : ServeConfig or path-like
            The serve configuration (:func:`spotkit.serve.load_config`).
        timeout : float
            Seconds each source has to answer a search.
        """
        from spotkit.serve._config import ServeConfig, load_config

        if not isinstance(config, ServeConfig):
            config = load_config(config)
        fed = cls(local, timeout=timeout)
        for spec in config.mounts:
            fed.mount(spec.name, source_of(spec))
        return fed

    def mount(self, name: str, source: Any, *, api_key: str | None = None,
              field_map: Mapping[str, str] | None = None,
              timeout: float | None = None) -> Any:
        """Mount a source read-only under ``name`` (see :func:`make_source`).

        Returns
        -------
        TiledMount, IntakeMount or LocalSource
        """
        if name in self._sources:
            raise FederationError(f"mount name {name!r} is taken; the sources are "
                                  f"{sorted(self._sources)}")
        if isinstance(source, TiledMount | IntakeMount | LocalSource):
            mounted = source
            if mounted.name != name:
                raise FederationError(f"mount {mounted.name!r} given under the name {name!r}")
        else:
            mounted = make_source(name, source, api_key=api_key, field_map=field_map,
                                  timeout=timeout or self.timeout)
        self._sources[name] = mounted
        return mounted

    @property
    def sources(self) -> list[str]:
        """The source names: ``"local"`` first, then the mounts."""
        return list(self._sources)

    def __getitem__(self, name: str) -> Any:
        return self._sources[name]

    def search(
        self,
        *,
        beamline: str | Iterable[str] | None = None,
        sample: str | Iterable[str] | None = None,
        proposal: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        since: Any = None,
        until: Any = None,
        text: str | None = None,
        limit: int | None = 100,
        sources: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> FederatedResult:
        """Search every source at once; one result, newest first.

        Parameters
        ----------
        beamline, sample, proposal, kind, status, since, until, text
            As :meth:`spotkit.catalog.Catalog.search`.
        limit : int or None
            Most hits in the result (and asked of each source); None: all.
        sources : iterable of str, optional
            Only these sources (default: all).
        timeout : float, optional
            Seconds each source has (default: the view's).

        Returns
        -------
        FederatedResult
            Hits sorted by start time (newest first), then source (local first, then
            the mounts in mount order), then id; the sources
            that failed or timed out in :attr:`~FederatedResult.unreachable`.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise FederationError(f"limit must be a non-negative integer or None, not "
                                  f"{limit!r}")
        query = Query.build(beamline=beamline, sample=sample, proposal=proposal, kind=kind,
                            status=status, since=since, until=until, text=text)
        names = list(self._sources) if sources is None else list(sources)
        unknown = [n for n in names if n not in self._sources]
        if unknown:
            raise FederationError(f"no source {unknown[0]!r}; the sources are "
                                  f"{sorted(self._sources)}")
        wait = self.timeout if timeout is None else float(timeout)
        totals: dict[str, int | None] = {}
        unreachable: dict[str, str] = {}
        hits: list[Hit] = []
        if not names:
            return FederatedResult([], totals={}, unreachable={}, query=query.describe(),
                                   limit=limit)
        pool = _futures.ThreadPoolExecutor(max_workers=len(names),
                                           thread_name_prefix="spotkit-federation")
        try:
            started = time.monotonic()
            jobs = {name: pool.submit(self._sources[name].search, query, limit)
                    for name in names}
            for name, job in jobs.items():
                left = max(0.0, started + wait - time.monotonic())
                try:
                    found, total = job.result(timeout=left)
                except _futures.TimeoutError:
                    unreachable[name] = f"no answer within {wait:g} s"
                except Exception as exc:
                    unreachable[name] = _reason(exc)
                else:
                    hits.extend(found)
                    totals[name] = total
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        for name, why in unreachable.items():
            logger.warning("federated search: source %s unreachable: %s", name, why)
        rank = {name: i for i, name in enumerate(self._sources)}
        hits.sort(key=lambda h: sort_key(h, rank))
        if limit is not None:
            hits = hits[:limit]
        return FederatedResult(hits, totals=totals, unreachable=unreachable,
                               query=query.describe(), limit=limit)

    def open(self, source: str | Hit, dataset_id: str | None = None) -> Any:
        """Open a hit, or the dataset ``dataset_id`` of ``source`` (a search by id)."""
        if isinstance(source, Hit):
            return source.open()
        if source not in self._sources:
            raise FederationError(f"no source {source!r}; the sources are "
                                  f"{sorted(self._sources)}")
        if not isinstance(dataset_id, str) or not dataset_id:
            raise FederationError("give the id of the dataset to open")
        return self._sources[source].get(dataset_id).open()

    def __repr__(self) -> str:
        return f"<FederatedCatalog {', '.join(self._sources)} (read-only)>"


def _reason(exc: BaseException) -> str:
    """Why a source failed, in one line, without credentials."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"(api_key=)[^&\s\"']+", r"\1[redacted]", text, flags=re.IGNORECASE)
    return text[:300]
