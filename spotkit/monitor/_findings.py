"""What the monitor tells people: one :class:`Finding` per change, anomaly or gap."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Mapping
from typing import Any

__all__ = ["SEVERITIES", "Finding"]

#: severities, least to most urgent (alert rules select by the lowest one they want)
SEVERITIES = ("info", "warning", "critical")


@dataclasses.dataclass(frozen=True)
class Finding:
    """Something the monitor noticed: a change point, an anomaly, missing data, a bad product.

    Parameters
    ----------
    kind : str
        What sort of finding: ``"change"`` (a metric's level moved), ``"anomaly"`` (one
        value far from its model of normal), ``"quiet"`` (a beamline stopped sending),
        ``"gap"`` (a scan number skipped), ``"missing"`` (promised products absent),
        ``"stuck"`` (a transfer or job past its expected duration), ``"quality"`` (a
        product failed its keep-up check), or another short word.
    metric : str
        The metric or stream it concerns (``"queue_wait"``, ``"transfer_rate"``,
        ``"arrivals"``, ``"products"``...).
    time : float
        When it was detected (UTC epoch seconds).
    message : str
        One line for a person: what, where, how much, what to do.
    severity : str, optional
        One of :data:`SEVERITIES`.
    onset : float, optional
        When the change or gap began (UTC epoch seconds), if known.
    beamline, target, dataset_id : str, optional
        Where it happened.
    magnitude : float, optional
        Size of the change, in the metric's units (or sigmas; ``detail`` says which).
    confidence : float, optional
        Probability-like confidence in ``[0, 1]``.
    detail : mapping, optional
        Anything else worth keeping (JSON-serialisable).

    Examples
    --------
    >>> f = Finding("change", "queue_wait", time=1.7e9, beamline="8.3.2", target="perlmutter",
    ...             message="queue wait rose from 2 min to 25 min", magnitude=23.0)
    >>> f.key
    ('change', 'queue_wait', '8.3.2', 'perlmutter', None)
    >>> f.as_dict()["severity"]
    'warning'
    """

    kind: str
    metric: str
    time: float
    message: str
    severity: str = "warning"
    onset: float | None = None
    beamline: str | None = None
    target: str | None = None
    dataset_id: str | None = None
    magnitude: float | None = None
    confidence: float | None = None
    detail: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"Finding severity must be one of {', '.join(SEVERITIES)}, not {self.severity!r}"
            )
        if self.confidence is not None and not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"Finding confidence must be in [0, 1], not {self.confidence!r}")

    @property
    def key(self) -> tuple[str, str, str | None, str | None, str | None]:
        """What makes two findings "the same" for de-duplication of alerts."""
        return (self.kind, self.metric, self.beamline, self.target, self.dataset_id)

    def as_dict(self) -> dict[str, Any]:
        """The finding as plain JSON-serialisable values (times as ISO 8601 too)."""
        out = dataclasses.asdict(self)
        out["detail"] = dict(self.detail)
        out["time_iso"] = _iso(self.time)
        out["onset_iso"] = _iso(self.onset) if self.onset is not None else None
        return out


def _iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).isoformat(timespec="seconds")
