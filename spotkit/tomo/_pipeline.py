"""A tomography pipeline as data: steps with ids and parameters, validated, then run block
by block under a memory budget.

A pipeline is a list of steps. Each step names a spotkit function and its keyword
parameters. Steps of three kinds follow one another:

- *projection* steps (``normalize``, ``remove_zingers``, ``remove_stripes``, ``minus_log``,
  ``downsample`` along angles or columns) transform a block of detector rows, all angles;
- *centre* steps (``find_center``) run once, before the blocks, on a few sample rows that went
  through the preceding steps; their side output ``center`` is available to later steps as
  ``"$<step id>.center"``;
- one final *reconstruct* step turns each block's sinograms into slices.

The runner reads the scan lazily, cuts the selected rows into blocks that fit ``max_memory``,
processes the blocks with dask, and streams the slices into an HDF5 volume with physical
coordinates and full provenance (every parameter, the side outputs, backend and versions).
The volume is written under a temporary name and renamed when complete: a failed run leaves
no half-written output.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spotkit.errors import MemoryBudgetError, PipelineValidationError
from spotkit.tomo._angles import as_radians
from spotkit.tomo._center import CenterEstimate, CenterWarning
from spotkit.tomo.backends._base import CONVENTION

logger = logging.getLogger(__name__)

__all__ = ["PipelineResult", "Problem", "TomoPipeline", "parse_memory"]

_REF = re.compile(r"^\$([A-Za-z_][\w-]*)\.([A-Za-z_]\w*)$")


@dataclass(frozen=True)
class _StepKind:
    kind: str  # "projection" | "center" | "reconstruct"
    supplied: tuple[str, ...]  # arguments the runner passes itself
    side_outputs: tuple[str, ...] = ()


#: The functions a pipeline step may name, with how the runner calls them.
STEP_FUNCTIONS: dict[str, _StepKind] = {
    "normalize": _StepKind("projection", ("proj", "flats", "darks", "out")),
    "remove_zingers": _StepKind("projection", ("proj",)),
    "remove_stripes": _StepKind("projection", ("sino_or_proj", "data", "arr", "proj")),
    "minus_log": _StepKind("projection", ("trans", "out")),
    "downsample": _StepKind("projection", ("arr", "data", "proj")),
    "find_center": _StepKind("center", ("sinogram", "theta"), ("center",)),
    "reconstruct": _StepKind("reconstruct", ("sinograms", "theta")),
}


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


def parse_memory(value: str | int | float) -> int:
    """Parse a memory size such as ``"4GB"``, ``"512 MiB"`` or ``2e9`` into bytes.

    Parameters
    ----------
    value : str or number
        Size; decimal (kB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB) units are understood.

    Returns
    -------
    int

    Examples
    --------
    >>> parse_memory("4GB"), parse_memory("1.5 GiB")
    (4000000000, 1610612736)
    """
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"memory size must be positive, got {value}")
        return int(value)
    m = re.fullmatch(r"\s*([0-9.]+(?:[eE][0-9]+)?)\s*([kKMGT]i?B|B)?\s*", str(value))
    if not m:
        raise ValueError(f"cannot read memory size {value!r}; write e.g. '4GB' or '512MiB'")
    number, unit = float(m.group(1)), (m.group(2) or "B")
    scale = {
        "B": 1,
        "kB": 1e3,
        "KB": 1e3,
        "MB": 1e6,
        "GB": 1e9,
        "TB": 1e12,
        "KiB": 2**10,
        "kiB": 2**10,
        "MiB": 2**20,
        "GiB": 2**30,
        "TiB": 2**40,
    }
    if unit not in scale:
        raise ValueError(
            f"unknown memory unit {unit!r} in {value!r}; use kB, MB, GB or KiB, MiB, GiB"
        )
    return int(number * scale[unit])


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


def _tomo_function(name: str):
    import spotkit.tomo

    return getattr(spotkit.tomo, name, None)


class TomoPipeline:
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
        func = _tomo_function(fname)
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

    def _factors(self, steps=None) -> tuple[int, int, int]:
        """Binning of (angles, rows, columns) by the downsample steps among ``steps``."""
        factors = [1, 1, 1]
        for step in self.steps if steps is None else steps:
            if step.get("function") != "downsample":
                continue
            axes = step["params"].get("axis", -1)
            axes = list(axes) if isinstance(axes, list | tuple) else [axes]
            fac = step["params"].get("factor", 2)
            fac = list(fac) if isinstance(fac, list | tuple) else [fac] * len(axes)
            for a, f in zip(axes, fac, strict=False):
                factors[int(a) % 3] *= int(f)
        return factors[0], factors[1], factors[2]

    def check(self) -> None:
        """Raise :class:`PipelineValidationError` listing every problem, if there are any."""
        problems = self.validate()
        if problems:
            raise PipelineValidationError(problems, self.name)

    # ------------------------------------------------------------------ running
    def _resolve(self, params: dict, side: dict) -> dict:
        out = {}
        for k, v in params.items():
            m = _REF.match(v) if isinstance(v, str) else None
            out[k] = side[m.group(1)][m.group(2)] if m else v
        return out

    def _rows_through(self, steps, scan, rows, side):
        """Read detector ``rows`` (with their flats and darks) and apply projection steps."""
        return self._apply_projection_steps(
            steps,
            read_rows(scan["data"], rows),
            read_rows(scan["flats"], rows),
            read_rows(scan["darks"], rows),
            side,
        )

    def _apply_projection_steps(self, steps, block, flats, darks, side):
        data = block
        for step in steps:
            func = _tomo_function(step["function"])
            params = self._resolve(step["params"], side)
            if step["function"] == "normalize":
                data = func(data, flats, darks, **params)
            else:
                data = func(data, **params)
        return data

    def plan(
        self, shape, *, max_memory="4GB", workers: int = 1, n_flats: int = 0, n_darks: int = 0
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
        """
        budget = parse_memory(max_memory)
        n_angles, _n_rows, n_cols = shape
        recon = self.steps[-1]["params"] if self.steps else {}
        f_angles, f_rows, f_cols = self._factors()
        n = int(recon.get("n") or max(1, n_cols // f_cols))
        fixed_work, per_slice_work = _recon_work_bytes(
            recon, max(1, n_angles // f_angles), max(1, n_cols // f_cols), n
        )
        per_slice_work = -(-per_slice_work // f_rows)  # one slice per f_rows detector rows
        n_proj_steps = sum(STEP_FUNCTIONS[s["function"]].kind == "projection" for s in self.steps)
        raw = n_angles * n_cols * 2 + (n_flats + n_darks) * n_cols * 4
        floats = n_angles * n_cols * 4 * (2 + 0.5 * n_proj_steps)
        sino = n_angles * n_cols * 4  # the contiguous (rows, angles, cols) copy
        per_row = int(raw + floats + sino + per_slice_work)
        fixed = int(fixed_work) * max(1, workers)  # each worker's reconstruction work arrays
        fixed += 256 * 2**20  # interpreter and libraries (~180 MB measured), h5py buffers
        if any(s["function"] == "remove_stripes" for s in self.steps):
            from spotkit.tomo._stripe import _CHUNK_BYTES

            # stripe filters work a few sinograms at a time: ~10x a chunk (measured 9.5x)
            fixed += 10 * min(_CHUNK_BYTES, n_angles * n_cols * 4) * max(1, workers)
        rows = (budget - fixed) // (per_row * max(1, workers)) // f_rows * f_rows
        if rows < 1:
            raise MemoryBudgetError(budget, fixed + per_row * f_rows * max(1, workers))
        rows = min(rows, -(-max(1, _n_rows) // f_rows) * f_rows)  # no bigger than the scan
        return int(rows), int(fixed + rows * per_row * max(1, workers))

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
        """
        import dask
        import h5py

        from spotkit._version import __version__

        self.check()
        t0 = time.perf_counter()
        output = Path(output)
        if output.exists() and not overwrite:
            raise FileExistsError(f"{output} exists; pass overwrite=True or choose another path")
        scan, source_info = _open_source(source)
        n_angles, n_rows, n_cols = scan["data"].shape
        r0, r1 = (0, n_rows) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= r0 < r1 <= n_rows:
            raise ValueError(f"rows={rows} is outside the detector's 0..{n_rows} rows")
        f_rows = self._factors()[1]
        if r1 - r0 < f_rows:
            raise ValueError(
                f"rows={rows} selects {r1 - r0} detector rows, fewer than the row binning "
                f"({f_rows}) of the pipeline's downsample step"
            )
        if (r1 - r0) % f_rows:
            logger.info("row binning %d: the last %d row(s) are left out", f_rows,
                        (r1 - r0) % f_rows)
            r1 -= (r1 - r0) % f_rows
        n_slices = (r1 - r0) // f_rows
        theta_da = scan["theta"]
        theta = (as_radians(theta_da, what="scan theta") if "units" in theta_da.attrs
                 else np.deg2rad(np.asarray(theta_da.values, dtype=np.float64)))  # DX: degrees
        if theta.size != n_angles:
            raise ValueError(
                f"theta has {theta.size} angles but the scan has {n_angles} projections"
            )
        pixel_cm = float(scan.attrs.get("pixel_size_um") or 1.0) * 1e-4
        flats_all, darks_all = scan["flats"], scan["darks"]
        block_rows, planned = self.plan(
            (n_angles, r1 - r0, n_cols),
            max_memory=max_memory,
            workers=workers,
            n_flats=flats_all.shape[0],
            n_darks=darks_all.shape[0],
        )
        proj_steps = [s for s in self.steps if STEP_FUNCTIONS[s["function"]].kind == "projection"]

        # side outputs (centre) on a few sample rows, before any block is processed
        side: dict[str, dict[str, Any]] = {}
        done_steps: list[dict] = []
        for step in self.steps:
            kind = STEP_FUNCTIONS[step["function"]].kind
            if kind == "projection":
                done_steps.append(step)
            elif kind == "center":
                params = self._resolve(step["params"], side)
                frac = params.pop("rows", [0.5])
                starts = sorted(
                    {r0 + f_rows * round(f * (n_slices - 1)) for f in frac}
                )  # each sample is one binned slice: f_rows consecutive rows
                sample = [s + i for s in starts for i in range(f_rows)]
                block = self._rows_through(done_steps, scan, sample, side)
                sinos = np.ascontiguousarray(np.swapaxes(block, 0, 1))
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", CenterWarning)
                    found = _tomo_function("find_center")(
                        sinos, _theta_for(block, theta), **params)
                center = float(found)
                side[step["id"]] = {"center": center}
                if isinstance(found, CenterEstimate):  # how far to trust it: provenance
                    side[step["id"]]["center_check"] = found.to_dict()
                for w in caught:  # shown to the user, and recorded above with the run
                    if issubclass(w.category, CenterWarning):
                        logger.warning("step %s: %s", step["id"], w.message)
                    else:
                        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                f_cols = self._factors(done_steps)[2]
                if f_cols > 1:  # also where the axis is on the unbinned detector
                    side[step["id"]]["center_full_resolution"] = center * f_cols
                logger.info("step %s: centre %.2f from rows %s", step["id"], center, sample)
        recon_step = self.steps[-1]
        recon_params = self._resolve(recon_step["params"], side)
        from spotkit.tomo import reconstruct

        # output geometry from a dry run of the projection steps on one row
        probe = self._rows_through(proj_steps, scan, slice(r0, r0 + f_rows), side)
        theta_block = _theta_for(probe, theta)
        # one slice end to end now, so bad parameters fail before hours of compute
        reconstruct(np.swapaxes(probe, 0, 1), theta_block, **recon_params)
        n_out = int(recon_params.get("n") or probe.shape[2])
        blocks = [(a, min(a + block_rows, r1)) for a in range(r0, r1, block_rows)]
        logger.info(
            "pipeline %s: %d rows in %d block(s) of %d, planned peak %.2f GB of %s",
            self.name,
            r1 - r0,
            len(blocks),
            block_rows,
            planned / 1e9,
            max_memory,
        )

        tmp = output.with_name(f".{output.name}.partial")
        lock = threading.Lock()
        backend_used: dict[str, Any] = {}
        engines: set[str] = set()
        try:
            with h5py.File(tmp, "w") as f:
                dset = f.create_dataset(
                    "recon", shape=(n_slices, n_out, n_out), dtype="f4", chunks=(1, n_out, n_out)
                )
                dset.attrs["units"] = "1/cm"
                pixel_um = pixel_cm * 1e4 * (n_cols / probe.shape[2])
                coord = (np.arange(n_out) - (n_out - 1) / 2) * pixel_um
                z_rows = r0 + f_rows * np.arange(n_slices) + (f_rows - 1) / 2
                for name, values in (
                    ("x", coord),
                    ("y", coord),
                    ("z", z_rows * pixel_cm * 1e4),
                ):
                    f.create_dataset(name, data=values).attrs["units"] = "um"
                dset.dims[0].label, dset.dims[1].label, dset.dims[2].label = "z", "y", "x"

                block_args = (self.to_dict(), scan, side, theta_block, recon_params, pixel_um)

                def store(a: int, b: int, vol: np.ndarray, record: dict) -> int:
                    with lock:
                        dset[(a - r0) // f_rows : (b - r0) // f_rows] = vol
                        engines.add(record.pop("engine"))
                        backend_used.update(record)
                    return b - a

                if client is not None:
                    # distributed pickles what it runs: ship a top-level function and the
                    # (picklable, lazily read) scan; write the volumes here as they arrive
                    futures = [client.submit(_block_volume, a, b, *block_args, pure=False)
                               for a, b in blocks]
                    _store_futures(futures, store, progress)
                else:

                    def process(a: int, b: int) -> int:
                        return store(*_block_volume(a, b, *block_args))

                    tasks = [dask.delayed(process)(a, b) for a, b in blocks]
                    _compute_threads(tasks, workers, progress)
                backend_used["engine"] = ", ".join(sorted(engines))
                dset.attrs["provenance"] = json.dumps(
                    {
                        "pipeline": self.to_dict(),
                        "side_outputs": side,
                        "source": source_info,
                        "rows": [r0, r1],
                        "backend": backend_used,
                        "spotkit": __version__,
                        "max_memory": str(max_memory),
                        "rows_per_block": block_rows,
                    },
                    default=str,
                )
                dset.attrs["pixel_size_um"] = pixel_um
                dset.attrs["convention"] = json.dumps(CONVENTION)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, output)
        seconds = time.perf_counter() - t0
        logger.info("pipeline %s wrote %s in %.1f s", self.name, output, seconds)
        return PipelineResult(
            output=output,
            shape=(n_slices, n_out, n_out),
            side_outputs=side,
            rows_per_block=block_rows,
            n_blocks=len(blocks),
            workers=workers,
            planned_bytes=planned,
            seconds=seconds,
            backend=backend_used,
        )


def read_rows(var, rows, angles: slice | None = None) -> np.ndarray:
    """Detector ``rows`` of a lazy ``(angle, row, col)`` variable, reading only those rows.

    Parameters
    ----------
    var : xarray.DataArray
        Projections, flats or darks from :func:`spotkit.io.open_tomo`.
    rows : slice or sequence of int
        Rows to read, in this order.
    angles : slice, optional
        Frames to read (a slice, e.g. every 4th: ``slice(None, None, 4)``).

    Returns
    -------
    ndarray
        ``(angles, len(rows), cols)``.

    Notes
    -----
    Dask folds a slice into the read of each HDF5 chunk, but a list of rows makes it read
    whole frames and then pick: on a 14 GB scan stored one frame per chunk that is the
    whole file. Lists are therefore read as runs of consecutive rows, one slice each.
    """
    sel = {} if angles is None else {var.dims[0]: angles}
    # one isel with both selections: dask folds one getitem into the chunk reads, not two
    if isinstance(rows, slice):
        return var.isel({**sel, "row": rows}).values
    rows = [int(r) for r in rows]
    runs: list[list[int]] = []
    for r in rows:
        if runs and r == runs[-1][-1] + 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    parts = [var.isel({**sel, "row": slice(run[0], run[-1] + 1)}).values for run in runs]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _theta_for(block, theta):
    """Angles after angle binning by a downsample step (block has fewer projections)."""
    if block.shape[0] == theta.size:
        return theta
    factor = theta.size // block.shape[0]
    return theta[: block.shape[0] * factor].reshape(block.shape[0], factor).mean(axis=1)


def _recon_work_bytes(params: dict, n_angles: int, n_cols: int, n: int) -> tuple[int, int]:
    """``(fixed, per_slice)`` work memory of the reconstruct step's backend."""
    from spotkit.tomo._recon import _choose_backend
    from spotkit.tomo.backends import get_backend

    algorithm = str(params.get("algorithm", "gridrec"))
    try:
        name = _choose_backend(str(params.get("backend", "auto")), algorithm,
                               str(params.get("filter", "shepp")))
        return get_backend(name).work_bytes(n_angles, n_cols, n, algorithm)
    except (ValueError, ImportError):  # reported by validate() / the dry run
        return get_backend("builtin").work_bytes(n_angles, n_cols, n, algorithm)


def _block_volume(a, b, pipeline: dict, scan, side, theta, recon_params, pixel_um):
    """Rows ``a:b`` through the projection steps and the reconstruction, in 1/cm.

    Top-level (picklable) so a dask.distributed worker can run it; returns
    ``(a, b, volume, backend record)``.
    """
    from spotkit.tomo import reconstruct_with_info

    pipe = TomoPipeline(pipeline["steps"], name=pipeline.get("name", "tomo"))  # validated
    proj_steps = [s for s in pipe.steps if STEP_FUNCTIONS[s["function"]].kind == "projection"]
    data = pipe._rows_through(proj_steps, scan, slice(a, b), side)
    sinos = np.ascontiguousarray(np.swapaxes(data, 0, 1))
    del data
    vol, info = reconstruct_with_info(sinos, theta, **recon_params)
    del sinos
    vol /= np.float32(pixel_um * 1e-4)  # per binned pixel -> 1/cm
    record = _info_record(info)
    record["engine"] = info.engine
    return a, b, vol, record


def _store_futures(futures, store, progress) -> None:
    """Write each finished block as it arrives, with progress; cancel the rest on error."""
    from dask.distributed import as_completed

    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(futures), desc="reconstruct", unit="block")
    total = len(futures)
    pending = as_completed(futures)
    futures.clear()  # a block's result is freed on the workers once nothing refers to it
    try:
        for i, fut in enumerate(pending, 1):
            store(*fut.result())
            del fut
            if bar is not None:
                bar.update(1)
            elif callable(progress):
                progress(i, total)
    except BaseException:
        for fut in list(pending.futures):
            fut.cancel()
        raise
    finally:
        if bar is not None:
            bar.close()


def _info_record(info) -> dict[str, Any]:
    """Backend provenance of a block: what ran, without the per-block timing."""
    record = info.to_dict()
    record.pop("seconds", None)
    record.pop("engine", None)
    return record


def _open_source(source):
    from spotkit.io import open_tomo

    if hasattr(source, "to_xarray") and hasattr(source, "id"):
        return source.to_xarray(), {"dataset_id": source.id, "path": str(source.path)}
    if isinstance(source, str | os.PathLike):
        return open_tomo(source), {"path": str(Path(source).resolve())}
    if hasattr(source, "data_vars") and "data" in source:
        return source, {"path": source.attrs.get("path", "")}
    raise TypeError(
        f"cannot read a scan from {type(source).__name__}; pass a Dataset, a path "
        "or an xarray.Dataset from spotkit.io.open_tomo"
    )


def _compute_threads(tasks, workers: int, progress) -> None:
    import dask
    from dask.callbacks import Callback

    total = len(tasks)
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="reconstruct", unit="block")

    done = [0]

    class _Progress(Callback):
        def _posttask(self, key, result, dsk, state, id):
            if isinstance(result, int):
                done[0] += 1
                if bar is not None:
                    bar.update(1)
                elif callable(progress):
                    progress(done[0], total)
                logger.debug("block %d/%d done", done[0], total)

    try:
        with _Progress():
            dask.compute(*tasks, scheduler="threads", num_workers=max(1, workers))
    finally:
        if bar is not None:
            bar.close()
