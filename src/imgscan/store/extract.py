"""Safe extraction of one layer tar into a directory: the store's security boundary.

Layer tars come from strangers. ``tarfile.extractall`` is never used (its filters strip
setuid bits; without filters it is unsafe). Instead every entry is created relative to a
directory file descriptor with ``O_NOFOLLOW``, so:

* ``..`` components and absolute names are refused;
* no symlink already in the tree is followed while creating an entry (``etc -> /`` followed
  by ``etc/shadow`` is refused, not written to the host);
* hard links must name a regular file extracted earlier in the same layer;
* device nodes are created only as root; FIFOs are created, never opened;
* ``trusted.overlay.*``, ``user.overlay.*`` and ``user.containers.*`` xattrs are dropped so an
  image cannot smuggle overlay markers in;
* total bytes and entry count are capped (decompression bombs).

Whiteouts are written in the form the mount driver reads: as root, 0/0 character devices and
``trusted.overlay.opaque=y`` (kernel overlay and fuse-overlayfs both understand them);
otherwise the ``.wh.`` files are kept as they are (fuse-overlayfs and the tree view read them).
The original metadata of every entry goes into the returned index either way.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import tarfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from imgscan.entrytable import EntryTable
from imgscan.errors import ImageError, UnsafeLayerError
from imgscan.fileinfo import FileInfo, FileKind
from imgscan.rowindex import RowIndex
from imgscan.sparse import copy_sparse
from imgscan.store.limits import ExtractLimits
from imgscan.whiteouts import (
    OPAQUE_MARKER,
    deleted_path,
    is_aufs_metadata,
    is_whiteout_name,
    mark_overlay_opaque,
    normalize_name,
    write_overlay_whiteout,
)

_DROPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "user.containers.")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: read once at import: os.umask can only be read by setting it, which races with threads
_UMASK = _read_umask()


@dataclass
class ExtractResult:
    entries: EntryTable
    whiteout_format: str  # "chardev" (overlay form) or "wh-files" (OCI form kept on disk)


class _Extractor:
    def __init__(self, dest: str, limits: ExtractLimits, as_root: bool) -> None:
        self.dest = dest
        self.limits = limits
        self.as_root = as_root
        self.root_fd = os.open(dest, _DIR_FLAGS)
        #: columns, not a FileInfo per entry: a layer may hold 300,000 of them
        self.index = RowIndex()
        self.dir_attrs: dict[str, FileInfo] = {}
        self.whiteout_nodes: set[str] = set()  # 0/0 devices written for whiteouts
        self.umask = _UMASK
        self._fd_cache: OrderedDict[str, int] = OrderedDict()

    # -- directory descriptors -------------------------------------------------------------
    def close(self) -> None:
        for fd in self._fd_cache.values():
            os.close(fd)
        self._fd_cache.clear()
        os.close(self.root_fd)

    def _drop_cache(self) -> None:
        for fd in self._fd_cache.values():
            os.close(fd)
        self._fd_cache.clear()

    def dir_fd(self, relpath: str, create: bool) -> int:
        """A descriptor of directory ``relpath`` inside dest, made (0700 for now) if missing;
        refuses to pass through a symlink or a non-directory. Iterative from the deepest
        cached ancestor: a path thousands of directories deep must not exhaust the stack."""
        if not relpath:
            return self.root_fd
        cached = self._fd_cache.get(relpath)
        if cached is not None:
            self._fd_cache.move_to_end(relpath)
            return cached
        parts = relpath.split("/")
        start, pfd = 0, self.root_fd
        for i in range(len(parts) - 1, 0, -1):
            anc = self._fd_cache.get("/".join(parts[:i]))
            if anc is not None:
                start, pfd = i, anc
                break
        for i in range(start, len(parts)):
            sub = "/".join(parts[: i + 1])
            pfd = self._open_child(pfd, parts[i], sub, create)
        return pfd

    def _open_child(self, pfd: int, name: str, relpath: str, create: bool) -> int:
        """Open (or make) directory ``name`` under ``pfd`` and cache it as ``relpath``."""
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o700, dir_fd=pfd)
            self._implicit_dir(relpath)
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeLayerError(
                    f"entry under {relpath!r} passes through a symlink or a non-directory"
                ) from None
            raise
        self._fd_cache[relpath] = fd
        if len(self._fd_cache) > 64:
            _, old = self._fd_cache.popitem(last=False)
            os.close(old)
        return fd

    def _implicit_dir(self, relpath: str) -> None:
        info = FileInfo(relpath, FileKind.DIR, mode=0o755)
        self.dir_attrs.setdefault(relpath, info)

    # -- entries ---------------------------------------------------------------------------
    def _remove_existing(self, pfd: int, name: str, relpath: str, keep_dir: bool) -> bool:
        """Make room for a new entry (last entry wins). Returns True if a directory stays.

        The layer directory starts empty, so only a path this layer already wrote can be
        there: anything else needs no system call."""
        if relpath not in self.index and relpath not in self.dir_attrs and \
                relpath not in self.whiteout_nodes:
            return False
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._drop_cache()
            _rmtree_at(pfd, name)
            prefix = relpath + "/"
            for k in [k for k in self.index if k.startswith(prefix)]:
                del self.index[k]
            for k in [k for k in self.dir_attrs if k == relpath or k.startswith(prefix)]:
                del self.dir_attrs[k]
            return False
        os.unlink(name, dir_fd=pfd)
        return False

    def add(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        relpath = normalize_name(member.name)
        if len(member.name) > self.limits.max_path:
            raise UnsafeLayerError(f"entry name longer than {self.limits.max_path} bytes")
        if not relpath:
            if member.isdir():
                return  # "./" itself: the layer root
            raise UnsafeLayerError(f"entry {member.name!r} has an empty name")
        parent, _, name = relpath.rpartition("/")
        xattrs = _xattrs(member)
        if is_whiteout_name(name):
            self._whiteout(member, relpath, parent, name)
            return
        pfd = self.dir_fd(parent, create=True)
        mode = member.mode & 0o7777
        mtime = int(member.mtime)
        if member.isreg():  # the hot path: one FileInfo, as few system calls as possible
            info = FileInfo(relpath, FileKind.FILE, mode, member.uid, member.gid, member.size,
                            "", mtime, xattrs) if xattrs else \
                FileInfo(relpath, FileKind.FILE, mode, member.uid, member.gid, member.size, "",
                         mtime)
            self._remove_existing(pfd, name, relpath, keep_dir=False)
            # created with its final permissions when the umask keeps them; setuid/setgid
            # bits are set after the chown, which would clear them
            plain = not mode & 0o7000 and not mode & self.umask
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode if plain else 0o600, dir_fd=pfd)
            try:
                if member.size:
                    src = tar.extractfile(member)
                    if src is not None:
                        copy_sparse(src, fd)
                self._set_attrs_fd(fd, info, chmod=not plain)
            finally:
                os.close(fd)
            self.index[relpath] = info
            return
        info = FileInfo(
            path=relpath,
            kind=FileKind.FILE,
            mode=mode,
            uid=member.uid,
            gid=member.gid,
            size=0,
            linkname="",
            mtime=mtime,
            xattrs=xattrs,
        )
        if member.isdir():
            self._remove_existing(pfd, name, relpath, keep_dir=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=pfd)
            info = _replace(info, kind=FileKind.DIR)
            self.dir_attrs[relpath] = info
        elif member.issym():
            self._remove_existing(pfd, name, relpath, keep_dir=False)
            info = _replace(info, kind=FileKind.SYMLINK, linkname=member.linkname)
            os.symlink(member.linkname, name, dir_fd=pfd)
            self._set_owner(name, pfd, info)
        elif member.islnk():
            target = normalize_name(member.linkname)
            self._hardlink(pfd, name, relpath, target)
            base = self.index.get(target)
            info = _replace(info, kind=FileKind.HARDLINK, linkname=target,
                            size=base.size if base else 0)
        elif member.ischr() or member.isblk():
            kind = FileKind.CHAR if member.ischr() else FileKind.BLOCK
            info = _replace(info, kind=kind, devmajor=member.devmajor, devminor=member.devminor)
            if self.as_root:
                self._remove_existing(pfd, name, relpath, keep_dir=False)
                devtype = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(name, devtype | 0o600, os.makedev(member.devmajor, member.devminor),
                         dir_fd=pfd)
                self._set_attrs_path(name, pfd, info)
        elif member.isfifo():
            self._remove_existing(pfd, name, relpath, keep_dir=False)
            info = _replace(info, kind=FileKind.FIFO)
            os.mkfifo(name, 0o600, dir_fd=pfd)
            self._set_attrs_path(name, pfd, info)
        else:
            raise UnsafeLayerError(f"entry {member.name!r} has an unsupported type")
        self.index[relpath] = info

    def _hardlink(self, pfd: int, name: str, relpath: str, target: str) -> None:
        if not target or target == relpath:
            raise UnsafeLayerError(f"hard link {relpath!r} has an invalid target")
        tparent, _, tname = target.rpartition("/")
        try:
            tfd = self.dir_fd(tparent, create=False)
            st = os.stat(tname, dir_fd=tfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise UnsafeLayerError(
                f"hard link {relpath!r} points to {target!r}, which is not in this layer"
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeLayerError(
                f"hard link {relpath!r} points to {target!r}, which is not a regular file"
            )
        self._remove_existing(pfd, name, relpath, keep_dir=False)
        os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, member: tarfile.TarInfo, relpath: str, parent: str, name: str) -> None:
        if name == OPAQUE_MARKER:
            pfd = self.dir_fd(parent, create=True)
            self.index[relpath] = FileInfo(parent, FileKind.OPAQUE, mode=0)
            if self.as_root:
                fd = os.open(".", _DIR_FLAGS, dir_fd=pfd)
                try:
                    mark_overlay_opaque(fd)
                finally:
                    os.close(fd)
            else:
                self._write_marker(pfd, name, relpath)
            return
        if is_aufs_metadata(name):
            return  # AUFS metadata such as .wh..wh.plnk: not content
        deleted = deleted_path(parent, name, member.name)
        target = deleted.rpartition("/")[2]
        pfd = self.dir_fd(parent, create=True)
        if self.as_root:
            self._remove_existing(pfd, target, deleted, keep_dir=False)
            write_overlay_whiteout(target, pfd, member.uid, member.gid)
            self.whiteout_nodes.add(deleted)
        else:
            self._write_marker(pfd, name, relpath)
        self.index.pop(deleted, None)
        self.index[relpath] = FileInfo(deleted, FileKind.WHITEOUT, mode=0, uid=member.uid,
                                       gid=member.gid)

    def _write_marker(self, pfd: int, name: str, relpath: str) -> None:
        self._remove_existing(pfd, name, relpath, keep_dir=False)
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                         dir_fd=pfd))

    # -- attributes ------------------------------------------------------------------------
    def _set_owner(self, name: str, pfd: int, info: FileInfo) -> None:
        if self.as_root:
            os.chown(name, info.uid, info.gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(name, (info.mtime, info.mtime), dir_fd=pfd, follow_symlinks=False)

    def _set_attrs_fd(self, fd: int, info: FileInfo, chmod: bool = True) -> None:
        if self.as_root:
            os.fchown(fd, info.uid, info.gid)
        if chmod:
            os.fchmod(fd, info.mode)
        if info.xattrs:
            _apply_xattrs(lambda k, v: os.setxattr(fd, k, v), info)
        os.utime(fd, (info.mtime, info.mtime))

    def _set_attrs_path(self, name: str, pfd: int, info: FileInfo) -> None:
        if self.as_root:
            os.chown(name, info.uid, info.gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(name, info.mode, dir_fd=pfd)
        os.utime(name, (info.mtime, info.mtime), dir_fd=pfd, follow_symlinks=False)

    def finish_dirs(self) -> None:
        """Directory modes, owners and times last, deepest first (a 0555 directory must not
        stop its own children from being written)."""
        self._drop_cache()
        for relpath in sorted(self.dir_attrs, key=lambda p: p.count("/"), reverse=True):
            info = self.dir_attrs[relpath]
            fd = os.open(relpath, _DIR_FLAGS, dir_fd=self.root_fd)
            try:
                if self.as_root:
                    os.fchown(fd, info.uid, info.gid)
                os.fchmod(fd, info.mode)
                _apply_xattrs(functools.partial(os.setxattr, fd), info)
                os.utime(fd, (info.mtime, info.mtime))
            finally:
                os.close(fd)
            self.index.setdefault(relpath, info)


def _replace(info: FileInfo, **kw: object) -> FileInfo:
    from dataclasses import replace

    return replace(info, **kw)  # type: ignore[arg-type]


def _apply_xattrs(setter: Callable[[str, bytes], None], info: FileInfo) -> None:
    for k, v in info.xattrs.items():
        if k.startswith(_DROPPED_XATTR_PREFIXES):
            continue
        try:
            setter(k, v)
        except OSError:
            # e.g. security.* without privilege, or a filesystem without xattrs: the index
            # still has the value, which is what the analyzers read.
            continue


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if not member.pax_headers:
        return out
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):]
            raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            out[name] = raw
    return out


def _rmtree_at(pfd: int, name: str) -> None:
    fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
    try:
        for child in os.listdir(fd):
            st = os.stat(child, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _rmtree_at(fd, child)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


def extract_layer(stream: BinaryIO, dest: str, limits: ExtractLimits | None = None,
                  as_root: bool | None = None) -> ExtractResult:
    """Extract the uncompressed tar ``stream`` into the existing empty directory ``dest``.

    Raises UnsafeLayerError or ImageError; the caller discards ``dest`` on any error.
    """
    limits = limits or ExtractLimits()
    as_root = os.geteuid() == 0 if as_root is None else as_root
    ex = _Extractor(dest, limits, as_root)
    count = 0
    try:
        try:
            tar = tarfile.open(  # noqa: SIM115 - closed by the with below
                fileobj=stream, mode="r|", errorlevel=2
            )
        except tarfile.ReadError as e:
            if _empty_stream_error(e):
                return ExtractResult(EntryTable(), "chardev" if as_root else "wh-files")
            raise ImageError(f"layer is not a valid tar archive: {e}") from None
        with tar:
            while (member := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # the index is enough
                count += 1
                if count > limits.max_entries:
                    raise UnsafeLayerError(
                        f"layer has more than {limits.max_entries} entries (the limit)"
                    )
                if member.size > limits.max_bytes:
                    raise UnsafeLayerError(f"entry {member.name!r} is larger than the limit")
                ex.add(member, tar)
        ex.finish_dirs()
    except (tarfile.TarError, EOFError) as e:
        raise ImageError(f"layer tar is truncated or corrupt: {e}") from None
    except OSError as e:
        raise ImageError(f"cannot write layer entry: {e}") from None
    finally:
        ex.close()
    return ExtractResult(ex.index.table(), "chardev" if as_root else "wh-files")


def _empty_stream_error(e: tarfile.ReadError) -> bool:
    return "empty file" in str(e)
