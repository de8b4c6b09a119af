"""File locks shared by every process that uses a store, after containers/storage.

POSIX ``fcntl`` record locks: shared for readers, exclusive for writers. The lock file's
content is a *last-writer token*, rewritten by every commit, so a long-lived process can tell
cheaply whether the metadata changed since it last loaded it. fcntl locks belong to a process,
not a thread, so an in-process lock serialises threads on top.
"""

from __future__ import annotations

import fcntl
import os
import time
from _thread import RLock  # threading.RLock is this one; `threading` costs a mount 1 ms

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager

TOKEN_SIZE = 64


class _Hold:
    """One hold of a ``StoreLock`` (a class, not ``contextlib.contextmanager``: the lock is
    on the path of ``imgscan mount``, which does not otherwise import contextlib)."""

    def __init__(self, lock: StoreLock, mode: int) -> None:
        self.lock, self.mode = lock, mode

    def __enter__(self) -> None:
        self.lock._acquire(self.mode)

    def __exit__(self, *exc: object) -> None:
        self.lock._release()


class StoreLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._thread_lock = RLock()
        self._fd: int | None = None
        self._depth = 0
        self._mode = 0

    def _open(self) -> int:
        if self._fd is None:
            try:
                # readable by all: other users may take shared locks (read-only use)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except PermissionError:
                # a store owned by another user: readers may still share it
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                self.read_only = True
        return self._fd

    read_only = False

    def _acquire(self, mode: int) -> None:
        """Take the thread lock, then (outermost hold only) the fcntl lock in ``mode``."""
        self._thread_lock.acquire()
        try:
            fd = self._open()
            if self._depth == 0:
                if mode == fcntl.LOCK_EX and self.read_only:
                    from imgscan.errors import StoreError

                    raise StoreError(f"the store at {os.path.dirname(self.path)} is read-only "
                                     "for this user")
                fcntl.lockf(fd, mode)
                self._mode = mode
            elif mode == fcntl.LOCK_EX and self._mode != fcntl.LOCK_EX:
                raise RuntimeError("cannot upgrade a shared store lock to exclusive")
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise

    def _release(self) -> None:
        try:
            self._depth -= 1
            if self._depth == 0:
                assert self._fd is not None
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
                self._mode = 0
        finally:
            self._thread_lock.release()

    def shared(self) -> AbstractContextManager[None]:
        """Hold for reading metadata: any number of readers, no writer."""
        return _Hold(self, fcntl.LOCK_SH)

    def exclusive(self) -> AbstractContextManager[None]:
        """Hold for committing changes: one writer, no reader."""
        return _Hold(self, fcntl.LOCK_EX)

    def token(self) -> bytes:
        """The last writer's token (empty when nothing was written yet)."""
        return os.pread(self._open(), TOKEN_SIZE, 0)

    def record_write(self) -> bytes:
        """Stamp a new token; call under the exclusive lock *before* writing metadata, so a
        writer killed half-way still makes the others reload."""
        token = f"{time.time_ns():020d}-{os.getpid():010d}-{os.urandom(16).hex()}".encode()
        token = token[:TOKEN_SIZE].ljust(TOKEN_SIZE, b" ")
        os.pwrite(self._open(), token, 0)
        return token

    def close(self) -> None:
        with self._thread_lock:
            if self._fd is not None and self._depth == 0:
                os.close(self._fd)
                self._fd = None


class OwnerLock:
    """An exclusive lock that marks a directory as in use by a live process.

    A staging directory carries one: ``store check`` removes a staging directory only when it
    can take its lock, i.e. when the process that made it is gone (the kernel drops fcntl
    locks of dead processes).
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def is_abandoned(lock_path: str) -> bool:
    """True when nobody holds the owner lock at ``lock_path`` (or it does not exist)."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
