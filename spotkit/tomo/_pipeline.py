"""A tomography pipeline as data: steps with ids and parameters, validated, planned.

A pipeline is a list of steps. Each step names a spotkit function and its keyword
parameters. Steps of three kinds follow one another:

- *projection* steps (``normalize``, ``remove_zingers``, ``remove_stripes``, ``minus_log``,
  ``downsample`` along angles or columns) transform a block of detector rows, all angles;
- *centre* steps (``find_center``) run once, before the blocks, on a few sample rows that went
  through the preceding steps; their side output ``center`` is available to later steps as
  ``"$<step id>.center"``;
- one final *reconstruct* step turns each block's sinograms into slices.

This module is the spec: the steps, their validation (every problem at once, as data) and
the memory plan (:meth:`TomoPipeline.plan`, in :mod:`spotkit.tomo._plan`); the steps applied
to arrays are in :mod:`spotkit.tomo._pipeline_steps`. Running it on a scan on disk (reading
the rows block by block with dask, streaming the slices into an HDF5 volume with provenance)
is orchestration: :func:`spotkit.pipelines.run_tomo`, which :meth:`TomoPipeline.run`
delegates to through the runner that :mod:`spotkit.pipelines` registers.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spotkit._runners import get_runner
from spotkit.errors import PipelineValidationError
from spotkit.tomo._pipeline_steps import _REF, STEP_FUNCTIONS, StepRunner, _StepKind, tomo_function
from spotkit.tomo._plan import parse_memory, plan_blocks

__all__ = ["PipelineResult", "Problem", "TomoPipeline", "parse_memory"]


@dataclass(frozen=True)
class Problem:
    """One problem found by :meth:`TomoPipeline.validate`.

    Attributes
    ----------
    step : str or None
        Id (or index) of the step at fault; None for the pipeline as a whole.
    field : str or None
        The field or parameter at fault.
    message : str
        What is wrong and what is allowed.
    """

    step: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = " ".join(
            x
            for x in (
                f"step {self.step!r}" if self.step else "",
                f"field {self.field!r}" if self.field else "",
            )
            if x
        )
        return f"{where}: {self.message}" if where else self.message


@dataclass(frozen=True)
class PipelineResult:
    """What :meth:`TomoPipeline.run` produced.

    Attributes
    ----------
    output : pathlib.Path
        The HDF5 volume (dataset ``/recon``, attenuation in 1/cm).
    shape : tuple
        Shape of the volume (slices, y, x).
    side_outputs : dict
        Side outputs by step id, e.g. ``{"center": {"center": 1283.5}}``.
    rows_per_block, n_blocks, workers : int
        The memory plan that was used.
    planned_bytes : int
        Estimated peak memory of the plan.
    seconds : float
        Wall time.
    backend : dict
        Reconstruction backend name and version.
    """

    output: Path
    shape: tuple
    side_outputs: dict
    rows_per_block: int
    n_blocks: int
    workers: int
    planned_bytes: int
    seconds: float
    backend: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def _choices() -> dict[tuple[str, str], tuple]:
    """Allowed values of the pipeline parameters that take a name."""
    import spotkit.tomo as tomo
    from spotkit.tomo.backends import list_backends

    return {
        ("remove_stripes", "method"): tuple(tomo.STRIPE_METHODS),
        ("find_center", "method"): tuple(tomo.CENTER_METHODS),
        ("reconstruct", "algorithm"): tuple(tomo.ALGORITHMS),
        ("reconstruct", "filter"): tuple(tomo.FILTERS),
        ("reconstruct", "backend"): ("auto", *list_backends()),
    }


def _check_values(sid: str, fname: str, params: dict) -> list[Problem]:
    """Values checked before anything runs: names from fixed lists, positive sizes."""
    problems = []
    for (func, pname), allowed in _choices().items():
        if func == fname and pname in params and params[pname] not in allowed:
            problems.append(
                Problem(sid, pname, f"unknown {pname} {params[pname]!r}; choose one of "
                        f"{list(allowed)}")
            )
    if fname == "downsample":
        factors = params.get("factor", 2)
        for f in factors if isinstance(factors, list | tuple) else [factors]:
            if isinstance(f, bool) or not isinstance(f, int) or f < 1:
                problems.append(
                    Problem(sid, "factor", f"{factors!r}: binning factors are integers >= 1")
                )
                break
    if fname == "reconstruct":
        for pname in ("n", "num_iter"):
            v = params.get(pname)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                problems.append(Problem(sid, pname, f"{v!r}: must be a positive integer"))
        c = params.get("center")
        if c is not None and not isinstance(c, str) and not (
            isinstance(c, int | float) and np.isfinite(c)
        ):
            problems.append(
                Problem(sid, "center", f"{c!r}: a column number, or '$<step id>.center'")
            )
    return problems


class TomoPipeline(StepRunner):
    """A tomography pipeline: an ordered list of steps, each a function with parameters.

    Parameters
    ----------
    steps : list of dict
        Each ``{"id": str, "function": str, "params": dict}``; ``id`` defaults to the function
        name. A parameter value ``"$<id>.<output>"`` refers to an earlier step's side output.
    name : str
        A name for the pipeline.

    Examples
    --------
    >>> pipe = TomoPipeline.from_dict({"name": "standard", "steps": [
    ...     {"function": "normalize"},
    ...     {"function": "minus_log"},
    ...     {"id": "center", "function": "find_center", "params": {"method": "sinusoid"}},
    ...     {"function": "reconstruct",
    ...      "params": {"center": "$center.center", "algorithm": "fbp"}}]})
    >>> [s["id"] for s in pipe.steps]
    ['normalize', 'minus_log', 'center', 'reconstruct']
    """

    def __init__(self, steps: list[dict[str, Any]], *, name: str = "tomo"):
        self.name = name
        self.steps = [self._normalise_step(s, i) for i, s in enumerate(steps)]

    @staticmethod
    def _normalise_step(step, index: int) -> dict[str, Any]:
        if not isinstance(step, dict):
            return {"id": f"#{index}", "function": None, "params": {}, "_bad": step}
        out = {
            "id": step.get("id") or step.get("function") or f"#{index}",
            "function": step.get("function"),
            "params": copy.deepcopy(step.get("params") or {}),
        }
        extra = sorted(set(step) - {"id", "function", "params"})
        if extra:
            out["_extra"] = extra
        return out

    # ------------------------------------------------------------------ round trip
    @classmethod
    def default(
        cls,
        *,
        stripe_method: str | None = None,
        algorithm: str | None = None,
        center: float | None = None,
        center_method: str = "vo",
        binning: int = 1,
    ) -> TomoPipeline:
        """The standard chain: normalise, (bin), (stripes), minus-log, centre, reconstruct.

        Parameters
        ----------
        stripe_method : str, optional
            ``"fw"`` or ``"sorting"`` to add ring removal; None for none.
        algorithm : str, optional
            Reconstruction algorithm; default ``"gridrec"`` where the installed backends
            offer it, else ``"fbp"``.
        center : float, optional
            A fixed centre; None adds a ``find_center`` step.
        center_method : str
            Method of the ``find_center`` step.
        binning : int
            Bin ``binning x binning`` detector pixels (rows and columns) after normalising:
            ``binning``-times fewer slices of ``binning``-times fewer pixels. A found centre
            is in the binned detector's columns; a given ``center`` is in full-resolution
            columns and converted.

        Returns
        -------
        TomoPipeline

        Raises
        ------
        ValueError
            If ``binning`` is not a positive integer.
        """
        if isinstance(binning, bool) or not isinstance(binning, int | np.integer) or binning < 1:
            raise ValueError(f"binning must be a positive integer, got {binning!r}")
        binning = int(binning)
        if center is not None and binning > 1:
            center = float(center) / binning  # tomopy's convention: edges map to edges
        if algorithm is None:
            from spotkit.tomo import _recon

            algorithm = "gridrec" if "gridrec" in getattr(_recon, "ALGORITHMS", ()) else "fbp"
        steps: list[dict[str, Any]] = [{"id": "normalize", "function": "normalize"}]
        if binning > 1:
            steps.append(
                {
                    "id": "bin",
                    "function": "downsample",
                    "params": {"factor": [binning, binning], "axis": [1, 2]},
                }
            )
        if stripe_method:
            steps.append(
                {"id": "stripes", "function": "remove_stripes", "params": {"method": stripe_method}}
            )
        steps.append({"id": "minus_log", "function": "minus_log"})
        if center is None:
            steps.append(
                {"id": "center", "function": "find_center", "params": {"method": center_method}}
            )
        steps.append(
            {
                "id": "recon",
                "function": "reconstruct",
                "params": {
                    "algorithm": algorithm,
                    "center": "$center.center" if center is None else center,
                },
            }
        )
        return cls(steps, name="default")

    def to_dict(self) -> dict[str, Any]:
        """Return the pipeline as plain data (``{"name", "steps"}``)."""
        return {
            "name": self.name,
            "steps": [
                {"id": s["id"], "function": s["function"], "params": copy.deepcopy(s["params"])}
                for s in self.steps
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TomoPipeline:
        """Build a pipeline from :meth:`to_dict`'s form and validate it.

        Raises
        ------
        PipelineValidationError
            Listing every problem at once.
        """
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            raise PipelineValidationError(
                [Problem(None, "steps", "a pipeline is a mapping with a list under 'steps'")]
            )
        pipe = cls(data["steps"], name=str(data.get("name", "tomo")))
        pipe.check()
        return pipe

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """Serialise to YAML; also write it to ``path`` when given."""
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, text_or_path: str | os.PathLike) -> TomoPipeline:
        """Read a pipeline from a YAML file or string, and validate it."""
        import yaml

        source = None
        if isinstance(text_or_path, os.PathLike) or (
            isinstance(text_or_path, str)
            and "\n" not in text_or_path
            and text_or_path.endswith((".yaml", ".yml"))
        ):
            source = str(text_or_path)
            text = Path(text_or_path).read_text()
        else:
            text = str(text_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PipelineValidationError(
                [Problem(None, None, f"not valid YAML: {exc}")], source
            ) from exc
        try:
            return cls.from_dict(data)
        except PipelineValidationError as exc:
            raise PipelineValidationError(exc.problems, source) from None

    def __eq__(self, other) -> bool:
        return isinstance(other, TomoPipeline) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __repr__(self) -> str:
        chain = " -> ".join(f"{s['id']}" for s in self.steps)
        return f"TomoPipeline({self.name!r}: {chain})"

    # ------------------------------------------------------------------ validation
    def validate(self) -> list[Problem]:
        """Return every problem of the pipeline (empty when it can run).

        Checks step ids (present, unique), function names, parameter names against each
        function's signature, references to side outputs (existing, earlier, declared), and
        the order of step kinds (projection steps, centre steps, one final reconstruct).

        Returns
        -------
        list of Problem
        """
        problems: list[Problem] = []
        seen: dict[str, str] = {}
        if not self.steps:
            return [Problem(None, "steps", "the pipeline has no steps")]
        for i, step in enumerate(self.steps):
            sid = step["id"]
            if "_bad" in step:
                problems.append(
                    Problem(sid, None, f"a step must be a mapping, got {step['_bad']!r}")
                )
                continue
            for key in step.get("_extra", []):
                problems.append(Problem(sid, key, "unknown field; a step has id, function, params"))
            if sid in seen:
                problems.append(Problem(sid, "id", f"duplicate step id (also step {seen[sid]})"))
            fname = step["function"]
            if fname not in STEP_FUNCTIONS:
                problems.append(
                    Problem(
                        sid,
                        "function",
                        f"unknown function {fname!r}; choose one of {sorted(STEP_FUNCTIONS)}",
                    )
                )
                seen[sid] = str(i)
                continue
            kind = STEP_FUNCTIONS[fname]
            if not isinstance(step["params"], dict):
                problems.append(Problem(sid, "params", "params must be a mapping"))
            else:
                problems += self._check_params(step, kind, seen)
            if kind.kind == "reconstruct" and i != len(self.steps) - 1:
                problems.append(Problem(sid, "function", "reconstruct must be the last step"))
            seen[sid] = str(i)
        if self.steps[-1].get("function") != "reconstruct":
            problems.append(Problem(None, "steps", "the last step must be 'reconstruct'"))
        return problems

    def _check_params(self, step, kind: _StepKind, seen) -> list[Problem]:
        problems = []
        sid, fname = step["id"], step["function"]
        func = tomo_function(fname)
        if func is None:
            return [Problem(sid, "function", f"{fname!r} is not available in this spotkit")]
        sig = inspect.signature(func)
        allowed = {
            n
            for n, p in sig.parameters.items()
            if n not in kind.supplied and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }
        if kind.kind == "center":
            allowed |= {"rows"}
        for pname, value in step["params"].items():
            if pname in kind.supplied:
                problems.append(
                    Problem(sid, pname, "is supplied by the pipeline runner; remove it")
                )
            elif pname not in allowed:
                problems.append(
                    Problem(
                        sid,
                        pname,
                        f"{fname}() has no parameter {pname!r}; allowed: {sorted(allowed)}",
                    )
                )
            ref = _REF.match(value) if isinstance(value, str) else None
            if isinstance(value, str) and value.startswith("$") and not ref:
                problems.append(
                    Problem(sid, pname, f"bad reference {value!r}; write '$<step id>.<output>'")
                )
            elif ref:
                target, output = ref.groups()
                if target not in seen:
                    problems.append(
                        Problem(
                            sid, pname, f"refers to step {target!r}, which is not an earlier step"
                        )
                    )
                else:
                    tstep = next(s for s in self.steps if s["id"] == target)
                    outs = STEP_FUNCTIONS.get(tstep["function"], _StepKind("", ())).side_outputs
                    if output not in outs:
                        problems.append(
                            Problem(
                                sid,
                                pname,
                                f"step {target!r} has no side output {output!r}; "
                                f"it has {list(outs)}",
                            )
                        )
        problems += _check_values(sid, fname, step["params"])
        if fname == "downsample":
            axes = step["params"].get("axis", -1)
            axes = list(axes) if isinstance(axes, list | tuple) else [axes]
            if not all(isinstance(a, int) and -3 <= a <= 2 for a in axes):
                problems.append(
                    Problem(
                        sid,
                        "axis",
                        f"{step['params'].get('axis')!r}: downsample in a pipeline bins "
                        "projections [angles, rows, columns]: axis 0, 1, 2 or a list of them",
                    )
                )
        return problems

    def check(self) -> None:
        """Raise :class:`PipelineValidationError` listing every problem, if there are any."""
        problems = self.validate()
        if problems:
            raise PipelineValidationError(problems, self.name)


    # ------------------------------------------------------------------ plan and run
    def plan(
        self, shape, *, max_memory: str | int | float = "4GB", workers: int = 1,
        n_flats: int = 0, n_darks: int = 0,
    ) -> tuple[int, int]:
        """Rows per block and the estimated peak bytes for a scan of ``shape``.

        Parameters
        ----------
        shape : tuple
            ``(n_angles, n_rows, n_cols)`` of the projections.
        max_memory : str or int
            Budget for the whole run.
        workers : int
            Blocks processed at once.
        n_flats, n_darks : int
            Number of flat and dark frames read with each block.

        Returns
        -------
        (rows_per_block, planned_bytes)

        Raises
        ------
        MemoryBudgetError
            When not even one row fits.

        Examples
        --------
        >>> pipe = TomoPipeline.default(center=1024.0, algorithm="fbp")
        >>> rows, planned = pipe.plan((1500, 2160, 2560), max_memory="4GB")
        >>> rows > 0 and planned <= 4e9
        True
        """
        return plan_blocks(self, shape, max_memory=max_memory, workers=workers,
                           n_flats=n_flats, n_darks=n_darks)

    def run(
        self,
        source,
        output: str | os.PathLike,
        *,
        max_memory: str | int = "4GB",
        rows: tuple[int, int] | None = None,
        workers: int = 1,
        client=None,
        progress: bool | Callable[[int, int], None] = False,
        overwrite: bool = False,
    ) -> PipelineResult:
        """Run the pipeline on a scan, streaming slices into an HDF5 volume.

        Reading the scan and writing the volume are orchestration: this calls the runner
        that :mod:`spotkit.pipelines` registers (:func:`spotkit.pipelines.run_tomo`, the same
        call as ``run_tomo(pipeline, source, output, ...)``).

        Parameters
        ----------
        source : Dataset, path-like or xarray.Dataset
            A catalog ``tomo/raw`` dataset, a Data Exchange file, or :func:`spotkit.io.open_tomo`'s
            result.
        output : path-like
            The HDF5 volume to write (``/recon`` in 1/cm, ``/x``, ``/y``, ``/z`` in µm).
        max_memory : str or int
            Memory budget for the whole run, e.g. ``"4GB"``.
        rows : (start, stop), optional
            Detector rows to reconstruct (default: all).
        workers : int
            Blocks processed concurrently (each gets ``max_memory / workers``).
        client : dask.distributed.Client, optional
            Run the blocks on this client instead of local threads.
        progress : bool or callable
            True shows a progress bar; a callable gets ``(blocks_done, n_blocks)``.
        overwrite : bool
            Replace an existing ``output``.

        Returns
        -------
        PipelineResult

        Raises
        ------
        PipelineValidationError
            Before reading anything, if the pipeline has problems.
        MemoryBudgetError
            If one row does not fit in ``max_memory``.
        spotkit._runners.RunnerNotRegisteredError
            If no runner is registered (``spotkit.pipelines`` was not imported).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from spotkit.sim import simulate_tomo_scan
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     truth = simulate_tomo_scan(pathlib.Path(tmp) / "scan.h5", shape=(61, 4, 48))
        ...     pipe = TomoPipeline.default(center=truth.center, algorithm="fbp")
        ...     result = pipe.run(truth.path, pathlib.Path(tmp) / "volume.h5")
        >>> result.shape, result.n_blocks
        ((4, 48, 48), 1)
        """
        runner = get_runner("tomo.pipeline", what="TomoPipeline.run")
        return runner(self, source, output, max_memory=max_memory, rows=rows, workers=workers,
                      client=client, progress=progress, overwrite=overwrite)
