"""Scale-out inside one dataset: a dask cluster on a compute target."""

from __future__ import annotations

import logging
from typing import Any

from spotkit.compute._base import Target, format_walltime, parse_walltime

logger = logging.getLogger(__name__)

__all__ = ["dask_cluster"]

_HPC_EXTRA = 'pip install "spotkit[hpc]"'
_FREE_PORT = ":0"  # the dashboard on a free port (see cluster.dashboard_link)


def dask_cluster(target: Target | None = None, **kwargs: Any):
    """A dask cluster whose workers run on ``target``.

    - ``None`` or :class:`~spotkit.compute.Local`: ``distributed.LocalCluster`` on this
      machine (``n_workers`` defaults to ``Local.max_workers``, one thread each).
    - :class:`~spotkit.compute.Slurm`: ``dask_jobqueue.SLURMCluster``, each worker a Slurm
      job with the target's partition, account, QOS, constraint, time and extra ``sbatch``
      options. dask-jobqueue runs ``sbatch`` with this process's environment (the
      target's ``env`` does not reach it). It starts with no workers: call
      ``cluster.scale(jobs=n)`` (or ``adapt``).

    Connect with ``distributed.Client(cluster)``; close the cluster when done (it is a
    context manager). The dashboard listens on a free port (``cluster.dashboard_link``).

    Parameters
    ----------
    target : Target, optional
        Where the workers run.
    **kwargs
        Passed to the cluster class and override the defaults taken from the target, e.g.
        ``cores=``, ``memory=``, ``processes=``, ``walltime=``, ``job_extra_directives=``,
        ``scheduler_options={"host": "127.0.0.1"}`` (a scheduler that listens only
        locally, for a cluster on this very machine) for Slurm; ``n_workers=``,
        ``threads_per_worker=`` for local.

    Returns
    -------
    distributed.LocalCluster or dask_jobqueue.SLURMCluster

    Raises
    ------
    ImportError
        ``distributed`` / ``dask-jobqueue`` are missing: ``pip install "spotkit[hpc]"``.
    TypeError
        For a target without a dask cluster (say, NERSC through its API).

    Examples
    --------
    On this machine (threads in this process here, to start fast):

    >>> from distributed import Client
    >>> from spotkit.compute import Local, Slurm, dask_cluster
    >>> with dask_cluster(Local(max_workers=1), processes=False) as cluster:
    ...     with Client(cluster) as client:
    ...         client.submit(sum, [1, 2, 3]).result()
    6

    On Slurm, each worker is a batch job with the target's settings; the job script is
    made without a cluster:

    >>> with dask_cluster(Slurm(partition="debug", time="30"), cores=4, memory="16GB",
    ...                   scheduler_options={"host": "127.0.0.1"}) as cluster:
    ...     script = cluster.job_script()
    >>> "#SBATCH -p debug" in script, "#SBATCH -t 00:30:00" in script
    (True, True)

    Starting the workers needs a running Slurm (``sbatch``), so it is not run here:

    >>> with dask_cluster(Slurm(partition="debug", time="30"), cores=4,
    ...                   memory="16GB") as cluster:                        # doctest: +SKIP
    ...     cluster.scale(jobs=2)
    ...     client = Client(cluster)
    ...     pipe.run(ds, "volume.h5", client=client)
    """
    from spotkit.compute._local import Local
    from spotkit.compute._slurm import Slurm

    if target is None or isinstance(target, Local):
        try:
            from distributed import LocalCluster
        except ImportError as exc:
            raise ImportError(f"dask_cluster needs dask.distributed: {_HPC_EXTRA}") from exc
        # None would mean distributed's default, port 8787, taken on a shared machine
        options: dict[str, Any] = {"threads_per_worker": 1, "dashboard_address": _FREE_PORT}
        options["n_workers"] = target.max_workers if target is not None else None
        if options["n_workers"] is None:
            del options["n_workers"]
        options.update(kwargs)
        logger.info("dask LocalCluster: %s", options)
        return LocalCluster(**options)
    if isinstance(target, Slurm):
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError as exc:
            raise ImportError(f"dask_cluster on Slurm needs dask-jobqueue: {_HPC_EXTRA}"
                              ) from exc
        directives = [o for o in target.sbatch_options() if not o.startswith("--partition=")
                      and not o.startswith("--account=")]
        options = {
            "cores": 1,
            "memory": "2GB",
            "processes": 1,
            "queue": target.partition,
            "account": target.account,
            "walltime": format_walltime(parse_walltime(target.time)) if target.time
            else "01:00:00",
            "job_extra_directives": directives,
            "scheduler_options": {"dashboard_address": _FREE_PORT},
        }
        for key, value in kwargs.items():
            if key == "scheduler_options":
                options["scheduler_options"] = {**options["scheduler_options"], **value}
            elif key == "job_extra_directives":
                options[key] = [*directives, *value]
            else:
                options[key] = value
        if target.env:
            logger.warning("dask-jobqueue runs sbatch with this process's environment, not "
                           "with Slurm(env=%s); export those variables before starting",
                           sorted(target.env))
        options = {k: v for k, v in options.items() if v is not None}
        logger.info("dask SLURMCluster: %s", options)
        return SLURMCluster(**options)
    raise TypeError(f"no dask cluster for a {type(target).__name__} target; use Local or "
                    "Slurm (at NERSC, run dask_cluster(Slurm(...)) on a login node)")
