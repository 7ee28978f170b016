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
  the first raw parent's metadata, those present: instrument name, SAXS/GISAXS mode,
  energy, pixel size, distance, exposure).

Good references
---------------
The candidates are the products of the same configuration registered before this one
(``(time, id)`` order, the time being the dataset's start time: for a derived product,
when its run started; ids sort by creation) that have a stored summary, whose own verdict
is not ``"fail"`` and whose dataset status is not one of :data:`BAD_STATUSES` (an operator
quarantines a bad product with ``catalog.set_status(id, "quarantined")``). The newest
``n_references`` are used. The verdict is ``"no reference"`` instead of pass/fail when fewer
than ``min_references`` exist (a new configuration) or the newest is more than
``max_age_days`` older than the product (stale references); the reason says which, and
since when the configuration differs from the one before.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from spotkit.catalog import Dataset
from spotkit.monitor._quality_data import _config_key, _epoch, configuration, summarize_dataset
from spotkit.monitor._quality_store import QualityVerdict, _connection, _store
from spotkit.monitor._quality_summary import ProductSummary
from spotkit.monitor._quality_tests import Z_FAIL, TestResult, compare_summaries

__all__ = [
    "BAD_STATUSES",
    "References",
    "check_outputs",
    "check_product",
    "select_references",
]

logger = logging.getLogger(__name__)

#: dataset statuses that keep a product out of the references
BAD_STATUSES = ("quarantined", "failed", "bad", "rejected")
_DAY = 86400.0


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

    Examples
    --------
    >>> import datetime as dt, pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> cat = open_catalog(work / "catalog.db")
    >>> day = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    >>> scans = []
    >>> for k, energy in enumerate([25.0, 25.0, 25.0, 25.0, 30.0]):
    ...     _ = simulate_tomo_scan(work / f"s{k}.h5", shape=(8, 4, 32), energy_kev=energy,
    ...                            start_time=day + dt.timedelta(hours=k))
    ...     scans.append(cat.ingest(work / f"s{k}.h5"))
    ...     _ = check_product(cat, scans[-1], min_references=3)
    >>> refs = select_references(cat, scans[3], min_references=3)
    >>> refs.usable, refs.ids == tuple(s.id for s in scans[2::-1])
    (True, True)
    >>> print(select_references(cat, scans[4], min_references=3).reason)  # doctest: +ELLIPSIS
    too few references: 0 with this configuration, 3 needed; ... 25.0 -> 30.0
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
        reason = (f"too few references: {len(rows)} with this configuration, "
                  f"{min_references} needed")
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
    >>> from spotkit.monitor import quality_verdict
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


def check_outputs(catalog: Any, datasets: Any, **options: Any) -> list[QualityVerdict]:
    """Check every product of a run that has a quality summary; never raises for one.

    What the flow calls after a run registered its outputs: datasets of other kinds (PNG
    previews, reports) are skipped, and a product that cannot be checked (a file gone, a
    database error) is logged as a warning and skipped, so the flow goes on.

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    datasets : iterable of str or Dataset
        The run's outputs (``Run.outputs``, or what ``finish_run`` returned).
    **options
        Passed to :func:`check_product`.

    Returns
    -------
    list of QualityVerdict
        One per product checked; :meth:`QualityVerdict.finding` gives what to alert on.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan.h5", shape=(8, 4, 32), seed=0)
    >>> cat = open_catalog(work / "catalog.db")
    >>> [v.verdict for v in check_outputs(cat, [cat.ingest(work / "scan.h5"), "ds-gone"])]
    ['no reference']
    """
    from spotkit.errors import SpotkitError
    from spotkit.monitor._quality_data import QUALITY_KINDS

    verdicts = []
    for item in datasets:
        try:
            ds = item if isinstance(item, Dataset) else catalog[item]
            if ds.kind not in QUALITY_KINDS:
                continue
            verdicts.append(check_product(catalog, ds, **options))
        except (SpotkitError, OSError, ValueError, KeyError) as exc:
            logger.warning("quality check of %s skipped: %s", getattr(item, "id", item), exc)
    return verdicts


def check_new_products(catalog: Any, *, since: float | None = None, limit: int = 50,
                       **options: Any) -> list[QualityVerdict]:
    """Check the products registered since ``since`` that have no verdict yet, oldest first.

    What the monitor beside a watcher runs at every check (``spotkit.flows.start_monitor``):
    the keep-up checks stay off the flow's own path (a check reads the product, and for a
    volume its raw scan), and a product registered while no monitor ran is checked at the
    next check that covers its time. Oldest first, so each product's references are checked
    before it; at most ``limit`` per call, the rest at the next.

    Parameters
    ----------
    catalog : spotkit.catalog.Catalog
    since : float, optional
        Only products registered (ingested) at or after this UTC epoch time.
    limit : int
        At most this many products per call.
    **options
        Passed to :func:`check_product`.

    Returns
    -------
    list of QualityVerdict
        One per product checked (products that cannot be checked are logged and skipped,
        as in :func:`check_outputs`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan.h5", shape=(8, 4, 32), seed=0)
    >>> cat = open_catalog(work / "catalog.db")
    >>> _ = cat.ingest(work / "scan.h5")
    >>> [v.verdict for v in check_new_products(cat)], check_new_products(cat)
    (['no reference'], [])
    """
    from spotkit.monitor._quality_data import QUALITY_KINDS

    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}")
    kinds = sorted(QUALITY_KINDS)
    where = [f"d.kind IN ({', '.join('?' * len(kinds))})",
             "NOT EXISTS (SELECT 1 FROM quality_checks q WHERE q.dataset_id = d.id)"]
    params: list[Any] = list(kinds)
    if since is not None:
        where.append("d.ingested_at >= ?")
        params.append(float(since))
    with _connection(catalog) as conn:
        ids = [row[0] for row in conn.execute(
            f"SELECT d.id FROM datasets d WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY d.ingested_at, d.seq LIMIT ?", (*params, limit)).fetchall()]
    return check_outputs(catalog, ids, **options)
