"""Starting values for :func:`spotkit.scattering.fit_sas`, and the sasmodels calls it shares.

The start is a scan: the model's nonlinear parameters (size, peak position, widths,
exponents; :meth:`SasModelSpec.grid`) on a coarse grid set by the q range, with the
amplitudes and the background solved exactly at each point by non-negative least squares;
then the first scanned parameter (a size or a peak position, whose chi2 minima are narrow
when the data span many fringes) finely around the best coarse points. The best few
distinct points are returned: the fit starts from the first and tries the next ones when
it ends poorly.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spotkit.scattering._sasfit_models import SasModelSpec

__all__ = ["PD_POINTS", "data1d", "dispersity", "kernel", "scan_starts", "theory"]

#: Relative model error (of the local intensity scale) in the weights of the start scan.
_MODEL_ERROR = 0.02


_KERNEL_LOCK = threading.Lock()


def kernel(model: str):
    """sasmodels' compiled model (loaded once per process: a few ms each time otherwise).

    The first load compiles the model's C code into sasmodels' cache folder, writing the
    library in place: a second thread (a live fit and a timeline drawing its curve) or
    process loading it meanwhile would find a half-written library. Loads take turns: in
    this process under a lock, across processes under an advisory lock file beside the
    cache (where the system has ``fcntl``).
    """
    with _KERNEL_LOCK:
        return _load_kernel(model)


@functools.lru_cache(maxsize=32)
def _load_kernel(model: str):
    from sasmodels import kerneldll
    from sasmodels.core import load_model

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return load_model(model)
    folder = os.path.abspath(kerneldll.SAS_DLL_PATH)
    try:
        os.makedirs(folder, exist_ok=True)
        lock = open(os.path.join(folder, ".spotkit-compile.lock"), "a")
    except OSError:  # a read-only cache: nothing to compile there, nothing to guard
        return load_model(model)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        return load_model(model)


def data1d(qa, intensity=None, sigma=None, res=None):
    """sasmodels' Data1D for ``qa`` (Å^-1); ``res``: None, ``("pinhole", dq)`` (1-sigma,
    Å^-1) or ``("slit", length)`` (slit-smeared data, e.g. USAXS/USANS; Å^-1)."""
    from sasmodels.data import Data1D

    y = np.ones_like(qa) if intensity is None else intensity
    dy = np.ones_like(qa) if sigma is None else sigma
    pinhole = res[1] if res is not None and res[0] == "pinhole" else None
    data = Data1D(x=qa, y=y, dy=dy, dx=pinhole)
    if res is not None and res[0] == "slit":
        data.dxl = np.asarray(res[1], dtype=np.float64)
        data.dxw = np.zeros_like(qa)
    return data


def theory(model: str, qa: np.ndarray, pars: Mapping[str, Any], res=None) -> np.ndarray:
    """I(q) of a sasmodels model at ``qa`` (Å^-1), smeared by ``res`` (:func:`data1d`)."""
    from sasmodels.direct_model import DirectModel

    calc = DirectModel(data1d(qa, res=res), kernel(model))
    return np.asarray(calc(**dispersity(pars)), dtype=np.float64)


#: Points of a size distribution when only its width is given (bumps' Model's default;
#: sasmodels' direct calculation would otherwise use none, i.e. no dispersity at all).
PD_POINTS = 35


def dispersity(pars: Mapping[str, Any]) -> dict[str, Any]:
    """``pars`` with ``<name>_pd_n`` set where a width ``<name>_pd`` is given without it."""
    out = dict(pars)
    for name, value in pars.items():
        if name.endswith("_pd") and value and f"{name}_n" not in pars:
            out[f"{name}_n"] = PD_POINTS
    return out


def scan_starts(spec: SasModelSpec, qa, intensity, sigma, res, pars: dict[str, Any],
                scan: Sequence[str], linear: Sequence[str], fit_background: bool, *,
                n_best: int = 3) -> list[dict[str, float]]:
    """Starting points, best first: grid points of ``scan`` with the ``linear`` amplitudes
    and the background solved exactly (sasmodels units).

    A coarse grid over every scanned parameter first; then the first one (the size or the
    peak position, whose minima are narrow when the data span many fringes) is scanned
    finely around each of the ``n_best`` best coarse points; the distinct results are
    returned ordered by chi2 (an empty list when nothing could be evaluated). A sum model
    is scanned part by part (:attr:`SasModelSpec.stages`): the first part alone (the later
    parts' amplitudes 0), then the next with the earlier parts at their best point.
    """
    calc = _Columns(spec.name, qa, res)
    grids = spec.grid(float(qa.min()), float(qa.max()))
    stages = spec.stages or ((tuple(spec.scan), tuple(spec.linear)),)
    current = dict(pars)
    solved: list[str] = []
    starts: list[dict[str, float]] = []
    for stage_scan, stage_linear in stages:
        s_scan = [n for n in stage_scan if n in scan]
        s_linear = [n for n in stage_linear if n in linear]
        solved += s_linear
        off = {n: 0.0 for n in linear if n not in solved}  # later parts: not there yet
        starts = _scan(calc, grids, qa, intensity, sigma, {**current, **off}, s_scan,
                       s_linear, fit_background, n_best)
        if not starts:
            return []
        starts = [{**{k: v for k, v in current.items() if k in scan or k in linear}, **st}
                  for st in starts]
        current.update(starts[0])
    return starts


def _scan(calc, grids, qa, intensity, sigma, pars, scan, linear, fit_background, n_best):
    """One stage of :func:`scan_starts`."""
    from scipy.optimize import nnls

    axes = [grids[name] for name in scan]
    # the scan's weights allow a model error of 2 % of the local intensity scale (the
    # running maximum): near a form factor's zero (noiseless or relative errors) a point
    # would otherwise outweigh the whole curve and a wrong size could win the scan
    from scipy.ndimage import maximum_filter1d

    size = 2 * max(2, qa.size // 50) + 1
    envelope = maximum_filter1d(np.abs(intensity), size=size, mode="nearest")
    w = 1.0 / np.hypot(sigma, _MODEL_ERROR * envelope)
    target = intensity if fit_background else intensity - float(pars.get("background", 0.0))

    def solve(point: dict[str, float]) -> tuple[float, dict[str, float]] | None:
        fixed_part, columns = calc({**pars, **point}, linear)
        if fit_background:
            columns += [np.ones_like(qa), -np.ones_like(qa)]
        rhs = (target - fixed_part) * w
        if not columns:
            chi, coef = float(np.sum(rhs**2)), np.zeros(0)
        else:
            design = np.column_stack(columns) * w[:, None]
            if not (np.all(np.isfinite(design)) and np.all(np.isfinite(rhs))):
                return None
            coef, rnorm = nnls(design, rhs, maxiter=50 * design.shape[1])
            chi = float(rnorm**2)
        if not math.isfinite(chi):
            return None
        found = dict(point)
        found.update({n: float(c) for n, c in zip(linear, coef, strict=False)})
        if fit_background:
            found["background"] = float(coef[-2] - coef[-1])
        return chi, found

    coarse = []
    for values in itertools.product(*axes) if axes else [()]:
        got = solve(dict(zip(scan, map(float, values), strict=True)))
        if got is not None:
            coarse.append(got)
    if not coarse:
        return []
    coarse.sort(key=lambda item: item[0])
    if not scan:
        return [coarse[0][1]]
    first, axis = scan[0], np.asarray(axes[0], dtype=np.float64)
    refined = []
    for chi, found in coarse[:n_best]:
        best = (chi, found)
        for value in _fine_axis(axis, found[first], float(qa.max())):
            got = solve({**{n: found[n] for n in scan}, first: float(value)})
            if got is not None and got[0] < best[0]:
                best = got
        refined.append(best)
    refined.sort(key=lambda item: item[0])
    out: list[dict[str, float]] = []
    for _, found in refined:  # distinct starts only
        if all(not math.isclose(found[first], o[first], rel_tol=1e-3) for o in out):
            out.append(found)
    return out


class _Columns:
    """The model split into the parts its ``linear`` amplitudes multiply, and the rest.

    ``calc(params, linear)`` returns ``(fixed, columns)``: the intensity with every linear
    amplitude 0 and the background 0, and the intensity per unit of each amplitude. A sum
    model (``"sphere+gaussian_peak"``) is evaluated part by part with each part's own kernel,
    and a part's curve is kept while only the other part's parameters change: the scan of
    the peak costs peak evaluations only.
    """

    def __init__(self, model: str, qa: np.ndarray, res: tuple[str, np.ndarray] | None):
        from sasmodels.direct_model import DirectModel

        data = data1d(qa, res=res)
        self.parts = model.split("+") if "+" in model else []
        self.prefixes = [f"{chr(ord('A') + i)}_" for i in range(len(self.parts))]
        self.direct = [DirectModel(data, kernel(p)) for p in self.parts] or [
            DirectModel(data, kernel(model))]
        self.cache: dict[tuple, np.ndarray] = {}
        self.size = int(qa.size)

    def __call__(self, params: dict[str, Any], linear: Sequence[str]):
        params = dispersity(params)
        if not self.parts:
            calc = self.direct[0]
            zero = {**params, "background": 0.0, **{n: 0.0 for n in linear}}
            fixed = np.asarray(calc(**zero), dtype=np.float64)
            return fixed, [np.asarray(calc(**{**zero, n: 1.0}), dtype=np.float64) - fixed
                           for n in linear]
        overall = float(params.get("scale", 1.0))
        fixed = np.zeros(self.size)
        columns = {}
        for i, prefix in enumerate(self.prefixes):
            own = {k[2:]: v for k, v in params.items() if k.startswith(prefix) and
                   k != f"{prefix}scale"}
            key = (i, tuple(sorted(own.items())))
            if key not in self.cache:
                if len(self.cache) > 4096:
                    self.cache.clear()
                self.cache[key] = np.asarray(
                    self.direct[i](**own, scale=1.0, background=0.0), dtype=np.float64)
            amplitude = f"{prefix}scale"
            if amplitude in linear:
                columns[amplitude] = overall * self.cache[key]
            else:
                fixed = fixed + overall * float(params.get(amplitude, 1.0)) * self.cache[key]
        return fixed, [columns[n] for n in linear]


def _fine_axis(axis: np.ndarray, value: float, q_max: float) -> np.ndarray:
    """A fine grid spanning one coarse step of ``axis`` either side of ``value``.

    Log axes are sizes: their step is at most a fifth of a fringe at the highest q
    (pi / q_max / 5), so a sphere whose data span hundreds of fringes is not missed.
    """
    if axis.size < 2:
        return np.array([value])
    log = bool(np.all(axis > 0) and not np.allclose(np.diff(axis), axis[1] - axis[0]))
    if log:
        ratio = float(axis[1] / axis[0])
        lo, hi = value / ratio, value * ratio
        step = min((hi - lo) / 20, math.pi / q_max / 5)
        n = int(min(400, max(21, math.ceil((hi - lo) / step) + 1)))
        return np.linspace(lo, hi, n)
    step = float(axis[1] - axis[0])
    return np.linspace(value - step, value + step, 21)


