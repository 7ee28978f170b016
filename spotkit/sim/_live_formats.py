"""Where the live twin's frames go: one HDF5/NeXus file (SWMR or not) or a frame folder.

The outputs write as detectors do: the HDF5 file is created with its metadata and empty,
growing datasets before the first frame, each frame is followed by its ``frame_timestamp``
entry and a flush; a frame file is written in two pieces (a reader may find it half
written), numbered ``frame_00001.<ext>`` (frame 0), into a folder that already holds the
PONI file and a ``metadata.json`` sidecar announcing ``n_frames``. Ending the series writes
``/entry/end_time`` (HDF5; after closing a SWMR file, since SWMR allows no new objects) or
the sidecar's ``end_time``, then a ``<path>.done`` sentinel.

An Eiger series (:class:`EigerOutput`) is a ``<prefix>_master.h5`` file written first, with
the metadata and one dangling external link per data file (``/entry/data/data_000001`` ->
``<prefix>_data_000001.h5:/entry/data/data``), then the data files one after another, each
created at its first frame (``image_nr_low`` / ``image_nr_high`` attributes, counted from 1),
appended frame by frame without a per-frame timestamp (as the detector's file writer does)
and closed when its block of frames is full; the end goes into the master.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from ._common import iso, touch_sentinel, write_num, write_str

__all__ = ["EigerOutput", "FolderOutput", "H5Output", "eiger_data_path"]

_FRAME_SUFFIX = {"cbf": ".cbf", "edf": ".edf", "tiff": ".tif"}


def write_header(f: h5py.File, meta: dict, *,
                 description: str = "Pilatus-like photon-counting detector (live twin)"
                 ) -> h5py.Group:
    """The NeXus metadata of a live series (the ``/entry`` group, returned; no frames)."""
    entry = f.create_group("entry")
    entry.attrs["NX_class"] = "NXentry"
    entry.attrs["default"] = "data"
    f.attrs["default"] = "entry"
    write_str(entry, "title", f"SAXS time series of {meta['sample']} (live twin)")
    write_str(entry, "start_time", meta["start_time"])
    write_str(entry, "mode", "saxs")
    inst = entry.create_group("instrument")
    inst.attrs["NX_class"] = "NXinstrument"
    write_str(inst, "name", f"ALS {meta['beamline']}")
    src = inst.create_group("source")
    src.attrs["NX_class"] = "NXsource"
    write_str(src, "name", "Advanced Light Source")
    write_str(src, "beamline", meta["beamline"])
    mono = inst.create_group("monochromator")
    mono.attrs["NX_class"] = "NXmonochromator"
    write_num(mono, "energy", meta["energy_kev"], "keV")
    det = inst.create_group("detector")
    det.attrs["NX_class"] = "NXdetector"
    write_str(det, "description", description)
    write_num(det, "distance", meta["distance_m"], "m")
    write_num(det, "x_pixel_size", meta["pixel_size_um"] * 1e-6, "m")
    write_num(det, "y_pixel_size", meta["pixel_size_um"] * 1e-6, "m")
    write_num(det, "beam_center_x", meta["beam_center"][1], "pixel")
    write_num(det, "beam_center_y", meta["beam_center"][0], "pixel")
    write_num(det, "frame_time", meta["frame_time_s"], "s")
    write_num(det, "count_time", meta["exposure_s"], "s")
    write_str(det, "geometry_file", meta["poni_name"])
    if meta.get("mask_name"):
        write_str(det, "mask_file", meta["mask_name"])
    specific = det.create_group("detectorSpecific")  # as an Eiger master file says it
    specific.create_dataset("nimages", data=np.int64(meta["n_frames"]))
    specific.create_dataset("ntrigger", data=np.int64(1))
    smp = entry.create_group("sample")
    smp.attrs["NX_class"] = "NXsample"
    write_str(smp, "name", meta["sample"])
    exp = entry.create_group("experiment")
    exp.attrs["NX_class"] = "NXcollection"
    write_str(exp, "proposal", meta["proposal"])
    write_str(exp, "experimenter", meta["experimenter"])
    return entry


class H5Output:
    """Frames appended to ``/entry/data/data`` of a NeXus-style file."""

    def __init__(self, path: Path, *, swmr: bool, shape: tuple[int, int], meta: dict,
                 compression: str | None = None):
        self.path = path
        self.swmr = swmr
        self.meta = meta
        # locking off, as detector writers on shared file systems run: a reader in this
        # same process (tests, notebooks) must open the file with the same setting
        self._f = h5py.File(path, "w", libver="latest" if swmr else "earliest", locking=False)
        f = self._f
        entry = write_header(f, meta)
        nxdata = entry.create_group("data")
        nxdata.attrs["NX_class"] = "NXdata"
        nxdata.attrs["signal"] = "data"
        self._data = nxdata.create_dataset("data", shape=(0, *shape), maxshape=(None, *shape),
                                           chunks=(1, *shape), dtype=np.int32,
                                           compression=compression, track_times=False)
        self._data.attrs["units"] = "counts"
        self._stamps = nxdata.create_dataset("frame_timestamp", shape=(0,), maxshape=(None,),
                                             chunks=(256,), dtype=np.float64,
                                             track_times=False)
        self._stamps.attrs["units"] = "s"
        f.flush()
        if swmr:
            f.swmr_mode = True

    def _flush(self) -> None:
        if self.swmr:
            self._data.flush()
            self._stamps.flush()
        else:
            self._f.flush()

    def write(self, k: int, frame: np.ndarray, time_s: float) -> None:
        """Frame ``k`` (the data, flushed, then its timestamp, flushed)."""
        if self._data.shape[0] < k + 1:
            self._data.resize(k + 1, axis=0)
        self._data[k] = frame
        if self.swmr:
            self._data.flush()
        self._stamps.resize(k + 1, axis=0)
        self._stamps[k] = time_s
        self._flush()

    def write_partial(self, k: int, frame: np.ndarray, fraction: float) -> None:
        """The first ``fraction`` of frame ``k``'s rows, flushed, without its timestamp."""
        rows = max(1, int(frame.shape[0] * fraction))
        if self._data.shape[0] < k + 1:
            self._data.resize(k + 1, axis=0)
        self._data[k, :rows] = frame[:rows]
        self._flush()

    def end(self, *, end_time: str | None) -> None:
        """Close the file; with ``end_time``, mark the series ended (end_time, sentinel)."""
        self._f.close()
        if end_time is None:
            return
        # a SWMR writer may not create objects: end_time goes in after closing, as a
        # writer's finalisation step does (a reader already saw the SWMR writer close)
        write_end_time(self.path, end_time)
        touch_sentinel(self.path)


def write_end_time(path: Path, end_time: str, *, timeout: float = 10.0) -> None:
    """Write ``/entry/end_time`` into a closed HDF5 file.

    A follower in the same process (the twin in a test or a notebook) may have the file open
    to read for a moment, and HDF5 refuses to open one file twice in one process with
    different modes ("already open for read-only"): try again until ``timeout``. A detector
    in its own process never meets this.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with h5py.File(path, "r+", locking=False) as f:
                write_str(f["entry"], "end_time", end_time)
            return
        except OSError as exc:
            if "already open" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def eiger_data_path(master: Path, number: int) -> Path:
    """Data file ``number`` (1, 2, ...) of an Eiger series: ``<prefix>_data_000001.h5``
    beside ``<prefix>_master.h5``."""
    prefix = master.stem.removesuffix("_master")
    return master.with_name(f"{prefix}_data_{number:06d}{master.suffix}")


class EigerOutput:
    """An Eiger series: a master file linking data files of ``frames_per_file`` frames each."""

    def __init__(self, path: Path, *, swmr: bool, shape: tuple[int, int], meta: dict,
                 frames_per_file: int, compression: str | None = None,
                 overwrite: bool = False):
        self.path = path
        self.swmr = swmr
        self.meta = meta
        self.shape = shape
        self.frames_per_file = int(frames_per_file)
        self.compression = compression
        n = int(meta["n_frames"])
        self.n_files = -(-n // self.frames_per_file)
        self.data_paths = [eiger_data_path(path, j + 1) for j in range(self.n_files)]
        there = [p for p in self.data_paths if p.exists()]
        if there and not overwrite:
            raise FileExistsError(f"{there[0]} already exists; pass overwrite=True to replace "
                                  "the series' data files")
        for stale in there:
            stale.unlink()
        with h5py.File(path, "w", libver="earliest", locking=False) as f:
            entry = write_header(f, meta, description="Eiger-like photon-counting detector "
                                 "(live twin)")
            det = entry["instrument/detector"]
            write_num(det, "detector_distance", meta["distance_m"], "m")
            nxdata = entry.create_group("data")
            nxdata.attrs["NX_class"] = "NXdata"
            for j, data_path in enumerate(self.data_paths):
                nxdata[f"data_{j + 1:06d}"] = h5py.ExternalLink(data_path.name,
                                                               "/entry/data/data")
        self._f: h5py.File | None = None
        self._data: h5py.Dataset | None = None
        self._file = -1  # the data file open now

    def _open(self, k: int) -> h5py.Dataset:
        j = k // self.frames_per_file
        if j != self._file or self._data is None:
            self._close()
            low = j * self.frames_per_file
            high = min(low + self.frames_per_file, int(self.meta["n_frames"]))
            # locking off, as in H5Output: a reader in this process uses the same setting
            f = h5py.File(self.data_paths[j], "w", libver="latest" if self.swmr else "earliest",
                          locking=False)
            entry = f.create_group("entry")
            entry.attrs["NX_class"] = "NXentry"
            nxdata = entry.create_group("data")
            nxdata.attrs["NX_class"] = "NXdata"
            data = nxdata.create_dataset("data", shape=(0, *self.shape),
                                         maxshape=(high - low, *self.shape),
                                         chunks=(1, *self.shape), dtype=np.int32,
                                         compression=self.compression, track_times=False)
            data.attrs["image_nr_low"] = np.uint64(low + 1)
            data.attrs["image_nr_high"] = np.uint64(high)
            data.attrs["units"] = "counts"
            f.flush()
            if self.swmr:
                f.swmr_mode = True
            self._f, self._data, self._file = f, data, j
        assert self._data is not None
        return self._data

    def _flush(self, data: h5py.Dataset) -> None:
        if self.swmr:
            data.flush()
        elif self._f is not None:
            self._f.flush()

    def _close(self) -> None:
        if self._f is not None:
            self._f.close()
        self._f, self._data = None, None

    def write(self, k: int, frame: np.ndarray, time_s: float) -> None:
        """Frame ``k`` into its data file (flushed); a full data file is closed."""
        data = self._open(k)
        i = k - self._file * self.frames_per_file
        if data.shape[0] < i + 1:
            data.resize(i + 1, axis=0)
        data[i] = frame
        self._flush(data)
        if i + 1 == data.maxshape[0]:
            self._close()

    def write_partial(self, k: int, frame: np.ndarray, fraction: float) -> None:
        """Frame ``k`` announced (the dataset grown, flushed) but its chunk not written yet:
        the file writer caught between the two (``fraction`` is not used)."""
        data = self._open(k)
        i = k - self._file * self.frames_per_file
        if data.shape[0] < i + 1:
            data.resize(i + 1, axis=0)
        self._flush(data)

    def end(self, *, end_time: str | None) -> None:
        """Close the data file; with ``end_time``, mark the series ended in the master."""
        self._close()
        if end_time is None:
            return
        write_end_time(self.path, end_time)
        touch_sentinel(self.path)


class FolderOutput:
    """Frames written as numbered CBF/EDF/TIFF files into a folder (fabio)."""

    def __init__(self, folder: Path, *, fmt: str, meta: dict):
        self.folder = folder
        self.fmt = fmt
        self.meta = meta
        self._tmp = Path(tempfile.mkdtemp(prefix="spotkit-live-"))
        doc = {key: meta[key] for key in ("beamline", "sample", "proposal", "experimenter",
                                          "start_time", "energy_kev", "distance_m",
                                          "pixel_size_um", "frame_time_s", "exposure_s")}
        doc.update(mode="saxs", n_frames=int(meta["n_frames"]), poni=meta["poni_name"])
        if meta.get("mask_name"):
            doc["mask"] = meta["mask_name"]
        self._doc = doc
        self._write_sidecar()

    def _write_sidecar(self) -> None:
        tmp = self.folder / ".metadata.json.part"
        tmp.write_text(json.dumps(self._doc, indent=1) + "\n")
        os.replace(tmp, self.folder / "metadata.json")

    def name(self, k: int) -> Path:
        """File of frame ``k``."""
        return self.folder / f"frame_{k + 1:05d}{_FRAME_SUFFIX[self.fmt]}"

    def _encode(self, frame: np.ndarray) -> bytes:
        import fabio.cbfimage
        import fabio.edfimage
        import fabio.tifimage

        cls = {"cbf": fabio.cbfimage.CbfImage, "edf": fabio.edfimage.EdfImage,
               "tiff": fabio.tifimage.TifImage}[self.fmt]
        tmp = self._tmp / f"frame{_FRAME_SUFFIX[self.fmt]}"
        cls(data=np.ascontiguousarray(frame, dtype=np.int32)).write(str(tmp))
        return tmp.read_bytes()

    def write(self, k: int, frame: np.ndarray, time_s: float, *, pause_s: float = 0.0) -> None:
        """Frame ``k``'s file, in two pieces (``pause_s`` between them)."""
        data = self._encode(frame)
        half = len(data) // 2
        with open(self.name(k), "wb") as fh:
            fh.write(data[:half])
            fh.flush()
            if pause_s > 0:
                import time

                time.sleep(pause_s)
            fh.write(data[half:])

    def write_partial(self, k: int, frame: np.ndarray, fraction: float) -> None:
        """The first ``fraction`` of frame ``k``'s file bytes."""
        data = self._encode(frame)
        with open(self.name(k), "wb") as fh:
            fh.write(data[: max(1, int(len(data) * fraction))])

    def end(self, *, end_time: str | None) -> None:
        """Clean up; with ``end_time``, mark the series ended (sidecar end_time, sentinel)."""
        shutil.rmtree(self._tmp, ignore_errors=True)
        if end_time is None:
            return
        self._doc["end_time"] = end_time
        self._write_sidecar()
        touch_sentinel(self.folder)


def end_time_of(start_iso: str, seconds: float) -> str:
    """``start + seconds`` as ISO-8601 UTC."""
    from datetime import datetime, timedelta

    return iso(datetime.fromisoformat(start_iso) + timedelta(seconds=seconds))
