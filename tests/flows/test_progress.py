"""A running watcher says what it is doing: one line per step, progress for long steps."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest

from spotkit.flows import Journal, LocalCopy, Watcher, _flow, _localcopy_io, make_manifest

SLOW = """\
import pathlib, time
from spotkit.runs import declare_output
time.sleep(1.5)
out = pathlib.Path(output_dir) / f"{tag}.txt"
out.write_text(tag)
declare_output(out, kind="test/marker")
"""


def test_a_long_copy_logs_its_progress(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(_localcopy_io, "PROGRESS_SECONDS", 0.0)
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.raw").write_bytes(b"\1" * (3 * 1024 * 1024))
    man = make_manifest([src / "big.raw"], root=src)
    with caplog.at_level(logging.INFO, logger="spotkit.flows"):
        (tmp_path / "dest").mkdir()
        LocalCopy(tmp_path / "dest").transfer(man, src)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("copying")]
    assert lines, caplog.text
    assert "big.raw" in lines[-1]
    assert "100 %" in lines[-1]


@pytest.mark.notebook
def test_each_step_is_logged_and_a_long_run_reports_progress(flow_env, monkeypatch, caplog):
    env = flow_env
    monkeypatch.setattr(_flow, "PROGRESS_SECONDS", 0.3)
    notebook = env["write_notebook"](env["root"] / "slow.ipynb", SLOW)
    rules = env["write_rules"](env["root"] / "slow.yaml", notebook,
                               actions=(("preview", "preview"),))
    env["scan"](env["inbox"] / "scan.h5")
    watcher = Watcher(env["inbox"], catalog=env["catalog"], rules=rules,
                      warehouse=env["warehouse"], settle=0, lease_seconds=3)
    with caplog.at_level(logging.INFO, logger="spotkit.flows"):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            watcher.run_once()
            with Journal(env["catalog"]) as journal:
                if Counter(i.state for i in journal.items()) == Counter(done=1):
                    break
    watcher.close()
    text = caplog.text
    for step in ("ingested", "manifested", "transferred", "verified",
                 "processed/tomo/preview"):
        assert f"step={step} state=done" in text, step
    assert "event=discovered" in text
    assert "event=done" in text
    assert "event=progress" in text
    assert "step=processed/tomo/preview running_s=" in text
