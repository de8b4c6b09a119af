"""Registry references: ``[docker://]HOST[:PORT]/REPO[:TAG][@DIGEST]`` and Docker Hub short names.

The grammar is the distribution-spec one (FORMATS.md §3.1); the rule that decides whether the
first path component is a host is Docker's: it is a host when it contains ``.`` or ``:``, is
``localhost``, or has upper-case letters. Anything else is a Docker Hub name
(``alpine`` -> ``docker.io/library/alpine``), fetched from ``registry-1.docker.io``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imgscan.errors import UsageError
from imgscan.images.digest import parse_digest

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DOMAIN_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST_RE = re.compile(
    rf"^(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$"
)
_MAX_NAME = 255


class InvalidReference(UsageError):
    """The user typed something that is not a registry reference (exit code 2)."""


@dataclass(frozen=True)
class RegistryReference:
    """A parsed reference. ``registry`` is the name the user means (``docker.io`` for Hub)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """Where the HTTP API lives: Docker Hub's API host differs from its name."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """``registry/repository``, what skopeo inspect prints as ``Name``."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> RegistryReference:
        return RegistryReference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def normalize_registry(host: str) -> str:
    """Docker Hub's three host names are one registry."""
    return DOCKER_HUB if host.lower() in _HUB_ALIASES else host


def _split_host(text: str) -> tuple[str, str]:
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return first, rest
    return DOCKER_HUB, text


def parse_reference(text: str) -> RegistryReference:
    """Parse and validate a reference; raise InvalidReference with the reason otherwise.

    ``docker://`` is accepted and stripped. Without tag and digest the tag is ``latest``.
    """
    if not isinstance(text, str) or not text:
        raise InvalidReference("empty image reference")
    orig = text
    if text.startswith("docker://"):
        text = text[len("docker://"):]
    if any(c.isspace() for c in text) or len(text) > 1024:
        raise InvalidReference(f"invalid reference {orig!r}: whitespace or too long")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        try:
            parse_digest(digest)
        except Exception as e:
            raise InvalidReference(f"invalid reference {orig!r}: {e}") from None
    host, path = _split_host(text)
    tag = None
    slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > slash:
        path, tag = path[:colon], path[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidReference(f"invalid reference {orig!r}: bad tag {tag!r}")
    if not _HOST_RE.match(host):
        raise InvalidReference(f"invalid reference {orig!r}: bad registry host {host!r}")
    host = normalize_registry(host)
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not path or not _NAME_RE.match(path):
        raise InvalidReference(
            f"invalid reference {orig!r}: repository {path!r} must be lower-case components "
            "of [a-z0-9] joined by '.', '_', '__' or '-', separated by '/'"
        )
    if len(host) + 1 + len(path) > _MAX_NAME:
        raise InvalidReference(f"invalid reference {orig!r}: name longer than {_MAX_NAME}")
    if tag is None and digest is None:
        tag = "latest"
    return RegistryReference(host, path, tag, digest)
