"""Change points and anomalies on simulated workflow telemetry (issue 15).

A beamline's metric streams, one value every ~10 minutes (a dataset): dataset size
(log-normal around 4 GB), queue wait (log-normal, 4x longer on weekday working hours
8-18 h, sigma 0.4 in log), transfer rate (log-normal, half as fast on weekday working
hours, sigma 0.2) and transfer time (size / rate). Everything goes through
:class:`spotkit.monitor.MetricWatcher` (model of normal + one calibrated CUSUM per stream)
with its defaults; the model first learns two weeks of history (2,016 datasets, as from
the catalog), then the streams are watched (and learned online); a change is injected
600 values into the watch:

- ``queue``: queue waits 3 sigma longer (x e^(3 * 0.4) = x3.3);
- ``transfer``: transfer rates 3 sigma slower (x e^(-3 * 0.2) = x0.55), so times longer;
- ``size``: a file-size regime change, sizes 3 sigma larger (x e^(3 * 0.5) = x4.5). The
  size stream should alarm; transfer time, which follows size, should not (the model
  conditions on size).

Measured, each against a reference in the same run:

1. median detection delay (values from the change to the alarm, inclusive) of the changed
   stream, detection rate, and the one-step -> one-change rate (seeds whose changed stream
   reports exactly one change in the 300 values from the step on), over seeds: conditioned
   model (size, time of day/week) vs an unconditioned one (one bin per stream); the
   one-change rate also with only 200 values of history (the model still young), given to
   the watcher (``MetricWatcher.fit``) as the catalog's history is;
2. false changes per 10,000 values on stationary telemetry with its daily and weekly
   pattern, conditioned vs unconditioned, and of the detector alone on N(0, 1) next to a
   textbook CUSUM (k = 0.5, h = 5, known mean and sigma);
3. microseconds per update: ``ChangeDetector.update`` (the default detector) and a bare
   textbook CUSUM loop in the same interpreter; ``MetricWatcher.update`` (model + detector).

Usage::

    nice python benchmarks/bench_monitor_detect.py [--quick] [--record]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import machine_line, write_section

from spotkit.monitor import BayesianDetector, ChangeDetector, MetricWatcher, NormalModel

HEADING = "## Monitor: change points on simulated telemetry (`benchmarks/bench_monitor_detect.py`)"
DAY = 86400.0
T0 = 1793577600.0  # Monday 2026-11-02 00:00 UTC
SIG = {"queue_wait": 0.4, "transfer_rate": 0.2, "file_size": 0.5}
HISTORY = 2016  # two weeks of datasets learned before watching
CHANGED = {"queue": "queue_wait", "transfer": "transfer_rate", "size": "file_size"}
METRICS = ("queue_wait", "transfer_rate", "transfer_time", "file_size")


CAVEATS = (
    "- **Caveats:** the history is given to the watcher (`MetricWatcher.fit`: the model "
    "learns it, each stream's detector is primed with the out-of-sample residuals of its "
    "last 100 history values), so streams are watched from their first new value. Without "
    "history (the model learning from the first value, a stream watched after 100 values "
    "and a 16-value warm-up) false changes run higher for the first weeks (the row above): "
    "give the watcher the catalog's history. After a change the stream's new values are "
    "held for 64 values (neither scored nor learned), then the model moves to the new level "
    "(a second step inside those 64 values is found when they are checked, if it is at "
    "least 2 sigma; where the model does not know that time of the week yet, it learns "
    "the values instead of moving the stream). With 200 values of history the model's "
    "spread is still wide (1-hour bins of ~8 values), so a 3-sigma step is ~2 model sigmas "
    "and is found later. "
    "transfer_rate and transfer_time share their noise, so their alarms often come in pairs. "
    "MetricWatcher.update (model + detector) costs 100-250 µs on this shared machine, "
    "mostly the bins' medians; the 10 µs target is the detector's (timings move with the "
    "machine's load: compare with the bare loop of the same run). BayesianDetector has no "
    "stated false-alarm rate (its N(0, 1) row): the monitor watches with ChangeDetector and "
    "offers BOCPD for reports and offline series. The simulation is spotkit's own (no "
    "measured telemetry is available here); the detector alone is also checked on N(0, 1) "
    "and on TCPD's measured series (its own section).")


def simulate(n: int, seed: int, scenario: str | None = None, at: int = 0):
    rng = np.random.default_rng(seed)
    t = T0 + 600.0 * np.arange(n) + rng.uniform(0, 60, n)
    hour = (t % DAY) / 3600
    weekday = ((t - T0) // DAY) % 7 < 5
    busy = (hour >= 8) & (hour < 18) & weekday
    size = np.exp(rng.normal(np.log(4e9), SIG["file_size"], n))
    wait = 90.0 * np.where(busy, 4.0, 1.0) * rng.lognormal(0, SIG["queue_wait"], n)
    rate = 6e8 * np.where(busy, 0.5, 1.0) * rng.lognormal(0, SIG["transfer_rate"], n)
    if scenario == "queue":
        wait[at:] *= np.exp(3 * SIG["queue_wait"])
    elif scenario == "transfer":
        rate[at:] *= np.exp(-3 * SIG["transfer_rate"])
    elif scenario == "size":
        size[at:] *= np.exp(3 * SIG["file_size"])
    return {"time": t, "size": size, "queue_wait": wait, "transfer_rate": rate,
            "transfer_time": size / rate, "file_size": size}


def watcher(conditioned: bool) -> MetricWatcher:
    if conditioned:
        return MetricWatcher()
    return MetricWatcher(NormalModel(size_bins=0, hour_bin=24, weekend=False))


def feed(w: MetricWatcher, data, i: int):
    """One dataset's values; returns [(metric, finding)]."""
    t, size = float(data["time"][i]), float(data["size"][i])
    out = []
    for m in METRICS:
        for f in w.update(m, float(data[m][i]), t, size=None if m == "file_size" else size,
                          beamline="8.3.2", target="perlmutter"):
            out.append((m, f))
    return out


def learn_history(w: MetricWatcher, data, n: int) -> None:
    """The catalog's history: the first ``n`` datasets, learned (``MetricWatcher.fit``:
    the model learns them, each stream's detector is primed), not watched."""
    if n == 0:
        return
    rows = {"time": [], "metric": [], "value": [], "size": []}
    for m in METRICS:
        rows["time"] += data["time"][:n].tolist()
        rows["metric"] += [m] * n
        rows["value"] += data[m][:n].tolist()
        rows["size"] += (np.full(n, np.nan) if m == "file_size" else data["size"][:n]).tolist()
    w.fit(pd.DataFrame({**rows, "beamline": "8.3.2", "target": "perlmutter"}))


#: values after the step in which the changed stream should report exactly one change
AFTER = 300


def run_change(scenario: str, seeds: int, conditioned: bool, history: int = HISTORY,
               watched: int = 600):
    at = history + watched
    n = at + AFTER
    delays, missed, before, follow, one = [], 0, 0, 0, 0
    for seed in range(seeds):
        data = simulate(n, 1000 + seed, scenario, at)
        w = watcher(conditioned)
        learn_history(w, data, history)
        hit, count = None, 0
        for i in range(history, n):
            for m, f in feed(w, data, i):
                if f.kind != "change":
                    continue
                if i < at:
                    before += 1
                elif m == CHANGED[scenario]:
                    count += 1
                    hit = i - at + 1 if hit is None else hit
                elif scenario == "size" and m == "transfer_time" and i < at + 200:
                    follow += 1
        one += count == 1
        if hit is None or hit > 200:
            missed += 1
        else:
            delays.append(hit)
    return {"delay": statistics.median(delays) if delays else float("nan"),
            "p90": float(np.percentile(delays, 90)) if delays else float("nan"),
            "rate": len(delays) / seeds, "before": before, "follow": follow,
            "values_before": seeds * (at - history) * len(METRICS), "one": one,
            "seeds": seeds}


def run_stationary(seeds: int, n: int, conditioned: bool, history: bool = True):
    changes = anomalies = 0
    h = HISTORY if history else 0
    for seed in range(seeds):
        data = simulate(n + h, 5000 + seed)
        w = watcher(conditioned)
        learn_history(w, data, h)
        for i in range(h, n + h):
            for _, f in feed(w, data, i):
                if f.kind == "change":
                    changes += 1
                else:
                    anomalies += 1
    values = seeds * n * len(METRICS)
    return changes / values * 1e4, anomalies / values * 1e4


def textbook_cusum_false_alarms(n: int, seeds: int):
    """k = 0.5, h = 5, known N(0, 1): the textbook setting; restart after each alarm."""
    alarms = 0
    for seed in range(seeds):
        rng = random.Random(seed)
        sp = sn = 0.0
        for _ in range(n):
            z = rng.gauss(0.0, 1.0)
            sp = max(0.0, sp + z - 0.5)
            sn = max(0.0, sn - z - 0.5)
            if sp > 5.0 or sn > 5.0:
                alarms += 1
                sp = sn = 0.0
    return alarms / (n * seeds) * 1e4


def detector_false_alarms(n: int, seeds: int):
    alarms = 0
    for seed in range(seeds):
        rng = random.Random(seed)
        det = ChangeDetector()
        for _ in range(n):
            alarms += sum(f.kind == "change" for f in det.update(rng.gauss(0.0, 1.0)))
    return alarms / (n * seeds) * 1e4


def bocpd_on_noise(n: int, seeds: int):
    """BayesianDetector (defaults) on N(0, 1): false changes per 10,000, µs per update."""
    alarms, t_total = 0, 0.0
    for seed in range(seeds):
        rng = random.Random(seed)
        xs = [rng.gauss(0.0, 1.0) for _ in range(n)]
        det = BayesianDetector()
        t0 = time.perf_counter()
        for x in xs:
            alarms += len(det.update(x))
        t_total += time.perf_counter() - t0
    return alarms / (n * seeds) * 1e4, t_total / (n * seeds) * 1e6


def detector_delays(seeds: int):
    """Median delay of each detector alone for a 3-sigma shift of N(0, 1) after 300 values."""
    out = {}
    for name, make in (("ChangeDetector", ChangeDetector), ("BayesianDetector",
                                                              BayesianDetector)):
        delays = []
        for seed in range(seeds):
            rng = random.Random(100 + seed)
            det = make()
            for i in range(400):
                found = det.update(rng.gauss(0.0, 1.0) + (3.0 if i >= 300 else 0.0))
                if any(f.kind == "change" for f in found) and i >= 300:
                    delays.append(i - 300 + 1)
                    break
        out[name] = (statistics.median(delays) if delays else float("nan"),
                     len(delays) / seeds)
    return out


def speed(n: int = 200_000):
    rng = random.Random(0)
    xs = [rng.gauss(0.0, 1.0) for _ in range(n)]
    det = ChangeDetector()
    upd = det.update
    t0 = time.perf_counter()
    for x in xs:
        upd(x)
    det_us = (time.perf_counter() - t0) / n * 1e6

    def textbook(xs):
        sp = sn = 0.0
        for z in xs:
            sp = max(0.0, sp + z - 0.5)
            sn = max(0.0, sn - z - 0.5)
            if sp > 5.0 or sn > 5.0:
                sp = sn = 0.0

    t0 = time.perf_counter()
    textbook(xs)
    tb_us = (time.perf_counter() - t0) / n * 1e6
    data = simulate(5000, 7)
    w = watcher(True)
    t0 = time.perf_counter()
    for i in range(5000):
        feed(w, data, i)
    w_us = (time.perf_counter() - t0) / (5000 * len(METRICS)) * 1e6
    return det_us, tb_us, w_us


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds (~1 min)")
    ap.add_argument("--record", action="store_true", help="write benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    seeds = 8 if args.quick else 20
    st_seeds, st_n = (2, 10_000) if args.quick else (5, 20_000)
    load0 = os.getloadavg()
    lines = [HEADING, "", machine_line(),
             f"- Streams: one value per ~10 min per metric ({', '.join(METRICS)}); history "
             f"{HISTORY:,} values, then watched; change 600 values into the watch, {seeds} "
             f"seeds per scenario; stationary: {st_seeds} x {st_n:,} watched datasets x "
             f"{len(METRICS)} streams. `MetricWatcher()` defaults "
             f"(detector arl 20,000, drift 1, warmup 16; model: 1-h bins, weekday/weekend, "
             f"4 size bins per decade, size slope, window 256, prior 10); unconditioned: "
             f"`NormalModel(size_bins=0, hour_bin=24, weekend=False)`.",
             "",
             "| scenario (3 sigma) | model | median delay (values) | p90 | detected "
             "| one step -> one change | false changes before | transfer_time alarms "
             "after (size) |",
             "|---|---|---|---|---|---|---|---|"]
    results = {}
    for scenario in ("queue", "transfer", "size"):
        for cond in (True, False):
            r = run_change(scenario, seeds, cond)
            results[(scenario, cond)] = r
            lines.append(f"| {scenario} ({CHANGED[scenario]}) | "
                         f"{'conditioned' if cond else 'unconditioned'} | {r['delay']:.0f} | "
                         f"{r['p90']:.0f} | {r['rate']:.0%} | {r['one']}/{r['seeds']} | "
                         f"{r['before']} in {r['values_before']:,} | "
                         f"{r['follow'] if scenario == 'size' else '-'} |")
            print(lines[-1], flush=True)
    for scenario in ("queue", "transfer", "size"):
        r = run_change(scenario, seeds, True, history=200, watched=100)
        results[(scenario, "young")] = r
        lines.append(f"| {scenario} ({CHANGED[scenario]}), 200 values of history, step "
                     f"100 into the watch | conditioned | {r['delay']:.0f} | {r['p90']:.0f} | "
                     f"{r['rate']:.0%} | {r['one']}/{r['seeds']} | {r['before']} in "
                     f"{r['values_before']:,} | "
                     f"{r['follow'] if scenario == 'size' else '-'} |")
        print(lines[-1], flush=True)
    fa_c, an_c = run_stationary(st_seeds, st_n, True)
    fa_u, an_u = run_stationary(st_seeds, st_n, False)
    fa_0, an_0 = run_stationary(st_seeds, st_n // 2, True, history=False)
    fa_det = detector_false_alarms(50_000, 6)
    fa_tb = textbook_cusum_false_alarms(50_000, 6)
    det_us, tb_us, w_us = speed()
    fa_b, b_us = bocpd_on_noise(20_000 if not args.quick else 5_000, 2)
    dd = detector_delays(40)
    lines += ["",
              "| false alarms per 10,000 values | changes | anomalies |", "|---|---|---|",
              f"| telemetry, conditioned model (MetricWatcher default) | {fa_c:.2f} | "
              f"{an_c:.2f} |",
              f"| telemetry, unconditioned model | {fa_u:.2f} | {an_u:.2f} |",
              f"| telemetry, conditioned, no history (online from the first value; "
              f"{st_n // 2:,} per stream) | {fa_0:.2f} | {an_0:.2f} |",
              f"| N(0, 1), ChangeDetector() (arl 10,000, self-starting) | {fa_det:.2f} | - |",
              f"| N(0, 1), textbook CUSUM k=0.5 h=5 (known mean, sigma) | {fa_tb:.2f} | - |",
              f"| N(0, 1), BayesianDetector() (BOCPD, expected run 100, p >= 0.5) | "
              f"{fa_b:.2f} | - |",
              "",
              "| microseconds per update | µs |", "|---|---|",
              f"| ChangeDetector.update (default detector) | {det_us:.2f} |",
              f"| bare textbook CUSUM loop, same interpreter (reference) | {tb_us:.2f} |",
              f"| MetricWatcher.update (model of normal + detector) | {w_us:.1f} |",
              f"| BayesianDetector.update (BOCPD, numpy, run length <= 500) | {b_us:.1f} |",
              "",
              "| detector alone, 3-sigma shift of N(0, 1) after 300 values (40 seeds) "
              "| median delay | detected |", "|---|---|---|"]
    lines += [f"| {k} (defaults) | {v[0]:.0f} | {v[1]:.0%} |" for k, v in dd.items()]
    q = results[("queue", True)]
    worst_delay = max(results[(s, True)]["delay"] for s in ("queue", "transfer", "size"))
    ones = [results[(s, c)] for s in ("queue", "transfer", "size") for c in (True, "young")]
    one_rate = sum(r["one"] for r in ones) / sum(r["seeds"] for r in ones)
    lines += ["",
              f"- **Verdicts** (targets of issue 15): median delay for a 3-sigma shift "
              f"<= 10 values: worst scenario {worst_delay:.0f} -> "
              f"{'PASS' if worst_delay <= 10 else 'FAIL'}; false changes <= 1 per 10,000 "
              f"stationary values: {fa_c:.2f} -> {'PASS' if fa_c <= 1 else 'FAIL'}; "
              f"<= 10 µs per update (detector): {det_us:.2f} -> "
              f"{'PASS' if det_us <= 10 else 'FAIL'}; one step -> one change (conditioned, "
              f"2,016 and 200 values of history, {AFTER} values from the step): "
              f"{one_rate:.0%} of {sum(r['seeds'] for r in ones)} runs. "
              f"Conditioning: on telemetry with a "
              f"daily pattern the unconditioned model raises {fa_u:.2f} false changes per "
              f"10,000 vs {fa_c:.2f}; queue-step delay {q['delay']:.0f} vs "
              f"{results[('queue', False)]['delay']:.0f} values."]
    load1 = os.getloadavg()
    lines.insert(3, f"- **Load** (1/5/15-min averages, 2 shared cores) at the start "
                    f"{load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, at the end "
                    f"{load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}; run under `nice`.")
    lines.append(CAVEATS)
    text = "\n".join(lines)
    print(text)
    if args.record:
        write_section(HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
