"""catalog.ingest of a Dectris Eiger master (the live twin's): one dataset with the master, its
data files (role "frames", each with its checksum), PONI and mask; it opens through the
catalog and goes through the SAXS reduction of the saxs_reduce notebook."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from spotkit.catalog import open_catalog
from spotkit.change import detect_changes, reduction_policy
from spotkit.errors import InputFileError
from spotkit.io import load_geometry
from spotkit.scattering import integrate_frames, shadow_mask
from spotkit.sim import LiveSeriesWriter, Transition

SHAPE = (40, 48)
N, PER_FILE, ONSET = 18, 5, 9  # four data files: 5 + 5 + 5 + 3 frames


def test_ingest_an_eiger_master_and_reduce_it(tmp_path):
    writer = LiveSeriesWriter(tmp_path / "run_master.h5", fmt="eiger", frames_per_file=PER_FILE,
                              n_frames=N, shape=SHAPE, module_shape=None, seed=5,
                              transitions=[Transition(ONSET, "radius_nm", 7.0)],
                              frame_interval_s=1.0, swmr=False)
    writer.write(N)
    truth = np.stack([writer.frame(k) for k in range(N)])
    cat = open_catalog(tmp_path / "catalog.db")
    ds = cat.ingest(writer.path)
    assert (ds.kind, ds.status, ds.path) == ("saxs/raw", "raw", writer.path)
    assert [(f.path, f.role) for f in ds.files] == [
        (writer.path, "data"), *((p, "frames") for p in writer.data_files),
        (writer.truth.poni_path, "geometry"), (writer.truth.mask_path, "mask")]
    for f in ds.files:  # every file with its checksum, the data files too
        assert f.sha256 == hashlib.sha256(f.path.read_bytes()).hexdigest()
        assert f.size == f.path.stat().st_size
    assert ds.metadata["n_frames"] == N
    assert ds.metadata["n_data_files"] == 4
    assert cat.ingest(writer.path).id == ds.id  # idempotent

    # the reduction of notebooks/saxs_reduce.ipynb
    frames = ds.to_xarray()
    np.testing.assert_array_equal(frames.values, truth)
    np.testing.assert_array_equal(ds.to_dask()[N - 1].compute(), truth[N - 1])
    poni = next(f.path for f in ds.files if f.role == "geometry")
    ai = load_geometry(poni, shape=frames.shape[1:])
    mask = shadow_mask(frames[:5].mean("frame").values, ai)
    iq = integrate_frames(frames.data, ai, npt=40, mask=mask,
                          frame_coords=frames["time"].values).compute()
    same = integrate_frames(truth, ai, npt=40, mask=mask).compute()
    assert iq["intensity"].shape == (N, 40)
    np.testing.assert_allclose(iq["intensity"].values, same["intensity"].values)
    changes = detect_changes(frames, mask=mask, warmup=4)
    assert [abs(e.onset - ONSET) <= 1 for e in changes.events] == [True]
    plan = reduction_policy(changes, before=2, after=2, every=5)
    assert plan.n_frames == N
    assert plan.keep[ONSET]
    cat.close()


def test_a_data_file_the_live_session_lost(tmp_path):
    """A series ingested with frames recorded missing (a live session gave up waiting for a
    data file): opening it says what the catalog recorded."""
    writer = LiveSeriesWriter(tmp_path / "run_master.h5", fmt="eiger", frames_per_file=2,
                              n_frames=6, shape=(16, 16), module_shape=None, transitions=(),
                              swmr=False)
    writer.write(6)
    cat = open_catalog(tmp_path / "catalog.db")
    ds = cat.ingest(writer.path, extra_metadata={"missing_frames": [2, 3],
                                                 "missing_files": ["run_data_000002.h5"]})
    writer.data_files[1].unlink()
    for opening in (ds.to_xarray, ds.to_dask):
        with pytest.raises(InputFileError, match=r"run_data_000002\.h5 is missing .*The "
                           rf"catalog recorded 2 frame\(s\) of dataset {ds.id} as missing when "
                           r"it was ingested \(frames 2-3; data file\(s\) run_data_000002\.h5\)"):
            opening()
    with pytest.raises(InputFileError, match=r"run_data_000002\.h5 is missing"):
        cat.ingest(writer.path)  # a plain ingest needs every data file
    cat.close()
