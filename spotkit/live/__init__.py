"""Real time: reduce and judge frames while the detector writes them (``spotkit live``).

* :class:`LiveSession` follows a series being written (an HDF5/NeXus file being appended
  or a folder of CBF/EDF/TIFF frames, :func:`spotkit.io.follow_frames`): each new frame is
  reduced to I(q) (pyFAI), judged by the online change detector
  (:class:`spotkit.change.OnlineDetector`), recorded in the catalog as a ``features`` point
  (and an ``event`` point when a change is confirmed) with its I(q) row in the
  :class:`ProfileLog`, marked ``of interest`` / ``redundant``
  (:func:`spotkit.change.reduction_policy`) and handed to the rules' live triggers
  (:class:`spotkit.flows.LiveTriggers`). It survives the writer pausing, a truncated last
  frame and being killed (it resumes at the first frame not recorded; nothing is counted
  twice), and says how far behind a faster detector it is (:class:`LiveStatus`).
* :class:`ProfileLog` keeps the I(q) of each frame in an HDF5 file readable while written;
  :func:`subscribe` polls a series' new points for watchers (timeline, portal, fits).
"""

from spotkit.live._fit import fit_latest, follow_fits  # (engineer F)
from spotkit.live._session import LiveSession
from spotkit.live._status import STATES, LiveStatus
from spotkit.live._store import ProfileLog, profile_log_path  # (engineer D)
from spotkit.live._subscribe import Subscription, subscribe  # (engineer D)

__all__ = [
    "STATES",
    "LiveSession",
    "LiveStatus",
    "ProfileLog",
    "Subscription",
    "fit_latest",
    "follow_fits",
    "profile_log_path",
    "subscribe",
]
