"""The portal's Jobs panel: the catalog's batch jobs, live, and one job inspected.

:class:`JobsPanel` draws :class:`~spotkit.widgets._portal_jobs_model.JobsPanelModel`'s
snapshot: the job table of :class:`~spotkit.widgets.JobMonitor` (same columns, same
colours: green only for ``COMPLETED`` with exit code 0), and for the chosen job the end of
its logs, its executed notebook (a JupyterLab link where the server can open it) and what
the scheduler accounted (``sacct`` on Slurm: elapsed, CPU time, MaxRSS, state, exit code),
with a Cancel button. It follows the portal's panel protocol; read-only: no Cancel, no
notebook link.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any

from spotkit.widgets._jobmonitor_model import COLUMNS, OUTCOME_COLOURS, format_seconds
from spotkit.widgets._portal_flow_parts import (
    RED,
    ModelPanel,
    html_table,
    ipywidgets,
    message_html,
    set_value,
)
from spotkit.widgets._portal_jobs_model import JobDetail, JobsPanelModel, JobsSnapshot

logger = logging.getLogger(__name__)

__all__ = ["JobsPanel", "JobsPanelModel", "jobs_table_html"]


def jobs_table_html(rows: list[dict]) -> str:
    """The job table (JobMonitor's columns), states coloured by outcome."""
    shown = [{**r, "elapsed": format_seconds(r["elapsed"]),
              "queue_wait": format_seconds(r["queue_wait"])} for r in rows]

    def colour(row: dict, column: str) -> str | None:
        if column == "state" or (column == "reason" and row["outcome"] == "failed"):
            return OUTCOME_COLOURS.get(row["outcome"], OUTCOME_COLOURS["unknown"])
        return None

    return html_table(shown, COLUMNS, css="spotkit-jobs-table", limit=90, colour=colour,
                      empty="no batch job in the catalog's newest runs")


def detail_html(detail: JobDetail) -> str:
    """The inspected job's heading, failure and executed notebook."""
    row = detail.row
    parts = [f"<b>{html.escape(row['target'])} job {html.escape(detail.job_id)}</b>"
             f" &middot; run {html.escape(row['run_id'] or '–')}"
             f" &middot; dataset {html.escape(row['dataset'] or '–')}"]
    if detail.run_error:
        parts.append(f'<span style="color:{RED}">{html.escape(detail.run_error)}</span>')
    if detail.notebook_url:
        parts.append(f'executed notebook: <a href="{html.escape(detail.notebook_url)}" '
                     f'target="_blank">{html.escape(detail.notebook or "")}</a>')
    elif detail.notebook:
        parts.append(f"executed notebook: <code>{html.escape(detail.notebook)}</code>")
    else:
        parts.append("no executed notebook recorded yet")
    if detail.usage_error:
        parts.append(f'<span style="color:{RED}">resource use: '
                     f"{html.escape(detail.usage_error)}</span>")
    return "<br>".join(parts)


class JobsPanel(ModelPanel):
    """The portal's Jobs tab.

    Parameters
    ----------
    catalog : Catalog
    readonly : bool
        No Cancel button, no notebook links (the phone view).
    on_select : callable, optional
        ``on_select(dataset_id)``: the portal's selection ("Show dataset").
    request_refresh : callable, optional
        Asks the portal to refresh this panel now (a job chosen, a cancel); the portal
        sets it. Without it, the panel reads in a thread of its own.
    targets, jobs, recent, log_lines, lab_root
        See :class:`JobsPanelModel`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> panel = JobsPanel(cat, lab_root=(None, "/"))
    >>> panel.apply(panel.fetch())
    >>> panel.status.value
    '0 jobs'
    >>> panel.close(); cat.close()
    """

    title = "Jobs"
    _worker_name = "spotkit-jobs-panel"

    def __init__(self, catalog: Any, *, readonly: bool = False,
                 on_select: Callable[[str], None] | None = None,
                 request_refresh: Callable[[], Any] | None = None, **options: Any):
        super().__init__(JobsPanelModel(catalog, readonly=readonly, **options), readonly=readonly,
                         on_select=on_select, request_refresh=request_refresh)
        self._last: JobsSnapshot | None = None

    # -- protocol ---------------------------------------------------------------------

    def fetch(self) -> JobsSnapshot:
        """The catalog's newest runs (one query), the schedulers, the inspected job."""
        return self.model.fetch()

    def apply(self, snapshot: JobsSnapshot) -> None:
        """Show a snapshot (widgets only)."""
        self.widget  # noqa: B018 - built on first use
        self._last = snapshot
        text = html.escape(snapshot.summary)
        for name, err in snapshot.errors.items():
            text += f'<br><span style="color:{RED}">{html.escape(name)}: {html.escape(err)}</span>'
        others = sum(1 for r in snapshot.rows if not r["followed"])
        if others:
            text += (f"<br>{others} job(s) shown from the catalog only (their target cannot "
                     "be asked from here)")
        set_value(self.status, text)
        set_value(self.table, jobs_table_html(snapshot.rows))
        options = [(f"{r['id']} ({r['target']}, {r['state']})", r["id"]) for r in snapshot.rows]
        if list(self.job.options) != options:
            keep = self.job.value
            self.job.options = options
            self.job.value = keep if keep in [v for _, v in options] else None
        self._show_detail(snapshot.detail)

    @property
    def snapshot(self) -> JobsSnapshot | None:
        """What the panel shows now (the last snapshot applied), or None."""
        return self._last

    @property
    def inspected(self) -> JobDetail | None:
        """The job shown below the table (its logs, notebook, resource use), or None."""
        return self._last.detail if self._last is not None else None

    def show_dataset(self, dataset_id: str) -> None:
        """The portal's selection: inspect the newest job of that dataset (if any)."""
        if self._last is None:
            return
        for r in self._last.rows:
            if r["dataset"] == dataset_id:
                self.inspect(r["id"])
                return

    def __repr__(self) -> str:
        return f"<JobsPanel{' (read-only)' if self.readonly else ''}>"

    # -- building -----------------------------------------------------------------------

    def _build(self) -> None:
        w = ipywidgets("JobsPanel")
        auto = w.Layout(width="auto")
        self.status = w.HTML()
        self.table = w.HTML(layout=w.Layout(overflow="auto", width="100%"))
        self.job = w.Dropdown(description="job", options=[],
                              layout=w.Layout(width="100%", max_width="36em"))
        self.job.observe(self._job_chosen, names="value")
        self.show_button = w.Button(description="Show dataset", icon="search", layout=auto)
        self.show_button.on_click(lambda _: self._show_clicked())
        self.detail = w.HTML()
        self.usage = w.HTML()
        self.logs = w.Textarea(value="", disabled=True,
                               layout=w.Layout(width="100%", height="16em"))
        self.message = w.HTML()
        self._parts: list[Any] = [self.status, self.table, self.job, self.show_button,
                                  self.detail, self.usage, self.logs, self.message]
        buttons = [self.job, self.show_button]
        if not self.readonly:
            self.cancel_button = w.Button(description="Cancel", icon="stop", layout=auto,
                                          button_style="danger", disabled=True,
                                          tooltip="cancel this job at its scheduler")
            self.cancel_button.on_click(lambda _: self._cancel_clicked())
            self._parts.append(self.cancel_button)
            buttons.append(self.cancel_button)
        self.inspection = w.VBox([self.detail, self.usage, self.logs],
                                 layout=w.Layout(display="none", width="100%"))
        self._parts.append(self.inspection)
        self._widget = w.VBox([self.status, self.table,
                               w.HBox(buttons, layout=w.Layout(flex_flow="row wrap")),
                               self.message, self.inspection], layout=w.Layout(width="100%"))
        self._widget.add_class("spotkit-jobs-panel")

    def _show_detail(self, detail: JobDetail | None) -> None:
        if detail is None:
            self.inspection.layout.display = "none"
            if not self.readonly:
                self.cancel_button.disabled = True
            return
        self.inspection.layout.display = "flex"
        set_value(self.detail, detail_html(detail))
        set_value(self.usage, html_table(self.model.usage_rows(detail.usage),
                                         (("what", "resource use"), ("value", "")),
                                         css="spotkit-jobs-usage",
                                         empty="no resource use known"))
        set_value(self.logs, detail.logs)
        if not self.readonly:
            self.cancel_button.disabled = bool(detail.row["finished"]
                                               or not detail.row["followed"])

    # -- clicks ---------------------------------------------------------------------------

    def inspect(self, job_id: str | None) -> None:
        """Inspect a job: its logs, notebook and resource use (read off the kernel's
        thread, then shown)."""
        offered = [v for _, v in self.job.options] if self._widget is not None else []
        if job_id in offered and self.job.value != job_id:
            self.job.value = job_id  # observed: _job_chosen selects it and reads it
            return
        self.model.select(job_id)
        self._refresh_now()

    def _job_chosen(self, change: dict) -> None:
        if change["new"] != self.model.selected:
            self.model.select(change["new"])
            self._refresh_now()

    def _refresh_now(self) -> None:
        if self.request_refresh is not None:  # in the portal: its thread reads
            self.request_refresh()
            return

        def done(snapshot: Any, exc: BaseException | None) -> None:
            if exc is not None:
                set_value(self.message, message_html(f"{type(exc).__name__}: {exc}",
                                                     error=True))
            else:
                self.apply(snapshot)

        self.worker.run(self.model.fetch, done)

    def _show_clicked(self) -> None:
        detail = self._last.detail if self._last else None
        dataset = detail.row["dataset"] if detail else None
        if not dataset:
            set_value(self.message, message_html("choose a job with a dataset first",
                                                 error=True))
        elif self.on_select is not None:
            self.on_select(dataset)

    def _cancel_clicked(self) -> None:
        job_id = self.model.selected
        if not job_id:
            return
        self.cancel_button.disabled = True

        def call() -> Any:
            self.model.cancel(job_id)
            return None if self.request_refresh is not None else self.model.fetch()

        def done(snapshot: Any, exc: BaseException | None) -> None:
            if exc is not None:
                set_value(self.message, message_html(
                    f"could not cancel job {job_id}: {exc}", error=True))
                self.cancel_button.disabled = False
            else:
                set_value(self.message, message_html(f"cancel sent for job {job_id}"))
                if snapshot is None:
                    self._refresh_now()
                else:
                    self.apply(snapshot)

        self.worker.run(call, done)
