"""Benchmark: a three-day series followed live, at the scale a beamline writes it.

DEDUCE's in-situ runs write about 36,000 images in 3 days. The live twin
(``spotkit.sim.LiveSeriesWriter``, HDF5 SWMR, gzip chunks) writes that many frames in scaled
real time (``--rate`` frames per second of wall time), with changes of the sample
(spheres growing, a peak appearing and moving) and detector pauses, while ``spotkit live``
follows it into a SQLite catalog; ``spotkit live`` is SIGKILLed part-way and started again.

Measured and checked:

* every frame recorded exactly once (features points, frame marks, ProfileLog rows);
* each change: the onset found and the confirmation delay (frames after the change ended),
  against the twin's truth; changes reported that are not in the truth (false alarms);
* the reduction factor (:func:`spotkit.change.reduction_policy` on the changes found);
* ``spotkit live``'s throughput, how far behind it fell, and the latency from a frame
  written to its point recorded (median, p95) in the steady part after the restart caught up;
* references measured in the same run, on the finished file:

  - reading: ``spotkit.io.follow_frames`` over the whole file against h5py reading the
    same frames one by one (the peer of the frame source);
  - computing: pyFAI's own ``integrate1d`` (csr, same bins, mask, Poisson errors) plus
    ``spotkit.change.OnlineDetector`` on each profile, in one process without catalog or
    files: the rate the live path would have with nothing but the science, and its events
    (the live path must find the same ones).

    python benchmarks/bench_live_series.py [--frames 36000] [--rate 60] [--record]
    python benchmarks/bench_live_series.py --folder [--folder-frames 5000] [--record]

``--folder`` measures the other kind of series instead: a folder of CBF frames, read by
``follow_frames`` against fabio reading the same files, and the cost of a poll that finds
nothing new in a folder of thousands of files.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import machine_line, write_section

HEADING = "## Live series: three days followed by spotkit live (bench_live_series.py)"
HOURS = 72


def _changes(n: int):
    from spotkit.sim import Transition

    at = [int(n * f) for f in (0.12, 0.3, 0.5, 0.68, 0.85)]
    return (Transition(at[0], "radius_nm", 6.0, over=6), Transition(at[1], "peak_amplitude",
                                                                  40.0, over=3),
            Transition(at[2], "peak_q_nm", 1.9, over=4), Transition(at[3], "radius_nm", 7.5),
            Transition(at[4], "peak_amplitude", 0.0, over=5))


def _live(path: Path, db: Path, npt: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "spotkit.cli", "live", str(path), "--catalog", str(db),
           "--idle-timeout", "60", "--every", "10", "--npt", str(npt)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _series(db: Path, path: Path) -> dict | None:
    from spotkit.catalog import open_catalog

    if not db.exists():
        return None
    with open_catalog(db) as cat:
        found = [s for s in cat.live_series(active=None) if s.get("path") == str(path)]
    return found[0] if found else None


def _watch(db, path, proc, samples, *, until_frame=None, timeout=3600.0):
    """Sample the live status every 0.5 s until the process ends (or a frame is recorded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        s = _series(db, path)
        if s is not None:
            samples.append((time.monotonic(), int(s.get("last_frame", -1)),
                            int(s.get("behind") or 0), s.get("state")))
            if until_frame is not None and samples[-1][1] >= until_frame:
                return
        time.sleep(0.5)


def _read_reference(path: Path, n: int) -> dict:
    """follow_frames over the finished file against h5py frame by frame (same frames)."""
    import h5py

    from spotkit.io import follow_frames

    ours, peer, total = [], [], 0
    for _ in range(3):  # interleaved, best of three: the machine is shared
        t = time.perf_counter()
        total = 0
        with follow_frames(path) as source:
            while not source.exhausted:
                total += len(source.poll(max_frames=256))
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        with h5py.File(path, "r", locking=False) as f:
            ds = f["entry/data/data"]
            for k in range(n):
                ds[k]
        peer.append(time.perf_counter() - t)
    return {"frames": total, "ours_fps": total / min(ours), "h5py_fps": n / min(peer)}


def _compute_reference(path: Path, poni, mask_path, n: int, npt: int, limit: int) -> dict:
    """pyFAI integrate1d + OnlineDetector in one process: the science alone."""
    import h5py

    from spotkit.change import OnlineDetector
    from spotkit.io import load_geometry, load_mask

    with h5py.File(path, "r", locking=False) as f:
        ds = f["entry/data/data"]
        shape = ds.shape[1:]
        ai = load_geometry(poni, shape=shape)
        mask = load_mask(mask_path, shape=shape) | (ds[0] < 0)  # the file's mask and gaps
        det = OnlineDetector()
        events = []
        ai.integrate1d(ds[0], npt, unit="q_nm^-1", mask=mask, method=("bbox", "csr", "cython"),
                       error_model="poisson", correctSolidAngle=True)  # steady from here
        t = time.perf_counter()
        for k in range(min(n, limit)):
            frame = ds[k]
            res = ai.integrate1d(frame, npt, unit="q_nm^-1", mask=mask,
                                 method=("bbox", "csr", "cython"), error_model="poisson",
                                 correctSolidAngle=True)
            r = det.update(res.intensity, sigma=res.sigma)
            if r.event is not None:
                events.append(int(r.event.onset))
        dt = time.perf_counter() - t
    return {"fps": min(n, limit) / dt, "events": events, "frames": min(n, limit)}


def run(n: int, rate: float, shape: tuple[int, int], npt: int, kill_at: float,
        work: Path, ref_frames: int) -> dict:
    from spotkit.catalog import open_catalog
    from spotkit.change import OnlineDetector, reduction_policy
    from spotkit.live import ProfileLog
    from spotkit.sim import LiveSeriesWriter

    changes = _changes(n)
    interval = HOURS * 3600 / n
    pauses = ((int(n * 0.4), 6 * 3600.0), (int(n * 0.77), 3 * 3600.0))
    writer = LiveSeriesWriter(work / "three_days.h5", n_frames=n, frame_interval_s=interval,
                              shape=shape, transitions=changes, pauses=pauses,
                              time_scale=1.0 / (rate * interval), seed=2026,
                              compression="gzip", overwrite=True)
    db = work / "catalog.db"
    samples: list[tuple[float, int, int, str]] = []
    t0, t0_unix = time.monotonic(), time.time()
    first = _live(writer.path, db, npt)
    writer.start()
    _watch(db, writer.path, first, samples, until_frame=int(kill_at * n))
    killed_at = samples[-1][1] if samples else -1
    first.send_signal(signal.SIGKILL)
    first.wait()
    t_kill = time.monotonic()
    second = _live(writer.path, db, npt)
    _watch(db, writer.path, second, samples)
    out, _ = second.communicate(timeout=600)
    t_end = time.monotonic()
    writer.wait(60)
    writer_s = (writer.frame_times[-1] - t0_unix) if writer.frame_times else float("nan")

    series = _series(db, writer.path)
    assert series is not None, out
    ds = series["dataset_id"]
    with open_catalog(db) as cat:
        features = cat.live_points(ds, kinds="features")
        events = cat.live_points(ds, kinds="event")
        marks = cat.frame_marks(ds)
    with ProfileLog.open(series["profile_log"]) as log:
        rows = np.asarray(log.frames)
    frames = [p.frame for p in features]
    confirm = OnlineDetector().confirm
    found = []
    for c in changes:
        near = [e for e in events if abs(int(e.values["onset"]) - c.frame) <= 8]
        found.append((c, near[0] if near else None))
    false = [e for e in events if all(e is not m for _, m in found)]
    plan = reduction_policy([(e.values["onset"], e.values["end"]) for e in events], n_frames=n)
    # latency in the steady part: after the restart had caught up with the writer
    caught = next((t for t, _, behind, state in samples if t > t_kill and behind <= 2
                   and state in ("following", "waiting")), None)
    t_caught_unix = None if caught is None else time.time() - (time.monotonic() - caught)
    lat_all = [p.recorded_at - p.written_at for p in features
               if p.recorded_at is not None and p.written_at is not None]
    lat = [p.recorded_at - p.written_at for p in features
           if p.recorded_at is not None and p.written_at is not None
           and t_caught_unix is not None and p.written_at >= t_caught_unix]
    read_ref = _read_reference(writer.path, n)
    comp_ref = _compute_reference(writer.path, writer.truth.poni_path,
                                  writer.truth.mask_path, n, npt, limit=ref_frames)
    live_events = [int(e.values["onset"]) for e in events
                   if int(e.values["onset"]) < comp_ref["frames"] - 2 * confirm]
    return {
        "n": n, "shape": shape, "rate": rate, "npt": npt,
        "file_mb": writer.path.stat().st_size / 2**20,
        "writer_s": writer_s, "wall_s": t_end - t0,
        "killed_at": killed_at, "resumed": "resuming" in out,
        "exactly_once": frames == list(range(n)),
        "marks_once": [m["frame"] for m in marks] == list(range(n)),
        "rows_once": bool(np.array_equal(rows, np.arange(n))),
        "found": [(c.frame, c.end, c.parameter,
                   None if e is None else int(e.values["onset"]),
                   None if e is None else int(e.frame) - c.end) for c, e in found],
        "confirm": confirm, "false": [int(e.values["onset"]) for e in false],
        "reduction_factor": series.get("reduction_factor"),
        "policy_factor": plan.reduction_factor,
        "max_behind": max((b for _, _, b, _ in samples), default=0),
        "states": sorted({s for _, _, _, s in samples if s}),
        "live_fps_after_restart": (n - killed_at - 1) / max(t_end - t_kill, 1e-9),
        "rate_hz": series.get("rate_hz"),
        "lat_n": len(lat),
        "lat_median": statistics.median(lat) if lat else None,
        "lat_p95": float(np.percentile(lat, 95)) if lat else None,
        "lat_all_median": statistics.median(lat_all) if lat_all else None,
        "read": read_ref, "compute": comp_ref,
        "same_events": live_events == comp_ref["events"],
        "live_events": live_events,
        "ingested": series.get("ingested_as"), "state": series.get("state"),
    }


def report(r: dict, load: str) -> str:
    found = "; ".join(
        f"{p} at {f}" + (" (ramp to " + str(end) + ")" if end != f else "")
        + (": MISSED" if onset is None else f": onset {onset}, confirmed "
           + (f"{delay} frame(s) after the change ended" if delay >= 0 else
              f"{-delay} frame(s) before the ramp ended"))
        for f, end, p, onset, delay in r["found"])
    lines = [
        HEADING, "",
        machine_line(),
        f"- **Load:** {load}",
        f"- **Series:** {r['n']} frames of {r['shape'][0]} x {r['shape'][1]} int32 (gzip, "
        f"{r['file_mb']:.0f} MiB), one per {HOURS * 3600 / r['n']:.1f} s of acquisition "
        f"({HOURS} h), written by the twin at {r['rate']:g} frames/s (HDF5 SWMR) with two "
        f"detector pauses (6 h, 3 h of acquisition time); I(q) in {r['npt']} bins; "
        f"default OnlineDetector.",
        f"- **Run:** writer done after {r['writer_s']:.0f} s, everything recorded after "
        f"{r['wall_s']:.0f} s; `spotkit live` SIGKILLed after frame {r['killed_at']} and "
        f"started again (resumed: {r['resumed']}). States seen: {', '.join(r['states'])}; "
        f"at most {r['max_behind']} frames behind.",
        f"- **Every frame once:** features points {r['exactly_once']}, frame marks "
        f"{r['marks_once']}, ProfileLog rows {r['rows_once']}.",
        f"- **Changes (truth vs found):** {found}. Stated delay: the alarm by the end of the "
        f"change, confirmed {r['confirm']} frames later. False alarms: "
        f"{r['false'] or 'none'}.",
        f"- **Reduction factor:** {r['reduction_factor']:.1f} (reduction_policy on the "
        f"changes found: {r['policy_factor']:.1f}).",
        f"- **Throughput:** after the restart {r['live_fps_after_restart']:.0f} frames/s "
        + ("(never caught up: the follower's ceiling; live/reference "
           f"{r['live_fps_after_restart'] / r['compute']['fps']:.2f})"
           if r["lat_median"] is None else "(it caught up and then followed the writer: its "
           "ceiling is not reached at this rate)")
        + f"; the session's last reported rate {r['rate_hz'] or 0:.0f} frames/s. Reference in "
        f"the same run, on the finished file, in one process: pyFAI's steady integrate1d "
        f"(csr, poisson, same bins and mask) + OnlineDetector on the first "
        f"{r['compute']['frames']} frames {r['compute']['fps']:.0f} frames/s; same changes "
        f"found there: {r['same_events']} ({r['live_events']} vs {r['compute']['events']}).",
        "- **Latency** (frame written to its point recorded"
        + (": the session never caught up with the writer after the restart (median over "
           f"all frames, backlog included: {r['lat_all_median'] or 0:.0f} s)."
           if r["lat_median"] is None else
           f", {r['lat_n']} frames after the restart caught up): median "
           f"{r['lat_median']:.2f} s, p95 {r['lat_p95']:.2f} s."),
        f"- **Frame source vs h5py** (the finished file, same frames, best of 3): follow_frames "
        f"{r['read']['ours_fps']:.0f} frames/s, h5py one by one {r['read']['h5py_fps']:.0f} "
        f"frames/s (ratio {r['read']['ours_fps'] / r['read']['h5py_fps']:.2f}).",
        f"- **Ingested** at the end as {r['ingested']} (state {r['state']}).",
    ]
    return "\n".join(lines) + "\n"


FOLDER_HEADING = "## Live series: following a folder of CBF frames (bench_live_series.py --folder)"


def run_folder(n: int, shape: tuple[int, int], work: Path) -> dict:
    """follow_frames over a folder of CBF files against fabio reading the same files."""
    import fabio

    from spotkit.io import follow_frames
    from spotkit.sim import LiveSeriesWriter

    writer = LiveSeriesWriter(work / "run_cbf", n_frames=n + 1, fmt="cbf", shape=shape,
                              overwrite=True)
    t = time.perf_counter()
    writer.write(n)  # the last frame is never written: the series is still open
    write_s = time.perf_counter() - t
    files = sorted((work / "run_cbf").glob("frame_*.cbf"))
    ours, peer, idle, listing = [], [], [], []
    for _ in range(3):  # interleaved, best of three
        t = time.perf_counter()
        source = follow_frames(writer.path)
        total = 0
        while got := source.poll(256):
            total += len(got)
        ours.append(time.perf_counter() - t)
        assert total == n
        t = time.perf_counter()
        for f in files:
            fabio.open(str(f)).data  # noqa: B018 - the read is what is timed
        peer.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(50):
            source.poll()
        idle.append((time.perf_counter() - t) / 50)
        t = time.perf_counter()
        for _ in range(10):
            source._scanned_at = 0.0  # force the once-a-second listing
            source.poll()
        listing.append((time.perf_counter() - t) / 10)
        source.close()
    return {"n": n, "shape": shape, "write_fps": n / write_s, "ours_fps": n / min(ours),
            "fabio_fps": n / min(peer), "idle_ms": 1e3 * min(idle),
            "listing_ms": 1e3 * min(listing),
            "bytes": files[0].stat().st_size}


def report_folder(r: dict, load: str) -> str:
    return "\n".join([
        FOLDER_HEADING, "",
        machine_line(),
        f"- **Load:** {load}",
        f"- **Folder:** {r['n']} CBF frames of {r['shape'][0]} x {r['shape'][1]} int32 "
        f"({r['bytes'] / 1024:.0f} KiB each, byte-offset compressed, written by the twin in "
        f"two pieces each at {r['write_fps']:.0f} frames/s), the series still open.",
        f"- **Reading every frame** (best of 3, interleaved): `follow_frames` "
        f"{r['ours_fps']:.0f} frames/s (each file checked complete from its header, then read "
        f"by fabio), fabio alone on the same files {r['fabio_fps']:.0f} frames/s (ratio "
        f"{r['ours_fps'] / r['fabio_fps']:.2f}).",
        f"- **A poll with nothing new** in the folder of {r['n']} files: "
        f"{r['idle_ms']:.2f} ms; the folder is listed again only when its mtime moves (a "
        f"file appears) or once a second: a listing costs {r['listing_ms']:.1f} ms.",
    ]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=36000)
    ap.add_argument("--rate", type=float, default=60.0,
                    help="writer frames per wall second (60: 72 h in 10 min)")
    ap.add_argument("--shape", type=int, nargs=2, default=(64, 96))
    ap.add_argument("--npt", type=int, default=300)
    ap.add_argument("--kill-at", type=float, default=0.45)
    ap.add_argument("--ref-frames", type=int, default=6000,
                    help="frames of the in-process pyFAI + detector reference")
    ap.add_argument("--load", default="not measured", help="what else ran (for RESULTS.md)")
    ap.add_argument("--record", action="store_true", help="write the RESULTS.md section")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--folder", action="store_true",
                    help="only the frame-folder part (follow_frames vs fabio, idle polls)")
    ap.add_argument("--folder-frames", type=int, default=5000)
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-live-series-"))
    work.mkdir(parents=True, exist_ok=True)
    load = f"{args.load}; load average at start {os.getloadavg()[0]:.1f}"
    if args.folder:
        rf = run_folder(args.folder_frames, tuple(args.shape), work)
        text = report_folder(rf, load + f", at end {os.getloadavg()[0]:.1f}")
        sys.stdout.write(text)
        if args.record:
            write_section(FOLDER_HEADING, text)
        return 0
    r = run(args.frames, args.rate, tuple(args.shape), args.npt, args.kill_at, work,
            args.ref_frames)
    text = report(r, load + f", at end {os.getloadavg()[0]:.1f}")
    sys.stdout.write(text)
    if args.record:
        write_section(HEADING, text)
    ok = r["exactly_once"] and r["marks_once"] and r["rows_once"] and all(
        f[3] is not None for f in r["found"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
