"""Both backends behave alike where they could differ: wildcards, free text, bad input,
concurrent writers on separate connections and processes, how a catalog is named
(``SPOTKIT_CATALOG``, URLs), schema migrations; and PostgreSQL's own concerns (the password
never shown, a missing database, types wide enough for real files)."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from spotkit.catalog import SCHEMA_VERSION, _schema, open_catalog
from spotkit.errors import CatalogError


@pytest.fixture
def odd(cat, scans):
    """Datasets whose values contain LIKE/GLOB/regex metacharacters and diacritics."""
    names = ["a_b", "axb", "a%b", "lyso[1]", "Élan-7", "café crème", "x.y+z"]
    ids = {}
    for name in names:
        ids[name] = cat.ingest(scans(sample=name, metadata={"note": f"about {name}"})).id
    return cat, ids


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("a_b", ["a_b"]),  # no wildcard: "_" is a plain character
        ("a%b", ["a%b"]),
        ("a?b", ["a_b", "axb", "a%b"]),
        ("a[x%]b", ["axb", "a%b"]),
        ("a[^x]b", ["a_b", "a%b"]),
        ("lyso*", ["lyso[1]"]),
        ("lyso[[]1]", ["lyso[1]"]),
        ("x.y+*", ["x.y+z"]),
        ("x?y*", ["x.y+z"]),
        ("É*", ["Élan-7"]),
        ("*crème", ["café crème"]),
        ("A?B", []),  # case-sensitive, as SQLite's GLOB
    ],
)
def test_wildcards_mean_the_same_on_both_backends(odd, pattern, expected):
    cat, ids = odd
    assert sorted(cat.search(sample=pattern).ids) == sorted(ids[n] for n in expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("elan", ["Élan-7"]),  # diacritics removed on both sides
        ("ÉLAN", ["Élan-7"]),
        ("creme", ["café crème"]),
        ("caf*", ["café crème"]),
        ("about café", ["café crème"]),
        # words are split at punctuation on both backends, as FTS5 does: "Élan-7" is the
        # words "elan" and "7" (PostgreSQL's own parser would read "-7" as a number)
        ("7", ["Élan-7"]),
        ("elan-7", ["Élan-7"]),
        ("lyso 1", ["lyso[1]"]),
        ("y+z", ["x.y+z"]),
        ("a_b", ["a_b", "a%b"]),  # the words "a" then "b", as in "a%b" too
    ],
)
def test_free_text_ignores_case_and_diacritics(odd, text, expected):
    cat, ids = odd
    assert sorted(cat.search(text=text).ids) == sorted(ids[n] for n in expected)


@pytest.mark.parametrize(
    "evil",
    [
        "'; DROP TABLE datasets; --",
        "x' OR '1'='1",
        "a\\' OR 1=1 --",
        "%",
        "?",
        "') OR ('a'='a",
        "lyso & !x | (y:*",
        "\\",
    ],
)
def test_injection_attempts_change_nothing(odd, evil):
    cat, ids = odd
    before = len(cat)
    for field in ("beamline", "sample", "proposal", "kind", "status"):
        assert cat.search(**{field: evil}).total == 0
    assert cat.search(text=evil).total in (0, len(ids))  # words, never SQL
    assert cat.get(evil) is None
    assert evil not in cat
    assert len(cat) == before
    assert cat.search(sample="a_b").total == 1


def test_datasets_without_start_time_sort_last(cat, scans, reader):
    early = cat.ingest(scans(start=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))
    path = scans()
    info = reader.infos[path]
    reader.infos[path] = type(info)(**{**info.__dict__, "start_time": None})
    undated = cat.ingest(path)
    assert cat.search().ids == [early.id, undated.id]
    assert cat.search(limit=None).ids == [early.id, undated.id]


def test_same_files_ingested_from_many_connections_at_once(catalog_url, reader, scans):
    """Four writers (each its own connection, as four processes would be) ingest the same
    twelve files in different orders: every file is registered exactly once."""
    paths = [scans(sample=f"s{i}") for i in range(12)]
    cats = [open_catalog(catalog_url, reader=reader) for _ in range(4)]
    barrier = threading.Barrier(len(cats))
    errors: list[BaseException] = []
    seen: list[set[str]] = []

    def work(cat, seed):
        mine = list(paths)
        random.Random(seed).shuffle(mine)
        barrier.wait()
        try:
            seen.append({cat.ingest(p).id for p in mine})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c, i)) for i, c in enumerate(cats)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(cats[0]) == 12
        assert all(s == seen[0] for s in seen)  # every writer got the same dataset per file
        assert cats[1].search(limit=None).total == 12
    finally:
        for c in cats:
            c.close()


_INGEST = """
import sys
from spotkit.catalog import open_catalog
with open_catalog(sys.argv[1]) as cat:
    for path in sys.argv[2:]:
        cat.ingest(path)
"""


@pytest.mark.slow
def test_two_processes_ingest_the_same_scans(catalog_url, tmp_path):
    sim = pytest.importorskip("spotkit.sim")
    paths = []
    for i in range(4):
        path = tmp_path / f"scan_{i}.h5"
        sim.simulate_tomo_scan(path, shape=(8, 2, 32), seed=i, sample=f"s{i}")
        paths.append(str(path))
    procs = [subprocess.Popen([sys.executable, "-c", _INGEST, str(catalog_url), *order])
             for order in (paths, paths[::-1])]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with open_catalog(catalog_url) as cat:
        assert len(cat) == 4
        assert sorted(str(ds.path) for ds in cat.search(limit=None)) == sorted(paths)


def test_migration_hook_runs_on_both_backends(catalog_url, monkeypatch):
    open_catalog(catalog_url).close()
    calls = []

    def to_next(conn):
        calls.append(SCHEMA_VERSION)
        conn.execute("ALTER TABLE datasets ADD COLUMN note TEXT")

    monkeypatch.setattr(_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(_schema, "MIGRATIONS", {SCHEMA_VERSION: to_next})
    with open_catalog(catalog_url) as cat:
        cat._conn.execute("SELECT note FROM datasets").fetchall()  # the column exists
    open_catalog(catalog_url).close()  # already migrated: the hook does not run again
    assert calls == [SCHEMA_VERSION]
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", SCHEMA_VERSION)
    with pytest.raises(CatalogError, match="newer"):
        open_catalog(catalog_url)


def test_backend_name_and_home(cat, catalog_url):
    assert cat.backend == ("postgresql" if isinstance(catalog_url, str) else "sqlite")
    if cat.backend == "sqlite":
        assert cat.home == catalog_url.parent
        assert cat.url == str(catalog_url)


def test_large_files_and_times_fit(cat, tmp_path):
    """Sizes past 2**31 and sub-second epoch times survive the round trip."""
    t = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    cat.bulk_load([{"kind": "tomo/raw", "start_time": t, "title": "big",
                    "files": [{"path": tmp_path / "huge.h5", "size": 15 * 2**30,
                               "sha256": "f" * 64}]}])
    (ds,) = cat.search(text="big")
    assert ds.files[0].size == 15 * 2**30
    assert ds.start_time == t


# -- PostgreSQL only --------------------------------------------------------------------------


@pytest.fixture
def pg_url(postgres_server):
    url = postgres_server.create_database("pg")
    yield url
    postgres_server.drop_database(url)


def test_postgres_catalog_from_the_environment_and_url_forms(pg_url, monkeypatch):
    monkeypatch.setenv("SPOTKIT_CATALOG", pg_url)
    monkeypatch.setenv("SPOTKIT_HOME", "/somewhere/shared")
    with open_catalog() as cat:
        assert cat.backend == "postgresql"
        assert cat.url == pg_url
        assert cat.path == pg_url
        assert cat.home == Path("/somewhere/shared")  # run outputs: not under the URL
    # a URL that went through pathlib.Path ("postgresql:/...") and SQLAlchemy's form
    with open_catalog(Path(pg_url)) as cat:
        assert cat.url == pg_url
    with open_catalog(pg_url.replace("postgresql://", "postgresql+psycopg://")) as cat:
        assert cat.url == pg_url


def test_v6_migration_indexes_free_text_again(pg_url, scans, reader):
    """A PostgreSQL catalog written with schema 5 indexed "bone-0421" as 'bone' and the
    number '-0421'; opening it with schema 6 indexes every dataset again."""
    from spotkit.catalog._backend import connect_postgres

    with open_catalog(pg_url, reader=reader) as cat:
        ds = cat.ingest(scans(sample="bone-0421"))
    conn = connect_postgres(pg_url)
    try:  # as schema 5 left it: a datasets_fts table, PostgreSQL's own word splitting
        conn.execute("CREATE TABLE datasets_fts (seq BIGINT PRIMARY KEY REFERENCES "
                     "datasets(seq) ON DELETE CASCADE, doc tsvector NOT NULL)")
        conn.execute("INSERT INTO datasets_fts SELECT seq, to_tsvector('simple', 'bone-0421') "
                     "FROM datasets")
        conn.execute("ALTER TABLE datasets DROP COLUMN doc")
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version VALUES (5, 0)")
    finally:
        conn.close()
    with open_catalog(pg_url, reader=reader) as cat:
        assert cat.search(text="0421").ids == [ds.id]
        assert cat.search(text="bone-0421").ids == [ds.id]
        assert cat.search(text="bone-0421").total == 1
    conn = connect_postgres(pg_url)
    try:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == (
            SCHEMA_VERSION)
    finally:
        conn.close()


def test_create_false_on_an_empty_database_says_so(pg_url):
    with pytest.raises(CatalogError, match="no catalog in database"):
        open_catalog(pg_url, create=False)
    open_catalog(pg_url).close()
    with open_catalog(pg_url, create=False) as cat:
        assert len(cat) == 0


def test_the_password_is_never_shown(pg_url, scans, reader):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("CREATE ROLE alice LOGIN PASSWORD 'sesame-42'")
        admin.execute(f"GRANT ALL ON DATABASE {pg_url.rsplit('/', 1)[1]} TO alice")
        admin.execute("GRANT ALL ON SCHEMA public TO alice")
    url = pg_url.replace("spotkit@", "alice:sesame-42@")
    with open_catalog(url, reader=reader) as cat:
        ds = cat.ingest(scans())
        text = " ".join([repr(cat), cat._where_name(), repr(ds)])
        assert "sesame-42" not in text
        assert "alice:***@" in repr(cat)
        with pytest.raises(CatalogError) as err:
            cat.get_run("run-nope")
        assert "sesame-42" not in str(err.value)
    wrong = pg_url.replace("spotkit@", "nobody:wrong-pw@")
    with pytest.raises(CatalogError) as err:
        open_catalog(wrong)
    assert "wrong-pw" not in str(err.value)


def test_a_writer_waits_for_the_lock_then_says_what_to_do(pg_url, monkeypatch):
    """A transaction that holds the catalog's write lock blocks writers (as SQLite's
    BEGIN IMMEDIATE does); past the lock timeout the writer gets a clear error."""
    import psycopg

    from spotkit.catalog import _backend

    open_catalog(pg_url).close()
    with psycopg.connect(pg_url) as holder:  # not autocommit: the lock stays held
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (_backend.WRITE_LOCK,))
        monkeypatch.setattr(_backend, "LOCK_TIMEOUT_S", 1)
        with open_catalog(pg_url) as cat:
            with pytest.raises(CatalogError, match=r"cannot lock catalog .* for writing"):
                cat.bulk_load([{"kind": "x/y"}])
            assert len(cat) == 0
        holder.rollback()
    with open_catalog(pg_url) as cat:
        assert cat.bulk_load([{"kind": "x/y"}]) == 1


def test_a_stalled_writer_cannot_hold_the_lock_for_everyone(pg_url, monkeypatch):
    """A session that stops inside a transaction (a frozen process, a vanished host) is
    ended by the server, and its write lock goes with it."""
    from spotkit.catalog import _backend

    monkeypatch.setattr(_backend, "IDLE_IN_TRANSACTION_S", 1)
    with open_catalog(pg_url) as stalled, open_catalog(pg_url) as other:
        stalled._conn.execute("BEGIN")
        stalled._conn.execute("SELECT pg_advisory_xact_lock(?)", (_backend.WRITE_LOCK,))
        # ... and never commits: the other writer gets the lock within seconds
        assert other.bulk_load([{"kind": "x/y"}]) == 1
        with pytest.raises(CatalogError, match="idle-in-transaction timeout"):
            len(stalled)  # its session was ended: the first call says so ...
        assert len(stalled) == 1  # ... and the next one connects again


def test_a_lost_connection_is_reopened(pg_url, scans, reader):
    import psycopg

    with open_catalog(pg_url, reader=reader) as cat:
        ds = cat.ingest(scans())
        pid = cat._conn.raw.info.backend_pid
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(CatalogError, match="reading catalog"):
            len(cat)  # the call that finds the connection gone says so ...
        assert cat[ds.id] == ds  # ... and the next one connects again
        assert cat._conn.raw.info.backend_pid != pid


def test_a_connection_lost_inside_a_write_rolls_back_cleanly(pg_url, scans, reader):
    import psycopg

    with open_catalog(pg_url, reader=reader) as cat:
        pid = cat._conn.raw.info.backend_pid
        with pytest.raises(CatalogError, match="nothing was written"):
            with cat._write("a test write") as conn:
                conn.execute("INSERT INTO runs (id, dataset_id, notebook, state, started_at) "
                             "VALUES ('run-x', 'ds-x', 'nb', 'running', 0)")

        def write_and_lose_the_connection():
            with cat._write("a test write") as conn:
                conn.execute("INSERT INTO datasets (id, kind, ingested_at) "
                             "VALUES ('ds-y', 'x/y', 0)")
                with psycopg.connect(pg_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                conn.execute("SELECT 1")

        with pytest.raises(CatalogError, match="a test write failed and nothing was written"):
            write_and_lose_the_connection()
        assert "ds-y" not in cat
        ds = cat.ingest(scans())
        assert cat[ds.id] == ds


# -- the dialect's pure parts (run where PostgreSQL is absent, too) ---------------------------


def test_placeholders_outside_string_literals_only():
    from spotkit.catalog._backend import _to_psycopg

    sql = ("SELECT coalesce(b, '?'), x FROM t WHERE a = ? AND r LIKE '%\"q\": true%' "
           "AND c = 'it''s ?' AND d = ?")
    assert _to_psycopg(sql) == (
        "SELECT coalesce(b, '?'), x FROM t WHERE a = %s AND r LIKE '%%\"q\": true%%' "
        "AND c = 'it''s ?' AND d = %s")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://alice:s3cret@db.example:5432/spotkit",
         "postgresql://alice:***@db.example:5432/spotkit"),
        ("postgresql://alice@db/spotkit", "postgresql://alice@db/spotkit"),
        ("/data/catalog.db", "/data/catalog.db"),
    ],
)
def test_passwords_are_masked(url, shown):
    from spotkit.catalog import mask_url

    assert mask_url(url) == shown


def test_url_recognition():
    from spotkit.catalog._backend import is_url, normalise_url

    assert is_url("postgresql://h/db")
    assert is_url("postgres://h/db")
    assert is_url(Path("postgresql://h/db"))  # folded to postgresql:/h/db by pathlib
    assert normalise_url(Path("postgresql://u@h:1/db")) == "postgresql://u@h:1/db"
    assert normalise_url("postgresql+psycopg://h/db") == "postgresql://h/db"
    assert not is_url("postgres.db")
    assert not is_url("/srv/postgresql/catalog.db")
    assert not is_url(None)


def test_sqlite_ddl_becomes_postgresql_ddl():
    from spotkit.catalog._schema import _postgres_ddl

    ddl = _postgres_ddl("CREATE TABLE x (id INTEGER PRIMARY KEY, n INTEGER, t REAL, s TEXT)")
    assert ddl == ('CREATE TABLE x (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, '
                   'n BIGINT, t DOUBLE PRECISION, s TEXT COLLATE "C")')
    assert _postgres_ddl("CREATE INDEX i ON d (beamline, start_time)").endswith(
        "(beamline, start_time NULLS FIRST)")


def test_text_queries_quote_every_word():
    """Every word is quoted; a word FTS5 splits in several (at punctuation, quotes
    included) is a phrase of its parts; operators and quotes never reach to_tsquery."""
    from spotkit.catalog._common import _tsquery

    assert _tsquery("Élan lyso* o'brien & |") == "'Elan' & 'lyso':* & ('o' <-> 'brien')"
    assert _tsquery("bone-0421* 8.3.2") == "('bone' <-> '0421':*) & ('8' <-> '3' <-> '2')"
    assert _tsquery("*** --") == ""
