"""The portal's Flow panel: what the watchers are doing, and the operator's actions.

:class:`FlowPanel` draws :class:`~spotkit.widgets._portal_flow_model.FlowPanelModel`'s rows
(per beamline; per rule action with its paused state; the newest errors) and turns clicks
into the model's library calls: retry or forget a parked item (with a reason), pause or
resume a rule, run a notebook again with new parameters on a target. Clicks run off the
kernel's thread (:class:`~spotkit.widgets._portal_flow_parts.ClickWorker`). It follows the
portal's panel protocol: :meth:`fetch` is one read of the catalog database,
:meth:`apply` only sets widget values. Read-only (the phone view): no action at all.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from typing import Any

from spotkit.flows import FlowStatus
from spotkit.widgets._portal_flow_model import (
    ACTION_COLUMNS,
    BEAMLINE_COLUMNS,
    FlowPanelModel,
    ReadOnlyError,
)
from spotkit.widgets._portal_flow_parts import (
    AMBER,
    RED,
    ModelPanel,
    html_table,
    ipywidgets,
    message_html,
    set_value,
)

logger = logging.getLogger(__name__)

__all__ = ["FlowPanel", "FlowPanelModel", "ReadOnlyError"]

_ERROR_COLUMNS = (("ago", "when"), ("state", "state"), ("beamline", "beamline"),
                  ("path", "item"), ("dataset_id", "dataset"), ("attempts", "tries"),
                  ("error", "error"))


def status_html(status: FlowStatus) -> str:
    """The panel's first line: totals, paused rules (amber), when read."""
    pending = sum(c.get("pending", 0) for c in status.beamlines.values())
    running = sum(c.get("running", 0) for c in status.beamlines.values())
    parked = sum(c.get("parked", 0) for c in status.beamlines.values())
    per_hour = sum(status.throughput.values())
    text = (f"{pending} pending, {running} running, {parked} parked; {per_hour} done in "
            "the last hour")
    if status.paused:
        names = ", ".join(sorted(status.paused))
        text += (f' &middot; <span style="color:{AMBER};font-weight:600">paused: '
                 f"{html.escape(names)}</span>")
    stamp = time.strftime("%H:%M:%S", time.localtime(status.at))
    return f'<span class="spotkit-flow-summary">{text} &middot; read {stamp}</span>'


def _set_options(dropdown: Any, options: list) -> None:
    """New options for a dropdown, keeping its choice where it is still offered (else the
    first)."""
    if list(dropdown.options) == options:
        return
    keep = dropdown.value
    dropdown.options = options
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    if values:
        dropdown.value = keep if keep in values else values[0]


class FlowPanel(ModelPanel):
    """The portal's Flow tab.

    Parameters
    ----------
    catalog : Catalog
    readonly : bool
        No action buttons (the read-only phone view).
    on_select : callable, optional
        ``on_select(dataset_id)``: the portal's selection (the "Show dataset" button).
    request_refresh : callable, optional
        Asks the portal to refresh this panel now (after an action); the portal sets it.
    rules, targets, user, window, errors
        See :class:`FlowPanelModel`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> panel = FlowPanel(cat)
    >>> panel.apply(panel.fetch())               # the portal does this in its thread
    >>> "0 pending" in panel.status.value
    True
    >>> panel.close(); cat.close()
    """

    title = "Flow"
    _worker_name = "spotkit-flow-panel"

    def __init__(self, catalog: Any, *, readonly: bool = False,
                 on_select: Callable[[str], None] | None = None,
                 request_refresh: Callable[[], Any] | None = None, **options: Any):
        super().__init__(FlowPanelModel(catalog, readonly=readonly, **options), readonly=readonly,
                         on_select=on_select, request_refresh=request_refresh)
        self._selected_dataset: str | None = None

    # -- protocol ---------------------------------------------------------------------

    def fetch(self) -> FlowStatus:
        """One read of the catalog database (:func:`spotkit.flows.flow_status`)."""
        return self.model.fetch()

    def apply(self, snapshot: FlowStatus) -> None:
        """Show a status (widgets only)."""
        self.widget  # noqa: B018 - built on first use
        model = self.model
        set_value(self.status, status_html(snapshot))
        set_value(self.beamlines, html_table(
            model.beamline_rows(snapshot), BEAMLINE_COLUMNS, css="spotkit-flow-beamlines",
            empty="no dataset in the flow journal yet",
            colours={"failed": RED, "parked": RED}))
        set_value(self.actions, html_table(
            model.action_rows(snapshot), ACTION_COLUMNS, css="spotkit-flow-actions",
            empty="no rule action has run yet",
            colours={"failed": RED, "parked": RED, "paused": AMBER},
            row_class=lambda r: "spotkit-flow-paused" if r["paused"] else ""))
        errors = model.error_rows(snapshot)
        set_value(self.errors, html_table(errors, _ERROR_COLUMNS, css="spotkit-flow-errors",
                                          empty="no failed or parked dataset", limit=120))
        options = [(f"{e['state']}: {e['path']}", e["key"]) for e in errors]
        _set_options(self.item, options)
        _set_options(self.rule, model.rule_names(snapshot))

    @property
    def snapshot(self) -> FlowStatus | None:
        """The flow status shown now (the last one read), or None."""
        return self.model.last

    def show_dataset(self, dataset_id: str) -> None:
        """The portal's selection: offered for a re-run, and its parked item selected."""
        self._selected_dataset = dataset_id
        if self._widget is None:
            return
        if not self.readonly:
            set_value(self.rerun_dataset, dataset_id)
        last = self.model.last
        for e in (last.errors if last else ()):
            if e.dataset_id == dataset_id:
                self.item.value = e.key
                break

    def __repr__(self) -> str:
        return f"<FlowPanel{' (read-only)' if self.readonly else ''}>"

    # -- building -----------------------------------------------------------------------

    def _build(self) -> None:
        w = ipywidgets("FlowPanel")
        self.status = w.HTML()
        self.beamlines = w.HTML()
        self.actions = w.HTML()
        self.errors = w.HTML()
        self.message = w.HTML()
        self.item = w.Dropdown(description="item", options=[],
                               layout=w.Layout(width="100%", max_width="40em"))
        self.show_button = w.Button(description="Show dataset", icon="search",
                                    layout=w.Layout(width="auto"))
        self.show_button.on_click(lambda _: self._show_clicked())
        self.rule = w.Dropdown(description="rule", options=[],
                               layout=w.Layout(width="auto"))
        self._parts: list[Any] = [self.status, self.beamlines, self.actions, self.errors,
                                  self.message, self.item, self.show_button, self.rule]
        heading = lambda text: w.HTML(f"<b>{html.escape(text)}</b>")  # noqa: E731
        children = [self.status, heading("Per beamline"), self.beamlines,
                    heading("Per rule"), self.actions, heading("Recent errors"),
                    self.errors]
        if self.readonly:
            children += [w.HBox([self.item, self.show_button])]
        else:
            children += self._build_actions(w)
        children.append(self.message)
        self._widget = w.VBox(children, layout=w.Layout(width="100%"))
        self._widget.add_class("spotkit-flow-panel")
        if self._selected_dataset:
            self.show_dataset(self._selected_dataset)

    def _build_actions(self, w) -> list[Any]:
        auto = w.Layout(width="auto")
        self.item_reason = w.Text(placeholder="why (recorded)", description="reason")
        self.retry_button = w.Button(description="Retry", icon="redo",
                                     button_style="primary", layout=auto,
                                     tooltip="put the item back in the queue")
        self.forget_button = w.Button(description="Forget", icon="trash", layout=auto,
                                      tooltip="set it aside for good (the raw file is kept)")
        self.retry_button.on_click(lambda _: self._item_clicked("retry"))
        self.forget_button.on_click(lambda _: self._item_clicked("forget"))
        self.rule_reason = w.Text(placeholder="why (recorded)", description="reason")
        self.pause_button = w.Button(description="Pause", icon="pause", layout=auto,
                                     button_style="warning",
                                     tooltip="watchers hold its datasets from their next pass")
        self.resume_button = w.Button(description="Resume", icon="play", layout=auto,
                                      tooltip="the datasets it held continue")
        self.pause_button.on_click(lambda _: self._rule_clicked("pause"))
        self.resume_button.on_click(lambda _: self._rule_clicked("resume"))
        self.rerun_dataset = w.Text(description="dataset", placeholder="dataset id")
        self.rerun_notebook = w.Text(description="notebook",
                                     placeholder="tomo_quicklook or a .ipynb path")
        self.rerun_target = w.Dropdown(description="target",
                                       options=self.model.target_names(), layout=auto)
        self.rerun_parameters = w.Textarea(description="parameters", value="{}",
                                           placeholder='{"n_slices": 3}',
                                           layout=w.Layout(width="100%", max_width="40em"))
        self.load_button = w.Button(description="Last run", icon="history", layout=auto,
                                    tooltip="fill in the dataset's newest run")
        self.load_button.on_click(lambda _: self._load_clicked())
        self.rerun_button = w.Button(description="Run", icon="play", layout=auto,
                                     button_style="primary",
                                     tooltip="spotkit.submit(notebook, dataset, ...)")
        self.rerun_button.on_click(lambda _: self._rerun_clicked())
        self._parts += [self.item_reason, self.retry_button, self.forget_button,
                        self.rule_reason, self.pause_button, self.resume_button,
                        self.rerun_dataset, self.rerun_notebook, self.rerun_target,
                        self.rerun_parameters, self.load_button, self.rerun_button]
        bold = lambda text: w.HTML(f"<b>{html.escape(text)}</b>")  # noqa: E731
        return [
            w.HBox([self.item, self.show_button], layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.item_reason, self.retry_button, self.forget_button],
                   layout=w.Layout(flex_flow="row wrap")),
            bold("Pause or resume a rule"),
            w.HBox([self.rule, self.rule_reason, self.pause_button, self.resume_button],
                   layout=w.Layout(flex_flow="row wrap")),
            bold("Run a notebook again"),
            w.HBox([self.rerun_dataset, self.load_button],
                   layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.rerun_notebook, self.rerun_target],
                   layout=w.Layout(flex_flow="row wrap")),
            self.rerun_parameters, self.rerun_button,
        ]

    # -- clicks ---------------------------------------------------------------------------

    def _say(self, text: str, *, error: bool = False) -> None:
        set_value(self.message, message_html(text, error=error))

    def _run(self, call: Callable[[], Any], ok: Callable[[Any], str]) -> None:
        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self._say(f"{type(exc).__name__}: {exc}", error=True)
            else:
                self._say(ok(result))
                if self.request_refresh is not None:  # show the action's effect now
                    self.request_refresh()

        if not self.worker.run(call, done):
            self._say("still busy with the last action; try again in a moment", error=True)

    def _show_clicked(self) -> None:
        e = self.model.error(self.item.value) if self.item.value else None
        if e is None or not e.dataset_id:
            self._say("that item has no catalog dataset (it was never ingested)", error=True)
            return
        if self.on_select is not None:
            self.on_select(e.dataset_id)
        else:
            self.show_dataset(e.dataset_id)

    def _item_clicked(self, action: str) -> None:
        key, reason = self.item.value, self.item_reason.value
        if not key:
            self._say("choose a failed or parked item first", error=True)
            return
        call = self.model.retry if action == "retry" else self.model.forget
        self._run(lambda: call(key, reason=reason),
                  lambda item: f"{item.path}: {action} done, now {item.state}")

    def _rule_clicked(self, action: str) -> None:
        rule, reason = self.rule.value, self.rule_reason.value
        if not rule:
            self._say("choose a rule first", error=True)
            return
        if action == "pause":
            self._run(lambda: self.model.pause(rule, reason=reason),
                      lambda p: f"{p.describe()}; watchers hold its datasets from their "
                      "next pass")
        else:
            self._run(lambda: self.model.resume(rule, reason=reason or None),
                      lambda p: f"rule {p.rule} resumed; its datasets continue")

    def _load_clicked(self) -> None:
        dataset = self.rerun_dataset.value.strip()

        def fill(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self._say(f"{type(exc).__name__}: {exc}", error=True)
            elif result is None:
                self._say(f"{dataset} has no run yet: give the notebook", error=True)
            else:
                import json

                set_value(self.rerun_notebook, result["notebook"])
                set_value(self.rerun_parameters, json.dumps(result["parameters"], indent=1))
                if result["target"] in self.rerun_target.options:
                    self.rerun_target.value = result["target"]
                self._say(f"filled in from run {result['run_id']} ({result['state']})")

        if not self.worker.run(lambda: self.model.last_run(dataset), fill):
            self._say("still busy with the last action; try again in a moment", error=True)

    def _rerun_clicked(self) -> None:
        dataset, notebook = self.rerun_dataset.value.strip(), self.rerun_notebook.value.strip()
        target, params = self.rerun_target.value, self.rerun_parameters.value
        self._run(lambda: self.model.rerun(dataset, notebook, target=target,
                                           parameters=params),
                  lambda job: f"submitted {notebook} for {dataset} on {target}: job "
                  f"{job.id}, run {job.run_id} (see the Jobs tab)")
