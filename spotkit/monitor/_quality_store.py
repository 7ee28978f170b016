"""Quality checks, storage: verdicts in the catalog database's ``quality_checks`` table.

The table is created through :func:`spotkit.catalog.register_tables` (with the catalog's
own tables when a catalog is made or migrated) or on first use; the same statements run on
SQLite and PostgreSQL. One row per product (checking it again replaces the row): the
verdict, its reasons and tests, the references used, the configuration and the summary.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

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
from spotkit.monitor._quality_summary import ProductSummary
from spotkit.monitor._quality_tests import TestResult

__all__ = ["VERDICTS", "QualityVerdict", "quality_findings", "quality_verdict",
           "quality_verdicts"]

VERDICTS = ("pass", "fail", "no reference")

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
        """One line: verdict, product and the first reasons (for ``"no reference"``: not
        checked, and why: how many references there are and how many are needed, or that
        they are stale)."""
        why = "; ".join(self.reasons[:3])
        head = f"{self.dataset_id} ({self.kind})"
        if self.verdict == "no reference":
            return f"{head}: not checked ({why or 'no references'})"
        refs = f" against {len(self.reference_ids)} references" if self.reference_ids else ""
        return f"{head}: {self.verdict}{refs}" + (f": {why}" if why else "")

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


def _row_to_verdict(row: tuple) -> QualityVerdict:
    (ds_id, kind, beamline, key, config, product_time, checked_at, verdict, reasons, tests,
     refs, summary) = row
    return QualityVerdict(ds_id, kind, beamline, verdict, tuple(json.loads(reasons)),
                          tuple(TestResult.from_dict(t) for t in json.loads(tests)),
                          tuple(json.loads(refs)), json.loads(config), key,
                          float(product_time), float(checked_at),
                          ProductSummary.from_dict(json.loads(summary)))


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

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.monitor import check_product
    >>> from spotkit.sim import simulate_tomo_scan
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(work / "scan.h5", shape=(8, 4, 32), seed=0)
    >>> cat = open_catalog(work / "catalog.db")
    >>> scan = cat.ingest(work / "scan.h5")
    >>> quality_verdict(cat, scan) is None
    True
    >>> _ = check_product(cat, scan)
    >>> v = quality_verdict(cat, scan)
    >>> v.verdict, v.reasons
    ('no reference', ('too few references: 0 with this configuration, 8 needed',))
    >>> v.message.endswith("not checked (too few references: 0 with this configuration, "
    ...                    "8 needed)")
    True
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
