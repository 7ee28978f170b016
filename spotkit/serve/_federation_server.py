"""Mounts in ``spotkit serve``: other catalogs as read-only nodes beside the local datasets.

``serve.yaml`` declares mounts (:class:`~spotkit.serve._config.MountSpec`); the server shows
each one at ``/api/v1/metadata/<mount>`` (a container searched with the same Tiled queries
as the local catalog: ``Eq``/``In``/``Contains`` on the catalog fields, ``Comparison`` on
``start_time``, ``FullText``), each hit at ``/<mount>/<id>`` with its fields and the source's
metadata, and its arrays below it, read from the source on demand (a remote Tiled array a
block at a time, an intake entry through its reader).

Access (:class:`FederatedAccessPolicy`): local datasets keep the access by proposal. A
mount's proposals are another facility's, so they do not map onto this server's users: a
mount and everything under it is visible to staff only, unless the mount is marked
``public: true``, then to every authenticated user. A mount another user may not see answers
404 "No such entry", as a dataset of another proposal does. Nothing is written: only read
scopes are ever granted, and the mounts are read through read-only clients.

A slow or dead source never holds the server: every lookup, count and listing of a mount,
and every block read from a remote array under it, runs in the mount's own threads with
the mount's ``timeout`` as deadline (:class:`~spotkit.serve._mount_guard.MountGuard`). A
source that does not answer in time gets 504, one that fails 502, both naming the mount
(and logged with the reason); after a timeout or a refused connection the mount answers
the same at once for a while instead of being waited on again. Meanwhile the local
datasets and the other mounts answer as usual. A plain Tiled source's candidates are
checked and sorted here on every listing (at most
:data:`~spotkit.serve._federation.MAX_CANDIDATES`): mount large ones
through a ``spotkit serve`` or narrow them by exact field values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tiled.access_control.access_policies import NO_ACCESS
from tiled.adapters.array import ArrayAdapter
from tiled.adapters.mapping import MapAdapter
from tiled.server.core import NoEntry
from tiled.server.schemas import SortingDirection, SortingItem
from tiled.structures.container import ContainerStructure
from tiled.structures.core import StructureFamily

from spotkit.serve._config import MountSpec, ServeConfig
from spotkit.serve._federation import Hit, IntakeMount, Query, TiledMount, source_of
from spotkit.serve._local_queries import _offset, _PagedViews
from spotkit.serve._mount_guard import MountGuard
from spotkit.serve._policy import READ_SCOPES, ProposalAccessPolicy
from spotkit.serve._query import FIELDS, TIME_FIELD, Criteria

__all__ = ["FederatedAccessPolicy", "MountAdapter", "build_mounts"]

logger = logging.getLogger("spotkit.serve")

#: a key a mount may be asked for (a dataset id, a Tiled key, an intake entry name)
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: most arrays served under one hit of a remote container
MAX_ARRAYS = 64


def build_mounts(config: ServeConfig) -> dict[str, MountAdapter]:
    """The mount adapters for the mounts ``config`` declares (nothing is contacted yet: a
    remote server that is down makes its node answer an error, not the server fail).

    Raises
    ------
    ServeConfigError
        A mount's key variable is not set (the message names the file and the field).
    """
    return {spec.name: MountAdapter(source_of(spec), spec) for spec in config.mounts}


class _GuardedArray:
    """A remote Tiled array whose blocks are read through the mount's guard (in its
    threads, with its deadline), for dask."""

    def __init__(self, client: Any, guard: MountGuard):
        self.client = client
        self.guard = guard
        self.shape = tuple(client.shape)
        self.dtype = client.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> Any:
        return self.guard.run("read an array", self.client.__getitem__, index)


def _clean_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The source's metadata without file-system paths (a file keeps its name)."""
    out = dict(record)
    files = out.get("files")
    if isinstance(files, list):
        out["files"] = [{**{k: v for k, v in f.items() if k != "path"},
                         "name": Path(str(f["path"])).name} if isinstance(f, Mapping)
                        and "path" in f else f for f in files]
    return out


def _remote_array(client: Any, public: bool, metadata: dict | None = None,
                  guard: MountGuard | None = None) -> ArrayAdapter:
    """A Tiled array of another server, served here: its blocks are read from there
    (through ``guard`` when given)."""
    import dask.array as da
    import numpy as np

    source = client if guard is None else _GuardedArray(client, guard)
    array = da.from_array(source, chunks=client.chunks, name=f"spotkit-mount-{client.uri}",
                          meta=np.empty((0,) * len(client.shape), dtype=client.dtype))
    adapter = ArrayAdapter.from_array(array, dims=client.structure().dims,
                                      metadata=dict(metadata if metadata is not None
                                                    else client.metadata or {}))
    adapter.federation_public = public
    return adapter


def _local_array(value: Any, public: bool, metadata: dict) -> ArrayAdapter | None:
    import dask.array as da
    import numpy as np

    if not isinstance(value, da.Array):
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            return None
        value = np.asarray(value)
        if value.dtype.kind not in "biufc":
            return None
    adapter = ArrayAdapter.from_array(value, metadata=metadata)
    adapter.federation_public = public
    return adapter


def hit_adapter(hit: Hit, public: bool, *, intake: bool,
                guard: MountGuard | None = None) -> Any:
    """One hit of a mount as a Tiled node: its fields (``source``, ``id``, ``kind``, ...)
    and the source's metadata (``record``) as metadata; its arrays as children (a Tiled
    source's arrays, read from there a block at a time, through ``guard`` when given; an
    intake entry's ``read()``, lazy where its reader gives a dask array)."""
    from spotkit.serve._client import RemoteDataset

    metadata = {**hit.to_dict(), "record": _clean_record(hit.record)}
    data = hit.open()
    children: dict[str, Any] = {}
    if intake:
        array = _local_array(data.read(), public, {})
        if array is not None:
            children["data"] = array
    else:
        node = data._node if isinstance(data, RemoteDataset) else data
        family = getattr(node, "structure_family", None)
        if family == StructureFamily.array:
            children["data"] = _remote_array(node, public, {}, guard)
        elif family == StructureFamily.container:
            for key in list(node)[:MAX_ARRAYS]:
                child = node[key]
                if getattr(child, "structure_family", None) == StructureFamily.array:
                    children[key] = _remote_array(child, public, guard=guard)
    adapter = MapAdapter(children, metadata=metadata)
    adapter.federation_public = public
    return adapter


class _NotTheRoot:
    """What Tiled reads as ``adapter.node.parent`` of an adapter that has
    ``lookup_adapter`` (it checks access again at its own catalog's root): a mount is
    never the root."""

    parent = "spotkit-catalog"


class MountAdapter(_PagedViews):
    """A mounted source as a Tiled container: its hits, newest first, searchable.

    Tiled awaits its ``lookup_adapter``, ``exact_len``, ``keys_range``/``items_range`` and
    ``keys_page``/``items_page``: each runs in the mount's threads with the mount's
    deadline (:class:`~spotkit.serve._mount_guard.MountGuard`), so a source that hangs
    holds only its own requests. The plain methods (``len``, ``keys()``, ``[key]``) stay
    for synchronous callers.

    Parameters
    ----------
    source : TiledMount or IntakeMount
    spec : MountSpec
    criteria : Criteria, optional
        The Tiled queries applied so far.
    guard : MountGuard, optional
        Shared by every view of the mount (default: a new one with ``spec.timeout``).
    """

    structure_family = StructureFamily.container
    node = _NotTheRoot()

    def __init__(self, source: TiledMount | IntakeMount, spec: MountSpec,
                 criteria: Criteria | None = None, *, guard: MountGuard | None = None):
        self.source = source
        self.spec = spec
        self.criteria = criteria or Criteria()
        self.guard = guard or MountGuard(spec.name, spec.timeout)
        #: who may see it (read by :class:`FederatedAccessPolicy`)
        self.federation_public = spec.public

    @property
    def query(self) -> Query:
        """The criteria as a federated query."""
        return Query.build(**self.criteria.search_kwargs())

    def metadata(self) -> dict:
        """What the mount is (never its address or key)."""
        return {"spotkit": {"mount": self.spec.name, "read_only": True,
                            "kind": "tiled" if self.spec.uri else "intake",
                            "searchable": [*FIELDS, TIME_FIELD, "text"],
                            "order": "newest first (start_time)"}}

    @property
    def specs(self) -> list:
        """No Tiled specs."""
        return []

    @property
    def sorting(self) -> list[SortingItem]:
        """The only order: newest first."""
        return [SortingItem(key="_", direction=SortingDirection.ASCENDING)]

    def structure(self) -> ContainerStructure:
        """Keys are paged, not listed here."""
        return ContainerStructure(keys=[])

    def search(self, query: Any) -> MountAdapter:
        """A narrower view (the same queries as the local catalog)."""
        return MountAdapter(self.source, self.spec, self.criteria.add(query),
                            guard=self.guard)

    def sort(self, sorting: Any) -> MountAdapter:
        """Only the default order is offered."""
        for item in sorting or []:
            key, direction = (item.key, item.direction) if hasattr(item, "key") else item
            if key not in ("_", "") or int(direction) != 1:
                from fastapi import HTTPException

                raise HTTPException(status_code=400, detail=(
                    "a mount is ordered newest first (start_time); other sortings are not "
                    "offered"))
        return self

    # -- the source, asked directly (raises what the source raises) -------------------

    def _search(self, offset: int, limit: int | None) -> tuple[list[Hit], int | None]:
        if self.criteria.empty:
            return [], 0
        return self.source.search(self.query, limit, offset)

    def _hits(self, offset: int, limit: int | None) -> tuple[list[Hit], int | None]:
        """:meth:`_search` for synchronous callers: a failure is a 502 naming the mount."""
        try:
            return self._search(offset, limit)
        except Exception as exc:
            logger.warning("mount %s unreachable: %s", self.spec.name, exc)
            from fastapi import HTTPException

            raise HTTPException(status_code=502, detail=(
                f"the mounted source {self.spec.name!r} did not answer; try again later"
            )) from exc

    def _total(self, search: Any) -> int:
        hits, total = search(0, 0)
        if total is None:
            hits, _ = search(0, None)
            return len(hits)
        return total

    def _range(self, start: int, stop: int, direction: int,
               search: Any = None) -> list[Hit]:
        search = search or self._hits
        if direction > 0:
            return search(start, max(stop - start, 0))[0]
        total = self._total(search)
        lo, hi = max(total - stop, 0), max(total - start, 0)
        return list(reversed(search(lo, hi - lo)[0]))

    def _node(self, hit: Hit) -> Any:
        return hit_adapter(hit, self.federation_public, intake=self.spec.intake is not None,
                           guard=self.guard)

    def _lookup(self, key: str) -> Any:
        """One hit by its id there as a node; KeyError if there is none or it does not
        meet the criteria (other errors are the source's)."""
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise KeyError(key)
        hit = self.source.get(key)
        if self.criteria.empty or not self.query.matches(hit):
            raise KeyError(key)
        return self._node(hit)

    def _items(self, offset: int, limit: int | None) -> list[tuple[str, Any]]:
        return [(hit.id, self._node(hit)) for hit in self._search(offset, limit)[0]]

    # -- what Tiled awaits: in the mount's threads, with its deadline -----------------

    async def lookup_adapter(self, segments: list[str]) -> Any:
        """The node at ``segments`` below the mount (NoEntry: Tiled's 404)."""
        if not segments:
            return self
        try:
            node = await self.guard.call(f"looking up {segments[0]}", self._lookup,
                                         segments[0])
            for segment in segments[1:]:
                node = node[segment]
        except KeyError:
            raise NoEntry(segments) from None
        return node

    async def exact_len(self) -> int:
        """The number of hits."""
        return await self.guard.call("counting", self._total, self._search)

    async def keys_range(self, offset: int = 0, limit: int | None = None) -> list[str]:
        """The ids of a page of hits."""
        hits = await self.guard.call("listing", self._search, offset, limit)
        return [hit.id for hit in hits[0]]

    async def items_range(self, offset: int = 0,
                          limit: int | None = None) -> list[tuple[str, Any]]:
        """(id, node) of a page of hits."""
        return await self.guard.call("listing", self._items, offset, limit)

    async def cursor_for_offset(self, offset: int) -> None:
        """Pages are by offset (no cursors)."""
        return None

    async def keys_page(self, cursor: Any = None,
                        limit: int | None = None) -> tuple[list[str], None]:
        """The first page of ids (pages are by offset)."""
        return await self.keys_range(_offset(cursor), limit), None

    async def items_page(self, cursor: Any = None,
                         limit: int | None = None) -> tuple[list[tuple[str, Any]], None]:
        """The first page of (id, node) (pages are by offset)."""
        return await self.items_range(_offset(cursor), limit), None

    # -- synchronous callers ---------------------------------------------------------

    def __len__(self) -> int:
        return self._total(self._hits)

    def _keys_slice(self, start: int, stop: int, direction: int,
                    page_size: int | None = None) -> list[str]:
        return [hit.id for hit in self._range(start, stop, direction)]

    def _items_slice(self, start: int, stop: int, direction: int,
                     page_size: int | None = None) -> list[tuple[str, Any]]:
        return [(hit.id, self._node(hit))
                for hit in self._range(start, stop, direction)]

    def __getitem__(self, key: str) -> Any:
        """One hit by its id there, if it meets the criteria."""
        try:
            return self._lookup(key)
        except KeyError:
            raise
        except Exception as exc:
            logger.warning("mount %s: looking up %s failed: %s", self.spec.name, key, exc)
            raise KeyError(key) from exc

    def __repr__(self) -> str:
        return f"<MountAdapter {self.spec.name} {self.criteria.describe()}>"


class FederatedAccessPolicy(ProposalAccessPolicy):
    """:class:`~spotkit.serve.ProposalAccessPolicy` for local datasets; for a mount and
    everything under it: staff always, every authenticated user when the mount is public,
    nobody else (404 "No such entry"). Read scopes only."""

    async def allowed_scopes(self, node: Any, principal: Any, authn_access_tags: Any,
                             authn_scopes: Any) -> set[str]:
        """Read scopes by proposal (local) or by the mount's ``public`` flag."""
        public = getattr(node, "federation_public", None)
        if public is None:
            return await super().allowed_scopes(node, principal, authn_access_tags,
                                                authn_scopes)
        if principal is None:
            return set()
        if public or self._proposals(principal) is None:
            return set(READ_SCOPES)
        return set()

    async def filters(self, node: Any, principal: Any, authn_access_tags: Any,
                      authn_scopes: Any, scopes: Any) -> Any:
        """Local catalog: the proposal filter; a mount: none for those who may see it,
        else no access (a mount a user may not see is never asked on their behalf)."""
        public = getattr(node, "federation_public", None)
        if public is None:
            return await super().filters(node, principal, authn_access_tags, authn_scopes,
                                         scopes)
        if principal is None or not (public or self._proposals(principal) is None):
            return NO_ACCESS  # nothing below it is looked up (nor its source asked)
        return []
