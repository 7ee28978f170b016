"""`spotkit watch --once` right after the detector wrote: it waits for the files to settle."""

from __future__ import annotations

import pytest

from spotkit.cli import main

RULES = """\
version: 1
facility: TEST
targets:
  local: {kind: local, max_workers: 1}
rules:
  - name: t
    match: {kind: tomo/raw}
    actions:
      - {name: q, notebook: tomo_quicklook, target: local, parameters: {n_slices: 1}}
"""


@pytest.mark.notebook
def test_watch_once_waits_for_files_written_just_now(tmp_path, capsys):
    from spotkit.sim import simulate_tomo_scan

    inbox, warehouse = tmp_path / "inbox", tmp_path / "warehouse"
    inbox.mkdir()
    warehouse.mkdir()
    (tmp_path / "rules.yaml").write_text(RULES)
    simulate_tomo_scan(inbox / "scan.h5", shape=(32, 2, 32), n_flats=2, n_darks=2, seed=1)
    (inbox / "scan.h5").touch()  # written this very moment
    status = main(["--catalog", str(tmp_path / "cat.db"), "watch", str(inbox), "--rules",
                   str(tmp_path / "rules.yaml"), "--warehouse", str(warehouse), "--once",
                   "--settle", "1.5"])
    out = capsys.readouterr().out
    assert status == 0
    assert "done 1," in out
    assert (warehouse / "scan.h5").is_file()
