"""The watcher's processing: the rules' actions run as notebooks, locally or as batch jobs.

A mixin of :class:`spotkit.flows.Watcher`; a completed run left by a watcher that died is
adopted, a batch job it submitted is followed, a stale local run is closed and run again.
A local action runs in the pass (its process is the watcher's); a batch action's job is
submitted by one pass (its id recorded in the journal) and followed by the next ones, with
one status query per target per pass for all of the watcher's jobs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

from spotkit.errors import (
    JobFailedError,
    JobLostError,
    SubmitError,
)
from spotkit.flows._flow_base import _Waiting, _WatcherBase
from spotkit.flows._journal import Item
from spotkit.flows._outcomes import PassReport, _LeaseLost, _Outage, _RunFailed

logger = logging.getLogger("spotkit.flows._flow")

#: seconds the telemetry read for routing decisions is reused
ROUTE_REFRESH = 2.0


def target_labels(rules, target: str) -> list[str]:
    """How a rules target appears in the telemetry: its name, and its compute target's
    name (its batch jobs record that) unless another target of the rules has the same kind
    (two Slurm targets, a regular and a realtime QOS, both record ``slurm``)."""
    labels = [target]
    kind = rules.targets[target].get("kind")
    if any(s.get("kind") == kind for n, s in rules.targets.items() if n != target):
        return labels
    try:
        name = rules.target(target).name
    except Exception as exc:  # a target that cannot be built here fails when it is used
        logger.debug("routing: no compute name for %s: %s", target, exc)
        return labels
    return labels if name in labels else [*labels, name]


class _ActionSteps(_WatcherBase):
    _routers: dict[str, Any]  # action key: its spotkit.monitor.Router (queue budget)
    _run_targets: dict[str, str]  # run id: the rules target its batch job was sent to
    _route_lock: threading.Lock
    _route_cache: tuple[float, float, Any] | None  # (read at, window, events)
    _targets: dict[str, Any]  # rules target name: its compute target (one poller each)
    _submitting: dict[str, int]  # rules target name: submissions under way now
    _polled: dict[str, Any]  # job id: its JobStatus at this pass's poll
    _deferred: set[str]  # items whose batch target had no free slot in this pass
    _jobs_lock: threading.Lock

    # -- processing -------------------------------------------------------------------

    def _action_step(self, action) -> str:
        return f"processed/{action.key}"

    def _is_local(self, action) -> bool:
        """Whether the action runs in this process (its run dies with the watcher)."""
        kind = (action.target_settings or {}).get("kind", "local")
        return kind == "local" and self.local_in_process

    def _context(self, item: Item, action, route: dict | None = None) -> dict:
        """What a run records about why the flow started it (``Run.context``); ``route``:
        why it runs on its fallback target (or was sent to its own as a probe)."""
        out = {"flow": {**action.provenance(), "item": item.key, "path": str(item.path),
                        "watcher": self.journal.owner}}
        if route is not None:
            out["flow"]["route"] = route
        return out

    # -- routing: a batch queue over its budget sends the action to its fallback ------

    def _router(self, action):
        """The :class:`spotkit.monitor.Router` of an action with a queue-wait budget (made
        on first use, in the state the last ``reroute`` event of the action left)."""
        from spotkit.monitor import Router

        router = self._routers.get(action.key)
        if router is None:
            route = action.route
            router = Router(action.target, route.fallback, budget=route.budget,
                            recover=route.recover, labels=target_labels(self.rules,
                                                                        action.target))
            last = self._route_events(router.window)
            mine = last[(last["step"] == "reroute") & (last["target"] == action.target)]
            for t, detail in zip(mine["time"], mine["detail"], strict=True):
                if isinstance(detail, dict) and detail.get("action") == action.key:
                    router.rerouted = detail.get("direction") == "away"
                    router.since = float(t)
            if not self.telemetry.enabled:
                logger.warning("%s has a queue_budget, but telemetry is off "
                               "(SPOTKIT_TELEMETRY=off): the queue wait of %s is not "
                               "measured and the action stays there", action.key,
                               action.target)
            self._routers[action.key] = router
        return router

    def _route_events(self, window: float):
        """The telemetry of the last ``window`` seconds (read at most every few seconds);
        the events of the batch jobs this watcher submitted carry the rules' target name
        (a job records its compute target's, which two targets of one kind share)."""
        from spotkit.monitor import events

        now = time.time()
        cached = self._route_cache
        if cached is None or now - cached[0] > ROUTE_REFRESH or cached[1] < window:
            df = events(self.catalog, since=now - window)
            if len(df) and self._run_targets:
                named = df["run_id"].map(self._run_targets)
                df["target"] = named.where(named.notna(), df["target"])
            cached = self._route_cache = (now, window, df)
        return cached[2]

    def _routed(self, item: Item, ds, action):
        """``(action, route)``: the action on the target its queue budget allows now, and
        the decision as the run's context records it (None: the action has no budget)."""
        if action.route is None:
            return action, None
        try:
            with self._route_lock:
                router = self._router(action)
                now = time.time()
                decision = router.decide(self._route_events(router.window), now)
                if decision.switched:
                    self._route_switched(item, ds, action, decision, now)
        except Exception as exc:  # routing never stops the flow: the action's own target
            logger.warning("routing of %s failed, using its target %s: %s", action.key,
                           action.target, exc)
            return action, None
        route = decision.as_dict()
        if decision.target == action.target:
            # a probe, or the first run back: its context says why it runs here
            return action, (route if decision.rerouted or decision.switched else None)
        settings = dict(self.rules.targets[decision.target])
        return dataclasses.replace(action, target=decision.target, target_settings=settings,
                                   concurrency=int(settings.get("concurrency", 1))), route

    def _route_switched(self, item: Item, ds, action, decision, now: float) -> None:
        """Record and log a switch (the monitor reports it as a ``reroute`` finding)."""
        self._route_cache = None  # the next decision reads the event it wrote
        direction = "away" if decision.rerouted else "back"
        self._event(item, "reroute", time=now, dataset_id=ds.id, beamline=ds.beamline,
                    target=action.target, value=decision.view.wait,
                    detail={"action": action.key, "direction": direction,
                            "fallback": decision.fallback, "budget": decision.budget,
                            "reason": decision.reason, **decision.view.as_dict()},
                    key=f"route|{action.key}|{now:.6f}")
        self.telemetry.flush()
        self._log(logging.WARNING if decision.rerouted else logging.INFO, "reroute", item,
                  action=action.key, to=decision.target, reason=decision.reason)

    def _as_run(self, action, run):
        """The action on the target an earlier run of it used (it may have been routed)."""
        used = ((run.context or {}).get("flow") or {}).get("target")
        if not used or used == action.target or used not in self.rules.targets:
            return action
        settings = dict(self.rules.targets[used])
        return dataclasses.replace(action, target=used, target_settings=settings,
                                   concurrency=int(settings.get("concurrency", 1)))

    def _our_runs(self, item: Item, ds, action) -> list:
        """Catalog runs the flow started for this action on this dataset (any watcher)."""
        runs = self.catalog.runs(dataset_id=ds.id, limit=None)
        mine = []
        for r in runs:
            flow = (r.context or {}).get("flow") or {}
            if (flow.get("item") == item.key and flow.get("rule") == action.rule
                    and flow.get("action") == action.name):
                mine.append(r)
        return mine

    def _run_action(self, item: Item, ds, action) -> None:
        """Run one action for a dataset, or submit its batch job, or follow that job.

        Returns when the action is done (its step recorded); raises :class:`_Waiting`
        while its batch job is in flight (or its target has no free slot), and a failure
        otherwise. A batch job is never waited for here: a pass submits it, records its id
        in the journal and goes on; later passes (:meth:`_poll_followed`: one scheduler
        query per target) see it end, and register its run's products.
        """
        step = self._action_step(action)
        rec = self.journal.step(item.key, step)
        if rec is not None and rec.state == "done":
            return
        if rec is not None and rec.state == "running" and (rec.result or {}).get("job"):
            self._check_job(item, ds, action, rec)  # submitted by an earlier pass or watcher
            return
        if rec is not None:
            # a previous attempt (perhaps by a watcher that died): look at its effect first
            for run in self._our_runs(item, ds, action):
                if run.state == "completed":
                    self.journal.finish_step(item.key, step, result={
                        "run_id": run.id, "outputs": list(run.outputs), "adopted": True,
                        "provenance": self._as_run(action, run).provenance()})
                    self._log(logging.INFO, "adopted-run", item, step=step, run=run.id,
                              dataset=ds.id)
                    return
            for run in self._our_runs(item, ds, action):
                if run.state not in ("queued", "running"):
                    continue
                if self._is_local(self._as_run(action, run)):
                    # its process died with the previous watcher: close it, run anew
                    self.catalog.finish_run(
                        run.id, state="cancelled", error_name="WatcherDied",
                        error_message="the watcher running it stopped; the flow runs it again")
                    self._log(logging.WARNING, "cancelled-stale-run", item, run=run.id)
                else:
                    self._adopt_remote(item, ds, self._as_run(action, run), run.id)
        action, route = self._routed(item, ds, action)
        local = self._is_local(action)
        if not local:
            self._submit(item, ds, action, route)  # raises _Waiting: followed from now on
        sem = self._semaphore(action.target, action.concurrency)
        # a local action waits from when the dataset was ready for it (its data in place,
        # or its previous action done, in this pass): behind the other datasets' earlier
        # stages ("previews first") and for its target's slot
        queued, result = self._ready.get(item.key, time.time()), None
        try:
            with sem:
                result = self._step(item, step,
                                    lambda: self._execute(item, ds, action, route),
                                    provenance=action.provenance())
        except BaseException as exc:
            self._queued_event(item, ds, action, queued, getattr(exc, "run_id", None))
            raise
        self._queued_event(item, ds, action, queued, (result or {}).get("run_id"))
        self._ready[item.key] = time.time()

    def _queued_event(self, item: Item, ds, action, queued: float, run_id: str | None) -> None:
        """A local action waited from ``queued`` for its turn and its target's slot (the
        run's own ``started`` event, recorded by run_notebook, says when it got them)."""
        if run_id is None:
            return
        self._event(item, "queued", time=queued, dataset_id=ds.id, beamline=ds.beamline,
                    target=action.target, run_id=run_id,
                    detail={"rule": action.rule, "action": action.name, "stage": action.stage},
                    key=f"run|{run_id}|queued")

    def _execute(self, item: Item, ds, action, route: dict | None = None):
        """Run a local action in this process (a batch action is :meth:`_submit`'s)."""
        from spotkit.runs import run_notebook

        self._fault("run.before")
        self._fault("run.started")
        res = run_notebook(action.notebook_path, ds.id, parameters=dict(action.parameters),
                           catalog=self.catalog, target=action.target,
                           cell_timeout=self.cell_timeout,
                           context=self._context(item, action, route))
        self._fault("run.after")
        return {"run_id": res.run_id, "outputs": [o.id for o in res.outputs],
                "provenance": action.provenance()}, 0

    # -- batch jobs: submitted by one pass, followed by the next ones -----------------

    def _target(self, name: str):
        """The compute target of a rules target: one object per name for the watcher's
        life, so that one poller asks the scheduler about all of its jobs at once."""
        with self._jobs_lock:
            target = self._targets.get(name)
            if target is None:
                target = self._targets[name] = self.rules.target(name)
            return target

    def _submit(self, item: Item, ds, action, route: dict | None) -> None:
        """Submit the action's batch job, record its id in the journal, raise _Waiting.

        The target's ``concurrency`` bounds the jobs this watcher has in flight there: at
        the bound, the dataset waits for a later pass (nothing is submitted).
        """
        from spotkit.compute import submit

        step = self._action_step(action)
        with self._jobs_lock:
            busy = self._submitting.get(action.target, 0) + sum(
                1 for f in self._followed.values() if f["target"] == action.target)
            if busy >= action.concurrency:
                self._deferred.add(item.key)
                raise _Waiting(f"{action.target} has {busy} job(s) in flight (concurrency "
                               f"{action.concurrency})")
            self._submitting[action.target] = self._submitting.get(action.target, 0) + 1
        try:
            if not self.journal.acquire(item.key):
                raise _LeaseLost(item.key)
            self.journal.start_step(item.key, step, result=action.provenance())
            t0 = time.time()
            try:
                self._fault("run.before")
                try:
                    job = submit(action.notebook_path, ds.id, target=self._target(action.target),
                                 parameters=dict(action.parameters), catalog=self.catalog,
                                 context=self._context(item, action, route))
                except SubmitError as exc:
                    raise _Outage(f"target {action.target}: {exc}") from exc
                info = {"id": job.id, "target": action.target, "run_id": job.run_id,
                        "submitted": t0, "watcher": self.journal.owner}
                with self._jobs_lock:
                    self._followed[job.run_id or job.id] = {**info, "job": job,
                                                           "item": item.key}
                if job.run_id is not None:
                    self._run_targets[job.run_id] = action.target
                # the job id is in the catalog run (spotkit.submit) and now in the journal:
                # a watcher killed from here on follows this job, it never submits another
                self.journal.finish_step(item.key, step, state="running",
                                         result={"job": info, "provenance": action.provenance()})
                self._fault("run.started")
            except BaseException as exc:
                self.journal.finish_step(item.key, step, state="failed",
                                         seconds=time.time() - t0, error=str(exc))
                raise
        finally:
            with self._jobs_lock:
                self._submitting[action.target] -= 1
        self._log(logging.INFO, "submitted", item, step=step, job=job.id, run=job.run_id,
                  target=action.target, dataset=ds.id)
        raise _Waiting(f"{action.key} submitted as {action.target} job {job.id}")

    def _followed_job(self, info: dict, item: str):
        """The :class:`~spotkit.compute.Job` of a journal record (made once, then kept)."""
        from spotkit.compute import Job

        key = info.get("run_id") or info["id"]
        with self._jobs_lock:
            found = self._followed.get(key)
            if found is not None and found.get("job") is not None:
                return found["job"]
        run = self.catalog.get_run(info["run_id"])
        job = Job.from_run(run, self._target(info["target"]), catalog=self.catalog)
        with self._jobs_lock:
            self._followed[key] = {**info, "job": job, "item": item}
        if run.id:
            self._run_targets[run.id] = info["target"]
        return job

    def _poll_followed(self, items: list[Item]) -> None:
        """Ask each target once about every batch job the journal says ``items`` wait for
        (:func:`spotkit.compute.poll_jobs`); the pass decides on these answers."""
        from spotkit.compute import poll_jobs

        jobs = []
        for item in items:
            try:
                records = self.journal.steps(item.key)
            except Exception as exc:  # the pass meets the same problem and reports it
                logger.debug("journal steps of %s not read: %s", item.key, exc)
                continue
            for rec in records:
                info = (rec.result or {}).get("job")
                if rec.state != "running" or not rec.step.startswith("processed/") or not info:
                    continue
                if info.get("target") not in self.rules.targets or not info.get("run_id"):
                    continue  # its run fails when the step is looked at
                try:
                    job = self._followed_job(info, item.key)
                except Exception as exc:
                    logger.warning("job %s of %s cannot be followed: %s", info.get("id"),
                                   item.path, exc)
                    continue
                jobs.append(job)
        before, self._polled = self._polled, {}
        if not jobs:
            return
        try:
            answer = poll_jobs(jobs)
        except Exception as exc:  # the scheduler is down: the jobs wait for a later pass
            logger.warning("event=outage polling %d job(s) failed: %s", len(jobs), exc)
            return
        self._polled = {job.id: answer[job.id] for job in jobs if job.id in answer}
        changed = [i for i, st in self._polled.items()
                   if i not in before or before[i].state != st.state]
        if changed:
            # the jobs' started/finished events (the shared recorder buffers them) are
            # written now, and the routing decisions of this pass read them: a job that
            # started is not taken for one still waiting in the queue
            from spotkit.monitor import telemetry_for

            try:
                telemetry_for(self.catalog).flush()
            except Exception as exc:  # telemetry never stops the flow
                logger.warning("telemetry: job events not written: %s", exc)
            self._route_cache = None

    def _check_job(self, item: Item, ds, action, rec) -> None:
        """A followed job, as this pass's poll saw it: still in flight (_Waiting), ended
        well (the step is done, its run's products registered by the run), or ended
        badly (raised: counts as a failed attempt)."""
        info = rec.result["job"]
        step = self._action_step(action)
        action = self._on_target(action, info.get("target"))
        if info.get("target") not in self.rules.targets or not info.get("run_id"):
            self.journal.finish_step(item.key, step, state="failed",
                                     error=f"job {info.get('id')} on an unknown target")
            raise _RunFailed(f"{action.key}: job {info.get('id')} was submitted to "
                             f"{info.get('target')!r}, not a target of these rules")
        job = self._followed_job(info, item.key)
        st = self._polled.get(job.id)
        if st is None or not (st.state.finished or job.lost):
            raise _Waiting(f"{action.key}: {action.target} job {job.id} "
                           f"{st.state.value if st is not None else 'not polled yet'}")
        key = info.get("run_id") or info["id"]
        try:
            run = self._ended(job, action)
        except BaseException as exc:
            self.journal.finish_step(item.key, step, state="failed",
                                     seconds=time.time() - float(info.get("submitted") or 0),
                                     error=str(exc))
            raise
        finally:
            self._forget_job(key, job)
        adopted = info.get("watcher") != self.journal.owner
        self.journal.finish_step(item.key, step,
                                 seconds=time.time() - float(info.get("submitted") or 0),
                                 result={"run_id": run.id, "outputs": list(run.outputs),
                                         "job_id": job.id, "adopted": adopted,
                                         "provenance": action.provenance()})
        self._log(logging.INFO, "adopted-run" if adopted else "step", item, step=step,
                  state="done", run=run.id, job=job.id, dataset=ds.id)
        self._ready[item.key] = time.time()

    def _forget_job(self, key: str, job) -> None:
        with self._jobs_lock:
            self._followed.pop(key, None)
        job.target.poller.forget(job.id)

    def _on_target(self, action, target: str | None):
        """The action on the target its job was sent to (it may have been routed)."""
        if not target or target == action.target or target not in self.rules.targets:
            return action
        settings = dict(self.rules.targets[target])
        return dataclasses.replace(action, target=target, target_settings=settings,
                                   concurrency=int(settings.get("concurrency", 1)))

    def _follow(self, job, action):
        """Wait for a batch job (blocking); return its completed run (see :meth:`_ended`)."""
        return self._ended(job, action, wait=True)

    def _ended(self, job, action, *, wait: bool = False):
        """The completed catalog run of a batch job that ended; raise if it did not end well.

        The scheduler's final state is checked, not assumed: a job that failed, was
        cancelled, timed out or was lost by the scheduler leaves its run ``failed`` in the
        catalog (if the job could not record that itself) and raises, which counts as a
        failed attempt of the dataset (retried with a new job, then parked).
        """
        try:
            if wait:
                job.wait(check=True)
            elif job.lost:
                raise JobLostError(job_id=job.id, target=job.target.name,
                                   seconds=job.unknown_grace, run_id=job.run_id)
            else:
                job.check()
        except (JobFailedError, JobLostError) as exc:
            run = self.catalog.get_run(job.run_id)
            if run.state in ("queued", "running"):
                self.catalog.finish_run(run.id, state="failed", error_name=type(exc).__name__,
                                        error_message=str(exc))
            raise
        self._fault("run.after")
        run = self.catalog.get_run(job.run_id)
        if run.state != "completed":
            text = (f"{action.target} job {job.id} ended {job.status().state.value} but its "
                    f"run {run.id} is {run.state}")
            if run.state in ("queued", "running"):
                self.catalog.finish_run(run.id, state="failed", error_name="RunNotRecorded",
                                        error_message=text)
            raise _RunFailed(f"{text}: {run.error_name}: {run.error_message}")
        return run

    def _adopt_remote(self, item: Item, ds, action, run_id: str) -> None:
        """A batch run submitted before a crash, which the journal does not name yet (the
        watcher died between ``sbatch`` and its journal record): follow its job from now
        on (raises _Waiting), or, never submitted, close it (raises)."""
        step = self._action_step(action)
        run = self.catalog.get_run(run_id)
        if not run.job_id:  # died between recording the run and submitting it
            self.catalog.finish_run(run.id, state="cancelled", error_name="WatcherDied",
                                    error_message="the watcher stopped before the job "
                                    "was submitted; the flow submits it again")
            raise _RunFailed(f"run {run_id} of {action.key} on {ds.id} was never "
                             "submitted")
        submitted = run.started_at.timestamp() if run.started_at is not None else time.time()
        info = {"id": run.job_id, "target": action.target, "run_id": run.id,
                "submitted": submitted, "watcher": None}
        self.journal.finish_step(item.key, step, state="running",
                                 result={"job": info, "provenance": action.provenance()})
        self._log(logging.INFO, "following-job", item, run=run.id, job=run.job_id,
                  target=action.target)
        raise _Waiting(f"{action.key}: following {action.target} job {run.job_id}")

    def _in_flight(self, item: Item, action) -> bool:
        """The action's batch job was submitted and is followed (its step says so)."""
        rec = self.journal.step(item.key, self._action_step(action))
        return rec is not None and rec.state == "running" and bool((rec.result or {}).get("job"))

    def following(self) -> list[dict]:
        """The batch jobs this watcher follows now (submitted, not yet seen to end).

        Returns
        -------
        list of dict
            ``{"job_id", "run_id", "target", "item", "submitted", "state"}`` per job;
            ``state`` as the last poll saw it (``"PENDING"``, ``"RUNNING"``...).
        """
        with self._jobs_lock:
            followed = list(self._followed.values())
        out = []
        for f in followed:
            st = self._polled.get(f["id"])
            out.append({"job_id": f["id"], "run_id": f.get("run_id"), "target": f["target"],
                        "item": f.get("item"), "submitted": f.get("submitted"),
                        "state": st.state.value if st is not None else "PENDING"})
        return out

    def _process(self, item: Item, ds, stage: str, report: PassReport) -> bool:
        """Run one stage's actions for a dataset; return False if it stopped on a failure."""
        for action in self.rules.actions_for(ds):
            if action.stage != stage:
                continue
            try:
                # a paused rule starts nothing new; a job already in flight is followed
                if not self._in_flight(item, action) and self._rule_paused(item, action,
                                                                           report):
                    return False
                self._run_action(item, ds, action)
            except BaseException as exc:
                self._failed(item, exc, report, max_attempts=action.retry.attempts,
                             retry=action.retry, step=self._action_step(action))
                return False
        return True

    def _rule_paused(self, item: Item, action, report: PassReport) -> bool:
        """Whether the action's rule is paused (:func:`spotkit.flows.pause_rule`): then the
        dataset waits for it (``pending``, not failed nor counted; the lease let go) and
        continues on the first pass after :func:`spotkit.flows.resume_rule`."""
        from spotkit.flows._control import PAUSE_RECHECK, paused_rules

        pause = paused_rules(self.journal).get(action.rule)
        step = self._action_step(action)
        if pause is None or self.journal.is_done(item.key, step):
            return False
        self.journal.finish_step(item.key, step, state="pending", error=pause.describe())
        self.journal.update_item(item.key, state="pending", last_error=pause.describe(),
                                 next_attempt=time.time() + PAUSE_RECHECK)
        self._let_go(item)
        report.skipped.append(str(item.path))
        self._log(logging.INFO, "rule-paused", item, step=step, reason=pause.reason)
        return True

    def _finish(self, item: Item, ds, report: PassReport) -> None:
        self._fault("done.before")
        # the "done" step's seconds: from discovery to done (the dataset's whole latency)
        self.journal.finish_step(item.key, "done", nbytes=item.size,
                                 seconds=time.time() - item.discovered_at,
                                 result={"dataset_id": ds.id})
        self.journal.update_item(item.key, state="done", last_error=None)
        self._let_go(item)
        self._fault("done.after")
        report.done.append(ds.id)
        self._event(item, "done", dataset_id=ds.id, beamline=ds.beamline, nbytes=item.size,
                    duration=time.time() - item.discovered_at, outcome="ok",
                    key=f"flow|{item.key}|done")
        self._labels.pop(item.key, None)
        self._ready.pop(item.key, None)
        self._log(logging.INFO, "done", item, dataset=ds.id,
                  seconds=time.time() - item.discovered_at, bytes=item.size)
        # an earlier, broken version of the same file (quarantined, parked) is history now
        for old in self.journal.supersede(item.path, by_key=item.key, dataset_id=ds.id):
            if old.dataset_id:
                self._set_aside(old.dataset_id, "superseded",
                                f"a good copy of {item.path} was processed as {ds.id}")
