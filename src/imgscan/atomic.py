"""Atomic file writes: temp file, fsync, rename, fsync of the directory.

No ``tempfile`` and no ``json`` at import: ``imgscan mount`` writes its records through here
and ``tempfile`` alone costs more than the mount (it imports ``shutil`` and ``random``).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_TMP_MAX = 10000  # tempfile.mkstemp's number of names to try


def write_atomic(path: str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` in one rename. ``durable``: fsync the file and its
    directory first, so that the new content survives a power loss; state that a reboot
    makes stale anyway (mount records) need not pay for it."""
    directory = os.path.dirname(path) or "."
    fd, tmp = mkstemp(directory)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:  # noqa: SIM105 (contextlib.suppress: an import `imgscan mount` would pay for)
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(directory)


def mkstemp(directory: str, prefix: str = ".tmp-", suffix: str = "") -> tuple[int, str]:
    """A new private file ``<prefix><random><suffix>`` in ``directory``, as
    ``tempfile.mkstemp`` makes one: (descriptor, path)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_TMP_MAX):
        tmp = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no usable temporary file name found in {directory}")


def write_json_atomic(path: str, obj: Any, durable: bool = True) -> None:
    from imgscan.jsonlite import dumps

    write_atomic(path, dumps(obj, indent=1, sort_keys=True).encode(), durable=durable)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
