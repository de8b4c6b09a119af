"""``open_image``: one entry point from a user's reference to a verified ``SourceImage``."""

from __future__ import annotations

from typing import Any

from imgscan.errors import ImageError
from imgscan.images.interface import Platform, SourceImage
from imgscan.images.reference import ImageReference, parse_reference


def open_image(ref: str, platform: Platform | None = None, **registry_opts: Any) -> SourceImage:
    """Open the image ``ref`` names (``oci:``, ``oci-archive:``, ``docker-archive:``,
    ``docker://``). Errors are ``ImageError`` subclasses with a one-line message.

    ``registry_opts`` go to the registry source only; ``docker://`` passes the text after
    ``docker://`` to ``imgscan.images.registry.open_registry_image``.
    """
    parsed = parse_reference(ref)
    return open_parsed(parsed, platform, **registry_opts)


def open_parsed(
    parsed: ImageReference, platform: Platform | None = None, **registry_opts: Any
) -> SourceImage:
    """``open_image`` for an already parsed reference."""
    t = parsed.transport
    try:
        if t == "oci":
            from imgscan.images.oci_layout import open_oci_layout

            return open_oci_layout(parsed.path, parsed.ref, parsed.index, platform)
        if t == "oci-archive":
            from imgscan.images.archive import open_oci_archive

            return open_oci_archive(parsed.path, parsed.ref, parsed.index, platform)
        if t == "docker-archive":
            from imgscan.images.archive import open_docker_archive

            return open_docker_archive(parsed.path, parsed.ref, parsed.index, platform)
        if t == "docker":
            # imported here: local scans never load the HTTP client
            try:
                from imgscan.images.registry import open_registry_image
            except ModuleNotFoundError as e:
                if e.name != "imgscan.images.registry":
                    raise
                raise ImageError(f"{parsed}: registry support is not installed") from None

            return open_registry_image(parsed.remote, platform, **registry_opts)
    except OSError as e:
        # a last guard: sources convert their own I/O errors, this keeps tracebacks out
        raise ImageError(f"{parsed}: {e.strerror or e}") from None
    if t == "dir":
        raise ImageError(
            f"{parsed}: a dir: reference is a root filesystem, not an image; scan it as a "
            "directory"
        )
    raise ImageError(f"{parsed}: unsupported transport {t!r}")
