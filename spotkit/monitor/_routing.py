"""Resource routing: send an action to a faster target while a batch queue is too slow.

The flow asks, before it submits an action that has a queue-wait budget (``queue_budget``
and ``fallback`` in ``rules.yaml``), whether the action's batch target is keeping its budget.
The answer comes from the telemetry alone (this module reads no catalog):

- :func:`queue_view` measures the target's current queue wait: the median of the last ``k``
  queue waits of jobs that started within ``window`` seconds (any action on the target: a
  full reconstruction measures the queue for the previews too), and the age of the oldest
  job still waiting (a lower bound on its wait, known before it starts). The estimate is the
  larger of the two, so a queue that has just stalled is seen before any job leaves it.
- :class:`Router` turns the view into a :class:`RouteDecision` with hysteresis: it moves
  to the fallback when the median of the last ``min_samples`` waits, or the age of a job
  still queued, exceeds the budget, and back only when the median of
  the last ``min_samples`` waits measured since the move is below ``recover`` times the
  budget, no job has waited that long, and ``hold`` seconds have passed. While it is
  rerouted and nothing measures the queue, it sends one action to the batch target every
  ``probe`` seconds, so it learns when the queue recovers; after a fast probe, the next
  actions go there as probes too until the move back is confirmed (or a wait is slow).
- :func:`reroute_findings` gives the monitor's view of the switches the flow recorded
  (telemetry step ``reroute``): one :class:`~spotkit.monitor.Finding` of kind ``"reroute"``
  per switch, which alert rules can send; :func:`queue_change_findings` reports the change
  point of a routed target's queue wait (the slowdown and its onset).
- :func:`one_per_change` keeps one finding per change where a target-wide finding (the
  routed target's queue-wait change) and the metric watcher's per-beamline streams
  (:func:`spotkit.monitor.watch_metrics`) both saw it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from spotkit.monitor._changepoint import find_changes
from spotkit.monitor._findings import SEVERITIES, Finding

__all__ = ["QueueView", "RouteDecision", "Router", "one_per_change", "queue_change_findings",
           "queue_view", "reroute_findings"]

#: the telemetry step the flow records when it switches an action's target
REROUTE_STEP = "reroute"


@dataclasses.dataclass(frozen=True)
class QueueView:
    """A batch target's queue as the telemetry shows it at ``time``.

    Attributes
    ----------
    time : float
        When it was measured (UTC epoch s).
    wait : float or None
        The estimate of the current queue wait (s): the larger of ``median`` and
        ``oldest_queued``; None when nothing is known.
    median : float or None
        Median of the last ``k`` queue waits that ended within the window.
    samples : int
        How many waits the median is of.
    oldest_queued : float or None
        Seconds the oldest job still queued has waited (None: none is waiting).
    last_sample : float or None
        When the newest measured wait ended (a job started).
    waits : tuple of (float, float)
        ``(time, wait)`` of the recent measured waits, oldest first.
    """

    time: float
    wait: float | None
    median: float | None
    samples: int
    oldest_queued: float | None
    last_sample: float | None
    waits: tuple[tuple[float, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (without the individual waits)."""
        return {"wait": self.wait, "median": self.median, "samples": self.samples,
                "oldest_queued": self.oldest_queued, "last_sample": self.last_sample}


def _labels(target: str | Iterable[str]) -> set[str]:
    return {target} if isinstance(target, str) else {str(t) for t in target}


def queue_view(events: Any, target: str | Iterable[str], now: float, *, k: int = 5,
               window: float = 3600.0) -> QueueView:
    """The current queue wait of a target, from telemetry events.

    Parameters
    ----------
    events : pandas.DataFrame
        Telemetry events (:func:`spotkit.monitor.events`), at least the last ``window``
        seconds.
    target : str or iterable of str
        The target's labels in the events (a rules target name and its compute target's
        name, e.g. ``("perlmutter", "nersc")``).
    now : float
        UTC epoch s.
    k : int
        The estimate is the median of the last ``k`` waits.
    window : float
        Only waits that ended, and queued jobs that began waiting, this many seconds ago
        or less count (a job queued longer ago is lost, not waiting).

    Returns
    -------
    QueueView

    Examples
    --------
    >>> from spotkit.monitor import frame
    >>> rows = []
    >>> for i, wait in enumerate([30, 40, 35, 900, 1000, 1100]):
    ...     t = 1000.0 * i
    ...     rows += [{"time": t, "step": "queued", "target": "hpc", "job_id": f"j{i}"},
    ...              {"time": t + wait, "step": "started", "target": "hpc", "job_id": f"j{i}"}]
    >>> rows.append({"time": 6000.0, "step": "queued", "target": "hpc", "job_id": "j6"})
    >>> v = queue_view(frame(rows), "hpc", now=6500.0, k=3, window=7200)
    >>> v.median, v.samples, v.oldest_queued, v.wait
    (1000.0, 3, 500.0, 1000.0)
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not window > 0:
        raise ValueError(f"window must be > 0 seconds, got {window!r}")
    labels = _labels(target)
    now = float(now)
    if events is None or len(events) == 0:
        return QueueView(now, None, None, 0, None, None)
    from spotkit.monitor._metrics import metrics

    events = events[events["time"] <= now]  # the view at ``now``
    df = events[events["target"].isin(labels) | events["step"].isin(("started",))]
    waits: list[tuple[float, float]] = []
    m = metrics(df)
    if len(m):
        q = m[(m["metric"] == "queue_wait") & m["target"].isin(labels)
              & (m["time"] >= now - window) & (m["time"] <= now)]
        waits = sorted(zip(q["time"].astype(float).tolist(), q["value"].astype(float).tolist(),
                           strict=True))
    recent = [w for _, w in waits[-int(k):]]
    median = float(np.median(recent)) if recent else None
    oldest = _oldest_queued(df, labels, now, window)
    parts = [x for x in (median, oldest) if x is not None]
    return QueueView(now, max(parts) if parts else None, median, len(recent), oldest,
                     waits[-1][0] if waits else None, tuple(waits[-max(int(k), 50):]))


def _oldest_queued(df: Any, labels: set[str], now: float, window: float) -> float | None:
    """Age of the oldest job or run queued on the target that has not started."""
    queued = df[(df["step"] == "queued") & df["target"].isin(labels)
                & (df["time"] >= now - window) & (df["time"] <= now)]
    if not len(queued):
        return None
    started = df[df["step"].isin(("started", "finished"))]
    jobs = set(started["job_id"].dropna())
    runs = set(started["run_id"].dropna())
    ages = [now - float(t) for t, job, run in zip(queued["time"], queued["job_id"],
                                                  queued["run_id"], strict=True)
            if not ((isinstance(job, str) and job in jobs)
                    or (isinstance(run, str) and run in runs))]
    return max(ages) if ages else None


@dataclasses.dataclass(frozen=True)
class RouteDecision:
    """Where one action goes, and why.

    Attributes
    ----------
    target : str
        The target to use now (the primary, or the fallback).
    primary, fallback : str
    rerouted : bool
        The router's state after this decision (True: the fallback is in use, though a
        probe may still go to the primary).
    switched : bool
        This decision changed the state (a switch to record and report).
    probe : bool
        Sent to the primary while rerouted, to measure its queue.
    reason : str
        One line for a person.
    budget : float
    view : QueueView
    """

    target: str
    primary: str
    fallback: str
    rerouted: bool
    switched: bool
    probe: bool
    reason: str
    budget: float
    view: QueueView

    def as_dict(self) -> dict[str, Any]:
        """What a run's context and the telemetry event record about the decision."""
        return {"target": self.target, "primary": self.primary, "fallback": self.fallback,
                "rerouted": self.rerouted, "switched": self.switched, "probe": self.probe,
                "reason": self.reason, "budget": self.budget, **self.view.as_dict()}


def _fmt(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Router:
    """Choose between a batch target and its fallback by the batch queue's wait.

    Parameters
    ----------
    primary : str
        The action's own target (rules name).
    fallback : str
        The faster target (``local``, or a realtime QOS).
    budget : float
        Seconds an action may wait in the primary's queue.
    labels : iterable of str, optional
        The primary's labels in the telemetry (default: ``(primary,)``).
    recover : float
        Go back when the wait is below ``recover * budget`` (0 < recover < 1: the
        hysteresis band).
    k : int
        The view's median is of the last ``k`` waits (reported; see :func:`queue_view`).
    min_samples : int
        The median of the last ``min_samples`` waits decides the move (a job still queued
        longer than the budget moves it at once), and the median of the last
        ``min_samples`` waits measured after a move decides the move back.
    hold : float, optional
        Least seconds between two switches (default: ``budget``).
    probe : float, optional
        While rerouted, send one action to the primary when no wait has been measured there
        for this many seconds (default: ``2 * budget``; 0: never probe); after a probe
        that waited less than ``recover * budget``, send the next ones there too.
    window : float, optional
        Seconds of telemetry that count (default: ``max(3600, 20 * budget)``).
    rerouted : bool
        The state to start from (e.g. restored from the last ``reroute`` event).
    since : float, optional
        When that state began.

    Examples
    --------
    Queue waits of about 1 min, then 20 min; budget 10 min:

    >>> from spotkit.monitor import frame
    >>> def jobs(waits, t0):
    ...     rows = []
    ...     for i, w in enumerate(waits):
    ...         t = t0 + 600.0 * i
    ...         rows += [{"time": t, "step": "queued", "target": "hpc", "job_id": f"{t0}-{i}"},
    ...                  {"time": t + w, "step": "started", "target": "hpc",
    ...                   "job_id": f"{t0}-{i}"}]
    ...     return rows
    >>> r = Router("hpc", "local", budget=600, probe=0)
    >>> r.decide(frame(jobs([60, 70, 50], 0)), now=1900).target
    'hpc'
    >>> d = r.decide(frame(jobs([60, 70, 50] + [1200] * 3, 0)), now=4400)
    >>> d.target, d.switched, d.view.median
    ('local', True, 1200.0)
    >>> ev = frame(jobs([60, 70, 50] + [1200] * 3, 0) + jobs([60] * 3, 5000))
    >>> d = r.decide(ev, now=6300)
    >>> d.target, d.switched
    ('hpc', True)
    """

    def __init__(self, primary: str, fallback: str, *, budget: float,
                 labels: Iterable[str] | None = None, recover: float = 0.5, k: int = 5,
                 min_samples: int = 3, hold: float | None = None, probe: float | None = None,
                 window: float | None = None, rerouted: bool = False,
                 since: float | None = None):
        if not (isinstance(budget, int | float) and budget > 0 and math.isfinite(budget)):
            raise ValueError(f"budget must be a number of seconds > 0, got {budget!r}")
        if not 0 < recover < 1:
            raise ValueError(f"recover must be between 0 and 1 (a fraction of the budget), "
                             f"got {recover!r}")
        if int(min_samples) != min_samples or min_samples < 1:
            raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}")
        if primary == fallback:
            raise ValueError(f"the fallback must differ from the target ({primary!r})")
        self.primary, self.fallback = primary, fallback
        self.budget = float(budget)
        self.labels = tuple(labels) if labels is not None else (primary,)
        self.recover = float(recover)
        self.k, self.min_samples = int(k), int(min_samples)
        self.hold = self.budget if hold is None else float(hold)
        self.probe = 2.0 * self.budget if probe is None else float(probe)
        self.window = max(3600.0, 20.0 * self.budget) if window is None else float(window)
        self.rerouted = bool(rerouted)
        self.since = since
        self._probed: float | None = None

    def __repr__(self) -> str:
        return (f"Router({self.primary!r} -> {self.fallback!r}, budget={self.budget:g} s, "
                f"{'rerouted' if self.rerouted else 'primary'})")

    def decide(self, events: Any, now: float) -> RouteDecision:
        """Where the next action goes (updates the state: call once per action).

        Parameters
        ----------
        events : pandas.DataFrame
            Recent telemetry events (at least ``window`` seconds).
        now : float
            UTC epoch s.

        Returns
        -------
        RouteDecision
        """
        now = float(now)
        view = queue_view(events, self.labels, now, k=self.k, window=self.window)
        held = self.since is not None and now - self.since < self.hold
        if not self.rerouted:
            # the newest min_samples waits decide (one slow job alone does not), so the
            # move comes with the second slow job, not only once most of k are slow
            newest = [w for _, w in view.waits][-self.min_samples:]
            median = float(np.median(newest)) if newest else None
            slow_median = (median is not None and median > self.budget
                           and len(newest) >= self.min_samples)
            stalled = view.oldest_queued is not None and view.oldest_queued > self.budget
            if (slow_median or stalled) and not held:
                why = (f"median queue wait {_fmt(median)} of the last {len(newest)} "
                       f"job(s)" if slow_median else
                       f"a job has waited {_fmt(view.oldest_queued)} and is still queued")
                return self._switch(True, now, view,
                                    f"{why} on {self.primary} exceeds the budget "
                                    f"{_fmt(self.budget)}: {self.fallback} instead")
            return self._keep(view, self.primary, False,
                              f"queue wait {_fmt(view.wait)} within the budget "
                              f"{_fmt(self.budget)}")
        # rerouted: back only on evidence gathered since the move
        since = self.since if self.since is not None else -math.inf
        fresh = [w for t, w in view.waits if t >= since][-self.min_samples:]
        limit = self.recover * self.budget
        recovered = (len(fresh) >= self.min_samples and float(np.median(fresh)) <= limit
                     and (view.oldest_queued is None or view.oldest_queued <= limit))
        if recovered and not held:
            return self._switch(False, now, view,
                                f"median queue wait {_fmt(float(np.median(fresh)))} of "
                                f"{len(fresh)} job(s) since the move is below "
                                f"{_fmt(limit)} ({self.recover:g} x the budget): back to "
                                f"{self.primary}")
        last = max(x for x in (view.last_sample, self._probed, self.since, -math.inf)
                   if x is not None)
        waiting = view.oldest_queued is not None  # a probe or job is in the queue now
        if self.probe > 0 and not waiting and now - last >= self.probe:
            self._probed = now
            return self._keep(view, self.primary, True,
                              f"probe: no queue wait measured on {self.primary} for "
                              f"{_fmt(now - last)}")
        if (self.probe > 0 and fresh and fresh[-1] <= limit
                and (view.oldest_queued is None or view.oldest_queued <= limit)):
            # the last probe was fast: confirm with more (the move back needs min_samples)
            self._probed = now
            return self._keep(view, self.primary, True,
                              f"probe: the last wait on {self.primary} was "
                              f"{_fmt(fresh[-1])}, below {_fmt(limit)}: confirming")
        return self._keep(view, self.fallback, False,
                          f"queue wait on {self.primary} {_fmt(view.wait)} (budget "
                          f"{_fmt(self.budget)}, back below {_fmt(limit)})")

    def _keep(self, view: QueueView, target: str, probe: bool, reason: str) -> RouteDecision:
        return RouteDecision(target, self.primary, self.fallback, self.rerouted, False, probe,
                             reason, self.budget, view)

    def _switch(self, rerouted: bool, now: float, view: QueueView,
                reason: str) -> RouteDecision:
        self.rerouted, self.since, self._probed = rerouted, now, None
        return RouteDecision(self.fallback if rerouted else self.primary, self.primary,
                             self.fallback, rerouted, True, False, reason, self.budget, view)


def reroute_findings(events: Any) -> list[Finding]:
    """One ``"reroute"`` :class:`~spotkit.monitor.Finding` per switch the flow recorded.

    The flow records a telemetry event of step ``reroute`` when an action moves to its
    fallback target or back (``target``: the batch target, ``value``: the measured queue
    wait, ``detail``: budget, fallback, direction, reason). A move away is a warning, a
    move back is ``info``; the finding's ``dataset_id`` is the dataset whose action was
    the first to move, so that every switch is a finding of its own.

    Parameters
    ----------
    events : pandas.DataFrame
        Telemetry events.

    Returns
    -------
    list of Finding

    Examples
    --------
    >>> from spotkit.monitor import frame
    >>> ev = frame([{"time": 100.0, "step": "reroute", "target": "hpc", "value": 1500.0,
    ...              "dataset_id": "d7", "detail": {"budget": 600, "fallback": "local",
    ...              "direction": "away", "reason": "median queue wait 25 min"}}])
    >>> f = reroute_findings(ev)[0]
    >>> f.kind, f.target, f.severity, f.detail["fallback"]
    ('reroute', 'hpc', 'warning', 'local')
    """
    if events is None or len(events) == 0:
        return []
    out = []
    for row in events[events["step"] == REROUTE_STEP].itertuples(index=False):
        detail = dict(row.detail) if isinstance(row.detail, dict) else {}
        away = detail.get("direction", "away") == "away"
        wait = None if row.value is None or row.value != row.value else float(row.value)
        budget = detail.get("budget")
        fallback = detail.get("fallback")
        message = (f"{detail.get('action', 'actions')} moved from {row.target} to "
                   f"{fallback}: {detail.get('reason', '')}" if away else
                   f"{detail.get('action', 'actions')} back on {row.target}: "
                   f"{detail.get('reason', '')}")
        out.append(Finding(
            "reroute", "queue_wait", time=float(row.time), message=message,
            severity="warning" if away else "info", onset=detail.get("onset"),
            beamline=row.beamline if isinstance(row.beamline, str) else None,
            target=row.target if isinstance(row.target, str) else None,
            dataset_id=row.dataset_id if isinstance(row.dataset_id, str) else None,
            magnitude=wait,
            detail={**detail, "wait": wait, "budget": budget, "fallback": fallback}))
    return out


def queue_change_findings(events: Any, targets: Iterable[str], *,
                          budget: float | None = None, warmup: int = 8,
                          arl: float = 10_000.0, clip: float = 4.0) -> list[Finding]:
    """Change points of one target's queue wait (log scale), newest knowledge first.

    The queue waits measured on ``targets`` (the labels of one batch target) are watched
    by :func:`spotkit.monitor.find_changes` on ``log(max(wait, floor))`` (queue waits vary
    by factors; ``floor`` is 1 % of the budget, or 1 s).
    A rise is a ``warning`` (if ``budget`` is given: only a rise to above it), a fall
    ``info``; the onset is the change's first slow job (when it was queued).

    Parameters
    ----------
    events : pandas.DataFrame
        Telemetry events.
    targets : iterable of str
        Labels of the target.
    budget : float, optional
        The routing budget: a rise that stays within it is ``info``.
    warmup, arl, clip
        Options of :class:`spotkit.monitor.ChangeDetector`; ``clip=4`` (its default is 3):
        two jobs in a row far above the baseline confirm a change (queue waits come one
        per job, often minutes apart), one alone does not.

    Returns
    -------
    list of Finding
        Kind ``"change"``, metric ``"queue_wait"``, ``target`` the first label.

    Examples
    --------
    >>> import numpy as np
    >>> from spotkit.monitor import frame
    >>> rng = np.random.default_rng(0)
    >>> waits = np.r_[60 * rng.lognormal(0, 0.3, 40), 1200 * rng.lognormal(0, 0.3, 20)]
    >>> rows = []
    >>> for i, w in enumerate(waits):
    ...     rows += [{"time": 300.0 * i, "step": "queued", "target": "hpc", "job_id": str(i)},
    ...              {"time": 300.0 * i + w, "step": "started", "target": "hpc",
    ...               "job_id": str(i)}]
    >>> [(f.severity, f.onset) for f in queue_change_findings(frame(rows), ["hpc"])]
    [('warning', 12000.0)]
    """
    labels = [targets] if isinstance(targets, str) else list(dict.fromkeys(targets))
    if events is None or len(events) == 0 or not labels:
        return []
    from spotkit.monitor._metrics import metrics

    m = metrics(events[events["target"].isin(labels) | (events["step"] == "started")])
    q = m[(m["metric"] == "queue_wait") & m["target"].isin(labels)].sort_values("time")
    if len(q) < warmup + 2:
        return []
    waits = q["value"].to_numpy(dtype=float)
    times = q["time"].to_numpy(dtype=float)
    out = []
    # waits far below the budget are all "no wait" (a floor keeps log(0.01 s) from
    # looking like a change against log(0.001 s))
    floor = budget / 100.0 if budget is not None else 1.0
    for f in find_changes(np.log(np.maximum(waits, floor)), times, metric="queue_wait",
                          warmup=warmup, arl=arl, clip=clip):
        onset_i = int(f.detail.get("onset_index", 0))
        before = float(np.median(waits[max(0, onset_i - warmup):onset_i])) if onset_i else None
        after = float(np.median(waits[onset_i:int(f.detail.get("index", onset_i)) + 1]))
        rise = before is not None and after > before
        alarming = rise and (budget is None or after > budget)
        # the onset: when the first slow job was queued
        onset = float(times[onset_i] - waits[onset_i])
        out.append(dataclasses.replace(
            f, target=labels[0], onset=onset,
            severity="warning" if alarming else "info", magnitude=after - (before or 0.0),
            message=(f"queue wait on {labels[0]} "
                     f"{'rose' if rise else 'fell'} from {_fmt(before)} to {_fmt(after)} "
                     f"(change point, onset {_iso(onset)})"),
            detail={**f.detail, "before": before, "after": after, "units": "s",
                    "budget": budget, "labels": labels}))
    return out


def one_per_change(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per change: a target-wide change covers its target's streams' changes.

    :func:`queue_change_findings` watches a routed target's queue waits as one series
    (every label of the target in ``detail["labels"]``), while
    :func:`spotkit.monitor.watch_metrics` watches each (metric, beamline, target) stream:
    one slowdown is then two findings with different :attr:`Finding.key`, and would be
    alerted twice. Here a ``"change"`` finding of the same metric on a stream of such a
    target (any beamline, any of its labels), in the same direction, whose span (onset to
    detection) overlaps the target-wide change's span, is the same change: it is folded
    into the target-wide finding (the more severe of the two is kept, the other's
    beamline, target, onset, magnitude and message go to ``detail["also"]``). Other
    findings pass unchanged, in their order.

    Parameters
    ----------
    findings : iterable of Finding
        E.g. ``watch_metrics(metrics(ev)) + queue_change_findings(ev, labels)``.

    Returns
    -------
    list of Finding

    Examples
    --------
    >>> from spotkit.monitor import Finding
    >>> wide = Finding("change", "queue_wait", time=5000.0, onset=1000.0, target="hpc",
    ...                magnitude=1500.0, message="queue wait on hpc rose",
    ...                detail={"labels": ["hpc", "hpc-queue"]})
    >>> stream = Finding("change", "queue_wait", time=4800.0, onset=1800.0,
    ...                  beamline="8.3.2", target="hpc-queue", magnitude=3.1,
    ...                  message="queue_wait on 8.3.2/hpc-queue rose by 3.1 sigma")
    >>> [f.target for f in one_per_change([stream, wide])]
    ['hpc']
    >>> one_per_change([stream, wide])[0].detail["also"][0]["beamline"]
    '8.3.2'
    """
    found = list(findings)
    wide = [i for i, f in enumerate(found)
            if f.kind == "change" and "labels" in f.detail and f.target is not None]
    if not wide:
        return found
    gone: set[int] = set()
    merged: dict[int, Finding] = {}
    for i in wide:
        w = merged.get(i, found[i])
        labels = {str(x) for x in w.detail.get("labels", ())} | {w.target}
        also = list(w.detail.get("also", ()))
        keep = w
        for j, f in enumerate(found):
            if (j == i or j in gone or j in merged or f.kind != "change"
                    or f.metric != w.metric or f.target not in labels
                    or j in wide
                    or not _same_direction(f, w) or not _spans_overlap(f, w)):
                continue
            gone.add(j)
            also.append({"beamline": f.beamline, "target": f.target, "onset": f.onset,
                         "time": f.time, "magnitude": f.magnitude, "message": f.message})
            if SEVERITIES.index(f.severity) > SEVERITIES.index(keep.severity):
                keep = dataclasses.replace(keep, severity=f.severity)
        if also:
            merged[i] = dataclasses.replace(keep, detail={**keep.detail, "also": also})
    return [merged.get(i, f) for i, f in enumerate(found) if i not in gone]


def _same_direction(a: Finding, b: Finding) -> bool:
    x, y = a.magnitude, b.magnitude
    return x is None or y is None or (x > 0) == (y > 0)


def _spans_overlap(a: Finding, b: Finding) -> bool:
    a0 = a.onset if a.onset is not None else a.time
    b0 = b.onset if b.onset is not None else b.time
    return max(a0, b0) <= min(a.time, b.time)


def _iso(epoch: float) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).isoformat(timespec="seconds")
