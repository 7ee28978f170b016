"""An action's queue-wait budget and fallback target in rules.yaml (``queue_budget``,
``fallback``, ``recover``): validated with the rest of the file, built into Action.route."""

from __future__ import annotations

import pytest

from spotkit.errors import RulesError
from spotkit.flows import load_rules

TEXT = """\
targets:
  local: {{kind: local, max_workers: 1}}
  cluster: {{kind: slurm, partition: regular}}
rules:
  - name: tomo
    match: {{kind: tomo/raw}}
    actions:
      - {{name: preview, notebook: tomo_quicklook, stage: preview, target: cluster{extra}}}
"""


def problems(extra: str) -> list:
    with pytest.raises(RulesError) as info:
        load_rules(TEXT.format(extra=extra))
    return info.value.problems


def test_budget_and_fallback_build_the_actions_route():
    rules = load_rules(TEXT.format(extra=", queue_budget: 10m, fallback: local, recover: 0.4"))
    (action,) = rules.actions_for({"kind": "tomo/raw"})
    assert action.target == "cluster"
    assert (action.route.budget, action.route.fallback, action.route.recover) == (
        600.0, "local", 0.4)
    canon = rules.to_dict()["rules"][0]["actions"][0]
    assert (canon["queue_budget"], canon["fallback"], canon["recover"]) == (600.0, "local", 0.4)
    assert load_rules(rules.to_dict()) == rules
    plain = load_rules(TEXT.format(extra=""))
    assert plain.actions_for({"kind": "tomo/raw"})[0].route is None
    assert plain.version != rules.version  # the budget is part of the rules' version
    seconds = load_rules(TEXT.format(extra=", queue_budget: 90, fallback: local"))
    assert seconds.actions_for({"kind": "tomo/raw"})[0].route.budget == 90.0


def test_unknown_fallback_is_named_with_the_closest_target():
    (p,) = problems(", queue_budget: 10m, fallback: locl")
    assert p.action == "preview"
    assert p.field == "fallback"
    assert p.line == 8
    assert "unknown target 'locl'" in p.message
    assert "did you mean 'local'" in p.message


@pytest.mark.parametrize(("extra", "field", "words"), [
    (", queue_budget: 10m", None, "give queue_budget and fallback together"),
    (", fallback: local", None, "give queue_budget and fallback together"),
    (", queue_budget: 10m, fallback: cluster", None, "the action's own target"),
    (", queue_budget: ten minutes, fallback: local", "queue_budget", "give seconds or text"),
    (", queue_budget: 0, fallback: local", "queue_budget", "duration > 0"),
    (", queue_budget: 10m, fallback: local, recover: 1.5", "recover", "between 0 and 1"),
    (", queue_buget: 10m, fallback: local", "queue_buget", "did you mean 'queue_budget'"),
])
def test_bad_budgets_are_reported_with_what_to_write(extra, field, words):
    found = problems(extra)
    assert any(words in p.message and p.action == "preview" and p.field == field
               for p in found), [str(p) for p in found]


def test_fallback_equal_to_the_default_target_is_refused():
    text = TEXT.format(extra="").replace(", target: cluster", "")
    text = "defaults: {target: local}\n" + text + "        queue_budget: 10m\n"
    text = text.replace("stage: preview}", "stage: preview,\n         queue_budget: 10m, "
                        "fallback: local}").replace("        queue_budget: 10m\n", "")
    with pytest.raises(RulesError) as info:
        load_rules(text)
    assert any(p.field == "fallback" and "defaults.target" in p.message
               for p in info.value.problems)


def test_alert_rules_may_select_reroute_findings():
    rules = load_rules(TEXT.format(extra=", queue_budget: 10m, fallback: local") + """\
alerts:
  - {name: moves, match: {kind: reroute, severity: info}, log: {level: info}}
""")
    assert rules.alerts[0].kind == ("reroute",)
    with pytest.raises(RulesError, match="did you mean 'reroute'"):
        load_rules(TEXT.format(extra="") + """\
alerts:
  - {name: moves, match: {kind: rerout}, log: {}}
""")
