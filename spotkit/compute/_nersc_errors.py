"""The errors of the NERSC target: a failed Superfacility API operation, a machine that
is down. Both are :class:`~spotkit.errors.SpotkitError` subclasses that carry the facts."""

from __future__ import annotations

from ..errors import SchedulerError, SubmitError

__all__ = ["MachineUnavailableError", "NERSCError"]


class NERSCError(SchedulerError):
    """A Superfacility API operation failed; the message says which and what to do.

    Attributes
    ----------
    machine : str
    operation : str
        What spotkit was doing (``"submit"``, ``"job status"``, ``"cancel"``, ...).
    status_code : int or None
        The last HTTP status, when the API answered.
    """

    def __init__(self, message: str, *, machine: str, operation: str,
                 status_code: int | None = None, detail: str = ""):
        self.machine = machine
        self.operation = operation
        self.status_code = status_code
        super().__init__(message, target=f"nersc:{machine}", command=operation,
                         detail=detail)


class MachineUnavailableError(SubmitError):
    """The machine's status is ``unavailable`` (maintenance, outage): nothing was submitted.

    Attributes
    ----------
    machine : str
    """

    def __init__(self, machine: str, notes: str, *, run_id: str | None = None):
        self.machine = machine
        super().__init__(
            target=f"nersc:{machine}", run_id=run_id,
            detail=f"NERSC {machine} is unavailable ({notes}); nothing was staged. Submit "
                   "again when it is back (https://www.nersc.gov/live-status/motd/), or use "
                   "another target",
        )
