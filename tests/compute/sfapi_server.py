"""A local NERSC Superfacility API (v1.2) for tests, backed by the real local Slurm.

It implements the endpoints ``sfapi-client`` 0.6 calls, with the request and response JSON
shapes of its models (``sfapi_client/_models``, ``_sync/*.py``):

========================================================  ===================================
endpoint                                                  behaviour
========================================================  ===================================
``POST {token}``                                          client credentials with a private
                                                          key JWT assertion (RFC 7523): the
                                                          signature is checked against the
                                                          registered public key, with ``iss``,
                                                          ``sub``, ``aud``, ``exp`` and ``jti``
``GET status/{machine}``                                  machine status (``active``, or
                                                          ``unavailable`` by a knob)
``POST compute/jobs/{machine}``                           form ``job``, ``isPath``, ``args``:
                                                          ``sbatch`` in a task thread
``GET tasks/{id}``                                        ``new`` first, then the result JSON
``GET compute/jobs/{machine}``                            ``sacct``/``squeue``-shaped rows from
                                                          ``scontrol`` (``kwargs=jobid=1,2``)
``DELETE compute/jobs/{machine}/{jobid}``                 ``scancel``
``POST utilities/command/{machine}``                      ``bash -c`` in a task
``GET utilities/ls|download/{machine}/{path}``            within the server's root folder
``PUT utilities/upload/{machine}/{path}``                 multipart ``file``
========================================================  ===================================

Remote paths are real local paths, confined to ``root`` (``root/home`` is ``$HOME``,
``root/scratch`` is ``$SCRATCH``), so that a job that Slurm runs sees the files the client
uploaded. Access tokens are short-lived when asked (``token_lifetime``), so that the client
must fetch new ones while it polls.

Fault knobs: :meth:`SuperfacilityServer.fail_next` (the next N matching API requests answer
500 or 503), ``machine_status`` (``"unavailable"``), ``token_error`` (the token endpoint
refuses, e.g. an expired key), ``forbidden`` (API calls answer 403, a key without the policy).
Everything the server answers is recorded in ``requests``; the tokens it issued are in
``tokens_issued`` (tests search written files for them).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import re
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1.2"
TOKEN_PATH = "/c2id/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Fault:
    """Answer ``status`` to the next ``count`` API requests that match."""

    status: int
    count: int
    method: str | None = None
    path: str | None = None  # a substring of the API path

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or self.path in path
        )


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    status: int


@dataclass
class _Task:
    id: str
    polls: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    result: dict | None = None


class SuperfacilityServer:
    """The fake API; :meth:`start` serves it on 127.0.0.1 at a free port.

    Parameters
    ----------
    root : path-like
        Folder that plays the remote machine's file system.
    machines : sequence of str
        Machine names the status endpoint knows.
    token_lifetime : int
        Seconds an access token is valid (``expires_in``).
    task_new_polls : int
        How many polls of a task answer ``new`` before the result (exercises the client's
        task polling).
    unsupported_directives : sequence of str
        ``#SBATCH`` options the local Slurm lacks (NERSC's QOS and constraints): recorded in
        ``submitted`` and left out of the copy handed to ``sbatch``.
    slurm_env : dict, optional
        Environment for the Slurm commands (``SLURM_CONF``); default: this process's.
    """

    def __init__(
        self,
        root,
        *,
        machines=("perlmutter",),
        token_lifetime: int = 3600,
        task_new_polls: int = 1,
        unsupported_directives=("qos", "constraint", "account"),
        slurm_env: dict | None = None,
    ):
        self.slurm_env = dict(slurm_env) if slurm_env is not None else None
        self.root = Path(root).resolve()
        self.home = self.root / "home"
        self.scratch = self.root / "scratch"
        self.home.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.machines = {m: "active" for m in machines}
        self.token_lifetime = token_lifetime
        self.task_new_polls = task_new_polls
        self.unsupported_directives = tuple(unsupported_directives)
        self.token_error: tuple[str, str] | None = None
        self.forbidden: str | None = None
        self.requests: list[Recorded] = []
        self.tokens_issued: list[str] = []
        self.submitted: list[dict] = []
        self._clients: dict[str, object] = {}
        self._tokens: dict[str, float] = {}
        self._jtis: set[str] = set()
        self._faults: list[Fault] = []
        self._tasks: dict[str, _Task] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------

    def register_client(self, client_id: str, public_key) -> None:
        """Accept assertions signed by the private half of ``public_key`` (a joserfc key)."""
        self._clients[client_id] = public_key

    def fail_next(self, status: int, count: int = 1, *, method=None, path=None) -> None:
        """Answer ``status`` to the next ``count`` API requests (optionally only matching)."""
        with self._lock:
            self._faults.append(Fault(status, count, method, path))

    def reset_faults(self) -> None:
        with self._lock:
            self._faults.clear()
        self.token_error = None
        self.forbidden = None
        for machine in self.machines:
            self.machines[machine] = "active"

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_base_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def start(self) -> SuperfacilityServer:
        handler = type("Handler", (_Handler,), {"api": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="sfapi-server", daemon=True
        )
        self._thread.start()
        log.info("Superfacility API test server on %s (root %s)", self.url, self.root)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def count(self, method: str, pattern: str) -> int:
        """Number of answered API requests whose path matches ``pattern`` (a regex)."""
        return sum(
            1 for r in self.requests if r.method == method and re.search(pattern, r.path)
        )

    # -- token endpoint ---------------------------------------------------------------------

    def token(self, form: dict) -> tuple[int, dict]:
        from joserfc import jwt
        from joserfc.errors import JoseError

        if self.token_error is not None:
            error, description = self.token_error
            return 401, {"error": error, "error_description": description}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return 401, {"error": "invalid_client", "error_description": "no JWT assertion"}
        assertion = form.get("client_assertion", "")
        try:
            unverified = json.loads(_b64(assertion.split(".")[1]))
            client_id = unverified["iss"]
            key = self._clients[client_id]
            claims = jwt.decode(assertion, key, algorithms=["RS256", "ES256"]).claims
        except (KeyError, IndexError, ValueError, JoseError) as exc:
            return 401, {
                "error": "invalid_client",
                "error_description": f"Client authentication failed: {exc.__class__.__name__}",
            }
        now = time.time()
        problems = []
        if claims.get("sub") != client_id:
            problems.append("sub is not the client id")
        if claims.get("aud") != self.token_url:
            problems.append(f"aud {claims.get('aud')!r} is not the token endpoint")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now:
            problems.append("assertion expired")
        jti = claims.get("jti")
        with self._lock:
            if not jti or jti in self._jtis:
                problems.append("jti missing or replayed")
            self._jtis.add(jti)
        if problems:
            return 401, {
                "error": "invalid_client",
                "error_description": "Client authentication failed: " + "; ".join(problems),
            }
        access = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[access] = now + self.token_lifetime
            self.tokens_issued.append(access)
        return 200, {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "scope": "sfapi",
        }

    def authorised(self, header: str | None) -> tuple[bool, str]:
        if not header or not header.startswith("Bearer "):
            return False, "Not authenticated"
        expiry = self._tokens.get(header[len("Bearer "):])
        if expiry is None:
            return False, "Invalid token"
        if expiry < time.time():
            return False, "Token expired"
        return True, ""

    def take_fault(self, method: str, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault.count > 0 and fault.matches(method, path):
                    fault.count -= 1
                    return fault.status
        return None

    # -- API ------------------------------------------------------------------------------

    def status(self, machine: str) -> tuple[int, dict]:
        if machine not in self.machines:
            return 404, {"detail": f"Resource {machine} not found"}
        state = self.machines[machine]
        return 200, {
            "name": machine,
            "full_name": machine.capitalize(),
            "description": "System is active" if state == "active" else f"System is {state}",
            "system_type": "compute",
            "notes": [] if state == "active" else ["Scheduled maintenance (test server)"],
            "status": state,
            "updated_at": datetime.now(UTC).isoformat(),
        }

    def submit(self, machine: str, form: dict) -> tuple[int, dict]:
        job = (form.get("job") or [""])[0]
        is_path = (form.get("isPath") or ["true"])[0].lower() == "true"
        args = form.get("args") or []
        task = self._new_task()

        def work():
            try:
                task.result = self._sbatch(job, is_path, args)
            except Exception as exc:  # a harness bug must show, not hang the client
                log.exception("sbatch in test server failed")
                task.result = {"status": "error", "error": repr(exc)}
            task.done.set()

        threading.Thread(target=work, daemon=True).start()
        return 200, {"task_id": task.id, "status": "OK", "error": None}

    def _sbatch(self, job: str, is_path: bool, args: list[str]) -> dict:
        if is_path:
            script = self.local(job)
            if not script.is_file():
                return {"status": "error", "error": f"sbatch: error: Unable to open file {job}"}
        else:
            script = self.scratch / f".sfapi-script-{secrets.token_hex(4)}.sh"
            script.write_text(job)
        text = script.read_text()
        directives = _directives(text)
        kept = [
            line for line in text.splitlines(keepends=True)
            if not _dropped(line, self.unsupported_directives)
        ]
        copy = script.with_name(f".{script.name}.sfapi-submitted")
        copy.write_text("".join(kept))
        copy.chmod(0o700)
        proc = subprocess.run(
            ["sbatch", "--parsable", str(copy), *args], env=self.slurm_env,
            cwd=script.parent, capture_output=True, text=True, timeout=60, check=False,
        )
        if proc.returncode != 0:
            return {"status": "error", "error": proc.stderr.strip() or proc.stdout.strip()}
        jobid = proc.stdout.strip().split(";")[0]
        with self._lock:
            self.submitted.append(
                {"jobid": jobid, "script": str(script), "text": text, "directives": directives}
            )
        return {"status": "ok", "jobid": jobid}

    def task(self, task_id: str) -> tuple[int, dict]:
        task = self._tasks.get(task_id)
        if task is None:
            return 404, {"detail": f"Task {task_id} not found"}
        task.polls += 1
        if task.polls <= self.task_new_polls or not task.done.wait(timeout=30):
            return 200, {"id": task_id, "status": "new", "result": None}
        return 200, {"id": task_id, "status": "completed", "result": json.dumps(task.result)}

    def jobs(self, machine: str, query: dict) -> tuple[int, dict]:
        sacct = (query.get("sacct") or ["false"])[0].lower() == "true"
        wanted = None
        for kw in query.get("kwargs") or []:
            name, _, value = kw.partition("=")
            if name == "jobid":
                wanted = [j for j in value.split(",") if j]
        rows = []
        known = _scontrol_jobs(self.slurm_env)
        for jobid in wanted if wanted is not None else sorted(known, key=int):
            fields = known.get(jobid)
            if fields is None and sacct:
                fields = _sacct_fallback(jobid, self.slurm_env)
            if fields is None:
                continue
            state = fields.get("JobState", "")
            if sacct:
                rows.extend(_sacct_rows(jobid, fields))
            elif state in {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"}:
                rows.append(_squeue_row(jobid, fields))
        return 200, {"status": "OK", "output": rows, "error": None}

    def cancel(self, machine: str, jobid: str) -> tuple[int, dict]:
        proc = subprocess.run(
            ["scancel", jobid], env=self.slurm_env, capture_output=True, text=True,
            timeout=30, check=False,
        )
        if proc.returncode != 0 or proc.stderr.strip():
            return 200, {"status": "ERROR", "output": "", "error": proc.stderr.strip()}
        return 200, {"status": "OK", "output": proc.stdout, "error": None}

    def command(self, machine: str, form: dict) -> tuple[int, dict]:
        executable = (form.get("executable") or [""])[0]
        task = self._new_task()

        def work():
            env = dict(self.slurm_env or os.environ, HOME=str(self.home),
                       SCRATCH=str(self.scratch))
            proc = subprocess.run(
                ["bash", "-c", executable], cwd=self.home, env=env,
                capture_output=True, text=True, timeout=60, check=False,
            )
            task.result = {
                "status": "ok" if proc.returncode == 0 else "error",
                "output": proc.stdout,
                "error": (proc.stderr or f"exit status {proc.returncode}")
                if proc.returncode else None,
                "exit_code": proc.returncode,
            }
            task.done.set()

        threading.Thread(target=work, daemon=True).start()
        return 200, {"task_id": task.id, "status": "OK", "error": None}

    def ls(self, machine: str, remote: str) -> tuple[int, dict]:
        try:
            path = self.local(remote)
        except PermissionError as exc:
            return 200, {"status": "ERROR", "entries": [], "error": str(exc)}
        if not path.exists():
            return 200, {
                "status": "ERROR",
                "entries": [],
                "error": f"ls: cannot access '{remote}': No such file or directory",
            }
        if path.is_dir():
            entries = [_entry(path, "."), _entry(path.parent, "..")]
            entries += [_entry(p, p.name) for p in sorted(path.iterdir())]
        else:
            entries = [_entry(path, "/" + remote.lstrip("/"))]
        return 200, {"status": "OK", "entries": entries, "error": None}

    def download(self, machine: str, remote: str, query: dict) -> tuple[int, dict]:
        binary = (query.get("binary") or ["false"])[0].lower() == "true"
        try:
            path = self.local(remote)
            data = path.read_bytes()
        except (OSError, PermissionError) as exc:
            return 200, {"status": "ERROR", "file": None, "is_binary": binary, "error": str(exc)}
        content = base64.b64encode(data).decode() if binary else data.decode(errors="replace")
        return 200, {"status": "OK", "file": content, "is_binary": binary, "error": None}

    def upload(self, machine: str, remote: str, content_type: str, body: bytes):
        try:
            path = self.local(remote)
        except PermissionError as exc:
            return 200, {"status": "ERROR", "output": None, "error": str(exc)}
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                if not path.parent.is_dir():
                    return 200, {
                        "status": "ERROR", "output": None,
                        "error": f"{path.parent}: No such file or directory",
                    }
                path.write_bytes(part.get_payload(decode=True))
                return 200, {"status": "OK", "output": f"uploaded {remote}", "error": None}
        return 422, {"detail": "no file part"}

    # -- helpers --------------------------------------------------------------------------

    def local(self, remote: str) -> Path:
        """The local path of a remote one; outside ``root`` is ``PermissionError``."""
        remote = unquote(remote)
        path = Path(remote) if remote.startswith("/") else self.home / remote
        path = Path(os.path.normpath(path))
        if path != self.root and self.root not in path.parents:
            raise PermissionError(f"{remote}: Permission denied")
        return path

    def _new_task(self) -> _Task:
        with self._lock:
            task = _Task(str(next(self._ids)))
            self._tasks[task.id] = task
        return task


class _Handler(BaseHTTPRequestHandler):
    api: SuperfacilityServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: tests read ``api.requests``
        log.debug("sfapi server: " + fmt, *args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        api = self.api
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = split.path
        if method == "POST" and path == TOKEN_PATH:
            form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
            return self._reply(*api.token(form), method=method, path=path, query={})
        if not path.startswith(API_PREFIX + "/"):
            return self._reply(404, {"detail": "Not Found"}, method=method, path=path, query=query)
        route = path[len(API_PREFIX) + 1:]
        fault = api.take_fault(method, route)
        if fault is not None:
            detail = {500: "Internal Server Error", 503: "Service Unavailable"}.get(fault, "error")
            return self._reply(fault, {"detail": f"{detail} (injected)"},
                               method=method, path=route, query=query)
        if not route.startswith("status/"):
            ok, why = api.authorised(self.headers.get("Authorization"))
            if not ok:
                return self._reply(401, {"detail": why}, method=method, path=route, query=query)
            if api.forbidden and re.search(api.forbidden, f"{method} {route}"):
                return self._reply(
                    403, {"detail": "Client is not allowed to use this endpoint (policy)"},
                    method=method, path=route, query=query,
                )
        form = parse_qs(body.decode(errors="replace"), keep_blank_values=True) if (
            method == "POST"
        ) else {}
        status, answer = self._route(method, route, query, form, body)
        self._reply(status, answer, method=method, path=route, query=query)

    def _route(self, method, route, query, form, body):
        api = self.api
        parts = route.split("/", 3)
        if method == "GET" and parts[0] == "status" and len(parts) == 2:
            return api.status(parts[1])
        if parts[0] == "compute" and len(parts) >= 3 and parts[1] == "jobs":
            machine = parts[2]
            if machine not in api.machines:
                return 404, {"detail": f"Machine {machine} not found"}
            if method == "POST" and len(parts) == 3:
                return api.submit(machine, form)
            if method == "GET" and len(parts) == 3:
                return api.jobs(machine, query)
            if method == "DELETE" and len(parts) == 4:
                return api.cancel(machine, parts[3])
        if method == "GET" and parts[0] == "tasks" and len(parts) == 2:
            return api.task(parts[1])
        if parts[0] == "utilities" and len(parts) >= 3:
            machine = parts[2]
            if machine not in api.machines:
                return 404, {"detail": f"Machine {machine} not found"}
            remote = parts[3] if len(parts) == 4 else ""
            if method == "POST" and parts[1] == "command":
                return api.command(machine, form)
            if method == "GET" and parts[1] == "ls":
                return api.ls(machine, remote)
            if method == "GET" and parts[1] == "download":
                return api.download(machine, remote, query)
            if method == "PUT" and parts[1] == "upload":
                return api.upload(machine, remote, self.headers.get("Content-Type", ""), body)
        return 404, {"detail": "Not Found"}

    def _reply(self, status: int, answer: dict, *, method, path, query) -> None:
        data = json.dumps(answer).encode()
        with self.api._lock:
            self.api.requests.append(Recorded(method, path, query, status))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# -- Slurm and file helpers ------------------------------------------------------------------

_FIELD = re.compile(r"(\w[\w:/]*)=(.*?)(?=\s+\w[\w:/]*=|\s*$)")


def _scontrol_jobs(env) -> dict[str, dict[str, str]]:
    """Every job ``scontrol`` still knows, by id, as its ``Key=Value`` fields."""
    proc = subprocess.run(
        ["scontrol", "-o", "show", "job"], env=env, capture_output=True, text=True,
        timeout=30, check=False,
    )
    jobs = {}
    for line in proc.stdout.splitlines():
        fields = dict(_FIELD.findall(line.strip()))
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def _sacct_fallback(jobid: str, env) -> dict[str, str] | None:
    """A finished job that ``scontrol`` forgot: ``sacct`` (or ``sacct -c``, the jobcomp file)."""
    names = ["JobID", "State", "ExitCode", "Submit", "Start", "End", "WorkDir", "JobName"]
    for extra in ([], ["-c"]):
        proc = subprocess.run(
            ["sacct", *extra, "-n", "-P", "-j", jobid, "-o", ",".join(names)], env=env,
            capture_output=True, text=True, timeout=30, check=False,
        )
        for line in proc.stdout.splitlines():
            values = dict(zip(names, line.split("|"), strict=False))
            if values.get("JobID") == jobid:
                return {
                    "JobId": jobid, "JobState": values["State"].split()[0],
                    "ExitCode": values["ExitCode"], "SubmitTime": values["Submit"],
                    "StartTime": values["Start"], "EndTime": values["End"],
                    "WorkDir": values["WorkDir"], "JobName": values["JobName"],
                    "Reason": "None",
                }
    return None


def _sacct_rows(jobid: str, f: dict[str, str]) -> list[dict]:
    row = {
        "jobid": jobid, "jobidraw": jobid, "jobname": f.get("JobName", ""),
        "state": f.get("JobState", ""), "exitcode": f.get("ExitCode", "0:0"),
        "derivedexitcode": f.get("DerivedExitCode", "0:0"), "submit": f.get("SubmitTime", ""),
        "start": f.get("StartTime", ""), "end": f.get("EndTime", ""),
        "workdir": f.get("WorkDir", ""), "reason": f.get("Reason", ""),
        "user": f.get("UserId", "").split("(")[0], "account": f.get("Account", ""),
        "qos": f.get("QOS", ""), "partition": f.get("Partition", ""),
        "nodelist": f.get("NodeList", ""), "timelimit": f.get("TimeLimit", ""),
    }
    rows = [row]
    if row["state"] not in {"PENDING"}:  # real sacct also lists the batch step
        rows.append(dict(row, jobid=f"{jobid}.batch", jobidraw=f"{jobid}.batch",
                         jobname="batch"))
    return rows


def _squeue_row(jobid: str, f: dict[str, str]) -> dict:
    state = f.get("JobState", "")
    short = {"PENDING": "PD", "RUNNING": "R", "COMPLETING": "CG"}.get(state, state[:2])
    return {
        "jobid": jobid, "name": f.get("JobName", ""), "state": state, "st": short,
        "reason": f.get("Reason", ""), "submit_time": f.get("SubmitTime", ""),
        "start_time": f.get("StartTime", ""), "work_dir": f.get("WorkDir", ""),
        "partition": f.get("Partition", ""), "user": f.get("UserId", "").split("(")[0],
        "time_limit": f.get("TimeLimit", ""),
    }


def _entry(path: Path, name: str) -> dict:
    st = path.stat()
    kind = "d" if path.is_dir() else "-"
    perms = kind + "".join(
        (c if st.st_mode & bit else "-")
        for c, bit in zip("rwxrwxrwx", (0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 4, 2, 1),
                          strict=True)
    )
    return {
        "perms": perms, "hardlinks": st.st_nlink, "user": "spotkit", "group": "spotkit",
        "size": float(st.st_size),
        "date": time.strftime("%b %d %H:%M", time.localtime(st.st_mtime)), "name": name,
    }


_DIRECTIVE = re.compile(r"^#SBATCH\s+(--?[\w-]+)(?:[=\s]+(.*))?$")


def _directives(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = _DIRECTIVE.match(line.strip())
        if match:
            found[match.group(1).lstrip("-")] = (match.group(2) or "").strip()
    return found


_SHORT_OPTS = {"q": "qos", "C": "constraint", "A": "account"}


def _dropped(line: str, names: tuple[str, ...]) -> bool:
    match = _DIRECTIVE.match(line.strip())
    if not match:
        return False
    name = match.group(1).lstrip("-")
    return _SHORT_OPTS.get(name, name) in names


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
