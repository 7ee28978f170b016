"""Movers: copy a dataset's files to a warehouse and prove, at the destination, that they landed.

Every mover shares one small interface (:class:`Mover`), so a Globus mover can be added
later without touching the flow:

* ``available() -> (ok, reason)`` — is the destination there and writable (outage detection);
* ``transfer(manifest, src_root, *, dest=None) -> TransferResult`` — copy, then verify
  (movers that :attr:`~Mover.can_order` take ``order=``: files to copy first, e.g. the
  frames of interest of a frame folder, :func:`frame_transfer_order`);
* ``verify(manifest, dest=None, *, level="sha256") -> list[Problem]`` — re-read what is at
  the destination (``level="crc32"``: against the manifest's block checks, CRC-32C or
  CRC-32, read in parallel; much faster than a second sha256).

Built-ins: :class:`LocalCopy` (default; any mounted file system), :class:`Rsync` (local or
over ssh, push or pull) and :class:`Relay` (source -> relay -> destination, verified at each
hop, as SPADE did). The source is never modified or deleted by a mover; a partial file never
carries its final name; faults raise :class:`spotkit.errors.TransferError`, with
``transient=True`` when retrying later may help.
"""

from __future__ import annotations

from ._localcopy import LocalCopy
from ._localcopy_io import PROGRESS_SECONDS
from ._mover_base import (
    MANIFEST_SUFFIX,
    PARTIAL_SUFFIX,
    Mover,
    TransferResult,
    frame_files,
    frame_transfer_order,
    make_mover,
    mover_kinds,
    register_mover,
)
from ._relay import Relay
from ._retention import FramePlan, FrameRetention, RetentionPolicy
from ._rsync import Rsync

__all__ = [
    "MANIFEST_SUFFIX",
    "PARTIAL_SUFFIX",
    "PROGRESS_SECONDS",
    "FramePlan",
    "FrameRetention",
    "LocalCopy",
    "Mover",
    "Relay",
    "RetentionPolicy",
    "Rsync",
    "TransferResult",
    "frame_files",
    "frame_transfer_order",
    "make_mover",
    "mover_kinds",
    "register_mover",
]

for _kind, _cls in (("local", LocalCopy), ("rsync", Rsync), ("relay", Relay)):
    register_mover(_kind, _cls)
