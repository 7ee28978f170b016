"""The beamline digital twin: deterministic, seeded simulations of raw beamline data.

* :func:`simulate_tomo_scan` writes a parallel-beam micro-CT scan of an analytic ellipsoid
  phantom as Data Exchange HDF5 (ALS 8.3.2 style) and returns a :class:`TomoScanTruth`.
* :func:`simulate_saxs_series` writes a SAXS/GISAXS time series (NeXus-style HDF5 plus a
  pyFAI PONI file) in which an ordering peak appears, and returns a
  :class:`SaxsSeriesTruth`.

* :class:`LiveSeriesWriter` writes a SAXS series frame by frame, now (``write(n)``) or in
  scaled real time (``start``/``pause``/``resume``/``stop``), into an HDF5 file (SWMR or not)
  or a folder of CBF/EDF/TIFF files: growing spheres and an appearing peak at known
  :class:`Transition` frames, with a :class:`LiveSeriesTruth` to check change detection and
  model fits against.

These write files the way a detector does (growing datasets, flushed block by block,
completion metadata last, optional ``<file>.done`` sentinel), so that watchers and catalogs
can be tested against them. :func:`write_nxtomo` and :func:`write_frame_folder` rewrite them
in the layouts other facilities write (NeXus NXtomo; a folder of CBF/EDF/TIFF frames with
its PONI file and a metadata sidecar).

Tomography geometry
-------------------
tomopy's (``tomopy.project``): the rotation axis projects to
``center = n_cols / 2 + center_offset``, tomopy's centre value (detector positions measured
from the left edge of column 0, ``n_cols / 2`` = the middle); ``theta`` runs over [0, 180)
degrees. The point ``(x, y)`` of a slice (pixels, origin on the axis, ``y`` growing with the
image row) projects to ``u = center + x cos(theta) - y sin(theta)``. Reconstruction pixel
``(iy, ix)`` of an ``n`` x ``n`` grid is centred at ``x = ix - (n-1)/2``,
``y = iy - (n-1)/2``; ``tomopy.recon`` or :func:`spotkit.tomo.reconstruct` with ``center``
reproduces :meth:`TomoScanTruth.phantom_slice`, not mirrored. Attenuation is in 1/cm;
``mu_per_pixel = mu_per_cm * pixel_size_um * 1e-4``.

SAXS geometry
-------------
pyFAI PONI geometry with no tilts; beam centre ``(row, col)`` in pixel-index coordinates;
``q`` in nm^-1 (:func:`q_map`).
"""

from ._formats import NXTOMO_VARIANTS, write_frame_folder, write_nxtomo
from ._live import LiveSeriesWriter
from ._live_model import LiveSeriesTruth, Transition
from ._phantom import Ellipsoid
from ._saxs import SaxsSeriesTruth, q_map, simulate_saxs_series
from ._tomo import TomoScanTruth, simulate_tomo_scan

__all__ = [
    "NXTOMO_VARIANTS",
    "Ellipsoid",
    "LiveSeriesTruth",
    "LiveSeriesWriter",
    "SaxsSeriesTruth",
    "TomoScanTruth",
    "Transition",
    "q_map",
    "simulate_saxs_series",
    "simulate_tomo_scan",
    "write_frame_folder",
    "write_nxtomo",
]
