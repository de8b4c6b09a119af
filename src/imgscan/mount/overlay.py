"""Read-only overlay mounts through the ``mount(2)`` syscall, and fuse-overlayfs.

``mount(2)`` via ctypes costs tens of microseconds where spawning ``mount(8)`` costs
milliseconds. Lower directories are given top layer first. The legacy syscall takes the
option string in one page, so long stacks are passed as short relative links (``l/<id>``)
from a ``chdir`` into the store root, as containers/storage does.
"""

from __future__ import annotations

import ctypes
import errno
import os
from _thread import allocate_lock  # what threading.Lock is, without importing threading

from imgscan.errors import MountError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2
PAGE_LIMIT = 4095  # the option string must fit in one page including its NUL

_libc: ctypes.CDLL | None = None
_cwd_lock = allocate_lock()


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        try:  # the common name first: find_library may spawn ldconfig, costing milliseconds
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            from ctypes.util import find_library  # spawns ldconfig: only when needed

            _libc = ctypes.CDLL(find_library("c") or "libc.so", use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return _libc


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay_options(lowers: Sequence[str]) -> str:
    return "lowerdir=" + ":".join(_escape(p) for p in lowers)


def kernel_mount(store_root: str, lowers_rel: Sequence[str], target: str) -> None:
    """Mount a read-only overlay of ``lowers_rel`` (relative to ``store_root``, top first).

    Absolute paths are used when they fit in a page; otherwise the process changes into the
    store root for the duration of the syscall and passes the short relative paths.
    """
    flags = MS_RDONLY | MS_NODEV | MS_NOSUID
    absolute = overlay_options([os.path.join(store_root, p) for p in lowers_rel])
    if len(absolute.encode()) <= PAGE_LIMIT:
        _mount(absolute, target, flags)
        return
    relative = overlay_options(lowers_rel)
    if len(relative.encode()) > PAGE_LIMIT:
        raise MountError(f"{len(lowers_rel)} layers do not fit in one mount option page")
    with _cwd_lock:
        old = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.chdir(store_root)
            _mount(relative, os.path.abspath(target) if not os.path.isabs(target) else target,
                   flags)
        finally:
            os.fchdir(old)
            os.close(old)


def _mount(options: str, target: str, flags: int) -> None:
    rc = libc().mount(b"overlay", target.encode(), b"overlay", flags, options.encode())
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def fuse_mount(store_root: str, lowers_rel: Sequence[str], target: str) -> None:
    import shutil
    import subprocess
    import tempfile

    exe = shutil.which("fuse-overlayfs")
    if exe is None:
        raise MountError("fuse-overlayfs is not installed")
    opts = overlay_options(lowers_rel)
    # fuse-overlayfs daemonizes: its daemon inherits our stdout/stderr, so they must not be
    # pipes (reading them would wait for the daemon to exit); errors go to a temp file
    with tempfile.TemporaryFile(mode="w+") as err:
        try:
            proc = subprocess.run([exe, "-o", f"{opts},ro", target], cwd=store_root,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=err, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            raise MountError("fuse-overlayfs did not answer within 30 s") from None
        if proc.returncode != 0:
            err.seek(0)
            raise MountError(f"fuse-overlayfs failed: {err.read().strip() or proc.returncode}")


def unmount(target: str, detach: bool = False) -> None:
    rc = libc().umount2(target.encode(), MNT_DETACH if detach else 0)
    if rc != 0:
        err = ctypes.get_errno()
        import shutil
        import subprocess

        if err == errno.EPERM and shutil.which("fusermount3"):
            proc = subprocess.run(["fusermount3", "-u", *(["-z"] if detach else []), target],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, check=False, timeout=30)
            if proc.returncode == 0:
                return
        raise OSError(err, os.strerror(err), target)


def mounted_paths() -> dict[str, str]:
    """Mount points of this mount namespace mapped to their filesystem type."""
    out = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5:
                    continue
                mp = _unescape(fields[4])
                out[mp] = right.split()[0] if right else ""
    except OSError:
        pass
    return out


def _unescape(s: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) + 0 and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)
