"""Tests of the simulated tomography scan (spotkit.sim.simulate_tomo_scan)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from spotkit.sim import TomoScanTruth, simulate_tomo_scan

SHAPE = (60, 6, 64)
#: Cases tomopy 1.15.2 projected and reconstructed itself (see its README).
REFERENCE = Path(__file__).parents[1] / "reference" / "tomopy-1.15.2" / "conventions.npz"


@pytest.fixture(scope="module")
def clean_scan(tmp_path_factory):
    """A noiseless scan without ring columns, and its -log normalised projections."""
    path = tmp_path_factory.mktemp("tomo") / "clean.h5"
    truth = simulate_tomo_scan(path, shape=SHAPE, noise=False, ring_columns=0, seed=3)
    with h5py.File(path, "r") as f:
        data = f["exchange/data"][()].astype(np.float64)
        flat = f["exchange/data_white"][()].mean(axis=0)
        dark = f["exchange/data_dark"][()].mean(axis=0)
    proj = -np.log((data - dark) / (flat - dark))
    return truth, proj


def test_file_has_every_field(tmp_path):
    path = tmp_path / "scan.h5"
    truth = simulate_tomo_scan(
        path,
        shape=SHAPE,
        sample="bone",
        proposal="ALS-123",
        experimenter="Ada",
        energy_kev=30.0,
        pixel_size_um=1.3,
    )
    n_angles, n_rows, n_cols = SHAPE
    with h5py.File(path, "r") as f:
        assert f.attrs["implements"] == "exchange:measurement:process"
        for key, n in (("data", n_angles), ("data_white", 10), ("data_dark", 10)):
            ds = f["exchange"][key]
            assert ds.shape == (n, n_rows, n_cols)
            assert ds.dtype == np.uint16
            assert ds.chunks == (1, n_rows, n_cols)
        assert f["exchange/data"].maxshape == (None, n_rows, n_cols)
        theta = f["exchange/theta"]
        assert theta.dtype == np.float64
        assert theta.attrs["units"] == "degrees"
        np.testing.assert_allclose(theta[()], np.linspace(0, 180, n_angles, endpoint=False))
        strings = {
            "measurement/instrument/name": "ALS 8.3.2",
            "measurement/instrument/source/name": "Advanced Light Source",
            "measurement/instrument/source/beamline": "8.3.2",
            "measurement/sample/name": "bone",
            "measurement/sample/experiment/proposal": "ALS-123",
            "measurement/sample/experimenter/name": "Ada",
        }
        for key, value in strings.items():
            ds = f[key]
            assert ds.shape == ()
            assert h5py.check_string_dtype(ds.dtype).encoding == "utf-8"
            assert ds[()].decode() == value
        numbers = {
            "measurement/instrument/monochromator/energy": (30.0, "keV"),
            "measurement/instrument/detector/pixel_size_x": (1.3, "um"),
            "measurement/instrument/detector/pixel_size_y": (1.3, "um"),
            "measurement/instrument/detector/exposure_time": (0.1, "s"),
        }
        for key, (value, units) in numbers.items():
            assert f[key][()] == pytest.approx(value)
            assert f[key].attrs["units"] == units
        start = datetime.fromisoformat(f["process/acquisition/start_date"][()].decode())
        end = datetime.fromisoformat(f["process/acquisition/end_date"][()].decode())
        assert start.tzinfo is not None
        assert end > start
    assert truth.center == pytest.approx(n_cols / 2 + 5.25)
    assert truth.shape == SHAPE
    assert len(truth.ring_columns) == 3


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    def data(name, seed):
        simulate_tomo_scan(tmp_path / name, shape=(20, 4, 32), seed=seed)
        with h5py.File(tmp_path / name, "r") as f:
            return f["exchange/data"][()].tobytes(), f["process/acquisition/start_date"][()]

    a, b, c = data("a.h5", 7), data("b.h5", 7), data("c.h5", 8)
    assert a == b
    assert a[0] != c[0]
    assert a[1] != c[1]


def test_start_time_is_used(tmp_path):
    t0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    simulate_tomo_scan(tmp_path / "s.h5", shape=(8, 2, 32), start_time=t0)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f["process/acquisition/start_date"][()].decode() == "2025-01-02T03:04:05+00:00"


def test_centre_of_mass_of_sinogram_gives_the_axis(clean_scan):
    # Parallel beam: the centre of mass of each projection row is center + A cos(theta - a),
    # positions measured from the left edge of column 0 (tomopy's convention).
    truth, proj = clean_scan
    theta = np.deg2rad(truth.theta)
    u = np.arange(SHAPE[2]) + 0.5
    for row in (1, 4):
        sino = proj[:, row, :]
        com = (sino * u).sum(axis=1) / sino.sum(axis=1)
        design = np.column_stack([np.ones_like(theta), np.cos(theta), np.sin(theta)])
        center, *_ = np.linalg.lstsq(design, com, rcond=None)[0]
        # point samples of sharp-edged projections: exact to ~0.06 px (seed 3: 37.19 for 37.25)
        assert center == pytest.approx(truth.center, abs=0.1)
        assert np.hypot(*np.linalg.lstsq(design, com, rcond=None)[0][1:]) > 0.5  # off-axis


@pytest.mark.parametrize("offset", [5.5, -3.0])
def test_opposite_projection_is_mirrored_about_center(tmp_path, offset):
    # With 2 * center an integer, p(u, 180) == p(2 center - u, 0) maps column to column
    # (column j sits at u = j + 1/2, so it mirrors onto column 2 center - j - 1).
    truth = simulate_tomo_scan(
        tmp_path / "m.h5", shape=(2, 3, 64), center_offset=offset, noise=False
    )
    p0, p180 = truth.sinogram(1, theta=[0.0, 180.0])
    j = np.arange(64)
    mirror = (2 * truth.center - j - 1).astype(int)
    ok = (mirror >= 0) & (mirror < 64)
    np.testing.assert_allclose(p180[ok], p0[mirror[ok]], atol=1e-9)
    assert p0.max() > 0.5


def test_file_matches_analytic_sinogram(clean_scan):
    truth, proj = clean_scan
    # Only rounding of noiseless counts to integers separates the two.
    np.testing.assert_allclose(proj[:, 3, :], truth.sinogram(3), atol=2e-3)
    assert 1.2 < proj.max() < 2.2  # optical depth scaled to ~1.8


def test_phantom_slice_integrates_to_the_zero_degree_projection(clean_scan):
    truth, proj = clean_scan
    n = SHAPE[2]
    img = truth.phantom_slice(3, units="1/pixel")
    assert img.shape == (n, n)
    line = img.sum(axis=0)  # beam along y at theta = 0
    u = truth.center + np.arange(n) - (n - 1) / 2  # position from column 0's left edge
    measured = np.interp(u - 0.5, np.arange(n), proj[0, 3])
    assert np.mean(np.abs(line - measured)) < 0.01 * proj.max()
    np.testing.assert_allclose(
        truth.phantom_slice(3, units="1/cm") * truth.pixel_size_cm, img, rtol=1e-12
    )


def _fbp(sino, theta_deg, center, n):
    """Minimal ramp-filtered back-projection in the documented geometry (tomopy's)."""
    n_angles, n_cols = sino.shape
    pad = 4 * n_cols
    ramp = 2 * np.abs(np.fft.fftfreq(pad))
    filtered = np.fft.ifft(np.fft.fft(sino, pad, axis=1) * ramp, axis=1).real[:, :n_cols]
    c = np.arange(n) - (n - 1) / 2
    x, y = np.meshgrid(c, c)  # x along array columns, y along array rows
    rec = np.zeros((n, n))
    for k, t in enumerate(np.deg2rad(theta_deg)):
        u = center - 0.5 + x * np.cos(t) - y * np.sin(t)  # column-centre coordinate
        rec += np.interp(u, np.arange(n_cols), filtered[k])
    return rec * np.pi / (2 * n_angles)


def test_fbp_with_the_true_center_reproduces_the_phantom_slice(tmp_path):
    truth = simulate_tomo_scan(
        tmp_path / "fbp.h5", shape=(180, 3, 96), noise=False, ring_columns=0, center_offset=-6.5
    )
    rec = _fbp(truth.sinogram(1), truth.theta, truth.center, 96)
    ref = truth.phantom_slice(1, units="1/pixel")
    c = np.arange(96) - 47.5
    inside = np.hypot(*np.meshgrid(c, c)) < 30
    assert np.corrcoef(rec[inside], ref[inside])[0, 1] > 0.98
    assert np.corrcoef(rec.T[inside], ref[inside])[0, 1] < 0.8  # the convention matters


def test_ring_columns_have_the_gain_error_and_flats_do_not(tmp_path):
    truth = simulate_tomo_scan(
        tmp_path / "ring.h5", shape=(10, 4, 64), noise=False, ring_columns=3, ring_strength=0.05
    )
    with h5py.File(truth.path, "r") as f:
        data = f["exchange/data"][()].astype(float)
        flat = f["exchange/data_white"][()].mean(axis=0)
        dark = f["exchange/data_dark"][()].mean(axis=0)
    gain = ((data - dark) / (flat - dark) * np.exp(truth.sinogram(2)[:, None, :]))[:, 2]
    expected = np.ones(64)
    expected[list(truth.ring_columns)] = truth.ring_gains
    np.testing.assert_allclose(gain.mean(axis=0), expected, atol=0.005)
    assert set(np.round(np.abs(np.array(truth.ring_gains) - 1), 6)) == {0.05}


def test_beam_drift_scales_the_last_projection(tmp_path):
    truth = simulate_tomo_scan(
        tmp_path / "drift.h5", shape=(12, 2, 32), noise=False, beam_drift=-0.1, ring_columns=0
    )
    with h5py.File(truth.path, "r") as f:
        data = f["exchange/data"][()].astype(float)
        dark = f["exchange/data_dark"][0].astype(float)
    ratio = (
        (data[-1] - dark)
        / (data[0] - dark)
        * np.exp(truth.sinogram(0, truth.theta[[-1]])[0] - truth.sinogram(0, truth.theta[[0]])[0])
    )
    assert np.median(ratio) == pytest.approx(0.9, abs=0.005)


def test_file_is_incomplete_while_being_written(tmp_path):
    path = tmp_path / "growing.h5"
    snapshots = []

    def progress(stage, done, total):
        if stage == "projections" and done < total:
            snap = tmp_path / f"snap{done}.h5"
            shutil.copy(path, snap)  # what a watcher would see at this moment
            snapshots.append((snap, done, Path(f"{path}.done").exists()))

    simulate_tomo_scan(path, shape=(40, 2, 32), sentinel=True, progress=progress)
    assert snapshots, "the scan was written in one block"
    for snap, done, had_sentinel in snapshots:
        assert not had_sentinel
        with h5py.File(snap, "r") as f:
            assert f["exchange/data"].shape[0] == done < 40
            assert "theta" not in f["exchange"]
            assert "process" not in f
    assert Path(f"{path}.done").exists()
    with h5py.File(path, "r") as f:
        assert f["exchange/data"].shape[0] == 40
        assert f["exchange/theta"].shape == (40,)


def test_write_delay_and_thread_observer(tmp_path):
    # A reader polling from another thread never sees the sentinel before the data is done.
    import threading
    import time

    path = tmp_path / "slow.h5"
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(Path(f"{path}.done").exists())
            time.sleep(0.005)

    thread = threading.Thread(target=watch)
    thread.start()
    t0 = time.perf_counter()
    simulate_tomo_scan(path, shape=(33, 2, 32), write_delay=0.05, sentinel=True)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    assert elapsed >= 0.1  # two sleeps between three blocks of 16
    assert seen
    assert not seen[0]
    assert Path(f"{path}.done").exists()


def test_truth_roundtrip(tmp_path):
    truth = simulate_tomo_scan(
        tmp_path / "t.h5", shape=(8, 2, 32), truth_path=tmp_path / "truth.json"
    )
    loaded = TomoScanTruth.load(tmp_path / "truth.json")
    assert loaded.center == truth.center
    assert loaded.ellipsoids == truth.ellipsoids
    assert loaded.ring_columns == truth.ring_columns
    np.testing.assert_array_equal(loaded.theta, truth.theta)
    np.testing.assert_array_equal(loaded.phantom_slice(1, 16), truth.phantom_slice(1, 16))


def test_refuses_to_overwrite_and_validates(tmp_path):
    path = tmp_path / "x.h5"
    simulate_tomo_scan(path, shape=(4, 2, 32))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        simulate_tomo_scan(path, shape=(4, 2, 32))
    simulate_tomo_scan(path, shape=(4, 2, 32), overwrite=True)
    with pytest.raises(ValueError, match="shape"):
        simulate_tomo_scan(tmp_path / "y.h5", shape=(4, 32))
    with pytest.raises(ValueError, match="uint16"):
        simulate_tomo_scan(tmp_path / "z.h5", shape=(4, 2, 32), flat_counts=70000)
    with pytest.raises(ValueError, match="units"):
        simulate_tomo_scan(tmp_path / "w.h5", shape=(4, 2, 32)).phantom_slice(0, units="mm")


def test_projector_puts_a_point_where_tomopy_does():
    """One bright pixel (row 40, column 180 of 256) projected by tomopy 1.15.2 at centre 128
    (shared/reference/tomopy-1.15.2): the twin's projector of a tiny disc at that pixel puts
    its mass on the same detector position at every angle."""
    from spotkit.sim._phantom import Ellipsoid, line_integrals

    ref = np.load(REFERENCE)
    theta_deg = np.rad2deg(ref["theta"].astype(np.float64))
    disc = Ellipsoid(180 - 127.5, 40 - 127.5, 0.0, 2.0, 2.0, 1.0, 0.0, 1.0)
    sino = line_integrals([disc], [0.0], theta_deg, 256, 128.0)[0]
    u = np.arange(256) + 0.5
    ours = (sino * u).sum(axis=1) / sino.sum(axis=1)
    theirs = (ref["point_sino"] * u).sum(axis=1) / ref["point_sino"].sum(axis=1)
    assert np.abs(ours - theirs).max() < 0.5  # tomopy's ray-driven bins vs an exact disc
    assert abs(np.mean(ours - theirs)) < 0.05
