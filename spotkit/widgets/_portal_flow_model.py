"""The portal's Flow panel without widgets: the flow's status as rows, and its actions.

:class:`FlowPanelModel` reads the flow's status in one library call per refresh
(:func:`spotkit.flows.flow_status`: one statement) and turns it into rows of plain values;
its actions are public library calls: :meth:`~spotkit.flows.Journal.retry` and
:meth:`~spotkit.flows.Journal.forget` for a parked item, :func:`spotkit.flows.pause_rule`
and :func:`~spotkit.flows.resume_rule` for a rule, :func:`spotkit.submit` to run a
notebook again with new parameters on a target. A read-only model refuses every action.
No ipywidgets here: the view is :class:`spotkit.widgets._portal_flow.FlowPanel`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from spotkit.errors import SpotkitError
from spotkit.flows import STATES, FlowStatus, RecentError, flow_status

logger = logging.getLogger(__name__)

__all__ = ["ACTION_COLUMNS", "BEAMLINE_COLUMNS", "FlowPanelModel", "ReadOnlyError"]

#: The per-beamline table: (key, heading).
BEAMLINE_COLUMNS = (("beamline", "beamline"), ("pending", "pending"),
                    ("running", "running"), ("failed", "failed"), ("parked", "parked"),
                    ("done", "done"), ("per_hour", "done/h"))
#: The per-rule table: (key, heading).
ACTION_COLUMNS = (("beamline", "beamline"), ("rule", "rule"), ("action", "action"),
                  ("pending", "waiting"), ("running", "running"), ("failed", "failed"),
                  ("parked", "parked"), ("done", "done"), ("per_hour", "done/h"),
                  ("paused", "paused"))


class ReadOnlyError(SpotkitError):
    """An action was asked of a read-only panel (the phone view)."""


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} d ago"


class FlowPanelModel:
    """The flow's status per beamline and rule action, and the operator's actions.

    Parameters
    ----------
    catalog : Catalog
        The catalog the watchers use (its database holds the journal and the pauses).
    readonly : bool
        Refuse every action (:class:`ReadOnlyError`).
    rules : Rules or path-like, optional
        The facility's rules: their targets are offered for a re-run (else a local one),
        and a paused rule's name is checked against them.
    targets : dict, optional
        ``{name: Target}`` offered for a re-run (in addition to the rules' targets).
    user : str, optional
        Who acts (recorded with retries, pauses...; default: the login name).
    window : float
        Seconds back that the rule actions' ``done`` counts go.
    errors : int
        How many recent errors to show.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.catalog import open_catalog
    >>> from spotkit.flows import Journal
    >>> cat = open_catalog(pathlib.Path(tempfile.mkdtemp()) / "catalog.db")
    >>> with Journal(cat.path) as journal:
    ...     _ = journal.discover("k1", "/inbox/scan.h5", size=1, mtime_ns=1)
    ...     journal.record_failure("k1", "OSError: disk", park=True)
    >>> model = FlowPanelModel(cat, user="ops")
    >>> status = model.fetch()                       # one read of the catalog
    >>> [(r["beamline"], r["parked"]) for r in model.beamline_rows(status)]
    [('?', 1)]
    >>> [e["error"] for e in model.error_rows(status)]
    ['OSError: disk']
    >>> model.retry("/inbox/scan.h5", reason="disk replaced").state
    'pending'
    >>> model.pause("tomo", reason="detector swap").by
    'ops'
    >>> cat.close()
    """

    def __init__(self, catalog: Any, *, readonly: bool = False, rules: Any = None,
                 targets: Mapping[str, Any] | None = None, user: str | None = None,
                 window: float = 86400.0, errors: int = 20):
        if rules is not None and not hasattr(rules, "targets"):
            from spotkit.flows import load_rules

            rules = load_rules(rules)
        self.catalog = catalog
        self.readonly = bool(readonly)
        self.rules = rules
        self.extra_targets = dict(targets or {})
        self.user = user
        self.window = float(window)
        self.errors = int(errors)
        self.last: FlowStatus | None = None

    # -- reading ----------------------------------------------------------------------

    def fetch(self) -> FlowStatus:
        """The flow's status now: one statement on the catalog database (no write)."""
        status = flow_status(self.catalog, window=self.window, errors=self.errors)
        self.last = status
        return status

    @staticmethod
    def beamline_rows(status: FlowStatus) -> list[dict[str, Any]]:
        """One row per beamline: datasets per state and those done in the last hour."""
        rows = []
        for beamline, counts in sorted(status.beamlines.items()):
            row: dict[str, Any] = {"beamline": beamline}
            row.update({s: counts.get(s, 0) for s in STATES})
            row["per_hour"] = status.throughput.get(beamline, 0)
            rows.append(row)
        return rows

    @staticmethod
    def action_rows(status: FlowStatus) -> list[dict[str, Any]]:
        """One row per beamline and rule action (``pending``: waiting for it, a paused
        rule's held datasets included); a paused rule with nothing in the journal yet has
        a row of its own."""
        rows = []
        for a in status.actions:
            pause = status.paused.get(a.rule)
            rows.append({"beamline": a.beamline, "rule": a.rule, "action": a.action,
                         **a.counts, "per_hour": a.last_hour,
                         "paused": pause.describe() if pause else ""})
        seen = {a.rule for a in status.actions}
        for rule, pause in sorted(status.paused.items()):
            if rule not in seen:
                rows.append({"beamline": "–", "rule": rule, "action": "–",
                             "pending": 0, "running": 0, "failed": 0, "parked": 0,
                             "done": 0, "per_hour": 0, "paused": pause.describe()})
        return rows

    @staticmethod
    def error_rows(status: FlowStatus) -> list[dict[str, Any]]:
        """The newest failed or parked datasets: key, path, dataset, state, attempts,
        error and how long ago."""
        return [{"key": e.key, "path": e.path, "dataset_id": e.dataset_id,
                 "beamline": e.beamline, "state": e.state, "attempts": e.attempts,
                 "error": e.error or "", "ago": _age(max(0.0, status.at - e.at))}
                for e in status.errors]

    @staticmethod
    def paused_rows(status: FlowStatus) -> list[dict[str, Any]]:
        """The paused rules: rule, reason, by, since (local time)."""
        return [{"rule": p.rule, "reason": p.reason, "by": p.by or "",
                 "since": time.strftime("%Y-%m-%d %H:%M", time.localtime(p.since))}
                for p in status.paused.values()]

    def rule_names(self, status: FlowStatus | None = None) -> list[str]:
        """Rules one can pause: those of the rules file, else those seen in the journal."""
        if self.rules is not None:
            return [r.name for r in self.rules.rules]
        status = status or self.last
        return status.rules() if status is not None else []

    def error(self, key: str) -> RecentError | None:
        """The recent error of one item (from the last fetch)."""
        for e in (self.last.errors if self.last else ()):
            if e.key == key:
                return e
        return None

    # -- actions ----------------------------------------------------------------------

    def _writable(self, what: str) -> None:
        if self.readonly:
            raise ReadOnlyError(f"this portal is read-only: {what} is not allowed here; "
                                "open the portal in JupyterLab (spotkit.portal()) to act")

    def _journal(self):
        from spotkit.flows import Journal

        return Journal(self.catalog.path)

    def retry(self, item: str, *, reason: str):
        """Put a parked or failed item back in the queue (:meth:`Journal.retry`)."""
        self._writable("retrying an item")
        with self._journal() as journal:
            return journal.retry(item, reason=reason, by=self.user)

    def forget(self, item: str, *, reason: str):
        """Set an item aside for good (:meth:`Journal.forget`)."""
        self._writable("forgetting an item")
        with self._journal() as journal:
            return journal.forget(item, reason=reason, by=self.user)

    def pause(self, rule: str, *, reason: str):
        """Pause a rule (:func:`spotkit.flows.pause_rule`)."""
        from spotkit.flows import pause_rule

        self._writable("pausing a rule")
        return pause_rule(self.catalog, rule, reason=reason, by=self.user, rules=self.rules)

    def resume(self, rule: str, *, reason: str | None = None):
        """Resume a paused rule (:func:`spotkit.flows.resume_rule`)."""
        from spotkit.flows import resume_rule

        self._writable("resuming a rule")
        return resume_rule(self.catalog, rule, reason=reason, by=self.user)

    # -- re-running a notebook ----------------------------------------------------------

    def target_names(self) -> list[str]:
        """Targets offered for a re-run: the rules' targets and those given, else local."""
        names = list(self.rules.targets) if self.rules is not None else []
        names += [n for n in self.extra_targets if n not in names]
        return names or ["local"]

    def target(self, name: str):
        """The compute target of that name (:meth:`Rules.target`, or one given)."""
        if name in self.extra_targets:
            return self.extra_targets[name]
        if self.rules is not None and name in self.rules.targets:
            return self.rules.target(name)
        if name == "local":
            from spotkit.compute import Local

            return self.extra_targets.setdefault("local", Local())
        raise ValueError(f"unknown target {name!r}; choose one of {self.target_names()}")

    def last_run(self, dataset_id: str) -> dict[str, Any] | None:
        """What the newest run of a dataset ran: ``notebook``, ``parameters``, ``target``
        (to start a re-run from; None if it never ran)."""
        runs = self.catalog.runs(dataset_id=dataset_id, limit=1)
        if not runs:
            return None
        run = runs[0]
        return {"run_id": run.id, "notebook": run.notebook,
                "parameters": dict(run.parameters or {}), "target": run.target,
                "state": run.state}

    @staticmethod
    def parse_parameters(text: str | Mapping | None) -> dict[str, Any]:
        """Parameters from a JSON object (the form's text) or a mapping."""
        if text is None or (isinstance(text, str) and not text.strip()):
            return {}
        if isinstance(text, Mapping):
            return dict(text)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"parameters must be a JSON object like {{\"n_slices\": 3}}: "
                             f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
        if not isinstance(value, dict):
            raise ValueError(f"parameters must be a JSON object (name: value), not "
                             f"{type(value).__name__}")
        return value

    def rerun(self, dataset_id: str, notebook: str, *, target: str = "local",
              parameters: str | Mapping | None = None):
        """Run a notebook for a dataset on a target (:func:`spotkit.submit`); return the Job.

        The notebook's parameters are checked before anything is submitted (an unknown
        name is refused by :func:`spotkit.submit`).
        """
        from spotkit.compute import submit

        self._writable("running a notebook")
        if not dataset_id or not notebook:
            raise ValueError("give the dataset and the notebook to run")
        params = self.parse_parameters(parameters)
        job = submit(notebook, dataset_id, target=self.target(target), parameters=params,
                     catalog=self.catalog,
                     context={"portal": {"by": self.user, "action": "re-run"}})
        logger.info("portal: %s re-ran %s on %s (%s job %s)", self.user or "someone",
                    notebook, dataset_id, target, job.id)
        return job
