"""Change-triggered decisions while a series is written: :class:`LiveTriggers`.

``spotkit live`` calls :meth:`LiveTriggers.on_frame` after it has recorded each frame (its
features point, and the change event confirmed at that frame, if any). The triggers of the
rules file's ``live:`` section (:mod:`spotkit.flows._rules_live`) that match the series
decide there, in the live loop, with a few comparisons per trigger: when nothing fires, the
call costs microseconds. A decision is handed to one worker thread, which records it in the
catalog (a live point of kind ``"decision:<trigger>"`` with its reason) and then runs its
actions:
a notebook through :func:`spotkit.submit` (the reason is recorded on the run), a transfer
priority in the flow journal, a message through an alert's channel, a hook (HTTP POST or
a command), a model fit. What each action did is then added to the decision's point
(recorded again: it replaces the first). Nothing slow ever runs in the live loop, and a
failing action is recorded and logged, never raised into it.

An action with a ``window`` of frames after its anchor (the onset, or the frame of the
decision) waits until the series has those frames; :meth:`LiveTriggers.close` runs what
still waits with the frames there are.

Decisions are kept once: a trigger does not fire twice for the same onset, stays silent
for its ``cooldown``, and a quiet trigger fires once per quiet stretch. After a restart
(``spotkit live`` killed and started again) the decisions already recorded are read back,
so nothing is decided twice, and the actions of a decision that had not all finished run
then (a notebook run it had already submitted is adopted, not submitted again).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spotkit.flows._rules_live_objects import LiveAction, LiveTrigger, live_triggers
from spotkit.flows._triggers_actions import ActionRunner

__all__ = ["Decision", "LiveTriggers"]

log = logging.getLogger(__name__)

#: detector states in which the series is changing (a quiet stretch ends there)
CHANGING_STATES = frozenset({"alarm", "holdoff"})


@dataclass(frozen=True)
class Decision:
    """One decision of a live trigger, with its reason.

    Attributes
    ----------
    trigger : str
        The live trigger's name.
    on : str
        ``"onset"``, ``"quiet"`` or ``"every"``.
    frame : int
        The frame at which it was decided.
    reason : str
        Why, in words (recorded in the catalog and on any run it starts).
    actions : tuple of str
        The names of the actions it runs.
    anchor : int
        The frame its windows are counted from: the onset, or ``frame``.
    event : dict
        The change that fired it (``onset``, ``end``, ``confidence``, ``feature``...), or
        empty.
    time : float
        When it was decided (UTC epoch seconds).
    """

    trigger: str
    on: str
    frame: int
    reason: str
    actions: tuple[str, ...]
    anchor: int
    event: dict = field(default_factory=dict, hash=False)
    time: float = 0.0

    @property
    def kind(self) -> str:
        """The kind of its live point: ``"decision:<trigger>"``."""
        return f"decision:{self.trigger}"

    def window(self, action: LiveAction, last: int | None = None) -> tuple[int, int] | None:
        """The frames ``(first, last)`` of an action's window (cut at ``last``), or None."""
        w = action.window
        if w is None:
            return None
        hi = self.anchor + w[1] if last is None else min(self.anchor + w[1], last)
        return max(0, self.anchor - w[0]), max(hi, max(0, self.anchor - w[0]))

    def as_values(self) -> dict[str, float | str | None]:
        """The decision as a live point's values."""
        out: dict[str, float | str | None] = {
            "trigger": self.trigger, "on": self.on, "reason": self.reason,
            "actions": ", ".join(self.actions), "anchor": float(self.anchor)}
        for key in ("onset", "end", "confidence"):
            value = self.event.get(key)
            if value is not None:
                out[key] = float(value)
        if self.event.get("feature") is not None:
            out["feature"] = str(self.event["feature"])
        return out


@dataclass
class _State:
    """What one trigger remembers between frames."""

    trigger: LiveTrigger
    last_frame: int | None = None
    last_time: float | None = None
    quiet: int = 0
    armed: bool = True
    onsets: set[int] = field(default_factory=set)
    suppressed: int = 0


def _event_facts(event: Any) -> dict[str, Any]:
    """An event as a dict: from a live point (its values), a ChangeEvent or a mapping."""
    values = getattr(event, "values", None)
    if isinstance(values, Mapping):
        facts = dict(values)
    elif isinstance(event, Mapping):
        facts = dict(event)
    else:  # spotkit.change.ChangeEvent
        facts = {k: getattr(event, k, None) for k in (
            "onset", "end", "confidence", "statistic", "feature", "detected_at")}
        region = getattr(event, "region", None) or {}
        if "q" in region:
            facts["q_first"], facts["q_last"] = region["q"]
    if facts.get("onset") is None and getattr(event, "frame", None) is not None:
        facts["onset"] = event.frame
    return facts


def _reason(trigger: LiveTrigger, frame: int, facts: dict[str, Any]) -> str:
    if trigger.on == "onset":
        onset = int(facts["onset"])
        parts = []
        if facts.get("confidence") is not None:
            parts.append(f"confidence {float(facts['confidence']):.3f}")
        if facts.get("feature") is not None:
            parts.append(f"feature {facts['feature']}")
        if facts.get("q_first") is not None and facts.get("q_last") is not None:
            parts.append(f"q {float(facts['q_first']):.3g}-{float(facts['q_last']):.3g}")
        detail = f" ({', '.join(parts)})" if parts else ""
        return f"onset at frame {onset}{detail}, confirmed at frame {frame}"
    n = trigger.frames or 0
    if trigger.on == "quiet":
        n = int(facts.get("quiet", n))  # more than asked when a cooldown held it back
        return f"no change for {n} frames (frames {frame - n + 1}-{frame})"
    return f"every {n} frames (frame {frame})"


class LiveTriggers:
    """Decide, frame by frame, what the ``live:`` triggers of the rules ask for.

    Parameters
    ----------
    rules : Rules, path-like, str or mapping
        The facility's rules (:func:`spotkit.flows.load_rules`); its ``live`` section.
    catalog : spotkit.catalog.Catalog
        Where the series is registered; decisions are recorded there
        (:meth:`~spotkit.catalog.Catalog.record_live`).
    dataset_id : str
        The series (a raw dataset being acquired).
    dataset : mapping, optional
        ``beamline``, ``proposal``, ``sample``, ``kind`` to match the triggers against
        (default: the catalog's record of the series).
    fit : callable, optional
        ``fit(catalog, dataset_id, *, model, frames=None, **options)`` for ``fit`` actions
        without a target: :func:`spotkit.live.fit_latest` (``spotkit live`` passes it).
    journal : spotkit.flows.Journal, optional
        For ``priority`` actions (default: a journal on the catalog's database, opened by
        the worker when first needed).
    resume : bool
        Read the decisions already recorded for the series, so none is taken twice.
    clock : callable
        Seconds since the epoch (for tests).

    Raises
    ------
    ValueError
        A matching trigger has a ``fit`` action without a target and no ``fit`` was given.
    spotkit.errors.DatasetNotFoundError
        The series is not in the catalog (and no ``dataset`` was given).

    Examples
    --------
    A series whose triggers mark the frames after each change for transfer first and fit a
    sphere every 10 frames (the fit is a stand-in here; ``spotkit live`` passes
    :func:`spotkit.live.fit_latest`):

    >>> import pathlib, tempfile
    >>> from spotkit.catalog import LivePoint, open_catalog
    >>> from spotkit.flows import LiveTriggers, load_rules
    >>> from spotkit.sim import simulate_saxs_series
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> truth = simulate_saxs_series(work / "series.h5", n_frames=4, seed=1)
    >>> cat = open_catalog(work / "catalog.db")
    >>> series = cat.ingest(truth.path)
    >>> rules = load_rules('''
    ... targets: {local: {kind: local}}
    ... live:
    ...   - {name: first, on: onset, min_confidence: 0.9,
    ...      actions: [{priority: {level: 10, window: [2, 8]}}]}
    ...   - {name: sphere, on: every, frames: 10, actions: [{fit: {model: sphere}}]}
    ... ''')
    >>> fits = []
    >>> triggers = LiveTriggers(rules, cat, dataset_id=series.id,
    ...                         fit=lambda cat, ds, **kw: fits.append(kw["model"]))
    >>> def features(frame):
    ...     return LivePoint(frame, "features", {"score": 0.1, "state": "watching"})
    >>> decided = [d for f in range(30) for d in triggers.on_frame(features(f))]
    >>> [d.reason for d in decided]
    ['every 10 frames (frame 9)', 'every 10 frames (frame 19)', 'every 10 frames (frame 29)']
    >>> onset = LivePoint(34, "event", {"onset": 31, "confidence": 0.999,
    ...                                 "feature": "band_2"})
    >>> [d.reason for d in triggers.on_frame(features(34), event=onset)]
    ['onset at frame 31 (confidence 0.999, feature band_2), confirmed at frame 34']
    >>> triggers.close()
    >>> fits
    ['sphere', 'sphere', 'sphere']
    >>> [(p.frame, p.kind, p.values["status"])
    ...  for p in cat.live_points(series.id, kinds="decision")]  # doctest: +NORMALIZE_WHITESPACE
    [(9, 'decision:sphere', 'done'), (19, 'decision:sphere', 'done'),
     (29, 'decision:sphere', 'done'), (34, 'decision:first', 'done')]
    >>> first = triggers.journal_priorities()[0]
    >>> first["first_frame"], first["last_frame"], first["priority"]
    (29, 39, 10)
    """

    def __init__(self, rules: Any, catalog: Any, *, dataset_id: str,
                 dataset: Mapping[str, Any] | None = None,
                 fit: Callable[..., Any] | None = None, journal: Any = None,
                 resume: bool = True, clock: Callable[[], float] = time.time) -> None:
        if not hasattr(rules, "to_dict"):
            from spotkit.flows._rules import load_rules

            rules = load_rules(rules)
        self.rules = rules
        self.catalog = catalog
        self.dataset_id = str(getattr(dataset_id, "id", dataset_id))
        self._clock = clock
        facts = dict(dataset) if dataset is not None else self._facts()
        every = getattr(rules, "live", None)
        if every is None:
            every = live_triggers(rules.to_dict().get("live"))
        self.triggers: tuple[LiveTrigger, ...] = tuple(t for t in every if t.matches(facts))
        for t in self.triggers:
            if fit is None and any(a.kind == "fit" and not a.options.get("target")
                                   for a in t.actions):
                raise ValueError(
                    f"live trigger {t.name!r} fits a model here, but no fit function was "
                    "given: pass fit=spotkit.live.fit_latest (spotkit live does), or give the "
                    "fit a target (it then runs notebook saxs_fit there)")
        self._states = [_State(t) for t in self.triggers]
        self._onset_states = [s for s in self._states if s.trigger.on == "onset"]
        self._counting = [s for s in self._states if s.trigger.on != "onset"]
        self._pending: list[tuple[int, Decision, LiveAction]] = []
        self._next_due = math.inf
        self._last_frame = -1
        self.decisions: list[Decision] = []
        self._runner = ActionRunner(self, facts=facts, fit=fit, journal=journal)
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._closed = False
        if resume and self.triggers:
            self._resume()
        log.info("live triggers for %s: %s", self.dataset_id,
                 ", ".join(f"{t.name} (on {t.on})" for t in self.triggers) or "none match")

    # -- the live loop --------------------------------------------------------------------

    def on_frame(self, point: Any, event: Any = None) -> list[Decision]:
        """Decide for one recorded frame; return the decisions taken (usually none).

        Parameters
        ----------
        point : spotkit.catalog.LivePoint
            The frame's ``"features"`` point (``frame``; ``values`` with ``state`` and
            ``flagged``: a flagged frame, or one in state ``alarm`` or ``holdoff``, is a
            change for ``quiet`` triggers).
        event : LivePoint or ChangeEvent, optional
            The change confirmed at this frame (``onset``, ``end``, ``confidence``,
            ``feature``, and ``q_first``/``q_last`` for a band feature).

        Returns
        -------
        list of Decision
            Their actions run in the worker thread; this call never waits for them.
        """
        if not self._states:
            return []
        frame = point.frame
        if frame > self._last_frame:
            self._last_frame = frame
        fired: list[Decision] | None = None
        if event is not None:
            fired = self._onsets(frame, event)
        if self._counting:
            values = point.values
            changed = (event is not None or bool(values.get("flagged"))
                       or values.get("state") in CHANGING_STATES)
            for st in self._counting:
                trig = st.trigger
                if trig.on == "quiet":
                    if changed:
                        st.quiet, st.armed = 0, True
                        continue
                    st.quiet += 1
                    if not st.armed or st.quiet < trig.frames:  # type: ignore[operator]
                        continue
                elif frame - (-1 if st.last_frame is None else st.last_frame) < trig.frames:
                    continue
                decision = self._decide(st, frame, {"quiet": st.quiet} if trig.on == "quiet"
                                        else {})
                if decision is not None:
                    st.armed = False
                    fired = [*(fired or ()), decision]
        if fired is None and frame < self._next_due:
            return []
        return self._dispatch(frame, fired or [])

    def _onsets(self, frame: int, event: Any) -> list[Decision] | None:
        facts = _event_facts(event)
        onset = facts.get("onset")
        if onset is None:
            log.warning("live triggers: an event at frame %s without an onset was ignored",
                        frame)
            return None
        out = []
        for st in self._onset_states:
            if int(onset) in st.onsets or not st.trigger.selects(facts):
                continue
            decision = self._decide(st, frame, facts)
            if decision is not None:
                out.append(decision)
        return out or None

    def _decide(self, st: _State, frame: int, facts: dict[str, Any]) -> Decision | None:
        trig = st.trigger
        now = self._clock()
        if st.last_frame is not None and trig.cooldown_frames and \
                frame - st.last_frame < trig.cooldown_frames:
            st.suppressed += 1
            log.info("live trigger %s: cooling down at frame %d (fired at frame %d)",
                     trig.name, frame, st.last_frame)
            return None
        if st.last_time is not None and trig.cooldown_seconds and \
                now - st.last_time < trig.cooldown_seconds:
            st.suppressed += 1
            log.info("live trigger %s: cooling down at frame %d (%.0f s since it fired)",
                     trig.name, frame, now - st.last_time)
            return None
        anchor = int(facts["onset"]) if trig.on == "onset" else frame
        if trig.on == "onset":
            st.onsets.add(anchor)
        st.last_frame, st.last_time = frame, now
        return Decision(trig.name, trig.on, frame, _reason(trig, frame, facts),
                        tuple(a.name for a in trig.actions), anchor, facts, now)

    def _dispatch(self, frame: int, decisions: list[Decision]) -> list[Decision]:
        """Hand the decisions, and the waiting actions now due, to the worker."""
        work: list[tuple[Decision, LiveAction]] = []
        for d in decisions:
            trig = next(t for t in self.triggers if t.name == d.trigger)
            for action in trig.actions:
                window = action.window
                due = d.anchor + window[1] if window is not None and action.kind in (
                    "notebook", "fit") else frame
                if due > frame:
                    self._pending.append((due, d, action))
                else:
                    work.append((d, action))
        if self._pending and frame >= self._next_due:
            ready = [(d, a) for due, d, a in self._pending if due <= frame]
            self._pending = [p for p in self._pending if p[0] > frame]
            work.extend(ready)
        self._next_due = min((p[0] for p in self._pending), default=math.inf)
        if decisions or work:
            self.decisions.extend(decisions)
            self._submit(("work", frame, decisions, work, None))
        return decisions

    # -- the worker -----------------------------------------------------------------------

    def _submit(self, job: tuple) -> None:
        if self._closed:
            raise RuntimeError("these live triggers are closed")
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="spotkit-live-triggers",
                                            daemon=True)
            self._worker.start()
        self._queue.put(job)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                _kind, frame, decisions, work, last = job
                self._runner.run(frame, decisions, work, last=last)
            except Exception:  # the worker never dies: one bad job is logged
                log.exception("live triggers for %s: a decision's work failed", self.dataset_id)
            finally:
                self._queue.task_done()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the worker has done everything handed to it; False on timeout."""
        if self._worker is None:
            return True
        end = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(0.005)
        return True

    def close(self, *, flush: bool = True, timeout: float | None = 60.0) -> None:
        """Finish: run the actions still waiting for frames (with the frames there are,
        when ``flush``), wait for the worker (up to ``timeout`` s), release resources."""
        if self._closed:
            return
        if flush and self._pending:
            work = [(d, a) for _due, d, a in self._pending]
            self._pending, self._next_due = [], math.inf
            self._submit(("work", self._last_frame, [], work, self._last_frame))
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout)
            if self._worker.is_alive():
                log.warning("live triggers for %s: actions still running after %s s",
                            self.dataset_id, timeout)
        self._closed = True
        self._runner.close()

    def __enter__(self) -> LiveTriggers:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- state ----------------------------------------------------------------------------

    @property
    def pending(self) -> list[tuple[int, Decision, str]]:
        """Actions waiting for frames: ``(frame they wait for, decision, action name)``."""
        return [(due, d, a.name) for due, d, a in self._pending]

    @property
    def suppressed(self) -> dict[str, int]:
        """Decisions not taken because their trigger was cooling down, per trigger."""
        return {st.trigger.name: st.suppressed for st in self._states}

    @property
    def outcomes(self) -> list[dict[str, Any]]:
        """What each action did, in the order done (``trigger``, ``action``, ``frame``,
        ``status``, ``detail``, ``run_id``)."""
        return list(self._runner.outcomes)

    @property
    def jobs(self) -> list[Any]:
        """The batch jobs the actions submitted (:class:`spotkit.compute.Job`)."""
        return list(self._runner.jobs)

    def journal_priorities(self) -> list[dict[str, Any]]:
        """The transfer priorities recorded for the series (see
        :meth:`spotkit.flows.Journal.priorities`)."""
        self.wait()
        return self._runner.priorities()

    def _facts(self) -> dict[str, Any]:
        ds = self.catalog[self.dataset_id]  # DatasetNotFoundError names the catalog
        return {"id": ds.id, "beamline": ds.beamline, "proposal": ds.proposal,
                "sample": ds.sample, "kind": ds.kind, "metadata": dict(ds.metadata or {})}

    def _resume(self) -> None:
        """Read back the decisions already recorded for the series."""
        points = self.catalog.live_points(self.dataset_id, kinds=["decision"])
        by_name = {st.trigger.name: st for st in self._states}
        last: dict[str, int] = {}
        for p in points:
            st = by_name.get(p.kind.partition(":")[2])
            if st is None:
                continue
            when = p.recorded_at if p.recorded_at is not None else p.written_at
            if st.last_frame is None or p.frame >= st.last_frame:
                st.last_frame = p.frame
                st.last_time = when if when is not None else st.last_time
            last[st.trigger.name] = st.last_frame
            onset = p.values.get("onset")
            if st.trigger.on == "onset" and onset is not None:
                st.onsets.add(int(onset))
            if p.values.get("status") != "done":
                self._unfinished(st.trigger, p, when)
        quiet = [by_name[n] for n in last if by_name[n].trigger.on == "quiet"]
        if quiet:  # fired already: armed again only by a change after it
            first = min(last[st.trigger.name] for st in quiet)
            events = self.catalog.live_points(self.dataset_id, since=first, kinds=["event"])
            for st in quiet:
                st.armed = any(e.frame > last[st.trigger.name] for e in events)
        if last:
            log.info("live triggers for %s: resumed after %d recorded decision(s)",
                     self.dataset_id, len(points))

    def _unfinished(self, trigger: LiveTrigger, point: Any, when: float | None) -> None:
        """A decision recorded before a restart whose actions did not all finish: the ones
        without an outcome wait again (a notebook run it started already is adopted, not
        submitted twice; notify and hook may be sent again: at least once)."""
        v = point.values
        event = {k: v[k] for k in ("onset", "end", "confidence", "feature") if k in v}
        anchor = int(v.get("anchor", point.frame))
        d = Decision(trigger.name, trigger.on, point.frame, str(v.get("reason", "")),
                     tuple(a.name for a in trigger.actions), anchor, event,
                     when if when is not None else self._clock())
        self._runner._values[(d.frame, d.trigger)] = dict(v)
        for action in trigger.actions:
            if action.name in v:
                continue
            w = action.window
            due = anchor + w[1] if w is not None and action.kind in ("notebook", "fit") \
                else point.frame
            self._pending.append((due, d, action))
            log.info("live triggers for %s: action %s of the decision at frame %d (%s) had "
                     "not finished before the restart: it runs again", self.dataset_id,
                     action.name, d.frame, d.trigger)
        self._next_due = min((due for due, _d, _a in self._pending), default=math.inf)

    def _record(self, points: Iterable[Any]) -> None:
        points = list(points)
        if points:
            self.catalog.record_live(self.dataset_id, points)
