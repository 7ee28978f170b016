"""The contract every compute target meets: the target API and its wall-time limits.

A *target* (``Local``, ``Slurm``, ``NERSC``) runs batch scripts and answers questions about
the jobs it started. :class:`Job` is the same object whatever the target: it asks its
target for the status of its id (targets answer for many ids in one query), and never
calls a job finished well unless the scheduler said so. The job states and status records
are in :mod:`spotkit.compute._states`, the batched status queries in
:mod:`spotkit.compute._poller`.
"""

from __future__ import annotations

import re
import threading
import typing
from datetime import timedelta
from pathlib import Path

from spotkit.compute._poller import Poller
from spotkit.compute._states import JobLogs, JobState, JobStatus

__all__ = ["JobLogs", "JobState", "JobStatus", "Target", "format_walltime", "parse_walltime"]


class Target:
    """Where jobs run. Subclasses implement the four methods below.

    Attributes
    ----------
    name : str
        Short, stable name recorded in the catalog (``"local"``, ``"slurm"``,
        ``"nersc:perlmutter"``).
    """

    name: str = "target"
    #: Seconds between two status queries to the scheduler for this target (all its jobs
    #: are polled together, see :class:`spotkit.compute.Poller`).
    min_poll: float = 1.0

    @property
    def poller(self):
        """The :class:`~spotkit.compute.Poller` that batches and rate-limits this target's
        status queries (one per target object, made on first use)."""
        poller = self.__dict__.get("_poller")
        if poller is None:
            with _POLLER_LOCK:
                poller = self.__dict__.setdefault("_poller", Poller(self))
        return poller

    def script_header(self, *, job_name: str, workdir: Path, time: str | None = None
                      ) -> list[str]:
        """Directive lines for the top of a batch script (``#SBATCH ...``), after ``#!``.

        :func:`spotkit.submit` calls it while rendering the script. The default has none.
        Values in the lines must be safe to put there (no newline); the caller checks.

        Parameters
        ----------
        job_name : str
            Short name (letters, digits, ``._-``).
        workdir : pathlib.Path
            The run's directory: the job's working directory and where its logs go.
        time : str, optional
            Wall-time limit (``"30"`` minutes, ``"1:30:00"``); ``None``: the target's default.

        Returns
        -------
        list of str
        """
        return []

    def submit_script(self, script: Path, *, job_name: str, workdir: Path) -> str:
        """Submit the batch script at ``script`` (already written); return the job id.

        Parameters are never interpolated into a shell command: ``script`` is a file, and
        its arguments live in a JSON file beside it.
        """
        raise NotImplementedError

    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """Status of several jobs in as few scheduler queries as possible.

        Ids the scheduler does not (yet) know map to ``JobState.UNKNOWN``, not to a failure.
        """
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        """Ask the scheduler to cancel the job (no error when it already finished)."""
        raise NotImplementedError

    def logs(self, job_id: str) -> JobLogs:
        """The job's stdout and stderr."""
        raise NotImplementedError

    def adopt(self, job_id: str, *, workdir: Path | None = None) -> None:
        """Take on a job this target object did not submit (another process did), so that
        :meth:`logs` can find its files. The default does nothing.

        Parameters
        ----------
        job_id : str
        workdir : pathlib.Path, optional
            The run's directory, where its logs are.
        """

    def describe(self) -> dict:
        """The target's settings for the catalog and reprs: never a secret."""
        return {"name": self.name}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items()
                             if k != "name" and v not in (None, [], (), {}))
        return f"{type(self).__name__}({settings})"


_POLLER_LOCK = threading.Lock()

_WALLTIME = re.compile(
    r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$"
)


@typing.overload
def parse_walltime(value: None) -> None: ...
@typing.overload
def parse_walltime(value: str | float | timedelta) -> float: ...
def parse_walltime(value) -> float | None:
    """Seconds in a wall-time limit written as Slurm writes it.

    Parameters
    ----------
    value : str, int, float, datetime.timedelta or None
        ``"30"`` (minutes), ``"30:00"`` (minutes:seconds), ``"1:30:00"``,
        ``"2-12"`` (days-hours), ``"2-12:30"``, ``"2-12:30:00"``; a number is minutes.

    Returns
    -------
    float or None
        ``None`` when ``value`` is ``None`` or empty (no limit).

    Raises
    ------
    ValueError
        For any other text, naming the accepted forms.

    Examples
    --------
    >>> parse_walltime("1:30:00")
    5400.0
    >>> parse_walltime("0:10")
    10.0
    """
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) * 60
    else:
        m = _WALLTIME.match(str(value).strip())
        if not m:
            raise ValueError(
                f"time limit {value!r} is not understood; write minutes ('30'), 'MM:SS', "
                "'HH:MM:SS', 'D-HH', 'D-HH:MM' or 'D-HH:MM:SS'"
            )
        days = int(m["days"] or 0)
        nums = [int(x) for x in (m["a"], m["b"], m["c"]) if x is not None]
        if m["days"] is not None:  # D-HH[:MM[:SS]]
            h, mi, se = [*nums, 0, 0][:3]
        elif len(nums) == 1:  # minutes
            h, mi, se = 0, nums[0], 0
        elif len(nums) == 2:  # minutes:seconds
            h, mi, se = 0, nums[0], nums[1]
        else:
            h, mi, se = nums
        seconds = float(((days * 24 + h) * 60 + mi) * 60 + se)
    if seconds <= 0:
        raise ValueError(f"time limit {value!r} must be positive")
    return seconds


def format_walltime(seconds: float) -> str:
    """Write seconds as Slurm's ``[D-]HH:MM:SS`` (rounded up to whole seconds).

    Examples
    --------
    >>> format_walltime(5400)
    '01:30:00'
    """
    total = int(-(-seconds // 1))
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days}-" if days else "") + f"{h:02d}:{m:02d}:{s:02d}"
