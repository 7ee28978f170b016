"""NXcanSAS: the canSAS standard for reduced small-angle scattering data, read and written.

NXcanSAS (a NeXus application definition) stores reduced SAS data in HDF5: every
``SASentry`` group (``NX_class="NXentry"``, ``canSAS_class="SASentry"``,
``definition="NXcanSAS"``, with ``title`` and ``run``) holds one or more ``SASdata`` groups
(``NX_class="NXdata"``) whose ``I`` is plotted against ``Q`` (``@signal="I"``,
``@I_axes``, ``@Q_indices``), with optional uncertainties (``I/@uncertainties="Idev"``) and
Q resolutions (``Q/@resolutions="dQ"``), plus optional ``SASsample``, ``SASinstrument``
(``SASsource``) and ``SASprocess`` groups.

spotkit writes

* a 1-D profile as one ``SASentry`` (``sasentry01``);
* a time series (frame x q) as **one SASentry per time step** (``sasentry01``,
  ``sasentry02``...), each with its frame index, its coordinate values (time...) and, when
  known, an ISO-8601 timestamp;
* a 2-D product (``(qy, qx)`` maps, GISAXS ``(q_oop, q_ip)`` maps, ``(chi, q)`` cakes) as
  ``I_axes="Q,Q"`` with per-pixel ``Qx`` and ``Qy`` fields, the layout of the canSAS 2012
  examples, of Mantid and of sasdata's own writer; the product's 1-D axes are kept beside
  them so that spotkit reads back the same grid.

Files are written atomically (a temporary file in the same folder, renamed into place),
so a crash never leaves a half-written file under the final name.

The writer is :mod:`spotkit.io._nxcansas_write`, the reader :mod:`spotkit.io._nxcansas_read`,
the units and helpers they share :mod:`spotkit.io._nxcansas_common`.
"""

from __future__ import annotations

from ._nxcansas_read import read_nxcansas, read_nxcansas_entries
from ._nxcansas_write import write_nxcansas

__all__ = ["read_nxcansas", "read_nxcansas_entries", "write_nxcansas"]
