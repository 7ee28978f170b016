"""The models :func:`spotkit.scattering.fit_sas` knows, their units and their starting values.

Each entry of :data:`SAS_MODELS` names a sasmodels model and says which parameters are fitted
by default, which enter the intensity linearly (solved exactly while scanning for a start),
and which are scanned on a grid set by the q range of the data. Everything here works in
sasmodels' own units (lengths in Å, q in Å^-1); :mod:`spotkit.scattering._sasfit` converts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Q_UNITS", "SAS_MODELS", "SasModelSpec", "to_sasmodels_factor"]

#: q unit spellings accepted -> (canonical name, factor that converts q to Å^-1)
Q_UNITS: dict[str, tuple[str, float]] = {
    "nm^-1": ("nm^-1", 0.1), "q_nm^-1": ("nm^-1", 0.1), "1/nm": ("nm^-1", 0.1),
    "A^-1": ("A^-1", 1.0), "q_A^-1": ("A^-1", 1.0), "1/A": ("A^-1", 1.0),
    "Å^-1": ("A^-1", 1.0), "1/Å": ("A^-1", 1.0),
}


@dataclass(frozen=True)
class SasModelSpec:
    """How :func:`fit_sas` fits one sasmodels model.

    Attributes
    ----------
    name : str
        sasmodels' model name.
    description : str
        One line: what it describes.
    free : tuple of str
        Parameters fitted by default.
    fixed : dict
        Values (sasmodels units) that replace sasmodels' defaults for parameters held fixed.
    linear : tuple of str
        Free parameters the intensity is proportional to (amplitudes), solved exactly by
        non-negative least squares at each point of the start scan.
    scan : tuple of str
        Nonlinear parameters scanned on a grid (:meth:`grid`) for the start.
    grids : dict
        Grids for some scanned parameters instead of the shared ones (``f(q_min, q_max)``).
    stages : tuple of (scan names, linear names)
        For sum models: the parts scanned one after the other (default: all at once).
    """

    name: str
    description: str
    free: tuple[str, ...]
    fixed: dict[str, float] = field(default_factory=dict)
    linear: tuple[str, ...] = ("scale",)
    scan: tuple[str, ...] = ()
    grids: dict[str, Callable[[float, float], np.ndarray]] = field(default_factory=dict)
    stages: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()

    def grid(self, q_min: float, q_max: float) -> dict[str, np.ndarray]:
        """Scan grids (sasmodels units) for data between ``q_min`` and ``q_max`` (Å^-1)."""
        return {name: (self.grids.get(name) or _GRIDS[_base(name)])(q_min, q_max)
                for name in self.scan}

    def default_bounds(self, q_min: float, q_max: float) -> dict[str, tuple[float, float]]:
        """Bounds (sasmodels units) for the free parameters that have natural limits."""
        size = (0.1 / q_max, 50.0 / q_min)
        span = q_max - q_min
        bounds = {
            "scale": (0.0, math.inf), "i_zero": (0.0, math.inf),
            "porod_scale": (0.0, math.inf), "peak_scale": (0.0, math.inf),
            "radius": size, "thickness": (0.0, size[1]), "rg": size,
            "correlation_length": (0.1 / span, 50.0 / q_min),
            "porod_exp": (0.0, 6.0), "s": (0.0, 3.0),
            "peak_pos": (q_min, q_max), "sigma": (span / 1000, span),
            "peak_hwhm": (span / 1000, span),
            "width_exp": (0.5, 6.0), "shape_exp": (0.1, 6.0),
        }
        return {name: bounds[_base(name)] for name in self.free if _base(name) in bounds}


def _base(name: str) -> str:
    """A sum model's parameter without its part prefix: ``A_radius`` -> ``radius``."""
    return name[2:] if name[:2] in ("A_", "B_") else name


def _log_grid(lo_factor: float, hi_factor: float, n: int):
    def grid(q_min: float, q_max: float) -> np.ndarray:
        return np.geomspace(lo_factor / q_max, hi_factor / q_min, n)
    return grid


def _peak_positions(q_min: float, q_max: float) -> np.ndarray:
    return np.linspace(q_min, q_max, 42)[1:-1]


def _peak_widths(q_min: float, q_max: float) -> np.ndarray:
    return (q_max - q_min) * np.array([0.006, 0.02, 0.07])


_GRIDS: dict[str, Any] = {
    "radius": _log_grid(1.0, 8.0, 48),
    "rg": _log_grid(0.7, 6.0, 48),
    "peak_pos": _peak_positions,
    "sigma": _peak_widths,
    "peak_hwhm": _peak_widths,
    "correlation_length": lambda q_min, q_max: 1.0 / _peak_widths(q_min, q_max),
    "porod_exp": lambda q_min, q_max: np.array([2.0, 3.0, 4.0]),
    "thickness": lambda q_min, q_max: np.geomspace(0.5 / q_max, 3.0 / q_min, 8),
}

#: The models fit_sas knows: name -> how it is fitted (parameters in sasmodels' units).
SAS_MODELS: dict[str, SasModelSpec] = {
    "sphere": SasModelSpec(
        "sphere", "uniform spheres (radius; contrast sld - sld_solvent fixed, scale free)",
        free=("radius", "scale", "background"), scan=("radius",)),
    "core_shell_sphere": SasModelSpec(
        "core_shell_sphere", "spheres with a shell (radius of the core, shell thickness; "
        "set the three SLDs to your contrast)",
        free=("radius", "thickness", "scale", "background"), scan=("radius", "thickness")),
    "guinier_porod": SasModelSpec(
        "guinier_porod", "Guinier-Porod (Hammouda): radius of gyration and Porod exponent; "
        "s = 0 (globular) unless given",
        free=("rg", "porod_exp", "scale", "background"), fixed={"s": 0.0},
        scan=("rg", "porod_exp")),
    "mono_gauss_coil": SasModelSpec(
        "mono_gauss_coil", "Gaussian polymer coils (Debye function): radius of gyration",
        free=("rg", "i_zero", "background"), fixed={"scale": 1.0}, linear=("i_zero",),
        scan=("rg",)),
    "gaussian_peak": SasModelSpec(
        "gaussian_peak", "a Gaussian peak on a flat background (ordering, crystallisation)",
        free=("peak_pos", "sigma", "scale", "background"), scan=("peak_pos", "sigma")),
    "peak_lorentz": SasModelSpec(
        "peak_lorentz", "a Lorentzian peak on a flat background",
        free=("peak_pos", "peak_hwhm", "scale", "background"), scan=("peak_pos", "peak_hwhm")),
    "broad_peak": SasModelSpec(
        "broad_peak", "a Lorentz-like peak on a power law A/q^n (ordering on a diffuse "
        "background)",
        free=("porod_scale", "porod_exp", "peak_scale", "correlation_length", "peak_pos",
              "background"),
        fixed={"scale": 1.0, "width_exp": 2.0, "shape_exp": 1.0},
        linear=("porod_scale", "peak_scale"),
        scan=("peak_pos", "correlation_length", "porod_exp")),
    "sphere+gaussian_peak": SasModelSpec(
        "sphere+gaussian_peak", "spheres plus a Gaussian peak (particles that order or "
        "crystallise): sasmodels' sum model, parameters A_* (sphere) and B_* (peak)",
        free=("A_radius", "A_scale", "B_peak_pos", "B_sigma", "B_scale", "background"),
        fixed={"scale": 1.0}, linear=("A_scale", "B_scale"),
        scan=("A_radius", "B_peak_pos", "B_sigma"),
        stages=((("A_radius",), ("A_scale",)),
                (("B_peak_pos", "B_sigma"), ("A_scale", "B_scale")))),
}


def to_sasmodels_factor(units: str, q_factor: float) -> float:
    """Factor that converts a value in the user's units to sasmodels' units.

    ``q_factor`` converts the user's q to Å^-1 (0.1 for nm^-1). Lengths (``Ang``) scale by
    ``1 / q_factor``, reciprocal lengths (``1/Ang``) by ``q_factor``; other units (SLDs in
    1e-6/Å^2, intensities, exponents) are not converted.
    """
    if units == "Ang":
        return 1.0 / q_factor
    if units == "1/Ang":
        return q_factor
    return 1.0
