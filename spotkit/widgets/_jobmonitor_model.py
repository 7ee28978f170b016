"""The jobs a :class:`~spotkit.widgets.JobMonitor` follows, as rows of plain values.

:class:`JobMonitorModel` holds the jobs and turns what their schedulers say into rows
(plain dicts): it knows nothing about widgets, so it works (and is tested) in plain Python,
without ipywidgets or a browser. Every scheduler query goes through the public
:func:`spotkit.compute.poll_jobs`; cancelling and reading logs go through the public
:class:`~spotkit.compute.Job` methods. The background refresh lives in
:mod:`spotkit.widgets._jobmonitor_refresh`, the ipywidgets table in
:mod:`spotkit.widgets._jobmonitor`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from spotkit.compute import Job, JobState, JobStatus, Target, poll_jobs
from spotkit.errors import SpotkitError

logger = logging.getLogger(__name__)

__all__ = ["COLUMNS", "OUTCOME_COLOURS", "JobMonitorModel", "format_seconds"]


#: The table's columns: (row key, heading).
COLUMNS = (
    ("id", "job"),
    ("target", "target"),
    ("run_id", "run"),
    ("dataset", "dataset"),
    ("state", "state"),
    ("exit_code", "exit"),
    ("elapsed", "elapsed"),
    ("queue_wait", "queued"),
    ("reason", "reason"),
)

#: Colour of each outcome (see :meth:`JobMonitorModel.rows`).
OUTCOME_COLOURS = {
    "waiting": "#6e7781",    # grey: pending, not yet seen
    "running": "#0969da",    # blue
    "succeeded": "#1a7f37",  # green: COMPLETED with exit code 0, nothing else
    "failed": "#cf222e",     # red: FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...
    "cancelled": "#9a6700",  # amber
    "unknown": "#6e7781",    # grey: the scheduler does not (yet) know the job
}


def _outcome(status: JobStatus, lost: bool) -> str:
    state = status.state
    if state.finished:
        if status.succeeded:
            return "succeeded"
        return "cancelled" if state is JobState.CANCELLED else "failed"
    if state is JobState.UNKNOWN or lost:
        return "unknown"
    if state in (JobState.RUNNING, JobState.COMPLETING):
        return "running"
    return "waiting"


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return max(0.0, ((end or datetime.now(UTC)) - start).total_seconds())


def format_seconds(seconds: float | None) -> str:
    """``None`` -> ``"–"``, ``4.2`` -> ``"4.2 s"``, ``185`` -> ``"3 min 05 s"``,
    ``3720`` -> ``"1 h 02 min"``.

    Examples
    --------
    >>> format_seconds(185)
    '3 min 05 s'
    """
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {(whole % 3600) // 60:02d} min"


def _key(job: Job) -> tuple[int, str]:
    # the target object, not its name: two Local() targets in one process both number
    # their jobs local-<pid>-1, -2, ...
    return (id(job.target), job.id)


def _tail(text: str, lines: int) -> str:
    parts = text.splitlines()
    if len(parts) <= lines:
        return text
    return f"[... {len(parts) - lines} earlier lines ...]\n" + "\n".join(parts[-lines:]) + "\n"


class JobMonitorModel:
    """The jobs a monitor follows and their latest status, as rows of plain values.

    Nothing here touches a widget: :class:`JobMonitor` draws the rows. Every scheduler
    query goes through :func:`spotkit.compute.poll_jobs`, so one :meth:`refresh` makes at
    most one status query per target (each target's :class:`~spotkit.compute.Poller` also
    rate-limits them), and finished jobs are never asked about again. Thread-safe: a
    refresh thread and button clicks may use one model at once.

    Parameters
    ----------
    jobs : iterable of Job, optional
        Jobs to follow (e.g. what :func:`spotkit.submit` returned).
    catalog : Catalog or path-like, optional
        Also follow the batch jobs of this catalog's ``recent`` newest runs (see
        :meth:`add_runs`).
    targets : Target, list of Target or dict, optional
        With ``catalog``: the targets those runs were submitted to (see :meth:`add_runs`).
    recent : int
        With ``catalog``: how many of the newest runs to look at.

    Attributes
    ----------
    errors : dict
        ``{target name: message}`` of the scheduler errors of the last refresh (a target
        that could not answer keeps its jobs' previous status).
    skipped : list of (str, str)
        ``(run id, why)`` for catalog runs that could not be followed.
    refreshed_at : datetime or None
        When the last refresh ended.

    Examples
    --------
    Two shell scripts run by the :class:`~spotkit.compute.Local` target in a temporary
    folder, one that fails and one that is cancelled:

    >>> import pathlib, tempfile
    >>> from spotkit.compute import Job, Local
    >>> from spotkit.widgets import JobMonitorModel
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> target = Local(max_workers=2, min_poll=0.05)
    >>> def job(name, body):
    ...     script = folder / f"{name}.sh"
    ...     _ = script.write_text(body)
    ...     return Job(target.submit_script(script, job_name=name, workdir=folder), target)
    >>> bad, slow = job("bad", "echo going wrong >&2; exit 3"), job("slow", "sleep 60")
    >>> model = JobMonitorModel([bad, slow])
    >>> [row["state"] for row in model.rows()]        # nothing asked yet
    ['PENDING', 'PENDING']
    >>> _ = bad.wait(timeout=30)
    >>> model.cancel(slow.id)
    >>> _ = slow.wait(timeout=30)
    >>> rows = model.refresh()
    >>> [(row["state"], row["outcome"], row["succeeded"]) for row in rows]
    [('FAILED', 'failed', False), ('CANCELLED', 'cancelled', False)]
    >>> rows[0]["exit_code"]
    3
    >>> model.summary(), model.done
    ('2 jobs: 1 failed, 1 cancelled', True)
    >>> print(model.logs(bad))                         # doctest: +ELLIPSIS
    --- stdout (.../job-local-...out) ---
    (empty)
    --- stderr (.../job-local-...err) ---
    going wrong
    <BLANKLINE>
    """

    def __init__(self, jobs: Iterable[Job] | None = None, *, catalog=None,
                 targets: Target | Iterable[Target] | Mapping[str, Target] | None = None,
                 recent: int = 20):
        self._lock = threading.RLock()
        self._jobs: dict[tuple[int, str], Job] = {}
        self._status: dict[tuple[int, str], JobStatus] = {}
        self._datasets: dict[tuple[int, str], str | None] = {}
        self._run_errors: dict[tuple[int, str], str] = {}
        self.errors: dict[str, str] = {}
        self.skipped: list[tuple[str, str]] = []
        self.refreshed_at: datetime | None = None
        for job in jobs or ():
            self.add(job)
        if catalog is not None:
            self.add_runs(catalog, targets=targets, recent=recent)
        elif targets is not None:
            raise ValueError("targets= says where catalog runs ran; give catalog= with it")

    def __repr__(self) -> str:
        return f"<JobMonitorModel: {len(self._jobs)} job(s), {self.summary()}>"

    # -- the jobs ---------------------------------------------------------------------

    @property
    def jobs(self) -> list[Job]:
        """The jobs followed, in the order they were added."""
        with self._lock:
            return list(self._jobs.values())

    def add(self, job: Job) -> bool:
        """Follow one more job.

        Parameters
        ----------
        job : Job

        Returns
        -------
        bool
            False when the job (same target object and id) is already followed.

        Raises
        ------
        TypeError
            ``job`` is not a :class:`~spotkit.compute.Job`.
        """
        if not isinstance(job, Job):
            raise TypeError(f"expected a spotkit.compute.Job (what spotkit.submit returns), "
                            f"not {type(job).__name__}")
        key = _key(job)
        with self._lock:
            if key in self._jobs:
                return False
            self._jobs[key] = job
            # what is known without asking the scheduler: submitted, not seen yet
            self._status[key] = JobStatus(job.id, JobState.PENDING, reason="not asked yet",
                                          submitted=job.submitted)
        logger.debug("monitoring %s job %s", job.target.name, job.id)
        return True

    def add_runs(self, catalog, *, targets=None, recent: int = 20) -> list[Job]:
        """Follow the batch jobs of a catalog's newest runs (:meth:`Job.from_run`).

        Runs without a job id (run in-process, or refused at submission) are left out.

        Parameters
        ----------
        catalog : Catalog or path-like
        targets : Target, list of Target or dict, optional
            The targets the runs were submitted to, matched by name (``run.target``
            ``"slurm"`` with a target named ``"slurm"``; ``"nersc:perlmutter"`` with an
            ``NERSC`` target of that machine). A dict maps names to targets. Default: a
            ``Slurm()`` for Slurm runs (this machine must be a login node of that cluster).
            A ``Local`` target only knows the jobs it started itself, so local runs are
            followed only with the very ``Local`` object that submitted them.
        recent : int
            How many of the newest runs to look at.

        Returns
        -------
        list of Job
            The jobs added (oldest run first); runs that could not be followed are listed
            in :attr:`skipped` with the reason.
        """
        from spotkit.catalog import Catalog, open_catalog

        if not isinstance(recent, int) or recent < 1:
            raise ValueError(f"recent must be a positive integer, not {recent!r}")
        cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
        by_name = self._targets_by_name(targets)
        added = []
        for run in reversed(cat.runs(limit=recent)):
            if not run.job_id:
                continue
            target = by_name.get(run.target) or by_name.get(run.target.split(":")[0])
            if target is None and targets is None and run.target == "slurm":
                from spotkit.compute import Slurm

                target = by_name["slurm"] = Slurm()
            if target is None:
                why = (f"no target for {run.target!r} runs: pass targets=[...] with the "
                       "target it was submitted to")
                self.skipped.append((run.id, why))
                logger.info("not following run %s: %s", run.id, why)
                continue
            try:
                job = Job.from_run(run, target, catalog=cat)
            except (ValueError, SpotkitError) as exc:
                self.skipped.append((run.id, str(exc)))
                logger.info("not following run %s: %s", run.id, exc)
                continue
            with self._lock:
                self._datasets[_key(job)] = run.dataset_id
            if self.add(job):
                added.append(job)
        return added

    @staticmethod
    def _targets_by_name(targets) -> dict[str, Target]:
        if targets is None:
            return {}
        if isinstance(targets, Target):
            targets = [targets]
        if isinstance(targets, Mapping):
            items = list(targets.items())
        else:
            items = [(t.name, t) for t in targets]
        out: dict[str, Target] = {}
        for name, target in items:
            if not isinstance(target, Target):
                raise TypeError(f"targets must be compute targets (Local(), Slurm(...)), not "
                                f"{type(target).__name__}")
            out.setdefault(name, target)
            out.setdefault(name.split(":")[0], target)
        return out

    def job(self, job_id: str | Job) -> Job:
        """The followed job with this id (or this very job).

        Raises
        ------
        KeyError
            No such job is followed.
        ValueError
            Two followed jobs on different targets share the id: pass the Job.
        """
        with self._lock:
            if isinstance(job_id, Job):
                found = self._jobs.get(_key(job_id))
                if found is None:
                    raise KeyError(f"job {job_id.id} on {job_id.target.name} is not monitored")
                return found
            matches = [j for (_, jid), j in self._jobs.items() if jid == str(job_id)]
        if not matches:
            raise KeyError(f"job {job_id!r} is not monitored; add it with add(job)")
        if len(matches) > 1:
            raise ValueError(f"job id {job_id!r} is on several targets "
                             f"({', '.join(j.target.name for j in matches)}); pass the Job")
        return matches[0]

    # -- refreshing -------------------------------------------------------------------

    def refresh(self) -> list[dict]:
        """Ask the schedulers about the unfinished jobs: one query per target at most.

        A target whose scheduler fails (after the poller's retries) keeps its jobs'
        previous status; the error is in :attr:`errors` and the log.

        Returns
        -------
        list of dict
            The new :meth:`rows`.
        """
        groups: dict[int, list[Job]] = {}
        for job in self.jobs:
            groups.setdefault(id(job.target.poller), []).append(job)
        errors = {}
        for group in groups.values():
            name = group[0].target.name
            try:
                statuses = poll_jobs(group)
            except SpotkitError as exc:
                errors[name] = str(exc)
                logger.warning("could not refresh %d %s job(s): %s", len(group), name, exc)
                continue
            with self._lock:
                for job in group:
                    self._status[_key(job)] = statuses[job.id]
        with self._lock:
            self.errors = errors
            self.refreshed_at = datetime.now(UTC)
        return self.rows()

    @property
    def done(self) -> bool:
        """Every job has finished (or was declared lost): nothing more to poll."""
        with self._lock:
            return all(self._status[k].state.finished or job.lost
                       for k, job in self._jobs.items())

    def rows(self) -> list[dict]:
        """One dict per job, from the last refresh (no scheduler query).

        Keys: ``id``, ``target``, ``run_id``, ``dataset``, ``state`` (the
        :class:`~spotkit.compute.JobState` value), ``exit_code``, ``elapsed`` and
        ``queue_wait`` (seconds or None), ``reason``, ``finished``, ``succeeded``
        (``COMPLETED`` with exit code 0, never any other state), ``lost`` and ``outcome``:
        ``"waiting"``, ``"running"``, ``"succeeded"``, ``"failed"``, ``"cancelled"`` or
        ``"unknown"``.
        """
        with self._lock:
            items = [(k, j, self._status[k]) for k, j in self._jobs.items()]
        return [self._row(key, job, st) for key, job, st in items]

    def row(self, job_id: str | Job) -> dict:
        """The row of one job (see :meth:`rows`)."""
        job = self.job(job_id)
        key = _key(job)
        with self._lock:
            st = self._status[key]
        return self._row(key, job, st)

    def _row(self, key, job: Job, st: JobStatus) -> dict:
        if st.state.finished:
            elapsed = _seconds(st.started, st.ended)
            queued = None if st.started is None else _seconds(st.submitted or job.submitted,
                                                               st.started)
        else:
            elapsed = _seconds(st.started, None)
            queued = _seconds(st.submitted or job.submitted, st.started)
        reason = st.reason
        if job.lost:
            reason = (f"lost: {job.target.name} has not known this job for over "
                      f"{job.unknown_grace:.0f} s")
        elif st.state.finished and not st.succeeded:
            run_error = self._run_error(key, job)
            if run_error:
                reason = run_error
            elif st.state.succeeded:  # COMPLETED, but a non-zero exit code
                reason = f"exit code {st.exit_code}" + (f"; {reason}" if reason else "")
        elif reason in ("None", "NonZeroExitCode"):
            reason = ""
        return {
            "id": job.id,
            "target": job.target.name,
            "run_id": job.run_id,
            "dataset": self._dataset(key, job),
            "state": st.state.value,
            "exit_code": st.exit_code,
            "elapsed": elapsed,
            "queue_wait": queued,
            "reason": reason,
            "finished": st.state.finished,
            "succeeded": st.succeeded,
            "lost": job.lost,
            "outcome": _outcome(st, job.lost),
        }

    def _run(self, job: Job):
        if job.run_id is None:
            return None
        try:
            return job.run
        except SpotkitError as exc:
            logger.debug("run %s of job %s not readable: %s", job.run_id, job.id, exc)
            return None

    def _dataset(self, key, job: Job) -> str | None:
        with self._lock:
            if key in self._datasets:
                return self._datasets[key]
        run = self._run(job)
        dataset = run.dataset_id if run is not None else None
        if run is not None or job.run_id is None:
            with self._lock:
                self._datasets[key] = dataset
        return dataset

    def _run_error(self, key, job: Job) -> str:
        """What the catalog run recorded about a failure (the failing cell), read once."""
        with self._lock:
            if key in self._run_errors:
                return self._run_errors[key]
        run = self._run(job)
        text = ""
        if run is not None and run.state in ("failed", "cancelled") and run.error_name:
            cell = f" in cell {run.error_cell}" if run.error_cell is not None else ""
            text = f"{run.error_name}{cell}: {run.error_message or ''}".rstrip(": ")
        if run is not None and run.state not in ("queued", "running"):
            with self._lock:
                self._run_errors[key] = text
        return text

    def summary(self) -> str:
        """``"3 jobs: 1 running, 1 succeeded, 1 failed"``."""
        counts: dict[str, int] = {}
        for row in self.rows():
            counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
        n = sum(counts.values())
        parts = [f"{counts[o]} {o}" for o in OUTCOME_COLOURS if counts.get(o)]
        return f"{n} job{'s' if n != 1 else ''}" + (": " + ", ".join(parts) if parts else "")

    # -- actions ----------------------------------------------------------------------

    def cancel(self, job_id: str | Job) -> None:
        """Cancel a job (nothing happens when it already finished).

        Raises
        ------
        KeyError, ValueError
            See :meth:`job`.
        SchedulerError
            The scheduler refused or could not be reached (after retries).
        """
        job = self.job(job_id)
        with self._lock:
            if self._status[_key(job)].state.finished:
                return
        logger.info("monitor: cancelling %s job %s", job.target.name, job.id)
        job.cancel()

    def logs(self, job_id: str | Job, *, lines: int | None = 40) -> str:
        """The end of a job's stdout and stderr, as one text with headings.

        Parameters
        ----------
        job_id : str or Job
        lines : int or None
            Last lines of each stream (``None``: all).

        Returns
        -------
        str
        """
        job = self.job(job_id)
        try:
            logs = job.logs()
        except SpotkitError as exc:
            return f"could not read the logs of {job.target.name} job {job.id}: {exc}\n"
        out = []
        for name, text in (("stdout", logs.stdout), ("stderr", logs.stderr)):
            where = logs.paths.get(name, "")
            out.append(f"--- {name}" + (f" ({where})" if where else "") + " ---\n")
            body = text if lines is None else _tail(text, lines)
            out.append(body if body else "(empty)\n")
            if body and not body.endswith("\n"):
                out.append("\n")
        return "".join(out)
