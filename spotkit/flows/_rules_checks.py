"""Checks of a rules file that look across its parts, or outside it.

The schema (:mod:`spotkit.flows._rules_schema`) checks each part on its own. Here: secrets
at any depth; names given twice; actions that name a target, stage or earlier action that
does not exist; and each action's notebook: that it exists and declares ``dataset_id``,
that its parameters pass the checks :func:`spotkit.run_notebook` makes (names, types,
ranges, choices from the notebook's ``spotkit.parameters`` metadata), and that it accepts
the dataset kinds the rule matches (``spotkit.kinds``).

Every check reads the document as written and steps over parts that the schema refuses,
so that all problems are found in one pass.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotkit.flows._rules_schema import (
    DEFAULT_STAGES,
    Finding,
    Loc,
    did_you_mean,
    looks_like_key_material,
)

__all__ = [
    "Notebooks",
    "check_notebooks",
    "check_references",
    "check_secrets",
    "resolve_after",
    "stages_of",
]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_WORDS = ("secret", "token", "password", "passwd", "private", "credential")
_SECRET_NAMES = {"key", "api_key", "apikey", "client_key", "pem", "jwk"}

_TARGET_KEY_ADVICE = ("secrets never go in a rules file (it is shared and recorded with "
                  "provenance); keep the NERSC client key in a key file readable only by you "
                  "(chmod 600, in ~/.superfacility) and name that file with 'key_file'")
_KEY_MATERIAL = ("looks like a private key: secrets never go in a rules file; keep keys in a "
                 "file readable only by you (chmod 600)")


# -- secrets --------------------------------------------------------------------------------


def _is_secret_name(key: Any) -> bool:
    low = str(key).lower()
    if low == "key_file":
        return False
    return low in _SECRET_NAMES or any(w in low for w in _SECRET_WORDS)


def _is_secret_setting(key: Any, value: Any, *, in_env: bool) -> bool:
    """A name (with a value) that carries a secret: a secret word anywhere in the name, or
    in an environment block also any ``..._KEY`` name (``SF_CLIENT_KEY``, ``AWS_..._KEY``)."""
    low = str(key).lower()
    if looks_like_key_material(value):
        return False  # reported as key material, with its own message
    if low.endswith(("key_file", "_path", "_dir")) or value in (None, "", False):
        return False
    if low.endswith("_env") and isinstance(value, str) and _ENV_NAME.match(value):
        return False  # names the environment variable that holds the secret (alerts)
    if any(w in low for w in _SECRET_WORDS):
        return True
    return in_env and (low in _SECRET_NAMES or low.endswith("key"))


def check_secrets(data: Any) -> list[Finding]:
    """Refuse secrets at any depth: key material as any value, secret-looking names
    (``NERSC_PASSWORD``, ``SF_CLIENT_KEY``, ``api_token``...) anywhere, e.g. in a target's
    ``env:``, and a target's own ``key``/``token``/``secret`` settings. The secret itself
    is never part of a message."""
    out: list[Finding] = []
    _secrets(data, (), out)
    return out


def _secrets(node: Any, path: Loc, out: list[Finding]) -> None:
    if isinstance(node, Mapping):
        in_env = bool(path) and str(path[-1]).lower() in ("env", "environment")
        for key, value in node.items():
            where = (*path, key)
            if len(where) == 3 and where[0] == "targets":  # a target's own setting
                if _is_secret_name(key) or looks_like_key_material(value):
                    out.append(Finding(where, _TARGET_KEY_ADVICE))
                    continue
            elif _is_secret_setting(key, value, in_env=in_env):
                out.append(Finding(where, (
                    f"{str(key)!r} looks like a secret: secrets never go in a rules file (it "
                    "is shared and recorded with provenance). Keep it in a file readable only "
                    "by you (chmod 600) and name the file instead (e.g. 'key_file'), or set "
                    "it in the environment of the process that runs the job")))
                continue
            _secrets(value, where, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _secrets(value, (*path, i), out)
    elif looks_like_key_material(node):
        out.append(Finding(path, _KEY_MATERIAL))


# -- names and references -------------------------------------------------------------------


def stages_of(data: Any) -> list[str]:
    """The stages in execution order (the default ones where the file's are unusable)."""
    stages = data.get("stages", DEFAULT_STAGES) if isinstance(data, Mapping) else None
    if (isinstance(stages, list | tuple) and stages
            and all(isinstance(s, str) and s for s in stages)):
        return list(dict.fromkeys(stages))
    return list(DEFAULT_STAGES)


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and value and "/" not in value else None


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def resolve_after(index: int, refs: list[str],
                  actions: Sequence[tuple[str | None, str | None]], stages: list[str]
                  ) -> tuple[list[str], list[str]]:
    """The actions that action ``index`` of a rule runs after, and the problems in its refs.

    Parameters
    ----------
    index : int
        The action's position in its rule.
    refs : list of str
        Its ``after``: names of actions, or of earlier stages (all their actions).
    actions : list of (name, stage)
        Every action of the rule, in order (None where not known).
    stages : list of str
        The stages in execution order.

    Returns
    -------
    (list of str, list of str)
        Names of the actions it waits for, and a message for each bad reference.
    """
    _me, my_stage = actions[index]
    mine = stages.index(my_stage) if my_stage in stages else None
    others = [(n, s) for k, (n, s) in enumerate(actions) if k != index and n is not None]
    by_name = dict(others)
    deps: list[str] = []
    problems: list[str] = []
    for ref in refs:
        if ref in by_name:
            dep = [(ref, by_name[ref])]
        elif ref in stages:
            dep = [(n, s) for n, s in others if s == ref]
            if not dep:
                problems.append(f"stage {ref!r} has no action in this rule")
                continue
        else:
            problems.append(f"unknown {ref!r}{did_you_mean(ref, [*by_name, *stages])}: "
                            f"'after' names an action ({sorted(by_name)}) or an earlier "
                            f"stage ({stages}) of this rule")
            continue
        for name, stage in dep:
            theirs = stages.index(stage) if stage in stages else None
            if mine is not None and theirs is not None and theirs >= mine:
                problems.append(f"bad stage order: stage {my_stage!r} runs after {name!r} of "
                                f"stage {stage!r}, which must run first; stages run in the "
                                f"order {stages}")
            elif name not in deps:
                deps.append(name)
    return deps, problems


def check_references(data: Any) -> list[Finding]:
    """Names given twice, and targets, stages and ``after`` that name nothing."""
    if not isinstance(data, Mapping):
        return []
    out: list[Finding] = []
    stages = stages_of(data)
    targets = data.get("targets")
    defined = sorted(map(str, targets)) if isinstance(targets, Mapping) else None

    def unknown_target(name: Any) -> str:
        return (f"unknown target {name!r}; defined targets: {defined or 'none'}"
                f"{did_you_mean(name, defined or [])}")

    defaults = data.get("defaults")
    default = defaults.get("target") if isinstance(defaults, Mapping) else None
    if isinstance(default, str) and defined is not None and default not in defined:
        out.append(Finding(("defaults", "target"), unknown_target(default)))
    rule_names: dict[str, int] = {}
    for i, rule in enumerate(_items(data.get("rules"))):
        if not isinstance(rule, Mapping):
            continue
        name = _name(rule.get("name"))
        if name is not None and name in rule_names:
            out.append(Finding(("rules", i, "name"), f"duplicate rule name {name!r} (also "
                               f"rule {rule_names[name]}); give each rule its own name"))
        if name is not None:
            rule_names.setdefault(name, i)
        actions: list[tuple[str | None, str | None]] = []
        specs: list[tuple[int, Mapping]] = []
        names: dict[str, int] = {}
        for j, spec in enumerate(_items(rule.get("actions"))):
            if not isinstance(spec, Mapping):
                continue
            loc = ("rules", i, "actions", j)
            aname = _name(spec.get("name"))
            if aname is not None and aname in names:
                out.append(Finding((*loc, "name"), f"duplicate action name (also action "
                                   f"{names[aname]} of this rule)"))
            if aname is not None:
                names.setdefault(aname, j)
            stage = spec.get("stage")
            if stage is None:
                stage = stages[-1]
            elif isinstance(stage, str) and stage not in stages:
                out.append(Finding((*loc, "stage"), f"unknown stage {stage!r}"
                                   f"{did_you_mean(stage, stages)}; stages, in order: "
                                   f"{stages}"))
                stage = None
            elif not isinstance(stage, str):
                stage = None
            target = spec.get("target")
            if target is None and default is None and defined is not None:
                out.append(Finding((*loc, "target"), f"no target: name one of "
                                   f"{defined or 'the targets'} (or set defaults.target)"))
            elif isinstance(target, str) and defined is not None and target not in defined:
                out.append(Finding((*loc, "target"), unknown_target(target)))
            fallback = spec.get("fallback")
            if isinstance(fallback, str) and defined is not None and fallback not in defined:
                out.append(Finding((*loc, "fallback"), unknown_target(fallback)))
            elif isinstance(fallback, str) and target is None and fallback == default:
                out.append(Finding((*loc, "fallback"), f"the fallback {fallback!r} is the "
                                   "action's own target (defaults.target): name a faster one"))
            actions.append((aname, stage))
            specs.append((j, spec))
        for k, (j, spec) in enumerate(specs):
            refs = spec.get("after")
            refs = [refs] if isinstance(refs, str) else refs
            if not (isinstance(refs, list) and all(isinstance(r, str) for r in refs)):
                continue  # nothing, or refused by the schema
            _deps, problems = resolve_after(k, refs, actions, stages)
            out.extend(Finding(("rules", i, "actions", j, "after"), p) for p in problems)
    return out


# -- notebooks ------------------------------------------------------------------------------


@dataclass
class Notebooks:
    """Notebooks named by a rules file, resolved against ``base`` (each looked at once)."""

    base: Path
    found: dict[str, tuple[Path | None, str]] = field(default_factory=dict)

    def resolve(self, notebook: str) -> tuple[Path | None, str]:
        """``(path, "")``, or ``(None, what is wrong and what to do)``."""
        if notebook not in self.found:
            self.found[notebook] = _inspect_notebook(notebook, self.base)
        return self.found[notebook]

    def path(self, notebook: str) -> Path:
        """The file of a notebook that :func:`check_notebooks` accepted."""
        path, problem = self.resolve(notebook)
        if path is None:
            raise ValueError(problem)
        return path


def _inspect_notebook(notebook: str, base: Path) -> tuple[Path | None, str]:
    from spotkit.runs import notebook_parameters, resolve_notebook

    as_path = Path(notebook).expanduser()
    local = as_path if as_path.is_absolute() else base / as_path
    if "/" in notebook or os.sep in notebook or local.is_file():
        path = local.resolve()
        if not path.is_file():
            return None, (f"no notebook file at {path}; give an existing .ipynb path or the "
                          "name of a shipped pipeline notebook (tomo_quicklook, tomo_recon...)")
    else:
        try:
            path = resolve_notebook(notebook)
        except FileNotFoundError as exc:
            text = str(exc)
            return None, text if ".ipynb" in text else f"{text} (or give a path to a .ipynb file)"
    try:
        declared = notebook_parameters(path)
    except Exception as exc:  # nbformat/papermill raise many kinds for a broken notebook
        return None, f"cannot read the parameters of {path}: {type(exc).__name__}: {exc}"
    if "dataset_id" not in declared:
        return None, (f"{path.name} does not declare 'dataset_id' in a cell tagged "
                      "'parameters'; spotkit needs it to run the notebook for a dataset")
    return path, ""


def _kinds(match: Any) -> list[str] | None:
    kinds = match.get("kind") if isinstance(match, Mapping) else None
    if isinstance(kinds, str | int | float) and not isinstance(kinds, bool):
        return [str(kinds)]
    if isinstance(kinds, list) and all(isinstance(k, str | int | float) for k in kinds):
        return [str(k) for k in kinds]
    return None  # any kind (run_notebook checks each dataset), or refused by the schema


def check_notebooks(data: Any, notebooks: Notebooks) -> list[Finding]:
    """Each action's notebook: found, its parameters accepted, the rule's kinds accepted."""
    from spotkit.errors import NotebookParameterValueError
    from spotkit.runs import check_parameters, notebook_kinds

    if not isinstance(data, Mapping):
        return []
    out: list[Finding] = []
    for i, rule in enumerate(_items(data.get("rules"))):
        if not isinstance(rule, Mapping):
            continue
        kinds = _kinds(rule.get("match"))
        for j, spec in enumerate(_items(rule.get("actions"))):
            notebook = spec.get("notebook") if isinstance(spec, Mapping) else None
            if not isinstance(notebook, str) or not notebook:
                continue  # refused by the schema
            loc = ("rules", i, "actions", j)
            path, problem = notebooks.resolve(notebook)
            if path is None:
                out.append(Finding((*loc, "notebook"), problem))
                continue
            params = spec.get("parameters") or {}
            if isinstance(params, Mapping) and all(isinstance(k, str) for k in params):
                # the checks run_notebook and submit make (key material is reported on
                # its own, and never echoed)
                shown = {k: v for k, v in params.items() if not looks_like_key_material(v)}
                try:
                    check_parameters(path, shown)
                except NotebookParameterValueError as exc:
                    out.extend(Finding((*loc, "parameters", p.name), p.message)
                               for p in exc.problems)
            accepted = notebook_kinds(path) if kinds is not None else None
            if kinds is None or accepted is None:
                continue
            refused = [k for k in kinds if not any(
                fnmatch.fnmatchcase(k, a) or fnmatch.fnmatchcase(a, k) for a in accepted)]
            if refused:
                out.append(Finding((*loc, "notebook"), (
                    f"{path.name} accepts datasets of kind {accepted}, but this rule matches "
                    f"{refused}; give a notebook for that kind (or narrow the rule's match)")))
    return out
