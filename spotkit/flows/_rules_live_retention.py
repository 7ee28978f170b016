"""The ``retention:`` section of a rules file: when frames marked redundant may leave.

::

    retention:
      frames:
        validated_by: [replica, approval]   # every one must hold (replica, verdict, approval)
        min_age: 30d
        action: move                        # or age_out (only with replica)
        dest: /archive/cold
        location: warehouse                 # the replica location that counts
        dry_run: true                       # the default: only report

:class:`spotkit.flows.FrameRetention` does it (:meth:`~spotkit.flows.FrameRetention.from_rules`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from spotkit.flows._rules_schema import _fail, _Spec, did_you_mean, show

__all__ = ["FrameRetentionSpec", "RetentionSpec", "retention_canonical"]


def _validations(value: Any) -> tuple[str, ...]:
    from spotkit.flows._retention import VALIDATIONS

    items = value if isinstance(value, list) else [value]
    bad = [v for v in items if v not in VALIDATIONS]
    if not items or bad:
        raise _fail(f"{show(value)}: validated_by is one or more of {list(VALIDATIONS)} "
                    "(every one given must hold)"
                    + (did_you_mean(bad[0], VALIDATIONS) if bad else ""))
    return tuple(items)


def _age(value: Any) -> float:
    from spotkit.monitor import parse_duration

    try:
        return parse_duration(value)
    except ValueError:
        raise _fail(f"{show(value)}: min_age is a duration (30d, 12h)") from None


class FrameRetentionSpec(_Spec):
    """When frames marked redundant may move or age out (:class:`spotkit.flows.FrameRetention`)."""

    what = ("frames is a mapping: {validated_by: [replica], min_age: 30d, action: move, "
            "dest: /archive/cold, location: warehouse, dry_run: true}")
    noun = "frame retention field"
    validated_by: Annotated[Any, BeforeValidator(_validations)] = Field(
        ("replica",), description="validated_by is one or more of replica, verdict, approval")
    min_age: Annotated[Any, BeforeValidator(_age)] = Field(
        30 * 86400.0, description="min_age is a duration (30d, 12h)")
    action: Literal["move", "age_out"] = Field("move", description="action is move or age_out")
    dest: str | None = Field(None, pattern=r"^/", description="dest is an absolute folder path")
    location: str | None = Field(None, min_length=1, description="location names a replica "
                                 "location (warehouse, tape...)")
    dry_run: bool = Field(True, description="dry_run is true/false (true: only report)")

    @model_validator(mode="after")
    def _safe(self) -> FrameRetentionSpec:
        if self.action == "move" and self.dest is None:
            raise _fail("action: move needs dest: the folder the frames move to")
        if self.action == "age_out" and "replica" not in self.validated_by:
            raise _fail("action: age_out deletes frames: validated_by must include replica (a "
                        "verified copy elsewhere), so no frame's only copy is ever deleted")
        return self


class RetentionSpec(_Spec):
    """The ``retention`` section: what may leave the beamline's storage, and when."""

    what = "retention is a mapping: {frames: {validated_by: [...], min_age: 30d, ...}}"
    noun = "retention field"
    frames: FrameRetentionSpec | None = None


def retention_canonical(spec: RetentionSpec) -> dict[str, Any]:
    """The canonical form of the ``retention`` section (as a rules file writes it)."""
    out: dict[str, Any] = {}
    if spec.frames is not None:
        f = spec.frames.model_dump(exclude_none=True)
        f["validated_by"] = list(f["validated_by"])
        f["min_age"] = f"{f['min_age']:g}s"
        out["frames"] = f
    return out
