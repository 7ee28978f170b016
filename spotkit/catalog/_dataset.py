"""A dataset as the catalog returns it, and its provenance chain."""

from __future__ import annotations

import datetime as _dt
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spotkit import kinds
from spotkit.catalog._records import FileRecord, Run
from spotkit.errors import CatalogError

if TYPE_CHECKING:
    from spotkit.catalog._catalog import Catalog

__all__ = ["Dataset", "Provenance"]

#: HDF5 array of the primary data in raw files of each kind (used for intake export)
RAW_KEYS = {kind: kinds.raw_layout(kind).key for kind in (kinds.TOMO_RAW, kinds.SAXS_RAW)}


def _iso(value: _dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _short_time(value: _dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def _spans(frames: list[int]) -> str:
    """``[4, 5, 6, 7, 9]`` -> ``"frames 4-7, 9"``."""
    runs: list[list[int]] = []
    for k in sorted(set(frames)):
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)
    return f"frames {text}" if text else ""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A catalogued dataset: a lightweight, immutable view bound to its catalog.

    Fields are read when the dataset is fetched; :attr:`parents`, :attr:`children`,
    :attr:`runs` and :attr:`provenance` query the catalog each time they are used. Two
    datasets are equal when they have the same id.

    Attributes
    ----------
    id : str
        ``"ds-…"``, unique and sortable by creation.
    kind : str
        ``"tomo/raw"``, ``"saxs/raw"``, ``"tomo/recon"``, ...
    beamline, sample, proposal, title : str or None
    start_time, end_time : datetime.datetime or None
        Aware UTC datetimes. For a derived dataset, when the run that made it started and
        when it was registered.
    status : str
        ``"raw"``, ``"derived"``, ``"quarantined"``, ...
    metadata : dict
        JSON-serialisable metadata (instrument settings for raw data, anything for derived).
    files : tuple of FileRecord
        The dataset's files, the primary one first.
    ingested_at : datetime.datetime
        When the dataset was registered.
    run_id : str or None
        The run that produced a derived dataset.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan_0001.h5", shape=(32, 2, 32), seed=0)
    >>> cat = open_catalog(work / "catalog.db")
    >>> ds = cat[cat.ingest(work / "scan_0001.h5").id]
    >>> ds.to_dask().shape
    (32, 2, 32)
    >>> [f.role for f in ds.files], ds.provenance.raw_sources == (ds.id,)
    (['data'], True)
    """

    id: str
    kind: str
    beamline: str | None
    sample: str | None
    proposal: str | None
    title: str | None
    start_time: _dt.datetime | None
    end_time: _dt.datetime | None
    status: str
    metadata: dict
    files: tuple[FileRecord, ...]
    ingested_at: _dt.datetime | None = None
    run_id: str | None = None
    _catalog: Catalog | None = field(default=None, repr=False, compare=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dataset):
            return NotImplemented
        return self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    # -- files ------------------------------------------------------------------------

    @property
    def primary_file(self) -> FileRecord | None:
        """The first file with role ``"data"``, else the first file (``None`` if none)."""
        for record in self.files:
            if record.role == "data":
                return record
        return self.files[0] if self.files else None

    @property
    def path(self) -> Path | None:
        """Path of the primary data file (see :attr:`primary_file`)."""
        record = self.primary_file
        return record.path if record is not None else None

    # -- graph ------------------------------------------------------------------------

    def _cat(self) -> Catalog:
        if self._catalog is None:
            raise CatalogError(f"dataset {self.id} is not bound to a catalog")
        return self._catalog

    @property
    def parents(self) -> list[Dataset]:
        """Datasets this one was derived from (empty for raw data)."""
        return self._cat()._related(self.id, "parents")

    @property
    def children(self) -> list[Dataset]:
        """Datasets derived from this one."""
        return self._cat()._related(self.id, "children")

    @property
    def runs(self) -> list[Run]:
        """Notebook runs made on this dataset, newest first."""
        return self._cat().runs(dataset_id=self.id, limit=None)

    @property
    def producing_run(self) -> Run | None:
        """The run that produced this derived dataset (``None`` for raw data)."""
        return self._cat().get_run(self.run_id) if self.run_id else None

    @property
    def provenance(self) -> Provenance:
        """The chain back to raw data: the producing run and the parents, recursively."""
        return self._cat()._provenance(self.id)

    # -- data -------------------------------------------------------------------------

    def _data_file(self) -> FileRecord:
        record = self.primary_file
        if record is None:
            raise CatalogError(f"dataset {self.id} has no files to read")
        return record

    def to_dask(self):
        """Open the primary data lazily as a dask array.

        ``tomo/raw`` gives the projections (``open_tomo(path)["data"].data``), ``saxs/raw``
        the detector frames, anything else the array in the primary file
        (``open_array(path, key=file.key)``: HDF5, ``.npy`` or zarr).

        Returns
        -------
        dask.array.Array
        """
        from spotkit import io

        record = self._data_file()
        if self.kind == kinds.TOMO_RAW:
            return io.open_tomo(record.path)["data"].data
        if self.kind == kinds.SAXS_RAW:
            return self._open_saxs(record.path).data
        self._check_array_format(record)
        return io.open_array(record.path, key=record.key)

    def to_xarray(self):
        """Open the primary data lazily as an xarray object.

        ``tomo/raw`` gives the :class:`xarray.Dataset` of ``open_tomo`` (data, flats, darks,
        theta), ``saxs/raw`` the frames :class:`xarray.DataArray` of ``open_saxs``; a derived
        array (HDF5, zarr, ``.npy``) becomes a :class:`xarray.DataArray` named after the
        dataset kind, with the dataset id, kind and sample in its attributes.

        Returns
        -------
        xarray.Dataset or xarray.DataArray
        """
        from spotkit import io

        record = self._data_file()
        if self.kind == kinds.TOMO_RAW:
            return io.open_tomo(record.path)
        if self.kind == kinds.SAXS_RAW:
            return self._open_saxs(record.path)
        self._check_array_format(record)
        import xarray as xr

        array = io.open_array(record.path, key=record.key)
        attrs = {"dataset_id": self.id, "kind": self.kind, "source": str(record.path)}
        if self.sample:
            attrs["sample"] = self.sample
        return xr.DataArray(array, name=self.kind.replace("/", "_"), attrs=attrs)

    def _open_saxs(self, path: Path):
        """``open_saxs``; a file it misses is said together with the frames (and data
        files) the catalog recorded as missing when the series was ingested (a live
        session that gave up waiting for an Eiger data file records them)."""
        from spotkit import io
        from spotkit.errors import InputFileError

        try:
            return io.open_saxs(path)
        except InputFileError as exc:
            frames = [int(k) for k in self.metadata.get("missing_frames") or ()]
            files = [str(name) for name in self.metadata.get("missing_files") or ()]
            if not (frames or files):
                raise
            note = (f"The catalog recorded {len(frames)} frame(s) of dataset {self.id} as "
                    f"missing when it was ingested ({_spans(frames) or 'none'}"
                    + (f"; data file(s) {', '.join(files)}" if files else "") + ").")
            raise InputFileError(exc.path, f"{exc.problem} {note}", field=exc.field,
                                 hint=exc.hint) from exc

    def _check_array_format(self, record: FileRecord) -> None:
        if record.format not in (None, "hdf5", "zarr", "npy"):
            raise CatalogError(
                f"dataset {self.id} ({self.kind}) has its data in a {record.format} file "
                f"({record.path}); only HDF5, zarr and .npy open as arrays. Open the file "
                "directly with a suitable reader."
            )

    # -- display ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (times as ISO 8601 strings)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "beamline": self.beamline,
            "sample": self.sample,
            "proposal": self.proposal,
            "title": self.title,
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "status": self.status,
            "metadata": dict(self.metadata),
            "files": [f.to_dict() for f in self.files],
            "ingested_at": _iso(self.ingested_at),
            "run_id": self.run_id,
        }

    def __repr__(self) -> str:
        lines = [
            f"<Dataset {self.id} {self.kind} [{self.status}]>",
            f"  beamline {self.beamline}  sample {self.sample}  proposal {self.proposal}",
            f"  start    {_short_time(self.start_time)}  title {self.title!r}",
        ]
        lines += [f"  {f.role:<8} {f.path}" for f in self.files]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = (
            f"<b>{esc(self.id)}</b> <code>{esc(self.kind)}</code> [{esc(self.status)}]"
            f"<br>{esc(self.title or '')}"
        )
        fields = [
            ("beamline", self.beamline),
            ("sample", self.sample),
            ("proposal", self.proposal),
            ("start", _short_time(self.start_time)),
            ("end", _short_time(self.end_time)),
        ]
        rows = "".join(
            f"<tr><th style='text-align:left'>{esc(k)}</th>"
            f"<td style='text-align:left'>{esc(str(v or ''))}</td></tr>"
            for k, v in fields
        )
        files = "".join(
            f"<tr><td style='text-align:left'>{esc(f.role)}</td>"
            f"<td style='text-align:left'><code>{esc(str(f.path))}</code></td>"
            f"<td>{esc(str(f.format or ''))}</td><td>{f.size or ''}</td></tr>"
            for f in self.files
        )
        return f"<div>{head}<table>{rows}</table><table>{files}</table></div>"


@dataclass(frozen=True)
class Provenance:
    """How a dataset came to be: its producing run and its parents' provenance, recursively.

    A raw dataset has no run and no parents; it is where every chain ends.

    Attributes
    ----------
    dataset : Dataset
        The dataset this node is about.
    run : Run or None
        The notebook run that produced it (notebook, hash, parameters, versions, target).
    parents : tuple of Provenance
        Provenance of each dataset it was derived from.
    """

    dataset: Dataset
    run: Run | None = None
    parents: tuple[Provenance, ...] = ()

    @property
    def dataset_id(self) -> str:
        """Id of the dataset this node is about."""
        return self.dataset.id

    @property
    def raw_sources(self) -> tuple[str, ...]:
        """Ids of the datasets at the roots of the chain (those without parents)."""
        if not self.parents:
            return (self.dataset.id,)
        seen: dict[str, None] = {}
        for parent in self.parents:
            seen.update(dict.fromkeys(parent.raw_sources))
        return tuple(seen)

    @property
    def depth(self) -> int:
        """Number of derivation steps back to the farthest raw dataset."""
        return 1 + max((p.depth for p in self.parents), default=-1)

    def to_dict(self) -> dict[str, Any]:
        """Return the chain as nested JSON-serialisable dicts."""
        ds = self.dataset
        run = None
        if self.run is not None:
            keys = (
                "id", "notebook", "notebook_sha256", "parameters", "target", "state",
                "started_at", "ended_at", "versions", "output_notebook", "job_id",
            )  # fmt: skip
            full = self.run.to_dict()
            run = {k: full[k] for k in keys}
        return {
            "dataset_id": ds.id,
            "kind": ds.kind,
            "status": ds.status,
            "beamline": ds.beamline,
            "sample": ds.sample,
            "proposal": ds.proposal,
            "start_time": _iso(ds.start_time),
            "files": [{"path": str(f.path), "role": f.role, "sha256": f.sha256} for f in ds.files],
            "run": run,
            "parents": [p.to_dict() for p in self.parents],
        }

    def _lines(self, indent: str = "") -> list[str]:
        ds = self.dataset
        where = f" {ds.path}" if ds.path else ""
        lines = [f"{indent}{ds.id} {ds.kind} [{ds.status}]{where}"]
        if self.run is not None:
            run = self.run
            params = ", ".join(f"{k}={v!r}" for k, v in run.parameters.items())
            sha = (run.notebook_sha256 or "")[:12]
            lines.append(
                f"{indent}  ← {run.id} {run.notebook.name} (sha256 {sha}…) "
                f"on {run.target}, {run.state}"
            )
            if params:
                lines.append(f"{indent}    parameters: {params}")
            if run.versions:
                versions = ", ".join(f"{k} {v}" for k, v in run.versions.items())
                lines.append(f"{indent}    versions: {versions}")
        for parent in self.parents:
            lines += parent._lines(indent + "    ")
        return lines

    def __repr__(self) -> str:
        return "\n".join(["<Provenance>", *self._lines("  ")])

    def _html_item(self) -> str:
        esc = html.escape
        ds = self.dataset
        item = f"<b>{esc(ds.id)}</b> <code>{esc(ds.kind)}</code> [{esc(ds.status)}]"
        if ds.path:
            item += f" <code>{esc(str(ds.path))}</code>"
        if self.run is not None:
            run = self.run
            params = esc(", ".join(f"{k}={v!r}" for k, v in run.parameters.items()))
            versions = esc(", ".join(f"{k} {v}" for k, v in run.versions.items()))
            item += (
                f"<br>&larr; {esc(run.id)} <code>{esc(run.notebook.name)}</code> "
                f"(sha256 {esc((run.notebook_sha256 or '')[:12])}…) on {esc(run.target)}, "
                f"{esc(run.state)}<br><small>parameters: {params}<br>"
                f"versions: {versions}</small>"
            )
        if self.parents:
            item += "<ul>" + "".join(p._html_item() for p in self.parents) + "</ul>"
        return f"<li>{item}</li>"

    def _repr_html_(self) -> str:
        return f"<ul>{self._html_item()}</ul>"
