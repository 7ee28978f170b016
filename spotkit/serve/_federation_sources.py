"""Federation's sources: the local catalog, a Tiled server and an intake catalog, each
searched and opened read-only (:class:`LocalSource`, :class:`TiledMount`,
:class:`IntakeMount`), and :func:`make_source` / :func:`source_of`, which pick the right one.
Public through :mod:`spotkit.serve._federation`.

Security: an intake YAML names the Python classes that read its entries; mount only files
you trust, as you would import their code.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spotkit.serve._federation_query import (
    LOCAL,
    MAPPABLE,
    FederationError,
    Hit,
    Query,
    _is_pattern,
    parse_time,
    sort_key,
)

__all__ = ["DEFAULT_TIMEOUT", "MAX_CANDIDATES", "RECHECK_AFTER", "IntakeMount", "LocalSource",
           "TiledMount", "make_source", "source_of"]

logger = logging.getLogger("spotkit.serve")

#: default seconds a source has to answer one search
DEFAULT_TIMEOUT = 10.0
#: most candidates read from a plain Tiled source for one search (checked and sorted here)
MAX_CANDIDATES = 10_000
#: seconds a plain Tiled source's checked candidates are reused for the same query
RECHECK_AFTER = 2.0
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


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
