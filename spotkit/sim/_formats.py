"""The twin's data in the layouts other facilities write: NXtomo files and frame folders.

* :func:`write_nxtomo` rewrites a Data Exchange scan (e.g. from :func:`simulate_tomo_scan`) as
  a NeXus NXtomo file the way ESRF (nxtomomill, ``/entry0000``), Diamond
  (``/entry1/tomo_entry``) or PSI (``/entry``) write it.
* :func:`write_frame_folder` rewrites a SAXS series (e.g. from :func:`simulate_saxs_series`)
  as a folder of numbered single-frame CBF (or EDF, TIFF) files written with fabio, with its
  PONI file and a ``metadata.json`` sidecar, as Pilatus/Eiger beamlines deliver them.

Both read their source through :mod:`spotkit.io` and never change it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from ._common import prepare_path, write_num, write_str

__all__ = ["NXTOMO_VARIANTS", "write_frame_folder", "write_nxtomo"]

#: variant -> (entry group, NXtomo group inside it or "" for the entry itself)
NXTOMO_VARIANTS = {"esrf": ("entry0000", ""), "diamond": ("entry1", "tomo_entry"),
                   "psi": ("entry", "")}
_FRAME_FORMATS = {"cbf": ".cbf", "edf": ".edf", "tiff": ".tif"}


def _group(parent, name, nx_class):
    g = parent.require_group(name)
    g.attrs["NX_class"] = nx_class
    return g


def write_nxtomo(path, source, *, variant: str = "esrf", alignment: bool = True,
                 flats_after: bool = True, overwrite: bool = False) -> Path:
    """Write a tomography scan as a NeXus NXtomo file.

    Parameters
    ----------
    path : path-like
        The ``.nx`` / ``.nxs`` / ``.h5`` file to create.
    source : path-like or xarray.Dataset
        A Data Exchange scan (a file :func:`spotkit.io.open_tomo` reads, or its result).
    variant : {"esrf", "diamond", "psi"}
        ``"esrf"``: ``/entry0000`` as nxtomomill writes it, with ``image_key_control`` and
        the energy in ``instrument/beam/incident_energy``; ``"diamond"``: an NXentry
        ``/entry1`` holding the instrument, sample and times, and the NXtomo subentry
        ``/entry1/tomo_entry`` linking to them (``data/data``, ``data/rotation_angle``,
        ``instrument/detector/image_key``: the paths Savu's NxtomoLoader reads);
        ``"psi"``: ``/entry``.
    alignment : bool
        Add one alignment projection at the end (image_key 0, image_key_control -1) that a
        reader must leave out (``"esrf"`` only; nxtomomill writes them).
    flats_after : bool
        Write half of the flats after the projections, as many beamlines do.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.io import find_reader, open_tomo
    >>> from spotkit.sim import simulate_tomo_scan, write_nxtomo
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> truth = simulate_tomo_scan(work / "scan.h5", shape=(31, 2, 32))
    >>> nx = write_nxtomo(work / "scan.nx", work / "scan.h5", variant="diamond")
    >>> find_reader(nx).name, open_tomo(nx).data.shape
    ('nxtomo', (31, 2, 32))
    """
    from spotkit.io import open_tomo

    if variant not in NXTOMO_VARIANTS:
        raise ValueError(f"unknown NXtomo variant {variant!r}; choose one of "
                         f"{sorted(NXTOMO_VARIANTS)}")
    scan = source if hasattr(source, "data_vars") else open_tomo(source)
    proj = np.asarray(scan["data"].values)
    flats = np.asarray(scan["flats"].values)
    darks = np.asarray(scan["darks"].values)
    theta = np.asarray(scan["theta"].values, dtype=np.float64)
    attrs = dict(scan.attrs)
    half = flats.shape[0] // 2 if flats_after and flats.shape[0] > 1 else flats.shape[0]
    blocks = [(darks, 2, np.zeros(len(darks))), (flats[:half], 1, np.zeros(half)),
              (proj, 0, theta)]
    if half < flats.shape[0]:
        blocks.append((flats[half:], 1, np.full(flats.shape[0] - half, theta[-1])))
    controls = [np.full(len(b[0]), b[1], dtype=np.int8) for b in blocks]
    if alignment and variant == "esrf":
        blocks.append((proj[:1], 0, theta[:1]))
        controls.append(np.array([-1], dtype=np.int8))
    frames = np.concatenate([b[0] for b in blocks]).astype(proj.dtype)
    keys = np.concatenate([np.full(len(b[0]), b[1], dtype=np.uint8) for b in blocks])
    angles = np.concatenate([b[2] for b in blocks])

    path = prepare_path(path, overwrite)
    entry_name, sub_name = NXTOMO_VARIANTS[variant]
    with h5py.File(path, "w") as f:
        f.attrs["default"] = entry_name
        entry = _group(f, entry_name, "NXentry")
        write_str(entry, "title", attrs.get("title", "tomo scan"))
        write_str(entry, "start_time", attrs.get("start_time", ""))
        if attrs.get("end_time"):
            write_str(entry, "end_time", attrs["end_time"])
        write_str(entry, "experiment_identifier", attrs.get("proposal", "unknown"))
        inst = _group(entry, "instrument", "NXinstrument")
        write_str(inst, "name", attrs.get("beamline", "unknown"))
        src = _group(inst, "source", "NXsource")
        write_str(src, "name", {"esrf": "ESRF-EBS", "diamond": "Diamond Light Source",
                                "psi": "SLS"}[variant])
        write_str(src, "type", "Synchrotron X-ray Source")
        write_str(src, "probe", "x-ray")
        det = _group(inst, "detector", "NXdetector")
        data = det.create_dataset("data", data=frames, chunks=(1, *frames.shape[1:]))
        data.attrs["interpretation"] = "image"
        det.create_dataset("image_key", data=keys)
        if variant == "esrf":
            det.create_dataset("image_key_control", data=np.concatenate(controls))
        px = attrs.get("pixel_size_um")
        if px:
            write_num(det, "x_pixel_size", float(px) * 1e-6, "m")
            write_num(det, "y_pixel_size", float(attrs.get("pixel_size_y_um") or px) * 1e-6, "m")
        if attrs.get("exposure_s"):
            write_num(det, "count_time", float(attrs["exposure_s"]), "s")
        energy = attrs.get("energy_kev")
        if energy:
            beam = _group(inst, "beam", "NXbeam")
            write_num(beam, "incident_energy", float(energy), "keV")
        sample = _group(entry, "sample", "NXsample")
        write_str(sample, "name", attrs.get("sample", "unknown"))
        rot = sample.create_dataset("rotation_angle", data=angles)
        rot.attrs["units"] = "degree"
        tomo = _group(entry, sub_name, "NXsubentry") if sub_name else entry
        write_str(tomo, "definition", "NXtomo")
        if sub_name:
            # Diamond (as Savu's NxtomoLoader reads it): the NXtomo subentry holds
            # instrument/detector/image_key and an NXdata with data and rotation_angle, all
            # linked to the entry's datasets; sample and times stay in the entry above
            tinst = _group(tomo, "instrument", "NXinstrument")
            tdet = _group(tinst, "detector", "NXdetector")
            tdet["image_key"] = det["image_key"]
        nxdata = _group(tomo, "data", "NXdata")
        nxdata.attrs["signal"] = "data"
        nxdata["data"] = data
        nxdata["rotation_angle"] = rot
        nxdata["image_key"] = det["image_key"]
    return path


def write_frame_folder(folder, source, *, fmt: str = "cbf", n_written: int | None = None,
                       expected: bool = True, sidecar: str | None = "json",
                       overwrite: bool = False, prefix: str = "frame_") -> Path:
    """Write a SAXS series as a folder of numbered frame files with its PONI and sidecar.

    Parameters
    ----------
    folder : path-like
        The folder to create (one acquisition).
    source : path-like or xarray.DataArray
        A SAXS series :func:`spotkit.io.open_saxs` reads (or its result).
    fmt : {"cbf", "edf", "tiff"}
        Frame file format, written with fabio (CBF: byte-offset compressed, int32).
    n_written : int, optional
        Write only the first ``n_written`` frames (an acquisition still running); the
        sidecar still announces them all.
    expected : bool
        Put ``n_frames`` (the number of frames of the whole series) in the sidecar.
    sidecar : {"json", "yaml", None}
        Write ``metadata.json`` / ``metadata.yaml``, or no sidecar.
    overwrite : bool
        Replace an existing folder.
    prefix : str
        File name prefix; frames are ``<prefix>00001.<ext>`` ...

    Returns
    -------
    pathlib.Path
        The folder.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.io import open_saxs
    >>> from spotkit.sim import simulate_saxs_series, write_frame_folder
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> truth = simulate_saxs_series(work / "series.h5", n_frames=4, shape=(40, 50))
    >>> folder = write_frame_folder(work / "run_0001", work / "series.h5")
    >>> len(list(folder.glob("frame_*.cbf"))), len(list(folder.glob("*.poni")))
    (4, 1)
    >>> open_saxs(folder).shape  # the folder is the dataset
    (4, 40, 50)
    """
    import fabio.cbfimage
    import fabio.edfimage
    import fabio.tifimage

    from spotkit.io import open_saxs

    if fmt not in _FRAME_FORMATS:
        raise ValueError(f"unknown frame format {fmt!r}; choose one of {sorted(_FRAME_FORMATS)}")
    if sidecar not in ("json", "yaml", None):
        raise ValueError(f"sidecar must be 'json', 'yaml' or None, not {sidecar!r}")
    frames = source if hasattr(source, "dims") else open_saxs(source)
    n = frames.sizes["frame"]
    count = n if n_written is None else int(n_written)
    if not 0 <= count <= n:
        raise ValueError(f"n_written must be between 0 and {n}, not {n_written!r}")
    folder = Path(folder).expanduser().absolute()
    if folder.exists():
        if not overwrite:
            raise FileExistsError(f"{folder} already exists; pass overwrite=True to replace it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    attrs = dict(frames.attrs)
    poni = Path(attrs["poni_path"])
    shutil.copyfile(poni, folder / poni.name)
    cls = {"cbf": fabio.cbfimage.CbfImage, "edf": fabio.edfimage.EdfImage,
           "tiff": fabio.tifimage.TifImage}[fmt]
    dtype = np.int32 if fmt == "cbf" else frames.dtype
    for k in range(count):
        img = cls(data=np.ascontiguousarray(frames[k].values, dtype=dtype))
        img.write(str(folder / f"{prefix}{k + 1:05d}{_FRAME_FORMATS[fmt]}"))
    if sidecar is not None:
        doc = {key: attrs.get(key) for key in ("beamline", "sample", "proposal", "experimenter",
                                               "start_time", "energy_kev", "distance_m",
                                               "pixel_size_um", "frame_time_s", "exposure_s",
                                               "mode") if attrs.get(key) not in (None, "")}
        if attrs.get("end_time") and count == n:
            doc["end_time"] = attrs["end_time"]
        if expected:
            doc["n_frames"] = int(n)
        if sidecar == "json":
            (folder / "metadata.json").write_text(json.dumps(doc, indent=1) + "\n")
        else:
            import yaml

            (folder / "metadata.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder
