"""``spotkit live PATH`` and ``spotkit live --status``; a SIGKILLed ``spotkit live`` resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from spotkit.catalog import open_catalog
from spotkit.cli._main import main
from spotkit.sim import LiveSeriesWriter, Transition


def _writer(path, n_frames):
    return LiveSeriesWriter(path, n_frames=n_frames, shape=(48, 64), module_shape=None,
                            transitions=[Transition(10, "radius_nm", 7.0)], seed=2)


def test_live_once_resumes_and_lists_series(tmp_path, capsys):
    writer = _writer(tmp_path / "run.h5", 40)
    db = str(tmp_path / "catalog.db")
    writer.write(25)
    assert main(["live", str(writer.path), "--catalog", db, "--once"]) == 0
    out = capsys.readouterr().out
    assert "change at frame 10 (frames 10..10" in out
    assert "25 of 25 frames done" in out
    writer.write(15)  # the rest: the series ends
    assert main(["live", str(writer.path), "--catalog", db, "--once"]) == 0
    out = capsys.readouterr().out
    assert "after frame 24" in out
    assert "40 of 40 frames done" in out
    assert "finished" in out
    assert "the finished series is ds-" in out
    assert main(["live", str(writer.path), "--catalog", db, "--once"]) == 0  # nothing new
    assert "40 of 40 frames done" in capsys.readouterr().out
    assert main(["live", "--status", "--catalog", db]) == 0
    assert "no live series being followed" in capsys.readouterr().out
    assert main(["live", "--status", "--all", "--catalog", db]) == 0
    table = capsys.readouterr().out
    assert "finished" in table
    assert "40/40" in table
    assert main(["live", "--status", "--all", "--json", "--catalog", db]) == 0
    (series,) = json.loads(capsys.readouterr().out)
    assert series["path"] == str(writer.path)
    assert series["done"] == 40
    with open_catalog(db) as cat:
        assert [p.frame for p in cat.live_points(series["dataset_id"],
                                                 kinds="features")] == list(range(40))


def test_live_errors(tmp_path, capsys):
    assert main(["live", "--catalog", str(tmp_path / "c.db")]) == 1
    assert "give the PATH" in capsys.readouterr().err
    assert main(["live", str(tmp_path / "nowhere" / "run.h5")]) == 1
    assert "neither it nor its folder exists" in capsys.readouterr().err
    assert main(["live", str(tmp_path / "run.h5"), "--poni", str(tmp_path / "x.poni")]) == 1
    assert "--poni" in capsys.readouterr().err
    assert main(["live", str(tmp_path), "--npt", "1"]) == 2
    assert main(["live", str(tmp_path), "--detector", "holdof=3"]) == 1
    assert "the options are [" in capsys.readouterr().err
    assert main(["live", str(tmp_path), "--detector", "holdoff"]) == 1
    assert "write NAME=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkilled_live_resumes_without_counting_twice(tmp_path, capsys):
    writer = _writer(tmp_path / "run.h5", 60)
    writer.write(30)
    db = tmp_path / "catalog.db"
    cmd = [sys.executable, "-m", "spotkit.cli", "live", str(writer.path), "--catalog", str(db)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        done = -1
        while time.monotonic() < deadline and done < 29 and proc.poll() is None:
            time.sleep(0.1)
            if db.exists():
                with open_catalog(db) as cat:
                    series = cat.live_series(active=None)
                    done = series[0]["last_frame"] if series else -1
        assert done == 29, proc.stdout.read().decode() if proc.poll() is not None else done
        writer.write(5)  # it follows on...
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)  # ...and is killed, wherever it is
        proc.wait()
    writer.write(30)  # the rest, while nobody follows; then the series ends
    assert main(["live", str(writer.path), "--catalog", str(db), "--once"]) == 0  # resumes
    out = capsys.readouterr().out
    assert "resuming" in out
    assert "60 of 60 frames done" in out
    with open_catalog(db) as cat:
        (series,) = cat.live_series(active=None)
        ds = series["dataset_id"]
        frames = [p.frame for p in cat.live_points(ds, kinds="features")]
        assert frames == list(range(60))
        assert [p.values["onset"] for p in cat.live_points(ds, kinds="event")] == [10]
        assert [m["frame"] for m in cat.frame_marks(ds)] == list(range(60))
        assert series["state"] == "finished"
