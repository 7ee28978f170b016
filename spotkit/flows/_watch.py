"""Finding finished scans in inbox folders: a polling scanner that works on any file system.

What a raw dataset is, and when it is finished, is decided by its reader in the
:mod:`spotkit.io` registry (:func:`spotkit.io.check_complete`): a file (Data Exchange, NXtomo,
NeXus SAXS) or a folder (a series of CBF/EDF/TIFF frames with its PONI and sidecar, taken as
*one* candidate, never one per frame). A candidate is *complete* when its size and
modification time (for a folder: the total size and newest time of what it holds) have not
changed for ``settle`` seconds and its reader finds it complete (every dataset its kind
needs, or every frame the sidecar's ``n_frames`` announces), or, when a sentinel is required,
once the acquisition's sentinel (``<file or folder>.done``) exists. A candidate that stays
unchanged but incomplete or unreadable for ``quarantine_after`` seconds (or that has its
sentinel and is unreadable) is *corrupt*. Deciding is always done by polling, which behaves
the same on NFS, GPFS and Lustre; on Linux, inotify
(:class:`~spotkit.flows._inotify.InboxEvents`) only wakes the watcher early.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spotkit import kinds

__all__ = [
    "EXPECTED_DATASETS",
    "RAW_SUFFIXES",
    "SENTINEL_SUFFIX",
    "Candidate",
    "InboxScanner",
    "check_complete",
    "start_monitor",
]

logger = logging.getLogger(__name__)

#: file names the scanner looks at by default (the file layouts of the reader registry add
#: theirs: see :func:`spotkit.io.watched_suffixes`)
RAW_SUFFIXES = (".h5", ".hdf5", ".nxs")
SENTINEL_SUFFIX = ".done"  #: ``scan.h5.done`` marks ``scan.h5`` as finished
#: datasets that must exist (and be readable) for a raw file of each kind to be complete, in
#: spotkit's own HDF5 layouts (informational: the readers of :mod:`spotkit.io` decide)
EXPECTED_DATASETS = {kind: kinds.raw_layout(kind).required
                     for kind in (kinds.TOMO_RAW, kinds.SAXS_RAW)}


@dataclass(frozen=True)
class Candidate:
    """A file the scanner has decided about.

    Attributes
    ----------
    path : pathlib.Path
        The raw file, or the folder of a folder dataset (absolute).
    inbox : pathlib.Path
        The inbox folder it was found in.
    size : int
        Size in bytes when it was found complete (a folder: the sum of its files).
    mtime_ns : int
        Modification time (ns) when it was found complete (a folder: the newest of the
        folder's and its files').
    state : {"complete", "corrupt"}
        Whether it can be ingested or must be quarantined.
    kind : str or None
        Its kind (``"tomo/raw"``...) when complete.
    reason : str or None
        Why a corrupt file is considered corrupt.
    """

    path: Path
    inbox: Path
    size: int
    mtime_ns: int
    state: str
    kind: str | None = None
    reason: str | None = None

    @property
    def key(self) -> str:
        """Idempotency key: the same file with the same size and mtime is the same scan."""
        return f"{self.path}|{self.size}|{self.mtime_ns}"


def check_complete(path: str | os.PathLike) -> tuple[str | None, str | None]:
    """Ask the dataset's reader whether a raw file or folder is complete.

    Parameters
    ----------
    path : path-like
        The file, or the folder of a folder dataset (frames + PONI + sidecar).

    Returns
    -------
    (kind, problem) : tuple
        ``(kind, None)`` when it is complete, ``(None, reason)`` otherwise (no reader knows
        it, it is unreadable, or it is still being written, e.g. ``"12 of 20 frames"``).
    """
    from spotkit.io import check_complete as reader_check

    return reader_check(path)


def _tree_signature(folder: Path) -> tuple[int, int]:
    """(total size, newest mtime_ns) of a folder and everything below it."""
    st = folder.stat()
    size, newest = 0, st.st_mtime_ns
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            try:
                fst = os.stat(os.path.join(root, name))
            except OSError:  # vanished while listing
                continue
            size += fst.st_size
            newest = max(newest, fst.st_mtime_ns)
    return size, newest


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time at which (size, mtime) was first seen


class InboxScanner:
    """Poll inbox folders and report the files that became complete (or corrupt).

    The scanner keeps what it saw between calls to :meth:`poll`; a file is reported once
    per (size, mtime). Nothing is read from a file until it has been stable for
    ``settle`` seconds.

    Parameters
    ----------
    inboxes : iterable of path-like
        Folders to watch (searched recursively).
    settle : float
        Seconds a file's size and mtime must stay the same.
    require_sentinel : bool
        Wait for ``<file>.done`` as well as the file being readable.
    quarantine_after : float, optional
        Seconds a stable file may stay unreadable before it is reported corrupt (default:
        ``max(30, 10 * settle)``); with a sentinel it is reported at once.
    suffixes : tuple of str, optional
        File name endings of raw files; default: :data:`RAW_SUFFIXES` plus those of the
        file readers in the :mod:`spotkit.io` registry. Folders are offered to the registry's
        folder readers (a folder of frames is one candidate).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.sim import simulate_tomo_scan
    >>> inbox = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(inbox / "scan_0001.h5", shape=(32, 2, 32), seed=0)
    >>> scanner = InboxScanner([inbox], settle=0)
    >>> [c.path.name for c in scanner.poll() if c.state == "complete"]
    ['scan_0001.h5']
    """

    def __init__(
        self,
        inboxes: Iterable[str | os.PathLike],
        *,
        settle: float = 5.0,
        require_sentinel: bool = False,
        quarantine_after: float | None = None,
        suffixes: tuple[str, ...] | None = None,
    ):
        self.inboxes = [Path(p).expanduser().resolve() for p in inboxes]
        if not self.inboxes:
            raise ValueError("give at least one inbox folder to watch")
        if settle < 0:
            raise ValueError(f"settle must be >= 0 seconds, not {settle!r}")
        self.settle = float(settle)
        self.require_sentinel = bool(require_sentinel)
        self.quarantine_after = (
            max(30.0, 10 * self.settle) if quarantine_after is None else float(quarantine_after)
        )
        if suffixes is None:
            from spotkit.io import watched_suffixes

            suffixes = (*RAW_SUFFIXES, *watched_suffixes())
        self.suffixes = tuple(dict.fromkeys(s.lower() for s in suffixes))
        self._seen: dict[Path, _Seen] = {}
        self._reported: dict[Path, tuple[int, int]] = {}

    def _files(self) -> Iterable[tuple[Path, Path]]:
        from spotkit.io import eiger_master_of, folder_readers

        folders = folder_readers()
        for inbox in self.inboxes:
            if not inbox.is_dir():
                logger.warning("inbox %s does not exist or is not a folder (yet)", inbox)
                continue
            for root, dirs, names in os.walk(inbox):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                here = Path(root)
                if here != inbox and any(_sniffs(r, here) for r in folders):
                    dirs[:] = []  # one dataset: the folder, not each file in it
                    yield inbox, here
                    continue
                for name in sorted(names):
                    if name.startswith(".") or not name.lower().endswith(self.suffixes):
                        continue
                    if eiger_master_of(here / name) is not None:
                        continue  # a data file of an Eiger series: its master is the dataset
                    yield inbox, here / name

    def next_due(self) -> float | None:
        """Seconds until the next file seen changing has been stable for ``settle``.

        None when no file is waiting to settle. The watcher uses it to look again exactly
        then, instead of a whole poll interval later.
        """
        now = time.monotonic()
        # files already past it but not readable yet are left to the regular poll
        waiting = [s.since + self.settle - now for p, s in self._seen.items()
                   if self._reported.get(p) != (s.size, s.mtime_ns)
                   and s.since + self.settle > now]
        return min(waiting) if waiting else None

    def forget(self, path: str | os.PathLike) -> None:
        """Let a reported file be reported again (e.g. after a failed hand-over)."""
        self._reported.pop(Path(path), None)

    def poll(self, known: Callable[[str], bool] | None = None) -> list[Candidate]:
        """Look at every inbox once.

        Parameters
        ----------
        known : callable, optional
            ``known(key) -> bool``: files whose idempotency key (see
            :attr:`Candidate.key`) is already known are not opened again.

        Returns
        -------
        list of Candidate
            Files that became complete or corrupt since the last call, oldest mtime first.
        """
        now = time.monotonic()
        wall = time.time()
        found: list[Candidate] = []
        present: set[Path] = set()
        for inbox, path in self._files():
            present.add(path)
            sig = _signature(path)
            if sig is None:  # vanished between listing and stat
                continue
            if self._reported.get(path) == sig:
                continue
            seen = self._seen.get(path)
            if seen is None or (seen.size, seen.mtime_ns) != sig:
                # first sight: a file whose mtime is already old counts as settled
                age = max(0.0, wall - sig[1] / 1e9)
                self._seen[path] = seen = _Seen(sig[0], sig[1], now - age)
            stable_for = now - seen.since
            if stable_for < self.settle:
                continue
            if known is not None and known(f"{path}|{sig[0]}|{sig[1]}"):
                self._reported[path] = sig
                continue
            sentinel = path.with_name(path.name + SENTINEL_SUFFIX)
            has_sentinel = sentinel.exists()
            if self.require_sentinel and not has_sentinel:
                continue
            kind, problem = check_complete(path)
            if _signature(path) != sig:
                continue  # changed while we read it (or vanished)
            if kind is not None:
                state = "complete"
            elif has_sentinel or stable_for >= self.quarantine_after:
                state = "corrupt"
            else:
                logger.debug("%s is stable but not readable yet: %s", path, problem)
                continue
            self._reported[path] = sig
            found.append(Candidate(path, inbox, sig[0], sig[1], state, kind, problem))
        for gone in set(self._seen) - present:
            self._seen.pop(gone, None)
            self._reported.pop(gone, None)
        found.sort(key=lambda c: (c.mtime_ns, str(c.path)))
        return found


def _sniffs(reader, folder: Path) -> bool:
    try:
        return bool(reader.sniff(folder))
    except Exception as exc:  # a broken plugin must not stop the watcher
        logger.warning("reader %r failed to sniff %s: %s", reader.name, folder, exc)
        return False


def _signature(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, or of a folder's content; None when it vanished."""
    try:
        if path.is_dir():
            return _tree_signature(path)
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


# -- the monitor beside the watcher (spotkit watch --metrics-port, rules' alerts) ------------


class _FlowView:
    """What the monitor reads from the flow journal, on a connection of its own thread."""

    def __init__(self, path: Any, rules: Any):
        self.path = path
        self.rules = rules
        self._journal: Any = None

    def journal(self) -> Any:
        from spotkit.flows._journal import Journal

        if self._journal is None:  # opened in the monitor's thread, used only there
            self._journal = Journal(self.path)
        return self._journal

    def state(self) -> Mapping[str, Any]:
        """Datasets by beamline and state, the queue length, and running transfers."""
        from spotkit.flows._journal_tables import FINAL_STATES

        journal = self.journal()
        counts = journal.summary()["counts"]
        datasets = {(beamline, state): n for beamline, by_state in counts.items()
                    for state, n in by_state.items()}
        queue = sum(n for (_b, state), n in datasets.items()
                    if state not in ("parked", *FINAL_STATES))
        rows = journal._read(
            "SELECT s.started_at, i.dataset_id, i.beamline, i.size, i.key FROM flow_steps s "
            "JOIN flow_items i ON i.key = s.key WHERE s.step = 'transferred' "
            "AND s.state = 'running' AND s.started_at IS NOT NULL")
        spans = [{"step": "transfer", "start": t, "dataset_id": ds, "beamline": bl,
                  "bytes": size, "item": key, "target": getattr(self.rules, "warehouse", None)}
                 for t, ds, bl, size, key in rows]
        return {"datasets": datasets, "queue_length": queue, "open_spans": spans}

    def promised(self, row: Any) -> int:
        """How many products the rules promise a dataset: one per action of its rules."""
        ds_id = getattr(row, "dataset_id", None)
        if ds_id is None:
            return 0
        found = self.journal()._read(
            "SELECT beamline, kind FROM flow_items WHERE dataset_id = ? LIMIT 1", (ds_id,))
        if not found:
            return 0  # not a dataset of this flow
        beamline, kind = found[0]
        return len(self.rules.actions_for({"id": ds_id, "beamline": beamline, "kind": kind}))

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _routed_targets(watcher: Any) -> list[tuple[list[str], float]]:
    """``(labels, budget)`` of each target that an action with a queue budget uses: its
    rules name and its compute target's name (its jobs' events carry that), the smallest
    budget."""
    budgets: dict[str, float] = {}
    for rule in watcher.rules.rules:
        for action in rule.actions:
            if action.route is not None:
                budgets[action.target] = min(action.route.budget,
                                             budgets.get(action.target, float("inf")))
    from spotkit.flows._flow_actions import target_labels

    return [(target_labels(watcher.rules, target), budget)
            for target, budget in budgets.items()]


def start_monitor(watcher: Any, *, metrics_port: int | None = None,
                  metrics_host: str = "127.0.0.1", period: float = 30.0,
                  schedule: Any = None, history: float = 7 * 86400.0) -> Any:
    """Run the monitor beside a watcher: missing-data checks, the rules' alerts, metrics.

    Every ``period`` seconds, in a thread: the last ``history`` seconds of telemetry are
    checked for missing data (a quiet beamline, scan number gaps, datasets without the
    products their rules promise, stuck transfers and jobs: see
    :class:`spotkit.monitor.MissingData`) and for changes and anomalies of the metric streams
    (:func:`spotkit.monitor.watch_metrics`; for a target that an action with a
    ``queue_budget`` uses, also :func:`spotkit.monitor.queue_change_findings`, and the flow's
    switches to its fallback as ``reroute`` findings), new products get their keep-up quality
    checks (:func:`spotkit.monitor.check_new_products`, at most 50 per check, oldest first) and
    the failed ones are read (:func:`spotkit.monitor.quality_findings`), the findings go
    through the ``alerts:`` of the watcher's rules (state kept in the catalog, so a restart
    does not alert twice), and the Prometheus endpoint (``metrics_port``) shows the flow's
    counters and gauges.

    Parameters
    ----------
    watcher : Watcher
    metrics_port : int, optional
        Serve ``/metrics`` on this port (0: any free one); None: no endpoint.
    metrics_host : str
        Address to listen on (``0.0.0.0``: every interface).
    period : float
        Seconds between checks.
    schedule : spotkit.monitor.Schedule, optional
        Beamtime windows (default: every beamline always in beamtime).
    history : float
        Seconds of telemetry each check reads and learns the p99 intervals from.

    Returns
    -------
    spotkit.monitor.MonitorLoop or None
        Running (call ``stop()`` when the watcher stops); None when the rules have no
        alerts and no port was given.

    Examples
    --------
    >>> import pathlib, tempfile, urllib.request
    >>> from spotkit.flows import Watcher, load_rules
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "inbox").mkdir(); (root / "warehouse").mkdir()
    >>> rules = load_rules('''
    ... targets: {local: {kind: local, max_workers: 1}}
    ... rules:
    ...   - {name: saxs, match: {kind: saxs/raw},
    ...      actions: [{name: quick, notebook: saxs_quicklook, target: local}]}
    ... alerts:
    ...   - {name: ops, match: {kind: [quiet, stuck]}, log: {level: warning}}
    ... ''')
    >>> w = Watcher(root / "inbox", catalog=root / "catalog.db", rules=rules,
    ...             warehouse=root / "warehouse", settle=0)
    >>> loop = start_monitor(w, metrics_port=0, period=3600)
    >>> _ = loop.check()
    >>> "spotkit_queue_length 0.0" in urllib.request.urlopen(loop.metrics.url).read().decode()
    True
    >>> loop.stop(); w.close()
    """
    from spotkit import monitor

    rules = watcher.rules
    if metrics_port is None and not rules.alerts:
        return None
    path = watcher.catalog.path
    view = _FlowView(path, rules)
    alerts = monitor.Alerts(rules.alerts, state=path) if rules.alerts else None
    metrics = None
    if metrics_port is not None:
        metrics = monitor.MetricsServer(metrics_port, host=metrics_host).start()

    def events(since: float) -> Any:
        return monitor.events(path, since=since)

    def changes(ev: Any, now: float) -> list:
        """Change points and anomalies of the metric streams (spotkit.monitor models), and
        for routed targets the target-wide queue-wait changes and the flow's reroutes: one
        finding per change (a stream's change inside a target-wide one is folded into it)."""
        if not len(ev):
            return []
        found = monitor.watch_metrics(monitor.metrics(ev))
        return monitor.one_per_change(found + routing(ev, now)) if routed else found

    def quality(ev: Any, now: float) -> list:
        """Keep-up quality checks of the products registered lately that have no verdict
        yet (here, off the flow's own path), then the failed ones as findings."""
        monitor.check_new_products(watcher.catalog, since=now - history)
        return monitor.quality_findings(watcher.catalog, since=now - 2 * period - 300)

    routed = _routed_targets(watcher)

    def routing(ev: Any, now: float) -> list:
        """The flow's switches to fallback targets, and the change points of the queue
        waits of the targets that have a queue-wait budget."""
        if not len(ev):
            return []
        out = monitor.reroute_findings(ev)
        for labels, budget in routed:
            out += monitor.queue_change_findings(ev, labels, budget=budget)
        return out

    loop = monitor.MonitorLoop(
        events, missing=monitor.MissingData(schedule=schedule, promised=view.promised),
        detectors=[changes, quality], alerts=alerts,
        metrics=metrics,
        flow_state=view.state, period=period, history=history, on_stop=[view.close])
    logger.info("monitor: checks every %.0f s, %d alert rule(s)%s", period, len(rules.alerts),
                f", metrics at {metrics.url}" if metrics is not None else "")
    return loop.start()
