"""A Slurm cluster, driven from a login node with its command-line tools.

``sbatch --parsable`` submits (every option one argv item, never a shell string); ``squeue``
answers for many jobs in one call; the final state and exit code come from ``sacct`` or,
where accounting is off, from ``sacct -c`` (the ``jobcomp/filetxt`` file) or
``scontrol show job``; ``scancel`` cancels.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path

from spotkit.compute._base import (
    JobLogs,
    JobState,
    JobStatus,
    Target,
    format_walltime,
    parse_walltime,
)
from spotkit.errors import SchedulerError, SubmitError, TransientSchedulerError

logger = logging.getLogger(__name__)

__all__ = ["Slurm"]

_SQUEUE_FORMAT = "%i|%T|%r|%V|%S|%e"
_SACCT_FIELDS = "JobID,State,ExitCode,Submit,Start,End,Reason"

# Messages Slurm's clients print when the controller is unreachable or busy: worth retrying.
_TRANSIENT = re.compile(
    r"socket timed out|timed out|unable to contact slurm controller|connection refused|"
    r"resource temporarily unavailable|try again|zero bytes were transmitted|"
    r"slurmctld.*(busy|not responding)|communication connection failure|"
    r"transport endpoint|connection reset|slurm_persist_conn_open|"
    r"temporarily unable|too many pending rpcs|slurmdbd.*(down|not responding)",
    re.IGNORECASE,
)
# sbatch's rejections, mapped to the option at fault.
_SUBMIT_OPTIONS = [
    (re.compile(r"invalid partition|partition.*(not|in)valid|partition not available",
                re.IGNORECASE), "partition"),
    (re.compile(r"invalid qos|qos.*(invalid|not valid|not allowed)", re.IGNORECASE), "qos"),
    (re.compile(r"invalid account|account.*(invalid|not valid|combination)",
                re.IGNORECASE), "account"),
    (re.compile(r"invalid feature|invalid constraint|constraint", re.IGNORECASE), "constraint"),
    (re.compile(r"time limit|--time specification|invalid time", re.IGNORECASE), "time"),
    (re.compile(r"node count|--nodes|node configuration", re.IGNORECASE), "nodes"),
]
# sbatch failures after which the job was certainly not submitted (safe to try again);
# a timeout is not one of them: the controller may have queued the job.
_NOT_SUBMITTED = re.compile(r"unable to contact slurm controller|connection refused|"
                            r"resource temporarily unavailable|too many pending rpcs|"
                            r"slurmctld.*busy", re.IGNORECASE)
_ACCOUNTING_OFF = re.compile(r"accounting storage is disabled|no accounting|"
                             r"slurmdbd.*not configured", re.IGNORECASE)
_UNKNOWN_ID = re.compile(r"invalid job id", re.IGNORECASE)
_FINAL_UNKNOWN = re.compile(r"already completing or completed|invalid job id|"
                            r"job has already finished", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,128}")


def _time(text: str | None) -> datetime | None:
    """A Slurm timestamp (local time, ``2024-05-01T12:00:00``) as an aware datetime."""
    if not text or text in ("N/A", "Unknown", "None", "(null)", "0"):
        return None
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        return None


def _exit_code(text: str | None) -> int | None:
    """``"3:0"`` -> 3 (the exit status; the number after ``:`` is the signal)."""
    if not text:
        return None
    head = text.split(":", 1)[0].strip()
    return int(head) if head.lstrip("-").isdigit() else None


def _check_value(value: str, what: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"{what} {value!r} contains a line break or NUL; not allowed")
    return value


class Slurm(Target):
    """Submit to a Slurm cluster from this machine (a login node) with its commands.

    Parameters
    ----------
    partition, account, qos, constraint : str, optional
        ``sbatch --partition/--account/--qos/--constraint``.
    time : str, optional
        Default wall-time limit (``"30"`` minutes, ``"1:30:00"``, ``"1-00:00:00"``);
        :func:`spotkit.submit`'s ``time=`` overrides it per job.
    nodes : int
        ``--nodes``.
    extra_sbatch : list of str
        More ``sbatch`` options, one argv item each (``["--mem=8G", "--gpus=1"]``).
    env : dict, optional
        Environment for the Slurm commands (e.g. ``{"SLURM_CONF": ...}``), on top of
        this process's environment.
    min_poll : float
        Seconds between two ``squeue`` queries for this target's jobs.
    command_timeout : float
        Seconds one Slurm command may take before it counts as a (transient) failure.
    accounting : {"auto", "sacct", "jobcomp", "scontrol"}
        Where final states and exit codes come from: ``sacct`` (slurmdbd), ``sacct -c``
        (``JobCompType=jobcomp/filetxt``), or ``scontrol show job`` (only for
        ``MinJobAge`` seconds after the end). ``"auto"`` tries them in this order once and
        keeps the first that works.

    Examples
    --------
    >>> from spotkit.compute import Slurm
    >>> target = Slurm(partition="debug", account="m1234", time="0:30:00")
    >>> job = spotkit.submit("tomo_quicklook", ds, target=target)  # needs Slurm # doctest: +SKIP
    """

    name = "slurm"
    max_ids_per_query = 500

    def __init__(self, partition: str | None = None, account: str | None = None,
                 qos: str | None = None, constraint: str | None = None,
                 time: str | int | None = None, nodes: int = 1, extra_sbatch=(),
                 env: dict | None = None, *, min_poll: float = 2.0,
                 command_timeout: float = 30.0, accounting: str = "auto"):
        for what, value in (("partition", partition), ("account", account), ("qos", qos),
                            ("constraint", constraint)):
            if value is not None:
                _check_value(str(value), what)
        parse_walltime(time)
        if not isinstance(nodes, int) or nodes < 1:
            raise ValueError(f"nodes must be a positive integer, not {nodes!r}")
        if isinstance(extra_sbatch, str):
            raise TypeError("extra_sbatch is a list of options, one per item "
                            "(['--mem=8G']), not a string")
        if accounting not in ("auto", "sacct", "jobcomp", "scontrol"):
            raise ValueError(f"accounting {accounting!r}: choose 'auto', 'sacct', 'jobcomp' "
                             "or 'scontrol'")
        self.partition = partition
        self.account = account
        self.qos = qos
        self.constraint = constraint
        self.time = time
        self.nodes = nodes
        self.extra_sbatch = [_check_value(str(o), "sbatch option") for o in extra_sbatch]
        self.env = dict(env or {})
        self.min_poll = float(min_poll)
        self.command_timeout = float(command_timeout)
        self.accounting = accounting
        self._final_source = None if accounting == "auto" else accounting
        self._workdirs: dict[str, Path] = {}

    def describe(self) -> dict:
        """Settings for the catalog and reprs (no secret here)."""
        return {"name": self.name, "partition": self.partition, "account": self.account,
                "qos": self.qos, "constraint": self.constraint, "time": self.time,
                "nodes": self.nodes, "extra_sbatch": list(self.extra_sbatch)}

    # -- running commands -------------------------------------------------------------

    def _run(self, argv: list[str], *, what: str) -> subprocess.CompletedProcess:
        """Run a Slurm command; a timeout or a transient message raises
        :class:`TransientSchedulerError`, a missing command :class:`SchedulerError`."""
        env = {**os.environ, **self.env}
        try:
            res = subprocess.run(argv, capture_output=True, text=True, env=env,
                                 timeout=self.command_timeout, check=False)
        except FileNotFoundError:
            raise SchedulerError(
                f"{argv[0]} is not installed or not on PATH; run spotkit where the Slurm "
                "commands are (a login node), or load the Slurm module",
                target=self.name, command=argv[0],
            ) from None
        except subprocess.TimeoutExpired:
            raise TransientSchedulerError(
                f"{what}: {argv[0]} did not answer within {self.command_timeout:g} s",
                target=self.name, command=" ".join(argv[:2]),
            ) from None
        return res

    def _failed(self, res: subprocess.CompletedProcess, argv: list[str], what: str
                ) -> SchedulerError:
        detail = (res.stderr or res.stdout).strip()
        cls = TransientSchedulerError if _TRANSIENT.search(detail) else SchedulerError
        return cls(f"{what}: {argv[0]} exited with status {res.returncode}: {detail}",
                   target=self.name, command=" ".join(argv[:2]), returncode=res.returncode,
                   detail=detail)

    # -- submission -------------------------------------------------------------------

    def script_header(self, *, job_name: str, workdir: Path, time: str | None = None
                      ) -> list[str]:
        """``#SBATCH`` lines: job name, output and error files, time limit, working dir."""
        if not _NAME.fullmatch(job_name):
            raise ValueError(f"job name {job_name!r}: use letters, digits and '._+-' only")
        workdir = Path(workdir)
        for path in (str(workdir),):
            _check_value(path, "working directory")
            if '"' in path:
                raise ValueError(f"working directory {path!r} contains a double quote")
        limit = time or self.time
        lines = [
            f"#SBATCH --job-name={job_name}",
            f'#SBATCH --output="{workdir}/job-%j.out"',
            f'#SBATCH --error="{workdir}/job-%j.err"',
            f'#SBATCH --chdir="{workdir}"',
        ]
        if limit is not None:
            lines.append(f"#SBATCH --time={format_walltime(parse_walltime(limit))}")
        return lines

    def sbatch_options(self) -> list[str]:
        """The target's ``sbatch`` options, one argv item each."""
        opts = []
        for flag, value in (("--partition", self.partition), ("--account", self.account),
                            ("--qos", self.qos), ("--constraint", self.constraint)):
            if value is not None:
                opts.append(f"{flag}={value}")
        opts.append(f"--nodes={self.nodes}")
        return [*opts, *self.extra_sbatch]

    def submit_script(self, script: Path, *, job_name: str, workdir: Path) -> str:
        """``sbatch --parsable [options] script``; returns the job id.

        Raises
        ------
        SubmitError
            sbatch refused the job (the message names the option at fault when it can).
        SchedulerError
            sbatch could not be run or reach the controller.
        """
        script = Path(script).resolve()
        workdir = Path(workdir).resolve()
        argv = ["sbatch", "--parsable", f"--chdir={workdir}", *self.sbatch_options(),
                str(script)]
        try:
            res = self._run(argv, what=f"submitting {script.name}")
        except TransientSchedulerError as exc:  # a timeout: it may have been queued
            raise SchedulerError(
                f"{exc}; the job may or may not have been submitted: check with "
                f"`squeue --me --name={job_name}` before submitting again",
                target=self.name, command="sbatch") from None
        if res.returncode != 0:
            detail = (res.stderr or res.stdout).strip()
            if _NOT_SUBMITTED.search(detail):
                raise TransientSchedulerError(
                    f"sbatch could not reach the controller: {detail}", target=self.name,
                    command="sbatch", returncode=res.returncode, detail=detail)
            if _TRANSIENT.search(detail):
                raise SchedulerError(
                    f"sbatch failed ({detail}); the job may or may not have been submitted: "
                    f"check with `squeue --me --name={job_name}` before submitting again",
                    target=self.name, command="sbatch", returncode=res.returncode,
                    detail=detail)
            raise self._submit_error(detail)
        job_id = res.stdout.strip().splitlines()[-1].split(";")[0].strip() if res.stdout else ""
        if not job_id.isdigit():
            raise SchedulerError(f"sbatch answered {res.stdout.strip()!r}, not a job id",
                                 target=self.name, command="sbatch", detail=res.stdout)
        self._workdirs[job_id] = workdir
        logger.info("slurm job %s submitted: %s", job_id, script)
        return job_id

    def _submit_error(self, detail: str) -> SubmitError:
        lines = [ln.removeprefix("sbatch: error: ").strip() for ln in detail.splitlines()
                 if ln.strip()]
        detail = "; ".join(dict.fromkeys(lines)) or "no message"
        for pattern, option in _SUBMIT_OPTIONS:
            if pattern.search(detail):
                value = {"partition": self.partition, "qos": self.qos, "account": self.account,
                         "constraint": self.constraint, "nodes": self.nodes}.get(option)
                return SubmitError(target=self.name, option=option,
                                   value=None if value is None else str(value), detail=detail)
        return SubmitError(target=self.name, detail=detail)

    # -- status -----------------------------------------------------------------------

    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """States of many jobs: one ``squeue`` call, then one accounting call for those
        that finished (or left the queue)."""
        ids = [str(i) for i in job_ids]
        if not ids:
            return {}
        out = self._squeue(ids)
        done = [i for i in ids if i not in out or out[i].state.finished]
        if done:
            final = self._final(done)
            for job_id in done:
                st = final.get(job_id)
                live = out.get(job_id)
                if st is not None:
                    if live is not None and live.reason and not st.reason:
                        st = JobStatus(st.job_id, st.state, st.exit_code, live.reason,
                                       st.submitted or live.submitted, st.started or live.started,
                                       st.ended or live.ended)
                    out[job_id] = st
        return {i: out.get(i, JobStatus(i, JobState.UNKNOWN)) for i in ids}

    def _squeue(self, ids: list[str]) -> dict[str, JobStatus]:
        argv = ["squeue", "--noheader", "--states=all", f"--jobs={','.join(ids)}",
                f"--format={_SQUEUE_FORMAT}"]
        res = self._run(argv, what="squeue")
        if res.returncode != 0:
            detail = (res.stderr or res.stdout).strip()
            if _UNKNOWN_ID.search(detail):
                return {}  # none of the ids is in the controller's memory (any more)
            raise self._failed(res, argv, "squeue")
        out = {}
        for line in res.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 6 or parts[0] not in ids:
                continue
            job_id, state, reason, submit, start, end = parts[:6]
            out[job_id] = JobStatus(job_id, JobState.from_scheduler(state),
                                    reason="" if reason == "None" else reason,
                                    submitted=_time(submit), started=_time(start),
                                    ended=_time(end))
        return out

    def _final(self, ids: list[str]) -> dict[str, JobStatus]:
        sources = [self._final_source] if self._final_source else ["sacct", "jobcomp",
                                                                    "scontrol"]
        last: SchedulerError | None = None
        for source in sources:
            try:
                found = getattr(self, f"_final_{source}")(ids)
            except TransientSchedulerError:
                raise
            except SchedulerError as exc:
                if self._final_source:
                    raise
                logger.debug("%s cannot give final states here: %s", source, exc)
                last = exc
                continue
            if self._final_source is None:
                logger.info("slurm: final job states come from %s here", source)
                self._final_source = source
            return found
        assert last is not None
        raise last

    def _sacct(self, ids: list[str], *, jobcomp: bool) -> dict[str, JobStatus]:
        argv = ["sacct", *(["-c"] if jobcomp else []), "-X", "-n", "-P",
                "-o", _SACCT_FIELDS, "-j", ",".join(ids)]
        res = self._run(argv, what="sacct -c" if jobcomp else "sacct")
        if res.returncode != 0:
            raise self._failed(res, argv, "sacct -c" if jobcomp else "sacct")
        out = {}
        for line in res.stdout.splitlines():  # later lines win (a requeued job, jobcomp)
            parts = line.strip().split("|")
            if len(parts) < 6 or parts[0] not in ids:
                continue
            job_id, state, code, submit, start, end = parts[:6]
            reason = parts[6] if len(parts) > 6 else ""
            out[job_id] = JobStatus(job_id, JobState.from_scheduler(state),
                                    exit_code=_exit_code(code),
                                    reason="" if reason == "None" else reason,
                                    submitted=_time(submit), started=_time(start),
                                    ended=_time(end))
        return out

    def _final_sacct(self, ids: list[str]) -> dict[str, JobStatus]:
        return self._sacct(ids, jobcomp=False)

    def _final_jobcomp(self, ids: list[str]) -> dict[str, JobStatus]:
        return self._sacct(ids, jobcomp=True)

    def _final_scontrol(self, ids: list[str]) -> dict[str, JobStatus]:
        # one call lists every job the controller still holds (MinJobAge after the end)
        argv = ["scontrol", "--oneliner", "show", "job"]
        res = self._run(argv, what="scontrol show job")
        if res.returncode != 0:
            raise self._failed(res, argv, "scontrol show job")
        out = {}
        for line in res.stdout.splitlines():
            fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
            job_id = fields.get("JobId")
            if job_id not in ids:
                continue
            out[job_id] = JobStatus(job_id, JobState.from_scheduler(fields.get("JobState")),
                                    exit_code=_exit_code(fields.get("ExitCode")),
                                    reason="" if fields.get("Reason") == "None"
                                    else fields.get("Reason", ""),
                                    submitted=_time(fields.get("SubmitTime")),
                                    started=_time(fields.get("StartTime")),
                                    ended=_time(fields.get("EndTime")))
        return out

    # -- cancel and logs ----------------------------------------------------------------

    def cancel(self, job_id: str) -> None:
        """``scancel <id>``; no error when the job already ended or is gone."""
        argv = ["scancel", str(job_id)]
        res = self._run(argv, what=f"cancelling job {job_id}")
        detail = (res.stderr or res.stdout).strip()
        if res.returncode != 0 and not _FINAL_UNKNOWN.search(detail):
            raise self._failed(res, argv, f"cancelling job {job_id}")
        if detail:
            logger.info("scancel %s: %s", job_id, detail)

    def adopt(self, job_id: str, *, workdir: Path | None = None) -> None:
        """Remember the working directory of a job submitted elsewhere (for its logs)."""
        if workdir is not None:
            self._workdirs[str(job_id)] = Path(workdir)

    def logs(self, job_id: str) -> JobLogs:
        """The job's ``job-<id>.out`` and ``.err`` in its working directory (or wherever
        ``scontrol show job`` says they are, for a job submitted elsewhere)."""
        job_id = str(job_id)
        workdir = self._workdirs.get(job_id)
        paths = {}
        if workdir is not None:
            paths = {"stdout": workdir / f"job-{job_id}.out",
                     "stderr": workdir / f"job-{job_id}.err"}
        else:
            res = self._run(["scontrol", "--oneliner", "show", "job", job_id],
                            what=f"log paths of job {job_id}")
            fields = dict(w.split("=", 1) for w in res.stdout.split() if "=" in w)
            paths = {k: Path(fields[f]) for k, f in (("stdout", "StdOut"), ("stderr", "StdErr"))
                     if fields.get(f)}

        def read(path: Path) -> str:
            try:
                return path.read_text(errors="replace")
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                return ""

        return JobLogs(stdout=read(paths["stdout"]) if "stdout" in paths else "",
                       stderr=read(paths["stderr"]) if "stderr" in paths else "",
                       paths={k: str(v) for k, v in paths.items()})
