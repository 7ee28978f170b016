"""A read-only view of a ``spotkit serve`` catalog for notebooks (a thin layer over
Tiled's client).

``open_remote("https://host/api", api_key=...)`` gives a :class:`RemoteCatalog`:
``search`` takes the fields of :meth:`spotkit.catalog.Catalog.search` and pages on the
server; ``cat[id]`` is a :class:`RemoteDataset` with the catalog fields and its arrays,
sliced on the server (``ds["data"][100]`` reads one projection). Tiled's own client works
on the same URL (``tiled.client.from_uri``); :attr:`RemoteCatalog.tiled` is that client.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from spotkit.errors import CatalogError

__all__ = ["RemoteCatalog", "RemoteDataset", "RemoteSearchResult", "open_remote"]

_FIELDS = ("beamline", "sample", "proposal", "kind", "status")


def _time(value: Any) -> _dt.datetime | None:
    if not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def _iso(value: Any, name: str) -> str:
    if isinstance(value, _dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=_dt.UTC)).isoformat()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC).isoformat()
    if isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a datetime, date or ISO 8601 string, not {value!r}")


class RemoteDataset:
    """A dataset of a remote catalog: its catalog fields, and its arrays read on demand.

    Attributes
    ----------
    id, kind, beamline, sample, proposal, title, status : str or None
    start_time, end_time : datetime.datetime or None
    metadata : dict
        The dataset's own metadata.
    parents, children : list of str
        Ids of the datasets it was derived from / derived from it (those you may see).
    files : list of dict
        Name, role, format, size and sha256 of each file (no server paths).
    """

    def __init__(self, node: Any):
        self._node = node
        md = dict(node.metadata)
        self.record = md
        self.id: str = md.get("id") or node.item["id"]
        self.kind: str | None = md.get("kind")
        self.beamline: str | None = md.get("beamline")
        self.sample: str | None = md.get("sample")
        self.proposal: str | None = md.get("proposal")
        self.status: str | None = md.get("status")
        self.title: str | None = md.get("title")
        self.start_time = _time(md.get("start_time"))
        self.end_time = _time(md.get("end_time"))
        self.metadata: dict = dict(md.get("metadata") or {})
        self.parents: list[str] = list(md.get("parents") or [])
        self.children: list[str] = list(md.get("children") or [])
        self.files: list[dict] = list(md.get("files") or [])
        self.frame_marks: dict = dict(md.get("frame_marks") or {})

    @property
    def arrays(self) -> list[str]:
        """Names of the dataset's arrays (``data``, ``flats``, ``darks``, ``theta``, ...)."""
        return list(self._node)

    def __getitem__(self, name: str) -> Any:
        """Tiled's client for one array: slicing it (``ds["data"][10:20]``) reads only that
        selection, on the server, into numpy."""
        return self._node[name]

    def read(self, name: str = "data", slice: Any = None) -> Any:
        """Read an array (or a selection of it) into memory as numpy."""
        arr = self._node[name]
        return arr.read(slice) if slice is not None else arr.read()

    def to_dask(self, name: str = "data") -> Any:
        """The array as a dask array whose blocks (the server's slabs, ~64 MiB) are read
        from the server on compute."""
        import dask.array as da
        import numpy as np

        arr = self._node[name]
        return da.from_array(arr, chunks=arr.chunks, name=f"spotkit-remote-{arr.uri}",
                             meta=np.empty((0,) * len(arr.shape), dtype=arr.dtype))

    def to_xarray(self) -> Any:
        """``tomo/raw``: an :class:`xarray.Dataset` (data, flats, darks; theta as the angle
        coordinate); otherwise the ``data`` array as an :class:`xarray.DataArray`. Lazy."""
        import xarray as xr

        names = self.arrays
        attrs = {"dataset_id": self.id, "kind": self.kind, "sample": self.sample}
        if self.kind == "tomo/raw" and {"data", "flats", "darks"} <= set(names):
            variables = {}
            for name in ("data", "flats", "darks"):
                dims = self._node[name].structure().dims or (f"{name}_0", "row", "col")
                variables[name] = (tuple(dims), self.to_dask(name))
            coords = {}
            if "theta" in names:
                coords["theta"] = ("angle", self.read("theta"))
            return xr.Dataset(variables, coords=coords,
                              attrs={k: v for k, v in attrs.items() if v is not None})
        array = self.to_dask("data")
        dims = self._node["data"].structure().dims
        return xr.DataArray(array, dims=tuple(dims) if dims else None,
                            name=str(self.kind).replace("/", "_"),
                            attrs={k: v for k, v in attrs.items() if v is not None})

    def to_dict(self) -> dict:
        """The catalog record as the server sent it."""
        return dict(self.record)

    def __repr__(self) -> str:
        return (f"<RemoteDataset {self.id} {self.kind} [{self.status}]>\n"
                f"  beamline {self.beamline}  sample {self.sample}  proposal {self.proposal}\n"
                f"  arrays   {', '.join(self.arrays)}")


class RemoteSearchResult(Sequence[RemoteDataset]):
    """One page of a remote search, newest first, with the total number of matches."""

    def __init__(self, datasets: list[RemoteDataset], *, total: int, offset: int,
                 limit: int | None, query: dict):
        self._datasets = datasets
        self.total = total
        self.offset = offset
        self.limit = limit
        self.query = query

    def __len__(self) -> int:
        return len(self._datasets)

    def __getitem__(self, index: Any) -> Any:
        return self._datasets[index]

    @property
    def ids(self) -> list[str]:
        """Ids on this page."""
        return [d.id for d in self._datasets]

    def __repr__(self) -> str:
        lines = [f"<RemoteSearchResult: {len(self)} of {self.total} datasets>"]
        lines += [f"  {d.id}  {d.kind}  {d.beamline}  {d.sample}  {d.proposal}"
                  for d in self._datasets]
        return "\n".join(lines)


class RemoteCatalog:
    """A read-only catalog behind ``spotkit serve`` (see :func:`open_remote`)."""

    def __init__(self, client: Any, uri: str):
        self.tiled = client
        self.uri = uri

    def _query(self, **criteria: Any) -> list[Any]:
        from tiled.queries import Comparison, Eq, FullText, In

        queries: list[Any] = []
        for name in _FIELDS:
            value = criteria.get(name)
            if value is None:
                continue
            if isinstance(value, str):
                queries.append(Eq(name, value))
            else:
                queries.append(In(name, [str(v) for v in value]))
        if criteria.get("since") is not None:
            queries.append(Comparison("ge", "start_time", _iso(criteria["since"], "since")))
        if criteria.get("until") is not None:
            queries.append(Comparison("le", "start_time", _iso(criteria["until"], "until")))
        if criteria.get("text"):
            queries.append(FullText(str(criteria["text"])))
        return queries

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
        offset: int = 0,
    ) -> RemoteSearchResult:
        """Find datasets on the server, newest first (arguments as
        :meth:`spotkit.catalog.Catalog.search`; the search runs on the server)."""
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative integer, not {offset!r}")
        query = {k: v for k, v in dict(beamline=beamline, sample=sample, proposal=proposal,
                                       kind=kind, status=status, since=since, until=until,
                                       text=text).items() if v is not None}
        node = self.tiled
        for q in self._query(**query):
            node = node.search(q)
        total = len(node)
        stop = total if limit is None else min(total, offset + limit)
        items = node.items()[offset:stop] if stop > offset else []
        datasets = [RemoteDataset(child) for _, child in items]
        return RemoteSearchResult(datasets, total=total, offset=offset, limit=limit,
                                  query=query)

    def __getitem__(self, dataset_id: str) -> RemoteDataset:
        try:
            return RemoteDataset(self.tiled[dataset_id])
        except KeyError:
            from spotkit.errors import DatasetNotFoundError

            raise DatasetNotFoundError(dataset_id, self.uri) from None

    def get(self, dataset_id: str, default: Any = None) -> Any:
        """The dataset, or ``default`` if there is none you may see."""
        try:
            return self[dataset_id]
        except LookupError:
            return default

    def __contains__(self, dataset_id: object) -> bool:
        return isinstance(dataset_id, str) and self.get(dataset_id) is not None

    def __len__(self) -> int:
        return len(self.tiled)

    def __iter__(self) -> Iterator[str]:
        return iter(self.tiled)

    def __repr__(self) -> str:
        return f"<RemoteCatalog {self.uri} (read-only)>"


_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def open_remote(uri: str, *, api_key: str | None = None, verify: bool = True,
                compression: bool | None = None, **kwargs: Any) -> RemoteCatalog:
    """Open the catalog served by ``spotkit serve`` at ``uri`` (read-only).

    Parameters
    ----------
    uri : str
        ``http://host:port/api`` (or ``https://``; the ``/api`` may be left out).
    api_key : str, optional
        Your key; default: ``$SPOTKIT_API_KEY``, then ``$TILED_API_KEY``.
    verify : bool, optional
        Check the server's TLS certificate (``https://``).
    compression : bool, optional
        Let the server compress arrays (blosc2, zstd, lz4). Default: off for a server on
        this machine (compressing costs more than it saves over loopback), on otherwise
        (raw detector data compresses about 2x).
    **kwargs
        Passed to :func:`tiled.client.from_uri`.

    Returns
    -------
    RemoteCatalog
    """
    from tiled.client import from_uri

    if not uri.startswith(("http://", "https://")):
        raise ValueError(f"{uri!r} is not an http:// or https:// URL of a spotkit server")
    from urllib.parse import urlsplit

    key = api_key or os.environ.get("SPOTKIT_API_KEY") or os.environ.get("TILED_API_KEY")
    if compression is None:
        compression = urlsplit(uri).hostname not in _LOOPBACK
    headers = dict(kwargs.pop("headers", None) or {})
    if not compression:
        headers["accept-encoding"] = "identity"
    import httpx

    try:
        client = from_uri(uri, structure_clients="numpy", api_key=key, verify=verify,
                          remember_me=False, headers=headers, **kwargs)
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        why = ("it refused the API key (give api_key=... or set SPOTKIT_API_KEY)"
               if status in (401, 403) else f"it answered HTTP {status}")
        raise CatalogError(f"cannot open the spotkit serve catalog at {uri}: {why}") from exc
    except httpx.TransportError as exc:
        raise CatalogError(
            f"cannot reach a spotkit serve at {uri} ({exc}); check the address and that "
            "the server is running (spotkit serve --config serve.yaml)") from exc
    return RemoteCatalog(client, uri)
