"""``spotkit flow frames``: a series' redundant frames leave only as the rules allow."""

from __future__ import annotations

import json

import pytest

from spotkit.catalog import open_catalog
from spotkit.cli import main
from spotkit.sim import simulate_saxs_series, write_frame_folder

RULES = """\
targets: {local: {kind: local}}
live: [{name: look, on: onset, actions: [{priority: {level: 1}}]}]
retention:
  frames: {validated_by: [approval], min_age: 0s, action: move, dest: %s}
"""


@pytest.fixture
def series(tmp_path):
    simulate_saxs_series(tmp_path / "s.h5", n_frames=5, shape=(24, 30), module_shape=None)
    folder = write_frame_folder(tmp_path / "run_0001", tmp_path / "s.h5", fmt="tiff")
    with open_catalog(tmp_path / "catalog.db") as cat:
        ds = cat.ingest(folder)
        cat.mark_frames(ds.id, [1, 2, 4], "redundant", reasons="no change")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES % (tmp_path / "cold"))
    return tmp_path, folder, ds.id, rules


def test_frames_wait_for_approval_then_move(series, capsys):
    root, folder, ds_id, rules = series
    base = ["--catalog", str(root / "catalog.db"), "flow", "frames", ds_id, "--rules",
            str(rules)]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert f"no frame of {ds_id} may move now" in out
    assert "3 held (1-2, 4): not validated (approval: nobody approved" in out

    assert main([*base, "--approve"]) == 1  # an approval says why
    assert "--approve needs --reason" in capsys.readouterr().err

    assert main([*base, "--approve", "--by", "ada", "--reason", "timeline reviewed"]) == 0
    out = capsys.readouterr().out
    assert "approval recorded" in out
    assert "may move: 1-2, 4 (dry run" in out
    assert len(list(folder.glob("*.tif"))) == 5  # a dry run moves nothing

    assert main([*base, "--apply", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["done"] == [1, 2, 4]
    assert plan["checks"]["approval"]["ok"]
    assert len(list(folder.glob("*.tif"))) == 2
    assert len(list((root / "cold" / ds_id).glob("*.tif"))) == 3


def test_rules_without_a_frames_section_are_refused(series, capsys):
    root, _folder, ds_id, _rules = series
    plain = root / "plain.yaml"
    plain.write_text("targets: {local: {kind: local}}\n"
                     "live: [{name: look, on: onset, actions: [{priority: {level: 1}}]}]\n")
    assert main(["--catalog", str(root / "catalog.db"), "flow", "frames", ds_id,
                 "--rules", str(plain)]) == 1
    err = capsys.readouterr().err
    assert "no 'retention: frames:' section" in err
    assert "without one no frame ever" in err
