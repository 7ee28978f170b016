"""Facility rules: loading, validation (every problem at once), matching and ordering."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotkit.errors import RulesError, SpotkitError
from spotkit.flows._rules import Action, RetryPolicy, Rules, load_rules

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "catalogs" / "rules.example.yaml"

BASE = """\
targets:
  local: {kind: local, max_workers: 1, concurrency: 2}
  cluster: {kind: slurm, partition: debug, time: "00:10:00"}
rules:
  - name: tomo
    match: {beamline: "8.3.2", kind: tomo/raw, sample: "shale-*"}
    actions:
      - {name: recon, notebook: tomo_recon, stage: full, after: preview, target: cluster,
         parameters: {binning: 2}}
      - {name: preview, notebook: tomo_quicklook, stage: preview, target: local,
         parameters: {n_slices: 3}}
  - name: any-tomo
    match: {kind: tomo/raw}
    actions:
      - {name: extra, notebook: tomo_quicklook, stage: preview, target: local}
  - name: saxs
    match: {beamline: ["7.3.3", "12.3.1"], kind: saxs/raw, metadata: {energy_kev: "1*"}}
    actions:
      - {name: quick, notebook: saxs_quicklook, target: local, stage: preview}
"""


@pytest.fixture(scope="module")
def example() -> Rules:
    return load_rules(EXAMPLE)


@pytest.fixture(scope="module")
def base() -> Rules:
    return load_rules(BASE)


def test_example_loads(example):
    assert example.facility == "ALS"
    assert example.stages == ("preview", "full")
    tomo = example.actions_for({"beamline": "8.3.2", "kind": "tomo/raw", "sample": "s"})
    assert [(a.name, a.notebook, a.stage) for a in tomo] == [
        ("preview", "tomo_quicklook", "preview"), ("recon", "tomo_recon", "full")]
    assert tomo[0].parameters == {"n_slices": 3}
    assert tomo[1].parameters == {"binning": 2}
    assert tomo[1].after == ("preview",)
    assert all(a.notebook_path.is_file() for a in tomo)
    saxs = example.actions_for({"beamline": "7.3.3", "kind": "saxs/raw"})
    assert [(a.notebook, a.stage) for a in saxs] == [("saxs_quicklook", "preview"),
                                                     ("saxs_reduce", "full")]
    assert all(a.notebook_path.is_file() for a in saxs)
    assert example.targets["nersc"]["kind"] == "nersc"


def test_matching_by_beamline_kind_and_globs(base):
    def keys(**facts):
        return [a.key for a in base.actions_for(facts)]

    assert keys(beamline="8.3.2", kind="tomo/raw", sample="shale-07") == [
        "tomo/preview", "any-tomo/extra", "tomo/recon"]
    # sample glob does not match: only the kind-wide rule applies
    assert keys(beamline="8.3.2", kind="tomo/raw", sample="bone-1") == ["any-tomo/extra"]
    assert keys(beamline="8.3.2", kind="tomo/raw") == ["any-tomo/extra"]
    assert keys(beamline="12.3.1", kind="saxs/raw", metadata={"energy_kev": 10}) == [
        "saxs/quick"]
    assert keys(beamline="7.3.3", kind="saxs/raw", metadata={"energy_kev": 8}) == []
    assert keys(beamline="7.3.3", kind="saxs/raw") == []  # metadata key missing
    assert keys(beamline="8.3.2", kind="tomo/recon") == []
    # a sample kept only in the metadata counts too
    assert "tomo/recon" in keys(beamline="8.3.2", kind="tomo/raw",
                                metadata={"sample": "shale-2"})


def test_preview_first_and_resolved_settings(base):
    actions = base.actions_for({"beamline": "8.3.2", "kind": "tomo/raw", "sample": "shale-1"})
    assert [a.stage for a in actions] == ["preview", "preview", "full"]
    first, recon = actions[0], actions[-1]
    assert isinstance(first, Action)
    assert first.target == "local"
    assert first.concurrency == 2
    assert first.target_settings["max_workers"] == 1
    assert recon.target == "cluster"
    assert recon.concurrency == 1
    assert recon.target_settings["partition"] == "debug"
    assert recon.retry == RetryPolicy()
    assert recon.rules_version == base.version
    prov = recon.provenance()
    assert prov["rules_version"] == base.version
    assert prov["parameters"] == {"binning": 2}


def test_matches_a_catalog_dataset(catalog, tiny_tomo, example):
    ds = catalog.ingest(tiny_tomo[0])
    assert ds.beamline == "8.3.2"
    assert ds.kind == "tomo/raw"
    assert [a.name for a in example.actions_for(ds)] == ["preview", "recon"]


def test_round_trip_and_version(example, base):
    again = load_rules(example.to_dict())
    assert again == example
    assert again.version == example.version
    assert len(example.digest) == 64
    assert base.version != example.version
    assert again.to_dict() == example.to_dict()
    changed = example.to_dict()
    changed["rules"][0]["actions"][0]["parameters"]["n_slices"] = 5
    assert load_rules(changed).version != example.version


def test_target_construction(base, example):
    from spotkit.compute import Local, Slurm

    local = base.target("local")
    assert isinstance(local, Local)
    assert local.max_workers == 1
    slurm = example.target("cluster")
    assert isinstance(slurm, Slurm)
    assert slurm.partition == "realtime"
    with pytest.raises(KeyError, match="defined"):
        base.target("nowhere")


def test_retry_policy():
    policy = RetryPolicy(attempts=5, backoff=1, factor=3, max_backoff=10)
    assert policy.delays() == [1.0, 3.0, 9.0, 10.0]
    rules = load_rules(BASE.replace("targets:", "retry: {attempts: 2, backoff: 5}\ntargets:"))
    assert rules.retry == RetryPolicy(attempts=2, backoff=5.0)
    assert rules.actions_for({"kind": "tomo/raw"})[0].retry.attempts == 2


def _problems(text) -> list:
    with pytest.raises(RulesError) as info:
        load_rules(text)
    assert isinstance(info.value, SpotkitError)
    return info.value.problems


def test_every_problem_reported_at_once(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("""\
targets:
  local: {kind: local, max_workers: 1}
rules:
  - name: tomo
    match: {beamline: "8.3.2", kind: tomo/raw}
    actions:
      - {name: preview, notebook: tomo_quicklook, stage: preview, target: cori}
      - {name: recon, notebook: tomo_recno, stage: full, target: local}
      - {name: recon, notebook: tomo_recon, stage: full, target: local, after: previwe}
      - name: slices
        notebook: tomo_quicklook
        stage: preview
        target: local
        parameters: {n_slices: "three"}
""")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    err = info.value
    assert err.source == str(path)
    assert str(path) in str(err)
    found = {(p.action, p.field, p.line) for p in err.problems}
    assert found == {
        ("preview", "target", 7),        # unknown target
        ("recon", "notebook", 8),        # unknown notebook
        ("recon", "name", 9),            # duplicate action name
        ("recon", "after", 9),           # unknown `after`
        ("slices", "parameters.n_slices", 14),  # wrong type for the notebook's parameter
    }, err.problems
    assert all(p.rule == "rule 0 'tomo'" for p in err.problems)
    text = str(err)
    assert text.startswith("5 problem(s)")
    assert "unknown target 'cori'; defined targets: ['local']" in text
    assert "tomo_recon" in text  # the list of shipped notebooks
    assert "line 7" in text


def test_yaml_syntax_error_names_the_line():
    problems = _problems("targets:\n  local: {kind: local\nrules: []\n")
    assert len(problems) == 1
    assert problems[0].line == 3
    assert "not valid YAML" in str(problems[0])
    assert "line 3" in str(problems[0])


def test_undeclared_and_reserved_parameters():
    text = BASE.replace("parameters: {n_slices: 3}",
                        "parameters: {n_slice: 3, dataset_id: x}")
    problems = _problems(text)
    by_field = {p.field: p for p in problems}
    assert set(by_field) == {"parameters.n_slice", "parameters.dataset_id"}
    assert "not declared" in by_field["parameters.n_slice"].message
    assert "'n_slices'" in by_field["parameters.n_slice"].message
    assert "set by spotkit" in by_field["parameters.dataset_id"].message


@pytest.mark.parametrize("field", ["key", "secret", "client_secret", "token"])
def test_no_secrets_in_the_rules(field):
    text = BASE.replace("partition: debug", f"{field}: abc123, partition: debug")
    (problem,) = _problems(text)
    assert problem.rule == "target 'cluster'"
    assert problem.field == field
    assert "key file" in problem.message
    assert "key_file" in problem.message
    assert "abc123" not in str(problem)  # the secret itself is never echoed


def test_key_material_is_refused_even_under_an_allowed_name():
    text = BASE.replace("cluster: {kind: slurm, partition: debug, time: \"00:10:00\"}",
                        "cluster: {kind: nersc, key_file: '-----BEGIN PRIVATE KEY-----'}")
    (problem,) = _problems(text)
    assert problem.field == "key_file"
    assert "BEGIN" not in str(problem)


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("stage: full, after", "stage: final, after", "stage", "unknown stage"),
        ("after: preview, target: cluster", "after: recon, target: cluster", "after",
         "unknown"),
        ("stage: preview, target: local,\n", "stage: full, target: local,\n", "after",
         "bad stage order"),
        ("max_workers: 1", "max_workers: two", "max_workers", "integer"),
        ("partition: debug", "partitoin: debug", "partitoin", "not a setting"),
        ("kind: slurm", "kind: pbs", "kind", "unknown kind"),
        ("time: \"00:10:00\"", "time: soon", "time", "time"),
        ("match: {kind: tomo/raw}", "match: {sample: x}", "match", "beamline"),
        ("concurrency: 2", "concurrency: 0", "concurrency", ">= 1"),
    ],
)
def test_single_problems(old, new, field, words):
    assert old in BASE
    problems = _problems(BASE.replace(old, new, 1))
    assert any(p.field == field and words in p.message for p in problems), problems


def test_not_a_mapping_and_unknown_fields():
    assert "mapping" in _problems("- just\n- a list\n")[0].message
    problems = _problems(BASE + "colour: blue\n")
    assert [p.field for p in problems] == ["colour"]
    assert problems[0].line == 20


def test_notebook_path_relative_to_the_rules_file(tmp_path):
    import shutil

    from spotkit.runs import pipeline_notebook

    (tmp_path / "nb").mkdir()
    shutil.copy(pipeline_notebook("saxs_quicklook"), tmp_path / "nb" / "mine.ipynb")
    path = tmp_path / "rules.yaml"
    path.write_text(BASE.replace("notebook: saxs_quicklook", "notebook: nb/mine.ipynb"))
    rules = load_rules(path)
    (quick,) = rules.actions_for({"beamline": "7.3.3", "kind": "saxs/raw",
                                  "metadata": {"energy_kev": 12}})
    assert quick.notebook_path == (tmp_path / "nb" / "mine.ipynb").resolve()
    path.write_text(BASE.replace("notebook: saxs_quicklook", "notebook: nb/missing.ipynb"))
    with pytest.raises(RulesError, match="no notebook file at"):
        load_rules(path)


def test_nersc_target_settings(monkeypatch):
    import functools

    import spotkit.compute._nersc as nersc_module
    from spotkit.compute import _targets

    made = {}
    real = nersc_module.NERSC

    class FakeNERSC(real):  # the real settings (signature), nothing contacted
        @functools.wraps(real.__init__)
        def __init__(self, machine="perlmutter", **kwargs):
            made.update(machine=machine, **kwargs)

    monkeypatch.setitem(_targets._REGISTRY, "nersc", FakeNERSC)
    example = load_rules(EXAMPLE)
    assert isinstance(example.target("nersc"), FakeNERSC)
    assert made["key"] == "spotkit.pem"  # key_file names the file; the key stays in it
    assert made["qos"] == "realtime"
    assert "concurrency" not in made
    assert "kind" not in made
    text = EXAMPLE.read_text().replace("qos: realtime", "qos: fast")
    (problem,) = _problems(text)
    assert problem.field == "qos"
    assert "'debug'" in problem.message


def test_key_pasted_into_parameters_is_refused():
    text = BASE.replace("parameters: {binning: 2}",
                        "parameters: {binning: '-----BEGIN PRIVATE KEY----- abc'}")
    problems = _problems(text)
    assert any("private key" in p.message for p in problems)
    assert not any("abc" in str(p) for p in problems)


@pytest.mark.parametrize("env", [
    '{SF_CLIENT_KEY: "-----BEGIN RSA PRIVATE KEY----- abc"}',
    "{NERSC_PASSWORD: hunter2}",
    "{MY_API_TOKEN: abc123}",
    "{AWS_SECRET_ACCESS_KEY: abc123}",
    "{nested: {deeper: [1, '-----BEGIN OPENSSH PRIVATE KEY----- abc']}}",
])
def test_secrets_at_any_depth_are_refused_with_their_line(env):
    text = BASE.replace('  local: {kind: local, max_workers: 1, concurrency: 2}',
                        f'  local: {{kind: local, max_workers: 1, concurrency: 2, env: {env}}}')
    problems = _problems(text)
    assert problems, f"env {env} was accepted"
    assert all(p.line == 2 for p in problems), [str(p) for p in problems]
    assert any("secret" in p.message or "private key" in p.message for p in problems)
    # the secret itself is never echoed back
    assert not any("abc" in str(p) or "hunter2" in str(p) for p in problems)


def test_ordinary_environment_and_file_names_pass():
    text = BASE.replace('  local: {kind: local, max_workers: 1, concurrency: 2}',
                        "  local: {kind: local, max_workers: 1, concurrency: 2, env: "
                        "{OMP_NUM_THREADS: '4', HDF5_USE_FILE_LOCKING: 'FALSE', "
                        "SSH_KEY_FILE: ~/.ssh/id_spot, KEYBOARD_LAYOUT: us}}")
    rules = load_rules(text)
    assert rules.targets["local"]["env"]["OMP_NUM_THREADS"] == "4"


def test_a_notebook_that_does_not_accept_the_rules_kind_is_refused_at_load():
    text = BASE.replace("{name: quick, notebook: saxs_quicklook,",
                        "{name: quick, notebook: tomo_quicklook,")
    (problem,) = _problems(text)
    assert problem.field == "notebook"
    assert problem.rule.endswith("'saxs'")
    assert "tomo_quicklook.ipynb accepts datasets of kind ['tomo/raw']" in problem.message
    assert "saxs/raw" in problem.message


def test_parameters_are_checked_as_run_notebook_checks_them():
    text = BASE.replace("parameters: {n_slices: 3}", "parameters: {n_slices: 0, n_slice: 2}")
    problems = {p.field: p.message for p in _problems(text)}
    assert "parameters.n_slices" in problems  # below the notebook's declared minimum
    assert "did you mean 'n_slices'" in problems["parameters.n_slice"]
