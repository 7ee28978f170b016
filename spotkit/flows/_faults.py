"""Fault injection for the exactly-once tests: the watcher SIGKILLs itself at a chosen point."""

from __future__ import annotations

import logging
import os
import signal

__all__ = ["FAULT_ENV", "FAULT_POINTS", "FaultInjector"]

logger = logging.getLogger("spotkit.flows._flow")

#: ``SPOTKIT_FAULT_AT=point:n[,point:n...]``: the watcher SIGKILLs itself the n-th time it
#: reaches ``point`` (fault-injection tests only; see :data:`FAULT_POINTS`). The variable is
#: inherited by the notebook kernels; ``run.notebook`` is for a test notebook that kills
#: the watcher (its parent) from inside a running cell; the watcher never fires it itself.
FAULT_ENV = "SPOTKIT_FAULT_AT"
FAULT_POINTS = (
    "discover.after", "ingest.before", "stage.after", "ingest.after", "manifest.after",
    "transfer.before", "transfer.placed", "transfer.after", "verify.after", "run.before",
    "run.started", "run.notebook", "run.after", "done.before", "done.after",
)


def _parse_faults(text: str | None) -> dict[str, int]:
    faults: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        point, _, count = part.strip().rpartition(":")
        if point not in FAULT_POINTS or not count.isdigit():
            raise ValueError(
                f"{FAULT_ENV}={text!r}: use point:n with a point in {FAULT_POINTS}"
            )
        faults[point] = int(count)
    return faults


class FaultInjector:
    """SIGKILL this process the n-th time it reaches a point named in ``SPOTKIT_FAULT_AT``.

    Parameters
    ----------
    text : str or None
        ``point:n[,point:n...]`` (default: the environment variable :data:`FAULT_ENV`).
    """

    def __init__(self, text: str | None = None):
        self.faults = _parse_faults(os.environ.get(FAULT_ENV) if text is None else text)
        self.counts: dict[str, int] = {}
        if self.faults:
            logger.warning("fault injection armed: %s", self.faults)

    def __call__(self, point: str) -> None:
        """Count a visit to ``point``; die there if this is the configured visit."""
        if point not in self.faults:
            return
        n = self.counts.get(point, 0) + 1
        self.counts[point] = n
        if n == self.faults[point]:
            logger.warning("fault injection: SIGKILL at %s (#%d)", point, n)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)
