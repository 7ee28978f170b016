"""spotkit's change detector on the Turing Change Point Detection benchmark (issue 15).

TCPD (van den Burg & Williams 2020, "An Evaluation of Change Point Detection Algorithms",
github.com/alan-turing-institute/TCPD) is 42 real series annotated by five people each. The
paper's "default" experiment runs every method with its default settings; its univariate
table averages, over the univariate series except the five quality-control ones, the F1
score (margin 5, precision against all annotations pooled, recall averaged over annotators,
``0`` always counted as a change point) and the segmentation cover (averaged over
annotators). Published there: binseg 0.744 / 0.706, PELT 0.710 / 0.689, BOCPD 0.690 /
0.636, "zero" (no change) 0.669 / 0.583 (F1 / cover).

This benchmark implements those two metrics and the location clean-up of the paper's
``summarize.py`` (drop 0 and ``n - 1``, deduplicate) itself, loads each series as TCPDBench
does (z-scored), and runs in the same process, with the same metrics:

- ``spotkit``: :func:`spotkit.monitor.find_changes` with its DEFAULT settings (the offline
  form of the online :class:`spotkit.monitor.ChangeDetector`: a two-sided CUSUM calibrated
  for one false alarm per 10,000 samples), on every series, untuned;
- ``spotkit BayesianDetector (defaults)``: :func:`spotkit.monitor.bayesian_changes`
  (BOCPD, online) with its defaults (since 2026-12-05: trend segments and random walks with
  drift, model-averaged, prior from robust statistics), chosen among six segment-model
  candidates on a simulated suite extended with random walks and strong cycles
  (``--choose N``), blind to TCPD; variant rows: the 2026-12-04 defaults (trend segments,
  chosen by leave-one-series-out cross-validation on these series: its LOSO table is
  rebuilt), the paper's BOCPD (mean segments, Normal-Gamma prior 0, 1, 1, 1 on z-scored
  data: the defaults before) and the first simulated suite's choice (trend + AR(1) weight);
- ``spotkit bayesian_segment (defaults)``: :func:`spotkit.monitor.bayesian_segment`, the
  exact MAP segmentation under BayesianDetector's model (offline), defaults chosen against
  the online detector on fresh simulated series (seed 14), blind to TCPD;
- ``spotkit segment (defaults)``: :func:`spotkit.monitor.segment`, the offline method
  (penalised Gaussian mean shifts, MBIC, noise scale from robust differences with AR(1)
  long-run variance, winsorised at 3 sigma around a running median, min_size 5), defaults;
- ``zero``: no change points (the paper's baseline);
- ``binseg`` and ``pelt`` (if ``ruptures`` is installed): the paper's default settings of R
  changepoint's ``cpt.mean`` rebuilt on ruptures: Gaussian mean change (L2 cost on the
  z-scored series), MBIC penalty (``3 log n`` per change plus ``log`` of each segment's
  length), BinSeg with at most Q = 5 changes, PELT exact.

The data: the series in the TCPD repository as it is (32 of 42 ship their JSON; the
others are built by scripts from web sources not reachable here). Pass the folder that
holds ``annotations.json`` and ``<name>.json`` files::

    python benchmarks/bench_tcpd.py /path/to/tcpd_json [--record] [--simulated 1000]
    SPOTKIT_TCPD=/path/to/tcpd_json python benchmarks/bench_tcpd.py

``--simulated N`` also scores BayesianDetector's 12-04 candidate settings (and the other
methods) on N series of the first simulated suite (``benchmarks/_tcpd_sim.py``, seed 11);
``--choose N`` the six segment-model candidates on N series of the extended suite (seed 12:
the defaults' choice, blind to TCPD) and the walk gate on N fresh ones (seed 13); ``--loso``
the leave-one-series-out choice among the six on TCPD.

Averages are over the univariate, non-QC series present (complete-case analysis, as the
paper: ``uk_coal_employ`` has missing values and is left out of the main average; it is
shown separately).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import machine_line, write_section
from _tcpd_sim import (
    GATE_MODELS,
    GATE_SEED,
    OFFLINE_MODELS,
    OFFLINE_SEED,
    SEGMENT_MODELS,
    choose,
    clean,
    covering,
    f_measure,
    onsets,
    suite,
)

from spotkit.monitor import (
    BayesianDetector,
    ChangeDetector,
    bayesian_changes,
    bayesian_segment,
    find_changes,
    segment,
)

HEADING = "## Change points on TCPD (`benchmarks/bench_tcpd.py`)"
QC = {f"quality_control_{i}" for i in range(1, 6)}
MISSING = {"uk_coal_employ"}
SEGMENT = "spotkit segment (defaults)"
BOCPD = "spotkit BayesianDetector (defaults: trend + llt averaged, chosen on simulated series)"
BOCPD_1204 = "spotkit BayesianDetector (variant: 12-04 defaults, trend; LOSO-chosen on TCPD)"
BOCPD_OLD = "spotkit BayesianDetector (variant: paper's BOCPD, defaults before 12-04)"
BOCPD_SIM = "spotkit BayesianDetector (variant: simulated suite's choice, AR(1) weight)"
BSEG = "spotkit bayesian_segment (defaults: offline MAP, chosen on simulated series)"
#: spotkit's methods with their default settings (the variant row is not a default)
DEFAULTS = ("spotkit", BOCPD, SEGMENT, BSEG)
PAPER = {"binseg": (0.744, 0.706), "pelt": (0.710, 0.689), "bocpd": (0.690, 0.636),
         "zero": (0.669, 0.583)}


# -- data ---------------------------------------------------------------------------------
def load(folder: Path):
    ann = json.loads((folder / "annotations.json").read_text())
    out = {}
    for p in sorted(folder.glob("*.json")):
        if p.name == "annotations.json":
            continue
        d = json.loads(p.read_text())
        if d["n_dim"] != 1 or d["name"] in QC:
            continue
        if d["time"]["index"] != list(range(d["n_obs"])):
            continue  # TCPDBench refuses these too
        raw = np.array([np.nan if v is None else v for v in d["series"][0]["raw"]], float)
        y = (raw - np.nanmean(raw)) / np.sqrt(np.nanvar(raw, ddof=1))  # as load_dataset
        out[d["name"]] = (y, ann[d["name"]])
    return out


# -- methods ------------------------------------------------------------------------------
def run_spotkit(y):
    return [f.detail["onset_index"] for f in find_changes(y)]


def run_spotkit_noclip(y):
    """A variant, not the default: z enters the CUSUM clipped only at the anomaly level."""
    return [f.detail["onset_index"] for f in find_changes(y, clip=ChangeDetector().anomaly)]


def run_spotkit_bocpd(y):
    """spotkit's other detector, BayesianDetector, with its defaults."""
    return [f.detail["onset_index"] for f in bayesian_changes(y)]


#: BayesianDetector's candidate settings, fixed before any TCPD run with them (the former
#: defaults are the paper's BOCPD on z-scored data); "rho": None estimates the AR(1) weight
PAPER_PRIOR = {"noise": 1.0, "center": 0.0, "spread": 1.0}
SIM_CHOICE = "trend, robust prior, AR(1) weight (simulated suite's choice)"
CANDIDATES = {
    "mean, paper prior (former defaults)": {"model": "mean", "mean": 0.0, "kappa": 1.0,
                                            "beta": 1.0, "rho": 0.0},
    "mean, robust prior": {"model": "mean"},
    "mean, robust prior, AR(1) weight": {"model": "mean", "rho": None},
    "trend, paper prior": {"model": "trend", **PAPER_PRIOR},
    "trend, paper prior, AR(1) weight": {"model": "trend", **PAPER_PRIOR, "rho": None},
    "trend, robust prior (12-04 defaults: the LOSO choice)": {"model": "trend"},
    SIM_CHOICE: {"model": "trend", "rho": None},
}


def update_cost(n: int = 3000, seed: int = 3) -> list[str]:
    """µs per update (steady state: run length up to 500) of BayesianDetector's models."""
    x = np.random.default_rng(seed).normal(0, 1, n).tolist()
    rows = []
    for name, make in (
            ("ChangeDetector (CUSUM, the monitor's default; reference)", ChangeDetector),
            *((f"BayesianDetector, {k}", lambda o=o: BayesianDetector(**o))
              for k, o in SEGMENT_MODELS.items())):
        det = make()
        for v in x[:600]:  # past the warm-up and up to the longest run length
            det.update(v)
        t0 = time.perf_counter()
        for v in x[600:]:
            det.update(v)
        rows.append(f"| {name} | {1e6 * (time.perf_counter() - t0) / (n - 600):.1f} |")
    return ["Cost per update on N(0, 1) after 600 values (run length up to 500; this run):",
            "", "| detector | µs per update |", "|---|---|", *rows]


def run_spotkit_bocpd_1204(y):
    """BayesianDetector with the 2026-12-04 defaults (a variant row, not a default)."""
    return onsets(y, model="trend")


def run_spotkit_bocpd_old(y):
    """BayesianDetector with its former defaults (a variant row, not a default)."""
    opts = CANDIDATES["mean, paper prior (former defaults)"]
    return [f.detail["onset_index"] for f in bayesian_changes(y, **opts)]


def run_spotkit_bocpd_sim(y):
    """BayesianDetector with the simulated suite's choice (a variant row, not a default)."""
    return [f.detail["onset_index"] for f in bayesian_changes(y, **CANDIDATES[SIM_CHOICE])]


def run_spotkit_segment(y):
    """spotkit's offline method, segment(), with its defaults."""
    return [f.detail["onset_index"] for f in segment(y)]


def run_spotkit_bseg(y):
    """The exact MAP segmentation under BayesianDetector's model, bayesian_segment(), defaults."""
    return [f.detail["onset_index"] for f in bayesian_segment(y)]


def run_zero(y):
    return []


def _mbic_cost():
    import ruptures as rpt

    class CostMBIC(rpt.costs.CostL2):
        """Gaussian mean change with unit variance plus MBIC's log(segment length)."""

        model = "l2_mbic"

        def error(self, start, end):
            return super().error(start, end) + math.log(end - start)

    return CostMBIC


def run_binseg(y):
    import ruptures as rpt

    n = len(y)
    cost = _mbic_cost()()
    algo = rpt.Binseg(custom_cost=cost, min_size=1, jump=1).fit(y)
    best, best_v = [], cost.error(0, n)
    for q in range(1, min(5, n - 1) + 1):
        bk = algo.predict(n_bkps=q)
        v = sum(cost.error(a, b) for a, b in zip([0, *bk[:-1]], bk, strict=True))
        v += 3 * math.log(n) * q
        if v < best_v:
            best, best_v = bk[:-1], v
    return best


def run_pelt(y):
    import ruptures as rpt

    n = len(y)
    bk = rpt.Pelt(custom_cost=_mbic_cost()(), min_size=1, jump=1).fit(y).predict(
        pen=3 * math.log(n))
    return bk[:-1]


SEGMENT_NOTE = (
    "- **segment(), honestly:** `segment(y)` (engineer H10) is the offline method: Gaussian "
    "mean shifts, MBIC penalty (Zhang & Siegmund 2007, in R changepoint's default form: "
    "3 log n per change + log of each segment's length), optimal partitioning with PELT "
    "pruning over seeded-binary-segmentation candidates, then each change moved to the best "
    "split between its neighbours. Its defaults come from principle, not from TCPD: the "
    "noise scale is estimated from the MADs of lag-1 and lag-2 differences (robust to the "
    "changes themselves), as the AR(1) long-run variance v (1 + rho) / (1 - rho), rho "
    "capped at 0.95 as in ChangeDetector (so autocorrelated noise is not cut into levels); "
    "values winsorised at 3 noise sigmas around a running median of min_size values "
    "(isolated outliers cannot make a segment); min_size 5 (a level must last 5 values; "
    "shorter is a burst). Method, defaults and tests (simulated series only) were fixed "
    "before its first TCPD run. TCPD runs looked at for segment(): RUNS_SEEN, so it is "
    "**developed in view of TCPD**: run 1 took the differences' MADs about their median "
    "(meant to discount trends) and scored F1 0.596 / cover 0.541, below zero, with "
    "staircases of 28-63 changes on smooth trending series (bank, children_per_woman, "
    "us_population); one design change followed, for a reason that holds off TCPD too: "
    "the mean-shift model has no trends, so the differences' scale is taken about zero (their "
    "median under the model) and a trend counts as noise instead of being discounted and "
    "then cut into steps. Run 2 (this method): F1 0.605 / cover 0.567, still below zero; the "
    "staircase shrank on us_population (63 -> 15 changes) but not on bank (35 -> 33). Run "
    "3 is the recording run of the same method. No number (penalty, min_size, clip, cap) "
    "was changed or searched, and the method was not changed again after run 2: it is "
    "sensitive by design (its noise scale is the small-scale noise, as suits telemetry), "
    "where the ruptures peers' sigma = 1 on the z-scored series (the overall spread, "
    "changes included) makes them conservative, which TCPD's sparse annotations reward.")
#: how many TCPD runs of segment() its author looked at (each one counts, this included)
RUNS_SEEN = 3
BOCPD_NOTE = (
    "- **BayesianDetector, honestly** (history: engineer A, 2026-12-04; the defaults "
    "since 12-05 are in the next item): three changes made on "
    "principle: (1) **trend segments**: each segment a Bayesian linear regression (level "
    "and slope, normal-inverse-gamma prior, rank-one recursive update, Student-t "
    "predictive), so a steady trend is one segment, not a staircase; (2) the **prior of a "
    "new segment from robust statistics of the series** (empirical Bayes): the noise sd "
    "from the MADs of the lag-1 and lag-2 differences about their medians (the AR(1) "
    "marginal variance), the level around the median with the series' sd, the slope around "
    "0 with one sd per expected run; (3) an optional **AR(1) weight**: each value's "
    "evidence times (1 - rho) / (1 + rho), the effective number of independent values per "
    "value of AR(1) noise (a power likelihood; rho from the same differences, capped at "
    "0.95). Unchanged: hazard 1/100, threshold 0.5, confirm 3, the reporting rule, max_run "
    "500. Seven candidate settings (the tables below) were fixed before any TCPD run with "
    "them. **TCPD run 1, blind:** the candidate best on 1,000 simulated annotated series "
    "(`benchmarks/_tcpd_sim.py`, seed 11: level shifts, kinks of trend, jumps on trends, "
    "smooth trends, variance changes; Gaussian, AR(1) and Student-t noise, seasonal cycles, "
    "outliers; 20-800 values; TCPD's own F1 and cover), trend + robust prior + AR(1) weight "
    "(simulated F1 0.763 vs 0.735 for the former defaults), was made the default and run "
    "once: **F1 0.692 / cover 0.597**, below the former defaults' 0.734 / 0.653 in the same "
    "run -> FAIL; the simulated suite did not transfer: rho came out at its 0.95 cap on 20 "
    "of the 26 series (random-walk-like, trending and seasonal series: the suite had no "
    "random walks), so the weight (0.026) left the detector almost blind there (no change "
    "on 21 series). **TCPD run 2:** leave-one-series-out cross-validation (LOSO) among the "
    "same seven candidates, each series scored with the candidate best on the other 24: "
    "**held-out F1 0.722 / cover 0.613**; chosen: trend + robust prior in 22 folds, trend + "
    "paper prior in 3. The defaults are now the LOSO choice on all 25 (trend segments, "
    "robust prior, no AR(1) weight: `rho=None` turns it on); **their row in the table is "
    "in-sample** (chosen on these very series) and is not an honest score: the honest "
    "estimate for the final defaults is the LOSO held-out F1, and the verdict uses it. "
    "**Honest reading:** the LOSO estimate (0.722) is below the former defaults' 0.734 "
    "(their first, blind run): choosing among these candidates on TCPD is not shown to "
    "beat the former defaults there, and trend + robust prior's in-sample lead over trend "
    "+ paper prior is undone by leaving out any one of 3 series (the 3 folds that chose "
    "otherwise). The new defaults "
    "are kept for reasons that do not rest on TCPD: the prior is in the series' own units "
    "(the former prior, noise 1 around 0, assumes z-scored data, which an online detector "
    "on raw telemetry does not have), a steady trend is one segment, and on the simulated "
    "suite they score 0.743 vs 0.735. "
    "Before all this, exploratory runs on 500 other simulated series (seeds 20261204 and 7) "
    "also tried reporting a change however late the most probable run length moves to it "
    "(many more changes on trends and curved series: rejected, the former rule kept) and a "
    "minimum gap of 5 values between changes (no effect: dropped). TCPD runs looked at for "
    "BayesianDetector: the earlier sessions' runs (at least 4, all with the former, "
    "unchanged settings: 0.734) and BOCPD_RUNS this session (run 3 = this recording run, "
    "nothing changed after run 2; the tables are deterministic).")
#: TCPD runs with BayesianDetector's 12-04 settings looked at (each one counts)
BOCPD_RUNS = 3
H_NOTE = (
    "- **BayesianDetector, random-walk segments, honestly** (engineer H, 2026-12-05): the "
    "12-04 defaults' trend segments have i.i.d. noise, so a wandering level is cut into "
    "pieces, and the simulated suite had no random walks (the reason its choice did not "
    "transfer). On principle, each segment is now a linear Gaussian state-space model with "
    "unknown noise variance (NIG prior, every variance in units of sigma^2, so the Kalman "
    "filter stays conjugate and vectorised over run lengths): besides `mean` and `trend` "
    "(their findings unchanged, checked to the last digit on 60 simulated series), a local "
    "level (`level`: the level a random walk with innovation variance q sigma^2 under noise "
    "sigma^2) and a local level with a drift (`llt`), q and the walk's noise from the same "
    "robust differences (R = Var(d2) / Var(d1) capped at 1.95, q = 2 (R - 1) / (2 - R), "
    "sigma^2 = Var(d1) / (q + 2)); and Bayesian model averaging (`model=(...)`: each new "
    "segment one of the models with equal prior probability, the run-length posterior "
    "summed over them). Unchanged: hazard 1/100, threshold 0.5, confirm 3, the reporting "
    "rule, max_run 500, the robust prior. The simulated suite was extended, before any "
    "detector ran on it, with random walks that jump and level jumps under strong cycles "
    "(periods 4-24). Six candidates and the rule (best mean F1 on 700 series of the extended "
    "suite, seed 12; ties within 0.002 to the simpler) were written down before any run: "
    "the choice, trend + llt averaged, scored 0.784 there vs 0.729 for the 12-04 defaults "
    "(table below). **TCPD run 8 (the first of this session), blind: F1 0.744 / cover "
    "0.646 -> FAIL** (below 0.75), although above the 12-04 defaults' honest (LOSO) 0.722, "
    "the paper's BOCPD 0.734, binseg 0.690 and zero 0.647 in the same run. The suite again "
    "transferred only in part: on TCPD the averaged model is more conservative than trend "
    "segments alone (series better / worse / equal than the 12-04 defaults: WINS). The "
    "defaults are kept as chosen (the rule written before the run). Then, for telemetry, not "
    "TCPD: online, the default missed a 3-sigma step in i.i.d. noise in some seeds (the "
    "plug-in walk estimate, from a noisy ratio of MADs, is above 0 by chance and the walk "
    "absorbs part of the jump); a gate (a walk only when the ratio exceeds 1 by two of its "
    "null sds, about 3 / sqrt(n) by simulation) and the rule (the gate unless it loses "
    "more than 0.002 of F1 on 700 fresh series of the extended suite, seed 13) were written "
    "down before its run: it lost (table below: 0.751 vs 0.790; steps found 40/40 vs "
    "34/40), so the plug-in estimate stays the default and the gate is an option "
    "(`walk_gate=2`); no TCPD run was made with it. The defaults have not changed since run "
    "8. TCPD runs looked at in all: 7 before this session (RESULTS history) + H_RUNS this "
    "session: run 8 blind; run 9 its recording run, which added the leave-one-series-out "
    "choice among the six candidates (its table below, first seen in run 9: its held-out "
    "score is what choosing them on TCPD would give, reported, not used to change the "
    "defaults); run 10 this recording run (F1 and cover are deterministic: unchanged).")
#: TCPD runs engineer H looked at this session (each one counts, this included)
H_RUNS = 3
BSEG_NOTE = (
    "- **bayesian_segment, honestly** (lead, 2026-12-05, second session): the online "
    "detector decides value by value (a kink is reported only once it is sure, an outlier "
    "or a bend of a walk can make a change before later values explain it away); a whole "
    "series can be read both ways. `bayesian_segment(y)` is the exact maximum a posteriori "
    "segmentation under the detector's own model (the same segment models averaged, the "
    "same empirical-Bayes prior, hazard 1/100): dynamic programming over the marginal "
    "likelihood of every segment (Fearnhead 2006), each from the detector's Kalman "
    "recursion; tested against exhaustive enumeration with the closed-form "
    "normal-inverse-gamma marginal. Four candidates and the rule were written down before "
    "any of them ran (the online defaults listed first, winning ties within 0.002; 700 "
    "fresh series of the extended suite, seed 14, never used before; table below): the "
    "choice, MAP with min_size 5 and values winsorised at 3 noise sds around a running "
    "median of 5 (as segment() does), scored **0.835 there vs 0.788 for the online "
    "defaults**, and became bayesian_segment's defaults. **TCPD run 11, blind: F1 0.707 / "
    "cover 0.617 -> FAIL**, below the online defaults' 0.744 in the same run (above "
    "binseg, PELT, zero and segment()). The simulated suite transferred to TCPD a fourth "
    "time only in part: on real series the exact MAP finds more of the changes the "
    "annotators did not mark (series better / worse / equal than the online defaults: "
    "BSEG_WINS). The verdict stays with the online defaults; bayesian_segment is kept as "
    "the offline Bayesian method for reports (`spotkit monitor changes --method bayes`) "
    "for what it does better off TCPD (a kink placed where it began, an outlier never a "
    "change, posterior confidences). **No further TCPD run will choose or change a "
    "default:** 12 runs have been looked at (run 12 this recording run; F1 and cover are "
    "deterministic; recorded twice, the second time to fix a candidate's options in the "
    "table, with identical TCPD numbers), and the per-series results of all of them are "
    "known (e.g. `bank`, "
    "a monthly sawtooth the annotators left unmarked, costs every sensitive method about "
    "0.04 of the mean F1), so any further change would be tuned to these 25 series.")


def loso(data, main_sets: list[str], candidates: dict, what: str,
         prefer_first: bool = False) -> tuple[list[str], float, float]:
    """Leave-one-series-out choice among BayesianDetector's ``candidates``, held-out scores.

    For each series, the candidate with the best mean F1 on the other series is chosen
    (ties: the one listed later, or first with ``prefer_first``) and scored on the
    held-out series; the mean of those held-out scores estimates what choosing the
    defaults on TCPD would give on a series not used to choose them.
    """
    per = {}
    for c, o in candidates.items():
        per[c] = {}
        for n in main_sets:
            y, ann = data[n]
            locs = clean(onsets(y, **o), len(y))
            per[c][n] = (f_measure(ann, locs)[0], covering(ann, locs, len(y)))
    names = list(candidates) if prefer_first else list(reversed(candidates))
    held_f1, held_cv, chosen = [], [], {}
    for n in main_sets:
        rest = [k for k in main_sets if k != n]
        best = max(names, key=lambda c: np.mean([per[c][k][0] for k in rest]))
        chosen[best] = chosen.get(best, 0) + 1
        held_f1.append(per[best][n][0])
        held_cv.append(per[best][n][1])
    full = max(names, key=lambda c: np.mean([per[c][k][0] for k in main_sets]))
    out = [f"Leave-one-series-out choice among {what} on TCPD (each series scored with the "
           f"candidate best on the other {len(main_sets) - 1}):", "",
           f"| candidate | F1 on all {len(main_sets)} (in-sample) | cover | chosen in folds |",
           "|---|---|---|---|"]
    for c in candidates:
        out.append(f"| {c} | {np.mean([per[c][k][0] for k in main_sets]):.3f} | "
                   f"{np.mean([per[c][k][1] for k in main_sets]):.3f} | {chosen.get(c, 0)} |")
    out += ["", f"- **Held-out (LOSO) F1 {np.mean(held_f1):.3f} / cover "
            f"{np.mean(held_cv):.3f}**; the candidate best on all {len(main_sets)}: {full}."]
    return out, float(np.mean(held_f1)), float(np.mean(held_cv))


def simulated(count: int, seed: int = 11) -> list[str]:
    """Score the candidate settings and the other methods on the simulated suite."""
    data = suite(count, seed=seed)
    methods = {f"BayesianDetector: {k}": (lambda y, o=o: [
        f.detail["onset_index"] for f in bayesian_changes(y, **o)])
        for k, o in CANDIDATES.items()}
    methods["BayesianDetector: trend + llt averaged (defaults since 12-05)"] = run_spotkit_bocpd
    methods.update({"spotkit (CUSUM, defaults)": run_spotkit, SEGMENT: run_spotkit_segment,
                    "zero": run_zero})
    try:
        import ruptures  # noqa: F401

        methods.update({"binseg": run_binseg, "pelt": run_pelt})
    except ImportError:
        pass
    families = sorted({label.split("/")[0] for _, _, label in data})
    out = [f"First simulated suite ({count} series, seed {seed}: five families, no random "
           f"walks; truth = the one annotator; "
           f"F1 margin 5 and cover as on TCPD; last columns: F1 per family):", "",
           "| method | F1 | cover | " + " | ".join(families) + " |",
           "|---|---|---|" + "---|" * len(families)]
    for m, fn in methods.items():
        f1s, cvs, fam = [], [], {f: [] for f in families}
        for y, locs, label in data:
            locs_p = clean(fn(y), len(y))
            f1 = f_measure({"1": locs}, locs_p)[0]
            f1s.append(f1)
            cvs.append(covering({"1": locs}, locs_p, len(y)))
            fam[label.split("/")[0]].append(f1)
        out.append(f"| {m} | {np.mean(f1s):.3f} | {np.mean(cvs):.3f} | "
                   + " | ".join(f"{np.mean(fam[f]):.3f}" for f in families) + " |")
        print(out[-1], flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=os.environ.get("SPOTKIT_TCPD"),
                    help="folder with TCPD's annotations.json and <dataset>.json "
                         "(or $SPOTKIT_TCPD)")
    ap.add_argument("--record", action="store_true", help="write benchmarks/RESULTS.md")
    ap.add_argument("--verbose", action="store_true", help="per-series table")
    ap.add_argument("--simulated", type=int, default=0, metavar="N",
                    help="also score the candidates on N simulated series (seed 11)")
    ap.add_argument("--choose", type=int, default=0, metavar="N",
                    help="only score the segment-model candidates on N series of the "
                         "extended simulated suite (no TCPD data read)")
    ap.add_argument("--loso", action="store_true",
                    help="also the leave-one-series-out choice among the segment models")
    args = ap.parse_args(argv)
    if args.choose and not args.data:
        print("\n".join(choose(args.choose)[0]))
        print("\n".join(choose(args.choose, GATE_SEED, GATE_MODELS, True)[0]))
        print("\n".join(choose(args.choose, OFFLINE_SEED, OFFLINE_MODELS)[0]))
        return 0
    if not args.data:
        ap.error("give the TCPD data folder (or set SPOTKIT_TCPD)")
    folder = Path(args.data)
    if not (folder / "annotations.json").is_file():
        ap.error(f"{folder}: no annotations.json (the TCPD repository's top-level file)")
    data = load(folder)
    load0 = os.getloadavg()
    methods = {"spotkit": run_spotkit, "spotkit (variant: no Huber clip)": run_spotkit_noclip,
               BOCPD: run_spotkit_bocpd, BOCPD_1204: run_spotkit_bocpd_1204,
               BOCPD_OLD: run_spotkit_bocpd_old,
               BOCPD_SIM: run_spotkit_bocpd_sim,
               SEGMENT: run_spotkit_segment, BSEG: run_spotkit_bseg, "zero": run_zero}
    try:
        import ruptures

        methods["binseg"] = run_binseg
        methods["pelt"] = run_pelt
        peer = f"ruptures {ruptures.__version__}"
    except ImportError:
        peer = "ruptures not installed: binseg/PELT not run"
    scores: dict[str, dict[str, tuple[float, float, float, int]]] = {m: {} for m in methods}
    for name, (y, ann) in data.items():
        for m, fn in methods.items():
            yy = np.nan_to_num(y) if m in ("binseg", "pelt") else y  # ruptures: no NaN
            t0 = time.perf_counter()
            locs = clean(fn(yy), len(y))
            dt = time.perf_counter() - t0
            f1, _, _ = f_measure(ann, locs)
            cov = covering(ann, locs, len(y))
            scores[m][name] = (f1, cov, dt, len(locs))
    main_sets = [n for n in data if n not in MISSING]
    lines = []
    if args.verbose:
        hdr = "series".ljust(20) + "".join(f"{m[:16]:>18}" for m in methods)
        print(hdr)
        for n in data:
            print(n.ljust(20) + "".join(
                f"{scores[m][n][0]:8.3f}/{scores[m][n][1]:.3f}({scores[m][n][3]:2d})"
                for m in methods))
    det = ChangeDetector()
    lines.append(HEADING)
    lines.append("")
    lines.append(machine_line())
    lines.append(f"- **Data:** TCPD repository snapshot, {len(data)} univariate non-QC series "
                 f"with JSON in the repository (md5 as its checksums.json); main average over "
                 f"the {len(main_sets)} without missing values (paper: complete-case), "
                 f"`uk_coal_employ` (missing values) shown apart. Not in the snapshot (built "
                 f"by scripts from web sources): bitcoin, iceland_tourism, measles, "
                 f"ratner_stock, robocalls, scanline_126007, scanline_42049.")
    lines.append(f"- **spotkit default:** `find_changes(y)` = `ChangeDetector()`: two-sided "
                 f"CUSUM, arl {det.arl:.0f} (one false alarm per 10,000 samples), drift "
                 f"{det.drift}, height {det.threshold:.2f}, warmup {det.warmup}, memory "
                 f"{det.memory}, Huber clip {det.clip}. Peers: {peer}; R changepoint's "
                 f"default (`cpt.mean`, MBIC, Normal; BinSeg Q=5) rebuilt on ruptures.")
    lines.append("- **Settings, honestly:** the detector's numbers (arl 10,000 = the issue's false-"
                 "alarm target, drift 1 = best for 2-sigma shifts, warmup 16, memory 500) were "
                 "fixed from those principles before TCPD was run and never searched on it. Two "
                 "design changes were made after the first TCPD run, for reasons that hold on "
                 "telemetry too, and TCPD was rerun: (1) the CUSUM's scale allows for the "
                 "baseline's lag-1 autocorrelation (long-run sigma), (2) values are learned "
                 "into the baseline only once the CUSUM is back at zero (no post-change values "
                 "in the baseline). First run (i.i.d. CUSUM): F1 0.564 / cover 0.543 on the "
                 "same 25 series. Then, for telemetry, the Huber clip (z clipped at 3 in the "
                 "CUSUM, for the heavy tails of residuals; it lowers TCPD's F1: the variant row "
                 "without it is shown, not the default) and the onset refined inside the "
                 "CUSUM's excursion were added. So this is the 'default' experiment with a "
                 "method developed in view of TCPD, not a blind one. spotkit's second "
                 "detector is `BayesianDetector()` (BOCPD; offline: `bayesian_changes(y)`), a "
                 "change reported at posterior >= 0.5 after 3 values (its defaults: below).")
    lines.append(SEGMENT_NOTE.replace("RUNS_SEEN", str(RUNS_SEEN)))
    lines.append(BOCPD_NOTE.replace("BOCPD_RUNS", str(BOCPD_RUNS)))
    better = [scores[BOCPD][n][0] - scores[BOCPD_1204][n][0] for n in main_sets]
    wins = "/".join(str(sum(c(d) for d in better)) for c in (
        lambda d: d > 1e-9, lambda d: d < -1e-9, lambda d: abs(d) <= 1e-9))
    lines.append(H_NOTE.replace("WINS", wins).replace("H_RUNS", str(H_RUNS)))
    better = [scores[BSEG][n][0] - scores[BOCPD][n][0] for n in main_sets]
    bwins = "/".join(str(sum(c(d) for d in better)) for c in (
        lambda d: d > 1e-9, lambda d: d < -1e-9, lambda d: abs(d) <= 1e-9))
    lines.append(BSEG_NOTE.replace("BSEG_WINS", bwins))
    lines.append("")
    lines.append("| method | F1 (mean) | cover (mean) | paper F1 / cover (42-set) "
                 "| uk_coal_employ F1 / cover | s total |")
    lines.append("|---|---|---|---|---|---|")
    for m in methods:
        f1 = np.mean([scores[m][n][0] for n in main_sets])
        cv = np.mean([scores[m][n][1] for n in main_sets])
        tot = sum(scores[m][n][2] for n in data)
        paper = PAPER.get(m)
        ptxt = f"{paper[0]:.3f} / {paper[1]:.3f}" if paper else "-"
        uk = scores[m].get("uk_coal_employ")
        uktxt = f"{uk[0]:.3f} / {uk[1]:.3f}" if uk else "-"
        lines.append(f"| {m} | {f1:.3f} | {cv:.3f} | {ptxt} | {uktxt} | {tot:.2f} |")
    f1s = {m: float(np.mean([scores[m][n][0] for n in main_sets])) for m in methods}
    cvs = {m: float(np.mean([scores[m][n][1] for n in main_sets])) for m in methods}
    # the honest score of each spotkit default: BayesianDetector's defaults (since 12-05) were
    # chosen on simulated series, blind to TCPD, so their row is honest; the 12-04 defaults'
    # honest estimate was their leave-one-series-out held-out score (rebuilt here)
    loso_lines, held_f1, held_cv = loso(data, main_sets, CANDIDATES,
                                        "the 12-04 candidates (engineer A)")
    if args.loso:
        loso_lines += ["", *loso(data, main_sets, SEGMENT_MODELS,
                                 "the segment-model candidates (engineer H)", True)[0]]
    honest = {m: (f1s[m], cvs[m]) for m in DEFAULTS if m in f1s}
    best = max(honest, key=lambda m: honest[m][0])
    verdict = "PASS" if honest[best][0] >= 0.75 else "FAIL"
    each = "; ".join(f"{m} {f:.3f} / {c:.3f}" for m, (f, c) in honest.items())
    peers = ", ".join(f"{m} {f1s[m]:.3f} / {cvs[m]:.3f}" for m in methods
                      if m not in DEFAULTS)
    lines.append("")
    lines.append(f"- **Verdict:** goal F1 >= 0.75 with default settings: best honest spotkit "
                 f"default is **{best}**, F1 {honest[best][0]:.3f} / cover "
                 f"{honest[best][1]:.3f} -> **{verdict}** (honest scores of spotkit's "
                 f"defaults, F1 / cover: {each}; BayesianDetector's and bayesian_segment's "
                 f"defaults were chosen blind to TCPD, on simulated series, so their rows "
                 f"are honest; the 12-04 "
                 f"defaults' honest estimate, leave-one-series-out held-out: {held_f1:.3f} / "
                 f"{held_cv:.3f}; same series, same metrics: {peers}). The online CUSUM must "
                 f"decide value by value in microseconds and keep one false alarm per 10,000 "
                 f"values, so it is conservative on these short, trending, autocorrelated "
                 f"series; the offline methods see the whole series. The 25-series subset is "
                 f"harder than the paper's full univariate set (zero {f1s['zero']:.3f} here "
                 f"vs 0.669 there).")
    ran = [m for m in ("binseg", "pelt", "zero") if m in f1s]
    top_peer = max(ran, key=lambda m: f1s[m])
    lines.append(f"- **Against the peers run in this process** (the standard: the real peer "
                 f"in the same run, not a quoted figure): the best honest spotkit default, "
                 f"{honest[best][0]:.3f}, is {honest[best][0] - f1s[top_peer]:+.3f} F1 against "
                 f"the best of {', '.join(ran)} ({top_peer} {f1s[top_peer]:.3f}); the goal's "
                 f"0.75 was set just above the paper's best published default (binseg 0.744 "
                 f"on its 42-series set), which this subset does not reproduce.")
    lines += ["", *loso_lines, "", *update_cost()]
    if args.choose:
        lines += ["", *choose(args.choose)[0]]
        lines += ["", *choose(args.choose, GATE_SEED, GATE_MODELS, True)[0]]
        lines += ["", "Offline against online (bayesian_segment's defaults; seed 14):", "",
                  *choose(args.choose, OFFLINE_SEED, OFFLINE_MODELS)[0]]
    if args.simulated:
        lines += ["", *simulated(args.simulated)]
    load1 = os.getloadavg()
    lines.insert(3, f"- **Load** (1/5/15-min averages, 2 cores shared by 8 engineers; the times "
                    f"move with it, F1 and cover are deterministic) at the start "
                    f"{'/'.join(f'{v:.1f}' for v in load0)}, at the end "
                    f"{'/'.join(f'{v:.1f}' for v in load1)}; command: `nice python "
                    f"benchmarks/bench_tcpd.py {' '.join(argv or sys.argv[1:])}`.")
    text = "\n".join(lines)
    print(text)
    if args.record:
        write_section(HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
