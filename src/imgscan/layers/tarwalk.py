"""Walk an uncompressed layer tar as ``LayerMember``s: names made relative and checked,
whiteouts turned into WHITEOUT/OPAQUE entries, xattrs kept, limits enforced.

The same rules as the store's extraction (``..``, absolute names and NUL bytes are refused;
AUFS ``.wh..wh.`` metadata is not content), without writing anything.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from imgscan.errors import ImageError, UnsafeLayerError
from imgscan.fileinfo import FileInfo, FileKind
from imgscan.layers.interface import LayerLimits, LayerMember
from imgscan.whiteouts import OPAQUE_MARKER, WHITEOUT_PREFIX, normalize_name


class _TarMember(LayerMember):
    __slots__ = ("_member", "_tar", "info")

    def __init__(self, info: FileInfo, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.info = info
        self._tar = tar
        self._member = member

    def open(self) -> BinaryIO:
        f = self._tar.extractfile(self._member) if self._member.isreg() else None
        if f is None:
            raise OSError(f"{self.info.path}: not a regular file in the layer tar")
        return f  # type: ignore[return-value]


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in (member.pax_headers or {}).items():
        if key.startswith("SCHILY.xattr."):
            raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            out[key[len("SCHILY.xattr."):]] = raw
    return out


def member_info(member: tarfile.TarInfo, limits: LayerLimits) -> FileInfo | None:
    """The ``FileInfo`` of a tar member (None for the layer root and AUFS metadata)."""
    if len(member.name) > limits.max_path:
        raise UnsafeLayerError(f"entry name longer than {limits.max_path} bytes")
    relpath = normalize_name(member.name)
    if not relpath:
        if member.isdir():
            return None
        raise UnsafeLayerError(f"entry {member.name!r} has an empty name")
    parent, _, name = relpath.rpartition("/")
    if name.startswith(WHITEOUT_PREFIX):
        if name == OPAQUE_MARKER:
            return FileInfo(parent, FileKind.OPAQUE, mode=0)
        if name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return None
        target = name[len(WHITEOUT_PREFIX):]
        if target in ("", ".", ".."):
            raise UnsafeLayerError(f"whiteout {member.name!r} names {target!r}")
        return FileInfo(f"{parent}/{target}" if parent else target, FileKind.WHITEOUT,
                        mode=0, uid=member.uid, gid=member.gid)
    mode = member.mode & 0o7777
    x = _xattrs(member) if member.pax_headers else None
    common: dict[str, Any] = {"xattrs": x} if x else {}
    if member.isreg():
        return FileInfo(relpath, FileKind.FILE, mode, member.uid, member.gid, member.size, "",
                        int(member.mtime), **common)
    if member.isdir():
        kind, link = FileKind.DIR, ""
    elif member.issym():
        kind, link = FileKind.SYMLINK, member.linkname
    elif member.islnk():
        kind, link = FileKind.HARDLINK, normalize_name(member.linkname)
    elif member.ischr() or member.isblk():
        kind = FileKind.CHAR if member.ischr() else FileKind.BLOCK
        return FileInfo(relpath, kind, mode, member.uid, member.gid, 0, "", int(member.mtime),
                        devmajor=member.devmajor, devminor=member.devminor, **common)
    elif member.isfifo():
        kind, link = FileKind.FIFO, ""
    else:
        raise UnsafeLayerError(f"entry {member.name!r} has an unsupported type")
    return FileInfo(relpath, kind, mode, member.uid, member.gid, 0, link, int(member.mtime),
                    **common)


def walk_tar(stream: BinaryIO, limits: LayerLimits | None = None) -> Iterator[LayerMember]:
    """Members of the uncompressed tar ``stream`` in tar order. A hard link's ``size`` is
    that of its target when the target came earlier in this layer (as the store records)."""
    limits = limits or LayerLimits()
    try:
        tar = tarfile.open(fileobj=stream, mode="r|", errorlevel=2)  # noqa: SIM115
    except tarfile.ReadError as e:
        if "empty file" in str(e):
            return
        raise ImageError(f"layer is not a valid tar archive: {e}") from None
    sizes: dict[str, int] = {}
    count = 0
    try:
        with tar:
            for member in tar:
                count += 1
                if count > limits.max_entries:
                    raise UnsafeLayerError(
                        f"layer has more than {limits.max_entries} entries (the limit)")
                if member.size > limits.max_bytes:
                    raise UnsafeLayerError(f"entry {member.name!r} is larger than the limit")
                info = member_info(member, limits)
                if info is None:
                    continue
                if info.kind == FileKind.FILE and info.size:  # a link to an empty
                    sizes[info.path] = info.size  # file is empty: no key per empty file
                elif info.kind == FileKind.HARDLINK:
                    if not info.linkname or info.linkname == info.path:
                        raise UnsafeLayerError(
                            f"hard link {info.path!r} has an invalid target")
                    size = sizes.get(info.linkname, 0)
                    if size:
                        info = FileInfo(info.path, info.kind, info.mode, info.uid, info.gid,
                                        size, info.linkname, info.mtime, info.xattrs)
                yield _TarMember(info, tar, member)
                # drop what tarfile keeps of every member: memory stays flat
                tar.members = []  # type: ignore[attr-defined]
    except (tarfile.TarError, EOFError) as e:
        raise ImageError(f"layer tar is truncated or corrupt: {e}") from None
