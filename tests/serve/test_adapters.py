"""The adapters without a server: layouts read through spotkit.io (NXtomo, .npy), paging,
and the HDF5 reader's selections."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from tiled.ndslice import NDSlice
from tiled.queries import Eq

from spotkit.catalog import open_catalog
from spotkit.io import open_tomo
from spotkit.serve._adapters import CatalogAdapter, HDF5ArrayAdapter, slab_chunks
from spotkit.serve._query import ProposalAccess
from spotkit.sim import simulate_tomo_scan, write_nxtomo


@pytest.fixture
def cat(tmp_path):
    simulate_tomo_scan(tmp_path / "dx.h5", shape=(10, 2, 32), seed=0, proposal="P-1",
                       sample="s-dx")
    write_nxtomo(tmp_path / "scan.nx", tmp_path / "dx.h5", variant="esrf")
    np.save(tmp_path / "vol.npy", np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5))
    with open_catalog(tmp_path / "catalog.db") as catalog:
        nx = catalog.ingest(tmp_path / "scan.nx")
        catalog.register_derived(files=[(tmp_path / "vol.npy", "data")], kind="tomo/recon",
                                 parents=[nx])
        for i in range(7):  # datasets of another proposal, for paging
            simulate_tomo_scan(tmp_path / f"o{i}.h5", shape=(4, 1, 32), seed=i,
                               proposal="P-2")
            catalog.ingest(tmp_path / f"o{i}.h5")
        yield catalog


def test_nxtomo_and_npy_are_served_through_spotkit_io(cat, tmp_path):
    root = CatalogAdapter(cat)
    nx = root[cat.search(kind="tomo/raw", proposal="P-1")[0].id]
    assert list(nx) == ["data", "flats", "darks", "theta"]
    expected = open_tomo(tmp_path / "scan.nx")
    np.testing.assert_array_equal(nx["data"].read(NDSlice(3)), expected["data"][3].values)
    np.testing.assert_array_equal(nx["flats"].read(), expected["flats"].values)
    np.testing.assert_allclose(nx["theta"].read(), expected["theta"].values)
    assert nx["data"].structure().dims == ("angle", "row", "col")
    vol = root[cat.search(kind="tomo/recon")[0].id]
    assert list(vol) == ["data"]
    np.testing.assert_array_equal(vol["data"].read(NDSlice(1, slice(None), 2)),
                                  np.load(tmp_path / "vol.npy")[1, :, 2])


def test_paging_counts_and_lookup_stay_inside_the_allowed_proposals(cat):
    mine = CatalogAdapter(cat).search(ProposalAccess(frozenset({"P-2"})))
    assert len(mine) == 7
    forward = mine.keys()[0:7]
    assert list(forward) == [d.id for d in cat.search(proposal="P-2", limit=None)]
    assert list(mine.keys()[2:4]) == forward[2:4]
    assert mine._keys_slice(0, 3, -1) == list(reversed(forward))[0:3]
    assert list(mine) == forward
    other = cat.search(proposal="P-1", limit=None).ids
    for ds_id in other:
        with pytest.raises(KeyError):
            mine[ds_id]
    assert len(mine.search(Eq("proposal", "P-1"))) == 0
    assert len(CatalogAdapter(cat)) == len(cat)


def test_hdf5_selections(tmp_path):
    data = np.arange(6 * 5 * 4, dtype=np.int32).reshape(6, 5, 4)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("g/x", data=data, chunks=(1, 5, 4))
    arr = HDF5ArrayAdapter(tmp_path / "a.h5", "/g/x", proposal="P")
    for index in [(), (2,), (-1, 1), (slice(1, 5, 2),), (slice(None, None, -2), 3),
                  (slice(4, 0, -1), slice(None), slice(1, 3)), (slice(3, 3),),
                  (Ellipsis, 2)]:
        np.testing.assert_array_equal(arr.read(NDSlice(*index)), data[index])
    assert arr.structure().chunks == slab_chunks(data.shape, 4)
    np.testing.assert_array_equal(arr.read_block((0, 0, 0)), data)
    with pytest.raises(KeyError):
        HDF5ArrayAdapter(tmp_path / "a.h5", "/g/missing", proposal="P")
