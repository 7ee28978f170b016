"""The monitor as a service: check every few seconds, alert, and refresh the metrics.

:class:`MonitorLoop` reads the recent telemetry (a callable, so that it works on any
events source), re-learns the p99 intervals now and then, runs the missing-data checks
and any other detectors, hands the findings to :class:`~spotkit.monitor.Alerts`, and
refreshes the :class:`~spotkit.monitor.MetricsServer`'s snapshot. ``spotkit watch`` runs
one in a thread beside the watcher (see :func:`spotkit.flows.start_monitor`). Nothing it
meets stops it: a failing check is logged and the next one runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from spotkit.monitor._alerts import Alerts
from spotkit.monitor._findings import Finding
from spotkit.monitor._missing import MissingData
from spotkit.monitor._prometheus import FlowSnapshot, MetricsServer, snapshot_from_events

__all__ = ["MonitorLoop"]

log = logging.getLogger(__name__)

Detector = Callable[[pd.DataFrame, float], Iterable[Finding]]


class MonitorLoop:
    """Periodic checks: missing data (and other detectors) -> alerts and metrics.

    Parameters
    ----------
    events : callable
        ``events(since) -> DataFrame`` of telemetry events after ``since`` (epoch s), e.g.
        ``lambda since: spotkit.monitor.events(catalog, since=since)``.
    missing : MissingData, optional
        The missing-data checks (default: ``MissingData()``, always in beamtime).
    detectors : sequence of callable, optional
        More ``detector(events_df, now) -> findings`` (change points, quality...).
    alerts : Alerts, optional
    metrics : MetricsServer, optional
    flow_state : callable, optional
        ``flow_state() -> {"datasets": {(beamline, state): n}, "queue_length": n,
        "open_spans": [...]}`` from the flow journal (see :func:`check_stuck` for spans).
    period : float
        Seconds between checks.
    history : float
        Seconds of events read at each check (the p99 intervals are learned from them).
    relearn : float
        Seconds between re-learning the p99 intervals (sooner while the history read grows
        by more than 10 % between checks).
    clock : callable
    on_stop : sequence of callable
        Called by :meth:`stop` (to close what the callables above opened).
    fresh : float, optional
        A detector's findings older than this many seconds (by their ``time``) were
        reported at an earlier check and are dropped (default: ``max(3 * period, 300)``):
        detectors that read the whole history (change points found offline, stored quality
        verdicts) then alert on what is new. Keep the alert rules' ``dedup`` above it.

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"time": [60.0 * i for i in range(40)], "step": "complete",
    ...                    "beamline": "8.3.2"})
    >>> loop = MonitorLoop(lambda since: ev[ev["time"] > since], clock=lambda: 2600.0)
    >>> [f.kind for f in loop.check()]
    ['quiet']
    """

    def __init__(self, events: Callable[[float], pd.DataFrame], *,
                 missing: MissingData | None = None, detectors: Sequence[Detector] = (),
                 alerts: Alerts | None = None, metrics: MetricsServer | None = None,
                 flow_state: Callable[[], Mapping[str, Any]] | None = None,
                 period: float = 30.0, history: float = 7 * 86400.0,
                 relearn: float = 3600.0, clock: Callable[[], float] = time.time,
                 on_stop: Sequence[Callable[[], None]] = (), fresh: float | None = None):
        if period <= 0 or history <= 0:
            raise ValueError(f"period and history must be > 0 s, not {period!r}, {history!r}")
        self.events = events
        self.missing = missing if missing is not None else MissingData()
        self.detectors = tuple(detectors)
        self.alerts = alerts
        self.metrics = metrics
        self.flow_state = flow_state
        self.period = float(period)
        self.history = float(history)
        self.relearn = float(relearn)
        self.clock = clock
        self.on_stop = tuple(on_stop)
        self.fresh = max(3 * self.period, 300.0) if fresh is None else float(fresh)
        self.last_findings: list[Finding] = []
        self._learned_at: float | None = None
        self._learned_from = 0  # events the intervals were learned from
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, now: float | None = None) -> list[Finding]:
        """One check: read events, (re-)learn if due, detect, alert, refresh the metrics."""
        now = self.clock() if now is None else float(now)
        events = self.events(now - self.history)
        state: Mapping[str, Any] = {}
        if self.flow_state is not None:
            try:
                state = self.flow_state()
            except Exception as exc:  # the journal may be busy: metrics wait for next time
                log.warning("monitor: cannot read the flow's state: %s", exc)
        # learn again when due, or while the history is still growing (a new watcher on a
        # new catalog: each check has more to learn from than the last)
        if (self._learned_at is None or now - self._learned_at >= self.relearn
                or len(events) > 1.1 * self._learned_from):
            self.missing.learn(events, now=now)
            self._learned_at = now
            self._learned_from = len(events)
        findings = self.missing.check(events, now, open_spans=state.get("open_spans", ()))
        for detector in self.detectors:
            try:
                findings += [f for f in detector(events, now) if f.time >= now - self.fresh]
            except Exception as exc:  # one broken detector must not silence the others
                log.error("monitor: detector %r failed: %s", detector, exc)
        self.last_findings = findings
        for f in findings:
            log.info("finding kind=%s metric=%s beamline=%s %s", f.kind, f.metric,
                     f.beamline, f.message)
        if self.alerts is not None:
            self.alerts.dispatch(findings, now)
        if self.metrics is not None:
            snap = snapshot_from_events(events, now)
            self.metrics.update(snap.updated(
                datasets=dict(state.get("datasets", {})),
                queue_length=state.get("queue_length"),
                findings=dict(Counter(f.kind for f in findings)),
                alerts=self.alerts.counts() if self.alerts is not None else {}))
        return findings

    def _safe_check(self) -> None:
        try:
            self.check()
        except Exception as exc:  # the watcher goes on whatever the monitor meets
            log.error("monitor check failed: %s (next check in %.0f s)", exc, self.period,
                      exc_info=log.isEnabledFor(logging.DEBUG))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._safe_check()
            self._stop.wait(self.period)

    def start(self) -> MonitorLoop:
        """Check every ``period`` seconds in a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="spotkit-monitor",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (after the check in progress), the metrics server and alerts."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.period))
            self._thread = None
        if self.metrics is not None:
            self.metrics.close()
        if self.alerts is not None:
            self.alerts.close()
        for close in self.on_stop:
            try:
                close()
            except Exception as exc:  # stopping must finish
                log.warning("monitor: closing %r failed: %s", close, exc)

    def snapshot(self) -> FlowSnapshot | None:
        """What the metrics endpoint shows now (None without one)."""
        return self.metrics.snapshot if self.metrics is not None else None
