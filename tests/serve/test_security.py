"""Nothing leaks, nobody gets in where they do not belong: a real server, real HTTP."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest

INJECTIONS = [
    "x' OR '1'='1' --",
    "P-A'; DROP TABLE datasets; --",
    '" OR ""="',
    "P-B\x27)) OR ((1=1",
    "% OR * [P]-B",
    "') UNION SELECT id, kind FROM datasets --",
]


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=60) as client:
        yield client


@pytest.fixture(autouse=True)
def _client(site, http):
    site.http = http


def get(site, path, user=None, **params):
    headers = {"Authorization": f"Apikey {site.keys[user]}"} if user else {}
    if "?" in path:
        path, query = path.split("?", 1)
        params = {**dict(p.split("=", 1) for p in query.split("&")), **params}
    return site.http.get(f"{site.url}/v1{path}", headers=headers, params=params)


def search_ids(site, user, path="/search/", **params):
    r = get(site, path, user, **params)
    assert r.status_code == 200, r.text
    body = r.json()
    return [d["id"] for d in body["data"]], body["meta"]["count"]


def visible(site, user):
    ids, count = search_ids(site, user, **{"page[limit]": 100})
    assert count == len(ids)
    return set(ids)


def proposal_of(site, ds_id):
    return site.catalog[ds_id].proposal


# ---------------------------------------------------------------- no key, bad key
@pytest.mark.parametrize("key", [None, "0" * 72, "not-hex"])
def test_no_or_bad_key_is_refused(site, key):
    headers = {"Authorization": f"Apikey {key}"} if key else {}
    for path in ("/search/", "/metadata/{a}", "/array/full/{a}/data",
                 "/array/block/{a}/data?block=0,0,0", "/distinct/"):
        r = site.http.get(f"{site.url}/v1{path.format(**site.ids)}", headers=headers)
        assert r.status_code == 401, (path, key, r.status_code, r.text)
        assert site.ids["a"] not in r.text
        assert "P-A" not in r.text


def test_key_in_query_string_also_works_and_is_never_logged(site):
    r = site.http.get(f"{site.url}/v1/search/", params={"api_key": site.keys["ann"]})
    assert r.status_code == 200
    text = "\n".join(site.log)
    assert "/search/" in text  # the access log was captured...
    for key in site.keys.values():  # ...and holds no key, whole or in part
        assert key not in text
        assert key[8:40] not in text


# ---------------------------------------------------------------- listing and search
def test_users_see_only_their_proposals_and_staff_all(site):
    ids = site.ids
    assert visible(site, "ann") == {ids[k] for k in ("a", "s", "vol_a", "iq", "mixed")}
    assert visible(site, "bob") == {ids["b"], ids["vol_b"]}
    assert visible(site, "eve") == set()
    assert visible(site, "sam") == set(ids.values())


def test_paging_and_counts_do_not_reveal_other_proposals(site):
    seen, offset = [], 0
    while True:
        page, count = search_ids(site, "ann", **{"page[offset]": offset, "page[limit]": 2})
        assert count == 5
        if not page:
            break
        seen += page
        offset += 2
    assert len(seen) == len(set(seen)) == 5
    assert all(proposal_of(site, i) == "P-A" for i in seen)
    r = get(site, "/metadata/", "ann")
    assert r.json()["data"]["attributes"]["structure"]["count"] == 5


@pytest.mark.parametrize("params", [
    {"filter[eq][condition][key]": "proposal", "filter[eq][condition][value]": '"P-B"'},
    {"filter[eq][condition][key]": "sample", "filter[eq][condition][value]": '"secret-b"'},
    {"filter[in][condition][key]": "proposal",
     "filter[in][condition][value]": '["P-A", "P-B"]'},
    {"filter[contains][condition][key]": "sample", "filter[contains][condition][value]":
     '"secret"'},
    {"filter[fulltext][condition][text]": "secret"},
    {"filter[fulltext][condition][text]": "P-B"},
    {"filter[eq][condition][key]": "proposal", "filter[eq][condition][value]": '"*"'},
    {"filter[eq][condition][key]": "sample", "filter[eq][condition][value]": '"*"'},
    {"filter[comparison][condition][operator]": "ge",
     "filter[comparison][condition][key]": "start_time",
     "filter[comparison][condition][value]": '"2000-01-01"'},
])
def test_search_never_returns_or_counts_other_proposals(site, params):
    ids, count = search_ids(site, "ann", **params)
    assert count == len(ids)
    assert site.ids["b"] not in ids
    assert site.ids["vol_b"] not in ids
    assert site.ids["n"] not in ids
    assert all(proposal_of(site, i) == "P-A" for i in ids)


def test_search_by_fields_works_for_the_owner(site):
    ids, _ = search_ids(site, "bob", **{"filter[eq][condition][key]": "sample",
                                         "filter[eq][condition][value]": '"secret-b"'})
    assert set(ids) == {site.ids["b"], site.ids["vol_b"]}  # derived inherit the sample
    ids, _ = search_ids(site, "ann", **{"filter[fulltext][condition][text]": "lyso",
                                         "filter[eq][condition][key]": "kind",
                                         "filter[eq][condition][value]": '"tomo/raw"'})
    assert ids == [site.ids["a"]]
    ids, _ = search_ids(site, "ann", **{"filter[in][condition][key]": "kind",
                                         "filter[in][condition][value]":
                                         '["saxs/raw", "saxs/iq"]'})
    assert set(ids) == {site.ids["s"], site.ids["iq"]}
    ids, _ = search_ids(site, "sam", **{"filter[contains][condition][key]": "sample",
                                         "filter[contains][condition][value]": '"phan-"'})
    assert ids == [site.ids["n"]]


# ---------------------------------------------------------------- direct access by id
def _not_found_body(r, ds_id):
    assert r.status_code == 404, r.text
    return r.text.replace(ds_id, "ID")


@pytest.mark.parametrize("path", ["/metadata/{id}", "/search/{id}", "/array/full/{id}/data",
                                  "/array/block/{id}/data?block=0,0,0", "/metadata/{id}/data",
                                  "/array/full/{id}/theta", "/container/full/{id}"])
def test_another_proposals_dataset_is_no_such_entry(site, path):
    """The answer for B's real id is the same as for an id that does not exist."""
    secret = site.ids["b"]
    fake = secret[:-3] + ("XYZ" if not secret.endswith("XYZ") else "ABC")
    theirs = get(site, path.format(id=secret), "ann")
    missing = get(site, path.format(id=fake), "ann")
    assert theirs.status_code == missing.status_code
    assert theirs.status_code in (404, 406), theirs.text
    assert theirs.text.replace(secret, "ID") == missing.text.replace(fake, "ID")
    assert "P-B" not in theirs.text
    assert "secret" not in theirs.text
    # the owner does get it
    if "/container/" not in path:
        assert get(site, path.format(id=secret), "bob").status_code == 200


def test_key_lookup_query_does_not_find_other_proposals(site):
    ids, count = search_ids(site, "ann", **{"filter[lookup][condition][key]": site.ids["b"]})
    assert ids == []
    assert count == 0
    ids, _ = search_ids(site, "bob", **{"filter[lookup][condition][key]": site.ids["b"]})
    assert ids == [site.ids["b"]]


def test_provenance_links_leave_out_other_proposals(site):
    md = get(site, f"/metadata/{site.ids['mixed']}", "ann").json()["data"]["attributes"]
    assert md["metadata"]["parents"] == [site.ids["a"]]
    assert site.ids["b"] not in json.dumps(md)
    md = get(site, f"/metadata/{site.ids['mixed']}", "sam").json()["data"]["attributes"]
    assert set(md["metadata"]["parents"]) == {site.ids["a"], site.ids["b"]}
    md = get(site, f"/metadata/{site.ids['a']}", "ann").json()["data"]["attributes"]
    assert set(md["metadata"]["children"]) == {site.ids["vol_a"], site.ids["mixed"]}


def test_nobody_can_write(site):
    headers = {"Authorization": f"Apikey {site.keys['sam']}"}
    r = site.http.put(f"{site.url}/v1/metadata/{site.ids['a']}", headers=headers,
                      json={"metadata": {"x": 1}})
    assert r.status_code in (403, 404, 405), r.text
    r = site.http.delete(f"{site.url}/v1/metadata/{site.ids['a']}", headers=headers)
    assert r.status_code in (403, 404, 405), r.text
    assert site.ids["a"] in site.catalog


# ---------------------------------------------------------------- injection
@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize("field", ["beamline", "sample", "proposal", "kind", "status"])
def test_injection_in_fields_changes_nothing(site, field, payload):
    before = len(site.catalog)
    for kind in ("eq", "contains") if field in ("sample", "proposal") else ("eq",):
        r = get(site, "/search/", "ann", **{f"filter[{kind}][condition][key]": field,
                                            f"filter[{kind}][condition][value]":
                                            json.dumps(payload)})
        assert r.status_code in (200, 400), r.text
        if r.status_code == 200:
            assert all(proposal_of(site, d["id"]) == "P-A" for d in r.json()["data"])
    r = get(site, "/search/", "ann", **{"filter[in][condition][key]": field,
                                        "filter[in][condition][value]":
                                        json.dumps([payload, "P-B"])})
    assert r.status_code in (200, 400)
    if r.status_code == 200:
        assert all(proposal_of(site, d["id"]) == "P-A" for d in r.json()["data"])
    assert len(site.catalog) == before


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_in_text_time_and_ids_changes_nothing(site, payload):
    before = len(site.catalog)
    ids, _ = search_ids(site, "ann", **{"filter[fulltext][condition][text]": payload})
    assert all(proposal_of(site, i) == "P-A" for i in ids)
    r = get(site, "/search/", "ann", **{"filter[comparison][condition][operator]": "ge",
                                        "filter[comparison][condition][key]": "start_time",
                                        "filter[comparison][condition][value]":
                                        json.dumps(payload)})
    assert r.status_code == 400
    assert "ISO 8601" in r.text
    for path in (f"/metadata/{payload}", f"/array/full/{payload}/data"):
        r = get(site, path.replace("?", "%3F").replace("#", "%23"), "ann")
        assert r.status_code in (404, 422), (path, r.status_code, r.text)
    ids, _ = search_ids(site, "ann", **{"filter[lookup][condition][key]": payload})
    assert ids == []
    assert len(site.catalog) == before
    assert len(site.catalog.search(limit=None)) == before  # the tables are all there


@pytest.mark.parametrize(("params", "words"), [
    ({"filter[eq][condition][key]": "energy", "filter[eq][condition][value]": "10"},
     "not supported"),
    ({"filter[regex][condition][key]": "sample", "filter[regex][condition][pattern]": ".*",
      "filter[regex][condition][case_sensitive]": "true"}, "not supported"),
    ({"filter[eq][condition][key]": "sample", "filter[eq][condition][value]": '{"a": 1}'},
     "expected a text value"),
    ({"filter[eq][condition][key]": "sample",
      "filter[eq][condition][value]": json.dumps("x" * 600)}, "longer than"),
])
def test_bad_queries_get_a_clear_400(site, params, words):
    r = get(site, "/search/", "ann", **params)
    assert r.status_code == 400, r.text
    assert words in r.json()["detail"]


# ---------------------------------------------------------------- keys at rest
def test_keys_are_stored_hashed(site):
    path = site.database.split("///", 1)[1]
    raw = b"".join(Path(path + suffix).read_bytes() for suffix in ("", "-wal", "-shm")
                   if Path(path + suffix).exists())
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT first_eight, hashed_secret FROM api_keys").fetchall()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(rows) == len(site.keys)
    hashes = {bytes(h) for _, h in rows}
    for key in site.keys.values():
        assert key.encode() not in raw
        assert bytes.fromhex(key) not in raw
        assert key[8:].encode() not in raw
        assert hashlib.sha256(bytes.fromhex(key)).digest() in hashes


# ---------------------------------------------------------------- data
def test_arrays_are_read_on_the_server(site):
    headers = {"Authorization": f"Apikey {site.keys['ann']}"}
    url = f"{site.url}/v1/array/full/{site.ids['a']}/data"
    r = site.http.get(url, headers=headers, params={"slice": "3,1:3"})
    assert r.status_code == 200
    with h5py.File(site.work / "a.h5") as f:
        expected = f["exchange/data"][3, 1:3]
    got = np.frombuffer(r.content, dtype=expected.dtype).reshape(expected.shape)
    np.testing.assert_array_equal(got, expected)
