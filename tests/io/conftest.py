"""Tiny twin files shared by the reader tests (written once per session)."""

from __future__ import annotations

import shutil

import pytest

from spotkit.sim import simulate_saxs_series, simulate_tomo_scan


@pytest.fixture(scope="session")
def twin_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    simulate_tomo_scan(
        root / "scan.h5",
        shape=(24, 4, 32),
        n_flats=3,
        n_darks=2,
        sample="rock core",
        proposal="ALS-4242",
        seed=2,
    )
    simulate_saxs_series(
        root / "series.h5",
        n_frames=5,
        shape=(32, 40),
        onset_frame=2,
        sample="polymer",
        proposal="ALS-77",
        seed=2,
    )
    simulate_saxs_series(root / "gi.h5", n_frames=2, shape=(32, 40), mode="gisaxs", seed=2)
    return root


@pytest.fixture
def tomo_file(twin_dir, tmp_path):
    """A private copy of the twin tomo scan that a test may break."""
    return shutil.copy(twin_dir / "scan.h5", tmp_path / "scan.h5")


@pytest.fixture
def saxs_file(twin_dir, tmp_path):
    """A private copy of the twin SAXS series and its PONI file."""
    shutil.copy(twin_dir / "series.poni", tmp_path / "series.poni")
    return shutil.copy(twin_dir / "series.h5", tmp_path / "series.h5")
