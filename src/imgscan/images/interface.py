"""The one image interface every source returns, and the shared parsing behind it.

A source (OCI layout, oci-archive, docker-archive, registry) supplies only a *core*: the raw
manifest bytes with their digest and a way to open blobs by digest. ``SourceImage`` derives the
rest (config, layers, diff_ids, platform), verifying every byte against its digest, in the
go-containerregistry ``partial`` style.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypedDict

from imgscan.errors import ImageError
from imgscan.images import mediatypes as mt
from imgscan.images.digest import HashingReader, parse_digest, sha256_digest, verify_bytes

#: Manifests and configs are small; anything larger is hostile or broken.
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 32 << 20


class RegistryOptions(TypedDict, total=False):
    """How to reach a registry: credentials, an auth file, TLS. Only ``docker://`` sources
    read them; every other source ignores them."""

    creds: str | None
    registry_token: str | None
    authfile: str | None
    tls_verify: bool
    cert_dir: str | None


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]`` as given to ``--platform``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ImageError(f"invalid platform {text!r}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def from_json(cls, obj: object) -> Platform | None:
        if not isinstance(obj, dict):
            return None
        return cls(
            str(obj.get("os") or ""),
            str(obj.get("architecture") or ""),
            str(obj.get("variant") or ""),
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: object, what: str) -> Descriptor:
        """Parse and validate a descriptor; every malformed field is an ImageError."""
        if not isinstance(obj, dict):
            raise ImageError(f"{what}: descriptor is not an object")
        parse_digest(obj.get("digest"))
        digest: str = obj["digest"]  # checked
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageError(f"{what}: descriptor size {size!r} is not a non-negative integer")
        media_type = obj.get("mediaType") or ""
        if not isinstance(media_type, str):
            raise ImageError(f"{what}: mediaType is not a string")
        ann = obj.get("annotations") or {}
        if not isinstance(ann, dict):
            raise ImageError(f"{what}: annotations is not an object")
        urls = obj.get("urls") or []
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations={str(k): str(v) for k, v in ann.items()},
            platform=Platform.from_json(obj.get("platform")),
            urls=tuple(str(u) for u in urls) if isinstance(urls, list) else (),
        )


@dataclass(frozen=True)
class LayerInfo:
    """One layer of an image: where its blob is and what its uncompressed tar must hash to.

    ``digest`` is None when a source cannot know the blob digest without reading it (a
    docker-archive whose layer file is compressed); the diff_id still verifies the content.
    """

    index: int
    media_type: str
    digest: str | None
    size: int
    diff_id: str
    created_by: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)


class BlobSource(ABC):
    """Where the blobs of an image come from."""

    #: a short human name for error messages ("oci layout ./dir", "registry host/repo")
    description: str = "image source"
    #: can a forked process open blobs independently (files opened per blob or read with
    #: pread)? The store then extracts layers in parallel processes.
    fork_safe: bool = True

    @abstractmethod
    def open_blob(self, digest: str) -> BinaryIO:
        """Open the raw (possibly compressed) blob. Raise ImageError when it is missing."""

    def open_layer(self, layer: LayerInfo) -> BinaryIO:
        """Open a layer's raw blob; sources whose layers are not addressed by digest override."""
        if layer.digest is None:
            raise ImageError(f"{self.description}: layer {layer.index} has no blob digest")
        return self.open_blob(layer.digest)

    def read_blob(self, digest: str, size: int | None, limit: int, what: str) -> bytes:
        """Read a small blob whole, verified against digest and size."""
        if size is not None and size > limit:
            raise ImageError(f"{what}: size {size} is over the limit of {limit} bytes")
        with self.open_blob(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{what}: larger than the limit of {limit} bytes")
        verify_bytes(data, digest, what, size)
        return data

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files or connections; the default holds none."""


def load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{what} is not valid JSON: {e}") from None


class SourceImage:
    """An image derived from a manifest and a blob source, with every field verified.

    Construction reads and checks the manifest and the config (small), never the layers.
    """

    def __init__(
        self,
        source: BlobSource,
        manifest_bytes: bytes,
        manifest_digest: str,
        names: Sequence[str] = (),
        manifest_media_type: str | None = None,
        layer_overrides: Sequence[LayerInfo] | None = None,
        index_digest: str | None = None,
    ) -> None:
        self.source = source
        self.names = list(names)
        #: what a user should know about how the image was read (a source's oddities that
        #: docker and skopeo accept too); sources log each one as well
        self.warnings: list[str] = []
        self.raw_manifest = manifest_bytes
        self.manifest_digest = manifest_digest
        #: digest of the top-level index the manifest was chosen from, if any
        self.index_digest = index_digest
        what = f"{source.description}: manifest {manifest_digest}"
        manifest = load_json(manifest_bytes, what)
        if not isinstance(manifest, dict):
            raise ImageError(f"{what} is not a JSON object")
        media_type = manifest.get("mediaType") or manifest_media_type or ""
        if manifest_media_type and manifest.get("mediaType") and (
            manifest["mediaType"] != manifest_media_type
        ):
            raise ImageError(
                f"{what}: mediaType {manifest['mediaType']!r} disagrees with "
                f"{manifest_media_type!r}"
            )
        if media_type in mt.SCHEMA1_TYPES or manifest.get("schemaVersion") == 1:
            raise ImageError(f"{what}: Docker schema 1 manifests are not supported")
        if media_type in mt.INDEX_TYPES:
            raise ImageError(f"{what}: is an index, not an image manifest")
        if media_type and media_type not in mt.MANIFEST_TYPES:
            raise ImageError(f"{what}: unsupported manifest media type {media_type!r}")
        if manifest.get("schemaVersion") != 2:
            raise ImageError(f"{what}: schemaVersion is not 2")
        self.manifest: dict[str, Any] = manifest
        self.manifest_media_type = media_type or mt.OCI_MANIFEST
        self.config_descriptor = Descriptor.from_json(manifest.get("config"), f"{what} config")
        if self.config_descriptor.media_type not in mt.CONFIG_TYPES:
            raise ImageError(
                f"{what}: config media type {self.config_descriptor.media_type!r} is not an "
                "image config (an artifact, not a runnable image)"
            )
        raw_layers = manifest.get("layers")
        if not isinstance(raw_layers, list):
            raise ImageError(f"{what}: layers is not a list")
        self.layer_descriptors = [
            Descriptor.from_json(d, f"{what} layer {i}") for i, d in enumerate(raw_layers)
        ]
        for i, d in enumerate(self.layer_descriptors):
            if d.media_type and d.media_type not in mt.LAYER_TYPES:
                raise ImageError(f"{what}: layer {i} has unsupported media type {d.media_type!r}")
        self.raw_config = source.read_blob(
            self.config_descriptor.digest,
            self.config_descriptor.size,
            MAX_CONFIG_BYTES,
            f"{source.description}: config {self.config_descriptor.digest}",
        )
        self.config = parse_config(self.raw_config, f"{source.description}: config")
        self.layers = layer_overrides or self._pair_layers()

    @property
    def image_id(self) -> str:
        """The image id: the digest of the config bytes (what docker and podman show)."""
        return sha256_digest(self.raw_config)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config["rootfs"]["diff_ids"])

    def _pair_layers(self) -> list[LayerInfo]:
        diff_ids = self.diff_ids
        if len(diff_ids) != len(self.layer_descriptors):
            raise ImageError(
                f"{self.source.description}: manifest has {len(self.layer_descriptors)} layers "
                f"but the config lists {len(diff_ids)} diff_ids"
            )
        history = layer_history(self.config)
        return [
            LayerInfo(
                index=i,
                media_type=d.media_type,
                digest=d.digest,
                size=d.size,
                diff_id=diff_ids[i],
                created_by=history[i] if i < len(history) else "",
                annotations=d.annotations,
            )
            for i, d in enumerate(self.layer_descriptors)
        ]

    @contextmanager
    def open_layer(self, layer: LayerInfo) -> Iterator[BinaryIO]:
        """The raw layer blob, verified against its digest as it is read (check at EOF)."""
        raw = self.source.open_layer(layer)
        try:
            if layer.digest is None:
                yield raw
            else:
                yield HashingReader(  # type: ignore[misc]
                    raw,
                    layer.digest,
                    f"{self.source.description}: layer {layer.index} ({layer.digest})",
                    size=layer.size,
                )
        finally:
            raw.close()

    @property
    def platform(self) -> Platform:
        c = self.config
        return Platform(str(c.get("os") or ""), str(c.get("architecture") or ""),
                        str(c.get("variant") or ""))


def parse_config(data: bytes, what: str) -> dict[str, Any]:
    """Parse an image config and check the fields the store relies on."""
    config = load_json(data, what)
    if not isinstance(config, dict):
        raise ImageError(f"{what} is not a JSON object")
    rootfs = config.get("rootfs")
    # name what is missing or wrong: "rootfs.type is not 'layers'" for a config without
    # rootfs sends the reader looking at a field that is not there
    if rootfs is None:
        raise ImageError(f"{what} has no rootfs (the layers' diff_ids); not an image config")
    if not isinstance(rootfs, dict):
        raise ImageError(f"{what}: rootfs is not an object")
    rootfs_type = rootfs.get("type")
    if rootfs_type is None:
        raise ImageError(f"{what}: rootfs has no type (it must be 'layers')")
    if rootfs_type != "layers":
        raise ImageError(f"{what}: rootfs.type is {rootfs_type!r}, not 'layers'")
    diff_ids = rootfs.get("diff_ids")
    if diff_ids is None:
        raise ImageError(f"{what}: rootfs has no diff_ids")
    if not isinstance(diff_ids, list):
        raise ImageError(f"{what}: rootfs.diff_ids is not a list")
    for d in diff_ids:
        parse_digest(d)
    inner = config.get("config")
    if inner is not None and not isinstance(inner, dict):
        raise ImageError(f"{what}: config is not an object")
    return config


def layer_history(config: Mapping[str, Any]) -> list[str]:
    """``created_by`` of the history entries that made a layer, in layer order."""
    out: list[str] = []
    history = config.get("history")
    if not isinstance(history, list):
        return out
    for h in history:
        if isinstance(h, dict) and not h.get("empty_layer"):
            out.append(str(h.get("created_by") or ""))
    return out
