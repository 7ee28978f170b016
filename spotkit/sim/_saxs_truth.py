"""What the SAXS twin knows about the series it wrote (:class:`SaxsSeriesTruth`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._common import (
    HC_KEV_NM,
)
from ._saxs_model import _beamstop_mask, _gap_mask, q_map

logger = logging.getLogger(__name__)

__all__ = ["SaxsSeriesTruth"]

@dataclass(frozen=True, eq=False)
class SaxsSeriesTruth:
    """What the simulated SAXS/GISAXS series really contains.

    Attributes
    ----------
    path, poni_path : pathlib.Path
        The HDF5 series and its PONI geometry file.
    onset_frame : int
        First frame that contains the ordering peak.
    ring_q_nm : float
        Peak position, nm^-1.
    ring_amplitude : ndarray
        Per-frame peak height relative to the diffuse intensity at ``ring_q_nm``
        (0 before the onset, ``ring_strength`` once fully grown).
    mode : str
        ``"saxs"`` or ``"gisaxs"``.
    shape : (int, int)
        Detector shape.
    energy_kev, distance_m, pixel_size_um : float
        Geometry.
    beam_center : (float, float)
        Direct beam ``(row, col)`` in pixel-index coordinates.
    beamstop_radius_px : float
        Radius of the beamstop disc.
    incidence_angle_deg : float or None
        GISAXS incidence angle.
    frame_interval_s : float
        Nominal time between frames.
    seed : int
        The seed.
    """

    path: Path
    poni_path: Path
    onset_frame: int
    ring_q_nm: float
    ring_amplitude: np.ndarray
    mode: str
    shape: tuple[int, int]
    energy_kev: float
    distance_m: float
    pixel_size_um: float
    beam_center: tuple[float, float]
    beamstop_radius_px: float
    incidence_angle_deg: float | None
    frame_interval_s: float
    seed: int
    module_shape: tuple[int, int] | None = None
    module_gap: tuple[int, int] = (0, 0)
    extra: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.ring_amplitude.size)

    @property
    def wavelength_nm(self) -> float:
        """Wavelength in nm."""
        return HC_KEV_NM / self.energy_kev

    def q_map(self) -> np.ndarray:
        """``(rows, cols)`` scattering vector modulus in nm^-1 (see :func:`q_map`)."""
        return q_map(
            self.shape,
            pixel_size_um=self.pixel_size_um,
            distance_m=self.distance_m,
            beam_center=self.beam_center,
            energy_kev=self.energy_kev,
        )

    def gap_mask(self) -> np.ndarray:
        """Boolean ``(rows, cols)``: True on module-gap pixels (stored as -1)."""
        return _gap_mask(self.shape, self.module_shape, self.module_gap)

    def beamstop_mask(self) -> np.ndarray:
        """Boolean ``(rows, cols)``: True where the beamstop shadows the detector."""
        return _beamstop_mask(self.shape, self.beam_center, self.beamstop_radius_px)

    def to_dict(self) -> dict:
        """JSON-serialisable description of the truth."""
        return {
            "kind": "saxs",
            "path": str(self.path),
            "poni_path": str(self.poni_path),
            "onset_frame": self.onset_frame,
            "ring_q_nm": self.ring_q_nm,
            "ring_amplitude": [float(a) for a in self.ring_amplitude],
            "mode": self.mode,
            "shape": list(self.shape),
            "energy_kev": self.energy_kev,
            "distance_m": self.distance_m,
            "pixel_size_um": self.pixel_size_um,
            "beam_center": list(self.beam_center),
            "beamstop_radius_px": self.beamstop_radius_px,
            "incidence_angle_deg": self.incidence_angle_deg,
            "frame_interval_s": self.frame_interval_s,
            "seed": self.seed,
            "module_shape": None if self.module_shape is None else list(self.module_shape),
            "module_gap": list(self.module_gap),
            "extra": self.extra,
        }

    def save(self, path) -> Path:
        """Write the truth as JSON; return the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path) -> SaxsSeriesTruth:
        """Read a truth written by :meth:`save`."""
        d = json.loads(Path(path).read_text())
        d.pop("kind", None)
        d["path"] = Path(d["path"])
        d["poni_path"] = Path(d["poni_path"])
        d["ring_amplitude"] = np.asarray(d["ring_amplitude"], dtype=np.float64)
        d["shape"] = tuple(d["shape"])
        d["beam_center"] = tuple(d["beam_center"])
        d["module_shape"] = None if d["module_shape"] is None else tuple(d["module_shape"])
        d["module_gap"] = tuple(d["module_gap"])
        return cls(**d)
