"""The memory plan of a pipeline run: how many detector rows go into one block.

Each step knows how much it needs per detector row (the raw rows, their float copies
through the projection steps, the sinograms, the reconstruction backend's work arrays);
the rows of a scan are cut into blocks that fit the budget with ``workers`` blocks in
flight (as httomo plans its sections). The plan is pure arithmetic on the scan's shape:
nothing is read.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spotkit.tomo._pipeline import TomoPipeline

__all__ = ["parse_memory", "plan_blocks"]

#: Interpreter and libraries (~180 MB measured) and h5py buffers, per run.
BASE_BYTES = 256 * 2**20

_UNITS = {
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


def parse_memory(value: str | int | float) -> int:
    """Parse a memory size such as ``"4GB"``, ``"512 MiB"`` or ``2e9`` into bytes.

    Parameters
    ----------
    value : str or number
        Size; decimal (kB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB) units are understood.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For a size that is not positive or cannot be read, naming the value.

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
    if unit not in _UNITS:
        raise ValueError(
            f"unknown memory unit {unit!r} in {value!r}; use kB, MB, GB or KiB, MiB, GiB"
        )
    return int(number * _UNITS[unit])


def recon_work_bytes(params: dict[str, Any], n_angles: int, n_cols: int,
                     n: int) -> tuple[int, int]:
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


def plan_blocks(pipe: TomoPipeline, shape, *, max_memory: str | int | float = "4GB",
                workers: int = 1, n_flats: int = 0, n_darks: int = 0) -> tuple[int, int]:
    """Rows per block and the estimated peak bytes; see :meth:`TomoPipeline.plan`."""
    from spotkit.errors import MemoryBudgetError

    budget = parse_memory(max_memory)
    n_angles, n_rows, n_cols = (int(v) for v in shape)
    recon = pipe.steps[-1]["params"] if pipe.steps else {}
    f_angles, f_rows, f_cols = pipe.binning_factors()
    n = int(recon.get("n") or max(1, n_cols // f_cols))
    fixed_work, per_slice_work = recon_work_bytes(
        recon, max(1, n_angles // f_angles), max(1, n_cols // f_cols), n
    )
    per_slice_work = -(-per_slice_work // f_rows)  # one slice per f_rows detector rows
    n_proj_steps = len(pipe.projection_steps())
    raw = n_angles * n_cols * 2 + (n_flats + n_darks) * n_cols * 4
    floats = n_angles * n_cols * 4 * (2 + 0.5 * n_proj_steps)
    sino = n_angles * n_cols * 4  # the contiguous (rows, angles, cols) copy
    per_row = int(raw + floats + sino + per_slice_work)
    fixed = int(fixed_work) * max(1, workers)  # each worker's reconstruction work arrays
    fixed += BASE_BYTES
    if any(s["function"] == "remove_stripes" for s in pipe.steps):
        from spotkit.tomo._stripe import _CHUNK_BYTES

        # stripe filters work a few sinograms at a time: ~10x a chunk (measured 9.5x)
        fixed += 10 * min(_CHUNK_BYTES, n_angles * n_cols * 4) * max(1, workers)
    rows = (budget - fixed) // (per_row * max(1, workers)) // f_rows * f_rows
    if rows < 1:
        raise MemoryBudgetError(budget, fixed + per_row * f_rows * max(1, workers))
    rows = min(rows, -(-max(1, n_rows) // f_rows) * f_rows)  # no bigger than the scan
    return int(rows), int(fixed + rows * per_row * max(1, workers))
