"""A metrics endpoint in the Prometheus text format, for facilities that run Grafana.

:class:`MetricsServer` serves ``/metrics`` (``prometheus_client``'s exposition, on its own
registry, never the process-wide one) from the latest :class:`FlowSnapshot`, which the
monitor loop refreshes at every check; a scrape never reads the database.

=========================================  =======  =============================================
metric                                     type     what
=========================================  =======  =============================================
``spotkit_datasets{beamline,state}``       gauge    datasets in the flow journal by state
``spotkit_queue_length``                   gauge    datasets not done nor parked
``spotkit_arrivals_total{beamline}``       counter  datasets completed (``complete`` events)
``spotkit_transferred_bytes_total``        counter  bytes copied by the flow (``transfer`` events)
``spotkit_failures_total{step}``           counter  events with a failed outcome, by step
``spotkit_last_arrival_age_seconds``       gauge    seconds since a beamline's last dataset
``spotkit_last_arrival_timestamp_seconds`` gauge    when it arrived (UTC epoch s)
``spotkit_findings{kind}``                 gauge    findings of the last check, by kind
``spotkit_alerts_total{rule,outcome}``     counter  alert messages sent (``ok``) or failed
``spotkit_monitor_last_check_...``         gauge    ``..._timestamp_seconds`` of the last check
=========================================  =======  =============================================
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from spotkit.monitor._metrics import enrich

__all__ = ["FlowSnapshot", "MetricsServer", "snapshot_from_events"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowSnapshot:
    """What the metrics endpoint shows, as of ``time``.

    Attributes
    ----------
    time : float
        When it was taken (UTC epoch s).
    datasets : mapping
        ``{(beamline, state): count}`` from the flow journal.
    queue_length : int or None
    arrivals : mapping
        ``{beamline: complete datasets}`` (``"?"``: beamline not known).
    transferred_bytes : float
    failures : mapping
        ``{step: failed events}``.
    last_arrival : mapping
        ``{beamline: epoch seconds}``.
    findings : mapping
        ``{kind: count}`` of the last check.
    alerts : mapping
        ``{(rule, outcome): messages}``.
    """

    time: float = 0.0
    datasets: Mapping[tuple[str, str], int] = field(default_factory=dict)
    queue_length: int | None = None
    arrivals: Mapping[str, int] = field(default_factory=dict)
    transferred_bytes: float = 0.0
    failures: Mapping[str, int] = field(default_factory=dict)
    last_arrival: Mapping[str, float] = field(default_factory=dict)
    findings: Mapping[str, int] = field(default_factory=dict)
    alerts: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def updated(self, **changes: Any) -> FlowSnapshot:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def snapshot_from_events(events: pd.DataFrame, now: float) -> FlowSnapshot:
    """Counters and last arrivals from an events table (the flow journal's parts are added
    by the caller).

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"time": [1.0, 2.0, 3.0], "step": ["complete", "transfer", "run"],
    ...                    "beamline": "8.3.2", "bytes": [None, 5e6, None],
    ...                    "outcome": [None, "ok", "failed"]})
    >>> s = snapshot_from_events(ev, now=10.0)
    >>> s.arrivals, s.transferred_bytes, s.failures, s.last_arrival
    ({'8.3.2': 1}, 5000000.0, {'run': 1}, {'8.3.2': 1.0})
    """
    if events.empty or "step" not in events.columns:
        return FlowSnapshot(time=float(now))
    ev = events
    for col in ("beamline", "bytes", "outcome", "dataset_id", "item", "run_id", "job_id"):
        if col not in ev.columns:
            ev = ev.assign(**{col: None})
    ev = enrich(ev)  # a 'complete' event names its beamline only through later events
    complete = ev[ev["step"] == "complete"]
    beamline = complete["beamline"].astype("object").where(complete["beamline"].notna(), "?")
    arrivals = {str(k): int(v) for k, v in complete.groupby(beamline).size().items()}
    last = {str(k): float(v) for k, v in complete["time"].groupby(beamline).max().items()}
    moved = ev[(ev["step"] == "transfer")
               & (ev["outcome"].isna() | ev["outcome"].astype(str).isin(["ok", "0"]))]
    nbytes = float(pd.to_numeric(moved["bytes"], errors="coerce").fillna(0).sum())
    outcome = ev["outcome"].astype("object")
    bad = ev[outcome.notna() & ~outcome.astype(str).isin(
        ["ok", "0", "started", "running", "queued"])]
    failures = {str(k): int(v) for k, v in bad.groupby("step").size().items()}
    return FlowSnapshot(time=float(now), arrivals=arrivals, transferred_bytes=nbytes,
                        failures=failures, last_arrival=last)


class _Collector:
    """Turns the server's latest snapshot into metric families at each scrape."""

    def __init__(self, server: MetricsServer):
        self._server = server

    def describe(self) -> list:
        return []  # families vary with the beamlines seen: no fixed description

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self._server.snapshot
        now = self._server.clock()
        datasets = GaugeMetricFamily("spotkit_datasets", "Datasets in the flow journal by "
                                     "state", labels=["beamline", "state"])
        for (beamline, state), n in sorted(s.datasets.items()):
            datasets.add_metric([beamline, state], n)
        yield datasets
        if s.queue_length is not None:
            yield GaugeMetricFamily("spotkit_queue_length", "Datasets not done nor parked",
                                    value=s.queue_length)
        arrivals = CounterMetricFamily("spotkit_arrivals", "Datasets completed at the "
                                       "beamline", labels=["beamline"])
        for beamline, n in sorted(s.arrivals.items()):
            arrivals.add_metric([beamline], n)
        yield arrivals
        yield CounterMetricFamily("spotkit_transferred_bytes", "Bytes copied by the flow",
                                  value=s.transferred_bytes)
        failures = CounterMetricFamily("spotkit_failures", "Steps that failed",
                                       labels=["step"])
        for step, n in sorted(s.failures.items()):
            failures.add_metric([step], n)
        yield failures
        age = GaugeMetricFamily("spotkit_last_arrival_age_seconds", "Seconds since the "
                                "beamline's last complete dataset", labels=["beamline"])
        stamp = GaugeMetricFamily("spotkit_last_arrival_timestamp_seconds", "When the "
                                  "beamline's last dataset completed", labels=["beamline"])
        for beamline, t in sorted(s.last_arrival.items()):
            age.add_metric([beamline], max(0.0, now - t))
            stamp.add_metric([beamline], t)
        yield age
        yield stamp
        findings = GaugeMetricFamily("spotkit_findings", "Findings of the monitor's last "
                                     "check, by kind", labels=["kind"])
        for kind, n in sorted(s.findings.items()):
            findings.add_metric([kind], n)
        yield findings
        alerts = CounterMetricFamily("spotkit_alerts", "Alert messages, by rule and outcome",
                                     labels=["rule", "outcome"])
        for (rule, outcome), n in sorted(s.alerts.items()):
            alerts.add_metric([rule, outcome], n)
        yield alerts
        yield GaugeMetricFamily("spotkit_monitor_last_check_timestamp_seconds",
                                "When the monitor last checked", value=s.time)


class MetricsServer:
    """Serve ``/metrics`` over HTTP in the Prometheus text format.

    Parameters
    ----------
    port : int
        TCP port (0: any free one; :attr:`port` says which after :meth:`start`).
    host : str
        Address to listen on: ``127.0.0.1`` (default) for a scraper on this host,
        ``0.0.0.0`` for any (the metrics name beamlines and targets: mind who can reach it).
    clock : callable
        ``clock() -> epoch seconds`` for the arrival ages.

    Examples
    --------
    >>> import urllib.request
    >>> server = MetricsServer(port=0).start()
    >>> server.update(FlowSnapshot(time=1.0, queue_length=3))
    >>> text = urllib.request.urlopen(server.url).read().decode()
    >>> "spotkit_queue_length 3.0" in text
    True
    >>> server.close()
    """

    def __init__(self, port: int, *, host: str = "127.0.0.1",
                 clock: Callable[[], float] = time.time):
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"metrics port {port!r}: give a TCP port 1-65535 (0: any free)")
        try:
            from prometheus_client import CollectorRegistry
        except ImportError:  # pragma: no cover - a declared dependency
            raise ImportError("the metrics endpoint needs prometheus_client: "
                              "pip install prometheus_client") from None
        self.host = host
        self.port = port
        self.clock = clock
        self.snapshot = FlowSnapshot()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        """Listen (in a daemon thread). Raises OSError when the port is taken."""
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host,
                                                           registry=self.registry)
        except OSError as exc:
            raise OSError(f"metrics endpoint: cannot listen on {self.host}:{self.port} "
                          f"({exc}); choose another --metrics-port") from exc
        self.port = int(self._server.server_address[1])
        log.info("metrics endpoint at %s", self.url)
        return self

    def update(self, snapshot: FlowSnapshot) -> None:
        """Show ``snapshot`` from now on."""
        self.snapshot = snapshot

    def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

