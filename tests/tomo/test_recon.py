"""Reconstruction: one contract every backend passes, plus dispatcher and builtin specifics."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from spotkit.sim._phantom import Ellipsoid, line_integrals, slice_image
from spotkit.tomo import backends
from spotkit.tomo._recon import FILTERS, reconstruct, reconstruct_with_info
from spotkit.tomo.backends import _engines, _gridrec


def _circle(n):
    c = np.arange(n) - (n - 1) / 2.0
    return (c[:, None] ** 2 + c[None, :] ** 2) <= (n / 2.0 - 1) ** 2


def ssim(a, b):
    """SSIM of two images (skimage when installed, else a uniform-window implementation)."""
    rng = float(b.max() - b.min())
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        k1, k2, w = 0.01, 0.03, 7
        a, b = a.astype(np.float64), b.astype(np.float64)
        ma, mb = ndimage.uniform_filter(a, w), ndimage.uniform_filter(b, w)
        va = ndimage.uniform_filter(a * a, w) - ma**2
        vb = ndimage.uniform_filter(b * b, w) - mb**2
        cov = ndimage.uniform_filter(a * b, w) - ma * mb
        c1, c2 = (k1 * rng) ** 2, (k2 * rng) ** 2
        s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
        return float(s[w // 2:-(w // 2), w // 2:-(w // 2)].mean())
    return float(structural_similarity(a.astype(np.float64), b.astype(np.float64),
                                       data_range=rng))


def quality(rec, phantom):
    """(NRMSE, SSIM) inside the inscribed circle (both images masked the same way)."""
    m = _circle(phantom.shape[0])
    nrmse = float(np.sqrt(np.mean((rec - phantom)[m] ** 2) / np.mean(phantom[m] ** 2)))
    return nrmse, ssim(rec * m, phantom * m)


def _pairs():
    out = []
    for name in backends.list_backends():
        be = backends.get_backend(name)
        marks = () if be.available() else (pytest.mark.skip(reason=f"{name} not installed"),)
        out += [pytest.param(name, alg, id=f"{name}-{alg}", marks=marks)
                for alg in be.algorithms]
    return out


# Per-algorithm limits, the same for every backend. Measured with the builtin backend on
# this phantom: gridrec 0.08 / 0.98, fbp 0.08 / 0.96, sirt 0.11 / 0.97 (noiseless).
LIMITS = {
    "exact": {"gridrec": (0.12, 0.93), "fbp": (0.12, 0.90), "sirt": (0.15, 0.90)},
    "noisy": {"gridrec": (0.25, 0.60), "fbp": (0.25, 0.60), "sirt": (0.20, 0.75)},
}


# tomopy's gridrec (through its adapter: 2x padding, axis and grid corrected) is less
# quantitative on this 128-column slice: measured NRMSE 0.156 / SSIM 0.83 (exact), the mean
# inside the sample 12 % high (tomopy 1.15.2 built from source). It passes the tomopy
# reference cases below like every backend; only these twin limits are its own.
BACKEND_LIMITS = {("tomopy", "gridrec"): {"exact": (0.17, 0.80), "noisy": (0.27, 0.55),
                                          "mean_rel": 0.13, "vs_builtin": 0.15}}
#: Cases tomopy 1.15.2 projected and reconstructed itself (tests/reference/tomopy-1.15.2).
REFERENCE = Path(__file__).parents[1] / "reference" / "tomopy-1.15.2" / "conventions.npz"


def _run(scan, backend, algorithm, *, data="exact", center=None, **kw):
    kw.setdefault("filter", "shepp")
    if algorithm == "sirt":
        kw.setdefault("num_iter", 150)
    return reconstruct(scan[data], scan["theta"], scan["center"] if center is None else center,
                       algorithm=algorithm, backend=backend, **kw)


@pytest.mark.parametrize(("backend", "algorithm"), _pairs())
class TestBackendContract:
    """The same phantom, the same tolerances, for every available backend and algorithm."""

    @pytest.mark.parametrize("data", ["exact", "noisy"])
    def test_quality_against_the_phantom(self, recon_scan, backend, algorithm, data):
        rec = _run(recon_scan, backend, algorithm, data=data)
        assert rec.dtype == np.float32
        assert rec.shape == recon_scan["phantom"].shape
        nrmse, s = quality(rec, recon_scan["phantom"])
        max_nrmse, min_ssim = BACKEND_LIMITS.get((backend, algorithm), LIMITS)[data] if (
            backend, algorithm) in BACKEND_LIMITS else LIMITS[data][algorithm]
        assert nrmse < max_nrmse, (nrmse, s)
        assert s > min_ssim, (nrmse, s)

    def test_mean_inside_the_sample(self, recon_scan, backend, algorithm):
        rec = _run(recon_scan, backend, algorithm)
        ph = recon_scan["phantom"]
        inside = ndimage.binary_erosion(ph > 0.3 * ph.max(), iterations=3)
        rel = BACKEND_LIMITS.get((backend, algorithm), {}).get("mean_rel", 0.03)
        assert rec[inside].mean() == pytest.approx(ph[inside].mean(), rel=rel)

    def test_tomopy_orientation_of_a_point(self, backend, algorithm):
        """tomopy projected one bright pixel (row 40, column 180) at centre 128: every backend
        puts it back there, not mirrored, not half a pixel off."""
        ref = np.load(REFERENCE)
        rec = reconstruct(ref["point_sino"], ref["theta"], 128.0, algorithm=algorithm,
                          backend=backend, filter="shepp", num_iter=100)
        inside = _circle(256)
        peak = np.unravel_index(np.argmax(np.where(inside, rec, -np.inf)), rec.shape)
        assert tuple(map(int, peak)) == (40, 180)
        win = np.clip(rec[37:44, 177:184], 0, None)
        i, j = np.indices(win.shape)
        centroid = ((win * i).sum() / win.sum() + 37, (win * j).sum() / win.sum() + 177)
        np.testing.assert_allclose(centroid, (40, 180), atol=0.25)

    @pytest.mark.parametrize("case", ["mid", "off"])
    def test_tomopy_phantom_and_centre(self, backend, algorithm, case):
        """The Shepp-Logan phantom tomopy projected (centre 128.0 or 121.3): at tomopy's centre
        value each backend correlates with the phantom at least as well as tomopy's own
        gridrec does, much better than with the phantom flipped, and better than half a
        pixel either side (sharpest at tomopy's centre)."""
        ref = np.load(REFERENCE)
        center = float(ref[f"center_{case}"])
        inside = _circle(256)

        def corr(c):  # SIRT: 50 iterations (0.945 with builtin; 200 reach 0.986 but cost
            # ~65 s per case with astra's single-threaded CPU code)
            rec = reconstruct(ref[f"sino_{case}"], ref["theta"], c, algorithm=algorithm,
                              backend=backend, filter="shepp", num_iter=50)
            return (np.corrcoef(rec[inside], ref["phantom"][inside])[0, 1],
                    np.corrcoef(rec[inside], ref["phantom"][::-1][inside])[0, 1])

        tomopy_own = np.corrcoef(ref[f"gridrec_{case}"][inside], ref["phantom"][inside])[0, 1]
        good, flipped = corr(center)
        assert good >= tomopy_own, (good, tomopy_own)
        assert good > (0.94 if algorithm == "sirt" else 0.97), good
        assert flipped < 0.8, flipped
        assert good > max(corr(center - 0.5)[0], corr(center + 0.5)[0]) + 0.01

    def test_orientation_of_an_off_centre_inclusion(self, backend, algorithm):
        n, center = 96, 49.5
        ells = [Ellipsoid(0, 0, 0, 36, 30, 100, 20, 0.01),
                Ellipsoid(22, -14, 0, 5, 5, 100, 0, 0.05)]  # right (+x), upper (-y) rows
        theta_deg = np.linspace(0, 180, 180, endpoint=False)
        sino = line_integrals(ells, [0.0], theta_deg, n, center)[0]
        ph = slice_image(ells, 0.0, n)
        rec = reconstruct(sino, np.deg2rad(theta_deg), center, algorithm=algorithm,
                          backend=backend, filter="shepp", num_iter=100)

        def blob(img):
            smooth = ndimage.uniform_filter(img.astype(np.float64), 3)
            return ndimage.center_of_mass(smooth > 0.6 * smooth.max())

        expected = (-14 + (n - 1) / 2, 22 + (n - 1) / 2)  # row (y), column (x)
        np.testing.assert_allclose(blob(ph), expected, atol=0.5)
        i, j = blob(rec)
        np.testing.assert_allclose((i, j), expected, atol=1.0)
        assert i < n / 2 < j  # the inclusion is in the upper-right quadrant of the array

    def test_wrong_center_is_worse(self, recon_scan, backend, algorithm):
        good = quality(_run(recon_scan, backend, algorithm), recon_scan["phantom"])[1]
        c = recon_scan["center"]
        for wrong in (c - 2, c + 2):
            bad = quality(_run(recon_scan, backend, algorithm, center=wrong),
                          recon_scan["phantom"])[1]
            assert bad < good - 0.02, (wrong, bad, good)


def test_backends_agree(recon_scan):
    grid = _run(recon_scan, "builtin", "gridrec")
    fbp = _run(recon_scan, "builtin", "fbp")
    m = _circle(grid.shape[0])
    nrmse = np.sqrt(np.mean((grid - fbp)[m] ** 2) / np.mean(fbp[m] ** 2))
    assert nrmse < 0.05


@pytest.mark.parametrize("other", [b for b in ("tomopy", "astra")
                                   if backends.get_backend(b).available()] or
                         [pytest.param("tomopy", marks=pytest.mark.skip(reason="none installed"))])
def test_third_party_agrees_with_builtin(recon_scan, other):
    alg = "gridrec" if "gridrec" in backends.get_backend(other).algorithms else "fbp"
    ref = _run(recon_scan, "builtin", alg)
    rec = _run(recon_scan, other, alg)
    m = _circle(ref.shape[0])
    limit = BACKEND_LIMITS.get((other, alg), {}).get("vs_builtin", 0.05)
    assert np.sqrt(np.mean((rec - ref)[m] ** 2) / np.mean(ref[m] ** 2)) < limit


def test_sirt_beats_fbp_on_sparse_angles(recon_scan):
    keep = slice(None, None, 6)  # 31 of 181 angles
    scan = dict(recon_scan, exact=recon_scan["exact"][keep], theta=recon_scan["theta"][keep])
    fbp = quality(_run(scan, "builtin", "fbp"), scan["phantom"])
    sirt = quality(_run(scan, "builtin", "sirt", nonneg=True), scan["phantom"])
    assert sirt[0] < fbp[0]
    assert sirt[1] > fbp[1]


def test_stack_in_stack_out_and_2d_in_2d_out(recon_scan):
    sino, theta, c = recon_scan["exact"], recon_scan["theta"], recon_scan["center"]
    one = reconstruct(sino, theta, c, backend="builtin")
    stack = reconstruct(np.stack([sino, 2 * sino, sino]), theta, c, backend="builtin", n=128)
    assert one.shape == (128, 128)
    assert stack.shape == (3, 128, 128)
    np.testing.assert_allclose(stack[0], one, atol=1e-6)
    np.testing.assert_allclose(stack[1], 2 * one, rtol=1e-4, atol=1e-6)


def test_gridrec_batches_match_single_slices(recon_scan):
    sino, theta, c = recon_scan["exact"], recon_scan["theta"], recon_scan["center"]
    stack = np.stack([sino * (k + 1) for k in range(11)])  # pairs in batches, one left over
    rec = reconstruct(stack, theta, c, backend="builtin")
    for k in (0, 1, 8, 9, 10):
        ref = reconstruct(stack[k], theta, c, backend="builtin")
        # the NUFFT's stated precision: ~1e-4 of the image's range
        np.testing.assert_allclose(rec[k], ref, atol=2e-4 * np.abs(ref).max())


@pytest.mark.parametrize(("n_cols", "n", "axis", "name"),
                         [(96, 96, 47.5, "ramp"), (100, 100, 40.2, "hann"),
                          (64, 80, 33.0, "shepp")])
def test_gridrec_filter_in_the_short_fft_is_the_linear_filter(n_cols, n, axis, name):
    """gridrec filters on a ~1.03 n_cols periodic window (one FFT) plus a low-rank
    wrap-around correction; on the part of the window that pixels sample it must equal the
    linear (zero-padded) filter, computed here directly with 64x padding."""
    import scipy.fft

    rng = np.random.default_rng(4)
    p = rng.random((7, n_cols)).astype(np.float32)
    p[:, :3] = p[:, -3:] = 0.0
    p[0] = 1.0  # a flat projection: the largest wrap-around error
    lo, length, taper = _gridrec._gridrec_window(n_cols, n, axis, 4 * n_cols)
    assert 0 < length < 2 * n_cols  # shorter than a zero-padded filter
    big = 64 * length
    exact = scipy.fft.irfft(scipy.fft.rfft(p, n=big) * _gridrec._gridrec_response(
        np.fft.rfftfreq(big), name), n=big)
    resp = _gridrec._gridrec_response(np.fft.rfftfreq(length), name).astype(np.float32)
    wrap = _gridrec._wrap_correction(n_cols, name, lo, length, taper)
    spec = scipy.fft.rfft(p, n=length)
    got = scipy.fft.irfft(spec * resp + _gridrec._wrap_spectrum(p, wrap), n=length)
    cols = np.arange(int(np.floor(axis - n / 2)), int(np.ceil(axis + n / 2)) + 1)
    scale = np.abs(exact).max()
    np.testing.assert_allclose(got[:, cols % length], exact[:, cols % big], atol=2e-5 * scale)
    # without the correction the flat projection is off by much more (tomopy's error)
    plain = scipy.fft.irfft(spec * resp, n=length)
    assert np.abs(plain[0, cols % length] - exact[0, cols % big]).max() > 1e-3 * scale


def test_gridrec_one_thread_per_slice_group_matches_one_thread(recon_scan):
    """With at least one slice pair per thread, gridrec gives each thread its own slices
    (single-threaded NUFFT and kernels); the result must not depend on it."""
    sino, theta, c = recon_scan["noisy"], recon_scan["theta"], recon_scan["center"]
    stack = np.stack([sino * (k + 1) for k in range(6)])
    a = reconstruct(stack, theta, c, backend="builtin", threads=1)
    b = reconstruct(stack, theta, c, backend="builtin", threads=2)
    c3 = reconstruct(stack, theta, c, backend="builtin", threads=3)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
    np.testing.assert_allclose(c3, a, rtol=0, atol=1e-5 * np.abs(a).max())


def test_old_call_still_works(recon_scan):
    rec = reconstruct(recon_scan["exact"], recon_scan["theta"], recon_scan["center"],
                      filter="shepp")
    assert quality(rec, recon_scan["phantom"])[0] < 0.12


@pytest.mark.parametrize("name", FILTERS)
def test_every_filter_is_quantitative(recon_scan, name):
    rec = _run(recon_scan, "builtin", "gridrec", filter=name)
    ph = recon_scan["phantom"]
    inside = ndimage.binary_erosion(ph > 0.3 * ph.max(), iterations=3)
    assert rec[inside].mean() == pytest.approx(ph[inside].mean(), rel=0.03)


def test_threads_do_not_race(recon_scan):
    a = _run(recon_scan, "builtin", "fbp", threads=1)
    b = _run(recon_scan, "builtin", "fbp", threads=2)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_provenance_and_auto_logging(recon_scan, caplog, monkeypatch):
    from spotkit.tomo import _recon

    monkeypatch.setattr(_recon, "_ANNOUNCED", set())  # said once per process
    with caplog.at_level(logging.INFO, logger="spotkit.tomo"):
        _, info = reconstruct_with_info(recon_scan["exact"], recon_scan["theta"],
                                        recon_scan["center"])
        reconstruct_with_info(recon_scan["exact"], recon_scan["theta"], recon_scan["center"])
    assert info.backend == backends.available_backends()[0]
    assert info.version
    assert info.algorithm == "gridrec"
    assert info.to_dict()["center"] == recon_scan["center"]
    assert caplog.text.count(f"chose {info.backend!r}") == 1


@pytest.mark.parametrize("missing", ["numba", "finufft", "both"])
def test_numpy_fallback(recon_scan, monkeypatch, missing, caplog):
    ref = {alg: _run(recon_scan, "builtin", alg, num_iter=20) for alg in ("gridrec", "fbp")}
    if missing in ("numba", "both"):
        monkeypatch.setattr(_engines, "load_numba", lambda: None)
    if missing in ("finufft", "both"):
        monkeypatch.setattr(_engines, "load_finufft", lambda: None)
    m = _circle(128)
    for alg, want in ref.items():
        rec, info = reconstruct_with_info(recon_scan["exact"], recon_scan["theta"],
                                          recon_scan["center"], algorithm=alg,
                                          backend="builtin")
        assert info.engine in {"numpy", "numba", "finufft"}
        err = np.sqrt(np.mean((rec - want)[m] ** 2) / np.mean(want[m] ** 2))
        assert err < 0.05, (alg, err)


def test_numpy_sirt_matches_numba(recon_scan, monkeypatch):
    scan = dict(recon_scan, exact=recon_scan["exact"][::6], theta=recon_scan["theta"][::6])
    fast = _run(scan, "builtin", "sirt", num_iter=10)
    monkeypatch.setattr(_engines, "load_numba", lambda: None)
    slow = _run(scan, "builtin", "sirt", num_iter=10)
    np.testing.assert_allclose(slow, fast, atol=2e-4 * float(np.abs(fast).max()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "nope"}, "unknown backend 'nope'; choose one of"),
        ({"algorithm": "art"}, "unknown algorithm 'art'; choose one of"),
        ({"filter": "parzen"}, "unknown filter 'parzen'; choose one of"),
        ({"center": 200.0}, "center 200.0 is outside the detector"),
        ({"center": -1.0}, "outside the detector"),
        ({"num_iter": 0}, "num_iter must be >= 1"),
        ({"backend": "astra", "algorithm": "gridrec"}, "does not do algorithm 'gridrec'"),
    ],
)
def test_bad_options_are_rejected(recon_scan, kwargs, message):
    kwargs = {"center": recon_scan["center"], **kwargs}
    with pytest.raises(ValueError, match=message):
        reconstruct(recon_scan["exact"], recon_scan["theta"], **kwargs)


def test_bad_data_is_rejected(recon_scan):
    sino, theta, c = recon_scan["exact"], recon_scan["theta"], recon_scan["center"]
    with pytest.raises(ValueError, match=r"theta has shape \(180,\) but the sinograms have 181"):
        reconstruct(sino, theta[:-1], c)
    bad = sino.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        reconstruct(bad, theta, c)
    with pytest.raises(ValueError, match="2-D"):
        reconstruct(sino[0], theta, c)


def test_broken_plugin_warns_and_is_skipped(monkeypatch):
    class EP:
        name, value, group = "broken", "nowhere:Backend", "spotkit.backends"

        def load(self):
            raise ImportError("no module named nowhere")

    class Good(backends.ReconBackend):
        name, algorithms, filters = "good", ("fbp",), ("ramp",)

    class EPGood(EP):
        name, value = "good", "mypkg:Good"

        def load(self):
            return Good

    monkeypatch.setattr(backends, "entry_points", lambda group: [EP(), EPGood()])
    backends._plugins.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="cannot load reconstruction backend 'broken'"):
            names = backends.list_backends()
        assert "good" in names
        assert "broken" not in names
        assert backends.get_backend("good").name == "good"
    finally:
        backends._plugins.cache_clear()
