"""Walk a containers/storage layer's ``diff/`` into the ``FileInfo`` entries a layer tar gives.

The result is what the store's tar index holds for the same layer (sorted by path, whiteouts
and opaque markers as ``WHITEOUT``/``OPAQUE`` entries, hard links as ``HARDLINK`` to the first
path of the inode), so analyzers see the same layer whichever way it arrived:

* whiteouts: 0/0 character devices (the overlay form), or ``.wh.NAME`` files (the form
  fuse-overlayfs and vfs keep); opaque directories: ``trusted.overlay.opaque`` or
  ``user.overlay.opaque`` = ``y`` (rootless), or a ``.wh..wh..opq`` file;
* owners and modes as the container sees them: from ``user.containers.override_stat``
  (``uid:gid:mode[:type]``, what c/storage writes when it cannot chown) or by mapping the
  on-disk owner back through the store owner's id mappings (rootless: container 0 is the
  user, container N>0 is the N-th subordinate id);
* xattrs other than the overlay/containers bookkeeping ones are kept (file capabilities live
  in ``security.capability``).
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from imgscan.fileinfo import FileInfo, FileKind, read_xattrs
from imgscan.whiteouts import OPAQUE_MARKER, WHITEOUT_PREFIX

OVERRIDE_STAT = "user.containers.override_stat"
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_BOOKKEEPING = ("trusted.overlay.", "user.overlay.", "user.containers.")
OVERFLOW_ID = 65534


@dataclass(frozen=True)
class IdMapping:
    """One line of a user namespace map: ``size`` ids from ``container`` map to ``host``."""

    container: int
    host: int
    size: int


def to_container(host_id: int, maps: Sequence[IdMapping]) -> int:
    """The id the container sees for a file owned by ``host_id`` (overflow id if unmapped)."""
    for m in maps:
        if m.host <= host_id < m.host + m.size:
            return m.container + host_id - m.host
    return OVERFLOW_ID


def _subids(path: str, user: str, uid: int) -> list[tuple[int, int]]:
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (user, str(uid)):
                    out.append((int(parts[1]), int(parts[2])))
    except (OSError, ValueError):
        return []
    return out


def rootless_mappings(uid: int, gid: int) -> tuple[list[IdMapping], list[IdMapping]]:
    """Podman's default rootless maps for ``uid``: 0 -> the user, 1.. -> /etc/subuid ranges
    (and the same for groups with /etc/subgid)."""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)

    def build(own: int, ranges: list[tuple[int, int]]) -> list[IdMapping]:
        maps = [IdMapping(0, own, 1)]
        nxt = 1
        for start, size in ranges:
            maps.append(IdMapping(nxt, start, size))
            nxt += size
        return maps

    return (build(uid, _subids("/etc/subuid", user, uid)),
            build(gid, _subids("/etc/subgid", user, uid)))


def store_mappings(graph_root: str) -> tuple[list[IdMapping], list[IdMapping]] | None:
    """Id maps for a store owned by a non-root user (a rootless store); None for root's."""
    st = os.stat(graph_root)
    if st.st_uid == 0:
        return None
    return rootless_mappings(st.st_uid, st.st_gid)


def _parse_override(raw: bytes) -> tuple[int, int, int] | None:
    parts = raw.decode("ascii", "replace").split(":")
    try:
        return int(parts[0]), int(parts[1]), int(parts[2], 8) & 0o7777
    except (IndexError, ValueError):
        return None


def walk_layer(diff: str, uid_map: Sequence[IdMapping] | None = None,
               gid_map: Sequence[IdMapping] | None = None) -> list[FileInfo]:
    """Every entry of the layer directory ``diff`` as ``FileInfo``, sorted by path."""
    inodes: dict[str, tuple[int, int]] = {}
    out = list(_walk(diff, uid_map, gid_map, inodes))
    out.sort(key=lambda i: i.path)
    # the first path of an inode (in path order, the order a tar of the layer would have)
    # is the file, later ones are hard links to it
    first: dict[tuple[int, int], str] = {}
    links: dict[str, tuple[int, int]] = {}
    for i in out:
        if i.kind == FileKind.FILE and i.path in inodes:
            key = inodes[i.path]
            if key in first:
                links[i.path] = key
            else:
                first[key] = i.path
    if links:
        out = [replace(i, kind=FileKind.HARDLINK, linkname=first[links[i.path]])
               if i.path in links else i for i in out]
    return out


def _walk(diff: str, uid_map: Sequence[IdMapping] | None, gid_map: Sequence[IdMapping] | None,
          inodes: dict[str, tuple[int, int]]) -> Iterator[FileInfo]:
    """Entries in no particular order; ``inodes`` collects multiply linked files."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        full_dir = os.path.join(diff, rel_dir) if rel_dir else diff
        with os.scandir(full_dir) as it:
            children = list(it)
        for de in children:
            rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
            st = de.stat(follow_symlinks=False)
            if de.name == OPAQUE_MARKER:
                yield FileInfo(rel_dir, FileKind.OPAQUE, mode=0)
                continue
            if de.name.startswith(WHITEOUT_PREFIX):
                if not de.name.startswith(WHITEOUT_PREFIX * 2):  # AUFS metadata is skipped
                    deleted = rel[: -len(de.name)] + de.name[len(WHITEOUT_PREFIX):]
                    yield FileInfo(deleted, FileKind.WHITEOUT, mode=0,
                                   uid=_map(st.st_uid, uid_map), gid=_map(st.st_gid, gid_map))
                continue
            info = _info(de.path, rel, st, uid_map, gid_map, inodes)
            if info is None:
                continue
            yield info
            if info.kind == FileKind.DIR:
                if any(info.xattrs.get(x) == b"y" for x in OPAQUE_XATTRS) or \
                        _opaque(de.path):
                    yield FileInfo(rel, FileKind.OPAQUE, mode=0)
                stack.append(rel)


def _opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _map(host: int, maps: Sequence[IdMapping] | None) -> int:
    return host if maps is None else to_container(host, maps)


def _info(path: str, rel: str, st: os.stat_result, uid_map: Sequence[IdMapping] | None,
          gid_map: Sequence[IdMapping] | None,
          inodes: dict[str, tuple[int, int]]) -> FileInfo | None:
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFCHR and st.st_rdev == 0:
        return FileInfo(rel, FileKind.WHITEOUT, mode=0, uid=_map(st.st_uid, uid_map),
                        gid=_map(st.st_gid, gid_map))
    raw = read_xattrs(path) if fmt != stat.S_IFLNK else {}
    override = _parse_override(raw[OVERRIDE_STAT]) if OVERRIDE_STAT in raw else None
    xattrs = {k: v for k, v in raw.items() if not k.startswith(_BOOKKEEPING)}
    if override is not None:
        uid, gid, mode = override
    else:
        uid, gid, mode = _map(st.st_uid, uid_map), _map(st.st_gid, gid_map), \
            stat.S_IMODE(st.st_mode)
    common = {"mode": mode, "uid": uid, "gid": gid, "mtime": int(st.st_mtime)}
    if xattrs:
        common["xattrs"] = xattrs  # type: ignore[assignment]
    if fmt == stat.S_IFREG:
        if st.st_nlink > 1:
            inodes[rel] = (st.st_dev, st.st_ino)
        return FileInfo(rel, FileKind.FILE, size=st.st_size, **common)  # type: ignore[arg-type]
    if fmt == stat.S_IFDIR:
        return FileInfo(rel, FileKind.DIR, **common)  # type: ignore[arg-type]
    if fmt == stat.S_IFLNK:
        return FileInfo(rel, FileKind.SYMLINK, linkname=os.readlink(path),
                        **common)  # type: ignore[arg-type]
    if fmt in (stat.S_IFCHR, stat.S_IFBLK):
        kind = FileKind.CHAR if fmt == stat.S_IFCHR else FileKind.BLOCK
        return FileInfo(rel, kind, devmajor=os.major(st.st_rdev),
                        devminor=os.minor(st.st_rdev), **common)  # type: ignore[arg-type]
    if fmt == stat.S_IFIFO:
        return FileInfo(rel, FileKind.FIFO, **common)  # type: ignore[arg-type]
    return None  # sockets cannot be in a layer tar
