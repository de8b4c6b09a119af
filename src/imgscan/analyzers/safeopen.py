"""Opening files beneath a root directory without ever following a symlink on the host.

Every component is opened with ``O_NOFOLLOW`` relative to its parent's descriptor, so a
symlink planted in an image (``etc -> /``) can never lead outside the tree, and FIFOs,
sockets and devices are refused before anything blocks on them.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotARegularFile(OSError):
    """The path exists but is a FIFO, socket, device, directory or symlink."""


def split_relpath(path: str) -> list[str]:
    """Components of a relative image path; '..' and empty parts are refused."""
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"path {path!r} climbs out of its root")
    return parts


def open_beneath(root: str, relpath: str) -> BinaryIO:
    """Open ``root/relpath`` for reading, refusing symlinks anywhere and non-regular files."""
    parts = split_relpath(relpath)
    if not parts:
        raise NotARegularFile(f"{relpath!r} is the root directory")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        ffd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)
    st = os.fstat(ffd)
    if not stat.S_ISREG(st.st_mode):
        os.close(ffd)
        raise NotARegularFile(f"{relpath!r} is not a regular file")
    os.set_blocking(ffd, True)
    return os.fdopen(ffd, "rb")


def lstat_beneath(root: str, relpath: str) -> os.stat_result | None:
    """lstat of ``root/relpath`` if every parent component is a real directory, else None."""
    parts = split_relpath(relpath)
    if not parts:
        return os.lstat(root)
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = nfd
        try:
            return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None
    finally:
        os.close(fd)
