"""Where the live twin's frames go: one HDF5/NeXus file (SWMR or not) or a frame folder.

Both outputs write as detectors do: the HDF5 file is created with its metadata and empty,
growing datasets before the first frame, each frame is followed by its ``frame_timestamp``
entry and a flush; a frame file is written in two pieces (a reader may find it half
written), numbered ``frame_00001.<ext>`` (frame 0), into a folder that already holds the
PONI file and a ``metadata.json`` sidecar announcing ``n_frames``. Ending the series writes
``/entry/end_time`` (HDF5; after closing a SWMR file, since SWMR allows no new objects) or
the sidecar's ``end_time``, then a ``<path>.done`` sentinel.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np

from ._common import iso, touch_sentinel, write_num, write_str

__all__ = ["FolderOutput", "H5Output"]

_FRAME_SUFFIX = {"cbf": ".cbf", "edf": ".edf", "tiff": ".tif"}


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
        write_str(det, "description", "Pilatus-like photon-counting detector (live twin)")
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
        with h5py.File(self.path, "r+", locking=False) as f:
            write_str(f["entry"], "end_time", end_time)
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
