"""The portal's Live panel without widgets: the series ``spotkit live`` is following.

:class:`LivePanelModel` reads, per refresh, one query: :meth:`Catalog.live_series
<spotkit.catalog.Catalog>` (the live series and their status), and turns each into a row of
plain values (how far behind, rate, latency, how old the status is). The chosen series is
opened in a :class:`~spotkit.widgets.LiveTimeline` by the view. No ipywidgets here.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from spotkit.widgets._live_timeline_poll import ENDED, status_text

logger = logging.getLogger(__name__)

__all__ = ["LivePanelModel", "LiveSnapshot", "series_row"]

#: a status older than this (seconds) while the series is not finished: the follower may be
#: gone (killed, host down); the row says so
STALE_S = 30.0


def _num(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def series_row(item: dict, *, now: float | None = None) -> dict:
    """One live series (a :meth:`Catalog.live_series <spotkit.catalog.Catalog>` item) as a
    row of plain values: ``dataset_id``, ``path``, ``state``, ``frames`` ("done / written"),
    ``behind``, ``rate``, ``latency``, ``age`` (seconds since the status was written),
    ``stale`` (no status for :data:`STALE_S` s while not finished), ``line``
    (:func:`~spotkit.widgets._live_timeline_poll.status_text`) and ``ingested_as`` (the
    finished series' dataset, or None).

    Examples
    --------
    >>> row = series_row({"dataset_id": "ds1", "state": "following", "written": 50,
    ...                   "done": 48, "behind": 2, "rate_hz": 10.0, "updated_at": 100.0},
    ...                  now=105.0)
    >>> row["frames"], row["behind"], row["stale"]
    ('48 / 50', 2, False)
    """
    status = dict(item.get("status") or {})
    status.update({k: v for k, v in item.items() if k != "status"})
    now = time.time() if now is None else now
    updated = _num(status.get("updated_at"))
    age = now - updated if math.isfinite(updated) else _num(status.get("age_s"))
    state = str(status.get("state") or "–")
    done, written = status.get("done"), status.get("written")
    rate, latency = _num(status.get("rate_hz")), _num(status.get("latency_s"))
    return {
        "dataset_id": str(status.get("dataset_id") or status.get("id") or "?"),
        "path": str(status.get("path") or "–"),
        "sample": str(status.get("sample") or "–"),
        "beamline": str(status.get("beamline") or "–"),
        "state": state,
        "frames": f"{'–' if done is None else int(done)} / "
                  f"{'–' if written is None else int(written)}",
        "behind": None if status.get("behind") is None else int(status["behind"]),
        "rate": "–" if not math.isfinite(rate) else f"{rate:.3g}/s",
        "latency": "–" if not math.isfinite(latency) else f"{latency:.2g} s",
        "age": age,
        "stale": bool(math.isfinite(age) and age > STALE_S
                      and state not in ENDED),
        "line": status_text(status, now=now),
        # the finished file's own dataset, once the writer ended and it was ingested
        "ingested_as": status.get("ingested_as"),
    }


@dataclass(frozen=True)
class LiveSnapshot:
    """One refresh of the Live panel: a row per series (newest first)."""

    at: float
    active: bool
    rows: list[dict] = field(default_factory=list)


class LivePanelModel:
    """The live series for the portal: one read per refresh, nothing written.

    Parameters
    ----------
    catalog : Catalog
    active : bool
        Only the series being followed now (else every series with a live status).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> LivePanelModel(cat).fetch().rows
    []
    >>> cat.close()
    """

    def __init__(self, catalog: Any, *, active: bool = True):
        if not callable(getattr(catalog, "live_series", None)):
            raise TypeError(f"catalog must be a spotkit catalog with live_series() (from "
                            f"spotkit.open_catalog), not {type(catalog).__name__}")
        self.catalog = catalog
        self.active = bool(active)

    def fetch(self) -> LiveSnapshot:
        """The live series now (one catalog query)."""
        now = time.time()
        items = self.catalog.live_series(active=True if self.active else None)
        rows = [series_row(item, now=now) for item in items]
        rows.sort(key=lambda r: r["age"] if math.isfinite(r["age"]) else math.inf)
        return LiveSnapshot(at=now, active=self.active, rows=rows)
