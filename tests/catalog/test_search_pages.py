"""Keyset paging (spotkit.catalog.search_page) against Catalog.search, on both backends.

The catalog has ties in the sort key (many datasets with the same start time) and
datasets without a start time (they sort last), so every page boundary case is met.
"""

from __future__ import annotations

import itertools

import pytest

from spotkit.catalog import PageKey, search_page

T0 = 1.7e9


def _fill(cat, n=23):
    """n datasets: start times with ties (groups of 4), three with no start time."""
    records = []
    for i in range(n):
        start = None if i % 8 == 5 else T0 + (i // 4) * 60
        records.append({"kind": "tomo/raw" if i % 3 else "saxs/raw",
                        "beamline": "8.3.2" if i % 2 else "7.3.3",
                        "sample": f"bone-{i:02d}" if i % 5 else f"lyso-{i:02d}",
                        "title": f"scan {i} of {'bone' if i % 5 else 'lysozyme'}",
                        "start_time": start, "status": "raw"})
    cat.bulk_load(records)
    return cat.search(limit=None).ids


def _walk_forward(cat, size, **criteria):
    page = search_page(cat, limit=size, **criteria)
    seen = [page.ids]
    while page.more_after:
        page = search_page(cat, limit=size, after=page.keys[-1], **criteria)
        seen.append(page.ids)
    return seen


def test_forward_and_backward_walks_match_search(cat):
    everything = _fill(cat)
    assert len(everything) == 23
    for size in (1, 3, 4, 7):
        _check_walks(cat, everything, size)


def _check_walks(cat, everything, size):
    pages = _walk_forward(cat, size)
    assert [i for p in pages for i in p] == everything
    assert all(len(p) == size for p in pages[:-1])
    # backwards from the last page
    page = search_page(cat, limit=size, last=True)
    back = [page.ids]
    assert page.more_after is False
    while page.more_before:
        page = search_page(cat, limit=size, before=page.keys[0])
        back.append(page.ids)
    assert [i for p in reversed(back) for i in p] == everything
    assert back[0] == everything[-size:]


def test_keys_follow_the_search_order_and_tokens_round_trip(cat):
    everything = _fill(cat)
    page = search_page(cat, limit=30)
    assert page.ids == everything
    assert page.more_after is False
    assert page.more_before is False
    # newest first: keys strictly decreasing with the no-start-time rows last
    timed = [k for k in page.keys if k.start is not None]
    untimed = [k for k in page.keys if k.start is None]
    assert page.keys == tuple(timed + untimed)
    assert all((a.start, a.seq) > (b.start, b.seq) for a, b in itertools.pairwise(timed))
    assert all(a.seq > b.seq for a, b in itertools.pairwise(untimed))
    for key in page.keys:
        assert PageKey.parse(key.token) == key
    again = search_page(cat, limit=5, after=page.keys[9].token)
    assert again.ids == everything[10:15]


def test_skip_from_each_end_and_from_a_key(cat):
    everything = _fill(cat)
    keys = search_page(cat, limit=30).keys
    for skip in (0, 1, 5, 17, 19, 21, 40):
        _check_skip(cat, everything, keys, skip)


def _check_skip(cat, everything, keys, skip):
    n = len(everything)
    assert search_page(cat, limit=3, skip=skip).ids == everything[skip:skip + 3]
    end = max(0, n - skip - 3)
    assert search_page(cat, limit=3, last=True, skip=skip).ids == \
        everything[end:max(0, n - skip)]
    # after row 2 (a tie group), skipping `skip` rows: crosses into the no-start-time rows
    assert search_page(cat, limit=4, after=keys[2], skip=skip).ids == \
        everything[3 + skip:7 + skip]
    lo = max(0, 20 - skip - 4)
    assert search_page(cat, limit=4, before=keys[20], skip=skip).ids == \
        everything[lo:max(0, 20 - skip)]


def test_keys_inside_the_untimed_rows(cat):
    everything = _fill(cat)
    keys = search_page(cat, limit=30).keys
    first_untimed = next(i for i, k in enumerate(keys) if k.start is None)
    key = keys[first_untimed]
    assert search_page(cat, limit=5, after=key).ids == everything[first_untimed + 1:][:5]
    assert search_page(cat, limit=2, before=key).ids == \
        everything[first_untimed - 2:first_untimed]
    assert search_page(cat, limit=3, at=key).ids == everything[first_untimed:][:3]
    assert search_page(cat, limit=3, before=keys[-1], skip=1).ids == everything[-5:-2]


def test_criteria_are_those_of_search(cat):
    _fill(cat)
    for criteria in ({"beamline": "8.3.2"}, {"sample": "bone-1*"}, {"kind": ["saxs/raw"]},
                     {"text": "lysozyme"}, {"beamline": "7.3.3", "since": T0 + 120},
                     {"until": T0 + 120, "status": "raw"}, {"sample": "nothing*"}):
        expected = cat.search(limit=None, **criteria).ids
        pages = _walk_forward(cat, 2, **criteria)
        assert [i for p in pages for i in p] == expected, criteria
        page = search_page(cat, limit=2, count=True, **criteria)
        assert page.total == len(expected)
        assert page.total_exact
        assert page.query == criteria


def test_a_page_read_again_at_its_key_stays_put_when_new_data_arrive(cat):
    everything = _fill(cat)
    page = search_page(cat, limit=4, skip=8)
    assert page.ids == everything[8:12]
    cat.bulk_load([{"kind": "tomo/raw", "start_time": T0 + 10_000, "sample": "new"}])
    again = search_page(cat, limit=4, at=page.keys[0], count=True)
    assert again.ids == page.ids
    assert again.total == 24
    assert search_page(cat, limit=1).datasets[0].sample == "new"


def test_bad_arguments_are_named(cat):
    _fill(cat, 3)
    with pytest.raises(ValueError, match="at most one of"):
        search_page(cat, after="1.0:1", last=True)
    with pytest.raises(ValueError, match="limit must be"):
        search_page(cat, limit=0)
    with pytest.raises(ValueError, match="skip must be"):
        search_page(cat, skip=-1)
    with pytest.raises(ValueError, match="page key 'x' is not valid"):
        search_page(cat, after="x")
    with pytest.raises(TypeError, match="unknown criteria"):
        search_page(cat, offset=3)
    assert search_page(cat, sample="none").ids == []
