"""The spotkit dataset catalog with provenance.

Raw scans, derived products and the notebook runs that made them live in one SQLite file
(WAL mode, safe for a watcher and a notebook at once), or, for a facility, in one
PostgreSQL database (``open_catalog("postgresql://user@host:5432/spotkit")``, with
``pip install "spotkit[postgres]"``): the same API on both. Search by beamline, sample,
proposal, kind, status, time range or free text; follow any dataset back to its raw data
through :attr:`Dataset.provenance`; export an intake v2 catalog for others.

Examples
--------
>>> import pathlib, tempfile
>>> from spotkit.catalog import open_catalog
>>> from spotkit.sim import simulate_tomo_scan
>>> work = pathlib.Path(tempfile.mkdtemp())
>>> _ = simulate_tomo_scan(work / "scan_0001.h5", shape=(32, 2, 32), seed=0)
>>> cat = open_catalog(work / "catalog.db")
>>> raw = cat.ingest(work / "scan_0001.h5")
>>> raw.kind, raw.beamline
('tomo/raw', '8.3.2')
>>> [d.id for d in cat.search(beamline="8.3.2", sample="simulated*")] == [raw.id]
True
>>> raw.provenance.dataset.id == raw.id
True
"""

from spotkit.catalog._backend import database_errors, mask_url
from spotkit.catalog._catalog import Catalog, open_catalog
from spotkit.catalog._dataset import Dataset, Provenance
from spotkit.catalog._live import LIVE_ENDED_STATES
from spotkit.catalog._live_point import LIVE_KINDS, LivePoint
from spotkit.catalog._overview import DatasetOverview, LineageGraph, Preview, dataset_overview
from spotkit.catalog._pages import DatasetPage, PageKey, search_page
from spotkit.catalog._records import FileRecord, Run
from spotkit.catalog._schema import (
    SCHEMA_VERSION,
    loosen_check,
    register_tables,
    run_ddl,
    table_exists,
    write_transaction,
)
from spotkit.catalog._schema import connect as connect_database
from spotkit.catalog._search import SearchResult

__all__ = [
    "LIVE_ENDED_STATES",
    "LIVE_KINDS",
    "SCHEMA_VERSION",
    "Catalog",
    "Dataset",
    "DatasetOverview",
    "DatasetPage",
    "FileRecord",
    "LineageGraph",
    "LivePoint",
    "PageKey",
    "Preview",
    "Provenance",
    "Run",
    "SearchResult",
    "connect_database",
    "database_errors",
    "dataset_overview",
    "loosen_check",
    "mask_url",
    "open_catalog",
    "register_tables",
    "run_ddl",
    "search_page",
    "table_exists",
    "write_transaction",
]
