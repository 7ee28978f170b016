"""Follow batch jobs from JupyterLab: a live table with logs and cancel buttons.

Two layers:

- :class:`JobMonitorModel` holds the jobs and turns what their schedulers say into rows
  (plain dicts). It knows nothing about widgets, so it is tested in plain Python.
- :class:`JobMonitor` shows the model as an ipywidgets table and refreshes it in a
  background thread.

Why a thread and not an asyncio task on the kernel's event loop: a task on that loop only
runs while the kernel is idle, so the table would freeze exactly when a person most wants
it to move (a cell blocked in ``job.wait()`` or in a reconstruction); and the status
queries themselves block (``squeue``/``sacct`` subprocesses, HTTP calls to the
Superfacility API, with retries and backoff), so on the loop they would stall the kernel's
message handling unless pushed to a thread anyway. A daemon thread refreshes in both
cases, works the same in plain Python (tests, scripts) where no loop runs, and only sets
widget values, which ipykernel sends through its thread-safe IOPub channel. The thread
makes one status query per target per refresh (:func:`spotkit.compute.poll_jobs`, on top
of each target's rate-limited :class:`~spotkit.compute.Poller`), and ends by itself once
every job has finished, or on :meth:`JobMonitor.stop` / :meth:`JobMonitor.close`.
"""

from __future__ import annotations

import contextvars
import html
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from spotkit.compute import Job, JobState, JobStatus, Target, poll_jobs
from spotkit.errors import SpotkitError

logger = logging.getLogger(__name__)

__all__ = ["COLUMNS", "OUTCOME_COLOURS", "JobMonitor", "JobMonitorModel", "format_seconds"]

_LAB_EXTRA = 'pip install "spotkit[lab]"'

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
    >>> from spotkit.widgets import JobMonitorModel
    >>> model = JobMonitorModel([job])                    # doctest: +SKIP
    >>> model.refresh()[0]["state"]                       # doctest: +SKIP
    'RUNNING'
    >>> model.cancel(job.id)                              # doctest: +SKIP
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


# -- the widget -----------------------------------------------------------------------


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError(
            f"spotkit.widgets.JobMonitor needs ipywidgets; install it with {_LAB_EXTRA} "
            "(JobMonitorModel works without it)"
        ) from exc
    return ipywidgets


_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def _slug(text: str) -> str:
    return _SLUG.sub("-", text)


def _cell_html(text: str, *, limit: int = 0, colour: str | None = None,
               bold: bool = False) -> str:
    full = "" if text is None else str(text)
    shown = full if not limit or len(full) <= limit else full[:limit - 1] + "…"
    style = []
    if colour:
        style.append(f"color:{colour}")
    if bold:
        style.append("font-weight:600")
    attrs = f' style="{";".join(style)}"' if style else ""
    if shown != full:
        attrs += f' title="{html.escape(full, quote=True)}"'
    return f"<span{attrs}>{html.escape(shown) or '&nbsp;'}</span>"


class JobMonitor:
    """A live table of batch jobs for JupyterLab: state, times, logs and cancel buttons.

    One row per job: job id, target, catalog run, dataset, state (coloured: green only
    for ``COMPLETED`` with exit code 0, red for every failure), exit code, elapsed time,
    time in the queue, and the reason (the scheduler's, or the failing cell the run
    recorded). "Logs" shows the end of the job's stdout and stderr below the table (kept
    up to date while the job runs); "Cancel" cancels it.

    The table refreshes itself every ``refresh`` seconds in a background thread, without
    blocking the kernel (cells can run meanwhile, and the table keeps moving while a cell
    waits in ``job.wait()``); see the module docstring for why a thread. Each refresh makes
    at most one status query per target, for all its jobs. The thread ends when every job
    has finished; :meth:`add` starts it again, :meth:`stop` and :meth:`close` end it.

    Display it by making it the last expression of a cell (or with ``display``).

    Parameters
    ----------
    jobs : iterable of Job, optional
        Jobs to follow.
    catalog : Catalog or path-like, optional
        Also follow the batch jobs of the catalog's ``recent`` newest runs.
    targets : Target, list of Target or dict, optional
        Where those runs were submitted (see :meth:`JobMonitorModel.add_runs`).
    recent : int
        With ``catalog``: how many of the newest runs.
    refresh : float
        Seconds between refreshes (each target also rate-limits its own queries).
    log_lines : int
        Lines of each stream shown by "Logs".
    autostart : bool
        Start refreshing at once (otherwise call :meth:`start` or :meth:`refresh`).

    Attributes
    ----------
    model : JobMonitorModel
        The jobs and their rows, without widgets.
    widget : ipywidgets.VBox
        The whole display.
    logs_text : ipywidgets.Textarea
        Where "Logs" writes.
    status : ipywidgets.HTML
        The summary line (and scheduler errors).

    Raises
    ------
    ImportError
        ipywidgets is not installed (``pip install "spotkit[lab]"``).

    Examples
    --------
    >>> from spotkit.widgets import JobMonitor
    >>> job = spotkit.submit("tomo_quicklook", ds, target=Local())   # doctest: +SKIP
    >>> monitor = JobMonitor([job], refresh=2)                        # doctest: +SKIP
    >>> monitor                                                       # doctest: +SKIP
    >>> JobMonitor(catalog=cat, targets=[Slurm(partition="debug")])   # doctest: +SKIP
    """

    def __init__(self, jobs: Iterable[Job] | None = None, *, catalog=None, targets=None,
                 recent: int = 20, refresh: float = 5.0, log_lines: int = 40,
                 autostart: bool = True):
        widgets = _ipywidgets()
        refresh = float(refresh)
        if not refresh > 0:
            raise ValueError(f"refresh must be a positive number of seconds, not {refresh!r}")
        if not isinstance(log_lines, int) or log_lines < 1:
            raise ValueError(f"log_lines must be a positive integer, not {log_lines!r}")
        self.model = JobMonitorModel(jobs, catalog=catalog, targets=targets, recent=recent)
        self.interval = refresh
        self.log_lines = log_lines
        self._w = widgets
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rows: dict[tuple[int, str], dict[str, Any]] = {}
        self._logs_job: Job | None = None
        self._message = ""
        self._closed = False
        self._build()
        self._render()
        if autostart:
            self.start()

    # -- building -----------------------------------------------------------------------

    def _build(self) -> None:
        w = self._w
        self.grid = w.GridBox(layout=w.Layout(
            grid_template_columns=" ".join(["auto"] * (len(COLUMNS) - 1)
                                           + ["minmax(12em, 1fr)", "auto", "auto"]),
            grid_gap="2px 12px", align_items="center", width="100%"))
        self.grid.add_class("spotkit-jm-table")
        self._header = []
        for key, title in COLUMNS:
            cell = w.HTML(f"<b>{html.escape(title)}</b>")
            cell.add_class("spotkit-jm-head")
            cell.add_class(f"spotkit-jm-head-{key.replace('_', '-')}")
            self._header.append(cell)
        self._header += [w.HTML(""), w.HTML("")]
        self.status = w.HTML()
        self.status.add_class("spotkit-jm-status")
        self.refresh_button = w.Button(description="Refresh", icon="refresh",
                                       tooltip="ask the schedulers now",
                                       layout=w.Layout(width="auto"))
        self.refresh_button.add_class("spotkit-jm-refresh")
        self.refresh_button.on_click(lambda _: self._refresh_clicked())
        self.logs_title = w.HTML()
        self.logs_title.add_class("spotkit-jm-logs-title")
        self.logs_text = w.Textarea(value="", disabled=True,
                                    layout=w.Layout(width="100%", height="18em"))
        self.logs_text.add_class("spotkit-jm-logs")
        hide = w.Button(description="Hide logs", layout=w.Layout(width="auto"))
        hide.on_click(lambda _: self.hide_logs())
        self.logs_box = w.VBox([w.HBox([self.logs_title, hide]), self.logs_text],
                               layout=w.Layout(display="none", width="100%"))
        self.logs_box.add_class("spotkit-jm-logs-box")
        self.widget = w.VBox([w.HBox([self.status, self.refresh_button],
                                     layout=w.Layout(align_items="center")),
                              self.grid, self.logs_box])
        self.widget.add_class("spotkit-job-monitor")

    def _row_widgets(self, key, job: Job) -> dict[str, Any]:
        w = self._w
        slug = f"spotkit-jm-job-{_slug(job.id)}"
        cells: dict[str, Any] = {}
        for name, _ in COLUMNS:
            cell = w.HTML()
            cell.add_class("spotkit-jm-cell")
            cell.add_class(f"spotkit-jm-{name.replace('_', '-')}")
            cell.add_class(slug)
            cells[name] = cell
        logs = w.Button(description="Logs", icon="file-text-o", tooltip="show stdout/stderr",
                        layout=w.Layout(width="auto"))
        cancel = w.Button(description="Cancel", icon="stop", button_style="danger",
                          tooltip="cancel this job", layout=w.Layout(width="auto"))
        for button, cls in ((logs, "spotkit-jm-logs-button"),
                            (cancel, "spotkit-jm-cancel-button")):
            button.add_class(cls)
            button.add_class(slug)
        logs.on_click(lambda _, job=job: self.show_logs(job))
        cancel.on_click(lambda _, job=job: self._cancel_clicked(job))
        cells["logs"] = logs
        cells["cancel"] = cancel
        return cells

    def row_widgets(self, job_id: str | Job) -> dict[str, Any]:
        """The widgets of one job's row: one ``HTML`` per column key (see
        :data:`COLUMNS`) and the ``"logs"`` and ``"cancel"`` buttons."""
        job = self.model.job(job_id)
        with self._lock:
            return dict(self._rows[_key(job)])

    # -- rendering ----------------------------------------------------------------------

    def _render(self) -> None:
        """Write the model's rows into the widgets (only what changed is sent)."""
        rows = self.model.rows()
        jobs = self.model.jobs
        with self._lock:
            if self._closed:
                return
            keys = [_key(j) for j in jobs]
            if list(self._rows) != keys:
                for key, job in zip(keys, jobs, strict=True):
                    if key not in self._rows:
                        self._rows[key] = self._row_widgets(key, job)
                children = list(self._header)
                for key in keys:
                    cells = self._rows[key]
                    children += [cells[name] for name, _ in COLUMNS]
                    children += [cells["logs"], cells["cancel"]]
                self.grid.children = children
            for key, row in zip(keys, rows, strict=True):
                self._render_row(self._rows[key], row)
            self.status.value = self._status_html()
            if self._logs_job is not None:
                self._update_logs()

    def _render_row(self, cells: dict[str, Any], row: dict) -> None:
        colour = OUTCOME_COLOURS[row["outcome"]]
        values = {
            "id": _cell_html(row["id"]),
            "target": _cell_html(row["target"]),
            "run_id": _cell_html(row["run_id"] or "–"),
            "dataset": _cell_html(row["dataset"] or "–"),
            "state": _cell_html(row["state"], colour=colour, bold=True),
            "exit_code": _cell_html("–" if row["exit_code"] is None else row["exit_code"],
                                    colour=colour if row["finished"] and not row["succeeded"]
                                    else None),
            "elapsed": _cell_html(format_seconds(row["elapsed"])),
            "queue_wait": _cell_html(format_seconds(row["queue_wait"])),
            "reason": _cell_html(row["reason"], limit=90,
                                 colour=colour if row["outcome"] == "failed" else None),
        }
        for name, value in values.items():
            if cells[name].value != value:
                cells[name].value = value
        cancel = cells["cancel"]
        if row["finished"]:
            cancel.disabled = True
            cancel.description = "Cancel"
        elif cancel.description != "Cancelling…":
            cancel.disabled = False

    def _status_html(self) -> str:
        model = self.model
        text = html.escape(model.summary())
        if model.refreshed_at is not None:
            stamp = model.refreshed_at.astimezone().strftime("%H:%M:%S")
            text += f" &middot; refreshed {stamp}"
        if self.running and not model.done:
            text += f", every {self.interval:g} s"
        elif model.jobs and model.done:
            text += " &middot; all finished"
        for name, err in model.errors.items():
            text += (f'<br><span style="color:{OUTCOME_COLOURS["failed"]}">'
                     f"{html.escape(name)}: {html.escape(err)}</span>")
        if self._message:
            text += f'<br><span style="color:{OUTCOME_COLOURS["failed"]}">' \
                    f"{html.escape(self._message)}</span>"
        return text

    # -- logs and cancel ----------------------------------------------------------------

    def show_logs(self, job_id: str | Job) -> str:
        """Show the end of a job's stdout and stderr below the table ("Logs").

        While shown, the text follows the job at each refresh.

        Returns
        -------
        str
            The text shown.
        """
        job = self.model.job(job_id)
        with self._lock:
            self._logs_job = job
            self.logs_box.layout.display = "flex"
            return self._update_logs()

    def hide_logs(self) -> None:
        """Hide the logs panel."""
        with self._lock:
            self._logs_job = None
            self.logs_box.layout.display = "none"

    def _update_logs(self) -> str:
        job = self._logs_job
        text = self.model.logs(job, lines=self.log_lines)
        title = (f"<b>logs of {html.escape(job.target.name)} job {html.escape(job.id)}</b>"
                 f" (last {self.log_lines} lines of each)")
        if self.logs_title.value != title:
            self.logs_title.value = title
        if self.logs_text.value != text:
            self.logs_text.value = text
        return text

    def _cancel_clicked(self, job: Job) -> None:
        cells = self._rows.get(_key(job))
        if cells is not None:
            cells["cancel"].disabled = True
            cells["cancel"].description = "Cancelling…"
        try:
            self.model.cancel(job)
            self._message = ""
        except SpotkitError as exc:
            logger.warning("could not cancel %s job %s: %s", job.target.name, job.id, exc)
            self._message = f"could not cancel job {job.id}: {exc}"
            if cells is not None:
                cells["cancel"].disabled = False
                cells["cancel"].description = "Cancel"
        self._render()
        self.start()  # refresh soon to show CANCELLED

    def _refresh_clicked(self) -> None:
        if self.running:
            self._wake.set()
        else:
            self.refresh()

    # -- refreshing -----------------------------------------------------------------------

    @property
    def jobs(self) -> list[Job]:
        """The jobs followed."""
        return self.model.jobs

    def rows(self) -> list[dict]:
        """The rows shown (see :meth:`JobMonitorModel.rows`)."""
        return self.model.rows()

    def add(self, job: Job) -> None:
        """Follow one more job (and refresh again if the table had stopped)."""
        if self.model.add(job):
            self._render()
            self.start()

    def refresh(self) -> list[dict]:
        """Refresh now, in the calling thread; return the rows."""
        rows = self.model.refresh()
        self._render()
        return rows

    @property
    def running(self) -> bool:
        """The refresh thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the refresh thread (or wake it up now); nothing happens when every job
        has finished or the monitor is closed."""
        with self._lock:
            if self._closed:
                return
            if self._thread is not None and self._thread.is_alive():
                self._wake.set()
                return
            if self.model.done:
                self._render()
                return
            self._stop = threading.Event()
            self._wake.clear()
            # the thread's messages go out under the cell that started it
            context = contextvars.copy_context()
            self._thread = threading.Thread(target=context.run,
                                            args=(self._loop, self._stop),
                                            name="spotkit-job-monitor", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop refreshing (the table stays as it is); wait for the thread to end."""
        with self._lock:
            thread = self._thread
            self._stop.set()
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._render()

    def close(self) -> None:
        """Stop refreshing and close the widgets (they disappear from the notebook)."""
        self.stop()
        with self._lock:
            self._closed = True
            self.widget.close()
            for cells in self._rows.values():
                for cell in cells.values():
                    cell.close()
            for part in (self.grid, self.status, self.logs_text, self.logs_box,
                         self.logs_title, self.refresh_button, *self._header):
                part.close()

    def _loop(self, stop: threading.Event) -> None:
        logger.debug("job monitor refreshing every %g s", self.interval)
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                self.model.refresh()
                self._render()
            except Exception as exc:  # a bug must not die silently in a thread
                logger.exception("job monitor refresh failed; refreshing stopped")
                with self._lock:
                    self._message = f"refresh failed, stopped: {type(exc).__name__}: {exc}"
                    self._thread = None
                self._render()
                return
            with self._lock:
                if self.model.done or stop.is_set():
                    if self._thread is threading.current_thread():
                        self._thread = None
                    break
            self._wake.wait(max(0.0, self.interval - (time.monotonic() - t0)))
            self._wake.clear()
        self._render()
        logger.debug("job monitor stopped refreshing")

    # -- display --------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        state = "refreshing" if self.running else "idle"
        return f"<JobMonitor: {self.model.summary()}; {state}>"
