"""Centre of rotation (sinusoid, Vo, phase correlation), per-row centres, tilt, centre sweep."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
from scipy import ndimage

from spotkit.sim import simulate_tomo_scan
from spotkit.tomo import (
    AxisTilt,
    detect_tilt,
    find_center,
    find_center_pc,
    find_center_per_row,
    find_center_vo,
)
from spotkit.tomo._prep import minus_log, normalize
from spotkit.tomo._sweep import center_sweep, plot_sweep, sweep_metric


def _twin(tmp_path, shape, offset, *, seed=0, **kw):
    """Simulated scan -> (truth, line integrals [angles, rows, cols], theta in radians)."""
    truth = simulate_tomo_scan(tmp_path / f"scan_{offset}_{seed}.h5", shape=shape,
                               center_offset=offset, seed=seed, **kw)
    with h5py.File(truth.path) as f:
        proj = minus_log(normalize(f["exchange/data"][()], f["exchange/data_white"][()],
                                   f["exchange/data_dark"][()]))
    return truth, proj, np.deg2rad(truth.theta)


def _fbp(sino, theta, center, n=None):
    """Reference ramp-filter FBP with the shared geometry (independent of spotkit's)."""
    n_angles, n_cols = sino.shape
    n = n or n_cols
    pad = 2 * int(2 ** np.ceil(np.log2(n_cols)))
    filt = np.fft.irfft(np.fft.rfft(sino, pad, axis=1) * np.abs(np.fft.rfftfreq(pad)), pad,
                        axis=1)[:, :n_cols]
    c = np.arange(n) - (n - 1) / 2.0
    out = np.zeros((n, n))
    for a, t in enumerate(theta):
        s = center + c[None, :] * np.cos(t) + c[:, None] * np.sin(t)
        out += np.interp(s, np.arange(n_cols), filt[a], left=0, right=0)
    return out * np.pi / n_angles


CASES = [  # (n_cols, offset, noise, ring_columns, beam_drift)
    (128, -12.0, True, 3, 0.0),
    (128, 3.5, True, 3, 0.05),
    (127, -5.25, True, 4, 0.0),
    (127, 10.75, False, 0, 0.0),
    (160, 0.0, True, 3, 0.05),
    (160, 20.0, True, 3, 0.0),
    (161, -20.0, True, 5, 0.05),
]


@pytest.mark.parametrize(("n_cols", "offset", "noise", "rings", "drift"), CASES)
@pytest.mark.parametrize("method", ["vo", "pc"])
def test_center_within_half_pixel_of_truth(tmp_path, method, n_cols, offset, noise, rings,
                                           drift):
    truth, proj, theta = _twin(tmp_path, (181, 6, n_cols), offset, seed=int(abs(offset) * 4),
                               noise=noise, ring_columns=rings, beam_drift=drift)
    sinos = proj.transpose(1, 0, 2)
    centre = find_center(sinos[2], theta, method=method)
    assert abs(centre - truth.center) < 0.5
    assert isinstance(centre, float)


def test_pc_accepts_projections_and_uses_all_rows(tmp_path):
    truth, proj, theta = _twin(tmp_path, (121, 6, 96), 4.25, seed=3)
    assert abs(find_center_pc(proj, theta) - truth.center) < 0.5
    # the stack form of find_center gives the same answer
    stack = proj.transpose(1, 0, 2)
    assert find_center(stack, theta, method="pc") == pytest.approx(find_center_pc(proj, theta))


def test_sinusoid_still_works_on_stack(tmp_path):
    truth, proj, theta = _twin(tmp_path, (91, 4, 96), 3.5, seed=1, ring_columns=0)
    assert abs(find_center(proj.transpose(1, 0, 2), theta) - truth.center) < 0.5


def test_vo_endpoint_included_and_search_window():
    theta = np.linspace(0, np.pi, 181)  # includes 180 degrees: last projection dropped
    u = np.arange(100.0)[None] + 0.5  # column centres, positions in tomopy's convention
    sino = np.exp(-0.5 * ((u - 47.3 - 15 * np.cos(theta)[:, None]) / 3) ** 2)
    sino += 0.5 * np.exp(-0.5 * ((u - 47.3 - 8 * np.sin(theta)[:, None]) / 5) ** 2)
    assert abs(find_center_vo(sino, theta) - 47.3) < 0.1
    assert abs(find_center_vo(sino, theta, search=(44, 50), step=0.1) - 47.3) < 0.1


def test_pc_refuses_scan_without_180_partner():
    theta = np.linspace(0, np.deg2rad(150), 100)
    with pytest.raises(ValueError, match=r"theta\[0\] \+ 180 degrees.*'vo' or 'sinusoid'"):
        find_center_pc(np.ones((100, 2, 32)), theta)


def test_vo_refuses_partial_coverage():
    theta = np.linspace(0, np.deg2rad(120), 100, endpoint=False)
    with pytest.raises(ValueError, match="covering 180 degrees"):
        find_center_vo(np.ones((100, 32)), theta)


@pytest.mark.parametrize("method", ["vo", "pc", "sinusoid"])
def test_bad_inputs(method):
    theta = np.linspace(0, np.pi, 40, endpoint=False)
    with pytest.raises(ValueError, match="angles"):
        find_center(np.ones((39, 32)), theta, method=method)
    bad = np.ones((40, 32))
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        find_center(bad, theta, method=method)
    with pytest.raises(ValueError, match="2-D"):
        find_center(np.ones(32), theta, method=method)


def test_unknown_method_lists_allowed():
    allowed = r"unknown centre method 'foo'.*\['pc', 'sinusoid', 'vo'\]"
    with pytest.raises(ValueError, match=allowed):
        find_center(np.ones((10, 16)), np.linspace(0, np.pi, 10), method="foo")


def test_vo_option_validation():
    theta = np.linspace(0, np.pi, 40, endpoint=False)
    with pytest.raises(ValueError, match="step"):
        find_center_vo(np.ones((40, 32)), theta, step=5)
    with pytest.raises(ValueError, match="search"):
        find_center_vo(np.ones((40, 32)), theta, search=(20, 10))
    with pytest.raises(TypeError, match="no options"):
        find_center(np.ones((40, 32)), theta, method="sinusoid", step=0.5)


# ---------------------------------------------------------------------- tilt


def _shear(proj, slope):
    """Shift row r of every projection by slope * (r - mid) columns (a tilted axis)."""
    mid = (proj.shape[1] - 1) / 2
    out = np.empty_like(proj)
    for r in range(proj.shape[1]):
        out[:, r] = ndimage.shift(proj[:, r], (0, slope * (r - mid)), order=3, mode="nearest")
    return out


@pytest.fixture(scope="module")
def tall_scan(tmp_path_factory):
    return _twin(tmp_path_factory.mktemp("tilt"), (181, 24, 128), 2.5, seed=11)


def test_tilt_detected_on_sheared_scan(tall_scan, caplog):
    truth, proj, theta = tall_scan
    slope = 0.08  # px per row: 1.8 px over the 23 rows
    rows, centres = find_center_per_row(_shear(proj, slope), theta, rows=range(2, 22, 2),
                                        band=3)
    mid = (proj.shape[1] - 1) / 2
    assert np.nanmax(np.abs(centres - (truth.center + slope * (rows - mid)))) < 0.5
    with caplog.at_level(logging.WARNING, logger="spotkit.tomo._tilt"):
        tilt = detect_tilt(rows, centres)
    assert isinstance(tilt, AxisTilt)
    assert tilt.tilted
    assert tilt.slope_px_per_row == pytest.approx(slope, abs=0.02)
    assert tilt.tilt_deg == pytest.approx(np.rad2deg(np.arctan(slope)), abs=1.2)
    assert "tilted" in caplog.text
    with pytest.raises(AttributeError):
        tilt.tilted = False  # frozen


def test_no_tilt_reported_on_straight_scan(tall_scan, caplog):
    truth, proj, theta = tall_scan
    rows, centres = find_center_per_row(proj.transpose(1, 0, 2), theta, rows=range(2, 22, 2),
                                        band=3, layout="sinograms")
    with caplog.at_level(logging.WARNING, logger="spotkit.tomo._tilt"):
        tilt = detect_tilt(rows, centres)
    assert not tilt.tilted
    assert abs(tilt.center_at(12) - truth.center) < 0.5
    assert "tilted" not in caplog.text


def test_detect_tilt_validation_and_nan_rows():
    with pytest.raises(ValueError, match="3 or more"):
        detect_tilt([1, 2, np.nan], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="differ in length"):
        detect_tilt([1, 2, 3], [1.0, 2.0])
    t = detect_tilt([0, 1, 2, 3, 4], [50.0, np.nan, 50.1, 49.9, 50.0])
    assert not t.tilted
    assert t.residual_px < 0.2


def test_per_row_layout_ambiguous():
    theta = np.linspace(0, np.pi, 8, endpoint=False)
    with pytest.raises(ValueError, match="layout="):
        find_center_per_row(np.ones((8, 8, 32)), theta)
    with pytest.raises(ValueError, match="unknown layout"):
        find_center_per_row(np.ones((8, 8, 32)), theta, layout="rows")


# ---------------------------------------------------------------------- sweep


@pytest.mark.parametrize("offset", [-6.5, 3.5])
@pytest.mark.parametrize("metric", ["entropy", "negativity"])
def test_sweep_metric_best_near_truth(tmp_path, offset, metric):
    truth, proj, theta = _twin(tmp_path, (121, 4, 96), offset, seed=2)
    centres = truth.center + np.arange(-3, 3.01, 1.0)
    sweep = center_sweep(proj[:, 2], theta, centres, reconstruct=_fbp)
    assert sweep.dims == ("center", "y", "x")
    np.testing.assert_allclose(sweep["center"].values, centres)
    score = sweep_metric(sweep, metric=metric)
    assert abs(score.attrs["best_center"] - truth.center) <= 1.0
    assert score.dims == ("center",)


def test_sweep_default_reconstruction(tmp_path):
    truth, proj, theta = _twin(tmp_path, (61, 2, 48), 2.0, seed=4)
    sweep = center_sweep(proj[:, 1], theta, [truth.center - 2, truth.center], n=32)
    assert sweep.shape == (2, 32, 32)
    assert sweep.dtype == np.float32


def test_sweep_validation():
    theta = np.linspace(0, np.pi, 10, endpoint=False)
    with pytest.raises(ValueError, match="on the detector"):
        center_sweep(np.ones((10, 16)), theta, [40.0], reconstruct=_fbp)
    with pytest.raises(ValueError, match="unknown sweep metric 'blur'"):
        sweep_metric(center_sweep(np.ones((10, 16)), theta, [8.0], reconstruct=_fbp),
                     metric="blur")


def test_plot_sweep_titles(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    theta = np.linspace(0, np.pi, 30, endpoint=False)
    u = np.arange(24.0)[None]
    sino = np.exp(-0.5 * ((u - 12 - 4 * np.cos(theta)[:, None]) / 2) ** 2)
    sweep = center_sweep(sino, theta, [11.0, 11.5, 12.0], reconstruct=_fbp)
    axes = plot_sweep(sweep, metric=sweep_metric(sweep))
    assert [a.get_title().splitlines()[0] for a in axes] == [
        "center = 11.00", "center = 11.50", "center = 12.00"]
    plt.close("all")


@pytest.mark.parametrize("offset", [-40.0, 25.0])
def test_sinusoid_is_not_biased_by_noise_in_the_air(tmp_path, offset):
    # Clipping negative noise to 0 made positive mass in the air that pulled the estimate
    # towards the detector's middle (0.8 px at 2k counts and -40 px, 1.5 px at 500 counts).
    import h5py

    from spotkit.sim import simulate_tomo_scan
    from spotkit.tomo import minus_log, normalize

    path = tmp_path / "low_dose.h5"
    truth = simulate_tomo_scan(path, shape=(360, 2, 512), center_offset=offset, seed=0,
                               flat_counts=2000, ring_columns=0)
    with h5py.File(path) as f:
        sino = minus_log(normalize(f["/exchange/data"][:, 1:2], f["/exchange/data_white"][:, 1:2],
                                   f["/exchange/data_dark"][:, 1:2]))[:, 0]
    found = find_center(sino, np.deg2rad(truth.theta), method="sinusoid")
    assert abs(found - truth.center) < 0.3
