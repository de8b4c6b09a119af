"""Registry errors: one line naming the registry and the cause.

Every class derives from ``ImageError`` so the CLI maps them to exit code 3. Messages never
carry credentials, tokens or ``Authorization`` headers; callers build them from the registry
name, the status and the repository only.
"""

from __future__ import annotations

from imgscan.errors import BadReferenceError, DigestMismatch, ImageError


class RegistryError(ImageError):
    """A registry could not be reached, refused us, or sent something unusable."""

    def __init__(self, registry: str, cause: str) -> None:
        self.registry = registry
        self.cause = cause
        super().__init__(f"registry {registry}: {cause}")


class RegistryAuthError(RegistryError):
    """401/403, or credentials that could not be used."""


class RegistryNotFound(RegistryError, BadReferenceError):
    """404: the manifest, blob or repository does not exist."""


class RegistryConnectionError(RegistryError):
    """The TCP connection failed (refused, reset, timed out) after every retry."""


class RegistryTLSError(RegistryConnectionError):
    """The TLS handshake or certificate verification failed."""


class RegistryDigestMismatch(RegistryError, DigestMismatch):
    """The bytes a registry sent do not hash to the digest that named them."""


class RegistryProtocolError(RegistryError):
    """A response that breaks the distribution spec: bad media type, oversize, bad JSON."""
