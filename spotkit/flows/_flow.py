"""The watcher: every finished scan ingested, packed, moved, verified and processed once.

One pass (:meth:`Watcher.run_once`):

1. poll the inboxes (:class:`~spotkit.flows.InboxScanner`) and record each complete file in
   the journal (a corrupt one is quarantined in the catalog with its reason);
2. for every dataset whose next attempt is due and whose lease this watcher gets: ingest it
   (idempotent), make its manifest, transfer it to the warehouse and verify it there
   (the mover skips files already verified);
3. stage by stage (the fast ``preview`` stage of every dataset before any ``full`` one),
   run the rule actions: :func:`spotkit.run_notebook` for a local target (in the pass),
   :func:`spotkit.submit` for a batch target, at most ``concurrency`` at once per target.
   A batch job is not waited for: its id goes into the journal and the pass goes on; each
   later pass asks every target once about all the jobs it follows
   (:func:`spotkit.compute.poll_jobs`), and a dataset whose job ended well goes on to its
   next stage (a failed job counts as a failed attempt). A dataset's stages stay in order;
   a slow queue holds up only the datasets whose jobs wait in it, and the routing
   (``queue_budget``) sees a job waiting too long at the next pass;
4. mark the dataset done.

Exactly once, across crashes: each step is recorded in the journal *after* its effect, and
each effect is safe to repeat or is checked first. Ingest and transfer are idempotent; a
notebook run's completion and its derived datasets are committed by the catalog in one
transaction (:meth:`~spotkit.catalog.Catalog.finish_run`), and a restarted watcher adopts a
completed run it finds instead of running it again, and closes a run its dead predecessor
left ``running`` as ``cancelled`` before starting a new one. A batch job submitted by a
watcher that was killed is followed by the next one, from the job id in the journal (or,
killed between ``sbatch`` and the journal record, in the catalog run): never submitted again.

Outages (destination unavailable, compute target refusing jobs, catalog locked) are
retried with backoff without counting against the dataset; other failures count, and after
the rule's retry policy is used up the dataset is parked with its reason.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from spotkit.errors import (
    CatalogError,
)
from spotkit.flows._faults import FAULT_ENV, FAULT_POINTS, FaultInjector
from spotkit.flows._flow_actions import _ActionSteps
from spotkit.flows._flow_base import _EVENT_STEPS
from spotkit.flows._flow_data import _DataSteps
from spotkit.flows._journal import FINAL_STATES, Item, Journal
from spotkit.flows._outcomes import (
    PassReport,
)
from spotkit.flows._watch import InboxScanner

__all__ = ["FAULT_ENV", "FAULT_POINTS", "PassReport", "Watcher"]

logger = logging.getLogger(__name__)

#: seconds between the ``event=progress`` lines of steps still running (long copies and
#: notebook runs); a copy also logs its own byte progress (``spotkit.flows._movers``)
PROGRESS_SECONDS = 30.0


class Watcher(_DataSteps, _ActionSteps):
    """Watch inbox folders and take every finished scan through the flow, exactly once.

    Parameters
    ----------
    inboxes : path-like or iterable of path-like
        Folders the detector writes into.
    catalog : Catalog or path-like
        The catalog (its database also holds the journal and the leases).
    rules : Rules or path-like
        The facility's rules (:func:`spotkit.flows.load_rules`).
    warehouse : Mover or path-like
        Where raw data is moved: a mover, or a folder (a ``LocalCopy`` to it).
    poll : float
        Seconds between passes in :meth:`run_forever`.
    settle : float
        Seconds a file's size and mtime must stay the same before it is looked at.
    require_sentinel : bool
        Also wait for the acquisition's ``<file>.done``.
    quarantine_after : float, optional
        Seconds a stable file may stay unreadable before it is quarantined.
    workers : int
        Datasets handled at once (each action also waits for its target's concurrency).
    lease_seconds : float
        Lease on a dataset; renewed at every step.
    outage_backoff : float
        Seconds before retrying after an outage (doubles up to ``max_outage_backoff``).
    max_outage_backoff : float
    cell_timeout : float or None
        Seconds one notebook cell may run.
    local_in_process : bool
        Run the actions of ``local`` targets with :func:`spotkit.run_notebook` in this
        process (default); False sends them through :func:`spotkit.submit` to a
        :class:`spotkit.compute.Local` process pool, like a batch target.
    inotify : bool or None
        Let Linux inotify wake :meth:`run_forever` as soon as a file is closed, moved in or
        created in an inbox, instead of at the next poll (None, the default: where
        available). Completeness is still decided by polling (see
        :class:`~spotkit.flows.InboxScanner`), so network file systems, where inotify sees
        nothing written by other machines, work the same.
    telemetry : bool or None
        Record a timed event for every step in the catalog (:mod:`spotkit.monitor`;
        default: unless ``SPOTKIT_TELEMETRY=off``). The events are written in one
        transaction at the end of each pass, through a connection the watcher keeps.

    Examples
    --------
    A simulated scan in an inbox, taken through the flow; the rules here ask for notebooks
    for SAXS data only, so the tomography scan is ingested, packed, copied and verified,
    and no notebook runs:

    >>> import pathlib, tempfile
    >>> from spotkit.flows import load_rules
    >>> from spotkit.sim import simulate_tomo_scan
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "warehouse").mkdir()
    >>> _ = simulate_tomo_scan(root / "inbox" / "scan_0001.h5", shape=(32, 2, 32), seed=0)
    >>> rules = load_rules('''
    ... targets: {local: {kind: local, max_workers: 1}}
    ... rules:
    ...   - name: saxs
    ...     match: {kind: saxs/raw}
    ...     actions: [{name: quick, notebook: saxs_quicklook, target: local}]
    ... ''')
    >>> w = Watcher(root / "inbox", catalog=root / "catalog.db", rules=rules,
    ...             warehouse=root / "warehouse", settle=0)
    >>> report = w.run_once()
    >>> [pathlib.Path(p).name for p in report.discovered], len(report.done)
    (['scan_0001.h5'], 1)
    >>> sorted(p.name for p in (root / "warehouse").iterdir())  # the data and its manifest
    ['scan_0001.h5', 'scan_0001.spotkit-manifest.json']
    >>> [ds.kind for ds in w.catalog.search()]
    ['tomo/raw']
    >>> w.run_forever(max_passes=1)  # a service runs until stop(); nothing new here
    >>> w.close()
    """

    def __init__(
        self,
        inboxes,
        *,
        catalog,
        rules,
        warehouse,
        poll: float = 5.0,
        settle: float = 5.0,
        require_sentinel: bool = False,
        quarantine_after: float | None = None,
        workers: int = 2,
        lease_seconds: float = 120.0,
        outage_backoff: float = 2.0,
        max_outage_backoff: float = 60.0,
        cell_timeout: float | None = 1800,
        local_in_process: bool = True,
        inotify: bool | None = None,
        telemetry: bool | None = None,
    ):
        from spotkit.catalog import Catalog, open_catalog
        from spotkit.flows._movers import LocalCopy, Mover
        from spotkit.flows._rules import Rules, load_rules
        from spotkit.monitor import Telemetry

        if isinstance(inboxes, str | os.PathLike):
            inboxes = [inboxes]
        self.scanner = InboxScanner(inboxes, settle=settle, require_sentinel=require_sentinel,
                                    quarantine_after=quarantine_after)
        self._own_catalog = not isinstance(catalog, Catalog)
        self.catalog = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
        self.rules = rules if isinstance(rules, Rules) else load_rules(rules)
        self.mover = warehouse if isinstance(warehouse, Mover) else LocalCopy(warehouse)
        if poll <= 0:
            raise ValueError(f"poll must be > 0 seconds, not {poll!r}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers!r}")
        self.poll = float(poll)
        self.workers = int(workers)
        self.outage_backoff = float(outage_backoff)
        self.max_outage_backoff = float(max_outage_backoff)
        self.cell_timeout = cell_timeout
        self.local_in_process = bool(local_in_process)
        self.inotify = inotify
        self.journal = Journal(self.catalog.path, lease_seconds=lease_seconds)
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._sem_lock = threading.Lock()
        self._faults = FaultInjector()
        self._stop = threading.Event()
        self._held: set[str] = set()  # leases this pass holds (renewed by the heartbeat)
        self._active: dict[str, tuple[str, float, str]] = {}  # key: (step, start, path)
        self._digests: dict[str, dict] = {}  # key: checksums computed at ingest, for the manifest
        # timed events of every step (spotkit.monitor); written in batches, at least once
        # per pass; SPOTKIT_TELEMETRY=off records none
        self.telemetry = Telemetry(self.catalog, enabled=telemetry)
        self._labels: dict[str, dict] = {}
        self._ready: dict[str, float] = {}
        # actions with a queue-wait budget: their routers (spotkit.monitor.Router)
        self._routers: dict[str, Any] = {}
        self._route_lock = threading.Lock()
        self._route_cache: tuple[float, float, Any] | None = None
        self._run_targets: dict[str, str] = {}
        # batch jobs submitted by one pass and followed by the next ones (_ActionSteps)
        self._targets: dict[str, Any] = {}
        self._followed: dict[str, dict] = {}
        self._submitting: dict[str, int] = {}
        self._polled: dict[str, Any] = {}
        self._deferred: set[str] = set()  # items whose batch target was full this pass
        self._jobs_lock = threading.Lock()
        self._backfilled = False  # events a killed watcher had not written: rebuilt once

    # -- passes -----------------------------------------------------------------------

    def run_once(self, *, wait: bool = True) -> PassReport:
        """One pass over the inboxes and the journal (see the module documentation).

        A pass submits the batch jobs its datasets need and goes on; the journal records
        each job's id, and later passes follow the jobs (one scheduler query per target per
        pass), register their products and take their datasets on.

        Parameters
        ----------
        wait : bool
            Then follow the batch jobs of the datasets this pass worked on until none is in
            flight (more passes over those datasets only, no new files), so that one call
            takes what is complete now all the way (a script, ``spotkit watch --once``).
            :meth:`run_forever` passes ``wait=False``: its next pass follows them, and a
            slow queue holds up no other dataset.

        Returns
        -------
        PassReport
            Of every pass made (with ``wait``: the follow-up passes' done, failed and
            parked datasets added).
        """
        try:
            report = self._pass()
            while wait and not self._stop.is_set():
                # jobs in flight, and datasets that waited for a free slot on a target
                keys = {str(f["item"]) for f in self.following() if f.get("item")}
                keys |= self._deferred
                if not keys:
                    break
                time.sleep(self._follow_pause())
                more = self._pass(only=keys)
                report.done += more.done
                report.failed.update(more.failed)
                report.parked.update(more.parked)
                report.skipped += [s for s in more.skipped if s not in report.skipped]
                report.outages += more.outages
            return report
        finally:
            self.telemetry.flush()  # never raises: a telemetry failure is logged

    def _follow_pause(self) -> float:
        """Seconds between two looks at the jobs followed (their targets' poll rate)."""
        with self._jobs_lock:
            polls = [f["job"].target.poller.min_poll for f in self._followed.values()
                     if f.get("job") is not None]
        return min(self.poll, max(0.05, min(polls, default=self.poll)))

    def _pass(self, only: set[str] | None = None) -> PassReport:
        report = PassReport()
        self._deferred = set()
        if not self._backfilled:
            self._backfill_events()
        try:
            if only is None:
                self._discover(report)
            due = self.journal.due()
        except CatalogError as exc:
            report.outages.append(str(exc))
            logger.warning("event=outage error=%s", exc)
            return report
        if only is not None:
            due = [item for item in due if item.key in only]
        mine: list[Item] = []
        for item in due:
            try:
                if self.journal.acquire(item.key):
                    fresh = self.journal.item(item.key)  # another watcher may have finished it
                    if fresh is None or fresh.state in ("parked", *FINAL_STATES):
                        self.journal.release(item.key)
                        self._drop_followed(item.key)
                        continue
                    mine.append(fresh)
                else:
                    report.skipped.append(str(item.path))
                    self._drop_followed(item.key)  # another watcher follows its jobs now
            except CatalogError as exc:
                report.outages.append(str(exc))
        if not mine:
            return report
        beat_stop = threading.Event()
        self._held = {i.key for i in mine}
        beat = threading.Thread(target=self._heartbeat, args=(beat_stop,),
                                name="spotkit-flow-lease", daemon=True)
        beat.start()
        try:
            self._run_items(mine, report)
        finally:
            beat_stop.set()
            beat.join()
        return report

    def _backfill_events(self) -> None:
        """Telemetry of steps that a watcher killed before it wrote its events (they are
        buffered for one pass) did: rebuilt from the journal, which records every step
        after its effect. The events have the keys they would have had, so an event
        already stored is not stored again. Items changed since shortly before the
        newest stored flow event are looked at (the last day's on a catalog without any)."""
        self._backfilled = True
        if not self.telemetry.enabled:
            return
        try:
            newest = self.telemetry.last_time(("ingested", "manifest", "transfer",
                                               "verified", "done"))
            cutoff = (newest - 2 * self.journal.lease_seconds if newest is not None
                      else time.time() - 86400.0)
            n = 0
            for item in self.journal.items():
                if item.updated_at >= cutoff and item.dataset_id:
                    n += self._rebuild_events(item)
        except Exception as exc:  # telemetry never stops the flow
            logger.warning("telemetry: events of an earlier watcher not rebuilt: %s", exc)
            return
        if n:
            logger.info("telemetry: %d event(s) of earlier passes rebuilt from the journal "
                        "(written unless stored already)", n)

    def _rebuild_events(self, item: Item) -> int:
        labels = {"dataset_id": item.dataset_id, "beamline": item.beamline}
        self._arrival_events(item, item.dataset_id or "", item.beamline)
        n = 2
        for rec in self.journal.steps(item.key):
            if rec.state != "done" or rec.ended_at is None:
                continue
            name = "done" if rec.step == "done" else _EVENT_STEPS.get(rec.step)
            result = rec.result or {}
            target = (result.get("provenance") or {}).get("target")
            settings = self.rules.targets.get(target) or {}
            local = settings.get("kind", "local") == "local" and self.local_in_process
            if rec.step.startswith("processed/") and result.get("run_id") and local and \
                    not result.get("adopted"):  # a batch job's queued is submit's
                self._event(item, "queued", time=rec.started_at, target=target,
                            run_id=result["run_id"], key=f"run|{result['run_id']}|queued",
                            detail={"rebuilt": True}, **labels)
                n += 1
            if name is None:
                continue
            target = value = None
            if name == "transfer":
                target = self.mover.location
                if rec.bytes and rec.seconds:
                    value = rec.bytes / rec.seconds
            elif name == "verified":
                target = result.get("location") or self.mover.location
            key = (f"flow|{item.key}|done" if name == "done"
                   else f"flow|{item.key}|{name}|{rec.attempts}")
            self._event(item, name, time=rec.ended_at, duration=rec.seconds, nbytes=rec.bytes,
                        target=target, value=value, outcome="ok", detail={"rebuilt": True},
                        key=key, **labels)
            n += 1
        return n

    def _heartbeat(self, stop: threading.Event) -> None:
        """Renew the leases of this pass's datasets while a long step (a notebook) runs, and
        say which steps are still running every :data:`PROGRESS_SECONDS`."""
        next_progress = time.perf_counter() + PROGRESS_SECONDS
        while not stop.wait(min(max(1.0, self.journal.lease_seconds / 3), PROGRESS_SECONDS)):
            now = time.perf_counter()
            if now >= next_progress:
                next_progress = now + PROGRESS_SECONDS
                for step, t0, path in list(self._active.values()):
                    logger.info("event=progress path=%s step=%s running_s=%.0f", path, step,
                                now - t0)
            for key in list(self._held):
                try:
                    item = self.journal.item(key)
                    if item is not None and item.state not in ("parked", *FINAL_STATES):
                        self.journal.acquire(key)
                except CatalogError as exc:
                    logger.warning("event=outage renewing lease on %s: %s", key, exc)

    def _run_items(self, mine: list[Item], report: PassReport) -> None:
        # the batch jobs these datasets wait for: one status query per target, first
        self._poll_followed(mine)
        with ThreadPoolExecutor(max_workers=self.workers,
                                thread_name_prefix="spotkit-flow") as pool:
            prepared = list(pool.map(lambda it: self._prepare(it, report), mine))
            ready = [(it, ds) for it, ds in zip(mine, prepared, strict=True) if ds is not None]
            for stage in self.rules.stages:
                flags = list(pool.map(lambda p, s=stage: self._process(p[0], p[1], s, report),
                                      ready))
                ready = [p for p, ok in zip(ready, flags, strict=True) if ok]
            for item, ds in ready:
                try:
                    self._finish(item, ds, report)
                except CatalogError as exc:
                    report.outages.append(str(exc))

    def run_forever(self, *, max_passes: int | None = None) -> None:
        """Run passes every ``poll`` seconds until :meth:`stop` (or ``max_passes``).

        Parameters
        ----------
        max_passes : int, optional
            Stop after this many passes (default: never).
        """
        from spotkit.flows._inotify import InboxEvents

        events = InboxEvents.open(self.scanner.inboxes) if self.inotify is not False else None
        if self.inotify and events is None:
            logger.warning("inotify was asked for but is not available here: polling")
        logger.info("watching %s (warehouse %r, rules %s, owner %s, %s)",
                    ", ".join(map(str, self.scanner.inboxes)), self.mover,
                    self.rules.version, self.journal.owner,
                    "inotify + polling" if events else "polling")
        try:
            self._loop(events, max_passes)
        finally:
            if events is not None:
                events.close()

    def _pause(self, seconds: float, events) -> None:
        """Wait up to ``seconds``; return early on :meth:`stop` or an inbox event."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if events is None:
                self._stop.wait(min(left, 0.5))
            elif events.wait(min(left, 0.5)):
                return

    def _loop(self, events, max_passes: int | None) -> None:
        passes = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            report = self.run_once(wait=False)  # the next pass follows its batch jobs
            passes += 1
            if report.discovered or report.done or report.parked or report.failed:
                logger.info("event=pass discovered=%d done=%d failed=%d parked=%d outages=%d "
                            "following=%d seconds=%.3f", len(report.discovered),
                            len(report.done), len(report.failed), len(report.parked),
                            len(report.outages), len(self._followed), time.monotonic() - t0)
            if max_passes is not None and passes >= max_passes:
                break
            pause = max(0.0, self.poll - (time.monotonic() - t0))
            due = self.scanner.next_due()  # a file seen changing settles then: look again
            if due is not None:
                pause = min(pause, due + 0.01)
            self._pause(pause, events)

    def stop(self) -> None:
        """Ask :meth:`run_forever` to return after the current pass."""
        self._stop.set()

    def close(self) -> None:
        """Close the journal connection (and the catalog, if the watcher opened it)."""
        self.telemetry.close()
        self.journal.close()
        if self._own_catalog:
            self.catalog.close()

    def pending(self) -> Iterable[Item]:
        """Datasets not done nor parked."""
        return [i for i in self.journal.items() if i.state not in ("parked", *FINAL_STATES)]
