"""The NERSC target, for real through sfapi-client, against a local Superfacility API.

``tests/compute/sfapi_server.py`` serves the API on 127.0.0.1 and hands the scripts to the
real local Slurm of the session fixture ``slurm`` (``tests/compute/conftest.py``). Nothing is
mocked between spotkit and that server: sfapi-client fetches tokens with a private-key JWT,
polls tasks, retries what it retries, and the server checks every signature and token.
Only the waits between retries are made instant (``fast_waits``).
"""

from __future__ import annotations

import json
import logging
import pickle
import sys
import textwrap
import time
from pathlib import Path

import pytest

import spotkit
from spotkit.compute import NERSC, JobState
from spotkit.compute._nersc import MachineUnavailableError, NERSCError, _sfapi
from spotkit.errors import CredentialsError, JobFailedError, SubmitError

sys.path.insert(0, str(Path(__file__).parent))
from sfapi_server import SuperfacilityServer

CLIENT_ID = "spotkittest01"
SLOW = [pytest.mark.slow, pytest.mark.slurm]


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nersc_key(tmp_path_factory):
    """A client key as iris.nersc.gov gives it: client id line + PEM, mode 0600."""
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048)
    pem = key.as_pem(private=True).decode()
    path = tmp_path_factory.mktemp("superfacility") / "key.pem"
    path.write_text(f"{CLIENT_ID}\n{pem}")
    path.chmod(0o600)
    public = RSAKey.import_key(key.as_dict(private=False))
    secrets = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    jwk = key.as_dict(private=True)
    secrets += [jwk[name] for name in ("d", "p", "q", "dp", "dq")]  # the key as a JWK
    return {"path": path, "public": public, "secret_lines": secrets}


@pytest.fixture(scope="session")
def sfapi_server(slurm, nersc_key, tmp_path_factory):
    """The local Superfacility API, its "remote" file system in a temp folder."""
    env = getattr(slurm, "env", None)
    server = SuperfacilityServer(tmp_path_factory.mktemp("nersc"), slurm_env=env)
    server.register_client(CLIENT_ID, nersc_key["public"])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(sfapi_server):
    """The server with no faults left over from another test."""
    sfapi_server.reset_faults()
    sfapi_server.token_lifetime = 3600
    yield sfapi_server
    sfapi_server.reset_faults()


@pytest.fixture
def fast_waits(monkeypatch):
    """Make every wait instant but keep the waiting code paths; return spotkit's delays.

    sfapi-client sleeps between task polls and job polls (``_SLEEP`` in its ``_sync``
    modules) and tenacity sleeps between its retries (up to 10 s each, 10 tries).
    """
    sfapi = _sfapi()
    from sfapi_client._sync import compute as sf_compute
    from sfapi_client._sync import jobs as sf_jobs

    from spotkit.compute import _sfapi_session

    monkeypatch.setattr(sf_compute, "_SLEEP", lambda *a: time.sleep(0.05))
    monkeypatch.setattr(sf_jobs, "_SLEEP", lambda *a: time.sleep(0.05))
    for method in ("get", "post", "put", "delete"):
        retrying = getattr(sfapi.Client, method).retry
        monkeypatch.setattr(retrying, "sleep", lambda seconds: None)
    delays: list[float] = []
    monkeypatch.setattr(_sfapi_session, "_sleep", delays.append)
    return delays


@pytest.fixture
def nersc(api, nersc_key, fast_waits):
    target = NERSC(
        key=nersc_key["path"], account="m0000", qos="debug", time="00:10:00",
        api_base_url=api.api_base_url, token_url=api.token_url, min_poll=0.3,
    )
    yield target
    target.close()


def batch_script(tmp_path, body: str, name: str = "run") -> tuple[Path, Path]:
    workdir = tmp_path / name
    workdir.mkdir()
    (workdir / "job.json").write_text('{"dataset": "ds-1", "parameters": {"n": 1}}')
    script = workdir / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH --time=00:05:00\nset -e\n" + textwrap.dedent(body))
    return script, workdir


def wait_final(target, job_id, timeout=60, poll=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = target.status([job_id])[job_id]
        if status.state.finished:
            return status
        time.sleep(poll)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {status}")


# -- input checks (no server) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"machine": "cori"}, r"unknown NERSC machine 'cori'; choose one of \['perlmutter'\]"),
        ({"qos": "fast"}, r"unknown QOS 'fast'.*'regular', 'debug'"),
        ({"constraint": "knl"}, r"unknown constraint 'knl'.*'cpu', 'gpu'"),
        ({"account": "m1234\n#SBATCH --x"}, "not a NERSC project name"),
        ({"time": "half an hour"}, "time limit 'half an hour' is not understood"),
        ({"remote_root": "relative/dir"}, "absolute path"),
    ],
)
def test_bad_settings_are_refused_before_anything(nersc_key, kwargs, match):
    with pytest.raises(ValueError, match=match):
        NERSC(key=nersc_key["path"], **kwargs)


def test_repr_describe_and_pickle_hold_no_secret(nersc_key):
    target = NERSC(key=nersc_key["path"], account="m0000", constraint="gpu")
    shown = [repr(target), str(target), repr(target.describe()), repr(target._key)]
    data = pickle.dumps(target)
    for line in nersc_key["secret_lines"]:
        assert not any(line in text for text in shown)
        assert line.encode() not in data
    again = pickle.loads(data)  # the key is read again from its (checked) file
    assert again.describe() == target.describe()
    assert target.describe()["name"] == "nersc:perlmutter"


def test_world_readable_key_is_refused(nersc_key, tmp_path):
    loose = tmp_path / "loose.pem"
    loose.write_text(nersc_key["path"].read_text())
    loose.chmod(0o644)
    with pytest.raises(CredentialsError, match=rf"chmod 600 {loose}") as info:
        NERSC(key=loose)
    assert info.value.reason == "permissions"


def test_unreachable_api_gives_a_clear_error(nersc_key, fast_waits):
    """Nothing listens: sfapi-client's ten tries (instant here), then one clear error."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    target = NERSC(key=nersc_key["path"], api_base_url=f"http://127.0.0.1:{port}/api/v1.2",
                   token_url=f"http://127.0.0.1:{port}/c2id/token")
    started = time.monotonic()
    with pytest.raises(NERSCError, match=r"cannot reach the NERSC API.*after 10 tries"):
        target.status(["1"])
    assert time.monotonic() - started < 10
    assert fast_waits == []  # sfapi-client already retried; spotkit does not multiply that


# -- the whole path, for real --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.slurm
def test_script_runs_to_completed_with_exit_code_0(nersc, api, tmp_path):
    script, workdir = batch_script(tmp_path, """\
        echo "hello from $(pwd)"
        cat job.json
        echo "to stderr" >&2
        """)
    job_id = nersc.submit_script(script, job_name="spotkit quick look", workdir=workdir)
    status = wait_final(nersc, job_id)
    assert status.state is JobState.COMPLETED
    assert status.state.succeeded
    assert status.exit_code == 0
    assert status.submitted is not None
    assert status.ended is not None

    submitted = api.submitted[-1]
    remote_dir = submitted["directives"]["chdir"]
    assert submitted["jobid"] == job_id
    assert submitted["script"] == f"{remote_dir}/job.sh"
    assert remote_dir == f"{api.scratch}/spotkit/jobs/run"  # $SCRATCH found through run()
    assert submitted["directives"] | {"chdir": None} == {
        "job-name": "spotkit_quick_look", "qos": "debug", "constraint": "cpu",
        "time": "00:05:00",  # the script's own limit (spotkit.submit(time=...)) is kept
        "account": "m0000", "chdir": None,
        "output": f"{remote_dir}/slurm-%j.out", "error": f"{remote_dir}/slurm-%j.err",
    }
    assert submitted["text"].startswith("#!/bin/bash\n#SBATCH --job-name=")

    logs = nersc.logs(job_id)
    assert f"hello from {remote_dir}" in logs.stdout
    assert '"dataset": "ds-1"' in logs.stdout  # job.json was staged next to the script
    assert "to stderr" in logs.stderr
    assert logs.paths["stdout"] == f"perlmutter:{remote_dir}/slurm-{job_id}.out"
    # a fresh target (e.g. another kernel) finds the logs through sacct's working directory
    other = NERSC(key=nersc.describe()["key"], api_base_url=api.api_base_url,
                  token_url=api.token_url)
    assert "hello from" in other.logs(job_id).stdout


@pytest.mark.slow
@pytest.mark.slurm
def test_failing_job_is_failed_never_success(nersc, api, tmp_path):
    script, workdir = batch_script(tmp_path, "echo about to fail\nexit 3\n")
    job_id = nersc.submit_script(script, job_name="fails", workdir=workdir)
    status = wait_final(nersc, job_id)
    assert status.state is JobState.FAILED
    assert not status.state.succeeded
    assert status.exit_code == 3

    # sfapi-client's own complete() returns the final state without raising: the caller
    # must look at it (spotkit does, through status()).
    from sfapi_client.jobs import JobSqueue

    sf_job = JobSqueue(jobid=job_id, compute=nersc.compute())
    final = sf_job.complete(timeout=30)
    assert final.value == "FAILED"
    assert JobState.from_scheduler(final.value) is JobState.FAILED


@pytest.mark.slow
@pytest.mark.slurm
def test_cancel_running_job(nersc, api, tmp_path):
    script, workdir = batch_script(tmp_path, "echo started\nsleep 120\n")
    job_id = nersc.submit_script(script, job_name="long", workdir=workdir)
    deadline = time.monotonic() + 30
    while nersc.status([job_id])[job_id].state is not JobState.RUNNING:
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.3)
    nersc.cancel(job_id)
    status = wait_final(nersc, job_id, timeout=30)
    assert status.state is JobState.CANCELLED
    assert not status.state.succeeded
    nersc.cancel(job_id)  # already finished: no error
    assert api.count("DELETE", rf"compute/jobs/perlmutter/{job_id}$") == 2


@pytest.mark.slow
@pytest.mark.slurm
def test_many_jobs_polled_in_one_request(nersc, api, tmp_path):
    ids = []
    for i in range(3):
        script, workdir = batch_script(tmp_path, f"echo {i}\n", name=f"many{i}")
        ids.append(nersc.submit_script(script, job_name=f"many{i}", workdir=workdir))
    for job_id in ids:
        wait_final(nersc, job_id)
    before = api.count("GET", r"^compute/jobs/perlmutter$")
    statuses = nersc.status([*ids, "999999"])
    assert api.count("GET", r"^compute/jobs/perlmutter$") == before + 1
    query = api.requests[-1].query
    assert query["kwargs"] == [f"jobid={','.join([*ids, '999999'])}"]
    assert query["sacct"] == ["true"]
    assert [statuses[j].state for j in ids] == [JobState.COMPLETED] * 3
    assert statuses["999999"].state is JobState.UNKNOWN  # not known (yet): not a failure


@pytest.mark.slow
@pytest.mark.slurm
def test_token_is_renewed_while_polling(nersc, api, tmp_path):
    """Tokens that expire within authlib's 60 s leeway make the client fetch new ones."""
    api.token_lifetime = 62  # the client renews after ~2 s
    script, workdir = batch_script(tmp_path, "sleep 5\necho done\n")
    job_id = nersc.submit_script(script, job_name="refresh", workdir=workdir)
    tokens = len(api.tokens_issued)
    status = wait_final(nersc, job_id, poll=0.5)
    assert status.state is JobState.COMPLETED
    assert len(api.tokens_issued) >= tokens + 2
    assert not [r for r in api.requests if r.status == 401]


@pytest.mark.slow
@pytest.mark.slurm
def test_http_500_is_retried_then_succeeds(nersc, api, tmp_path, fast_waits, caplog):
    script, workdir = batch_script(tmp_path, "true\n")
    job_id = nersc.submit_script(script, job_name="r500", workdir=workdir)
    wait_final(nersc, job_id)
    api.fail_next(500, 2, method="GET", path="compute/jobs")
    with caplog.at_level(logging.WARNING, logger="spotkit.compute._sfapi_session"):
        status = nersc.status([job_id])[job_id]
    assert status.state is JobState.COMPLETED
    assert fast_waits == [1.0, 2.0]  # backoff
    assert "HTTP 500" in caplog.text
    assert "retrying" in caplog.text
    assert [r.status for r in api.requests[-3:]] == [500, 500, 200]


@pytest.mark.slow
@pytest.mark.slurm
def test_http_500_that_persists_gives_a_clear_error(nersc, api):
    api.fail_next(500, 10, method="GET", path="compute/jobs")
    before = api.count("GET", r"^compute/jobs/perlmutter$")
    with pytest.raises(NERSCError, match=r"job status failed: HTTP 500.*try again") as info:
        nersc.status(["1"])
    assert info.value.status_code == 500
    assert api.count("GET", r"^compute/jobs/perlmutter$") == before + 4  # 1 + 3 retries


@pytest.mark.slow
@pytest.mark.slurm
def test_503_is_retried(nersc, api, tmp_path):
    api.fail_next(503, 3)  # any API request: status, uploads, submission, polling
    script, workdir = batch_script(tmp_path, "true\n")
    job_id = nersc.submit_script(script, job_name="r503", workdir=workdir)
    assert wait_final(nersc, job_id).state is JobState.COMPLETED
    assert sum(1 for r in api.requests if r.status == 503) == 3


@pytest.mark.slow
@pytest.mark.slurm
def test_503_that_persists_gives_a_clear_error(nersc, api):
    api.fail_next(503, 100, method="GET", path="compute/jobs")
    with pytest.raises(NERSCError, match=r"HTTP 503.*after 10 tries by sfapi-client"):
        nersc.status(["1"])


@pytest.mark.slow
@pytest.mark.slurm
def test_500_on_submission_is_not_sent_twice(nersc, api, tmp_path):
    script, workdir = batch_script(tmp_path, "true\n")
    submitted = len(api.submitted)
    posts = api.count("POST", r"^compute/jobs/perlmutter$")
    api.fail_next(500, 1, method="POST", path="compute/jobs")
    with pytest.raises(NERSCError, match=r"not confirmed.*squeue --me"):
        nersc.submit_script(script, job_name="once", workdir=workdir)
    assert api.count("POST", r"^compute/jobs/perlmutter$") == posts + 1
    assert len(api.submitted) == submitted


@pytest.mark.slow
@pytest.mark.slurm
def test_500_while_following_the_submission_task(nersc, api, tmp_path):
    script, workdir = batch_script(tmp_path, "true\n")
    submitted = len(api.submitted)
    api.fail_next(500, 1, method="GET", path="tasks/")
    job_id = nersc.submit_script(script, job_name="task500", workdir=workdir)
    assert len(api.submitted) == submitted + 1  # followed the task, did not resubmit
    assert api.submitted[-1]["jobid"] == job_id
    assert wait_final(nersc, job_id).state is JobState.COMPLETED


@pytest.mark.slow
@pytest.mark.slurm
def test_machine_unavailable_submits_nothing(nersc, api, tmp_path):
    api.machines["perlmutter"] = "unavailable"
    script, workdir = batch_script(tmp_path, "true\n")
    before = len(api.requests)
    with pytest.raises(MachineUnavailableError, match=r"perlmutter is unavailable.*nothing was"):
        nersc.submit_script(script, job_name="down", workdir=workdir)
    after = [(r.method, r.path) for r in api.requests[before:] if "token" not in r.path]
    assert after == [("GET", "status/perlmutter")]  # no mkdir, upload or submission


@pytest.mark.slow
@pytest.mark.slurm
def test_expired_key_gives_a_clear_error(api, nersc_key, fast_waits, tmp_path):
    api.token_error = ("invalid_client", "Client authentication failed: client expired")
    target = NERSC(key=nersc_key["path"], api_base_url=api.api_base_url,
                   token_url=api.token_url)
    script, workdir = batch_script(tmp_path, "true\n")
    with pytest.raises(CredentialsError, match=r"has expired.*iris\.nersc\.gov") as info:
        target.submit_script(script, job_name="expired", workdir=workdir)
    assert info.value.reason == "expired"
    assert str(nersc_key["path"]) in str(info.value)


@pytest.mark.slow
@pytest.mark.slurm
def test_key_without_policy_gives_a_clear_error(api, nersc_key, nersc, tmp_path):
    api.token_error = ("unauthorized_client", "client is not allowed by policy")
    target = NERSC(key=nersc_key["path"], api_base_url=api.api_base_url,
                   token_url=api.token_url)
    with pytest.raises(CredentialsError, match="lacks the needed policy") as info:
        target.status(["1"])
    assert info.value.reason == "policy"
    # a token that works for reading but a key not allowed to submit: HTTP 403
    api.token_error = None
    api.forbidden = r"^POST compute/jobs"
    script, workdir = batch_script(tmp_path, "true\n")
    with pytest.raises(CredentialsError, match="policy") as info:
        nersc.submit_script(script, job_name="nopolicy", workdir=workdir)
    assert info.value.reason == "policy"


@pytest.mark.slow
@pytest.mark.slurm
def test_unknown_signature_is_rejected_by_the_server(api, tmp_path, fast_waits):
    """The server really checks the JWT: a key it does not know is refused."""
    from joserfc.jwk import RSAKey

    stranger = tmp_path / "stranger.pem"
    stranger.write_text(f"{CLIENT_ID}\n" + RSAKey.generate_key(2048).as_pem(private=True).decode())
    stranger.chmod(0o600)
    target = NERSC(key=stranger, api_base_url=api.api_base_url, token_url=api.token_url)
    with pytest.raises(CredentialsError, match="rejected") as info:
        target.status(["1"])
    assert info.value.reason == "rejected"


# -- spotkit.submit: a real notebook run at "NERSC" -------------------------------------------


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.notebook
def test_submit_notebook_runs_to_completed(nersc, api, catalog, raw, label_notebook):
    label = "it's a \"quoted\" $(echo no) name\nwith a newline"
    job = spotkit.submit(label_notebook, raw, parameters={"label": label}, catalog=catalog,
                         target=nersc)
    status = job.wait(timeout=180, check=True)
    assert status.state is JobState.COMPLETED
    assert status.exit_code == 0
    run = job.run
    assert run.state == "completed"
    assert run.job_id == job.id
    assert run.target == "nersc:perlmutter"
    (out,) = [catalog[o] for o in run.outputs]
    assert json.loads(out.files[0].path.read_text())["label"] == label
    submitted = api.submitted[-1]
    assert submitted["jobid"] == job.id
    assert submitted["directives"]["qos"] == "debug"
    assert submitted["directives"]["account"] == "m0000"
    assert submitted["directives"]["job-name"] == "spotkit-label"
    assert "spotkit job" in job.logs().stderr  # the worker's log line, read back via the API


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.notebook
def test_submit_failing_notebook_is_failed(nersc, catalog, raw, label_notebook):
    job = spotkit.submit(label_notebook, raw, parameters={"fail": True}, catalog=catalog,
                         target=nersc)
    with pytest.raises(JobFailedError, match=r"state FAILED, exit code 1.*asked to fail"):
        job.wait(timeout=180, check=True)
    assert not job.succeeded
    assert job.run.state == "failed"
    assert job.run.error_cell == 1


@pytest.mark.slow
@pytest.mark.slurm
def test_submit_to_unavailable_machine_is_recorded(nersc, api, catalog, raw, label_notebook):
    api.machines["perlmutter"] = "unavailable"
    submitted = len(api.submitted)
    with pytest.raises(MachineUnavailableError, match="perlmutter is unavailable") as info:
        spotkit.submit(label_notebook, raw, catalog=catalog, target=nersc)
    assert isinstance(info.value, SubmitError)
    assert len(api.submitted) == submitted
    (run,) = catalog.runs()
    assert info.value.run_id == run.id
    assert run.state == "failed"
    assert run.target == "nersc:perlmutter"
    assert "MachineUnavailableError" in run.error_name
    assert "unavailable" in run.error_message


@pytest.mark.slow
@pytest.mark.slurm
def test_refused_job_is_a_submit_error(nersc, api, catalog, raw, label_notebook):
    api.unsupported_directives = ()  # hand --qos=debug etc. to the local Slurm as they are
    try:
        with pytest.raises(SubmitError) as info:
            spotkit.submit(label_notebook, raw, catalog=catalog, target=nersc)
    finally:
        api.unsupported_directives = ("qos", "constraint", "account")
    # the local Slurm has no node feature "cpu": sbatch's refusal names the option
    assert info.value.option == "constraint"
    assert info.value.value == "cpu"
    assert "Invalid feature specification" in str(info.value)
    assert "nothing was submitted" in str(info.value)
    (run,) = catalog.runs()
    assert run.state == "failed"


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.notebook
def test_secret_is_written_nowhere(nersc, api, nersc_key, catalog, raw, label_notebook,
                                   caplog):
    """Search every artefact of a submitted notebook run for the key and the tokens."""
    caplog.set_level(logging.DEBUG)
    job = spotkit.submit(label_notebook, raw, parameters={"label": "secret?"},
                         catalog=catalog, target=nersc)
    status = job.wait(timeout=180, check=True)
    logs = job.logs()
    needles = [line.encode() for line in nersc_key["secret_lines"]]
    needles += [token.encode() for token in api.tokens_issued]
    assert len(needles) > 20
    haystacks = {
        "log records": caplog.text.encode(),
        "reprs": f"{nersc!r} {nersc!s} {nersc.describe()!r} {job!r} {status!r}".encode(),
        "job logs": str(logs).encode(),
        "pickled target": pickle.dumps(nersc),
        "catalog run": repr(job.run).encode(),
    }
    folders = [job.workdir, api.root, Path(catalog.path).parent]
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file() and path != nersc_key["path"]:
                haystacks[str(path)] = path.read_bytes()
    names = set(haystacks)
    assert str(catalog.path) in names  # the catalog database file itself
    assert any(name.endswith(".ipynb") for name in names)  # the executed notebook
    assert any(name.endswith("job.sh") for name in names)  # local and staged scripts
    assert any(name.endswith(".err") for name in names)  # Slurm's logs at "NERSC"
    for where, data in haystacks.items():
        for needle in needles:
            assert needle not in data, f"secret found in {where}"
