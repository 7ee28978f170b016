"""Tiled's own client and spotkit's remote catalog on a real server."""

from __future__ import annotations

import datetime as dt

import h5py
import numpy as np
import pytest
from tiled.client import from_uri
from tiled.queries import Comparison, Contains, Eq, FullText, In

from spotkit.errors import CatalogError, DatasetNotFoundError
from spotkit.serve import open_remote


@pytest.fixture(scope="module")
def ann(site):
    return from_uri(site.url, api_key=site.keys["ann"], remember_me=False)


def test_tiled_client_lists_searches_and_reads(site, ann):
    ids = site.ids
    assert set(ann) == {ids[k] for k in ("a", "s", "vol_a", "iq", "mixed")}
    assert len(ann) == 5
    assert list(ann.search(Eq("kind", "tomo/raw"))) == [ids["a"]]
    assert set(ann.search(In("kind", ["saxs/raw", "saxs/iq"]))) == {ids["s"], ids["iq"]}
    assert list(ann.search(Contains("sample", "film")).search(Eq("kind", "saxs/raw"))) == [
        ids["s"]]
    assert list(ann.search(FullText("secret"))) == []
    assert len(ann.search(Comparison("ge", "start_time", "2999-01-01"))) == 0
    assert ids["b"] not in ann
    with pytest.raises(KeyError):
        ann[ids["b"]]
    scan = ann[ids["a"]]
    assert scan.metadata["proposal"] == "P-A"
    assert set(scan) == {"data", "flats", "darks", "theta"}
    with h5py.File(site.work / "a.h5") as f:
        np.testing.assert_array_equal(scan["data"][2:5, 1], f["exchange/data"][2:5, 1])
        np.testing.assert_array_equal(scan["flats"].read(), f["exchange/data_white"][()])
    assert scan["data"].structure().dims == ("angle", "row", "col")
    assert scan["theta"].read().shape == (12,)


def test_derived_arrays_and_tables(site, ann):
    vol = ann[site.ids["vol_a"]]
    with h5py.File(site.work / "vol_a.h5") as f:
        np.testing.assert_array_equal(vol["data"].read(), f["recon"][()])
        np.testing.assert_array_equal(vol["data"][::2, 3, ::-3], f["recon"][::2, 3][:, ::-3])
    iq = ann[site.ids["iq"]]
    assert set(iq) == {"data", "q", "sigma"}
    assert iq["q"].metadata["units"] == "nm^-1"
    with h5py.File(site.work / "iq.h5") as f:
        np.testing.assert_allclose(iq["data"].read(), f["intensity"][()])
    md = iq.metadata
    assert md["parents"] == [site.ids["s"]]
    assert md["files"][0]["name"] == "iq.h5"
    assert str(site.work) not in str(dict(md))  # no server paths


def test_frame_series_and_marks(site, ann):
    series = ann[site.ids["s"]]
    assert series["data"].structure().dims == ("frame", "row", "col")
    assert series.metadata["frame_marks"] == {"redundant": [[0, 2]], "of interest": [[3, 5]]}
    with h5py.File(site.work / "s.h5") as f:
        np.testing.assert_array_equal(series["data"][4], f["entry/data/data"][4])


def test_spotkit_remote_catalog(site):
    cat = open_remote(site.url, api_key=site.keys["bob"])
    hits = cat.search(kind="tomo/raw")
    assert hits.total == 1
    assert hits.ids == [site.ids["b"]]
    assert cat.search(proposal="P-A").total == 0
    assert cat.search(sample="secret*", since=dt.date(2000, 1, 1), limit=1).total == 2
    ds = cat[site.ids["b"]]
    assert (ds.kind, ds.proposal, ds.sample) == ("tomo/raw", "P-B", "secret-b")
    assert isinstance(ds.start_time, dt.datetime)
    scan = ds.to_xarray()
    assert scan["data"].dims == ("angle", "row", "col")
    with h5py.File(site.work / "b.h5") as f:
        np.testing.assert_array_equal(scan["data"][7].values, f["exchange/data"][7])
        one = ds["data"][7, 1:]
        assert isinstance(one, np.ndarray)
        np.testing.assert_array_equal(one, f["exchange/data"][7, 1:])
        np.testing.assert_array_equal(ds.read("darks"), f["exchange/data_dark"][()])
    assert scan["theta"].values[1] > scan["theta"].values[0]
    assert site.ids["a"] not in cat
    with pytest.raises(DatasetNotFoundError):
        cat[site.ids["a"]]
    staff = open_remote(site.url, api_key=site.keys["sam"])
    assert len(staff) == len(site.ids)
    page = staff.search(limit=3, offset=3)
    assert page.total == len(site.ids)
    assert len(page) == 3


def test_remote_catalog_refuses_bad_urls_and_keys(site):
    with pytest.raises(ValueError, match="http"):
        open_remote("ftp://example.org/api")
    with pytest.raises(CatalogError, match=r"refused the API key"):
        open_remote(site.url, api_key="0" * 72)


def test_spotkit_open_catalog_takes_a_serve_address(site):
    """spotkit.open_catalog(url) is the one entry point: a server's address opens it
    read-only; spotkit.catalog.open_catalog (the data layer) says where to go instead."""
    import spotkit
    from spotkit.catalog import open_catalog as open_database

    cat = spotkit.open_catalog(site.url, api_key=site.keys["ann"])
    assert site.ids["a"] in cat
    assert site.ids["b"] not in cat
    with pytest.raises(CatalogError, match=r"spotkit serve address.*open_catalog\(url, api_key"):
        open_database(site.url)
