"""Follow batch jobs from JupyterLab: a live table with logs and cancel buttons.

Three collaborators behind :class:`JobMonitor`:

- :class:`~spotkit.widgets.JobMonitorModel` (:mod:`spotkit.widgets._jobmonitor_model`)
  holds the jobs and turns what their schedulers say into rows (plain dicts); plain Python,
  tested without widgets;
- :class:`~spotkit.widgets._jobmonitor_refresh.Refresher` refreshes the model in a daemon
  thread (the module says why a thread and not an asyncio task), also plain Python;
- :class:`JobMonitor` (here) only draws the rows as an ipywidgets table and turns button
  clicks into calls of the model.
"""

from __future__ import annotations

import html
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from spotkit.compute import Job
from spotkit.errors import SpotkitError
from spotkit.widgets._jobmonitor_model import (
    COLUMNS,
    OUTCOME_COLOURS,
    JobMonitorModel,
    _key,
    format_seconds,
)
from spotkit.widgets._jobmonitor_refresh import Refresher

logger = logging.getLogger(__name__)

__all__ = ["COLUMNS", "OUTCOME_COLOURS", "JobMonitor", "JobMonitorModel", "format_seconds"]

_LAB_EXTRA = 'pip install "spotkit[lab]"'



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
    waits in ``job.wait()``); :mod:`spotkit.widgets._jobmonitor_refresh` says why a thread.
    Each refresh makes at most one status query per target, for all its jobs. The thread
    ends when every job has finished; :meth:`add` starts it again, :meth:`stop` and
    :meth:`close` end it.

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
    A shell script run by the :class:`~spotkit.compute.Local` target, in a temporary folder
    (``spotkit.submit("tomo_quicklook", ds, target=Local())`` returns such a job too):

    >>> import pathlib, tempfile
    >>> from spotkit.compute import Job, Local
    >>> from spotkit.widgets import JobMonitor
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> script = folder / "hello.sh"
    >>> _ = script.write_text("echo hello from the job")
    >>> target = Local(min_poll=0.05)
    >>> job = Job(target.submit_script(script, job_name="hello", workdir=folder), target)
    >>> monitor = JobMonitor([job], refresh=0.1)
    >>> monitor                          # displays the table in JupyterLab  # doctest: +SKIP
    >>> monitor.refresher.join(timeout=30)  # the thread ends once every job has finished
    >>> monitor.rows()[0]["outcome"], "all finished" in monitor.status.value
    ('succeeded', True)
    >>> print(monitor.show_logs(job).split("---")[-1].strip())
    (empty)
    >>> monitor.close()

    Following the runs of a catalog on Slurm needs a Slurm cluster (``squeue``/``sacct``
    from a login node), so it is not run here:

    >>> from spotkit.compute import Slurm
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
        self.refresher = Refresher(self.model, refresh, on_refresh=self._render,
                                   on_error=self._refresh_failed)
        self.log_lines = log_lines
        self._w = widgets
        self._lock = threading.RLock()
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
        if self.refresher.refreshing and not model.done:
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
        if job is None:
            return ""
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
        if self.refresher.refreshing:
            self.refresher.wake()
        else:
            self.refresh()

    def _refresh_failed(self, exc: BaseException) -> None:
        with self._lock:
            self._message = f"refresh failed, stopped: {type(exc).__name__}: {exc}"
        self._render()

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
    def interval(self) -> float:
        """Seconds between refreshes (settable; the next wait uses the new value)."""
        return self.refresher.interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        seconds = float(seconds)
        if not seconds > 0:
            raise ValueError(f"refresh must be a positive number of seconds, not {seconds!r}")
        self.refresher.interval = seconds

    @property
    def running(self) -> bool:
        """The refresh thread runs."""
        return self.refresher.running

    @property
    def _thread(self) -> threading.Thread | None:
        return self.refresher.thread

    def start(self) -> None:
        """Start the refresh thread (or wake it up now); nothing happens when every job
        has finished or the monitor is closed."""
        with self._lock:
            if self._closed:
                return
        if not self.refresher.start():
            self._render()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop refreshing (the table stays as it is); wait for the thread to end."""
        self.refresher.stop(timeout)
        self._render()

    def close(self) -> None:
        """Stop refreshing and close the widgets (they disappear from the notebook)."""
        self.refresher.close()
        self._render()
        with self._lock:
            self._closed = True
            self.widget.close()
            for cells in self._rows.values():
                for cell in cells.values():
                    cell.close()
            for part in (self.grid, self.status, self.logs_text, self.logs_box,
                         self.logs_title, self.refresh_button, *self._header):
                part.close()

    # -- display --------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        state = "refreshing" if self.running else "idle"
        return f"<JobMonitor: {self.model.summary()}; {state}>"
