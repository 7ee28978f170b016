"""Which source files a facility's clean-up may remove: never spotkit's own decision."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ._suitcase import (
    Manifest,
)

__all__ = ["RetentionPolicy"]

log = logging.getLogger("spotkit.flows._movers")



@dataclass(frozen=True)
class RetentionPolicy:
    """Which source files may be pruned: only old enough ones, verified at enough destinations.

    spotkit itself never deletes raw data; this policy only *answers* which files a
    facility's own clean-up may remove. The default (``keep_days=None``) never allows it.

    Parameters
    ----------
    keep_days : float or None
        Keep source files at least this many days after their mtime; None keeps them forever.
    require_verified_copies : int
        How many destinations must hold a verified copy (re-read and checksummed now).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from spotkit.flows import LocalCopy, make_manifest
    >>> inbox, wh1, wh2 = (pathlib.Path(tempfile.mkdtemp()) for _ in range(3))
    >>> _ = (inbox / "scan.h5").write_bytes(b"raw detector bytes" * 100)
    >>> manifest = make_manifest(["scan.h5"], root=inbox, read_file_metadata=False)
    >>> dests = [LocalCopy(wh1), LocalCopy(wh2)]
    >>> RetentionPolicy().prunable(manifest, inbox, dests)  # the default keeps everything
    []
    >>> policy = RetentionPolicy(keep_days=0, require_verified_copies=2)
    >>> policy.prunable(manifest, inbox, dests)  # no verified copy anywhere yet
    []
    >>> _ = dests[0].transfer(manifest, inbox)
    >>> policy.prunable(manifest, inbox, dests)  # one copy, two required
    []
    >>> _ = dests[1].transfer(manifest, inbox)
    >>> [p.name for p in policy.prunable(manifest, inbox, dests)]
    ['scan.h5']
    >>> (inbox / "scan.h5").exists()  # the policy only answers; it never deletes
    True
    """

    keep_days: float | None = None
    require_verified_copies: int = 1

    def __post_init__(self):
        if self.keep_days is not None and self.keep_days < 0:
            raise ValueError(f"keep_days must be >= 0 or None, not {self.keep_days!r}")
        if self.require_verified_copies < 1:
            raise ValueError("require_verified_copies must be at least 1, not "
                             f"{self.require_verified_copies!r}")

    def prunable(self, manifest: Manifest, src_root, destinations, *,
                 now: datetime | None = None) -> list[Path]:
        """The source files that may be pruned now.

        A file qualifies when the policy allows pruning at all, its source still has the
        size and mtime of the manifest, it is older than ``keep_days``, and at least
        ``require_verified_copies`` of ``destinations`` hold it with the manifest's size and
        sha256 — re-verified by this call, not taken from a past record.

        Parameters
        ----------
        manifest : Manifest
        src_root : path-like
            The dataset root at the source.
        destinations : sequence of Mover
            Where copies should be; each is asked to ``verify`` (at its default dest).
        now : datetime, optional
            The current time (for tests); timezone-aware.

        Returns
        -------
        list of pathlib.Path
            Absolute source paths; empty when nothing may go.
        """
        if self.keep_days is None:
            return []
        src_root = Path(src_root)
        now = now or datetime.now(UTC)
        cutoff = (now - timedelta(days=self.keep_days)).timestamp()
        candidates = []
        for f in manifest.files:
            try:
                st = (src_root / f.path).stat()
            except OSError:
                continue
            if st.st_size != f.size or abs(st.st_mtime - f.mtime) > 1e-3 or st.st_mtime > cutoff:
                continue
            candidates.append(f.path)
        if not candidates:
            return []
        counts = dict.fromkeys(candidates, 0)
        for mover in destinations:
            wanted = set(candidates)
            sub = Manifest(manifest.dataset, tuple(f for f in manifest.files if f.path in wanted))
            bad = {p.path for p in mover.verify(sub)}
            for p in candidates:
                if p not in bad:
                    counts[p] += 1
        ok = [src_root / p for p in candidates if counts[p] >= self.require_verified_copies]
        log.info("retention for %s: %d of %d files may be pruned", manifest.id, len(ok),
                 len(manifest.files))
        return ok
