"""The embedded default target: a pool of batch-script processes on this machine."""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from spotkit.compute._base import JobLogs, JobState, JobStatus, Target, parse_walltime
from spotkit.errors import SubmitError

logger = logging.getLogger(__name__)

__all__ = ["Local"]

#: job numbers, one sequence per process: every Local target in it (the flow makes one per
#: job) gives distinct ids, so job records and telemetry never mistake two jobs for one
_JOB_NUMBERS = itertools.count(1)

_TIME_DIRECTIVE = re.compile(r"^#SPOTKIT\s+--time=(\S+)\s*$")


@dataclass
class _Proc:
    id: str
    script: Path
    workdir: Path
    job_name: str
    stdout: Path
    stderr: Path
    time_limit: float | None
    submitted: datetime
    started: datetime | None = None
    ended: datetime | None = None
    popen: subprocess.Popen | None = None
    deadline: float | None = None  # monotonic: time limit
    kill_at: float | None = None  # monotonic: SIGKILL if still alive
    state: JobState = JobState.PENDING
    exit_code: int | None = None
    reason: str = "Queued"
    ending: JobState | None = None  # CANCELLED or TIMEOUT once we signalled it
    handles: list = field(default_factory=list)


class Local(Target):
    """Run batch scripts as processes on this machine, at most ``max_workers`` at once.

    Each job is ``bash <script>`` in its own process group (so cancelling stops everything
    it started), working in the run's directory, with stdout and stderr in
    ``<workdir>/job-<id>.out`` and ``.err``. Jobs beyond ``max_workers`` wait in a queue
    (``PENDING``). States come from the process: exit 0 is ``COMPLETED``, another exit
    status ``FAILED``, a cancelled job ``CANCELLED``, one past its time limit ``TIMEOUT``.

    Parameters
    ----------
    max_workers : int, optional
        Jobs running at once; default: half the CPUs (a notebook run uses a kernel and its
        own threads), at least 1.
    time : str, optional
        Default wall-time limit (``"30"`` minutes, ``"1:00:00"``); ``None``: none.
    kill_wait : float
        Seconds between SIGTERM and SIGKILL when cancelling or timing out.
    min_poll : float
        Seconds between status queries (cheap here: no scheduler).
    env : dict, optional
        Extra environment variables for the jobs.

    Examples
    --------
    The target runs batch scripts (:func:`spotkit.submit` writes one for a notebook run);
    one past its time limit is stopped and reported ``TIMEOUT``:

    >>> import pathlib, tempfile
    >>> from spotkit.compute import Local
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> script = folder / "long.sh"
    >>> _ = script.write_text("#SPOTKIT --time=0:01\\nsleep 30")
    >>> local = Local(max_workers=2, kill_wait=1, min_poll=0.05)
    >>> job_id = local.submit_script(script, job_name="long", workdir=folder)
    >>> job_id.startswith("local-")
    True
    >>> from spotkit.compute import Job
    >>> Job(job_id, local).wait(timeout=60).state
    <JobState.TIMEOUT: 'TIMEOUT'>
    """

    name = "local"

    def __init__(self, max_workers: int | None = None, *, time: str | int | None = None,
                 kill_wait: float = 3.0, min_poll: float = 0.2, env: dict | None = None):
        if max_workers is None:
            max_workers = max(1, (os.cpu_count() or 2) // 2)
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive integer, not {max_workers!r}")
        parse_walltime(time)  # fail now on a bad limit
        self.max_workers = max_workers
        self.time = time
        self.kill_wait = float(kill_wait)
        self.min_poll = float(min_poll)
        self.env = dict(env or {})
        self._jobs: dict[str, _Proc] = {}
        self._queue: list[str] = []
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def describe(self) -> dict:
        """Settings for the catalog and reprs."""
        return {"name": self.name, "max_workers": self.max_workers, "time": self.time}

    # -- Target API -------------------------------------------------------------------

    def script_header(self, *, job_name: str, workdir: Path, time: str | None = None
                      ) -> list[str]:
        """A ``#SPOTKIT --time=`` line when there is a time limit (read back at submit)."""
        limit = time or self.time
        if limit is None:
            return []
        parse_walltime(limit)
        return [f"#SPOTKIT --time={limit}"]

    def submit_script(self, script: Path, *, job_name: str, workdir: Path) -> str:
        """Queue ``bash script`` to run in ``workdir``; return its id ``local-<pid>-<n>``."""
        script = Path(script).resolve()
        workdir = Path(workdir).resolve()
        if not script.is_file():
            raise SubmitError(target=self.name, detail=f"batch script {script} does not exist")
        if not workdir.is_dir():
            raise SubmitError(target=self.name, detail=f"working directory {workdir} does "
                              "not exist")
        limit = self.time
        for line in script.read_text().splitlines()[:50]:
            m = _TIME_DIRECTIVE.match(line)
            if m:
                limit = m[1]
        try:
            seconds = parse_walltime(limit)
        except ValueError as exc:
            raise SubmitError(target=self.name, option="time", value=str(limit),
                              detail=str(exc)) from None
        job_id = f"local-{os.getpid()}-{next(_JOB_NUMBERS)}"
        proc = _Proc(id=job_id, script=script, workdir=workdir, job_name=job_name,
                     stdout=workdir / f"job-{job_id}.out", stderr=workdir / f"job-{job_id}.err",
                     time_limit=seconds, submitted=datetime.now(UTC))
        with self._lock:
            self._jobs[job_id] = proc
            self._queue.append(job_id)
            self._dispatch()
            self._ensure_thread()
        logger.info("local job %s queued: %s", job_id, script)
        return job_id

    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """Status of the given jobs, from their processes (unknown ids: ``UNKNOWN``)."""
        out = {}
        with self._lock:
            self._reap()
            for job_id in job_ids:
                p = self._jobs.get(job_id)
                if p is None:
                    out[job_id] = JobStatus(job_id, JobState.UNKNOWN)
                    continue
                out[job_id] = JobStatus(job_id, p.state, exit_code=p.exit_code, reason=p.reason,
                                        submitted=p.submitted, started=p.started,
                                        ended=p.ended)
        return out

    def cancel(self, job_id: str) -> None:
        """Drop a queued job, or SIGTERM (then SIGKILL) a running job's process group."""
        with self._lock:
            p = self._jobs.get(job_id)
            if p is None or p.state.finished:
                return
            if p.popen is None:
                self._queue.remove(job_id)
                self._end(p, JobState.CANCELLED, None, "cancelled while queued")
                return
            p.ending = JobState.CANCELLED
            self._signal(p, signal.SIGTERM)
            p.kill_at = time.monotonic() + self.kill_wait
            self._wake.notify_all()

    def logs(self, job_id: str) -> JobLogs:
        """The job's stdout and stderr files, as written so far."""
        with self._lock:
            p = self._jobs.get(job_id)
        if p is None:
            return JobLogs()

        def read(path: Path) -> str:
            try:
                return path.read_text(errors="replace")
            except FileNotFoundError:
                return ""

        return JobLogs(stdout=read(p.stdout), stderr=read(p.stderr),
                       paths={"stdout": str(p.stdout), "stderr": str(p.stderr)})

    # -- the process pool -------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="spotkit-local-jobs",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        """Reap ended processes, enforce limits, start queued jobs; exit when idle."""
        with self._lock:
            while True:
                self._reap()
                self._dispatch()
                if not self._queue and not any(p.popen is not None and not p.state.finished
                                               for p in self._jobs.values()):
                    self._thread = None
                    return
                self._wake.wait(timeout=0.1)

    def _running(self) -> int:
        return sum(1 for p in self._jobs.values() if p.state is JobState.RUNNING)

    def _dispatch(self) -> None:
        while self._queue and self._running() < self.max_workers:
            p = self._jobs[self._queue.pop(0)]
            self._start(p)

    def _start(self, p: _Proc) -> None:
        env = {**os.environ, **self.env, "SPOTKIT_JOB_ID": p.id, "SPOTKIT_JOB_NAME": p.job_name}
        try:
            out = open(p.stdout, "ab")
            err = open(p.stderr, "ab")
            p.handles = [out, err]
            p.popen = subprocess.Popen(
                ["/bin/bash", str(p.script)], cwd=p.workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True,
            )
        except OSError as exc:
            self._close(p)
            self._end(p, JobState.FAILED, None, f"could not start: {exc}")
            return
        p.started = datetime.now(UTC)
        p.state, p.reason = JobState.RUNNING, ""
        if p.time_limit is not None:
            p.deadline = time.monotonic() + p.time_limit
        logger.debug("local job %s started (pid %d)", p.id, p.popen.pid)

    def _reap(self) -> None:
        now = time.monotonic()
        for p in self._jobs.values():
            if p.popen is None or p.state.finished:
                continue
            code = p.popen.poll()
            if code is None:
                if p.deadline is not None and now >= p.deadline and p.ending is None:
                    logger.info("local job %s exceeded its time limit of %.0f s", p.id,
                                p.time_limit)
                    p.ending = JobState.TIMEOUT
                    self._signal(p, signal.SIGTERM)
                    p.kill_at = now + self.kill_wait
                elif p.kill_at is not None and now >= p.kill_at:
                    self._signal(p, signal.SIGKILL)
                    p.kill_at = None
                continue
            self._close(p)
            exit_code = code if code >= 0 else 128 - code
            if p.ending is not None:
                reason = "TimeLimit" if p.ending is JobState.TIMEOUT else "cancelled"
                self._end(p, p.ending, exit_code, reason)
            elif code == 0:
                self._end(p, JobState.COMPLETED, 0, "")
            elif code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
                self._end(p, JobState.FAILED, exit_code, f"killed by signal {name}")
            else:
                self._end(p, JobState.FAILED, exit_code, "NonZeroExitCode")

    def _signal(self, p: _Proc, sig: int) -> None:
        if p.popen is None:  # not started yet: nothing to signal
            return
        try:
            os.killpg(p.popen.pid, sig)
        except ProcessLookupError:
            pass

    def _close(self, p: _Proc) -> None:
        for handle in p.handles:
            handle.close()
        p.handles = []

    def _end(self, p: _Proc, state: JobState, exit_code: int | None, reason: str) -> None:
        p.state, p.exit_code, p.reason = state, exit_code, reason
        p.ended = datetime.now(UTC)
        if p.popen is not None:
            # the script ended; end whatever it left behind in its process group too
            try:
                os.killpg(p.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        logger.info("local job %s %s (exit code %s)", p.id, state.value, exit_code)
