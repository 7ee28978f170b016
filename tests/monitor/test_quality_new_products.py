"""check_new_products: the products without a verdict, oldest first, each checked once."""

from __future__ import annotations

import time

import pytest

from spotkit.catalog import open_catalog
from spotkit.monitor import check_new_products, quality_verdict
from spotkit.sim import simulate_tomo_scan


@pytest.fixture
def catalog(tmp_path):
    cat = open_catalog(tmp_path / "catalog.db")
    ids = []
    for i in range(3):
        path = tmp_path / f"scan_{i}.h5"
        simulate_tomo_scan(path, shape=(8, 4, 32), seed=i)
        ids.append(cat.ingest(path).id)
    return cat, ids


def test_each_product_is_checked_once_oldest_first(catalog):
    cat, ids = catalog
    first = check_new_products(cat, limit=2)
    assert [v.dataset_id for v in first] == ids[:2]
    rest = check_new_products(cat)
    assert [v.dataset_id for v in rest] == ids[2:]
    assert check_new_products(cat) == []
    assert all(quality_verdict(cat, i) is not None for i in ids)


def test_since_leaves_older_products_alone(catalog):
    cat, ids = catalog
    assert check_new_products(cat, since=time.time() + 60) == []
    assert quality_verdict(cat, ids[0]) is None


def test_limit_must_be_positive(catalog):
    cat, _ = catalog
    with pytest.raises(ValueError, match="limit"):
        check_new_products(cat, limit=0)


def test_the_monitor_beside_a_watcher_checks_new_products(tmp_path):
    from spotkit.flows import Watcher, load_rules, start_monitor

    (tmp_path / "inbox").mkdir()
    (tmp_path / "warehouse").mkdir()
    simulate_tomo_scan(tmp_path / "inbox" / "scan_0001.h5", shape=(8, 4, 32), seed=0)
    rules = load_rules("""
targets: {local: {kind: local, max_workers: 1}}
rules:
  - {name: saxs, match: {kind: saxs/raw},
     actions: [{name: quick, notebook: saxs_quicklook, target: local}]}
alerts:
  - {name: ops, match: {kind: [quality]}, log: {level: warning}}
""")
    watcher = Watcher(tmp_path / "inbox", catalog=tmp_path / "catalog.db", rules=rules,
                      warehouse=tmp_path / "warehouse", settle=0)
    try:
        watcher.run_once()
        (raw,) = watcher.catalog.search(kind="tomo/raw")
        assert quality_verdict(watcher.catalog, raw.id) is None
        loop = start_monitor(watcher, period=3600)
        try:
            loop.check()
        finally:
            loop.stop()
        assert quality_verdict(watcher.catalog, raw.id).verdict == "no reference"
    finally:
        watcher.close()
