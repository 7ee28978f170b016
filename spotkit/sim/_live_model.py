"""The live twin's sample: spheres that grow and a peak that appears, and what it knows.

Scattering model (what each frame's azimuthally averaged, solid-angle-corrected intensity
is, in counts per pixel at normal incidence)::

    I(q) = scale * P(q; R) + peak_amplitude * exp(-(q - peak_q)^2 / (2 peak_sigma^2)) + background
    P(q; R) = [3 (sin qR - qR cos qR) / (qR)^3]^2            (P(0) = 1)

``P`` is sasmodels' ``sphere`` form factor (monodisperse; radius ``10 R`` in Angstrom, q in
``A^-1 = nm^-1 / 10``) and the peak is sasmodels' ``gaussian_peak``: a sasmodels fit with
free scale and background recovers ``R`` exactly, up to the Poisson noise. A pixel records
``I(q) * cos^3(2 theta)`` expected counts (the solid angle pyFAI corrects with
``correct_solid_angle=True``; no polarization), Poisson-distributed.

The parameters evolve piecewise linearly: each :class:`Transition` ramps one parameter from
its current value to ``to`` over ``over`` frames starting at ``frame`` (0: a step); between
transitions the sample is stationary, so change detection has quiet stretches to learn from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._common import HC_KEV_NM
from ._saxs_model import _beamstop_mask, _gap_mask, q_map

__all__ = ["PARAMETERS", "LiveSeriesTruth", "Transition", "default_transitions",
           "live_intensity", "sphere_form_factor"]

#: The sample parameters a :class:`Transition` may change, with their default start values.
PARAMETERS = {"radius_nm": 5.0, "scale": 2000.0, "background": 1.0, "peak_amplitude": 0.0,
              "peak_q_nm": 1.6, "peak_sigma_nm": 0.06}


@dataclass(frozen=True)
class Transition:
    """One change of the sample: ``parameter`` ramps to ``to`` over ``over`` frames.

    Attributes
    ----------
    frame : int
        The first frame that differs (the onset).
    parameter : str
        One of :data:`PARAMETERS`: ``"radius_nm"``, ``"scale"``, ``"background"``,
        ``"peak_amplitude"``, ``"peak_q_nm"``, ``"peak_sigma_nm"``.
    to : float
        The value reached at frame ``frame + over - 1`` (``frame`` for a step).
    over : int
        Frames of the linear ramp (0 or 1: a step).
    """

    frame: int
    parameter: str
    to: float
    over: int = 0

    def __post_init__(self):
        if self.parameter not in PARAMETERS:
            raise ValueError(f"unknown transition parameter {self.parameter!r}; choose one of "
                             f"{sorted(PARAMETERS)}")
        if int(self.frame) < 0 or int(self.over) < 0:
            raise ValueError(f"a transition needs frame >= 0 and over >= 0, got frame="
                             f"{self.frame}, over={self.over}")
        if self.parameter in ("radius_nm", "peak_q_nm", "peak_sigma_nm") and self.to <= 0:
            raise ValueError(f"{self.parameter} must stay > 0, got to={self.to}")
        if self.to < 0:
            raise ValueError(f"{self.parameter} must stay >= 0, got to={self.to}")

    @property
    def end(self) -> int:
        """The first frame at the new value."""
        return int(self.frame) + max(int(self.over), 1) - 1


def default_transitions(n_frames: int) -> tuple[Transition, ...]:
    """Three changes spread over a series: the spheres grow, a peak appears, they grow again.

    Examples
    --------
    >>> [(t.frame, t.parameter, t.to) for t in default_transitions(100)]
    [(25, 'radius_nm', 6.5), (50, 'peak_amplitude', 40.0), (75, 'radius_nm', 8.0)]
    """
    ramp = max(1, n_frames // 50)
    return (Transition(n_frames // 4, "radius_nm", 6.5, ramp),
            Transition(n_frames // 2, "peak_amplitude", 40.0, ramp),
            Transition(3 * n_frames // 4, "radius_nm", 8.0, ramp))


def parameter_table(n_frames: int, start: dict[str, float],
                    transitions) -> dict[str, np.ndarray]:
    """Per-frame value of every parameter (float64 arrays of ``n_frames``)."""
    table = {}
    for name, first in start.items():
        values = np.full(n_frames, float(first))
        current = float(first)
        last_end = -1
        for t in sorted((t for t in transitions if t.parameter == name), key=lambda t: t.frame):
            if t.frame <= last_end:
                raise ValueError(f"transitions of {name} overlap (one starts at frame {t.frame} "
                                 f"before the previous one ends at {last_end})")
            n = max(int(t.over), 1)
            k = np.arange(t.frame, n_frames)
            frac = np.clip((k - t.frame + 1) / n, 0.0, 1.0)
            values[t.frame:] = current + (float(t.to) - current) * frac
            current, last_end = float(t.to), t.end
        table[name] = values
    return table


def sphere_form_factor(q_nm, radius_nm: float) -> np.ndarray:
    """Normalised sphere form factor ``P(q) = [3 (sin x - x cos x) / x^3]^2``, ``x = qR``.

    Examples
    --------
    >>> import numpy as np
    >>> p = sphere_form_factor(np.array([0.0, 4.4934 / 5.0]), 5.0)  # first zero at qR = 4.4934
    >>> bool(p[0] == 1.0 and p[1] < 1e-8)
    True
    """
    x = np.asarray(q_nm, dtype=np.float64) * float(radius_nm)
    small = np.abs(x) < 1e-3
    xs = np.where(small, 1.0, x)
    amp = np.where(small, 1.0 - x**2 / 10.0, 3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs**3)
    return amp**2


def live_intensity(q_nm, values: dict[str, float]) -> np.ndarray:
    """``I(q)`` of the model for one frame's parameter ``values`` (see the module notes)."""
    q = np.asarray(q_nm, dtype=np.float64)
    peak = values["peak_amplitude"] * np.exp(
        -0.5 * ((q - values["peak_q_nm"]) / values["peak_sigma_nm"]) ** 2)
    return values["scale"] * sphere_form_factor(q, values["radius_nm"]) + peak \
        + values["background"]


@dataclass(frozen=True, eq=False)
class LiveSeriesTruth:
    """What the live twin's series really contains, frame by frame.

    Attributes
    ----------
    path : pathlib.Path
        The HDF5 file or frame folder written.
    poni_path, mask_path : pathlib.Path or None
        Geometry and mask files (written before the first frame).
    fmt : str
        ``"h5"``, ``"cbf"``, ``"edf"`` or ``"tiff"``.
    n_frames : int
        Frames the acquisition is set up for.
    frame_interval_s : float
        Acquisition time between frames (the ``time_s`` of frame ``k`` is ``k`` times it).
    transitions : tuple of Transition
        The changes, in frame order.
    parameters : dict of str to ndarray
        Per-frame value of each parameter of :data:`PARAMETERS`.
    shape : (int, int)
        Detector shape.
    energy_kev, distance_m, pixel_size_um : float
        Geometry.
    beam_center : (float, float)
        Direct beam ``(row, col)`` in pixel-index coordinates.
    beamstop_radius_px : float
    module_shape, module_gap : (int, int) or None
    seed : int
    truncated_last : bool
        The last frame is left half-written (a writer that died mid-frame).
    """

    path: Path
    poni_path: Path | None
    mask_path: Path | None
    fmt: str
    n_frames: int
    frame_interval_s: float
    transitions: tuple[Transition, ...]
    parameters: dict[str, np.ndarray]
    shape: tuple[int, int]
    energy_kev: float
    distance_m: float
    pixel_size_um: float
    beam_center: tuple[float, float]
    beamstop_radius_px: float
    module_shape: tuple[int, int] | None
    module_gap: tuple[int, int]
    seed: int
    truncated_last: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def onset_frames(self) -> tuple[int, ...]:
        """First frame of each transition (sorted, unique)."""
        return tuple(sorted({int(t.frame) for t in self.transitions}))

    @property
    def radius_nm(self) -> np.ndarray:
        """True sphere radius per frame, nm."""
        return self.parameters["radius_nm"]

    @property
    def peak_q_nm(self) -> np.ndarray:
        """True peak position per frame, nm^-1."""
        return self.parameters["peak_q_nm"]

    @property
    def peak_amplitude(self) -> np.ndarray:
        """True peak height per frame (counts per pixel at normal incidence)."""
        return self.parameters["peak_amplitude"]

    def values(self, frame: int) -> dict[str, float]:
        """Every parameter's value at ``frame``."""
        return {k: float(v[int(frame)]) for k, v in self.parameters.items()}

    def intensity(self, q_nm, frame: int) -> np.ndarray:
        """Expected solid-angle-corrected ``I(q)`` at ``frame`` (counts per pixel), q in nm^-1.

        Examples
        --------
        >>> import pathlib, tempfile
        >>> from spotkit.sim import LiveSeriesWriter
        >>> w = LiveSeriesWriter(pathlib.Path(tempfile.mkdtemp()) / "s.h5", n_frames=8,
        ...                      shape=(40, 50))
        >>> float(w.truth.intensity([0.0], 0)[0])  # scale * P(0) + background
        2001.0
        """
        return live_intensity(q_nm, self.values(frame))

    @property
    def wavelength_nm(self) -> float:
        """Wavelength in nm."""
        return HC_KEV_NM / self.energy_kev

    def q_map(self) -> np.ndarray:
        """``(rows, cols)`` q of each pixel, nm^-1."""
        return q_map(self.shape, pixel_size_um=self.pixel_size_um, distance_m=self.distance_m,
                     beam_center=self.beam_center, energy_kev=self.energy_kev)

    def mask(self) -> np.ndarray:
        """Boolean ``(rows, cols)``: module gaps and the beamstop (what the mask file holds)."""
        return (_gap_mask(self.shape, self.module_shape, self.module_gap)
                | _beamstop_mask(self.shape, self.beam_center, self.beamstop_radius_px))

    def to_dict(self) -> dict:
        """JSON-serialisable description."""
        return {
            "kind": "live-saxs", "path": str(self.path),
            "poni_path": None if self.poni_path is None else str(self.poni_path),
            "mask_path": None if self.mask_path is None else str(self.mask_path),
            "fmt": self.fmt, "n_frames": self.n_frames,
            "frame_interval_s": self.frame_interval_s,
            "transitions": [[t.frame, t.parameter, t.to, t.over] for t in self.transitions],
            "parameters": {k: [float(x) for x in v] for k, v in self.parameters.items()},
            "shape": list(self.shape), "energy_kev": self.energy_kev,
            "distance_m": self.distance_m, "pixel_size_um": self.pixel_size_um,
            "beam_center": list(self.beam_center),
            "beamstop_radius_px": self.beamstop_radius_px,
            "module_shape": None if self.module_shape is None else list(self.module_shape),
            "module_gap": list(self.module_gap), "seed": self.seed,
            "truncated_last": self.truncated_last, "extra": self.extra,
        }

    def save(self, path) -> Path:
        """Write the truth as JSON; return the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path) -> LiveSeriesTruth:
        """Read a truth written by :meth:`save`."""
        d = json.loads(Path(path).read_text())
        d.pop("kind", None)
        for key in ("path", "poni_path", "mask_path"):
            d[key] = None if d[key] is None else Path(d[key])
        d["transitions"] = tuple(Transition(int(f), p, float(to), int(o))
                                 for f, p, to, o in d["transitions"])
        d["parameters"] = {k: np.asarray(v, dtype=np.float64)
                           for k, v in d["parameters"].items()}
        d["shape"] = tuple(d["shape"])
        d["beam_center"] = tuple(d["beam_center"])
        d["module_shape"] = None if d["module_shape"] is None else tuple(d["module_shape"])
        d["module_gap"] = tuple(d["module_gap"])
        return cls(**d)


def default_distance(shape, beam_center, pixel_size_um: float, energy_kev: float,
                     q_edge_nm: float = 1.5) -> float:
    """Distance that puts ``q_edge_nm`` on the detector edge nearest to the beam."""
    rows, cols = shape
    reach = min(beam_center[0], rows - 1 - beam_center[0], beam_center[1],
                cols - 1 - beam_center[1])
    two_theta = 2.0 * math.asin(q_edge_nm * HC_KEV_NM / energy_kev / (4.0 * math.pi))
    return float(max(reach, 4.0) * pixel_size_um * 1e-6 / math.tan(two_theta))
