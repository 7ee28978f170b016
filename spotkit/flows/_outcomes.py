"""What a pass of the watcher reports, and the internal outcomes that steer a dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

from spotkit.errors import CatalogError, SpotkitError

__all__ = ["PassReport"]


class _Outage(SpotkitError):
    """A fault outside the dataset (destination, compute, catalog): retry, do not count."""


class _Quarantined(SpotkitError):
    """The raw file is corrupt: quarantined, parked."""


class _RunFailed(SpotkitError):
    """A batch run submitted before a crash ended failed or cancelled."""


class _LeaseLost(SpotkitError):
    """Another watcher holds the lease on this dataset now."""


@dataclass
class PassReport:
    """What one pass of :meth:`Watcher.run_once` did.

    Attributes
    ----------
    discovered : list of str
        Files newly found complete.
    done : list of str
        Dataset ids finished in this pass.
    failed : dict
        ``{path: error}`` of datasets that failed an attempt (to be retried).
    parked : dict
        ``{path: reason}`` of datasets parked in this pass (quarantined ones included).
    skipped : list of str
        Files another watcher holds the lease on.
    outages : list of str
        Faults outside the datasets met in this pass (destination, compute, catalog).
    """

    discovered: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    parked: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    outages: list[str] = field(default_factory=list)


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, CatalogError) and ("lock" in text or "busy" in text)
