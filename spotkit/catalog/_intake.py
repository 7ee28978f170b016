"""Export catalog datasets as an intake v2 catalog.

intake 2.0.9 has no reader that turns an array inside a plain HDF5 file into an array:
``DaskHDF`` and ``PandasHDF5`` read pandas tables, and ``XArrayDatasetReader`` needs
h5netcdf, which is not a spotkit dependency. :class:`HDF5ArrayReader` fills the gap by
calling :func:`spotkit.io.open_array`. It is an ordinary intake reader: the YAML file names
it as ``spotkit.catalog._intake:HDF5ArrayReader`` and intake imports it when an entry is
read. zarr stores and ``.npy`` files use intake's own readers.

This module imports intake at import time; the catalog imports it only when exporting.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from intake.readers import datatypes
from intake.readers.entry import Catalog as IntakeCatalog
from intake.readers.readers import DaskZarr, FileByteReader, FileReader, NumpyReader

from spotkit.catalog._dataset import RAW_KEYS, Dataset

__all__ = ["HDF5ArrayReader", "dataset_reader", "write_intake_catalog"]

logger = logging.getLogger(__name__)


class HDF5ArrayReader(FileReader):
    """intake reader: one array of an HDF5 file as a lazy dask array.

    The array is the ``path`` of the :class:`intake.readers.datatypes.HDF5` data
    (e.g. ``"/exchange/data"``); it is opened with :func:`spotkit.io.open_array`.

    Examples
    --------
    >>> from intake.readers import datatypes
    >>> data = datatypes.HDF5("/data/scan.h5", path="/exchange/data")   # doctest: +SKIP
    >>> HDF5ArrayReader(data).read().shape                               # doctest: +SKIP
    (181, 16, 256)
    """

    implements: ClassVar[set] = {datatypes.HDF5}
    imports: ClassVar[set[str]] = {"h5py", "dask"}
    output_instance = "dask.array:Array"
    func = "spotkit.io:open_array"

    def _read(self, data, **kwargs):
        from spotkit.io import open_array

        return open_array(data.url, key=data.path or None, **kwargs)


def _plain(value):
    """Round-trip through JSON so that yaml.safe_dump accepts it."""
    return json.loads(json.dumps(value, default=str))


def dataset_reader(dataset: Dataset, *, parents: Iterable[str] = ()):
    """Return the intake reader for a dataset's primary file, with the dataset's metadata.

    Parameters
    ----------
    dataset : Dataset
    parents : iterable of str, optional
        Ids of its parent datasets, stored in the entry's metadata.

    Returns
    -------
    intake.readers.BaseReader or None
        ``None`` if the dataset has no files.
    """
    record = dataset.primary_file
    if record is None:
        return None
    meta = _plain(
        {
            "dataset_id": dataset.id,
            "kind": dataset.kind,
            "beamline": dataset.beamline,
            "sample": dataset.sample,
            "proposal": dataset.proposal,
            "title": dataset.title,
            "start_time": dataset.start_time.isoformat() if dataset.start_time else None,
            "status": dataset.status,
            "sha256": record.sha256,
            "parents": list(parents),
            "files": [
                {"path": str(f.path), "role": f.role, "format": f.format} for f in dataset.files
            ],
            "spotkit_metadata": dataset.metadata,
        }
    )
    url = str(record.path)
    if record.format == "hdf5":
        key = record.key or RAW_KEYS.get(dataset.kind, "")
        return HDF5ArrayReader(datatypes.HDF5(url, path=key), metadata=meta)
    if record.format == "zarr":
        return DaskZarr(datatypes.Zarr(url, root=record.key or ""), metadata=meta)
    if record.format == "npy":
        return NumpyReader(datatypes.NumpyFile(url), metadata=meta)
    if record.format == "png":
        return FileByteReader(datatypes.PNG(url), metadata=meta)
    if record.format == "jpeg":
        return FileByteReader(datatypes.JPEG(url), metadata=meta)
    if record.format == "tiff":
        return FileByteReader(datatypes.TIFF(url), metadata=meta)
    return FileByteReader(datatypes.FileData(url), metadata=meta)


def write_intake_catalog(
    path: Path,
    datasets: Iterable[Dataset],
    *,
    parents: dict[str, list[str]] | None = None,
    source: Path | str | None = None,
    query: dict | None = None,
) -> Path:
    """Write datasets as an intake v2 YAML catalog, built with intake's own API.

    Parameters
    ----------
    path : pathlib.Path
        Output YAML file; its directory is created.
    datasets : iterable of Dataset
    parents : dict, optional
        Parent ids per dataset id.
    source : pathlib.Path or str, optional
        The spotkit catalog they came from (recorded in the catalog metadata).
    query : dict, optional
        The search that selected them (recorded in the catalog metadata).

    Returns
    -------
    pathlib.Path
    """
    from spotkit._version import __version__

    parents = parents or {}
    cat = IntakeCatalog(
        metadata=_plain(
            {
                "description": "spotkit datasets exported from the spotkit catalog",
                "generated_by": f"spotkit {__version__}",
                "generated_at": _dt.datetime.now(_dt.UTC).isoformat(),
                "source_catalog": str(source) if source else None,
                "query": query or {},
            }
        )
    )
    count = 0
    for ds in datasets:
        reader = dataset_reader(ds, parents=parents.get(ds.id, ()))
        if reader is None:
            logger.warning("dataset %s has no files; not exported to intake", ds.id)
            continue
        cat[ds.id] = reader
        count += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    cat.to_yaml_file(str(path))
    logger.info("wrote intake catalog %s with %d entries", path, count)
    return path
