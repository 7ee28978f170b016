"""What Slurm's ``sacct`` at NERSC says, as spotkit job states (no network here).

The NERSC target asks the Superfacility API for ``sacct`` rows of many jobs at once; these
functions check the answer and turn each row into a :class:`~spotkit.compute.JobStatus`.
A ``COMPLETED`` job with a non-zero exit code is ``FAILED``: success is never assumed.
"""

from __future__ import annotations

from datetime import datetime

from ..errors import NERSCError
from ._base import JobState, JobStatus

__all__ = ["exit_code", "row_status", "sacct_rows", "slurm_time"]


def sacct_rows(answer, *, machine: str) -> list[dict]:
    """The job rows of the API's answer to ``GET compute/jobs/{machine}?sacct=true``.

    An "invalid job id" error means no job is known yet (no rows).

    Raises
    ------
    NERSCError
        The API answered something else than rows, or an error.

    Examples
    --------
    >>> sacct_rows({"status": "OK", "output": [{"jobid": "7", "state": "RUNNING"}]},
    ...            machine="perlmutter")
    [{'jobid': '7', 'state': 'RUNNING'}]
    >>> sacct_rows({"status": "ERROR", "error": "Invalid job id specified"},
    ...            machine="perlmutter")
    []
    """
    if not isinstance(answer, dict):
        raise NERSCError(f"NERSC API job status answered {answer!r}",
                         machine=machine, operation="job status")
    if str(answer.get("status", "OK")).upper() == "ERROR":
        error = str(answer.get("error") or "")
        if "invalid job id" in error.lower():
            return []
        raise NERSCError(f"NERSC API job status failed: {error}", machine=machine,
                         operation="job status", detail=error)
    return [row for row in answer.get("output") or [] if isinstance(row, dict)]


def row_status(jobid: str, row: dict) -> JobStatus:
    """One ``sacct`` row as a :class:`~spotkit.compute.JobStatus`.

    Examples
    --------
    >>> st = row_status("7", {"state": "COMPLETED", "exitcode": "2:0", "reason": "None"})
    >>> st.state, st.exit_code, st.reason
    (<JobState.FAILED: 'FAILED'>, 2, 'exit code 2')
    """
    state = JobState.from_scheduler(row.get("state"))
    code = exit_code(row.get("exitcode"))
    reason = str(row.get("reason") or "")
    reason = "" if reason in {"None", "(null)"} else reason
    if state is JobState.COMPLETED and code not in (None, 0):
        state = JobState.FAILED
        reason = reason or f"exit code {code}"
    return JobStatus(
        job_id=jobid, state=state, exit_code=code, reason=reason,
        submitted=slurm_time(row.get("submit")), started=slurm_time(row.get("start")),
        ended=slurm_time(row.get("end")),
    )


def exit_code(text) -> int | None:
    """``"3:0"`` -> 3 (the exit status; after ``:`` is the signal).

    Examples
    --------
    >>> exit_code("3:0"), exit_code(""), exit_code("x")
    (3, None, None)
    """
    if text in (None, ""):
        return None
    head = str(text).split(":", 1)[0].strip()
    return int(head) if head.lstrip("-").isdigit() else None


def slurm_time(text) -> datetime | None:
    """A Slurm timestamp (the machine's local time) as an aware datetime, or None."""
    if not text or str(text) in {"Unknown", "None", "N/A", "(null)"}:
        return None
    try:
        return datetime.fromisoformat(str(text)).astimezone()
    except ValueError:
        return None
