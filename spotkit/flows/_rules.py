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

:func:`load_rules` validates the whole file on load and reports every problem at once in
one :class:`~spotkit.errors.RulesError`, each problem with its rule, action, field and line.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotkit.errors import RulesError

__all__ = [
    "DEFAULT_STAGES",
    "Action",
    "RetryPolicy",
    "Rule",
    "RuleProblem",
    "Rules",
    "RulesError",
    "load_rules",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_STAGES = ("preview", "full")
"""Stages in the order they run when a rules file does not list its own."""

_TOP_KEYS = {"version", "facility", "stages", "retry", "defaults", "targets", "rules"}
_DEFAULT_KEYS = {"target", "retry"}
_RULE_KEYS = {"name", "match", "actions", "description"}
_MATCH_KEYS = {"beamline", "kind", "sample", "proposal", "metadata"}
_ACTION_KEYS = {"name", "notebook", "parameters", "target", "stage", "after", "retry"}
_RETRY_KEYS = {"attempts", "backoff", "factor", "max_backoff"}
_TARGET_COMMON = {"kind", "concurrency", "description"}


def _target_settings(kind) -> dict[str, tuple[type, ...]] | None:
    """The settings a target kind takes (derived from its class), None for an unknown kind."""
    from spotkit.compute import target_kinds, target_settings

    if not isinstance(kind, str) or kind not in target_kinds():
        return None
    try:
        return target_settings(kind)
    except ValueError as exc:  # a plug-in that cannot be loaded
        log.warning("%s", exc)
        return None


_SECRET_WORDS = ("secret", "token", "password", "passwd", "private", "credential")
_SECRET_NAMES = {"key", "api_key", "apikey", "client_key", "pem", "jwk"}


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
    """

    rule: str | None
    action: str | None
    field: str | None
    message: str
    line: int | None = None

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
        self.retry = _retry_from(data.get("retry") or {})
        self.rules = rules
        self.source = source
        self.digest = _digest(data)
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
        for key in _TARGET_COMMON - {"kind"}:
            settings.pop(key, None)
        from spotkit.compute import make_target

        return make_target(kind, **settings)

    def to_dict(self) -> dict[str, Any]:
        """The rules in canonical form; ``load_rules(rules.to_dict())`` gives equal rules."""
        return copy.deepcopy(self._data)


# -- loading ------------------------------------------------------------------------------


def load_rules(source, *, base_dir: str | os.PathLike | None = None) -> Rules:
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
    import yaml

    name = None
    lines: dict[tuple, int] = {}
    if isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        if isinstance(source, os.PathLike) or (
            isinstance(source, str) and "\n" not in source
            and (source.endswith((".yaml", ".yml")) or _is_file(source))
        ):
            path = Path(source)
            name = str(path)
            try:
                text = path.read_text()
            except OSError as exc:
                raise RulesError([RuleProblem(None, None, None, f"cannot read: {exc}")],
                                 name) from exc
            if base_dir is None:
                base_dir = path.resolve().parent
        else:
            text = str(source)
        try:
            data = yaml.safe_load(text)
            lines = _line_map(yaml.compose(text))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = mark.line + 1 if mark is not None else None
            what = getattr(exc, "problem", None) or str(exc)
            raise RulesError(
                [RuleProblem(None, None, None, f"not valid YAML: {what}", line)], name
            ) from None
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    checker = _Checker(lines, base)
    result = checker.check(data)
    if checker.problems:
        raise RulesError(checker.problems, name)
    canonical, rules = result
    loaded = Rules(canonical, rules, source=name)
    log.info("loaded rules %s%s: %d rule(s), %d target(s)", loaded.version,
             f" from {name}" if name else "", len(rules), len(loaded.targets))
    return loaded


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a long or odd line of YAML is no file name
        return False


def _line_map(node, path=(), out=None) -> dict[tuple, int]:
    """``{path: line}`` for every mapping key and sequence item of a composed YAML tree."""
    import yaml

    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = getattr(key, "value", None)
            out[(*path, k)] = key.start_mark.line + 1
            _line_map(value, (*path, k), out)
            out[(*path, k)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out)
    return out


def _retry_from(spec: Mapping) -> RetryPolicy:
    return RetryPolicy(**{k: spec[k] for k in _RETRY_KEYS if k in spec})


def _digest(data) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _choices(kind) -> dict[str, tuple]:
    from spotkit.compute import target_choices

    return target_choices(kind)


def _is_secret_name(key: str) -> bool:
    low = str(key).lower()
    if low == "key_file":
        return False
    return low in _SECRET_NAMES or any(w in low for w in _SECRET_WORDS)


def _is_secret_setting(key, value, *, in_env: bool) -> bool:
    """A name (with a value) that carries a secret: a secret word anywhere in the name, or
    in an environment block also any ``..._KEY`` name (``SF_CLIENT_KEY``, ``AWS_..._KEY``)."""
    low = str(key).lower()
    if _looks_like_key_material(value):
        return False  # reported as key material, with its own message
    if low.endswith(("key_file", "_path", "_dir")) or value in (None, "", False):
        return False
    if any(w in low for w in _SECRET_WORDS):
        return True
    return in_env and (low in _SECRET_NAMES or low.endswith("_key") or low.endswith("key"))


def _looks_like_key_material(value) -> bool:
    return isinstance(value, str) and ("-----BEGIN" in value or "PRIVATE KEY" in value)


def _show(value) -> str:
    """``repr(value)``, except for what looks like a key: that is never echoed."""
    return "<redacted key material>" if _looks_like_key_material(value) else repr(value)


def _type_name(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping", bool: "true/false"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _isinstance(value, types) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


class _Checker:
    """Walks a rules mapping, collecting every problem and the canonical form."""

    def __init__(self, lines: dict[tuple, int], base: Path):
        self.lines = lines
        self.base = base
        self.problems: list[RuleProblem] = []
        self._notebooks: dict[str, tuple[Path | None, dict | None]] = {}

    def add(self, path: tuple, message: str, *, rule=None, action=None, fld=None):
        line = None
        for i in range(len(path), -1, -1):
            if path[:i] in self.lines:
                line = self.lines[path[:i]]
                break
        self.problems.append(RuleProblem(rule, action, fld, message, line))

    # -- top level --------------------------------------------------------------------

    def check(self, data):
        if not isinstance(data, Mapping):
            self.add((), "a rules file is a mapping with 'targets' and 'rules' "
                         f"(got {type(data).__name__})")
            return None
        for key in data:
            if key not in _TOP_KEYS:
                self.add((key,), f"unknown top-level field; allowed: {sorted(_TOP_KEYS)}",
                         fld=str(key))
        self._key_material(data, ())
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            self.add(("version",), f"format version {version!r}; this spotkit reads "
                                   f"version {FORMAT_VERSION}", fld="version")
        facility = data.get("facility")
        if facility is not None and not isinstance(facility, str):
            self.add(("facility",), "must be a string", fld="facility")
        stages = self._stages(data.get("stages", list(DEFAULT_STAGES)))
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, Mapping):
            self.add(("defaults",), "must be a mapping with 'target' and/or 'retry'",
                     fld="defaults")
            defaults = {}
        for key in defaults:
            if key not in _DEFAULT_KEYS:
                self.add(("defaults", key), f"unknown field; allowed: {sorted(_DEFAULT_KEYS)}",
                         fld=f"defaults.{key}")
        retry = self._retry(data.get("retry", defaults.get("retry")),
                            ("retry",) if "retry" in data else ("defaults", "retry"), None, None)
        targets = self._targets(data.get("targets"))
        default_target = defaults.get("target")
        if default_target is not None and default_target not in targets:
            self.add(("defaults", "target"), f"unknown target {default_target!r}; defined "
                     f"targets: {sorted(targets) or 'none'}", fld="defaults.target")
            default_target = None
        canonical = {"version": FORMAT_VERSION, "facility": facility,
                     "stages": list(stages), "retry": (retry or RetryPolicy()).to_dict(),
                     "defaults": {"target": default_target}, "targets": targets, "rules": []}
        rules = self._rules(data.get("rules"), canonical)
        return canonical, rules

    def _key_material(self, node, path) -> None:
        """Refuse secrets at any depth: key material as any value, and secret-looking names
        (``NERSC_PASSWORD``, ``SF_CLIENT_KEY``, ``api_token``...) anywhere, e.g. in a
        target's ``env:``. A target's own settings are checked by ``_targets``."""
        if len(path) == 3 and path[0] == "targets":
            # a target's own setting: _targets has judged name and value; look deeper only
            if isinstance(node, Mapping | list):
                self._key_material_below(node, path)
            return
        if isinstance(node, Mapping | list):
            self._key_material_below(node, path)
        elif _looks_like_key_material(node):
            self.add(path, "looks like a private key: secrets never go in a rules file; "
                           "keep keys in a file readable only by you (chmod 600)",
                     fld=".".join(map(str, path)))

    def _key_material_below(self, node, path) -> None:
        items = node.items() if isinstance(node, Mapping) else enumerate(node)
        in_env = bool(path) and str(path[-1]).lower() in ("env", "environment")
        for key, value in items:
            where = (*path, key)
            if (isinstance(node, Mapping) and not (len(where) == 3 and where[0] == "targets")
                    and _is_secret_setting(key, value, in_env=in_env)):
                self.add(where, f"{key!r} looks like a secret: secrets never go in a rules "
                         "file (it is shared and recorded with provenance). Keep it in a file "
                         "readable only by you (chmod 600) and name the file instead (e.g. "
                         "'key_file'), or set it in the environment of the process that "
                         "runs the job", fld=".".join(map(str, where)))
                continue
            self._key_material(value, where)

    def _stages(self, stages) -> list[str]:
        if (not isinstance(stages, list) or not stages
                or not all(isinstance(s, str) and s for s in stages)):
            self.add(("stages",), "a list of stage names in execution order, e.g. "
                                  "[preview, full]", fld="stages")
            return list(DEFAULT_STAGES)
        if len(set(stages)) != len(stages):
            self.add(("stages",), f"stage names repeat in {stages}", fld="stages")
        return list(dict.fromkeys(stages))

    def _retry(self, spec, path, rule, action) -> RetryPolicy | None:
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            self.add(path, "retry is a mapping: {attempts: 3, backoff: 10, factor: 2, "
                           "max_backoff: 600}", rule=rule, action=action, fld="retry")
            return None
        ok = True
        for key, value in spec.items():
            if key not in _RETRY_KEYS:
                self.add((*path, key), f"unknown retry field; allowed: {sorted(_RETRY_KEYS)}",
                         rule=rule, action=action, fld=f"retry.{key}")
                ok = False
            elif key == "attempts" and not (_isinstance(value, (int,)) and value >= 1):
                self.add((*path, key),
                         f"{_show(value)}: attempts is an integer >= 1 (tries in all)",
                         rule=rule, action=action, fld="retry.attempts")
                ok = False
            elif key != "attempts" and not (
                _isinstance(value, (int, float)) and value >= (1 if key == "factor" else 0)
            ):
                low = 1 if key == "factor" else 0
                self.add((*path, key), f"{_show(value)}: {key} is a number >= {low} (seconds"
                         f"{'' if key != 'factor' else ' multiplier'})",
                         rule=rule, action=action, fld=f"retry.{key}")
                ok = False
        if not ok:
            return None
        return RetryPolicy(**{k: (float(v) if k != "attempts" else v)
                              for k, v in spec.items()})

    # -- targets ----------------------------------------------------------------------

    def _targets(self, targets) -> dict[str, dict]:
        if not isinstance(targets, Mapping) or not targets:
            self.add(("targets",), "define at least one compute target by name, e.g. "
                                   "targets: {local: {kind: local, max_workers: 2}}",
                     fld="targets")
            return {}
        out = {}
        for name, spec in targets.items():
            where = f"target {name!r}"
            path = ("targets", name)
            if not isinstance(spec, Mapping):
                self.add(path, "a target is a mapping with 'kind' (local, slurm or nersc) "
                               "and its settings", rule=where)
                continue
            kind = spec.get("kind")
            settings = _target_settings(kind)
            known = settings is not None
            if not known:
                from spotkit.compute import target_kinds

                self.add((*path, "kind"), f"unknown kind {kind!r}; choose one of "
                         f"{target_kinds()}", rule=where, fld="kind")
            allowed = settings or {}
            good = True
            for key, value in spec.items():
                if _is_secret_name(key) or _looks_like_key_material(value):
                    self.add((*path, key), "secrets never go in a rules file (it is shared "
                             "and recorded with provenance); keep the NERSC client key in a "
                             "key file readable only by you (chmod 600, in ~/.superfacility) "
                             "and name that file with 'key_file'", rule=where, fld=str(key))
                    good = False
                elif key == "concurrency":
                    if not (_isinstance(value, (int,)) and value >= 1):
                        self.add((*path, key), f"{_show(value)}: concurrency is an integer >= 1 "
                                 "(actions at once on this target)", rule=where, fld=key)
                        good = False
                elif key in _TARGET_COMMON:
                    if key == "description" and not isinstance(value, str):
                        self.add((*path, key), "must be a string", rule=where, fld=key)
                elif known and key not in allowed:
                    self.add((*path, key), f"not a setting of a {kind} target; allowed: "
                             f"{sorted(set(allowed) | _TARGET_COMMON)}", rule=where, fld=key)
                    good = False
                elif known and not _isinstance(value, allowed[key]):
                    self.add((*path, key), f"{_show(value)}: must be {_type_name(allowed[key])}",
                             rule=where, fld=key)
                    good = False
                elif known and key in _choices(kind):
                    choices = _choices(kind)[key]
                    if value not in choices:
                        self.add((*path, key), f"unknown {key} {_show(value)} for a {kind} "
                                 f"target; choose one of {list(choices)}", rule=where, fld=key)
                        good = False
                elif key == "time":
                    from spotkit.compute import parse_walltime

                    try:
                        parse_walltime(value)
                    except ValueError as exc:
                        self.add((*path, key), str(exc), rule=where, fld=key)
                        good = False
                elif key in ("max_workers", "nodes") and value < 1:
                    self.add((*path, key), f"{_show(value)}: must be >= 1", rule=where, fld=key)
                    good = False
            if known and good:
                out[str(name)] = {"concurrency": 1, **dict(spec)}
            elif known:
                out[str(name)] = dict(spec)  # kept so that rules naming it are not blamed
        return out

    # -- rules ------------------------------------------------------------------------

    def _rules(self, rules, canonical) -> tuple[Rule, ...]:
        if not isinstance(rules, list) or not rules:
            self.add(("rules",), "a list of rules, each with 'name', 'match' and 'actions'",
                     fld="rules")
            return ()
        out = []
        seen: dict[str, int] = {}
        for i, spec in enumerate(rules):
            path = ("rules", i)
            if not isinstance(spec, Mapping):
                self.add(path, "a rule is a mapping with 'name', 'match' and 'actions'",
                         rule=f"rule {i}")
                continue
            name = spec.get("name")
            where = f"rule {i}" + (f" {name!r}" if name is not None else "")
            if not isinstance(name, str) or not name or "/" in name:
                self.add((*path, "name"), "every rule needs a name: a non-empty string "
                         "without '/'", rule=where, fld="name")
                name = f"rule-{i}"
            elif name in seen:
                self.add((*path, "name"), f"duplicate rule name (also rule {seen[name]})",
                         rule=where, fld="name")
            seen.setdefault(name, i)
            for key in spec:
                if key not in _RULE_KEYS:
                    self.add((*path, key), f"unknown field; a rule has {sorted(_RULE_KEYS)}",
                             rule=where, fld=str(key))
            match = self._match(spec.get("match"), (*path, "match"), where)
            actions = self._actions(spec.get("actions"), (*path, "actions"), where, name,
                                    canonical)
            self._kinds(match, actions, (*path, "actions"), where)
            canon_rule = {"name": name, "match": match,
                          "actions": [a for a, _ in actions]}
            if spec.get("description") is not None:
                canon_rule["description"] = str(spec["description"])
            canonical["rules"].append(canon_rule)
            out.append((name, match, [a for _, a in actions]))
        if self.problems:
            return ()
        version = _digest(canonical)[:12]
        built = []
        for name, match, actions in out:
            objs = [Action(rule=name, rules_version=version, **a) for a in actions]
            objs.sort(key=lambda a: a.stage_index)  # stable: file order within a stage
            built.append(Rule(name=name, match=match, actions=tuple(objs)))
        return tuple(built)

    def _kinds(self, match, actions, path, where) -> None:
        """Refuse an action whose notebook does not accept the kinds the rule matches."""
        import fnmatch

        from spotkit.runs import notebook_kinds

        kinds = match.get("kind")
        if kinds is None:
            return  # the rule matches any kind: run_notebook checks each dataset
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        for j, (_canon, obj) in enumerate(actions):
            if obj["notebook_path"] is None:
                continue
            accepted = notebook_kinds(obj["notebook_path"])
            if accepted is None:
                continue
            refused = [k for k in kinds if not any(
                fnmatch.fnmatchcase(k, a) or fnmatch.fnmatchcase(a, k) for a in accepted)]
            if refused:
                self.add((*path, j, "notebook"), f"{obj['notebook_path'].name} accepts "
                         f"datasets of kind {accepted}, but this rule matches {refused}; "
                         "give a notebook for that kind (or narrow the rule's match)",
                         rule=where, action=obj["name"], fld="notebook")

    def _match(self, match, path, where) -> dict:
        if not isinstance(match, Mapping) or not ({"beamline", "kind"} & set(match)):
            self.add(path, "match by 'beamline' and/or 'kind' (e.g. {beamline: '8.3.2', "
                           "kind: tomo/raw}); 'sample', 'proposal' and 'metadata' globs "
                           "narrow it", rule=where, fld="match")
            return {}
        out = {}
        for key, value in match.items():
            if key not in _MATCH_KEYS:
                self.add((*path, key), f"unknown match field; allowed: {sorted(_MATCH_KEYS)}",
                         rule=where, fld=f"match.{key}")
            elif key == "metadata":
                if not isinstance(value, Mapping) or not all(
                    isinstance(v, str | int | float) and not isinstance(v, bool)
                    for v in value.values()
                ):
                    self.add((*path, key), "a mapping {metadata key: glob}",
                             rule=where, fld="match.metadata")
                else:
                    out[key] = {str(k): str(v) for k, v in value.items()}
            elif isinstance(value, list) and value and all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
            ):
                out[key] = [str(v) for v in value]
            elif isinstance(value, str | int | float) and not isinstance(value, bool):
                out[key] = str(value)
            else:
                self.add((*path, key), f"{_show(value)}: a glob string or a list of globs",
                         rule=where, fld=f"match.{key}")
        return out

    def _actions(self, actions, path, where, rule_name, canonical) -> list[tuple[dict, dict]]:
        if not isinstance(actions, list) or not actions:
            self.add(path, "a rule lists its actions: [{name, notebook, target, stage, "
                           "parameters, after}]", rule=where, fld="actions")
            return []
        stages = canonical["stages"]
        targets = canonical["targets"]
        default_target = canonical["defaults"]["target"]
        default_retry = RetryPolicy(**canonical["retry"])
        names: dict[str, int] = {}
        parsed = []
        for j, spec in enumerate(actions):
            apath = (*path, j)
            if not isinstance(spec, Mapping):
                self.add(apath, "an action is a mapping with name, notebook, target, stage, "
                                "parameters, after", rule=where, action=j)
                continue
            aname = spec.get("name")
            label = aname if isinstance(aname, str) and aname else j
            if not isinstance(aname, str) or not aname or "/" in aname:
                self.add((*apath, "name"), "every action needs a name: a non-empty string "
                         "without '/'", rule=where, action=label, fld="name")
                aname = f"action-{j}"
            elif aname in names:
                self.add((*apath, "name"), f"duplicate action name (also action "
                         f"{names[aname]} of this rule)", rule=where, action=label, fld="name")
            names.setdefault(aname, j)
            for key in spec:
                if key not in _ACTION_KEYS:
                    self.add((*apath, key), f"unknown field; an action has "
                             f"{sorted(_ACTION_KEYS)}", rule=where, action=label, fld=str(key))
            stage = spec.get("stage", stages[-1])
            if stage not in stages:
                self.add((*apath, "stage"), f"unknown stage {stage!r}; stages, in order: "
                         f"{stages}", rule=where, action=label, fld="stage")
                stage = None
            target = spec.get("target", default_target)
            if target is None:
                self.add(apath, "no target: name one of "
                         f"{sorted(targets) or 'the targets'} (or set defaults.target)",
                         rule=where, action=label, fld="target")
            elif not isinstance(target, str) or target not in targets:
                self.add((*apath, "target"), f"unknown target {target!r}; defined targets: "
                         f"{sorted(targets) or 'none'}", rule=where, action=label,
                         fld="target")
                target = None
            retry = self._retry(spec.get("retry"), (*apath, "retry"), where, label)
            notebook, nb_path, params = self._notebook(spec, apath, where, label)
            parsed.append({"j": j, "spec": spec, "name": aname, "label": label,
                           "stage": stage, "target": target, "retry": retry,
                           "notebook": notebook, "nb_path": nb_path, "params": params})
        out = []
        by_name = {p["name"]: p for p in parsed}
        for p in parsed:
            after = self._after(p, parsed, by_name, stages, (*path, p["j"]), where)
            retry = p["retry"] or default_retry
            canon = {"name": p["name"], "notebook": p["notebook"], "stage": p["stage"],
                     "target": p["target"], "parameters": p["params"], "after": list(after)}
            if p["spec"].get("retry") is not None:
                canon["retry"] = retry.to_dict()
            settings = targets.get(p["target"], {})
            obj = {"name": p["name"], "notebook": p["notebook"],
                   "notebook_path": p["nb_path"], "parameters": p["params"],
                   "stage": p["stage"],
                   "stage_index": stages.index(p["stage"]) if p["stage"] in stages else -1,
                   "after": after, "target": p["target"],
                   "target_settings": dict(settings),
                   "concurrency": settings.get("concurrency", 1), "retry": retry}
            out.append((canon, obj))
        return out

    def _after(self, p, parsed, by_name, stages, apath, where) -> tuple[str, ...]:
        raw = p["spec"].get("after")
        if raw is None:
            return ()
        items = raw if isinstance(raw, list) else [raw]
        if not all(isinstance(x, str) for x in items):
            self.add((*apath, "after"), f"{raw!r}: an action or stage name of this rule, or "
                     "a list of them", rule=where, action=p["label"], fld="after")
            return ()
        deps: list[str] = []
        my_stage = stages.index(p["stage"]) if p["stage"] in stages else None
        for ref in items:
            if ref in by_name and ref != p["name"]:
                dep = [by_name[ref]]
            elif ref in stages:
                dep = [q for q in parsed if q["stage"] == ref and q is not p]
                if not dep:
                    self.add((*apath, "after"), f"stage {ref!r} has no action in this rule",
                             rule=where, action=p["label"], fld="after")
                    continue
            else:
                self.add((*apath, "after"), f"unknown {ref!r}: 'after' names an action "
                         f"({sorted(n for n in by_name if n != p['name'])}) or an earlier "
                         f"stage ({stages}) of this rule", rule=where, action=p["label"],
                         fld="after")
                continue
            for q in dep:
                qi = stages.index(q["stage"]) if q["stage"] in stages else None
                if my_stage is not None and qi is not None and qi >= my_stage:
                    self.add((*apath, "after"), f"bad stage order: stage {p['stage']!r} runs "
                             f"after {q['name']!r} of stage {q['stage']!r}, which must run "
                             f"first; stages run in the order {stages}", rule=where,
                             action=p["label"], fld="after")
                elif q["name"] not in deps:
                    deps.append(q["name"])
        return tuple(deps)

    def _notebook(self, spec, apath, where, label):
        notebook = spec.get("notebook")
        params = spec.get("parameters") or {}
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            self.add((*apath, "parameters"), "a mapping {parameter name: value}",
                     rule=where, action=label, fld="parameters")
            params = {}
        params = dict(params)
        if not isinstance(notebook, str) or not notebook:
            self.add((*apath, "notebook"), "name a shipped pipeline notebook "
                     "(tomo_quicklook, tomo_recon, saxs_quicklook...) or a notebook path",
                     rule=where, action=label, fld="notebook")
            return notebook, None, params
        nb_path, declared = self._inspect(notebook)
        if nb_path is None:
            self.add((*apath, "notebook"), declared, rule=where, action=label,
                     fld="notebook")
            return notebook, None, params
        from spotkit.runs import NotebookParameterValueError, check_parameters

        # the same checks run_notebook and submit make: names, types, ranges, choices (key
        # material is reported on its own, and never echoed)
        shown = {k: v for k, v in params.items() if not _looks_like_key_material(v)}
        try:
            check_parameters(nb_path, shown)
        except NotebookParameterValueError as exc:
            for problem in exc.problems:
                self.add((*apath, "parameters", problem.name), problem.message,
                         rule=where, action=label, fld=f"parameters.{problem.name}")
        return notebook, nb_path, params

    def _inspect(self, notebook: str):
        if notebook not in self._notebooks:
            self._notebooks[notebook] = _inspect_notebook(notebook, self.base)
        return self._notebooks[notebook]


def _inspect_notebook(notebook: str, base: Path):
    """``(path, declared parameters)``, or ``(None, message)`` when it cannot be used."""
    from spotkit.runs import notebook_parameters, resolve_notebook

    as_path = Path(notebook).expanduser()
    local = as_path if as_path.is_absolute() else base / as_path
    if "/" in notebook or os.sep in notebook or local.is_file():
        path = local.resolve()
        if not path.is_file():
            return None, f"no notebook file at {path}; give an existing .ipynb path or the " \
                         "name of a shipped pipeline notebook (tomo_quicklook, tomo_recon...)"
    else:
        try:
            path = resolve_notebook(notebook)
        except FileNotFoundError as exc:
            return None, f"{exc} (or give a path to a .ipynb file)"
    try:
        declared = notebook_parameters(path)
    except Exception as exc:  # nbformat/papermill raise many kinds for a broken notebook
        return None, f"cannot read the parameters of {path}: {type(exc).__name__}: {exc}"
    if "dataset_id" not in declared:
        return None, (f"{path.name} does not declare 'dataset_id' in a cell tagged "
                      "'parameters'; spotkit needs it to run the notebook for a dataset")
    return path, declared


