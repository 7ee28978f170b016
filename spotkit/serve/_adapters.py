"""Tiled adapters over the spotkit catalog: the catalog as a container of datasets, each
dataset a container of arrays read lazily from its files on the server.

* :class:`CatalogAdapter` — keys are dataset ids, newest first. Every page, count and
  lookup is one :meth:`Catalog.search` (or one row by id): nothing loads all datasets;
  Tiled awaits them in threads of their own (:mod:`spotkit.serve._local_queries`).
  ``search`` narrows it by Tiled queries (:mod:`spotkit.serve._query`), and the access
  policy narrows it by proposal the same way, inside the same SQL query.
* :class:`DatasetAdapter` — one dataset: its catalog fields, provenance links, frame marks
  and files as metadata; its arrays as children (``data``, ``flats``, ``darks``, ``theta``
  of a raw scan; ``data`` of frame series and derived arrays, plus the other arrays of a
  derived HDF5 file such as ``q`` and ``sigma`` of an I(q) table).
* :class:`HDF5ArrayAdapter` — reads a selection straight from the HDF5 dataset (h5py, one
  read per request) and declares chunks of whole leading-axis slabs (~64 MiB), so a client
  asks for a few large blocks, not one request per storage chunk. Other layouts (NXtomo,
  frame folders, zarr, ``.npy``) are served through the dask arrays :mod:`spotkit.io`
  opens.
"""

from __future__ import annotations

import builtins
import functools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from dask.base import normalize_token
from tiled.adapters.array import ArrayAdapter
from tiled.ndslice import NDBlock, NDSlice
from tiled.server.schemas import SortingDirection, SortingItem
from tiled.structures.array import ArrayStructure, BuiltinDtype
from tiled.structures.container import ContainerStructure
from tiled.structures.core import StructureFamily

from spotkit import kinds
from spotkit.serve._local_queries import LocalQueries, _PagedViews, _Views, local_pool
from spotkit.serve._query import FIELDS, TIME_FIELD, Criteria

__all__ = ["CatalogAdapter", "DatasetAdapter", "HDF5ArrayAdapter"]

logger = logging.getLogger("spotkit.serve")

#: target size of one declared chunk (a slab of whole leading-axis planes)
CHUNK_BYTES = 64 * 2**20
#: most extra arrays of a derived HDF5 file served beside ``data``
MAX_EXTRA_ARRAYS = 64
_ALL = NDSlice(...)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DXCHANGE = {"data": "exchange/data", "flats": "exchange/data_white",
             "darks": "exchange/data_dark"}
_DIMS = {"data": ("angle", "row", "col"), "flats": ("flat", "row", "col"),
         "darks": ("dark", "row", "col")}


def _dims(kind: str, key: str) -> tuple[str, ...] | None:
    if kind == kinds.TOMO_RAW:
        return _DIMS.get(key)
    if kind == kinds.SAXS_RAW and key == "data":
        return ("frame", "row", "col")
    return None


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def slab_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[tuple[int, ...], ...]:
    """Chunks of whole leading-axis planes, about :data:`CHUNK_BYTES` each.

    Examples
    --------
    >>> slab_chunks((10, 2560, 2560), 4)[0]
    (2, 2, 2, 2, 2)
    >>> slab_chunks((5,), 8)
    ((5,),)
    """
    if not shape:
        return ()
    plane = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    n = max(1, min(shape[0], CHUNK_BYTES // max(plane, 1))) if shape[0] else 1
    lead = [n] * (shape[0] // n) + ([shape[0] % n] if shape[0] % n else [])
    return (tuple(lead) or (0,), *((s,) for s in shape[1:]))


class ServedArray(np.ndarray):
    """An array read for a response, tagged with where it came from.

    Tiled makes each response's ETag by tokenizing the array, which hashes every byte in the
    event loop (~30 ms for a 26 MB slice here). A served array is tokenized by its source
    instead — file, dataset, the file's size and modification time, and the selection — so
    the ETag still changes whenever the data can have changed.
    """

    source: tuple = ()


@normalize_token.register(ServedArray)
def _token_of_served(array: ServedArray) -> tuple:
    return ("spotkit-served", array.source, array.dtype.str, array.shape)


@dataclass(frozen=True)
class _Array:
    shape: tuple[int, ...]
    dtype: np.dtype
    units: str | None


@functools.lru_cache(maxsize=512)
def _layout_cached(path: str, size: int, mtime_ns: int) -> dict[str, _Array]:
    arrays: dict[str, _Array] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biufc":
                units = obj.attrs.get("units")
                if isinstance(units, bytes):
                    units = units.decode(errors="replace")
                arrays[name] = _Array(tuple(int(n) for n in obj.shape), np.dtype(obj.dtype),
                                      None if units is None else str(units))
        f.visititems(visit)
    return arrays


def hdf5_layout(path: str | Path) -> dict[str, _Array] | None:
    """The numeric datasets of an HDF5 file (name -> shape, dtype, units), or None if the
    file is not HDF5. Cached by path, size and modification time: a request for a slice
    opens the file once, to read."""
    where = Path(path)
    try:
        stat = where.stat()
    except OSError:
        return None
    if not where.is_file() or not h5py.is_hdf5(where):
        return None
    return _layout_cached(str(where), stat.st_size, stat.st_mtime_ns)


class HDF5ArrayAdapter:
    """One HDF5 dataset served as an array: each read opens the file, reads, closes.

    Parameters
    ----------
    path : path-like
        The HDF5 file (opened read-only).
    key : str
        The dataset inside it.
    proposal : str or None
        The proposal of the dataset it belongs to (for the access policy).
    dims : tuple of str, optional
        Dimension names.
    """

    structure_family = StructureFamily.array

    def __init__(self, path: str | Path, key: str, *, proposal: str | None,
                 dims: tuple[str, ...] | None = None, metadata: dict | None = None):
        self.path = str(path)
        self.key = key.strip("/")
        self.proposal = proposal
        found = (hdf5_layout(self.path) or {}).get(self.key)
        if found is None:
            raise KeyError(key)
        shape, dtype, units = found.shape, found.dtype, found.units
        if dims is not None and len(dims) != len(shape):
            dims = None
        self._structure = ArrayStructure(
            data_type=BuiltinDtype.from_numpy_dtype(dtype),
            chunks=slab_chunks(shape, dtype.itemsize),
            shape=shape,
            dims=dims,
        )
        self._metadata = dict(metadata or {})
        if units is not None:
            self._metadata.setdefault("units", units)

    def metadata(self) -> dict:
        """Array metadata (units when the file gives them)."""
        return self._metadata

    @property
    def specs(self) -> list:
        """No Tiled specs."""
        return []

    def structure(self) -> ArrayStructure:
        """Shape, dtype and the declared (slab) chunks."""
        return self._structure

    def read(self, slice: NDSlice = _ALL) -> np.ndarray:
        """Read a selection (a whole slab in one h5py read)."""
        shape = self._structure.shape
        index = tuple(NDSlice(slice).expand_for_shape(shape)) if slice else ()
        box: list[Any] = []
        rest: list[builtins.slice] = []
        for item, n in zip(index, shape, strict=False):
            if isinstance(item, int | np.integer):
                box.append(int(item) + (n if item < 0 else 0))
                continue
            picked = range(*item.indices(n))
            if len(picked) == 0:
                box.append(builtins.slice(0, 0))
                rest.append(builtins.slice(None))
            elif picked.step == 1:
                box.append(builtins.slice(picked[0], picked[-1] + 1))
                rest.append(builtins.slice(None))
            else:  # read the bounding range in one go, take every step-th in memory
                lo, hi = min(picked[0], picked[-1]), max(picked[0], picked[-1]) + 1
                box.append(builtins.slice(lo, hi))
                rest.append(builtins.slice(picked[0] - lo, None, picked.step))
        with h5py.File(self.path, "r") as f:
            out = f[self.key][tuple(box)] if box else f[self.key][()]
            stat = Path(self.path).stat()
        if any(s != builtins.slice(None) for s in rest):
            out = out[tuple(rest)]
        served = np.ascontiguousarray(out).view(ServedArray)
        served.source = (self.path, self.key, stat.st_size, stat.st_mtime_ns, repr(box),
                         repr(rest))
        return served

    def read_block(self, block: NDBlock, slice: NDSlice = _ALL) -> np.ndarray:
        """Read one declared chunk (optionally a selection inside it)."""
        box = NDBlock(block).slice_from_chunks(self._structure.chunks)
        out = self.read(box)
        return out[tuple(slice)] if slice else out

    def __repr__(self) -> str:
        return f"<HDF5ArrayAdapter {Path(self.path).name}:{self.key} {self._structure.shape}>"


def _dask_adapter(array: Any, *, dims: tuple[str, ...] | None, proposal: str | None,
                  metadata: dict | None = None) -> ArrayAdapter:
    """A Tiled array adapter over a dask array, with slab chunks declared."""
    chunks = slab_chunks(tuple(array.shape), array.dtype.itemsize)
    adapter = ArrayAdapter.from_array(array.rechunk(chunks), dims=dims,
                                      metadata=metadata or {})
    adapter.proposal = proposal
    return adapter


def _hdf5_arrays(layout: dict[str, _Array], primary: str | None, limit: int) -> list[str]:
    """Array datasets of a file, the primary one first (at most ``limit`` others)."""
    names = [name for name, array in layout.items() if array.shape]
    primary = primary.strip("/") if primary else None
    others = [n for n in names if n != primary][:limit]
    return ([primary] if primary in names else []) + others


class DatasetAdapter(_Views):
    """One catalogued dataset: metadata from the catalog, arrays read from its files.

    Parameters
    ----------
    dataset : spotkit.catalog.Dataset
    criteria : Criteria
        The access restriction of the request (provenance links to datasets of other
        proposals are left out).
    catalog : spotkit.catalog.Catalog
        Where the dataset's frame marks are read.
    """

    structure_family = StructureFamily.container

    def __init__(self, dataset: Any, criteria: Criteria, catalog: Any):
        self.dataset = dataset
        self.catalog = catalog
        self.proposal = dataset.proposal
        self._criteria = criteria
        self._keys: list[str] | None = None
        self._hdf5: dict[str, str] | None = None
        self._metadata: dict | None = None

    def prefetch(self) -> None:
        """Read the metadata (catalog queries) and array names (files) now, in this thread."""
        self.metadata()
        self._list()

    # -- metadata ---------------------------------------------------------------------

    def metadata(self) -> dict:
        """The dataset's catalog record, provenance links, frame marks and files."""
        if self._metadata is None:
            self._metadata = self._read_metadata()
        return self._metadata

    def _read_metadata(self) -> dict:
        ds = self.dataset
        allowed = self._criteria.allows
        out: dict[str, Any] = {
            "id": ds.id, "kind": ds.kind, "beamline": ds.beamline, "sample": ds.sample,
            "proposal": ds.proposal, "title": ds.title, "status": ds.status,
            "start_time": _iso(ds.start_time), "end_time": _iso(ds.end_time),
            "ingested_at": _iso(ds.ingested_at),
            "metadata": dict(ds.metadata),
            "files": [{"name": Path(f.path).name, "role": f.role, "format": f.format,
                       "size": f.size, "sha256": f.sha256} for f in ds.files],
            "parents": [p.id for p in ds.parents if allowed(p.proposal)],
            "children": [c.id for c in ds.children if allowed(c.proposal)],
        }
        run = ds.producing_run if ds.run_id else None
        if run is not None:
            out["run"] = {"id": run.id, "notebook": Path(run.notebook).name,
                          "notebook_sha256": run.notebook_sha256, "state": run.state,
                          "parameters": dict(run.parameters), "target": run.target,
                          "started_at": _iso(run.started_at), "ended_at": _iso(run.ended_at),
                          "versions": dict(run.versions)}
        if ds.kind == kinds.SAXS_RAW:
            out["frame_marks"] = _frame_ranges(self.catalog.frame_marks(ds.id))
        return out

    @property
    def specs(self) -> list:
        """No Tiled specs."""
        return []

    def structure(self) -> ContainerStructure:
        """The names of the dataset's arrays."""
        return ContainerStructure(keys=self._list())

    # -- children ---------------------------------------------------------------------

    def _list(self) -> list[str]:
        if self._keys is None:
            self._keys = self._discover()
        return self._keys

    def _discover(self) -> list[str]:
        record = self.dataset.primary_file
        self._hdf5 = {}
        if record is None or not Path(record.path).exists():
            return []
        path = Path(record.path)
        kind = self.dataset.kind
        layout = hdf5_layout(path)
        if kind == kinds.TOMO_RAW:
            if layout is not None and all(k in layout for k in _DXCHANGE.values()):
                self._hdf5 = {**_DXCHANGE}
            return ["data", "flats", "darks", "theta"]
        if kind == kinds.SAXS_RAW:
            if layout is not None and kinds.raw_layout(kind).data in layout:
                self._hdf5 = {"data": kinds.raw_layout(kind).data}
            return ["data"]
        if record.format in ("hdf5", None) and layout is not None:
            names = _hdf5_arrays(layout, record.key, MAX_EXTRA_ARRAYS)
            if not names:
                return []
            keys = ["data"] + [n.replace("/", ".") for n in names[1:]]
            self._hdf5 = dict(zip(keys, names, strict=True))
            return keys
        if record.format in ("zarr", "npy"):
            return ["data"]
        return []

    def _child(self, key: str) -> Any:
        ds = self.dataset
        if key not in self._list():
            raise KeyError(key)
        path = Path(ds.primary_file.path)
        hdf5 = self._hdf5 or {}
        if key in hdf5:
            return HDF5ArrayAdapter(path, hdf5[key], proposal=ds.proposal,
                                    dims=_dims(ds.kind, key))
        from spotkit import io

        if ds.kind == kinds.TOMO_RAW:
            scan = io.open_tomo(path)
            if key == "theta":
                return _dask_adapter(_as_dask(np.asarray(scan["theta"].values)),
                                     dims=("angle",), proposal=ds.proposal,
                                     metadata={"units": "degree"})
            return _dask_adapter(scan[key].data, dims=_DIMS[key], proposal=ds.proposal)
        if ds.kind == kinds.SAXS_RAW:
            frames = io.open_saxs(path)
            return _dask_adapter(frames.data, dims=tuple(map(str, frames.dims)),
                                 proposal=ds.proposal)
        return _dask_adapter(io.open_array(path, key=ds.primary_file.key), dims=None,
                             proposal=ds.proposal)

    def __getitem__(self, key: str) -> Any:
        return self._child(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._list())

    def __len__(self) -> int:
        return len(self._list())

    def _keys_slice(self, start: int, stop: int, direction: int,
                    page_size: int | None = None) -> list[str]:
        keys = self._list() if direction > 0 else list(reversed(self._list()))
        return keys[start:stop]

    def _items_slice(self, start: int, stop: int, direction: int,
                     page_size: int | None = None) -> list[tuple[str, Any]]:
        return [(k, self._child(k)) for k in self._keys_slice(start, stop, direction)]

    def search(self, query: Any) -> DatasetAdapter:
        """Queries do not narrow a dataset's arrays (the access policy sends none here)."""
        from tiled.queries import QueryValueError

        raise QueryValueError("a dataset's arrays cannot be searched; search the catalog")

    def __repr__(self) -> str:
        return f"<DatasetAdapter {self.dataset.id} {self.dataset.kind}>"


def _as_dask(values: np.ndarray) -> Any:
    import dask.array as da

    return da.from_array(values, chunks=values.shape or ())


def _frame_ranges(marks: list[dict]) -> dict[str, list[list[int]]]:
    """Frame marks as inclusive ranges per label: ``{"of interest": [[0, 9], [40, 41]]}``."""
    out: dict[str, list[list[int]]] = {}
    for mark in marks:
        ranges = out.setdefault(mark["label"], [])
        frame = int(mark["frame"])
        if ranges and ranges[-1][1] == frame - 1:
            ranges[-1][1] = frame
        else:
            ranges.append([frame, frame])
    return out


class CatalogAdapter(LocalQueries, _PagedViews):
    """The spotkit catalog as a Tiled container: dataset ids, newest first (what Tiled
    awaits runs in the catalog's threads: :class:`~spotkit.serve._local_queries.LocalQueries`).

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
        SQLite or PostgreSQL, through its public API only.
    criteria : Criteria, optional
        Accumulated search and access criteria.
    mounts : mapping of str to node, optional
        Read-only mounts (:mod:`spotkit.serve._federation_server`), reached by name beside
        the datasets (``/api/v1/metadata/<mount>``); not listed among the datasets.
    pool : concurrent.futures.ThreadPoolExecutor, optional
        The threads its queries run in (default: new ones; narrower views share them).
    """

    structure_family = StructureFamily.container

    def __init__(self, catalog: Any, criteria: Criteria | None = None,
                 mounts: dict[str, Any] | None = None, *, pool: Any = None):
        self.catalog = catalog
        self.criteria = criteria or Criteria()
        self.proposal: str | None = None
        self.mounts = dict(mounts or {})
        self._pool = pool or local_pool()

    def metadata(self) -> dict:
        """What the catalog offers to search (never its location), and the public mounts."""
        out: dict[str, Any] = {"searchable": [*FIELDS, TIME_FIELD, "text"],
                               "order": "newest first (start_time)"}
        public = sorted(name for name, node in self.mounts.items()
                        if getattr(node, "federation_public", False))
        if public:
            out["mounts"] = public
        return {"spotkit": out}

    @property
    def specs(self) -> list:
        """No Tiled specs."""
        return []

    @property
    def sorting(self) -> list[SortingItem]:
        """The only order: the catalog's (newest first)."""
        return [SortingItem(key="_", direction=SortingDirection.ASCENDING)]

    def structure(self) -> ContainerStructure:
        """Keys are not listed here (a catalog may hold millions); page through them."""
        return ContainerStructure(keys=[])

    # -- narrowing --------------------------------------------------------------------

    def search(self, query: Any) -> CatalogAdapter:
        """A narrower view: the Tiled query added to the criteria (nothing read yet)."""
        return CatalogAdapter(self.catalog, self.criteria.add(query), self.mounts,
                              pool=self._pool)

    def sort(self, sorting: Any) -> CatalogAdapter:
        """Only the catalog's own order (``_``, ascending) is offered."""
        for item in sorting or []:
            key, direction = (item.key, item.direction) if hasattr(item, "key") else item
            if key not in ("_", "") or int(direction) != 1:
                from fastapi import HTTPException

                raise HTTPException(status_code=400, detail=(
                    "the spotkit catalog is ordered newest first (start_time); other "
                    "sortings are not offered"))
        return self

    # -- paging -----------------------------------------------------------------------

    def _page(self, offset: int, limit: int) -> list[Any]:
        if limit <= 0 or self.criteria.empty:
            return []
        return list(self.catalog.search(**self.criteria.search_kwargs(),
                                        limit=limit, offset=offset))

    def __len__(self) -> int:
        if self.criteria.empty:
            return 0
        # exact: Tiled pages by this count (an estimate would end paging early or late)
        return int(self.catalog.search(**self.criteria.search_kwargs(), limit=0,
                                       exact_total=True).total)

    def _range(self, start: int, stop: int | None, direction: int) -> list[Any]:
        if stop is None:  # to the end (Tiled's keys() iterated)
            stop = len(self)
        if direction > 0:
            return self._page(start, stop - start)
        total = len(self)
        lo, hi = max(total - stop, 0), max(total - start, 0)
        return list(reversed(self._page(lo, hi - lo)))

    def _keys_slice(self, start: int, stop: int | None, direction: int,
                    page_size: int | None = None) -> list[str]:
        return [ds.id for ds in self._range(start, stop, direction)]

    def _items_slice(self, start: int, stop: int | None, direction: int,
                     page_size: int | None = None) -> list[tuple[str, DatasetAdapter]]:
        return [(ds.id, DatasetAdapter(ds, self.criteria, self.catalog))
                for ds in self._range(start, stop, direction)]

    # -- lookup -----------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        """The dataset with this id, if it meets the criteria, or the mount of that name;
        else KeyError (a 404 that says the same for a missing id and for one the user may
        not see)."""
        if not isinstance(key, str) or not _ID.fullmatch(key):
            raise KeyError(key)
        if key in self.mounts:
            return self.mounts[key]
        ds = self.catalog.get(key)
        if ds is None or not self.criteria.matches_fields(ds):
            raise KeyError(key)
        if self.criteria.words and not self._text_matches(ds):
            raise KeyError(key)
        return DatasetAdapter(ds, self.criteria, self.catalog)

    def _text_matches(self, ds: Any) -> bool:
        kwargs = self.criteria.search_kwargs()
        if ds.start_time is not None:  # only datasets started at that very time
            kwargs["since"] = kwargs["until"] = ds.start_time
        offset = 0
        while True:
            page = self.catalog.search(**kwargs, limit=1000, offset=offset)
            if ds.id in page.ids:
                return True
            if len(page) < 1000:
                return False
            offset += 1000

    def __repr__(self) -> str:
        return f"<CatalogAdapter {self.criteria.describe()}>"
