"""Benchmark: the live data path, with pyFAI as the reference measured in the same run.

Three parts (``--parts``, all by default):

* ``reduction``: Pilatus 2M frames (1679 x 1475 int32, Pilatus-like gaps) reduced to I(q)
  with Poisson errors by ``spotkit.scattering.FrameReducer.reduce`` and by
  ``integrate_frames`` (a dask array, computed), against pyFAI's own steady
  ``integrate1d(method="csr", mask=..., error_model="poisson")`` on the same frames with the
  same geometry and options (bench_scattering's reference). The calls are interleaved
  (frame by frame for the reducer, series by series for ``integrate_frames``, the order
  alternating), so that a change of the machine's load hits both sides alike; the ratio is
  pyFAI's time over spotkit's (>= 0.95 is the target). The numbers of both spotkit paths are
  checked to equal ``integrate_1d``'s bit for bit.
* ``profile``: the pieces of one reduction timed alone (pyFAI's engine, its pre-processing,
  the per-call work of ``integrate1d``, spotkit's frame preparation, ``integrate_frames``
  before and after FrameReducer): where the time goes.
* ``detector``: reduction + ``spotkit.change.OnlineDetector`` in profile mode (I(q) and
  sigma of each frame) on a Pilatus 2M series with a ring that appears: frames per second
  over the series (target >= 20), the time of each step, and the onset found.
* ``latency``: the twin writes a series in real time (``spotkit.sim.LiveSeriesWriter``,
  HDF5 SWMR), ``spotkit.live.LiveSession`` follows it into a catalog, and a watcher
  (``spotkit.live.subscribe``) notes when each frame's point becomes readable: latency from
  the frame written (the source's ``written_at``) to the watcher reading it, median and p95
  (target: median < 1 s).

    python benchmarks/bench_live.py [--parts reduction profile detector latency] [--record]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _results import machine_line, write_section

SHAPE = (1679, 1475)  # Pilatus 2M
NPT = 1000
HEADING = "## Live: reduction, change detection and latency (bench_live.py)"


def _geometry():
    from spotkit.scattering import make_geometry

    return make_geometry(energy_kev=12.0, distance_m=2.0, beam_center=(1200.0, 740.0),
                         pixel_size_um=172, shape=SHAPE)


def _frames(n: int, ai, *, ring_from: int | None = None, seed: int = 0) -> np.ndarray:
    """bench_scattering's frames (a smooth SAXS curve, Poisson counts, gaps = -1); with
    ``ring_from``, an ordering ring at q = 0.8 nm^-1 grows over 4 frames from that frame."""
    rng = np.random.default_rng(seed)
    q = ai.qArray(SHAPE)
    lam = 2000.0 / (1.0 + (q * 5.0) ** 2) + 2.0
    ring = 40.0 * np.exp(-0.5 * ((q - 0.8) / 0.02) ** 2)
    frames = np.empty((n, *SHAPE), np.int32)
    for k in range(n):
        grow = 0.0 if ring_from is None else float(np.clip((k - ring_from + 1) / 4, 0, 1))
        frames[k] = rng.poisson(lam + grow * ring if grow else lam)
    frames[:, 195::212, :] = -1  # Pilatus-like horizontal gaps
    frames[:, :, 487::494] = -1
    return frames


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


# -- reduction ------------------------------------------------------------------------------


def reduction(args) -> str:
    import dask.array as da
    import pyFAI

    from spotkit.scattering import FrameReducer, integrate_1d, integrate_frames

    load0 = _load()
    ai_ref, ai_sk, ai_if = _geometry(), _geometry(), _geometry()
    frames = _frames(args.frames, ai_ref)
    mask = frames[0] < 0

    def ref(frame):
        return ai_ref.integrate1d(frame, NPT, unit="q_nm^-1", method="csr", mask=mask,
                                  error_model="poisson")

    t0 = time.perf_counter()
    ref(frames[0])
    first_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    reducer = FrameReducer(ai_sk, npt=NPT, mask=mask)
    build = time.perf_counter() - t0
    reducer.reduce(frames[0])  # the orientation check runs on the first frames
    for frame in frames[:3]:
        reducer.reduce(frame)
    lazy = da.from_array(frames, chunks=(1, *SHAPE))
    t0 = time.perf_counter()
    iq = integrate_frames(lazy, ai_if, npt=NPT, mask=mask)
    build_if = time.perf_counter() - t0

    # the same numbers as integrate_1d
    check = integrate_1d(frames[1], ai_sk, npt=NPT, mask=mask)
    got = reducer.reduce(frames[1])
    computed = iq.isel(frame=1).compute()
    identical = (np.array_equal(got[0], check.intensity.values, equal_nan=True)
                 and np.array_equal(got[1], check.sigma.values, equal_nan=True)
                 and np.array_equal(computed.intensity.values, check.intensity.values,
                                    equal_nan=True)
                 and np.array_equal(computed.sigma.values, check.sigma.values, equal_nan=True))

    # FrameReducer.reduce against integrate1d, frame by frame, alternating which goes first
    t_ref, t_sk = [], []
    for r in range(args.rounds):
        for k, frame in enumerate(frames):
            pair = [(t_ref, ref), (t_sk, reducer.reduce)]
            for times, call in pair if (r + k) % 2 == 0 else pair[::-1]:
                t0 = time.perf_counter()
                call(frame)
                times.append(time.perf_counter() - t0)
    pair_ratio = statistics.median(a / b for a, b in zip(t_ref, t_sk, strict=True))

    # integrate_frames (dask, computed) against integrate1d on the whole series
    s_ref, s_if, s_sync = [], [], []
    for r in range(args.rounds):
        runs = [(s_ref, lambda: [ref(f) for f in frames]), (s_if, iq.compute),
                (s_sync, lambda: iq.compute(scheduler="synchronous"))]
        for times, call in runs if r % 2 == 0 else runs[::-1]:
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) / len(frames))
    series_ratio = statistics.median(a / b for a, b in zip(s_ref, s_if, strict=True))
    sync_ratio = statistics.median(a / b for a, b in zip(s_ref, s_sync, strict=True))

    def ms(values):
        return f"{1e3 * statistics.median(values):.1f}"

    def fps(values):
        return f"{1.0 / statistics.median(values):.1f}"

    n = len(frames)
    text = "\n".join([
        "### Reduction of Pilatus 2M frames: spotkit against pyFAI's steady integrate1d\n",
        f"pyFAI {pyFAI.version}, {n} frames of {SHAPE[0]} x {SHAPE[1]} int32 (gaps -1, "
        f"masked), {NPT} q bins, CSR, solid angle, Poisson errors; {args.rounds} rounds, "
        f"interleaved. Load average (1/5/15 min) {load0} at the start, {_load()} at the end.",
        "",
        "| what | calls | median ms/frame | frames/s | pyFAI time / spotkit time |",
        "|---|---:|---:|---:|---:|",
        f"| pyFAI `integrate1d(method=\"csr\")`, steady (reference) | {len(t_ref)} | "
        f"{ms(t_ref)} | {fps(t_ref)} | 1 |",
        f"| spotkit `FrameReducer.reduce` | {len(t_sk)} | {ms(t_sk)} | {fps(t_sk)} | "
        f"**{statistics.median(t_ref) / statistics.median(t_sk):.2f}** (median of per-frame "
        f"ratios {pair_ratio:.2f}) |",
        f"| pyFAI `integrate1d` over the series (reference) | {len(s_ref)} x {n} | "
        f"{ms(s_ref)} | {fps(s_ref)} | 1 |",
        f"| spotkit `integrate_frames` (dask array, `.compute()`, threads) | "
        f"{len(s_if)} x {n} | {ms(s_if)} | {fps(s_if)} | **{series_ratio:.2f}** |",
        f"| the same, `.compute(scheduler=\"synchronous\")` | {len(s_sync)} x {n} | "
        f"{ms(s_sync)} | {fps(s_sync)} | {sync_ratio:.2f} |",
        "",
        f"Identical to `integrate_1d` bit for bit (reducer and integrate_frames): "
        f"**{'yes' if identical else 'NO'}**; reducer path: {reducer.engine}. First pyFAI "
        f"call (builds the lookup table): {first_ref:.2f} s; `FrameReducer(...)`: "
        f"{build:.2f} s (the table, then the engine checked against integrate1d on a test "
        f"frame); `integrate_frames` graph: {build_if:.2f} s.",
        "",
    ])
    print(text, flush=True)
    return text


# -- profile: where a frame's time goes ------------------------------------------------------


def profile(args) -> str:
    """The pieces of one reduction, each timed alone on the same frames (interleaved rounds,
    medians): what pyFAI's integrate1d does per call, and what spotkit did before."""
    import threading
    import uuid

    import dask.array as da
    from pyFAI.containers import ErrorModel
    from pyFAI.ext.fastcrc import crc32
    from pyFAI.ext.preproc import preproc

    from spotkit.scattering import FrameReducer, integrate_frames
    from spotkit.scattering._integrate import _call_1d, prepare_frame

    load0 = _load()
    ai = _geometry()
    frames = _frames(args.frames, ai)
    mask = frames[0] < 0
    reducer = FrameReducer(ai, npt=NPT, mask=mask, check_orientation=False)
    ai.integrate1d(frames[0], NPT, unit="q_nm^-1", method="csr", mask=mask,
                   error_model="poisson")
    method = next(k for k in ai.engines if k.dimension == 1)
    engine = ai.engines[method].engine
    sa64 = ai.solidAngleArray(SHAPE, True)
    sa32 = np.ascontiguousarray(sa64.ravel(), dtype=np.float32)
    cmask = np.asarray(engine.cmask)
    buf = np.empty((frames[0].size, 4), np.float32)
    prepared = [prepare_frame(f) for f in frames]
    options = {"unit": "q_nm^-1", "method": "csr", "mask": mask, "correct_solid_angle": True,
               "polarization_factor": None, "radial_range": None}
    lock = threading.Lock()

    def old_block(block, block_info=None):  # integrate_frames before FrameReducer
        out = np.empty((block.shape[0], 2, NPT), np.float64)
        for k in range(block.shape[0]):
            frame = prepare_frame(block[k])
            with lock:
                _, out[k, 0], out[k, 1] = _call_1d(ai, frame, NPT, normalization=1.0,
                                                   **options)
        return out

    lazy = da.from_array(frames, chunks=(1, *SHAPE))
    old = lazy.map_blocks(old_block, dtype=np.float64, chunks=(lazy.chunks[0], (2,), (NPT,)),
                          meta=np.empty((0, 0, 0)), name=f"old-{uuid.uuid4().hex}")

    def engine_call(frame, solidangle, dummy=None):
        return engine.integrate_ng(frame, error_model=ErrorModel.POISSON, dummy=dummy,
                                   delta_dummy=None if dummy is None else 0.5,
                                   solidangle=solidangle, normalization_factor=1.0,
                                   weighted_average=True)

    pieces = {
        "pyFAI `integrate1d` (int32 frame, mask; reference)": lambda k: ai.integrate1d(
            frames[k], NPT, unit="q_nm^-1", method="csr", mask=mask, error_model="poisson"),
        "its engine alone (`integrate_ng`, float64 solid angle as integrate1d passes it)":
            lambda k: engine_call(frames[k], sa64),
        "its engine alone, solid angle already float32": lambda k: engine_call(frames[k], sa32),
        "of which pre-processing (`preproc`: one thread, every pixel)": lambda k: preproc(
            frames[k].ravel(), solidangle=sa32, mask=cmask, normalization_factor=1.0,
            split_result=4, error_model=ErrorModel.POISSON, dtype=np.float32, out=buf),
        "solid angle float64 -> float32 (integrate1d, every call)": lambda k: np.ascontiguousarray(
            sa64.ravel(), dtype=np.float32),
        "mask CRC32 (integrate1d checks its table, every call)": lambda k: crc32(mask),
        "spotkit `prepare_frame` (float32 copy, gaps -> dummy; before)": lambda k: prepare_frame(
            frames[k]),
        "pyFAI `integrate1d` on the prepared frame with dummy (before, per frame)":
            lambda k: ai.integrate1d(prepared[k], NPT, unit="q_nm^-1", method="csr",
                                     mask=mask, error_model="poisson", dummy=-1.0,
                                     delta_dummy=0.5),
        "spotkit `FrameReducer.reduce` (now)": lambda k: reducer.reduce(frames[k]),
    }
    now = integrate_frames(lazy, _geometry(), npt=NPT, mask=mask, check_orientation=False)
    series = {
        "spotkit `integrate_frames` before (dask, lock, prepare_frame + integrate1d)":
            old.compute,
        "spotkit `integrate_frames` now (dask, FrameReducer)": now.compute,
    }
    times: dict[str, list[float]] = {name: [] for name in [*pieces, *series]}
    for r in range(args.rounds):
        for k in range(len(frames)):  # every piece on each frame in turn, order alternating
            order = list(pieces.items())
            for name, call in (order if (r + k) % 2 == 0 else order[::-1]):
                t0 = time.perf_counter()
                call(k)
                times[name].append(time.perf_counter() - t0)
        for name, run in series.items():
            t0 = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t0) / len(frames))
    ref = statistics.median(times[next(iter(pieces))])
    rows = [f"| {name} | {1e3 * statistics.median(v):.2f} | {statistics.median(v) / ref:.2f} |"
            for name, v in times.items()]
    text = "\n".join([
        "### Where a frame's time goes (profile)\n",
        f"Each piece alone on the same {len(frames)} Pilatus 2M frames, {args.rounds} rounds "
        "(every piece on each frame in turn; the series lines: whole series, alternating); "
        f"medians; load average {load0} at the start, {_load()} at the end.",
        "",
        "| piece | median ms/frame | / pyFAI integrate1d |",
        "|---|---:|---:|",
        *rows,
        "",
    ])
    print(text, flush=True)
    return text


# -- reduction + online change detection ----------------------------------------------------


def detector(args) -> str:
    from spotkit.change import OnlineDetector
    from spotkit.scattering import FrameReducer

    load0 = _load()
    ai = _geometry()
    onset = args.series - 24
    frames = _frames(args.series, ai, ring_from=onset, seed=1)
    mask = frames[0] < 0
    reducer = FrameReducer(ai, npt=NPT, mask=mask)
    det = OnlineDetector()
    t_red, t_det, events = [], [], []
    t_start = time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        intensity, sigma = reducer.reduce(frame)
        t1 = time.perf_counter()
        res = det.update(intensity, sigma=sigma)
        t2 = time.perf_counter()
        t_red.append(t1 - t0)
        t_det.append(t2 - t1)
        if res.event is not None:
            events.append(res.event)
    total = time.perf_counter() - t_start
    rate = len(frames) / total
    found = ", ".join(f"onset {e.onset} ({e.feature}, confirmed at frame {e.detected_at}, "
                      f"confidence {e.confidence:.2f})" for e in events) or "none"
    text = "\n".join([
        "### Reduction + online change detection (profiles)\n",
        f"{len(frames)} Pilatus 2M frames (as above; an ordering ring at q = 0.8 nm^-1 grows "
        f"over 4 frames from frame {onset}), each reduced by `FrameReducer.reduce` ({NPT} "
        "bins) and given to `OnlineDetector().update(intensity, sigma=sigma)` (profile mode, "
        f"default options: warm-up 8 frames, q bands 'auto'). Load average {load0} at the "
        f"start, {_load()} at the end.",
        "",
        "| step | median ms/frame | p95 ms/frame |",
        "|---|---:|---:|",
        f"| `FrameReducer.reduce` | {1e3 * statistics.median(t_red):.1f} | "
        f"{1e3 * float(np.percentile(t_red, 95)):.1f} |",
        f"| `OnlineDetector.update` (profiles) | {1e3 * statistics.median(t_det):.1f} | "
        f"{1e3 * float(np.percentile(t_det, 95)):.1f} |",
        "",
        f"**{rate:.1f} frames/s** over the whole series ({total:.2f} s for {len(frames)} "
        f"frames, the warm-up and the change included; target >= 20). Events: {found}; true "
        f"onset {onset}.",
        "",
    ])
    print(text, flush=True)
    return text


# -- latency: frame written -> point readable by a watcher ------------------------------------

LATENCY_SETUPS = {
    # name: (detector shape, module shape, gap, frame interval s, frames)
    "Pilatus 2M at 2 Hz": ((1679, 1475), (195, 487), (17, 7), 0.5, 60),
    "Pilatus 100K at 10 Hz": ((195, 487), (95, 239), (5, 9), 0.1, 150),
}


def _write_series(path, shape, module, gap, interval, n, queue) -> None:
    """The detector (its own process): the twin writes the series in real time (SWMR)."""
    from spotkit.sim import LiveSeriesWriter

    writer = LiveSeriesWriter(path, n_frames=n, frame_interval_s=interval, shape=shape,
                              module_shape=module, module_gap=gap, seed=7)
    writer.write(1)  # frame 0: the session sets itself up on it
    queue.put("ready")
    queue.get()  # the watcher has read frame 0's point: the session is up
    writer.start()  # frames 1.. in real time
    writer.wait()
    queue.put(list(writer.frame_times))
    writer.close()


def _watch(catalog_path, series_path, n, timeout, on_first):
    """The watcher (this process): D's subscribe on the catalog the session records into;
    returns {frame: unix time it was first read} and the recorded points."""
    from spotkit.catalog import open_catalog
    from spotkit.live import subscribe

    deadline = time.monotonic() + timeout
    while not catalog_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    cat = open_catalog(catalog_path, create=False)
    dataset_id = None
    while dataset_id is None and time.monotonic() < deadline:
        for entry in cat.live_series(active=None):
            if entry.get("path") == str(series_path):
                dataset_id = entry["dataset_id"]
        time.sleep(0.05)
    seen: dict[int, float] = {}
    if dataset_id is None:
        return seen, None
    with subscribe(cat, dataset_id, kinds="features") as sub:
        while len(seen) < n and time.monotonic() < deadline:
            for p in sub.wait(timeout=1.0):
                if p.frame not in seen:
                    seen[p.frame] = time.time()
                    if p.frame == 0:
                        on_first()
    points = {p.frame: p for p in cat.live_points(dataset_id, kinds="features")}
    cat.close()
    return seen, points


def latency(args) -> str:
    import functools
    import multiprocessing as mp
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    rows, notes = [], []
    load0 = _load()
    for name, (shape, module, gap, interval, n) in LATENCY_SETUPS.items():
        n = min(n, args.latency_frames) if args.latency_frames else n
        work = Path(tempfile.mkdtemp(prefix="bench_live_"))
        path, catalog = work / "series.h5", work / "catalog.db"
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        writer = ctx.Process(target=_write_series,
                             args=(path, shape, module, gap, interval, n, queue))
        writer.start()
        assert queue.get(timeout=120) == "ready"
        cli = Path(sys.executable).with_name("spotkit")
        log = open(work / "live.log", "w")  # closed when the session has ended
        session = subprocess.Popen([str(cli), "live", str(path), "--catalog", str(catalog),
                                    "--idle-timeout", "20", "--every", "60"],
                                   stdout=log, stderr=subprocess.STDOUT)
        # the session sets up on frame 0 (registers the series, builds pyFAI's table);
        # once the watcher has read frame 0's point, the detector writes the rest in real time
        seen, points = _watch(catalog, path, n, timeout=n * interval + 180,
                              on_first=functools.partial(queue.put, "go"))
        frame_times = queue.get(timeout=120)
        writer.join(timeout=60)
        try:
            session.wait(timeout=60)
        except subprocess.TimeoutExpired:
            session.terminate()
            session.wait(timeout=30)
        log.close()
        lat = np.array([seen[k] - frame_times[k] for k in range(1, len(frame_times))
                        if k in seen])
        first = seen.get(0, float("nan")) - frame_times[0]
        inner = np.array([p.recorded_at - p.written_at for k, p in (points or {}).items()
                          if k > 0 and p.recorded_at is not None and p.written_at is not None])
        missing = len(frame_times) - len(seen)
        rows.append(
            f"| {name} ({shape[0]} x {shape[1]}) | {len(frame_times)} | {missing} | "
            f"{first:.2f} | {np.median(lat):.3f} | {np.percentile(lat, 95):.3f} | "
            f"{lat.max():.3f} | "
            + (f"{np.median(inner):.3f} / {np.percentile(inner, 95):.3f} |" if inner.size
               else "- |"))
        notes.append(f"{name}: session exit code {session.returncode}; log {work / 'live.log'}")
    text = "\n".join([
        "### Latency: frame written -> its point readable by a watcher\n",
        "The twin (`spotkit.sim.LiveSeriesWriter`, its own process, real time, HDF5 with SWMR, "
        "Pilatus-like gaps, mask and PONI written first) writes the series; `spotkit live "
        "PATH --catalog DB` (a subprocess: `LiveSession`, `FrameReducer`, `OnlineDetector`, "
        "one catalog transaction per poll) follows it; this process watches with "
        "`spotkit.live.subscribe(catalog, dataset_id, kinds=\"features\")` (polls every "
        "0.2 s). Latency of frame k = the time this watcher first read frame k's point minus "
        "the time the writer finished writing frame k (`LiveSeriesWriter.frame_times`; one "
        "machine, one clock). Frame 0 is written first and pays the session's start and "
        "set-up (the process, PONI, mask, pyFAI's lookup table, the series registered); "
        "once the watcher has read it, frames 1.. are written in real time. Load average "
        f"{load0} at the start, "
        f"{_load()} at the end.",
        "",
        "| series | frames | not seen | first frame s | median s (frames 1..) | p95 s | "
        "max s | session only: written_at -> recorded, median / p95 s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "; ".join(notes) + ".",
        "",
    ])
    print(text, flush=True)
    return text


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+",
                        default=["reduction", "profile", "detector", "latency"],
                        choices=["reduction", "profile", "detector", "latency"])
    parser.add_argument("--frames", type=int, default=20, help="frames for the reduction")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--series", type=int, default=64, help="frames for the detector")
    parser.add_argument("--latency-frames", type=int, default=0,
                        help="at most this many frames per latency series (0: the default)")
    parser.add_argument("--record", action="store_true", help="write RESULTS.md")
    args = parser.parse_args()
    parts = [HEADING + "\n", machine_line(),
             f"- **Command:** `python benchmarks/bench_live.py --parts {' '.join(args.parts)}"
             f"{' --record' if args.record else ''}`.", ""]
    for name in args.parts:
        parts.append(globals()[name](args))
    if args.record:
        write_section(HEADING, "\n".join(parts))


if __name__ == "__main__":
    main()
