"""Searching: every field, wildcards, free text, time ranges, paging, large catalogs."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from spotkit.catalog import SearchResult, _schema, open_catalog


@pytest.fixture
def filled(cat, scans):
    """Six datasets over two beamlines, three samples, two proposals, one per day."""
    day0 = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)
    rows = [
        ("8.3.2", "lysozyme-A", "ALS-1", "tomo/raw", {"energy_kev": 25.0}),
        ("8.3.2", "lysozyme-B", "ALS-1", "tomo/raw", {"energy_kev": 30.0}),
        ("7.3.3", "silica gel", "ALS-2", "saxs/raw", {"detector": "Pilatus 2M"}),
        ("8.3.2", "bone_biopsy", "ALS-2", "tomo/raw", {"note": "cracked sample holder"}),
        ("7.3.3", "lysozyme-A", "ALS-1", "saxs/raw", {"detector": "Pilatus 2M"}),
        ("7.3.3", "silica gel", "ALS-2", "saxs/raw", {"detector": "Eiger"}),
    ]
    ids = []
    for i, (beamline, sample, proposal, kind, meta) in enumerate(rows):
        path = scans(
            beamline=beamline,
            sample=sample,
            proposal=proposal,
            kind=kind,
            metadata=meta,
            start=day0 + dt.timedelta(days=i),
        )
        ids.append(cat.ingest(path).id)
    return cat, ids


def test_search_returns_newest_first_with_total(filled):
    cat, ids = filled
    hits = cat.search()
    assert isinstance(hits, SearchResult)
    assert hits.total == len(hits) == 6
    assert hits.ids == ids[::-1]
    starts = [ds.start_time for ds in hits]
    assert starts == sorted(starts, reverse=True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"beamline": "8.3.2"}, [0, 1, 3]),
        ({"beamline": "7.3.3"}, [2, 4, 5]),
        ({"sample": "lysozyme-A"}, [0, 4]),
        ({"sample": "lysozyme*"}, [0, 1, 4]),
        ({"sample": "*gel"}, [2, 5]),
        ({"sample": "lysozyme-?"}, [0, 1, 4]),
        ({"sample": "lysozyme"}, []),  # exact unless it has a wildcard
        ({"sample": ["bone_biopsy", "silica*"]}, [2, 3, 5]),
        ({"proposal": "ALS-2"}, [2, 3, 5]),
        ({"kind": "saxs/raw"}, [2, 4, 5]),
        ({"kind": "tomo/*"}, [0, 1, 3]),
        ({"status": "raw"}, [0, 1, 2, 3, 4, 5]),
        ({"status": "derived"}, []),
        ({"beamline": "7.3.3", "sample": "lysozyme*"}, [4]),
        ({"proposal": "ALS-1", "since": "2024-05-02"}, [1, 4]),
    ],
)
def test_search_by_field(filled, query, expected):
    cat, ids = filled
    hits = cat.search(**query)
    assert sorted(hits.ids) == sorted(ids[i] for i in expected)
    assert hits.total == len(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pilatus", [2, 4]),  # metadata value, case-insensitive
        ("Pilatus 2M", [2, 4]),  # every word must occur
        ("lysozyme", [0, 1, 4]),  # sample (tokenised at '-')
        ("lyso*", [0, 1, 4]),  # prefix
        ("cracked", [3]),
        ("8.3.2", [0, 1, 3]),  # beamline, punctuation is fine
        ("ALS-2 eiger", [5]),
        ("nothing-like-this", []),
        ('"quoted"', []),
    ],
)
def test_text_search(filled, text, expected):
    cat, ids = filled
    assert sorted(cat.search(text=text).ids) == sorted(ids[i] for i in expected)


def test_text_search_without_fts5_falls_back_to_like(tmp_path, scans, reader, monkeypatch):
    monkeypatch.setattr(_schema, "fts5_available", lambda: False)
    with open_catalog(tmp_path / "nofts.db", reader=reader) as cat:
        assert not cat._fts
        a = cat.ingest(scans(sample="lysozyme-A", metadata={"detector": "Pilatus"}))
        cat.ingest(scans(sample="silica 100%"))
        assert cat.search(text="pilatus").ids == [a.id]
        assert cat.search(text="lyso*").ids == [a.id]
        assert cat.search(text="100%").total == 1
        assert cat.search(text="100_").total == 0  # LIKE wildcards are escaped


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2024-05-03", None, [2, 3, 4, 5]),
        (None, "2024-05-03", [0, 1, 2]),  # a bare date includes the whole day
        ("2024-05-02", "2024-05-03", [1, 2]),
        (dt.date(2024, 5, 2), dt.date(2024, 5, 2), [1]),
        (dt.datetime(2024, 5, 2, 10, tzinfo=dt.UTC), None, [1, 2, 3, 4, 5]),  # inclusive
        (None, dt.datetime(2024, 5, 2, 10, tzinfo=dt.UTC), [0, 1]),  # inclusive
        (dt.datetime(2024, 5, 2, 10, 0, 1), None, [2, 3, 4, 5]),  # naive means UTC
        ("2024-05-02T12:00:00+02:00", None, [1, 2, 3, 4, 5]),  # offsets honoured
        ("2024-05-07", None, []),
    ],
)
def test_since_until(filled, since, until, expected):
    cat, ids = filled
    assert sorted(cat.search(since=since, until=until).ids) == sorted(ids[i] for i in expected)


def test_bad_time_is_explained(filled):
    cat, _ = filled
    with pytest.raises(ValueError, match="ISO 8601"):
        cat.search(since="last tuesday")
    with pytest.raises(ValueError, match="limit"):
        cat.search(limit=-1)


def test_paging_and_total(filled):
    cat, ids = filled
    newest_first = ids[::-1]
    pages = [cat.search(limit=4, offset=o) for o in (0, 4, 8)]
    assert [p.ids for p in pages] == [newest_first[:4], newest_first[4:], []]
    assert [p.total for p in pages] == [6, 6, 6]
    assert cat.search(limit=None).ids == newest_first
    assert cat.search(limit=None, offset=5).ids == newest_first[5:]
    assert cat.search(limit=0).total == 6
    text_page = cat.search(text="lysozyme", limit=1, offset=1)
    assert (text_page.ids, text_page.total) == ([ids[1]], 3)
    hits = cat.search(beamline="8.3.2", limit=2)
    assert (len(hits), hits.total) == (2, 3)


def test_result_displays(filled):
    cat, ids = filled
    hits = cat.search(limit=2)
    records = hits.to_records()
    assert [r["id"] for r in records] == hits.ids
    assert set(records[0]) >= {"id", "kind", "beamline", "sample", "start_time", "path"}
    text = repr(hits)
    assert "2 of 6 datasets" in text
    assert ids[-1] in text
    html = hits._repr_html_()
    assert html.count("<tr>") == 3
    assert ids[-1] in html
    assert hits[0].id == ids[-1]
    assert hits[:1][0].id == ids[-1]
    assert ids[-1] in repr(hits[0])
    assert ids[-1] in hits[0]._repr_html_()


def test_search_over_20000_datasets_counts(catalog_url):
    rng = random.Random(1)
    beamlines = [f"BL{i}" for i in range(20)]
    t0 = dt.datetime(2015, 1, 1, tzinfo=dt.UTC).timestamp()
    records = [
        {
            "kind": "tomo/raw" if i % 3 else "saxs/raw",
            "beamline": beamlines[i % 20],
            "sample": f"sample-{i % 500:04d}",
            "proposal": f"P{i % 97}",
            "title": f"scan {i}",
            "start_time": t0 + i * 3600.0,
            "metadata": {"energy_kev": 10 + i % 7, "tag": "golden" if i % 1000 == 0 else "x"},
            "files": [{"path": f"/data/{i}.h5", "role": "data", "size": 1, "sha256": "0" * 64}],
        }
        for i in range(20_000)
    ]
    rng.shuffle(records)
    with open_catalog(catalog_url) as cat:
        assert cat.bulk_load(records, batch_size=7_000) == 20_000
        assert len(cat) == 20_000
        assert cat.search(beamline="BL3", limit=10).total == 1_000
        assert cat.search(sample="sample-0042").total == 40
        assert cat.search(sample="sample-004*").total == 400
        assert cat.search(proposal="P5", kind="tomo/raw").total == sum(
            1 for i in range(20_000) if i % 97 == 5 and i % 3
        )
        since = dt.datetime.fromtimestamp(t0 + 10_000 * 3600.0, dt.UTC)
        assert cat.search(since=since).total == 10_000
        assert cat.search(text="golden").total == 20
        hits = cat.search(beamline="BL7", limit=50, offset=100)
        assert len(hits) == 50
        assert hits.total == 1_000
        starts = [ds.start_time for ds in hits]
        assert starts == sorted(starts, reverse=True)
        some = hits[0]
        assert cat[some.id] == some
        assert some.files[0].path.name.endswith(".h5")
