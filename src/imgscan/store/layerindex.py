"""The per-layer index: every tar entry's original metadata, compact and fast to load.

Analyzers read modes, owners, xattrs and whiteouts from here rather than from the disk, so a
rootless run (which cannot chown or mknod) reports exactly what a root run reports.

Format 2 (now): zstd of a magic line and an ``EntryTable``'s columns (``imgscan.entrytable``):
loading 300,000 entries makes no object per entry. Format 1 (zstd JSON, one array per entry)
is still read, into the same table. Anything else, truncated or corrupt, is a ``StoreError``
that names the file and what to do, never a traceback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

import zstandard

from imgscan.atomic import write_atomic
from imgscan.entrytable import EntryTable, compress_chunks
from imgscan.errors import StoreError
from imgscan.fileinfo import FileInfo, FileKind

INDEX_VERSION = 2
_MAGIC = b"imgscan-layer-index 2\n"
_KINDS = {k.value: k for k in FileKind}


def save_index(path: str, entries: EntryTable | Iterable[FileInfo]) -> None:
    table = entries if isinstance(entries, EntryTable) else EntryTable.build(entries)
    write_atomic(path, compress_chunks([_MAGIC, *table.chunks()]))



def load_index(path: str) -> EntryTable:
    try:
        with open(path, "rb") as f:
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(f.read())
        if raw.startswith(_MAGIC):
            return EntryTable.from_bytes(memoryview(raw)[len(_MAGIC):])
        return _load_v1(raw)
    except (ValueError, zstandard.ZstdError, TypeError, KeyError) as e:
        raise StoreError(f"layer index {path} is unreadable ({e}); run 'imgscan store "
                         "check', then pull the image again") from None


def _load_v1(raw: bytes) -> EntryTable:
    """Format 1: ``{"version": 1, "entries": [[path, kind, mode, uid, gid, size, linkname,
    mtime, xattrs (base64) or null, devmajor, devminor], ...]}``."""
    doc = json.loads(raw.decode("utf-8", "surrogateescape"))
    version = doc.get("version") if isinstance(doc, dict) else None
    if version != 1:
        raise ValueError(f"unsupported version {version!r}")
    return EntryTable.build(_decode_v1(r) for r in doc["entries"])


def _decode_v1(row: list) -> FileInfo:
    path, kind, mode, uid, gid, size, linkname, mtime, xattrs, major, minor = row
    return FileInfo(path, _KINDS[kind], int(mode), int(uid), int(gid), int(size),
                    str(linkname), int(mtime),
                    {k: base64.b64decode(v) for k, v in xattrs.items()} if xattrs else {},
                    int(major), int(minor))


def encode_v1(info: FileInfo) -> list[object]:
    """A format 1 row (for tests that write an index of the old format)."""
    xattrs = ({k: base64.b64encode(v).decode() for k, v in info.xattrs.items()}
              if info.xattrs else None)
    return [info.path, info.kind.value, info.mode, info.uid, info.gid, info.size,
            info.linkname, info.mtime, xattrs, info.devmajor, info.devminor]
