"""The ``live:`` section of rules.yaml: validated with the rest of the file (line, trigger,
action, field, did-you-mean; every problem at once), its canonical form and objects."""

from __future__ import annotations

import textwrap

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from spotkit.errors import RulesError
from spotkit.flows import LiveTrigger, load_rules

HEAD = """\
targets:
  local: {kind: local, max_workers: 1}
  cluster: {kind: slurm, partition: realtime}
alerts:
  - {name: chat, webhook: {url_env: SPOTKIT_CHAT_URL, format: slack}}
"""

GOOD = HEAD + """\
live:
  - name: onset-look
    description: a closer look at every sure change in the SAXS bands
    match: {beamline: "12.3.*", sample: [gel*, film*]}
    on: onset
    min_confidence: 0.99
    features: ["band_*"]
    bands: [[0.2, 0.8], [1.5, 2.0]]
    cooldown: 20
    actions:
      - notebook: {path: look.ipynb, target: local, window: [5, 20], parameters: {label: a}}
      - priority: {level: 10, window: [5, 20]}
      - notify: {alert: chat, severity: warning}
      - {name: ioc, hook: {url: "http://beamline-ioc:8080/spotkit", timeout: 2}}
      - hook: {command: [/usr/local/bin/beamline-pause, --why]}
  - name: sphere
    on: every
    frames: 10
    cooldown: 30s
    actions:
      - fit: {model: sphere, window: [4, 0]}
  - name: settled
    on: quiet
    frames: 50
    actions: [{priority: {level: 1}}]
"""


def write(tmp_path, text: str):
    nb = new_notebook(cells=[new_code_cell('dataset_id = None\nframes = None\nlabel = "x"\n',
                                           metadata={"tags": ["parameters"]}),
                             new_code_cell("print(frames)")])
    nbformat.write(nb, tmp_path / "look.ipynb")
    nb.cells[0].source = 'dataset_id = None\nlabel = "x"\n'
    nbformat.write(nb, tmp_path / "no_frames.ipynb")
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text: str) -> dict[tuple, str]:
    with pytest.raises(RulesError) as info:
        load_rules(write(tmp_path, text))
    return {(p.line, p.rule, p.action, p.field): p.message for p in info.value.problems}


def test_a_good_live_section_loads_into_triggers(tmp_path):
    rules = load_rules(write(tmp_path, GOOD))
    look, sphere, settled = rules.live
    assert isinstance(look, LiveTrigger)
    assert (look.on, look.min_confidence, look.features, look.bands) == (
        "onset", 0.99, ("band_*",), ((0.2, 0.8), (1.5, 2.0)))
    assert (look.cooldown_frames, sphere.cooldown_seconds, sphere.frames) == (20, 30, 10)
    assert [(a.name, a.kind) for a in look.actions] == [
        ("notebook", "notebook"), ("priority", "priority"), ("notify", "notify"),
        ("ioc", "hook"), ("hook", "hook")]
    assert look.actions[0].options["notebook_path"] == str(tmp_path / "look.ipynb")
    assert look.actions[0].window == (5, 20)
    assert look.matches({"beamline": "12.3.1", "sample": "film-3"})
    assert not look.matches({"beamline": "12.3.1", "sample": "powder"})
    assert settled.match == {}
    assert settled.matches({})
    # the canonical form loads into equal rules
    again = load_rules(rules.to_dict(), base_dir=tmp_path)
    assert again == rules
    assert again.live == rules.live
    # YAML 1.1 reads 'on:' as true: the file means 'on'
    assert rules.to_dict()["live"][0]["on"] == "onset"


def test_a_file_of_live_triggers_only(tmp_path):
    rules = load_rules(write(tmp_path, """\
        targets: {local: {kind: local}}
        live:
          - {name: tick, on: every, frames: 5, actions: [{priority: {level: 2}}]}
        """))
    assert rules.rules == ()
    assert [t.name for t in rules.live] == ["tick"]
    got = problems(tmp_path, "targets: {local: {kind: local}}\n")
    assert list(got.values()) == ["missing: a list of rules, each with 'name', 'match' and "
                                  "'actions' (a file with live triggers only may leave rules "
                                  "out)"]


def test_every_problem_at_once_with_its_line(tmp_path):
    got = problems(tmp_path, HEAD + """\
live:
  - name: onset look
    on: onst
    cooldown: 5x
    actions:
      - notebook: {path: no_frames.ipynb, target: local, window: [5, 20]}
      - notify: {alert: chta}
      - hook: {url: "http://ioc/?token=abc"}
      - {}
      - {fit: {model: sphere}, hook: {command: [ls]}}
      - priority: {level: 0, window: [5]}
      - hook: {command: ls}
  - name: settled
    on: quiet
    actions: [{notify: {alert: chat}}]
  - name: picky
    on: every
    frames: 10
    min_confidence: 0.5
    actions: [{notify: {alert: chat}}]
  - name: sure
    on: onset
    frames: 3
    actions: [{notify: {alert: chat}}]
  - name: sure
    on: onset
    bands: [[0.8, 0.2]]
    actions:
      - notebook: {path: saxs_quicklook, parameters: {nonsense: 1}}
      - notebook: {path: look.ipynb, target: cluster}
""")
    live0 = "live 0 'onset look'"
    assert got == {
        (7, live0, None, "name"): "'onset look': every live trigger needs a name: letters, "
        "digits and _ . @ + - (it names its decisions' points, decision:<name>)",
        (8, live0, None, "on"): "'onst': on is one of ['onset', 'quiet', 'every']: a confirmed "
        "change, nothing changed for 'frames' frames, or every 'frames' frames",
        (9, live0, None, "cooldown"): "'5x': cooldown is a number of frames (20) or a duration "
        "with its unit (90s, 5m, 1h)",
        (11, live0, "notebook", "notebook.window"): "no_frames.ipynb does not declare a "
        "parameter 'frames': a window's frames [first, last] are passed there; declare it in "
        "the notebook's parameters cell, or drop the window",
        (12, live0, "notify", "notify.alert"): "unknown alert 'chta'; defined alerts: ['chat'] "
        "(did you mean 'chat'?)",
        (13, live0, "hook-1", "hook"): "this URL holds a secret token: set it in an environment "
        "variable and name that with url_env",
        (14, live0, "action-4", None): "an action does exactly one of ['notebook', 'priority', "
        "'notify', 'hook', 'fit'] (got none); write two actions for two",
        (15, live0, "hook-2", None): "an action does exactly one of ['notebook', 'priority', "
        "'notify', 'hook', 'fit'] (got ['hook', 'fit']); write two actions for two",
        (16, live0, "priority", "priority.level"): "0: level is a whole number 1-1000 (higher "
        "goes first)",
        (16, live0, "priority", "priority.window"): "[5]: window is [before, after], two whole "
        "numbers of frames >= 0 (e.g. [5, 20]: from 5 frames before the onset to 20 after it)",
        (17, live0, "hook-3", "hook.command"): "'ls': command is a list of strings [program, "
        "arg, ...] (no shell: the decision comes as JSON on its standard input)",
        (18, "live 1 'settled'", None, None): "on: quiet needs frames: a whole number >= 1 "
        "(e.g. frames: 50)",
        (21, "live 2 'picky'", None, None): "['min_confidence'] select changes: they belong to "
        "on: onset, not on: every",
        (26, "live 3 'sure'", None, None): "frames belongs to on: quiet or on: every; an onset "
        "trigger fires on each confirmed change (use cooldown to space them)",
        (30, "live 4 'sure'", None, "name"): "live trigger name 'sure' is already used by live "
        "trigger 3; give each its own name",
        (32, "live 4 'sure'", None, "bands"): "[[0.8, 0.2]]: bands is a list of q ranges [low, "
        "high] with low < high, in the live series' radial unit (e.g. [[0.2, 0.8]] nm^-1)",
        (34, "live 4 'sure'", "notebook-1", "notebook.target"): "no target: name one of "
        "['cluster', 'local'] (or set defaults.target)",
        (34, "live 4 'sure'", "notebook-1", "notebook.parameters.nonsense"): "is not declared "
        "by the notebook",
    }


def test_a_hook_url_secret_is_never_echoed(tmp_path):
    got = problems(tmp_path, HEAD + """\
live:
  - name: t
    on: onset
    actions: [{hook: {url_env: "https://hooks.example.org/T000/secret"}}]
""")
    [message] = got.values()
    assert "secret" not in message
    assert "hooks.example.org" not in message
    assert "the NAME of an environment variable" in message


def test_a_fit_names_a_known_model_and_a_remote_fit_needs_its_notebook(tmp_path):
    got = problems(tmp_path, HEAD + """\
live:
  - name: t
    on: every
    frames: 5
    actions: [{fit: {model: spherre}}, {fit: {model: sphere, target: clstr}}]
""")
    from spotkit.scattering import SAS_MODELS

    assert got == {
        (10, "live 0 't'", "fit-1", "fit.model"): "unknown model 'spherre' (did you mean "
        f"'sphere'?); choose one of {sorted(SAS_MODELS)}",
        (10, "live 0 't'", "fit-2", "fit.target"): "unknown target 'clstr'; defined targets: "
        "['cluster', 'local'] (did you mean 'cluster'?)"}


def test_the_retention_section(tmp_path):
    from spotkit.flows import FrameRetention

    rules = load_rules(write(tmp_path, HEAD + """\
live: [{name: t, on: onset, actions: [{priority: {level: 1}}]}]
retention:
  frames: {validated_by: [replica, verdict], min_age: 2d, action: move, dest: /archive/cold,
           location: warehouse}
"""))
    policy = FrameRetention.from_rules(rules)
    assert policy == FrameRetention(validated_by=("replica", "verdict"), min_age_days=2.0,
                                    dest="/archive/cold", location="warehouse", dry_run=True)
    assert FrameRetention.from_rules(load_rules(rules.to_dict())) == policy
    assert FrameRetention.from_rules(load_rules(write(tmp_path, GOOD))) is None
    got = problems(tmp_path, HEAD + """\
live: [{name: t, on: onset, actions: [{priority: {level: 1}}]}]
retention:
  frames: {validated_by: [aproval], min_age: soon, action: age_out}
""")
    assert got == {
        (8, None, None, "retention.frames.validated_by"):
        "['aproval']: validated_by is one or more of ['replica', 'verdict', 'approval'] (every "
        "one given must hold) (did you mean 'approval'?)",
        (8, None, None, "retention.frames.min_age"): "'soon': min_age is a duration (30d, 12h)"}
    got = problems(tmp_path, HEAD + """\
live: [{name: t, on: onset, actions: [{priority: {level: 1}}]}]
retention:
  frames: {validated_by: approval, action: age_out}
""")
    assert list(got.values()) == [
        "action: age_out deletes frames: validated_by must include replica (a verified copy "
        "elsewhere), so no frame's only copy is ever deleted"]


def test_a_remote_fit_is_checked_against_notebook_saxs_fit(tmp_path):
    got = problems(tmp_path, HEAD + """\
live:
  - name: t
    on: every
    frames: 5
    actions: [{fit: {model: sphere, target: cluster, method: newtn, q_range: [2, 1]}}]
""")
    assert got[(10, "live 0 't'", "fit", "fit.q_range")] == (
        "[2, 1]: q_range is [low, high], 0 <= low < high, in nm^-1")
    got = problems(tmp_path, HEAD + """\
live:
  - name: t
    on: every
    frames: 5
    actions: [{fit: {model: sphere, target: cluster, method: newtn}}]
""")
    [(where, message)] = got.items()
    assert where == (10, "live 0 't'", "fit", "fit.method")
    assert "newtn" in message
