"""Jobs: one object, whatever the target, whose state comes from the scheduler, checked.

A :class:`Job` asks its target's :class:`~spotkit.compute.Poller`
(:mod:`spotkit.compute._poller`: batched, rate-limited, retried) for its status. A job the
scheduler does not know yet (right after submission, a cached answer) is given a grace
period before it is declared lost. A job submitted for a catalog run records the run's end
when the scheduler says it ended without the run recording it (a job killed by Slurm).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spotkit.compute._base import JobLogs, JobState, JobStatus, Target
from spotkit.compute._poller import Poller, retry_transient
from spotkit.errors import (
    CatalogError,
    JobFailedError,
    JobLostError,
    JobTimeoutError,
)

logger = logging.getLogger(__name__)

__all__ = ["Job", "Poller", "poll_jobs", "retry_transient"]

#: Seconds a job may be unknown to its scheduler before it is declared lost.
DEFAULT_UNKNOWN_GRACE = 60.0


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.astimezone()


def rules_target(context: Any) -> str | None:
    """The rules target a run's context says the flow sent it to (``context["flow"]
    ["target"]``), or None for a run the flow did not start.

    Examples
    --------
    >>> rules_target({"flow": {"rule": "tomo", "action": "recon", "target": "hpc"}})
    'hpc'
    >>> rules_target({}) is None
    True
    """
    flow = context.get("flow") if isinstance(context, dict) else None
    target = flow.get("target") if isinstance(flow, dict) else None
    return str(target) if target else None


class Job:
    """A batch job on a target, and the catalog run it executes.

    Made by :func:`spotkit.submit`, or by hand for a job id you already have. Its state
    comes from the scheduler through the target's :class:`Poller` (batched, at most one
    query per ``target.min_poll`` seconds). Only ``COMPLETED`` with exit code 0 is success.

    Parameters
    ----------
    job_id : str
        The scheduler's id (``"1234"``, ``"local-4242-1"``).
    target : Target
        Where it runs.
    run_id : str, optional
        The catalog run the job executes.
    catalog : Catalog or path-like, optional
        The catalog holding that run (needed for :attr:`run` and to record a job that
        ended before its notebook could, e.g. TIMEOUT or CANCELLED).
    workdir : path-like, optional
        The run's directory (batch script, ``job.json``, logs).
    submitted : datetime, optional
        When it was submitted (default: now).
    unknown_grace : float
        Seconds the scheduler may not know the job (right after submission, or between
        its queue forgetting it and accounting knowing it) before it is declared lost.

    Examples
    --------
    A script on the :class:`~spotkit.compute.Local` target, in a temporary folder
    (:func:`spotkit.submit` returns such a Job for a notebook run, on any target):

    >>> import pathlib, tempfile
    >>> from spotkit.compute import Job, Local
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> script = folder / "nap.sh"
    >>> _ = script.write_text("sleep 0.3; echo rested")
    >>> target = Local(min_poll=0.05)
    >>> job = Job(target.submit_script(script, job_name="nap", workdir=folder), target)
    >>> job.state in (JobState.PENDING, JobState.RUNNING)
    True
    >>> job.wait(timeout=60, check=True)              # doctest: +ELLIPSIS
    JobStatus(job_id='local-...', state=<JobState.COMPLETED: 'COMPLETED'>, exit_code=0, ...)
    >>> job.succeeded, job.elapsed > 0.2
    (True, True)

    ``check=True`` raises for any other end:

    >>> _ = script.write_text("exit 2")
    >>> failing = Job(target.submit_script(script, job_name="bad", workdir=folder), target)
    >>> failing.wait(timeout=60, check=True)          # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spotkit.errors.JobFailedError: ...
    """

    def __init__(self, job_id: str, target: Target, *, run_id: str | None = None,
                 catalog: Any = None, workdir: str | Path | None = None,
                 submitted: datetime | None = None,
                 unknown_grace: float = DEFAULT_UNKNOWN_GRACE):
        self.id = str(job_id)
        self.target = target
        self.run_id = run_id
        self.workdir = Path(workdir) if workdir is not None else None
        self.unknown_grace = float(unknown_grace)
        self._catalog = catalog
        self._submitted = _aware(submitted) or datetime.now(UTC)
        self._clock = target.poller._clock
        self._last_seen = self._clock()  # the scheduler accepted it: it existed then
        self._status = JobStatus(self.id, JobState.PENDING, submitted=self._submitted)
        self._lost = False
        self._reconciled = False
        #: what the job's telemetry events say it is about (``dataset_id``, ``beamline``);
        #: looked up from its run when not given
        self.labels: dict[str, Any] = {}
        #: the target its telemetry events name: the rules target the flow sent it to
        #: (from its run's context), else :attr:`Target.name`; looked up when not given
        self.target_label: str | None = None
        self._recorded: set[str] = set()  # telemetry steps recorded by this object
        self._earliest_submit = self._submitted  # see _record_progress
        target.poller.watch(self.id, self._status)

    @classmethod
    def from_run(cls, run, target: Target, *, catalog: Any = None, **kwargs: Any) -> Job:
        """The job of a catalog run submitted earlier (by another process, say).

        Parameters
        ----------
        run : spotkit.catalog.Run or str
            The run (or its id, with ``catalog``).
        target : Target
            A target like the one it was submitted to (same cluster).
        catalog : Catalog or path-like, optional
            Needed when ``run`` is an id; otherwise recorded for :attr:`Job.run`.
        **kwargs
            ``unknown_grace=`` and the like, as for :class:`Job`.

        Returns
        -------
        Job

        Raises
        ------
        ValueError
            The run has no job id (it ran in-process, or its submission failed), or was
            made for another kind of target.
        """
        if isinstance(run, str):
            if catalog is None:
                raise ValueError("give catalog= to look up a run by its id")
            from spotkit.catalog import Catalog, open_catalog

            catalog = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
            run = catalog.get_run(run)
        if not run.job_id:
            raise ValueError(f"run {run.id} has no batch job (state {run.state}, target "
                             f"{run.target}): nothing to follow")
        if run.target.split(":")[0] != target.name.split(":")[0]:
            raise ValueError(f"run {run.id} was submitted to {run.target!r}, not to "
                             f"{target.name!r}")
        workdir = Path(run.output_notebook).parent if run.output_notebook else None
        if workdir is None and catalog is not None and hasattr(catalog, "home"):
            workdir = catalog.home / "runs" / run.id
        if workdir is not None:
            target.adopt(run.job_id, workdir=workdir)
        return cls(run.job_id, target, run_id=run.id, catalog=catalog, workdir=workdir,
                   **kwargs)

    # -- state ------------------------------------------------------------------------

    def __repr__(self) -> str:
        run = f" run={self.run_id}" if self.run_id else ""
        return f"<Job {self.id} on {self.target.name}: {self._status.state.value}{run}>"

    def refresh(self, *, fresh: bool = False) -> JobStatus:
        """Ask the target (through its poller) for this job's status.

        Parameters
        ----------
        fresh : bool
            Make sure the answer comes from a query made now, waiting out the rate limit
            if needed; by default an answer less than ``min_poll`` seconds old is reused.

        Returns
        -------
        JobStatus
            While the scheduler does not know the job (within ``unknown_grace``), the last
            status it gave, with state ``UNKNOWN`` if it never gave one.

        Raises
        ------
        JobLostError
            The scheduler has not known the job for longer than ``unknown_grace``.
        SchedulerError
            The scheduler failed (after retrying transient errors).
        """
        if self._status.state.finished:
            return self._status
        st = self.target.poller.status([self.id], fresh=fresh)[self.id]
        now = self._clock()
        if st.state is JobState.UNKNOWN:
            unseen = now - self._last_seen
            if unseen > self.unknown_grace:
                self._lost = True
                raise JobLostError(job_id=self.id, target=self.target.name, seconds=unseen,
                                   run_id=self.run_id)
            logger.debug("job %s not known to %s for %.1f s (grace %.0f s)", self.id,
                         self.target.name, unseen, self.unknown_grace)
            # not final: wait() goes on asking; the last real answer's times are kept
            return replace(self._status, state=JobState.UNKNOWN)
        self._last_seen = now
        self._lost = False
        if st.submitted is None:
            st = replace(st, submitted=self._submitted)
        self._status = st
        self._record_progress(st)
        if st.state.finished:
            self._record_end(st)
        return st

    def status(self) -> JobStatus:
        """The current status (see :meth:`refresh`)."""
        return self.refresh()

    @property
    def state(self) -> JobState:
        """The job's state now (a rate-limited scheduler query, see :meth:`refresh`)."""
        return self.refresh().state

    @property
    def exit_code(self) -> int | None:
        """The batch script's exit status once finished (``None`` before, or if not said)."""
        return self.refresh().exit_code

    @property
    def finished(self) -> bool:
        """The job will not change state again."""
        return self.refresh().state.finished

    @property
    def succeeded(self) -> bool:
        """Finished well: ``COMPLETED`` with exit code 0 (never any other state)."""
        return self.refresh().succeeded

    @property
    def lost(self) -> bool:
        """The last :meth:`refresh` declared the job lost."""
        return self._lost

    @property
    def submitted(self) -> datetime:
        """When the job was submitted (the scheduler's time when it says)."""
        return self._status.submitted or self._submitted

    @property
    def elapsed(self) -> float | None:
        """Seconds the job has been running (until its end once finished); None if not
        started yet."""
        st = self._status if self._status.state.finished else self.refresh()
        if st.started is None:
            return None
        end = st.ended or datetime.now(UTC)
        return max(0.0, (end - st.started).total_seconds())

    @property
    def queue_wait(self) -> float | None:
        """Seconds from submission to start (so far, while it waits in the queue)."""
        st = self._status if self._status.state.finished else self.refresh()
        start = st.started
        if start is None:
            if st.state.finished:
                return None  # ended without starting (cancelled while pending)
            start = datetime.now(UTC)
        return max(0.0, (start - (st.submitted or self._submitted)).total_seconds())

    # -- actions ----------------------------------------------------------------------

    def wait(self, timeout: float | None = None, *, poll: float | None = None,
             check: bool = False) -> JobStatus:
        """Block until the job finishes; return its final status.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most (``None``: no limit).
        poll : float, optional
            Seconds between checks; at least the target's ``min_poll`` (the default).
        check : bool
            Raise :class:`~spotkit.errors.JobFailedError` unless the job succeeded
            (``COMPLETED``, exit code 0).

        Returns
        -------
        JobStatus
            The final status, as the scheduler reported it.

        Raises
        ------
        JobTimeoutError
            ``timeout`` ran out; the job goes on.
        JobFailedError
            With ``check=True``: the job did not succeed (names its state, exit code,
            reason, the run's error and where the logs are).
        JobLostError
            The scheduler lost the job (beyond ``unknown_grace``).
        """
        interval = max(self.target.poller.min_poll, poll or 0.0, 0.05)
        deadline = None if timeout is None else time.monotonic() + timeout
        st = self.refresh()
        while not st.state.finished:
            if timeout is not None and deadline is not None and time.monotonic() >= deadline:
                raise JobTimeoutError(job_id=self.id, target=self.target.name,
                                      timeout=float(timeout), state=st.state)
            pause = interval if deadline is None else min(interval,
                                                          max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            st = self.refresh(fresh=True)
        if check and not st.succeeded:
            raise self._failure(st)
        return st

    def check(self) -> JobStatus:
        """Raise :class:`~spotkit.errors.JobFailedError` if the job finished and not well.

        Returns
        -------
        JobStatus
            The status (finished and successful, or not finished yet).
        """
        st = self.refresh()
        if st.state.finished and not st.succeeded:
            raise self._failure(st)
        return st

    def cancel(self) -> None:
        """Cancel the job (nothing happens if it already finished)."""
        if self._status.state.finished:
            return
        logger.info("cancelling %s job %s", self.target.name, self.id)
        poller = self.target.poller
        retry_transient(lambda: self.target.cancel(self.id), what=f"cancelling job {self.id}",
                        target=self.target.name, attempts=poller.attempts,
                        first_delay=poller.first_delay, max_delay=poller.max_delay,
                        sleep=poller._sleep)

    def logs(self) -> JobLogs:
        """The job's stdout and stderr (what is written so far)."""
        return self.target.logs(self.id)

    # -- telemetry (spotkit.monitor) --------------------------------------------------

    def record_event(self, step: str, **fields: Any) -> None:
        """Record a telemetry event about this job in its catalog (never raises).

        The event names the job, its run, its target (:attr:`target_label`: the rules
        target of a job the flow submitted, as the flow's own events of it say, else the
        compute target's name), and (from :attr:`labels`, else the run) its dataset and
        beamline; its key makes it idempotent, so a job followed by several processes
        records each step once.

        Parameters
        ----------
        step : str
            ``"queued"``, ``"started"``, ``"finished"``...
        **fields
            As for :meth:`spotkit.monitor.Telemetry.record`.
        """
        if self._catalog is None:
            return
        try:
            from spotkit.monitor import record

            if (not self.labels or self.target_label is None) and self.run_id is not None:
                run = self.run
                if run is not None and not self.labels:
                    ds = self.catalog.get(run.dataset_id)
                    self.labels = {"dataset_id": run.dataset_id,
                                   "beamline": ds.beamline if ds is not None else None}
                if run is not None and self.target_label is None:
                    self.target_label = rules_target(run.context)
            if self.target_label is None:
                self.target_label = self.target.name
            # the key keeps the compute target's name: the same event whatever the label
            record(self.catalog, step, target=self.target_label, job_id=self.id,
                   run_id=self.run_id, key=f"job|{self.target.name}|{self.id}|{step}",
                   **self.labels, **fields)
        except Exception as exc:  # telemetry never stops a job being followed
            logger.warning("telemetry: %s event of job %s not recorded: %s", step, self.id,
                           exc)

    def _record_progress(self, st: JobStatus) -> None:
        """Record the job's start and end once each, with the scheduler's times where it
        gives them (Slurm's Submit, Start, End), else when spotkit saw the change.

        The queue wait is measured from the earliest submission time known (the
        scheduler's, or spotkit's own when it submitted): a Slurm without slurmdbd answers
        for finished jobs from its jobcomp file, whose Submit is the Start.
        """
        if st.submitted is not None:
            self._earliest_submit = min(self._earliest_submit, st.submitted)
        started = st.state is JobState.RUNNING or (st.state.finished and st.started)
        if started and "started" not in self._recorded:
            self._recorded.add("started")
            when = st.started or datetime.now(UTC)
            submitted = min(self._earliest_submit, when)
            self.record_event(
                "started", time=when,
                duration=max(0.0, (when - submitted).total_seconds()),
                detail={"source": "scheduler" if st.started else "observed",
                        "submitted": submitted.timestamp()})
        if st.state.finished and "finished" not in self._recorded:
            self._recorded.add("finished")
            when = st.ended or datetime.now(UTC)
            run_time = ((when - st.started).total_seconds() if st.started is not None
                        else None)
            self.record_event(
                "finished", time=when, duration=run_time,
                outcome="ok" if st.succeeded else st.state.value.lower(),
                detail={"source": "scheduler" if st.ended else "observed",
                        "state": st.state.value, "exit_code": st.exit_code,
                        "reason": st.reason or None}, flush=True)

    # -- the catalog run --------------------------------------------------------------

    @property
    def catalog(self):
        """The catalog that holds the job's run (opened on first use), or None."""
        if self._catalog is None or hasattr(self._catalog, "get_run"):
            return self._catalog
        from spotkit.catalog import open_catalog

        self._catalog = open_catalog(self._catalog)
        return self._catalog

    @property
    def run(self):
        """The catalog :class:`~spotkit.catalog.Run` the job executes (None if not known)."""
        if self.run_id is None or self.catalog is None:
            return None
        return self.catalog.get_run(self.run_id)

    def _log_paths(self) -> dict[str, str]:
        try:
            return dict(self.target.logs(self.id).paths)
        except Exception as exc:
            logger.debug("no log paths for job %s: %s", self.id, exc)
            return {}

    def _failure(self, st: JobStatus) -> JobFailedError:
        run_error = ""
        run = None
        try:
            run = self.run
        except CatalogError as exc:
            logger.debug("run %s of job %s not readable: %s", self.run_id, self.id, exc)
        if run is not None and run.state in ("failed", "cancelled"):
            cell = f" in cell {run.error_cell}" if run.error_cell is not None else ""
            run_error = f"{run.error_name}{cell}: {run.error_message}"
        return JobFailedError(job_id=self.id, target=self.target.name, state=st.state,
                              exit_code=st.exit_code, reason=st.reason, run_id=self.run_id,
                              logs=self._log_paths(), run_error=run_error)

    def _record_end(self, st: JobStatus) -> None:
        """A job that ended before its notebook recorded the run's end (cancelled, timed
        out, killed): record it now, so the catalog never shows it running forever."""
        if self._reconciled or self.run_id is None or self.catalog is None:
            return
        self._reconciled = True
        try:
            run = self.catalog.get_run(self.run_id)
            if run.state not in ("queued", "running"):
                return
            state = "cancelled" if st.state is JobState.CANCELLED else "failed"
            if st.succeeded:
                message = (f"{self.target.name} job {self.id} completed but the notebook never "
                           "recorded its end; see the job's logs")
            else:
                code = "unknown" if st.exit_code is None else st.exit_code
                reason = (f", reason {st.reason}" if st.reason and st.reason not in
                          ("None", "NonZeroExitCode") else "")
                message = (f"{self.target.name} job {self.id} ended {st.state.value} (exit code "
                           f"{code}{reason}) before the notebook finished")
            paths = self._log_paths()
            if paths:
                message += "; logs: " + ", ".join(f"{k} {v}" for k, v in paths.items())
            self.catalog.finish_run(self.run_id, state=state, error_name=st.state.value,
                                    error_message=message)
            logger.warning("run %s recorded as %s: %s", self.run_id, state, message)
        except CatalogError as exc:  # another process recorded it first, or catalog gone
            logger.info("could not record the end of run %s: %s", self.run_id, exc)


def poll_jobs(jobs: Iterable[Job], *, fresh: bool = False) -> dict[str, JobStatus]:
    """Refresh many jobs; their targets' pollers query each target once.

    Parameters
    ----------
    jobs : iterable of Job
    fresh : bool
        See :meth:`Job.refresh`.

    Returns
    -------
    dict
        ``{job.id: JobStatus}``; a lost job maps to its last status with state ``UNKNOWN``.
    """
    jobs = list(jobs)
    by_target: dict[int, list[Job]] = {}
    for job in jobs:
        by_target.setdefault(id(job.target.poller), []).append(job)
    for group in by_target.values():  # one query per target, then every job reads the cache
        group[0].target.poller.status([j.id for j in group if not j._status.state.finished],
                                      fresh=fresh)
    out = {}
    for job in jobs:
        try:
            out[job.id] = job.refresh()
        except JobLostError:
            out[job.id] = replace(job._status, state=JobState.UNKNOWN, reason="lost")
    return out
