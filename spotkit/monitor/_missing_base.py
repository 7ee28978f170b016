"""What the missing-data checks share: reading the events table, p99, names and sizes."""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from spotkit.monitor._metrics import enrich

__all__ = ["DEFAULT_SCAN_PATTERN", "SPANS", "p99", "scan_number", "size_class"]

#: steps whose events open a span that can get stuck, with the metric (as
#: :func:`spotkit.monitor.metrics` names it) of its duration
SPANS = {"queued": "queue_wait", "started": "run_time", "transfer": "transfer_time"}
DEFAULT_SCAN_PATTERN = r"^(?P<prefix>.*?)(?P<number>\d+)$"


# -- small helpers ----------------------------------------------------------------------------


def p99(values: Iterable[float], *, min_samples: int = 20) -> float | None:
    """The 99th percentile of ``values`` (finite ones), or None with fewer than ``min_samples``.

    Examples
    --------
    >>> p99(range(101))
    99.0
    >>> p99([1.0, 2.0]) is None
    True
    """
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size < max(1, min_samples):
        return None
    return float(np.percentile(arr, 99))


def size_class(nbytes: float | None) -> str:
    """The decade of a size, the class durations are learned by (``"1e9"``: 1-10 GB).

    Examples
    --------
    >>> size_class(3.2e9), size_class(None)
    ('1e9', 'any')
    """
    if nbytes is None or not np.isfinite(nbytes) or nbytes <= 0:
        return "any"
    return f"1e{math.floor(math.log10(nbytes))}"


def scan_number(name: Any, pattern: str | re.Pattern = DEFAULT_SCAN_PATTERN
                ) -> tuple[str, int] | None:
    """``(series, number)`` from a dataset's file name: ``scan_0041.h5`` -> ``("scan_", 41)``.

    The file suffixes and folders are dropped first; ``pattern`` must have a group
    ``number`` and may have ``prefix`` (scans of one prefix form one numbered series).

    Examples
    --------
    >>> scan_number("/data/inbox/bone_scan_0041.h5")
    ('bone_scan_', 41)
    >>> scan_number("/inbox/scan_0042.h5|33800|1796409634123456789")  # a flow item's key
    ('scan_', 42)
    >>> scan_number("darks") is None
    True
    """
    if not isinstance(name, str) or not name:
        return None
    name = name.split("|", 1)[0]  # a flow item's key: path|size|mtime
    stem = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    while "." in stem and not stem.startswith("."):
        head, _, tail = stem.rpartition(".")
        if not tail or not tail.isalnum() or tail.isdigit():
            break
        stem = head
    m = re.search(pattern, stem)
    if m is None:
        return None
    groups = m.groupdict()
    return groups.get("prefix") or "", int(groups["number"])


def _clock(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _detail(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value:
        try:
            out = json.loads(value)
        except ValueError:
            return {}
        return out if isinstance(out, Mapping) else {}
    return {}


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


_COLUMNS = ("time", "step", "beamline", "dataset_id", "item", "target", "run_id", "job_id",
            "duration", "bytes", "value", "outcome", "detail")


def _frame(events: pd.DataFrame) -> pd.DataFrame:
    """The events with every contract column present, sorted by time."""
    if "time" not in events.columns or "step" not in events.columns:
        raise ValueError("events need at least the columns 'time' and 'step' (see "
                         f"spotkit.monitor.events); got {list(events.columns)}")
    out = events.copy()
    for col in _COLUMNS:
        if col not in out.columns:
            out[col] = None
    out["time"] = out["time"].astype(float)
    # a 'complete' event names only the flow item: its dataset and beamline come later
    out = enrich(out)
    return out.sort_values("time", kind="stable").reset_index(drop=True)

