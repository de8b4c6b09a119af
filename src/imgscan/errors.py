"""The error hierarchy that the CLI maps to exit codes.

Exit codes (DESIGN.md): 0 passed, 1 the gate failed, 2 usage error, 3 the image or the
environment could not be read. Library code raises these; only ``cli.py`` turns them into
exit codes and one-line messages.
"""

from __future__ import annotations


class ImgscanError(Exception):
    """Base of every error imgscan reports to a user; exit code 3 unless a subclass says."""

    exit_code = 3


class UsageError(ImgscanError):
    """The user asked for something that cannot mean anything (bad flag value, bad file)."""

    exit_code = 2


class ImageError(ImgscanError):
    """An image, its manifest, config or one of its blobs is missing, malformed or corrupt."""


class DigestMismatch(ImageError):
    """Bytes did not hash to the digest that named them."""


class UnsafeLayerError(ImageError):
    """A layer tar tried to write outside its directory or broke a safety cap."""


class BadReferenceError(ImageError):
    """A reference is malformed, or matched no image, or several."""


class StoreError(ImgscanError):
    """The store is unusable: locked by a dead writer, corrupt metadata, permission denied."""


class ImageInUseError(StoreError):
    """An image cannot be removed because it is mounted or a process is reading it."""


class MountError(ImgscanError):
    """An image could not be mounted or unmounted."""
