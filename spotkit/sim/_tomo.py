"""Simulated micro-tomography scans written as Data Exchange HDF5 (ALS 8.3.2 style).

Geometry convention (tomopy's)
------------------------------
All lengths below are in detector pixels; the geometry is the one ``tomopy.project`` and
``tomopy.recon`` use (:data:`spotkit.tomo.CONVENTION`).

* Detector positions ``u`` are measured from the left edge of column 0: column ``j``
  (0-based) spans ``[j, j + 1)``; detector row ``r`` is centred at height ``z = r``.
* The rotation axis is vertical and projects onto ``center = n_cols / 2 + center_offset``
  (a float; tomopy's centre value, ``n_cols / 2`` being the middle of the detector).
* Projection angles ``theta`` run from 0 to 180 degrees, endpoint excluded
  (``np.linspace(0, 180, n_angles, endpoint=False)``), stored in ``/exchange/theta``.
* Object coordinates ``(x, y)`` have their origin on the rotation axis, ``y`` growing with
  the image row. At angle ``theta`` the point ``(x, y)`` projects onto
  ``u = center + x cos(theta) - y sin(theta)``.
* Reconstruction grid: ``n`` x ``n`` pixels of the detector pixel size, centred on the
  rotation axis; pixel ``(iy, ix)`` (array row, column) is centred at
  ``x = ix - (n - 1)/2``, ``y = iy - (n - 1)/2``. ``tomopy.recon`` (or
  :func:`spotkit.tomo.reconstruct`) with ``center`` reproduces
  :meth:`TomoScanTruth.phantom_slice`, not mirrored. At ``theta = 0`` the projection is the
  sum of the slice over array rows (axis 0), column ``ix`` of an ``n_cols`` grid landing on
  detector column ``ix + center - n_cols / 2``.

Units
-----
The phantom attenuation ``mu`` is in 1/cm. In pixel units (what a reconstruction from
``-log`` normalised projections returns), ``mu_per_pixel = mu_per_cm * pixel_size_cm``
with ``pixel_size_cm = pixel_size_um * 1e-4``. The phantom is scaled so that the largest
optical depth through the sample is about 1.8, whatever the detector size.

Counts
------
For projection ``k`` (angle index), row ``r``, column ``j``::

    I = Poisson(F[r, j] * drift[k] * exp(-p[k, r, j])) * gain[j] + dark[r, j] + read noise

``F`` is a smooth, non-uniform flat field (Gaussian beam profile times a low-frequency
fixed pattern, peak ``flat_counts``), ``drift[k] = 1 + beam_drift * k / (n_angles - 1)``,
``gain[j] = 1 +- ring_strength`` on ``ring_columns`` randomly chosen columns (1 elsewhere):
a gain error present in projections but not in flats, which produces ring artefacts.
Flats are ``Poisson(F) + dark + read noise``; darks ``dark + read noise``. Counts are rounded
and clipped to uint16.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np

from ._common import iso, prepare_path, start_time_for, touch_sentinel, write_num, write_str
from ._phantom import Ellipsoid, line_integrals, make_phantom, slice_image

logger = logging.getLogger(__name__)

__all__ = ["TomoScanTruth", "simulate_tomo_scan"]

_BLOCK_ANGLES = 16  # projections written per block (one flush per block)
_MAX_ELEMENTS = 4_000_000  # float64 elements per computed sub-block
_TARGET_OPTICAL_DEPTH = 1.8
_READ_NOISE = 2.0  # counts, standard deviation


@dataclass(frozen=True, eq=False)
class TomoScanTruth:
    """What the simulated tomography scan really contains.

    Attributes
    ----------
    path : pathlib.Path
        The Data Exchange file written.
    center : float
        Rotation axis, tomopy's value (``n_cols / 2`` is the middle of the detector).
    center_offset : float
        ``center - n_cols / 2``.
    theta : ndarray
        Projection angles in degrees.
    shape : tuple of int
        ``(n_angles, n_rows, n_cols)`` of ``/exchange/data``.
    pixel_size_um : float
        Detector pixel size in micrometres (also the reconstruction pixel).
    ellipsoids : tuple of Ellipsoid
        The phantom; positions and sizes in pixels relative to the axis, ``mu`` in 1/cm.
    ring_columns : tuple of int
        Detector columns with a gain error (ring artefacts).
    ring_gains : tuple of float
        The gain of each of ``ring_columns``.
    energy_kev : float
        Beam energy.
    seed : int
        The seed the scan was simulated with.

    See the module docstring of :mod:`spotkit.sim` for the geometry convention.
    """

    path: Path
    center: float
    center_offset: float
    theta: np.ndarray
    shape: tuple[int, int, int]
    pixel_size_um: float
    ellipsoids: tuple[Ellipsoid, ...]
    ring_columns: tuple[int, ...] = ()
    ring_gains: tuple[float, ...] = ()
    energy_kev: float = 25.0
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def pixel_size_cm(self) -> float:
        """Pixel size in cm: multiply a 1/cm attenuation by it to get 1/pixel."""
        return self.pixel_size_um * 1e-4

    def phantom_slice(
        self, row: float, n: int | None = None, *, supersample: int = 4, units: str = "1/cm"
    ) -> np.ndarray:
        """Voxelised attenuation of the phantom at detector row ``row``.

        Parameters
        ----------
        row : float
            Detector row (height ``z``).
        n : int, optional
            Size of the square grid, centred on the rotation axis, pixel = detector pixel.
            Defaults to ``n_cols``.
        supersample : int, optional
            Sub-samples per pixel along each axis (area averaging).
        units : {"1/cm", "1/pixel"}
            ``"1/pixel"`` multiplies by :attr:`pixel_size_cm`; that is what a reconstruction
            of ``-log`` normalised projections returns.

        Returns
        -------
        ndarray
            ``(n, n)`` float64; pixel ``(iy, ix)`` centred at
            ``x = ix - (n-1)/2, y = iy - (n-1)/2`` pixels from the axis.

        Examples
        --------
        >>> import pathlib, tempfile
        >>> truth = simulate_tomo_scan(pathlib.Path(tempfile.mkdtemp()) / "scan.h5",
        ...                            shape=(91, 8, 64))
        >>> truth.phantom_slice(8, units="1/pixel").shape
        (64, 64)
        """
        scale = self._unit_scale(units)
        return slice_image(
            self.ellipsoids,
            row,
            self.shape[2] if n is None else int(n),
            supersample=supersample,
            scale=scale,
        )

    def sinogram(self, row: float, theta=None) -> np.ndarray:
        """Exact noiseless optical depth ``-log(I / I0)`` of detector row ``row``.

        Parameters
        ----------
        row : float
            Detector row.
        theta : array_like, optional
            Angles in degrees; defaults to the scan's angles.

        Returns
        -------
        ndarray
            ``(n_angles, n_cols)`` float64 (dimensionless).
        """
        theta = self.theta if theta is None else np.asarray(theta, dtype=np.float64)
        return line_integrals(
            self.ellipsoids, [row], theta, self.shape[2], self.center, scale=self.pixel_size_cm
        )[0]

    def _unit_scale(self, units: str) -> float:
        scales = {"1/cm": 1.0, "1/pixel": self.pixel_size_cm}
        if units not in scales:
            raise ValueError(f"unknown units {units!r}; choose one of {sorted(scales)}")
        return scales[units]

    def to_dict(self) -> dict:
        """JSON-serialisable description of the truth."""
        return {
            "kind": "tomo",
            "path": str(self.path),
            "center": self.center,
            "center_offset": self.center_offset,
            "theta": [float(t) for t in self.theta],
            "shape": list(self.shape),
            "pixel_size_um": self.pixel_size_um,
            "ellipsoids": [e.to_dict() for e in self.ellipsoids],
            "ring_columns": list(self.ring_columns),
            "ring_gains": list(self.ring_gains),
            "energy_kev": self.energy_kev,
            "seed": self.seed,
            "extra": self.extra,
        }

    def save(self, path) -> Path:
        """Write the truth as JSON; return the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path) -> TomoScanTruth:
        """Read a truth written by :meth:`save`."""
        d = json.loads(Path(path).read_text())
        return cls(
            path=Path(d["path"]),
            center=d["center"],
            center_offset=d["center_offset"],
            theta=np.asarray(d["theta"], dtype=np.float64),
            shape=tuple(d["shape"]),
            pixel_size_um=d["pixel_size_um"],
            ellipsoids=tuple(Ellipsoid(**e) for e in d["ellipsoids"]),
            ring_columns=tuple(d["ring_columns"]),
            ring_gains=tuple(d["ring_gains"]),
            energy_kev=d["energy_kev"],
            seed=d["seed"],
            extra=d.get("extra", {}),
        )


def _flat_field(seed: int, n_rows: int, n_cols: int, flat_counts: float) -> np.ndarray:
    """Smooth non-uniform flat field with peak ``flat_counts``."""
    rng = np.random.default_rng([seed, 1])
    r = np.arange(n_rows, dtype=np.float64)[:, None]
    c = np.arange(n_cols, dtype=np.float64)[None, :]
    rc = (n_rows - 1) * (0.5 + rng.uniform(-0.1, 0.1))
    cc = (n_cols - 1) * (0.5 + rng.uniform(-0.1, 0.1))
    sr = max(1.2 * n_rows, 8.0)
    sc = max(0.8 * n_cols, 8.0)
    beam = np.exp(-0.5 * ((r - rc) / sr) ** 2 - 0.5 * ((c - cc) / sc) ** 2)
    pattern = np.ones_like(beam)
    for _ in range(4):  # low-frequency fixed pattern (scintillator, optics)
        fr, fc = rng.uniform(0.5, 3.0, size=2)
        ph = rng.uniform(0, 2 * np.pi, size=2)
        pattern += (
            0.015
            * np.cos(2 * np.pi * fr * r / n_rows + ph[0])
            * np.cos(2 * np.pi * fc * c / n_cols + ph[1])
        )
    flat = beam * pattern
    return flat * (flat_counts / flat.max())


def _dark_frame(seed: int, n_rows: int, n_cols: int, dark_level: float) -> np.ndarray:
    """Mean dark current with a small fixed column/pixel pattern."""
    rng = np.random.default_rng([seed, 3])
    col = rng.normal(0.0, 1.0, size=(1, n_cols))
    pix = rng.normal(0.0, 0.5, size=(n_rows, n_cols))
    return dark_level + col + pix


def _to_uint16(x: np.ndarray, out: np.ndarray) -> None:
    np.rint(x, out=x)
    np.clip(x, 0, np.iinfo(np.uint16).max, out=x)
    out[...] = x


def _validate(shape, flat_counts, dark_level, ring_columns, n_flats, n_darks, pixel_size_um):
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ValueError(f"shape must be (n_angles, n_rows, n_cols) of positive ints, got {shape}")
    if shape[2] < 16:
        raise ValueError(f"need at least 16 detector columns, got n_cols={shape[2]}")
    if not (0 < flat_counts and flat_counts * 1.1 + dark_level + 50 < 65535):
        raise ValueError(
            f"flat_counts={flat_counts} with dark_level={dark_level} does not fit uint16; "
            "keep flat_counts * 1.1 + dark_level below 65485"
        )
    if dark_level < 0:
        raise ValueError(f"dark_level must be >= 0, got {dark_level}")
    n_max = int(0.8 * shape[2]) - int(0.2 * shape[2])  # ring columns lie in the middle 60 %
    if not 0 <= ring_columns <= n_max:
        raise ValueError(f"ring_columns must be in [0, {n_max}], got {ring_columns}")
    if n_flats < 1 or n_darks < 1:
        raise ValueError(f"n_flats and n_darks must be >= 1, got {n_flats}, {n_darks}")
    if pixel_size_um <= 0:
        raise ValueError(f"pixel_size_um must be > 0, got {pixel_size_um}")


def simulate_tomo_scan(
    path,
    *,
    shape: tuple[int, int, int] = (181, 16, 128),
    center_offset: float = 5.25,
    seed: int = 0,
    noise: bool = True,
    flat_counts: float = 20000.0,
    n_flats: int = 10,
    n_darks: int = 10,
    dark_level: float = 100.0,
    ring_columns: int = 3,
    ring_strength: float = 0.03,
    beam_drift: float = 0.0,
    beamline: str = "8.3.2",
    sample: str = "simulated phantom",
    proposal: str = "ALS-00000",
    experimenter: str = "spotkit digital twin",
    energy_kev: float = 25.0,
    pixel_size_um: float = 0.65,
    exposure_s: float = 0.1,
    start_time: datetime | None = None,
    write_delay: float = 0.0,
    sentinel: bool = False,
    truth_path=None,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> TomoScanTruth:
    """Simulate a parallel-beam micro-CT scan and write it as Data Exchange HDF5.

    The file is written the way a detector writes it: darks, flats, then projections in
    blocks appended to a resizable dataset (flushed after each block), and ``theta`` plus the
    metadata at the end, so a file observed mid-way is incomplete. Memory use is bounded by
    a block of 16 projections, whatever the scan size.

    Parameters
    ----------
    path : path-like
        HDF5 file to create.
    shape : (int, int, int)
        ``(n_angles, n_rows, n_cols)``. ALS 8.3.2 full size is ``(1313, 2160, 2560)``.
    center_offset : float
        Rotation axis position minus ``n_cols / 2``, in pixels.
    seed : int
        Seeds the phantom, the flat field, the noise and the timestamps.
    noise : bool
        Poisson counting and read noise; without it the counts are the rounded means.
    flat_counts : float
        Peak counts of the flat field.
    n_flats, n_darks : int
        Number of flat (white) and dark frames.
    dark_level : float
        Mean dark counts.
    ring_columns : int
        Number of detector columns with a gain error (ring artefacts).
    ring_strength : float
        Relative gain error of those columns (gain ``1 +- ring_strength``).
    beam_drift : float
        Relative change of the incident intensity from the first to the last projection.
    beamline, sample, proposal, experimenter : str
        Metadata written to the file.
    energy_kev, pixel_size_um, exposure_s : float
        Beam energy, detector pixel size and exposure time per frame.
    start_time : datetime, optional
        Time-zone-aware acquisition start; default: a fixed date plus a seed-derived offset.
    write_delay : float
        Seconds to sleep after each block of projections (to mimic acquisition).
    sentinel : bool
        Create an empty ``<path>.done`` file once the HDF5 file is closed.
    truth_path : path-like, optional
        Also save the returned truth there as JSON.
    overwrite : bool
        Replace an existing file at ``path``.
    progress : callable, optional
        Called as ``progress(stage, done, total)`` after each flushed block, with stage
        ``"darks"``, ``"flats"`` or ``"projections"``.

    Returns
    -------
    TomoScanTruth
        The centre of rotation, the phantom, the angles and the ring columns.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> truth = simulate_tomo_scan(tmp / "scan.h5", shape=(91, 8, 64))
    >>> truth.center
    37.25
    """
    dims = tuple(int(s) for s in shape)
    _validate(dims, flat_counts, dark_level, ring_columns, n_flats, n_darks, pixel_size_um)
    n_angles, n_rows, n_cols = dims
    shape = (n_angles, n_rows, n_cols)
    path = prepare_path(path, overwrite)
    center = n_cols / 2.0 + float(center_offset)
    theta = np.linspace(0.0, 180.0, n_angles, endpoint=False)
    pixel_size_cm = pixel_size_um * 1e-4

    # Phantom in relative units, rescaled to the target optical depth, then to 1/cm.
    shape_ells = make_phantom(np.random.default_rng([seed, 0]), n_rows, n_cols, center)
    probe_rows = sorted({float(np.clip(round(e.z0), 0, n_rows - 1)) for e in shape_ells})
    probe = line_integrals(
        shape_ells, probe_rows, np.linspace(0, 180, 60, endpoint=False), n_cols, center
    )
    mu_scale = _TARGET_OPTICAL_DEPTH / probe.max() / pixel_size_cm
    ells = tuple(Ellipsoid(e.x0, e.y0, e.z0, e.a, e.b, e.c, e.phi, e.mu * mu_scale)
                 for e in shape_ells)

    rng_ring = np.random.default_rng([seed, 2])
    lo, hi = int(0.2 * n_cols), int(0.8 * n_cols)
    ring_idx = np.sort(rng_ring.choice(np.arange(lo, hi), size=ring_columns, replace=False))
    ring_gain = 1.0 + ring_strength * rng_ring.choice([-1.0, 1.0], size=ring_columns)
    gain = np.ones(n_cols)
    gain[ring_idx] = ring_gain

    flat = _flat_field(seed, n_rows, n_cols, flat_counts)
    dark = _dark_frame(seed, n_rows, n_cols, dark_level)
    drift = 1.0 + beam_drift * np.arange(n_angles) / max(n_angles - 1, 1)

    t0 = start_time_for(seed, start_time)
    n_frames = n_angles + n_flats + n_darks
    t1 = t0 + timedelta(seconds=round(n_frames * exposure_s * 1.6 + 5.0))

    logger.info("simulating tomo scan %s: shape %s, centre %.3f", path, shape, center)
    frame = (n_rows, n_cols)
    chunks = (1, *frame)
    with h5py.File(path, "w") as f:
        f.attrs["implements"] = "exchange:measurement:process"
        ex = f.create_group("exchange")

        def frames(stage, name, count, make):
            ds = ex.create_dataset(
                name, shape=(count, *frame), dtype=np.uint16, chunks=chunks, track_times=False
            )
            for start in range(0, count, _BLOCK_ANGLES):
                stop = min(start + _BLOCK_ANGLES, count)
                ds[start:stop] = make(start, stop)
                f.flush()
                if progress is not None:
                    progress(stage, stop, count)

        def make_darks(start, stop):
            rng = np.random.default_rng([seed, 4, start])
            x = np.repeat(dark[None], stop - start, axis=0)
            if noise:
                x += rng.normal(0.0, _READ_NOISE, size=x.shape)
            out = np.empty(x.shape, np.uint16)
            _to_uint16(x, out)
            return out

        def make_flats(start, stop):
            rng = np.random.default_rng([seed, 5, start])
            x = np.repeat(flat[None], stop - start, axis=0)
            if noise:
                x = rng.poisson(x).astype(np.float64)
                x += rng.normal(0.0, _READ_NOISE, size=x.shape)
            x += dark[None]
            out = np.empty(x.shape, np.uint16)
            _to_uint16(x, out)
            return out

        frames("darks", "data_dark", n_darks, make_darks)
        frames("flats", "data_white", n_flats, make_flats)

        data = ex.create_dataset(
            "data",
            shape=(0, *frame),
            maxshape=(None, *frame),
            dtype=np.uint16,
            chunks=chunks,
            track_times=False,
        )
        for start in range(0, n_angles, _BLOCK_ANGLES):
            stop = min(start + _BLOCK_ANGLES, n_angles)
            block = _projection_block(
                ells,
                theta[start:stop],
                drift[start:stop],
                flat,
                dark,
                gain,
                center,
                pixel_size_cm,
                noise,
                np.random.default_rng([seed, 6, start]),
            )
            data.resize(stop, axis=0)
            data[start:stop] = block
            f.flush()
            if progress is not None:
                progress("projections", stop, n_angles)
            if write_delay > 0 and stop < n_angles:
                time.sleep(write_delay)

        th = ex.create_dataset("theta", data=theta, track_times=False)
        th.attrs["units"] = "degrees"
        _write_measurement(
            f,
            beamline=beamline,
            sample=sample,
            proposal=proposal,
            experimenter=experimenter,
            energy_kev=energy_kev,
            pixel_size_um=pixel_size_um,
            exposure_s=exposure_s,
        )
        acq = f.create_group("process/acquisition")
        write_str(acq, "start_date", iso(t0))
        write_str(acq, "end_date", iso(t1))
    if sentinel:
        touch_sentinel(path)

    truth = TomoScanTruth(
        path=path,
        center=center,
        center_offset=float(center_offset),
        theta=theta,
        shape=shape,
        pixel_size_um=float(pixel_size_um),
        ellipsoids=ells,
        ring_columns=tuple(int(i) for i in ring_idx),
        ring_gains=tuple(float(g) for g in ring_gain),
        energy_kev=float(energy_kev),
        seed=int(seed),
        extra={
            "beam_drift": float(beam_drift),
            "flat_counts": float(flat_counts),
            "start_time": iso(t0),
            "end_time": iso(t1),
            "noise": bool(noise),
        },
    )
    if truth_path is not None:
        truth.save(truth_path)
    return truth


def _projection_block(ells, theta, drift, flat, dark, gain, center, pixel_size_cm, noise, rng):
    """Counts for a block of projections, computed in row sub-blocks of bounded size."""
    n_rows, n_cols = flat.shape
    n_ang = theta.size
    out = np.empty((n_ang, n_rows, n_cols), dtype=np.uint16)
    rows_per = max(1, _MAX_ELEMENTS // (n_ang * n_cols))
    for r0 in range(0, n_rows, rows_per):
        r1 = min(r0 + rows_per, n_rows)
        p = line_integrals(ells, np.arange(r0, r1), theta, n_cols, center, scale=pixel_size_cm)
        p = p.transpose(1, 0, 2)  # (angles, rows, cols)
        np.negative(p, out=p)
        np.exp(p, out=p)
        p *= flat[None, r0:r1] * drift[:, None, None]
        if noise:
            p = rng.poisson(p).astype(np.float64)
        p *= gain[None, None, :]
        p += dark[None, r0:r1]
        if noise:
            p += rng.normal(0.0, _READ_NOISE, size=p.shape)
        _to_uint16(p, out[:, r0:r1])
    return out


def _write_measurement(
    f, *, beamline, sample, proposal, experimenter, energy_kev, pixel_size_um, exposure_s
):
    inst = f.create_group("measurement/instrument")
    write_str(inst, "name", f"ALS {beamline}")
    src = inst.create_group("source")
    write_str(src, "name", "Advanced Light Source")
    write_str(src, "beamline", beamline)
    mono = inst.create_group("monochromator")
    write_num(mono, "energy", energy_kev, "keV")
    det = inst.create_group("detector")
    write_num(det, "pixel_size_x", pixel_size_um, "um")
    write_num(det, "pixel_size_y", pixel_size_um, "um")
    write_num(det, "exposure_time", exposure_s, "s")
    smp = f.create_group("measurement/sample")
    write_str(smp, "name", sample)
    write_str(smp.create_group("experiment"), "proposal", proposal)
    write_str(smp.create_group("experimenter"), "name", experimenter)
