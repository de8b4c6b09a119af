"""Image views for analyzers: the merged tree, with symlinks resolved inside the image.

``DirView`` serves ``imgscan scan dir:PATH`` and mounted images (a plain directory tree);
``LayeredView`` (in ``imgscan.analyzers.layered``) builds the same view from the store's
per-layer indexes without any mount, and also knows what upper layers hid.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO

from imgscan.analyzers.interface import FileInfo, FileKind, ImageView, ViewEntry
from imgscan.analyzers.safeopen import lstat_beneath, open_beneath
from imgscan.fileinfo import read_xattrs
from imgscan.model import LayerRef

MAX_SYMLINK_HOPS = 40

DIR_LAYER = LayerRef(index=0, diff_id="", created_by="")


def kind_of(mode: int) -> FileKind:
    if stat.S_ISDIR(mode):
        return FileKind.DIR
    if stat.S_ISLNK(mode):
        return FileKind.SYMLINK
    if stat.S_ISCHR(mode):
        return FileKind.CHAR
    if stat.S_ISBLK(mode):
        return FileKind.BLOCK
    if stat.S_ISFIFO(mode):
        return FileKind.FIFO
    if stat.S_ISREG(mode):
        return FileKind.FILE
    return FileKind.FIFO  # sockets and the unknown: never opened, like FIFOs


def info_from_stat(relpath: str, st: os.stat_result, linkname: str = "",
                   xattrs: Mapping[str, bytes] | None = None) -> FileInfo:
    kind = kind_of(st.st_mode)
    dev = st.st_rdev if kind in (FileKind.CHAR, FileKind.BLOCK) else 0
    return FileInfo(
        path=relpath,
        kind=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size if kind == FileKind.FILE else 0,
        linkname=linkname,
        mtime=int(st.st_mtime),
        **({"xattrs": dict(xattrs)} if xattrs else {}),
        devmajor=os.major(dev) if dev else 0,
        devminor=os.minor(dev) if dev else 0,
    )


def resolve_in_root(path: str, lookup: Callable[[str], ViewEntry | None]) -> ViewEntry | None:
    """Follow symlinks the way the kernel would inside a chroot at the image root.

    ``..`` at the root stays at the root, absolute targets restart at the image root, and
    more than MAX_SYMLINK_HOPS links (a loop) gives None. Nothing on the host is consulted.
    """
    pending = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    entry: ViewEntry | None = None
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            entry = None
            continue
        candidate = "/".join([*done, part])
        entry = lookup(candidate)
        if entry is None:
            return None
        if entry.info.kind == FileKind.SYMLINK:
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                return None
            target = entry.info.linkname
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            entry = None
            continue
        if pending and entry.info.kind != FileKind.DIR:
            return None
        done.append(part)
    if entry is None and not done:
        return None
    if entry is None:
        entry = lookup("/".join(done))
    return entry


class DirView(ImageView):
    """A merged view over a plain directory (an unpacked rootfs or a mounted image).

    The directory's own modes and owners are reported; for a store image prefer
    ``LayeredView``, whose metadata comes from the original tar headers.
    """

    def __init__(self, root: str, config: Mapping[str, Any] | None = None,
                 layer: LayerRef = DIR_LAYER) -> None:
        self.root = os.path.abspath(root)
        self.config = dict(config or {})
        self.layers = [layer]
        self._layer = layer
        #: (st_dev, st_ino) → the names of a regular file with more than one link, in walk
        #: order; filled by ``entries()`` (a directory has no tar to say which are links)
        self.inodes: dict[tuple[int, int], list[str]] = {}

    def hard_links(self) -> list[FileInfo]:
        """The names ``entries()`` found sharing an inode, as a layer tar would record
        them: every name after the first as a hard link to the first (its canonical name).
        A file whose other names are outside the tree is one name here, and not a link."""
        return [FileInfo(p, FileKind.HARDLINK, linkname=names[0])
                for names in self.inodes.values() if len(names) > 1 for p in names[1:]]

    def _entry(self, relpath: str, st: os.stat_result) -> ViewEntry:
        full = os.path.join(self.root, relpath)
        linkname = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                linkname = os.readlink(full)
            except OSError:
                linkname = ""
        xattrs = read_xattrs(full) if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) \
            else {}
        return ViewEntry(info_from_stat(relpath, st, linkname, xattrs), self._layer)

    def entries(self) -> Iterator[ViewEntry]:
        """Everything below the root on the root's own filesystem (like ``find -xdev``: a
        rootfs directory's /proc or a bind mount inside it is not part of the image)."""
        root_dev = os.lstat(self.root).st_dev
        stack = [("", self.root)]
        while stack:
            rel_dir, full_dir = stack.pop()
            try:
                # names only: a DirEntry costs ~800 bytes, a name ~60, and a directory may
                # hold a million entries
                names = sorted(os.listdir(full_dir))
            except OSError:
                continue
            subdirs = []
            for name in names:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                full = f"{full_dir}/{name}"
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
                    self.inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
                yield self._entry(rel, st)
                if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                    subdirs.append((rel, full))
            stack.extend(reversed(subdirs))

    def hidden_entries(self) -> Iterator[ViewEntry]:
        return iter(())

    def lookup(self, path: str) -> ViewEntry | None:
        rel = posixpath.normpath(path.strip("/"))
        if rel.startswith(".."):
            return None
        if rel == ".":
            return ViewEntry(FileInfo("", FileKind.DIR, mode=0o755), self._layer)
        st = lstat_beneath(self.root, rel)
        return None if st is None else self._entry(rel, st)

    def resolve(self, path: str) -> ViewEntry | None:
        return resolve_in_root(path, self.lookup)

    def open(self, entry: ViewEntry) -> BinaryIO:
        return open_beneath(self.root, entry.info.path)


class ConfigOnlyView(ImageView):
    """An image known only by its config (pre-pull vetting): no files at all."""

    def __init__(self, config: Mapping[str, Any], layers: list[LayerRef]) -> None:
        self.config = dict(config)
        self.layers = layers

    def entries(self) -> Iterator[ViewEntry]:
        return iter(())

    def hidden_entries(self) -> Iterator[ViewEntry]:
        return iter(())

    def lookup(self, path: str) -> ViewEntry | None:
        return None

    def resolve(self, path: str) -> ViewEntry | None:
        return None

    def open(self, entry: ViewEntry) -> BinaryIO:
        raise FileNotFoundError(entry.info.path)
