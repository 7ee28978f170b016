"""The simulated beamline day at small scale (benchmarks/bench_beamline_day.py): the twin
writes scans, a real watcher and its monitor take them through a batch queue that slows
down; the change is found and alerted once, previews move to the fallback and back, and
no dataset is lost."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "benchmarks" / "bench_beamline_day.py"


@pytest.fixture(scope="module")
def day():
    spec = importlib.util.spec_from_file_location("bench_beamline_day", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~90 s: 6 simulated hours at 10 s each, ~60 notebook runs
def test_part_of_the_day_slowdown_found_alerted_once_rerouted_and_back(day, tmp_path,
                                                                     monkeypatch):
    # the day's files are written relative to nothing, but a notebook run from here must not
    # leave this folder behind in papermill (test_run_notebook checks it never does)
    monkeypatch.chdir(tmp_path)
    out = day.run_day(tmp_path, hour=10.0, cadence=5.0, start=10.0, end=16.0,
                      slow_from=12.0, slow_until=14.0, drain=90.0)
    checks = day.verdict(out)
    assert all(checks.values()), day._report(out) + f"\n{checks}"
    assert out["scans"] >= 40
    moved = out["previews"]
    assert moved["2 moved"].get("local", 0) >= 3  # previews ran on the fallback meanwhile
    assert moved["1 before the move"].get("hpc", 0) >= 10
