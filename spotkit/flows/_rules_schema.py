"""The schema of a rules file, as pydantic models, and its problems in the user's words.

:class:`DocumentSpec` describes the file (stages, retry, defaults, targets, rules), with
:class:`RuleSpec`, :class:`MatchSpec`, :class:`ActionSpec` and :class:`RetrySpec` below it.
The ``alerts`` section's models are in :mod:`spotkit.flows._rules_alerts`. A compute
target's settings are not written here: :func:`target_model` builds a model for
each target kind from the compute target registry (:func:`spotkit.compute.target_settings`,
``target_choices``), so a new target class, or a plug-in, is checked by its own constructor.

:func:`check_document` validates a document and returns every problem as a
:class:`Finding` (path in the document, message): pydantic collects them all in one pass,
and each is said in the words of the rules file (the field's description says what to
write; an unknown key gets the closest allowed one).
"""

from __future__ import annotations

import difflib
import functools
import logging
import types
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:  # the alerts section's models build on _Spec (spotkit.flows._rules_alerts,
    # which completes DocumentSpec when it is imported)
    from spotkit.flows._rules_alerts import AlertSpec
    from spotkit.flows._rules_live import LiveTriggerSpec, RetentionSpec

__all__ = [
    "DEFAULT_STAGES",
    "FORMAT_VERSION",
    "ActionSpec",
    "DocumentSpec",
    "Finding",
    "MatchSpec",
    "RetrySpec",
    "RuleSpec",
    "TargetSpec",
    "check_document",
    "check_targets",
    "show",
    "target_model",
]

log = logging.getLogger("spotkit.flows._rules")

FORMAT_VERSION = 1
DEFAULT_STAGES = ("preview", "full")
"""Stages in the order they run when a rules file does not list its own."""

Loc = tuple[Any, ...]


class Finding(NamedTuple):
    """One problem: where in the document (keys and list indices), and what to do."""

    loc: Loc
    message: str


# -- values shown back to the user ----------------------------------------------------------


def looks_like_key_material(value: Any) -> bool:
    """True for a string that holds a private key (it is never echoed back)."""
    return isinstance(value, str) and ("-----BEGIN" in value or "PRIVATE KEY" in value)


def show(value: Any) -> str:
    """``repr(value)`` (shortened), except for what looks like a key: that is never echoed."""
    if looks_like_key_material(value):
        return "<redacted key material>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _a(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "true/false",
             int: "an integer", float: "a number", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def did_you_mean(word: Any, choices: typing.Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fail(message: str) -> PydanticCustomError:
    """A validation error whose message is final (already says what to do)."""
    return PydanticCustomError("spotkit", "{message}", {"message": message})


# -- field types ----------------------------------------------------------------------------


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _globs(value: Any) -> str | list[str] | None:
    if value is None or (_is_scalar(value)):
        return None if value is None else str(value)
    if isinstance(value, list) and value and all(_is_scalar(v) for v in value):
        return [str(v) for v in value]
    raise _fail(f"{show(value)}: a glob string or a list of globs")


def _metadata_globs(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, Mapping) and all(_is_scalar(v) for v in value.values()):
        return {str(k): str(v) for k, v in value.items()}
    raise _fail(f"{show(value)}: a mapping {{metadata key: glob}}, e.g. {{energy_kev: '1*'}}")


def _names(value: Any) -> list[str] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if all(isinstance(x, str) and x for x in items):
        return list(items)
    raise _fail(f"{show(value)}: an action or stage name of this rule, or a list of them")


def _version(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != FORMAT_VERSION:
        raise _fail(f"format version {show(value)}; this spotkit reads version "
                    f"{FORMAT_VERSION}")
    return FORMAT_VERSION


def _unique(stages: list[str]) -> list[str]:
    if len(set(stages)) != len(stages):
        raise _fail(f"stage names repeat in {stages}; list each stage once, in the order "
                    "they run")
    return stages


_NAME = r"^[^/]+$"
_MATCH_HINT = ("match by 'beamline' and/or 'kind' (e.g. {beamline: '8.3.2', kind: tomo/raw}); "
               "'sample', 'proposal' and 'metadata' globs narrow it")
Globs = Annotated[Any, BeforeValidator(_globs)]


# -- the models -----------------------------------------------------------------------------


class _Spec(BaseModel):
    """Common to every part: unknown keys and loose types are refused, nothing coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    what: ClassVar[str] = ""
    """What this part is, said to a user who gave something else."""
    noun: ClassVar[str] = "field"

    @classmethod
    def allowed(cls) -> list[str]:
        """The keys a rules file may give this part."""
        return sorted(f.alias or name for name, f in cls.model_fields.items())

    @classmethod
    def unknown(cls, key: Any) -> str:
        """The message for a key this part does not have."""
        return (f"unknown {cls.noun} {show(key)}{did_you_mean(key, cls.allowed())}; "
                f"allowed: {cls.allowed()}")


class RetrySpec(_Spec):
    """How often a failed action is tried, and the waits between tries."""

    what = "retry is a mapping: {attempts: 3, backoff: 10, factor: 2, max_backoff: 600}"
    noun = "retry field"
    attempts: int = Field(3, ge=1, description="attempts is an integer >= 1 (tries in all)")
    backoff: float = Field(10.0, ge=0, description="backoff is a number >= 0 (seconds "
                           "before the second try)")
    factor: float = Field(2.0, ge=1, description="factor is a number >= 1 (each wait is the "
                          "previous one times it)")
    max_backoff: float = Field(600.0, ge=0, description="max_backoff is a number >= 0 "
                               "(seconds, the longest wait)")


class DefaultsSpec(_Spec):
    """What an action gets when it does not say."""

    what = "defaults is a mapping with 'target' and/or 'retry'"
    noun = "defaults field"
    target: str | None = Field(None, description="the name of a target under 'targets'")
    retry: RetrySpec | None = None


class MatchSpec(_Spec):
    """Which datasets a rule applies to: every given criterion must hold."""

    what = _MATCH_HINT
    noun = "match field"
    beamline: Globs = Field(None, description="a glob string or a list of globs")
    kind: Globs = Field(None, description="a glob string or a list of globs")
    sample: Globs = Field(None, description="a glob string or a list of globs")
    proposal: Globs = Field(None, description="a glob string or a list of globs")
    metadata: Annotated[Any, BeforeValidator(_metadata_globs)] = Field(
        None, description="a mapping {metadata key: glob}")

    @model_validator(mode="after")
    def _by_beamline_or_kind(self) -> MatchSpec:
        if self.beamline is None and self.kind is None:
            raise _fail(_MATCH_HINT)
        return self

    def criteria(self) -> dict[str, Any]:
        """The criteria given, as the rule matches them (globs as strings)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


def _budget(value: Any) -> float:
    from spotkit.monitor import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if not seconds > 0:
        raise _fail(f"{show(value)}: a queue-wait budget is a duration > 0 (90s, 10m, 1h)")
    return seconds


class ActionSpec(_Spec):
    """One notebook run of a rule."""

    what = ("an action is a mapping with name, notebook, target, stage, parameters, after "
            "(and retry; queue_budget with fallback)")
    noun = "action field"
    name: str = Field(min_length=1, pattern=_NAME, description="every action needs a name: "
                      "a non-empty string without '/'")
    notebook: str = Field(min_length=1, description="name a shipped pipeline notebook "
                          "(tomo_quicklook, tomo_recon, saxs_quicklook...) or a notebook path")
    parameters: dict[str, Any] | None = Field(None, description="a mapping {parameter name: "
                                              "value}")
    target: str | None = Field(None, description="the name of a target under 'targets'")
    stage: str | None = Field(None, description="the name of a stage listed under 'stages'")
    after: Annotated[Any, BeforeValidator(_names)] = Field(
        None, description="an action or stage name of this rule, or a list of them")
    retry: RetrySpec | None = None
    queue_budget: Annotated[Any, BeforeValidator(_budget)] = Field(
        None, description="queue_budget is a duration (90s, 10m, 1h): how long the action "
        "may wait in its target's queue before it goes to its fallback")
    fallback: str | None = Field(None, min_length=1, description="the name of a target under "
                                 "'targets' that takes the action while its target's queue "
                                 "wait is over queue_budget")
    recover: float = Field(0.5, gt=0, lt=1, description="recover is a number between 0 and "
                           "1: the action goes back when the queue wait is below recover x "
                           "queue_budget")

    @model_validator(mode="after")
    def _budget_and_fallback(self) -> ActionSpec:
        if (self.queue_budget is None) != (self.fallback is None):
            raise _fail("give queue_budget and fallback together (e.g. queue_budget: 10m, "
                        "fallback: local), or neither")
        if self.fallback is not None and self.fallback == self.target:
            raise _fail(f"the fallback {self.fallback!r} is the action's own target: name a "
                        "faster one (local, or a realtime QOS target)")
        return self


class RuleSpec(_Spec):
    """One rule: a match and its actions."""

    what = "a rule is a mapping with 'name', 'match' and 'actions'"
    noun = "rule field"
    name: str = Field(min_length=1, pattern=_NAME, description="every rule needs a name: a "
                      "non-empty string without '/'")
    match: MatchSpec = Field(description=_MATCH_HINT)
    actions: list[ActionSpec] = Field(min_length=1, description="a rule lists its actions: "
                                      "[{name, notebook, target, stage, parameters, after}]")
    description: str | None = Field(None, description="a description is text")


class DocumentSpec(_Spec):
    """A whole rules file. Each target is checked by its kind's model (:func:`target_model`)."""

    what = "a rules file is a mapping with 'targets' and 'rules'"
    noun = "top-level field"
    version: Annotated[Any, AfterValidator(_version)] = Field(
        FORMAT_VERSION, description=f"the format version, {FORMAT_VERSION}")
    facility: str | None = Field(None, description="the facility's name, a string")
    stages: Annotated[list[Annotated[str, Field(min_length=1)]], AfterValidator(_unique)] = (
        Field(default_factory=lambda: list(DEFAULT_STAGES), min_length=1,
              description="a list of stage names in execution order, e.g. [preview, full]"))
    retry: RetrySpec | None = None
    defaults: DefaultsSpec | None = None
    targets: dict[str, Any] = Field(min_length=1, description="define at least one compute "
                                    "target by name, e.g. targets: {local: {kind: local, "
                                    "max_workers: 2}}")
    rules: list[RuleSpec] = Field(default_factory=list, description="a list of rules, each "
                                  "with 'name', 'match' and 'actions'")
    alerts: list[AlertSpec] | None = Field(None, description="a list of alert rules, each with "
                                           "'name', 'match' and one of 'log', 'email', "
                                           "'webhook'")
    live: list[LiveTriggerSpec] | None = Field(None, description="a list of live triggers, "
                                               "each with 'name', 'on' and 'actions'")
    retention: RetentionSpec | None = None

    @model_validator(mode="after")
    def _rules_or_live(self) -> DocumentSpec:
        if not self.rules and not self.live:
            raise _fail("missing: a list of rules, each with 'name', 'match' and 'actions' "
                        "(a file with live triggers only may leave rules out)")
        return self


class TargetSpec(_Spec):
    """What every compute target has; :func:`target_model` adds its kind's settings."""

    what = "a target is a mapping with 'kind' and the settings of that kind"
    noun = "target setting"
    target_kind: ClassVar[str] = ""
    kind: str = Field(description="the kind of target")
    concurrency: int = Field(1, ge=1, description="concurrency is an integer >= 1 (actions "
                             "at once on this target)")
    description: str | None = Field(None, description="a description is text")

    @classmethod
    def unknown(cls, key: Any) -> str:
        return (f"not a setting of a {cls.target_kind} target{did_you_mean(key, cls.allowed())}"
                f"; allowed: {cls.allowed()}")


# -- target kinds, from the compute target registry -----------------------------------------


def _type_name(allowed: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping", bool: "true/false"}
    return " or ".join(names.get(t, t.__name__) for t in allowed)


def _isinstance(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed)


def _walltime(value: Any) -> None:
    from spotkit.compute import parse_walltime

    try:
        parse_walltime(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _at_least_one(value: Any) -> None:
    if value < 1:
        raise _fail(f"{show(value)}: must be >= 1")


#: checks of a setting's value by its name, for every kind that has the setting
_VALUE_CHECKS: dict[str, Callable[[Any], None]] = {
    "time": _walltime, "max_workers": _at_least_one, "nodes": _at_least_one}


def _setting_check(kind: str, name: str, allowed: tuple[type, ...],
                   choices: tuple[Any, ...] | None) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not _isinstance(value, allowed):
            raise _fail(f"{show(value)}: must be {_type_name(allowed)}")
        if choices is not None and value not in choices:
            raise _fail(f"unknown {name} {show(value)} for a {kind} target"
                        f"{did_you_mean(value, map(str, choices))}; choose one of "
                        f"{list(choices)}")
        if name in _VALUE_CHECKS:
            _VALUE_CHECKS[name](value)
        return value

    return check


def target_model(kind: str) -> type[TargetSpec]:
    """The model of a target of this kind: the common fields and its class's settings.

    Built from the compute target registry (:func:`spotkit.compute.target_settings` and
    ``target_choices``); a class registered again gets a new model.

    Raises
    ------
    ValueError
        The kind is unknown, or its plug-in cannot be loaded.
    """
    from spotkit.compute import target_class

    return _target_model(kind, target_class(kind))


@functools.lru_cache(maxsize=32)
def _target_model(kind: str, cls: type) -> type[TargetSpec]:
    from spotkit.compute import target_choices, target_settings

    settings = target_settings(kind)
    choices = target_choices(kind)
    fields: dict[str, Any] = {}
    for i, (name, allowed) in enumerate(settings.items()):
        if name in TargetSpec.model_fields:
            continue  # kind, concurrency and description mean the same for every target
        check = _setting_check(kind, name, allowed, choices.get(name))
        # stored under a neutral name: a setting may be called anything (even 'schema')
        fields[f"setting_{i}"] = (Annotated[Any, BeforeValidator(check)],
                                  Field(None, alias=name))
    model = create_model(f"{cls.__name__}TargetSpec", __base__=TargetSpec, **fields)
    model.target_kind = kind
    return model


# -- validation -----------------------------------------------------------------------------


def check_document(data: Any) -> tuple[DocumentSpec | None, list[Finding]]:
    """Validate a rules document (targets' settings apart: see :func:`check_targets`).

    Returns
    -------
    (DocumentSpec or None, list of Finding)
        The model when the document is valid, and every problem found.
    """
    import spotkit.flows._rules_live  # noqa: F401 (completes DocumentSpec's 'alerts', 'live')

    try:
        return DocumentSpec.model_validate(data), []
    except ValidationError as exc:
        return None, _findings(exc, DocumentSpec, ())


def check_targets(data: Any) -> list[Finding]:
    """Validate each target's settings against its kind's model (from the registry)."""
    from spotkit.compute import target_kinds

    targets = data.get("targets") if isinstance(data, Mapping) else None
    if not isinstance(targets, Mapping):
        return []  # check_document says what 'targets' should be
    out: list[Finding] = []
    kinds = target_kinds()
    for name, spec in targets.items():
        loc = ("targets", name)
        if not isinstance(spec, Mapping):
            out.append(Finding(loc, f"{TargetSpec.what}, one of {kinds} (got {_a(spec)})"))
            continue
        kind = spec.get("kind")
        if "kind" not in spec:
            out.append(Finding(loc, f"every target needs a kind: one of {kinds}"))
            continue
        if not isinstance(kind, str) or kind not in kinds:
            out.append(Finding((*loc, "kind"), f"unknown kind {show(kind)}"
                               f"{did_you_mean(kind, kinds)}; choose one of {kinds}"))
            continue
        try:
            model = target_model(kind)
        except ValueError as exc:  # a plug-in that cannot be loaded
            log.warning("%s", exc)
            out.append(Finding((*loc, "kind"), str(exc)))
            continue
        try:
            model.model_validate(dict(spec))
        except ValidationError as exc:
            out.extend(_findings(exc, model, loc))
    return out


def _findings(exc: ValidationError, model: type[_Spec], prefix: Loc) -> list[Finding]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(x for x in err["loc"] if x != "[key]")
        kind = err["type"]
        if kind == "spotkit":
            message = str((err.get("ctx") or {}).get("message"))
        elif "[key]" in err["loc"]:
            message = (f"{show(err.get('input'))}: a name here is text; write it in quotes "
                       f"(\"{err.get('input')}\")")
        elif kind == "extra_forbidden":
            owner, _hint = _describe(model, loc[:-1])
            message = (owner.unknown(loc[-1]) if owner is not None
                       else f"unknown field {show(loc[-1])}")
        else:
            _owner, hint = _describe(model, loc)
            value = err.get("input")
            if kind == "missing":
                message = f"missing: {hint}" if hint else "missing"
            elif kind in ("model_type", "model_attributes_type", "dict_type", "list_type"):
                message = f"{hint or err['msg']} (got {_a(value)})"
            else:
                message = f"{show(value)}: {hint or err['msg']}"
        out.append(Finding((*prefix, *loc), message))
    return out


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and ``X | None``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _describe(model: type[_Spec], loc: Loc) -> tuple[type[_Spec] | None, str]:
    """The part of the schema at ``loc``: its model (if it is one) and what to write there."""
    current: Any = model
    hint = model.what
    for key in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, _Spec):
            found = next((f for name, f in current.model_fields.items()
                          if key in (name, f.alias)), None)
            if found is None:
                return None, hint
            current = found.annotation
            inner = _unwrap(current)
            hint = found.description or (
                inner.what if isinstance(inner, type) and issubclass(inner, _Spec) else hint)
        elif origin in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return None, hint  # inside a plain value: the nearest description says it
        inner = _unwrap(current)
        if origin in (list, dict) and isinstance(inner, type) and issubclass(inner, _Spec):
            hint = inner.what
    current = _unwrap(current)
    owner = current if isinstance(current, type) and issubclass(current, _Spec) else None
    return owner, hint
