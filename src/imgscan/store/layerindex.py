"""The per-layer index: every tar entry's original metadata, compact and fast to load.

Analyzers read modes, owners, xattrs and whiteouts from here rather than from the disk, so a
rootless run (which cannot chown or mknod) reports exactly what a root run reports. Stored as
zstd-compressed JSON arrays, one per entry: loading 100k entries takes tens of milliseconds.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

import zstandard

from imgscan.atomic import write_atomic
from imgscan.fileinfo import FileInfo, FileKind

INDEX_VERSION = 1
_KINDS = {k.value: k for k in FileKind}


def _encode(info: FileInfo) -> list[object]:
    xattrs = (
        {k: base64.b64encode(v).decode() for k, v in info.xattrs.items()} if info.xattrs else None
    )
    return [info.path, info.kind.value, info.mode, info.uid, info.gid, info.size,
            info.linkname, info.mtime, xattrs, info.devmajor, info.devminor]


def _decode(row: list) -> FileInfo:
    path, kind, mode, uid, gid, size, linkname, mtime, xattrs, major, minor = row
    if not xattrs:  # the common case: share the default empty mapping
        return FileInfo(path, _KINDS[kind], mode, uid, gid, size, linkname, mtime,
                        devmajor=major, devminor=minor)
    return FileInfo(
        path=path,
        kind=_KINDS[kind],
        mode=mode,
        uid=uid,
        gid=gid,
        size=size,
        linkname=linkname,
        mtime=mtime,
        xattrs={k: base64.b64decode(v) for k, v in xattrs.items()},
        devmajor=major,
        devminor=minor,
    )


def save_index(path: str, entries: Iterable[FileInfo]) -> None:
    doc = {"version": INDEX_VERSION, "entries": [_encode(e) for e in entries]}
    raw = json.dumps(doc, separators=(",", ":")).encode("utf-8", "surrogateescape")
    write_atomic(path, zstandard.ZstdCompressor(level=3).compress(raw))


def load_index(path: str) -> list[FileInfo]:
    with open(path, "rb") as f:
        raw = zstandard.ZstdDecompressor().decompress(f.read())
    doc = json.loads(raw.decode("utf-8", "surrogateescape"))
    if doc.get("version") != INDEX_VERSION:
        raise ValueError(f"layer index {path}: unsupported version {doc.get('version')!r}")
    return [_decode(r) for r in doc["entries"]]
