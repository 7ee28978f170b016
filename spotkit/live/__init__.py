"""Real time: reduce and judge frames while the detector writes them (``spotkit live``)."""

from spotkit.live._fit import fit_latest, follow_fits  # noqa: F401 (engineer F)
from spotkit.live._store import ProfileLog, profile_log_path  # noqa: F401 (engineer D)
from spotkit.live._subscribe import Subscription, subscribe  # noqa: F401 (engineer D)
