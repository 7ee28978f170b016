"""Detector masks on disk: the EDF/TIFF images pyFAI-calib2 reads and writes (1 = masked).

The masks themselves are made by :mod:`spotkit.scattering` (arrays in, arrays out); this
module only reads and writes them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from spotkit.errors import InputFileError

from ._frames import fabio_module
from ._types import PathLike

__all__ = ["MASK_FORMATS", "load_mask", "save_mask"]

logger = logging.getLogger(__name__)

#: File suffixes :func:`save_mask` writes (through fabio), as pyFAI-calib2 does.
MASK_FORMATS = {".edf": "EDF (ESRF data format, pyFAI-calib2's mask format)",
                ".tif": "TIFF", ".tiff": "TIFF"}


def _mask2d(mask) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (rows, cols), got shape {mask.shape}")
    return mask


def save_mask(mask: npt.ArrayLike, path: PathLike) -> Path:
    """Save a mask as an image file that pyFAI-calib2 and pyFAI read (1 = masked).

    Parameters
    ----------
    mask : array_like of bool, shape (rows, cols)
    path : path-like
        ``.edf`` (pyFAI-calib2's mask format) or ``.tif``; replaced if it exists.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> mask = np.zeros((40, 50), bool)
    >>> mask[18:22, 23:27] = True  # a beamstop
    >>> save_mask(mask, pathlib.Path(tempfile.mkdtemp()) / "detector_mask.edf").name
    'detector_mask.edf'
    """
    fabio = fabio_module()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MASK_FORMATS:
        raise ValueError(f"unknown mask file type {suffix!r}; choose one of "
                         f"{sorted(MASK_FORMATS)}")
    data = _mask2d(mask).astype(bool).astype(np.int8)
    if suffix == ".edf":
        img = fabio.edfimage.EdfImage(data=data, header={"spotkit": "mask, 1 = masked"})
    else:
        img = fabio.tifimage.TifImage(data=data.astype(np.uint8))
    img.write(str(path))
    logger.info("wrote mask %s (%d masked pixels)", path, int(data.sum()))
    return path


def load_mask(path: PathLike, *, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a mask file (EDF, TIFF, CBF, .npy: anything fabio reads; non-zero = masked).

    Parameters
    ----------
    path : path-like
        Written by :func:`save_mask` or by pyFAI-calib2.
    shape : (int, int), optional
        Frame shape the mask must have.

    Returns
    -------
    ndarray of bool

    Raises
    ------
    InputFileError
        When the file is missing or unreadable, or its shape differs from ``shape``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> path = save_mask(np.eye(40, 50, dtype=bool), pathlib.Path(tempfile.mkdtemp()) / "m.edf")
    >>> mask = load_mask(path, shape=(3, 40, 50))  # the frames' shape: checked
    >>> mask.dtype, int(mask.sum())
    (dtype('bool'), 40)
    """
    fabio = fabio_module()
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "the mask file does not exist.",
                             hint="Save one with spotkit.io.save_mask or pyFAI-calib2.")
    try:
        data = np.asarray(fabio.open(str(path)).data)
    except Exception as exc:
        raise InputFileError(path, f"cannot be read as a mask image ({exc}).",
                             hint="Masks are EDF or TIFF images with 1 on masked pixels.") from exc
    if shape is not None:
        shape = tuple(int(s) for s in tuple(shape)[-2:])
        if data.shape != shape:
            raise InputFileError(path, f"the mask is {data.shape[0]} x {data.shape[1]} pixels "
                                 f"but the frames are {shape[0]} x {shape[1]}.",
                                 hint="Use the mask made for this detector (and binning).")
    return data != 0
