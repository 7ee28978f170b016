"""The watcher: every finished scan ingested, packed, moved, verified and processed once.

One pass (:meth:`Watcher.run_once`):

1. poll the inboxes (:class:`~spotkit.flows.InboxScanner`) and record each complete file in
   the journal (a corrupt one is quarantined in the catalog with its reason);
2. for every dataset whose next attempt is due and whose lease this watcher gets: ingest it
   (idempotent), make its manifest, transfer it to the warehouse and verify it there
   (the mover skips files already verified);
3. stage by stage (the fast ``preview`` stage of every dataset before any ``full`` one),
   run the rule actions: :func:`spotkit.run_notebook` for a local target,
   :func:`spotkit.submit` for a batch target, at most ``concurrency`` at once per target;
4. mark the dataset done.

Exactly once, across crashes: each step is recorded in the journal *after* its effect, and
each effect is safe to repeat or is checked first. Ingest and transfer are idempotent; a
notebook run's completion and its derived datasets are committed by the catalog in one
transaction (:meth:`~spotkit.catalog.Catalog.finish_run`), and a restarted watcher adopts a
completed run it finds instead of running it again, and closes a run its dead predecessor
left ``running`` as ``cancelled`` before starting a new one.

Outages (destination unavailable, compute target refusing jobs, catalog locked) are
retried with backoff without counting against the dataset; other failures count, and after
the rule's retry policy is used up the dataset is parked with its reason.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotkit.errors import (
    CatalogError,
    ComputeError,
    InputFileError,
    JobFailedError,
    JobLostError,
    SpotkitError,
    SubmitError,
    TransferError,
)
from spotkit.flows._journal import FINAL_STATES, Item, Journal
from spotkit.flows._watch import Candidate, InboxScanner

__all__ = ["FAULT_ENV", "FAULT_POINTS", "PassReport", "Watcher"]

logger = logging.getLogger(__name__)

#: ``SPOTKIT_FAULT_AT=point:n[,point:n...]``: the watcher SIGKILLs itself the n-th time it
#: reaches ``point`` (fault-injection tests only; see :data:`FAULT_POINTS`). The variable is
#: inherited by the notebook kernels; ``run.notebook`` is for a test notebook that kills
#: the watcher (its parent) from inside a running cell; the watcher never fires it itself.
FAULT_ENV = "SPOTKIT_FAULT_AT"
FAULT_POINTS = (
    "discover.after", "ingest.before", "ingest.after", "manifest.after", "transfer.before",
    "transfer.after", "verify.after", "run.before", "run.started", "run.notebook", "run.after",
    "done.before", "done.after",
)


#: seconds between the ``event=progress`` lines of steps still running (long copies and
#: notebook runs); a copy also logs its own byte progress (``spotkit.flows._movers``)
PROGRESS_SECONDS = 30.0


class _Outage(SpotkitError):
    """A fault outside the dataset (destination, compute, catalog): retry, do not count."""


class _Quarantined(SpotkitError):
    """The raw file is corrupt: quarantined, parked."""


@dataclass
class PassReport:
    """What one pass of :meth:`Watcher.run_once` did.

    Attributes
    ----------
    discovered : list of str
        Files newly found complete.
    done : list of str
        Dataset ids finished in this pass.
    failed : dict
        ``{path: error}`` of datasets that failed an attempt (to be retried).
    parked : dict
        ``{path: reason}`` of datasets parked in this pass (quarantined ones included).
    skipped : list of str
        Files another watcher holds the lease on.
    outages : list of str
        Faults outside the datasets met in this pass (destination, compute, catalog).
    """

    discovered: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    parked: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    outages: list[str] = field(default_factory=list)


def _parse_faults(text: str | None) -> dict[str, int]:
    faults: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        point, _, count = part.strip().rpartition(":")
        if point not in FAULT_POINTS or not count.isdigit():
            raise ValueError(
                f"{FAULT_ENV}={text!r}: use point:n with a point in {FAULT_POINTS}"
            )
        faults[point] = int(count)
    return faults


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, CatalogError) and ("lock" in text or "busy" in text)


class Watcher:
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

    Examples
    --------
    >>> from spotkit.flows import Watcher, load_rules
    >>> w = Watcher("/data/inbox", catalog="catalog.db", rules=load_rules("rules.yaml"),
    ...             warehouse="/warehouse", settle=5)          # doctest: +SKIP
    >>> report = w.run_once()                                  # doctest: +SKIP
    >>> w.run_forever()                                        # doctest: +SKIP
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
    ):
        from spotkit.catalog import Catalog, open_catalog
        from spotkit.flows._movers import LocalCopy, Mover
        from spotkit.flows._rules import Rules, load_rules

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
        self._faults = _parse_faults(os.environ.get(FAULT_ENV))
        self._fault_counts: dict[str, int] = {}
        if self._faults:
            logger.warning("fault injection armed: %s", self._faults)
        self._stop = threading.Event()
        self._held: set[str] = set()  # leases this pass holds (renewed by the heartbeat)
        self._active: dict[str, tuple[str, float, str]] = {}  # key: (step, start, path)
        self._digests: dict[str, dict] = {}  # key: checksums computed at ingest, for the manifest

    # -- helpers ----------------------------------------------------------------------

    def _fault(self, point: str) -> None:
        """Fault injection for tests: SIGKILL this process at the configured point."""
        if point not in self._faults:
            return
        n = self._fault_counts.get(point, 0) + 1
        self._fault_counts[point] = n
        if n == self._faults[point]:
            logger.warning("fault injection: SIGKILL at %s (#%d)", point, n)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)

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

    def _step(self, item: Item, step: str, func, **start_result) -> Any:
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
        t0 = time.perf_counter()
        self._active[item.key] = (step, t0, str(item.path))
        try:
            result, nbytes = func()
        except BaseException as exc:
            self.journal.finish_step(item.key, step, state="failed",
                                     seconds=time.perf_counter() - t0, error=str(exc))
            raise
        finally:
            self._active.pop(item.key, None)
        seconds = time.perf_counter() - t0
        self.journal.finish_step(item.key, step, seconds=seconds, nbytes=nbytes, result=result)
        dataset = result.get("dataset_id") or item.dataset_id
        if dataset is None:
            current = self.journal.item(item.key)
            dataset = current.dataset_id if current else None
        self._log(logging.INFO, "step", item, step=step, state="done", seconds=seconds,
                  bytes=nbytes, dataset=dataset)
        return result

    # -- discovery --------------------------------------------------------------------

    def _discover(self, report: PassReport) -> None:
        known = self.journal.keys()  # files already in the journal are not opened again
        for cand in self.scanner.poll(known=known.__contains__):
            try:
                new = self.journal.discover(cand.key, cand.path, size=cand.size,
                                            mtime_ns=cand.mtime_ns, inbox=cand.inbox,
                                            kind=cand.kind)
            except CatalogError as exc:
                self.scanner.forget(cand.path)  # look again next pass
                report.outages.append(str(exc))
                continue
            self._fault("discover.after")
            if new:
                report.discovered.append(str(cand.path))
                self._log(logging.INFO, "discovered", cand, state=cand.state,
                          bytes=cand.size, kind=cand.kind)
            if cand.state == "corrupt":
                item = self.journal.item(cand.key)
                if item is not None and item.state not in ("parked", *FINAL_STATES):
                    self._quarantine(item, cand.reason or "unreadable", report)

    def _quarantine(self, item: Item, reason: str, report: PassReport) -> None:
        """Register a corrupt raw file as a quarantined dataset and park it."""
        from spotkit.catalog import Catalog
        from spotkit.io._info import DatasetInfo

        def reader(path):
            return DatasetInfo(kind="unknown", beamline=None, sample=None, proposal=None,
                               start_time=None, end_time=None, title=Path(path).name,
                               metadata={"status_reason": reason}, files=())

        try:
            if not self.journal.acquire(item.key):
                report.skipped.append(str(item.path))
                return
            with Catalog(self.catalog.path, reader=reader) as cat:
                ds = cat.ingest(item.path, status="quarantined",
                                extra_metadata={"status_reason": reason})
            self.journal.update_item(item.key, dataset_id=ds.id, kind="unknown")
            self.journal.finish_step(item.key, "ingested", state="parked", error=reason,
                                     result={"dataset_id": ds.id, "quarantined": True})
            self.journal.record_failure(item.key, f"quarantined: {reason}", park=True)
            self.journal.release(item.key)
        except CatalogError as exc:
            report.outages.append(f"quarantining {item.path}: {exc}")
            return
        except (InputFileError, OSError) as exc:  # vanished or unreadable even to hash
            current = self.journal.item(item.key)
            attempts = (current.attempts if current else 0) + 1
            park = attempts >= self.rules.retry.attempts
            text = f"cannot quarantine {item.path}: {exc}"
            self.journal.record_failure(item.key, text, park=park,
                                        retry_in=self.rules.retry.delay(attempts))
            (report.parked if park else report.failed)[str(item.path)] = text
            self._log(logging.ERROR, "quarantine-failed", item, error=text)
            return
        report.parked[str(item.path)] = f"quarantined: {reason}"
        self._log(logging.WARNING, "quarantined", item, dataset=ds.id, reason=reason)

    # -- the steps before processing --------------------------------------------------

    def _hasher(self, item: Item):
        """The catalog's checksum at ingest, computing the manifest's block checksums in the
        same read (kept for the manifest step: each source file is read once for both)."""
        from spotkit.catalog._files import checksum
        from spotkit.flows._suitcase import digest_file

        cache = self._digests.setdefault(item.key, {})

        def hasher(path):
            path = Path(path)
            if path.is_dir():
                return checksum(path)  # a folder's tree hash; the manifest hashes its files
            before = path.stat()
            sha, crcs = digest_file(path)
            after = path.stat()
            if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
                cache[os.path.abspath(path)] = (after.st_size, after.st_mtime_ns, sha, crcs)
            return after.st_size, sha

        return hasher

    def _ingest(self, item: Item):
        def do():
            self._fault("ingest.before")
            try:
                ds = self.catalog.ingest(item.path, hasher=self._hasher(item))
            except InputFileError as exc:
                raise _Quarantined(str(exc)) from exc
            previous = item.dataset_id
            self.journal.update_item(item.key, dataset_id=ds.id, beamline=ds.beamline,
                                     kind=ds.kind)
            if previous and previous != ds.id:
                self._set_aside(previous, "superseded", f"read again as {ds.id}")
            self._fault("ingest.after")
            return {"dataset_id": ds.id}, item.size

        result = self._step(item, "ingested", do)
        return self.catalog[result["dataset_id"]]

    def _dataset_root(self, item: Item, ds) -> Path:
        """The folder the dataset's files are packed relative to: the inbox when it holds
        them all (they land in the warehouse as they lay in the inbox), else their common
        folder."""
        files = [Path(os.path.abspath(f.registered_path)) for f in ds.files] or [item.path]
        root = Path(os.path.abspath(item.inbox or item.path.parent))
        if all(f == root or root in f.parents for f in files):
            return root
        common = Path(os.path.commonpath([root, *files]))
        logger.warning("dataset %s has files outside the inbox %s (%s): packing them "
                       "relative to %s", ds.id, root,
                       ", ".join(str(f) for f in files if root not in f.parents), common)
        return common

    def _manifest(self, item: Item, ds):
        from spotkit.flows._suitcase import Manifest, make_manifest

        def do():
            # every file the catalog lists for the dataset travels (the PONI of a SAXS
            # series, a metadata sidecar, a folder of frames), not only the one found
            paths = [f.registered_path for f in ds.files] or [item.path]
            primary = ds.primary_file
            doc = {"kind": ds.kind, "beamline": ds.beamline, "sample": ds.sample,
                   "proposal": ds.proposal, "title": ds.title,
                   "start_time": ds.start_time.isoformat() if ds.start_time else None,
                   "end_time": ds.end_time.isoformat() if ds.end_time else None,
                   "metadata": ds.metadata}
            man = make_manifest(paths, root=self._dataset_root(item, ds),
                                known=self._digests.pop(item.key, None),
                                file_metadata=({primary.registered_path: doc} if primary
                                               else None),
                                metadata={"dataset_id": ds.id, "beamline": ds.beamline,
                                          "kind": ds.kind,
                                          "files": [[str(f.registered_path), f.role]
                                                    for f in ds.files]})
            self._fault("manifest.after")
            return {"manifest": man.to_json(indent=None), "manifest_id": man.id}, man.total_bytes

        result = self._step(item, "manifested", do)
        return Manifest.from_json(result["manifest"])

    def _transfer(self, item: Item, ds, man) -> None:
        src_root = man.root or item.inbox or str(item.path.parent)
        landed_now = []  # set when this process copied (and checked) the files just now

        def transfer():
            ok, why = self.mover.available()
            if not ok:
                raise _Outage(f"warehouse {self.mover!r} unavailable: {why}")
            self._fault("transfer.before")
            try:
                res = self.mover.transfer(man, src_root)
            except TransferError as exc:
                if exc.transient:
                    raise _Outage(f"transfer to {self.mover!r}: {exc}") from exc
                raise
            landed_now.append(True)
            self._fault("transfer.after")
            return {"dest": res.dest, "copied": list(res.copied), "skipped": list(res.skipped),
                    "mb_per_s": round(res.mb_per_s, 3) if res.seconds > 0 else None,
                    "manifest_id": man.id}, res.bytes_copied

        def verify():
            # The mover checked every file against the manifest as it landed, before giving
            # it its final name. Right after that, presence and size suffice; after a restart
            # (the files may have sat at the destination meanwhile) every block is re-read.
            level = "size" if landed_now else "crc32"
            problems = self.mover.verify(man, level=level)
            if problems:
                # the copy is not good: the transfer must run again
                self.journal.finish_step(item.key, "transferred", state="failed",
                                         error="; ".join(str(p) for p in problems))
                raise TransferError(
                    f"{man.dataset} does not verify at {self.mover!r}: "
                    + "; ".join(str(p) for p in problems[:3]),
                    dest=str(self.mover.dest), reason="verification failed", transient=True)
            copy = self.mover.store_manifest(man)  # the suitcase travels with the data
            replicas = self._record_replicas(ds, man)
            self._fault("verify.after")
            return ({"manifest_id": man.id, "files": len(man.files), "level": level,
                     "manifest_copy": copy, "location": self.mover.location,
                     "replicas": replicas}, man.total_bytes)

        self._step(item, "transferred", transfer)
        try:
            self._step(item, "verified", verify)
        except TransferError as exc:
            raise _Outage(str(exc)) from exc

    def _record_replicas(self, ds, man) -> dict[str, str]:
        """Tell the catalog where the verified copies are, so readers use them."""
        root = Path(man.root) if man.root else None
        paths = {}
        for f in ds.files:
            reg = Path(os.path.abspath(f.registered_path))
            try:
                rel = reg.resolve().relative_to(root.resolve()).as_posix() if root else reg.name
            except ValueError:
                continue  # not packed (cannot happen with _dataset_root; be safe)
            paths[str(reg)] = self.mover.replica_path(rel)
        if paths:
            self.catalog.add_replicas(ds.id, self.mover.location, paths, rank=self.mover.rank,
                                      manifest_id=man.id)
        return paths

    def _prepare(self, item: Item, report: PassReport):
        """Ingest, manifest, transfer and verify one dataset; return it or None."""
        try:
            ds = self._ingest(item)
            man = self._manifest(item, ds)
            self._transfer(item, ds, man)
            return ds
        except BaseException as exc:
            self._failed(item, exc, report, max_attempts=self.rules.retry.attempts,
                         retry=self.rules.retry)
            return None

    # -- processing -------------------------------------------------------------------

    def _action_step(self, action) -> str:
        return f"processed/{action.key}"

    def _is_local(self, action) -> bool:
        """Whether the action runs in this process (its run dies with the watcher)."""
        kind = (action.target_settings or {}).get("kind", "local")
        return kind == "local" and self.local_in_process

    def _context(self, item: Item, action) -> dict:
        """What a run records about why the flow started it (``Run.context``)."""
        return {"flow": {**action.provenance(), "item": item.key, "path": str(item.path),
                         "watcher": self.journal.owner}}

    def _our_runs(self, item: Item, ds, action) -> list:
        """Catalog runs the flow started for this action on this dataset (any watcher)."""
        runs = self.catalog.runs(dataset_id=ds.id, limit=None)
        mine = []
        for r in runs:
            flow = (r.context or {}).get("flow") or {}
            if (flow.get("item") == item.key and flow.get("rule") == action.rule
                    and flow.get("action") == action.name):
                mine.append(r)
        return mine

    def _run_action(self, item: Item, ds, action) -> None:
        step = self._action_step(action)
        rec = self.journal.step(item.key, step)
        if rec is not None and rec.state == "done":
            return
        local = self._is_local(action)
        if rec is not None:
            # a previous attempt (perhaps by a watcher that died): look at its effect first
            for run in self._our_runs(item, ds, action):
                if run.state == "completed":
                    self.journal.finish_step(item.key, step, result={
                        "run_id": run.id, "outputs": list(run.outputs), "adopted": True,
                        "provenance": action.provenance()})
                    self._log(logging.INFO, "adopted-run", item, step=step, run=run.id,
                              dataset=ds.id)
                    return
            for run in self._our_runs(item, ds, action):
                if run.state not in ("queued", "running"):
                    continue
                if local:
                    # its process died with the previous watcher: close it, run anew
                    self.catalog.finish_run(
                        run.id, state="cancelled", error_name="WatcherDied",
                        error_message="the watcher running it stopped; the flow runs it again")
                    self._log(logging.WARNING, "cancelled-stale-run", item, run=run.id)
                else:
                    self._wait_remote(item, ds, action, run.id)
                    return
        sem = self._semaphore(action.target, action.concurrency)
        with sem:
            self._step(item, step, lambda: self._execute(item, ds, action, local),
                       provenance=action.provenance())

    def _execute(self, item: Item, ds, action, local: bool):
        self._fault("run.before")
        if local:
            from spotkit.runs import run_notebook

            self._fault("run.started")
            res = run_notebook(action.notebook_path, ds.id, parameters=dict(action.parameters),
                               catalog=self.catalog, target=action.target,
                               cell_timeout=self.cell_timeout,
                               context=self._context(item, action))
            run_id, outputs = res.run_id, [o.id for o in res.outputs]
        else:
            import spotkit

            try:
                job = spotkit.submit(action.notebook_path, ds.id,
                                     target=self.rules.target(action.target),
                                     parameters=dict(action.parameters), catalog=self.catalog,
                                     context=self._context(item, action))
            except SubmitError as exc:
                raise _Outage(f"target {action.target}: {exc}") from exc
            self._fault("run.started")
            run = self._follow(job, action)
            run_id, outputs = run.id, list(run.outputs)
        self._fault("run.after")
        return {"run_id": run_id, "outputs": outputs, "provenance": action.provenance()}, 0

    def _follow(self, job, action):
        """Wait for a batch job; return its completed catalog run.

        The scheduler's final state is checked, not assumed: a job that failed, was
        cancelled, timed out or was lost by the scheduler leaves its run ``failed`` in the
        catalog (if the job could not record that itself) and raises, which counts as a
        failed attempt of the dataset (retried with a new job, then parked).
        """
        try:
            job.wait(check=True)
        except (JobFailedError, JobLostError) as exc:
            run = self.catalog.get_run(job.run_id)
            if run.state in ("queued", "running"):
                self.catalog.finish_run(run.id, state="failed", error_name=type(exc).__name__,
                                        error_message=str(exc))
            raise
        run = self.catalog.get_run(job.run_id)
        if run.state != "completed":
            text = (f"{action.target} job {job.id} ended {job.state.value} but its run "
                    f"{run.id} is {run.state}")
            if run.state in ("queued", "running"):
                self.catalog.finish_run(run.id, state="failed", error_name="RunNotRecorded",
                                        error_message=text)
            raise _RunFailed(f"{text}: {run.error_name}: {run.error_message}")
        return run

    def _wait_remote(self, item: Item, ds, action, run_id: str) -> None:
        """A batch run submitted before a crash: follow its job, adopt the run if it succeeded.

        The job is looked up at the scheduler by the id its run recorded; the wait is the
        same as for a job this watcher submitted (:meth:`_follow`).
        """
        from spotkit.compute import Job

        step = self._action_step(action)
        run = self.catalog.get_run(run_id)
        if run.state in ("queued", "running"):
            if not run.job_id:  # died between recording the run and submitting it
                self.catalog.finish_run(run.id, state="cancelled", error_name="WatcherDied",
                                        error_message="the watcher stopped before the job "
                                        "was submitted; the flow submits it again")
                raise _RunFailed(f"run {run_id} of {action.key} on {ds.id} was never "
                                 "submitted")
            job = Job.from_run(run, self.rules.target(action.target), catalog=self.catalog)
            self._log(logging.INFO, "following-job", item, run=run.id, job=job.id,
                      target=action.target)
            run = self._follow(job, action)
        if run.state == "completed":
            self.journal.finish_step(item.key, step, result={
                "run_id": run.id, "outputs": list(run.outputs), "adopted": True,
                "provenance": action.provenance()})
            return
        raise _RunFailed(f"run {run_id} of {action.key} on {ds.id} {run.state}: "
                         f"{run.error_name}: {run.error_message}")

    def _process(self, item: Item, ds, stage: str, report: PassReport) -> bool:
        """Run one stage's actions for a dataset; return False if it stopped on a failure."""
        for action in self.rules.actions_for(ds):
            if action.stage != stage:
                continue
            try:
                self._run_action(item, ds, action)
            except BaseException as exc:
                self._failed(item, exc, report, max_attempts=action.retry.attempts,
                             retry=action.retry, step=self._action_step(action))
                return False
        return True

    def _set_aside(self, dataset_id: str, status: str, reason: str) -> None:
        """Give a quarantined catalog dataset a final status (it stays in the catalog)."""
        try:
            old = self.catalog.get(dataset_id)
            if old is not None and old.status == "quarantined":
                self.catalog.set_status(dataset_id, status, reason=reason)
        except CatalogError as exc:
            logger.warning("could not mark %s %s: %s", dataset_id, status, exc)

    def _finish(self, item: Item, ds, report: PassReport) -> None:
        self._fault("done.before")
        # the "done" step's seconds: from discovery to done (the dataset's whole latency)
        self.journal.finish_step(item.key, "done", nbytes=item.size,
                                 seconds=time.time() - item.discovered_at,
                                 result={"dataset_id": ds.id})
        self.journal.update_item(item.key, state="done", last_error=None)
        self._let_go(item)
        self._fault("done.after")
        report.done.append(ds.id)
        self._log(logging.INFO, "done", item, dataset=ds.id,
                  seconds=time.time() - item.discovered_at, bytes=item.size)
        # an earlier, broken version of the same file (quarantined, parked) is history now
        for old in self.journal.supersede(item.path, by_key=item.key, dataset_id=ds.id):
            if old.dataset_id:
                self._set_aside(old.dataset_id, "superseded",
                                f"a good copy of {item.path} was processed as {ds.id}")

    # -- failures ---------------------------------------------------------------------

    def _failed(self, item: Item, exc: BaseException, report: PassReport, *,
                max_attempts: int, retry, step: str | None = None) -> None:
        if isinstance(exc, _LeaseLost):
            report.skipped.append(str(item.path))
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
                wait = min(self.max_outage_backoff, self.outage_backoff * 2 ** min(n, 10))
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

    # -- passes -----------------------------------------------------------------------

    def run_once(self) -> PassReport:
        """One pass over the inboxes and the journal (see the module documentation).

        Returns
        -------
        PassReport
        """
        report = PassReport()
        try:
            self._discover(report)
            due = self.journal.due()
        except CatalogError as exc:
            report.outages.append(str(exc))
            logger.warning("event=outage error=%s", exc)
            return report
        mine: list[Item] = []
        for item in due:
            try:
                if self.journal.acquire(item.key):
                    fresh = self.journal.item(item.key)  # another watcher may have finished it
                    if fresh is None or fresh.state in ("parked", *FINAL_STATES):
                        self.journal.release(item.key)
                        continue
                    mine.append(fresh)
                else:
                    report.skipped.append(str(item.path))
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

    def _let_go(self, item: Item) -> None:
        """Release the lease after a failed attempt, so that any watcher may retry it."""
        self._held.discard(item.key)
        self.journal.release(item.key)

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
        with ThreadPoolExecutor(max_workers=self.workers,
                                thread_name_prefix="spotkit-flow") as pool:
            prepared = list(pool.map(lambda it: self._prepare(it, report), mine))
            ready = [(it, ds) for it, ds in zip(mine, prepared, strict=True) if ds is not None]
            for stage in self.rules.stages:
                flags = list(pool.map(lambda p, s=stage: self._process(*p, s, report), ready))
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
            report = self.run_once()
            passes += 1
            if report.discovered or report.done or report.parked or report.failed:
                logger.info("event=pass discovered=%d done=%d failed=%d parked=%d outages=%d "
                            "seconds=%.3f", len(report.discovered), len(report.done),
                            len(report.failed), len(report.parked), len(report.outages),
                            time.monotonic() - t0)
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
        self.journal.close()
        if self._own_catalog:
            self.catalog.close()

    def pending(self) -> Iterable[Item]:
        """Datasets not done nor parked."""
        return [i for i in self.journal.items() if i.state not in ("parked", *FINAL_STATES)]


class _RunFailed(SpotkitError):
    """A batch run submitted before a crash ended failed or cancelled."""


class _LeaseLost(SpotkitError):
    """Another watcher holds the lease on this dataset now."""
