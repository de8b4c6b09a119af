"""What a layer tar says about one entry: shared by the store (which records it) and the
analyzers (which read it), kept apart from both so that ``imgscan mount`` imports neither."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field


class FileKind(str, enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    WHITEOUT = "whiteout"  # .wh.NAME: deletes NAME of lower layers
    OPAQUE = "opaque"  # .wh..wh..opq: hides the lower layers' children of its directory


#: shared by every entry without xattrs (most of them); never mutated
_NO_XATTRS: Mapping[str, bytes] = {}


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One entry's metadata as the layer tar recorded it (not as the disk shows it).

    ``path`` is relative to the image root, without a leading slash (``usr/bin/su``). For a
    whiteout, ``path`` is the path it deletes; for an opaque marker, the directory. ``mode``
    holds the permission bits including setuid (0o4000), setgid (0o2000) and sticky (0o1000).
    ``linkname`` is a symlink's target, or a hard link's target path (relative to the root).
    """

    path: str
    kind: FileKind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    linkname: str = ""
    mtime: int = 0
    xattrs: Mapping[str, bytes] = field(default_factory=lambda: _NO_XATTRS)
    devmajor: int = 0
    devminor: int = 0

    @property
    def is_regular(self) -> bool:
        return self.kind in (FileKind.FILE, FileKind.HARDLINK)

    @property
    def abspath(self) -> str:
        return "/" + self.path


def read_xattrs(path: str) -> dict[str, bytes]:
    """The xattrs of a file, without following symlinks; {} where unsupported."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
    return out
