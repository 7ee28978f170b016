"""The ``live:`` section of a rules file: what to do when a series being written changes.

Each live trigger watches one series while ``spotkit live`` follows it
(:class:`spotkit.flows.LiveTriggers`) and fires on a confirmed change (``on: onset``),
after ``frames`` frames in which nothing changed (``on: quiet``), or every ``frames``
frames (``on: every``). A fired trigger runs its actions, each one of ``notebook``,
``priority``, ``notify``, ``hook`` or ``fit``::

    live:
      - name: onset-look
        match: {beamline: "12.3.1", sample: "gel*"}    # beamline, proposal, sample, kind
        on: onset
        min_confidence: 0.99
        features: ["band_*"]         # globs on the feature that flagged the change
        bands: [[0.2, 0.8]]          # q ranges (nm^-1): the change's band must overlap one
        cooldown: 20                 # frames (a number) or a duration (5m)
        actions:
          - notebook: {path: saxs_quicklook, target: local, window: [5, 20],
                       parameters: {npt: 500}}     # frames: [onset - 5, onset + 20]
          - priority: {level: 10, window: [5, 20]}  # those frames are transferred first
          - notify: {alert: chat}                   # an alert of the 'alerts' section
          - hook: {url: "http://beamline-ioc:8080/spotkit", timeout: 2}
      - name: sphere-fit
        on: every
        frames: 10
        actions:
          - fit: {model: sphere}                    # fitted here (spotkit.live.fit_latest)
      - name: settled
        on: quiet
        frames: 50
        actions:
          - fit: {model: guinier_porod, target: cluster}   # notebook saxs_fit on a target

YAML 1.1 reads an unquoted ``on`` key as ``true``; the file is read so that ``on:`` means
``on``. Secrets never go in the file: a hook URL with a token is named by ``url_env``.

:func:`check_live` looks across the file (the alert, the target and the notebook that an
action names); :func:`live_canonical` gives the canonical form, which the
:class:`~spotkit.flows.LiveTrigger` objects are built from
(:mod:`spotkit.flows._rules_live_objects`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from spotkit.flows._rules_alerts import AlertSpec
from spotkit.flows._rules_live_retention import RetentionSpec, retention_canonical
from spotkit.flows._rules_schema import DocumentSpec, Finding, _fail, _Spec, did_you_mean, show

if TYPE_CHECKING:
    from spotkit.flows._rules_checks import Notebooks

__all__ = [
    "ACTION_KINDS",
    "FIT_NOTEBOOK",
    "TRIGGER_KINDS",
    "LiveTriggerSpec",
    "RetentionSpec",
    "check_live",
    "live_canonical",
    "retention_canonical",
]

TRIGGER_KINDS = ("onset", "quiet", "every")
ACTION_KINDS = ("notebook", "priority", "notify", "hook", "fit")
#: the shipped notebook a ``fit`` action with a ``target`` runs (spotkit.live's fit, batch)
FIT_NOTEBOOK = "saxs_fit"
#: the notebook parameter that receives a window's frames ``[first, last]``
WINDOW_PARAMETER = "frames"
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = r"^[A-Za-z0-9_.@+-]+$"  # a live point's kind carries it: decision:<name>


# -- field types ----------------------------------------------------------------------------


def _globs(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if items and all(isinstance(v, str | int | float) and not isinstance(v, bool)
                     and str(v) for v in items):
        return tuple(str(v) for v in items)
    raise _fail(f"{show(value)}: a glob string or a list of globs")


def _window(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        return int(value[0]), int(value[1])
    raise _fail(f"{show(value)}: window is [before, after], two whole numbers of frames >= 0 "
                "(e.g. [5, 20]: from 5 frames before the onset to 20 after it)")


def _bands(value: Any) -> tuple[tuple[float, float], ...] | None:
    if value is None:
        return None
    ok = isinstance(value, list) and value and all(
        isinstance(b, list) and len(b) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in b)
        and b[0] < b[1] for b in value)
    if not ok:
        raise _fail(f"{show(value)}: bands is a list of q ranges [low, high] with low < high, "
                    "in the live series' radial unit (e.g. [[0.2, 0.8]] nm^-1)")
    return tuple((float(lo), float(hi)) for lo, hi in value)


def _cooldown(value: Any) -> dict[str, float]:
    """A number is frames; text with a unit (90s, 5m, 1h) is a duration."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return {"frames": float(value), "seconds": 0.0}
    if isinstance(value, str):
        from spotkit.monitor import parse_duration

        try:
            return {"frames": 0.0, "seconds": parse_duration(value)}
        except ValueError:
            pass
    raise _fail(f"{show(value)}: cooldown is a number of frames (20) or a duration with its "
                "unit (90s, 5m, 1h)")


def _env_name(value: Any) -> str:
    if isinstance(value, str) and _ENV.match(value):
        return value
    raise _fail("the NAME of an environment variable that holds the URL (e.g. "
                "SPOTKIT_HOOK_URL), never the value itself")


def _argv(value: Any) -> tuple[str, ...]:
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise _fail(f"{show(value)}: command is a list of strings [program, arg, ...] (no shell: "
                "the decision comes as JSON on its standard input)")


def _q_range(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                    for v in value) and value[0] < value[1]):
        return float(value[0]), float(value[1])
    raise _fail(f"{show(value)}: q_range is [low, high], 0 <= low < high, in nm^-1")


Globs = Annotated[Any, BeforeValidator(_globs)]
Window = Annotated[Any, BeforeValidator(_window)]


# -- the models -----------------------------------------------------------------------------


class LiveMatchSpec(_Spec):
    """Which series a live trigger watches (every given criterion must hold)."""

    what = ("match is a mapping of globs: {beamline: '12.3.1', proposal, sample, kind}; "
            "without it the trigger watches every series")
    noun = "match field"
    beamline: Globs = Field(None, description="a glob string or a list of globs")
    proposal: Globs = Field(None, description="a glob string or a list of globs")
    sample: Globs = Field(None, description="a glob string or a list of globs")
    kind: Globs = Field(None, description="a glob string or a list of globs")


class NotebookActionSpec(_Spec):
    """Run a notebook on the frames around the decision (spotkit.submit)."""

    what = ("notebook is a mapping: {path: saxs_quicklook, target: local, window: [5, 20], "
            "parameters: {...}}")
    noun = "notebook field"
    path: str = Field(min_length=1, description="path names a shipped pipeline notebook "
                      "(saxs_quicklook...) or a notebook file")
    target: str | None = Field(None, description="the name of a target under 'targets'")
    window: Window = Field(None, description="window is [before, after] frames")
    parameters: dict[str, Any] | None = Field(None, description="a mapping {parameter name: "
                                              "value}")


class PriorityActionSpec(_Spec):
    """Transfer the frames around the decision first."""

    what = "priority is a mapping: {level: 10, window: [5, 20]}"
    noun = "priority field"
    level: int = Field(10, ge=1, le=1000, description="level is a whole number 1-1000 "
                       "(higher goes first)")
    window: Window = Field(None, description="window is [before, after] frames (default: "
                           "the whole series)")


class NotifyActionSpec(_Spec):
    """Tell people through one alert of the ``alerts`` section (its channel)."""

    what = "notify is a mapping: {alert: <name of an alert under 'alerts'>}"
    noun = "notify field"
    alert: str = Field(min_length=1, description="the name of an alert under 'alerts'")
    severity: Literal["info", "warning", "critical"] = Field(
        "info", description="severity is one of info, warning, critical")


class HookActionSpec(_Spec):
    """Tell the beamline: an HTTP POST of the decision as JSON, or a command."""

    what = ("hook is a mapping: {url: http://...} or {url_env: VAR} or {command: [prog, arg]}, "
            "and timeout")
    noun = "hook field"
    url: str | None = Field(None, pattern=r"^https?://", description="url starts with "
                            "http:// or https://")
    url_env: Annotated[Any, BeforeValidator(_env_name)] = Field(
        None, description="the name of the environment variable with the URL")
    command: Annotated[Any, BeforeValidator(_argv)] = Field(
        None, description="command is a list of strings [program, arg, ...]")
    timeout: float = Field(5.0, gt=0, le=600, description="timeout is a number of seconds "
                           "(0-600]")

    @model_validator(mode="after")
    def _one_way(self) -> HookActionSpec:
        given = [k for k in ("url", "url_env", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise _fail(f"a hook has exactly one of url, url_env or command (got "
                        f"{given or 'none'})")
        if self.url is not None and re.search(r"token=|key=|/hooks/|hooks\.slack\.com",
                                              self.url):
            raise _fail("this URL holds a secret token: set it in an environment variable "
                        "and name that with url_env")
        return self


class FitActionSpec(_Spec):
    """Fit a scattering model to the current I(q): here, or as a batch job on a target."""

    what = "fit is a mapping: {model: sphere, target: <optional>, window: [before, after]}"
    noun = "fit field"
    model: str = Field(min_length=1, description="model names a scattering model (sphere, "
                       "core_shell_sphere, guinier_porod, a peak...)")
    target: str | None = Field(None, description="the name of a target under 'targets' (the "
                               "fit runs notebook saxs_fit there); without it, here")
    window: Window = Field(None, description="window is [before, after] frames (default: the "
                           "frame of the decision)")
    params: dict[str, Any] | None = Field(None, description="params is a mapping of starting "
                                          "or held values {name: value} (nm units)")
    free: list[str] | None = Field(None, description="free is a list of the parameters to fit")
    method: str | None = Field(None, min_length=1, description="method names a bumps fitter "
                               "(lm, dream...)")
    q_range: Annotated[Any, BeforeValidator(_q_range)] = Field(
        None, description="q_range is [low, high] in nm^-1")


class LiveActionSpec(_Spec):
    """One action of a live trigger: exactly one of its kinds."""

    what = ("an action is a mapping with one of 'notebook', 'priority', 'notify', 'hook' or "
            "'fit' (and an optional name)")
    noun = "action field"
    name: str | None = Field(None, min_length=1, pattern=_NAME, description="an action name "
                             "is letters, digits and _ . @ + -")
    notebook: NotebookActionSpec | None = None
    priority: PriorityActionSpec | None = None
    notify: NotifyActionSpec | None = None
    hook: HookActionSpec | None = None
    fit: FitActionSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> LiveActionSpec:
        given = [k for k in ACTION_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise _fail(f"an action does exactly one of {list(ACTION_KINDS)} (got "
                        f"{given or 'none'}); write two actions for two")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ACTION_KINDS if getattr(self, k) is not None)


def _on_key(data: Any) -> Any:
    """``on:`` as YAML 1.1 reads it (the key ``True``) is the key ``on``."""
    if isinstance(data, Mapping) and True in data and "on" not in data:
        data = {("on" if k is True else k): v for k, v in data.items()}
    return data


class LiveTriggerSpec(_Spec):
    """One live trigger: when it fires, on which series, and what it does."""

    what = ("a live trigger is a mapping with 'name', 'on' (onset, quiet or every) and "
            "'actions' (and match, frames, min_confidence, features, bands, cooldown)")
    noun = "live trigger field"
    name: str = Field(min_length=1, pattern=_NAME, description="every live trigger needs a "
                      "name: letters, digits and _ . @ + - (it names its decisions' points, "
                      "decision:<name>)")
    description: str | None = Field(None, description="a description is text")
    match: LiveMatchSpec | None = None
    on: Literal["onset", "quiet", "every"] = Field(
        description=f"on is one of {list(TRIGGER_KINDS)}: a confirmed change, nothing "
        "changed for 'frames' frames, or every 'frames' frames")
    frames: int | None = Field(None, ge=1, description="frames is a whole number >= 1")
    min_confidence: float | None = Field(None, ge=0, le=1, description="min_confidence is a "
                                         "number in [0, 1]")
    features: Globs = Field(None, description="a feature name glob or a list of them")
    bands: Annotated[Any, BeforeValidator(_bands)] = Field(
        None, description="a list of q ranges [low, high]")
    cooldown: Annotated[Any, BeforeValidator(_cooldown)] = Field(
        None, description="cooldown is frames (20) or a duration (5m)")
    actions: list[LiveActionSpec] = Field(min_length=1, description="a live trigger lists "
                                          "its actions: [{notebook: ...}, {notify: ...}]")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        return _on_key(data)

    @model_validator(mode="after")
    def _consistent(self) -> LiveTriggerSpec:
        if self.on in ("quiet", "every") and self.frames is None:
            raise _fail(f"on: {self.on} needs frames: a whole number >= 1 (e.g. frames: 50)")
        if self.on != "onset":
            given = [k for k in ("min_confidence", "features", "bands")
                     if getattr(self, k) is not None]
            if given:
                raise _fail(f"{given} select changes: they belong to on: onset, not on: "
                            f"{self.on}")
        elif self.frames is not None:
            raise _fail("frames belongs to on: quiet or on: every; an onset trigger fires on "
                        "each confirmed change (use cooldown to space them)")
        return self


DocumentSpec.model_rebuild(_types_namespace={"AlertSpec": AlertSpec,
                                             "LiveTriggerSpec": LiveTriggerSpec,
                                             "RetentionSpec": RetentionSpec})


# -- across the file ------------------------------------------------------------------------


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def check_live(data: Any, notebooks: Notebooks) -> list[Finding]:
    """Names given twice; the alert, target and notebook each action names.

    A notebook action's notebook must exist, take its parameters, and declare
    ``frames`` when the action has a window (the window's ``[first, last]`` frames are
    passed there); a fit with a target needs the shipped notebook ``saxs_fit``.
    """
    from spotkit.errors import NotebookParameterValueError
    from spotkit.runs import check_parameters, notebook_parameters

    if not isinstance(data, Mapping):
        return []
    out: list[Finding] = []
    targets = data.get("targets")
    defined = sorted(map(str, targets)) if isinstance(targets, Mapping) else []
    alerts = [a.get("name") for a in _items(data.get("alerts")) if isinstance(a, Mapping)]
    defaults = data.get("defaults")
    default_target = defaults.get("target") if isinstance(defaults, Mapping) else None
    seen: dict[str, int] = {}
    for i, trig in enumerate(_items(data.get("live"))):
        trig = _on_key(trig)
        if not isinstance(trig, Mapping):
            continue
        name = trig.get("name")
        if isinstance(name, str) and name in seen:
            out.append(Finding(("live", i, "name"), f"live trigger name {name!r} is already "
                               f"used by live trigger {seen[name]}; give each its own name"))
        elif isinstance(name, str):
            seen[name] = i
        names: dict[str, int] = {}
        for j, action in enumerate(_items(trig.get("actions"))):
            if not isinstance(action, Mapping):
                continue
            loc = ("live", i, "actions", j)
            aname = action_name(action, j, trig.get("actions"))
            fit_model = (action.get("fit") or {}).get("model") \
                if isinstance(action.get("fit"), Mapping) else None
            if fit_model is not None and (problem := _check_model(fit_model)) is not None:
                out.append(Finding((*loc, "fit", "model"), problem))
            if aname in names:
                out.append(Finding((*loc, "name"), f"action name {aname!r} is already used by "
                                   f"action {names[aname]} of this trigger; name them "
                                   "(name: ...)"))
            names.setdefault(aname, j)
            bad_target = False
            for kind in ("notebook", "fit"):
                spec = action.get(kind)
                if not isinstance(spec, Mapping):
                    continue
                target = spec.get("target")
                if isinstance(target, str) and target not in defined:
                    bad_target = True
                    out.append(Finding((*loc, kind, "target"), f"unknown target {target!r}; "
                                       f"defined targets: {defined or 'none'}"
                                       f"{did_you_mean(target, defined)}"))
            note = action.get("notify")
            known = [a for a in alerts if isinstance(a, str)]
            if isinstance(note, Mapping) and isinstance(note.get("alert"), str) \
                    and note["alert"] not in known:
                out.append(Finding((*loc, "notify", "alert"), (
                    f"unknown alert {note['alert']!r}; defined alerts: "
                    f"{known or 'none (add an alerts: section)'}"
                    f"{did_you_mean(note['alert'], known)}")))
            book = action.get("notebook")
            fit = action.get("fit")
            if isinstance(fit, Mapping) and isinstance(fit.get("target"), str):
                book = {"path": FIT_NOTEBOOK, "window": fit.get("window"),
                        "parameters": fit_parameters(fit)}
                kind = "fit"
            else:
                kind = "notebook"
            if bad_target or not isinstance(book, Mapping) or not isinstance(book.get("path"),
                                                                              str):
                continue
            if kind == "notebook" and book.get("target") is None and default_target is None:
                out.append(Finding((*loc, "notebook", "target"), f"no target: name one of "
                                   f"{defined or 'the targets'} (or set defaults.target)"))
            path, problem = notebooks.resolve(book["path"])
            if path is None:
                out.append(Finding((*loc, kind, "path" if kind == "notebook" else "target"),
                                   problem))
                continue
            params = book.get("parameters") or {}
            if isinstance(params, Mapping) and all(isinstance(k, str) for k in params):
                try:
                    check_parameters(path, dict(params))
                except NotebookParameterValueError as exc:
                    out.extend(Finding(
                        (*loc, kind, "parameters", p.name) if kind == "notebook" else
                        (*loc, kind, "q_range" if p.name in ("q_min", "q_max") else p.name),
                        p.message) for p in exc.problems)
            if book.get("window") is not None and WINDOW_PARAMETER not in notebook_parameters(
                    path):
                out.append(Finding((*loc, kind, "window"), (
                    f"{path.name} does not declare a parameter {WINDOW_PARAMETER!r}: a window's "
                    f"frames [first, last] are passed there; declare it in the notebook's "
                    "parameters cell, or drop the window")))
    return out


def fit_parameters(fit: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of notebook ``saxs_fit`` for a fit action (its window's ``frames``
    apart): ``model``, ``params``, ``free``, ``method`` and ``q_min``/``q_max``."""
    out: dict[str, Any] = {"model": fit.get("model")}
    for key in ("params", "free", "method"):
        if fit.get(key) is not None:
            out[key] = dict(fit[key]) if key == "params" else (
                list(fit[key]) if key == "free" else fit[key])
    q_range = fit.get("q_range")
    if isinstance(q_range, list | tuple) and len(q_range) == 2:
        out["q_min"], out["q_max"] = float(q_range[0]), float(q_range[1])
    return out


def action_name(action: Mapping[str, Any], index: int,
                actions: Sequence[Any] | None = None) -> str:
    """An action's name: its own, or its kind (``notify-2`` for the second unnamed one of
    a kind in ``actions``, the trigger's list)."""
    name = action.get("name")
    if isinstance(name, str) and name:
        return name
    kind = next((k for k in ACTION_KINDS if k in action), None)
    if kind is None:
        return f"action-{index + 1}"
    same = [i for i, a in enumerate(actions or [action])
            if isinstance(a, Mapping) and not a.get("name")
            and next((k for k in ACTION_KINDS if k in a), "action") == kind]
    if len(same) <= 1:
        return kind
    return f"{kind}-{same.index(index) + 1 if index in same else index + 1}"


def _check_model(model: Any) -> str | None:
    """A problem with a fit's model name, or None (unchecked while the fits are absent)."""
    try:
        from spotkit.scattering import SAS_MODELS
    except ImportError:
        return None
    names = sorted(SAS_MODELS)
    if isinstance(model, str) and model not in names:
        return (f"unknown model {model!r}{did_you_mean(model, names)}; choose one of {names}")
    return None


def _cooldown_text(cool: dict[str, float] | None) -> int | str:
    """The cooldown as a rules file writes it: frames (an integer) or seconds (``"30s"``)."""
    if not cool:
        return 0
    if cool.get("seconds"):
        return f"{cool['seconds']:g}s"
    return int(cool.get("frames", 0))


def live_canonical(spec: LiveTriggerSpec) -> dict[str, Any]:
    """The canonical form of a live trigger: as a rules file writes it, defaults filled
    (every action named, a cooldown in frames or seconds), so it loads again."""
    out: dict[str, Any] = {"name": spec.name, "on": spec.on,
                           "match": ({k: list(v) for k, v in
                                      spec.match.model_dump(exclude_none=True).items()}
                                     if spec.match is not None else {}),
                           "cooldown": _cooldown_text(spec.cooldown)}
    if spec.description is not None:
        out["description"] = spec.description
    if spec.frames is not None:
        out["frames"] = spec.frames
    if spec.on == "onset":
        out["min_confidence"] = spec.min_confidence if spec.min_confidence is not None else 0.0
        out["features"] = list(spec.features) if spec.features is not None else None
        out["bands"] = [list(b) for b in spec.bands] if spec.bands is not None else None
    actions = []
    for j, action in enumerate(spec.actions):
        body = getattr(action, action.kind).model_dump(exclude_none=True)
        for key, value in list(body.items()):
            if isinstance(value, tuple):
                body[key] = list(value)
        named = [{a.kind: {}, **({"name": a.name} if a.name else {})} for a in spec.actions]
        actions.append({"name": action.name or action_name(named[j], j, named),
                        action.kind: body})
    out["actions"] = actions
    return out
