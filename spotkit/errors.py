"""The spotkit exception hierarchy.

Every error spotkit raises on purpose derives from :class:`SpotkitError`. Each subclass
carries the facts it is about (the file, the field, the dataset, the cell) as attributes,
and its message says what was wrong and what to do about it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CatalogError",
    "ComputeError",
    "CredentialsError",
    "DatasetNotFoundError",
    "FlowError",
    "GeometryError",
    "InputFileError",
    "JobFailedError",
    "JobLostError",
    "JobTimeoutError",
    "MachineUnavailableError",
    "MemoryBudgetError",
    "NERSCError",
    "NotebookExecutionError",
    "NotebookKindError",
    "NotebookParameterError",
    "NotebookParameterValueError",
    "ParameterProblem",
    "PipelineValidationError",
    "RulesError",
    "RunnerNotRegisteredError",
    "SchedulerError",
    "SpotkitError",
    "SubmitError",
    "TransferError",
    "TransientSchedulerError",
]


class SpotkitError(Exception):
    """Root of every error that spotkit raises on purpose."""


class InputFileError(SpotkitError, ValueError):
    """A raw or derived file cannot be used: not readable, truncated, or missing a field.

    Parameters
    ----------
    path : path-like
        The file at fault.
    problem : str
        What is wrong with it (one sentence).
    field : str, optional
        The HDF5 path or metadata field at fault, when there is one.
    hint : str, optional
        What the user can do about it.
    """

    def __init__(self, path, problem: str, *, field: str | None = None, hint: str | None = None):
        self.path = Path(path)
        self.field = field
        self.problem = problem
        self.hint = hint
        where = f"{self.path}" + (f" (field {field!r})" if field else "")
        msg = f"{where}: {problem}"
        if hint:
            msg += f" {hint}"
        super().__init__(msg)


class CatalogError(SpotkitError):
    """The catalog database cannot be opened, read or written."""


class DatasetNotFoundError(CatalogError, LookupError):
    """No dataset with the given id is in the catalog."""

    def __init__(self, dataset_id: str, catalog: str | None = None):
        self.dataset_id = dataset_id
        self.catalog = catalog
        where = f" in catalog {catalog}" if catalog else ""
        super().__init__(
            f"no dataset with id {dataset_id!r}{where}; "
            "list the ids with `spotkit catalog search` or `open_catalog().search()`."
        )

    def __str__(self) -> str:  # LookupError would otherwise quote the message
        return self.args[0]


class NotebookParameterError(SpotkitError, ValueError):
    """Parameters passed to a notebook run that the notebook does not declare, or bad values."""

    def __init__(self, notebook, unknown, allowed):
        self.notebook = Path(notebook)
        self.unknown = sorted(unknown)
        self.allowed = sorted(allowed)
        super().__init__(
            f"notebook {self.notebook} does not declare parameter(s) "
            f"{', '.join(map(repr, self.unknown))} in its 'parameters' cell; "
            f"it declares {', '.join(map(repr, self.allowed)) or 'none'}. "
            "Fix the name, or add the parameter to the notebook's parameters cell."
        )


class NotebookExecutionError(SpotkitError):
    """A cell of a notebook run raised; the partial notebook was kept and the run recorded.

    Attributes
    ----------
    run_id : str
        The catalog run that recorded the failure.
    cell_index : int or None
        Index (0-based) of the failing cell in the input notebook, the file a person edits.
    ename, evalue : str
        Exception name and message raised by the cell.
    output_notebook : pathlib.Path
        The executed (partial) notebook, kept for inspection.
    """

    def __init__(self, *, notebook, run_id, dataset_id, cell_index, ename, evalue, output_notebook):
        self.notebook = Path(notebook)
        self.run_id = run_id
        self.dataset_id = dataset_id
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.output_notebook = Path(output_notebook)
        cell = f"cell {cell_index}" if cell_index is not None else "a cell"
        super().__init__(
            f"notebook {self.notebook.name} failed in {cell} for dataset {dataset_id}: "
            f"{ename}: {evalue}. The partial notebook is at {self.output_notebook}; "
            f"run {run_id} records the failure (`spotkit catalog show {dataset_id}`)."
        )


class PipelineValidationError(SpotkitError, ValueError):
    """A pipeline description has problems; all of them are in :attr:`problems`.

    Attributes
    ----------
    problems : list of Problem
        Every problem found, each naming the step and the field at fault.
    """

    def __init__(self, problems, source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s){where}:\n{lines}")


class MemoryBudgetError(SpotkitError, ValueError):
    """The memory budget is too small to process even one slice."""

    def __init__(self, budget: int, needed: int):
        self.budget = budget
        self.needed = needed
        super().__init__(
            f"max_memory={budget / 2**20:.0f} MiB is too small: one slice needs about "
            f"{needed / 2**20:.0f} MiB; raise max_memory, bin the data, or use fewer workers"
        )


# -- compute targets and jobs ------------------------------------------------------------


class ComputeError(SpotkitError):
    """A compute target or one of its jobs did not do what was asked."""


class SchedulerError(ComputeError):
    """A scheduler command (``squeue``, ``sacct``...) or API call failed.

    Attributes
    ----------
    target : str or None
        The target's name (``"slurm"``, ``"nersc:perlmutter"``).
    command : str or None
        What was run or called, for the message (never with a secret in it).
    returncode : int or None
        Exit status of the command, when there is one.
    detail : str
        The scheduler's own words (its stderr, the API's message).
    """

    transient = False

    def __init__(self, message: str, *, target: str | None = None, command: str | None = None,
                 returncode: int | None = None, detail: str = ""):
        self.target = target
        self.command = command
        self.returncode = returncode
        self.detail = detail
        super().__init__(message)


class TransientSchedulerError(SchedulerError):
    """A scheduler error that may go away if tried again (timeout, controller busy, HTTP 503).

    :class:`spotkit.compute.Job` retries these with exponential backoff, then raises a
    :class:`SchedulerError` that says how often and for how long it tried.
    """

    transient = True


class SubmitError(ComputeError):
    """The scheduler refused a job: nothing was submitted.

    Attributes
    ----------
    target : str
        The target's name.
    option : str or None
        The option at fault (``"partition"``, ``"qos"``, ``"account"``, ``"constraint"``,
        ``"time"``, ``"nodes"``), when the scheduler's message says which.
    value : str or None
        The value given for that option.
    detail : str
        The scheduler's own message.
    run_id : str or None
        The catalog run that records the attempt (state ``"failed"``), once there is one.
    """

    def __init__(self, *, target: str, detail: str, option: str | None = None,
                 value: str | None = None, run_id: str | None = None):
        self.target = target
        self.option = option
        self.value = value
        self.detail = detail.strip()
        self.run_id = run_id
        what = f"{option}={value!r}" if option and value is not None else option
        if what:
            msg = (f"{target} refused the job because of {what}: {self.detail}. Check the "
                   f"{option} name (e.g. `sinfo -s`, `sacctmgr show qos`, `sacctmgr show assoc "
                   f"user=$USER`); nothing was submitted.")
        else:
            msg = f"{target} refused the job: {self.detail}. Nothing was submitted."
        super().__init__(msg)


class JobFailedError(ComputeError):
    """A job finished, and not well (checked with ``Job.wait(check=True)``).

    Attributes
    ----------
    job_id : str
    target : str
    state : JobState
        ``FAILED``, ``TIMEOUT``, ``CANCELLED``, ``OUT_OF_MEMORY``, ``NODE_FAIL``... or
        ``COMPLETED`` with a non-zero exit code.
    exit_code : int or None
    reason : str
        The scheduler's reason, if it gave one.
    run_id : str or None
        The catalog run the job executed.
    logs : dict
        ``{"stdout": path, "stderr": path}`` where the job's output is.
    run_error : str
        What the run recorded (the failing cell), if anything.
    """

    def __init__(self, *, job_id: str, target: str, state, exit_code: int | None,
                 reason: str = "", run_id: str | None = None, logs: dict | None = None,
                 run_error: str = ""):
        self.job_id = job_id
        self.target = target
        self.state = state
        self.exit_code = exit_code
        self.reason = reason
        self.run_id = run_id
        self.logs = dict(logs or {})
        self.run_error = run_error
        state_name = getattr(state, "value", state)
        parts = [f"{target} job {job_id}" + (f" (run {run_id})" if run_id else "")
                 + f" did not succeed: state {state_name}, exit code "
                 + ("unknown" if exit_code is None else str(exit_code))]
        if reason and reason not in ("None", "NonZeroExitCode"):
            parts.append(f"reason {reason}")
        if run_error:
            parts.append(f"the run recorded: {run_error}")
        where = ", ".join(f"{k} {v}" for k, v in self.logs.items() if v)
        parts.append(f"logs: {where}" if where else "no log files are known for it")
        super().__init__("; ".join(parts) + ".")


class JobTimeoutError(ComputeError, TimeoutError):
    """``Job.wait(timeout=...)`` ran out before the job finished; the job goes on.

    Attributes
    ----------
    job_id : str
    target : str
    timeout : float
    state : JobState
        The last state seen.
    """

    def __init__(self, *, job_id: str, target: str, timeout: float, state):
        self.job_id = job_id
        self.target = target
        self.timeout = timeout
        self.state = state
        super().__init__(
            f"{target} job {job_id} is still {getattr(state, 'value', state)} after waiting "
            f"{timeout:g} s; it goes on running. Wait again, or cancel it with job.cancel()."
        )


class JobLostError(ComputeError):
    """The scheduler has not known a job for longer than the grace period.

    Attributes
    ----------
    job_id : str
    target : str
    seconds : float
        How long the scheduler has not known it.
    run_id : str or None
    """

    def __init__(self, *, job_id: str, target: str, seconds: float, run_id: str | None = None):
        self.job_id = job_id
        self.target = target
        self.seconds = seconds
        self.run_id = run_id
        run = f" (run {run_id})" if run_id else ""
        super().__init__(
            f"{target} job {job_id}{run} is lost: the scheduler has not known it for "
            f"{seconds:.0f} s (neither its queue nor its accounting). It may have been purged "
            "or submitted to another cluster; check the scheduler (squeue/sacct) and the "
            "run's directory for its logs."
        )


# -- data movement -----------------------------------------------------------------------


class TransferError(SpotkitError):
    """Moving a dataset's files to a destination failed; no partial file has its final name.

    Attributes
    ----------
    path : str or None
        The file (relative to the dataset root) at fault, when there is one.
    dest : str or None
        The destination (a directory, or ``user@host:/dir``).
    reason : str
        What went wrong, in a few words (``"disk full"``, ``"checksum mismatch"``...).
    transient : bool
        True when trying again later may succeed (destination full, read-only or unmounted,
        network down); the flow retries those with backoff, and parks the others.
    errno : int or None
        The operating system's error number, when the fault came from a system call.
    """

    def __init__(self, message: str, *, path: str | None = None, dest: str | None = None,
                 reason: str = "", transient: bool = False, errno: int | None = None):
        self.path = path
        self.dest = dest
        self.reason = reason
        self.transient = transient
        self.errno = errno
        super().__init__(message)


class FlowError(SpotkitError, ValueError):
    """An operator's request to the flow cannot be done (unknown item, wrong state...)."""


# -- facility rules (spotkit.flows) -------------------------------------------------------


class RulesError(SpotkitError, ValueError):
    """A facility rules file has problems; all of them are in :attr:`problems`.

    Attributes
    ----------
    problems : list
        Every problem found (``spotkit.flows.RuleProblem``), each naming its line, rule,
        action and field, and what is allowed.
    source : str or None
        The rules file, when the rules were read from one.
    """

    def __init__(self, problems, source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the rules{where}:\n{lines}")


class GeometryError(SpotkitError, ValueError):
    """The detector geometry is missing, inconsistent, or made for another detector.

    Attributes
    ----------
    field : str or None
        The geometry field at fault (``"distance_m"``, ``"beam_center"``, ``"shape"``...).
    """

    def __init__(self, message: str, *, field: str | None = None):
        self.field = field
        super().__init__(message)


# -- notebook runs refused up front (spotkit.runs) ---------------------------------------



class ParameterProblem(tuple):
    """One bad parameter: ``(name, message)``."""

    __slots__ = ()

    def __new__(cls, name: str, message: str):
        return super().__new__(cls, (name, message))

    @property
    def name(self) -> str:
        return self[0]

    @property
    def message(self) -> str:
        return self[1]

    def __str__(self) -> str:
        return f"{self.name!r}: {self.message}"


class NotebookParameterValueError(NotebookParameterError):
    """Parameters a notebook does not declare, or values it does not accept; all at once.

    Attributes
    ----------
    notebook : pathlib.Path
    problems : list of ParameterProblem
        Every bad parameter with what is wrong with it.
    unknown : list of str
        The names the notebook does not declare.
    allowed : list of str
        The names it declares that a caller may set.
    """

    def __init__(self, notebook, problems, declared, reserved=()):
        self.notebook = Path(notebook)
        self.problems = list(problems)
        self.unknown = sorted(p.name for p in self.problems if "not declared" in p.message)
        self.allowed = sorted(n for n in declared if n not in reserved)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        ValueError.__init__(
            self,
            f"notebook {self.notebook.name} refuses {len(self.problems)} parameter(s); "
            f"nothing was run or recorded:\n{lines}\n"
            f"Its parameters: {', '.join(map(repr, self.allowed)) or 'none'} "
            "(its parameters cell and first markdown cell say what each one accepts).",
        )


class NotebookKindError(SpotkitError, ValueError):
    """The dataset is of a kind the notebook does not accept (``metadata.spotkit.kinds``).

    Attributes
    ----------
    notebook : pathlib.Path
    dataset_id, kind : str
        The dataset and its kind.
    accepted : list of str
        The kinds the notebook accepts.
    alternatives : list of str
        Shipped notebooks that accept this kind.
    """

    def __init__(self, *, notebook, dataset_id: str, kind: str, accepted, alternatives):
        self.notebook = Path(notebook)
        self.dataset_id = dataset_id
        self.kind = kind
        self.accepted = list(accepted)
        self.alternatives = list(alternatives)
        other = (f"Notebooks that accept {kind}: {', '.join(self.alternatives)}."
                 if self.alternatives else f"No shipped notebook accepts {kind}.")
        super().__init__(
            f"notebook {self.notebook.name} accepts datasets of kind "
            f"{', '.join(self.accepted)}, but dataset {dataset_id} is {kind}; nothing was run "
            f"or recorded. {other}"
        )


class RunnerNotRegisteredError(SpotkitError, RuntimeError):
    """No runner is registered under a name a science entry point needs.

    Attributes
    ----------
    name : str
        The runner looked up (e.g. ``"tomo.pipeline"``).
    """

    def __init__(self, name: str, *, what: str, provider: str):
        self.name = name
        super().__init__(
            f"{what} needs the runner {name!r}, which reads and writes the files, and none is "
            f"registered: import {provider} (``import spotkit`` does it), or call the runner "
            "directly")


class CredentialsError(ComputeError):
    """A NERSC client key cannot be used; the message says why and what to do.

    Attributes
    ----------
    reason : str
        One of ``"missing"``, ``"ambiguous"``, ``"permissions"``, ``"format"``,
        ``"expired"``, ``"policy"``, ``"rejected"``.
    path : pathlib.Path or None
        The key file at fault, when there is one.
    """

    def __init__(self, message: str, *, reason: str, path: os.PathLike | None = None):
        self.reason = reason
        self.path = Path(path) if path is not None else None
        super().__init__(message)


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
