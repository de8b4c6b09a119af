"""Caps on what one layer may contain (decompression bombs, entry floods)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExtractLimits:
    """Caps against decompression bombs and hostile tars; configurable per store."""

    max_bytes: int = 64 << 30  # uncompressed tar bytes per layer
    max_entries: int = 2_000_000
    max_path: int = 4096
