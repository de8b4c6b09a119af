"""containers/storage's lock files: whole-file POSIX ``fcntl`` locks plus a last-writer token.

Same primitive and the same files as ``pkg/lockfile`` (ANCHORS.md §4.1), so podman, buildah
and CRI-O see imgscan's locks and imgscan sees theirs. fcntl locks belong to the process and
closing *any* descriptor of the file drops them all, so, like c/storage, there is one
``LockFile`` per path per process, reference-counted: the descriptor is opened and the fcntl
lock taken when the count goes 0 -> 1 and both are released at 1 -> 0. An in-process
reader/writer condition keeps threads from mixing shared and exclusive holds.

The first 64 bytes of the file are the "last writer" id. A writer stores a fresh one (before
changing the data it protects, as ``saveMounts`` does); a reader compares it with the value it
saw when it last loaded and reloads when it differs.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import struct
import threading
import time
from collections.abc import Iterator

from imgscan.errors import StoreError

LAST_WRITER_SIZE = 64
_counter = itertools.count(1)
_registry: dict[str, LockFile] = {}
_registry_lock = threading.Lock()


def get_lock(path: str, readonly: bool = False) -> LockFile:
    """The process-wide ``LockFile`` for ``path`` (created on first use)."""
    key = os.path.abspath(path)
    with _registry_lock:
        lock = _registry.get(key)
        if lock is None:
            lock = _registry[key] = LockFile(key, readonly)
        return lock


def new_last_writer() -> bytes:
    """A last-writer id in c/storage's layout: time ns, counter, pid, random bytes."""
    head = struct.pack("<QQI", time.time_ns(), next(_counter), os.getpid() & 0xFFFFFFFF)
    return head + os.urandom(LAST_WRITER_SIZE - len(head))


class LockFile:
    """One c/storage lock file. Use ``get_lock`` rather than constructing it."""

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._fd = -1

    # -- fcntl ---------------------------------------------------------------------------
    def _open(self) -> None:
        flags = os.O_RDONLY if self.readonly else os.O_RDWR | os.O_CREAT
        try:
            self._fd = os.open(self.path, flags | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            raise StoreError(f"{self.path}: lock file is missing; not a containers/storage "
                             "store") from None
        except OSError as e:
            raise StoreError(f"{self.path}: cannot open lock file: {e.strerror}") from None

    def _fcntl(self, op: int) -> None:
        while True:
            try:
                fcntl.lockf(self._fd, op)
                return
            except InterruptedError:
                continue
            except OSError as e:
                raise StoreError(f"{self.path}: cannot lock: {e.strerror}") from None

    def _release(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1

    # -- holds ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def shared(self) -> Iterator[LockFile]:
        """Hold the read lock (``F_RDLCK``): writers in every process wait."""
        with self._cond:
            while self._writer:
                self._cond.wait()
            if self._readers == 0:
                self._open()
                try:
                    self._fcntl(fcntl.LOCK_SH)
                except BaseException:
                    os.close(self._fd)
                    self._fd = -1
                    raise
            self._readers += 1
        try:
            yield self
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._release()
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[LockFile]:
        """Hold the write lock (``F_WRLCK``): everyone else waits."""
        if self.readonly:
            raise StoreError(f"{self.path}: read-only lock cannot be taken for writing")
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
            try:
                self._open()
                try:
                    self._fcntl(fcntl.LOCK_EX)
                except BaseException:
                    os.close(self._fd)
                    self._fd = -1
                    raise
            except BaseException:
                self._writer = False
                self._cond.notify_all()
                raise
        try:
            yield self
        finally:
            with self._cond:
                self._release()
                self._writer = False
                self._cond.notify_all()

    # -- last writer ---------------------------------------------------------------------
    def last_write(self) -> bytes:
        """The current last-writer id (empty: nobody wrote yet). Read under a held lock."""
        if self._fd < 0:
            raise StoreError(f"{self.path}: last writer read without holding the lock")
        return os.pread(self._fd, LAST_WRITER_SIZE, 0)

    def modified_since(self, previous: bytes | None) -> tuple[bytes, bool]:
        """``(current, changed)``: reload what the lock protects when ``changed``."""
        current = self.last_write()
        return current, previous is None or current != previous

    def record_write(self) -> bytes:
        """Store a fresh last-writer id; call with the write lock held, before writing."""
        if not self._writer:
            raise StoreError(f"{self.path}: record_write without the write lock")
        token = new_last_writer()
        os.pwrite(self._fd, token, 0)
        return token
