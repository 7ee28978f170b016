"""Live model fits: fit_latest reads the ProfileLog and records fit:<model> points; follow_fits
fits every N frames while a series is written. Checked against the true radius per frame."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from spotkit.catalog import LivePoint, open_catalog
from spotkit.errors import InputFileError
from spotkit.live import ProfileLog, fit_latest, follow_fits, profile_log_path
from spotkit.scattering import sas_model_curve

Q = np.linspace(0.05, 3.0, 150)  # nm^-1
RADII = np.linspace(4.0, 5.0, 12)  # the spheres grow, frame by frame (nm)


def _row(frame: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """I(q) of frame ``frame``: sasmodels spheres of RADII[frame], Poisson noise."""
    clean = sas_model_curve(Q, model="sphere", params={"radius": RADII[frame], "scale": 0.01,
                                                       "background": 0.02})
    counts = np.random.default_rng((seed, frame)).poisson(clean * 5e4)
    return counts / 5e4, np.sqrt(np.maximum(counts, 1)) / 5e4


@pytest.fixture
def series(tmp_path):
    from spotkit.sim import simulate_saxs_series

    cat = open_catalog(tmp_path / "catalog.db")
    ds = cat.ingest(simulate_saxs_series(tmp_path / "s.h5", n_frames=2, shape=(40, 50),
                                         seed=1).path)
    yield cat, ds.id
    cat.close()


def _write(cat, ds_id, log, frames):
    for k in frames:
        log.append(k, *_row(k))
        cat.record_live(ds_id, [LivePoint(k, "features", {"score": 0.0}, time_s=0.5 * k,
                                          written_at=1000.0 + k)])


def test_fit_latest_follows_the_growing_spheres(series):
    cat, ds_id = series
    with ProfileLog(profile_log_path(cat, ds_id), Q, dim="q", unit="nm^-1") as log:
        _write(cat, ds_id, log, range(4))
        newest = fit_latest(cat, ds_id, model="sphere")  # the newest row: frame 3
        for k in range(3):
            fit_latest(cat, ds_id, model="sphere", frames=k)
    assert newest.units["radius"] == "nm"
    points = cat.live_points(ds_id, kinds="fit")
    assert [(p.frame, p.kind) for p in points] == [(k, "fit:sphere") for k in range(4)]
    for p in points:
        v = p.values
        assert abs(v["radius"] - RADII[p.frame]) < 4 * v["radius_err"], v
        assert v["radius_err"] < 0.01
        assert 0.6 < v["chi2"] < 1.6
        assert v["q_unit"] == "nm^-1"
        assert v["frames"] == 1
        fixed = dict(item.split("=") for item in v["fixed"].split(";"))
        assert set(fixed) == {"sld", "sld_solvent"}
        curve = sas_model_curve(Q, model="sphere", params={
            **{k: float(x) for k, x in fixed.items()},
            **{k: x for k, x in v.items() if k in ("radius", "scale", "background")}})
        assert np.all(np.isfinite(curve))
        assert (p.time_s, p.written_at) == (0.5 * p.frame, 1000.0 + p.frame)  # the frame's


def test_a_window_of_frames_is_averaged(series):
    cat, ds_id = series
    with ProfileLog(profile_log_path(cat, ds_id), Q, unit="nm^-1") as log:
        _write(cat, ds_id, log, range(6))
    one = fit_latest(cat, ds_id, model="sphere", frames=5, record=False)
    three = fit_latest(cat, ds_id, model="sphere", frames=[3, 4, 5])
    assert three.errors["radius"] < one.errors["radius"]
    assert three.params["radius"] == pytest.approx(RADII[3:6].mean(), abs=0.02)
    (point,) = cat.live_points(ds_id, kinds="fit:sphere")
    assert (point.frame, point.values["frames"], point.values["window"]) == (5, 3, "3-5")
    # a live rule's window (first, last): the frames of it that the log holds
    window = fit_latest(cat, ds_id, model="sphere", frames=(4, 9), record=False)
    assert window.params["radius"] == pytest.approx(RADII[4:6].mean(), abs=0.02)


def test_follow_fits_every_n_frames_while_written(series):
    cat, ds_id = series
    log = ProfileLog(profile_log_path(cat, ds_id), Q, unit="nm^-1")

    def writer():
        for k in range(len(RADII)):
            _write(cat, ds_id, log, [k])
            if k == 1:  # the follower's first fit is in before the rest comes
                deadline = time.monotonic() + 60
                while not cat.live_points(ds_id, kinds="fit") and time.monotonic() < deadline:
                    time.sleep(0.02)
            time.sleep(0.03)
        cat.set_live_status(ds_id, state="finished")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        fits = list(follow_fits(cat, ds_id, model="sphere", every=4, interval=0.02,
                                idle_timeout=30))
    finally:
        thread.join()
        log.close()
    points = cat.live_points(ds_id, kinds="fit")
    frames = [p.frame for p in points]
    assert len(fits) == len(points) >= 2
    assert frames[-1] == len(RADII) - 1  # the last frame is fitted when the series ends
    assert all(b - a >= 4 for a, b in itertools.pairwise(frames[:-1]))
    for p in points:
        assert abs(p.values["radius"] - RADII[p.frame]) < 4 * p.values["radius_err"]


def test_clear_errors(series, tmp_path):
    cat, ds_id = series
    with pytest.raises(InputFileError, match=r"no profile log.*spotkit live"):
        fit_latest(cat, ds_id)
    with ProfileLog(profile_log_path(cat, ds_id), Q, unit="nm^-1") as log:
        with pytest.raises(InputFileError, match="no rows yet"):
            fit_latest(cat, ds_id)
        _write(cat, ds_id, log, range(2))
        with pytest.raises(KeyError, match=r"frame\(s\) \[7\] not in profile log"):
            fit_latest(cat, ds_id, frames=7)
        with pytest.raises(KeyError, match=r"no frame of the window \(5, 9\)"):
            fit_latest(cat, ds_id, frames=(5, 9))
        with pytest.raises(ValueError, match="unknown model 'cube'"):
            fit_latest(cat, ds_id, model="cube")
    other = ProfileLog(tmp_path / "tth.h5", np.linspace(1, 10, 20), dim="tth", unit="deg")
    other.close()
    with pytest.raises(InputFileError, match="not q"):
        fit_latest(cat, ds_id, profile_log=tmp_path / "tth.h5")
    with pytest.raises(ValueError, match="every must be"):
        next(follow_fits(cat, ds_id, every=0))
    stop = threading.Event()
    stop.set()  # a follower asked to stop ends at once
    assert list(follow_fits(cat, ds_id, stop=stop)) == []
    assert cat.live_points(ds_id, kinds="fit") == []


@pytest.mark.notebook
@pytest.mark.slow
def test_saxs_fit_notebook_reduces_fits_and_records(tmp_path, series):
    """notebooks/saxs_fit.ipynb as a batch job on a series without a profile log (another
    machine): the window is reduced there, the live twin's spheres fitted, the fit recorded
    on the series' timeline and declared as the run's products."""
    import json

    import spotkit
    from spotkit.sim import LiveSeriesWriter, Transition

    cat, _ = series
    writer = LiveSeriesWriter(tmp_path / "twin.h5", n_frames=8, shape=(97, 243), seed=7,
                              module_shape=None, transitions=[Transition(4, "radius_nm", 6.0)])
    writer.write(8)
    raw = cat.ingest(writer.truth.path)
    res = spotkit.run_notebook("saxs_fit", raw.id, catalog=cat, output_dir=tmp_path / "out",
                               parameters={"model": "sphere", "frames": [5, 7], "npt": 200})
    by_kind = {o.kind: o for o in res.outputs}
    assert sorted(by_kind) == ["image/png", "saxs/fit"]
    report = json.loads(by_kind["saxs/fit"].path.read_text())
    assert report["frames"] == [5, 6, 7]
    assert report["source"] == "frames 5-7 reduced here (200 bins)"
    assert report["units"]["radius"] == "nm"
    radius, err = report["params"]["radius"], report["errors"]["radius"]
    assert abs(radius - 6.0) < max(6 * err, 0.012), report  # the twin's truth, frames 4-7
    (point,) = cat.live_points(raw.id, kinds="fit")
    assert (point.frame, point.kind, point.values["window"]) == (7, "fit:sphere", "5-7")
    assert point.values["radius"] == pytest.approx(radius)
