"""Benchmark: what ``LiveSession`` adds per frame, and what a restart after a kill costs.

Two parts, each against a reference measured in the same run:

* **loop**: the live twin writes ``--frames`` frames (``--shape``, HDF5 SWMR) and is followed
  twice: by the bare pieces (``follow_frames`` -> ``FrameReducer.reduce`` -> the online
  detector, nothing recorded: the reference) and by ``LiveSession`` (the same pieces plus the
  catalog points, the ProfileLog rows, the marks, the status). Reported: ms per frame of
  each and the session's own share.
* **resume**: a quiet stretch of ``--stretch`` frames (no change: the online detector's state
  depends on all of them) is followed, the session is killed (abandoned with its ProfileLog
  closed, as a SIGKILL leaves it) and a new one started on the same series; the time from
  the new session's start to its first new frame recorded, with the detector checkpoints
  (the default) against without (the detector rebuilt from every profile of the stretch).
  Frames here come from a fake source (Poisson frames on the twin's geometry) so that the
  stretch is long without minutes of twin writing; the rebuild reads the real ProfileLog.

Usage::

    nice python benchmarks/bench_live_resume.py                  # ~1-2 min
    python benchmarks/bench_live_resume.py --frames 40 --stretch 1200   # smoke
    ... --record        # write the RESULTS.md section
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types
from pathlib import Path

# one OpenMP thread for pyFAI's engine in both the reference and the session: on the 2 shared
# cores its spinning threads make small-frame timings swing 10-50x (say --threads to change)
if "--threads" in sys.argv:
    os.environ["OMP_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section

from spotkit.catalog import open_catalog
from spotkit.io import follow_frames, load_geometry, load_mask
from spotkit.live import LiveSession
from spotkit.scattering import FrameReducer
from spotkit.sim import LiveSeriesWriter

HEADING = "## Live session: loop overhead and resume after a kill (bench_live_resume.py)"


def _reference(path: Path, shape: tuple[int, int]) -> float:
    """ms per frame of the bare pieces: follow_frames -> FrameReducer -> online detector."""
    from spotkit.live._judge import _Judge

    source = follow_frames(path)
    info = source.info
    ai = load_geometry(info.poni_path, shape=shape)
    mask = load_mask(info.mask_path, shape=shape) if info.mask_path else None
    reducer = FrameReducer(ai, npt=300, mask=mask)
    judge = _Judge()
    (f0,) = source.poll(1)  # set-up (the lookup table) untimed, as the session's step(1)
    judge.judge(f0.index, *reducer.reduce(f0.data))
    t0 = time.perf_counter()
    count = 0
    while frames := source.poll(16):
        for f in frames:
            judge.judge(f.index, *reducer.reduce(f.data))
            count += 1
    source.close()
    return (time.perf_counter() - t0) / count * 1e3


def _session(path: Path, db: Path) -> tuple[float, object]:
    """ms per frame of LiveSession on the same series (a fresh catalog)."""
    with open_catalog(db) as cat:
        with LiveSession(path, catalog=cat, ingest=False) as live:
            live.step(1)  # its set-up, untimed
            t0 = time.perf_counter()
            status = live.run(idle_timeout=10)
            return (time.perf_counter() - t0) / (status.done - 1) * 1e3, status


def loop(work: Path, n: int, shape: tuple[int, int], rounds: int = 3) -> dict:
    writer = LiveSeriesWriter(work / "loop.h5", n_frames=n, shape=shape, seed=1)
    writer.write(n)
    ref, ses = [], []
    for k in range(rounds):  # alternated; the best of each (the least disturbed)
        ref.append(_reference(writer.path, shape))
        ms, status = _session(writer.path, work / f"loop{k}.db")
        ses.append(ms)
    return {"frames": n, "shape": shape, "reference_ms": min(ref), "session_ms": min(ses),
            "events": status.events, "rounds": rounds}


class _FakeSource:
    """Poisson frames of the twin's mean frame, handed out as a frame source would."""

    def __init__(self, path, info, mean, n):
        self.path, self.info, self._mean, self._n = path, info, mean, n
        self.next, self.available, self.finished = 0, n, False  # still being written
        self._rng = np.random.default_rng(0)

    @property
    def exhausted(self):
        return self.next >= self._n

    def poll(self, max_frames=None):
        stop = min(self._n, self.next + (max_frames or self._n))
        out = []
        for k in range(self.next, stop):
            data = self._rng.poisson(self._mean).astype(np.int32)
            out.append(types.SimpleNamespace(index=k, data=data, time_s=float(k),
                                             written_at=time.time()))
        self.next = stop
        return out

    def close(self):
        pass


def resume(work: Path, stretch: int, *, checkpoints: bool) -> dict:
    import spotkit.live._checkpoint as checkpoint

    saved = checkpoint.CHECKPOINT_EVERY
    if not checkpoints:
        checkpoint.CHECKPOINT_EVERY = 10**12
    try:
        name = "ck" if checkpoints else "replay"
        writer = LiveSeriesWriter(work / f"{name}.h5", n_frames=2, shape=(97, 121),
                                  transitions=(), seed=3)
        writer.write(2)
        with follow_frames(writer.path) as source:
            first = source.poll()
            info = source.info
        mean = np.clip(first[0].data, 0, None).astype(float)
        with open_catalog(work / f"{name}.db") as cat:
            fake = _FakeSource(writer.path, info, mean, stretch + 100)
            live = LiveSession(fake, catalog=cat, ingest=False)
            while live.cursor < stretch - 1:
                live.step(min(64, stretch - 1 - live.cursor))
            cursor = live.cursor
            live._log.close()  # killed: the OS closes its files, nothing else happens
            fake.next = cursor + 1
            t0 = time.perf_counter()
            again = LiveSession(fake, catalog=cat, ingest=False)
            again.step(1)
            took = time.perf_counter() - t0
            again.close()
        return {"stretch": cursor + 1, "resume_s": took}
    finally:
        checkpoint.CHECKPOINT_EVERY = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--shape", type=int, nargs=2, default=(195, 487))
    parser.add_argument("--stretch", type=int, default=4000)
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS (default 1)")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lp = loop(work, args.frames, tuple(args.shape))
        ck = resume(work, args.stretch, checkpoints=True)
        rp = resume(work, args.stretch, checkpoints=False)
    own = lp["session_ms"] - lp["reference_ms"]
    lines = [
        HEADING, "",
        machine_line(),
        f"- **Command:** `python benchmarks/bench_live_resume.py --frames {args.frames} "
        f"--shape {args.shape[0]} {args.shape[1]} --stretch {args.stretch}` "
        f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}). Load average "
        f"{load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (2 cores shared: "
        "upper bounds).",
        "",
        "| part | reference (same run) | LiveSession | ratio |",
        "|---|---|---|---|",
        f"| loop, {lp['frames']} twin frames {lp['shape'][0]} x {lp['shape'][1]} (HDF5 SWMR; "
        f"best of {lp['rounds']} alternated runs each) "
        f"| {lp['reference_ms']:.2f} ms/frame (follow_frames + FrameReducer + online "
        f"detector, nothing recorded) | {lp['session_ms']:.2f} ms/frame (+ points, ProfileLog, "
        f"marks, status; {lp['events']} changes) | {lp['session_ms'] / lp['reference_ms']:.2f} |",
        f"| resume after a kill, quiet stretch of {ck['stretch']} frames | "
        f"{rp['resume_s']:.2f} s (detector rebuilt from every profile of the stretch) | "
        f"{ck['resume_s']:.2f} s (from its checkpoint + the profiles after it) | "
        f"{ck['resume_s'] / rp['resume_s']:.2f} |",
        "",
        f"- The session's own work: {own:+.2f} ms per frame over the reference.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
