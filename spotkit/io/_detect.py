"""Sniffing a raw dataset's layout: kept for old imports; the registry does the work."""

from __future__ import annotations

from ._registry import detect_kind, read_metadata

__all__ = ["detect_kind", "read_metadata"]
