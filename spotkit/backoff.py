"""Exponential back-off, in one place: how long to wait before trying again.

Used by the flow (a dataset's retries and waiting out outages), the rules' retry policies,
the batch schedulers' transient errors and the NERSC API client.

Examples
--------
>>> from spotkit.backoff import Backoff
>>> Backoff(first=2, factor=2, maximum=10).delays(5)
[2.0, 4.0, 8.0, 10.0, 10.0]
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Waits that grow by ``factor`` after each failure, from ``first`` up to ``maximum``.

    Parameters
    ----------
    first : float
        Seconds to wait after the first failure.
    factor : float
        Growth per failure (>= 1).
    maximum : float
        Longest wait.
    """

    first: float
    factor: float = 2.0
    maximum: float = 600.0

    def __post_init__(self):
        if self.first < 0 or self.maximum < 0:
            raise ValueError(f"back-off waits must be >= 0 (first={self.first!r}, "
                             f"maximum={self.maximum!r})")
        if self.factor < 1:
            raise ValueError(f"back-off factor must be >= 1, not {self.factor!r}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row (1-based).

        Parameters
        ----------
        failures : int
            1 for the first failure.

        Returns
        -------
        float
        """
        if failures < 1:
            raise ValueError(f"failure counts start at 1, got {failures}")
        # capped exponent: no float overflow however long the outage lasts
        exponent = min(failures - 1, 64)
        return float(min(self.maximum, self.first * self.factor ** exponent))

    def delays(self, n: int) -> list[float]:
        """The first ``n`` waits, in order."""
        return [self.delay(i) for i in range(1, n + 1)]
