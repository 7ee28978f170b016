"""The offline detector on reduced 1-D profiles as stored in NXcanSAS (one entry per step).

A time series is reduced with pyFAI, written as NXcanSAS (one SASentry per time step),
read back, and handed to :func:`spotkit.change.detect_changes`: the onset comes out where
the twin put it, in frames and in seconds. A measured time series (sasdata's VTMA.h5, 240
entries) goes through the same reader and detector once its entries share a q grid.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from spotkit.change import detect_changes
from spotkit.io import load_geometry, read_nxcansas, read_nxcansas_entries, write_nxcansas
from spotkit.scattering import integrate_frames
from spotkit.sim import simulate_saxs_series


def twin(path, *, onset, seed, n_frames):
    truth = simulate_saxs_series(path, n_frames=n_frames, onset_frame=onset, seed=seed,
                                 shape=(64, 96), module_shape=(30, 45), module_gap=(2, 3))
    with h5py.File(truth.path) as f:
        return truth, f["entry/data/data"][()]


@pytest.mark.parametrize(("seed", "onset"), [(21, 12), (22, 19)])
def test_onset_found_on_profiles_read_back_from_nxcansas(tmp_path, seed, onset):
    truth, frames = twin(tmp_path / "s.h5", onset=onset, seed=seed, n_frames=32)
    ai = load_geometry(truth.poni_path)
    iq = integrate_frames(frames, ai, npt=80, mask=truth.gap_mask() | truth.beamstop_mask())
    iq = iq.assign_coords(time=("frame", truth.frame_interval_s * np.arange(32)))
    path = write_nxcansas(tmp_path / "reduced.h5", iq, title="twin", run="r1")
    back = read_nxcansas(path)
    assert back["intensity"].shape == (32, 80)
    assert len(read_nxcansas_entries(path)) == 32  # one SASentry per time step
    result = detect_changes(back, warmup=8)
    assert len(result.events) == 1
    assert abs(result.events[0].onset - truth.onset_frame) <= 1
    direct = detect_changes(iq, warmup=8)  # the same answer as before writing
    assert direct.onsets == result.onsets
    # where in q: the change map peaks at the ring
    cmap = result.events[0].change_map
    q_peak = float(cmap[cmap.dims[0]][int(np.nanargmax(np.abs(cmap.values)))])
    assert abs(q_peak - truth.ring_q_nm) < 0.15 * truth.ring_q_nm


def _vtma() -> Path | None:
    spec = importlib.util.find_spec("sasdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "example_data" / "1d_data"
    return path / "VTMA.h5" if (path / "VTMA.h5").exists() else None


@pytest.mark.skipif(_vtma() is None, reason="sasdata (test extra) is not installed")
def test_measured_time_series_runs_through_reader_and_detector():
    entries = read_nxcansas_entries(_vtma())
    assert len(entries) == 240
    # entries have different q grids: put them on the grid common to all, as a user would
    lo = max(float(e.q.min()) for e in entries)
    hi = min(float(e.q.max()) for e in entries)
    q = np.geomspace(lo, hi, 60)
    rows = [np.interp(q, e.q.values, e["intensity"].values) for e in entries]
    errs = [np.interp(q, e.q.values, e["sigma"].values) if "sigma" in e else None
            for e in entries]
    series = xr.Dataset({"intensity": (("time", "q"), np.array(rows))},
                        coords={"time": np.arange(len(rows)), "q": q})
    if all(s is not None for s in errs):
        series["sigma"] = (("time", "q"), np.array(errs))
    result = detect_changes(series, warmup=8)
    assert result.n_frames == 240
    assert result.kind == "profiles"
    for e in result.events:
        assert 8 <= e.onset <= e.end < 240
        assert 0 <= e.confidence <= 1
