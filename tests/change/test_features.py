"""Per-frame features: unique integer values, SSIM, smoothed difference, change maps."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from spotkit.change import change_map, frame_features, structural_similarity, unique_count


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64, np.float32])
def test_unique_count_matches_np_unique(dtype):
    rng = np.random.default_rng(0)
    frame = rng.poisson(30, (40, 50)).astype(np.int64)
    if np.dtype(dtype).kind != "u":
        frame[::7] = -1  # gap rows are ignored
    frame = frame.astype(dtype)
    expected = np.unique(frame[frame >= 0]).size
    assert unique_count(frame) == expected


def test_unique_count_mask_hot_pixel_and_rounding():
    frame = np.array([[0, 1, 1], [5, -1, 5], [7, 7, 3]])
    assert unique_count(frame) == 5
    mask = np.zeros(frame.shape, bool)
    mask[2] = True
    assert unique_count(frame, mask=mask) == 3
    hot = frame.copy()
    hot[0, 0] = 2**30  # a huge value uses the sorting path: same answer
    assert unique_count(hot) == 5
    assert unique_count(np.array([0.4, 0.6, 1.2, 2.0])) == 3
    assert unique_count(np.full((3, 3), -1)) == 0
    with pytest.raises(ValueError, match="NaN"):
        unique_count(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="mask shape"):
        unique_count(frame, mask=np.zeros((2, 2), bool))


def test_structural_similarity():
    rng = np.random.default_rng(1)
    img = rng.poisson(100, (48, 48)).astype(float)
    assert structural_similarity(img, img) == pytest.approx(1.0)
    other = img + rng.normal(0, 30, img.shape)
    value = structural_similarity(img, other)
    assert 0 < value < 0.9
    mask = np.zeros(img.shape, bool)
    mask[:, :24] = True
    changed = img.copy()
    changed[:, :24] = 0  # only in the masked half
    assert structural_similarity(img, changed, mask=mask) > 0.95
    with pytest.raises(ValueError, match="differs"):
        structural_similarity(img, img[:10])
    with pytest.raises(ValueError, match="sigma"):
        structural_similarity(img, img, sigma=0)


def test_change_map_finds_the_changed_patch():
    rng = np.random.default_rng(2)
    ref = np.full((64, 64), 200.0)
    frame = rng.poisson(ref).astype(np.int32)
    frame[40:48, 10:18] += 40  # 2.8 sigma per pixel
    m = change_map(frame, ref)
    assert m.dims == ("y", "x")
    iy, ix = np.unravel_index(int(np.nanargmax(m.values)), m.shape)
    assert 38 <= iy <= 49
    assert 8 <= ix <= 19
    outside = m.values[:30, 30:]
    assert abs(np.nanmean(outside)) < 0.5
    assert 0.5 < np.nanstd(outside) < 1.5


def test_change_map_profile_needs_sigma():
    q = np.linspace(0.1, 2, 100)
    ref = 100 / (1 + q**2)
    prof = ref.copy()
    prof[60:65] += 5
    m = change_map(prof, ref, sigma=np.full(100, 0.5), smooth=0, coords={"q": q})
    assert m.dims == ("q",)
    assert float(m.idxmax()) == pytest.approx(q[60:65].mean(), abs=0.05)
    with pytest.raises(ValueError, match="sigma"):
        change_map(prof, ref)


def test_frame_features_on_twin(changing):
    truth, frames = changing[0]
    feats = frame_features(frames, features=("unique_count", "difference", "ssim", "mean"))
    assert set(feats.data_vars) == {"unique_count", "difference", "ssim", "mean"}
    assert feats.sizes["frame"] == frames.shape[0]
    diff = feats["difference"].values
    before = diff[: truth.onset_frame]
    assert 0.7 < np.median(before) < 1.5  # about 1 in noise units while nothing changes
    assert diff[truth.onset_frame + 4] > np.max(before) + 10 * np.std(before)
    assert np.all(np.isfinite(feats["ssim"].values))


def test_frame_features_keep_the_time_coordinate():
    rng = np.random.default_rng(3)
    data = rng.poisson(50, (12, 20, 30)).astype(np.int32)
    da = xr.DataArray(data, dims=("time", "y", "x"), coords={"time": np.arange(12) * 0.5})
    feats = frame_features(da, warmup=4)
    assert feats["difference"].dims == ("time",)
    np.testing.assert_allclose(feats["time"].values, np.arange(12) * 0.5)


def test_profile_chi2_is_about_one_without_change():
    rng = np.random.default_rng(4)
    q = np.linspace(0.1, 2, 150)
    mean = 1000 / (1 + (5 * q) ** 2) + 10
    sigma = np.sqrt(mean) * np.ones((40, 1))
    prof = mean + rng.normal(0, 1, (40, q.size)) * sigma
    feats = frame_features(prof, sigma=sigma)
    assert list(feats.data_vars) == ["difference"]
    assert 0.8 < float(feats["difference"][10:].mean()) < 1.25


def test_numba_pass_gives_the_numpy_features(changing, monkeypatch):
    """The fused numba kernel (unique count + block sums) matches the numpy path exactly."""
    import spotkit.change._engine as engine_mod
    from spotkit.change import frame_features, unique_count

    if engine_mod._load_kernels() is None:
        pytest.skip("numba is not installed: only the numpy path exists")
    _truth, frames = changing[0]
    frames = frames.copy()
    frames[3, 5, 7] = 70_000  # beyond the first value table: it must grow
    mask = np.zeros(frames.shape[1:], bool)
    mask[10:14, 20:30] = True
    names = ("unique_count", "difference", "ssim")
    fast = frame_features(frames, features=names, mask=mask, warmup=6)
    monkeypatch.setattr(engine_mod, "_load_kernels", lambda: None)
    slow = frame_features(frames, features=names, mask=mask, warmup=6)
    np.testing.assert_array_equal(fast["unique_count"], slow["unique_count"])
    np.testing.assert_allclose(fast["difference"], slow["difference"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast["ssim"], slow["ssim"], rtol=1e-4, atol=1e-6)
    assert int(fast["unique_count"][3]) == unique_count(frames[3], mask=mask)
