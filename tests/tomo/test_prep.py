"""Pre-processing: normalize, minus_log, zingers, binning, circular mask, phase retrieval."""

from __future__ import annotations

import numpy as np
import pytest

from spotkit.tomo._prep import (
    circular_mask,
    downsample,
    minus_log,
    normalize,
    remove_zingers,
    retrieve_phase,
)


@pytest.mark.parametrize("how", ["median", "mean"])
def test_normalize_flat_average(how):
    proj = np.full((2, 3, 4), 600, dtype=np.uint16)
    flats = np.full((5, 3, 4), 1100.0)
    flats[2, 1, 1] = 60000.0  # zinger in one flat frame
    darks = np.full((3, 3, 4), 100.0)
    out = normalize(proj, flats, darks, flat_average=how)
    assert out.dtype == np.float32
    assert out.shape == (2, 3, 4)
    assert out[0, 0, 0] == pytest.approx(0.5)
    if how == "median":
        assert out[0, 1, 1] == pytest.approx(0.5)
    else:
        assert out[0, 1, 1] < 0.1


def test_normalize_bad_inputs():
    with pytest.raises(ValueError, match=r"unknown flat_average 'max'.*\['mean', 'median'\]"):
        normalize(np.ones((1, 2, 2)), np.ones((1, 2, 2)), np.zeros((1, 2, 2)), flat_average="max")
    with pytest.raises(ValueError, match="frame shape"):
        normalize(np.ones((1, 2, 2)), np.ones((1, 3, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="3-D"):
        normalize(np.ones((2, 2)), np.ones((1, 2, 2)), np.zeros((1, 2, 2)))


def test_minus_log_roundtrip():
    out = minus_log(np.exp(-np.array([0.0, 1.0, 2.5])))
    np.testing.assert_allclose(out, [0.0, 1.0, 2.5], atol=1e-6)


@pytest.mark.parametrize("along", ["frame", "angle"])
def test_remove_zingers(along):
    rng = np.random.default_rng(0)
    frames = rng.normal(1000.0, 5.0, size=(7, 16, 16)).astype(np.float32)
    frames[3, 5, 6] = 5000.0
    frames[1, 10, 2] = 3000.0
    out = remove_zingers(frames, threshold=0.2, along=along)
    assert out.shape == frames.shape
    assert out.dtype == np.float32
    assert out[3, 5, 6] < 1100
    assert out[1, 10, 2] < 1100
    changed = out != frames
    assert changed.sum() == 2  # nothing else touched


def test_remove_zingers_validation():
    with pytest.raises(ValueError, match=r"unknown along 'rows'.*\['angle', 'frame'\]"):
        remove_zingers(np.ones((3, 4, 4)), along="rows")
    with pytest.raises(ValueError, match="odd integer"):
        remove_zingers(np.ones((3, 4, 4)), size=4)
    with pytest.raises(ValueError, match="3-D"):
        remove_zingers(np.ones((4, 4)), along="angle")
    assert remove_zingers(np.ones((4, 4))).shape == (4, 4)


@pytest.mark.parametrize(("shape", "factor", "axis", "expected"), [
    ((10,), 3, -1, (3,)),
    ((4, 7, 9), 2, (1, 2), (4, 3, 4)),
    ((5, 6, 8), (5, 2), (0, 2), (1, 6, 4)),
])
def test_downsample_shapes(shape, factor, axis, expected):
    arr = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    out = downsample(arr, factor=factor, axis=axis)
    assert out.shape == expected
    assert out.dtype == np.float64


def test_downsample_values_dtype_and_dask():
    import dask.array as da

    arr = np.arange(24, dtype=np.uint16).reshape(4, 6)
    out = downsample(arr, factor=2, axis=(0, 1))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[3.5, 5.5, 7.5], [15.5, 17.5, 19.5]])
    lazy = downsample(da.from_array(arr, chunks=2), factor=2, axis=(0, 1))
    assert hasattr(lazy, "dask")
    np.testing.assert_allclose(lazy.compute(), out)


def test_downsample_validation():
    with pytest.raises(ValueError, match="out of range"):
        downsample(np.ones((3, 3)), axis=2)
    with pytest.raises(ValueError, match="integer in"):
        downsample(np.ones((3, 3)), factor=4)
    with pytest.raises(ValueError, match="differ in length"):
        downsample(np.ones((3, 3)), factor=(1, 2), axis=0)


def test_circular_mask():
    img = np.ones((3, 8, 8), dtype=np.float32)
    out = circular_mask(img, ratio=1.0, value=-1.0)
    assert out.shape == img.shape
    assert out.dtype == np.float32
    assert out[0, 0, 0] == -1
    assert out[0, 4, 4] == 1
    assert (out[0] == 1).sum() == (out[2] == 1).sum()
    assert np.all(img == 1)  # input untouched
    with pytest.raises(ValueError, match="ratio"):
        circular_mask(img, ratio=0)
    with pytest.raises(ValueError, match="2 dimensions"):
        circular_mask(np.ones(5))


def test_retrieve_phase_inverts_tie_propagation():
    """The Paganin filter undoes the near-field (TIE) propagation of a single material."""
    n, pix, dist, kev, db = 64, 1e-4, 10.0, 20.0, 300.0
    y, x = np.mgrid[:n, :n] - n / 2
    trans = np.exp(-0.3 * np.exp(-(x**2 + y**2) / (2 * 6.0**2)))  # smooth periodic object
    f2 = np.fft.fftfreq(n, d=pix)[:, None] ** 2 + np.fft.fftfreq(n, d=pix)[None] ** 2
    lam = 12.398419843320026e-8 / kev
    measured = np.real(np.fft.ifft2(np.fft.fft2(trans) * (1 + np.pi * lam * dist * db * f2)))
    out = retrieve_phase(measured, pixel_size_cm=pix, distance_cm=dist, energy_kev=kev,
                         delta_beta=db, pad=False)
    assert out.shape == (n, n)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, trans, atol=1e-4)
    padded = retrieve_phase(measured[None], pixel_size_cm=pix, distance_cm=dist,
                            energy_kev=kev, delta_beta=db)
    np.testing.assert_allclose(padded[0, 16:48, 16:48], trans[16:48, 16:48], atol=0.01)


def test_retrieve_phase_validation():
    with pytest.raises(ValueError, match="distance_cm must be a finite number > 0"):
        retrieve_phase(np.ones((4, 4)), pixel_size_cm=1e-4, distance_cm=0, energy_kev=20)
    bad = np.ones((4, 4))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        retrieve_phase(bad, pixel_size_cm=1e-4, distance_cm=1, energy_kev=20)
