"""The watcher's steps before processing: discover, quarantine, ingest, pack, move, verify.

A mixin of :class:`spotkit.flows.Watcher` (it uses the watcher's journal, catalog, mover,
step runner and fault points); kept apart so that each file does one thing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from spotkit.errors import (
    CatalogError,
    InputFileError,
    TransferError,
)
from spotkit.flows._flow_base import _WatcherBase
from spotkit.flows._journal import FINAL_STATES, Item
from spotkit.flows._outcomes import PassReport, _Outage, _Quarantined

logger = logging.getLogger("spotkit.flows._flow")


class _DataSteps(_WatcherBase):
    # -- discovery --------------------------------------------------------------------

    def _discover(self, report: PassReport) -> None:
        if not getattr(self, "_swept", False):
            self._sweep_staged()
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

    def _sweep_staged(self) -> None:
        """Once per watcher: remove staged copies left by datasets that are finished,
        parked or forgotten (a watcher killed before it cleaned up)."""
        if not getattr(self.mover, "can_stage", False):
            self._swept = True
            return
        def keep() -> list[str]:
            return [i.key for i in self.journal.items()
                    if i.state not in ("parked", *FINAL_STATES)]

        for folder in self.mover.sweep_staged(keep):
            logger.info("event=staging-removed folder=%s", folder)
        self._swept = True

    def _quarantine(self, item: Item, reason: str, report: PassReport) -> None:
        """Register a corrupt raw file as a quarantined dataset and park it."""
        from spotkit.catalog import Catalog
        from spotkit.io import DatasetInfo

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
            self.mover.discard_staged(item.key)  # a file staged before another failed
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
        self._arrival_events(item, ds.id, None, outcome="corrupt")
        self._event(item, "quarantined", dataset_id=ds.id, outcome="failed",
                    detail={"reason": reason[:500]}, key=f"flow|{item.key}|quarantined")
        self._log(logging.WARNING, "quarantined", item, dataset=ds.id, reason=reason)

    # -- the steps before processing --------------------------------------------------

    def _hasher(self, item: Item) -> _IngestHasher:
        """The catalog's hasher at ingest (see :class:`_IngestHasher`)."""
        stage = bool(getattr(self.mover, "can_stage", False)) and self.mover.available()[0]
        return _IngestHasher(self, item, stage=stage)

    def _ingest(self, item: Item):
        def do():
            self._fault("ingest.before")
            with self._hasher(item) as hasher:
                try:
                    ds = self.catalog.ingest(item.path, hasher=hasher)
                except InputFileError as exc:
                    raise _Quarantined(str(exc)) from exc
            self._digests[item.key] = hasher.cache
            self._remember(item, ds, staged=len(hasher.staged))
            self._arrival_events(item, ds.id, ds.beamline)
            previous = item.dataset_id
            self.journal.update_item(item.key, dataset_id=ds.id, beamline=ds.beamline,
                                     kind=ds.kind)
            if previous and previous != ds.id:
                self._set_aside(previous, "superseded", f"read again as {ds.id}")
            self._fault("ingest.after")
            return {"dataset_id": ds.id, "staged": len(hasher.staged)}, item.size

        result = self._step(item, "ingested", do)
        ds = self.catalog[result["dataset_id"]]
        if item.key not in self._labels:  # ingested by an earlier pass or watcher
            self._remember(item, ds)
        return ds

    def _arrival_events(self, item: Item, dataset_id: str, beamline: str | None, *,
                        outcome: str = "complete") -> None:
        """The item's ``complete`` (the detector's last write, its mtime) and ``discovered``
        (the journal's record of it) events, recorded once its dataset and beamline are
        known (by key: once, whichever attempt or watcher gets here)."""
        complete = item.mtime_ns / 1e9
        self._event(item, "complete", time=complete, nbytes=item.size, dataset_id=dataset_id,
                    beamline=beamline, detail={"path": str(item.path), "kind": item.kind},
                    key=f"flow|{item.key}|complete")
        self._event(item, "discovered", time=item.discovered_at, nbytes=item.size,
                    duration=max(0.0, item.discovered_at - complete), dataset_id=dataset_id,
                    beamline=beamline, outcome=outcome, key=f"flow|{item.key}|discovered")

    def _remember(self, item: Item, ds, **extra) -> None:
        """What the telemetry events of the item's later steps say about its dataset."""
        sizes = [f.size for f in ds.files if f.size is not None]
        self._labels[item.key] = {"dataset_id": ds.id, "beamline": ds.beamline,
                                  "kind": ds.kind, "files": len(ds.files),
                                  "sizes": sizes[:64], **extra}

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
            ingested = self.journal.step(item.key, "ingested")
            staged = bool(ingested and ingested.result and ingested.result.get("staged"))
            # a frame folder's frames of interest first (live triggers' priorities)
            order = self._frame_order(item, ds, man)
            ordered = {"order": order} if order else {}
            try:
                if staged:  # the copies made at ingest: checked, then renamed into place
                    res = self.mover.transfer_staged(
                        man, src_root, item.key, placed=lambda rel: self._fault("transfer.placed"),
                        **ordered)
                else:
                    res = self.mover.transfer(man, src_root, **ordered)
            except TransferError as exc:
                if exc.transient:
                    raise _Outage(f"transfer to {self.mover!r}: {exc}") from exc
                raise
            landed_now.append(True)
            self._fault("transfer.after")
            result = {"dest": res.dest, "copied": list(res.copied), "skipped": list(res.skipped),
                      "mb_per_s": round(res.mb_per_s, 3) if res.seconds > 0 else None,
                      "manifest_id": man.id}
            if getattr(res, "ahead", 0):  # recorded: a priority order was used
                result["order"] = "frames of interest first"
                result["ahead"] = res.ahead
            return result, res.bytes_copied

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
            self.mover.discard_staged(item.key)  # what was staged is in place (or not used)
            self._fault("verify.after")
            return ({"manifest_id": man.id, "files": len(man.files), "level": level,
                     "manifest_copy": copy, "location": self.mover.location,
                     "replicas": replicas}, man.total_bytes)

        self._step(item, "transferred", transfer)
        try:
            self._step(item, "verified", verify)
        except TransferError as exc:
            raise _Outage(str(exc)) from exc

    def _frame_order(self, item: Item, ds, man) -> tuple[str, ...]:
        """The files of a frame folder's frames of interest first, then its other frames
        (the journal's frame order: priorities set for the dataset or its path), when the
        mover takes an order; ``()`` otherwise (no marks, frames inside one file, a mover
        without ``order``): the manifest's order."""
        if not getattr(self.mover, "can_order", False):
            return ()
        from spotkit.flows._movers import frame_transfer_order

        try:
            return frame_transfer_order(
                man, lambda n: self.journal.frame_order(ds.id, n, path=item.path))
        except CatalogError as exc:  # the priorities cannot be read now: the usual order
            logger.warning("frame order of %s not read (%s): moving it in the manifest's "
                           "order", item.path, exc)
            return ()

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
            self._ready[item.key] = time.time()  # its first action may start from now
            return ds
        except BaseException as exc:
            self._failed(item, exc, report, max_attempts=self.rules.retry.attempts,
                         retry=self.rules.retry)
            return None


class _IngestHasher:
    """The catalog's checksum at ingest, computing the manifest's block checks in the same
    read (kept in :attr:`cache` for the manifest step: each source file is read once).

    With a mover that can stage (a LocalCopy to a mounted warehouse), that same read also
    writes the copy into the warehouse's staging folder for this dataset
    (:meth:`LocalCopy.stage`): the transfer then only checks it, re-read from the device,
    and renames it into place. A staging copy that fails at the destination (disk full...)
    is not the file's fault: the file is hashed instead and copied at transfer. The
    catalog calls :meth:`prepare` with all of the dataset's files first: they are staged
    concurrently (the mover's copy slots bound how many copy at once), so one file's
    hashing overlaps another's reads and writes. Use it as a context manager: leaving it
    waits for staging still under way (after a failure, files not begun are not begun).
    """

    def __init__(self, steps: _DataSteps, item: Item, *, stage: bool):
        self.steps = steps
        self.item = item
        self.stage = stage
        #: {absolute path: (size, mtime_ns, sha256, block checks[, kind])}: the manifest's
        #: ``known``
        self.cache: dict[str, tuple] = {}
        self.staged: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future] = {}

    def __enter__(self) -> _IngestHasher:
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def prepare(self, paths) -> None:
        """Start staging the dataset's files (when there are several to stage)."""
        given = [Path(p) for p in paths]
        folders = [p.absolute() for p in given if p.is_dir()]
        # a file inside one of the dataset's folders is read with the folder (its tree)
        files = [p for p in given if p.is_file()
                 and not any(f in p.absolute().parents for f in folders)]
        if not self.stage or len(files) < 2:
            return
        workers = min(len(files), int(getattr(self.steps.mover, "workers", 2)))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spotkit-stage")
        for p in files:
            self._pending[os.path.abspath(p)] = self._pool.submit(self._started, p)

    def _started(self, path: Path):
        return None if self._stop.is_set() else self._one(path)

    def __call__(self, path) -> tuple[int, str]:
        path = Path(path)
        fut = self._pending.pop(os.path.abspath(path), None)
        if fut is not None:
            try:
                got = fut.result()
            except BaseException:
                self._stop.set()  # the catalog gives up on the dataset: start no more
                raise
            if got is not None:
                return got
        return self._one(path)

    def _one(self, path: Path) -> tuple[int, str]:
        from spotkit import checksums

        if path.is_dir():
            return self._tree(path)
        before = path.stat()
        with self._lock:
            known = self.cache.get(os.path.abspath(path))
        if known is not None and known[:2] == (before.st_size, before.st_mtime_ns):
            return known[0], known[2]  # read with its folder just now (see _tree)
        if self.stage:
            try:
                size, mtime_ns, sha, crcs, kind = self.steps.mover.stage(self.item.key, path)
            except TransferError as exc:  # the warehouse's problem, not the file's
                self.stage = False
                self.steps._log(logging.WARNING, "stage-failed", self.item, error=str(exc))
            else:
                if (size, mtime_ns) == (before.st_size, before.st_mtime_ns):
                    with self._lock:
                        self.cache[os.path.abspath(path)] = (size, mtime_ns, sha, crcs, kind)
                        self.staged.append(str(path))
                self.steps._fault("stage.after")
                return size, sha
        sha, crcs = checksums.digest_file(path)
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            with self._lock:
                self.cache[os.path.abspath(path)] = (after.st_size, after.st_mtime_ns, sha, crcs)
        return after.st_size, sha

    def _tree(self, path: Path) -> tuple[int, str]:
        """A folder (of frames): its tree hash and each file's checksums in one read of each
        file, that read also staging the copies where the mover can (``stage_tree``)."""
        from spotkit import checksums

        stage_tree = getattr(self.steps.mover, "stage_tree", None) if self.stage else None
        if stage_tree is not None:
            try:
                got = stage_tree(self.item.key, path)
            except TransferError as exc:  # the warehouse's problem: hash, copy at transfer
                self.stage = False
                self.steps._log(logging.WARNING, "stage-failed", self.item, error=str(exc))
            else:
                with self._lock:
                    self.cache.update(got.files)
                    self.staged.extend(got.files)
                self.steps._fault("stage.after")
                return got.size, got.sha256
        got = checksums.tree_digest(path)
        with self._lock:
            self.cache.update(got.files)
        return got.size, got.sha256
