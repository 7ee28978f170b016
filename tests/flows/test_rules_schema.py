"""The rules schema (pydantic): every problem with its file, line and field, and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from spotkit.compute import Local, _targets, target_settings
from spotkit.errors import RulesError
from spotkit.flows import RuleProblem, load_rules
from spotkit.flows._rules_schema import target_model

GOOD = """\
targets:
  local: {kind: local, max_workers: 1}
rules:
  - name: tomo
    match: {kind: tomo/raw}
    actions:
      - {name: preview, notebook: tomo_quicklook, stage: preview, target: local}
"""


def _problems(text: str, tmp_path: Path | None = None) -> list[RuleProblem]:
    source: str | Path = text
    if tmp_path is not None:
        source = tmp_path / "rules.yaml"
        source.write_text(text)
    with pytest.raises(RulesError) as info:
        load_rules(source)
    return info.value.problems


def test_unknown_keys_at_every_level_get_the_closest_allowed_one(tmp_path):
    text = """\
version: 1
retry: {attempts: 2, backof: 5}
defaults: {taget: local}
targets:
  local: {kind: local, max_worker: 1}
rules:
  - name: tomo
    match: {kind: tomo/raw, beamlin: "8.3.2"}
    actions:
      - {name: preview, notebok: tomo_quicklook, target: local}
    descripton: micro-tomography
stags: [preview, full]
"""
    problems = _problems(text, tmp_path)
    got = {(p.line, p.rule, p.action, p.field): p.message for p in problems}
    expected = {
        (2, None, None, "retry.backof"): "'backoff'",
        (3, None, None, "defaults.taget"): "'target'",
        (5, "target 'local'", None, "max_worker"): "'max_workers'",
        (8, "rule 0 'tomo'", None, "match.beamlin"): "'beamline'",
        (10, "rule 0 'tomo'", "preview", "notebok"): "'notebook'",
        (11, "rule 0 'tomo'", None, "descripton"): "'description'",
        (12, None, None, "stags"): "'stages'",
    }
    for where, suggestion in expected.items():
        assert where in got, (where, sorted(got, key=str))
        assert f"did you mean {suggestion}?" in got[where]
        assert "allowed:" in got[where]
    # the missing notebook of the action is its own problem, on the action's line
    assert got[(10, "rule 0 'tomo'", "preview", "notebook")].startswith("missing: ")
    assert len(problems) == len(expected) + 1
    # each problem names the file and comes in the order of the file's lines
    assert {p.file for p in problems} == {str(tmp_path / "rules.yaml")}
    assert [p.line for p in problems] == sorted(p.line for p in problems)


def test_wrong_types_say_what_to_write():
    text = GOOD.replace("max_workers: 1", "max_workers: 1, concurrency: true").replace(
        "match: {kind: tomo/raw}", "match: {kind: {a: 1}}").replace(
        "target: local}", "target: local, after: [1], parameters: [n_slices]}")
    problems = {p.field: p.message for p in _problems(text)}
    assert problems["concurrency"].startswith("True: concurrency is an integer >= 1")
    assert problems["match.kind"] == "{'a': 1}: a glob string or a list of globs"
    assert problems["after"].startswith("[1]: an action or stage name")
    assert problems["parameters"] == "a mapping {parameter name: value} (got a list)"


def test_a_key_given_twice_is_reported_with_both_lines():
    text = GOOD.replace("    match: {kind: tomo/raw}\n",
                        "    match: {kind: tomo/raw}\n    match: {kind: \"tomo/*\"}\n")
    (problem,) = _problems(text)
    assert (problem.line, problem.field) == (6, "match")
    assert "given twice (also on line 5)" in problem.message


def test_a_secret_is_reported_once_and_never_echoed():
    text = GOOD.replace("target: local}", "target: local, parameters: {api_token: s3cr3t}}")
    (problem,) = _problems(text)  # not also "api_token is not declared by the notebook"
    assert problem.field == "parameters.api_token"
    assert "looks like a secret" in problem.message
    assert "s3cr3t" not in str(problem)


def test_cross_checks_run_beside_schema_errors():
    # a schema error in one action does not hide the reference errors of the others
    text = GOOD.replace(
        "      - {name: preview, notebook: tomo_quicklook, stage: preview, target: local}\n",
        "      - {name: preview, notebook: tomo_quicklook, stage: preview, target: local,\n"
        "         retry: {attempts: 0}}\n"
        "      - {name: recon, notebook: tomo_recon, stage: ful, target: locl}\n")
    problems = {(p.action, p.field): p.message for p in _problems(text)}
    assert set(problems) == {("preview", "retry.attempts"), ("recon", "stage"),
                             ("recon", "target")}
    assert "did you mean 'full'?" in problems[("recon", "stage")]
    assert "did you mean 'local'?" in problems[("recon", "target")]


class Beamtime(Local):
    """A plug-in target with a fixed set of queues and a setting named like a model attribute."""

    setting_choices: ClassVar[dict[str, tuple[str, ...]]] = {"queue": ("fast", "bulk")}

    def __init__(self, queue: str = "fast", *, schema: str = "v1", slots: int = 1):
        super().__init__(max_workers=1)
        self.queue, self.schema, self.slots = queue, schema, slots


def test_a_target_kind_is_checked_by_a_model_built_from_its_class(monkeypatch):
    monkeypatch.setitem(_targets._REGISTRY, "beamtime", Beamtime)
    model = target_model("beamtime")
    assert set(target_settings("beamtime")) == {"queue", "schema", "slots"}
    assert set(model.allowed()) == {"queue", "schema", "slots", "kind", "concurrency",
                                    "description"}
    text = GOOD.replace("{kind: local, max_workers: 1}", "{kind: beamtime, schema: v2}")
    assert load_rules(text).target("local").schema == "v2"
    bad = GOOD.replace("{kind: local, max_workers: 1}",
                       "{kind: beamtime, queue: fats, slots: many, slot: 2}")
    problems = {p.field: p.message for p in _problems(bad)}
    assert problems["queue"] == ("unknown queue 'fats' for a beamtime target (did you mean "
                                 "'fast'?); choose one of ['fast', 'bulk']")
    assert problems["slots"] == "'many': must be an integer"
    assert problems["slot"].startswith("not a setting of a beamtime target (did you mean")
    unknown = GOOD.replace("kind: local", "kind: lokal")
    (problem,) = _problems(unknown)
    assert (problem.rule, problem.field) == ("target 'local'", "kind")
    assert "did you mean 'local'?" in problem.message


def test_the_canonical_form_reads_back_the_same():
    rules = load_rules(GOOD)
    again = load_rules(rules.to_dict())
    assert again == rules
    assert again.to_dict() == rules.to_dict()
    assert rules.to_dict()["targets"]["local"] == {"concurrency": 1, "kind": "local",
                                                   "max_workers": 1}
