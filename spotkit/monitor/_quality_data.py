"""Quality checks, the catalog side of a product: its configuration and its summary.

:func:`configuration` says what "same configuration" compares (see
:mod:`spotkit.monitor._quality`); :func:`summarize_dataset` reads a catalogued product's
files (and its raw dataset's where needed) into a :class:`ProductSummary`.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from spotkit.catalog import Dataset
from spotkit.errors import CatalogError
from spotkit.monitor._quality_summary import (
    FAMILIES,
    ProductSummary,
    family_of,
    summarize_iq,
    summarize_raw_saxs,
    summarize_raw_tomo,
    summarize_volume,
)

__all__ = ["INSTRUMENT_KEYS", "QUALITY_KINDS", "RUN_PARAMETERS", "configuration",
           "summarize_dataset"]

#: the dataset kinds :func:`check_product` can check (the flow checks these after registering)
QUALITY_KINDS = tuple(kind for kinds in FAMILIES.values() for kind in kinds)
#: parameters that differ from run to run without changing what a notebook does
RUN_PARAMETERS = ("dataset_id", "catalog_path", "output_dir", "run_id")
#: instrument settings of the raw parent that are part of a configuration
INSTRUMENT_KEYS = ("instrument", "mode", "energy_kev", "pixel_size_um", "distance_m",
                   "exposure_s")


# -- configuration ----------------------------------------------------------------------------


def _epoch(ds: Dataset) -> float:
    when = ds.start_time or ds.ingested_at
    return when.timestamp() if when is not None else time.time()


def _raw_parent(ds: Dataset) -> Dataset | None:
    """The first raw dataset up the lineage (the product's own parents first)."""
    seen: set[str] = set()
    todo = [ds]
    while todo:
        current = todo.pop(0)
        for parent in current.parents:
            if parent.id in seen:
                continue
            seen.add(parent.id)
            if parent.kind.endswith("/raw"):
                return parent
            todo.append(parent)
    return None


def configuration(catalog: Any, dataset: Any) -> dict[str, Any]:
    """What "same configuration" compares for a product (see the module documentation).

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    dataset : str or Dataset

    Returns
    -------
    dict
        ``beamline``, ``kind``, ``notebook``, ``notebook_sha256``, ``parameters`` (less
        :data:`RUN_PARAMETERS`) and ``instrument`` (the raw parent's
        :data:`INSTRUMENT_KEYS`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan.h5", shape=(16, 2, 32), seed=0)
    >>> cat = open_catalog(work / "catalog.db")
    >>> cfg = configuration(cat, cat.ingest(work / "scan.h5"))
    >>> cfg["kind"], cfg["instrument"]["energy_kev"], cfg["notebook"]
    ('tomo/raw', 25.0, None)
    """
    ds = dataset if isinstance(dataset, Dataset) else catalog[dataset]
    run = catalog.get_run(ds.run_id) if ds.run_id else None
    raw = ds if ds.kind.endswith("/raw") else _raw_parent(ds)
    instrument = {k: raw.metadata[k] for k in INSTRUMENT_KEYS
                  if raw is not None and k in raw.metadata}
    return {
        "beamline": ds.beamline,
        "kind": ds.kind,
        "notebook": run.notebook.name if run is not None else None,
        "notebook_sha256": run.notebook_sha256 if run is not None else None,
        "parameters": ({k: v for k, v in sorted(run.parameters.items())
                        if k not in RUN_PARAMETERS} if run is not None else {}),
        "instrument": instrument,
    }


def _config_key(config: Mapping[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# -- summaries from datasets ------------------------------------------------------------------


def _read(*arrays: Any) -> list[np.ndarray]:
    """Lazy (dask-backed xarray) arrays read in one synchronous pass."""
    import dask

    return [np.asarray(a) for a in dask.compute(*(getattr(x, "data", x) for x in arrays),
                                                scheduler="synchronous")]


def _raw_tomo(raw: Dataset, rows: Any, n_rows: int = 8) -> tuple[ProductSummary, Any]:
    """The raw scan's summary (flats and darks) and an independent centre of rotation on
    its middle rows (full resolution; None if the scan has too few angles for it)."""
    from spotkit import tomo

    scan = raw.to_xarray()
    total = scan["data"].shape[1]
    start, stop = (int(rows[0]), int(rows[1])) if rows else (0, total)
    start, stop = max(0, start), min(total, max(stop, start + 1))
    lo = max(start, (start + stop) // 2 - n_rows // 2)
    hi = min(stop, lo + n_rows)
    flats, darks, proj = _read(scan["flats"], scan["darks"], scan["data"][:, lo:hi, :])
    summary = summarize_raw_tomo(flats, darks)
    sino = tomo.minus_log(tomo.normalize(proj, flats[:, lo:hi], darks[:, lo:hi]))
    theta = tomo.as_radians(scan["theta"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tomo.CenterWarning)  # recorded on the estimate
        return summary, tomo.find_center(np.moveaxis(sino, 1, 0), theta)


def _raw_tomo_summary(raw: Dataset) -> ProductSummary:
    scan = raw.to_xarray()
    return summarize_raw_tomo(*_read(scan["flats"], scan["darks"]))


def _raw_saxs_summary(raw: Dataset, max_frames: int = 8) -> ProductSummary:
    frames = raw.to_xarray()
    n = frames.shape[0]
    picks = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    return summarize_raw_saxs(_read(frames[picks.tolist()])[0])


def _raw_summary(raw: Dataset) -> ProductSummary | None:
    if raw.kind == "tomo/raw":
        return _raw_tomo_summary(raw)
    if raw.kind == "saxs/raw":
        return _raw_saxs_summary(raw)
    return None


def _read_iq(ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from spotkit import io

    record = ds.primary_file
    if record is None:
        raise CatalogError(f"dataset {ds.id} has no files to read")
    fmt = (record.format or "").lower()
    if ds.kind == "saxs/reduced" or fmt == "nxcansas":
        data = io.read_nxcansas(record.path)
        sigma = data["sigma"].values if "sigma" in data else None
        return data["q"].values, data["intensity"].values, sigma
    import h5py

    with h5py.File(record.path, "r") as f:
        key = (record.key or "intensity").lstrip("/")
        for name in (key, "q"):
            if name not in f:
                raise CatalogError(f"I(q) file {record.path} of dataset {ds.id} has no "
                                   f"/{name}: write q, intensity (and sigma) datasets")
        sigma = f["sigma"][...] if "sigma" in f else None
        return f["q"][...], f[key][...], sigma


def summarize_dataset(catalog: Any, dataset: Any) -> ProductSummary:
    """Summarise a catalogued product from its files (and its raw scan where needed).

    A volume (``tomo/recon``, ``tomo/slices``): :func:`summarize_volume`, with the centre
    the product's metadata records (``center``) tested against one
    :func:`spotkit.tomo.find_center` finds on the raw scan's middle rows, and the raw
    scan's dead-pixel fraction as ``raw_dead_fraction``. I(q) (``saxs/iq``,
    ``saxs/reduced``): :func:`summarize_iq`. A raw scan (``tomo/raw``):
    :func:`summarize_raw_tomo`.

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    dataset : str or Dataset

    Returns
    -------
    ProductSummary

    Raises
    ------
    ValueError
        For a kind without a summary (the message lists those with one).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan.h5", shape=(16, 2, 32), seed=0)
    >>> cat = open_catalog(work / "catalog.db")
    >>> s = summarize_dataset(cat, cat.ingest(work / "scan.h5"))
    >>> s.family, s.scalars["dead_fraction"]
    ('tomo_raw', 0.0)
    """
    ds = dataset if isinstance(dataset, Dataset) else catalog[dataset]
    family = family_of(ds.kind)
    if family is None:
        raise ValueError(f"no quality summary for dataset {ds.id} of kind {ds.kind!r}; "
                         f"kinds with one: {', '.join(sorted(QUALITY_KINDS))}")
    if family in ("tomo_raw", "saxs_raw"):
        raw_own = _raw_summary(ds)
        if raw_own is None:  # pragma: no cover - the families above are the raw kinds
            raise ValueError(f"no summary for raw kind {ds.kind!r}")
        return raw_own
    raw = _raw_parent(ds)
    if family == "iq":
        return _with_raw(summarize_iq(*_read_iq(ds)), raw, None, [])
    used = ds.metadata.get("center")
    found, raw_summary, notes = None, None, []
    if raw is not None and raw.kind == "tomo/raw":
        try:
            raw_summary, found = _raw_tomo(raw, ds.metadata.get("rows"))
        except (OSError, ValueError, CatalogError) as exc:
            notes.append(f"raw scan {raw.id} not read: {exc}")
    summary = summarize_volume(ds.to_dask(), center_used=used,
                               center_found=found if used is not None else None)
    return _with_raw(summary, raw, raw_summary, notes)


def _with_raw(summary: ProductSummary, raw: Dataset | None, raw_summary: ProductSummary | None,
              notes: list[str]) -> ProductSummary:
    """The product's summary with its raw dataset's dead-pixel fraction (``raw_dead_fraction``):
    a product made from a damaged detector's data is suspect even where its own numbers
    hide it (ring removal repairs dead columns in the image, not in the science)."""
    scalars = dict(summary.scalars)
    detail = dict(summary.detail)
    if raw is not None and raw_summary is None and not notes:
        try:
            raw_summary = _raw_summary(raw)
        except (OSError, ValueError, CatalogError) as exc:
            notes.append(f"raw dataset {raw.id} not summarised: {exc}")
    if raw is not None and raw_summary is not None:
        scalars["raw_dead_fraction"] = raw_summary.scalars.get("dead_fraction")
        detail["raw"] = {"id": raw.id, **raw_summary.to_dict()["scalars"]}
    if notes:
        detail["notes"] = notes
    return ProductSummary(summary.family, scalars, dict(summary.curves), detail)


