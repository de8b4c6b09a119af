"""Parse what a user types to name an image: ``TRANSPORT:DETAILS`` (containers-transports(5)).

Transports:

- ``oci:PATH[:REF|:@N]`` - an OCI image layout directory,
- ``oci-archive:FILE[:REF|:@N]`` - a tar of a layout,
- ``docker-archive:FILE[:REF|:@N]`` - ``docker save`` output (REF is a RepoTag such as
  ``alpine:3.19``),
- ``docker://NAME[:TAG|@DIGEST]`` - a registry; the remainder is kept as a string for the
  registry source,
- ``dir:PATH`` - a root filesystem directory (not an image); returned as parsed.

Splitting PATH from REF. containers/image splits at the *first* ``:`` so its paths cannot hold a
colon; ours may, and a REF may hold one too (``docker.io/library/alpine:3.19``). The rule, which
looks at the file system:

1. Every way of cutting the text into ``PATH`` and a suffix is a candidate when PATH exists:
   the whole text (no REF); ``PATH:REF`` at any ``:`` where REF is a valid OCI ref name
   (image-spec annotations grammar); ``PATH:@N`` and ``PATH@N`` with N decimal digits.
2. The candidate with the **longest existing PATH** wins. So ``oci:/d/a:b/l:latest`` with a
   layout at ``/d/a:b/l`` means that layout with ref ``latest``, and a directory literally
   named ``x:y`` is taken whole rather than as ``x`` with ref ``y``.
3. No candidate: an ``ImageError`` naming the path (and the bad REF, if a prefix exists but the
   suffix is not a valid ref name).

``@N`` is a zero-based index into the ``manifests`` of index.json (or the items of a
docker-archive's manifest.json).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from imgscan.errors import ImageError

LOCAL_TRANSPORTS = ("oci", "oci-archive", "docker-archive")
TRANSPORTS = (*LOCAL_TRANSPORTS, "docker", "dir")

_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_INDEX_RE = re.compile(r"^@([0-9]{1,9})$")


def is_valid_ref_name(text: str) -> bool:
    """True if ``text`` fits the ``org.opencontainers.image.ref.name`` grammar."""
    return bool(_REF_NAME_RE.match(text))


@dataclass(frozen=True)
class ImageReference:
    """A parsed reference. ``path`` for local transports, ``remote`` for ``docker``."""

    transport: str
    path: str = ""
    ref: str | None = None
    index: int | None = None
    remote: str = ""

    def __str__(self) -> str:
        if self.transport == "docker":
            return f"docker://{self.remote}"
        text = f"{self.transport}:{self.path}"
        if self.ref is not None:
            text += f":{self.ref}"
        elif self.index is not None:
            text += f":@{self.index}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse ``TRANSPORT:DETAILS``; local paths are checked for existence (see module doc)."""
    if not isinstance(text, str) or not text:
        raise ImageError("empty image reference")
    if "\x00" in text or "\n" in text:
        raise ImageError(f"image reference {text!r} contains a control character")
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        raise ImageError(
            f"image reference {text!r} has no known transport; use one of "
            "oci:PATH, oci-archive:FILE, docker-archive:FILE, docker://NAME, dir:PATH"
        )
    if transport == "docker":
        if not rest.startswith("//") or not rest[2:]:
            raise ImageError(f"image reference {text!r}: expected docker://NAME[:TAG|@DIGEST]")
        return ImageReference("docker", remote=rest[2:])
    if not rest:
        raise ImageError(f"image reference {text!r}: missing path after {transport}:")
    if transport == "dir":
        return ImageReference("dir", path=rest)
    path, ref, index = split_path(rest, transport)
    return ImageReference(transport, path=path, ref=ref, index=index)


def split_path(spec: str, transport: str = "oci") -> tuple[str, str | None, int | None]:
    """Split ``PATH[:REF|:@N|@N]`` by the longest existing PATH (module doc, rule 1-3)."""
    candidates: list[tuple[str, str | None, int | None]] = []
    bad_suffix: tuple[str, str] | None = None
    if os.path.lexists(spec):
        candidates.append((spec, None, None))
    for i, ch in enumerate(spec):
        if ch not in ":@" or i == 0:
            continue
        left, right = spec[:i], spec[i + 1 :]
        if ch == "@":
            # PATH@N, an accepted shorthand for PATH:@N
            m = _INDEX_RE.match("@" + right)
            if m and os.path.lexists(left):
                candidates.append((left, None, int(m[1])))
            continue
        m = _INDEX_RE.match(right)
        if m:
            parsed: tuple[str, str | None, int | None] = (left, None, int(m[1]))
        elif is_valid_ref_name(right):
            parsed = (left, right, None)
        else:
            if os.path.lexists(left) and bad_suffix is None:
                bad_suffix = (left, right)
            continue
        if os.path.lexists(left):
            candidates.append(parsed)
    if candidates:
        return max(candidates, key=lambda c: len(c[0]))
    if bad_suffix is not None:
        left, right = bad_suffix
        raise ImageError(
            f"{transport}:{spec}: {right!r} after {left!r} is neither a valid reference name "
            "nor @N"
        )
    raise ImageError(f"{transport}:{spec}: no such file or directory")


def normalize_docker_name(name: str) -> str:
    """The fully qualified form of a Docker reference, for comparing RepoTags.

    ``alpine`` -> ``docker.io/library/alpine:latest``; ``quay.io/x/y:1`` stays. Digest
    references keep their digest and get no tag.
    """
    digest = ""
    if "@" in name:
        name, digest = name.split("@", 1)
    slash, colon = name.rfind("/"), name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    out = f"{domain}/{path}"
    if digest:
        return f"{out}:{tag}@{digest}" if tag else f"{out}@{digest}"
    return f"{out}:{tag or 'latest'}"
