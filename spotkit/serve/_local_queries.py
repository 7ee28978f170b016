"""The local catalog's queries off the server's event loop.

Tiled runs its request handlers in one event loop. It awaits a container's
``lookup_adapter``, ``exact_len``, ``keys_range``/``items_range`` and
``keys_page``/``items_page`` where the container has them, and otherwise calls the plain
methods (``container[key]``, ``keys()[a:b]``, ``items()[a:b]``) right in that loop. A
catalog query made there (a search over millions of datasets, a PostgreSQL server that is
slow to answer) would hold every other request of the server until it returns.

:class:`LocalQueries` gives :class:`~spotkit.serve._adapters.CatalogAdapter` those
awaitable methods: each runs the catalog query in threads of the local catalog's own (as
:class:`~spotkit.serve._mount_guard.MountGuard` does for a mount), and a dataset found
there has its metadata (provenance links, frame marks: more queries) and the names of its
arrays (its files opened) read in the same thread, before Tiled asks for them in the loop.
The catalog serialises its own connection; what a slow local query holds is the local
queries behind it, never the server: mounts, array reads, authentication and the other
requests' answers go on meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as _futures
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from tiled.iterviews import ItemsView, KeysView, ValuesView
from tiled.server.core import NoEntry

__all__ = ["WORKERS", "LocalQueries"]

#: threads of the local catalog's queries (more queue)
WORKERS = 8

T = TypeVar("T")


class _Views:
    """Tiled's keys/values/items views of a container, read through its ``_keys_slice`` and
    ``_items_slice`` (a page at a time)."""

    def __len__(self) -> int:  # pragma: no cover - every container defines its own
        raise NotImplementedError

    def _keys_slice(self, start: int, stop: int, direction: int,
                    page_size: int | None = None) -> list[str]:
        raise NotImplementedError  # pragma: no cover

    def _items_slice(self, start: int, stop: int, direction: int,
                     page_size: int | None = None) -> list[tuple[str, Any]]:
        raise NotImplementedError  # pragma: no cover

    def keys(self) -> KeysView:
        """The keys, in the container's order."""
        return KeysView(lambda: len(self), self._keys_slice)

    def values(self) -> ValuesView:
        """The child adapters, a page at a time."""
        return ValuesView(lambda: len(self), self._items_slice)

    def items(self) -> ItemsView:
        """(key, child adapter) pairs, a page at a time."""
        return ItemsView(lambda: len(self), self._items_slice)


class _PagedViews(_Views):
    """A container whose keys come from a query, 500 at a time."""

    def __iter__(self) -> Iterator[str]:
        offset, page = 0, 500
        while True:
            ids = self._keys_slice(offset, offset + page, 1)
            yield from ids
            if len(ids) < page:
                return
            offset += page


class _NotTheRoot:
    """What Tiled reads as ``adapter.node.parent`` of a container with ``lookup_adapter``:
    Tiled then checks access at its own catalog's root, which the spotkit catalog is not
    (the access policy narrows it by proposal in every query instead)."""

    parent = "spotkit-catalog"


class LocalQueries:
    """The awaitable methods Tiled looks for, each running in the catalog's threads (a
    mixin of :class:`~spotkit.serve._adapters.CatalogAdapter`).

    The class provides ``node`` and the methods; the adapter provides ``mounts``,
    ``__getitem__``, ``__len__``, ``_keys_slice`` and ``_items_slice`` (the synchronous
    paths, still used by synchronous callers) and ``_pool`` (:func:`local_pool`).
    """

    node = _NotTheRoot()
    mounts: dict[str, Any]
    _pool: _futures.ThreadPoolExecutor

    # provided by the adapter
    def __getitem__(self, key: str) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _keys_slice(self, start: int, stop: int, direction: int,
                    page_size: int | None = None) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def _items_slice(self, start: int, stop: int, direction: int,
                     page_size: int | None = None) -> list[tuple[str, Any]]:  # pragma: no cover
        raise NotImplementedError

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the local catalog's threads, awaited."""
        return await asyncio.wrap_future(self._pool.submit(fn, *args))

    async def lookup_adapter(self, segments: list[str]) -> Any:
        """The node at ``segments`` (a dataset, or a mount and what is below it); NoEntry
        (Tiled's 404) where there is none or the request may not see it."""
        if not segments:
            return self
        head, rest = segments[0], list(segments[1:])
        mount = self.mounts.get(head) if isinstance(head, str) else None
        if mount is not None and hasattr(mount, "lookup_adapter"):
            return await mount.lookup_adapter(rest)

        def find() -> Any:
            node = _prefetched(self[head])
            for segment in rest:
                node = node[segment]
            return node

        try:
            return await self._call(find)
        except KeyError:
            raise NoEntry(segments) from None

    async def exact_len(self) -> int:
        """The number of datasets the request may see (one counting query)."""
        return await self._call(len, self)

    def _keys(self, offset: int, limit: int | None) -> list[str]:
        stop = len(self) if limit is None else offset + max(limit, 0)
        return self._keys_slice(offset, stop, 1)

    def _items(self, offset: int, limit: int | None) -> list[tuple[str, Any]]:
        stop = len(self) if limit is None else offset + max(limit, 0)
        return [(key, _prefetched(node)) for key, node in self._items_slice(offset, stop, 1)]

    async def keys_range(self, offset: int = 0, limit: int | None = None) -> list[str]:
        """The ids of one page (one query)."""
        return await self._call(self._keys, offset, limit)

    async def items_range(self, offset: int = 0,
                          limit: int | None = None) -> list[tuple[str, Any]]:
        """(id, dataset) of one page, their metadata read in the same thread."""
        return await self._call(self._items, offset, limit)

    async def cursor_for_offset(self, offset: int) -> None:
        """Pages are by offset (no cursors)."""
        return None

    async def keys_page(self, cursor: Any = None,
                        limit: int | None = None) -> tuple[list[str], None]:
        """A page of ids from the offset ``cursor`` (pages are by offset)."""
        return await self.keys_range(_offset(cursor), limit), None

    async def items_page(self, cursor: Any = None,
                         limit: int | None = None) -> tuple[list[tuple[str, Any]], None]:
        """A page of (id, dataset) from the offset ``cursor`` (pages are by offset)."""
        return await self.items_range(_offset(cursor), limit), None


def local_pool(workers: int = WORKERS) -> _futures.ThreadPoolExecutor:
    """The threads one served catalog's queries run in (shared by all its views)."""
    return _futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spotkit-catalog")


def _prefetched(node: Any) -> Any:
    """A dataset with what Tiled reads of it in the loop (metadata, array names) read now."""
    prefetch = getattr(node, "prefetch", None)
    if prefetch is not None:
        prefetch()
    return node


def _offset(cursor: Any) -> int:
    """A page cursor as an offset (the catalog's and the mounts' cursors are offsets)."""
    if cursor is None or cursor == "":
        return 0
    try:
        value = int(cursor)
    except (TypeError, ValueError):
        value = -1
    if value < 0:
        from fastapi import HTTPException

        raise HTTPException(status_code=400, detail=f"page cursor {cursor!r}: pages are by "
                            "offset here (page[offset]=N)")
    return value
