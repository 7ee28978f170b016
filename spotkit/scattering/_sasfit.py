"""Fit a small-angle scattering model to one I(q): sasmodels computes, bumps fits.

sasmodels (the SasView project's model library) works in Å and Å^-1; spotkit's profiles are
in nm^-1. :func:`fit_sas` converts q on the way in and the lengths on the way out, and says
so in the result (:attr:`SasFit.q_unit`, :attr:`SasFit.units`, :attr:`SasFit.notes`).
Starting values come from a scan: the model's size or peak-position parameters on a grid set
by the q range, the amplitudes and the background solved exactly (non-negative least
squares) at each grid point; bumps' Levenberg-Marquardt then refines from the best point,
and its covariance gives the 1-sigma uncertainties (or DREAM's posterior, ``method="dream"``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from spotkit.errors import SpotkitError
from spotkit.scattering._sasfit_models import Q_UNITS, SAS_MODELS, to_sasmodels_factor
from spotkit.scattering._sasfit_start import data1d as _data1d
from spotkit.scattering._sasfit_start import kernel as _kernel
from spotkit.scattering._sasfit_start import scan_starts
from spotkit.scattering._sasfit_start import theory as _theory

logger = logging.getLogger(__name__)

__all__ = ["FIT_METHODS", "SasFit", "SasFitError", "fit_sas"]

#: bumps fitters fit_sas accepts: Levenberg-Marquardt (default), DREAM (MCMC posterior),
#: Nelder-Mead, quasi-Newton, differential evolution.
FIT_METHODS = ("lm", "dream", "amoeba", "newton", "de")

_MAGNETIC = ("up_", "_M0", "_mtheta", "_mphi")

def _statistically_good(chi2: float, dof: int) -> bool:
    """A reduced chi2 the noise alone explains (within 2 of its standard deviations): no
    other starting point can do better than that by more than chance."""
    return chi2 < 1.0 + 2.0 * math.sqrt(2.0 / max(dof, 1))


class SasFitError(SpotkitError, RuntimeError):
    """A model fit could not be done (the fitter failed, or the data cannot constrain it).

    Attributes
    ----------
    model : str
        The model that was being fitted.
    problem : str
        What went wrong.
    """

    def __init__(self, model: str, problem: str, *, hint: str | None = None):
        self.model = model
        self.problem = problem
        msg = f"fitting {model!r}: {problem}"
        if hint:
            msg += f" {hint}"
        super().__init__(msg)


@dataclass(frozen=True, eq=False)
class SasFit:
    """The result of :func:`fit_sas`.

    Values are in the units of the q the data came in: with q in nm^-1, lengths are in nm
    and peak positions in nm^-1 (:attr:`units` says it for each parameter); SLDs stay in
    sasmodels' 1e-6/Å^2. :attr:`sasmodels_params` holds the same values in Å as sasmodels
    took them.

    Attributes
    ----------
    model : str
        sasmodels model name.
    params : dict
        Every parameter of the fit (free and fixed), user units.
    errors : dict
        1-sigma uncertainty of each free parameter (NaN where the covariance is singular).
    units : dict
        Unit of each parameter in :attr:`params` (``"I"``: the intensity's own unit).
    free : tuple of str
        The parameters that were fitted.
    chi2 : float
        Reduced chi-squared at the best fit.
    n_points : int
        Data points used.
    q, intensity, sigma, curve : ndarray
        The points used (user q unit), their sigma and the fitted model at them.
    q_unit : str
        ``"nm^-1"`` or ``"A^-1"``: the unit of :attr:`q` and of the reported parameters.
    sasmodels_params : dict
        The best parameters as sasmodels takes them (Å, Å^-1).
    start : dict
        Starting values of the free parameters (user units).
    start_from : dict
        How each start was found: ``"scan"`` (grid scan, amplitudes solved), ``"given"``
        (``params=``) or ``"default"`` (sasmodels' default).
    method : str
        The bumps fitter.
    elapsed_s : float
        Wall time of the fit, including the start scan.
    notes : tuple of str
        Unit conversion, weighting, and anything the fit warns about.
    """

    model: str
    params: dict[str, float]
    errors: dict[str, float]
    units: dict[str, str]
    free: tuple[str, ...]
    chi2: float
    n_points: int
    q: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray
    curve: np.ndarray
    q_unit: str
    sasmodels_params: dict[str, Any]
    start: dict[str, float]
    start_from: dict[str, str]
    method: str
    elapsed_s: float
    notes: tuple[str, ...]

    def values(self) -> dict[str, float | str | None]:
        """Free parameters, ``<name>_err``, ``chi2``, ``n_points`` and ``q_unit``: a live point."""
        out: dict[str, float | str | None] = {}
        for name in self.free:
            out[name] = float(self.params[name])
            out[f"{name}_err"] = float(self.errors[name])
        out["chi2"] = float(self.chi2)
        out["n_points"] = float(self.n_points)
        out["q_unit"] = self.q_unit
        return out

    def evaluate(self, q: npt.ArrayLike) -> np.ndarray:
        """The fitted model at ``q`` (in :attr:`q_unit`), without resolution smearing."""
        q_factor = Q_UNITS[self.q_unit][1]
        qa = np.asarray(q, dtype=np.float64) * q_factor
        return _theory(self.model, qa, self.sasmodels_params)

    def summary(self) -> str:
        """One line: the free parameters with their errors, chi2 and the points used."""
        parts = []
        for name in self.free:
            unit = self.units.get(name, "")
            unit = "" if unit in ("", "I") else f" {unit}"
            parts.append(f"{name} = {_fmt(self.params[name], self.errors[name])}{unit}")
        return (f"{self.model}: " + ", ".join(parts)
                + f"; chi2 {self.chi2:.3g} ({self.n_points} points, q in {self.q_unit})")

    def __repr__(self) -> str:
        return f"SasFit({self.summary()})"


def _fmt(value: float, err: float) -> str:
    if not math.isfinite(err) or err <= 0:
        return f"{value:.4g}"
    if err >= 1 or err > abs(value):
        return f"{value:.4g} ± {err:.2g}"
    digits = max(0, 1 - math.floor(math.log10(err)))
    return f"{value:.{digits}f} ± {err:.{digits}f}" if digits < 8 else f"{value:.4g} ± {err:.2g}"


# -- sasmodels plumbing ---------------------------------------------------------------------


def _import_sas():
    try:
        import bumps  # noqa: F401
        import sasmodels  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the scattering extra lists both
        raise ImportError(f"fit_sas needs sasmodels and bumps ({exc}): "
                          'pip install "spotkit[scattering]"') from exc


def _parameter_units(model: str) -> dict[str, str]:
    """Every settable (non-magnetic) parameter of a sasmodels model -> its sasmodels unit."""
    from sasmodels.core import load_model_info

    info = load_model_info(model)
    units: dict[str, str] = {}
    for p in list(info.parameters.common_parameters) + list(info.parameters.kernel_parameters):
        units[p.name] = p.units
        if p.polydisperse:
            units.update({f"{p.name}_pd": "", f"{p.name}_pd_n": "",
                          f"{p.name}_pd_nsigma": "", f"{p.name}_pd_type": ""})
    return {k: v for k, v in units.items() if not any(m in k for m in _MAGNETIC)}


def _defaults(model: str) -> dict[str, float]:
    """sasmodels' default value of each (non-magnetic, non-dispersity) parameter."""
    from sasmodels.core import load_model_info

    info = load_model_info(model)
    return {p.name: float(p.default) for p in list(info.parameters.common_parameters)
            + list(info.parameters.kernel_parameters) if not any(m in p.name for m in _MAGNETIC)}


# -- input checks ---------------------------------------------------------------------------


def _check_choice(kind: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {sorted(allowed)}")


def _check_values(params: Mapping[str, Any], model: str) -> None:
    """Numbers for parameters, a dispersity name for ``<name>_pd_type``."""
    from sasmodels.weights import MODELS

    for name, value in params.items():
        if name.endswith("_pd_type"):
            if value not in MODELS:
                raise ValueError(f"{name}={value!r} for model {model!r}: choose one of "
                                 f"{sorted(MODELS)}")
        elif isinstance(value, bool) or not isinstance(value, int | float | np.number) or (
                not math.isfinite(float(value))):
            raise ValueError(f"{name}={value!r} for model {model!r}: give a finite number")


def _check_resolution(dq, slit_length) -> None:
    if dq is not None and slit_length is not None:
        raise ValueError("give dq (pinhole resolution) or slit_length (slit-smeared data), "
                         "not both")


def _check_names(kind: str, names, allowed: Mapping[str, str], model: str) -> None:
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, bad))} for model {model!r}; "
                         f"its parameters are {sorted(allowed)}")


def _points(q, intensity, sigma, dq, slit, q_range, q_unit):
    q = np.asarray(q, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    if q.ndim != 1 or intensity.shape != q.shape:
        raise ValueError(f"q and intensity must be 1-D arrays of one length; got shapes "
                         f"{q.shape} and {intensity.shape}")
    arrays = {"sigma": sigma, "dq": dq, "slit": slit}
    out = {}
    for name, arr in arrays.items():
        if arr is None:
            out[name] = None
            continue
        a = np.broadcast_to(np.asarray(arr, dtype=np.float64), q.shape)
        out[name] = np.array(a)
    keep = np.isfinite(q) & np.isfinite(intensity) & (q > 0)
    if out["sigma"] is not None:
        keep &= np.isfinite(out["sigma"]) & (out["sigma"] > 0)
    for name in ("dq", "slit"):
        if out[name] is not None:
            keep &= np.isfinite(out[name]) & (out[name] >= 0)
    if q_range is not None:
        lo, hi = q_range
        lo = -np.inf if lo is None else float(lo)
        hi = np.inf if hi is None else float(hi)
        if not lo < hi:
            raise ValueError(f"q_range {q_range!r} is empty: give (q_min, q_max) in {q_unit} "
                             "with q_min < q_max (None for an open end)")
        keep &= (q >= lo) & (q <= hi)
    sel = {k: (None if v is None else v[keep]) for k, v in out.items()}
    return q[keep], intensity[keep], sel["sigma"], sel["dq"], sel["slit"]


# -- fit_sas --------------------------------------------------------------------------------


def fit_sas(q: npt.ArrayLike, intensity: npt.ArrayLike, sigma: npt.ArrayLike | None = None, *,
            model: str = "sphere", q_unit: str = "nm^-1",
            params: Mapping[str, float | str] | None = None, free: Sequence[str] | None = None,
            bounds: Mapping[str, tuple[float, float]] | None = None,
            q_range: tuple[float | None, float | None] | None = None,
            dq: npt.ArrayLike | None = None, slit_length: npt.ArrayLike | None = None,
            method: str = "lm", fit_options: Mapping[str, Any] | None = None) -> SasFit:
    """Fit a small-angle scattering model (sasmodels) to one I(q) with bumps.

    Parameters
    ----------
    q, intensity : array_like
        The profile, 1-D. Points with a non-finite value, q <= 0, or sigma <= 0 are left out
        (masked bins of :func:`integrate_1d` are NaN).
    sigma : array_like, optional
        1-sigma errors of ``intensity``. Without them every point weighs by its relative
        error (sigma = abs(I): a fit of log I) and the uncertainties are scaled by
        ``sqrt(chi2)``, as the scatter of the data says.
    model : str
        One of :data:`SAS_MODELS` (``"sphere"``, ``"core_shell_sphere"``,
        ``"guinier_porod"``, ``"mono_gauss_coil"``, ``"gaussian_peak"``, ``"peak_lorentz"``,
        ``"broad_peak"``, ``"sphere+gaussian_peak"``: sasmodels' sum model, parameters
        ``A_*`` of the spheres and ``B_*`` of the peak).
    q_unit : {"nm^-1", "A^-1"}
        Unit of ``q`` (spotkit's profiles: nm^-1; ``"q_nm^-1"`` and ``"q_A^-1"`` work too).
        Parameters in and out use the matching length unit (nm or Å).
    params : dict, optional
        Starting values of free parameters and values of fixed ones, in the units of
        ``q_unit`` (e.g. ``{"sld": 2.0, "sld_solvent": 9.4}`` for the contrast,
        ``{"radius_pd": 0.1}`` for 10 % polydispersity). A free parameter given here is not
        scanned for a start.
    free : sequence of str, optional
        Parameters to fit; default the model's (``SAS_MODELS[model].free``).
    bounds : dict, optional
        ``{name: (low, high)}`` for free parameters, user units; defaults keep sizes within
        what the q range can see and peaks inside it.
    q_range : (float or None, float or None), optional
        Fit only ``q_min <= q <= q_max``.
    dq : array_like or float, optional
        Gaussian q resolution (1-sigma, q unit) per point; the model is smeared with it.
    slit_length : array_like or float, optional
        Slit-smeared data (USAXS, USANS): the slit length per point (q unit); the model is
        smeared with it. Not with ``dq``.
    method : str
        bumps fitter, one of :data:`FIT_METHODS` (``"lm"``: Levenberg-Marquardt, errors
        from its covariance; ``"dream"``: MCMC, errors from the posterior's 68 % interval).
    fit_options : dict, optional
        Passed to ``bumps.fitters.fit`` (``steps``, ``samples``, ``burn``...).

    Returns
    -------
    SasFit

    Raises
    ------
    ValueError
        An unknown model, unit, method or parameter name (the message lists the allowed
        ones), or too few points for the free parameters.
    SasFitError
        The fitter failed or ended on non-finite values.

    Examples
    --------
    >>> import numpy as np
    >>> from spotkit.scattering import fit_sas, sas_model_curve
    >>> q = np.linspace(0.05, 3.0, 200)                        # nm^-1
    >>> i = sas_model_curve(q, model="sphere", params={"radius": 4.0, "scale": 0.01})
    >>> fit = fit_sas(q, i, 0.01 * i, model="sphere")
    >>> round(fit.params["radius"], 2), fit.units["radius"]
    (4.0, 'nm')
    """
    t0 = time.perf_counter()
    _check_choice("model", model, SAS_MODELS)
    _check_choice("q_unit", q_unit, Q_UNITS)
    _check_choice("method", method, FIT_METHODS)
    _import_sas()
    spec = SAS_MODELS[model]
    unit_name, q_factor = Q_UNITS[q_unit]
    table = _parameter_units(spec.name)
    params = dict(params or {})
    free = tuple(spec.free if free is None else free)
    bounds = dict(bounds or {})
    _check_names("parameter(s) in params", params, table, model)
    _check_values(params, model)
    _check_names("free parameter(s)", free, table, model)
    held_text = [n for n in free if n.endswith("_pd_type")]
    if held_text:
        raise ValueError(f"{held_text} cannot be fitted (a distribution name): give it in "
                         "params=")
    _check_names("parameter(s) in bounds", bounds, table, model)
    not_free = [n for n in bounds if n not in free]
    if not_free:
        raise ValueError(f"bounds given for {not_free} which are not free; free parameters: "
                         f"{list(free)} (add them to free=)")

    _check_resolution(dq, slit_length)
    q_arr, i_arr, s_arr, dq_arr, slit_arr = _points(q, intensity, sigma, dq, slit_length,
                                                    q_range, unit_name)
    if q_arr.size < len(free) + 2:
        raise ValueError(f"{q_arr.size} usable points for {len(free)} free parameters of "
                         f"{model!r}: widen q_range or give finite intensities and sigma > 0")
    notes = [f"q converted from {unit_name} to A^-1 for sasmodels (x{q_factor:g}); lengths "
             f"reported in {'nm' if unit_name == 'nm^-1' else 'A'}" if q_factor != 1.0
             else "q in A^-1 as sasmodels takes it; lengths in A"]
    relative = s_arr is None
    if relative:
        floor = 1e-6 * float(np.max(np.abs(i_arr))) or 1.0
        s_arr = np.maximum(np.abs(i_arr), floor)
        notes.append("no sigma given: relative weights (sigma = |I|); errors scaled by "
                     "sqrt(chi2)")
    qa = q_arr * q_factor
    res = (("pinhole", dq_arr * q_factor) if dq_arr is not None else
           ("slit", slit_arr * q_factor) if slit_arr is not None else None)

    def to_sas(name: str, value):
        if isinstance(value, str):
            return value
        return float(value) * to_sasmodels_factor(table[name], q_factor)

    def from_sas(name: str, value):
        if isinstance(value, str):
            return value
        return float(value) / to_sasmodels_factor(table[name], q_factor)

    pars: dict[str, Any] = {"background": 0.0, **spec.fixed}
    pars.update({k: to_sas(k, v) for k, v in params.items()})
    scan = [n for n in spec.scan if n in free and n not in params]
    linear = [n for n in spec.linear if n in free and n not in params]
    fit_background = "background" in free and "background" not in params
    starts = scan_starts(spec, qa, i_arr, s_arr, res, pars, scan, linear, fit_background) or [{}]
    options = dict(fit_options or {})
    chosen = starts[0]
    result, labels = _bumps_fit(spec, qa, i_arr, s_arr, res, {**pars, **chosen}, free, bounds,
                                to_sas, method, options)
    for k, start in enumerate(starts[1:], start=2):
        if _statistically_good(result.chisq, q_arr.size - len(free)):
            break  # the next scan points only while the fit is worse than the noise says
        trial, trial_labels = _bumps_fit(spec, qa, i_arr, s_arr, res, {**pars, **start}, free,
                                         bounds, to_sas, method, options)
        if trial.chisq < result.chisq:
            result, labels, chosen = trial, trial_labels, start
            notes.append(f"started from scan point {k} (the best one fitted worse)")
    pars.update(chosen)
    how = {n: ("given" if n in params else "scan" if n in chosen else "default") for n in free}
    best = {**_defaults(spec.name), **pars}  # every parameter, the held ones included
    best.update(dict(zip(labels, map(float, result.x), strict=True)))
    dx = np.asarray(result.dx, dtype=np.float64) if result.dx is not None else np.full(
        len(labels), np.nan)
    chi2 = float(result.chisq)
    if relative and math.isfinite(chi2):
        dx = dx * math.sqrt(chi2)
    if not all(math.isfinite(best[n]) for n in free):
        raise SasFitError(model, f"the fit ended on non-finite values {best}",
                          hint="give starting values (params=) or narrow q_range")
    err_sas = dict(zip(labels, map(float, dx), strict=True))
    curve = _theory(spec.name, qa, best, res)
    user_params = {k: from_sas(k, v) for k, v in best.items()}
    errors = {n: abs(from_sas(n, err_sas.get(n, math.nan))) for n in free}
    if any(not math.isfinite(e) for e in errors.values()):
        notes.append("some uncertainties are undefined (singular covariance): the data do not "
                     "constrain every free parameter")
    at_bound = [n for n in free if _at_bound(result, labels, n)]
    if at_bound:
        notes.append(f"ended at a bound: {at_bound}")
    loose = [n for n in free if math.isfinite(errors[n]) and errors[n] > abs(user_params[n])
             and n != "background"]
    if loose:
        notes.append(f"not determined by the data (error larger than the value): {loose}")
    fit = SasFit(
        model=model, params=user_params, errors=errors,
        units={k: _user_unit(table[k], unit_name) for k in user_params},
        free=free, chi2=chi2, n_points=int(q_arr.size), q=q_arr, intensity=i_arr,
        sigma=s_arr, curve=curve, q_unit=unit_name, sasmodels_params=best,
        start={n: from_sas(n, pars[n]) for n in free if n in pars}, start_from=how,
        method=method, elapsed_s=time.perf_counter() - t0, notes=tuple(notes))
    logger.debug("fit_sas %s", fit.summary())
    return fit


def _at_bound(result, labels, name) -> bool:
    bounds = getattr(result, "bounds", None)
    if bounds is None or name not in labels:
        return False
    i = labels.index(name)
    lo, hi = bounds[i]
    x = float(result.x[i])
    return bool(np.isclose(x, lo, rtol=1e-6, atol=0) or np.isclose(x, hi, rtol=1e-6, atol=0))


def _user_unit(sas_unit: str, unit_name: str) -> str:
    nm = unit_name == "nm^-1"
    return {"Ang": "nm" if nm else "A", "1/Ang": "nm^-1" if nm else "A^-1",
            "1/cm": "I"}.get(sas_unit, sas_unit)


def _bumps_fit(spec, qa, i_arr, s_arr, res, pars, free, bounds, to_sas, method, options):
    from bumps.fitproblem import FitProblem
    from bumps.fitters import fit
    from sasmodels.bumps_model import Experiment, Model

    q_min, q_max = float(qa.min()), float(qa.max())
    default_bounds = spec.default_bounds(q_min, q_max)
    model = Model(_kernel(spec.name), **pars)
    limits = []
    for name in free:
        if name in bounds:
            lo, hi = (to_sas(name, b) if b is not None else None for b in bounds[name])
            lo = -math.inf if lo is None else lo
            hi = math.inf if hi is None else hi
        else:
            lo, hi = default_bounds.get(name, (-math.inf, math.inf))
        if not lo < hi:
            raise ValueError(f"bounds for {name!r} are empty: {bounds.get(name)}")
        par = getattr(model, name)
        value = float(par.value)
        if not lo <= value <= hi:  # a start outside the bounds: move it in
            value = min(max(value, lo), hi)
            if not math.isfinite(value):
                value = lo if math.isfinite(lo) else hi
            par.value = value
        par.range(lo, hi)
        limits.append((lo, hi))
    experiment = Experiment(data=_data1d(qa, i_arr, s_arr, res), model=model)
    problem = FitProblem(experiment)
    try:
        result = fit(problem, method=method, **options)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        raise SasFitError(spec.name, f"bumps {method} failed: {exc}",
                          hint="give starting values (params=) or narrow q_range") from exc
    if result.x is None:
        raise SasFitError(spec.name, f"bumps {method} did not return a solution",
                          hint="give starting values (params=) or narrow q_range")
    labels = list(result.labels)
    order = {name: (lo, hi) for name, (lo, hi) in zip(free, limits, strict=True)}
    result.bounds = [order.get(n, (-math.inf, math.inf)) for n in labels]
    return result, labels


def sas_model_curve(q: npt.ArrayLike, *, model: str = "sphere", q_unit: str = "nm^-1",
                    params: Mapping[str, float | str] | None = None,
                    dq: npt.ArrayLike | None = None,
                    slit_length: npt.ArrayLike | None = None) -> np.ndarray:
    """I(q) of a :data:`SAS_MODELS` model (sasmodels), parameters in the units of ``q_unit``.

    Unset parameters take the values :func:`fit_sas` holds them at (sasmodels' defaults,
    with ``background`` 0 unless given).

    Parameters
    ----------
    q : array_like
        Where to compute it.
    model : str
        One of :data:`SAS_MODELS`.
    q_unit : {"nm^-1", "A^-1"}
        Unit of ``q``; lengths in ``params`` are in nm or Å to match.
    params : dict, optional
        Parameter values (a fit's :attr:`SasFit.params` fits here as it is).
    dq, slit_length : array_like or float, optional
        Pinhole resolution (1-sigma) or slit length, in the q unit, as in :func:`fit_sas`.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from spotkit.scattering import sas_model_curve
    >>> i = sas_model_curve(np.array([0.01, 1.0]), model="sphere", params={"radius": 5.0})
    >>> bool(i[0] > i[1])
    True
    """
    _check_choice("model", model, SAS_MODELS)
    _check_choice("q_unit", q_unit, Q_UNITS)
    _import_sas()
    spec = SAS_MODELS[model]
    table = _parameter_units(spec.name)
    params = dict(params or {})
    _check_names("parameter(s) in params", params, table, model)
    _check_values(params, model)
    q_factor = Q_UNITS[q_unit][1]
    pars: dict[str, Any] = {"background": 0.0, **spec.fixed}
    for k, v in params.items():
        pars[k] = v if isinstance(v, str) else float(v) * to_sasmodels_factor(table[k], q_factor)
    qa = np.asarray(q, dtype=np.float64) * q_factor
    _check_resolution(dq, slit_length)
    res = None
    for kind, value in (("pinhole", dq), ("slit", slit_length)):
        if value is not None:
            res = (kind, np.broadcast_to(np.asarray(value, dtype=np.float64), qa.shape)
                   * q_factor)
    return _theory(spec.name, qa, pars, res)
