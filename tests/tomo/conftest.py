"""Fixtures for the reconstruction tests: small twin scans with known truth."""

from __future__ import annotations

import numpy as np
import pytest

RECON_SHAPE = (181, 3, 128)  # angles, rows, columns
RECON_ROW = 1


@pytest.fixture(scope="session")
def recon_scan(tmp_path_factory):
    """Noisy twin scan (no ring columns): its normalised -log sinogram, the exact one, truth."""
    import h5py

    from spotkit.sim import simulate_tomo_scan
    from spotkit.tomo import minus_log, normalize

    path = tmp_path_factory.mktemp("recon") / "scan.h5"
    truth = simulate_tomo_scan(path, shape=RECON_SHAPE, center_offset=3.5, seed=3,
                               noise=True, ring_columns=0)
    with h5py.File(path, "r") as f:
        proj = f["/exchange/data"][:, RECON_ROW:RECON_ROW + 1]
        flats = f["/exchange/data_white"][:, RECON_ROW:RECON_ROW + 1]
        darks = f["/exchange/data_dark"][:, RECON_ROW:RECON_ROW + 1]
    noisy = minus_log(normalize(proj, flats, darks))[:, 0]
    return {
        "noisy": noisy.astype(np.float32),
        "exact": truth.sinogram(RECON_ROW).astype(np.float32),
        "theta": np.deg2rad(truth.theta),
        "center": truth.center,
        "phantom": truth.phantom_slice(RECON_ROW, units="1/pixel"),
        "truth": truth,
    }
