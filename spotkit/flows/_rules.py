"""Facility rules: which notebooks run for a new dataset, with what, where, and in which order.

A facility writes one ``rules.yaml``. It names its compute targets (settings only, never
secrets), a retry policy, the stages in the order they run (a fast ``preview`` first, then
the ``full`` reconstruction), and rules. Each rule matches datasets by beamline and/or kind
(and optionally by sample, proposal or metadata globs) and lists its actions::

    version: 1
    facility: ALS
    stages: [preview, full]
    retry: {attempts: 3, backoff: 10, factor: 2, max_backoff: 600}
    targets:
      local: {kind: local, max_workers: 2, concurrency: 2}
      cluster: {kind: slurm, partition: realtime, time: "00:30:00", concurrency: 4}
    rules:
      - name: tomo-832
        match: {beamline: "8.3.2", kind: tomo/raw}
        actions:
          - {name: preview, notebook: tomo_quicklook, stage: preview, target: local,
             parameters: {n_slices: 3}}
          - {name: recon, notebook: tomo_recon, stage: full, after: preview,
             target: cluster, parameters: {binning: 2}}
      - name: tomo-733
        match: {beamline: "7.3.3", kind: tomo/raw}
        actions:
          # while the cluster's queue wait is over 10 min, previews run locally
          - {name: preview, notebook: tomo_quicklook, stage: preview, target: cluster,
             queue_budget: 10m, fallback: local}

An action with a ``queue_budget`` (a duration) and a ``fallback`` (another defined target)
goes to the fallback while its target's queue wait, as the telemetry measures it, is over
the budget, and back when it is below ``recover`` (default 0.5) times the budget
(:class:`spotkit.monitor.Router`); each run records why in its context.

:func:`load_rules` validates the whole file on load and reports every problem at once in
one :class:`~spotkit.errors.RulesError`, each problem with its file, line, rule, action and
field, and what to write instead.

The parts, each in its own module: ``_rules_yaml`` reads the text and keeps the line of every
key; ``_rules_schema`` holds the pydantic models of the file (a target kind's model is built
from the compute target registry); ``_rules_checks`` checks across parts (secrets, names,
references) and against the notebooks (parameters, dataset kinds); ``_rules_objects`` holds
the objects the watcher uses (:class:`Rules`, :class:`Rule`, :class:`Action`). This module
puts them together.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from spotkit.errors import RulesError
from spotkit.flows._rules_alerts import alert_canonical, check_alert_names
from spotkit.flows._rules_checks import (
    Notebooks,
    check_notebooks,
    check_references,
    check_secrets,
    resolve_after,
)
from spotkit.flows._rules_live import check_live, live_canonical, retention_canonical
from spotkit.flows._rules_live_objects import live_triggers
from spotkit.flows._rules_objects import (
    Action,
    RetryPolicy,
    Route,
    Rule,
    RuleProblem,
    Rules,
    digest,
    retry_from,
)
from spotkit.flows._rules_schema import (
    DEFAULT_STAGES,
    FORMAT_VERSION,
    DocumentSpec,
    Finding,
    RetrySpec,
    check_document,
    check_targets,
)
from spotkit.flows._rules_yaml import Lines, Source, SourceError, read_source

__all__ = [
    "DEFAULT_STAGES",
    "Action",
    "RetryPolicy",
    "Route",
    "Rule",
    "RuleProblem",
    "Rules",
    "RulesError",
    "load_rules",
]

log = logging.getLogger(__name__)


def load_rules(source: str | os.PathLike | Mapping[str, Any], *,
               base_dir: str | os.PathLike | None = None) -> Rules:
    """Read and validate a facility's rules.

    Parameters
    ----------
    source : path-like, str or mapping
        A ``rules.yaml`` file, YAML text, or a mapping (as from :meth:`Rules.to_dict`).
    base_dir : path-like, optional
        Folder against which relative notebook paths are resolved; default: the file's
        folder, or the current folder for text.

    Returns
    -------
    Rules

    Raises
    ------
    RulesError
        With every problem found (``.problems``), each naming its rule, action, field and
        line, and what is allowed.

    Examples
    --------
    >>> rules = load_rules('''
    ... targets: {local: {kind: local, max_workers: 1}}
    ... rules:
    ...   - name: saxs
    ...     match: {kind: saxs/raw}
    ...     actions: [{name: quick, notebook: saxs_quicklook, target: local}]
    ... ''')
    >>> [a.key for a in rules.actions_for({"kind": "saxs/raw"})]
    ['saxs/quick']
    """
    try:
        src = read_source(source, base_dir)
    except SourceError as exc:
        raise RulesError([RuleProblem(None, None, None, exc.message, exc.line, exc.name)],
                         exc.name) from None
    notebooks = Notebooks(src.base)
    doc, findings = check_document(src.data)
    findings += check_targets(src.data)
    findings += check_references(src.data)
    findings += check_notebooks(src.data, notebooks)
    findings += check_alert_names(src.data)
    findings += check_live(src.data, notebooks)
    findings += [Finding(loc, f"{loc[-1]!r} is given twice (also on line {first}); YAML "
                              "keeps only the last one: give it once")
                 for loc, _line, first in src.duplicates]
    problems = _problems(check_secrets(src.data), findings, src)
    if problems or doc is None:
        raise RulesError(problems, src.name)
    canonical, rules = _build(doc, src.data, notebooks)
    loaded = Rules(canonical, rules, source=src.name)
    loaded.live = live_triggers(canonical.get("live"), notebooks)  # paths from the file's folder
    log.info("loaded rules %s%s: %d rule(s), %d target(s)", loaded.version,
             f" from {src.name}" if src.name else "", len(rules), len(loaded.targets))
    return loaded


# -- problems, each with its file, line, rule, action and field ----------------------------


def _problems(secrets: list[Finding], findings: list[Finding], src: Source) -> list[RuleProblem]:
    """Every finding as a :class:`RuleProblem`, in the order of the file's lines.

    A secret is reported once, as a secret: other findings at or below it are left out (they
    would only echo it, or ask to rename it).
    """
    hidden = [f.loc for f in secrets]
    kept: dict[tuple, Finding] = {}
    for f in [*secrets, *findings]:
        if f in secrets or not any(f.loc[:len(s)] == s for s in hidden):
            kept.setdefault((f.loc, f.message), f)
    problems = [_problem(f, src.data, src.lines, src.name) for f in kept.values()]
    problems.sort(key=lambda p: p.line if p.line is not None else math.inf)
    return problems


def _at(node: Any, key: Any) -> Any:
    if isinstance(node, Mapping):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return None


def _problem(finding: Finding, data: Any, lines: Lines, name: str | None) -> RuleProblem:
    """Name the rule (``"rule 0 'tomo'"``) or target, the action and the field at fault."""
    loc = finding.loc
    rule: str | None = None
    action: str | int | None = None
    rest = loc
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rule_name = _at(_at(_at(data, "rules"), loc[1]), "name")
        rule = f"rule {loc[1]}" + (f" {rule_name!r}" if rule_name is not None else "")
        rest = loc[2:]
        if len(rest) >= 2 and rest[0] == "actions" and isinstance(rest[1], int):
            spec = _at(_at(_at(_at(data, "rules"), loc[1]), "actions"), rest[1])
            action_name = _at(spec, "name")
            action = action_name if isinstance(action_name, str) and action_name else rest[1]
            rest = rest[2:]
    elif len(loc) >= 2 and loc[0] == "alerts" and isinstance(loc[1], int):
        alert_name = _at(_at(_at(data, "alerts"), loc[1]), "name")
        rule = f"alert {loc[1]}" + (f" {alert_name!r}" if alert_name is not None else "")
        rest = loc[2:]
    elif len(loc) >= 2 and loc[0] == "live" and isinstance(loc[1], int):
        trigger = _at(_at(data, "live"), loc[1])
        trigger_name = _at(trigger, "name")
        rule = f"live {loc[1]}" + (f" {trigger_name!r}" if trigger_name is not None else "")
        rest = loc[2:]
        if len(rest) >= 2 and rest[0] == "actions" and isinstance(rest[1], int):
            from spotkit.flows._rules_live import action_name

            spec = _at(_at(trigger, "actions"), rest[1])
            action = (action_name(spec, rest[1], _at(trigger, "actions"))
                      if isinstance(spec, Mapping) else rest[1])
            rest = rest[2:]
    elif len(loc) >= 2 and loc[0] == "targets":
        rule = f"target {str(loc[1])!r}"
        rest = loc[2:]
    field = ".".join(map(str, rest)) or None
    if len(loc) >= 3 and loc[0] == "live" and loc[2] == "on" and lines.of(loc[:3]) == lines.of(
            loc[:2]):
        loc = (*loc[:2], True, *loc[3:])  # YAML 1.1 read the key 'on' as true
    return RuleProblem(rule, action, field, finding.message, lines.of(loc), name)


# -- the rules objects, from a valid document -----------------------------------------------


def _retry(spec: RetrySpec) -> RetryPolicy:
    return retry_from(spec.model_dump(exclude_unset=True))


def _build(doc: DocumentSpec, data: Mapping, notebooks: Notebooks
           ) -> tuple[dict[str, Any], tuple[Rule, ...]]:
    """The canonical form (what :meth:`Rules.to_dict` gives back) and the rule objects."""
    stages = list(doc.stages)
    default_retry = doc.retry or (doc.defaults.retry if doc.defaults else None)
    retry = _retry(default_retry) if default_retry is not None else RetryPolicy()
    default_target = doc.defaults.target if doc.defaults else None
    targets = {str(name): {"concurrency": 1, **dict(spec)}
               for name, spec in data["targets"].items()}
    canonical: dict[str, Any] = {
        "version": FORMAT_VERSION, "facility": doc.facility, "stages": stages,
        "retry": retry.to_dict(), "defaults": {"target": default_target},
        "targets": targets, "rules": []}
    built: list[tuple[str, dict, list[dict]]] = []
    for rule in doc.rules:
        placed = [(a.name, a.stage or stages[-1]) for a in rule.actions]
        canon_actions, actions = [], []
        for k, spec in enumerate(rule.actions):
            after, _ = resolve_after(k, spec.after or [], placed, stages)
            stage = spec.stage or stages[-1]
            target = spec.target or default_target
            assert target is not None  # check_references refuses an action without one
            policy = _retry(spec.retry) if spec.retry is not None else retry
            canon = {"name": spec.name, "notebook": spec.notebook, "stage": stage,
                     "target": target, "parameters": dict(spec.parameters or {}),
                     "after": list(after)}
            if spec.retry is not None:
                canon["retry"] = policy.to_dict()
            route = None
            if spec.queue_budget is not None and spec.fallback is not None:
                route = Route(float(spec.queue_budget), spec.fallback, float(spec.recover))
                canon.update(route.to_dict())
            canon_actions.append(canon)
            actions.append({
                "name": spec.name, "notebook": spec.notebook,
                "notebook_path": notebooks.path(spec.notebook),
                "parameters": copy.deepcopy(dict(spec.parameters or {})), "stage": stage,
                "stage_index": stages.index(stage), "after": tuple(after), "target": target,
                "target_settings": dict(targets[target]),
                "concurrency": targets[target]["concurrency"], "retry": policy,
                "route": route})
        canon_rule: dict[str, Any] = {"name": rule.name, "match": rule.match.criteria(),
                                      "actions": canon_actions}
        if rule.description is not None:
            canon_rule["description"] = rule.description
        canonical["rules"].append(canon_rule)
        built.append((rule.name, rule.match.criteria(), actions))
    if doc.alerts is not None:
        canonical["alerts"] = [alert_canonical(a) for a in doc.alerts]
    if doc.live is not None:
        canonical["live"] = [live_canonical(t) for t in doc.live]
    if doc.retention is not None:
        canonical["retention"] = retention_canonical(doc.retention)
    version = digest(canonical)[:12]
    rules = []
    for name, match, specs in built:
        objs = [Action(rule=name, rules_version=version, **a) for a in specs]
        objs.sort(key=lambda a: a.stage_index)  # stable: file order within a stage
        rules.append(Rule(name=name, match=match, actions=tuple(objs)))
    return canonical, tuple(rules)
