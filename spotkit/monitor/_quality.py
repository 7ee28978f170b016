"""Keep-up quality checks (Daya Bay's reference plots): each product against its references.

:func:`check_product` summarises a product (:mod:`spotkit.monitor._quality_summary`),
chooses its references from the catalog (:func:`select_references`: the last N good products
of the same configuration), tests the summary against theirs
(:mod:`spotkit.monitor._quality_tests`) and stores the verdict with the product, in the
table ``quality_checks`` of the catalog's database (SQLite or PostgreSQL; created through
:func:`spotkit.catalog.register_tables`). :func:`quality_verdict` and
:func:`quality_verdicts` read them back; ``spotkit catalog show ID`` prints them.

Same configuration
------------------
Two products have the same configuration (:func:`configuration`) when all of these are
equal:

* the beamline and the dataset kind;
* the notebook that made them (file name and the SHA-256 of its source as the run
  recorded it; ``None`` for a product registered without a run) and its parameters, less
  the per-run ones (:data:`RUN_PARAMETERS`: ``dataset_id``, ``catalog_path``,
  ``output_dir``, ``run_id``);
* the instrument settings of the raw dataset they come from (:data:`INSTRUMENT_KEYS` of
  the first raw parent's metadata, those present: energy, pixel size, distance, exposure).

Good references
---------------
The candidates are the products of the same configuration registered before this one
(``(time, id)`` order; ids sort by creation) that have a stored summary, whose own verdict
is not ``"fail"`` and whose dataset status is not one of :data:`BAD_STATUSES` (an operator
quarantines a bad product with ``catalog.set_status(id, "quarantined")``). The newest
``n_references`` are used. The verdict is ``"no reference"`` instead of pass/fail when fewer
than ``min_references`` exist (a new configuration) or the newest is more than
``max_age_days`` older than the product (stale references); the reason says which, and
since when the configuration differs from the one before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from spotkit.catalog import (
    Dataset,
    connect_database,
    database_errors,
    mask_url,
    register_tables,
    run_ddl,
    table_exists,
    write_transaction,
)
from spotkit.errors import CatalogError
from spotkit.monitor._findings import Finding
from spotkit.monitor._quality_summary import (
    FAMILIES,
    ProductSummary,
    family_of,
    summarize_iq,
    summarize_raw_saxs,
    summarize_raw_tomo,
    summarize_volume,
)
from spotkit.monitor._quality_tests import Z_FAIL, TestResult, compare_summaries

__all__ = [
    "BAD_STATUSES",
    "INSTRUMENT_KEYS",
    "QUALITY_KINDS",
    "RUN_PARAMETERS",
    "VERDICTS",
    "QualityVerdict",
    "References",
    "check_product",
    "configuration",
    "quality_findings",
    "quality_verdict",
    "quality_verdicts",
    "select_references",
    "summarize_dataset",
]

logger = logging.getLogger(__name__)

VERDICTS = ("pass", "fail", "no reference")
#: the dataset kinds :func:`check_product` can check (the flow checks these after registering)
QUALITY_KINDS = tuple(kind for kinds in FAMILIES.values() for kind in kinds)
#: parameters that differ from run to run without changing what a notebook does
RUN_PARAMETERS = ("dataset_id", "catalog_path", "output_dir", "run_id")
#: instrument settings of the raw parent that are part of a configuration
INSTRUMENT_KEYS = ("instrument", "mode", "energy_kev", "pixel_size_um", "distance_m",
                   "exposure_s")
#: dataset statuses that keep a product out of the references
BAD_STATUSES = ("quarantined", "failed", "bad", "rejected")
_DAY = 86400.0

_TABLES = """
CREATE TABLE IF NOT EXISTS quality_checks (
    dataset_id    TEXT PRIMARY KEY REFERENCES datasets(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    beamline      TEXT,
    config_key    TEXT NOT NULL,
    config        TEXT NOT NULL,
    product_time  REAL NOT NULL,
    checked_at    REAL NOT NULL,
    verdict       TEXT NOT NULL CHECK (verdict IN ('pass', 'fail', 'no reference')),
    reasons       TEXT NOT NULL DEFAULT '[]',
    tests         TEXT NOT NULL DEFAULT '[]',
    reference_ids TEXT NOT NULL DEFAULT '[]',
    summary       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS quality_checks_config ON quality_checks (config_key, product_time);
CREATE INDEX IF NOT EXISTS quality_checks_verdict ON quality_checks (verdict, checked_at)
"""
_COLUMNS = ("dataset_id, kind, beamline, config_key, config, product_time, checked_at, "
            "verdict, reasons, tests, reference_ids, summary")


def _create_tables(conn: Any) -> None:
    """Create the quality-check table (idempotent; SQLite and PostgreSQL)."""
    run_ddl(conn, _TABLES)


# the catalog creates it with its own tables when a catalog is made or migrated
register_tables("monitor_quality", _create_tables)


@contextmanager
def _connection(catalog: Any, *, create: bool = True) -> Iterator[Any]:
    """A connection to the catalog's database with the quality table present; without
    ``create``, None where the table does not exist (a read never writes)."""
    conn = connect_database(catalog.url)
    try:
        if not table_exists(conn, "quality_checks"):
            if not create:
                yield None
                return
            with write_transaction(conn, catalog.url, "creating the quality-check table",
                                   when_locked="try again") as tx:
                _create_tables(tx)
        yield conn
    except database_errors() as exc:
        raise CatalogError(
            f"quality checks in catalog {mask_url(str(catalog.url))} failed: {exc}") from exc
    finally:
        conn.close()


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


# -- verdicts ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QualityVerdict:
    """The keep-up quality verdict of one product.

    Attributes
    ----------
    dataset_id, kind : str
    beamline : str or None
    verdict : str
        ``"pass"``, ``"fail"`` or ``"no reference"`` (:data:`VERDICTS`).
    reasons : tuple of str
        Why, one line each with the numbers (the failed tests, or why there is no
        reference).
    tests : tuple of TestResult
        Every test run (none without references).
    reference_ids : tuple of str
        The references used, newest first.
    config : dict
        The configuration (:func:`configuration`).
    config_key : str
        Its digest: products with the same key are compared.
    product_time, checked_at : float
        When the product was made and checked (UTC epoch seconds).
    summary : ProductSummary
        The product's summary, stored with the verdict.
    """

    dataset_id: str
    kind: str
    beamline: str | None
    verdict: str
    reasons: tuple[str, ...]
    tests: tuple[TestResult, ...]
    reference_ids: tuple[str, ...]
    config: Mapping[str, Any]
    config_key: str
    product_time: float
    checked_at: float
    summary: ProductSummary

    @property
    def message(self) -> str:
        """One line: verdict, product and the first reasons."""
        why = "; ".join(self.reasons[:3])
        refs = f" against {len(self.reference_ids)} references" if self.reference_ids else ""
        return f"{self.dataset_id} ({self.kind}): {self.verdict}{refs}" + (f": {why}" if why
                                                                          else "")

    def finding(self) -> Finding | None:
        """A :class:`Finding` of kind ``"quality"``: ``warning`` for a failure, ``info``
        for stale references; None otherwise."""
        if self.verdict == "fail":
            failed = [t for t in self.tests if not t.passed]
            worst = max((abs(t.z) for t in failed if t.z is not None), default=None)
            return Finding("quality", failed[0].name if failed else "product", self.checked_at,
                           self.message, severity="warning", onset=self.product_time,
                           beamline=self.beamline, dataset_id=self.dataset_id,
                           magnitude=worst, detail={"failed": [t.name for t in failed],
                                                    "kind": self.kind,
                                                    "units": "robust z"})
        if self.verdict == "no reference" and any("stale" in r for r in self.reasons):
            return Finding("quality", "references", self.checked_at, self.message,
                           severity="info", beamline=self.beamline,
                           dataset_id=self.dataset_id, detail={"kind": self.kind})
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values."""
        return {"dataset_id": self.dataset_id, "kind": self.kind, "beamline": self.beamline,
                "verdict": self.verdict, "reasons": list(self.reasons),
                "tests": [t.to_dict() for t in self.tests],
                "reference_ids": list(self.reference_ids), "config": dict(self.config),
                "config_key": self.config_key, "product_time": self.product_time,
                "checked_at": self.checked_at, "summary": self.summary.to_dict()}


@dataclasses.dataclass(frozen=True)
class References:
    """The references chosen for a product (:func:`select_references`).

    Attributes
    ----------
    ids : tuple of str
        Newest first.
    summaries : tuple of ProductSummary
        Theirs, same order.
    usable : bool
        Enough of them, and fresh enough, for a pass/fail verdict.
    reason : str
        Why not (empty when usable).
    """

    ids: tuple[str, ...]
    summaries: tuple[ProductSummary, ...]
    usable: bool
    reason: str = ""


def _row_to_verdict(row: tuple) -> QualityVerdict:
    (ds_id, kind, beamline, key, config, product_time, checked_at, verdict, reasons, tests,
     refs, summary) = row
    return QualityVerdict(ds_id, kind, beamline, verdict, tuple(json.loads(reasons)),
                          tuple(TestResult.from_dict(t) for t in json.loads(tests)),
                          tuple(json.loads(refs)), json.loads(config), key,
                          float(product_time), float(checked_at),
                          ProductSummary.from_dict(json.loads(summary)))


def _describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    changed = []
    for field in ("notebook", "notebook_sha256", "parameters", "instrument"):
        a, b = old.get(field) or {}, new.get(field) or {}
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{field}.{k}: {a.get(k)!r} -> {b.get(k)!r}"
                        for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            changed.append(f"{field}: {str(a)[:16]!r} -> {str(b)[:16]!r}")
    return ", ".join(changed[:4]) or "unknown"


def select_references(catalog: Any, dataset: Any, *, n_references: int = 20,
                      min_references: int = 8, max_age_days: float = 30.0) -> References:
    """Choose the references of a product: the last good products of its configuration.

    Only products already checked (with a stored summary) are candidates; see the module
    documentation for which are good and when the set is stale.

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    dataset : str or Dataset
    n_references : int
        Use at most this many, newest first.
    min_references : int
        Fewer than this: not usable (verdict ``"no reference"``).
    max_age_days : float
        The newest reference older than this before the product: stale, not usable.

    Returns
    -------
    References
    """
    if not 3 <= min_references <= n_references:
        raise ValueError(f"need 3 <= min_references <= n_references, got {min_references} "
                         f"and {n_references}")
    ds = dataset if isinstance(dataset, Dataset) else catalog[dataset]
    with _connection(catalog) as conn:
        return _select(conn, ds, configuration(catalog, ds), n_references, min_references,
                       max_age_days)


def _select(conn: Any, ds: Dataset, config: dict[str, Any], n_references: int,
            min_references: int, max_age_days: float) -> References:
    key = _config_key(config)
    t = _epoch(ds)
    bad = ",".join("?" * len(BAD_STATUSES))
    rows = conn.execute(
        "SELECT q.dataset_id, q.product_time, q.summary FROM quality_checks q "  # noqa: S608
        "JOIN datasets d ON d.id = q.dataset_id "
        f"WHERE q.config_key = ? AND q.verdict <> 'fail' AND d.status NOT IN ({bad}) "
        "AND (q.product_time < ? OR (q.product_time = ? AND q.dataset_id < ?)) "
        "ORDER BY q.product_time DESC, q.dataset_id DESC LIMIT ?",
        (key, *BAD_STATUSES, t, t, ds.id, int(n_references))).fetchall()
    other = None
    if len(rows) < min_references:
        same_beamline = ("beamline IS NOT DISTINCT FROM ?"
                         if getattr(conn, "dialect", "sqlite") == "postgresql" else "beamline IS ?")
        other = conn.execute(
            "SELECT config, product_time FROM quality_checks WHERE kind = ? AND "  # noqa: S608
            f"{same_beamline} AND config_key <> ? AND product_time <= ? "
            "ORDER BY product_time DESC LIMIT 1", (ds.kind, ds.beamline, key, t)).fetchone()
    ids = tuple(r[0] for r in rows)
    summaries = tuple(ProductSummary.from_dict(json.loads(r[2])) for r in rows)
    if len(rows) < min_references:
        reason = (f"only {len(rows)} good reference(s) with this configuration "
                  f"(need {min_references})")
        if other is not None:
            reason += (f"; the configuration changed since the product of "
                       f"{_iso(float(other[1]))}: {_describe_change(json.loads(other[0]), config)}")
        return References(ids, summaries, False, reason)
    age = (t - float(rows[0][1])) / _DAY
    if age > max_age_days:
        return References(ids, summaries, False,
                          f"references are stale: the newest ({ids[0]}) is {age:.1f} days "
                          f"older than the product (limit {max_age_days:g})")
    return References(ids, summaries, True)


def _iso(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def check_product(catalog: Any, dataset: Any, *, n_references: int = 20,
                  min_references: int = 8, max_age_days: float = 30.0,
                  z_fail: float = Z_FAIL, summary: ProductSummary | None = None,
                  store: bool = True) -> QualityVerdict:
    """Check a product against its references and store the verdict with it.

    What the flow calls after it registered a product (a failure does not stop it: the
    verdict and its :meth:`QualityVerdict.finding` say what is wrong). Checking a
    product again replaces its stored verdict.

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    dataset : str or Dataset
        A product of a kind with a summary (``tomo/recon``, ``tomo/slices``, ``saxs/iq``,
        ``saxs/reduced``, ``tomo/raw``).
    n_references, min_references, max_age_days
        As for :func:`select_references`.
    z_fail : float
        Threshold on every test's robust z score.
    summary : ProductSummary, optional
        The product's summary if already made (default: :func:`summarize_dataset`).
    store : bool
        Write the verdict (and the summary) into the catalog's ``quality_checks`` table.

    Returns
    -------
    QualityVerdict

    Examples
    --------
    >>> import datetime as dt, pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> cat = open_catalog(work / "catalog.db")
    >>> day = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    >>> for k in range(4):  # raw scans are products too: flats, darks, dead pixels
    ...     _ = simulate_tomo_scan(work / f"scan{k}.h5", shape=(8, 4, 32), seed=0,
    ...                            start_time=day + dt.timedelta(hours=k))
    ...     v = check_product(cat, cat.ingest(work / f"scan{k}.h5"), min_references=3)
    >>> v.verdict, len(v.reference_ids)
    ('pass', 3)
    >>> quality_verdict(cat, v.dataset_id).verdict
    'pass'
    """
    ds = dataset if isinstance(dataset, Dataset) else catalog[dataset]
    if summary is None:
        summary = summarize_dataset(catalog, ds)
    if not 3 <= min_references <= n_references:
        raise ValueError(f"need 3 <= min_references <= n_references, got {min_references} "
                         f"and {n_references}")
    config = configuration(catalog, ds)
    with _connection(catalog) as conn:
        refs = _select(conn, ds, config, n_references, min_references, max_age_days)
        result = _verdict(ds, config, summary, refs, z_fail)
        if store:
            _store(conn, catalog, result)
    log = logger.warning if result.verdict == "fail" else logger.info
    log("quality check: %s", result.message)
    return result


def _verdict(ds: Dataset, config: dict[str, Any], summary: ProductSummary, refs: References,
             z_fail: float) -> QualityVerdict:
    tests: tuple[TestResult, ...] = ()
    reasons: tuple[str, ...]
    if not refs.usable:
        verdict, reasons = "no reference", (refs.reason,)
    else:
        tests = tuple(compare_summaries(summary, refs.summaries, z_fail=z_fail))
        failed = [t for t in tests if not t.passed]
        verdict = "fail" if failed else "pass"
        reasons = tuple(t.message for t in failed)
    return QualityVerdict(ds.id, ds.kind, ds.beamline, verdict, reasons, tests, refs.ids,
                          config, _config_key(config), _epoch(ds), time.time(), summary)


def _store(conn: Any, catalog: Any, v: QualityVerdict) -> None:
    row = (v.dataset_id, v.kind, v.beamline, v.config_key,
           json.dumps(dict(v.config), sort_keys=True, default=str), v.product_time,
           v.checked_at, v.verdict, json.dumps(list(v.reasons)),
           json.dumps([_clean(t.to_dict()) for t in v.tests]), json.dumps(list(v.reference_ids)),
           json.dumps(v.summary.to_dict()))
    with write_transaction(
            conn, catalog.url, f"storing the quality verdict of {v.dataset_id}",
            when_locked="check the product again later") as tx:
        tx.execute("DELETE FROM quality_checks WHERE dataset_id = ?", (v.dataset_id,))
        tx.execute(f"INSERT INTO quality_checks ({_COLUMNS}) "  # noqa: S608
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()}


def quality_verdict(catalog: Any, dataset: Any) -> QualityVerdict | None:
    """The stored verdict of a product, or None if it was never checked.

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    dataset : str or Dataset

    Returns
    -------
    QualityVerdict or None
    """
    ds_id = dataset.id if isinstance(dataset, Dataset) else str(dataset)
    with _connection(catalog, create=False) as conn:
        if conn is None:
            return None
        row = conn.execute(f"SELECT {_COLUMNS} FROM quality_checks "  # noqa: S608
                           "WHERE dataset_id = ?", (ds_id,)).fetchone()
    return None if row is None else _row_to_verdict(row)


def quality_verdicts(catalog: Any, *, beamline: str | None = None, kind: str | None = None,
                     verdict: str | None = None, since: float | None = None):
    """Stored verdicts as a table, newest check first.

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    beamline, kind : str, optional
    verdict : {"pass", "fail", "no reference"}, optional
    since : float, optional
        Only checks at or after this UTC epoch time.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset_id, kind, beamline, verdict, checked_at, product_time,
        n_references, failed, reasons, config_key``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> quality_verdicts(cat).empty
    True
    """
    import pandas as pd

    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; choose one of {list(VERDICTS)}")
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("beamline", beamline), ("kind", kind), ("verdict", verdict)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("checked_at >= ?")
        params.append(float(since))
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    with _connection(catalog, create=False) as conn:
        rows = [] if conn is None else conn.execute(
            f"SELECT {_COLUMNS} FROM quality_checks{clause} "  # noqa: S608
            "ORDER BY checked_at DESC, dataset_id DESC", tuple(params)).fetchall()
    records = []
    for row in rows:
        v = _row_to_verdict(row)
        records.append({"dataset_id": v.dataset_id, "kind": v.kind, "beamline": v.beamline,
                        "verdict": v.verdict, "checked_at": v.checked_at,
                        "product_time": v.product_time, "n_references": len(v.reference_ids),
                        "failed": [t.name for t in v.tests if not t.passed],
                        "reasons": list(v.reasons), "config_key": v.config_key})
    columns = ["dataset_id", "kind", "beamline", "verdict", "checked_at", "product_time",
               "n_references", "failed", "reasons", "config_key"]
    return pd.DataFrame.from_records(records, columns=columns)


def quality_findings(catalog: Any, *, since: float | None = None,
                     beamline: str | None = None) -> list[Finding]:
    """The findings of the stored verdicts: a ``warning`` per failed product, an ``info``
    per product whose references were stale (for alert rules that poll the catalog).

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    since : float, optional
        Only checks at or after this UTC epoch time.
    beamline : str, optional

    Returns
    -------
    list of Finding
        Oldest check first.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> quality_findings(open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db"))
    []
    """
    where = ["verdict <> 'pass'"]
    params: list[Any] = []
    if since is not None:
        where.append("checked_at >= ?")
        params.append(float(since))
    if beamline is not None:
        where.append("beamline = ?")
        params.append(beamline)
    with _connection(catalog, create=False) as conn:
        rows = [] if conn is None else conn.execute(
            f"SELECT {_COLUMNS} FROM quality_checks WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY checked_at, dataset_id", tuple(params)).fetchall()
    found = (_row_to_verdict(row).finding() for row in rows)
    return [f for f in found if f is not None]
