"""A second change soon after a first: the online detector re-armed vs the old hold-off.

:class:`spotkit.change.OnlineDetector` used to skip ``holdoff`` (16) frames after a confirmed
change and then learn a new reference over ``warmup`` (8) frames: a second change within
about 28 frames of a first was missed. It now re-arms at once (``holdoff=None``, the
default) from the first ``rearm`` frames after the change's end. Both run here on the same
simulated I(q) profiles, as the live path gives them (with sigma):

* profiles: 300 log-spaced q bins, a power law plus background, counts such that the
  Poisson sigma is known; Gaussian noise of that sigma; the change is a Bragg-like peak at
  q = 1 nm^-1 that grows in steps of ``size`` sigma/bin at its top (sizes 1.0 and 1.5, the
  step sizes of bench_change's band-limited cases), the first step at frame 40, the second
  ``gap`` frames later (5, 10, 15, 20, 30, 50);
* found: an event whose onset is within -2..+8 frames of the true onset (the first and the
  second are matched in turn; any other event is counted as extra); delay = the frame the
  event is confirmed minus the true onset;
* false alarms: events per 10,000 frames on stationary series (no change), and on the
  frames after one true change (a step, then 400 quiet frames: the re-armed detector works
  with a short baseline there), and events beyond the one true change for a 10-frame ramp
  (a re-armed detector must not take the rest of a slow change for a second one); also on
  profiles without sigma (the reference's variance learned from the frames).

Old = ``OnlineDetector(holdoff=16)`` (the previous default behaviour, kept as that option),
new = ``OnlineDetector()``; same series, same seeds, same run.

Usage::

    nice -n 19 python benchmarks/bench_second_change.py --quick    # ~1 min on 2 cores
    nice -n 19 python benchmarks/bench_second_change.py            # ~10 min
    nice -n 19 python benchmarks/bench_second_change.py --record   # and write RESULTS.md
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import machine_line, write_section

from spotkit.change import OnlineDetector

HEADING = "## Online detector: a second change soon after a first (bench_second_change.py)"
GAPS = (5, 10, 15, 20, 30, 50)
SIZES = (1.0, 1.5)
ONSET = 40
AFTER = 40  # frames after the second onset
MODES = {"old (holdoff=16)": {"holdoff": 16}, "new (re-armed)": {}}

Q = np.geomspace(0.05, 3.0, 300)
_LEVEL = 2.0e4 * (Q / 0.05) ** -2.5 + 200.0  # counts per bin
_SIGMA = np.sqrt(_LEVEL)
_PEAK = np.exp(-0.5 * ((Q - 1.0) / 0.1) ** 2)  # unit height at q = 1 nm^-1


def series(rng, n, steps, size, ramp=1):
    """``n`` profiles and their sigma; the peak grows by ``size`` sigma at each onset in
    ``steps`` (over ``ramp`` frames)."""
    amp = np.zeros(n)
    for s in steps:
        amp += np.clip((np.arange(n) - s + 1) / ramp, 0.0, 1.0) * size
    mean = _LEVEL[None, :] + amp[:, None] * _PEAK[None, :] * _SIGMA[None, :]
    sig = np.sqrt(mean)
    return mean + rng.standard_normal(mean.shape) * sig, sig


def run(options, data, sig, *, with_sigma=True):
    det = OnlineDetector(**options)
    for i in range(len(data)):
        det.update(data[i], sigma=sig[i] if with_sigma else None)
    return det.events


def match(events, truths, lo=-2, hi=8):
    """For each true onset the first unmatched event with onset in truth+lo..truth+hi (or
    None); and the events left over."""
    left = list(events)
    out = []
    for t in truths:
        hit = next((e for e in left if t + lo <= e.onset <= t + hi), None)
        if hit is not None:
            left.remove(hit)
        out.append(hit)
    return out, left


def fmt_delay(d):
    if not d:
        return "-"
    d = np.asarray(d)
    return f"{np.median(d):.0f} [{d.min()}, {d.max()}]"


def second_change(n_seeds):
    rows = []
    for size in SIZES:
        for gap in GAPS:
            n = ONSET + gap + AFTER
            stats = {m: {"first": [], "second": [], "onset_ok": 0, "extra": 0, "far": 0,
                         "found1": 0, "found2": 0} for m in MODES}
            for seed in range(n_seeds):
                data, sig = series(np.random.default_rng(seed), n, (ONSET, ONSET + gap), size)
                for m, opts in MODES.items():
                    (e1, e2), extra = match(run(opts, data, sig), (ONSET, ONSET + gap))
                    st = stats[m]
                    st["extra"] += len(extra)
                    st["far"] += sum(min(abs(e.onset - t) for t in (ONSET, ONSET + gap)) > 8
                                     for e in extra)
                    if e1 is not None:
                        st["found1"] += 1
                        st["first"].append(e1.detected_at - ONSET)
                    if e2 is not None:
                        st["found2"] += 1
                        st["second"].append(e2.detected_at - ONSET - gap)
                        st["onset_ok"] += abs(e2.onset - ONSET - gap) <= 1
            rows.append((size, gap, stats))
            logging.info("size %.1f gap %d: %s", size, gap,
                         {m: (s["found1"], s["found2"]) for m, s in stats.items()})
    return rows


def false_alarms(n_series, n_frames, *, steps=(), ramp=1, with_sigma=True, size=1.5):
    """Events beyond the true ones per 10,000 frames watched after the last true onset
    (+ 12 frames: its confirmation), or after the warm-up when there is none."""
    out = {}
    for m, opts in MODES.items():
        extra, frames = 0, 0
        for seed in range(n_series):
            data, sig = series(np.random.default_rng(10_000 + seed), n_frames, steps, size,
                               ramp=ramp)
            events = run(opts, data, sig, with_sigma=with_sigma)
            _, left = match(events, steps, hi=8 + ramp)
            extra += len(left)
            frames += n_frames - (steps[-1] + ramp + 12 if steps else 8)
        out[m] = (extra, frames)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds and frames")
    ap.add_argument("--record", action="store_true", help="write the RESULTS.md section")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("spotkit").setLevel(logging.WARNING)
    n_seeds = 8 if args.quick else 40
    n_fa = (4, 500) if args.quick else (25, 1200)
    t0 = time.perf_counter()
    rows = second_change(n_seeds)
    fa = {
        "stationary, with sigma": false_alarms(*n_fa),
        "after one step (1.5 sigma), with sigma": false_alarms(*n_fa, steps=(ONSET,)),
        "after one 10-frame ramp (1.5 sigma), with sigma": false_alarms(
            *n_fa, steps=(ONSET,), ramp=10),
        "stationary, no sigma": false_alarms(*n_fa, with_sigma=False),
        "after one step (1.5 sigma), no sigma": false_alarms(*n_fa, steps=(ONSET,),
                                                             with_sigma=False),
    }
    total = time.perf_counter() - t0
    old, new = MODES
    lines = [HEADING, "", machine_line(),
             f"- **Command:** `python benchmarks/bench_second_change.py"
             f"{' --quick' if args.quick else ''}`; {n_seeds} seeds per cell; {total:.0f} s.",
             "- **Series:** 300-bin I(q) with its Poisson sigma, a peak at q = 1 nm^-1 growing "
             f"in two steps of the same size (sigma/bin at its top), first at frame {ONSET}, "
             "the second `gap` frames later. Found = an event with onset within -2..+8 "
             "frames of the truth; delay = frame confirmed - true onset, median [min, max]; "
             "onset +-1 = second onsets within one frame; extra = events matched to neither "
             "change (most are one of them with its onset put 3-5 frames early), far = extra "
             "events more than 8 frames from both onsets (false changes).",
             "- **Detectors:** old = `OnlineDetector(holdoff=16)` (the previous default), new "
             "= `OnlineDetector()` (re-armed from the first 4 frames after the change's "
             "end); same series.", "",
             "| size | gap | old: 2nd found | new: 2nd found | old: 2nd delay | new: 2nd delay"
             " | new: 2nd onset +-1 | old: 1st delay | new: 1st delay | extra events old/new "
             "| of which far old/new |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size, gap, st in rows:
        a, b = st[old], st[new]
        lines.append(
            f"| {size} | {gap} | {a['found2']}/{n_seeds} | {b['found2']}/{n_seeds} | "
            f"{fmt_delay(a['second'])} | {fmt_delay(b['second'])} | "
            f"{b['onset_ok']}/{b['found2'] or 1} | {fmt_delay(a['first'])} | "
            f"{fmt_delay(b['first'])} | {a['extra']}/{b['extra']} | {a['far']}/{b['far']} |")
    lines += ["", "False changes per 10,000 frames (events other than the true ones; frames "
              "counted after the warm-up, or after the true change + 12 frames):", "",
              "| series | old | new |", "|---|---|---|"]
    for name, res in fa.items():
        cells = [f"{1e4 * e / f:.1f} ({e} in {f} frames)" for e, f in res.values()]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
