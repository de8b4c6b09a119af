"""``imgscan inspect`` output: skopeo inspect's keys, in its order, plus imgscan's own.

skopeo's keys (FORMATS.md §3.4; ``cmd/skopeo/inspect/output.go``): Name, Tag (omitted when
empty), Digest (the *top-level* digest: the index's for a multi-platform image), RepoTags,
Created, DockerVersion, Labels, Architecture, Os, Layers, LayersData, Env. imgscan appends
User, ExposedPorts, History and CompressedSize. Built from a ``SourceImage``, so local images
(layouts, archives, the store) print the same way as registry images; nothing here reads a
layer.
"""

from __future__ import annotations

import re
from typing import Any

from imgscan.images.interface import SourceImage

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)


def go_time(value: Any) -> str | None:
    """Re-render an RFC 3339 time as Go's ``json.Marshal(time.Time)`` does (RFC3339Nano):
    fraction without trailing zeros, at most nanoseconds, and ``Z`` for a zero offset."""
    if not isinstance(value, str) or not value:
        return None
    m = _RFC3339.match(value)
    if not m:
        return value
    date, clock, frac, zone = m.groups()
    frac = (frac or "")[:9].rstrip("0")
    if zone in ("Z", "z", "+00:00", "-00:00"):
        zone = "Z"
    return f"{date}T{clock}{'.' + frac if frac else ''}{zone}"


def _str_map(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()}


def _str_list(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [str(v) for v in value]


def inspect_dict(
    image: SourceImage, name: str, tag: str | None, repo_tags: list[str]
) -> dict[str, Any]:
    """The inspect document for ``image``; ``name`` is the repository (``host/repo``)."""
    config = image.config
    inner = config.get("config")
    if not isinstance(inner, dict):
        inner = {}
    out: dict[str, Any] = {}
    if name:
        out["Name"] = name
    if tag:
        out["Tag"] = tag
    out["Digest"] = image.index_digest or image.manifest_digest
    out["RepoTags"] = list(repo_tags)
    out["Created"] = go_time(config.get("created"))
    out["DockerVersion"] = str(config.get("docker_version") or "")
    out["Labels"] = _str_map(inner.get("Labels"))
    out["Architecture"] = str(config.get("architecture") or "")
    out["Os"] = str(config.get("os") or "")
    out["Layers"] = [d.digest for d in image.layer_descriptors]
    out["LayersData"] = [
        {"MIMEType": d.media_type, "Digest": d.digest, "Size": d.size,
         "Annotations": dict(d.annotations) or None}
        for d in image.layer_descriptors
    ]
    out["Env"] = _str_list(inner.get("Env"))
    # imgscan's own keys
    out["User"] = str(inner.get("User") or "")
    ports = inner.get("ExposedPorts")
    out["ExposedPorts"] = sorted(str(p) for p in ports) if isinstance(ports, dict) else []
    history = config.get("history")
    out["History"] = [
        {k: h[k] for k in ("created", "created_by", "author", "comment", "empty_layer") if k in h}
        for h in history if isinstance(h, dict)
    ] if isinstance(history, list) else []
    out["CompressedSize"] = sum(d.size for d in image.layer_descriptors)
    return out
