"""A 24-hour simulated beamline day through a real watcher and its monitor, compressed in time.

The twin (:func:`spotkit.sim.simulate_tomo_scan`) writes scans into an inbox at a
beamtime cadence: three beamtime blocks (08:00-12:00, 13:00-18:30, 19:30-23:00, gaps for
lunch, dinner and the night), one scan every ``cadence`` minutes (+-40 %), three scan
sizes. A real :class:`spotkit.flows.Watcher` (``run_forever`` in a thread) takes every scan
through the flow, and :func:`spotkit.flows.start_monitor` runs beside it with the rules'
alerts going to a real local HTTP webhook receiver.

Time is compressed, not faked: one simulated hour is ``--hour`` real seconds (default 12:
the day in ~5 min). The flow, the monitor and the telemetry run on the real clock; every
duration in the rules (queue budget) and in the queue model is scaled by the same factor,
and the report gives times back in simulated hours.

The batch target ``hpc`` is, with ``--slurm``, a **real Slurm**: munged, slurmctld and slurmd
started exactly as the compute tests start them (``tests/compute/slurm_cluster.py``), a
single node with this machine's CPUs, FIFO scheduling (``sched/builtin``). The queue slows
down for real between 12:30 and 16:30: :class:`OtherUsers` keeps one exclusive job of
another "user" (``sleep``, ``--exclusive``, ``blocker`` simulated minutes) waiting in the
queue, so a job submitted then waits for the node's running exclusive job to end and for
the waiting one to run (between 1 and 2 x ``blocker``); outside those hours the node is the
flow's. Without ``--slurm`` (the small test in tests/monitor), ``hpc`` is
:class:`QueuedLocal`, a :class:`spotkit.compute.Local` process pool whose jobs are held in
its queue for an injected wait (lognormal around 2 simulated minutes; 40 for jobs
submitted 12:30-16:30), recorded in ``injected.jsonl``. Each preview is a batch job there
unless the flow routes it to the ``local`` fallback (``queue_budget``, ``fallback`` in
rules.yaml). The watcher submits a batch job and goes on; its later passes follow it.

Checks (printed, and written to RESULTS.md with ``--write``):

- the monitor finds the slowdown: a change point on ``queue_wait`` (onset vs 12:30);
- the alert on it fires exactly once (posts received by the webhook receiver);
- previews move to ``local`` after the budget is exceeded and back after the recovery
  (reroute findings, sent to a second webhook, and where each preview ran);
- no dataset is lost (every scan written is ``done`` in the journal and in the catalog).

Usage::

    python benchmarks/bench_beamline_day.py [--slurm] [--hour 12] [--cadence 12] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from spotkit.compute import Local

#: beamtime blocks of the day, in simulated hours
BEAMTIME = ((8.0, 12.0), (13.0, 18.5), (19.5, 23.0))
#: scan shapes (angles, rows, columns): a few sizes, as a beamline's day has
SHAPES = ((16, 2, 32), (32, 2, 32), (48, 4, 32))
SLOW_FROM, SLOW_UNTIL = 12.5, 16.5  # simulated hours: the queue is slow for these jobs
NORMAL_WAIT, SLOW_WAIT = 2.0, 40.0  # simulated minutes in the batch queue
BLOCKER = 20.0  # simulated minutes: each exclusive job of the other users (--slurm)
BUDGET = 15.0  # simulated minutes: the previews' queue budget

NOTEBOOK_BODY = """\
import pathlib
from spotkit.runs import declare_output
out = pathlib.Path(output_dir) / "preview.txt"
out.write_text(f"{dataset_id} preview\\n")
declare_output(out, kind="test/marker", metadata={"tag": "preview"})
"""



class QueuedLocal(Local):
    """A batch queue on this machine: each job waits for an injected time, then runs.

    The wait of a job is decided when it is submitted, from ``schedule`` (a JSON file:
    ``t0``, ``hour`` real seconds per simulated hour, ``normal`` and ``slow`` waits in
    simulated minutes, ``slow_from``/``slow_until`` simulated hours, ``jitter`` the sigma
    of a lognormal factor); it is appended to ``injected.jsonl`` next to the schedule.
    """

    name = "hpc-queue"

    def __init__(self, max_workers: int | None = None, *, time: str | None = None,
                 kill_wait: float = 3.0, min_poll: float = 0.2, env: dict | None = None,
                 schedule: str | None = None):
        super().__init__(max_workers, time=time, kill_wait=kill_wait, min_poll=min_poll,
                         env=env)
        self.schedule = Path(schedule) if schedule else None
        self._hold: dict[str, float] = {}

    def submit_script(self, script: Path, *, job_name: str, workdir: Path) -> str:
        now = _time()
        wait = 0.0
        if self.schedule is not None:
            s = json.loads(self.schedule.read_text())
            hour = (now - s["t0"]) / s["hour"]
            minutes = s["slow"] if s["slow_from"] <= hour < s["slow_until"] else s["normal"]
            rng = np.random.default_rng(int(now * 1e6) % 2**32)
            wait = minutes * s["hour"] / 60.0 * float(rng.lognormal(0.0, s["jitter"]))
        with self._lock:
            job_id = super().submit_script(script, job_name=job_name, workdir=workdir)
            self._hold[job_id] = now + wait
        if self.schedule is not None:
            with open(self.schedule.with_name("injected.jsonl"), "a") as f:
                f.write(json.dumps({"job_id": job_id, "submitted": now, "wait": wait}) + "\n")
        return job_id

    def _dispatch(self) -> None:
        now = _time()
        for job_id in list(self._queue):
            if self._running() >= self.max_workers:
                return
            if self._hold.get(job_id, math.inf) <= now:  # inf: being submitted
                self._queue.remove(job_id)
                self._start(self._jobs[job_id])


def _time() -> float:
    return time.time()


def start_slurm():
    """A real single-node Slurm, started by the compute tests' own code; ``SLURM_CONF``
    exported for this process (the watcher's ``sbatch``/``squeue`` and the jobs)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compute"))
    import slurm_cluster

    reason = slurm_cluster.skip_reason()
    if reason:
        raise SystemExit(f"--slurm: {reason}")
    cluster = slurm_cluster.start_cluster()  # in the system temp dir: munge must reach it
    os.environ["SLURM_CONF"] = str(cluster.conf)
    return cluster


class OtherUsers(threading.Thread):
    """Other users' jobs fill the Slurm node between ``slow_from`` and ``slow_until``.

    While the simulated hour is in that period, one exclusive job (``sleep`` for
    ``blocker`` simulated minutes) always waits in the queue: with FIFO scheduling, a job
    submitted then starts once the running exclusive job has ended and the waiting one has
    run. Every job submitted is appended to ``blockers.jsonl``.
    """

    def __init__(self, cluster: Any, root: Path, t0: float, hour: float, slow_from: float,
                 slow_until: float, blocker: float = BLOCKER):
        super().__init__(name="other-users", daemon=True)
        self.cluster, self.root, self.t0, self.hour = cluster, root, t0, hour
        self.slow = (slow_from, slow_until)
        self.seconds = blocker * hour / 60.0
        self.stop = threading.Event()
        self.jobs: list[dict] = []

    def run(self) -> None:
        while not self.stop.wait(0.3):
            h = (time.time() - self.t0) / self.hour
            if not self.slow[0] <= h < self.slow[1]:
                continue
            waiting = self.cluster.command("squeue", "-h", "-t", "PD", "-n", "other-user",
                                           "-o", "%i").stdout.split()
            if waiting:
                continue
            res = self.cluster.command(
                "sbatch", "--parsable", "--exclusive", "-J", "other-user", "--output",
                "/dev/null", "--time", "60", "--wrap", f"sleep {self.seconds:.1f}")
            if res.returncode == 0:
                job = {"job_id": res.stdout.strip().split(";")[0], "submitted": time.time(),
                       "seconds": self.seconds}
                self.jobs.append(job)
                with open(self.root / "blockers.jsonl", "a") as f:
                    f.write(json.dumps(job) + "\n")


def day_schedule(seed: int = 0, *, cadence: float = 12.0) -> list[tuple[float, int]]:
    """``(simulated hour, shape index)`` of every scan of the day, in time order."""
    rng = np.random.default_rng(seed)
    out = []
    for start, end in BEAMTIME:
        t = start + rng.uniform(0, cadence / 60.0)
        while t < end:
            out.append((t, int(rng.choice(len(SHAPES), p=(0.5, 0.35, 0.15)))))
            t += cadence / 60.0 * rng.uniform(0.6, 1.4)
    return out


class Receiver:
    """A real local HTTP server that keeps the JSON bodies POSTed to it, by path."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, str, Any]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append((time.time(), self.path, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _rules(root: Path, notebook: Path, schedule: Path, hour: float, url: str,
           slurm: Any = None) -> str:
    budget = BUDGET * hour / 60.0
    hpc = (f"{{kind: slurm, partition: {slurm.partition}, time: '00:30:00', concurrency: 4, "
           "min_poll: 0.5}" if slurm is not None else
           f"""{{kind: hpc-queue, schedule: "{schedule}", max_workers: 4, concurrency: 4,
         min_poll: 0.1}}""")
    return f"""\
version: 1
facility: TWIN
stages: [preview, full]
retry: {{attempts: 3, backoff: 1, factor: 2, max_backoff: 5}}
targets:
  local: {{kind: local, max_workers: 2, concurrency: 2}}
  hpc: {hpc}
rules:
  - name: tomo
    match: {{beamline: "8.3.2", kind: tomo/raw}}
    actions:
      - {{name: preview, stage: preview, notebook: "{notebook}", target: hpc,
         queue_budget: {budget:.3f}, fallback: local}}
alerts:
  - name: queue
    match: {{kind: change, metric: queue_wait}}
    webhook: {{url: "{url}/queue", format: json}}
    dedup: 1d
  - name: reroute
    match: {{kind: reroute, severity: info}}
    webhook: {{url: "{url}/reroute", format: json}}
    dedup: 1d
"""


def _notebook(path: Path) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = new_code_cell('dataset_id = None\ncatalog_path = None\noutput_dir = "."\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell(NOTEBOOK_BODY)]
    nbformat.write(nb, path)
    return path


def run_day(root: Path, *, hour: float = 12.0, cadence: float = 12.0, seed: int = 0,
            start: float = 0.0, end: float = 24.0, slow_from: float = SLOW_FROM,
            slow_until: float = SLOW_UNTIL, drain: float = 120.0,
            log: Any = None, slurm: bool = False) -> dict[str, Any]:
    """Run the simulated day (or the hours ``start``-``end`` of it); return the numbers.

    Parameters
    ----------
    root : Path
        An empty folder for the inbox, warehouse, catalog and notebooks.
    hour : float
        Real seconds per simulated hour.
    cadence : float
        Simulated minutes between scans in beamtime (on average).
    start, end : float
        The simulated hours to run (a small test runs part of the day).
    slow_from, slow_until : float
        The simulated hours in which jobs submitted to the batch queue wait long.
    drain : float
        Real seconds to wait, after the last scan, for the flow to finish.
    log : callable, optional
        ``log(text)`` for progress lines.
    slurm : bool
        The batch target is a real Slurm started for the run (slowed down by
        :class:`OtherUsers`), not the injected-wait :class:`QueuedLocal`.
    """
    from spotkit.compute import register_target

    say = log or (lambda text: None)
    register_target("hpc-queue", QueuedLocal)
    cluster = start_slurm() if slurm else None
    try:
        return _run_day(root, hour=hour, cadence=cadence, seed=seed, start=start, end=end,
                        slow_from=slow_from, slow_until=slow_until, drain=drain, say=say,
                        cluster=cluster)
    finally:
        if cluster is not None:
            cluster.stop()


def _run_day(root: Path, *, hour: float, cadence: float, seed: int, start: float, end: float,
             slow_from: float, slow_until: float, drain: float, say: Any,
             cluster: Any) -> dict[str, Any]:
    from spotkit.flows import Watcher, load_rules, start_monitor
    from spotkit.monitor import events as read_events
    from spotkit.sim import simulate_tomo_scan

    inbox, warehouse = root / "inbox", root / "warehouse"
    inbox.mkdir()
    warehouse.mkdir()
    scans = [(h, s) for h, s in day_schedule(seed, cadence=cadence) if start <= h < end]
    receiver = Receiver()
    t0 = time.time() + 1.0 - start * hour  # real time of simulated 00:00
    schedule = root / "queue.json"
    schedule.write_text(json.dumps({"t0": t0, "hour": hour, "normal": NORMAL_WAIT,
                                    "slow": SLOW_WAIT, "slow_from": slow_from,
                                    "slow_until": slow_until, "jitter": 0.25}))
    rules = load_rules(_rules(root, _notebook(root / "preview.ipynb"), schedule, hour,
                              receiver.url, cluster))
    watcher = Watcher(inbox, catalog=root / "catalog.db", rules=rules, warehouse=warehouse,
                      poll=0.25, settle=0.1, workers=4, outage_backoff=0.5,
                      max_outage_backoff=2.0, inotify=False)
    loop = start_monitor(watcher, period=max(0.5, hour / 12.0))
    flow = threading.Thread(target=watcher.run_forever, name="day-watcher", daemon=True)
    others = (OtherUsers(cluster, root, t0, hour, slow_from, slow_until)
              if cluster is not None else None)
    wall0 = time.perf_counter()
    load0 = os.getloadavg()
    flow.start()
    if others is not None:
        others.start()
    written = []
    try:
        for i, (h, shape) in enumerate(scans):
            pause = t0 + h * hour - time.time()
            if pause > 0:
                time.sleep(pause)
            path = inbox / f"scan_{i:04d}.h5"
            part = inbox / f".scan_{i:04d}.h5.part"
            simulate_tomo_scan(part, shape=SHAPES[shape], n_flats=1, n_darks=1, seed=i)
            os.replace(part, path)
            written.append((path, h))
            if i % 10 == 0:
                say(f"{h:5.2f} h: scan {i + 1}/{len(scans)} written")
        pause = t0 + end * hour - time.time()
        if pause > 0:
            time.sleep(pause)
        deadline = time.time() + drain
        while time.time() < deadline:
            done = [i for i in watcher.journal.items() if i.state == "done"]
            if len(done) >= len(written) and not watcher.pending():
                break
            time.sleep(0.5)
        time.sleep(2 * loop.period + 0.5)  # the monitor's last look
    finally:
        if others is not None:
            others.stop.set()
            others.join(timeout=10)
        watcher.stop()
        flow.join(timeout=120)
        loop.stop()
        receiver.close()
    wall = time.perf_counter() - wall0
    try:
        out = _numbers(root, watcher, written, receiver, t0, hour, wall,
                       read_events(watcher.catalog), (slow_from, slow_until))
    finally:
        watcher.close()
    out["load"] = (load0[0], os.getloadavg()[0])
    out["slurm"] = None if cluster is None else {
        "cpus": cluster.cpus, "node": cluster.node,
        "blockers": len(others.jobs) if others is not None else 0,
        "blocker_min": BLOCKER,
        "first_blocker_h": ((others.jobs[0]["submitted"] - t0) / hour
                            if others is not None and others.jobs else None)}
    return out


def _numbers(root: Path, watcher: Any, written: list, receiver: Receiver, t0: float,
             hour: float, wall: float, ev: Any, slow: tuple[float, float]) -> dict[str, Any]:
    from spotkit.monitor import metrics

    def sim(t: float | None) -> float | None:
        return None if t is None else (float(t) - t0) / hour

    minutes = 60.0 / hour  # simulated minutes per real second
    items = watcher.journal.items()
    done = {i.dataset_id for i in items if i.state == "done"}
    in_catalog = {ds.id for ds in watcher.catalog.search(kind="tomo/raw", limit=None)}
    posts: dict[str, list] = {"queue": [], "reroute": []}
    for t, path, body in receiver.posts:
        posts.setdefault(path.strip("/"), []).append((t, body))
    reroutes = [(sim(t), f) for t, body in posts["reroute"] for f in body.get("findings", [])]
    queue_alerts = [(sim(t), f) for t, body in posts["queue"] for f in body.get("findings", [])]
    away = sorted(h for h, f in reroutes if (f.get("detail") or {}).get("direction") == "away")
    back = sorted(h for h, f in reroutes if (f.get("detail") or {}).get("direction") == "back")
    # when each switch was decided (the flow's reroute events) and where each preview went,
    # by when it was sent (its run's queued event)
    switches = ev[ev["step"] == "reroute"].sort_values("time")
    switched = [(sim(t), d.get("direction")) for t, d in zip(switches["time"],
                                                            switches["detail"], strict=True)]
    queued = ev[(ev["step"] == "queued") & ev["run_id"].notna()].drop_duplicates("run_id")
    sent_at = dict(zip(queued["run_id"], queued["time"], strict=True))
    previews = []
    for run in watcher.catalog.runs(state="completed", limit=None):
        flow = (run.context or {}).get("flow") or {}
        if flow.get("action") == "preview":
            # sent: a batch job when it was submitted, a local run when it started
            when = (sent_at.get(run.id) if flow.get("target") == "hpc" else
                    run.started_at.timestamp() if run.started_at is not None else None)
            previews.append({"target": flow.get("target"), "hour": sim(when),
                             "probe": bool((flow.get("route") or {}).get("probe"))})
    first_away = next((h for h, d in switched if d == "away"), None)
    first_back = next((h for h, d in switched if d == "back"), None)

    def period(h: float | None) -> str:
        if h is None:
            return "unknown"
        if first_away is None or h < first_away:
            return "1 before the move"
        if first_back is None or h < first_back:
            return "2 moved"
        return "3 after the move back"

    per_period: dict[str, dict[str, int]] = {}
    for p in previews:
        slot = per_period.setdefault(period(p["hour"]), {})
        slot[p["target"]] = slot.get(p["target"], 0) + 1
    injected = ([json.loads(line) for line in (root / "injected.jsonl").read_text().splitlines()]
                if (root / "injected.jsonl").exists() else [])
    # the batch jobs the flow submitted (spotkit.submit records each one's queued event)
    batch = ev[(ev["step"] == "queued") & ev["job_id"].notna()].drop_duplicates("job_id")
    slow_jobs = sorted(h for h in (sim(t) for t in batch["time"]) if slow[0] <= h < slow[1])
    m = metrics(ev)
    qw = m[(m["metric"] == "queue_wait") & m["target"].isin(["hpc", "hpc-queue", "slurm"])]
    # a wait by when its job was submitted (the metric's time is when it started)
    waits = [(sim(t - v), v * minutes) for t, v in zip(qw["time"], qw["value"], strict=True)]
    ta = m[m["metric"] == "turnaround"]
    turn: dict[str, list[float]] = {}
    for t, v in zip(ta["time"], ta["value"], strict=True):
        h = sim(t)
        phase = ("1 before" if h < slow[0] else "2 slow queue" if h < slow[1] + SLOW_WAIT / 60
                 else "3 after")
        turn.setdefault(phase, []).append(v * minutes)
    change = queue_alerts[0][1] if queue_alerts else None
    return {
        "scans": len(written), "done": len(done & in_catalog), "in_catalog": len(in_catalog),
        "parked": sum(1 for i in items if i.state == "parked"),
        "lost": len(written) - len(done & in_catalog),
        "slow_from": slow[0], "slow_until": slow[1],
        "first_slow_job_h": slow_jobs[0] if slow_jobs else None,
        "queue_alerts": len(queue_alerts),
        "change_alert_h": queue_alerts[0][0] if queue_alerts else None,
        "change_onset_h": sim(change["onset"]) if change and change.get("onset") else None,
        "change_message": change["message"] if change else None,
        "switches": switched, "reroute_alerts_away_h": away, "reroute_alerts_back_h": back,
        "previews": per_period, "probes": sum(p["probe"] for p in previews),
        "batch_jobs": len(batch), "injected": len(injected),
        "measured_wait_min": {
            "before": _median([w for h, w in waits if h < slow[0]]),
            "slow": _median([w for h, w in waits if slow[0] <= h < slow[1]]),
            "after": _median([w for h, w in waits if h >= slow[1]])},
        "slow_waits_min": [round(w, 1) for h, w in waits if slow[0] <= h < slow[1]],
        "turnaround_min": {k: _median(v) for k, v in sorted(turn.items())},
        "wall_s": wall, "hour_s": hour,
    }


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def _h(h: float | None) -> str:
    if h is None:
        return "never"
    hours, minutes = divmod(round(h * 60), 60)
    return f"{hours:02d}:{minutes:02d}"


def _report(o: dict[str, Any]) -> str:
    away = [h for h, d in o["switches"] if d == "away"]
    back = [h for h, d in o["switches"] if d == "back"]
    slow0, slow1 = o["slow_from"], o["slow_until"]
    det, onset, first = o["change_alert_h"], o["change_onset_h"], o["first_slow_job_h"]
    lines = [
        f"scans written {o['scans']}; done and in the catalog {o['done']}; parked "
        f"{o['parked']}; lost {o['lost']}",
        (f"real Slurm ({o['slurm']['cpus']} CPUs, FIFO): other users' exclusive "
         f"{o['slurm']['blocker_min']:g}-min jobs kept queued {_h(slow0)}-{_h(slow1)} "
         f"({o['slurm']['blockers']} jobs, the first at {_h(o['slurm']['first_blocker_h'])})"
         if o.get("slurm") else
         f"queue slowed for jobs submitted {_h(slow0)}-{_h(slow1)} (injected {NORMAL_WAIT:g} "
         f"-> {SLOW_WAIT:g} min)")
        + f"; first preview job submitted into it at {_h(first)}; budget {BUDGET:g} min",
        f"measured queue wait (median, by submission): "
        f"{o['measured_wait_min']['before']:.1f} min before, "
        f"{o['measured_wait_min']['slow']:.1f} min in the slow period "
        f"({len(o['slow_waits_min'])} jobs: {o['slow_waits_min']}), "
        f"{o['measured_wait_min']['after']:.1f} min after",
        f"change alert on queue_wait: {o['queue_alerts']} post(s); at {_h(det)}"
        + (f" ({(det - slow0) * 60:.0f} min after the slowdown began)" if det else "")
        + (f"; onset found {_h(onset)}" if onset is not None else ""),
        "previews moved to local at " + (", ".join(_h(h) for h in away) or "never")
        + (f" ({(away[0] - slow0) * 60:.0f} min after the slowdown began)" if away else "")
        + "; back to hpc at " + (", ".join(_h(h) for h in back) or "never")
        + (f" ({(back[0] - slow1) * 60:.0f} min after it ended)" if back else ""),
        f"reroute findings posted: {len(o['reroute_alerts_away_h'])} away, "
        f"{len(o['reroute_alerts_back_h'])} back",
        "previews per target: " + "; ".join(f"{k[2:]}: {v}" for k, v in
                                            sorted(o["previews"].items()))
        + f" (probes {o['probes']}); batch jobs {o['batch_jobs']}",
        "preview turnaround (median, simulated min): " + ", ".join(
            f"{k[2:]} {v:.0f}" for k, v in o["turnaround_min"].items()),
        f"wall time {o['wall_s']:.0f} s ({o['hour_s']:g} s per simulated hour); load "
        f"average {o['load'][0]:.1f} at start, {o['load'][1]:.1f} at the end",
    ]
    return "\n".join(lines)


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hour", type=float, default=12.0,
                        help="real seconds per simulated hour (default 12)")
    parser.add_argument("--cadence", type=float, default=12.0,
                        help="simulated minutes between scans in beamtime (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slurm", action="store_true",
                        help="a real Slurm (started like the compute tests' fixture; root)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="run in this (new) folder and keep it: catalog, journal, events")
    parser.add_argument("--start", type=float, default=0.0,
                        help="first simulated hour to run (default 0)")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spotkit-day-") as tmp:
        if args.keep is not None:
            args.keep.mkdir(parents=True)
        out = run_day(args.keep or Path(tmp), hour=args.hour, cadence=args.cadence, seed=args.seed,
                      start=args.start, slurm=args.slurm,
                      log=lambda text: print(text, flush=True))
    print(_report(out))
    print(json.dumps(out, default=str))
    for name, ok in verdict(out).items():
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    if args.write:
        _write(out, args)
    return out


def verdict(o: dict[str, Any]) -> dict[str, bool]:
    """The benchmark's checks, by name."""
    away = [h for h, d in o["switches"] if d == "away"]
    back = [h for h, d in o["switches"] if d == "back"]
    return {
        "the monitor found the slowdown (change point on queue_wait, onset in the slow "
        "period)": o["change_onset_h"] is not None
        and o["slow_from"] <= o["change_onset_h"] < o["slow_until"],
        "the alert fired exactly once": o["queue_alerts"] == 1,
        "previews moved to local after the slowdown began": bool(away)
        and away[0] >= o["slow_from"],
        "and back to hpc after it ended": bool(back) and back[0] >= o["slow_until"]
        and len(back) == len(away),
        "no dataset lost": o["lost"] == 0 and o["parked"] == 0,
    }


def _write(o: dict[str, Any], args: Any) -> None:
    from _results import machine_line, write_section

    checks = [(name, ok) for name, ok in verdict(o).items()]
    lines = "\n".join(f"  - {name}: **{'yes' if ok else 'NO'}**" for name, ok in checks)
    if o.get("slurm"):
        target = f"""- **Batch target: a real Slurm** (slurm-wlm 22.05: munged, slurmctld, slurmd
  started by `tests/compute/slurm_cluster.py`, the compute tests' own start code), one node with
  {o['slurm']['cpus']} CPUs, FIFO (`sched/builtin`); each preview a real `sbatch` job
  (a notebook process), followed across passes by the watcher (one `squeue` per pass
  for all its jobs). **The slowdown is real:** from {SLOW_FROM:g} to {SLOW_UNTIL:g} h
  simulated, other users' exclusive jobs (`sbatch --exclusive --wrap "sleep ..."`,
  {BLOCKER:g} simulated min each) are kept waiting in the queue, one at a time, so a
  job submitted then waits for the running one and the waiting one (20-40 min)."""
        run = "--slurm "
    else:
        target = f"""- **Batch target:** not a real Slurm. `hpc` is a `Local` process pool with an
  **injected, recorded queue wait** per job (lognormal, sigma 0.25, median {NORMAL_WAIT:g}
  simulated min; {SLOW_WAIT:g} min for jobs submitted {SLOW_FROM:g}-{SLOW_UNTIL:g} h)."""
        run = ""
    text = f"""## Beamline day: 24 simulated hours through the watcher and its monitor (issue 15)

{machine_line()} Load average {o['load'][0]:.1f} at start, {o['load'][1]:.1f} at the end (2 cores
shared with 7 other engineers; run under `nice`).
- **Run:** `python benchmarks/bench_beamline_day.py {run}--hour {args.hour:g} --cadence \
{args.cadence:g} --seed {args.seed}`: the twin writes a scan every ~{args.cadence:g} simulated
  min in beamtime ({', '.join(f'{a:g}-{b:g} h' for a, b in BEAMTIME)}), three sizes; a real
  `Watcher` (`run_forever`) and `start_monitor` beside it, alerts to a real local webhook
  receiver. Time compressed on the real clock: 1 simulated hour = {args.hour:g} s.
{target}
  Previews have `queue_budget: {BUDGET:g} min, fallback: local` (`local`: 2 processes).
- **Result:**
```
{_report(o)}
```
- **Checks:**
{lines}
"""
    write_section("## Beamline day: 24 simulated hours", text)


if __name__ == "__main__":
    main()
