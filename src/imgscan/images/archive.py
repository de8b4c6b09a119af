"""``oci-archive`` and ``docker-archive`` files (FORMATS.md §2).

The tar is indexed once (member name -> offset and size); blobs are then read straight from the
archive with ``pread`` on a private descriptor, so nothing is extracted and several layers can
be read at once. A compressed archive (``docker save | gzip``, ``| zstd``, ``| xz``) is first
decompressed into an anonymous temporary file, as containers/image does.

Hostile archives: member names that are absolute or contain ``..`` are refused, as are
duplicate names; only regular-file members are ever opened (a symlink named
``blobs/sha256/…`` is not followed). The one exception is the ``Config``/``Layers`` paths of
a docker-archive's manifest.json: ``docker save`` and skopeo write ``<id>/layer.tar`` as a
relative symlink to a shared layer file, so those paths are resolved by name *inside the
archive index* (never on a file system), relative, at most 16 hops, never above the root.

docker-archive: ``manifest.json`` is preferred when present (it is right in every Docker
version, while Docker 25.0.0's OCI manifest listed only foreign layers); without it, the OCI
layout that Docker 25+ also writes is read. Its keys are matched without regard to case, as
Go's ``encoding/json`` in docker and skopeo does (Jib writes ``config``, ``repoTags``,
``layers``). A Docker v2s2 manifest is synthesised whose every digest is true: the config by
its hash (the image id, whatever the file is called: docker and skopeo load a config whose
``<hex>.json`` name is another digest, and so do we, with a warning); a plain layer by its
diff_id (checked as it is read); a gzip or zstd layer by the digest in its
``blobs/sha256/<hex>`` name (checked as it is read) or, for other names, by hashing the member
once; an xz layer, for which no media type exists, is served decompressed as a plain layer
(as containers/image serves every compressed docker-archive layer), its size counted once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import posixpath
import re
import stat
import tarfile
import tempfile
import weakref
from collections.abc import Callable
from typing import Any, BinaryIO

from imgscan.errors import DigestMismatch, ImageError, UnsafeLayerError
from imgscan.images import mediatypes as mt
from imgscan.images.compression import HEAD_SIZE, detect_compression, open_decompressed
from imgscan.images.digest import parse_digest, sha256_digest
from imgscan.images.docker_manifest import manifest_item, str_list, with_tag
from imgscan.images.interface import (
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    BlobSource,
    Platform,
    SourceImage,
    parse_config,
)
from imgscan.images.oci_layout import LayoutSource, image_from_layout, naming

__all__ = [
    "DockerArchiveSource",
    "OCIArchiveSource",
    "TarArchive",
    "clean_name",
    "docker_manifest",
    "open_docker_archive",
    "open_oci_archive",
    "resolve_link",
]

_BLOB_NAME_RE = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
_JSON_NAME_RE = re.compile(r"^([0-9a-f]{64})\.json$")
log = logging.getLogger(__name__)
#: far more members than any real archive; a bound on the index's memory
MAX_MEMBERS = 1_000_000
_CHUNK = 1 << 20


class _MemberReader(io.RawIOBase):
    """One member's bytes, read with ``pread`` on a descriptor of its own."""

    def __init__(self, fd: int, offset: int, size: int, what: str) -> None:
        self._fd = os.dup(fd)
        self._offset = offset
        self._size = size
        self._pos = 0
        self._what = what

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        if n is None or n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        try:
            data = os.pread(self._fd, n, self._offset + self._pos)
        except OSError as e:
            raise ImageError(f"{self._what}: read failed: {e.strerror}") from None
        if not data:
            raise ImageError(f"{self._what}: archive is truncated")
        self._pos += len(data)
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def clean_name(name: str, what: str) -> str:
    """A member name as a relative path, or UnsafeLayerError for one that could escape."""
    n = name
    while n.startswith("./"):
        n = n[2:]
    n = n.rstrip("/")
    parts = n.split("/")
    if name.startswith("/") or ".." in parts or "\x00" in name:
        raise UnsafeLayerError(f"{what}: member {name!r} has an absolute or '..' path")
    return "/".join(p for p in parts if p not in ("", "."))


class TarArchive:
    """An indexed, uncompressed tar read by member name without extracting it."""

    def __init__(self, path: str, description: str) -> None:
        self.path = path
        self.description = description
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            raise ImageError(f"{description}: cannot open: {e.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ImageError(f"{description}: not a regular file")
            os.set_blocking(fd, True)
            head = os.pread(fd, HEAD_SIZE, 0)
            if detect_compression(head):
                plain = self._decompress_to_temp(fd)
                os.close(fd)
                fd = plain
            self._fd = fd
            # closes the descriptor if the caller never calls close(); readers hold dups
            self._finalizer = weakref.finalize(self, os.close, fd)
            self._members: dict[str, tuple[int, int]] = {}
            self._others: dict[str, str] = {}
            self._links: dict[str, tuple[bool, str]] = {}
            self._index()
        except BaseException:
            finalizer = getattr(self, "_finalizer", None)
            if finalizer is not None:
                finalizer()
            else:
                os.close(fd)
            raise

    def _decompress_to_temp(self, fd: int) -> int:
        with tempfile.TemporaryFile() as tmp:
            with open_decompressed(os.fdopen(os.dup(fd), "rb"), self.description) as src:
                while True:
                    chunk = src.read(_CHUNK)
                    if not chunk:
                        break
                    tmp.write(chunk)
            tmp.flush()
            return os.dup(tmp.fileno())

    def _index(self) -> None:
        what = self.description
        f = os.fdopen(os.dup(self._fd), "rb", buffering=1 << 16)
        try:
            f.seek(0)
            with tarfile.open(fileobj=f, mode="r:") as tf:
                while True:
                    ti = tf.next()
                    if ti is None:
                        break
                    if len(self._members) + len(self._others) >= MAX_MEMBERS:
                        raise ImageError(f"{what}: more than {MAX_MEMBERS} members")
                    name = clean_name(ti.name, what)
                    if not name:
                        continue
                    if name in self._members or name in self._others:
                        raise ImageError(f"{what}: member {name!r} appears twice")
                    if ti.isreg() and not ti.issparse():
                        self._members[name] = (ti.offset_data, ti.size)
                    else:
                        kind = "symlink" if ti.issym() else "hard link" if ti.islnk() else (
                            "directory" if ti.isdir() else "special file")
                        self._others[name] = kind
                        if ti.issym() or ti.islnk():
                            self._links[name] = (ti.issym(), ti.linkname)
        except (tarfile.TarError, ValueError, OverflowError) as e:
            raise ImageError(f"{what}: not a valid tar archive ({e})") from None
        except EOFError:
            raise ImageError(f"{what}: archive is truncated") from None
        finally:
            f.close()
        size = os.fstat(self._fd).st_size
        for name, (off, n) in self._members.items():
            if off + n > size:
                raise ImageError(f"{what}: member {name!r} runs past the end of the archive")

    def has(self, name: str) -> bool:
        return name in self._members or name in self._others

    def size(self, name: str) -> int:
        return self._lookup(name)[1]

    def _lookup(self, name: str) -> tuple[int, int]:
        entry = self._members.get(name)
        if entry is None:
            other = self._others.get(name)
            if other:
                raise ImageError(
                    f"{self.description}: {name} is a {other}, not a regular file; not followed"
                )
            raise ImageError(f"{self.description}: {name} is missing from the archive")
        return entry

    def resolve(self, name: str) -> str:
        """The regular member that ``name`` is, or that its link chain inside the archive
        leads to (``resolve_link``)."""
        name = resolve_link(name, self._links, self.description)
        self._lookup(name)
        return name

    def open(self, name: str) -> BinaryIO:
        off, size = self._lookup(name)
        reader = _MemberReader(self._fd, off, size, f"{self.description}: {name}")
        return io.BufferedReader(reader, buffer_size=1 << 16)

    def read(self, name: str, limit: int) -> bytes:
        if self._lookup(name)[1] > limit:
            raise ImageError(f"{self.description}: {name} is larger than {limit} bytes")
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        """Release the archive; readers already open keep working on their own descriptors."""
        self._finalizer()
        self._fd = -1


def resolve_link(name: str, links: dict[str, tuple[bool, str]], what: str) -> str:
    """Where ``name`` leads through the archive's own links (``links``: member -> (is a
    symlink, target)). Docker's ``docker save`` (and skopeo) write ``<id>/layer.tar`` as a
    relative symlink to a shared layer; the chain is resolved by name within the archive,
    never on a file system, and may not leave the archive root."""
    seen = 0
    while name in links:
        seen += 1
        if seen > 16:
            raise ImageError(f"{what}: {name}: too many levels of links")
        is_sym, target = links[name]
        if target.startswith("/"):
            raise UnsafeLayerError(f"{what}: link {name} -> {target} is absolute; not followed")
        joined = posixpath.join(posixpath.dirname(name), target) if is_sym else target
        norm = posixpath.normpath(joined)
        if norm == ".." or norm.startswith("../"):
            raise UnsafeLayerError(f"{what}: link {name} -> {target} leaves the archive")
        name = norm
    return name


class OCIArchiveSource(LayoutSource):
    """The blobs of an OCI layout inside a tar (oci-archive, or Docker 25+'s OCI side)."""

    def __init__(self, archive: TarArchive) -> None:
        self.archive = archive
        self.description = archive.description

    def open_blob(self, digest: str) -> BinaryIO:
        alg, enc = parse_digest(digest)
        return self.archive.open(f"blobs/{alg}/{enc}")

    def read_file(self, name: str, limit: int) -> bytes:
        return self.archive.read(name, limit)

    def close(self) -> None:
        self.archive.close()


class DockerArchiveSource(BlobSource):
    """Blobs of a docker-archive, addressed by the digests of the synthesised manifest."""

    def __init__(self, archive: TarArchive) -> None:
        self.archive = archive
        self.description = archive.description
        self.blobs: dict[str, str] = {}
        #: members served decompressed (xz layers, addressed by their diff_id)
        self.decompressed: set[str] = set()

    def open_blob(self, digest: str) -> BinaryIO:
        name = self.blobs.get(digest)
        if name is None:
            raise ImageError(f"{self.description}: no blob {digest} in the archive")
        if name in self.decompressed:
            return open_decompressed(self.archive.open(name), f"{self.description}: {name}")
        return self.archive.open(name)

    def close(self) -> None:
        self.archive.close()


def _with_archive(archive: TarArchive, fn: Callable[[], SourceImage]) -> SourceImage:
    try:
        with naming(archive.description):
            return fn()
    except BaseException:
        archive.close()
        raise


def open_oci_archive(
    path: str,
    ref: str | None = None,
    index: int | None = None,
    platform: Platform | None = None,
) -> SourceImage:
    """Open one image of an oci-archive (``oci-archive:FILE[:REF|:@N]``)."""
    archive = TarArchive(path, f"oci-archive {path}")

    def go() -> SourceImage:
        if not archive.has("oci-layout"):
            hint = " (it looks like a docker-archive)" if archive.has("manifest.json") else ""
            raise ImageError(f"{archive.description}: no oci-layout file; not an OCI archive{hint}")
        return image_from_layout(OCIArchiveSource(archive), ref, index, platform)

    return _with_archive(archive, go)


def open_docker_archive(
    path: str,
    ref: str | None = None,
    index: int | None = None,
    platform: Platform | None = None,
) -> SourceImage:
    """Open one image of a ``docker save`` archive (``docker-archive:FILE[:REF|:@N]``).

    ``ref`` is a RepoTag (``alpine:3.19``, compared in normalised form); ``platform`` is only
    used for Docker 25+ archives without manifest.json.
    """
    archive = TarArchive(path, f"docker-archive {path}")

    def go() -> SourceImage:
        if archive.has("manifest.json"):
            return _from_manifest_json(archive, ref, index)
        if archive.has("oci-layout"):
            return image_from_layout(OCIArchiveSource(archive), ref, index, platform)
        raise ImageError(f"{archive.description}: no manifest.json; not a docker-archive")

    return _with_archive(archive, go)


def _decompressed_size(archive: TarArchive, name: str) -> int:
    """The size of a member once decompressed, counted in bounded chunks (the manifest of a
    layer served decompressed must state it, and the reader checks it)."""
    n = 0
    with open_decompressed(archive.open(name), f"{archive.description}: {name}") as f:
        while chunk := f.read(_CHUNK):
            n += len(chunk)
    return n


def _hash_member(archive: TarArchive, name: str) -> str:
    h = hashlib.sha256()
    with archive.open(name) as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _from_manifest_json(archive: TarArchive, ref: str | None, index: int | None) -> SourceImage:
    what = archive.description
    item, config_name = manifest_item(archive.read("manifest.json", MAX_MANIFEST_BYTES), ref,
                                      index, what)
    config_name = archive.resolve(clean_name(config_name, what))
    layer_names = [archive.resolve(clean_name(n, what))
                   for n in str_list(item.get("Layers"), f"{what}: manifest.json Layers")]
    repo_tags = str_list(item.get("RepoTags"), f"{what}: manifest.json RepoTags")
    tags = [with_tag(t) for t in repo_tags if t]

    source = DockerArchiveSource(archive)
    config = archive.read(config_name, MAX_CONFIG_BYTES)
    config_digest = sha256_digest(config)
    warnings = []
    blob_named = _BLOB_NAME_RE.match(config_name)
    if blob_named and f"sha256:{blob_named[1]}" != config_digest:
        # a content-addressed blob store that lies is corrupt, as a layer blob would be
        raise DigestMismatch(
            f"{what}: config {config_name} hashes to {config_digest}, not the digest in its name"
        )
    json_named = _JSON_NAME_RE.match(config_name)
    if json_named and f"sha256:{json_named[1]}" != config_digest:
        warnings.append(
            f"{what}: config {config_name} is not named by its digest; the image id is the "
            f"digest of its content, {config_digest} (docker and skopeo load it the same way)"
        )
    diff_ids = parse_config(config, f"{what}: config {config_name}")["rootfs"]["diff_ids"]
    if len(diff_ids) != len(layer_names):
        raise ImageError(
            f"{what}: manifest.json lists {len(layer_names)} layers but the config has "
            f"{len(diff_ids)} diff_ids"
        )
    source.blobs[config_digest] = config_name
    layers = []
    for name, diff_id in zip(layer_names, diff_ids, strict=True):
        with archive.open(name) as f:
            head = f.read(HEAD_SIZE)
        kind = detect_compression(head)
        if kind == "xz":
            digest, media = diff_id, mt.DOCKER_LAYER
            source.decompressed.add(name)
            size = _decompressed_size(archive, name)
        elif kind is None:
            digest, media, size = diff_id, mt.DOCKER_LAYER, archive.size(name)
        else:
            media = mt.DOCKER_LAYER_GZIP if kind == "gzip" else mt.OCI_LAYER_ZSTD
            named = _BLOB_NAME_RE.match(name)
            digest = f"sha256:{named[1]}" if named else _hash_member(archive, name)
            size = archive.size(name)
        # the same digest under two names (a repeated layer): either serves, both are checked
        source.blobs.setdefault(digest, name)
        layers.append({"mediaType": media, "size": size, "digest": digest})
    manifest = docker_manifest(config, layers)
    image = SourceImage(
        source,
        manifest,
        sha256_digest(manifest),
        names=tags,
        manifest_media_type=mt.DOCKER_MANIFEST,
    )
    for message in warnings:
        log.warning("%s", message)
    image.warnings.extend(warnings)
    return image


def docker_manifest(config: bytes, layers: list[dict[str, Any]]) -> bytes:
    """The Docker v2s2 manifest synthesised for a docker-archive image (``layers``: its
    descriptors), the same bytes every time: the image's digest in reports."""
    return _go_json({
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "size": len(config),
                   "digest": sha256_digest(config)},
        "layers": layers,
    })


def _go_json(obj: Any) -> bytes:
    """Compact JSON with a fixed key order, so a synthesised manifest (and its digest) is the
    same every time the archive is opened. It is not skopeo's digest for the same archive:
    skopeo labels uncompressed layer files ``…diff.tar.gzip``, we label what the bytes are."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

