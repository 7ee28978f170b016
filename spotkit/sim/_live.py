"""The live twin: a detector writing a SAXS series frame by frame, now or in (scaled) real time.

:class:`LiveSeriesWriter` writes the series that :func:`spotkit.io.follow_frames` follows
and ``spotkit live`` reduces: spheres whose radius changes and a peak that appears at known
frames (:class:`Transition`; the sample model is in :mod:`spotkit.sim._live_model`), into one
HDF5/NeXus file (SWMR or plain flushes), an Eiger series (a master file linking data files of
a block of frames each) or a folder of CBF/EDF/TIFF files. The PONI
geometry and the detector mask are written first, as after a calibration.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ._common import HC_KEV_NM, iso, prepare_path, start_time_for
from ._live_formats import EigerOutput, FolderOutput, H5Output
from ._live_model import (
    PARAMETERS,
    LiveSeriesTruth,
    Transition,
    default_distance,
    default_transitions,
    live_intensity,
    parameter_table,
)
from ._saxs import _write_poni
from ._saxs_model import _BEAMSTOP_TRANSMISSION, _beamstop_mask, _gap_mask, q_map

__all__ = ["LiveSeriesWriter"]

logger = logging.getLogger(__name__)

_FORMATS = ("h5", "eiger", "cbf", "edf", "tiff")


class LiveSeriesWriter:
    """Write a SAXS series frame by frame, as a detector does, with a known truth.

    Parameters
    ----------
    path : path-like
        The HDF5 file (``fmt="h5"``), the Eiger master file (``fmt="eiger"``, e.g.
        ``run_master.h5``: its data files are ``run_data_000001.h5``... beside it) or the
        folder of frame files to create. The PONI file is ``<stem>.poni`` beside the HDF5
        file (inside the folder for frame files), the mask ``<stem>_mask.edf`` beside the
        file or folder.
    n_frames : int
        Frames of the acquisition.
    frame_interval_s : float
        Acquisition time between frames (frame ``k``'s timestamp is ``k`` times it).
    fmt : {"h5", "eiger", "cbf", "edf", "tiff"}
        Output. ``"eiger"``: a master file written first, linking (HDF5 external links
        ``/entry/data/data_NNNNNN``) data files of ``frames_per_file`` frames each, which
        appear one after another as the frames are written; no per-frame timestamps.
    swmr : bool
        HDF5 (and Eiger data files): switch SWMR on after creating the datasets (otherwise
        the file is flushed after each frame and readers must re-open it).
    frames_per_file : int
        Eiger: frames per data file (the last one holds the rest).
    transitions : iterable of Transition, optional
        The sample's changes; default :func:`default_transitions` (three changes), ``()``
        for a stationary sample.
    shape : (int, int)
        Detector ``(rows, cols)``, at least 16 x 16.
    seed : int
        Seeds the Poisson noise (frame ``k`` draws from ``(seed, k)``: any frame can be
        written again identically) and the start time.
    time_scale : float
        Real-time mode (:meth:`start`): seconds of wall time per second of acquisition
        (0.01 runs a 1 s cadence at 100 frames/s).
    pauses : iterable of (int, float)
        Real-time mode: after frame ``k`` the detector pauses this many acquisition seconds.
    truncate_last : bool
        The last frame is left half-written and the series is never ended (a writer killed
        mid-frame): no timestamp, no end_time, no sentinel (Eiger: the frame is announced,
        its chunk never written).
    start : dict, optional
        Start values of the sample parameters (defaults in :data:`PARAMETERS`).
    energy_kev, distance_m, pixel_size_um, beam_center, beamstop_radius_px : optional
        Geometry; the default distance puts q = 1.5 nm^-1 on the nearest detector edge.
    module_shape, module_gap : (int, int)
        Pilatus-like module gaps (stored as -1 and masked); ``module_shape=None``: no gaps.
    mask : bool
        Write the mask file (gaps and beamstop, 1 = masked).
    compression : {None, "gzip", "lzf"}
        HDF5 only: compress each frame's chunk (as Eiger/Pilatus4 files are; readers
        decompress through HDF5's filters).
    beamline, sample, proposal, experimenter : str
        Metadata.
    start_time : datetime, optional
        Time-zone-aware acquisition start; default a fixed date plus a seed-derived offset.
    overwrite : bool
        Replace existing files.

    Attributes
    ----------
    truth : LiveSeriesTruth
        Per-frame true radius, peak and every parameter; onset frames.
    frame_times : list of float
        Unix time at which each frame was completely written.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.sim import Transition
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "run_0001"
    >>> writer = LiveSeriesWriter(folder, n_frames=6, fmt="cbf", shape=(40, 50),
    ...                           transitions=[Transition(3, "radius_nm", 7.0)])
    >>> writer.write(4), sorted(p.name for p in folder.iterdir())[:2]
    (4, ['frame_00001.cbf', 'frame_00002.cbf'])
    >>> writer.truth.onset_frames, float(writer.truth.radius_nm[3])
    ((3,), 7.0)
    >>> writer.write(10), writer.finished  # only 6 frames in the acquisition
    (6, True)
    """

    def __init__(self, path, *, n_frames: int = 100, frame_interval_s: float = 1.0,
                 fmt: str = "h5", swmr: bool = True, frames_per_file: int = 100,
                 transitions: Iterable[Transition] | None = None,
                 shape: tuple[int, int] = (195, 487), seed: int = 0, time_scale: float = 1.0,
                 pauses: Iterable[tuple[int, float]] = (), truncate_last: bool = False,
                 start: dict[str, float] | None = None, energy_kev: float = 12.0,
                 distance_m: float | None = None, pixel_size_um: float = 172.0,
                 beam_center: tuple[float, float] | None = None,
                 beamstop_radius_px: float | None = None,
                 module_shape: tuple[int, int] | None = (95, 239),
                 module_gap: tuple[int, int] = (5, 9), mask: bool = True,
                 beamline: str = "7.3.3", sample: str = "silica nanoparticles growing",
                 proposal: str = "ALS-00000", experimenter: str = "spotkit digital twin",
                 start_time: datetime | None = None, overwrite: bool = False,
                 compression: str | None = None):
        if compression not in (None, "gzip", "lzf"):
            raise ValueError(f"compression must be None, 'gzip' or 'lzf', not {compression!r}")
        if fmt not in _FORMATS:
            raise ValueError(f"unknown fmt {fmt!r}; choose one of {list(_FORMATS)}")
        if int(n_frames) < 1:
            raise ValueError(f"n_frames must be >= 1, got {n_frames}")
        if int(frames_per_file) < 1:
            raise ValueError(f"frames_per_file must be >= 1, got {frames_per_file}")
        if not frame_interval_s > 0 or not time_scale > 0:
            raise ValueError("frame_interval_s and time_scale must be > 0, got "
                             f"{frame_interval_s} and {time_scale}")
        shape = (int(shape[0]), int(shape[1]))
        if min(shape) < 16:
            raise ValueError(f"detector shape must be at least 16 x 16, got {shape}")
        values = dict(PARAMETERS)
        for key, value in (start or {}).items():
            if key not in PARAMETERS:
                raise ValueError(f"unknown start parameter {key!r}; choose one of "
                                 f"{sorted(PARAMETERS)}")
            values[key] = float(value)
        self.n_frames = int(n_frames)
        trans = default_transitions(self.n_frames) if transitions is None else tuple(transitions)
        for t in trans:
            if not isinstance(t, Transition):
                raise TypeError(f"transitions must be Transition objects, got {t!r}")
            if t.frame >= self.n_frames:
                raise ValueError(f"transition at frame {t.frame} is beyond the series "
                                 f"({self.n_frames} frames)")
        trans = tuple(sorted(trans, key=lambda t: (t.frame, t.parameter)))
        self._params = parameter_table(self.n_frames, values, trans)
        self.frame_interval_s = float(frame_interval_s)
        self.time_scale = float(time_scale)
        self._pauses = {int(k): float(s) for k, s in pauses}
        self.fmt = fmt
        self.seed = int(seed)
        self._truncate = bool(truncate_last)

        rows, cols = shape
        if beam_center is None:
            beam_center = ((rows - 1) / 2 - 0.3, (cols - 1) / 2 + 0.4)
        beam_center = (float(beam_center[0]), float(beam_center[1]))
        if beamstop_radius_px is None:
            beamstop_radius_px = max(3.0, 0.06 * min(shape))
        if distance_m is None:
            distance_m = default_distance(shape, beam_center, pixel_size_um, energy_kev)
        q = q_map(shape, pixel_size_um=pixel_size_um, distance_m=distance_m,
                  beam_center=beam_center, energy_kev=energy_kev)
        self._q = q
        two_theta = 2.0 * np.arcsin(q * (HC_KEV_NM / energy_kev) / (4.0 * math.pi))
        weight = np.cos(two_theta) ** 3  # the pixel's solid angle relative to normal incidence
        shadow = _beamstop_mask(shape, beam_center, beamstop_radius_px)
        self._weight = np.where(shadow, weight * _BEAMSTOP_TRANSMISSION, weight)
        self._gaps = _gap_mask(shape, module_shape, module_gap)
        self._cache: tuple[tuple, np.ndarray] | None = None

        path = Path(path).expanduser().absolute()
        folder_mode = fmt not in ("h5", "eiger")
        if folder_mode:
            if path.exists() and not overwrite:
                raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
            if path.exists():
                import shutil

                shutil.rmtree(path) if path.is_dir() else path.unlink()
            for stale in (Path(f"{path}.done"),):
                stale.unlink(missing_ok=True)
            path.mkdir(parents=True)
            poni_path = path / f"{path.name}.poni"
        else:
            path = prepare_path(path, overwrite)
            poni_path = path.with_suffix(".poni")
            if poni_path.exists() and not overwrite:
                raise FileExistsError(f"{poni_path} already exists; pass overwrite=True")
        self.path = path
        pixel_m = pixel_size_um * 1e-6
        _write_poni(poni_path, pixel_m=pixel_m, shape=shape, distance_m=float(distance_m),
                    poni1=(beam_center[0] + 0.5) * pixel_m,
                    poni2=(beam_center[1] + 0.5) * pixel_m,
                    wavelength_m=HC_KEV_NM / energy_kev * 1e-9)
        mask_path = None
        if mask:
            from spotkit.io import save_mask

            mask_path = path.with_name(f"{path.stem if not folder_mode else path.name}_mask.edf")
            save_mask(self._gaps | shadow, mask_path)
        t0 = start_time_for(self.seed, start_time)
        self._t0 = t0
        meta = {"beamline": beamline, "sample": sample, "proposal": proposal,
                "experimenter": experimenter, "start_time": iso(t0),
                "energy_kev": float(energy_kev), "distance_m": float(distance_m),
                "pixel_size_um": float(pixel_size_um), "beam_center": beam_center,
                "frame_time_s": self.frame_interval_s,
                "exposure_s": 0.9 * self.frame_interval_s, "n_frames": self.n_frames,
                "poni_name": poni_path.name,
                "mask_name": None if mask_path is None else
                (mask_path.name if not folder_mode else f"../{mask_path.name}")}
        self._out: H5Output | EigerOutput | FolderOutput
        if folder_mode:
            self._out = FolderOutput(path, fmt=fmt, meta=meta)
        elif fmt == "eiger":
            self._out = EigerOutput(path, swmr=bool(swmr), shape=shape, meta=meta,
                                    frames_per_file=int(frames_per_file),
                                    compression=compression, overwrite=overwrite)
        else:
            self._out = H5Output(path, swmr=bool(swmr), shape=shape, meta=meta,
                                 compression=compression)
        self.truth = LiveSeriesTruth(
            path=path, poni_path=poni_path, mask_path=mask_path, fmt=fmt,
            n_frames=self.n_frames, frame_interval_s=self.frame_interval_s, transitions=trans,
            parameters=self._params, shape=shape, energy_kev=float(energy_kev),
            distance_m=float(distance_m), pixel_size_um=float(pixel_size_um),
            beam_center=beam_center, beamstop_radius_px=float(beamstop_radius_px),
            module_shape=None if module_shape is None else
            (int(module_shape[0]), int(module_shape[1])),
            module_gap=(int(module_gap[0]), int(module_gap[1])), seed=self.seed,
            truncated_last=self._truncate,
            extra={"start_time": iso(t0), "swmr": bool(swmr) and not folder_mode,
                   "pauses": sorted(self._pauses.items()),
                   **({"frames_per_file": int(frames_per_file),
                       "data_files": [str(p) for p in self._out.data_paths]}
                      if isinstance(self._out, EigerOutput) else {})})
        self.frame_times: list[float] = []
        self._written = 0
        self._ended = False
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._error: BaseException | None = None
        logger.info("live twin %s: %d %s frames of %s, transitions at %s", path,
                    self.n_frames, fmt, shape, self.truth.onset_frames)

    # -- frames -------------------------------------------------------------------------------
    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` as the detector records it (int32 counts, -1 in module gaps)."""
        if not 0 <= int(k) < self.n_frames:
            raise IndexError(f"frame {k} is outside the series (0 .. {self.n_frames - 1})")
        values = {name: float(v[k]) for name, v in self._params.items()}
        key = tuple(sorted(values.items()))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, live_intensity(self._q, values) * self._weight)
        rng = np.random.default_rng([self.seed, 17, int(k)])
        counts = rng.poisson(self._cache[1]).astype(np.int32)
        counts[self._gaps] = -1
        return counts

    @property
    def written(self) -> int:
        """Frames completely written so far."""
        return self._written

    @property
    def data_files(self) -> list[Path]:
        """Eiger: the data files the master links to, in order (some not written yet);
        other formats: empty."""
        return list(self._out.data_paths) if isinstance(self._out, EigerOutput) else []

    @property
    def finished(self) -> bool:
        """The series has ended (all frames written, :meth:`close` called, or truncated)."""
        return self._ended

    @property
    def running(self) -> bool:
        """The real-time thread is writing."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def paused(self) -> bool:
        """:meth:`pause` was called and :meth:`resume` not yet."""
        return not self._resume.is_set()

    def _write_one(self, *, pause_s: float = 0.0) -> None:
        k = self._written
        frame = self.frame(k)
        if self._truncate and k == self.n_frames - 1:
            self._out.write_partial(k, frame, 0.5)
            logger.info("live twin %s: frame %d left half-written; the writer dies", self.path,
                        k)
            self._end(end_markers=False)
            return
        if isinstance(self._out, FolderOutput):
            self._out.write(k, frame, k * self.frame_interval_s, pause_s=pause_s)
        else:
            self._out.write(k, frame, k * self.frame_interval_s)
        self.frame_times.append(time.time())
        self._written = k + 1
        if self._written >= self.n_frames:
            self._end(end_markers=True)

    def _end(self, *, end_markers: bool) -> None:
        if self._ended:
            return
        self._ended = True
        end = iso(self._t0 + timedelta(seconds=self._written * self.frame_interval_s))
        self._out.end(end_time=end if end_markers else None)
        logger.info("live twin %s: series ended after %d frames", self.path, self._written)

    def write(self, n: int = 1) -> int:
        """Write the next ``n`` frames now (deterministic; for tests). Returns :attr:`written`.

        Writing the last frame ends the series (end marker and ``.done`` sentinel).
        """
        if self.running:
            raise RuntimeError("the real-time writer is running; stop() it before write()")
        with self._lock:
            for _ in range(max(0, int(n))):
                if self._ended:
                    break
                self._write_one()
        return self._written

    def write_partial(self, fraction: float = 0.5) -> None:
        """Write only the first ``fraction`` of the next frame (a frame caught mid-write).

        The next :meth:`write` writes the frame whole.
        """
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
        with self._lock:
            if self._ended:
                raise RuntimeError("the series has ended")
            self._out.write_partial(self._written, self.frame(self._written), fraction)

    # -- real time ------------------------------------------------------------------------------
    def start(self) -> LiveSeriesWriter:
        """Write the remaining frames in a background thread, one per scaled interval."""
        if self.running:
            raise RuntimeError("the real-time writer is already running")
        if self._ended:
            raise RuntimeError("the series has ended")
        self._stop.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"live-twin {self.path.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _sleep(self, seconds: float) -> bool:
        """Sleep (interruptible by stop); False when stopped."""
        return not self._stop.wait(max(0.0, seconds))

    def _run(self) -> None:
        step = self.frame_interval_s * self.time_scale
        due = time.monotonic()
        try:
            while not self._ended and not self._stop.is_set():
                if not self._resume.is_set():
                    while not self._resume.wait(0.05):
                        if self._stop.is_set():
                            return
                    due = time.monotonic()
                if not self._sleep(due - time.monotonic()):
                    return
                with self._lock:
                    k = self._written
                    self._write_one(pause_s=min(0.2 * step, 0.05))
                due += step
                pause = self._pauses.get(k)
                if pause:
                    logger.info("live twin %s: paused %.1f s after frame %d", self.path,
                                pause, k)
                    if not self._sleep(pause * self.time_scale):
                        return
                    due = time.monotonic()
                if due < time.monotonic() - 10 * step:  # fell far behind: do not burst
                    due = time.monotonic()
        except BaseException as exc:
            self._error = exc
            logger.exception("live twin %s: writing failed", self.path)

    def pause(self) -> None:
        """Pause the real-time writer after the frame being written."""
        self._resume.clear()

    def resume(self) -> None:
        """Resume after :meth:`pause` (the cadence restarts now)."""
        self._resume.set()

    def _join(self, timeout: float | None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"the live twin failed writing {self.path}") from error
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the real-time writer to end the series; False on timeout."""
        return self._join(timeout) and self._ended

    def stop(self) -> None:
        """Stop the real-time writer (the series is not ended: :meth:`start` again later)."""
        self._stop.set()
        self._resume.set()
        self._join(None)

    def close(self) -> None:
        """Stop and end the series where it is (end marker, sentinel; idempotent)."""
        self.stop()
        with self._lock:
            self._end(end_markers=True)

    def __enter__(self) -> LiveSeriesWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<LiveSeriesWriter {self.path} {self.fmt} {self._written}/{self.n_frames}"
                f"{' ended' if self._ended else ''}>")

    @property
    def start_time(self) -> datetime:
        """Acquisition start (UTC)."""
        return self._t0
