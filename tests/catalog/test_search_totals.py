"""Search totals: exact up to a threshold, an estimate above it (PostgreSQL), exact on
request; and schema 7 (the tsvector on the datasets row) migrated from schema 6."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from spotkit.catalog import SCHEMA_VERSION, SearchResult, _search, open_catalog
from spotkit.catalog._backend import connect_postgres

DAY0 = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def pg_url(postgres_server):
    url = postgres_server.create_database("tot")
    yield url
    postgres_server.drop_database(url)


def _fill(cat, n: int = 12) -> list[str]:
    records = [{"kind": "tomo/raw", "beamline": "8.3.2" if i % 3 else "7.3.3",
                "sample": f"bone-{i:04d}", "proposal": "ALS-1", "title": f"scan {i}",
                "start_time": DAY0 + dt.timedelta(hours=i),
                "metadata": {"operator": "ada smith" if i % 2 else "bo weber"},
                "files": [{"path": f"/data/scan_{i:04d}.h5"}]} for i in range(n)]
    cat.bulk_load(records)
    return [ds.id for ds in cat.search(limit=None)]


@pytest.fixture
def small_threshold(monkeypatch):
    """Count exactly only up to 5 matches."""
    monkeypatch.setattr(_search, "EXACT_TOTAL_UP_TO", 5)


def test_total_is_estimated_above_the_threshold_on_postgresql(cat, small_threshold):
    _fill(cat)  # 12 datasets: 8 at 8.3.2, 6 by ada smith
    res = cat.search(beamline="8.3.2", limit=2)
    assert len(res) == 2
    if cat.backend == "sqlite":  # SQLite always counts
        assert (res.total, res.total_exact) == (8, True)
        return
    assert res.total_exact is False
    assert res.total >= 6  # at least threshold + 1
    assert res.total_text.startswith(("about", "more than 5"))
    assert "of 8" not in repr(res)
    assert res.total_text in repr(res)
    exact = cat.search(beamline="8.3.2", limit=2, exact_total=True)
    assert (exact.total, exact.total_exact) == (8, True)
    assert exact.ids == res.ids
    # free text: the same rule
    text = cat.search(text="ada", limit=2)
    assert text.total_exact is False
    assert text.total >= 6
    assert cat.search(text="ada", limit=2, exact_total=True).total == 6


def test_total_is_exact_up_to_the_threshold(cat, small_threshold):
    _fill(cat)
    few = cat.search(beamline="7.3.3", limit=2)  # 4 matches: counted
    assert (few.total, few.total_exact, few.total_text) == (4, True, "4")
    last_page = cat.search(beamline="8.3.2", limit=5, offset=5)  # not full: known exactly
    assert (last_page.total, last_page.total_exact) == (8, True)
    everything = cat.search(limit=None)
    assert (everything.total, everything.total_exact) == (12, True)


def test_deep_page_total_is_never_below_what_was_seen(cat, small_threshold):
    _fill(cat)
    res = cat.search(limit=3, offset=6)  # rows 7-9 of 12, beyond the threshold of 5
    assert len(res) == 3
    assert res.total >= 9
    if cat.backend == "postgresql":
        assert res.total_exact is False


def test_postgresql_search_indexes_end_in_seq():
    from spotkit.catalog._schema import _postgres_ddl

    assert _postgres_ddl("CREATE INDEX i ON datasets (beamline, start_time)").endswith(
        "(beamline, start_time NULLS FIRST, seq)")
    assert _postgres_ddl("CREATE INDEX i ON d (beamline, start_time)").endswith(
        "(beamline, start_time NULLS FIRST)")


def test_total_text_wording():
    assert SearchResult([], total=0).total_text == "0"
    assert SearchResult([], total=10_000).total_text == "10,000"
    assert SearchResult([], total=10_001, total_exact=False).total_text == "more than 10,000"
    assert SearchResult([], total=432_109, total_exact=False).total_text == "about 430,000"
    assert SearchResult([], total=10_000_000, total_exact=False).total_text == "about 10 million"
    assert "of about 1.2 million datasets" in repr(
        SearchResult([], total=1_234_567, total_exact=False))


def test_search_checks_exact_total_is_a_flag_not_used_as_limit(cat):
    _fill(cat, 3)
    assert cat.search(exact_total=True).total == 3


# -- schema 6 -> 7 ------------------------------------------------------------------------


def _results(cat) -> dict:
    queries = [dict(), dict(beamline="8.3.2"), dict(text="ada"), dict(text="bone 0003"),
               dict(text="smith", beamline="7.3.3"), dict(text="bone-00*"),
               dict(sample="bone-000?", text="weber")]
    return {repr(q): (cat.search(**q, limit=None).ids, cat.search(**q, limit=3).total)
            for q in queries}


def test_v7_migration_of_a_sqlite_catalog_keeps_everything(tmp_path):
    db = tmp_path / "catalog.db"
    with open_catalog(db) as cat:
        _fill(cat)
        before = _results(cat)
    with sqlite3.connect(db) as conn:  # SQLite's schema 6 is schema 7's
        rows = conn.execute("SELECT * FROM datasets ORDER BY seq").fetchall()
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version VALUES (6, 0)")
    with open_catalog(db) as cat:
        assert _results(cat) == before
    with sqlite3.connect(db) as conn:
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        assert version == SCHEMA_VERSION
        assert conn.execute("SELECT * FROM datasets ORDER BY seq").fetchall() == rows
        assert conn.execute("SELECT count(*) FROM datasets_fts").fetchone()[0] == 12


def test_v7_migration_of_a_postgresql_catalog_moves_the_text_index(pg_url):
    assert SCHEMA_VERSION >= 7
    with open_catalog(pg_url) as cat:
        ids = _fill(cat)
        before = _results(cat)
    conn = connect_postgres(pg_url)
    try:  # back to schema 6: the tsvectors in their own table datasets_fts
        rows = conn.execute("SELECT seq, id, metadata FROM datasets ORDER BY seq").fetchall()
        conn.execute("CREATE TABLE datasets_fts (seq BIGINT PRIMARY KEY REFERENCES "
                     "datasets(seq) ON DELETE CASCADE, doc tsvector NOT NULL)")
        conn.execute("CREATE INDEX datasets_fts_doc ON datasets_fts USING gin (doc)")
        conn.execute("INSERT INTO datasets_fts SELECT seq, doc FROM datasets")
        conn.execute("ALTER TABLE datasets DROP COLUMN doc")
        conn.execute("DROP INDEX datasets_sample_start")  # schema 6's form
        conn.execute("CREATE INDEX datasets_sample_start ON datasets "
                     "(sample, start_time NULLS FIRST)")
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version VALUES (6, 0)")
    finally:
        conn.close()
    with open_catalog(pg_url) as cat:
        assert _results(cat) == before
        assert sorted(cat.search(limit=None).ids) == sorted(ids)
        # written after the migration: found by its text
        new = cat.bulk_load([{"kind": "tomo/raw", "sample": "coral-7", "title": "reef",
                              "start_time": DAY0}])
        assert new == 1
        assert len(cat.search(text="coral 7")) == 1
    conn = connect_postgres(pg_url)
    try:
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        assert version == SCHEMA_VERSION
        assert conn.execute("SELECT to_regclass('datasets_fts')").fetchone()[0] is None
        assert conn.execute("SELECT seq, id, metadata FROM datasets WHERE seq <= 12 "
                            "ORDER BY seq").fetchall() == rows
        assert conn.execute("SELECT count(*) FROM datasets WHERE doc = ''").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('datasets_doc')").fetchone()[0] is not None
        for name in ("datasets_sample_start", "datasets_start"):
            definition = conn.execute("SELECT pg_get_indexdef(to_regclass(?))",
                                      (name,)).fetchone()[0]
            assert definition.endswith("(start_time NULLS FIRST, seq)") or definition.endswith(
                "(sample, start_time NULLS FIRST, seq)"), definition
    finally:
        conn.close()


# -- free text on PostgreSQL: the walk and the planner's plan give the same pages --------


def test_text_pages_are_the_same_by_walk_and_by_index(cat, monkeypatch):
    """_pgsearch walks newest-first where the words are common and leaves rare words to
    the GIN index; either way a page and its total are what the query means (checked on
    SQLite too, where FTS5 answers)."""
    import random

    from spotkit.catalog import _pgsearch

    rng = random.Random(3)
    words = ["silica", "bone", "coral", "ice"]
    records = []
    for i in range(400):
        w = rng.choices(words, (60, 25, 10, 5))[0]
        records.append({"kind": "tomo/raw", "beamline": rng.choice(["8.3.2", "7.3.3"]),
                        "sample": f"{w}-{i % 7:04d}", "title": f"{w} scan",
                        "start_time": DAY0 + dt.timedelta(minutes=rng.randrange(100_000)),
                        "metadata": {"operator": rng.choice(["ada smith", "bo weber"])}})
    cat.bulk_load(records)
    queries = [dict(text="silica"), dict(text="coral"), dict(text="ice 0003"),
               dict(text="silica ada"), dict(text="bone", beamline="7.3.3"),
               dict(text="smith", offset=30), dict(text="bone-000*")]
    expected = {}
    for q in queries:
        every = cat.search(**{**q, "offset": 0}, limit=None).ids
        expected[repr(q)] = (every[q.get("offset", 0):q.get("offset", 0) + 20], len(every))
    for walk_rows in (_pgsearch.WALK_ROWS, 0, 60):  # default; never walk; walk gives up
        monkeypatch.setattr(_pgsearch, "WALK_ROWS", walk_rows)
        for q in queries:
            res = cat.search(**q, limit=20)
            assert res.ids == expected[repr(q)][0], (walk_rows, q)
            assert res.total == expected[repr(q)][1], (walk_rows, q)
            assert res.total_exact


def test_cli_search_says_about_and_counts_on_request(catalog_url, small_threshold, capsys):
    """`spotkit catalog search` prints "about N" / "more than N" for an estimated total and
    the exact count with --exact-total."""
    from spotkit.cli import main

    with open_catalog(catalog_url) as cat:
        _fill(cat)
    args = ["catalog", "search", "--catalog", str(catalog_url), "--beamline", "8.3.2",
            "--limit", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    if str(catalog_url).startswith("postgresql"):
        assert "2 shown of more than 5 matching" in out or "2 shown of about" in out
    else:
        assert "2 shown of 8 matching" in out
    assert main([*args, "--exact-total"]) == 0
    assert "2 shown of 8 matching" in capsys.readouterr().out
