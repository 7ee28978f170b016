"""Short, unique identifiers that sort by creation time (ULID-like).

An id is a prefix (``"ds-"``, ``"run-"``) followed by 12 Crockford base-32 characters: nine
for the creation time in milliseconds since the Unix epoch (good until the year 3084) and
three random ones. Within one generator, ids made in the same millisecond increase
monotonically, so sorting ids sorts datasets by creation.
"""

from __future__ import annotations

import secrets
import threading
import time

__all__ = ["IdFactory"]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32, in ASCII order
_TIME_CHARS = 9
_RAND_CHARS = 3
_RAND_LIMIT = 32**_RAND_CHARS


def _encode(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


class IdFactory:
    """Generate monotonically increasing, time-sortable ids (thread-safe).

    Examples
    --------
    >>> ids = IdFactory()
    >>> a, b = ids.new("ds-"), ids.new("ds-")
    >>> a < b and len(a) == 15
    True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new(self, prefix: str) -> str:
        """Return a new id starting with ``prefix``."""
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_rand + 1
                if rand >= _RAND_LIMIT:  # more ids in one ms than the random part holds
                    ms += 1
                    rand = secrets.randbelow(_RAND_LIMIT // 2)
            else:
                rand = secrets.randbelow(_RAND_LIMIT // 2)  # leave room to increment
            self._last_ms, self._last_rand = ms, rand
        return prefix + _encode(ms, _TIME_CHARS) + _encode(rand, _RAND_CHARS)
