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
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from spotkit.serve._federation_query import (
    FIELDS,
    LOCAL,
    MAPPABLE,
    FederatedResult,
    FederationError,
    Hit,
    Query,
    parse_time,
    sort_key,
)
from spotkit.serve._federation_query import reason_of as _reason
from spotkit.serve._federation_sources import (
    DEFAULT_TIMEOUT,
    MAX_CANDIDATES,
    RECHECK_AFTER,
    IntakeMount,
    LocalSource,
    TiledMount,
    make_source,
    source_of,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "FIELDS",
    "LOCAL",
    "MAPPABLE",
    "MAX_CANDIDATES",
    "RECHECK_AFTER",
    "FederatedCatalog",
    "FederatedResult",
    "FederationError",
    "Hit",
    "IntakeMount",
    "LocalSource",
    "Query",
    "TiledMount",
    "make_source",
    "parse_time",
    "sort_key",
    "source_of",
]

logger = logging.getLogger("spotkit.serve")


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
