"""Reading images from an OCI distribution / Docker Registry v2 API, read-only.

Public API: ``open_registry_image`` (a ``SourceImage`` whose blobs stream from the registry),
``list_tags``, ``parse_reference`` and the error classes. The store and the CLI call only these.
"""

from imgscan.images.registry.errors import (
    RegistryAuthError,
    RegistryConnectionError,
    RegistryDigestMismatch,
    RegistryError,
    RegistryNotFound,
    RegistryProtocolError,
    RegistryTLSError,
)
from imgscan.images.registry.reference import RegistryReference, parse_reference
from imgscan.images.registry.source import RegistrySource, list_tags, open_registry_image

__all__ = [
    "RegistryAuthError",
    "RegistryConnectionError",
    "RegistryDigestMismatch",
    "RegistryError",
    "RegistryNotFound",
    "RegistryProtocolError",
    "RegistryReference",
    "RegistrySource",
    "RegistryTLSError",
    "list_tags",
    "open_registry_image",
    "parse_reference",
]
