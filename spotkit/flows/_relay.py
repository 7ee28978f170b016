"""A mover in two hops: source -> relay folder -> destination, verified at each."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ._mover_base import Mover, TransferResult, _ahead, _ordered
from ._suitcase import (
    Manifest,
    Problem,
)

__all__ = ["Relay"]

log = logging.getLogger("spotkit.flows._movers")


class Relay(Mover):
    """Source -> relay folder -> destination, verified at each hop (SPADE's relay mode).

    Parameters
    ----------
    first : Mover
        Moves from the source to the relay folder (its ``dest``).
    second : Mover
        Moves from the relay folder to the final destination (its ``dest``).
    keep_relay_copy : bool, optional
        Keep the files in the relay folder after the final destination verified them
        (default False: they are removed then; the source is never touched).

    Examples
    --------
    Through a relay folder to the warehouse, both on this machine:

    >>> import pathlib, tempfile
    >>> from spotkit.flows import LocalCopy, make_manifest
    >>> inbox, relay, warehouse = (pathlib.Path(tempfile.mkdtemp()) for _ in range(3))
    >>> _ = (inbox / "scan.h5").write_bytes(b"raw detector bytes" * 100)
    >>> manifest = make_manifest(["scan.h5"], root=inbox, read_file_metadata=False)
    >>> mover = Relay(LocalCopy(relay), LocalCopy(warehouse))
    >>> result = mover.transfer(manifest, inbox)
    >>> result.copied, mover.verify(manifest), list(relay.iterdir())  # relay copy removed
    (('scan.h5',), [], [])

    At a facility the second hop usually leaves over ssh for the data transfer node
    (not run here: it needs an ssh login to ``dtn``):

    >>> from spotkit.flows import Rsync
    >>> Relay(LocalCopy("/scratch/relay"), Rsync("/warehouse", ssh="spot@dtn"))
    Relay(LocalCopy('/scratch/relay'), Rsync('/warehouse', ssh='spot@dtn', mode='push'))
    """

    name = "relay"

    def __init__(self, first: Mover, second: Mover, *, keep_relay_copy: bool = False):
        self.first = first
        self.second = second
        self.keep_relay_copy = keep_relay_copy
        self.dest = second.dest

    def __repr__(self) -> str:
        return f"Relay({self.first!r}, {self.second!r})"

    def available(self) -> tuple[bool, str]:
        """Both hops must be available."""
        for hop, mover in (("relay", self.first), ("destination", self.second)):
            ok, why = mover.available()
            if not ok:
                return False, f"{hop} hop: {why}"
        return True, "ok"

    @property
    def can_order(self) -> bool:  # type: ignore[override]
        """Whether both hops take ``order=`` (see :meth:`transfer`)."""
        return bool(self.first.can_order and self.second.can_order)

    def transfer(self, manifest: Manifest, src_root, *, dest=None,
                 order: Sequence[str] | None = None) -> TransferResult:
        """Copy to the relay and verify, then on to the destination and verify there.

        With ``order`` (files to copy first: the frames of interest of a frame folder, see
        :func:`frame_transfer_order <spotkit.flows._movers.frame_transfer_order>`), those
        files make both hops first, in that order, each verified at each hop; then the
        whole dataset makes both hops (what is there and verified is skipped). The frames
        of interest so reach the destination without waiting for the rest to reach the
        relay. Ignored unless both hops :attr:`can_order`.
        """
        t0 = time.perf_counter()
        entries = _ordered(manifest, order) if order and self.can_order else list(manifest.files)
        ahead = _ahead(manifest, entries)
        copied: dict[str, None] = {}
        nbytes = 0
        if ahead:  # the files of interest make both hops first
            first = replace(manifest, files=tuple(entries[:ahead]))
            paths = [f.path for f in entries[:ahead]]
            hop1 = self._hop(self.first, first, src_root, None, paths)
            hop2 = self._hop(self.second, first, self.first.dest, dest, paths)
            copied.update(dict.fromkeys(hop2.copied))
            nbytes += hop1.bytes_copied + hop2.bytes_copied
        every = [f.path for f in entries] if ahead else None
        hop1 = self._hop(self.first, manifest, src_root, None, every)
        hop2 = self._hop(self.second, manifest, self.first.dest, dest, every)
        copied.update(dict.fromkeys(hop2.copied))
        nbytes += hop1.bytes_copied + hop2.bytes_copied
        relay_is_local = not getattr(self.first, "_remote_dest", False)
        if not self.keep_relay_copy and relay_is_local:
            relay = Path(self.first.dest)
            if relay.is_dir():
                for f in manifest.files:
                    (relay / f.path).unlink(missing_ok=True)
        skipped = tuple(f.path for f in entries if f.path not in copied)
        return TransferResult(manifest.id, self.name, hop2.dest, tuple(copied), skipped,
                              nbytes, time.perf_counter() - t0, ahead)

    @staticmethod
    def _hop(mover: Mover, manifest: Manifest, src_root, dest, order) -> TransferResult:
        if order:
            return mover.transfer(manifest, src_root, dest=dest,  # type: ignore[call-arg]
                                  order=order)
        return mover.transfer(manifest, src_root, dest=dest)

    def verify(self, manifest: Manifest, dest=None, *, level: str = "sha256") -> list[Problem]:
        """Verify at the final destination."""
        return self.second.verify(manifest, dest, level=level)

    def store_manifest(self, manifest: Manifest, dest=None) -> str:
        """Put the manifest's copy at the final destination."""
        return self.second.store_manifest(manifest, dest)

    def replica_path(self, rel: str, dest=None) -> str:
        """Where the file lands at the final destination."""
        return self.second.replica_path(rel, dest)
