"""NERSC (Perlmutter) as a compute target, through the Superfacility API and ``sfapi-client``.

How a job travels::

    submit_script(script, job_name, workdir)
      ├─ GET status/perlmutter              machine up? ("unavailable": error, nothing sent)
      ├─ POST utilities/command             mkdir -p $SCRATCH/spotkit/jobs/<run>
      ├─ PUT utilities/upload (× files)     job.json, and the batch script with #SBATCH
      │                                     lines for QOS, constraint, time, account, logs
      └─ POST compute/jobs + GET tasks/{id} sbatch <remote script>  →  job id
    status([ids])  GET compute/jobs/perlmutter?sacct=true&kwargs=jobid=1,2,3   (one request)
    cancel(id)     DELETE compute/jobs/perlmutter/{id}
    logs(id)       GET utilities/download   slurm-<id>.out / .err in the job's folder

Collaborators: :class:`~spotkit.compute._sfapi_session.SfapiSession` (the API client,
credentials, retries and error translation, commands and file transfer),
:mod:`~spotkit.compute._nersc_script` (the ``#SBATCH`` lines and staged files) and
:mod:`~spotkit.compute._nersc_status` (``sacct`` rows as job states). This module is the
:class:`~spotkit.compute.Target` itself: settings, submission, status, cancel, logs.

Transient answers (HTTP 500, dropped connections; ``sfapi-client`` itself retries
429/502/503/504 up to 10 times) are retried with backoff for requests that can be repeated
safely; a submission is never sent twice. What still fails becomes a :class:`NERSCError`
(a :class:`~spotkit.errors.SchedulerError`) that names the operation and what to do; a
refused job is a :class:`~spotkit.errors.SubmitError`; a refused key is a
:class:`~spotkit.errors.CredentialsError`.
"""

from __future__ import annotations

import logging
import re
import time as _time
import typing
from pathlib import Path

from ..errors import MachineUnavailableError, NERSCError, SpotkitError, SubmitError
from ._base import JobLogs, JobState, JobStatus, Target, format_walltime, parse_walltime
from ._credentials import ClientKey, CredentialsError, load_key
from ._nersc_script import (
    MAX_STAGED_BYTES,
    STAGED_SUFFIXES,
    safe_name,
    staged_files,
    with_directives,
)
from ._nersc_status import exit_code, row_status, sacct_rows, slurm_time
from ._sfapi_session import SfapiSession, _detail, _Retry, _sfapi, _short

__all__ = ["CONSTRAINTS", "MACHINES", "NERSC", "QOS", "MachineUnavailableError", "NERSCError"]

log = logging.getLogger(__name__)

MACHINES = ("perlmutter",)
"""NERSC machines that run batch jobs through the Superfacility API."""

QOS = ("regular", "debug", "shared", "preempt", "premium", "overrun", "realtime")
"""Perlmutter's batch QOS names."""

CONSTRAINTS = ("cpu", "gpu", "gpu&hbm40g", "gpu&hbm80g")
"""Perlmutter node types (``--constraint``)."""

_ACCOUNT = re.compile(r"^[A-Za-z0-9_]+$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+-]+$")

# the helpers' former names here (private: for code that reached into this module)
_safe_name, _with_directives, _staged = safe_name, with_directives, staged_files
_exit_code, _when = exit_code, slurm_time
_MOVED = (MAX_STAGED_BYTES, STAGED_SUFFIXES, _detail, _sfapi, _short)


class NERSC(Target):
    """Run batch jobs at NERSC through the Superfacility API (``sfapi-client``).

    Parameters
    ----------
    machine : str
        ``"perlmutter"``.
    key : path-like or str, optional
        The API client key file, or its name in ``~/.superfacility``; default: the only key
        there. It must be readable by its owner only (``chmod 600``).
    account : str, optional
        NERSC project to charge (``#SBATCH --account``); default: the user's default.
    qos : str
        One of :data:`QOS`.
    constraint : str
        ``"cpu"`` or ``"gpu"`` (see :data:`CONSTRAINTS`).
    time : str
        Default wall-clock limit, Slurm syntax (``"00:30:00"``, ``"1-00:00:00"``, minutes).
    api_base_url, token_url : str, optional
        Superfacility API and token endpoints (default: NERSC's).
    client_id : str, optional
        For a key file that holds only the private key.
    remote_root : str, optional
        Absolute folder at NERSC under which each job gets its own folder (script, job
        file, Slurm logs); default ``$SCRATCH/spotkit/jobs``.
    retries : int
        Extra tries, with backoff, for a request that failed with HTTP 500 or a lost
        connection (only requests that can be repeated safely).
    min_poll : float
        Seconds between two status requests for this target's jobs (all jobs in one).

    Raises
    ------
    ValueError
        Unknown machine, QOS or constraint, or a malformed account or time.
    CredentialsError
        No key, a key file others can read, or a file that is not a key.

    Notes
    -----
    The paths in ``job.json`` (notebook, dataset, catalog, run folder) must be valid at
    NERSC: run spotkit from NERSC's JupyterHub, or keep notebooks, data and catalog on a
    file system that Perlmutter mounts (CFS, scratch). The batch script and the job file
    are uploaded to the job's folder at NERSC, where Slurm also writes its logs.

    Examples
    --------
    These need a Superfacility API key (``~/.superfacility/key.pem``) and NERSC on the
    network, so they are not run here (tests/compute/test_nersc.py runs the same against
    a local stand-in of the API):

    >>> from spotkit.compute import NERSC
    >>> nersc = NERSC(key="key.pem", account="m1234", qos="debug")  # doctest: +SKIP
    >>> job = spotkit.submit("tomo_recon", ds, target=nersc)  # doctest: +SKIP
    >>> job.wait(check=True).state  # doctest: +SKIP
    <JobState.COMPLETED: 'COMPLETED'>
    """

    max_ids_per_query = 200  # job ids in one status request (keeps the URL short)

    #: rules files name the key *file* (``key_file``), never the key itself
    settings_aliases: typing.ClassVar[dict[str, str]] = {"key_file": "key"}
    #: the values a rules file may choose from
    setting_choices: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "machine": MACHINES, "qos": QOS, "constraint": CONSTRAINTS}

    def __init__(
        self,
        machine: str = "perlmutter",
        *,
        key: str | Path | None = None,
        account: str | None = None,
        qos: str = "regular",
        constraint: str = "cpu",
        time: str | int = "00:30:00",
        api_base_url: str | None = None,
        token_url: str | None = None,
        client_id: str | None = None,
        remote_root: str | None = None,
        retries: int = 3,
        min_poll: float = 5.0,
    ):
        if machine not in MACHINES:
            raise ValueError(
                f"unknown NERSC machine {machine!r}; choose one of {list(MACHINES)}"
            )
        if qos not in QOS:
            raise ValueError(f"unknown QOS {qos!r} at NERSC; choose one of {list(QOS)}")
        if constraint not in CONSTRAINTS:
            raise ValueError(
                f"unknown constraint {constraint!r}; choose one of {list(CONSTRAINTS)}"
            )
        if account is not None and not _ACCOUNT.match(account):
            raise ValueError(
                f"account {account!r} is not a NERSC project name (letters, digits, _)"
            )
        if remote_root is not None and not _SAFE_PATH.match(remote_root):
            raise ValueError(
                f"remote_root {remote_root!r} must be an absolute path of letters, digits "
                "and ./_+- (it goes into #SBATCH lines)"
            )
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries}")
        self.machine = machine
        self.account = account
        self.qos = qos
        self.constraint = constraint
        self.time = format_walltime(parse_walltime(time))
        self.api_base_url = api_base_url
        self.token_url = token_url
        self.remote_root = remote_root
        self.retries = int(retries)
        self.min_poll = float(min_poll)
        self.name = f"nersc:{machine}"
        self._key: ClientKey = load_key(key, client_id=client_id)
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._session = SfapiSession(self._key, self.machine, api_base_url=self.api_base_url,
                                     token_url=self.token_url, retries=self.retries)
        self._lock = self._session.lock  # one request at a time, and the job folders
        self._root: str | None = self.remote_root
        self._job_dirs: dict[str, str] = {}

    # -- pickling: settings and the key file's path travel, the key does not -------------

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        state["_key_path"] = str(self._key.path) if self._key.path else None
        state["_client_id"] = self._key.client_id
        state["_job_dirs"] = dict(self._job_dirs)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        path = state.pop("_key_path")
        client_id = state.pop("_client_id")
        job_dirs = state.pop("_job_dirs", {})
        self.__dict__.update(state)
        if path is None:
            raise CredentialsError(
                "this NERSC target's key was not read from a file, so it cannot be restored; "
                "create the target again with key=PATH",
                reason="missing",
            )
        self._key = load_key(path, client_id=client_id)
        self._init_runtime()
        self._job_dirs.update(job_dirs)

    def __repr__(self) -> str:
        account = f", account={self.account!r}" if self.account else ""
        return (
            f"NERSC(machine={self.machine!r}{account}, qos={self.qos!r}, "
            f"constraint={self.constraint!r}, time={self.time!r})"
        )

    __str__ = __repr__

    def describe(self) -> dict:
        """Settings for the catalog and reprs: the key's file, never its content."""
        return {
            "name": self.name,
            "machine": self.machine,
            "account": self.account,
            "qos": self.qos,
            "constraint": self.constraint,
            "time": self.time,
            "api_base_url": self.api_base_url,
            "remote_root": self.remote_root,
            **self._key.describe(),
        }

    # -- the API session (sfapi-client, retries, errors, commands and files) ------------

    @property
    def client(self):
        """The ``sfapi_client.Client`` (made on first use; it fetches and renews tokens)."""
        return self._session.client

    def close(self) -> None:
        """Release the HTTP connection (a later call opens a new one)."""
        self._session.close()

    def compute(self, *, refresh: bool = False):
        """The ``sfapi_client`` compute object for the machine (``GET status/{machine}``)."""
        return self._session.compute(refresh=refresh)

    def check_available(self):
        """Fetch the machine's status; raise :class:`MachineUnavailableError` when it is down.

        Returns
        -------
        sfapi_client.compute.Compute
        """
        return self._session.check_available()

    def _call(self, what: str, fn, *, repeatable: bool = True):
        return self._session.call(what, fn, repeatable=repeatable)

    def _translate(self, exc: BaseException, what: str) -> SpotkitError | _Retry:
        return self._session.translate(exc, what)

    def run(self, command: str | list[str], *, repeatable: bool = False) -> str:
        """Run a short command on a login node (``compute.run``); return its output.

        Parameters
        ----------
        command : str or list of str
            A list is shell-quoted word by word; a string is passed as is.
        repeatable : bool
            The command may safely run twice (``mkdir -p``): retry it after an HTTP 500.
        """
        return self._session.run(command, repeatable=repeatable)

    def upload(self, data: bytes, remote: str) -> str:
        """Write ``data`` to the file ``remote`` at NERSC (its folder must exist)."""
        return self._session.upload(data, remote)

    def download(self, remote: str) -> bytes | None:
        """The content of the file ``remote`` at NERSC, or ``None`` when it does not exist."""
        return self._session.download(remote)

    def remote_root_dir(self) -> str:
        """The folder at NERSC that holds one folder per job (``$SCRATCH/spotkit/jobs``)."""
        with self._lock:
            if self._root is None:
                scratch = self.run("echo $SCRATCH", repeatable=True).strip()
                if not _SAFE_PATH.match(scratch):
                    raise NERSCError(
                        f"$SCRATCH on {self.machine} is {scratch!r}, not a usable folder; "
                        "pass remote_root='/path' to NERSC(...)",
                        machine=self.machine, operation="submit",
                    )
                self._root = f"{scratch.rstrip('/')}/spotkit/jobs"
            return self._root

    # -- the Target contract -------------------------------------------------------------

    def script_header(self, *, job_name: str, workdir: Path, time: str | None = None
                      ) -> list[str]:
        """``#SBATCH`` lines: job name, QOS, constraint, time limit, account.

        The working directory and log files are set when the script is staged at NERSC
        (:meth:`submit_script`), in the job's folder there.
        """
        limit = format_walltime(parse_walltime(time)) if time else self.time
        lines = [
            f"#SBATCH --job-name={safe_name(job_name)[:64]}",
            f"#SBATCH --qos={self.qos}",
            f"#SBATCH --constraint={self.constraint}",
            f"#SBATCH --time={limit}",
        ]
        if self.account:
            lines.append(f"#SBATCH --account={self.account}")
        return lines

    def submit_script(self, script: Path, *, job_name: str, workdir: Path) -> str:
        """Stage the script and its job file at NERSC, then ``sbatch`` it there.

        Parameters
        ----------
        script : pathlib.Path
            The batch script (already written locally).
        job_name : str
            Slurm job name.
        workdir : pathlib.Path
            The local run folder; its ``job.json`` (and other small ``.json``/``.yaml``
            files) travel with the script to a folder of the same name under
            :meth:`remote_root_dir`.

        Returns
        -------
        str
            The Slurm job id at NERSC.

        Raises
        ------
        MachineUnavailableError
            The machine is down: nothing was staged or submitted.
        SubmitError
            Slurm at NERSC refused the job (bad QOS, account, time...).
        NERSCError, CredentialsError
        """
        script = Path(script)
        workdir = Path(workdir)
        if not script.is_file():
            raise FileNotFoundError(f"batch script {script} does not exist")
        compute = self.check_available()
        remote_dir = f"{self.remote_root_dir()}/{safe_name(workdir.name or job_name)}"
        text = with_directives(
            script.read_text(),
            add=self.script_header(job_name=job_name, workdir=workdir),
            replace=[f"#SBATCH --chdir={remote_dir}",
                     f"#SBATCH --output={remote_dir}/slurm-%j.out",
                     f"#SBATCH --error={remote_dir}/slurm-%j.err"],
        )
        self.run(["mkdir", "-p", remote_dir], repeatable=True)
        for path in staged_files(workdir, script):
            self.upload(path.read_bytes(), f"{remote_dir}/{path.name}")
        remote_script = f"{remote_dir}/{script.name}"
        self.upload(text.encode(), remote_script)
        job_id = self._submit(compute, remote_script)
        with self._lock:
            self._job_dirs[job_id] = remote_dir
        log.info("submitted %s as NERSC %s job %s (%s)", script.name, self.machine, job_id,
                 remote_dir)
        return job_id

    def _submit(self, compute, remote_script: str) -> str:
        """``compute.submit_job(path)``, never sending the job twice.

        A failure before the POST (sfapi-client first checks that the script exists) is
        retried; a failed POST is reported, not repeated (the job may exist); a failure
        while following the submission task goes on following that task.
        """
        import httpx
        import tenacity

        sfapi = _sfapi()
        for attempt in range(1, self.retries + 2):
            try:
                with self._lock:
                    return str(compute.submit_job(remote_script).jobid)
            except sfapi.SfApiError as exc:
                raise self._refused(str(exc.message)) from None
            except Exception as exc:
                inner: BaseException | None = exc
                if isinstance(exc, tenacity.RetryError) and exc.last_attempt.exception():
                    inner = exc.last_attempt.exception()
                request = inner.request if isinstance(inner, httpx.HTTPStatusError) else None
                method = request.method if request is not None else ""
                url_path = request.url.path if request is not None else ""
                if method == "GET" and "/tasks/" in url_path:
                    task_id = url_path.rstrip("/").rsplit("/", 1)[-1]
                    log.warning("lost track of submission task %s (%s); following it again",
                                task_id, _short(inner or exc))
                    return self._finish_task(compute, task_id)
                error = self._translate(exc, "submit")
                if method == "POST":
                    error = error.error if isinstance(error, _Retry) else error
                    if isinstance(error, NERSCError):
                        raise NERSCError(
                            f"{error} The submission was not confirmed: check with "
                            f"`squeue --me` on {self.machine} before submitting again.",
                            machine=self.machine, operation="submit",
                            status_code=error.status_code, detail=error.detail,
                        ) from exc
                    raise error from None
                if not isinstance(error, _Retry):
                    raise error from (None if isinstance(error, CredentialsError) else exc)
                if attempt > self.retries:
                    raise error.error from exc
                self._session.pause(min(2.0 ** (attempt - 1), 30.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def _finish_task(self, compute, task_id: str) -> str:
        sfapi = _sfapi()
        task = sfapi.compute.CommandTask(compute=compute, id=task_id)
        deadline = _time.monotonic() + 300
        while _time.monotonic() < deadline:
            self._call("submission task", task.update)
            status = getattr(task.status, "value", task.status)
            if status in {"COMPLETED", "FAILED", "CANCELLED"}:
                result = task.result
                extra = (result.__pydantic_extra__ or {}) if result is not None else {}
                if result is None or result.status == "error" or extra.get("jobid") is None:
                    raise self._refused(str(getattr(result, "error", None) or status))
                return str(extra["jobid"])
            self._session.pause(1)
        raise NERSCError(
            f"submission task {task_id} did not finish in 5 minutes; check `squeue --me` on "
            f"{self.machine}", machine=self.machine, operation="submit",
        )

    def _refused(self, detail: str) -> SubmitError:
        """Slurm's (or the API's) refusal of a job, naming the option at fault if it can."""
        from ._slurm import _SUBMIT_OPTIONS

        lines = [ln.removeprefix("sbatch: error: ").strip() for ln in detail.splitlines()]
        detail = "; ".join(dict.fromkeys(ln for ln in lines if ln)) or "no message"
        for pattern, option in _SUBMIT_OPTIONS:
            if pattern.search(detail):
                value = {"qos": self.qos, "account": self.account,
                         "constraint": self.constraint, "time": self.time}.get(option)
                return SubmitError(target=self.name, option=option, detail=detail,
                                   value=None if value is None else str(value))
        return SubmitError(target=self.name, detail=detail)

    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """States of many jobs, one API request per :attr:`max_ids_per_query` ids.

        Ids the scheduler does not know (yet) are ``UNKNOWN``. A ``COMPLETED`` job with a
        non-zero exit code is reported ``FAILED``.
        """
        ids = [str(j) for j in dict.fromkeys(job_ids)]
        found: dict[str, JobStatus] = {}
        step = self.max_ids_per_query
        for start in range(0, len(ids), step):
            chunk = ids[start:start + step]
            for row in self._sacct(chunk):
                jobid = str(row.get("jobid") or "")
                if jobid in chunk:  # not the job steps ("123.batch")
                    found[jobid] = self._row_status(jobid, row)
        return {
            j: found.get(j) or JobStatus(j, JobState.UNKNOWN, reason="not known to Slurm yet")
            for j in ids
        }

    def _sacct(self, ids: list[str]) -> list[dict]:
        # The batched query of sfapi-client's job monitor (``compute.jobs(jobids,
        # command=sacct)``), sent through ``Client.get`` so that the API's "ERROR" answers,
        # job-step rows and states outside sfapi-client's enum are handled here.
        params = {"sacct": True, "cached": False, "kwargs": [f"jobid={','.join(ids)}"]}
        answer = self._call(
            "job status", lambda: self.client.get(f"compute/jobs/{self.machine}", params).json()
        )
        return sacct_rows(answer, machine=self.machine)

    def _row_status(self, jobid: str, row: dict) -> JobStatus:
        if row.get("workdir"):
            with self._lock:
                self._job_dirs.setdefault(jobid, str(row["workdir"]))
        return row_status(jobid, row)

    def cancel(self, job_id: str) -> None:
        """Cancel the job (``DELETE compute/jobs/{machine}/{id}``); a finished job is fine."""
        # sfapi-client's ``Job.cancel()`` sends the same request but drops the answer;
        # here an "ERROR" answer that is not "already finished" is raised.
        answer = self._call(
            "cancel",
            lambda: self.client.delete(f"compute/jobs/{self.machine}/{job_id}").json(),
        )
        if isinstance(answer, dict) and str(answer.get("status", "")).upper() == "ERROR":
            error = str(answer.get("error") or "")
            if re.search(r"already complet|invalid job id|already finished", error, re.I):
                log.info("NERSC job %s had already finished: %s", job_id, error)
                return
            raise NERSCError(f"NERSC could not cancel job {job_id}: {error}",
                             machine=self.machine, operation="cancel", detail=error)
        log.info("asked NERSC to cancel job %s", job_id)

    def logs(self, job_id: str) -> JobLogs:
        """The job's ``slurm-<id>.out`` and ``.err`` from its folder at NERSC."""
        job_id = str(job_id)
        remote_dir = self._job_dirs.get(job_id)
        if remote_dir is None:
            self.status([job_id])  # sacct knows the job's working directory
            remote_dir = self._job_dirs.get(job_id)
        if remote_dir is None:
            return JobLogs()
        paths = {
            "stdout": f"{remote_dir}/slurm-{job_id}.out",
            "stderr": f"{remote_dir}/slurm-{job_id}.err",
        }
        texts = {}
        for name, remote in paths.items():
            data = self.download(remote)
            texts[name] = data.decode(errors="replace") if data else ""
        return JobLogs(stdout=texts["stdout"], stderr=texts["stderr"],
                       paths={k: f"{self.machine}:{v}" for k, v in paths.items()})
