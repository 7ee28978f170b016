"""Job states and status records: one vocabulary for every target (Slurm's state names).

A status is what a scheduler said about one job at one moment; only ``COMPLETED`` with
exit code 0 is success (:attr:`JobStatus.succeeded`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["JobLogs", "JobState", "JobStatus"]


class JobState(str, enum.Enum):  # noqa: UP042 - str() stays "JobState.X" (contract)
    """One set of job states for every target (Slurm's names, which NERSC also reports).

    ``UNKNOWN`` means "the scheduler did not say" (not yet visible right after submission,
    a cached answer, a transient API error); it is never final.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    UNKNOWN = "UNKNOWN"

    @property
    def finished(self) -> bool:
        """The job will not change state again."""
        return self in _FINAL

    @property
    def succeeded(self) -> bool:
        """Finished, and finished well: only ``COMPLETED`` (with exit code 0) is success."""
        return self is JobState.COMPLETED

    @classmethod
    def from_scheduler(cls, text: str | None) -> JobState:
        """Map a scheduler's state text (``"CANCELLED by 0"``, ``"OUT_OF_ME+"``, ``"CD"``)."""
        if not text:
            return cls.UNKNOWN
        word = str(text).strip().split()[0].rstrip("+").upper()
        word = _SHORT.get(word, word)
        for state in cls:
            if state.value == word or (len(word) >= 8 and state.value.startswith(word)):
                return state
        return cls.UNKNOWN


_FINAL = frozenset({
    JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT,
    JobState.OUT_OF_MEMORY, JobState.NODE_FAIL, JobState.PREEMPTED, JobState.BOOT_FAIL,
    JobState.DEADLINE,
})
_SHORT = {  # squeue's compact codes
    "PD": "PENDING", "R": "RUNNING", "CG": "COMPLETING", "CD": "COMPLETED", "F": "FAILED",
    "CA": "CANCELLED", "TO": "TIMEOUT", "OOM": "OUT_OF_MEMORY", "NF": "NODE_FAIL",
    "PR": "PREEMPTED", "BF": "BOOT_FAIL", "DL": "DEADLINE", "CF": "PENDING",
}


@dataclass(frozen=True)
class JobStatus:
    """What a target knows about one job at one moment.

    Attributes
    ----------
    job_id : str
    state : JobState
    exit_code : int or None
        The batch script's exit status, when finished (``sacct``'s ``ExitCode`` before ``:``).
    reason : str
        Scheduler's reason or message (e.g. ``"TimeLimit"``, the failing cell), may be empty.
    submitted, started, ended : datetime or None
        Times the scheduler reports (timezone-aware where it says so).
    """

    job_id: str
    state: JobState
    exit_code: int | None = None
    reason: str = ""
    submitted: datetime | None = None
    started: datetime | None = None
    ended: datetime | None = None

    @property
    def finished(self) -> bool:
        """The job will not change state again."""
        return self.state.finished

    @property
    def succeeded(self) -> bool:
        """``COMPLETED`` and no non-zero exit code: the only success.

        Every other final state (``FAILED``, ``TIMEOUT``, ``CANCELLED``, ``OUT_OF_MEMORY``,
        ``NODE_FAIL``...) is a failure, and so is ``COMPLETED`` with a non-zero exit code.
        """
        return self.state.succeeded and not self.exit_code


@dataclass(frozen=True)
class JobLogs:
    """A job's standard output and error, as text (empty when not written yet)."""

    stdout: str = ""
    stderr: str = ""
    paths: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "\n".join(part for part in (self.stdout, self.stderr) if part)
