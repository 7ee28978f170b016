"""Run a :class:`~spotkit.tomo.TomoPipeline` on a scan: read row blocks, reconstruct them
with dask, stream the slices into an HDF5 volume with provenance.

The pipeline (science) says what to do to the numbers; this runner owns the side effects:
it opens the scan, cuts the selected rows into blocks that fit ``max_memory``
(:meth:`TomoPipeline.plan`), reads each block's rows only, runs the blocks on local threads
or a dask.distributed client, writes the volume under a temporary name and renames it when
complete (a failed run leaves no half-written output), and records every parameter, the
side outputs, the backend and versions.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spotkit._version import __version__
from spotkit.io import write_pyramid
from spotkit.pipelines._scan import open_scan, read_rows, scan_theta
from spotkit.tomo import CONVENTION, PipelineResult, TomoPipeline

logger = logging.getLogger(__name__)

__all__ = ["run_tomo"]


#: Volumes of at least this many bytes get a pyramid sidecar from :func:`run_tomo` by default.
PYRAMID_MIN_BYTES = 256 * 2**20

def run_tomo(
    pipeline: TomoPipeline,
    source,
    output: str | os.PathLike,
    *,
    max_memory: str | int = "4GB",
    rows: tuple[int, int] | None = None,
    workers: int = 1,
    client=None,
    progress: bool | Callable[[int, int], None] = False,
    overwrite: bool = False,
    pyramid: bool | None = None,
) -> PipelineResult:
    """Run ``pipeline`` on a scan, streaming slices into an HDF5 volume.

    :meth:`spotkit.tomo.TomoPipeline.run` calls this (``pipe.run(source, output, ...)`` is
    ``run_tomo(pipe, source, output, ...)``).

    Parameters
    ----------
    pipeline : TomoPipeline
        The steps (validated before anything is read).
    source : Dataset, path-like or xarray.Dataset
        A catalog ``tomo/raw`` dataset, a raw tomography file, or
        :func:`spotkit.io.open_tomo`'s result.
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
    pyramid : bool, optional
        Also write the volume's coarse levels into a sidecar (``vol.pyramid.h5``, see
        :func:`spotkit.io.write_pyramid`), so that a viewer shows every plane of a large
        volume at once: ``/recon`` is stored slice by slice, and a plane across the slices
        would otherwise read the whole volume. Default: only for volumes of at least
        :data:`PYRAMID_MIN_BYTES` (256 MiB).

    Returns
    -------
    PipelineResult

    Raises
    ------
    PipelineValidationError
        Before reading anything, if the pipeline has problems.
    MemoryBudgetError
        If one row does not fit in ``max_memory``.
    FileExistsError
        If ``output`` exists and ``overwrite`` is False.
    ValueError
        For ``rows`` outside the detector or fewer than the row binning.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from spotkit.sim import simulate_tomo_scan
    >>> from spotkit.tomo import TomoPipeline
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     truth = simulate_tomo_scan(pathlib.Path(tmp) / "scan.h5", shape=(61, 6, 48))
    ...     pipe = TomoPipeline.default(algorithm="fbp")
    ...     result = run_tomo(pipe, truth.path, pathlib.Path(tmp) / "vol.h5", rows=(2, 4))
    ...     found = result.side_outputs["center"]["center"]
    >>> result.shape, abs(found - truth.center) < 1
    ((2, 48, 48), True)
    """
    import dask
    import h5py

    pipeline.check()
    t0 = time.perf_counter()
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True or choose another path")
    scan, source_info = open_scan(source)
    n_angles, n_rows, n_cols = scan["data"].shape
    r0, r1 = (0, n_rows) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= r0 < r1 <= n_rows:
        raise ValueError(f"rows={rows} is outside the detector's 0..{n_rows} rows")
    f_rows = pipeline.binning_factors()[1]
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
    theta = scan_theta(scan)
    if theta.size != n_angles:
        raise ValueError(
            f"theta has {theta.size} angles but the scan has {n_angles} projections"
        )
    pixel_cm = float(scan.attrs.get("pixel_size_um") or 1.0) * 1e-4
    block_rows, planned = pipeline.plan(
        (n_angles, r1 - r0, n_cols),
        max_memory=max_memory,
        workers=workers,
        n_flats=scan["flats"].shape[0],
        n_darks=scan["darks"].shape[0],
    )

    # side outputs (centre) on a few sample rows, before any block is processed
    side: dict[str, dict[str, Any]] = {}
    done_steps: list[dict] = []
    for step in pipeline.steps:
        kind = pipeline.step_kind(step)
        if kind == "projection":
            done_steps.append(step)
        elif kind == "center":
            sample = pipeline.center_rows(step, r0, n_slices)
            block = _rows_through(pipeline, done_steps, scan, sample, side)
            side[step["id"]] = pipeline.center_output(step, block, theta, side)
            logger.info("step %s: centre from rows %s", step["id"], sample)

    # output geometry from a dry run of the projection steps on one slice, reconstructed
    # end to end now, so bad parameters fail before hours of compute
    probe = _rows_through(pipeline, None, scan, slice(r0, r0 + f_rows), side)
    pipeline.reconstruct_block(probe, theta, side)
    recon_params = pipeline.resolve(pipeline.steps[-1]["params"], side)
    n_out = int(recon_params.get("n") or probe.shape[2])
    pixel_um = pixel_cm * 1e4 * (n_cols / probe.shape[2])
    blocks = [(a, min(a + block_rows, r1)) for a in range(r0, r1, block_rows)]
    logger.info(
        "pipeline %s: %d rows in %d block(s) of %d, planned peak %.2f GB of %s",
        pipeline.name, r1 - r0, len(blocks), block_rows, planned / 1e9, max_memory,
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
            coord = (np.arange(n_out) - (n_out - 1) / 2) * pixel_um
            z_rows = r0 + f_rows * np.arange(n_slices) + (f_rows - 1) / 2
            for name, values in (("x", coord), ("y", coord), ("z", z_rows * pixel_cm * 1e4)):
                f.create_dataset(name, data=values).attrs["units"] = "um"
            dset.dims[0].label, dset.dims[1].label, dset.dims[2].label = "z", "y", "x"

            block_args = (pipeline.to_dict(), scan, side, theta, pixel_um)

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
                    "pipeline": pipeline.to_dict(),
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
    volume_bytes = 4 * n_slices * n_out * n_out
    if pyramid or (pyramid is None and volume_bytes >= PYRAMID_MIN_BYTES):
        sidecar = write_pyramid(output, key="recon", overwrite=True)
        logger.info("pipeline %s: coarse levels for viewing in %s", pipeline.name, sidecar)
    seconds = time.perf_counter() - t0
    logger.info("pipeline %s wrote %s in %.1f s", pipeline.name, output, seconds)
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


def _rows_through(pipeline: TomoPipeline, steps, scan, rows, side) -> np.ndarray:
    """Read detector ``rows`` (with their flats and darks) and apply projection steps."""
    return pipeline.apply_projections(
        read_rows(scan["data"], rows),
        read_rows(scan["flats"], rows),
        read_rows(scan["darks"], rows),
        side,
        steps=steps,
    )


def _block_volume(a: int, b: int, pipeline: dict, scan, side, theta, pixel_um: float):
    """Rows ``a:b`` through the projection steps and the reconstruction, in 1/cm.

    Top-level (picklable) so a dask.distributed worker can run it; returns
    ``(a, b, volume, backend record)``.
    """
    pipe = TomoPipeline(pipeline["steps"], name=pipeline.get("name", "tomo"))  # validated
    data = _rows_through(pipe, None, scan, slice(a, b), side)
    vol, info = pipe.reconstruct_block(data, theta, side, pixel_um=pixel_um)
    del data
    record = info.to_dict()
    record.pop("seconds", None)  # what ran, without the per-block timing
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
