"""Build images by hand, for tests and the sample image: layer tars with exact modes,
whiteouts and links, and OCI layouts, oci-archives and docker-archives around them.

Not part of the installed package: tests import it from here, and ``scripts/`` and
``bench/`` put this directory on ``sys.path`` (it needs nothing of imgscan's).

Everything is written with ``tarfile`` and ``json`` directly so that a test controls every
byte a hostile image could contain.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    None: "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    path: str
    kind: str = "file"  # file dir symlink hardlink char block fifo
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    xattrs: dict[str, str] = field(default_factory=dict)
    mtime: int = 1_700_000_000
    devmajor: int = 0
    devminor: int = 0


def F(path: str, data: bytes | str = b"", mode: int = 0o644, **kw: Any) -> Entry:
    return Entry(path, "file", data.encode() if isinstance(data, str) else data, mode, **kw)


def D(path: str, mode: int = 0o755, **kw: Any) -> Entry:
    return Entry(path, "dir", mode=mode, **kw)


def L(path: str, target: str, **kw: Any) -> Entry:
    return Entry(path, "symlink", linkname=target, mode=0o777, **kw)


def H(path: str, target: str, **kw: Any) -> Entry:
    return Entry(path, "hardlink", linkname=target, mode=0o644, **kw)


def WH(path: str) -> Entry:
    """A whiteout deleting ``path`` of lower layers."""
    d, b = os.path.split(path)
    return F(os.path.join(d, ".wh." + b) if d else ".wh." + b)


def OPQ(directory: str) -> Entry:
    return F(directory.rstrip("/") + "/.wh..wh..opq")


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def layer_tar(entries: Iterable[Entry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """An uncompressed layer tar holding exactly ``entries``, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.path)
            ti.type = _TYPES[e.kind]
            ti.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            ti.uid, ti.gid = e.uid, e.gid
            ti.mtime = e.mtime
            ti.linkname = e.linkname
            ti.devmajor, ti.devminor = e.devmajor, e.devminor
            if e.xattrs:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.kind == "file":
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def compress(data: bytes, how: str | None) -> bytes:
    if how is None:
        return data
    if how == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(how)


@dataclass
class Layer:
    tar: bytes
    compression: str | None = "gzip"
    created_by: str = ""

    @property
    def blob(self) -> bytes:
        return compress(self.tar, self.compression)

    @property
    def diff_id(self) -> str:
        return sha256(self.tar)


@dataclass
class StreamedLayer(Layer):
    """A zstd layer whose tar is written through the compressor and never held whole: a
    few files of ``size`` bytes, zeros after ``head`` (a bomb: GiBs in a few KiB)."""

    files: Sequence[tuple[str, int, bytes]] = ()  # (path, size, head)
    _blob: bytes = b""
    _diff_id: str = ""

    def __post_init__(self) -> None:
        self.compression = "zstd"
        h = hashlib.sha256()
        buf = io.BytesIO()
        w = zstandard.ZstdCompressor(level=1).stream_writer(buf, closefd=False)

        def put(b: bytes) -> None:
            h.update(b)
            w.write(b)

        zeros = bytes(1 << 20)
        for path, size, head in self.files:
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode = size, 0o644
            put(ti.tobuf(tarfile.PAX_FORMAT))
            put(head)
            left = size - len(head)
            while left:
                n = min(left, len(zeros))
                put(zeros[:n])
                left -= n
            put(bytes(-size % 512))
        put(bytes(1024))
        w.close()
        self._blob, self._diff_id = buf.getvalue(), "sha256:" + h.hexdigest()

    @property
    def blob(self) -> bytes:
        return self._blob

    @property
    def diff_id(self) -> str:
        return self._diff_id


@dataclass
class ImageSpec:
    layers: Sequence[Layer]
    config: dict[str, Any] = field(default_factory=dict)  # the inner "config" object
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""
    created: str = "2024-01-01T00:00:00Z"
    ref_name: str | None = "latest"
    extra_history: list[dict[str, Any]] = field(default_factory=list)

    def config_json(self) -> bytes:
        history = [{"created": self.created, "created_by": lay.created_by or f"layer {i}"}
                   for i, lay in enumerate(self.layers)]
        doc: dict[str, Any] = {
            "created": self.created,
            "architecture": self.architecture,
            "os": self.os,
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in self.layers]},
            "history": history + self.extra_history,
        }
        if self.variant:
            doc["variant"] = self.variant
        return json.dumps(doc, indent=None, separators=(",", ":")).encode()


class BlobDir:
    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        path = os.path.join(self.root, "blobs", "sha256", digest.split(":")[1])
        with open(path, "wb") as f:
            f.write(data)
        return digest


def write_manifest(blobs: BlobDir, spec: ImageSpec) -> dict[str, Any]:
    """Write config, layers and manifest blobs; return the manifest's descriptor."""
    config = spec.config_json()
    layers = []
    for lay in spec.layers:
        blob = lay.blob
        layers.append({"mediaType": LAYER_TYPES[lay.compression], "digest": blobs.put(blob),
                       "size": len(blob)})
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": blobs.put(config), "size": len(config)},
        "layers": layers,
    }).encode()
    desc: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": blobs.put(manifest),
                            "size": len(manifest)}
    desc["platform"] = {"os": spec.os, "architecture": spec.architecture}
    if spec.variant:
        desc["platform"]["variant"] = spec.variant
    return desc


def write_oci_layout(root: str, images: Sequence[ImageSpec], index_images: bool = False,
                     index_ref: str | None = "latest") -> dict[str, Any]:
    """An OCI layout with one index.json entry per image, or with ``index_images`` one entry
    pointing to a nested index of all images (a multi-platform image). Returns index.json."""
    blobs = BlobDir(root)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    descs = [write_manifest(blobs, s) for s in images]
    if index_images:
        nested = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                             "manifests": descs}).encode()
        top: dict[str, Any] = {"mediaType": OCI_INDEX, "digest": blobs.put(nested),
                               "size": len(nested)}
        if index_ref:
            top["annotations"] = {"org.opencontainers.image.ref.name": index_ref}
        entries = [top]
    else:
        entries = []
        for s, d in zip(images, descs, strict=True):
            d = dict(d)
            if s.ref_name:
                d["annotations"] = {"org.opencontainers.image.ref.name": s.ref_name}
            entries.append(d)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f)
    return index


def tar_directory(src: str, dest: str) -> None:
    """An archive of a directory's contents at the archive root (oci-archive form)."""
    with tarfile.open(dest, "w") as tf:
        for name in sorted(os.listdir(src)):
            tf.add(os.path.join(src, name), arcname=name)


def write_docker_archive(dest: str, images: Sequence[tuple[ImageSpec, list[str]]]) -> None:
    """A legacy ``docker save`` archive: manifest.json, <config>.json, <id>/layer.tar."""
    with tarfile.open(dest, "w") as tf:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))

        manifest = []
        for spec, tags in images:
            config = spec.config_json()
            config_name = sha256(config).split(":")[1] + ".json"
            add(config_name, config)
            layer_names = []
            for lay in spec.layers:
                name = lay.diff_id.split(":")[1] + "/layer.tar"
                add(name, lay.tar)
                layer_names.append(name)
            manifest.append({"Config": config_name, "RepoTags": tags, "Layers": layer_names})
        add("manifest.json", json.dumps(manifest).encode())


def write_docker25_archive(dest: str, images: Sequence[tuple[ImageSpec, list[str]]],
                           oci_layers: bool = True, with_manifest_json: bool = True) -> None:
    """A Docker 25+ ``docker save`` archive (FORMATS.md §2.2): an OCI layout whose layer blobs
    are the uncompressed tars named by diff_id, plus manifest.json pointing into ``blobs/``.

    ``oci_layers=False`` mimics Docker 25.0.0, whose OCI manifests listed no (non-foreign)
    layers; ``with_manifest_json=False`` leaves only the OCI side.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        blobs = BlobDir(root)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        manifest_json, index_entries, repositories = [], [], {}
        for spec, tags in images:
            config = spec.config_json()
            config_digest = blobs.put(config)
            layer_descs = []
            for lay in spec.layers:
                layer_descs.append({"mediaType": LAYER_TYPES[None], "digest": blobs.put(lay.tar),
                                    "size": len(lay.tar)})
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                           "size": len(config)},
                "layers": layer_descs if oci_layers else [],
            }).encode()
            mdesc = {"mediaType": OCI_MANIFEST, "digest": blobs.put(manifest),
                     "size": len(manifest)}
            for tag in tags or [None]:
                d = dict(mdesc)
                if tag:
                    repo, _, t = tag.rpartition(":")
                    d["annotations"] = {"io.containerd.image.name": f"docker.io/library/{tag}",
                                        "org.opencontainers.image.ref.name": t}
                    repositories.setdefault(repo, {})[t] = spec.layers[-1].diff_id.split(":")[1]
                index_entries.append(d)
            manifest_json.append({
                "Config": "blobs/sha256/" + config_digest.split(":")[1],
                "RepoTags": tags,
                "Layers": ["blobs/sha256/" + lay.diff_id.split(":")[1] for lay in spec.layers],
            })
        with open(os.path.join(root, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": index_entries}, f)
        if with_manifest_json:
            with open(os.path.join(root, "manifest.json"), "w") as f:
                json.dump(manifest_json, f)
            with open(os.path.join(root, "repositories"), "w") as f:
                json.dump(repositories, f)
        tar_directory(root, dest)
