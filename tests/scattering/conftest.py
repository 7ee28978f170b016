"""Small simulated SAXS and GISAXS series for the scattering tests (the twin knows the truth)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def saxs(tmp_path_factory):
    """8 frames of a Pilatus-100K-like SAXS series; the ring (q = 1 nm^-1) from frame 4 on."""
    from spotkit.sim import simulate_saxs_series

    path = tmp_path_factory.mktemp("scattering") / "saxs.h5"
    return simulate_saxs_series(path, n_frames=8, onset_frame=4, ring_growth_frames=0,
                                ring_strength=3.0, seed=11)


@pytest.fixture(scope="session")
def stationary(tmp_path_factory):
    """10 statistically identical frames (no onset): for the Poisson error check."""
    from spotkit.sim import simulate_saxs_series

    path = tmp_path_factory.mktemp("scattering") / "stationary.h5"
    return simulate_saxs_series(path, n_frames=10, onset_frame=100, seed=12)


@pytest.fixture(scope="session")
def gisaxs(tmp_path_factory):
    """A GISAXS series at 0.2 deg incidence with Bragg rods at |q_y| = 0.8 nm^-1."""
    from spotkit.sim import simulate_saxs_series

    path = tmp_path_factory.mktemp("scattering") / "gisaxs.h5"
    return simulate_saxs_series(path, n_frames=2, onset_frame=0, ring_growth_frames=0,
                                ring_q_nm=0.8, ring_strength=5.0, mode="gisaxs",
                                incidence_angle_deg=0.2, seed=13)


@pytest.fixture
def saxs_frames(saxs):
    from spotkit.io import open_saxs

    return open_saxs(saxs.path)


@pytest.fixture
def saxs_ai(saxs):
    from spotkit.scattering import load_geometry

    return load_geometry(saxs.poni_path)
