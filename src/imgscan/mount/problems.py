"""What ``store check`` reports about mounts; imported by the check only, not by a mount."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MountProblem:
    """A mount record or mount that ``store check`` reports (the shape of the store's)."""

    kind: str
    path: str
    message: str
    repairable: bool = True
