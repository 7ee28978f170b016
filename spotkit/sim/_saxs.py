"""Simulated SAXS / GISAXS time series written as NeXus-style HDF5 plus a pyFAI PONI file.

Geometry convention
-------------------
The detector is flat and perpendicular to the beam (pyFAI ``rot1 = rot2 = rot3 = 0``).
Pixel ``(i, j)`` (array row, column) has its centre at ``y = (i + 0.5) * pixel1`` and
``x = (j + 0.5) * pixel2`` metres from the detector corner, as in pyFAI. The beam centre is
given in pixel-index coordinates (pixel ``(i, j)`` centred at ``(i, j)``), so
``poni1 = (beam_center[0] + 0.5) * pixel1`` and ``poni2 = (beam_center[1] + 0.5) * pixel2``.
For each pixel::

    2theta = atan(sqrt((y - poni1)^2 + (x - poni2)^2) / distance)
    q = 4 pi sin(theta) / wavelength        (nm^-1, wavelength in nm = 1.2398 / E[keV])

which is what ``pyFAI.load(poni).qArray()`` returns.

Scattering model
----------------
Every frame has Ornstein-Zernike diffuse scattering ``A / (1 + (q xi)^2) + B``. From
``onset_frame`` on, an ordering peak grows linearly over ``ring_growth_frames`` frames to
``ring_strength`` times the diffuse intensity at ``ring_q_nm`` (a Gaussian in ``q``; in
``"gisaxs"`` mode, Bragg rods at in-plane ``|q_y| = ring_q_nm`` above the sample horizon,
enhanced on the Yoneda band). Frames before the onset are statistically stationary.
A beamstop (disc plus arm) shadows the direct beam; module gaps of a Pilatus-like tiling
hold -1 (masked); counts are Poisson, stored as int32.

The physics and detector are in :mod:`spotkit.sim._saxs_model`, the truth record in
:mod:`spotkit.sim._saxs_truth`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np

from ._common import (
    HC_KEV_NM,
    iso,
    prepare_path,
    start_time_for,
    touch_sentinel,
    write_num,
    write_str,
)
from ._saxs_model import (
    _BEAMSTOP_TRANSMISSION,
    _MODES,
    _beamstop_mask,
    _gap_mask,
    _gisaxs_images,
    _ring_amplitude,
    q_map,
)
from ._saxs_truth import SaxsSeriesTruth

logger = logging.getLogger(__name__)

__all__ = ["SaxsSeriesTruth", "q_map", "simulate_saxs_series"]

def _write_poni(path: Path, *, pixel_m, shape, distance_m, poni1, poni2, wavelength_m):
    config = json.dumps({"pixel1": pixel_m, "pixel2": pixel_m, "max_shape": list(shape)})
    text = (
        "# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis\n"
        "# Written by spotkit.sim (simulated geometry)\n"
        "poni_version: 2\n"
        "Detector: Detector\n"
        f"Detector_config: {config}\n"
        f"Distance: {distance_m!r}\n"
        f"Poni1: {poni1!r}\n"
        f"Poni2: {poni2!r}\n"
        "Rot1: 0.0\n"
        "Rot2: 0.0\n"
        "Rot3: 0.0\n"
        f"Wavelength: {wavelength_m!r}\n"
    )
    path.write_text(text)


def simulate_saxs_series(
    path,
    *,
    n_frames: int = 40,
    shape: tuple[int, int] = (195, 487),
    onset_frame: int = 25,
    ring_q_nm: float = 1.0,
    ring_growth_frames: int = 5,
    ring_strength: float = 1.0,
    ring_width_nm: float | None = None,
    correlation_length_nm: float = 5.0,
    diffuse_counts: float = 500.0,
    background_counts: float = 2.0,
    mode: str = "saxs",
    incidence_angle_deg: float = 0.2,
    seed: int = 0,
    energy_kev: float = 10.0,
    distance_m: float | None = None,
    pixel_size_um: float = 172.0,
    beam_center: tuple[float, float] | None = None,
    beamstop_radius_px: float | None = None,
    module_shape: tuple[int, int] | None = (95, 239),
    module_gap: tuple[int, int] = (5, 9),
    noise: bool = True,
    frame_interval_s: float = 1.0,
    exposure_s: float | None = None,
    write_delay: float = 0.0,
    beamline: str = "7.3.3",
    sample: str = "simulated block copolymer film",
    proposal: str = "ALS-00000",
    experimenter: str = "spotkit digital twin",
    start_time: datetime | None = None,
    sentinel: bool = False,
    truth_path=None,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> SaxsSeriesTruth:
    """Simulate a SAXS or GISAXS time series in which an ordering peak appears.

    Writes ``path`` (NeXus-style HDF5, frame by frame, flushed after each frame) and the
    geometry ``<stem>.poni`` beside it (written first, as after a calibration).

    Parameters
    ----------
    path : path-like
        HDF5 file to create.
    n_frames : int
        Number of frames.
    shape : (int, int)
        Detector ``(rows, cols)``; default is Pilatus 100K-like.
    onset_frame : int
        First frame with the ordering peak (``>= n_frames``: never).
    ring_q_nm : float
        Peak position, nm^-1.
    ring_growth_frames : int
        Frames over which the peak grows linearly to full strength (0: a step).
    ring_strength : float
        Full peak height relative to the diffuse intensity at ``ring_q_nm``.
    ring_width_nm : float, optional
        Gaussian sigma of the peak in nm^-1; default ``0.04 * ring_q_nm``.
    correlation_length_nm, diffuse_counts, background_counts : float
        Ornstein-Zernike ``xi``, counts per pixel per frame at ``q -> 0``, flat background.
    mode : {"saxs", "gisaxs"}
        Transmission ring, or grazing-incidence Bragg rods with a Yoneda band.
    incidence_angle_deg : float
        GISAXS incidence angle in degrees (ignored for ``"saxs"``).
    seed : int
        Seeds the noise and the timestamps.
    energy_kev : float
        Photon energy.
    distance_m : float, optional
        Sample-detector distance; default puts ``ring_q_nm`` at 70 % of the way from the
        beam centre to the nearest detector edge (horizontal edge in GISAXS).
    pixel_size_um : float
        Square pixel size (172 for Pilatus).
    beam_center : (float, float), optional
        Direct beam ``(row, col)`` in pixel-index coordinates; default near the middle
        (SAXS) or near the bottom (GISAXS).
    beamstop_radius_px : float, optional
        Default ``0.06 * min(shape)`` (at least 3 pixels).
    module_shape, module_gap : (int, int)
        Pilatus-like tiling: modules of ``module_shape`` separated by ``module_gap`` pixel
        rows/columns that hold -1. ``module_shape=None``: no gaps.
    noise : bool
        Poisson counts; without it, rounded expected counts.
    frame_interval_s : float
        Nominal time between frame starts (``frame_time`` and ``frame_timestamp``).
    exposure_s : float, optional
        Counting time per frame, default ``0.9 * frame_interval_s``.
    write_delay : float
        Seconds to sleep after each frame.
    beamline, sample, proposal, experimenter : str
        Metadata.
    start_time : datetime, optional
        Time-zone-aware start; default a fixed date plus a seed-derived offset.
    sentinel : bool
        Create an empty ``<path>.done`` after the HDF5 file is closed.
    truth_path : path-like, optional
        Also save the truth there as JSON.
    overwrite : bool
        Replace existing files.
    progress : callable, optional
        ``progress("frames", done, total)`` after each flushed frame.

    Returns
    -------
    SaxsSeriesTruth

    Examples
    --------
    >>> import pathlib, tempfile
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> truth = simulate_saxs_series(tmp / "series.h5", n_frames=10, onset_frame=6)
    >>> float(truth.ring_amplitude[truth.onset_frame - 1])
    0.0
    """
    if mode not in _MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {list(_MODES)}")
    shape = (int(shape[0]), int(shape[1]))
    if min(shape) < 16:
        raise ValueError(f"detector shape must be at least 16 x 16, got {shape}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if ring_q_nm <= 0 or energy_kev <= 0 or pixel_size_um <= 0:
        raise ValueError("ring_q_nm, energy_kev and pixel_size_um must be > 0")
    path = prepare_path(path, overwrite)
    poni_path = path.with_suffix(".poni")
    if poni_path.exists() and not overwrite:
        raise FileExistsError(f"{poni_path} already exists; pass overwrite=True to replace it")

    rows, cols = shape
    if beam_center is None:
        beam_center = ((rows - 1) * (0.5 if mode == "saxs" else 0.88) - 0.3, (cols - 1) / 2 + 0.4)
    beam_center = (float(beam_center[0]), float(beam_center[1]))
    if beamstop_radius_px is None:
        beamstop_radius_px = max(3.0, 0.06 * min(shape))
    wavelength_nm = HC_KEV_NM / energy_kev
    two_theta0 = 2.0 * math.asin(ring_q_nm * wavelength_nm / (4.0 * math.pi))
    if distance_m is None:
        r_col = min(beam_center[1], cols - 1 - beam_center[1])
        reach = r_col if mode == "gisaxs" else min(r_col, beam_center[0], rows - 1 - beam_center[0])
        distance_m = 0.7 * reach * pixel_size_um * 1e-6 / math.tan(two_theta0)
    distance_m = float(distance_m)
    sigma_q = 0.04 * ring_q_nm if ring_width_nm is None else float(ring_width_nm)
    if exposure_s is None:
        exposure_s = 0.9 * frame_interval_s

    q = q_map(
        shape,
        pixel_size_um=pixel_size_um,
        distance_m=distance_m,
        beam_center=beam_center,
        energy_kev=energy_kev,
    )
    oz = diffuse_counts / (1.0 + (q * correlation_length_nm) ** 2)
    oz_at_ring = diffuse_counts / (1.0 + (ring_q_nm * correlation_length_nm) ** 2)
    if mode == "saxs":
        base = oz + background_counts
        peak = oz_at_ring * np.exp(-0.5 * ((q - ring_q_nm) / sigma_q) ** 2)
    else:
        base, peak = _gisaxs_images(
            shape,
            q,
            oz,
            oz_at_ring,
            background_counts,
            sigma_q,
            ring_q_nm,
            pixel_size_um,
            distance_m,
            beam_center,
            wavelength_nm,
            incidence_angle_deg,
        )
    shadow = _beamstop_mask(shape, beam_center, beamstop_radius_px)
    gaps = _gap_mask(shape, module_shape, module_gap)
    base = np.where(shadow, base * _BEAMSTOP_TRANSMISSION, base)
    peak = np.where(shadow, peak * _BEAMSTOP_TRANSMISSION, peak)
    amplitude = _ring_amplitude(n_frames, onset_frame, ring_growth_frames, ring_strength)

    t0 = start_time_for(seed, start_time)
    t1 = t0 + timedelta(seconds=n_frames * frame_interval_s)
    pixel_m = pixel_size_um * 1e-6
    poni1, poni2 = (beam_center[0] + 0.5) * pixel_m, (beam_center[1] + 0.5) * pixel_m
    _write_poni(
        poni_path,
        pixel_m=pixel_m,
        shape=shape,
        distance_m=distance_m,
        poni1=poni1,
        poni2=poni2,
        wavelength_m=wavelength_nm * 1e-9,
    )

    logger.info("simulating %s series %s: %d frames of %s", mode, path, n_frames, shape)
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        write_str(entry, "title", f"{mode.upper()} time series of {sample}")
        write_str(entry, "start_time", iso(t0))
        write_str(entry, "mode", mode)
        _write_instrument(
            entry,
            beamline=beamline,
            energy_kev=energy_kev,
            wavelength_nm=wavelength_nm,
            distance_m=distance_m,
            pixel_m=pixel_m,
            beam_center=beam_center,
            poni_name=poni_path.name,
            frame_interval_s=frame_interval_s,
            exposure_s=exposure_s,
        )
        smp = entry.create_group("sample")
        smp.attrs["NX_class"] = "NXsample"
        write_str(smp, "name", sample)
        if mode == "gisaxs":
            write_num(smp, "incidence_angle", incidence_angle_deg, "deg")
        exp = entry.create_group("experiment")
        exp.attrs["NX_class"] = "NXcollection"
        write_str(exp, "proposal", proposal)
        write_str(exp, "experimenter", experimenter)

        nxdata = entry.create_group("data")
        nxdata.attrs["NX_class"] = "NXdata"
        nxdata.attrs["signal"] = "data"
        data = nxdata.create_dataset(
            "data",
            shape=(0, *shape),
            maxshape=(None, *shape),
            chunks=(1, *shape),
            dtype=np.int32,
            track_times=False,
        )
        data.attrs["units"] = "counts"
        stamps = nxdata.create_dataset(
            "frame_timestamp",
            shape=(0,),
            maxshape=(None,),
            chunks=(1024,),
            dtype=np.float64,
            track_times=False,
        )
        stamps.attrs["units"] = "s"
        for k in range(n_frames):
            lam = base + amplitude[k] * peak
            if noise:
                counts = np.random.default_rng([seed, 10, k]).poisson(lam)
            else:
                counts = np.rint(lam)
            frame = counts.astype(np.int32)
            frame[gaps] = -1
            data.resize(k + 1, axis=0)
            data[k] = frame
            stamps.resize(k + 1, axis=0)
            stamps[k] = k * frame_interval_s
            f.flush()
            if progress is not None:
                progress("frames", k + 1, n_frames)
            if write_delay > 0 and k + 1 < n_frames:
                time.sleep(write_delay)
        write_str(entry, "end_time", iso(t1))
    if sentinel:
        touch_sentinel(path)

    truth = SaxsSeriesTruth(
        path=path,
        poni_path=poni_path,
        onset_frame=int(onset_frame),
        ring_q_nm=float(ring_q_nm),
        ring_amplitude=amplitude,
        mode=mode,
        shape=shape,
        energy_kev=float(energy_kev),
        distance_m=distance_m,
        pixel_size_um=float(pixel_size_um),
        beam_center=beam_center,
        beamstop_radius_px=float(beamstop_radius_px),
        incidence_angle_deg=float(incidence_angle_deg) if mode == "gisaxs" else None,
        frame_interval_s=float(frame_interval_s),
        seed=int(seed),
        module_shape=None if module_shape is None else _pair(module_shape),
        module_gap=_pair(module_gap),
        extra={
            "ring_width_nm": sigma_q,
            "correlation_length_nm": correlation_length_nm,
            "diffuse_counts": diffuse_counts,
            "background_counts": background_counts,
            "start_time": iso(t0),
            "end_time": iso(t1),
            "noise": bool(noise),
        },
    )
    if truth_path is not None:
        truth.save(truth_path)
    return truth


def _write_instrument(
    entry,
    *,
    beamline,
    energy_kev,
    wavelength_nm,
    distance_m,
    pixel_m,
    beam_center,
    poni_name,
    frame_interval_s,
    exposure_s,
):
    inst = entry.create_group("instrument")
    inst.attrs["NX_class"] = "NXinstrument"
    write_str(inst, "name", f"ALS {beamline}")
    src = inst.create_group("source")
    src.attrs["NX_class"] = "NXsource"
    write_str(src, "name", "Advanced Light Source")
    write_str(src, "beamline", beamline)
    mono = inst.create_group("monochromator")
    mono.attrs["NX_class"] = "NXmonochromator"
    write_num(mono, "energy", energy_kev, "keV")
    write_num(mono, "wavelength", wavelength_nm, "nm")
    det = inst.create_group("detector")
    det.attrs["NX_class"] = "NXdetector"
    write_str(det, "description", "Pilatus-like photon-counting detector (simulated)")
    write_num(det, "distance", distance_m, "m")
    write_num(det, "x_pixel_size", pixel_m, "m")
    write_num(det, "y_pixel_size", pixel_m, "m")
    write_num(det, "beam_center_x", beam_center[1], "pixel")
    write_num(det, "beam_center_y", beam_center[0], "pixel")
    write_num(det, "frame_time", frame_interval_s, "s")
    write_num(det, "count_time", exposure_s, "s")
    write_str(det, "geometry_file", poni_name)


def _pair(values) -> tuple[int, int]:
    """Two integers, e.g. (rows, cols) of a detector module."""
    a, b = (int(v) for v in values)
    return a, b
