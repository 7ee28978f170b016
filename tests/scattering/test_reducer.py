"""FrameReducer: the numbers of integrate_1d, bit for bit, through pyFAI's engine."""

from __future__ import annotations

import logging
import threading

import dask.array as da
import numpy as np
import pytest

from spotkit.errors import GeometryError
from spotkit.scattering import FrameReducer, integrate_1d, integrate_frames, make_geometry

SHAPE = (195, 487)  # Pilatus 100K


def _geometry(shape=SHAPE, distance_m=2.0):
    return make_geometry(energy_kev=12.0, distance_m=distance_m, beam_center=(150.0, 240.0),
                         pixel_size_um=172, shape=shape)


def _frame(seed=0, dtype=np.int32):
    rng = np.random.default_rng(seed)
    frame = rng.poisson(200, SHAPE).astype(dtype)
    if np.dtype(dtype).kind == "i":
        frame[:, 60:64] = -1  # a module gap
        frame[10, 10] = -2  # a bad pixel (Pilatus marks them -2)
    return frame


def _mask():
    mask = np.zeros(SHAPE, bool)
    mask[140:160, 230:250] = True  # a beamstop
    return mask


def _same(reducer, frame, ref, normalization=1.0):
    intensity, sigma = reducer.reduce(frame, normalization=normalization)
    assert intensity.dtype == sigma.dtype == np.float64
    np.testing.assert_array_equal(reducer.radial, ref[reducer.dim].values)
    np.testing.assert_array_equal(intensity, ref.intensity.values)
    np.testing.assert_array_equal(sigma, ref.sigma.values)


OPTIONS = [
    ({}, "engine"),
    ({"polarization_factor": 0.99}, "engine"),
    ({"correct_solid_angle": False}, "engine"),
    ({"unit": "2th_deg", "radial_range": (0.5, 2.5)}, "engine"),
    ({"unit": "q_A^-1", "min_pixels": 10}, "engine"),
    ({"method": "lut"}, "engine"),
    ({"method": "histogram"}, "integrate1d"),  # no sparse engine: pyFAI's integrate1d
]


@pytest.mark.parametrize(("options", "engine"), OPTIONS)
def test_identical_to_integrate_1d(options, engine):
    ai = _geometry()
    mask = _mask()
    reducer = FrameReducer(ai, npt=150, mask=mask, check_orientation=False, **options)
    assert reducer.engine == engine
    assert reducer.dim == ("two_theta" if options.get("unit") == "2th_deg" else "q")
    for seed, norm in ((1, 1.0), (2, 3.7)):
        frame = _frame(seed)
        ref = integrate_1d(frame, ai, npt=150, mask=mask, normalization=norm,
                           check_orientation=False, **options)
        _same(reducer, frame, ref, normalization=norm)


@pytest.mark.parametrize("kind", ["float32", "float64", "uint16", "uint32", "int64"])
def test_identical_for_every_frame_dtype(kind):
    ai = _geometry()
    reducer = FrameReducer(ai, npt=100, check_orientation=False)
    frame = _frame(3, dtype=np.dtype(kind))
    if frame.dtype.kind == "f":
        frame[5, 5], frame[6, 6], frame[7, 7], frame[8, 8] = np.nan, np.inf, -0.2, -5.0
    ref = integrate_1d(frame, ai, npt=100, check_orientation=False)
    _same(reducer, frame, ref)


def test_frames_with_invalid_pixels_are_ignored_and_raw_data_untouched():
    ai = _geometry()
    reducer = FrameReducer(ai, npt=80, check_orientation=False)
    frame = _frame(4)
    before = frame.copy()
    intensity, _ = reducer.reduce(frame)
    np.testing.assert_array_equal(frame, before)
    # the gap pixels (-1, -2) are ignored: the same profile as with them masked
    masked = FrameReducer(ai, npt=80, mask=frame < 0, check_orientation=False)
    np.testing.assert_allclose(intensity, masked.reduce(np.abs(frame))[0], rtol=1e-6)


def test_integrate_frames_gives_the_same_numbers_as_integrate_1d():
    ai = _geometry()
    mask = _mask()
    frames = np.stack([_frame(s) for s in range(3)])
    norm = [1.0, 2.0, 0.5]
    eager = integrate_frames(frames, ai, npt=90, mask=mask, normalization=norm,
                             check_orientation=False)
    lazy = integrate_frames(da.from_array(frames, chunks=(2, *SHAPE)), ai, npt=90, mask=mask,
                            normalization=norm, check_orientation=False).compute()
    for k in range(3):
        ref = integrate_1d(frames[k], ai, npt=90, mask=mask, normalization=norm[k],
                           check_orientation=False)
        for ds in (eager, lazy):
            np.testing.assert_array_equal(ds.intensity[k].values, ref.intensity.values)
            np.testing.assert_array_equal(ds.sigma[k].values, ref.sigma.values)


def test_geometry_change_rebuilds_the_lookup_table():
    ai = _geometry()
    reducer = FrameReducer(ai, npt=100, check_orientation=False)
    frame = _frame(5)
    first, _ = reducer.reduce(frame)
    ai.dist = 1.0  # pyFAI resets the integrator's engines
    moved, _ = reducer.reduce(frame)
    assert reducer.engine == "engine"
    ref = integrate_1d(frame, ai, npt=100, check_orientation=False)
    np.testing.assert_array_equal(reducer.radial, ref.q.values)
    np.testing.assert_array_equal(moved, ref.intensity.values)
    assert not np.array_equal(np.nan_to_num(first), np.nan_to_num(moved))


def test_a_direct_engine_that_disagrees_is_not_used(monkeypatch, caplog):
    real = FrameReducer._engine_for

    def wrong_solid_angle(self, res):
        fast = real(self, res)
        fast["solidangle"] = np.ones(SHAPE[0] * SHAPE[1], np.float32)
        return fast

    monkeypatch.setattr(FrameReducer, "_engine_for", wrong_solid_angle)
    ai = _geometry()
    with caplog.at_level(logging.WARNING, logger="spotkit.scattering._reducer"):
        reducer = FrameReducer(ai, npt=100, check_orientation=False)
    assert reducer.engine == "integrate1d"
    assert "differs from integrate1d" in caplog.text
    frame = _frame(6)
    _same(reducer, frame, integrate_1d(frame, ai, npt=100, check_orientation=False))


def test_calls_from_several_threads_take_turns():
    ai = _geometry()
    reducer = FrameReducer(ai, npt=100, check_orientation=False)
    frames = [_frame(s) for s in range(6)]
    expected = [reducer.reduce(f)[0] for f in frames]
    got: dict[int, np.ndarray] = {}

    def work(ks):
        for k in ks:
            got[k] = reducer.reduce(frames[k])[0]

    threads = [threading.Thread(target=work, args=(ks,)) for ks in ([0, 2, 4], [1, 3, 5])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(6):
        np.testing.assert_array_equal(got[k], expected[k])


def test_calibrant_rings_at_their_d_spacings(fake_calibrant):
    """pyFAI's own AgBh calibrant (its d-spacings): the reduced rings sit at q = 2 pi / d."""
    from pyFAI.calibrant import get_calibrant

    truth, image = fake_calibrant("AgBh", distance_m=0.5, beam_center=(128.3, 126.6),
                                  resolution=0.02)
    reducer = FrameReducer(truth, npt=400, check_orientation=False)
    intensity, sigma = reducer.reduce(image)
    q = reducer.radial
    rings = 20 * np.pi / np.asarray(get_calibrant("AgBh").dspacing)  # d in Angstrom -> nm^-1
    rings = rings[rings < 0.9 * np.nanmax(q)]
    assert len(rings) >= 3
    for ring in rings:
        near = np.abs(q - ring) < 0.5  # the orders are 1.08 nm^-1 apart
        peak = q[near][np.nanargmax(intensity[near])]
        assert abs(peak - ring) < 0.015, (ring, peak)  # about one bin (0.01 nm^-1)
    assert np.all(sigma[np.isfinite(sigma)] > 0)


def test_bad_input_names_what_to_fix():
    ai = _geometry()
    reducer = FrameReducer(ai, npt=50, check_orientation=False)
    with pytest.raises(ValueError, match="195 x 487 frames"):
        reducer.reduce(np.zeros((100, 100)))
    with pytest.raises(ValueError, match="normalization"):
        reducer.reduce(_frame(), normalization=0.0)
    with pytest.raises(ValueError, match="dtype"):
        reducer.reduce(np.full(SHAPE, "a"))
    with pytest.raises(ValueError, match="unknown unit"):
        FrameReducer(ai, unit="r_mm")
    with pytest.raises(ValueError, match="npt"):
        FrameReducer(ai, npt=0)
    with pytest.raises(ValueError, match="polarization_factor"):
        FrameReducer(ai, polarization_factor=2.0)
    with pytest.raises(ValueError, match="the mask is 10 x 10 pixels"):
        FrameReducer(ai, mask=np.zeros((10, 10), bool))
    with pytest.raises(GeometryError, match="another detector"):
        FrameReducer(ai, shape=(100, 100))
    no_shape = make_geometry(energy_kev=12.0, distance_m=2.0, beam_center=(150.0, 240.0),
                             pixel_size_um=172)
    with pytest.raises(ValueError, match="shape="):
        FrameReducer(no_shape)
    assert FrameReducer(no_shape, shape=SHAPE, npt=50).radial.shape == (50,)


def test_orientation_is_checked_on_the_first_frames(monkeypatch):
    from spotkit.scattering import _reducer

    seen = []
    monkeypatch.setattr(_reducer, "orientation_check", lambda *a: seen.append(a))
    ai = _geometry()
    FrameReducer(ai, npt=50).reduce(_frame())
    FrameReducer(ai, npt=50, check_orientation=False).reduce(_frame())
    assert len(seen) == 1


def test_pickled_reducer_is_rebuilt_with_its_options():
    import pickle

    ai = _geometry()
    reducer = FrameReducer(ai, npt=60, mask=_mask(), polarization_factor=0.95,
                           check_orientation=False)
    copy = pickle.loads(pickle.dumps(reducer))
    assert copy.engine == "engine"
    frame = _frame(7)
    for a, b in zip(reducer.reduce(frame), copy.reduce(frame), strict=True):
        np.testing.assert_array_equal(a, b)



def _child_reduction_thread(queue):
    from spotkit.scattering._reducer import _reduction_thread

    queue.put(_reduction_thread().submit(threading.get_ident).result(timeout=10))


def test_a_forked_child_gets_its_own_reduction_thread():
    """Lazy series are reduced by one thread; a child forked after it started (fork copies
    no threads) must not wait on the parent's forever."""
    import multiprocessing as mp

    from spotkit.scattering._reducer import _reduction_thread

    parent = _reduction_thread().submit(threading.get_ident).result()
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_reduction_thread, args=(queue,))
    child.start()
    try:
        ident = queue.get(timeout=20)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert isinstance(ident, int)
    assert _reduction_thread().submit(threading.get_ident).result() == parent


def test_identical_with_a_flat_field_and_a_dark_current():
    ai = _geometry()
    rng = np.random.default_rng(8)
    ai.detector.set_flatfield(rng.uniform(0.8, 1.2, SHAPE).astype(np.float32))
    ai.detector.set_darkcurrent(rng.uniform(0, 3, SHAPE).astype(np.float32))
    reducer = FrameReducer(ai, npt=70, mask=_mask(), check_orientation=False)
    assert reducer.engine == "engine"
    frame = _frame(9)
    _same(reducer, frame, integrate_1d(frame, ai, npt=70, mask=_mask(),
                                       check_orientation=False))
