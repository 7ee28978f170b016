"""The rules objects the watcher uses: problems, retry policies, actions, rules and matching.

Built by :func:`spotkit.flows.load_rules` from a validated rules file; nothing here reads or
checks a file.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Action", "RetryPolicy", "Route", "Rule", "RuleProblem", "Rules", "digest"]

log = logging.getLogger("spotkit.flows._rules")

#: what every target has besides the settings of its kind (not passed to its constructor)
TARGET_COMMON = frozenset({"kind", "concurrency", "description"})


# -- data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleProblem:
    """One problem found in a rules file.

    Attributes
    ----------
    rule : str or None
        ``"rule 0 'tomo-832'"`` (index and name), ``"target 'cluster'"``, or None for the
        file as a whole.
    action : str or None
        Name (or index) of the action at fault.
    field : str or None
        The field at fault (``"target"``, ``"parameters.n_slice"``...).
    message : str
        What is wrong and what is allowed.
    line : int or None
        1-based line in the YAML text, when known.
    file : str or None
        The rules file, when the rules were read from one.

    Examples
    --------
    >>> print(RuleProblem("rule 0 'tomo'", "preview", "target", "unknown target 'cori'", 7))
    line 7, rule 0 'tomo', action 'preview', field 'target': unknown target 'cori'
    """

    rule: str | None
    action: str | int | None
    field: str | None
    message: str
    line: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = ", ".join(
            x
            for x in (
                f"line {self.line}" if self.line else "",
                self.rule or "",
                f"action {self.action!r}" if self.action is not None else "",
                f"field {self.field!r}" if self.field else "",
            )
            if x
        )
        return f"{where}: {self.message}" if where else self.message


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed action is tried, and how long to wait between tries.

    Attributes
    ----------
    attempts : int
        Tries in all (1 = no retry); after the last one the action is parked.
    backoff : float
        Seconds before the second try.
    factor : float
        Each further wait is ``factor`` times the previous one.
    max_backoff : float
        Upper bound on one wait, in seconds.

    Examples
    --------
    >>> RetryPolicy(attempts=4, backoff=10, factor=2, max_backoff=30).delays()
    [10.0, 20.0, 30.0]
    """

    attempts: int = 3
    backoff: float = 10.0
    factor: float = 2.0
    max_backoff: float = 600.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the failed try number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        from spotkit.backoff import Backoff

        return Backoff(self.backoff, self.factor, self.max_backoff).delay(attempt)

    def delays(self) -> list[float]:
        """The waits between all tries, in order (``attempts - 1`` of them)."""
        return [self.delay(i) for i in range(1, self.attempts)]

    def to_dict(self) -> dict[str, Any]:
        """The policy as written in a rules file."""
        return {"attempts": self.attempts, "backoff": self.backoff, "factor": self.factor,
                "max_backoff": self.max_backoff}


@dataclass(frozen=True)
class Route:
    """An action's queue-wait budget on its target, and where it goes while that is exceeded.

    Attributes
    ----------
    budget : float
        Seconds the action may wait in its target's queue (``queue_budget``).
    fallback : str
        The faster target (``fallback``) that takes the action meanwhile.
    recover : float
        The action goes back when the queue wait is below ``recover * budget``.

    Examples
    --------
    >>> Route(600.0, "local").to_dict()
    {'queue_budget': 600.0, 'fallback': 'local', 'recover': 0.5}
    """

    budget: float
    fallback: str
    recover: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        """The route as written in a rules file (seconds)."""
        return {"queue_budget": self.budget, "fallback": self.fallback,
                "recover": self.recover}


@dataclass(frozen=True)
class Action:
    """One notebook run that the rules ask for, for one dataset.

    Attributes
    ----------
    rule : str
        Name of the rule that asked for it.
    name : str
        The action's name, unique within its rule.
    notebook : str
        As written in the rules file (a shipped pipeline name or a path).
    notebook_path : pathlib.Path
        The notebook file to run.
    parameters : dict
        Parameters for the notebook (never the ones spotkit sets: ``dataset_id``...).
    stage : str
        The stage it belongs to.
    stage_index : int
        Position of the stage in the file's ``stages`` (0 runs first).
    after : tuple of str
        Names of actions of the same rule that must have succeeded before this one runs.
    target : str
        Name of the compute target.
    target_settings : dict
        The target's settings from the rules file (``kind``, ``concurrency``, constructor
        settings); build the target with :meth:`Rules.target`.
    concurrency : int
        At most this many actions run at once on the target.
    retry : RetryPolicy
    rules_version : str
        Short digest of the rules that produced the action, for provenance.
    route : Route or None
        Its queue-wait budget and fallback target (``queue_budget``, ``fallback``).
    """

    rule: str
    name: str
    notebook: str
    notebook_path: Path
    parameters: dict = field(hash=False)
    stage: str
    stage_index: int
    after: tuple[str, ...]
    target: str
    target_settings: dict = field(hash=False)
    concurrency: int
    retry: RetryPolicy
    rules_version: str
    route: Route | None = None

    @property
    def key(self) -> str:
        """``"<rule>/<action>"``: identifies the action for a dataset in the flow journal."""
        return f"{self.rule}/{self.name}"

    def provenance(self) -> dict[str, Any]:
        """What a run records about the rule that triggered it (JSON-serialisable)."""
        return {"rule": self.rule, "action": self.name, "stage": self.stage,
                "notebook": self.notebook, "target": self.target,
                "parameters": copy.deepcopy(self.parameters),
                "rules_version": self.rules_version}


@dataclass(frozen=True)
class Rule:
    """One rule: which datasets it matches, and its actions in execution order.

    Attributes
    ----------
    name : str
    match : dict
        ``beamline``, ``kind``, ``sample``, ``proposal`` (each a glob or a list of globs)
        and ``metadata`` (``{key: glob}``); all given criteria must hold.
    actions : tuple of Action
        Sorted by stage, then as written.
    """

    name: str
    match: dict = field(hash=False)
    actions: tuple[Action, ...]

    def matches(self, dataset) -> bool:
        """True if ``dataset`` (a catalog Dataset or a mapping) meets every criterion."""
        facts = _facts(dataset)
        for key in ("beamline", "kind", "sample", "proposal"):
            if key in self.match and not _glob_any(facts.get(key), self.match[key]):
                return False
        metadata = facts.get("metadata") or {}
        for key, pattern in (self.match.get("metadata") or {}).items():
            if key not in metadata or not _glob_any(metadata[key], pattern):
                return False
        return True


def _glob_any(value, patterns) -> bool:
    if value is None:
        return False
    pats = patterns if isinstance(patterns, list) else [patterns]
    return any(fnmatch.fnmatchcase(str(value), str(p)) for p in pats)


def _facts(dataset) -> dict[str, Any]:
    if isinstance(dataset, Mapping):
        facts = dict(dataset)
    else:
        facts = {k: getattr(dataset, k, None)
                 for k in ("id", "beamline", "kind", "sample", "proposal", "metadata")}
    meta = facts.get("metadata") or {}
    # a sample or beamline kept only in the metadata still counts
    for key in ("beamline", "sample", "proposal"):
        if facts.get(key) is None and key in meta:
            facts[key] = meta[key]
    return facts


class Rules:
    """A facility's validated rules; build it with :func:`load_rules`.

    Attributes
    ----------
    facility : str or None
    stages : tuple of str
        Stage names in execution order.
    rules : tuple of Rule
    alerts : tuple of spotkit.monitor.AlertRule
        The ``alerts`` section (empty without one).
    live : tuple of LiveTrigger
        The ``live`` section (empty without one): see :class:`spotkit.flows.LiveTriggers`.
    targets : dict
        ``{name: settings}`` as written (``kind``, ``concurrency``, constructor settings).
    retry : RetryPolicy
        The default policy.
    digest : str
        sha256 of the canonical form of the rules (see :meth:`to_dict`).
    version : str
        The first 12 hex digits of :attr:`digest`, recorded with every run's provenance.
    source : str or None
        The file it was read from.

    Examples
    --------
    >>> from spotkit.flows import load_rules
    >>> rules = load_rules('''
    ... targets:
    ...   local: {kind: local, max_workers: 2}
    ... rules:
    ...   - name: tomo
    ...     match: {beamline: "8.3.2", kind: tomo/raw}
    ...     actions:
    ...       - {name: preview, notebook: tomo_quicklook, stage: preview, target: local}
    ...       - {name: recon, notebook: tomo_recon, stage: full, target: local}
    ... ''')
    >>> ds = {"beamline": "8.3.2", "kind": "tomo/raw"}
    >>> [a.name for a in rules.actions_for(ds)]
    ['preview', 'recon']
    >>> rules.target("local").max_workers
    2
    """

    def __init__(self, data: dict[str, Any], rules: tuple[Rule, ...], *,
                 source: str | None = None):
        self._data = data
        self.facility = data.get("facility")
        self.stages = tuple(data["stages"])
        self.targets = data["targets"]
        self.retry = retry_from(data.get("retry") or {})
        self.rules = rules
        from spotkit.flows._rules_alerts import alert_rules

        self.alerts = alert_rules(data.get("alerts") or ())
        from spotkit.flows._rules_live_objects import live_triggers

        self.live = live_triggers(data.get("live"))
        self.source = source
        self.digest = digest(data)
        self.version = self.digest[:12]

    def __repr__(self) -> str:
        return (f"Rules(facility={self.facility!r}, rules={[r.name for r in self.rules]}, "
                f"targets={list(self.targets)}, version={self.version!r})")

    def __eq__(self, other) -> bool:
        return isinstance(other, Rules) and other.digest == self.digest

    __hash__ = None  # type: ignore[assignment]

    def matching(self, dataset) -> list[Rule]:
        """The rules whose match criteria ``dataset`` meets, in file order."""
        return [r for r in self.rules if r.matches(dataset)]

    def actions_for(self, dataset) -> list[Action]:
        """The actions to run for one dataset, in execution order.

        Parameters
        ----------
        dataset : spotkit.catalog.Dataset or mapping
            Anything with ``beamline``, ``kind`` and optionally ``sample``, ``proposal``
            and ``metadata``.

        Returns
        -------
        list of Action
            Of every matching rule, ordered by stage (preview first), then by rule and
            position in the file. Empty when no rule matches.
        """
        actions = [a for rule in self.matching(dataset) for a in rule.actions]
        order = {id(a): i for i, a in enumerate(actions)}
        actions.sort(key=lambda a: (a.stage_index, order[id(a)]))
        facts = _facts(dataset)
        log.debug("rules %s: %d action(s) for dataset %s (%s, %s)", self.version, len(actions),
                  facts.get("id"), facts.get("beamline"), facts.get("kind"))
        return actions

    def target(self, name: str):
        """Build the compute target named ``name`` (a :class:`spotkit.compute.Target`).

        Raises
        ------
        KeyError
            No target of that name is defined; the message lists those that are.
        """
        if name not in self.targets:
            raise KeyError(f"no target {name!r} in the rules; defined: {sorted(self.targets)}")
        settings = dict(self.targets[name])
        kind = settings.pop("kind")
        for key in TARGET_COMMON - {"kind"}:
            settings.pop(key, None)
        from spotkit.compute import make_target

        return make_target(kind, **settings)

    def to_dict(self) -> dict[str, Any]:
        """The rules in canonical form; ``load_rules(rules.to_dict())`` gives equal rules."""
        return copy.deepcopy(self._data)



def retry_from(spec: Mapping) -> RetryPolicy:
    """A :class:`RetryPolicy` from a (validated) ``retry`` mapping of a rules file."""
    defaults = RetryPolicy()
    return RetryPolicy(attempts=int(spec.get("attempts", defaults.attempts)),
                       backoff=float(spec.get("backoff", defaults.backoff)),
                       factor=float(spec.get("factor", defaults.factor)),
                       max_backoff=float(spec.get("max_backoff", defaults.max_backoff)))


def digest(data: Any) -> str:
    """sha256 of the canonical JSON form of the rules."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
