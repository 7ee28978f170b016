"""What a job used, as its scheduler accounted it: elapsed time, CPU time, memory, exit code.

:func:`job_usage` asks the job's target. On Slurm that is ``sacct`` (one call for the job
and its steps: the allocation's state, exit code, elapsed time, CPUs and CPU time, the
largest ``MaxRSS`` of its steps); where accounting storage is off, ``sacct -c`` (the
``jobcomp/filetxt`` file: state, exit code, elapsed, CPUs, nodes; no CPU time nor memory),
and where that is off too, ``scontrol show job`` (while the controller still holds the
job). Other targets report what their status says (state, exit code, elapsed). What the
scheduler did not record is None and named in :attr:`JobUsage.missing`, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spotkit.compute._job import Job
from spotkit.compute._slurm import Slurm, _exit_code
from spotkit.compute._states import JobState
from spotkit.errors import SchedulerError, TransientSchedulerError

__all__ = ["JobUsage", "job_usage"]

_FIELDS = "JobID,State,ExitCode,Elapsed,TotalCPU,CPUTime,MaxRSS,AllocCPUS,NodeList"
_RSS = re.compile(r"^\s*([0-9.]+)\s*([KMGTP]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_MEASURED = ("elapsed", "cpus", "cpu_time", "cpu_allocated", "max_rss")


@dataclass(frozen=True)
class JobUsage:
    """The resources one job used, as its scheduler accounted them.

    Attributes
    ----------
    job_id, target : str
    state : JobState
    exit_code : int or None
    elapsed : float or None
        Wall-clock seconds it ran.
    cpus : int or None
        CPUs allocated.
    cpu_time : float or None
        CPU seconds used (Slurm ``TotalCPU``, user + system of all steps).
    cpu_allocated : float or None
        CPU seconds allocated (Slurm ``CPUTime``: elapsed x CPUs).
    max_rss : int or None
        Largest resident memory of any step, bytes (Slurm ``MaxRSS``).
    nodes : str or None
        The nodes it ran on.
    source : str
        Where the numbers come from (``"sacct"``, ``"sacct -c"``, ``"scontrol"``,
        ``"status"``).
    missing : tuple of str
        Fields the scheduler did not record (e.g. ``max_rss`` without job accounting).
    """

    job_id: str
    target: str
    state: JobState
    exit_code: int | None
    elapsed: float | None
    cpus: int | None
    cpu_time: float | None
    cpu_allocated: float | None
    max_rss: int | None
    nodes: str | None
    source: str
    missing: tuple[str, ...] = ()

    @property
    def cpu_efficiency(self) -> float | None:
        """``cpu_time / cpu_allocated`` (None where either is unknown or zero)."""
        if self.cpu_time is None or not self.cpu_allocated:
            return None
        return self.cpu_time / self.cpu_allocated

    def as_dict(self) -> dict:
        """Plain values (the state as its text)."""
        return {"job_id": self.job_id, "target": self.target, "state": self.state.value,
                "exit_code": self.exit_code, "elapsed": self.elapsed, "cpus": self.cpus,
                "cpu_time": self.cpu_time, "cpu_allocated": self.cpu_allocated,
                "cpu_efficiency": self.cpu_efficiency, "max_rss": self.max_rss,
                "nodes": self.nodes, "source": self.source, "missing": list(self.missing)}


def slurm_seconds(text: str | None) -> float | None:
    """A Slurm duration (``[D-]HH:MM:SS``, ``MM:SS.mmm``, ``HH:MM:SS.mmm``) in seconds.

    Examples
    --------
    >>> slurm_seconds("1-02:03:04"), slurm_seconds("00:01.500"), slurm_seconds("")
    (93784.0, 1.5, None)
    """
    if not text or text.strip() in ("", "INVALID", "Unknown", "N/A"):
        return None
    text = text.strip()
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        days = int(head)
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    while len(values) < 3:
        values.insert(0, 0.0)
    h, m, s = values[-3:]
    return days * 86400.0 + h * 3600.0 + m * 60.0 + s


def slurm_bytes(text: str | None) -> int | None:
    """A Slurm memory amount (``1234K``, ``1.5G``, ``0``) in bytes (K = 1024).

    Examples
    --------
    >>> slurm_bytes("2048K"), slurm_bytes("1.5M"), slurm_bytes("")
    (2097152, 1572864, None)
    """
    if not text:
        return None
    match = _RSS.match(text)
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _int(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


def _usage(job_id: str, target: str, state: JobState, exit_code: int | None, *,
           elapsed: float | None, cpus: int | None, cpu_time: float | None,
           cpu_allocated: float | None, max_rss: int | None, nodes: str | None,
           source: str) -> JobUsage:
    """A JobUsage; CPU seconds allocated from elapsed x CPUs where not given; ``missing``
    names what is still unknown."""
    if cpu_allocated is None and elapsed is not None and cpus:
        cpu_allocated = elapsed * cpus
    values = {"elapsed": elapsed, "cpus": cpus, "cpu_time": cpu_time,
              "cpu_allocated": cpu_allocated, "max_rss": max_rss}
    missing = tuple(k for k in _MEASURED if values[k] is None)
    return JobUsage(job_id, target, state, exit_code, elapsed, cpus, cpu_time, cpu_allocated,
                    max_rss, nodes or None, source, missing)


def _from_sacct(target: Slurm, job_id: str, *, jobcomp: bool) -> JobUsage | None:
    argv = ["sacct", *(["-c"] if jobcomp else []), "-n", "-P", "-o", _FIELDS, "-j", job_id]
    what = "sacct -c" if jobcomp else "sacct"
    res = target._run(argv, what=f"{what} (usage of job {job_id})")
    if res.returncode != 0:
        raise target._failed(res, argv, what)
    alloc: list[str] | None = None
    rss: list[int] = []
    step_cpu: list[float] = []
    for line in res.stdout.splitlines():  # later lines win for a requeued job
        parts = line.strip().split("|")
        if len(parts) < 9:
            continue
        if parts[0] == job_id:
            alloc = parts
        elif parts[0].startswith(job_id + "."):
            value = slurm_bytes(parts[6])
            if value is not None:
                rss.append(value)
            cpu = slurm_seconds(parts[4])
            if cpu is not None:
                step_cpu.append(cpu)
    if alloc is None:
        return None
    _, state, code, elapsed, total_cpu, cpu_time, max_rss, cpus, nodes = alloc[:9]
    used = slurm_seconds(total_cpu) if total_cpu else (sum(step_cpu) if step_cpu else None)
    return _usage(job_id, target.name, JobState.from_scheduler(state), _exit_code(code),
                  elapsed=slurm_seconds(elapsed), cpus=_int(cpus), cpu_time=used,
                  cpu_allocated=slurm_seconds(cpu_time),
                  max_rss=max(rss) if rss else slurm_bytes(max_rss), nodes=nodes,
                  source=what)


def _from_scontrol(target: Slurm, job_id: str) -> JobUsage | None:
    argv = ["scontrol", "--oneliner", "show", "job", job_id]
    res = target._run(argv, what=f"scontrol show job (usage of job {job_id})")
    if res.returncode != 0:
        raise target._failed(res, argv, "scontrol show job")
    fields = dict(w.split("=", 1) for w in res.stdout.split() if "=" in w)
    if fields.get("JobId") != job_id:
        return None
    return _usage(job_id, target.name, JobState.from_scheduler(fields.get("JobState")),
                  _exit_code(fields.get("ExitCode")),
                  elapsed=slurm_seconds(fields.get("RunTime")),
                  cpus=_int(fields.get("NumCPUs")), cpu_time=None, cpu_allocated=None,
                  max_rss=None, nodes=fields.get("NodeList"), source="scontrol")


def _slurm_usage(target: Slurm, job_id: str) -> JobUsage | None:
    sources = ["sacct", "jobcomp", "scontrol"]
    known = getattr(target, "_final_source", None)
    if known in sources:  # the source its final states come from: tried first
        sources.remove(known)
        sources.insert(0, known)
    last: SchedulerError | None = None
    for source in sources:
        try:
            if source == "scontrol":
                found = _from_scontrol(target, job_id)
            else:
                found = _from_sacct(target, job_id, jobcomp=source == "jobcomp")
        except TransientSchedulerError:
            raise
        except SchedulerError as exc:  # accounting off here: the next source
            last = exc
            continue
        if found is not None:
            return found
    if last is not None:
        raise last
    return None


def job_usage(job: Job) -> JobUsage:
    """The resources a job used, from its scheduler's accounting.

    Parameters
    ----------
    job : Job
        A job of any target (what :func:`spotkit.submit` returns, or
        :meth:`Job.from_run`).

    Returns
    -------
    JobUsage
        On Slurm from ``sacct`` (or ``sacct -c``, or ``scontrol``: see the module docs);
        on other targets from the job's status (state, exit code, elapsed). What was not
        recorded is None and listed in ``missing``.

    Raises
    ------
    spotkit.errors.SchedulerError
        The scheduler could not be asked (after its retries).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.compute import Job, Local
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> script = folder / "fails.sh"
    >>> _ = script.write_text("exit 3")
    >>> target = Local(min_poll=0.05)
    >>> job = Job(target.submit_script(script, job_name="fails", workdir=folder), target)
    >>> _ = job.wait(timeout=60)
    >>> usage = job_usage(job)
    >>> usage.state.value, usage.exit_code, usage.source, "max_rss" in usage.missing
    ('FAILED', 3, 'status', True)
    """
    if not isinstance(job, Job):
        raise TypeError(f"expected a spotkit.compute.Job, not {type(job).__name__}")
    target = job.target
    if isinstance(target, Slurm):
        found = _slurm_usage(target, str(job.id))
        if found is not None:
            return found
    st = job.refresh()
    elapsed = None
    if st.started is not None:
        from datetime import UTC, datetime

        end = st.ended or datetime.now(UTC)
        elapsed = max(0.0, (end - st.started).total_seconds())
    return _usage(str(job.id), target.name, st.state, st.exit_code, elapsed=elapsed,
                  cpus=None, cpu_time=None, cpu_allocated=None, max_rss=None, nodes=None,
                  source="status")
