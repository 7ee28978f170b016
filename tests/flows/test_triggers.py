"""LiveTriggers: change-triggered decisions on a live series (onset / quiet / every), their
filters, cool-down and de-duplication, every decision recorded with its reason, actions in a
worker thread (notebook, priority, notify, hook, fit), windows, restart."""

from __future__ import annotations

import json
import logging
import pathlib
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from spotkit.catalog import LivePoint, open_catalog
from spotkit.compute import Target
from spotkit.flows import Journal, LiveTriggers, load_rules
from spotkit.sim import simulate_saxs_series

HEAD = """\
targets: {local: {kind: local, max_workers: 1}}
alerts:
  - {name: ops, log: {level: warning}}
"""


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    work = tmp_path_factory.mktemp("live")
    truth = simulate_saxs_series(work / "series.h5", n_frames=4, shape=(64, 64), seed=1,
                                 module_shape=None, sample="gel-7", beamline="12.3.1")
    return work, truth


@pytest.fixture
def cat(series, tmp_path):
    _work, truth = series
    catalog = open_catalog(tmp_path / "catalog.db")
    ds = catalog.ingest(truth.path)
    catalog.dataset_id = ds.id  # the test's series
    yield catalog
    catalog.close()


def rules(text: str, tmp_path=None):
    return load_rules(HEAD + textwrap.dedent(text), base_dir=tmp_path)


def features(frame: int, **values) -> LivePoint:
    return LivePoint(frame, "features", {"score": 0.1, "state": "watching", "flagged": False,
                                         **values})


def event(frame: int, onset: int, confidence: float = 0.999, feature: str = "band_2",
          **more) -> LivePoint:
    return LivePoint(frame, "event", {"onset": onset, "end": onset, "confidence": confidence,
                                      "feature": feature, **more})


def run(triggers: LiveTriggers, frames, events=None) -> list:
    events = events or {}
    out = []
    for f in frames:
        out += triggers.on_frame(features(f, **({"flagged": True} if f in events else {})),
                                 event=events.get(f))
    return out


def decisions(cat) -> list[tuple[int, str]]:
    return [(p.frame, p.kind) for p in cat.live_points(cat.dataset_id, kinds="decision")]


def test_nothing_matches_nothing_fires(cat):
    r = rules("""\
        live:
          - {name: other-beamline, match: {beamline: "7.3.3"}, on: every, frames: 1,
             actions: [{notify: {alert: ops}}]}
          - {name: sure, on: onset, min_confidence: 0.9, actions: [{notify: {alert: ops}}]}
        """)
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id, dataset={"beamline": "12.3.1"}) as t:
        assert [x.name for x in t.triggers] == ["sure"]
        assert run(t, range(50)) == []
    assert decisions(cat) == []


def test_onset_filters_dedup_and_cooldown(cat, caplog):
    r = rules("""\
        live:
          - name: bands
            on: onset
            min_confidence: 0.99
            features: ["band_*"]
            bands: [[0.2, 0.8]]
            cooldown: 20
            actions: [{notify: {alert: ops, severity: warning}}]
        """)
    caplog.set_level(logging.WARNING, logger="spotkit.alerts")
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id) as t:
        assert t.on_frame(features(10), event(10, 7, confidence=0.5, q_first=0.3,
                                               q_last=0.4)) == []  # not sure enough
        assert t.on_frame(features(11), event(11, 8, feature="total", q_first=0.3,
                                               q_last=0.4)) == []  # not a band feature
        assert t.on_frame(features(12), event(12, 9, q_first=0.9, q_last=1.2)) == []  # band
        assert t.on_frame(features(13), event(13, 9)) == []  # a whole-frame change: no band
        [d] = t.on_frame(features(14), event(14, 11, q_first=0.7, q_last=1.0))
        assert d.reason == ("onset at frame 11 (confidence 0.999, feature band_2, q 0.7-1), "
                            "confirmed at frame 14")
        assert d.anchor == 11
        assert t.on_frame(features(15), event(15, 11, q_first=0.7, q_last=1.0)) == []  # again
        assert t.on_frame(features(20), event(20, 18, q_first=0.5, q_last=0.6)) == []  # cool
        assert t.suppressed == {"bands": 1}
        assert [x.frame for x in t.on_frame(features(34), event(34, 31, q_first=0.5,
                                                                q_last=0.6))] == [34]
    assert decisions(cat) == [(14, "decision:bands"), (34, "decision:bands")]
    first = cat.live_points(cat.dataset_id, kinds="decision")[0].values
    assert first["reason"].startswith("onset at frame 11")
    assert first["onset"] == 11
    assert first["status"] == "done"
    assert first["notify"].startswith("sent: through alert ops")
    sent = [r.getMessage() for r in caplog.records if r.name == "spotkit.alerts"]
    assert len(sent) == 2
    assert "onset at frame 11" in sent[0]
    assert "[live trigger bands]" in sent[0]


def test_quiet_fires_once_per_quiet_stretch_and_every(cat):
    r = rules("""\
        live:
          - {name: settled, on: quiet, frames: 5, actions: [{notify: {alert: ops}}]}
          - {name: tick, on: every, frames: 10, actions: [{notify: {alert: ops}}]}
        """)
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id) as t:
        fired = run(t, range(30), events={12: event(12, 10)})
        # flagged frames (alarm) also end a quiet stretch
        fired += [d for f in range(30, 40)
                  for d in t.on_frame(features(f, state="alarm" if f == 33 else "watching"))]
    got = [(d.trigger, d.frame) for d in fired]
    assert got == [("settled", 4), ("tick", 9), ("settled", 17), ("tick", 19), ("tick", 29),
                   ("settled", 38), ("tick", 39)]
    assert [d.reason for d in fired][:2] == ["no change for 5 frames (frames 0-4)",
                                             "every 10 frames (frame 9)"]


def test_cooldown_in_seconds(cat):
    now = [1000.0]
    r = rules("""\
        live:
          - {name: tick, on: every, frames: 1, cooldown: 1m, actions: [{notify: {alert: ops}}]}
        """)
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id, clock=lambda: now[0]) as t:
        assert len(run(t, range(5))) == 1
        now[0] += 61
        assert [d.frame for d in run(t, range(5, 7))] == [5]


def test_actions_in_the_worker_never_block_and_failures_are_recorded(cat):
    release = threading.Event()
    calls = []

    def slow_fit(catalog, dataset_id, *, model, frames=None):
        calls.append((model, frames))
        release.wait(10)
        if len(calls) == 2:
            raise RuntimeError("no I(q) yet")

    r = rules("""\
        live:
          - {name: fit, on: every, frames: 2, actions: [{fit: {model: sphere, window: [1, 0]}}]}
        """)
    t = LiveTriggers(r, cat, dataset_id=cat.dataset_id, fit=slow_fit)
    start = time.perf_counter()
    assert len(run(t, range(200))) == 100  # the first fit blocks the worker meanwhile
    assert time.perf_counter() - start < 5  # the loop went on (it takes ms)
    release.set()
    t.close()
    assert calls[:2] == [("sphere", (0, 1)), ("sphere", (2, 3))]
    values = [p.values for p in cat.live_points(cat.dataset_id, kinds="decision:fit")]
    assert len(values) == 100
    assert values[0]["fit"] == "done: fitted sphere"
    assert values[1]["fit"] == "failed: RuntimeError: no I(q) yet"
    assert [o["status"] for o in t.outcomes][:3] == ["done", "failed", "done"]


def test_local_fit_needs_a_fit_function(cat):
    r = rules("""\
        live:
          - {name: fit, on: every, frames: 2, actions: [{fit: {model: sphere}}]}
        """)
    with pytest.raises(ValueError, match=r"fit=spotkit\.live\.fit_latest"):
        LiveTriggers(r, cat, dataset_id=cat.dataset_id)


def test_window_waits_for_its_frames_and_close_runs_the_rest(cat):
    seen = []
    r = rules("""\
        live:
          - name: around
            on: onset
            actions:
              - {name: fit-after, fit: {model: sphere, window: [3, 10]}}
              - {priority: {level: 7, window: [3, 10]}}
        """)
    t = LiveTriggers(r, cat, dataset_id=cat.dataset_id,
                     fit=lambda c, d, *, model, frames: seen.append(frames))
    run(t, range(20), events={15: event(15, 12)})
    t.wait()
    assert seen == []
    assert [(due, name) for due, _d, name in t.pending] == [(22, "fit-after")]
    point = cat.live_points(cat.dataset_id, kinds="decision")[0]
    assert point.values["status"] == "waiting for frames (fit-after)"
    assert point.values["priority"] == "done: frames 9-22 at priority 7"
    run(t, range(20, 23))
    t.wait()
    assert seen == [(9, 22)]
    assert t.pending == []
    assert cat.live_points(cat.dataset_id, kinds="decision")[0].values["status"] == "done"
    run(t, range(23, 30), events={25: event(25, 24)})
    t.close()  # the series ended at frame 29: the window is cut there
    assert seen == [(9, 22), (21, 29)]


def test_restart_decides_nothing_twice(cat):
    r = rules("""\
        live:
          - {name: onset, on: onset, actions: [{notify: {alert: ops}}]}
          - {name: settled, on: quiet, frames: 5, actions: [{notify: {alert: ops}}]}
          - {name: tick, on: every, frames: 10, actions: [{notify: {alert: ops}}]}
        """)
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id) as t:
        first = run(t, range(14), events={3: event(3, 1)})
    cat.record_live(cat.dataset_id, [event(3, 1)])  # as spotkit live records it
    # killed after frame 13; the restarted session goes on from frame 12 (not recorded)
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id) as t:
        again = run(t, range(12, 25))
        assert t.on_frame(features(25), event(25, 1)) == []  # that onset was decided on
    assert [(d.trigger, d.frame) for d in first] == [("onset", 3), ("settled", 8), ("tick", 9)]
    assert [(d.trigger, d.frame) for d in again] == [("tick", 19)]


class _Hook(BaseHTTPRequestHandler):
    got: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.got.append(json.loads(body))
        self.send_response(204 if len(_Hook.got) == 1 else 500)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_hooks_post_json_or_run_a_command(cat, tmp_path, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SPOTKIT_TEST_HOOK", f"http://127.0.0.1:{server.server_port}/live")
    out = tmp_path / "hook.json"
    script = f"import sys, pathlib; pathlib.Path({str(out)!r}).write_bytes(sys.stdin.buffer.read())"
    python = json.dumps(sys.executable)
    r = rules(f"""\
        live:
          - name: tell
            on: onset
            actions:
              - {{hook: {{url_env: SPOTKIT_TEST_HOOK, timeout: 5}}}}
              - {{hook: {{command: [{python}, "-c", {json.dumps(script)}]}}}}
              - {{hook: {{command: [{python}, "-c", "import sys; sys.exit(3)"]}}}}
        """)
    try:
        with LiveTriggers(r, cat, dataset_id=cat.dataset_id) as t:
            run(t, range(8), events={4: event(4, 2), 7: event(7, 6)})
    finally:
        server.shutdown()
    assert [g["frame"] for g in _Hook.got] == [4, 7]
    assert _Hook.got[0]["reason"].startswith("onset at frame 2")
    assert _Hook.got[0]["dataset_id"] == cat.dataset_id
    assert _Hook.got[0]["event"]["onset"] == 2
    assert json.loads(out.read_text())["frame"] == 7
    v = [p.values for p in cat.live_points(cat.dataset_id, kinds="decision")]
    assert v[0]["hook-1"] == "done: POST $SPOTKIT_TEST_HOOK: HTTP 204"
    assert v[1]["hook-1"] == "failed: RuntimeError: hook $SPOTKIT_TEST_HOOK answered HTTP 500 " \
                             "Internal Server Error"
    assert v[1]["hook-2"] == f"done: {pathlib.Path(sys.executable).name} exited 0"
    assert v[1]["hook-3"].startswith("failed: RuntimeError:")
    assert "exited with 3" in v[1]["hook-3"]


PARAMS = 'dataset_id = None\nframes = None\nlabel = "x"\n'


class Recorder(Target):
    """A compute target that keeps the batch scripts it is given (the job is not run: the
    notebook run itself is spotkit.submit's, tested in tests/compute)."""

    name = "recorder"

    def __init__(self):
        self.scripts = []

    def submit_script(self, script, *, job_name, workdir):
        self.scripts.append((script, job_name))
        return f"rec-{len(self.scripts)}"


def test_notebook_on_the_frames_around_an_onset_records_why(cat, tmp_path, monkeypatch):
    nb = new_notebook(cells=[new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
                             new_code_cell("print(frames, label)")])
    nbformat.write(nb, tmp_path / "look.ipynb")
    r = rules("""\
        live:
          - name: look
            on: onset
            actions:
              - {notebook: {path: look.ipynb, target: local, window: [2, 3],
                            parameters: {label: gel}}}
        """, tmp_path)
    target = Recorder()
    monkeypatch.setattr(r, "target", lambda name: target)
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id) as t:
        run(t, range(9), events={8: event(8, 6)})
        t.wait()
        assert t.jobs == []  # the window's last frame (9) is not there yet
        run(t, range(9, 12))
        t.wait()
        [job] = t.jobs
    [(script, job_name)] = target.scripts
    assert job_name == "spotkit-live-look-notebook"
    spec = json.loads((script.parent / "job.json").read_text())
    assert spec["parameters"] == {"label": "gel", "frames": [4, 9]}
    assert spec["notebook"] == str(tmp_path / "look.ipynb")
    [run_] = cat[cat.dataset_id].runs
    assert run_.id == job.run_id
    assert run_.state == "queued"
    live = run_.context["live"]
    assert live["trigger"] == "look"
    assert live["window"] == [4, 9]
    assert live["reason"] == "onset at frame 6 (confidence 0.999, feature band_2), " \
                             "confirmed at frame 8"
    point = cat.live_points(cat.dataset_id, kinds="decision")[0]
    assert point.frame == 8
    assert point.values["notebook_run_id"] == job.run_id
    assert point.values["notebook"].startswith(f"submitted: run {job.run_id} on local")


def test_priority_orders_the_journal_queue(cat):
    journal = Journal(cat.path)
    for name in ("a.h5", "b.h5", "c.h5"):
        journal.discover(name, f"/inbox/{name}", size=1, mtime_ns=1)
    journal.update_item("c.h5", dataset_id=cat.dataset_id)
    r = rules("""\
        live:
          - {name: first, on: onset, actions: [{priority: {level: 5}}]}
        """)
    assert [i.key for i in journal.due()] == ["a.h5", "b.h5", "c.h5"]
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id, journal=journal) as t:
        run(t, range(4), events={3: event(3, 2)})
    assert [i.key for i in journal.due()] == ["c.h5", "a.h5", "b.h5"]
    [p] = journal.priorities(cat.dataset_id)
    assert p["first_frame"] is None
    assert p["priority"] == 5
    assert p["reason"] == "live trigger 'first': onset at frame 2 (confidence 0.999, " \
                          "feature band_2), confirmed at frame 3"
    # a file not ingested yet gets its priority by path
    journal.prioritize("ds-later", priority=9, path="/inbox/b.h5", reason="operator")
    assert [i.key for i in journal.due()] == ["b.h5", "c.h5", "a.h5"]
    journal.prioritize("ds-later", priority=3, path="/inbox/b.h5", reason="lower")
    assert [(p["priority"], p["reason"]) for p in journal.priorities("ds-later")] == [
        (9, "operator")]
    journal.prioritize(cat.dataset_id, priority=8, frames=(4, 5), reason="onset at 4")
    assert journal.frame_order(cat.dataset_id, 7) == [4, 5, 0, 1, 2, 3, 6]
    journal.close()


def test_a_fit_without_a_window_is_of_the_frame_it_was_decided_at(cat):
    seen = []
    r = rules("""\
        live:
          - {name: sphere, on: every, frames: 10, actions: [{fit: {model: sphere}}]}
        """)
    gate = threading.Event()

    def fit(catalog, dataset_id, *, model, frames):
        gate.wait(5)  # the worker is slow: frames keep coming meanwhile
        seen.append(frames)

    with LiveTriggers(r, cat, dataset_id=cat.dataset_id, fit=fit) as t:
        run(t, range(30))
        gate.set()
    assert seen == [(9, 9), (19, 19), (29, 29)]


def test_a_fit_on_a_target_runs_notebook_saxs_fit(cat, monkeypatch):
    r = rules("""\
        live:
          - name: shape
            on: every
            frames: 5
            actions:
              - fit: {model: guinier_porod, target: local, params: {s: 1.0}, free: [rg, d],
                      q_range: [0.1, 2.0], method: lm}
        """)
    target = Recorder()
    monkeypatch.setattr(r, "target", lambda name: target)
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id) as t:
        run(t, range(5))
    [(script, _job_name)] = target.scripts
    spec = json.loads((script.parent / "job.json").read_text())
    assert pathlib.Path(spec["notebook"]).name == "saxs_fit.ipynb"
    assert spec["parameters"] == {"model": "guinier_porod", "params": {"s": 1.0},
                                  "free": ["rg", "d"], "method": "lm", "q_min": 0.1,
                                  "q_max": 2.0, "frames": [4, 4]}
    [run_] = cat[cat.dataset_id].runs
    assert run_.context["live"]["reason"] == "every 5 frames (frame 4)"


def test_a_quiet_stretch_held_back_by_its_cooldown_says_how_long_it_was(cat):
    r = rules("""\
        live:
          - {name: settled, on: quiet, frames: 5, cooldown: 10, actions: [{notify: {alert: ops}}]}
        """)
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id) as t:
        fired = run(t, range(20), events={6: event(6, 5)})
    assert [d.reason for d in fired] == ["no change for 5 frames (frames 0-4)",
                                         "no change for 8 frames (frames 7-14)"]
    assert t.suppressed == {"settled": 3}


def test_a_restart_finishes_what_a_decision_left_undone_once(cat, tmp_path, monkeypatch):
    nb = new_notebook(cells=[new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
                             new_code_cell("print(frames, label)")])
    nbformat.write(nb, tmp_path / "look.ipynb")
    r = rules("""\
        live:
          - name: look
            on: onset
            actions:
              - {priority: {level: 3}}
              - {notebook: {path: look.ipynb, target: local, window: [2, 3]}}
        """, tmp_path)
    target = Recorder()
    monkeypatch.setattr(r, "target", lambda name: target)
    t = LiveTriggers(r, cat, dataset_id=cat.dataset_id)
    run(t, range(9), events={8: event(8, 6)})
    t.close(flush=False)  # killed while the notebook waits for frame 9
    [point] = cat.live_points(cat.dataset_id, kinds="decision")
    assert point.values["status"] == "waiting for frames (notebook)"
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id) as t:
        assert [due for due, _d, _a in t.pending] == [9]
        assert run(t, range(9, 12)) == []
    [point] = cat.live_points(cat.dataset_id, kinds="decision")
    assert point.values["status"] == "done"
    assert point.values["priority"] == "done: the whole series at priority 3"
    run_id = point.values["notebook_run_id"]
    assert len(target.scripts) == 1
    # killed after the run was submitted, before its outcome was recorded: adopted, not twice
    values = {k: v for k, v in point.values.items() if not k.startswith("notebook")}
    cat.record_live(cat.dataset_id, [LivePoint(8, "decision:look", {**values,
                                                                     "status": "deciding"})])
    with LiveTriggers(r, cat, dataset_id=cat.dataset_id) as t:
        run(t, range(12, 14))
    [point] = cat.live_points(cat.dataset_id, kinds="decision")
    assert point.values["notebook"] == f"submitted: run {run_id} (started before a restart)"
    assert len(target.scripts) == 1
    assert len(cat[cat.dataset_id].runs) == 1
