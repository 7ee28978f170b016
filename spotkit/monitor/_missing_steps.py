"""Missing work: datasets without their products, transfers and jobs stuck
(see :mod:`spotkit.monitor._missing`)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pandas as pd

from spotkit.monitor._findings import Finding
from spotkit.monitor._missing_base import (
    _COLUMNS,
    SPANS,
    _detail,
    _frame,
    _span,
    _text,
    p99,
    size_class,
)

__all__ = ["check_missing_products", "check_stuck", "learn_durations", "learn_product_delay"]



# -- (c) missing products --------------------------------------------------------------------


Promised = Callable[[Any], "Collection[str] | int"]


def _product_names(ev: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{source dataset_id: {product name: first time}}``.

    A product event names the derived dataset; its source is the dataset of its run (any
    other event with the same ``run_id``), else ``detail["source"]``, else itself.
    """
    runs = ev[(ev["step"] != "product") & ev["run_id"].notna() & ev["dataset_id"].notna()]
    source = dict(zip(runs["run_id"].astype(str), runs["dataset_id"].astype(str),
                      strict=True))
    got = ev[ev["step"] == "product"]
    out: dict[str, dict[str, float]] = {}
    for row in got.itertuples(index=False):
        detail = _detail(row.detail)
        run = _text(row.run_id)
        of = (source.get(run) if run else None) or _text(detail.get("source")) or _text(
            row.dataset_id)
        if of is None:
            continue
        name = (detail.get("action") if isinstance(detail.get("action"), str) else None) or (
            _text(row.item) or run or f"product-{row.time}")
        out.setdefault(of, {}).setdefault(name, float(row.time))
    return out


def _failed_runs(ev: pd.DataFrame) -> dict[str, int]:
    done = ev[ev["step"].isin(["finished", "run"]) & ev["dataset_id"].notna()]
    bad = done[done["outcome"].notna() & ~done["outcome"].astype(str).isin(["ok", "0"])]
    return {str(k): int(v) for k, v in bad.groupby("dataset_id").size().items()}


def learn_product_delay(events: pd.DataFrame, *, min_samples: int = 20) -> dict[str, float]:
    """p99 of complete -> last product per beamline (``"*"``: all beamlines together)."""
    ev = _frame(events)
    products = _product_names(ev)
    complete = ev[(ev["step"] == "complete") & ev["dataset_id"].notna()]
    delays: dict[str, list[float]] = {}
    for row in complete.drop_duplicates("dataset_id").itertuples(index=False):
        made = products.get(str(row.dataset_id))
        if made:
            delay = max(made.values()) - float(row.time)
            delays.setdefault(str(row.beamline), []).append(delay)
            delays.setdefault("*", []).append(delay)
    out = {}
    for key, values in delays.items():
        value = p99(values, min_samples=min_samples)
        if value is not None:
            out[key] = value
    return out


def check_missing_products(events: pd.DataFrame, now: float, *,
                           promised: Promised | int = 1,
                           expected: Mapping[str, float] | None = None, factor: float = 2.0,
                           min_samples: int = 20, lookback: float | None = None
                           ) -> list[Finding]:
    """Datasets without the products their rules promise, ``factor`` x p99 after completion.

    Parameters
    ----------
    events : pandas.DataFrame
    now : float
    promised : callable or int
        ``promised(row) -> names or count``: the products a dataset's rules promise (``row``
        is its ``complete`` event, with ``beamline``, ``dataset_id``, ``detail``...); names
        are compared with the products' names (``detail["action"]``, ``item`` or
        ``run_id`` of ``product`` events), a count with how many there are. An int: that
        many for every dataset (default 1).
    expected : mapping, optional
        ``{beamline or "*": p99 seconds from complete to the last product}``; default:
        learned from ``events``.
    factor : float
    min_samples : int
    lookback : float, optional
        Only datasets completed in the last ``lookback`` seconds (default: ``10 *
        factor * p99``, so old datasets never made whole are reported for a while, then
        left to the quality checks and ``spotkit status``).

    Returns
    -------
    list of Finding
        Kind ``"missing"``, metric ``"products"``, onset at the dataset's completion;
        ``detail["missing"]`` names what is missing.

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"time": [0.0, 30.0, 100.0], "step": ["complete", "product", "complete"],
    ...                    "beamline": "8.3.2", "dataset_id": ["ds1", "ds1", "ds2"],
    ...                    "item": [None, "preview", None]})
    >>> found = check_missing_products(ev, now=300.0, promised=1, expected={"*": 60.0})
    >>> [(f.kind, f.dataset_id) for f in found]
    [('missing', 'ds2')]
    """
    ev = _frame(events)
    learned = dict(expected) if expected is not None else learn_product_delay(
        ev, min_samples=min_samples)
    products = _product_names(ev)
    failed = _failed_runs(ev)
    complete = ev[(ev["step"] == "complete") & ev["dataset_id"].notna() & (ev["time"] <= now)]
    out = []
    for row in complete.drop_duplicates("dataset_id").itertuples(index=False):
        beamline = _text(row.beamline)
        limit_p99 = learned.get(beamline or "*", learned.get("*"))
        if limit_p99 is None:
            continue
        age = now - float(row.time)
        window = lookback if lookback is not None else 10 * factor * limit_p99
        if age <= factor * limit_p99 or age > window:
            continue
        want = promised(row) if callable(promised) else promised
        made = products.get(str(row.dataset_id), {})
        if isinstance(want, int):
            missing = [] if len(made) >= want else [f"{want - len(made)} of {want}"]
            lacks = f"has {len(made)} of the {want} product(s) its rules promise"
        else:
            missing = [name for name in want if name not in made]
            lacks = f"lacks the product(s) {', '.join(missing)} its rules promise"
        if not missing:
            continue
        runs_failed = failed.get(str(row.dataset_id), 0)
        why = (f"; {runs_failed} run(s) failed: see spotkit status" if runs_failed
               else "; check the compute target's queue and the flow journal")
        message = (f"dataset {row.dataset_id}{f' ({beamline})' if beamline else ''} {lacks}, "
                   f"{_span(age)} after it completed (p99 {_span(limit_p99)}){why}")
        out.append(Finding(
            "missing", "products", time=float(now), message=message, onset=float(row.time),
            severity="critical" if runs_failed else "warning", beamline=beamline,
            dataset_id=str(row.dataset_id), magnitude=float(age),
            detail={"missing": missing, "made": sorted(made), "p99_delay": limit_p99,
                    "factor": factor, "failed_runs": runs_failed, "unit": "s"}))
    return out


# -- (d) stuck transfers and jobs ----------------------------------------------------------------


def _span_keys(row: Any) -> list[tuple[str, str]]:
    """What ties the events of one span together: its job and/or run (a batch job's events
    name both, the run's own only the run), else its dataset (or flow item) and target."""
    keys = [(col, value) for col in ("job_id", "run_id")
            if (value := _text(getattr(row, col)))]
    if not keys:
        ds = _text(row.dataset_id) or _text(row.item)
        if ds:
            keys.append(("dataset", f"{ds}|{_text(row.target)}"))
    return keys


@dataclass
class _Open:
    step: str
    start: float
    row: Any
    keys: list[tuple[str, str]]
    size: str


#: the step that ends a span, and the step that began it
CLOSERS = {"started": "queued", "finished": "started", "run": "started"}


def _dataset_sizes(ev: pd.DataFrame) -> dict[str, float]:
    """``{dataset_id: bytes}`` from the events that give a dataset's size."""
    got = ev[ev["step"].isin(["complete", "ingested"]) & ev["dataset_id"].notna()
             & pd.to_numeric(ev["bytes"], errors="coerce").notna()]
    return {str(d): float(b) for d, b in zip(got["dataset_id"], got["bytes"], strict=True)}


def _spans(ev: pd.DataFrame) -> tuple[list[_Open], list[tuple[str, str | None, str, float]]]:
    """Spans still open, and closed ones ``(step, target, size class, duration)``, in one
    pass over the events in time order."""
    opened: dict[tuple[str, str, str], _Open] = {}
    closed: list[tuple[str, str | None, str, float]] = []
    sizes = _dataset_sizes(ev)

    def begin(step: str, row: Any, keys: list[tuple[str, str]], size: str) -> None:
        span = next((opened[(step, *k)] for k in keys if (step, *k) in opened), None)
        if span is None:
            span = _Open(step, float(row.time), row, list(keys), size)
        else:  # the same span seen again (a job's run reports its own start): one span
            span.keys += [k for k in keys if k not in span.keys]
        for key in span.keys:
            opened[(step, *key)] = span

    def end(step: str, keys: list[tuple[str, str]]) -> _Open | None:
        found = [opened.pop((step, *key), None) for key in keys]
        spans = [f for f in found if f is not None]
        for span in spans:  # and their other names
            for key in span.keys:
                opened.pop((step, *key), None)
        return spans[0] if spans else None

    for row in ev[ev["step"].isin([*SPANS, *CLOSERS])].itertuples(index=False):
        keys = _span_keys(row)
        if not keys:
            continue
        step = str(row.step)
        nbytes = row.bytes if row.bytes is not None and not pd.isna(row.bytes) else None
        size = size_class(nbytes if nbytes is not None and step in ("transfer", "queued")
                          else sizes.get(str(row.dataset_id)))
        if step == "transfer":
            if str(row.outcome) in ("started", "running"):
                begin(step, row, keys, size)
                continue
            began = end(step, keys)
            duration = (float(row.duration) if row.duration is not None
                        and not pd.isna(row.duration) else
                        (float(row.time) - began.start if began is not None else None))
            if duration is not None:
                closed.append(("transfer", _text(row.target), size, duration))
            continue
        if step in CLOSERS:
            began = end(CLOSERS[step], keys)
            if began is not None:
                target = _text(row.target) or _text(began.row.target)
                size = began.size if size == "any" else size  # a job's size from its queueing
                closed.append((began.step, target, size, float(row.time) - began.start))
        if step in ("queued", "started"):
            begin(step, row, keys, size)
    unique = {id(span): span for span in opened.values()}
    return sorted(unique.values(), key=lambda span: span.start), closed


def learn_durations(events: pd.DataFrame, *, min_samples: int = 20
                    ) -> dict[tuple[str, str, str], float]:
    """p99 of each span's duration by ``(step, target, size class)``, with ``"*"`` for
    the target and ``"any"`` for the size as fall-backs."""
    _opened, closed = _spans(_frame(events))
    groups: dict[tuple[str, str, str], list[float]] = {}
    for step, target, size, duration in closed:
        for key in {(step, target or "*", size), (step, target or "*", "any"),
                    (step, "*", "any")}:
            groups.setdefault(key, []).append(duration)
    out = {}
    for key, values in groups.items():
        value = p99(values, min_samples=min_samples)
        if value is not None:
            out[key] = value
    return out


def _limit(learned: Mapping[tuple[str, str, str], float], step: str, target: str | None,
           size: str) -> tuple[float | None, str]:
    for key in ((step, target or "*", size), (step, target or "*", "any"), (step, "*", "any")):
        if key in learned:
            which = ("this target and size" if key[2] != "any" and key[1] != "*" else
                     "this target" if key[1] != "*" else "all targets")
            return learned[key], which
    return None, ""


_WHAT = {"queued": ("waiting in the queue", "queue wait"),
         "started": ("running", "run time"),
         "transfer": ("transferring", "transfer time")}


def check_stuck(events: pd.DataFrame, now: float, *,
                expected: Mapping[tuple[str, str, str], float] | None = None,
                factor: float = 2.0, min_samples: int = 20,
                open_spans: Iterable[Mapping[str, Any]] = ()) -> list[Finding]:
    """Transfers and jobs open for longer than ``factor`` x the p99 of that step.

    Parameters
    ----------
    events : pandas.DataFrame
    now : float
    expected : mapping, optional
        ``{(step, target, size class): p99 seconds}`` (see :func:`size_class`; ``"*"`` and
        ``"any"`` as fall-backs); default: learned from ``events``.
    factor : float
    min_samples : int
    open_spans : iterable of mapping, optional
        Steps in progress that the caller knows of but the events do not show open (the
        flow journal's running transfers): each ``{"step": "transfer", "start": epoch,
        "target", "dataset_id", "beamline", "bytes"}`` (missing keys: None).

    Returns
    -------
    list of Finding
        Kind ``"stuck"``, metric ``"queue_wait"``, ``"run_time"`` or ``"transfer_time"``,
        onset at the span's start.

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"time": [0.0, 5.0], "step": ["queued", "started"],
    ...                    "job_id": "123", "target": "perlmutter", "dataset_id": "ds1"})
    >>> found = check_stuck(ev, now=500.0, expected={("started", "*", "any"): 100.0})
    >>> [(f.kind, f.metric, f.target) for f in found]
    [('stuck', 'run_time', 'perlmutter')]
    """
    ev = _frame(events)
    ev = ev[ev["time"] <= now]
    learned = dict(expected) if expected is not None else learn_durations(
        ev, min_samples=min_samples)
    opened, _closed = _spans(ev)
    seen = {(span.step, *key) for span in opened for key in span.keys}
    for given in open_spans:
        step = str(given.get("step", "transfer"))
        if step not in SPANS:
            raise ValueError(f"open span step {step!r}: one of {sorted(SPANS)}")
        fields = {c: given.get(c) for c in _COLUMNS}
        known = SimpleNamespace(**{**fields, "step": step})
        keys = _span_keys(known)
        if keys and given.get("start") is not None and not any(
                (step, *key) in seen for key in keys):
            nbytes = given.get("bytes")
            opened.append(_Open(step, float(given["start"]), known, keys,
                                size_class(float(nbytes) if nbytes is not None else None)))
    out = []
    for span in opened:
        step, key, row, size = span.step, span.keys[0][1], span.row, span.size
        target = _text(row.target)
        limit_p99, which = _limit(learned, step, target, size)
        if limit_p99 is None:
            continue
        age = now - span.start
        if age <= factor * limit_p99:
            continue
        doing, metric_words = _WHAT[step]
        what = (f"job {row.job_id}" if _text(row.job_id) else
                f"run {row.run_id}" if _text(row.run_id) else "transfer"
                if step == "transfer" else "job")
        ds = _text(row.dataset_id) or _text(row.item)
        message = (f"{what}{f' of {ds}' if ds else ''}{f' on {target}' if target else ''} "
                   f"has been {doing} for {_span(age)} (p99 {metric_words} {_span(limit_p99)} "
                   f"for {which}): check the target's queue and the job's log")
        out.append(Finding(
            "stuck", SPANS[step], time=float(now), message=message, onset=span.start,
            beamline=_text(row.beamline), target=target, dataset_id=ds,
            magnitude=float(age),
            detail={"step": step, "key": key, "p99": limit_p99, "factor": factor,
                    "size_class": size, "job_id": _text(row.job_id),
                    "run_id": _text(row.run_id), "unit": "s"}))
    return out

