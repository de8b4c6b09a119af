"""The naming rules of layer tars, in one place: which member names are safe, and how a layer
deletes what the layers below it hold (whiteouts).

Extraction (reading ``.wh.`` entries from a layer tar and writing them in the form a mount
driver reads), the merged view of a store image, and the scanner's package attribution all
apply the same rules (FORMATS.md §1.7); they import them from here so that they cannot drift
apart. Two spellings exist:

* the OCI form in a layer tar: ``DIR/.wh.NAME`` deletes ``DIR/NAME`` and everything below it;
  ``DIR/.wh..wh..opq`` hides every child that lower layers gave ``DIR``; other ``.wh..wh.``
  names are AUFS bookkeeping, not content;
* the overlayfs form on disk: a 0/0 character device in place of ``NAME``, and the
  ``trusted.overlay.opaque=y`` extended attribute on ``DIR``.

A per-layer index records both as ``FileInfo`` entries of kind ``WHITEOUT`` (``path`` = the
deleted path) and ``OPAQUE`` (``path`` = the directory). This module is on the ground floor:
it imports only the small value types.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable

from imgscan.errors import UnsafeLayerError
from imgscan.fileinfo import FileInfo, FileKind

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
#: the extended attribute by which overlayfs marks an opaque directory (written as root)
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"


def is_whiteout_name(name: str) -> bool:
    """Is this file name (one path component) a whiteout marker of any sort?"""
    return name.startswith(WHITEOUT_PREFIX)


def is_aufs_metadata(name: str) -> bool:
    """``.wh..wh.plnk`` and the like: AUFS bookkeeping that deletes nothing and is no content."""
    return name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX) and name != OPAQUE_MARKER


def deleted_path(parent: str, name: str, entry: str = "") -> str:
    """The path that the whiteout ``parent/name`` deletes. A marker that names nothing, ``.``
    or ``..`` would delete its own directory or climb out of it: ``UnsafeLayerError``
    (``entry`` is the tar member's name, for the message)."""
    target = name[len(WHITEOUT_PREFIX):]
    if not target:
        raise UnsafeLayerError(f"bare whiteout entry {entry or name!r} names nothing")
    if target in (".", ".."):
        raise UnsafeLayerError(f"whiteout {entry or name!r} names {target!r}")
    return f"{parent}/{target}" if parent else target


def write_overlay_whiteout(name: str, dir_fd: int, uid: int, gid: int) -> None:
    """Write the overlayfs form of a whiteout: a 0/0 character device (needs root)."""
    os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=dir_fd)
    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)


def mark_overlay_opaque(fd: int) -> None:
    """Write the overlayfs form of an opaque directory on an open directory (needs root)."""
    os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")


def is_overlay_whiteout(info: FileInfo) -> bool:
    """A 0/0 character device: overlayfs's whiteout, left in an unpacked tree, not a device."""
    return info.kind == FileKind.CHAR and info.devmajor == 0 and info.devminor == 0


def split_layer(index: Iterable[FileInfo]) -> tuple[list[str], list[str], list[FileInfo]]:
    """A layer's index as ``(opaque directories, deleted paths, content)``: the order in which
    a layer applies over the ones below (opaque markers, then whiteouts, then its own files),
    whatever the order of the tar."""
    opaque: list[str] = []
    deleted: list[str] = []
    content: list[FileInfo] = []
    for info in index:
        if info.kind == FileKind.OPAQUE:
            opaque.append(info.path)
        elif info.kind == FileKind.WHITEOUT:
            deleted.append(info.path)
        else:
            content.append(info)
    return opaque, deleted, content


def deletes(path: str, deleted: Collection[str], opaque: Collection[str]) -> bool:
    """Does a layer with these whiteouts delete ``path`` of the layers below: a whiteout of it
    or of a parent, or an opaque parent directory (``""`` is the layer root)?"""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if prefix in deleted:
            return True
        if i < len(parts) and prefix in opaque:
            return True
    return "" in opaque


def normalize_name(name: str) -> str:
    """A tar member name as a relative path; raise for anything that could climb out."""
    if "\x00" in name:
        raise UnsafeLayerError(f"entry name {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise UnsafeLayerError(f"entry {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeLayerError(f"entry {name!r} climbs out of the layer with '..'")
    return "/".join(parts)
