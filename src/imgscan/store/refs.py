"""How a reference names a stored image: names, short names, id prefixes, digests.

Pure functions over anything shaped like an image record (``names``, ``id``,
``manifest_digest``, ``short_id``), and nothing imported beyond ``os``: the full store
(``imgscan.store.records``) and the lean view that ``imgscan mount`` reads
(``imgscan.store.view``) resolve references with this one code.
"""

from __future__ import annotations

import os

from imgscan.errors import BadReferenceError
from imgscan.hexid import hex_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Protocol, TypeVar

    class NamedImage(Protocol):
        @property
        def id(self) -> str: ...
        @property
        def names(self) -> tuple[str, ...]: ...
        @property
        def manifest_digest(self) -> str: ...
        @property
        def short_id(self) -> str: ...

    Image = TypeVar("Image", bound=NamedImage)


def normalize_name(name: str) -> str:
    """``name`` -> ``name:latest``; a name with a tag or digest is kept as it is."""
    if not name or any(c.isspace() for c in name):
        raise BadReferenceError(f"invalid image name {name!r}")
    last = name.rsplit("/", 1)[-1]
    if "@" in last or ":" in last:
        return name
    return name + ":latest"


def resolve_ref(images: Iterable[Image], ref: str) -> Image:
    """An image by name[:tag], full or unique-prefix id (with or without ``sha256:``), or
    manifest digest."""
    if not ref:
        raise BadReferenceError("empty image reference")
    images = list(images)
    for candidate in _candidates(ref):
        for img in images:
            if candidate in img.names:
                return img
    key = ref[7:] if ref.startswith("sha256:") else ref
    if len(key) >= 3 and all(c in "0123456789abcdef" for c in key):
        matches = [i for i in images
                   if hex_of(i.id).startswith(key) or hex_of(i.manifest_digest) == key]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            ids = ", ".join(sorted(m.short_id for m in matches))
            raise BadReferenceError(f"image id prefix {ref!r} is ambiguous: it matches {ids}")
    for img in images:
        if ref == img.manifest_digest:
            return img
    raise BadReferenceError(f"no image {ref!r} in the store; {_next_step(ref)}")


def has_domain(name: str) -> bool:
    """Does ``name`` start with a registry (``quay.io/…``, ``localhost:5000/…``)? The rule
    podman and docker share: a first component with a dot or a port, or ``localhost``."""
    first, sep, _ = name.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def _candidates(ref: str) -> list[str]:
    """The names a reference may mean, as podman resolves a short name against local
    images: as given, with ``:latest``, then under ``localhost/`` (where imgscan and podman
    put images without a registry) and Docker Hub's ``docker.io/library/``."""
    if "@" in ref:
        return [ref]
    full = normalize_name(ref)
    out = [ref, full]
    if not has_domain(ref):
        out += [f"localhost/{full}", f"docker.io/{full}"]
        if "/" not in ref:
            out.append(f"docker.io/library/{full}")
    return out


def _next_step(ref: str) -> str:
    """What the user probably meant, for the not-found message."""
    if os.path.isfile(os.path.join(ref, "index.json")):
        return f"to read the OCI layout there, use oci:{ref}"
    if os.path.isdir(ref):
        return f"to scan the directory, use dir:{ref}"
    if os.path.isfile(ref):
        return f"for an archive, use docker-archive:{ref} or oci-archive:{ref}"
    if has_domain(ref):
        return f"to read it from the registry, use docker://{ref}"
    return "see 'imgscan images', or pull it first"
