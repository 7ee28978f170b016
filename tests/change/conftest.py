"""Small seeded twin series for the change-detection tests (64 x 96 frames, with gaps)."""

from __future__ import annotations

import h5py
import pytest

from spotkit.sim import simulate_saxs_series

SMALL = {"shape": (64, 96), "module_shape": (30, 45), "module_gap": (2, 3),
         "diffuse_counts": 500.0, "ring_strength": 1.0}


def twin(path, *, onset, seed, n_frames=30, **kw):
    """Simulate a small series; return (truth, frames as an int32 ndarray)."""
    opts = {**SMALL, **kw}
    truth = simulate_saxs_series(path, n_frames=n_frames, onset_frame=onset, seed=seed,
                                 overwrite=True, **opts)
    with h5py.File(truth.path) as f:
        frames = f["entry/data/data"][()]
    return truth, frames


@pytest.fixture(scope="module")
def changing(tmp_path_factory):
    """Three seeded series with a ring appearing at a known frame (grows over 5 frames)."""
    d = tmp_path_factory.mktemp("change")
    return [twin(d / f"c{seed}.h5", onset=onset, seed=seed)
            for seed, onset in ((1, 14), (2, 17), (3, 20))]


@pytest.fixture(scope="module")
def stationary(tmp_path_factory):
    """Three seeded series in which nothing changes."""
    d = tmp_path_factory.mktemp("stationary")
    return [twin(d / f"s{seed}.h5", onset=10_000, seed=seed) for seed in (11, 12, 13)]
