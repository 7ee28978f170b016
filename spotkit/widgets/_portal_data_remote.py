"""The Data panel over a remote catalog (``spotkit serve``, :class:`RemoteCatalog`).

A remote catalog answers searches by offset (``search(limit=, offset=)``: the server pages)
and gives each dataset's fields, files (names, no server paths), parents, children and
frame marks, but no runs. :func:`remote_page` and :func:`describe_remote` give the panel
the same plain values as for a local catalog, with what the server shows.
"""

from __future__ import annotations

import json
from typing import Any

from spotkit.widgets._portal_data_detail import DatasetDetail, GraphNode, format_size

__all__ = ["describe_remote", "is_local", "remote_page"]


def is_local(catalog: Any) -> bool:
    """Whether ``catalog`` is a :class:`spotkit.catalog.Catalog` (SQLite or PostgreSQL),
    which pages by key; anything else with ``search(limit=, offset=)`` pages by offset."""
    from spotkit.catalog import Catalog

    return isinstance(catalog, Catalog)


def remote_page(catalog: Any, query: dict, *, index: int, size: int, last: bool,
                total: int | None) -> tuple[list[Any], int, int]:
    """One page by offset: ``(datasets, total, index of the first row)``. For the last
    page with an unknown total, the total is asked first (a page of none)."""
    if last:
        if total is None:
            total = catalog.search(limit=0, **query).total
        index = max(0, (max(total, 1) - 1) // size * size)
    result = catalog.search(limit=size, offset=index, **query)
    return list(result), int(result.total), index


def _ranges(ranges: list) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def describe_remote(ds: Any) -> DatasetDetail:
    """A :class:`DatasetDetail` from a remote dataset (no runs, no previews, no paths)."""
    def when(value):
        return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""

    fields = (("id", ds.id), ("kind", ds.kind or ""), ("status", ds.status or ""),
              ("beamline", ds.beamline or ""), ("sample", ds.sample or ""),
              ("proposal", ds.proposal or ""), ("title", ds.title or ""),
              ("start", when(ds.start_time)), ("end", when(ds.end_time)))
    files = tuple({"role": f.get("role", ""), "path": f.get("name", ""),
                   "size": format_size(f.get("size")), "format": f.get("format") or "",
                   "sha256": (f.get("sha256") or "")[:16], "registered": "",
                   "replicas": ()} for f in ds.files)
    focus = GraphNode(ds.id, "dataset", f"{ds.kind or ''} {ds.sample or ''}".strip(),
                      ds.id, ds.status or "", True, ds.id)
    graph: list[tuple[GraphNode, ...]] = []
    if ds.parents:
        graph.append(tuple(GraphNode(p, "dataset", p, p, "", False, p) for p in ds.parents))
    graph.append((focus,))
    if ds.children:
        graph.append(tuple(GraphNode(c, "dataset", c, c, "", False, c) for c in ds.children))
    edges = tuple([(p, ds.id) for p in ds.parents] + [(ds.id, c) for c in ds.children])
    marks = tuple({"label": label, "count": sum(b - a + 1 for a, b in ranges),
                   "frames": _ranges(ranges), "reasons": ""}
                  for label, ranges in sorted(ds.frame_marks.items()))
    return DatasetDetail(
        id=ds.id, kind=ds.kind or "", status=ds.status or "", title=ds.title or "",
        fields=fields, metadata=json.dumps(ds.metadata, indent=2, sort_keys=True,
                                           default=str),
        files=files, graph=tuple(graph), graph_edges=edges, graph_truncated=False,
        runs=(), marks=marks, previews=())
