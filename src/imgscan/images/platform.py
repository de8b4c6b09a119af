"""Choosing one image from an index by platform (FORMATS.md §3.3).

Exact match on os, architecture and variant, with containers/image's variant preference;
BuildKit attestation manifests (``unknown/unknown``) are never chosen.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from imgscan.errors import ImageError
from imgscan.images import mediatypes as mt
from imgscan.images.interface import Descriptor, Platform

_MACHINE_TO_ARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "i686": ("386", ""),
    "i386": ("386", ""),
}

_COMPATIBLE_VARIANTS = {"arm": ["v8", "v7", "v6", "v5"], "arm64": ["v8"]}


def host_platform() -> Platform:
    machine = os.uname().machine  # what platform.machine() reads, without its import
    arch, variant = _MACHINE_TO_ARCH.get(machine.lower(), (machine, ""))
    return Platform("linux", arch, variant)


def _variant_preference(want: Platform) -> list[str]:
    listed = _COMPATIBLE_VARIANTS.get(want.architecture, [])
    if want.variant:
        lower = listed[listed.index(want.variant):] if want.variant in listed else [want.variant]
        return [*lower, ""]
    return ["", *listed]


def is_attestation(desc: Descriptor) -> bool:
    p = desc.platform
    if desc.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    return p is not None and p.os == "unknown" and p.architecture == "unknown"


def choose_manifest(
    manifests: Sequence[Descriptor], want: Platform | None, what: str
) -> Descriptor:
    """Pick the manifest for ``want`` (default: the host) from an index's entries."""
    want = want or host_platform()
    candidates = [
        d for d in manifests
        if not is_attestation(d) and (d.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES
                                      or not d.media_type)
    ]
    for variant in _variant_preference(want):
        for d in candidates:
            p = d.platform
            if p is None:
                continue
            if p.os == want.os and p.architecture == want.architecture and p.variant == variant:
                return d
    untagged = [d for d in candidates if d.platform is None]
    if len(untagged) == 1 and len(candidates) == 1:
        return untagged[0]
    available = sorted({str(d.platform) for d in candidates if d.platform}) or ["none"]
    raise ImageError(
        f"{what}: no image for platform {want} (available: {', '.join(available)}); "
        "choose one with --platform os/arch[/variant]"
    )
