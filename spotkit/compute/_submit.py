"""``spotkit.submit``: run a pipeline notebook for a dataset as a batch job on a target.

The batch script is small and the same for every target: directives from the target
(``#SBATCH`` lines), an environment block, and one command::

    "$PYTHON" -m spotkit.compute._worker /path/to/run/job.json

Everything about the run (notebook, dataset, catalog, parameters, run id) is in
``job.json``; nothing the user typed is ever put in the script, so no value can be
interpreted by the shell.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotkit.compute._base import Target
from spotkit.compute._job import Job, retry_transient, rules_target
from spotkit.errors import SpotkitError

logger = logging.getLogger(__name__)

__all__ = ["JOB_SPEC", "SCRIPT", "Environment", "render_script", "submit"]

#: File names in the run's directory.
JOB_SPEC = "job.json"
SCRIPT = "job.sh"

_JOB_NAME = re.compile(r"[^A-Za-z0-9_.+-]+")


@dataclass(frozen=True)
class Environment:
    """How a batch job gets the Python that runs the notebook.

    At most one of ``conda``, ``venv`` and ``python`` says which Python; ``modules`` are
    loaded first; ``container`` runs the worker inside an image (``podman-hpc`` or
    ``shifter``, as at NERSC), with the run's directory and the catalog's mounted.
    The default is this very interpreter (``sys.executable``), which suits ``Local`` and a
    cluster that shares the file system with this machine.

    Parameters
    ----------
    conda : str, optional
        Conda environment name or prefix (``conda activate``).
    modules : list of str
        Environment modules to load (``module load``), e.g. ``["python"]``.
    venv : path-like, optional
        A virtual environment directory (``source <venv>/bin/activate``).
    python : str, optional
        The Python command to run (default: ``python`` when an environment is activated,
        else ``sys.executable``).
    container : str, optional
        Image name, e.g. ``"registry.nersc.gov/als/spotkit:1.0"``.
    container_runtime : {"podman-hpc", "shifter"}
        How to run the image.
    setup : list of str
        Extra shell lines run before the worker (written by you, taken verbatim).
    variables : dict
        Environment variables to export (values are quoted).

    Examples
    --------
    >>> Environment(conda="spotkit").lines()
    ['eval "$(conda shell.bash hook)"', 'conda activate spotkit', 'PYTHON=python']
    """

    conda: str | None = None
    modules: tuple[str, ...] = ()
    venv: str | os.PathLike | None = None
    python: str | None = None
    container: str | None = None
    container_runtime: str = "podman-hpc"
    setup: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.modules, str) or isinstance(self.setup, str):
            raise TypeError("modules and setup are lists of strings, one item each")
        object.__setattr__(self, "modules", tuple(self.modules))
        object.__setattr__(self, "setup", tuple(self.setup))
        if sum(x is not None for x in (self.conda, self.venv)) > 1:
            raise ValueError("give at most one of conda= and venv=")
        if self.container_runtime not in ("podman-hpc", "shifter"):
            raise ValueError(f"container_runtime {self.container_runtime!r}: choose "
                             "'podman-hpc' or 'shifter'")
        for name in self.variables:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"environment variable name {name!r} is not valid")
        for value in (self.conda, self.venv, self.python, self.container, *self.modules,
                      *self.variables.values()):
            if value is not None and any(c in str(value) for c in "\n\r\0"):
                raise ValueError(f"environment setting {value!r} contains a line break")

    def python_command(self) -> str:
        """The Python the worker runs with."""
        if self.python:
            return self.python
        if self.conda or self.venv or self.container:
            return "python"
        return sys.executable

    def lines(self, *, mounts: tuple[str | os.PathLike, ...] = ()) -> list[str]:
        """Shell lines that set up the environment and define ``PYTHON`` (and, with a
        container, ``CONTAINER``: the command prefix)."""
        q = shlex.quote
        out = [f"module load {q(m)}" for m in self.modules]
        if self.conda:
            out += ['eval "$(conda shell.bash hook)"', f"conda activate {q(str(self.conda))}"]
        if self.venv:
            out.append(f". {q(str(Path(self.venv) / 'bin' / 'activate'))}")
        out += [f"export {k}={q(str(v))}" for k, v in self.variables.items()]
        out += list(self.setup)
        if self.container:
            vols = list(dict.fromkeys(str(m) for m in mounts))
            if self.container_runtime == "shifter":
                argv = ["shifter", f"--image={self.container}"]
            else:
                argv = ["podman-hpc", "run", "--rm"]
                for vol in vols:
                    argv += ["--volume", f"{vol}:{vol}"]
                argv += ["--workdir", "$PWD", self.container]
            parts = [q(a) if a != "$PWD" else '"$PWD"' for a in argv]
            out.append(f"CONTAINER=({' '.join(parts)})")
        out.append(f"PYTHON={q(self.python_command())}")
        return out


def render_script(*, target: Target, job_name: str, workdir: Path, spec: Path,
                  environment: Environment, time: str | None = None,
                  mounts: tuple = ()) -> str:
    """The batch script text for one run (see the module docstring).

    Parameters
    ----------
    target : Target
        Gives the directive lines (:meth:`Target.script_header`).
    job_name : str
        Safe job name.
    workdir : pathlib.Path
        The run's directory.
    spec : pathlib.Path
        The ``job.json`` the worker reads.
    environment : Environment
    time : str, optional
        Wall-time limit.
    mounts : tuple of path-like
        Directories a container needs (the run's, the catalog's, the notebook's, the data).

    Returns
    -------
    str
    """
    q = shlex.quote
    header = target.script_header(job_name=job_name, workdir=workdir, time=time)
    for line in header:
        if "\n" in line or "\r" in line:
            raise ValueError(f"directive {line!r} from {target.name} contains a line break")
    launch = '"${CONTAINER[@]}" ' if environment.container else ""
    body = [
        "#!/bin/bash",
        *header,
        f"# spotkit batch job {job_name}: runs one notebook for one dataset.",
        "# Everything about the run is in the JSON file named on the last line.",
        "set -eo pipefail",
        f"cd {q(str(workdir))}",
        *environment.lines(mounts=mounts),
        'echo "spotkit job ${SLURM_JOB_ID:-${SPOTKIT_JOB_ID:-}} on $(hostname) at '
        '$(date -Is)" >&2',
        f'{launch}"$PYTHON" -m spotkit.compute._worker {q(str(spec))}',
    ]
    return "\n".join(body) + "\n"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def submit(
    notebook: str | os.PathLike,
    dataset,
    *,
    target: Target | None = None,
    parameters: dict[str, Any] | None = None,
    catalog=None,
    environment: Environment | None = None,
    job_name: str | None = None,
    time: str | None = None,
    cell_timeout: float | None = None,
    unknown_grace: float | None = None,
    context: dict[str, Any] | None = None,
) -> Job:
    """Run a pipeline notebook for one dataset as a batch job on a compute target.

    The parameters are checked against the notebook first (nothing is recorded or
    submitted when one is wrong). Then a catalog run is recorded in state ``"queued"``,
    ``job.json`` and a batch script ``job.sh`` are written in the run's directory
    (``<catalog dir>/runs/<run id>``), and the script is submitted. The job runs the same
    papermill run as :func:`spotkit.run_notebook`, on the same catalog run, which it marks
    ``"running"`` and then ``"completed"`` or ``"failed"`` (with the failing cell). If the
    target refuses the job, the run is recorded as ``"failed"`` with the scheduler's
    message, and :class:`~spotkit.errors.SubmitError` is raised.

    Parameters
    ----------
    notebook : path-like or str
        A notebook file, or the name of a pipeline notebook shipped with spotkit
        (``"tomo_quicklook"``).
    dataset : str or Dataset
        The dataset to process.
    target : Target, optional
        Where to run: :class:`~spotkit.compute.Local` (default), ``Slurm(...)``,
        ``NERSC(...)``.
    parameters : dict, optional
        Notebook parameters; every name must be declared by the notebook. Values travel
        in ``job.json`` (JSON), never through a shell.
    catalog : Catalog or path-like, optional
        Default: :func:`spotkit.open_catalog`. The job opens the same file, so it must be
        reachable from where the job runs.
    environment : Environment, optional
        How the job gets its Python (conda env, modules, venv, container); default: this
        interpreter.
    job_name : str, optional
        Default: ``spotkit-<notebook>``; characters other than letters, digits and
        ``._+-`` become ``-``.
    time : str, optional
        Wall-time limit (``"30"`` minutes, ``"1:00:00"``); default: the target's.
    cell_timeout : float, optional
        Seconds one notebook cell may run (default: no limit; the job's time limit
        applies).
    unknown_grace : float, optional
        Seconds the scheduler may not know the job before it is declared lost.
    context : dict, optional
        Why it runs, recorded with the run (:attr:`spotkit.catalog.Run.context`); the flow
        records its rule here.

    Returns
    -------
    Job
        With ``run_id`` set; ``job.wait(check=True)`` waits and raises unless it succeeded.

    Raises
    ------
    FileNotFoundError, InputFileError
        No such notebook, or a file that is not one (nothing recorded).
    NotebookParameterError, ValueError
        Bad parameters (nothing recorded, nothing submitted).
    NotebookKindError
        The notebook does not accept the dataset's kind (nothing recorded).
    DatasetNotFoundError
        ``dataset`` is not in the catalog.
    SubmitError
        The target refused the job (the run records it as failed).
    SchedulerError
        The target could not be reached (the run records it as failed).

    Examples
    --------
    A small notebook (a cell tagged ``parameters``, then one that writes and declares a
    product) run as a batch job on this machine, for a simulated scan in a temporary
    catalog:

    >>> import pathlib, tempfile
    >>> import nbformat
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> import spotkit
    >>> from spotkit.sim import simulate_tomo_scan
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = simulate_tomo_scan(folder / "scan.h5", shape=(31, 2, 32), seed=1)
    >>> cat = spotkit.open_catalog(folder / "catalog.db")
    >>> ds = cat.ingest(folder / "scan.h5")
    >>> params = new_code_cell('dataset_id = ""\\nlabel = "x"',
    ...                        metadata={"tags": ["parameters"]})
    >>> body = new_code_cell('from spotkit.runs import declare_output\\n'
    ...                      'with open("label.txt", "w") as f:\\n'
    ...                      '    f.write(label)\\n'
    ...                      'declare_output("label.txt", kind="test/label")')
    >>> nbformat.write(new_notebook(cells=[params, body]), folder / "label.ipynb")
    >>> from spotkit.compute import Local
    >>> job = spotkit.submit(folder / "label.ipynb", ds, parameters={"label": "hi"},
    ...                      target=Local(min_poll=0.1))
    >>> job.wait(timeout=300, check=True).state
    <JobState.COMPLETED: 'COMPLETED'>
    >>> job.run.state, [cat[out].kind for out in job.run.outputs]
    ('completed', ['test/label'])

    The same on a Slurm cluster (needs ``sbatch`` and a running Slurm, so it is not run
    here):

    >>> from spotkit.compute import Slurm
    >>> job = spotkit.submit("tomo_quicklook", ds, parameters={"n_slices": 3},
    ...                      target=Slurm(partition="debug", time="0:20:00"))  # doctest: +SKIP
    >>> job.wait(check=True).state                                            # doctest: +SKIP
    <JobState.COMPLETED: 'COMPLETED'>
    """
    from spotkit.catalog import Catalog, open_catalog
    from spotkit.checksums import sha256_file
    from spotkit.compute._local import Local
    from spotkit.runs import (
        check_kind,
        check_parameters,
        read_notebook,
        resolve_notebook,
        software_versions,
    )

    path = resolve_notebook(notebook)
    read_notebook(path)  # a file that is not a notebook: InputFileError, nothing recorded
    target = Local() if target is None else target
    if not isinstance(target, Target):
        raise TypeError(f"target must be a compute target (Local(), Slurm(...)), not "
                        f"{type(target).__name__}")
    environment = Environment() if environment is None else environment
    parameters = dict(parameters or {})
    try:
        params_json = json.loads(json.dumps(parameters, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"parameters must be JSON-serialisable to travel to the job: {exc}"
                        ) from None
    check_parameters(path, params_json)  # the values the job will see (numpy -> Python)
    name = _JOB_NAME.sub("-", job_name or f"spotkit-{path.stem}").strip("-")[:64] or "spotkit"

    if catalog is None and getattr(dataset, "_catalog", None) is not None:
        catalog = dataset._catalog  # a Dataset object: the catalog it came from
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    ds = cat[dataset if isinstance(dataset, str) else dataset.id]
    check_kind(path, ds)
    run_id = cat.start_run(dataset_id=ds.id, notebook=str(path), notebook_sha256=sha256_file(path),
                           parameters=params_json, target=target.name, versions=software_versions(),
                           state="queued", context=context)
    try:
        workdir = (cat.home / "runs" / run_id).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        spec_path = workdir / JOB_SPEC
        spec = {
            "version": 1,
            "run_id": run_id,
            "notebook": str(path),
            "dataset_id": ds.id,
            # a SQLite file is reached through the shared file system; a PostgreSQL
            # catalog through its URL (the job registers its outcome over the network)
            "catalog": (str(Path(cat.path).resolve()) if cat.backend == "sqlite"
                        else cat.url),
            "parameters": params_json,
            "output_dir": str(workdir),
            "target": target.name,
            "cell_timeout": cell_timeout,
        }
        spec_path.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
        catalog_dir = (Path(cat.path).resolve().parent,) if cat.backend == "sqlite" else ()
        mounts = (workdir, *catalog_dir, path.parent, *{Path(f.path).parent for f in ds.files})
        script = workdir / SCRIPT
        script.write_text(render_script(target=target, job_name=name, workdir=workdir,
                                        spec=spec_path, environment=environment, time=time,
                                        mounts=mounts))
        script.chmod(0o755)
        # retried only when the target says it certainly did not take the job
        job_id = retry_transient(
            lambda: target.submit_script(script, job_name=name, workdir=workdir),
            what=f"submitting run {run_id}", target=target.name, attempts=4)
    except BaseException as exc:
        message = str(exc) or type(exc).__name__
        try:
            cat.finish_run(run_id, state="failed", error_name=f"submit: {type(exc).__name__}",
                           error_message=message)
        except SpotkitError as inner:  # keep the original error; say what else went wrong
            logger.error("could not record the failed submission of run %s: %s", run_id, inner)
        if hasattr(exc, "run_id") and getattr(exc, "run_id", None) is None:
            exc.run_id = run_id
        raise
    cat.set_job_id(run_id, job_id)
    logger.info("run %s submitted to %s as job %s", run_id, target.name, job_id)
    kwargs: dict[str, Any] = {} if unknown_grace is None else {"unknown_grace": unknown_grace}
    job = Job(job_id, target, run_id=run_id, catalog=cat, workdir=workdir, **kwargs)
    job.labels = {"dataset_id": ds.id, "beamline": ds.beamline}
    job.target_label = rules_target(context) or target.name
    job.record_event("queued", time=job.submitted, detail={"notebook": path.name},
                     flush=True)
    return job
