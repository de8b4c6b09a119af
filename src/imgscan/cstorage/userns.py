"""Read a rootless store as podman does: from inside a user namespace with its id maps.

In a rootless store, container uid N>0 is a subordinate id on disk (100000+N-1), so a
directory a container user keeps private (``/var/cache/apt/archives/partial``, ``0700
_apt``) cannot be opened by the store's owner from outside. ``podman unshare`` enters a
user namespace whose maps (set by the setuid ``newuidmap``/``newgidmap``) make the owner
root over all of them; ``in_store_namespace`` does the same for one function call, in a
forked child whose result comes back pickled. The parent stays where it was.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import shutil
import subprocess
from collections.abc import Callable
from typing import Any, TypeVar

from imgscan.cstorage.layerwalk import rootless_mappings
from imgscan.errors import StoreError

CLONE_NEWUSER = 0x10000000
T = TypeVar("T")


def _in_initial_namespace() -> bool:
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


def needs_namespace(graph_root: str) -> bool:
    """A rootless store read by its owner outside any user namespace."""
    if os.geteuid() == 0 or not _in_initial_namespace():
        return False
    try:
        return os.stat(graph_root).st_uid == os.geteuid()
    except OSError:
        return False


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _map_args(maps: Any) -> list[str]:
    return [str(x) for m in maps for x in (m.container, m.host, m.size)]


def in_store_namespace(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` run in a user namespace mapping ids as the store's owner's podman does."""
    for tool in ("newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            raise StoreError(f"reading a rootless store needs {tool} (the uidmap package), "
                             "as podman does")
    uid_map, gid_map = rootless_mappings(os.geteuid(), os.getegid())
    if len(uid_map) < 2 or len(gid_map) < 2:
        raise StoreError("reading a rootless store needs subordinate ids for this user in "
                         "/etc/subuid and /etc/subgid, as podman does")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: unshare, wait for the maps, run, send the result
        code = 0
        try:
            os.close(ready_r)
            os.close(go_w)
            os.close(out_r)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWUSER) != 0:
                raise StoreError("cannot enter a user namespace: "
                                 + os.strerror(ctypes.get_errno()))
            os.write(ready_w, b"1")
            if os.read(go_r, 1) != b"1":
                raise StoreError("cannot map the store's ids (newuidmap/newgidmap failed)")
            result: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as e:
            result = ("err", e)
        try:
            data = pickle.dumps(result)
        except Exception as e:
            data = pickle.dumps(("err", StoreError(f"unpicklable result: {e}")))
            code = 1
        view = memoryview(data)
        while view:
            view = view[os.write(out_w, view):]
        os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    os.close(out_w)
    try:
        ok = os.read(ready_r, 1) == b"1"
        if ok:
            for tool, maps in (("newuidmap", uid_map), ("newgidmap", gid_map)):
                r = subprocess.run([tool, str(pid), *_map_args(maps)], capture_output=True,
                                   text=True)
                if r.returncode != 0:
                    ok = False
                    break
        os.write(go_w, b"1" if ok else b"0")
        data = _read_all(out_r)
    finally:
        for fd in (ready_r, go_w, out_r):
            os.close(fd)
        os.waitpid(pid, 0)
    if not data:
        raise StoreError("the user-namespace reader died without an answer")
    status, value = pickle.loads(data)
    if status == "err":
        raise value
    return value
