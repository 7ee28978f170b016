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
    from spotkit.io import load_geometry

    return load_geometry(saxs.poni_path)


@pytest.fixture(scope="session")
def fake_calibrant():
    """Factory: a Poisson image of a calibrant's rings faked by pyFAI, and its true geometry."""
    import numpy as np

    def make(name, *, distance_m, beam_center, shape=(256, 256), resolution=0.02,
             energy_kev=12.4, seed=0, gap=True, tilt=(0.0, 0.0)):
        from pyFAI.calibrant import get_calibrant

        from spotkit.scattering import make_geometry

        truth = make_geometry(energy_kev=energy_kev, distance_m=distance_m,
                              beam_center=beam_center, pixel_size_um=172, shape=shape,
                              rot1=tilt[0], rot2=tilt[1])
        cal = get_calibrant(name)
        cal.wavelength = truth.wavelength
        image = cal.fake_calibration_image(truth, Imax=1000, Imin=10, resolution=resolution)
        image = np.random.default_rng(seed).poisson(image).astype(np.int32)
        if gap:
            image[100:104, :] = -1  # a module gap
        return truth, image

    return make
