"""Reader for NeXus NXtomo tomography files, as Diamond, ESRF (nxtomomill) and PSI write them.

The NXtomo application definition (NeXus, ``applications/NXtomo.nxdl.xml``): an NXentry (or,
at Diamond, an NXsubentry ``/entry1/tomo_entry``) whose ``definition`` is ``"NXtomo"`` holds

* ``instrument/detector/data`` ``[nFrames, rows, cols]``: every frame, projections, flats
  and darks in acquisition order;
* ``instrument/detector/image_key`` ``[nFrames]``: 0 projection, 1 flat (bright) field,
  2 dark field, 3 invalid; nxtomomill also writes ``image_key_control``, where -1 marks an
  alignment projection (image_key 0) that is not part of the scan;
* ``sample/rotation_angle`` ``[nFrames]`` with a ``units`` attribute (degrees by default);
* optionally ``title``, ``start_time``, ``end_time``, ``sample/name``,
  ``instrument/source/name``, ``instrument/detector/x_pixel_size`` (metres by default),
  ``distance``, ``count_time`` and the beam energy (``instrument/beam/incident_energy``
  in nxtomomill ≥ 1.0, ``beam/incident_energy`` or ``energy`` in older files).

ESRF files have ``/entry0000``, ``/entry0001``...; Diamond nests the definition one level down
(``/entry1/tomo_entry``, with its ``data`` linked to ``/entry1/instrument/...``); PSI writes
``/entry``. The first NXtomo entry in the file is read.
"""

from __future__ import annotations

import h5py
import numpy as np
import xarray as xr

from spotkit import kinds
from spotkit.errors import InputFileError

from ._dxchange import _attrs
from ._h5 import (
    HDF5_SUFFIXES,
    as_text,
    check_exists,
    get_number,
    get_str,
    get_time,
    lazy_dataset,
    logger,
    normalise_chunks,
    open_hdf5,
    quiet_hdf5,
)
from ._info import DatasetInfo
from ._reader import Reader

__all__ = ["NXtomoReader", "find_nxtomo_entry"]

KIND = kinds.TOMO_RAW
PROJECTION, FLAT, DARK, INVALID = 0, 1, 2, 3
ALIGNMENT = -1  # image_key_control of an alignment projection (nxtomomill)
_INCOMPLETE = ("The acquisition may not have finished: wait for the scan to complete (or its "
               ".done sentinel), or copy the file again.")


def _is_nxtomo(group) -> bool:
    definition = group.get("definition") if isinstance(group, h5py.Group) else None
    return isinstance(definition, h5py.Dataset) and as_text(definition[()]).strip() == "NXtomo"


def find_nxtomo_entry(f: h5py.File) -> h5py.Group | None:
    """The first group with ``definition = "NXtomo"`` at the top level or one below."""
    top = sorted(f)
    for name in top:
        group = f.get(name)
        if _is_nxtomo(group):
            return group
    for name in top:
        group = f.get(name)
        if not isinstance(group, h5py.Group):
            continue
        for sub in sorted(group):
            child = group.get(sub)
            if _is_nxtomo(child):
                return child
    return None


def _first(entry, *names):
    """The first of ``names`` (relative to ``entry``, then to its parent) that exists."""
    for base in (entry, entry.parent):
        for name in names:
            obj = base.get(name)
            if obj is not None:
                return obj
    return None


def _need(entry, path, what, *names):
    obj = _first(entry, *names)
    if not isinstance(obj, h5py.Dataset):
        raise InputFileError(path, f"has no {what}.", field=f"{entry.name}/{names[0]}",
                             hint=_INCOMPLETE)
    return obj


def _validated(f, path):
    entry = find_nxtomo_entry(f)
    if entry is None:
        raise InputFileError(path, "has no NXentry with definition 'NXtomo'.",
                             field="/entry*/definition",
                             hint="This reader reads NeXus NXtomo files only.")
    data = _need(entry, path, "detector frames", "instrument/detector/data", "data/data")
    if data.ndim != 3:
        raise InputFileError(path, f"the detector frames must be 3-D (frames x rows x cols), "
                             f"found shape {data.shape}.", field=data.name)
    n = int(data.shape[0])
    key_ds = _need(entry, path, "image keys (0 projection, 1 flat, 2 dark)",
                   "instrument/detector/image_key", "data/image_key")
    angle_ds = _need(entry, path, "rotation angles", "sample/rotation_angle",
                     "data/rotation_angle")
    keys = np.asarray(key_ds[()]).astype(np.int64).reshape(-1)
    angles = np.asarray(angle_ds[()], dtype=np.float64).reshape(-1)
    for ds, values, what in ((key_ds, keys, "image keys"), (angle_ds, angles, "rotation angles")):
        if values.size != n:
            raise InputFileError(
                path, f"has {values.size} {what} but {n} detector frames: the file is "
                "truncated or was interrupted.", field=ds.name, hint=_INCOMPLETE)
    bad = sorted(set(np.unique(keys).tolist()) - {PROJECTION, FLAT, DARK, INVALID})
    if bad:
        raise InputFileError(path, f"has image keys {bad}; NXtomo allows 0 (projection), "
                             "1 (flat), 2 (dark) and 3 (invalid).", field=key_ds.name)
    units = as_text(angle_ds.attrs.get("units", "degree")).strip().lower()
    if units in ("rad", "radian", "radians"):
        angles = np.rad2deg(angles)
    elif units not in ("deg", "degree", "degrees", ""):
        raise InputFileError(path, f"the rotation angles have units {units!r}; expected "
                             "degrees or radians.", field=f"{angle_ds.name}@units")
    projection = keys == PROJECTION
    control = _first(entry, "instrument/detector/image_key_control")
    if isinstance(control, h5py.Dataset) and control.shape == (n,):
        projection &= np.asarray(control[()]).astype(np.int64).reshape(-1) != ALIGNMENT
    proj, flats, darks = (np.flatnonzero(m) for m in (projection, keys == FLAT, keys == DARK))
    for idx, what in ((proj, "projections"), (flats, "flat fields (image_key 1)"),
                      (darks, "dark fields (image_key 2)")):
        if idx.size == 0:
            raise InputFileError(path, f"has no {what}.", field=key_ds.name,
                                 hint=_INCOMPLETE if what == "projections" else
                                 "Tomography needs flats and darks in the same file to be "
                                 "normalised; ask the beamline for the complete scan.")
    return entry, data, proj, flats, darks, angles[proj]


def _read(f, path):
    entry, data, proj, flats, darks, theta = _validated(f, path)
    base = entry.name.rstrip("/")

    def key(*names):
        obj = _first(entry, *names)
        return obj.name if obj is not None else f"{base}/{names[0]}"

    beamline = get_str(f, key("instrument/name", "instrument/beamline",
                              "instrument/source/name"), path)
    sample = get_str(f, key("sample/name", "sample/sample_name"), path)
    proposal = get_str(f, key("experiment_identifier", "proposal", "experiment/proposal"), path)
    start = get_time(f, key("start_time"), path, required=True)
    end = get_time(f, key("end_time"), path, required=False)
    n_rows, n_cols = (int(s) for s in data.shape[1:])
    energy_key = key("instrument/beam/incident_energy", "beam/incident_energy", "energy",
                     "instrument/monochromator/energy")
    metadata = {
        "format": "nxtomo",
        "nexus_entry": entry.name,
        "title_in_file": get_str(f, key("title"), path),
        "source": get_str(f, key("instrument/source/name"), path),
        "energy_kev": get_number(f, energy_key, path, to="keV", default_units="keV"),
        "pixel_size_um": get_number(f, key("instrument/detector/x_pixel_size"), path, to="um",
                                    default_units="m"),
        "pixel_size_y_um": get_number(f, key("instrument/detector/y_pixel_size"), path, to="um",
                                      default_units="m", warn=False),
        "distance_m": get_number(f, key("instrument/detector/distance"), path, to="m",
                                 default_units="m", warn=False),
        "exposure_s": get_number(f, key("instrument/detector/count_time"), path, to="s",
                                 default_units="s"),
        "shape": [int(proj.size), n_rows, n_cols],
        "dtype": str(data.dtype),
        "n_angles": int(proj.size),
        "n_rows": n_rows,
        "n_cols": n_cols,
        "n_flats": int(flats.size),
        "n_darks": int(darks.size),
        "n_frames_in_file": int(data.shape[0]),
        "theta_min_deg": float(theta.min()),
        "theta_max_deg": float(theta.max()),
    }
    info = DatasetInfo(kind=KIND, beamline=beamline, sample=sample, proposal=proposal,
                       start_time=start, end_time=end,
                       title=f"{beamline} tomo scan of {sample}", metadata=metadata,
                       files=((path, "data"),))
    return info, (data, proj, flats, darks, theta)


def read_nxtomo_metadata(path) -> DatasetInfo:
    """Read and check the metadata of an NXtomo file (see the module's layout notes)."""
    path = check_exists(path)
    with open_hdf5(path) as f:
        info, _ = _read(f, path)
    return info


def open_nxtomo(path, *, chunks=None) -> xr.Dataset:
    """Open an NXtomo scan lazily, in the shape of :func:`spotkit.io.open_tomo`.

    Projections, flats and darks are the frames of ``instrument/detector/data`` selected by
    ``image_key`` (alignment projections left out); ``theta`` is in degrees.
    """
    path = check_exists(path)
    with open_hdf5(path) as f:
        info, (data, proj, flats, darks, theta) = _read(f, path)
        frame = tuple(int(s) for s in data.shape[1:])
        whole = lazy_dataset(path, data, normalise_chunks(chunks, data.shape[0], frame,
                                                          data.dtype))
    logger.debug("opened NXtomo scan %s: %d projections, %d flats, %d darks", path,
                 proj.size, flats.size, darks.size)

    def take(idx):
        if idx.size and np.all(np.diff(idx) == 1):  # one contiguous block: a plain slice
            return whole[int(idx[0]):int(idx[-1]) + 1]
        return whole[idx]

    return xr.Dataset(
        {
            "data": (("angle", "row", "col"), take(proj),
                     {"long_name": "projections", "units": "counts"}),
            "flats": (("flat", "row", "col"), take(flats),
                      {"long_name": "flat fields", "units": "counts"}),
            "darks": (("dark", "row", "col"), take(darks),
                      {"long_name": "dark fields", "units": "counts"}),
        },
        coords={
            "theta": ("angle", theta, {"units": "degrees", "long_name": "rotation angle"}),
            "row": ("row", np.arange(frame[0])),
            "col": ("col", np.arange(frame[1])),
        },
        attrs=_attrs(info),
    )


class NXtomoReader(Reader):
    """NeXus NXtomo (Diamond ``/entry1/tomo_entry``, ESRF ``/entry0000``, PSI ``/entry``)."""

    name = "nxtomo"
    kind = KIND
    layout = ("NeXus NXtomo HDF5 (an NXentry with definition 'NXtomo': "
              "instrument/detector/data + image_key 0/1/2, sample/rotation_angle), as written "
              "at Diamond (/entry1/tomo_entry), ESRF (nxtomomill, /entry0000) and PSI")
    suffixes = HDF5_SUFFIXES
    priority = 30

    def sniff(self, path):
        with quiet_hdf5(path) as f:
            return f is not None and find_nxtomo_entry(f) is not None

    def read_metadata(self, path):
        return read_nxtomo_metadata(path)

    def open(self, path, *, chunks=None):
        return open_nxtomo(path, chunks=chunks)
