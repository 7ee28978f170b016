"""Compute targets and jobs: run any pipeline notebook locally, on Slurm, or at NERSC.

One small interface, several targets. :func:`submit` renders a batch script that runs the
same papermill run as :func:`spotkit.run_notebook`, submits it, and returns a :class:`Job`
whose state comes from the scheduler, checked: only ``COMPLETED`` with exit code 0 is
success.

- :class:`Local` — a process pool on this machine (the default);
- :class:`Slurm` — ``sbatch``/``squeue``/``sacct``/``scancel`` from a login node;
- ``NERSC`` — Perlmutter through the Superfacility API (``sfapi-client``);
- :func:`dask_cluster` — a dask cluster on a target, for scale-out inside one dataset.

Examples
--------
Any batch script, run by the default target in a temporary folder; the job's state comes
from the target, and a failure is never reported as success:

>>> import pathlib, tempfile
>>> from spotkit.compute import Job, Local
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> script = folder / "fails.sh"
>>> _ = script.write_text("echo working; exit 3")
>>> target = Local(min_poll=0.05)
>>> job = Job(target.submit_script(script, job_name="fails", workdir=folder), target)
>>> status = job.wait(timeout=60)
>>> status.state, status.exit_code, status.succeeded
(<JobState.FAILED: 'FAILED'>, 3, False)
>>> job.logs().stdout
'working\\n'

A pipeline notebook on a Slurm cluster (this needs ``sbatch`` and a running Slurm, so it
is not run here; :func:`submit` shows the same on ``Local``):

>>> import spotkit
>>> from spotkit.compute import Slurm
>>> job = spotkit.submit("tomo_quicklook", "ds-01abc", target=Slurm(partition="debug"),
...                      parameters={"n_slices": 3})              # doctest: +SKIP
>>> job.wait(timeout=3600, check=True)                             # doctest: +SKIP
>>> job.run.outputs                                                # doctest: +SKIP
"""

from spotkit.compute._base import (
    JobLogs,
    JobState,
    JobStatus,
    Target,
    format_walltime,
    parse_walltime,
)
from spotkit.compute._dask import dask_cluster
from spotkit.compute._job import Job, Poller, poll_jobs, retry_transient
from spotkit.compute._local import Local
from spotkit.compute._slurm import Slurm
from spotkit.compute._submit import Environment, render_script, submit
from spotkit.compute._targets import (
    make_target,
    register_target,
    target_choices,
    target_class,
    target_kinds,
    target_settings,
)
from spotkit.compute._usage import JobUsage, job_usage
from spotkit.errors import CredentialsError, MachineUnavailableError, NERSCError

__all__ = [
    "NERSC",
    "CredentialsError",
    "Environment",
    "Job",
    "JobLogs",
    "JobState",
    "JobStatus",
    "JobUsage",
    "Local",
    "MachineUnavailableError",
    "NERSCError",
    "Poller",
    "Slurm",
    "Target",
    "dask_cluster",
    "format_walltime",
    "job_usage",
    "make_target",
    "parse_walltime",
    "poll_jobs",
    "register_target",
    "render_script",
    "retry_transient",
    "submit",
    "target_choices",
    "target_class",
    "target_kinds",
    "target_settings",
]


def __getattr__(name: str):
    # NERSC pulls in sfapi-client (and authlib): imported only when asked for
    if name == "NERSC":
        from spotkit.compute._nersc import NERSC

        return NERSC
    raise AttributeError(f"module 'spotkit.compute' has no attribute {name!r}")
