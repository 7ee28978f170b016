"""What the watcher's parts share: its state, the journal step runner, failures, logging.

:class:`~spotkit.flows.Watcher` is made of :class:`_DataSteps` (discover, ingest, pack,
move, verify) and :class:`_ActionSteps` (run the rules' notebooks); both build on
:class:`_WatcherBase`, which declares the state the watcher sets up and holds the helpers
every step uses: the journal step runner, failure accounting, leases, fault points, logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spotkit.backoff import Backoff
from spotkit.errors import (
    CatalogError,
    ComputeError,
    JobFailedError,
    JobLostError,
    SpotkitError,
    SubmitError,
)
from spotkit.flows._journal import Item, Journal
from spotkit.flows._outcomes import (
    PassReport,
    _is_lock_error,
    _LeaseLost,
    _Outage,
    _Quarantined,
)
from spotkit.flows._watch import Candidate, InboxScanner

if TYPE_CHECKING:
    from spotkit.catalog import Catalog
    from spotkit.flows._faults import FaultInjector
    from spotkit.flows._mover_base import Mover
    from spotkit.flows._rules_objects import RetryPolicy, Rules
    from spotkit.monitor import Telemetry

logger = logging.getLogger("spotkit.flows._flow")

#: journal steps and the telemetry step each is recorded as (others record their own)
_EVENT_STEPS = {"ingested": "ingested", "manifested": "manifest", "transferred": "transfer",
                "verified": "verified"}


class _Waiting(SpotkitError):
    """An action's batch job is in flight (or its target is full): the dataset waits for a
    later pass, keeping its lease; nothing failed."""


class _WatcherBase:
    """State and helpers of a :class:`~spotkit.flows.Watcher` (set up by its constructor)."""

    scanner: InboxScanner
    catalog: Catalog
    rules: Rules
    mover: Mover
    journal: Journal
    workers: int
    outage_backoff: float
    max_outage_backoff: float
    cell_timeout: float | None
    local_in_process: bool
    _semaphores: dict[str, threading.BoundedSemaphore]
    _sem_lock: threading.Lock
    _faults: FaultInjector
    _held: set[str]
    _active: dict[str, tuple[str, float, str]]
    _digests: dict[str, dict]
    _swept: bool  # leftovers of the staging area removed (once per watcher)
    telemetry: Telemetry  # the catalog's event recorder (spotkit.monitor)
    _labels: dict[str, dict[str, Any]]  # key: dataset_id, beamline... for telemetry events
    _ready: dict[str, float]  # key: when its next action could have started (this pass)
    _followed: dict[str, dict]  # run id: a batch job in flight (see _ActionSteps)
    _jobs_lock: threading.Lock

    # -- helpers ----------------------------------------------------------------------

    def _fault(self, point: str) -> None:
        """Fault injection for tests: SIGKILL this process at the configured point."""
        self._faults(point)

    def _log(self, level: int, event: str, item: Item | Candidate, **fields: Any) -> None:
        fields = {"event": event, "path": str(item.path), **fields}
        text = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in fields.items())
        logger.log(level, "%s", text, extra={"spotkit": fields})

    def _semaphore(self, target: str, limit: int) -> threading.BoundedSemaphore:
        with self._sem_lock:
            if target not in self._semaphores:
                self._semaphores[target] = threading.BoundedSemaphore(max(1, int(limit)))
            return self._semaphores[target]

    def _step(self, item: Item, step: str, func: Callable[[], tuple[dict, int]],
              **start_result: Any) -> Any:
        """Run ``func()`` as journal step ``step`` unless it is done; return its result.

        ``func`` returns ``(result_dict, nbytes)``; the record (timing, size) is written
        after the effect, so a crash in between repeats the (idempotent) effect.
        """
        rec = self.journal.step(item.key, step)
        if rec is not None and rec.state == "done":
            return rec.result
        if not self.journal.acquire(item.key):
            raise _LeaseLost(item.key)
        self.journal.start_step(item.key, step, result=start_result or None)
        attempt = (rec.attempts if rec is not None else 0) + 1
        t0 = time.perf_counter()
        self._active[item.key] = (step, t0, str(item.path))
        try:
            result, nbytes = func()
        except BaseException as exc:
            seconds = time.perf_counter() - t0
            self.journal.finish_step(item.key, step, state="failed", seconds=seconds,
                                     error=str(exc))
            self._step_event(item, step, attempt, seconds, None, {}, error=exc)
            raise
        finally:
            self._active.pop(item.key, None)
        seconds = time.perf_counter() - t0
        self.journal.finish_step(item.key, step, seconds=seconds, nbytes=nbytes, result=result)
        self._step_event(item, step, attempt, seconds, nbytes, result)
        dataset = result.get("dataset_id") or item.dataset_id
        if dataset is None:
            current = self.journal.item(item.key)
            dataset = current.dataset_id if current else None
        self._log(logging.INFO, "step", item, step=step, state="done", seconds=seconds,
                  bytes=nbytes, dataset=dataset)
        return result

    def _event(self, item: Item | Candidate, step: str, **fields: Any) -> None:
        """Record a telemetry event about a flow item (never raises)."""
        try:
            labels = self._labels.get(item.key, {})
            fields.setdefault("dataset_id", labels.get("dataset_id")
                              or getattr(item, "dataset_id", None))
            fields.setdefault("beamline",
                              labels.get("beamline") or getattr(item, "beamline", None))
            self.telemetry.record(step, item=item.key, **fields)
        except Exception as exc:  # telemetry never stops the flow
            logger.warning("telemetry: %s event of %s not recorded: %s", step, item.path, exc)

    def _step_event(self, item: Item, step: str, attempt: int, seconds: float,
                    nbytes: int | None, result: dict, *,
                    error: BaseException | None = None) -> None:
        """The telemetry event of a journal step that just ran (ingest, manifest, transfer,
        verify); a notebook action's runs record their own events."""
        try:
            name = _EVENT_STEPS.get(step)
            if name is None:
                return
            detail: dict[str, Any] = {}
            target = value = None
            if name == "ingested":
                labels = self._labels.get(item.key, {})
                detail = {k: labels[k] for k in ("kind", "files", "sizes", "staged") if k in labels}
            elif name == "transfer":
                target = self.mover.location
                detail = {"dest": result.get("dest"), "copied": len(result.get("copied") or ()),
                          "skipped": len(result.get("skipped") or ())}
                if result.get("ahead"):  # a priority order: frames of interest first
                    detail.update(order=result.get("order"), ahead=result["ahead"])
                if nbytes and seconds > 0:
                    value = nbytes / seconds
            elif name == "verified":
                target = result.get("location") or self.mover.location
                detail = {"level": result.get("level"), "files": result.get("files")}
            if error is not None:
                detail["error"] = f"{type(error).__name__}: {error}"[:500]
            self._event(item, name, duration=seconds, nbytes=nbytes, target=target, value=value,
                        outcome="failed" if error is not None else "ok", detail=detail,
                        key=f"flow|{item.key}|{name}|{attempt}")
        except Exception as exc:  # telemetry never stops the flow
            logger.warning("telemetry: %s event of %s not recorded: %s", step, item.path, exc)

    # -- failures ---------------------------------------------------------------------

    def _failed(self, item: Item, exc: BaseException, report: PassReport, *,
                max_attempts: int, retry: RetryPolicy, step: str | None = None) -> None:
        if isinstance(exc, _LeaseLost):
            report.skipped.append(str(item.path))
            return
        if isinstance(exc, _Waiting):  # followed by later passes: not a failure
            return
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise exc
        # a job the scheduler ran and that failed, or lost, counts against the dataset;
        # a scheduler that cannot be reached or refuses jobs is an outage
        outage = isinstance(exc, _Outage | SubmitError) or _is_lock_error(exc) or (
            isinstance(exc, ComputeError)
            and not isinstance(exc, JobFailedError | JobLostError))
        text = f"{type(exc).__name__}: {exc}"
        try:
            if isinstance(exc, _Quarantined):
                reason = str(exc)
                self._quarantine(item, reason, report)
                return
            if outage:
                current = self.journal.item(item.key)
                n = (current.attempts if current else 0) + 1
                wait = Backoff(self.outage_backoff, 2.0, self.max_outage_backoff).delay(n + 1)
                self.journal.record_failure(item.key, text, retry_in=wait, count=False)
                self._let_go(item)
                report.outages.append(text)
                self._log(logging.WARNING, "outage", item, error=text, retry_in=wait)
                return
            if step is not None:
                rec = self.journal.step(item.key, step)
                attempts = rec.attempts if rec else 1
            else:
                current = self.journal.item(item.key)
                attempts = (current.attempts if current else 0) + 1
            park = attempts >= max_attempts
            wait = retry.delay(max(1, attempts))
            self.journal.record_failure(item.key, text, park=park, retry_in=wait)
            if park and step is not None:
                self.journal.finish_step(item.key, step, state="parked", error=text)
            if park:
                self.mover.discard_staged(item.key)  # staged copies are not kept for it
                report.parked[str(item.path)] = text
                self._log(logging.ERROR, "parked", item, step=step, attempts=attempts,
                          error=text)
            self._let_go(item)
            if not park:
                report.failed[str(item.path)] = text
                self._log(logging.WARNING, "failed", item, step=step, attempts=attempts,
                          retry_in=wait, error=text)
        except CatalogError as inner:
            report.outages.append(f"recording the failure of {item.path}: {inner}")
        if not (isinstance(exc, SpotkitError | OSError)):
            logger.exception("unexpected error on %s", item.path, exc_info=exc)

    def _let_go(self, item: Item) -> None:
        """Release the lease after a failed attempt, so that any watcher may retry it."""
        self._held.discard(item.key)
        self._drop_followed(item.key)
        self.journal.release(item.key)

    def _drop_followed(self, key: str) -> None:
        """Stop following the batch jobs of an item this watcher no longer works on (a
        later pass, of any watcher, follows them from the journal)."""
        with self._jobs_lock:
            for run, f in list(self._followed.items()):
                if f.get("item") == key:
                    self._followed.pop(run)

    def _set_aside(self, dataset_id: str, status: str, reason: str) -> None:
        """Give a quarantined catalog dataset a final status (it stays in the catalog)."""
        try:
            old = self.catalog.get(dataset_id)
            if old is not None and old.status == "quarantined":
                self.catalog.set_status(dataset_id, status, reason=reason)
        except CatalogError as exc:
            logger.warning("could not mark %s %s: %s", dataset_id, status, exc)

    def _quarantine(self, item: Item, reason: str, report: PassReport) -> None:
        """Register a corrupt raw file as a quarantined dataset and park it (_DataSteps)."""
        raise NotImplementedError
