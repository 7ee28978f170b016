"""What a live decision does, in the worker thread of :class:`spotkit.flows.LiveTriggers`.

:class:`ActionRunner` records each decision (a live point of kind ``"decision:<trigger>"``
at the frame it was taken, with its reason), runs the actions, and records what each did
in the same point (recorded again, it replaces the first: ``status`` is ``"done"`` when every
action has an outcome). Actions:

* ``notebook``: :func:`spotkit.submit` on the rules' target, the window's frames passed as
  the notebook's ``frames`` parameter, the decision recorded in the run's context;
* ``priority``: :meth:`spotkit.flows.Journal.prioritize` (those frames are moved first);
* ``notify``: one message through the channel of an alert of the ``alerts`` section (its
  quiet periods apply; the trigger's cooldown is the de-duplication);
* ``hook``: an HTTP POST of the decision as JSON, or a command with the JSON on its
  standard input (no shell), each with a timeout;
* ``fit``: the ``fit`` function given to LiveTriggers (:func:`spotkit.live.fit_latest`),
  or, with a target, the notebook ``saxs_fit`` submitted there; of the window's frames
  ``(first, last)``, or without a window of the frame the decision was taken at.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spotkit.flows._rules_live import FIT_NOTEBOOK, WINDOW_PARAMETER, fit_parameters
from spotkit.flows._rules_live_objects import LiveAction

if TYPE_CHECKING:
    from spotkit.flows._triggers import Decision, LiveTriggers

__all__ = ["ActionRunner"]

log = logging.getLogger("spotkit.flows._triggers")


def _value(x: Any) -> float | str | None:
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, int | float):
        return float(x)
    return str(x)


class ActionRunner:
    """Runs decisions' actions for one :class:`~spotkit.flows.LiveTriggers` (one thread)."""

    def __init__(self, owner: LiveTriggers, *, facts: Mapping[str, Any],
                 fit: Callable[..., Any] | None, journal: Any) -> None:
        self.owner = owner
        self.facts = dict(facts)
        self.fit = fit
        self._journal = journal
        self._own_journal = False
        self.outcomes: list[dict[str, Any]] = []
        self._values: dict[tuple[int, str], dict[str, Any]] = {}
        self.jobs: list[Any] = []
        data = owner.rules.to_dict()
        self.default_target = (data.get("defaults") or {}).get("target")
        self.alerts = {a.name: a for a in getattr(owner.rules, "alerts", ())}

    # -- one job ------------------------------------------------------------------------

    def run(self, frame: int, decisions: list[Decision], work: list[tuple[Decision, LiveAction]],
            *, last: int | None = None) -> None:
        """Record ``decisions`` (taken at ``frame``), then run ``work`` and record what each
        action did in its decision's point (``last``: the series' last frame, when windows
        are cut there)."""
        from spotkit.catalog import LivePoint

        for d in decisions:
            values = d.as_values()
            values["status"] = "deciding"
            self._values[(d.frame, d.trigger)] = values
        if decisions:
            self.owner._record([LivePoint(d.frame, d.kind, dict(self._values[(d.frame, d.trigger)]))
                                for d in decisions])
            for d in decisions:
                log.info("live decision for %s at frame %d: %s: %s", self.owner.dataset_id,
                         frame, d.trigger, d.reason)
        changed: dict[tuple[int, str], Decision] = {}
        for d, action in work:
            outcome = self.act(d, action, last=last)
            self.outcomes.append(outcome)
            values = self._values.setdefault((d.frame, d.trigger), d.as_values())
            values[action.name] = f"{outcome['status']}: {outcome['detail']}"
            if outcome.get("run_id"):
                values[f"{action.name}_run_id"] = outcome["run_id"]
            changed[(d.frame, d.trigger)] = d
        points = []
        for key, d in changed.items():
            values = self._values[key]
            waiting = [a for a in d.actions if a not in values]
            values["status"] = f"waiting for frames ({', '.join(waiting)})" if waiting else "done"
            points.append(LivePoint(d.frame, d.kind, dict(values)))
            if not waiting:
                del self._values[key]
        if points:
            self.owner._record(points)

    def act(self, decision: Decision, action: LiveAction, *,
            last: int | None = None) -> dict[str, Any]:
        """Run one action; never raises (a failure is the outcome, logged)."""
        window = decision.window(action, last)
        out: dict[str, Any] = {"trigger": decision.trigger, "action": action.name,
                               "kind": action.kind, "frame": decision.frame,
                               "window": window, "run_id": None}
        try:
            status, detail, run_id = getattr(self, f"_{action.kind}")(decision, action, window)
        except Exception as exc:
            status, detail, run_id = "failed", f"{type(exc).__name__}: {exc}", None
            log.warning("live trigger %s, action %s for %s failed: %s", decision.trigger,
                        action.name, self.owner.dataset_id, detail)
        else:
            log.info("live trigger %s, action %s for %s: %s (%s)", decision.trigger,
                     action.name, self.owner.dataset_id, status, detail)
        out.update(status=status, detail=detail, run_id=run_id)
        return out

    # -- the actions ----------------------------------------------------------------------

    def _context(self, decision: Decision, action: LiveAction,
                 window: tuple[int, int] | None) -> dict[str, Any]:
        return {"live": {"trigger": decision.trigger, "action": action.name,
                         "on": decision.on, "frame": decision.frame, "reason": decision.reason,
                         "window": list(window) if window else None,
                         "rules_version": self.owner.rules.version}}

    def _submit(self, notebook: str, decision: Decision, action: LiveAction,
                window: tuple[int, int] | None, target_name: str | None,
                parameters: dict[str, Any]) -> tuple[str, str, str | None]:
        from spotkit.compute import submit

        context = self._context(decision, action, window)
        adopted = self._started(context["live"])
        if adopted is not None:  # submitted before a restart: not twice
            return "submitted", f"run {adopted} (started before a restart)", adopted
        name = target_name or self.default_target
        if name is None:
            raise ValueError("no target: name one in the action or set defaults.target")
        target = self.owner.rules.target(name)
        params = dict(parameters)
        if window is not None:
            params[WINDOW_PARAMETER] = list(window)
        job = submit(notebook, self.owner.dataset_id, target=target, parameters=params,
                     catalog=self.owner.catalog,
                     job_name=f"spotkit-live-{decision.trigger}-{action.name}",
                     context=context)
        self.jobs.append(job)
        return "submitted", f"run {job.run_id} on {name} (job {job.id})", job.run_id

    def _started(self, live: Mapping[str, Any]) -> str | None:
        """The run this very action of this very decision started already, if any."""
        for run in self.owner.catalog.runs(dataset_id=self.owner.dataset_id, limit=None):
            got = (run.context or {}).get("live") or {}
            if all(got.get(k) == live[k] for k in ("trigger", "action", "frame")):
                return str(run.id)
        return None

    def _notebook(self, decision: Decision, action: LiveAction,
                  window: tuple[int, int] | None) -> tuple[str, str, str | None]:
        opts = action.options
        return self._submit(opts.get("notebook_path") or opts["path"], decision, action,
                            window, opts.get("target"),
                            dict(opts.get("parameters") or {}))

    def _fit(self, decision: Decision, action: LiveAction,
             window: tuple[int, int] | None) -> tuple[str, str, str | None]:
        opts = action.options
        # without a window: the frame it was decided at (not whatever is newest when the
        # worker gets to it), so each fit is of, and recorded on, its own frame
        frames = window if window is not None else (decision.frame, decision.frame)
        if opts.get("target"):
            return self._submit(FIT_NOTEBOOK, decision, action, frames, opts["target"],
                                fit_parameters(opts))
        assert self.fit is not None  # LiveTriggers refuses a local fit without one
        options = {k: opts[k] for k in ("params", "free", "method") if opts.get(k) is not None}
        if opts.get("q_range") is not None:
            options["q_range"] = tuple(opts["q_range"])
        result = self.fit(self.owner.catalog, self.owner.dataset_id, model=opts["model"],
                          frames=frames, **options)
        chi2 = getattr(result, "chi2", None)
        return "done", (f"fitted {opts['model']}" + (f", chi2 {chi2:.3g}" if isinstance(
            chi2, int | float) else "")), None

    def journal(self) -> Any:
        if self._journal is None:
            from spotkit.flows._journal import Journal

            cat = self.owner.catalog
            self._journal = Journal(cat.path)  # a SQLite file or the postgresql:// URL
            self._own_journal = True
        return self._journal

    def priorities(self) -> list[dict[str, Any]]:
        return self.journal().priorities(self.owner.dataset_id)

    def _path(self) -> str | None:
        try:
            primary = self.owner.catalog[self.owner.dataset_id].primary_file
        except Exception:
            return None
        return str(primary.registered_path) if primary is not None else None

    def _priority(self, decision: Decision, action: LiveAction,
                  window: tuple[int, int] | None) -> tuple[str, str, str | None]:
        level = int(action.options.get("level", 10))
        self.journal().prioritize(
            self.owner.dataset_id, priority=level, frames=window, path=self._path(),
            reason=f"live trigger {decision.trigger!r}: {decision.reason}",
            by=f"live trigger {decision.trigger}")
        where = f"frames {window[0]}-{window[1]}" if window else "the whole series"
        return "done", f"{where} at priority {level}", None

    def _message(self, decision: Decision) -> str:
        where = " ".join(f"{k} {self.facts[k]}" for k in ("beamline", "sample")
                         if self.facts.get(k))
        return (f"series {self.owner.dataset_id}{f' ({where})' if where else ''}: "
                f"{decision.reason} [live trigger {decision.trigger}]")

    def _notify(self, decision: Decision, action: LiveAction,
                window: tuple[int, int] | None) -> tuple[str, str, str | None]:
        from spotkit.monitor import Finding

        name = action.options["alert"]
        alert = self.alerts.get(name)
        if alert is None:  # load_rules refuses this; rules given as objects may not
            raise KeyError(f"no alert {name!r} in the rules; defined: {sorted(self.alerts)}")
        quiet = alert.quiet_at(decision.time)
        if quiet is not None:
            return "skipped", f"alert {name} is quiet now ({quiet.describe()})", None
        ev = decision.event
        finding = Finding(
            "change" if decision.on == "onset" else "live", str(ev.get("feature") or "live"),
            time=decision.time, message=self._message(decision),
            severity=action.options.get("severity", "info"),
            beamline=self.facts.get("beamline"), dataset_id=self.owner.dataset_id,
            confidence=(float(ev["confidence"]) if ev.get("confidence") is not None
                        and 0 <= float(ev["confidence"]) <= 1 else None),
            detail={"trigger": decision.trigger, "frame": decision.frame,
                    "onset": ev.get("onset"), "window": list(window) if window else None})
        alert.channel.send([finding], rule=name)
        return "sent", f"through alert {name} ({alert.channel.kind})", None

    def payload(self, decision: Decision, window: tuple[int, int] | None) -> dict[str, Any]:
        """The JSON a hook receives."""
        return {"dataset_id": self.owner.dataset_id, "trigger": decision.trigger,
                "on": decision.on, "frame": decision.frame, "reason": decision.reason,
                "anchor": decision.anchor, "window": list(window) if window else None,
                "event": {k: _value(v) for k, v in decision.event.items()},
                "time": decision.time,
                **{k: self.facts.get(k) for k in ("beamline", "proposal", "sample")}}

    def _hook(self, decision: Decision, action: LiveAction,
              window: tuple[int, int] | None) -> tuple[str, str, str | None]:
        opts = action.options
        timeout = float(opts.get("timeout", 5.0))
        body = json.dumps(self.payload(decision, window), default=str).encode()
        if opts.get("command"):
            argv = list(opts["command"])
            proc = subprocess.run(argv, input=body, capture_output=True,
                                  timeout=timeout, check=False)
            if proc.returncode != 0:
                tail = proc.stderr.decode(errors="replace").strip()[-300:]
                raise RuntimeError(f"{Path(argv[0]).name} exited with {proc.returncode}: "
                                   f"{tail or '(nothing on stderr)'}")
            return "done", f"{Path(argv[0]).name} exited 0", None
        url = opts.get("url")
        shown = url.split("?", 1)[0] if url else f"${opts.get('url_env')}"
        if url is None:
            url = os.environ.get(opts["url_env"])
            if not url:
                raise RuntimeError(f"the environment variable {opts['url_env']} (the hook's "
                                   "URL) is not set where spotkit live runs")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"hook URL {shown} must start with http:// or https://")
        request = urllib.request.Request(  # noqa: S310 (http(s) only, checked above)
            url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "spotkit-live"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"hook {shown} answered HTTP {exc.code} {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"hook {shown} failed: {exc}") from None
        if status >= 300:
            raise RuntimeError(f"hook {shown} answered HTTP {status}")
        return "done", f"POST {shown}: HTTP {status}", None

    def close(self) -> None:
        if self._own_journal and self._journal is not None:
            self._journal.close()
            self._journal = None
