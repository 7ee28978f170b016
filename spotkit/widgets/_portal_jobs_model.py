"""The portal's Jobs panel without widgets: the catalog's batch jobs and one job inspected.

:class:`JobsPanelModel` reuses :class:`~spotkit.widgets.JobMonitorModel` for the jobs'
live states (one scheduler query per target per refresh). A refresh (:meth:`fetch`) reads
the catalog's newest runs once (one query), follows the batch jobs among them that it can
reach (a target given, or ``Slurm()`` on a login node), lists the others from the catalog's
record (their run's state), asks the schedulers, and reads the selected job's inspection:
the end of its logs, its executed notebook (the path, and the JupyterLab link where the
server can open it) and what the scheduler accounted for it
(:func:`spotkit.compute.job_usage`: ``sacct`` on Slurm). :meth:`cancel` is
:meth:`Job.cancel` through the monitor model. No ipywidgets here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spotkit.compute import Job, JobUsage, job_usage
from spotkit.errors import SpotkitError
from spotkit.widgets._jobmonitor_model import JobMonitorModel
from spotkit.widgets._portal_flow_model import ReadOnlyError

logger = logging.getLogger(__name__)

__all__ = ["JobDetail", "JobsPanelModel", "JobsSnapshot"]

#: outcome of a job known only from the catalog, by its run's state
_RUN_OUTCOMES = {"queued": "waiting", "running": "running", "completed": "succeeded",
                 "failed": "failed", "cancelled": "cancelled"}


def _seconds(start: Any, end: Any) -> float | None:
    """Seconds between two run times (datetimes or epoch seconds); None if unknown."""
    if start is None or end is None:
        return None
    delta = end - start
    return float(delta.total_seconds() if hasattr(delta, "total_seconds") else delta)


@dataclass(frozen=True)
class JobDetail:
    """One job inspected: its row, logs, executed notebook and resource use."""

    job_id: str
    row: dict
    logs: str
    notebook: str | None
    notebook_url: str | None
    usage: JobUsage | None
    usage_error: str | None = None
    run_error: str | None = None


@dataclass(frozen=True)
class JobsSnapshot:
    """What one refresh read: the rows (followed jobs, then catalog-only ones), the
    scheduler errors, the runs that could not be followed, and the selected job."""

    rows: list[dict]
    summary: str
    errors: dict[str, str]
    skipped: list[tuple[str, str]]
    detail: JobDetail | None = None
    messages: list[str] = field(default_factory=list)


class JobsPanelModel:
    """The catalog's batch jobs, live, and the inspection of one.

    Parameters
    ----------
    catalog : Catalog
    readonly : bool
        :meth:`cancel` refuses; no JupyterLab link for notebooks.
    targets : Target, list or dict, optional
        Where the catalog's runs were submitted (matched by name, as
        :meth:`JobMonitorModel.add_runs` does); default ``Slurm()`` for Slurm runs.
    jobs : iterable of Job, optional
        Jobs submitted in this kernel (``spotkit.submit``), followed too.
    recent : int
        How many of the newest runs to look at per refresh.
    log_lines : int
        Lines of each stream in the inspection.
    lab_root : (str, str), optional
        The Jupyter server's root folder and base URL (default: found from the running
        server, :func:`~spotkit.widgets._portal_data_detail.find_lab_root`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.compute import Job, Local
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> cat = open_catalog(folder / "catalog.db")
    >>> script = folder / "hello.sh"
    >>> _ = script.write_text("echo hello")
    >>> target = Local(min_poll=0.05)
    >>> job = Job(target.submit_script(script, job_name="hello", workdir=folder), target)
    >>> _ = job.wait(timeout=60)
    >>> model = JobsPanelModel(cat, jobs=[job], lab_root=(None, "/"))
    >>> model.select(job.id)
    >>> snap = model.fetch()
    >>> snap.rows[0]["outcome"], snap.detail.usage.state.value
    ('succeeded', 'COMPLETED')
    >>> "hello" in snap.detail.logs
    True
    >>> cat.close()
    """

    def __init__(self, catalog: Any, *, readonly: bool = False, targets: Any = None,
                 jobs: Any = None, recent: int = 50, log_lines: int = 60,
                 lab_root: tuple[str | None, str] | None = None):
        if not isinstance(recent, int) or recent < 1:
            raise ValueError(f"recent must be a positive integer, not {recent!r}")
        self.catalog = catalog
        self._fetch_lock = threading.Lock()
        self.readonly = bool(readonly)
        self.monitor = JobMonitorModel(jobs)
        self.targets = self.monitor._targets_by_name(targets)
        self._defaults = targets is None
        self.recent = recent
        self.log_lines = int(log_lines)
        self._lab_root = lab_root
        self._seen: set[str] = set()  # run ids looked at (followed or not)
        self._others: dict[str, Any] = {}  # run id: catalog Run of a job not followed
        self._skipped: dict[str, str] = {}
        self.selected: str | None = None

    # -- reading ----------------------------------------------------------------------

    def _follow_new(self, runs: list) -> None:
        followed = {job.run_id for job in self.monitor.jobs if job.run_id}
        for run in reversed(runs):
            if not run.job_id or run.id in followed:
                self._others.pop(run.id, None)
                continue
            if run.id in self._seen:
                if run.id in self._others:
                    self._others[run.id] = run  # its newest record
                continue
            self._seen.add(run.id)
            target = self.targets.get(run.target) or self.targets.get(run.target.split(":")[0])
            if target is None and self._defaults and run.target == "slurm":
                import shutil

                if shutil.which("squeue"):
                    from spotkit.compute import Slurm

                    target = self.targets["slurm"] = Slurm()
            if target is None:
                self._others[run.id] = run
                self._skipped[run.id] = (f"{run.target} jobs cannot be asked about from here "
                                         "(give the portal that target); state from the "
                                         "catalog")
                continue
            try:
                job = Job.from_run(run, target, catalog=self.catalog)
            except (ValueError, SpotkitError) as exc:
                self._others[run.id] = run
                self._skipped[run.id] = str(exc)
                continue
            self.monitor._datasets[(id(job.target), job.id)] = run.dataset_id
            self.monitor.add(job)

    def _other_rows(self) -> list[dict]:
        rows = []
        for run in sorted(self._others.values(), key=lambda r: r.started_at, reverse=True):
            error = f"{run.error_name}: {run.error_message or ''}".rstrip(": ") \
                if run.error_name else self._skipped.get(run.id, "")
            finished = run.state in ("completed", "failed", "cancelled")
            elapsed = _seconds(run.started_at, run.ended_at)
            rows.append({"id": run.job_id, "target": run.target, "run_id": run.id,
                         "dataset": run.dataset_id, "state": f"run {run.state}",
                         "exit_code": None, "elapsed": elapsed, "queue_wait": None,
                         "reason": error, "finished": finished,
                         "succeeded": run.state == "completed", "lost": False,
                         "outcome": _RUN_OUTCOMES.get(run.state, "unknown"),
                         "followed": False})
        return rows

    def fetch(self) -> JobsSnapshot:
        """One refresh: the catalog's newest runs (one query), the schedulers (one query
        per target), and the selected job's logs, notebook and resource use.

        One refresh at a time: a second caller (the portal's thread and a click) waits."""
        with self._fetch_lock:
            return self._fetch()

    def _fetch(self) -> JobsSnapshot:
        """See :meth:`fetch`."""
        if not hasattr(self.catalog, "runs"):
            raise SpotkitError(f"{self.catalog!r} has no runs to read (a catalog served by "
                               "`spotkit serve`): open the catalog's database for the Jobs tab")
        runs = self.catalog.runs(limit=self.recent)
        self._follow_new(runs)
        followed = [{**r, "followed": True} for r in self.monitor.refresh()]
        followed.reverse()  # newest first
        rows = followed + self._other_rows()
        detail = self._detail(rows) if self.selected else None
        skipped = [(rid, why) for rid, why in self._skipped.items()]
        return JobsSnapshot(rows, self.monitor.summary(), dict(self.monitor.errors), skipped,
                            detail)

    def select(self, job_id: str | None) -> None:
        """Inspect this job from the next :meth:`fetch` on (None: none)."""
        self.selected = job_id

    def _lab(self) -> tuple[str | None, str]:
        if self._lab_root is None:
            from spotkit.widgets._portal_data_detail import find_lab_root

            self._lab_root = find_lab_root()
        return self._lab_root

    def _detail(self, rows: list[dict]) -> JobDetail | None:
        row = next((r for r in rows if r["id"] == self.selected), None)
        if row is None:
            return None
        run = None
        if row["followed"]:
            job = self.monitor.job(str(self.selected))
            try:
                logs = self.monitor.logs(job, lines=self.log_lines)
            except NotImplementedError:
                logs = f"(the {job.target.name} target keeps no logs spotkit can read)\n"
            try:
                usage, usage_error = job_usage(job), None
            except SpotkitError as exc:
                usage, usage_error = None, f"{type(exc).__name__}: {exc}"
            run = self.monitor._run(job)
        else:
            run = self._others.get(row["run_id"])
            logs = ("(the logs are on the target that ran this job, which this portal "
                    "cannot reach)\n")
            usage, usage_error = None, self._skipped.get(row["run_id"])
        notebook = str(run.output_notebook) if run is not None and run.output_notebook else None
        url = None
        if notebook and not self.readonly:
            from spotkit.widgets._portal_data_detail import lab_url

            root, base = self._lab()
            url = lab_url(notebook, root, base_url=base)
        run_error = None
        if run is not None and run.error_name:
            cell = f" in cell {run.error_cell}" if run.error_cell is not None else ""
            run_error = f"{run.error_name}{cell}: {run.error_message or ''}".rstrip(": ")
        return JobDetail(str(self.selected), row, logs, notebook, url, usage, usage_error,
                         run_error)

    # -- actions ----------------------------------------------------------------------

    def cancel(self, job_id: str) -> None:
        """Cancel a followed job (:meth:`Job.cancel`; nothing when it already ended)."""
        if self.readonly:
            raise ReadOnlyError("this portal is read-only: cancelling a job is not allowed "
                                "here; open the portal in JupyterLab (spotkit.portal())")
        self.monitor.cancel(job_id)

    def add(self, job: Job) -> bool:
        """Follow a job submitted in this kernel."""
        return self.monitor.add(job)

    @staticmethod
    def usage_rows(usage: JobUsage | None) -> list[dict[str, Any]]:
        """The resource use as (what, value) rows for a small table."""
        if usage is None:
            return []
        from spotkit.widgets._jobmonitor_model import format_seconds

        def mem(n: int | None) -> str | None:
            return None if n is None else f"{n / 1024**2:.1f} MiB"

        eff = usage.cpu_efficiency
        not_recorded = f"not recorded ({usage.source})"
        values: Mapping[str, Any] = {
            "state": usage.state.value, "exit code": usage.exit_code,
            "elapsed": format_seconds(usage.elapsed) if usage.elapsed is not None else None,
            "CPUs": usage.cpus,
            "CPU time": format_seconds(usage.cpu_time) if usage.cpu_time is not None
            else None,
            "CPU allocated": format_seconds(usage.cpu_allocated)
            if usage.cpu_allocated is not None else None,
            "CPU efficiency": f"{eff:.0%}" if eff is not None else None,
            "MaxRSS": mem(usage.max_rss), "nodes": usage.nodes, "source": usage.source}
        return [{"what": k, "value": not_recorded if v is None else v}
                for k, v in values.items()]
