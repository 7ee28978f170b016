"""The watcher's processing: the rules' actions run as notebooks, locally or as batch jobs.

A mixin of :class:`spotkit.flows.Watcher`; a completed run left by a watcher that died is
adopted, a batch job it submitted is followed, a stale local run is closed and run again.
"""

from __future__ import annotations

import logging
import time

from spotkit.errors import (
    JobFailedError,
    JobLostError,
    SubmitError,
)
from spotkit.flows._flow_base import _WatcherBase
from spotkit.flows._journal import Item
from spotkit.flows._outcomes import PassReport, _Outage, _RunFailed

logger = logging.getLogger("spotkit.flows._flow")


class _ActionSteps(_WatcherBase):
    # -- processing -------------------------------------------------------------------

    def _action_step(self, action) -> str:
        return f"processed/{action.key}"

    def _is_local(self, action) -> bool:
        """Whether the action runs in this process (its run dies with the watcher)."""
        kind = (action.target_settings or {}).get("kind", "local")
        return kind == "local" and self.local_in_process

    def _context(self, item: Item, action) -> dict:
        """What a run records about why the flow started it (``Run.context``)."""
        return {"flow": {**action.provenance(), "item": item.key, "path": str(item.path),
                         "watcher": self.journal.owner}}

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
        step = self._action_step(action)
        rec = self.journal.step(item.key, step)
        if rec is not None and rec.state == "done":
            return
        local = self._is_local(action)
        if rec is not None:
            # a previous attempt (perhaps by a watcher that died): look at its effect first
            for run in self._our_runs(item, ds, action):
                if run.state == "completed":
                    self.journal.finish_step(item.key, step, result={
                        "run_id": run.id, "outputs": list(run.outputs), "adopted": True,
                        "provenance": action.provenance()})
                    self._log(logging.INFO, "adopted-run", item, step=step, run=run.id,
                              dataset=ds.id)
                    return
            for run in self._our_runs(item, ds, action):
                if run.state not in ("queued", "running"):
                    continue
                if local:
                    # its process died with the previous watcher: close it, run anew
                    self.catalog.finish_run(
                        run.id, state="cancelled", error_name="WatcherDied",
                        error_message="the watcher running it stopped; the flow runs it again")
                    self._log(logging.WARNING, "cancelled-stale-run", item, run=run.id)
                else:
                    self._wait_remote(item, ds, action, run.id)
                    return
        sem = self._semaphore(action.target, action.concurrency)
        # a local action waits from when the dataset was ready for it (its data in place,
        # or its previous action done, in this pass): behind the other datasets' earlier
        # stages ("previews first") and for its target's slot
        queued, result = self._ready.get(item.key, time.time()), None
        try:
            with sem:
                result = self._step(item, step, lambda: self._execute(item, ds, action, local),
                                    provenance=action.provenance())
        except BaseException as exc:
            if local:
                self._queued_event(item, ds, action, queued, getattr(exc, "run_id", None))
            raise
        if local:  # a batch job's queueing is recorded by spotkit.submit, with its job
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

    def _execute(self, item: Item, ds, action, local: bool):
        self._fault("run.before")
        if local:
            from spotkit.runs import run_notebook

            self._fault("run.started")
            res = run_notebook(action.notebook_path, ds.id, parameters=dict(action.parameters),
                               catalog=self.catalog, target=action.target,
                               cell_timeout=self.cell_timeout,
                               context=self._context(item, action))
            run_id, outputs = res.run_id, [o.id for o in res.outputs]
        else:
            from spotkit.compute import submit

            try:
                job = submit(action.notebook_path, ds.id,
                             target=self.rules.target(action.target),
                             parameters=dict(action.parameters), catalog=self.catalog,
                             context=self._context(item, action))
            except SubmitError as exc:
                raise _Outage(f"target {action.target}: {exc}") from exc
            self._fault("run.started")
            run = self._follow(job, action)
            run_id, outputs = run.id, list(run.outputs)
        self._fault("run.after")
        return {"run_id": run_id, "outputs": outputs, "provenance": action.provenance()}, 0

    def _follow(self, job, action):
        """Wait for a batch job; return its completed catalog run.

        The scheduler's final state is checked, not assumed: a job that failed, was
        cancelled, timed out or was lost by the scheduler leaves its run ``failed`` in the
        catalog (if the job could not record that itself) and raises, which counts as a
        failed attempt of the dataset (retried with a new job, then parked).
        """
        try:
            job.wait(check=True)
        except (JobFailedError, JobLostError) as exc:
            run = self.catalog.get_run(job.run_id)
            if run.state in ("queued", "running"):
                self.catalog.finish_run(run.id, state="failed", error_name=type(exc).__name__,
                                        error_message=str(exc))
            raise
        run = self.catalog.get_run(job.run_id)
        if run.state != "completed":
            text = (f"{action.target} job {job.id} ended {job.state.value} but its run "
                    f"{run.id} is {run.state}")
            if run.state in ("queued", "running"):
                self.catalog.finish_run(run.id, state="failed", error_name="RunNotRecorded",
                                        error_message=text)
            raise _RunFailed(f"{text}: {run.error_name}: {run.error_message}")
        return run

    def _wait_remote(self, item: Item, ds, action, run_id: str) -> None:
        """A batch run submitted before a crash: follow its job, adopt the run if it succeeded.

        The job is looked up at the scheduler by the id its run recorded; the wait is the
        same as for a job this watcher submitted (:meth:`_follow`).
        """
        from spotkit.compute import Job

        step = self._action_step(action)
        run = self.catalog.get_run(run_id)
        if run.state in ("queued", "running"):
            if not run.job_id:  # died between recording the run and submitting it
                self.catalog.finish_run(run.id, state="cancelled", error_name="WatcherDied",
                                        error_message="the watcher stopped before the job "
                                        "was submitted; the flow submits it again")
                raise _RunFailed(f"run {run_id} of {action.key} on {ds.id} was never "
                                 "submitted")
            job = Job.from_run(run, self.rules.target(action.target), catalog=self.catalog)
            self._log(logging.INFO, "following-job", item, run=run.id, job=job.id,
                      target=action.target)
            run = self._follow(job, action)
        if run.state == "completed":
            self.journal.finish_step(item.key, step, result={
                "run_id": run.id, "outputs": list(run.outputs), "adopted": True,
                "provenance": action.provenance()})
            return
        raise _RunFailed(f"run {run_id} of {action.key} on {ds.id} {run.state}: "
                         f"{run.error_name}: {run.error_message}")

    def _process(self, item: Item, ds, stage: str, report: PassReport) -> bool:
        """Run one stage's actions for a dataset; return False if it stopped on a failure."""
        for action in self.rules.actions_for(ds):
            if action.stage != stage:
                continue
            try:
                self._run_action(item, ds, action)
            except BaseException as exc:
                self._failed(item, exc, report, max_attempts=action.retry.attempts,
                             retry=action.retry, step=self._action_step(action))
                return False
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
