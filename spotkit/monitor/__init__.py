"""Workflow monitoring (X-SWAP): telemetry of every step, models of normal, change points,
missing data, alerts and keep-up quality checks.

The flow, runs and jobs record timed events in the catalog (:mod:`spotkit.monitor`'s
telemetry); models of normal and online change-point detectors turn them into
:class:`Finding` objects; alert rules send those on (log, e-mail, webhook) and the flow may
act on them (send previews to a faster target). ``spotkit monitor report`` gives the
turnaround breakdown per beamline and target.

This package sits just above the catalog (it stores its tables there) and below the parts
that record into it (pipelines, runs, compute, flows): it never imports them.
"""

from spotkit.monitor._alert_log import ALERT_COLUMNS, alert_log
from spotkit.monitor._alerts import AlertRule, Alerts, Delivery, QuietPeriod, parse_duration
from spotkit.monitor._bocpd import BayesianDetector, bayesian_changes
from spotkit.monitor._bocpd_offline import bayesian_segment
from spotkit.monitor._changepoint import ChangeDetector, cusum_arl, cusum_threshold, find_changes
from spotkit.monitor._events import events, frame
from spotkit.monitor._findings import SEVERITIES, Finding
from spotkit.monitor._metrics import METRICS, enrich, metrics
from spotkit.monitor._missing import (
    MissingData,
    Schedule,
    check_gaps,
    check_missing_products,
    check_quiet,
    check_stuck,
)
from spotkit.monitor._normal import LOG_METRICS, Expectation, NormalModel
from spotkit.monitor._notify import EmailChannel, LogChannel, NotifyError, WebhookChannel
from spotkit.monitor._prometheus import FlowSnapshot, MetricsServer, snapshot_from_events
from spotkit.monitor._quality import (
    References,
    check_new_products,
    check_outputs,
    check_product,
    select_references,
)
from spotkit.monitor._quality_data import QUALITY_KINDS, configuration, summarize_dataset
from spotkit.monitor._quality_store import (
    QualityVerdict,
    quality_findings,
    quality_verdict,
    quality_verdicts,
)
from spotkit.monitor._quality_summary import (
    ProductSummary,
    ring_metric,
    summarize_iq,
    summarize_raw_saxs,
    summarize_raw_tomo,
    summarize_volume,
)
from spotkit.monitor._quality_tests import TestResult, compare_summaries, robust_z
from spotkit.monitor._report import format_turnaround, plot_turnaround, turnaround
from spotkit.monitor._routing import (
    QueueView,
    RouteDecision,
    Router,
    one_per_change,
    queue_change_findings,
    queue_view,
    reroute_findings,
)
from spotkit.monitor._segment import segment
from spotkit.monitor._service import MonitorLoop
from spotkit.monitor._streams import MetricWatcher, watch_metrics
from spotkit.monitor._telemetry import EVENT_COLUMNS, STEPS, Telemetry, record, telemetry_for

__all__ = ["SEVERITIES", "Finding"]
__all__ += ["EVENT_COLUMNS", "METRICS", "STEPS", "Telemetry", "enrich", "events",  # H4
            "format_turnaround", "frame", "metrics", "plot_turnaround", "record",
            "telemetry_for", "turnaround"]
__all__ += ["AlertRule", "Alerts", "Delivery", "EmailChannel", "FlowSnapshot",  # H6
            "LogChannel", "MetricsServer", "MissingData", "MonitorLoop", "NotifyError",
            "QuietPeriod", "Schedule", "WebhookChannel", "check_gaps",
            "check_missing_products", "check_quiet", "check_stuck", "parse_duration",
            "snapshot_from_events"]
__all__ += ["LOG_METRICS", "BayesianDetector", "ChangeDetector", "Expectation",  # H5
            "MetricWatcher", "NormalModel", "bayesian_changes", "cusum_arl", "cusum_threshold",
            "find_changes", "watch_metrics"]
__all__ += ["QUALITY_KINDS", "ProductSummary", "QualityVerdict", "References",  # H7 quality
            "TestResult", "check_new_products", "check_outputs", "check_product",
            "compare_summaries", "configuration",
            "quality_findings", "quality_verdict",
            "quality_verdicts", "ring_metric", "robust_z", "select_references",
            "summarize_dataset", "summarize_iq", "summarize_raw_saxs", "summarize_raw_tomo",
            "summarize_volume"]
__all__ += ["QueueView", "RouteDecision", "Router", "one_per_change",  # H8 routing
            "queue_change_findings", "queue_view", "reroute_findings"]
__all__ += ["bayesian_segment", "segment"]  # offline segmentations
__all__ += ["ALERT_COLUMNS", "alert_log"]  # portal: the alerted findings, read only
