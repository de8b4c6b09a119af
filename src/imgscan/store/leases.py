"""Leases: the store's record of who is reading an image right now, so ``rmi`` cannot pull
its layers away mid-read.

A mount already holds its image (mount records); a scan, an export or anything else that
reads an image's layers from the store holds a *lease* for as long as it reads. A lease is a
file ``run/leases/<image-hex>.<pid>.<random>`` holding the reader's pid and purpose, with a
``flock`` on it for the lease's lifetime. ``flock`` (not ``lockf``) on purpose: it belongs to
the open file, so a lease in this process is seen as held by a removal in this same process,
and closing another descriptor of the file does not drop it. The kernel releases the lock
when the reader dies however it dies, so a lease file nobody locks is stale and is swept, as
stale mount records are.

The lease is taken under the store's shared lock, in the same critical section as the lookup
of the image; removal checks leases under the exclusive lock. So a reader either holds a
lease before a removal looks (and the removal is refused, or waits with ``--force``), or
looks the image up after the removal (and never starts).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgscan.images.digest import hex_of

if TYPE_CHECKING:
    from imgscan.store.core import StoreCore
    from imgscan.store.records import ImageRecord


@dataclass(frozen=True)
class LeaseHolder:
    """A live lease: which process reads the image, why, and since when."""

    path: str
    pid: int
    purpose: str
    since: float

    def describe(self) -> str:
        return f"pid {self.pid} ({self.purpose})"


class Lease:
    """A held lease; ``release()`` (or the process's death) ends it."""

    def __init__(self, store: StoreCore, image_id: str, purpose: str) -> None:
        d = leases_dir(store)
        os.makedirs(d, exist_ok=True)
        self.path = os.path.join(d, f"{hex_of(image_id)}.{os.getpid()}.{secrets.token_hex(4)}")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        record = {"pid": os.getpid(), "purpose": purpose, "since": time.time()}
        os.write(self.fd, json.dumps(record).encode())

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = -1


def leases_dir(store: StoreCore) -> str:
    return store.path("run", "leases")


@contextlib.contextmanager
def leased(store: StoreCore, ref: str, purpose: str = "scan") -> Iterator[ImageRecord]:
    """Look ``ref`` up and hold a lease on the image while the block reads it. Lookup and
    lease are one step under the shared lock, so a removal cannot slip between them."""
    with store.lock.shared():
        image = store.lookup(ref)
        try:
            lease: Lease | None = Lease(store, image.id, purpose)
        except PermissionError:
            # another user's store, read-only for us: we cannot record a lease, and the
            # owner's rmi cannot see us (as with podman, the owner's store is the owner's)
            lease = None
    try:
        yield image
    finally:
        if lease is not None:
            lease.release()


def _lease_files(store: StoreCore, prefix: str = "") -> list[str]:
    d = leases_dir(store)
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return []
    return [os.path.join(d, n) for n in names if n.startswith(prefix)]


def holders(store: StoreCore, image_id: str) -> list[LeaseHolder]:
    """The live leases on an image; stale lease files (their process died) are removed."""
    out = []
    for path in _lease_files(store, hex_of(image_id) + "."):
        held, holder = _probe(path)
        if held:
            out.append(holder)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    return out


def stale(store: StoreCore) -> list[tuple[LeaseHolder, str]]:
    """Every lease file nobody holds, with why (for ``store check``; nothing is removed).

    The flock decides, not the recorded pid: the kernel drops it when the reader dies, so a
    pid that is alive again (reused by an unrelated process) cannot keep a dead lease
    alive, and the message says which of the two it is."""
    out = []
    for path in _lease_files(store):
        held, holder = _probe(path)
        if held:
            continue
        alive = _pid_exists(holder.pid)
        why = (f"lease of pid {holder.pid} ({holder.purpose}), whose process "
               + ("is gone: pid now belongs to another process" if alive else "is gone"))
        out.append((holder, why))
    return out


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: it exists
    return True


def _probe(path: str) -> tuple[bool, LeaseHolder]:
    """Whether someone holds the lease file at ``path`` (a live reader; otherwise the file
    is a leftover of a dead process, or a lease released just now), and what it records."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False, LeaseHolder(path, 0, "reading", 0.0)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            held = True
        else:
            held = False
        try:
            doc = json.loads(os.pread(fd, 4096, 0) or b"{}")
            if not isinstance(doc, dict):
                doc = {}
        except ValueError:
            doc = {}
        try:
            pid = int(doc.get("pid") or os.path.basename(path).split(".")[1])
        except (ValueError, TypeError, IndexError):
            pid = 0
        try:
            since = float(doc.get("since", 0))
        except (ValueError, TypeError):
            since = 0.0
        return held, LeaseHolder(path, pid, str(doc.get("purpose", "reading")), since)
    finally:
        os.close(fd)


def wait_for(holder: LeaseHolder) -> None:
    """Block until ``holder``'s lease ends (call without the store's lock: the reader may
    need the shared lock to finish)."""
    try:
        fd = os.open(holder.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)
