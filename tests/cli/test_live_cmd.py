"""``spotkit live PATH`` and ``spotkit live --status`` (a SIGKILLed ``spotkit live`` resuming is
tests/live/test_three_day.py's; the exactness of a resume, tests/live/test_session.py's)."""

from __future__ import annotations

import json

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
