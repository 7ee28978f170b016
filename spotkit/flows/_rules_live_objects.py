"""The objects :class:`spotkit.flows.LiveTriggers` uses, built from the canonical ``live:``
section of a rules file (:mod:`spotkit.flows._rules_live` validates it)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spotkit.flows._rules_live import ACTION_KINDS, _cooldown

if TYPE_CHECKING:
    from spotkit.flows._rules_checks import Notebooks

__all__ = ["LiveAction", "LiveTrigger", "live_triggers"]


# -- the objects LiveTriggers uses ----------------------------------------------------------


@dataclass(frozen=True)
class LiveAction:
    """One action of a live trigger, as the canonical form gives it.

    Attributes
    ----------
    name : str
        Unique within its trigger (its kind when not named).
    kind : str
        One of :data:`ACTION_KINDS`.
    options : dict
        The action's settings (``path``, ``target``, ``window``, ``parameters``, ``level``,
        ``alert``, ``url``, ``command``, ``timeout``, ``model``...).
    """

    name: str
    kind: str
    options: dict = field(hash=False)

    @property
    def window(self) -> tuple[int, int] | None:
        """``(before, after)`` frames, or None."""
        w = self.options.get("window")
        return (int(w[0]), int(w[1])) if w is not None else None


@dataclass(frozen=True)
class LiveTrigger:
    """One live trigger of a rules file (see the module docs).

    Attributes
    ----------
    name : str
    on : str
        ``"onset"``, ``"quiet"`` or ``"every"``.
    match : dict
        ``{beamline, proposal, sample, kind: [globs]}`` (every given one must hold).
    actions : tuple of LiveAction
    frames : int or None
        For ``quiet`` and ``every``.
    min_confidence : float
    features : tuple of str or None
        Globs on the feature that flagged the change.
    bands : tuple of (float, float) or None
        q ranges; a change's band must overlap one.
    cooldown_frames, cooldown_seconds : float
        After firing, the trigger stays silent this many frames / seconds.

    Examples
    --------
    >>> t = LiveTrigger("t", "onset", {"beamline": ["12.*"]}, (), min_confidence=0.9)
    >>> t.matches({"beamline": "12.3.1"}), t.matches({"beamline": "7.3.3"})
    (True, False)
    >>> t.selects({"confidence": 0.95, "feature": "band_2"}), t.selects({"confidence": 0.5})
    (True, False)
    """

    name: str
    on: str
    match: dict = field(hash=False)
    actions: tuple[LiveAction, ...]
    frames: int | None = None
    min_confidence: float = 0.0
    features: tuple[str, ...] | None = None
    bands: tuple[tuple[float, float], ...] | None = None
    cooldown_frames: float = 0.0
    cooldown_seconds: float = 0.0

    def matches(self, facts: Mapping[str, Any]) -> bool:
        """Whether a series (``beamline``, ``proposal``, ``sample``, ``kind``) is watched."""
        meta = facts.get("metadata") or {}
        for key, patterns in self.match.items():
            value = facts.get(key)
            if value is None:
                value = meta.get(key) if isinstance(meta, Mapping) else None
            if value is None or not any(fnmatch.fnmatchcase(str(value), str(p))
                                        for p in patterns):
                return False
        return True

    def selects(self, event: Mapping[str, Any]) -> bool:
        """Whether a confirmed change (``confidence``, ``feature``, ``q_first``/``q_last``)
        passes this trigger's filters."""
        confidence = event.get("confidence")
        if self.min_confidence > 0 and (confidence is None
                                        or float(confidence) < self.min_confidence):
            return False
        if self.features is not None:
            feature = event.get("feature")
            if feature is None or not any(fnmatch.fnmatchcase(str(feature), p)
                                          for p in self.features):
                return False
        if self.bands is not None:
            lo, hi = event.get("q_first"), event.get("q_last")
            if lo is None or hi is None:
                return False  # a whole-frame change has no band
            lo, hi = min(float(lo), float(hi)), max(float(lo), float(hi))
            if not any(lo <= b_hi and hi >= b_lo for b_lo, b_hi in self.bands):
                return False
        return True


def live_triggers(live: Sequence[Mapping[str, Any]] | None,
                  notebooks: Notebooks | None = None) -> tuple[LiveTrigger, ...]:
    """:class:`LiveTrigger` objects from the canonical ``live`` section.

    ``notebooks`` (the rules file's, from :func:`spotkit.flows.load_rules`) resolves each
    notebook action's ``path`` (relative to the rules file) into ``notebook_path``.

    Examples
    --------
    >>> from spotkit.flows import load_rules
    >>> rules = load_rules('''
    ... targets: {local: {kind: local}}
    ... live:
    ...   - {name: fit, on: every, frames: 10, actions: [{fit: {model: sphere}}]}
    ... ''')
    >>> [(t.name, t.on, t.frames, [a.kind for a in t.actions])
    ...  for t in live_triggers(rules.to_dict()["live"])]
    [('fit', 'every', 10, ['fit'])]
    """
    out = []
    for data in live or ():
        cool = _cooldown(data.get("cooldown") or 0)
        bands = data.get("bands")
        out.append(LiveTrigger(
            name=data["name"], on=data["on"],
            match={k: tuple(v) for k, v in (data.get("match") or {}).items()},
            actions=tuple(LiveAction(a["name"], _kind(a), _resolved(a, notebooks))
                          for a in data["actions"]),
            frames=data.get("frames"), min_confidence=float(data.get("min_confidence") or 0),
            features=tuple(data["features"]) if data.get("features") else None,
            bands=tuple((float(lo), float(hi)) for lo, hi in bands) if bands else None,
            cooldown_frames=float(cool.get("frames", 0.0)),
            cooldown_seconds=float(cool.get("seconds", 0.0))))
    return tuple(out)


def _kind(action: Mapping[str, Any]) -> str:
    return next(k for k in ACTION_KINDS if k in action)


def _resolved(action: Mapping[str, Any], notebooks: Notebooks | None) -> dict[str, Any]:
    options = dict(action[_kind(action)])
    if notebooks is not None and _kind(action) == "notebook":
        options["notebook_path"] = str(notebooks.path(options["path"]))
    return options
