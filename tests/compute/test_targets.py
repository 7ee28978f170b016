"""Compute targets by kind: one registry; a target's rules settings come from its class."""

from __future__ import annotations

import pytest

from spotkit.compute import (
    Local,
    _targets,
    make_target,
    register_target,
    target_kinds,
    target_settings,
)
from spotkit.errors import RulesError
from spotkit.flows import load_rules


class Cloud(Local):
    """A plug-in target: its settings are its constructor's."""

    def __init__(self, region: str = "us-west", *, gpus: int = 0, spot: bool = False):
        super().__init__(max_workers=1)
        self.region, self.gpus, self.spot = region, gpus, spot


RULES = """\
targets:
  gpu: {{kind: cloud, {settings}}}
rules:
  - name: any
    match: {{kind: tomo/raw}}
    actions:
      - {{name: p, notebook: tomo_quicklook, target: gpu}}
"""


def test_builtin_kinds_and_their_settings_from_the_constructors():
    assert {"local", "slurm", "nersc"} <= set(target_kinds())
    slurm = target_settings("slurm")
    assert slurm["partition"] == (str,)
    assert slurm["nodes"] == (int,)
    assert slurm["time"] == (str, int)
    assert slurm["extra_sbatch"] == (list,)
    assert target_settings("local")["kill_wait"] == (int, float)
    nersc = target_settings("nersc")
    assert "key_file" in nersc  # the rules name the file, never the key
    assert "key" not in nersc
    with pytest.raises(ValueError, match=r"unknown target kind 'k8s'; choose one of \["):
        target_settings("k8s")


def test_a_plugin_target_is_checked_and_built_from_its_own_signature(monkeypatch):
    monkeypatch.setitem(_targets._REGISTRY, "cloud", Cloud)
    rules = load_rules(RULES.format(settings="region: eu, gpus: 2"))
    target = rules.target("gpu")
    assert isinstance(target, Cloud)
    assert (target.region, target.gpus) == ("eu", 2)
    with pytest.raises(RulesError) as info:
        load_rules(RULES.format(settings="region: eu, gpus: two, zone: b"))
    messages = {p.field: p.message for p in info.value.problems}
    assert "must be" in messages["gpus"]
    assert "not a setting of a cloud target" in messages["zone"]
    assert "'region'" in messages["zone"]
    assert make_target("cloud", spot=True).spot is True


def test_register_target_by_module_path(monkeypatch):
    monkeypatch.setitem(_targets._REGISTRY, "later", "tests_compute_nowhere:Missing")
    with pytest.raises(ValueError, match="cannot be loaded"):
        target_settings("later")
    with pytest.raises(ValueError, match="non-empty string"):
        register_target("", Cloud)
